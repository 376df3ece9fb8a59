//! The whole server over a real socket, against the in-memory member, driven by the
//! generated tonic clients and plain HTTP/1.1.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use etcd_proto::etcdserverpb::kv_client::KvClient;
use etcd_proto::etcdserverpb::lease_client::LeaseClient;
use etcd_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use etcd_proto::etcdserverpb::watch_client::WatchClient;
use etcd_proto::etcdserverpb::watch_request::RequestUnion;
use etcd_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseTimeToLiveRequest, PutRequest, RangeRequest,
    SnapshotRequest, StatusRequest, WatchCreateRequest, WatchRequest,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tonic::transport::Channel;

use crate::config::ServerConfig;
use crate::lease::TokioClock;
use crate::server::serve_backend;
use crate::testing::FakeNode;

struct Running {
    address: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<Result<(), crate::ServeError>>,
}

impl Running {
    async fn start(node: FakeNode) -> Running {
        Running::start_with(node, ServerConfig::default()).await
    }

    async fn start_with(node: FakeNode, config: ServerConfig) -> Running {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("local address");
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(serve_backend(
            listener,
            node,
            config,
            Arc::new(TokioClock),
            async move {
                let _ = stopped.await;
            },
        ));
        Running {
            address,
            stop: Some(stop),
            server,
        }
    }

    async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.address))
            .expect("url")
            .connect()
            .await
            .expect("connect")
    }

    async fn http_get(&self, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(self.address)
            .await
            .expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut response = String::new();
        stream.read_to_string(&mut response).await.expect("read");
        response
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let result = tokio::time::timeout(Duration::from_secs(10), self.server)
            .await
            .expect("server stops within 10 s");
        assert!(matches!(result, Ok(Ok(()))), "server ended with {result:?}");
    }
}

/// Opens a watch of `key` from now; returns its request sender, its responses and the
/// `created` reply.
async fn open_watch(
    watch: &mut WatchClient<Channel>,
    key: &'static [u8],
) -> (
    tokio::sync::mpsc::Sender<WatchRequest>,
    tonic::Streaming<etcd_proto::etcdserverpb::WatchResponse>,
    etcd_proto::etcdserverpb::WatchResponse,
) {
    let (requests, inbound) = tokio::sync::mpsc::channel(4);
    requests
        .send(WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: Bytes::from_static(key),
                ..WatchCreateRequest::default()
            })),
        })
        .await
        .expect("send create");
    let mut responses = watch
        .watch(tokio_stream::wrappers::ReceiverStream::new(inbound))
        .await
        .expect("watch")
        .into_inner();
    let created = responses
        .message()
        .await
        .expect("created")
        .expect("created reply");
    assert!(created.created);
    (requests, responses, created)
}

