//! Debian's etcdctl 3.4 with URL-form endpoints (`--endpoints=http://127.0.0.1:PORT`) against
//! an in-process member. For `endpoint status` and `endpoint hashkv` (and every `--cluster`
//! form) it sends the URL as the HTTP/2 `:authority`, which the client listener must accept as
//! etcd does. Skipped, with a printed reason, where etcdctl is not installed.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::path::PathBuf;
use std::time::Duration;

use consensus::{InitialClusterState, NodeConfig, RaftNode};
use etcd_server::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::time::Instant;

const WITHIN: Duration = Duration::from_secs(20);

fn etcdctl_binary() -> Option<PathBuf> {
    let binary = std::env::var_os("ETCDCTL_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/etcdctl"));
    binary.exists().then_some(binary)
}

/// Runs etcdctl (API v3) against `endpoints`; returns its exit status and output.
async fn etcdctl(binary: &PathBuf, endpoints: &str, args: &[&str]) -> (bool, String, String) {
    let output = tokio::time::timeout(
        WITHIN,
        tokio::process::Command::new(binary)
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoints}"))
            .arg("--command-timeout=5s")
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("etcdctl finishes in time")
    .expect("etcdctl runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_endpoint_commands_accept_url_endpoints() {
    let Some(binary) = etcdctl_binary() else {
        eprintln!("skipped: no etcdctl at /usr/bin/etcdctl (or $ETCDCTL_BIN)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let peer = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let peer_url = format!("http://{}", peer.local_addr().unwrap());
    let client_url = format!("http://{}", client.local_addr().unwrap());
    let election_timeout = Duration::from_millis(300);
    let node = RaftNode::start(
        NodeConfig {
            name: "a".to_owned(),
            data_dir: dir.path().join("a"),
            peer_urls: vec![peer_url.clone()],
            client_urls: vec![client_url.clone()],
            initial_cluster: vec![("a".to_owned(), vec![peer_url])],
            initial_cluster_state: InitialClusterState::New,
            initial_cluster_token: "etcdctl-url-endpoints".to_owned(),
            heartbeat_interval: Duration::from_millis(50),
            election_timeout,
            snapshot_count: 10_000,
            request_timeout: Duration::from_secs(3),
        },
        peer,
    )
    .await
    .unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(etcd_server::serve(
        client,
        node.clone(),
        ServerConfig {
            election_timeout,
            ..ServerConfig::default()
        },
        async move {
            let _ = stopped.await;
        },
    ));

    // `put` goes through the client's balancer (a well-formed authority); it also waits for
    // the member to lead.
    let deadline = Instant::now() + WITHIN;
    loop {
        let (ok, _, stderr) = etcdctl(&binary, &client_url, &["put", "k", "v"]).await;
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "put never succeeded: {stderr}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (ok, stdout, stderr) =
        etcdctl(&binary, &client_url, &["endpoint", "status", "-w", "json"]).await;
    assert!(ok, "endpoint status: {stdout}{stderr}");
    let status: serde_json::Value = serde_json::from_str(&stdout).expect("JSON status");
    assert_eq!(status[0]["Endpoint"], client_url.as_str(), "{stdout}");
    assert!(
        status[0]["Status"]["header"]["revision"].as_i64() >= Some(2),
        "{stdout}"
    );

    let (ok, stdout, stderr) = etcdctl(&binary, &client_url, &["endpoint", "hashkv"]).await;
    assert!(ok, "endpoint hashkv: {stdout}{stderr}");
    assert!(stdout.starts_with(&format!("{client_url}, ")), "{stdout}");

    // `--cluster` dials the advertised client URL, always a URL, once the member has
    // published it.
    let deadline = Instant::now() + WITHIN;
    loop {
        let (_, members, _) = etcdctl(&binary, &client_url, &["member", "list"]).await;
        if members.contains(&client_url) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "client URL never published: {members}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (ok, stdout, stderr) =
        etcdctl(&binary, &client_url, &["endpoint", "status", "--cluster"]).await;
    assert!(ok, "endpoint status --cluster: {stdout}{stderr}");
    assert!(stdout.starts_with(&format!("{client_url}, ")), "{stdout}");

    let _ = stop.send(());
    let served = tokio::time::timeout(WITHIN, server)
        .await
        .expect("server stops");
    assert!(matches!(served, Ok(Ok(()))), "server ended with {served:?}");
    node.shutdown().await.unwrap();
}
