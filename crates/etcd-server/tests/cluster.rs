//! In-process clusters of real Raft members (1 and 3) serving the etcd API on 127.0.0.1,
//! driven by the generated tonic clients.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use bytes::Bytes;
use etcd_proto::etcdserverpb::cluster_client::ClusterClient;
use etcd_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use etcd_proto::etcdserverpb::kv_client::KvClient;
use etcd_proto::etcdserverpb::lease_client::LeaseClient;
use etcd_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use etcd_proto::etcdserverpb::request_op::Request as Op;
use etcd_proto::etcdserverpb::watch_client::WatchClient;
use etcd_proto::etcdserverpb::watch_request::RequestUnion;
use etcd_proto::etcdserverpb::{
    Compare, HashKvRequest, LeaseGrantRequest, LeaseKeepAliveRequest, LeaseTimeToLiveRequest,
    MemberListRequest, MoveLeaderRequest, PutRequest, RangeRequest, RequestOp, SnapshotRequest,
    StatusRequest, TxnRequest, WatchCreateRequest, WatchRequest, WatchResponse,
};
use tokio::sync::mpsc;
use tonic::transport::Channel;

mod common;

use common::{Cluster, WITHIN, eventually};

fn put(key: &str, value: &str) -> PutRequest {
    PutRequest {
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: Bytes::copy_from_slice(value.as_bytes()),
        ..PutRequest::default()
    }
}

fn get(key: &str) -> RangeRequest {
    RangeRequest {
        key: Bytes::copy_from_slice(key.as_bytes()),
        ..RangeRequest::default()
    }
}

/// Puts through `kv`, retrying while the cluster has no leader yet.
async fn put_eventually(kv: &KvClient<Channel>, request: PutRequest) -> i64 {
    eventually("a committed put", || {
        let mut kv = kv.clone();
        let request = request.clone();
        async move {
            kv.put(request)
                .await
                .ok()
                .and_then(|r| r.into_inner().header)
                .map(|h| h.revision)
        }
    })
    .await
}

async fn open_watch(
    channel: Channel,
    create: WatchCreateRequest,
) -> (mpsc::Sender<WatchRequest>, tonic::Streaming<WatchResponse>) {
    let (requests, inbound) = mpsc::channel(8);
    requests
        .send(WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(create)),
        })
        .await
        .unwrap();
    let mut responses = WatchClient::new(channel)
        .watch(tokio_stream::wrappers::ReceiverStream::new(inbound))
        .await
        .unwrap()
        .into_inner();
    let created = responses.message().await.unwrap().unwrap();
    assert!(created.created);
    (requests, responses)
}

