//! `watchdog: {mode: required}` on a node whose device cannot be opened: that node never
//! becomes primary — not by bootstrapping a new cluster, not as the only failover candidate —
//! and it does as soon as the device exists (so the refusal was the watchdog's doing).
//!
//! Every node's device is `{dir}/wd`, a plain file (the watchdog crate's file mode: writes
//! stand in for the ioctls). A node without that file has an unusable required watchdog.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use std::time::Duration;

use ha_cluster_tests::etcd::EtcdCluster;
use ha_cluster_tests::{Cluster, ClusterOptions, Node, eventually};

const REQUIRED: &str = "watchdog:\n  mode: required\n  device: {dir}/wd";

/// Gives `node` a usable watchdog device.
fn create_device(node: &Node) {
    std::fs::write(node.spec.dir.join("wd"), b"").unwrap();
}

async fn key(client: &mut etcd_client::Client, name: &str) -> Option<String> {
    let response = client
        .get(format!("/service/demo/{name}"), None)
        .await
        .ok()?;
    response
        .kvs()
        .first()
        .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
}

/// Waits until `node`'s `/patroni` reports the required watchdog failed and its last decision
/// message contains `message`.
async fn wait_refusing(node: &Node, message: &str) -> anyhow::Result<serde_json::Value> {
    eventually(Duration::from_secs(60), || async {
        let status = node.patroni().await?;
        let refusing = status["watchdog_failed"] == serde_json::json!(true)
            && status["message"]
                .as_str()
                .is_some_and(|m| m.contains(message));
        refusing.then_some(status)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_node_does_not_bootstrap_without_its_required_watchdog() -> anyhow::Result<()> {
    let cluster = Cluster::start_with(
        1,
        ClusterOptions {
            node_yaml: REQUIRED.to_owned(),
            ..ClusterOptions::default()
        },
    )?;
    let node = &cluster.nodes[0];
    let status = wait_refusing(node, "not bootstrapping")
        .await
        .map_err(|error| {
            anyhow::anyhow!(
                "{error}: the node never refused to bootstrap:\n{}",
                cluster.logs()
            )
        })?;
    println!("refusing to bootstrap: {}", status["message"]);
    let mut client =
        etcd_client::Client::connect([format!("http://127.0.0.1:{}", node.spec.etcd_port)], None)
            .await?;
    assert_eq!(
        key(&mut client, "initialize").await,
        None,
        "no bootstrap claim"
    );
    assert_eq!(key(&mut client, "leader").await, None, "no leader key");
    assert!(
        postgres_data_is_empty(node),
        "no initdb ran in {}",
        node.spec.data_dir().display()
    );

    // The same node with a usable device bootstraps and arms it.
    create_device(node);
    cluster.wait_healthy(0, Duration::from_secs(120)).await?;
    assert_eq!(key(&mut client, "leader").await.as_deref(), Some("n1"));
    // File mode writes from offset 0 on every open: what is left is the arming as primary
    // (`T<secs>` and keepalives), not followed by a magic close.
    let written = std::fs::read_to_string(node.spec.dir.join("wd"))?;
    assert!(
        written.starts_with('T') && !written.ends_with('V'),
        "armed as primary: {written:?}"
    );
    Ok(())
}

fn postgres_data_is_empty(node: &Node) -> bool {
    std::fs::read_dir(node.spec.data_dir()).map_or(true, |mut entries| entries.next().is_none())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_only_failover_candidate_does_not_promote_without_its_required_watchdog()
-> anyhow::Result<()> {
    // The store is external, so two of the three members can die and it keeps its quorum.
    let etcd = EtcdCluster::start(3, Duration::from_secs(30)).await?;
    let mut cluster = Cluster::start_with(
        3,
        ClusterOptions {
            etcd3_hosts: Some(etcd.hosts()),
            node_yaml: REQUIRED.to_owned(),
            ..ClusterOptions::default()
        },
    )?;
    // n2 and n3 have usable devices; n1 never has one until the last phase.
    create_device(&cluster.nodes[1]);
    create_device(&cluster.nodes[2]);
    let primary = cluster.wait_healthy(2, Duration::from_secs(180)).await?;
    anyhow::ensure!(
        primary != 0,
        "n1 became primary without its required watchdog"
    );
    let status = cluster.nodes[0].patroni().await.unwrap_or_default();
    assert_eq!(
        status["watchdog_failed"],
        serde_json::json!(true),
        "{status}"
    );
    println!(
        "n{} is primary; n1 is a replica reporting watchdog_failed",
        primary + 1
    );

    // Leave n1 as the only candidate: the other replica dies, then the primary.
    let other = 3 - primary;
    cluster.nodes[other].kill_hard();
    cluster.nodes[primary].kill_hard();
    let mut client = etcd.client().await?;
    let mut watched = client.clone();
    eventually(Duration::from_secs(60), || {
        let mut client = watched.clone();
        async move { key(&mut client, "leader").await.is_none().then_some(()) }
    })
    .await?;
    let status = wait_refusing(&cluster.nodes[0], "watchdog is not usable").await?;
    println!("leader key gone; n1 refuses: {}", status["message"]);
    assert_eq!(
        key(&mut watched, "leader").await,
        None,
        "n1 took no leader key"
    );
    assert!(
        !cluster.nodes[0].accepts_writes().await,
        "n1 does not accept writes"
    );

    // With a usable device the same node takes over: the watchdog was the only obstacle.
    create_device(&cluster.nodes[0]);
    let promoted = cluster
        .wait_writable(primary, Duration::from_secs(60))
        .await?;
    assert_eq!(promoted, 0);
    assert_eq!(key(&mut client, "leader").await.as_deref(), Some("n1"));
    Ok(())
}
