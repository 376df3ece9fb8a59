//! A configured `create_replica_methods` command builds the replicas, called with Patroni's
//! argument contract (`--scope --role --datadir --connstring` plus the section's own keys), as
//! a pgBackRest or WAL-G restore would be.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use ha_cluster_tests::{Cluster, ClusterOptions, PG_BIN_DIR};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_are_built_by_the_configured_method() -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("pgwarden-method-")
        .tempdir()?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    // The method runs as the PostgreSQL OS user: its log directory must be writable by it.
    let log_dir = dir.path().join("log");
    std::fs::create_dir(&log_dir)?;
    std::fs::set_permissions(&log_dir, std::fs::Permissions::from_mode(0o777))?;
    let log = log_dir.join("calls.log");
    let script = dir.path().join("clone.sh");
    std::fs::write(
        &script,
        format!(
            r#"#!/bin/sh
for arg; do
  case "$arg" in
    --datadir=*) datadir="${{arg#--datadir=}}" ;;
    --connstring=*) connstring="${{arg#--connstring=}}" ;;
    --log=*) log="${{arg#--log=}}" ;;
  esac
done
echo "$@" >> "$log"
exec {PG_BIN_DIR}/pg_basebackup -D "$datadir" -d "$connstring" -X stream -c fast
"#
        ),
    )?;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
    let cluster = Cluster::start_with(
        3,
        ClusterOptions {
            postgresql_yaml: format!(
                "create_replica_methods: [clone]\nclone:\n  command: {}\n  log: {}",
                script.display(),
                log.display()
            ),
            ..ClusterOptions::default()
        },
    )?;
    cluster.wait_healthy(2, Duration::from_secs(120)).await?;
    let calls = std::fs::read_to_string(&log)?;
    let lines: Vec<&str> = calls.lines().collect();
    assert_eq!(lines.len(), 2, "one call per replica: {calls}");
    for line in lines {
        assert!(line.contains("--scope=demo"), "{line}");
        assert!(line.contains("--role=replica"), "{line}");
        assert!(line.contains("--datadir="), "{line}");
        assert!(line.contains("--connstring="), "{line}");
        assert!(line.contains(&format!("--log={}", log.display())), "{line}");
    }
    Ok(())
}
