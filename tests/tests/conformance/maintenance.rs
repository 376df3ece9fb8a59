//! Maintenance: status, alarms, defragment, hashkv across members, snapshot stream, move leader.

use anyhow::Context;
use anyhow::ensure;
use etcd_client::AlarmAction;
use etcd_client::AlarmType;
use pgwarden_tests::Cluster;
use pgwarden_tests::eventually;
use pgwarden_tests::grpc::expect_status;
use sha2::Digest;
use sha2::Sha256;
use std::time::Duration;
use tonic::Code;

mod single {
    use super::*;
    pgwarden_tests::against_both_targets!(1 => status_alarm_defragment, snapshot_stream);
}

mod three {
    use super::*;
    pgwarden_tests::against_both_targets!(3 => hashkv_equal_across_members, move_leader);
}

async fn status_alarm_defragment(cluster: &mut Cluster) -> anyhow::Result<()> {
    let mut client = cluster.client().await?;
    client.put("s", "1", None).await?;
    let status = client.status().await?;
    let header = status.header().context("header")?;
    ensure!(!status.version().is_empty(), "{status:?}");
    ensure!(
        status.db_size() > 0 && status.raft_used_db_size() > 0,
        "{status:?}"
    );
    ensure!(
        status.leader() == header.member_id(),
        "a single member leads itself"
    );
    ensure!(status.raft_term() >= 1 && status.raft_index() >= 1);
    ensure!(status.raft_applied_index() >= 1 && status.raft_applied_index() <= status.raft_index());
    ensure!(
        !status.is_learner() && status.errors().is_empty(),
        "{status:?}"
    );
    ensure!(header.revision() == 2);

    let alarms = client
        .alarm(AlarmAction::Get, AlarmType::None, None)
        .await?;
    ensure!(alarms.alarms().is_empty(), "{alarms:?}");
    client.defragment().await?;
    ensure!(client.get("s", None).await?.kvs()[0].value() == b"1");
    Ok(())
}

async fn snapshot_stream(cluster: &mut Cluster) -> anyhow::Result<()> {
    let mut client = cluster.client().await?;
    for i in 0..50 {
        client
            .put(format!("snap/{i}"), vec![b'x'; 100], None)
            .await?;
    }
    let mut stream = client.snapshot().await?;
    let mut bytes = Vec::new();
    let mut last_remaining = None;
    while let Some(chunk) = stream.message().await? {
        bytes.extend_from_slice(chunk.blob());
        last_remaining = Some(chunk.remaining_bytes());
    }
    ensure!(
        last_remaining == Some(0),
        "the last message has remaining_bytes 0"
    );
    // etcdctl's check: the data is a multiple of 512 bytes and a SHA-256 trailer follows it.
    ensure!(
        bytes.len() % 512 == 32 && bytes.len() > 32,
        "size {}",
        bytes.len()
    );
    let (data, trailer) = bytes.split_at(bytes.len() - 32);
    ensure!(
        Sha256::digest(data).as_slice() == trailer,
        "the trailer is the data's SHA-256"
    );
    Ok(())
}

async fn hashkv_equal_across_members(cluster: &mut Cluster) -> anyhow::Result<()> {
    let mut client = cluster.client().await?;
    for i in 0..20 {
        client.put(format!("h/{i}"), format!("{i}"), None).await?;
    }
    client.delete("h/3", None).await?;
    let revision = client
        .put("h/last", "x", None)
        .await?
        .header()
        .context("header")?
        .revision();
    let hashes = eventually(
        "every member to hash the same history",
        Duration::from_secs(15),
        || async {
            let mut hashes = Vec::new();
            for index in 0..cluster.len() {
                let mut member = cluster.member_client(index).await?;
                let response = member.hash_kv(revision).await?;
                hashes.push(response.hash());
            }
            ensure!(
                hashes.windows(2).all(|pair| pair[0] == pair[1]),
                "hashes differ: {hashes:?}"
            );
            Ok(hashes)
        },
    )
    .await?;
    // A later write changes the hash. Ask for its revision explicitly: a follower may not have
    // applied it yet (then it answers "future revision" and is asked again).
    let later_revision = client
        .put("h/more", "y", None)
        .await?
        .header()
        .context("header")?
        .revision();
    let member = cluster.member_client(0).await?;
    let later = eventually(
        "member 0 to hash the later revision",
        Duration::from_secs(10),
        || {
            let mut member = member.clone();
            async move { Ok(member.hash_kv(later_revision).await?.hash()) }
        },
    )
    .await?;
    ensure!(later != hashes[0], "the hash covers the keyspace");
    Ok(())
}

async fn move_leader(cluster: &mut Cluster) -> anyhow::Result<()> {
    let leader = cluster.leader_index().await?;
    let follower = (leader + 1) % cluster.len();
    let target_id = cluster.member_id(follower).await?;
    let mut follower_client = cluster.member_client(follower).await?;
    expect_status(
        follower_client.move_leader(target_id).await,
        Code::FailedPrecondition,
        "etcdserver: not leader",
    )?;
    let mut leader_client = cluster.member_client(leader).await?;
    leader_client.move_leader(target_id).await?;
    eventually(
        "the transferee to lead",
        Duration::from_secs(15),
        || async {
            ensure!(cluster.leader_index().await? == follower, "not moved yet");
            Ok(())
        },
    )
    .await?;
    // The cluster still takes writes after the transfer.
    let mut client = cluster.client().await?;
    eventually(
        "a write after the transfer",
        Duration::from_secs(10),
        || {
            let mut client = client.clone();
            async move { Ok(client.put("moved", "yes", None).await?) }
        },
    )
    .await?;
    client.get("moved", None).await?;
    Ok(())
}
