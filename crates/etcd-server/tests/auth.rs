//! etcd auth against one in-process Raft member: enabling, users, roles, key-range
//! permissions, watch refusal, token expiry on an injected clock, disabling — driven by the
//! `etcd-client` crate (token in metadata `token`) and the generated tonic clients
//! (`authorization: Bearer ...`, as the gateway passes it).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use consensus::{InitialClusterState, NodeConfig, RaftNode};
use etcd_client::{Client, ConnectOptions, GetOptions, Permission, WatchOptions};
use etcd_proto::etcdserverpb::auth_client::AuthClient;
use etcd_proto::etcdserverpb::kv_client::KvClient;
use etcd_proto::etcdserverpb::{AuthStatusRequest, AuthenticateRequest, RangeRequest};
use etcd_server::ServerConfig;
use etcd_server::lease::Clock;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tonic::transport::Channel;

mod common;

use common::{WITHIN, eventually};
const TOKEN_TTL: Duration = Duration::from_secs(300);

/// tokio's clock plus a manual offset, so a test can jump past the token TTL at once.
struct ManualClock {
    offset: Mutex<Duration>,
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        Instant::now() + *self.offset.lock().unwrap()
    }
}

impl ManualClock {
    fn advance(&self, by: Duration) {
        *self.offset.lock().unwrap() += by;
    }
}

struct Member {
    _dir: tempfile::TempDir,
    node: RaftNode,
    address: SocketAddr,
    clock: Arc<ManualClock>,
    stop: oneshot::Sender<()>,
    server: tokio::task::JoinHandle<Result<(), etcd_server::ServeError>>,
}

