//! SIGKILL the Raft leader: the survivors take writes again, no acknowledged write is lost, and the
//! restarted member catches up.

use std::time::Duration;
use std::time::Instant;

use anyhow::Context;
use anyhow::ensure;
use etcd_client::GetOptions;
use pgwarden_tests::Cluster;
use pgwarden_tests::eventually;
use tracing::info;

use crate::recorder::Recorder;

pgwarden_tests::against_both_targets!(pgwarden_tests::ClusterOptions::members(3) => leader_kill_failover_and_catch_up);

/// A generous bound: the point is "the survivors recover", not how fast (benchmarks carry speed).
const FAILOVER_BOUND: Duration = Duration::from_secs(10);
const WRITES_TIMEOUT: Duration = Duration::from_secs(60);

async fn leader_kill_failover_and_catch_up(cluster: &mut Cluster) -> anyhow::Result<()> {
    let target = cluster.target;
    let leader = cluster.leader_index().await?;
    let survivors: Vec<usize> = (0..cluster.len()).filter(|&i| i != leader).collect();
    let mut everyone = Vec::new();
    for index in 0..cluster.len() {
        everyone.push(cluster.member_client(index).await?);
    }
    let mut recorder = Recorder::new("seq");

    info!("phase 1: writes through every member before the fault");
    recorder.put_many(&mut everyone, 30, WRITES_TIMEOUT).await?;

    info!(
        leader,
        "phase 2: SIGKILL the leader; the survivors must take writes again"
    );
    let mut survivor_clients = Vec::new();
    for &index in &survivors {
        survivor_clients.push(cluster.member_client(index).await?);
    }
    let killed_at = Instant::now();
    cluster.member_mut(leader).kill();
    recorder
        .put_many(&mut survivor_clients, 1, WRITES_TIMEOUT)
        .await?;
    let recovery = killed_at.elapsed();
    eprintln!("{target}: first acknowledged write {recovery:?} after SIGKILL of the leader");
    ensure!(
        recovery < FAILOVER_BOUND,
        "survivors took {recovery:?} to accept a write"
    );
    let last_revision = recorder
        .put_many(&mut survivor_clients, 30, WRITES_TIMEOUT)
        .await?;
    recorder
        .verify_no_acknowledged_write_lost(&mut survivor_clients[0])
        .await?;
    eprintln!(
        "{target}: {} of {} writes acknowledged, none lost",
        recorder.acknowledged(),
        recorder.history.len()
    );

    info!("phase 3: restart the killed member; its local reads reach the others' revision");
    cluster.restart(leader)?;
    let mut restarted = cluster.member_client(leader).await?;
    let expected_keys = survivor_clients[0]
        .get(
            "seq/",
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await?
        .count();
    let restarted_at = Instant::now();
    eventually(
        "the restarted member to catch up",
        Duration::from_secs(30),
        || {
            let mut restarted = restarted.clone();
            async move {
                let local = restarted
                    .get(
                        "seq/",
                        Some(
                            GetOptions::new()
                                .with_prefix()
                                .with_count_only()
                                .with_serializable(),
                        ),
                    )
                    .await?;
                let revision = local.header().context("header")?.revision();
                ensure!(
                    revision >= last_revision,
                    "at revision {revision}, want {last_revision}"
                );
                ensure!(
                    local.count() == expected_keys,
                    "{} keys, want {expected_keys}",
                    local.count()
                );
                Ok(())
            }
        },
    )
    .await?;
    eprintln!(
        "{target}: restarted member caught up in {:?}",
        restarted_at.elapsed()
    );
    recorder
        .verify_no_acknowledged_write_lost(&mut restarted)
        .await?;
    Ok(())
}
