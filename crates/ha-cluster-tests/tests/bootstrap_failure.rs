//! A bootstrap that fails (here initdb refuses a `bootstrap.initdb` locale that does not
//! exist) is undone as Patroni undoes it: the data directory emptied and the `/initialize`
//! claim released, so that a member with a working configuration can bootstrap; then
//! `pgwarden run` stops with an error naming the failure, rather than waiting forever for a
//! leader that its own claim keeps from appearing.

use std::time::Duration;

use anyhow::Context;
use ha_cluster_tests::{Cluster, ClusterOptions, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_bootstrap_is_undone_and_stops_the_member() -> anyhow::Result<()> {
    let mut cluster = Cluster::start_with(
        1,
        ClusterOptions {
            bootstrap_yaml: "initdb: [{locale: xx_NOWHERE.UTF-8}]".to_owned(),
            ..ClusterOptions::default()
        },
    )?;
    eventually(Duration::from_secs(60), || {
        let running = cluster.nodes[0].is_running();
        async move { (!running).then_some(()) }
    })
    .await
    .with_context(|| format!("pgwarden run did not stop:\n{}", cluster.logs()))?;
    let node = &cluster.nodes[0];
    let log = node.log();
    assert!(
        log.contains("bootstrap failed") && log.contains("initialize key released"),
        "{log}"
    );
    let data_dir = node.spec.data_dir();
    let left = std::fs::read_dir(&data_dir)
        .map(|entries| entries.count())
        .unwrap_or(0);
    assert_eq!(left, 0, "{} not emptied", data_dir.display());
    Ok(())
}
