//! `pg_controldata`: the facts a stopped data directory can tell (system identifier, cluster
//! state, timeline, checkpoint), parsed by a pure function.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::lsn::Lsn;
use crate::tools::Tools;

/// `Database cluster state` of pg_control.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterState {
    StartingUp,
    ShutDown,
    ShutDownInRecovery,
    ShuttingDown,
    InCrashRecovery,
    InArchiveRecovery,
    InProduction,
    Other(String),
}

impl ClusterState {
    fn parse(text: &str) -> Self {
        match text {
            "starting up" => Self::StartingUp,
            "shut down" => Self::ShutDown,
            "shut down in recovery" => Self::ShutDownInRecovery,
            "shutting down" => Self::ShuttingDown,
            "in crash recovery" => Self::InCrashRecovery,
            "in archive recovery" => Self::InArchiveRecovery,
            "in production" => Self::InProduction,
            other => Self::Other(other.to_owned()),
        }
    }

    /// The server stopped without a clean shutdown (crash recovery needed before pg_rewind).
    pub fn needs_crash_recovery(&self) -> bool {
        matches!(
            self,
            Self::InProduction | Self::ShuttingDown | Self::InCrashRecovery
        )
    }
}

/// The subset of pg_control pgwarden reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlData {
    pub system_identifier: u64,
    pub cluster_state: ClusterState,
    /// `Latest checkpoint's TimeLineID`.
    pub checkpoint_timeline: u32,
    /// `Latest checkpoint location`.
    pub checkpoint_lsn: Lsn,
    /// `Latest checkpoint's REDO location`.
    pub redo_lsn: Lsn,
    /// `Minimum recovery ending location` and its timeline (0/0 and 0 when not in recovery).
    pub min_recovery_end_lsn: Lsn,
    pub min_recovery_end_timeline: u32,
    /// Data checksums are on (version > 0).
    pub data_checksums: bool,
    /// `wal_log_hints setting`.
    pub wal_log_hints: bool,
    /// Settings pg_control records because a hot standby needs at least these values
    /// (`max_connections setting` and friends), by GUC name.
    pub recorded_settings: BTreeMap<String, u64>,
}

/// pg_controldata label → GUC name, for the settings a replica must not go below.
const RECORDED_SETTINGS: &[(&str, &str)] = &[
    ("max_connections setting", "max_connections"),
    ("max_worker_processes setting", "max_worker_processes"),
    ("max_wal_senders setting", "max_wal_senders"),
    ("max_prepared_xacts setting", "max_prepared_transactions"),
    ("max_locks_per_xact setting", "max_locks_per_transaction"),
];

impl ControlData {
    /// pg_rewind can run against this data directory.
    pub fn rewind_possible(&self) -> bool {
        self.data_checksums || self.wal_log_hints
    }
}

/// Parses `pg_controldata` output (run with `LC_ALL=C`).
pub fn parse_controldata(text: &str) -> Result<ControlData> {
    let field = |name: &str| -> Result<&str> {
        text.lines()
            .find_map(|line| {
                let (key, value) = line.split_once(':')?;
                (key.trim() == name).then_some(value.trim())
            })
            .ok_or_else(|| Error::ControlData(format!("missing {name:?}")))
    };
    let number = |name: &str| -> Result<u64> {
        field(name)?
            .parse::<u64>()
            .map_err(|_| Error::ControlData(format!("{name:?} is not a number")))
    };
    let lsn = |name: &str| -> Result<Lsn> {
        Lsn::parse(field(name)?)
            .ok_or_else(|| Error::ControlData(format!("{name:?} is not an LSN")))
    };
    let timeline = |name: &str| -> Result<u32> {
        u32::try_from(number(name)?).map_err(|_| Error::ControlData(format!("{name:?} too large")))
    };
    Ok(ControlData {
        system_identifier: number("Database system identifier")?,
        cluster_state: ClusterState::parse(field("Database cluster state")?),
        checkpoint_timeline: timeline("Latest checkpoint's TimeLineID")?,
        checkpoint_lsn: lsn("Latest checkpoint location")?,
        redo_lsn: lsn("Latest checkpoint's REDO location")?,
        min_recovery_end_lsn: lsn("Minimum recovery ending location")?,
        min_recovery_end_timeline: timeline("Min recovery ending loc's timeline")?,
        data_checksums: number("Data page checksum version")? > 0,
        wal_log_hints: field("wal_log_hints setting")? == "on",
        recorded_settings: RECORDED_SETTINGS
            .iter()
            .filter_map(|(label, guc)| Some(((*guc).to_owned(), number(label).ok()?)))
            .collect(),
    })
}

