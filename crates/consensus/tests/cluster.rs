//! A 3-member cluster in process: replication, follower forwarding, read barrier, failover,
//! catch-up by log and by snapshot, full restart, membership and leader transfer, and a
//! minority that answers with errors instead of hanging.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Cluster, Member, REQUEST_TIMEOUT, eventually, member_config, put};
use consensus::{ConsensusError, InitialClusterState, RaftNode};
use etcd_proto::errors;
use tokio::net::TcpListener;
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn propose_on_leader_and_follower_then_read_elsewhere() {
    let cluster = Cluster::start(3, 10_000).await;
    let leader = cluster.leader().await;
    let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();

    cluster.propose_eventually(leader, put("a", "1")).await;
    let after_leader_write = cluster.members[leader].revision();
    assert_eq!(after_leader_write, 1);

    // A follower forwards to the leader and returns once the write is applied locally.
    cluster.members[followers[0]]
        .node()
        .propose(put("b", "2"))
        .await
        .unwrap();
    assert_eq!(cluster.members[followers[0]].revision(), 2);

    // The other follower's read barrier sees both writes.
    cluster.members[followers[1]]
        .node()
        .linearizable_read()
        .await
        .unwrap();
    assert!(cluster.members[followers[1]].revision() >= 2);
    cluster.members[leader]
        .node()
        .linearizable_read()
        .await
        .unwrap();
    assert!(cluster.members[leader].revision() >= 2);

    // Concurrent proposals on every member all commit (group commit + forwarding).
    let mut handles = Vec::new();
    for (i, member) in cluster.members.iter().enumerate() {
        for j in 0..50 {
            let node = member.node().clone();
            handles.push(tokio::spawn(async move {
                node.propose(put(&format!("c{i}-{j}"), "x")).await
            }));
        }
    }
    for handle in handles {
        handle.await.unwrap().unwrap();
    }
    for member in &cluster.members {
        member.node().linearizable_read().await.unwrap();
        assert_eq!(member.revision(), 152);
    }
    // Every member applied the same log to the same state.
    let snapshots: Vec<Vec<u8>> = futures_snapshots(&cluster).await;
    assert!(snapshots.windows(2).all(|w| w[0] == w[1]));

    // Members were published with their names and client URLs.
    let status = cluster.members[followers[1]].node().status();
    assert_eq!(status.members.len(), 3);
    eventually(Duration::from_secs(10), "published names", || async {
        let members = cluster.members[leader].node().status().members;
        members
            .iter()
            .all(|m| m.name.starts_with('m') && m.client_ur_ls.len() == 1)
            .then_some(())
    })
    .await;
    cluster.shutdown().await;
}

