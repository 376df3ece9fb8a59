//! User hooks on three `pgwarden run` members with real PostgreSQL 15: callbacks get
//! `<event> <role> <scope>` after their own arguments and their output reaches pgwarden's log;
//! a `pre_promote` that exits 1 keeps its node from becoming primary while another does;
//! REST restart and reload fire `on_restart` and `on_reload`.
//! The same cluster carries `max_connections: 30` in `bootstrap.dcs`: every member, the
//! bootstrapping primary included, runs with it and the replicas stream.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use ha_cluster_tests::{Cluster, ClusterOptions, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Appends `<node> $@` to `calls.log` and says so on stdout (for pgwarden's log).
const CALLBACK: &str = r#"#!/bin/sh
dir=$(dirname "$0")
node=$1
shift
echo "$node $*" >> "$dir/calls.log"
echo "callback output of $node"
"#;

/// Exits 1 while `deny-<node>` exists; records each call.
const PRE_PROMOTE: &str = r#"#!/bin/sh
dir=$(dirname "$0")
echo "$1 pre_promote" >> "$dir/calls.log"
if [ -e "$dir/deny-$1" ]; then
    echo "pre_promote refuses $1"
    exit 1
fi
exit 0
"#;

fn write_script(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("write {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// Hands `path` to the postgres OS user (hooks run as that user when the tests run as root).
fn give_to_postgres(path: &Path) -> anyhow::Result<()> {
    if nix::unistd::Uid::effective().is_root() {
        let user = nix::unistd::User::from_name("postgres")?.context("no postgres OS user")?;
        std::os::unix::fs::chown(path, Some(user.uid.as_raw()), Some(user.gid.as_raw()))?;
    }
    Ok(())
}

/// `POST path` with an empty body on a member's REST API → the status code.
async fn post(address: &str, path: &str) -> anyhow::Result<u16> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(address).await?;
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        anyhow::Ok(String::from_utf8_lossy(&response).into_owned())
    };
    let text = tokio::time::timeout(Duration::from_secs(120), exchange)
        .await
        .with_context(|| format!("POST {path} on {address}: no answer"))??;
    text.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("POST {path}: no status line in {text:?}"))
}

/// Waits until `calls.log` holds `line`.
async fn wait_call(hooks: &Path, line: String) -> anyhow::Result<()> {
    eventually(Duration::from_secs(30), || async {
        calls(hooks).contains(&line).then_some(())
    })
    .await
    .with_context(|| format!("{line:?} in {:?}", calls(hooks)))
}

