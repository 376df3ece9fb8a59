//! A member stopped with SIGTERM misses several snapshots' worth of writes, restarts, and catches up
//! (by snapshot when the leader purged the log it needs).

use std::time::Duration;
use std::time::Instant;

use anyhow::Context;
use anyhow::ensure;
use etcd_client::GetOptions;
use pgwarden_tests::Cluster;
use pgwarden_tests::Target;
use pgwarden_tests::eventually;
use tracing::info;

use crate::recorder::Recorder;

pgwarden_tests::against_both_targets!(
    pgwarden_tests::ClusterOptions::members(3).snapshot_count(20) => sigterm_then_catch_up_past_snapshots,
);

async fn sigterm_then_catch_up_past_snapshots(cluster: &mut Cluster) -> anyhow::Result<()> {
    let target = cluster.target;
    let leader = cluster.leader_index().await?;
    let stopped = (leader + 1) % cluster.len();
    let mut writers = Vec::new();
    for index in (0..cluster.len()).filter(|&i| i != stopped) {
        writers.push(cluster.member_client(index).await?);
    }

    info!(stopped, "phase 1: SIGTERM a follower; it stops gracefully");
    let status = cluster.member_mut(stopped).terminate()?;
    eprintln!("{target}: follower exited after SIGTERM with {status}");
    if target == Target::Pgwarden {
        // etcd re-raises the signal after its cleanup; pgwarden's graceful stop exits 0.
        ensure!(status.success(), "graceful stop must exit 0: {status}");
    }

    info!("phase 2: write past several snapshots (snapshot-count 20) while it is down");
    let mut recorder = Recorder::new("snap");
    let last_revision = recorder
        .put_many(&mut writers, 200, Duration::from_secs(120))
        .await?;

    info!("phase 3: restart it; its local reads reach the others' state");
    cluster.restart(stopped)?;
    let mut restarted = cluster.member_client(stopped).await?;
    let restarted_at = Instant::now();
    eventually(
        "the restarted member to catch up",
        Duration::from_secs(30),
        || {
            let mut restarted = restarted.clone();
            async move {
                let local = restarted
                    .get(
                        "snap/",
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
                ensure!(local.count() == 200, "{} keys", local.count());
                Ok(())
            }
        },
    )
    .await?;
    eprintln!(
        "{target}: caught up in {:?} after restart",
        restarted_at.elapsed()
    );
    recorder
        .verify_no_acknowledged_write_lost(&mut restarted)
        .await?;

    // The caught-up member holds the same history as the others.
    let hashes = eventually("equal hashes", Duration::from_secs(15), || async {
        let mut hashes = Vec::new();
        for index in 0..cluster.len() {
            hashes.push(
                cluster
                    .member_client(index)
                    .await?
                    .hash_kv(last_revision)
                    .await?
                    .hash(),
            );
        }
        ensure!(
            hashes.windows(2).all(|pair| pair[0] == pair[1]),
            "{hashes:?}"
        );
        Ok(hashes)
    })
    .await?;
    info!(?hashes, "hashkv equal on every member");
    Ok(())
}
