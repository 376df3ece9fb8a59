//! A replica must stream again once its leader's member key (the `conn_url` it streams from)
//! is back in the store, however it went missing.
//!
//! The leader's `members/<name>` key can be absent while its leader key stands: the leader
//! re-took its key under a new lease after the store expired the old one (packet loss), or an
//! operator deleted it. A replica that starts (or repoints) in that window has no address to
//! stream from. It starts PostgreSQL without `primary_conninfo`, and must not record that it
//! follows the leader: the next cycles repoint it as soon as the leader republishes its key,
//! which the leader does on the first cycle that reads the store without it.
//!
//! Three `pgwarden run` members over one external `pgwarden etcd` member, so the primary's
//! agent can be frozen while the store keeps answering.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ha_cluster_tests::etcd::EtcdCluster;
use ha_cluster_tests::{Cluster, ClusterOptions};

const MEMBERS: &str = "/service/demo/members/";

async fn member_key_present(client: &mut etcd_client::Client, name: &str) -> anyhow::Result<bool> {
    let response = client.get(format!("{MEMBERS}{name}"), None).await?;
    Ok(!response.kvs().is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_started_without_its_leaders_address_streams_once_the_key_is_back()
-> anyhow::Result<()> {
    let etcd = EtcdCluster::start(1, Duration::from_secs(30)).await?;
    let mut cluster = Cluster::start_with(
        3,
        ClusterOptions {
            etcd3_hosts: Some(etcd.hosts()),
            // A long lease: the primary's agent stays frozen while a replica starts.
            dcs_yaml: "ttl: 30".to_owned(),
            ..ClusterOptions::default()
        },
    )?;
    let primary = cluster.wait_healthy(2, Duration::from_secs(120)).await?;
    let replica = (primary + 1) % cluster.nodes.len();
    let primary_name = cluster.nodes[primary].spec.name.clone();
    let mut client = etcd.client().await?;

    // The replica goes down; the primary's agent hangs (PostgreSQL keeps running); its member
    // key disappears from the store while its leader key stands.
    cluster.nodes[replica].kill_hard();
    anyhow::ensure!(
        cluster.nodes[primary].freeze(),
        "the primary's agent is not running"
    );
    let frozen_at = Instant::now();
    client
        .delete(format!("{MEMBERS}{primary_name}"), None)
        .await
        .context("delete the primary's member key")?;

    // The replica starts while the leader's address is unknown: PostgreSQL runs, in recovery,
    // with nobody to stream from.
    cluster.nodes[replica].start()?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = cluster.nodes[replica].patroni().await
            && status["state"] == "running"
        {
            println!(
                "replica running without the leader's address: {}",
                status["replication_state"]
            );
            break;
        }
        if Instant::now() > deadline {
            cluster.nodes[primary].thaw();
            bail!(
                "the replica's PostgreSQL did not start within 20 s:\n{}",
                cluster.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::ensure!(
        !member_key_present(&mut client, &primary_name).await?,
        "the frozen primary's member key came back by itself"
    );
    cluster.nodes[primary].thaw();
    println!("primary frozen for {:.2?}", frozen_at.elapsed());

    // The primary republishes its member key, and the replica streams from it.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !member_key_present(&mut client, &primary_name).await? {
        if Instant::now() > deadline {
            bail!(
                "the primary did not republish its member key:\n{}",
                cluster.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster
        .wait_streaming(replica, Duration::from_secs(30))
        .await?;
    let status = cluster.nodes[primary]
        .patroni()
        .await
        .context("the primary's REST API does not answer")?;
    anyhow::ensure!(
        status["role"] == "primary",
        "the primary changed during the test: {status}"
    );
    Ok(())
}

/// `/config` changes while the leader's member key is missing: the replica must not write a
/// configuration without `primary_conninfo` (it would stop streaming while its agent goes on
/// believing it follows the leader, for good). It applies the change once the address is
/// back, and streams throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_change_while_the_leaders_address_is_missing_keeps_the_replica_streaming()
-> anyhow::Result<()> {
    let etcd = EtcdCluster::start(1, Duration::from_secs(30)).await?;
    let cluster = Cluster::start_with(
        2,
        ClusterOptions {
            etcd3_hosts: Some(etcd.hosts()),
            // A long lease: the primary's agent stays frozen while the replica cycles.
            dcs_yaml: "ttl: 30".to_owned(),
            ..ClusterOptions::default()
        },
    )?;
    let primary = cluster.wait_healthy(1, Duration::from_secs(120)).await?;
    let replica = 1 - primary;
    let primary_name = cluster.nodes[primary].spec.name.clone();
    let mut client = etcd.client().await?;

    anyhow::ensure!(
        cluster.nodes[primary].freeze(),
        "the primary's agent is not running"
    );
    client
        .delete(format!("{MEMBERS}{primary_name}"), None)
        .await
        .context("delete the primary's member key")?;
    // A cluster-wide parameter changes while the address is unknown; the replica's next
    // cycles see it.
    let (exit, stdout, stderr) = ha_cluster_tests::ctl(
        cluster.nodes[replica].config_path(),
        &["edit-config", "-p", "work_mem=5MB", "--force"],
    )?;
    if exit != 0 {
        cluster.nodes[primary].thaw();
        bail!("edit-config: {stdout}{stderr}");
    }
    // A few of the replica's cycles pass with the address missing.
    tokio::time::sleep(Duration::from_secs(4)).await;
    anyhow::ensure!(
        !member_key_present(&mut client, &primary_name).await?,
        "the frozen primary's member key came back by itself"
    );
    cluster.nodes[primary].thaw();

    cluster
        .wait_streaming(replica, Duration::from_secs(30))
        .await
        .with_context(|| format!("the replica stopped streaming:\n{}", cluster.logs()))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let work_mem = cluster.nodes[replica].query("SHOW work_mem").await?;
        if work_mem.as_deref() == Some("5MB") {
            break;
        }
        if Instant::now() > deadline {
            bail!("work_mem on the replica: {work_mem:?}\n{}", cluster.logs());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}
