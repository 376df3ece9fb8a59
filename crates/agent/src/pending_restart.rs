//! Pending restart: parameters whose configured value PostgreSQL cannot take until it restarts.
//!
//! Two sources, as PostgreSQL reports them:
//! - parameters pgwarden passes on the postmaster command line (`max_connections`,
//!   `wal_level`, ... and `port`, `listen_addresses`, `cluster_name`): the file cannot override
//!   them, so a new value is pending while the running value differs from the configured one;
//! - every other parameter: `pg_settings.pending_restart` after the reload that read the new
//!   postgresql.conf.
//!
//! The agent compares again for a few cycles after each reload (the reload is asynchronous) and
//! on every cycle while a restart is pending, so the flag clears once PostgreSQL restarted.

use std::collections::BTreeSet;

/// Cycles after a reload during which the running values are compared again.
const RECHECK_CYCLES: u8 = 3;

/// The agent's knowledge of a pending restart (`pending_restart` in `/patroni` and the member key).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct PendingRestart {
    /// Names of the parameters waiting for a restart, sorted; empty when none.
    parameters: Vec<String>,
    /// Comparisons still due after the last reload.
    checks_left: u8,
}

impl PendingRestart {
    pub(crate) fn is_pending(&self) -> bool {
        !self.parameters.is_empty()
    }

    /// The configuration was (re)loaded: compare the running values again for a few cycles.
    pub(crate) fn reloaded(&mut self) {
        self.checks_left = RECHECK_CYCLES;
    }

    /// Whether this cycle should compare the running values.
    pub(crate) fn check_due(&self) -> bool {
        self.checks_left > 0 || self.is_pending()
    }

    /// Records one comparison; returns the parameters that became pending (for the log).
    pub(crate) fn record(&mut self, parameters: Vec<String>) -> Vec<String> {
        self.checks_left = self.checks_left.saturating_sub(1);
        let newly: Vec<String> = parameters
            .iter()
            .filter(|name| !self.parameters.contains(name))
            .cloned()
            .collect();
        self.parameters = parameters;
        newly
    }
}

/// One row of `pg_settings` as the comparison needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RunningSetting {
    pub name: String,
    pub setting: String,
    pub pending_restart: bool,
}

/// The query behind [`RunningSetting`]: postmaster-context parameters (those on the command
/// line are among them) and whatever PostgreSQL itself marks as pending.
pub(crate) const RUNNING_SETTINGS_SQL: &str = "SELECT name, setting, pending_restart \
     FROM pg_catalog.pg_settings WHERE context = 'postmaster' OR pending_restart";

/// The parameters waiting for a restart, sorted: command-line parameters (`--name=value`, as
/// the postmaster is started with) whose running value differs, and those PostgreSQL marks.
pub(crate) fn pending_parameters(
    command_line: &[String],
    running: &[RunningSetting],
) -> Vec<String> {
    let mut pending = BTreeSet::new();
    for option in command_line {
        let Some((name, wanted)) = option
            .strip_prefix("--")
            .and_then(|option| option.split_once('='))
        else {
            continue;
        };
        let current = running.iter().find(|setting| setting.name == name);
        if let Some(current) = current
            && normalise(&current.setting) != normalise(wanted)
        {
            pending.insert(name.to_owned());
        }
    }
    for setting in running {
        if setting.pending_restart {
            pending.insert(setting.name.clone());
        }
    }
    pending.into_iter().collect()
}

/// Spellings PostgreSQL treats as equal for the command-line parameters (booleans, case).
fn normalise(value: &str) -> String {
    let value = value.trim().trim_matches('\'').to_ascii_lowercase();
    match value.as_str() {
        "true" | "yes" | "1" | "on" => "on".to_owned(),
        "false" | "no" | "0" | "off" => "off".to_owned(),
        _ => value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(name: &str, setting: &str, pending_restart: bool) -> RunningSetting {
        RunningSetting {
            name: name.to_owned(),
            setting: setting.to_owned(),
            pending_restart,
        }
    }

    #[test]
    fn pending_parameters_table() {
        let command_line = [
            "--max_connections=120".to_owned(),
            "--hot_standby=true".to_owned(),
            "--wal_level=replica".to_owned(),
        ];
        let cases: [(&str, Vec<RunningSetting>, Vec<&str>); 5] = [
            (
                "every value as configured",
                vec![
                    running("max_connections", "120", false),
                    running("hot_standby", "on", false),
                    running("wal_level", "replica", false),
                ],
                vec![],
            ),
            (
                "a command-line value not applied yet",
                vec![
                    running("max_connections", "100", false),
                    running("hot_standby", "on", false),
                ],
                vec!["max_connections"],
            ),
            (
                "PostgreSQL marks a file parameter",
                vec![
                    running("max_connections", "120", false),
                    running("shared_buffers", "2048", true),
                ],
                vec!["shared_buffers"],
            ),
            (
                "both, sorted",
                vec![
                    running("wal_level", "logical", false),
                    running("shared_buffers", "2048", true),
                ],
                vec!["shared_buffers", "wal_level"],
            ),
            (
                "a parameter the server does not report is not pending",
                vec![],
                vec![],
            ),
        ];
        for (what, rows, expected) in cases {
            assert_eq!(pending_parameters(&command_line, &rows), expected, "{what}");
        }
    }

    #[test]
    fn rechecks_after_a_reload_and_while_pending() {
        let mut pending = PendingRestart::default();
        assert!(!pending.check_due(), "nothing to compare before a reload");
        pending.reloaded();
        for _ in 0..RECHECK_CYCLES - 1 {
            assert!(pending.record(Vec::new()).is_empty());
            assert!(pending.check_due());
        }
        pending.record(Vec::new());
        assert!(!pending.check_due(), "rechecks end after a few cycles");

        pending.reloaded();
        assert_eq!(
            pending.record(vec!["max_connections".to_owned()]),
            vec!["max_connections".to_owned()]
        );
        assert!(pending.is_pending());
        assert!(
            pending
                .record(vec!["max_connections".to_owned()])
                .is_empty(),
            "reported once"
        );
        for _ in 0..RECHECK_CYCLES {
            pending.record(vec!["max_connections".to_owned()]);
        }
        assert!(pending.check_due(), "compared every cycle while pending");
        pending.record(Vec::new());
        assert!(!pending.is_pending(), "cleared once the restart applied it");
    }
}
