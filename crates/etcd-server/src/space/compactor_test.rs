use std::time::Duration;

use tokio::time::Instant;

use super::*;

fn hours(count: u64) -> Duration {
    Duration::from_secs(count * 3600)
}

/// (mode, retention, expected outcome).
type ParseCase = (
    &'static str,
    &'static str,
    Result<Option<AutoCompaction>, AutoCompactionError>,
);

#[test]
fn flag_values_parse_with_etcds_meaning() {
    let five_minutes = REVISION_MODE_INTERVAL;
    let table: &[ParseCase] = &[
        ("periodic", "0", Ok(None)),
        (
            "periodic",
            "1",
            Ok(Some(AutoCompaction::Periodic {
                retention: hours(1),
            })),
        ),
        (
            "periodic",
            "0.5",
            Ok(Some(AutoCompaction::Periodic {
                retention: Duration::from_secs(1800),
            })),
        ),
        (
            "periodic",
            "30m",
            Ok(Some(AutoCompaction::Periodic {
                retention: Duration::from_secs(1800),
            })),
        ),
        (
            "periodic",
            "1h30m",
            Ok(Some(AutoCompaction::Periodic {
                retention: Duration::from_secs(5400),
            })),
        ),
        ("periodic", "0s", Ok(None)),
        (
            "periodic",
            "1d",
            Err(AutoCompactionError::PeriodicRetention("1d".to_owned())),
        ),
        (
            "periodic",
            "-1",
            Err(AutoCompactionError::PeriodicRetention("-1".to_owned())),
        ),
        (
            "periodic",
            "",
            Err(AutoCompactionError::PeriodicRetention(String::new())),
        ),
        ("revision", "0", Ok(None)),
        (
            "revision",
            "1000",
            Ok(Some(AutoCompaction::Revision {
                retention: 1000,
                interval: five_minutes,
            })),
        ),
        (
            "revision",
            "1h",
            Err(AutoCompactionError::RevisionRetention("1h".to_owned())),
        ),
        (
            "revision",
            "-5",
            Err(AutoCompactionError::RevisionRetention("-5".to_owned())),
        ),
        (
            "hourly",
            "1",
            Err(AutoCompactionError::Mode("hourly".to_owned())),
        ),
    ];
    for (mode, retention, expected) in table {
        assert_eq!(
            &AutoCompaction::parse(mode, retention),
            expected,
            "--auto-compaction-mode={mode} --auto-compaction-retention={retention}"
        );
    }
}

#[test]
fn periodic_ticks_a_tenth_of_the_retention_capped_at_six_minutes() {
    let tick = |retention| AutoCompaction::Periodic { retention }.tick_interval();
    assert_eq!(tick(Duration::from_secs(600)), Duration::from_secs(60));
    assert_eq!(tick(hours(1)), Duration::from_secs(360));
    assert_eq!(tick(hours(24)), Duration::from_secs(360));
}

#[test]
fn revision_mode_keeps_the_last_retention_revisions() {
    let mut planner = Planner::new(AutoCompaction::Revision {
        retention: 10,
        interval: Duration::from_secs(1),
    });
    let now = Instant::now();
    assert_eq!(planner.tick(now, 5, 0), None, "not enough history yet");
    assert_eq!(
        planner.tick(now, 10, 0),
        None,
        "revision 0 is nothing to compact"
    );
    assert_eq!(planner.tick(now, 25, 0), Some(15));
    assert_eq!(planner.tick(now, 25, 15), None, "already compacted there");
    assert_eq!(planner.tick(now, 40, 15), Some(30));
}

#[test]
fn periodic_mode_compacts_to_the_revision_of_one_retention_ago() {
    let retention = Duration::from_secs(100);
    let mut planner = Planner::new(AutoCompaction::Periodic { retention });
    let start = Instant::now();
    let at = |seconds| start + Duration::from_secs(seconds);
    // Samples every 10 s: revision 100 + seconds.
    let mut planned = Vec::new();
    for seconds in (0..=250).step_by(10) {
        let compacted = planned.last().copied().unwrap_or(0);
        if let Some(target) = planner.tick(at(seconds), 100 + seconds as i64, compacted) {
            planned.push(target);
        }
    }
    // Nothing before one retention has passed; then, one retention apart, the revision
    // sampled 100 s before each compaction.
    assert_eq!(planned, vec![100, 200]);
    assert!(planner.samples.len() <= 12, "old samples are dropped");
}