/// Runs `pg_controldata` on `data_dir` and parses it.
pub async fn read_controldata(tools: &Tools, data_dir: &Path) -> Result<ControlData> {
    let output = tools
        .run(
            "pg_controldata",
            [data_dir.as_os_str()],
            // Labels are translated otherwise.
            &[("LC_ALL", "C"), ("LANG", "C")],
            Duration::from_secs(30),
        )
        .await?;
    parse_controldata(&String::from_utf8_lossy(&output.stdout))
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a test fails loudly")]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
pg_control version number:            1300
Catalog version number:               202209061
Database system identifier:           7311234567890123456
Database cluster state:               shut down in recovery
pg_control last modified:             Thu 26 Nov 2026 03:25:00 PM UTC
Latest checkpoint location:           0/3000060
Latest checkpoint's REDO location:    0/3000028
Latest checkpoint's REDO WAL file:    000000020000000000000003
Latest checkpoint's TimeLineID:       2
Latest checkpoint's PrevTimeLineID:   2
Minimum recovery ending location:     0/30000D8
Min recovery ending loc's timeline:   2
wal_log_hints setting:                off
max_connections setting:              200
max_worker_processes setting:         8
max_wal_senders setting:              10
max_prepared_xacts setting:           0
max_locks_per_xact setting:           64
Data page checksum version:           1
";

    #[test]
    fn parses_pg15_output() {
        let control = parse_controldata(SAMPLE).unwrap();
        assert_eq!(control.system_identifier, 7_311_234_567_890_123_456);
        assert_eq!(control.cluster_state, ClusterState::ShutDownInRecovery);
        assert_eq!(control.checkpoint_timeline, 2);
        assert_eq!(control.checkpoint_lsn, Lsn(0x300_0060));
        assert_eq!(control.redo_lsn, Lsn(0x300_0028));
        assert_eq!(control.min_recovery_end_lsn, Lsn(0x300_00D8));
        assert_eq!(control.min_recovery_end_timeline, 2);
        assert!(control.data_checksums);
        assert!(!control.wal_log_hints);
        assert!(control.rewind_possible());
        assert!(!control.cluster_state.needs_crash_recovery());
        assert_eq!(control.recorded_settings["max_connections"], 200);
        assert_eq!(control.recorded_settings["max_prepared_transactions"], 0);
        assert_eq!(control.recorded_settings.len(), 5);
    }

    #[test]
    fn cluster_states() {
        for (text, crash_recovery) in [
            ("in production", true),
            ("shutting down", true),
            ("in crash recovery", true),
            ("shut down", false),
            ("in archive recovery", false),
        ] {
            let output = SAMPLE.replace("shut down in recovery", text);
            let control = parse_controldata(&output).unwrap();
            assert_eq!(
                control.cluster_state.needs_crash_recovery(),
                crash_recovery,
                "{text}"
            );
        }
    }

    #[test]
    fn missing_fields_are_errors() {
        let output = SAMPLE.replace("Database system identifier", "Something else");
        assert!(matches!(
            parse_controldata(&output),
            Err(Error::ControlData(_))
        ));
        assert!(parse_controldata("").is_err());
    }
}