#[tokio::test]
async fn kv_watch_lease_and_maintenance_over_grpc() {
    let node = FakeNode::leader(64);
    let running = Running::start(node.clone()).await;
    let channel = running.channel().await;
    let mut kv = KvClient::new(channel.clone());
    let mut watch = WatchClient::new(channel.clone());
    let mut lease = LeaseClient::new(channel.clone());
    let mut maintenance = MaintenanceClient::new(channel);

    // A watch from now sees the put made after it started.
    let (requests, mut responses, created) = open_watch(&mut watch, b"a").await;
    assert_eq!(created.header.map(|header| header.member_id), Some(1));

    let put = kv
        .put(PutRequest {
            key: Bytes::from_static(b"a"),
            value: Bytes::from_static(b"1"),
            ..PutRequest::default()
        })
        .await
        .expect("put")
        .into_inner();
    assert_eq!(
        put.header
            .map(|header| (header.revision, header.cluster_id)),
        Some((2, 100))
    );
    let range = kv
        .range(RangeRequest {
            key: Bytes::from_static(b"a"),
            ..RangeRequest::default()
        })
        .await
        .expect("range")
        .into_inner();
    assert_eq!(range.kvs.len(), 1);
    let empty_key = kv
        .range(RangeRequest::default())
        .await
        .expect_err("empty key");
    assert_eq!(empty_key.message(), "etcdserver: key is not provided");

    let event = responses
        .message()
        .await
        .expect("event")
        .expect("event reply");
    assert_eq!(event.events.len(), 1);
    assert_eq!(event.header.map(|header| header.revision), Some(2));

    // Lease: TTL raised to the minimum, keepalive answered from the leader's memory.
    let granted = lease
        .lease_grant(LeaseGrantRequest { ttl: 1, id: 0 })
        .await
        .expect("grant")
        .into_inner();
    assert!(granted.id > 0);
    assert_eq!(granted.ttl, 2);
    let keepalives = tokio_stream::iter([
        LeaseKeepAliveRequest { id: granted.id },
        LeaseKeepAliveRequest { id: 12345 },
    ]);
    let mut answers = lease
        .lease_keep_alive(keepalives)
        .await
        .expect("keepalive")
        .into_inner();
    let first = answers
        .message()
        .await
        .expect("first")
        .expect("first answer");
    assert_eq!((first.id, first.ttl), (granted.id, 2));
    let second = answers
        .message()
        .await
        .expect("second")
        .expect("second answer");
    assert_eq!(second.ttl, 0, "an unknown lease answers TTL 0");
    let unknown = lease
        .lease_time_to_live(LeaseTimeToLiveRequest {
            id: 999,
            keys: false,
        })
        .await
        .expect("time to live")
        .into_inner();
    assert_eq!(unknown.ttl, -1);

    let status = maintenance
        .status(StatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert_eq!(status.version, "3.5.17");
    assert_eq!(status.leader, 1);
    let mut snapshot = maintenance
        .snapshot(SnapshotRequest {})
        .await
        .expect("snapshot")
        .into_inner();
    let mut total = 0usize;
    while let Some(chunk) = snapshot.message().await.expect("snapshot chunk") {
        total += chunk.blob.len();
    }
    assert_eq!(total % 512, 32);

    let version = running.http_get("/version").await;
    assert!(version.starts_with("HTTP/1.1 200"), "{version}");
    assert!(version.contains(r#""etcdserver":"3.5.17""#), "{version}");
    let health = running.http_get("/health").await;
    assert!(health.contains(r#""health":"true""#), "{health}");
    node.set_status(|status| status.leader = None);
    let leaderless = running.http_get("/health").await;
    assert!(leaderless.starts_with("HTTP/1.1 503"), "{leaderless}");
    assert!(leaderless.contains("RAFT NO LEADER"), "{leaderless}");

    drop(requests);
    drop(responses);
    running.stop().await;
}

#[tokio::test]
async fn lock_waits_for_the_holder_and_election_follows_the_leader() {
    use etcd_proto::v3electionpb::election_client::ElectionClient;
    use etcd_proto::v3electionpb::{
        CampaignRequest, LeaderRequest, ProclaimRequest, ResignRequest,
    };
    use etcd_proto::v3lockpb::lock_client::LockClient;
    use etcd_proto::v3lockpb::{LockRequest, UnlockRequest};

    let node = FakeNode::leader(64);
    let running = Running::start(node.clone()).await;
    let channel = running.channel().await;
    let mut lease = LeaseClient::new(channel.clone());
    let mut lock = LockClient::new(channel.clone());
    let mut election = ElectionClient::new(channel);
    let first = lease
        .lease_grant(LeaseGrantRequest { ttl: 60, id: 0 })
        .await
        .expect("grant")
        .into_inner()
        .id;
    let second = lease
        .lease_grant(LeaseGrantRequest { ttl: 60, id: 0 })
        .await
        .expect("grant")
        .into_inner()
        .id;

    let held = lock
        .lock(LockRequest {
            name: Bytes::from_static(b"l"),
            lease: first,
        })
        .await
        .expect("first lock")
        .into_inner();
    assert_eq!(held.key, Bytes::from(format!("l/{first:x}")));
    let mut waiter = lock.clone();
    let contender = tokio::spawn(async move {
        waiter
            .lock(LockRequest {
                name: Bytes::from_static(b"l"),
                lease: second,
            })
            .await
    });
    tokio::task::yield_now().await;
    assert!(
        !contender.is_finished(),
        "the second lock waits for the first holder"
    );
    lock.unlock(UnlockRequest { key: held.key })
        .await
        .expect("unlock");
    let acquired = tokio::time::timeout(Duration::from_secs(10), contender)
        .await
        .expect("second lock acquired within 10 s")
        .expect("task")
        .expect("lock");
    assert_eq!(
        acquired.into_inner().key,
        Bytes::from(format!("l/{second:x}"))
    );

    let campaign = election
        .campaign(CampaignRequest {
            name: Bytes::from_static(b"e"),
            lease: first,
            value: Bytes::from_static(b"one"),
        })
        .await
        .expect("campaign")
        .into_inner();
    let leader_key = campaign.leader.expect("leader key");
    let mut observed = election
        .observe(LeaderRequest {
            name: Bytes::from_static(b"e"),
        })
        .await
        .expect("observe")
        .into_inner();
    let initial = observed.message().await.expect("observe").expect("leader");
    assert_eq!(
        initial.kv.map(|kv| kv.value),
        Some(Bytes::from_static(b"one"))
    );
    election
        .proclaim(ProclaimRequest {
            leader: Some(leader_key.clone()),
            value: Bytes::from_static(b"two"),
        })
        .await
        .expect("proclaim");
    let changed = observed
        .message()
        .await
        .expect("observe")
        .expect("new value");
    assert_eq!(
        changed.kv.map(|kv| kv.value),
        Some(Bytes::from_static(b"two"))
    );
    let leader = election
        .leader(LeaderRequest {
            name: Bytes::from_static(b"e"),
        })
        .await
        .expect("leader")
        .into_inner();
    assert_eq!(leader.kv.map(|kv| kv.key), Some(leader_key.key.clone()));
    election
        .resign(ResignRequest {
            leader: Some(leader_key.clone()),
        })
        .await
        .expect("resign");
    let gone = election
        .leader(LeaderRequest {
            name: Bytes::from_static(b"e"),
        })
        .await
        .expect_err("no leader");
    assert_eq!(gone.message(), "election: no leader");
    let stale = election
        .proclaim(ProclaimRequest {
            leader: Some(leader_key),
            value: Bytes::from_static(b"three"),
        })
        .await
        .expect_err("not leader");
    assert_eq!(stale.message(), "election: not leader");

    drop(observed);
    running.stop().await;
}

#[tokio::test]
async fn watch_requiring_a_leader_is_refused_then_cut_off_without_one() {
    let node = FakeNode::leader(16);
    let config = ServerConfig {
        election_timeout: Duration::from_millis(50),
        ..ServerConfig::default()
    };
    let running = Running::start_with(node.clone(), config).await;
    let mut watch = WatchClient::new(running.channel().await);
    let create = || WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key: Bytes::from_static(b"k"),
            ..WatchCreateRequest::default()
        })),
    };
    let require_leader = |requests: tokio::sync::mpsc::Receiver<WatchRequest>| {
        let mut request =
            tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(requests));
        request.metadata_mut().insert(
            "hasleader",
            tonic::metadata::MetadataValue::from_static("true"),
        );
        request
    };

    let (requests, inbound) = tokio::sync::mpsc::channel(4);
    requests.send(create()).await.expect("send create");
    let mut responses = watch
        .watch(require_leader(inbound))
        .await
        .expect("watch with a leader")
        .into_inner();
    assert!(
        responses
            .message()
            .await
            .expect("created")
            .expect("reply")
            .created
    );
    node.set_status(|status| status.leader = None);
    let cut = tokio::time::timeout(Duration::from_secs(10), responses.message())
        .await
        .expect("stream cut within 10 s")
        .expect_err("stream ends with an error");
    assert_eq!(cut.message(), "etcdserver: no leader");

    let (_requests, inbound) = tokio::sync::mpsc::channel(4);
    let refused = watch
        .watch(require_leader(inbound))
        .await
        .expect_err("no leader");
    assert_eq!(refused.code(), tonic::Code::Unavailable);
    assert_eq!(refused.message(), "etcdserver: no leader");

    drop(requests);
    running.stop().await;
}

