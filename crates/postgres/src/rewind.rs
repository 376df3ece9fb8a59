//! pg_rewind: make a former primary's data directory a prefix of the new primary's history so
//! it can stream again (patroni.md §1.10). The target must be cleanly shut down.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::ConnInfo;
use crate::error::Result;
use crate::files;
use crate::tools::{Tools, long_option, path_arg};

/// Options pgwarden controls itself and refuses from the user's `rewind` list.
const FORBIDDEN: &[&str] = &[
    "target-pgdata",
    "source-pgdata",
    "source-server",
    "write-recovery-conf",
    "dry-run",
    "restore-target-wal",
    "config-file",
    "no-ensure-shutdown",
    "version",
    "help",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewindOptions {
    pub data_dir: PathBuf,
    /// A superuser (or rewind-privileged) connection to the new primary.
    pub source: ConnInfo,
    /// User options, long form; forbidden ones are dropped.
    pub extra: Vec<(String, Option<String>)>,
    pub timeout: Duration,
}

/// The pg_rewind arguments (pure).
pub fn rewind_args(options: &RewindOptions) -> Vec<String> {
    let mut args = vec![
        path_arg("--target-pgdata", &options.data_dir),
        format!("--source-server={}", options.source.render()),
    ];
    for (name, value) in &options.extra {
        let bare = name.trim_start_matches('-');
        if !FORBIDDEN.contains(&bare) {
            args.push(long_option(bare, value.as_deref()));
        }
    }
    args
}

/// Runs pg_rewind, then empties `pg_replslot` (slots copied from the source are not ours).
///
/// The source must have checkpointed since its promotion: pg_rewind reads the source's
/// timeline from pg_control, and until that checkpoint it still shows the old timeline, so
/// pg_rewind would report "no rewind required" and the target could not follow
/// (Patroni's `checkpoint_after_promote`). Call [`crate::Probe::checkpoint`] on the new
/// primary first.
pub async fn pg_rewind(tools: &Tools, options: &RewindOptions) -> Result<()> {
    tools
        .run(
            "pg_rewind",
            rewind_args(options),
            &[("PGOPTIONS", "-c statement_timeout=0")],
            options.timeout,
        )
        .await?;
    files::clear_dir(&replslot_dir(&options.data_dir))
}

/// Brings a crashed data directory to a clean shutdown by running crash recovery in
/// single-user mode (`postgres --single` with stdin at end of file). pg_rewind refuses a
/// target that was not shut down cleanly; Patroni does the same before rewinding.
pub async fn crash_recovery_single_user(
    tools: &Tools,
    data_dir: &Path,
    timeout: Duration,
) -> Result<()> {
    let args = [
        "--single".to_owned(),
        "-D".to_owned(),
        data_dir.display().to_string(),
        "-c".to_owned(),
        "archive_mode=off".to_owned(),
        "postgres".to_owned(),
    ];
    tools.run("postgres", args, &[], timeout).await.map(|_| ())
}

fn replslot_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("pg_replslot")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_options_cannot_override_ours() {
        let options = RewindOptions {
            data_dir: PathBuf::from("/data/pg"),
            source: ConnInfo {
                host: "/run/pg".into(),
                port: 5432,
                user: "postgres".into(),
                dbname: "postgres".into(),
                ..ConnInfo::default()
            },
            extra: vec![
                ("progress".into(), None),
                ("--source-pgdata".into(), Some("/elsewhere".into())),
                ("write-recovery-conf".into(), None),
                ("debug".into(), None),
            ],
            timeout: Duration::from_secs(60),
        };
        assert_eq!(
            rewind_args(&options),
            [
                "--target-pgdata=/data/pg",
                "--source-server=user=postgres host=/run/pg port=5432 dbname=postgres",
                "--progress",
                "--debug",
            ]
        );
    }
}