impl Member {
    async fn start() -> Member {
        let dir = tempfile::tempdir().unwrap();
        let peer = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peer_addr = peer.local_addr().unwrap();
        let address = client.local_addr().unwrap();
        let election_timeout = Duration::from_millis(300);
        let config = NodeConfig {
            name: "m0".to_owned(),
            data_dir: dir.path().join("m0"),
            peer_urls: vec![format!("http://{peer_addr}")],
            client_urls: vec![format!("http://{address}")],
            initial_cluster: vec![("m0".to_owned(), vec![format!("http://{peer_addr}")])],
            initial_cluster_state: InitialClusterState::New,
            initial_cluster_token: "auth-test".to_owned(),
            heartbeat_interval: Duration::from_millis(50),
            election_timeout,
            snapshot_count: 10_000,
            request_timeout: Duration::from_secs(3),
        };
        let node = RaftNode::start(config, peer).await.unwrap();
        let clock = Arc::new(ManualClock {
            offset: Mutex::new(Duration::ZERO),
        });
        let server_config = ServerConfig {
            election_timeout,
            auth_token_ttl: TOKEN_TTL,
            // The minimum cost keeps the test fast; production uses etcd's 10.
            bcrypt_cost: 4,
            ..ServerConfig::default()
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(etcd_server::serve_backend(
            client,
            node.clone(),
            server_config,
            clock.clone(),
            async move {
                let _ = stopped.await;
            },
        ));
        let probe = node.clone();
        eventually("a leader", || async { probe.status().leader }).await;
        Member {
            _dir: dir,
            node,
            address,
            clock,
            stop,
            server,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    async fn client(&self) -> Client {
        Client::connect([self.endpoint()], None).await.unwrap()
    }

    async fn client_as(&self, user: &str, password: &str) -> Result<Client, etcd_client::Error> {
        Client::connect(
            [self.endpoint()],
            Some(
                ConnectOptions::new()
                    .with_user(user, password)
                    .with_auto_token_refresh(true),
            ),
        )
        .await
    }

    async fn channel(&self) -> Channel {
        Channel::from_shared(self.endpoint())
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    async fn shutdown(self) {
        let _ = self.stop.send(());
        let served = tokio::time::timeout(WITHIN, self.server)
            .await
            .expect("server stops");
        assert!(matches!(served, Ok(Ok(()))), "server ended with {served:?}");
        self.node.shutdown().await.unwrap();
    }
}

/// The gRPC status message of an etcd-client error.
fn message(error: etcd_client::Error) -> String {
    match error {
        etcd_client::Error::GRpcStatus(status) => status.message().to_owned(),
        other => panic!("expected a gRPC status, got {other:?}"),
    }
}

fn code(error: &etcd_client::Error) -> tonic::Code {
    match error {
        etcd_client::Error::GRpcStatus(status) => status.code(),
        other => panic!("expected a gRPC status, got {other:?}"),
    }
}

fn with_bearer<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_lifecycle_permissions_and_tokens() {
    let member = Member::start().await;
    let mut anonymous = member.client().await;

    // Phase: enabling needs user root holding role root.
    let refused = anonymous.auth_enable().await.unwrap_err();
    assert_eq!(code(&refused), tonic::Code::FailedPrecondition);
    assert_eq!(message(refused), "etcdserver: root user does not exist");
    anonymous.user_add("root", "rootpw", None).await.unwrap();
    assert_eq!(
        message(anonymous.auth_enable().await.unwrap_err()),
        "etcdserver: root user does not have root role"
    );
    assert_eq!(
        message(anonymous.user_add("root", "x", None).await.unwrap_err()),
        "etcdserver: user name already exists"
    );
    anonymous.role_add("root").await.unwrap();
    anonymous.user_grant_role("root", "root").await.unwrap();
    anonymous.put("/app/a", "1", None).await.unwrap();
    anonymous.put("/other", "2", None).await.unwrap();
    anonymous.auth_enable().await.unwrap();

    // Phase: without a token every checked call is refused as etcd does.
    let refused = anonymous.put("k", "v", None).await.unwrap_err();
    assert_eq!(code(&refused), tonic::Code::InvalidArgument);
    assert_eq!(message(refused), "etcdserver: user name is empty");
    assert_eq!(
        message(anonymous.get("/app/a", None).await.unwrap_err()),
        "etcdserver: user name is empty"
    );
    let Err(wrong) = member.client_as("root", "nope").await else {
        panic!("a wrong password was accepted");
    };
    assert_eq!(
        message(wrong),
        "etcdserver: authentication failed, invalid user ID or password"
    );

    // Phase: root manages users and roles and may do anything.
    let mut root = member.client_as("root", "rootpw").await.unwrap();
    root.put("k", "v", None).await.unwrap();
    root.user_add("alice", "alicepw", None).await.unwrap();
    root.role_add("app-reader").await.unwrap();
    root.role_grant_permission("app-reader", Permission::read("/app/").with_prefix())
        .await
        .unwrap();
    root.user_grant_role("alice", "app-reader").await.unwrap();
    assert_eq!(
        message(root.user_grant_role("alice", "missing").await.unwrap_err()),
        "etcdserver: role name not found"
    );
    let users = root.user_list().await.unwrap();
    assert_eq!(users.users(), ["alice", "root"]);
    let role = root.role_get("app-reader").await.unwrap();
    assert_eq!(role.permissions().len(), 1);
    assert_eq!(root.get("/other", None).await.unwrap().kvs().len(), 1);

    // Phase: a user with READ on a prefix reads it and nothing else, and cannot write.
    let mut alice = member.client_as("alice", "alicepw").await.unwrap();
    let inside = alice
        .get("/app/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(inside.kvs().len(), 1);
    let denied = alice.put("/app/a", "x", None).await.unwrap_err();
    assert_eq!(code(&denied), tonic::Code::PermissionDenied);
    assert_eq!(message(denied), "etcdserver: permission denied");
    assert_eq!(
        message(alice.get("/other", None).await.unwrap_err()),
        "etcdserver: permission denied"
    );
    assert_eq!(
        message(
            alice
                .get("", Some(GetOptions::new().with_all_keys()))
                .await
                .unwrap_err()
        ),
        "etcdserver: permission denied"
    );
    assert_eq!(
        message(alice.user_list().await.unwrap_err()),
        "etcdserver: permission denied"
    );
    assert_eq!(
        alice.user_get("alice").await.unwrap().roles(),
        ["app-reader"]
    );
    // Status is not checked, as in etcd.
    alice.status().await.unwrap();

    // Phase: a watch outside the readable range is created and canceled at once.
    let mut outside = alice
        .watch("/other", Some(WatchOptions::new().with_prefix()))
        .await
        .unwrap();
    let refused = outside.message().await.unwrap().expect("a watch response");
    assert!(refused.created() && refused.canceled(), "{refused:?}");
    assert!(
        refused
            .cancel_reason()
            .ends_with("etcdserver: permission denied"),
        "{:?}",
        refused.cancel_reason()
    );
    let mut inside = alice
        .watch("/app/", Some(WatchOptions::new().with_prefix()))
        .await
        .unwrap();
    let created = inside.message().await.unwrap().expect("a watch response");
    assert!(created.created() && !created.canceled(), "{created:?}");
    root.put("/app/b", "new", None).await.unwrap();
    let event = inside.message().await.unwrap().expect("an event");
    assert_eq!(event.events()[0].kv().unwrap().key(), b"/app/b");

    // Phase: the gateway's spelling (`authorization: Bearer`) works, and a token expires
    // after the TTL without use.
    let mut auth = AuthClient::new(member.channel().await);
    let token = auth
        .authenticate(AuthenticateRequest {
            name: "alice".to_owned(),
            password: "alicepw".to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .token;
    let (random, index) = token.split_once('.').expect("simple token shape");
    assert_eq!(random.len(), 16);
    assert!(index.parse::<u64>().is_ok());
    let mut kv = KvClient::new(member.channel().await);
    let read = RangeRequest {
        key: bytes::Bytes::from_static(b"/app/a"),
        ..RangeRequest::default()
    };
    kv.range(with_bearer(read.clone(), &token)).await.unwrap();
    member.clock.advance(TOKEN_TTL - Duration::from_secs(1));
    kv.range(with_bearer(read.clone(), &token)).await.unwrap();
    member.clock.advance(TOKEN_TTL);
    let expired = kv
        .range(with_bearer(read.clone(), &token))
        .await
        .unwrap_err();
    assert_eq!(expired.code(), tonic::Code::Unauthenticated);
    assert_eq!(expired.message(), "etcdserver: invalid auth token");
    // etcd-client (with auto refresh) re-authenticates on an invalid token and retries.
    member.clock.advance(TOKEN_TTL);
    assert_eq!(alice.get("/app/a", None).await.unwrap().kvs().len(), 1);

    // Phase: a password change voids the user's tokens.
    let mut root = member.client_as("root", "rootpw").await.unwrap();
    let token = auth
        .authenticate(AuthenticateRequest {
            name: "alice".to_owned(),
            password: "alicepw".to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .token;
    root.user_change_password("alice", "newpw").await.unwrap();
    let void = kv
        .range(with_bearer(read.clone(), &token))
        .await
        .unwrap_err();
    assert_eq!(void.message(), "etcdserver: invalid auth token");
    member.client_as("alice", "newpw").await.unwrap();

    // Phase: root cannot be removed while auth is on; disabling lets anyone in again.
    assert_eq!(
        message(root.user_delete("root").await.unwrap_err()),
        "etcdserver: invalid auth management"
    );
    let mut status_request = tonic::Request::new(AuthStatusRequest {});
    let root_token = auth
        .authenticate(AuthenticateRequest {
            name: "root".to_owned(),
            password: "rootpw".to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .token;
    status_request
        .metadata_mut()
        .insert("token", root_token.parse().unwrap());
    let status = auth.auth_status(status_request).await.unwrap().into_inner();
    assert!(status.enabled);
    assert!(status.auth_revision > 1);
    root.auth_disable().await.unwrap();
    anonymous.put("k", "after", None).await.unwrap();
    let status = auth
        .auth_status(AuthStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(!status.enabled);
    // Disabling a disabled store is accepted, as etcd does.
    anonymous.auth_disable().await.unwrap();
    let not_enabled = auth
        .authenticate(AuthenticateRequest {
            name: "root".to_owned(),
            password: "rootpw".to_owned(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        not_enabled.message(),
        "etcdserver: authentication is not enabled"
    );

    drop((outside, inside));
    member.shutdown().await;
}

/// One etcdctl (API v3) invocation against `address`, with a deadline.
async fn etcdctl(address: SocketAddr, args: &[&str]) -> (bool, String) {
    let binary = std::env::var_os("ETCDCTL_BIN").unwrap_or_else(|| "/usr/bin/etcdctl".into());
    let mut command = tokio::process::Command::new(binary);
    command
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={address}"))
        .arg("--command-timeout=10s")
        .args(args)
        .kill_on_drop(true);
    let output = tokio::time::timeout(WITHIN, command.output())
        .await
        .expect("etcdctl finishes")
        .expect("etcdctl runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// etcdctl's auth, user and role commands (etcd-api.md §4), as an operator would type them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_auth_user_and_role_commands() {
    let member = Member::start().await;
    let at = member.address;
    let ok = |(success, text): (bool, String)| {
        assert!(success, "etcdctl failed: {text}");
        text
    };
    let failed = |(success, text): (bool, String)| {
        assert!(!success, "etcdctl succeeded: {text}");
        text
    };

    let text = failed(etcdctl(at, &["auth", "enable"]).await);
    assert!(text.contains("root user does not exist"), "{text}");
    ok(etcdctl(at, &["user", "add", "root:rootpw"]).await);
    // etcd's documented sequence: the root user, the root role, the grant, then enable.
    ok(etcdctl(at, &["role", "add", "root"]).await);
    ok(etcdctl(at, &["user", "grant-role", "root", "root"]).await);
    let text = ok(etcdctl(at, &["auth", "enable"]).await);
    assert!(text.contains("Authentication Enabled"), "{text}");

    let text = failed(etcdctl(at, &["put", "k", "v"]).await);
    assert!(text.contains("user name is empty"), "{text}");
    let root = ["--user", "root:rootpw"];
    fn as_user<'a>(user: &[&'a str; 2], args: &[&'a str]) -> Vec<&'a str> {
        [&user[..], args].concat()
    }
    let as_root = |args: &[&'static str]| as_user(&root, args);
    ok(etcdctl(at, &as_root(&["put", "/app/a", "1"])).await);
    ok(etcdctl(at, &as_root(&["user", "add", "alice:alicepw"])).await);
    ok(etcdctl(at, &as_root(&["role", "add", "reader"])).await);
    ok(etcdctl(
        at,
        &as_root(&[
            "role",
            "grant-permission",
            "reader",
            "read",
            "/app/",
            "--prefix=true",
        ]),
    )
    .await);
    ok(etcdctl(at, &as_root(&["user", "grant-role", "alice", "reader"])).await);
    let text = ok(etcdctl(at, &as_root(&["role", "get", "reader"])).await);
    assert!(text.contains("/app/"), "{text}");
    let text = ok(etcdctl(at, &as_root(&["user", "list"])).await);
    assert!(text.contains("alice") && text.contains("root"), "{text}");
    let text = ok(etcdctl(at, &as_root(&["user", "get", "alice"])).await);
    assert!(text.contains("reader"), "{text}");

    let alice = ["--user", "alice:alicepw"];
    let as_alice = |args: &[&'static str]| as_user(&alice, args);
    let text = ok(etcdctl(at, &as_alice(&["get", "/app/a"])).await);
    assert!(text.contains("/app/a"), "{text}");
    let text = failed(etcdctl(at, &as_alice(&["put", "/app/a", "2"])).await);
    assert!(text.contains("permission denied"), "{text}");
    let text = failed(etcdctl(at, &["--user", "alice:wrong", "get", "/app/a"]).await);
    assert!(text.contains("authentication failed"), "{text}");

    ok(etcdctl(
        at,
        &as_root(&[
            "role",
            "revoke-permission",
            "reader",
            "/app/",
            "--prefix=true",
        ]),
    )
    .await);
    let text = failed(etcdctl(at, &as_alice(&["get", "/app/a"])).await);
    assert!(text.contains("permission denied"), "{text}");
    ok(etcdctl(at, &as_root(&["user", "revoke-role", "alice", "reader"])).await);
    ok(etcdctl(at, &as_root(&["role", "delete", "reader"])).await);
    ok(etcdctl(
        at,
        &as_root(&["user", "passwd", "alice", "--interactive=false"]),
    )
    .await);
    ok(etcdctl(at, &as_root(&["user", "delete", "alice"])).await);
    let text = ok(etcdctl(at, &as_root(&["auth", "disable"])).await);
    assert!(text.contains("Authentication Disabled"), "{text}");
    ok(etcdctl(at, &["put", "k", "v"]).await);
    member.shutdown().await;
}
