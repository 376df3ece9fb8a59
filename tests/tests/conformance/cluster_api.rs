//! Cluster: member list, and on three members: add a learner, start it, promote it, remove it.

use std::time::Duration;

use anyhow::Context;
use anyhow::ensure;
use etcd_client::MemberAddOptions;
use pgwarden_tests::Cluster;
use pgwarden_tests::eventually;
use pgwarden_tests::grpc::expect_status;
use pgwarden_tests::grpc::status_of;
use tonic::Code;

mod single {
    use super::*;
    pgwarden_tests::against_both_targets!(1 => member_list);
}

mod three {
    use super::*;
    pgwarden_tests::against_both_targets!(3 => learner_add_promote_remove);
}

async fn member_list(cluster: &mut Cluster) -> anyhow::Result<()> {
    let mut client = cluster.client().await?;
    let list = client.member_list().await?;
    let header = list.header().context("header")?;
    ensure!(list.members().len() == 1, "{list:?}");
    let member = &list.members()[0];
    ensure!(member.id() == header.member_id() && member.id() != 0);
    ensure!(member.name() == "m1" && !member.is_learner());
    let spec = &cluster.member(0).spec;
    ensure!(member.peer_urls() == [spec.peer_url()], "{member:?}");
    ensure!(member.client_urls() == [spec.client_url()], "{member:?}");
    expect_status(
        client.member_remove(0x5eed).await,
        Code::NotFound,
        "etcdserver: member not found",
    )?;
    Ok(())
}

async fn learner_add_promote_remove(cluster: &mut Cluster) -> anyhow::Result<()> {
    let mut client = cluster.client().await?;
    let index = cluster.prepare_joining("m4")?;
    let peer_url = cluster.member(index).spec.peer_url();

    // etcd refuses reconfiguration ("unhealthy cluster") until every voter has been connected for
    // 5 s (its HealthInterval), so a fresh cluster needs a moment.
    let added = eventually(
        "the cluster to accept a learner",
        Duration::from_secs(30),
        || {
            let mut client = client.clone();
            let peer_url = peer_url.clone();
            async move {
                Ok(client
                    .member_add(
                        [peer_url.as_str()],
                        Some(MemberAddOptions::new().with_is_learner()),
                    )
                    .await?)
            }
        },
    )
    .await?;
    let learner = added.member().context("added member")?.clone();
    ensure!(
        learner.is_learner() && learner.name().is_empty(),
        "not started yet: {learner:?}"
    );
    ensure!(learner.peer_urls() == std::slice::from_ref(&peer_url));
    ensure!(added.member_list().len() == 4);
    let learner_id = learner.id();

    // A second add with the same peer URL is refused. etcd 3.4 derives a new member's ID from its
    // peer URLs and the current second, so within the same second it reports the ID instead.
    let duplicate = client
        .member_add(
            [peer_url.as_str()],
            Some(MemberAddOptions::new().with_is_learner()),
        )
        .await;
    let status = duplicate
        .as_ref()
        .err()
        .and_then(status_of)
        .with_context(|| format!("a duplicate peer URL must be refused: {duplicate:?}"))?;
    ensure!(status.code() == Code::FailedPrecondition, "{status:?}");
    ensure!(
        [
            "etcdserver: Peer URLs already exists",
            "etcdserver: member ID already exist"
        ]
        .contains(&status.message()),
        "{status:?}"
    );
    expect_status(
        client.member_promote(cluster.member_id(0).await?).await, // a voter
        Code::FailedPrecondition,
        "etcdserver: can only promote a learner member",
    )?;

    let voters = cluster.initial_cluster_of(&[0, 1, 2, index]);
    cluster.start_joining(index, &voters)?;
    // A learner can be promoted once it has caught up with the leader.
    let mut promoter = client.clone();
    let promoted = eventually(
        "the learner to catch up and be promoted",
        Duration::from_secs(30),
        || {
            let mut promoter = promoter.clone();
            async move { Ok(promoter.member_promote(learner_id).await?) }
        },
    )
    .await?;
    ensure!(
        promoted.members().iter().all(|m| !m.is_learner()),
        "{promoted:?}"
    );
    let listed = eventually(
        "the new member to publish its name",
        Duration::from_secs(15),
        || {
            let mut client = promoter.clone();
            async move {
                let list = client.member_list().await?;
                let member = list
                    .members()
                    .iter()
                    .find(|m| m.id() == learner_id)
                    .context("member missing")?
                    .clone();
                ensure!(member.name() == "m4", "name not published yet: {member:?}");
                Ok(member)
            }
        },
    )
    .await?;
    ensure!(listed.client_urls() == [cluster.member(index).spec.client_url()]);

    let removed = promoter.member_remove(learner_id).await?;
    ensure!(removed.members().len() == 3, "{removed:?}");
    cluster.member_mut(index).kill();
    client.put("after-remove", "ok", None).await?;
    Ok(())
}
