//! Has our WAL history diverged from the leader's? (Patroni's `_check_timeline_and_lsn`,
//! patroni.md §1.10.) The comparison is pure; the leader's timeline history file is read over
//! SQL by [`crate::Probe::timeline_history`].

use crate::lsn::Lsn;

/// One line of a `NNNNNNNN.history` file: timeline `parent_timeline` ended at `switchpoint`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryEntry {
    pub parent_timeline: u32,
    pub switchpoint: Lsn,
}

/// Parses a timeline history file (`parentTLI<tab>switchpoint<tab>reason`, `#` comments).
pub fn parse_timeline_history(text: &str) -> Vec<HistoryEntry> {
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let parent_timeline = fields.next()?.parse().ok()?;
            let switchpoint = Lsn::parse(fields.next()?)?;
            Some(HistoryEntry {
                parent_timeline,
                switchpoint,
            })
        })
        .collect()
}

/// Where the local data directory is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalPosition {
    /// A replica (running or stopped in recovery): its timeline and replayed LSN (or, when
    /// stopped, pg_control's minimum recovery ending location).
    Replica { timeline: u32, replayed: Lsn },
    /// A former primary, cleanly shut down: pg_control's checkpoint timeline and location.
    ShutDownPrimary { timeline: u32, checkpoint: Lsn },
}

/// Whether the local history forked off the leader's, so streaming cannot continue and
/// pg_rewind (or reinitialize) is needed. `history` is the leader's current timeline history.
pub fn diverged(local: LocalPosition, leader_timeline: u32, history: &[HistoryEntry]) -> bool {
    let (timeline, lsn, is_checkpoint) = match local {
        LocalPosition::Replica { timeline, replayed } => (timeline, replayed, false),
        LocalPosition::ShutDownPrimary {
            timeline,
            checkpoint,
        } => (timeline, checkpoint, true),
    };
    if timeline > leader_timeline {
        return true;
    }
    if timeline == leader_timeline {
        return false;
    }
    // Our timeline ended on the leader's side at the switchpoint: anything we wrote past it
    // (for a primary, a shutdown checkpoint at or past it) is not in the leader's history.
    let Some(entry) = history
        .iter()
        .find(|entry| entry.parent_timeline == timeline)
    else {
        // Our timeline is not an ancestor of the leader's at all.
        return true;
    };
    if is_checkpoint {
        lsn >= entry.switchpoint
    } else {
        lsn > entry.switchpoint
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HISTORY: &str = "1\t0/3008ED8\tno recovery target specified\n\n\
                           2\t0/5000000\tno recovery target specified\n";

    #[test]
    fn parses_history_files() {
        assert_eq!(
            parse_timeline_history(HISTORY),
            [
                HistoryEntry {
                    parent_timeline: 1,
                    switchpoint: Lsn(0x300_8ED8)
                },
                HistoryEntry {
                    parent_timeline: 2,
                    switchpoint: Lsn(0x500_0000)
                },
            ]
        );
        assert!(parse_timeline_history("# comment\n").is_empty());
    }

    #[test]
    fn divergence_table() {
        let history = parse_timeline_history(HISTORY);
        let replica = |timeline, lsn| LocalPosition::Replica {
            timeline,
            replayed: Lsn(lsn),
        };
        let primary = |timeline, lsn| LocalPosition::ShutDownPrimary {
            timeline,
            checkpoint: Lsn(lsn),
        };
        let rows = [
            ("same timeline", replica(3, 0x900_0000), 3, false),
            ("ahead of the leader's timeline", replica(4, 0x100), 3, true),
            (
                "replica before the switchpoint",
                replica(1, 0x300_8000),
                3,
                false,
            ),
            (
                "replica exactly at the switchpoint",
                replica(1, 0x300_8ED8),
                3,
                false,
            ),
            (
                "replica past the switchpoint",
                replica(1, 0x300_9000),
                3,
                true,
            ),
            (
                "replica on tl 2 before its end",
                replica(2, 0x400_0000),
                3,
                false,
            ),
            (
                "old primary checkpoint at the switchpoint",
                primary(1, 0x300_8ED8),
                3,
                true,
            ),
            (
                "old primary checkpoint before it",
                primary(1, 0x300_0000),
                3,
                false,
            ),
            (
                "timeline not in the leader's history",
                replica(7, 0x10),
                9,
                true,
            ),
        ];
        for (situation, local, leader_timeline, expected) in rows {
            assert_eq!(
                diverged(local, leader_timeline, &history),
                expected,
                "{situation}"
            );
        }
    }
}
