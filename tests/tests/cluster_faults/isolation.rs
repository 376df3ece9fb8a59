//! A member cut off from the majority (the other two SIGSTOPped) answers linearizable reads and
//! writes with an error within the client timeout, never with possibly stale data; serializable
//! reads still answer from its local state. Checked for an isolated leader and an isolated follower.

use std::time::Duration;
use std::time::Instant;

use anyhow::ensure;
use etcd_client::GetOptions;
use pgwarden_tests::Cluster;
use pgwarden_tests::cluster::CLIENT_TIMEOUT;
use pgwarden_tests::eventually;
use tracing::info;

pgwarden_tests::against_both_targets!(pgwarden_tests::ClusterOptions::members(3) => isolated_member_refuses_linearizable_requests);

/// The client's own timeout plus a margin: an answer must come (as an error) by then.
const ANSWER_BOUND: Duration = Duration::from_secs(CLIENT_TIMEOUT.as_secs() + 3);

async fn isolated_member_refuses_linearizable_requests(
    cluster: &mut Cluster,
) -> anyhow::Result<()> {
    let leader = cluster.leader_index().await?;
    check_isolated(cluster, "leader", leader).await?;
    // Leadership may have moved while the first leader was isolated: pick a current follower.
    let leader = cluster.leader_index().await?;
    let follower = (leader + 1) % cluster.len();
    check_isolated(cluster, "follower", follower).await
}

async fn check_isolated(cluster: &mut Cluster, phase: &str, isolated: usize) -> anyhow::Result<()> {
    let target = cluster.target;
    let mut client = cluster.member_client(isolated).await?;
    let value = format!("before-isolating-{phase}");
    eventually("a write before the fault", Duration::from_secs(30), || {
        let mut client = client.clone();
        let value = value.clone();
        async move { Ok(client.put("k", value, None).await?) }
    })
    .await?;
    // The isolated member must have applied the write before its peers stop.
    eventually("the write applied locally", Duration::from_secs(10), || {
        let mut client = client.clone();
        let value = value.clone();
        async move {
            let local = client
                .get("k", Some(GetOptions::new().with_serializable()))
                .await?;
            ensure!(local.kvs().first().map(|kv| kv.value()) == Some(value.as_bytes()));
            Ok(())
        }
    })
    .await?;

    info!(phase, isolated, "SIGSTOP the other two members");
    let mut guards = Vec::new();
    for index in (0..cluster.len()).filter(|&i| i != isolated) {
        guards.push(cluster.member(index).pause()?);
    }

    let started = Instant::now();
    let read = tokio::time::timeout(ANSWER_BOUND, client.get("k", None)).await;
    let read_took = started.elapsed();
    eprintln!(
        "{target}: isolated {phase}: linearizable get answered after {read_took:?}: {read:?}"
    );
    ensure!(read.is_ok(), "no answer within {ANSWER_BOUND:?}");
    ensure!(
        matches!(read, Ok(Err(_))),
        "must refuse, not serve possibly stale data: {read:?}"
    );

    let started = Instant::now();
    let write = tokio::time::timeout(ANSWER_BOUND, client.put("k", "isolated", None)).await;
    eprintln!(
        "{target}: isolated {phase}: put answered after {:?}: {write:?}",
        started.elapsed()
    );
    ensure!(
        matches!(write, Ok(Err(_))),
        "a put without a majority must fail: {write:?}"
    );

    let local = client
        .get("k", Some(GetOptions::new().with_serializable()))
        .await?;
    ensure!(
        local.kvs().first().map(|kv| kv.value()) == Some(value.as_bytes()),
        "serializable reads answer from local state: {local:?}"
    );

    info!(phase, "SIGCONT the others; the cluster serves again");
    drop(guards);
    eventually(
        "linearizable service after the fault",
        Duration::from_secs(30),
        || {
            let mut client = client.clone();
            async move {
                client.put("k", "healed", None).await?;
                let read = client.get("k", None).await?;
                ensure!(read.kvs().first().map(|kv| kv.value()) == Some(b"healed".as_slice()));
                Ok(())
            }
        },
    )
    .await?;
    Ok(())
}