fn calls(hooks: &Path) -> Vec<String> {
    std::fs::read_to_string(hooks.join("calls.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_pre_promote_and_cluster_wide_parameters() -> anyhow::Result<()> {
    let hooks_dir = tempfile::Builder::new()
        .prefix("pgwarden-hooks-")
        .tempdir()?;
    let hooks = hooks_dir.path();
    std::fs::set_permissions(hooks, std::fs::Permissions::from_mode(0o755))?;
    give_to_postgres(hooks)?;
    let callback = hooks.join("callback.sh");
    let pre_promote = hooks.join("pre promote.sh");
    write_script(&callback, CALLBACK)?;
    write_script(&pre_promote, PRE_PROMOTE)?;
    // Both nodes that may be promoted later start refused; one is let through below.
    let options = ClusterOptions {
        dcs_parameters_yaml: "max_connections: 30".to_owned(),
        postgresql_yaml: format!(
            "callbacks:\n  on_start: {cb} {{name}}\n  on_role_change: {cb} {{name}}\n  on_stop: {cb} {{name}}\n  on_restart: {cb} {{name}}\n  on_reload: {cb} {{name}}\npre_promote: \"'{pp}' {{name}}\"",
            cb = callback.display(),
            pp = pre_promote.display(),
        ),
        ..ClusterOptions::default()
    };
    let mut cluster = Cluster::start_with(3, options)?;
    let primary = cluster.wait_healthy(2, Duration::from_secs(120)).await?;
    let names: Vec<String> = cluster
        .nodes
        .iter()
        .map(|node| node.spec.name.clone())
        .collect();
    let name = |index: usize| names[index].clone();

    // `bootstrap.dcs` parameters that must match across the cluster: every member has them.
    for node in &cluster.nodes {
        let value = node.query("SHOW max_connections").await?;
        assert_eq!(value.as_deref(), Some("30"), "{}", node.spec.name);
    }

    // on_start with the role each member started in.
    let primary_name = name(primary);
    eventually(Duration::from_secs(30), || async {
        let calls = calls(hooks);
        (0..3)
            .all(|index| {
                let role = if index == primary {
                    "primary"
                } else {
                    "replica"
                };
                let line = format!("{} on_start {role} demo", name(index));
                calls.contains(&line)
            })
            .then_some(())
    })
    .await
    .with_context(|| format!("on_start of every member: {:?}", calls(hooks)))?;
    assert!(
        cluster.nodes[primary]
            .log()
            .contains(&format!("callback output of {primary_name}")),
        "callback stdout in pgwarden's log"
    );

    // Kill the primary with both replicas refused by pre_promote; once one of them has been
    // refused, let the other one through: it becomes primary, the refused one never does.
    let replicas: Vec<usize> = (0..3).filter(|index| *index != primary).collect();
    for index in &replicas {
        std::fs::write(hooks.join(format!("deny-{}", name(*index))), "")?;
    }
    cluster.nodes[primary].kill_hard();
    let refused = eventually(Duration::from_secs(60), || async {
        let calls = calls(hooks);
        replicas
            .iter()
            .copied()
            .find(|index| calls.contains(&format!("{} pre_promote", name(*index))))
    })
    .await
    .with_context(|| format!("a pre_promote attempt: {:?}", calls(hooks)))?;
    let allowed = replicas
        .iter()
        .copied()
        .find(|index| *index != refused)
        .context("two replicas")?;
    std::fs::remove_file(hooks.join(format!("deny-{}", name(allowed))))?;
    let new_primary = cluster
        .wait_writable(primary, Duration::from_secs(90))
        .await?;
    assert_eq!(new_primary, allowed, "the node pre_promote let through");
    let refused_name = name(refused);
    let allowed_name = name(allowed);
    eventually(Duration::from_secs(30), || async {
        calls(hooks)
            .contains(&format!("{allowed_name} on_role_change primary demo"))
            .then_some(())
    })
    .await
    .with_context(|| format!("on_role_change primary: {:?}", calls(hooks)))?;
    assert!(
        !calls(hooks).contains(&format!("{refused_name} on_role_change primary demo")),
        "{refused_name} was refused by pre_promote yet promoted: {:?}",
        calls(hooks)
    );
    assert!(
        !cluster.nodes[refused].accepts_writes().await,
        "{refused_name} refuses writes"
    );
    assert!(
        cluster.nodes[refused]
            .log()
            .contains(&format!("pre_promote refuses {refused_name}")),
        "pre_promote output in pgwarden's log"
    );

    // The refused node follows the new primary, still with the cluster-wide parameter.
    cluster
        .wait_streaming(refused, Duration::from_secs(90))
        .await?;
    assert_eq!(
        cluster.nodes[refused]
            .query("SHOW max_connections")
            .await?
            .as_deref(),
        Some("30")
    );
    // A REST restart fires on_restart with the unchanged role, a REST reload on_reload.
    let code = post(&cluster.nodes[refused].rest_address(), "/restart").await?;
    assert_eq!(code, 200, "POST /restart on {refused_name}");
    wait_call(hooks, format!("{refused_name} on_restart replica demo")).await?;
    let code = post(&cluster.nodes[allowed].rest_address(), "/reload").await?;
    assert_eq!(code, 202, "POST /reload on {allowed_name}");
    wait_call(hooks, format!("{allowed_name} on_reload primary demo")).await?;

    if std::env::var_os("PGWARDEN_TEST_LOGS").is_some() {
        println!("{}\n{:?}", cluster.logs(), calls(hooks));
    }
    Ok(())
}
