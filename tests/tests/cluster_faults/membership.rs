//! Membership change with a real fourth process: MemberAdd, start it with
//! `--initial-cluster-state existing`, use it, then MemberRemove.

use std::time::Duration;

use anyhow::Context;
use anyhow::ensure;
use etcd_client::GetOptions;
use pgwarden_tests::Cluster;
use pgwarden_tests::eventually;
use tracing::info;

pgwarden_tests::against_both_targets!(pgwarden_tests::ClusterOptions::members(3) => add_a_fourth_member_then_remove_it);

async fn add_a_fourth_member_then_remove_it(cluster: &mut Cluster) -> anyhow::Result<()> {
    let mut client = cluster.member_client(0).await?;
    client.put("before", "1", None).await?;
    let index = cluster.prepare_joining("m4")?;
    let peer_url = cluster.member(index).spec.peer_url();

    info!("phase 1: MemberAdd the fourth member as a voter");
    // etcd refuses reconfiguration until every voter has been connected for 5 s.
    let added = eventually(
        "the cluster to accept a member",
        Duration::from_secs(30),
        || {
            let mut client = client.clone();
            let peer_url = peer_url.clone();
            async move { Ok(client.member_add([peer_url.as_str()], None).await?) }
        },
    )
    .await?;
    let new_id = added.member().context("added member")?.id();
    ensure!(added.member_list().len() == 4);

    info!("phase 2: start it with --initial-cluster-state existing");
    let voters = cluster.initial_cluster_of(&[0, 1, 2, index]);
    cluster.start_joining(index, &voters)?;
    let mut joined = cluster.member_client(index).await?;
    let revision = client
        .put("after-add", "1", None)
        .await?
        .header()
        .context("header")?
        .revision();
    eventually(
        "the new member to serve the whole keyspace",
        Duration::from_secs(30),
        || {
            let mut joined = joined.clone();
            async move {
                let local = joined
                    .get(
                        "",
                        Some(GetOptions::new().with_all_keys().with_serializable()),
                    )
                    .await?;
                ensure!(
                    local.header().context("header")?.revision() >= revision,
                    "behind"
                );
                ensure!(local.kvs().len() == 2, "{local:?}");
                Ok(())
            }
        },
    )
    .await?;
    let list = client.member_list().await?;
    ensure!(list.members().len() == 4, "{list:?}");
    ensure!(
        list.members()
            .iter()
            .all(|m| !m.name().is_empty() && !m.is_learner())
    );
    // The new member takes writes (forwarding to the leader when it is a follower).
    eventually(
        "a write through the new member",
        Duration::from_secs(15),
        || {
            let mut joined = joined.clone();
            async move { Ok(joined.put("through-m4", "1", None).await?) }
        },
    )
    .await?;

    info!("phase 3: MemberRemove it; the three keep serving");
    let removed = client.member_remove(new_id).await?;
    ensure!(removed.members().len() == 3, "{removed:?}");
    ensure!(removed.members().iter().all(|m| m.id() != new_id));
    cluster.member_mut(index).kill();
    eventually("a write after the removal", Duration::from_secs(15), || {
        let mut client = client.clone();
        async move { Ok(client.put("after-remove", "1", None).await?) }
    })
    .await?;
    let count = client
        .get(
            "",
            Some(GetOptions::new().with_all_keys().with_count_only()),
        )
        .await?
        .count();
    ensure!(
        count == 4,
        "before, after-add, through-m4, after-remove: {count}"
    );
    drop(joined.status().await); // the removed member's client is no longer needed
    Ok(())
}
