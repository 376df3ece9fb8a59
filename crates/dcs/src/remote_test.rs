#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use consensus::{InitialClusterState, NodeConfig, RaftNode};
use etcd_server::ServerConfig;
use etcd_server::lease::TokioClock;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use super::*;

const WITHIN: Duration = Duration::from_secs(20);

/// One single-member store serving the etcd v3 API on loopback, restartable on the same
/// ports and data directory.
struct Member {
    data_dir: PathBuf,
    peer: SocketAddr,
    client: SocketAddr,
    running: Option<Running>,
}

/// The running member: its Raft node, the sender that stops its API, the API task.
struct Running {
    node: RaftNode,
    stop: oneshot::Sender<()>,
    server: tokio::task::JoinHandle<Result<(), etcd_server::ServeError>>,
}

impl Member {
    async fn start(dir: &tempfile::TempDir) -> Member {
        let peer = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut member = Member {
            data_dir: dir.path().join("m0"),
            peer: peer.local_addr().unwrap(),
            client: client.local_addr().unwrap(),
            running: None,
        };
        member.run(peer, client).await;
        member
    }

    async fn run(&mut self, peer: TcpListener, client: TcpListener) {
        let election_timeout = Duration::from_millis(300);
        let config = NodeConfig {
            name: "m0".to_owned(),
            data_dir: self.data_dir.clone(),
            peer_urls: vec![format!("http://{}", self.peer)],
            client_urls: vec![format!("http://{}", self.client)],
            initial_cluster: vec![("m0".to_owned(), vec![format!("http://{}", self.peer)])],
            initial_cluster_state: InitialClusterState::New,
            initial_cluster_token: "remote-test".to_owned(),
            heartbeat_interval: Duration::from_millis(50),
            election_timeout,
            snapshot_count: 10_000,
            request_timeout: Duration::from_secs(3),
        };
        let node = RaftNode::start(config, peer).await.unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(etcd_server::serve_backend(
            client,
            node.clone(),
            ServerConfig {
                election_timeout,
                ..ServerConfig::default()
            },
            Arc::new(TokioClock),
            async move {
                let _ = stopped.await;
            },
        ));
        let deadline = tokio::time::Instant::now() + WITHIN;
        while node.status().leader.is_none() {
            assert!(tokio::time::Instant::now() < deadline, "no leader");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.running = Some(Running { node, stop, server });
    }

    async fn stop(&mut self) {
        let Running { node, stop, server } = self.running.take().unwrap();
        let _ = stop.send(());
        let _ = server.await;
        node.shutdown().await.unwrap();
    }

    async fn restart(&mut self) {
        let peer = TcpListener::bind(self.peer).await.unwrap();
        let client = TcpListener::bind(self.client).await.unwrap();
        self.run(peer, client).await;
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.client)
    }
}

fn store(endpoints: Vec<String>) -> EtcdStore {
    EtcdStore::new(EtcdOptions {
        endpoints,
        user: None,
        request_timeout: Duration::from_secs(2),
        tls: None,
    })
    .unwrap()
}

/// A loopback port nothing listens on.
async fn dead_endpoint() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}

async fn next_batch(changes: &mut BoxStream<'static, ChangedKeys>) -> ChangedKeys {
    tokio::time::timeout(WITHIN, changes.next())
        .await
        .expect("a watch batch in time")
        .expect("the watch stream does not end")
}

/// Reads batches until one names `key`; returns it and the batches before it (at most
/// `at_most_before` of them).
async fn batches_until(
    changes: &mut BoxStream<'static, ChangedKeys>,
    key: &str,
    at_most_before: usize,
) -> (ChangedKeys, Vec<ChangedKeys>) {
    let mut before = Vec::new();
    loop {
        let batch = next_batch(changes).await;
        if batch.iter().any(|changed| changed == key) {
            return (batch, before);
        }
        assert!(
            before.len() < at_most_before,
            "{key} never reported; batches before: {before:?}, last {batch:?}"
        );
        before.push(batch);
    }
}

#[tokio::test]
async fn reads_writes_and_leases_match_the_in_process_store() {
    let dir = tempfile::tempdir().unwrap();
    let member = Member::start(&dir).await;
    let store = store(vec![member.endpoint()]);

    let lease = store
        .lease_grant(Duration::from_millis(4500))
        .await
        .unwrap();
    assert_eq!(
        store.lease_keepalive(lease).await.unwrap(),
        Some(Duration::from_secs(5)),
        "TTL rounded up to whole seconds"
    );
    let leader = "/service/demo/leader";
    let me = Bytes::from_static(b"n1");
    assert!(
        store
            .put_if(leader, Expect::Absent, me.clone(), lease)
            .await
            .unwrap()
    );
    assert!(
        !store
            .put_if(leader, Expect::Absent, Bytes::from_static(b"n2"), 0)
            .await
            .unwrap(),
        "a second create loses"
    );
    assert!(
        store
            .put_if(leader, Expect::Value(me.clone()), me.clone(), lease)
            .await
            .unwrap()
    );
    store
        .put("/service/demo/config", Bytes::from_static(b"{}"), 0)
        .await
        .unwrap();
    store
        .put("/service/other/leader", Bytes::from_static(b"x"), 0)
        .await
        .unwrap();

    let (revision, kvs) = store.get_prefix("/service/demo/").await.unwrap();
    let keys: Vec<&str> = kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["/service/demo/config", "/service/demo/leader"]);
    let leader_kv = &kvs[1];
    assert_eq!(leader_kv.value, me);
    assert_eq!(leader_kv.lease, lease);
    assert!(revision >= leader_kv.mod_revision);

    assert!(
        !store
            .delete_if(
                leader,
                Some(Expect::ModRevision(leader_kv.mod_revision + 100))
            )
            .await
            .unwrap()
    );
    assert!(
        store
            .delete_if(leader, Some(Expect::ModRevision(leader_kv.mod_revision)))
            .await
            .unwrap()
    );
    assert!(
        !store.delete_if(leader, None).await.unwrap(),
        "nothing left"
    );

    store
        .put("/service/demo/members/n1", me.clone(), lease)
        .await
        .unwrap();
    store.lease_revoke(lease).await.unwrap();
    assert_eq!(store.lease_keepalive(lease).await.unwrap(), None);
    let (_, kvs) = store.get_prefix("/service/demo/members/").await.unwrap();
    assert!(kvs.is_empty(), "keys bound to a revoked lease are gone");
    store
        .lease_revoke(lease)
        .await
        .expect("revoking a gone lease");
}

