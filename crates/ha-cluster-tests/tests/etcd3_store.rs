//! Three `pgwarden run` members over an external etcd cluster (`etcd3:`) of three
//! `pgwarden etcd` members: bootstrap, Patroni's keys in the external store, failover after a
//! kill -9 of the primary's node, and a primary that keeps its leader key while one etcd
//! member hangs (SIGSTOP) and after one dies (the store keeps its quorum).

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
        // Each member's own ID and the leader it names (`None`: it did not answer).
        let mut ids = Vec::new();
        let mut leader = None;
        for member in &etcd.members {
            let status = async {
                let mut client = etcd_client::Client::connect([member.endpoint()], None).await?;
                client.status().await
            };
            match tokio::time::timeout(Duration::from_secs(2), status).await {
                Ok(Ok(status)) => {
                    ids.push(status.header().map(|header| header.member_id()));
                    leader = Some(status.leader());
                }
                _ => ids.push(None),
            }
        }
        if let Some(index) = leader.and_then(|leader| ids.iter().position(|id| *id == Some(leader)))
        {
            return Ok(index);
        }
        if Instant::now() > deadline {
            bail!("the etcd members name no common leader");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A client of every etcd member but `skip` (the test's own reads avoid the member it hung
/// or killed).
async fn client_without(etcd: &EtcdCluster, skip: usize) -> anyhow::Result<etcd_client::Client> {
    let endpoints: Vec<String> = etcd
        .members
        .iter()
        .enumerate()
        .filter(|(index, _)| *index != skip)
        .map(|(_, member)| member.endpoint())
        .collect();
    Ok(etcd_client::Client::connect(endpoints, None).await?)
}

/// Moves the store's Raft leadership off member `index` if it holds it.
async fn move_raft_leader_off(etcd: &EtcdCluster, index: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while etcd_leader(etcd).await? == index {
        let target = (index + 1) % etcd.members.len();
        let mut target_client =
            etcd_client::Client::connect([etcd.members[target].endpoint()], None).await?;
        let target_id = target_client
            .status()
            .await?
            .header()
            .map_or(0, |header| header.member_id());
        let mut leader_client =
            etcd_client::Client::connect([etcd.members[index].endpoint()], None).await?;
        if let Err(error) = leader_client.move_leader(target_id).await {
            println!("moving the Raft leadership failed, retrying: {error}");
        }
        if Instant::now() > deadline {
            bail!("the Raft leadership stayed on {}", etcd.members[index].name);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// Waits until the leader key has been renewed `renewals` times, checking at every read that
/// node `primary` still holds it and still reports itself primary.
async fn leader_renewals(
    client: &mut etcd_client::Client,
    cluster: &Cluster,
    etcd: &EtcdCluster,
    primary: usize,
    renewals: usize,
) -> anyhow::Result<()> {
    let name = cluster.nodes[primary].spec.name.clone();
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut last_revision = None;
    let mut seen = 0;
    while seen < renewals {
        // Reads during an etcd election may fail; only answers count.
        if let Ok(Ok(Some((holder, revision)))) =
            tokio::time::timeout(Duration::from_secs(2), leader_key(client)).await
        {
            if holder != name {
                bail!(
                    "the leader key moved from {name} to {holder}:\n{}\n{}",
                    cluster.logs(),
                    etcd.logs()
                );
            }
            if last_revision.is_some_and(|last| revision > last) {
                seen += 1;
            }
            last_revision = Some(revision);
            if let Some(status) = cluster.nodes[primary].patroni().await
                && status["role"] != "primary"
            {
                bail!(
                    "{name} stopped being the primary: {status}\n{}\n{}",
                    cluster.logs(),
                    etcd.logs()
                );
            }
        }
        if Instant::now() > deadline {
            bail!(
                "the leader key was renewed {seen} of {renewals} times:\n{}\n{}",
                cluster.logs(),
                etcd.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
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

    // The promotion's cycle ends with the new primary reporting itself primary.
    let deadline = Instant::now() + Duration::from_secs(30);
    while cluster.nodes[new_primary]
        .patroni()
        .await
        .is_none_or(|status| status["role"] != "primary")
    {
        if Instant::now() > deadline {
            bail!(
                "node {new_primary} never reported role primary:\n{}",
                cluster.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Phase 5: the first listed etcd member, the one every node starts with, hangs
    // (SIGSTOP: its connections stay open, it answers nothing). The nodes move to the other
    // members: the primary keeps renewing its leader key and stays the primary. The store's
    // Raft leadership is moved off that member first: a hung Raft leader stalls every member
    // until the others elect a new one, which pgwarden's 5 s ttl does not always absorb.
    move_raft_leader_off(&etcd, 0).await?;
    let hung = etcd.members[0].pause()?;
    let hung_at = Instant::now();
    let mut client = client_without(&etcd, 0).await?;
    leader_renewals(&mut client, &cluster, &etcd, new_primary, 8).await?;
    println!(
        "etcd member {} hung: the primary renewed its leader key 8 times and stayed primary ({:.2?})",
        etcd.members[0].name,
        hung_at.elapsed()
    );
    drop(hung);
    etcd.wait_ready(Duration::from_secs(30)).await?;

    // Phase 6: kill -9 the etcd member leading the store's Raft group. The two survivors keep
    // the quorum: the primary keeps renewing its leader key through them and stays writable.
    let victim = etcd_leader(&etcd).await?;
    etcd.members[victim].kill();
    let killed_at = Instant::now();
    let mut client = client_without(&etcd, victim).await?;
    leader_renewals(&mut client, &cluster, &etcd, new_primary, 3).await?;
    assert!(
        cluster.nodes[new_primary].accepts_writes().await,
        "the primary still accepts writes with one etcd member dead"
    );
    println!(
        "etcd member {} (Raft leader) killed: the primary renewed its leader key and accepts writes {:.2?} later",
        etcd.members[victim].name,
        killed_at.elapsed()
    );
    if std::env::var_os("PGWARDEN_TEST_LOGS").is_some() {
        println!("{}\n{}", cluster.logs(), etcd.logs());
    }
    Ok(())
}
