//! `pgwarden ctl` end to end against a live three-member cluster: list (pretty and JSON),
//! topology, show-config, edit-config (a reloadable parameter reaching every member, a refused
//! timing), pause/resume, dsn, history, version, confirmation refusal without --force, and a
//! switchover under the REST API.

use std::path::Path;
use std::time::{Duration, Instant};

use ha_cluster_tests::{Cluster, ctl};

fn ok(config: &Path, args: &[&str]) -> anyhow::Result<String> {
    let (code, stdout, stderr) = ctl(config, args)?;
    anyhow::ensure!(code == 0, "ctl {args:?} exited {code}: {stdout}{stderr}");
    Ok(stdout)
}

async fn eventually(what: &str, mut probe: impl AsyncFnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !probe().await {
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_commands_against_a_live_cluster() -> anyhow::Result<()> {
    let cluster = Cluster::start(3)?;
    let primary = cluster.wait_healthy(2, Duration::from_secs(120)).await?;
    let config = cluster.nodes[0].config_path().to_owned();
    let leader_name = cluster.nodes[primary].spec.name.clone();

    // list: the table and its JSON form agree on one leader and two streaming replicas.
    let mut listed = String::new();
    eventually("list shows two streaming replicas", async || {
        listed = ok(&config, &["list"]).unwrap_or_default();
        listed.matches("streaming").count() == 2
    })
    .await?;
    assert!(listed.starts_with("+ Cluster: demo ("), "{listed}");
    assert!(listed.contains("| Member |"), "{listed}");
    let rows: serde_json::Value = serde_json::from_str(&ok(&config, &["list", "-f", "json"])?)?;
    let rows = rows.as_array().cloned().unwrap_or_default();
    assert_eq!(rows.len(), 3, "{rows:?}");
    let leaders: Vec<&serde_json::Value> = rows.iter().filter(|r| r["Role"] == "Leader").collect();
    assert_eq!(leaders.len(), 1);
    assert_eq!(leaders[0]["Member"], leader_name.as_str());
    assert!(
        rows.iter()
            .all(|row| row["Cluster"] == "demo" && row["TL"] == 1)
    );

    // topology indents the replicas under the leader.
    let topology = ok(&config, &["topology"])?;
    assert_eq!(topology.matches("| + n").count(), 2, "{topology}");

    // dsn points at the primary's PostgreSQL.
    let dsn = ok(&config, &["dsn"])?;
    assert_eq!(
        dsn.trim(),
        format!(
            "host=127.0.0.1 port={}",
            cluster.nodes[primary].spec.pg_port
        )
    );

    // show-config / edit-config: a reloadable parameter reaches every member.
    assert!(ok(&config, &["show-config"])?.contains("wal_keep_size"));
    let changed = ok(&config, &["edit-config", "--pg", "work_mem=5MB", "--force"])?;
    assert!(
        changed.contains("+") && changed.contains("work_mem"),
        "{changed}"
    );
    assert!(ok(&config, &["show-config"])?.contains("work_mem: 5MB"));
    for node in &cluster.nodes {
        eventually(&format!("work_mem on {}", node.spec.name), async || {
            node.query("SHOW work_mem").await.ok().flatten().as_deref() == Some("5MB")
        })
        .await?;
    }
    // Impossible timings are refused before anything is written.
    let (code, _, stderr) = ctl(&config, &["edit-config", "--set", "ttl=2", "--force"])?;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("must not exceed ttl"), "{stderr}");
    assert!(!ok(&config, &["show-config"])?.contains("ttl: 2"));
    // Without --force and with nothing on standard input, nothing changes.
    let (code, _, stderr) = ctl(&config, &["edit-config", "--pg", "work_mem=6MB"])?;
    assert_eq!(code, 1, "{stderr}");
    assert!(ok(&config, &["show-config"])?.contains("work_mem: 5MB"));

    // pause / resume.
    assert!(ok(&config, &["pause"])?.contains("paused"));
    assert!(ok(&config, &["list"])?.contains("Maintenance mode: on"));
    let (code, _, stderr) = ctl(&config, &["pause"])?;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("already paused"), "{stderr}");
    // While paused, a crashed primary is neither restarted nor replaced.
    let crashed = cluster.nodes[primary].kill_postmaster();
    assert!(crashed.is_some());
    let watch_until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < watch_until {
        for node in &cluster.nodes {
            assert!(
                !node.accepts_writes().await,
                "{} accepts writes while paused after the crash",
                node.spec.name
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(ok(&config, &["resume"])?.contains("resumed"));
    assert!(!ok(&config, &["list"])?.contains("Maintenance mode"));
    // Resumed: the cluster heals.
    // (As Patroni does, the paused primary gave up the leader key when its PostgreSQL
    // stopped, so on resume a replica takes over and the old primary follows it.)
    let primary = cluster.wait_healthy(2, Duration::from_secs(60)).await?;
    let leader_name = cluster.nodes[primary].spec.name.clone();

    // restart / reload / reinit of a replica through the members' REST API.
    let replica = (primary + 1) % cluster.nodes.len();
    let replica_name = cluster.nodes[replica].spec.name.clone();
    let pid = cluster.nodes[replica].postmaster_pid();
    let restarted = ok(&config, &["restart", &replica_name, "--force"])?;
    assert!(
        restarted.contains("Success: restart on member"),
        "{restarted}"
    );
    assert_ne!(cluster.nodes[replica].postmaster_pid(), pid);
    let reloaded = ok(&config, &["reload", "--force"])?;
    assert_eq!(reloaded.matches("Success: reload").count(), 3, "{reloaded}");
    let (code, _, stderr) = ctl(&config, &["reinit", &leader_name, "--force"])?;
    assert_eq!(code, 1, "the leader cannot be reinitialized: {stderr}");
    let reinit = ok(&config, &["reinit", &replica_name, "--force", "--wait"])?;
    assert!(reinit.contains("running again"), "{reinit}");
    cluster
        .wait_streaming(replica, Duration::from_secs(60))
        .await?;

    // A cluster name that is not the scope is refused as a usage error.
    let (code, _, stderr) = ctl(&config, &["list", "other"])?;
    assert_eq!(code, 2, "{stderr}");

    // version reports every member.
    let version = ok(&config, &["version"])?;
    assert!(version.contains("pgwarden ctl version"), "{version}");
    assert_eq!(version.matches("PostgreSQL 15").count(), 3, "{version}");

    // switchover to a named replica through the leader's REST API.
    let candidate = cluster
        .nodes
        .iter()
        .map(|node| node.spec.name.clone())
        .find(|name| *name != leader_name)
        .unwrap_or_default();
    let (code, _, stderr) = ctl(&config, &["switchover", "--candidate", &candidate])?;
    assert_eq!(code, 1, "refused without confirmation: {stderr}");
    let switched = ok(
        &config,
        &[
            "switchover",
            "--leader",
            &leader_name,
            "--candidate",
            &candidate,
            "--force",
        ],
    )?;
    assert!(switched.contains(&candidate), "{switched}");
    let new_primary = cluster.wait_healthy(2, Duration::from_secs(60)).await?;
    assert_eq!(cluster.nodes[new_primary].spec.name, candidate);
    let history: serde_json::Value =
        serde_json::from_str(&ok(&config, &["history", "-f", "json"])?)?;
    let entries = history.as_array().cloned().unwrap_or_default();
    assert_eq!(
        entries.last().map(|entry| entry["New Leader"].clone()),
        Some(serde_json::json!(candidate)),
        "{history}"
    );

    // failover to a chosen replica.
    let target = cluster
        .nodes
        .iter()
        .map(|node| node.spec.name.clone())
        .find(|name| *name != candidate)
        .unwrap_or_default();
    let (code, _, stderr) = ctl(&config, &["failover"])?;
    assert_eq!(code, 2, "failover needs --candidate: {stderr}");
    let failed_over = ok(&config, &["failover", "--candidate", &target, "--force"])?;
    assert!(failed_over.contains(&target), "{failed_over}");
    let new_primary = cluster.wait_healthy(2, Duration::from_secs(60)).await?;
    assert_eq!(cluster.nodes[new_primary].spec.name, target);
    Ok(())
}
