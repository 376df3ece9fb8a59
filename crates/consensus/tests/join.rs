//! `InitialClusterState::JoinOrNew` (the start of `pgwarden run`): three members started at
//! once form one group; a fourth member whose initial cluster names the three running ones
//! joins as a learner, is promoted to a voter, and restarts as the same member.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Cluster, Member, eventually, member_config, put};
use consensus::{InitialClusterState, RaftNode, ids};
use tokio::net::TcpListener;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_started_together_form_one_group_and_a_fourth_joins_it() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().unwrap();

    // Phase 1: three empty members started together find no running group and create one.
    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let addrs: Vec<_> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    let initial: Vec<(String, Vec<String>)> = addrs
        .iter()
        .enumerate()
        .map(|(i, addr)| (format!("m{i}"), vec![format!("http://{addr}")]))
        .collect();
    let configs: Vec<_> = (0..3)
        .map(|i| {
            let mut config = member_config(&format!("m{i}"), dir.path(), addrs[i], 10_000);
            config.initial_cluster = initial.clone();
            config.initial_cluster_state = InitialClusterState::JoinOrNew;
            config
        })
        .collect();
    let starts = configs
        .iter()
        .cloned()
        .zip(listeners)
        .map(|(config, listener)| RaftNode::start(config, listener));
    let nodes = futures::future::join_all(starts).await;
    let mut cluster = Cluster {
        dir,
        members: Vec::new(),
    };
    for ((node, config), addr) in nodes.into_iter().zip(configs).zip(addrs) {
        cluster.members.push(Member {
            config,
            addr,
            node: Some(node.unwrap()),
        });
    }
    let cluster_id = cluster.members[0].node().cluster_id();
    assert!(
        cluster
            .members
            .iter()
            .all(|m| m.node().cluster_id() == cluster_id),
        "one group"
    );
    let leader = cluster.leader().await;
    cluster.propose_eventually(leader, put("a", "1")).await;

    // Phase 2: a fourth member whose partners are the three running members joins them.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let url = format!("http://{addr}");
    let mut config = member_config("m3", cluster.dir.path(), addr, 10_000);
    config.initial_cluster = initial
        .iter()
        .cloned()
        .chain([("m3".to_string(), vec![url.clone()])])
        .collect();
    config.initial_cluster_state = InitialClusterState::JoinOrNew;
    let node = RaftNode::start(config.clone(), listener).await.unwrap();
    let joined_id = node.member_id();
    assert_eq!(node.cluster_id(), cluster_id, "joined the running group");
    assert_ne!(
        joined_id,
        ids::member_id(&config.peer_urls, &config.initial_cluster_token),
        "an added member gets a fresh ID, as after MemberAdd"
    );
    cluster.members.push(Member {
        config,
        addr,
        node: Some(node),
    });
    eventually(
        Duration::from_secs(20),
        "fourth member caught up, promoted and published",
        || async {
            let status = cluster.members[0].node().status();
            let me = status.members.iter().find(|m| m.id == joined_id)?;
            (status.members.len() == 4
                && !me.is_learner
                && me.name == "m3"
                && cluster.members[3].revision() == 1)
                .then_some(())
        },
    )
    .await;

    // Phase 3: the joined member restarts from its data dir as the same member.
    cluster.members[3].stop().await;
    cluster.members[3].restart().await;
    assert_eq!(cluster.members[3].node().member_id(), joined_id);
    let leader = cluster.leader().await;
    cluster.propose_eventually(leader, put("b", "2")).await;
    eventually(
        Duration::from_secs(20),
        "restarted member applies",
        || async { (cluster.members[3].revision() == 2).then_some(()) },
    )
    .await;
    assert_eq!(cluster.members[0].node().status().members.len(), 4);
    cluster.shutdown().await;
}