async fn futures_snapshots(cluster: &Cluster) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for member in &cluster.members {
        if let Some(node) = &member.node {
            out.push(node.snapshot_bytes().await.unwrap());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survivors_elect_and_accept_writes_after_leader_shutdown() {
    let mut cluster = Cluster::start(3, 10_000).await;
    let leader = cluster.leader().await;
    cluster.propose_eventually(leader, put("before", "1")).await;
    let old_leader_id = cluster.members[leader].node().member_id();
    cluster.members[leader].stop().await;
    let killed_at = Instant::now();
    let survivor = (0..3).find(|i| *i != leader).unwrap();
    cluster
        .propose_eventually(survivor, put("after", "2"))
        .await;
    let recovery = killed_at.elapsed();
    println!("writes accepted again {recovery:?} after the leader stopped");
    let new_leader = cluster.leader().await;
    assert_ne!(
        cluster.members[new_leader].node().member_id(),
        old_leader_id
    );
    for member in cluster.members.iter().filter(|m| m.node.is_some()) {
        member.node().linearizable_read().await.unwrap();
        assert_eq!(member.revision(), 2);
    }
    // The old leader comes back as a follower and catches up.
    cluster.members[leader].restart().await;
    eventually(Duration::from_secs(15), "old leader caught up", || async {
        (cluster.members[leader].revision() == 2).then_some(())
    })
    .await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_member_catches_up_by_log_and_by_snapshot() {
    let mut cluster = Cluster::start(3, 20).await;
    let leader = cluster.leader().await;
    let lagging = (0..3).find(|i| *i != leader).unwrap();

    // Catch-up by log: a short outage.
    cluster.members[lagging].stop().await;
    for i in 0..10 {
        cluster
            .propose_eventually(leader, put(&format!("log{i}"), "v"))
            .await;
    }
    cluster.members[lagging].restart().await;
    eventually(Duration::from_secs(15), "catch-up by log", || async {
        (cluster.members[lagging].revision() == 10).then_some(())
    })
    .await;

    // Catch-up by snapshot: many writes while down, the log behind the snapshot is purged.
    cluster.members[lagging].stop().await;
    let mut handles = Vec::new();
    for i in 0..300 {
        let node = cluster.members[leader].node().clone();
        handles.push(tokio::spawn(async move {
            node.propose(put(&format!("snap{i}"), "v")).await
        }));
        if handles.len() >= 8 {
            for handle in handles.drain(..) {
                handle.await.unwrap().unwrap();
            }
        }
    }
    for handle in handles {
        handle.await.unwrap().unwrap();
    }
    // The leader purges only once no replication request in flight (retries to the stopped
    // member included) still reads the entries: write on until the entries the lagging member
    // lacks are gone, or it could catch up by log after all.
    let mut extra = 0;
    eventually(Duration::from_secs(15), "leader purged the log", || {
        extra += 1;
        let node = cluster.members[leader].node().clone();
        async move {
            if node.purged_index().is_some_and(|i| i > 30) {
                return Some(());
            }
            node.propose(put(&format!("more{extra}"), "v")).await.ok()?;
            None
        }
    })
    .await;
    let expected = cluster.members[leader].revision();
    cluster.members[lagging].restart().await;
    eventually(Duration::from_secs(20), "catch-up by snapshot", || async {
        (cluster.members[lagging].revision() == expected).then_some(())
    })
    .await;
    assert!(
        cluster.members[lagging].node().snapshot_index().is_some(),
        "the lagging member installed a snapshot"
    );
    let snapshots = futures_snapshots(&cluster).await;
    assert!(snapshots.windows(2).all(|w| w[0] == w[1]));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_a_full_restart() {
    let mut cluster = Cluster::start(3, 25).await;
    let leader = cluster.leader().await;
    for i in 0..60 {
        cluster
            .propose_eventually((leader + i) % 3, put(&format!("k{i}"), "v"))
            .await;
    }
    let ids: Vec<u64> = cluster
        .members
        .iter()
        .map(|m| m.node().member_id())
        .collect();
    let cluster_id = cluster.members[0].node().cluster_id();
    for member in &mut cluster.members {
        member.stop().await;
    }
    for member in &mut cluster.members {
        member.restart().await;
    }
    let leader = cluster.leader().await;
    cluster.members[leader]
        .node()
        .linearizable_read()
        .await
        .unwrap();
    for (member, id) in cluster.members.iter().zip(ids) {
        assert_eq!(member.node().member_id(), id, "member IDs are stable");
        assert_eq!(
            member.node().cluster_id(),
            cluster_id,
            "cluster ID is stable"
        );
        member.node().linearizable_read().await.unwrap();
        let status = member.node().status();
        assert_eq!(
            member.revision(),
            60,
            "{}: applied {} commit {} snapshot {:?} leader {:?}",
            member.config.name,
            status.applied_index,
            status.commit_index,
            member.node().snapshot_index(),
            status.leader,
        );
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_add_promote_remove_and_move_leader() {
    let mut cluster = Cluster::start(3, 10_000).await;
    let leader = cluster.leader().await;
    let follower = (0..3).find(|i| *i != leader).unwrap();
    cluster.propose_eventually(leader, put("x", "1")).await;

    // MemberAdd a voter (through a follower), then start it with state Existing.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let url = format!("http://{addr}");
    let (added, members) = cluster.members[follower]
        .node()
        .member_add(vec![url.clone()], false)
        .await
        .unwrap();
    assert_eq!(members.len(), 4);
    assert!(!added.is_learner);
    assert!(
        added.name.is_empty() && added.client_ur_ls.is_empty(),
        "not started yet"
    );
    let duplicate = cluster.members[leader]
        .node()
        .member_add(vec![url.clone()], true)
        .await;
    assert!(matches!(duplicate, Err(ConsensusError::Etcd(e)) if e == errors::PEER_URL_EXIST));
    let bad = cluster.members[leader]
        .node()
        .member_add(vec!["not a url".to_string()], true)
        .await;
    assert!(matches!(bad, Err(ConsensusError::Etcd(e)) if e == errors::MEMBER_BAD_URLS));

    let mut config = member_config("m3", cluster.dir.path(), addr, 10_000);
    config.initial_cluster = cluster
        .members
        .iter()
        .map(|m| (m.config.name.clone(), m.config.peer_urls.clone()))
        .chain([("m3".to_string(), vec![url.clone()])])
        .collect();
    config.initial_cluster_state = InitialClusterState::Existing;
    let node = RaftNode::start(config.clone(), listener).await.unwrap();
    assert_eq!(node.member_id(), added.id);
    assert_eq!(node.cluster_id(), cluster.members[0].node().cluster_id());
    cluster.members.push(Member {
        config,
        addr,
        node: Some(node),
    });
    eventually(
        Duration::from_secs(15),
        "new voter caught up and published",
        || async {
            let status = cluster.members[3].node().status();
            let me = status.members.iter().find(|m| m.id == added.id)?;
            (cluster.members[3].revision() == 1 && me.name == "m3").then_some(())
        },
    )
    .await;

    // MemberAdd a learner, start it, promote it.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let url = format!("http://{addr}");
    let (learner, _) = cluster.members[leader]
        .node()
        .member_add(vec![url.clone()], true)
        .await
        .unwrap();
    assert!(learner.is_learner);
    let voter_promote = cluster.members[leader]
        .node()
        .member_promote(added.id)
        .await;
    assert!(
        matches!(voter_promote, Err(ConsensusError::Etcd(e)) if e == errors::MEMBER_NOT_LEARNER)
    );
    let mut config = member_config("m4", cluster.dir.path(), addr, 10_000);
    config.initial_cluster = vec![(
        cluster.members[0].config.name.clone(),
        cluster.members[0].config.peer_urls.clone(),
    )];
    config.initial_cluster_state = InitialClusterState::Existing;
    let node = RaftNode::start(config.clone(), listener).await.unwrap();
    cluster.members.push(Member {
        config,
        addr,
        node: Some(node),
    });
    eventually(Duration::from_secs(15), "learner caught up", || async {
        (cluster.members[4].revision() == 1 && cluster.members[4].node().status().is_learner)
            .then_some(())
    })
    .await;
    let members = eventually(Duration::from_secs(15), "learner promoted", || async {
        cluster.members[leader]
            .node()
            .member_promote(learner.id)
            .await
            .ok()
    })
    .await;
    assert!(members.iter().all(|m| !m.is_learner));

    // MemberUpdate of an unknown member, MemberRemove of the learner-turned-voter.
    let unknown = cluster.members[leader]
        .node()
        .member_update(42, vec!["http://127.0.0.1:1".into()])
        .await;
    assert!(matches!(unknown, Err(ConsensusError::Etcd(e)) if e == errors::MEMBER_NOT_FOUND));
    let members = cluster.members[leader]
        .node()
        .member_remove(learner.id)
        .await
        .unwrap();
    assert_eq!(members.len(), 4);
    cluster.members[4].stop().await;

    // MoveLeader: refused off the leader and for unknown targets, done on the leader.
    let target = cluster.members[follower].node().member_id();
    let not_leader = cluster.members[follower].node().move_leader(target).await;
    assert!(matches!(not_leader, Err(ConsensusError::Etcd(e)) if e == errors::NOT_LEADER));
    let unknown = cluster.members[leader].node().move_leader(7).await;
    assert!(matches!(unknown, Err(ConsensusError::Etcd(e)) if e == errors::BAD_LEADER_TRANSFEREE));
    cluster.members[leader]
        .node()
        .move_leader(target)
        .await
        .unwrap();
    assert_eq!(cluster.leader().await, follower);
    cluster
        .propose_eventually(follower, put("after-move", "1"))
        .await;
    cluster.shutdown().await;
}

/// A write of `lost` = `value` and a linearizable read through `node` both fail with a timeout
/// or "no leader", within twice the request timeout.
async fn refuses_within_the_timeout(node: &RaftNode, value: &str) {
    let started = Instant::now();
    let write = node.propose(put("lost", value)).await;
    assert!(
        matches!(
            write,
            Err(ConsensusError::Timeout | ConsensusError::NoLeader)
        ),
        "{write:?}"
    );
    let read = node.linearizable_read().await;
    assert!(
        matches!(
            read,
            Err(ConsensusError::Timeout | ConsensusError::NoLeader)
        ),
        "{read:?}"
    );
    assert!(started.elapsed() < REQUEST_TIMEOUT * 2 + Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minority_answers_with_errors_within_the_timeout() {
    let mut cluster = Cluster::start(3, 10_000).await;
    let leader = cluster.leader().await;
    cluster.propose_eventually(leader, put("x", "1")).await;
    // Stop both followers: the leader is alone and must not acknowledge anything.
    for i in (0..3).filter(|i| *i != leader) {
        cluster.members[i].stop().await;
    }
    refuses_within_the_timeout(cluster.members[leader].node(), "1").await;

    // A lone follower too.
    let follower = (0..3).find(|i| *i != leader).unwrap();
    cluster.members[leader].stop().await;
    cluster.members[follower].restart().await;
    refuses_within_the_timeout(cluster.members[follower].node(), "2").await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_write_is_lost_or_duplicated_across_a_failover() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use etcd_proto::etcdserverpb::RangeRequest;

    let mut cluster = Cluster::start(3, 50).await;
    let leader = cluster.leader().await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for (m, member) in cluster.members.iter().enumerate() {
        for w in 0..4 {
            let node = member.node().clone();
            let stop = stop.clone();
            writers.push(tokio::spawn(async move {
                let mut acked = Vec::new();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("w{m}-{w}-{i}");
                    i += 1;
                    match node.propose(put(&key, "v")).await {
                        Ok(_) => acked.push(key),
                        Err(ConsensusError::Stopped) => break,
                        Err(_) => {}
                    }
                }
                acked
            }));
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.members[leader].stop().await;
    // Keep writing through the survivors while they elect a new leader, then a while longer.
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.members[leader].restart().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    for writer in writers {
        acked.extend(writer.await.unwrap());
    }
    assert!(acked.len() > 50, "only {} writes acknowledged", acked.len());
    let new_leader = cluster.leader().await;
    cluster.members[new_leader]
        .node()
        .linearizable_read()
        .await
        .unwrap();
    for member in &cluster.members {
        let node = member.node();
        eventually(Duration::from_secs(15), "member caught up", || async {
            node.linearizable_read().await.ok()
        })
        .await;
        let (missing, keys, writes) = node.read(|store| {
            let missing: Vec<&String> = acked
                .iter()
                .filter(|key| {
                    let request = RangeRequest {
                        key: key.as_bytes().to_vec().into(),
                        count_only: true,
                        ..Default::default()
                    };
                    store.range(&request).map(|r| r.count).unwrap_or(0) != 1
                })
                .collect();
            let writes = store.revision() - mvcc::Store::new().revision();
            (missing.len(), store.key_count() as i64, writes)
        });
        assert_eq!(
            missing, 0,
            "{}: acknowledged writes lost",
            member.config.name
        );
        // Every attempt used a fresh key: one revision per key means nothing applied twice.
        assert_eq!(
            keys, writes,
            "{}: a write was applied twice",
            member.config.name
        );
    }
    println!("{} writes acknowledged across the failover", acked.len());
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_member_does_not_stall_the_others() {
    let cluster = Cluster::start(3, 10_000).await;
    let leader = cluster.leader().await;
    // A peer address that accepts TCP connections and never answers (a hung host).
    let black_hole = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", black_hole.local_addr().unwrap());
    let (_added, members) = cluster.members[leader]
        .node()
        .member_add(vec![url], false)
        .await
        .unwrap();
    assert_eq!(members.len(), 4);
    // Four voters, three alive: still a quorum. Writes and reads must keep flowing at speed.
    let started = Instant::now();
    for i in 0..100 {
        let via = (leader + i) % 3;
        cluster.members[via]
            .node()
            .propose(put(&format!("k{i}"), "v"))
            .await
            .unwrap();
    }
    for member in &cluster.members {
        member.node().linearizable_read().await.unwrap();
    }
    let elapsed = started.elapsed();
    println!("100 writes + 3 reads with a black-holed voter: {elapsed:?}");
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    drop(black_hole);
    cluster.shutdown().await;
}