#[tokio::test]
async fn progress_request_reports_the_revision_all_watchers_reached() {
    use etcd_proto::etcdserverpb::WatchProgressRequest;

    let node = FakeNode::leader(16);
    let running = Running::start(node.clone()).await;
    let mut watch = WatchClient::new(running.channel().await);
    let (requests, mut responses, _) = open_watch(&mut watch, b"p").await;
    node.put("p", "1");
    node.put("other", "2");
    let event = responses.message().await.expect("event").expect("reply");
    assert_eq!(event.header.map(|header| header.revision), Some(2));
    requests
        .send(WatchRequest {
            request_union: Some(RequestUnion::ProgressRequest(WatchProgressRequest {})),
        })
        .await
        .expect("send progress request");
    let progress = responses.message().await.expect("progress").expect("reply");
    assert_eq!(progress.watch_id, -1);
    assert!(progress.events.is_empty());
    assert_eq!(progress.header.map(|header| header.revision), Some(3));

    drop(requests);
    drop(responses);
    running.stop().await;
}

#[tokio::test]
async fn a_store_that_moved_on_without_events_is_replayed_to_watchers() {
    let node = FakeNode::leader(16);
    let running = Running::start(node.clone()).await;
    let mut watch = WatchClient::new(running.channel().await);
    let (requests, mut responses, _) = open_watch(&mut watch, b"s").await;
    // As after a snapshot install: the store jumps ahead and nothing is published.
    node.put_unpublished("s", "from-snapshot");
    let replayed = tokio::time::timeout(Duration::from_secs(10), responses.message())
        .await
        .expect("replayed within 10 s")
        .expect("event")
        .expect("reply");
    assert_eq!(replayed.events.len(), 1);
    assert_eq!(
        replayed.events[0].kv.as_ref().map(|kv| kv.value.clone()),
        Some(Bytes::from_static(b"from-snapshot"))
    );

    drop(requests);
    drop(responses);
    running.stop().await;
}
