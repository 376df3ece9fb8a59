//! In-process store members for the etcd-server integration tests: `size` Raft members on
//! loopback ports bound from 0, each serving the etcd API, in one temporary directory.

#![allow(dead_code, reason = "each test target uses a different part")]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use consensus::{InitialClusterState, NodeConfig, RaftNode};
use etcd_server::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tonic::transport::Channel;

pub const WITHIN: Duration = Duration::from_secs(20);

/// Polls `probe` until it returns Some, failing after `WITHIN`.
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WITHIN;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub struct Member {
    pub node: RaftNode,
    pub client_addr: SocketAddr,
    stop: oneshot::Sender<()>,
    server: tokio::task::JoinHandle<Result<(), etcd_server::ServeError>>,
}

impl Member {
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let served = tokio::time::timeout(WITHIN, self.server)
            .await
            .expect("server stops");
        assert!(matches!(served, Ok(Ok(()))), "server ended with {served:?}");
        self.node.shutdown().await.unwrap();
    }
}

pub struct Cluster {
    _dir: tempfile::TempDir,
    /// `None` once the test stopped that member.
    members: Vec<Option<Member>>,
}

impl Cluster {
    /// `size` members with etcd's default server settings.
    pub async fn start(size: usize) -> Cluster {
        Self::start_with(size, ServerConfig::default).await
    }

    /// `size` members, each with its own `ServerConfig` from `config` (its election timeout
    /// is the test cluster's); returns once every member agrees on a leader.
    pub async fn start_with(size: usize, config: impl Fn() -> ServerConfig) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let mut peers = Vec::new();
        let mut clients = Vec::new();
        for _ in 0..size {
            peers.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
            clients.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
        }
        let peer_addrs: Vec<SocketAddr> = peers.iter().map(|l| l.local_addr().unwrap()).collect();
        let initial: Vec<(String, Vec<String>)> = peer_addrs
            .iter()
            .enumerate()
            .map(|(i, addr)| (format!("m{i}"), vec![format!("http://{addr}")]))
            .collect();
        let election_timeout = Duration::from_millis(300);
        let mut members = Vec::new();
        for (i, (peer, client)) in peers.into_iter().zip(clients).enumerate() {
            let client_addr = client.local_addr().unwrap();
            let node_config = NodeConfig {
                name: format!("m{i}"),
                data_dir: dir.path().join(format!("m{i}")),
                peer_urls: vec![format!("http://{}", peer_addrs[i])],
                client_urls: vec![format!("http://{client_addr}")],
                initial_cluster: initial.clone(),
                initial_cluster_state: InitialClusterState::New,
                initial_cluster_token: "etcd-server-test".to_owned(),
                heartbeat_interval: Duration::from_millis(50),
                election_timeout,
                snapshot_count: 10_000,
                request_timeout: Duration::from_secs(3),
            };
            let node = RaftNode::start(node_config, peer).await.unwrap();
            let (stop, stopped) = oneshot::channel::<()>();
            let server_config = ServerConfig {
                election_timeout,
                ..config()
            };
            let server = tokio::spawn(etcd_server::serve(
                client,
                node.clone(),
                server_config,
                async move {
                    let _ = stopped.await;
                },
            ));
            members.push(Some(Member {
                node,
                client_addr,
                stop,
                server,
            }));
        }
        let cluster = Cluster { _dir: dir, members };
        cluster.leader().await;
        cluster
    }

    /// Index of the member every running member agrees leads.
    pub async fn leader(&self) -> usize {
        eventually("an agreed leader", || async {
            let running: Vec<(usize, &Member)> = self
                .members
                .iter()
                .enumerate()
                .filter_map(|(index, member)| member.as_ref().map(|member| (index, member)))
                .collect();
            let leader = running[0].1.node.status().leader?;
            if running
                .iter()
                .all(|(_, m)| m.node.status().leader == Some(leader))
            {
                running
                    .iter()
                    .find(|(_, m)| m.node.member_id() == leader)
                    .map(|(index, _)| *index)
            } else {
                None
            }
        })
        .await
    }

    pub fn member(&self, index: usize) -> &Member {
        self.members[index].as_ref().expect("member is running")
    }

    pub async fn stop_member(&mut self, index: usize) {
        if let Some(member) = self.members[index].take() {
            member.stop().await;
        }
    }

    pub async fn channel(&self, index: usize) -> Channel {
        Channel::from_shared(format!("http://{}", self.member(index).client_addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// `GET path` on member `index`'s client port over HTTP/1.1; the whole response text.
    pub async fn http_get(&self, index: usize, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(self.member(index).client_addr)
            .await
            .unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    }

    pub async fn shutdown(self) {
        for member in self.members.into_iter().flatten() {
            member.stop().await;
        }
    }
}