/// Collects event revisions from `responses` until `count` were seen.
async fn event_revisions(
    responses: &mut tonic::Streaming<WatchResponse>,
    count: usize,
) -> Vec<i64> {
    let mut seen = Vec::new();
    while seen.len() < count {
        let response = tokio::time::timeout(WITHIN, responses.message())
            .await
            .expect("watch event in time")
            .unwrap()
            .expect("stream open");
        seen.extend(
            response
                .events
                .iter()
                .map(|e| e.kv.as_ref().unwrap().mod_revision),
        );
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_member_serves_kv_watch_lease_and_maintenance() {
    let cluster = Cluster::start(1).await;
    let channel = cluster.channel(0).await;
    let mut kv = KvClient::new(channel.clone());

    let (_watch_requests, mut watch) = open_watch(
        channel.clone(),
        WatchCreateRequest {
            key: Bytes::from_static(b"k"),
            range_end: Bytes::from(mvcc::prefix_range_end(b"k")),
            ..WatchCreateRequest::default()
        },
    )
    .await;
    let first = put_eventually(&kv, put("k1", "a")).await;
    let second = kv
        .put(put("k2", "b"))
        .await
        .unwrap()
        .into_inner()
        .header
        .unwrap()
        .revision;
    assert_eq!(second, first + 1);
    assert_eq!(event_revisions(&mut watch, 2).await, vec![first, second]);

    let range = kv.range(get("k1")).await.unwrap().into_inner();
    assert_eq!(range.kvs[0].value, Bytes::from_static(b"a"));
    assert_eq!(range.header.unwrap().revision, second);

    // The Patroni-style leader lock: create only if absent.
    let absent = Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Create as i32,
        key: Bytes::from_static(b"leader"),
        range_end: Bytes::new(),
        target_union: Some(TargetUnion::CreateRevision(0)),
    };
    let take = TxnRequest {
        compare: vec![absent],
        success: vec![RequestOp {
            request: Some(Op::RequestPut(put("leader", "m0"))),
        }],
        failure: vec![],
    };
    assert!(kv.txn(take.clone()).await.unwrap().into_inner().succeeded);
    assert!(!kv.txn(take).await.unwrap().into_inner().succeeded);

    let mut lease = LeaseClient::new(channel.clone());
    let granted = lease
        .lease_grant(LeaseGrantRequest { ttl: 30, id: 0 })
        .await
        .unwrap()
        .into_inner();
    let mut answers = lease
        .lease_keep_alive(tokio_stream::iter([LeaseKeepAliveRequest {
            id: granted.id,
        }]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answers.message().await.unwrap().unwrap().ttl, 30);
    let ttl = lease
        .lease_time_to_live(LeaseTimeToLiveRequest {
            id: granted.id,
            keys: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(ttl.ttl > 0 && ttl.ttl <= 30, "remaining {}", ttl.ttl);

    let members = ClusterClient::new(channel.clone())
        .member_list(MemberListRequest {
            linearizable: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(members.members.len(), 1);
    let mut maintenance = MaintenanceClient::new(channel);
    let status = maintenance
        .status(StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.leader, cluster.member(0).node.member_id());
    assert!(status.errors.is_empty(), "{:?}", status.errors);
    let mut snapshot = maintenance
        .snapshot(SnapshotRequest {})
        .await
        .unwrap()
        .into_inner();
    let mut total = 0;
    while let Some(chunk) = snapshot.message().await.unwrap() {
        total += chunk.blob.len();
    }
    assert_eq!(total % 512, 32);

    drop(watch);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_agree_and_followers_forward_leader_work() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let follower = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    let follower_channel = cluster.channel(follower).await;
    let follower_kv = KvClient::new(follower_channel.clone());

    // A watch on one follower, a write through another, a linearizable read on a third view.
    let (_watch_requests, mut watch) = open_watch(
        cluster.channel(other).await,
        WatchCreateRequest {
            key: Bytes::from_static(b"x"),
            ..WatchCreateRequest::default()
        },
    )
    .await;
    let written = put_eventually(&follower_kv, put("x", "1")).await;
    let mut other_kv = KvClient::new(cluster.channel(other).await);
    let read = other_kv.range(get("x")).await.unwrap().into_inner();
    assert_eq!(
        read.kvs.len(),
        1,
        "a linearizable read sees the acknowledged write"
    );
    assert_eq!(event_revisions(&mut watch, 1).await, vec![written]);

    // Members publish their client URLs once they run; wait until all three have.
    let cluster_client = ClusterClient::new(follower_channel.clone());
    eventually("three members with client URLs", || {
        let mut cluster_client = cluster_client.clone();
        async move {
            let list = cluster_client
                .member_list(MemberListRequest { linearizable: true })
                .await
                .ok()?
                .into_inner();
            let complete =
                list.members.len() == 3 && list.members.iter().all(|m| !m.client_ur_ls.is_empty());
            complete.then_some(())
        }
    })
    .await;

    // Keepalive and time-to-live on a follower are answered by the leader.
    let mut follower_lease = LeaseClient::new(follower_channel.clone());
    let granted = follower_lease
        .lease_grant(LeaseGrantRequest { ttl: 20, id: 0 })
        .await
        .unwrap()
        .into_inner();
    let mut answers = follower_lease
        .lease_keep_alive(tokio_stream::iter([LeaseKeepAliveRequest {
            id: granted.id,
        }]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answers.message().await.unwrap().unwrap().ttl, 20);
    let ttl = follower_lease
        .lease_time_to_live(LeaseTimeToLiveRequest {
            id: granted.id,
            keys: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(ttl.ttl > 0 && ttl.ttl <= 20, "remaining {}", ttl.ttl);

    // Every member reports the same leader and, at one revision, the same hash.
    let leader_id = cluster.member(leader).node.member_id();
    let mut hashes = Vec::new();
    for index in 0..3 {
        let mut maintenance = MaintenanceClient::new(cluster.channel(index).await);
        let status = maintenance
            .status(StatusRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(status.leader, leader_id);
        let hash = eventually("member applied the write", || {
            let mut maintenance = maintenance.clone();
            async move {
                let response = maintenance
                    .hash_kv(HashKvRequest { revision: written })
                    .await
                    .ok()?;
                Some(response.into_inner().hash)
            }
        })
        .await;
        hashes.push(hash);
    }
    assert!(
        hashes.windows(2).all(|pair| pair[0] == pair[1]),
        "{hashes:?}"
    );

    // MoveLeader must be sent to the leader; there it hands leadership to the target.
    let target_id = cluster.member(follower).node.member_id();
    let refused = MaintenanceClient::new(cluster.channel(other).await)
        .move_leader(MoveLeaderRequest { target_id })
        .await
        .expect_err("a follower refuses MoveLeader");
    assert_eq!(refused.message(), "etcdserver: not leader");
    MaintenanceClient::new(cluster.channel(leader).await)
        .move_leader(MoveLeaderRequest { target_id })
        .await
        .expect("the leader transfers leadership");
    eventually("the target to lead", || async {
        (cluster.leader().await == follower).then_some(())
    })
    .await;

    drop(watch);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_has_no_gap_or_duplicate_across_a_leader_change() {
    let mut cluster = Cluster::start(3).await;
    let old_leader = cluster.leader().await;
    let survivor = (old_leader + 1) % 3;
    let survivor_channel = cluster.channel(survivor).await;
    let kv = KvClient::new(survivor_channel.clone());
    let (_watch_requests, mut watch) = open_watch(
        survivor_channel,
        WatchCreateRequest {
            key: Bytes::from_static(b"w/"),
            range_end: Bytes::from(mvcc::prefix_range_end(b"w/")),
            ..WatchCreateRequest::default()
        },
    )
    .await;
    let mut written = Vec::new();
    for index in 0..5 {
        written.push(put_eventually(&kv, put(&format!("w/{index}"), "before")).await);
    }
    cluster.stop_member(old_leader).await;
    let new_leader = cluster.leader().await;
    assert_ne!(new_leader, old_leader);
    for index in 5..10 {
        written.push(put_eventually(&kv, put(&format!("w/{index}"), "after")).await);
    }
    let seen = event_revisions(&mut watch, written.len()).await;
    assert_eq!(
        seen, written,
        "every acknowledged write once, in revision order"
    );

    drop(watch);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unrenewed_lease_expires_and_deletes_its_keys() {
    use etcd_proto::mvccpb::event::EventType;

    let cluster = Cluster::start(1).await;
    let channel = cluster.channel(0).await;
    let kv = KvClient::new(channel.clone());
    let mut lease = LeaseClient::new(channel.clone());
    // TTL 1 s is raised to the minimum, ceil(1.5 × 300 ms) = 1 s here.
    let granted = eventually("a lease grant", || {
        let mut lease = lease.clone();
        async move {
            lease
                .lease_grant(LeaseGrantRequest { ttl: 1, id: 0 })
                .await
                .ok()
        }
    })
    .await
    .into_inner();
    let bound = PutRequest {
        lease: granted.id,
        ..put("session", "m0")
    };
    put_eventually(&kv, bound).await;
    let (_watch_requests, mut watch) = open_watch(
        channel,
        WatchCreateRequest {
            key: Bytes::from_static(b"session"),
            ..WatchCreateRequest::default()
        },
    )
    .await;
    let response = tokio::time::timeout(WITHIN, watch.message())
        .await
        .expect("expiry in time")
        .unwrap()
        .expect("stream open");
    assert_eq!(response.events.len(), 1);
    assert_eq!(response.events[0].r#type, EventType::Delete as i32);
    let gone = lease
        .lease_time_to_live(LeaseTimeToLiveRequest {
            id: granted.id,
            keys: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(gone.ttl, -1);

    drop(watch);
    cluster.shutdown().await;
}