#[tokio::test]
async fn an_unreachable_endpoint_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let member = Member::start(&dir).await;
    let store = store(vec![dead_endpoint().await, member.endpoint()]);
    for round in 0..30 {
        let key = format!("/service/demo/k{round}");
        store.put(&key, Bytes::from_static(b"v"), 0).await.unwrap();
        let (_, kvs) = store.get_prefix(&key).await.unwrap();
        assert_eq!(kvs.len(), 1);
    }
}

/// An endpoint that accepts connections and never answers (a hung member); the task holding
/// them is aborted when the guard drops.
struct HungEndpoint {
    endpoint: String,
    task: tokio::task::JoinHandle<()>,
}

impl HungEndpoint {
    async fn start() -> HungEndpoint {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        HungEndpoint { endpoint, task }
    }
}

impl Drop for HungEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn a_hung_endpoint_does_not_fail_idempotent_calls() {
    let dir = tempfile::tempdir().unwrap();
    let member = Member::start(&dir).await;
    let hung = HungEndpoint::start().await;
    let store = store(vec![hung.endpoint.clone(), member.endpoint()]);
    let lease = store.lease_grant(Duration::from_secs(5)).await.unwrap();
    let me = Bytes::from_static(b"n1");
    for _ in 0..10 {
        store.get_prefix("/service/demo/").await.unwrap();
        assert!(store.lease_keepalive(lease).await.unwrap().is_some());
        store
            .put("/service/demo/members/n1", me.clone(), lease)
            .await
            .unwrap();
    }
    // The leader key's renewal (same value) is repeated too; its creation is not.
    let leader = "/service/demo/leader";
    let (_, kvs) = store.get_prefix(leader).await.unwrap();
    assert!(kvs.is_empty());
    let mut created = false;
    while !created {
        created = store
            .put_if(leader, Expect::Absent, me.clone(), lease)
            .await
            .is_ok_and(|created| created);
    }
    for _ in 0..10 {
        assert!(
            store
                .put_if(leader, Expect::Value(me.clone()), me.clone(), lease)
                .await
                .unwrap()
        );
    }
}

#[tokio::test]
async fn no_reachable_endpoint_fails_within_the_request_timeout() {
    let store = EtcdStore::new(EtcdOptions {
        endpoints: vec![dead_endpoint().await],
        user: None,
        request_timeout: Duration::from_millis(300),
        tls: None,
    })
    .unwrap();
    let started = tokio::time::Instant::now();
    let error = store.get_prefix("/service/demo/").await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5), "bounded");
    assert!(
        error.to_string().contains("no etcd endpoint answered"),
        "{error}"
    );
}

#[tokio::test]
async fn the_watch_reports_changes_and_survives_a_store_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut member = Member::start(&dir).await;
    let store = store(vec![member.endpoint()]);
    let mut changes = store.watch_prefix("/service/demo/");
    // The watch opens in the background: write until it reports the key.
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        store
            .put("/service/demo/leader", Bytes::from_static(b"n1"), 0)
            .await
            .unwrap();
        if let Ok(Some(batch)) =
            tokio::time::timeout(Duration::from_millis(200), changes.next()).await
        {
            assert_eq!(batch, ["/service/demo/leader"]);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "watch never opened");
    }
    // A put of the loop above may still be reported (its event came after the 200 ms wait
    // and another put followed): read up to a marker so that the checks below see only
    // their own changes.
    store
        .put("/service/demo/marker", Bytes::from_static(b"m"), 0)
        .await
        .unwrap();
    let _ = batches_until(&mut changes, "/service/demo/marker", 100).await;
    store
        .put("/service/other/leader", Bytes::from_static(b"x"), 0)
        .await
        .unwrap();
    store.delete_if("/service/demo/leader", None).await.unwrap();
    assert_eq!(
        next_batch(&mut changes).await,
        ["/service/demo/leader"],
        "deletes are reported, other scopes are not"
    );

    member.stop().await;
    member.restart().await;
    assert!(
        next_batch(&mut changes).await.is_empty(),
        "a reopened watch first says: re-read"
    );
    store
        .put("/service/demo/failover", Bytes::from_static(b"{}"), 0)
        .await
        .unwrap();
    // The restarted member re-applied every entry it had applied before it served again (its
    // committed id reaches the log file at once): the delete of `leader` is not reported a
    // second time.
    assert_eq!(next_batch(&mut changes).await, ["/service/demo/failover"]);
}
