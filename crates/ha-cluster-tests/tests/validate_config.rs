//! `pgwarden run --validate-config`: the configuration is loaded as `run` loads it — file,
//! `PATRONI_*` environment variables over it, TLS files — and the command exits 0 when it
//! would start, 2 naming the key (and the variable that set it) when not. Nothing is started.

use std::process::{Command, Stdio};

use ha_cluster_tests::pgwarden_binary;

const CONFIG: &str = "scope: demo
name: n1
restapi:
  listen: 127.0.0.1:8008
  connect_address: 127.0.0.1:8008
raft:
  data_dir: /nonexistent/raft
  self_addr: 127.0.0.1:2380
postgresql:
  listen: 127.0.0.1:5432
  connect_address: 127.0.0.1:5432
  data_dir: /nonexistent/pgdata
  bin_dir: /usr/lib/postgresql/15/bin
  authentication:
    superuser: {username: postgres}
    replication: {username: replicator}
";

/// Runs `pgwarden run --validate-config` on `text` with `env` → (exit code, stdout, stderr).
fn validate(text: &str, env: &[(&str, &str)]) -> anyhow::Result<(Option<i32>, String, String)> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("pgwarden.yml");
    std::fs::write(&path, text)?;
    let output = Command::new(pgwarden_binary()?)
        .args(["run", "--validate-config"])
        .arg(&path)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()?;
    Ok((
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

#[test]
fn a_valid_configuration_exits_0_and_a_refused_one_2_naming_the_key() -> anyhow::Result<()> {
    let (code, stdout, stderr) = validate(CONFIG, &[])?;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("is valid"), "{stdout}");

    let (code, _, stderr) = validate(CONFIG, &[("PATRONI_RESTAPI_LISTEN", "nowhere")])?;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("restapi.listen") && stderr.contains("PATRONI_RESTAPI_LISTEN"),
        "{stderr}"
    );

    let (code, _, stderr) = validate(&CONFIG.replace("scope: demo", "scope: a/b"), &[])?;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("scope"), "{stderr}");
    Ok(())
}
