//! Three `pgwarden run` members over an external etcd cluster (`etcd3:`) of three
//! `pgwarden etcd` members: bootstrap, Patroni's keys in the external store, failover after a
//! kill -9 of the primary's node, and a primary that keeps its leader key when one etcd
//! member dies (the store keeps its quorum).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ha_cluster_tests::etcd::EtcdCluster;
use ha_cluster_tests::{Cluster, ClusterOptions};

/// The leader key's value and mod_revision in the external store.
async fn leader_key(client: &mut etcd_client::Client) -> anyhow::Result<Option<(String, i64)>> {
    let response = client.get("/service/demo/leader", None).await?;
    Ok(response.kvs().first().map(|kv| {
        (
            String::from_utf8_lossy(kv.value()).into_owned(),
            kv.mod_revision(),
        )
    }))
}

/// Index of the etcd member every running member names as the Raft leader.
async fn etcd_leader(etcd: &EtcdCluster) -> anyhow::Result<usize> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut ids = Vec::new();
        let mut leader = None;
        for member in &etcd.members {
            let mut client = etcd_client::Client::connect([member.endpoint()], None).await?;
            if let Ok(status) = client.status().await {
                ids.push(status.header().map_or(0, |header| header.member_id()));
                leader = Some(status.leader());
            }
        }
        if let Some(index) = leader.and_then(|leader| ids.iter().position(|id| *id == leader)) {
            return Ok(index);
        }
        if Instant::now() > deadline {
            bail!("the etcd members name no common leader");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_over_an_external_etcd_cluster() -> anyhow::Result<()> {
    // Phase 1: the external store, three `pgwarden etcd` members started with etcd's flags.
    let mut etcd = EtcdCluster::start(3, Duration::from_secs(30)).await?;

    // Phase 2: three nodes configured with `etcd3: {hosts: [...]}` bootstrap one primary and
    // two streaming replicas, exactly as over the embedded store.
    let started_at = Instant::now();
    let mut cluster = Cluster::start_with(
        3,
        ClusterOptions {
            etcd3_hosts: Some(etcd.hosts()),
            ..ClusterOptions::default()
        },
    )?;
    let primary = cluster.wait_healthy(2, Duration::from_secs(120)).await?;
    println!(
        "bootstrap over etcd3: one primary and two streaming replicas after {:.2?}",
        started_at.elapsed()
    );

    // Phase 3: Patroni's keys are in the external store.
    let mut client = etcd.client().await?;
    let (holder, _) = leader_key(&mut client)
        .await?
        .context("the leader key exists in the external store")?;
    assert_eq!(holder, cluster.nodes[primary].spec.name);
    for key in ["/service/demo/initialize", "/service/demo/config"] {
        let response = client.get(key, None).await?;
        assert_eq!(response.kvs().len(), 1, "{key} exists");
    }
    for node in &cluster.nodes {
        let key = format!("/service/demo/members/{}", node.spec.name);
        let response = client.get(key.as_str(), None).await?;
        let member = response
            .kvs()
            .first()
            .with_context(|| format!("{key} exists"))?;
        assert_ne!(member.lease(), 0, "{key} is bound to the member's lease");
        let data: serde_json::Value = serde_json::from_slice(member.value())?;
        assert!(data["conn_url"].is_string(), "{key}: {data}");
    }

    // Phase 4: kill -9 the primary's node; another node must accept writes.
    let killed_at = Instant::now();
    cluster.nodes[primary].kill_hard();
    let new_primary = cluster
        .wait_writable(primary, Duration::from_secs(30))
        .await?;
    println!(
        "failover over etcd3: node {new_primary} accepted writes {:.2?} after kill -9",
        killed_at.elapsed()
    );

    // Phase 5: kill -9 the etcd member leading the store's Raft group. The two survivors keep
    // the quorum: the new primary keeps renewing its leader key through them and stays
    // writable.
    let victim = etcd_leader(&etcd).await?;
    etcd.members[victim].kill();
    let killed_at = Instant::now();
    etcd.wait_ready(Duration::from_secs(30)).await?;
    let mut client = etcd.client().await?;
    let new_primary_name = cluster.nodes[new_primary].spec.name.clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut first_revision = None;
    loop {
        // A read may land on the dead member's endpoint; only a successful one counts.
        if let Ok(Ok(Some((holder, revision)))) =
            tokio::time::timeout(Duration::from_secs(2), leader_key(&mut client)).await
        {
            assert_eq!(
                holder, new_primary_name,
                "the leader key stays with the primary"
            );
            match first_revision {
                None => first_revision = Some(revision),
                // Renewed since the kill was noticed: the primary writes through the survivors.
                Some(first) if revision > first => break,
                Some(_) => {}
            }
        }
        if Instant::now() > deadline {
            bail!(
                "the leader key was not renewed after an etcd member died:\n{}\n{}",
                cluster.logs(),
                etcd.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        cluster.nodes[new_primary].accepts_writes().await,
        "the primary still accepts writes with one etcd member dead"
    );
    println!(
        "etcd member {} killed: the primary renewed its leader key and accepts writes {:.2?} later",
        etcd.members[victim].name,
        killed_at.elapsed()
    );
    let status = cluster.nodes[new_primary]
        .patroni()
        .await
        .context("the primary answers /patroni")?;
    assert_eq!(status["role"], "primary", "{status}");
    if std::env::var_os("PGWARDEN_TEST_LOGS").is_some() {
        println!("{}\n{}", cluster.logs(), etcd.logs());
    }
    Ok(())
}
