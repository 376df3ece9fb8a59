//! An in-process cluster on 127.0.0.1 (ports from 0, temp dirs) for the consensus tests.

#![allow(dead_code, clippy::unwrap_used)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use consensus::{ConsensusError, InitialClusterState, NodeConfig, RaftNode};
use etcd_proto::etcdserverpb::PutRequest;
use etcd_proto::raftcmd::{RaftCommand, RaftResponse, raft_command::Command};
use tokio::net::TcpListener;
use tokio::time::Instant;

pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// Polls `probe` until it returns Some or `within` passes.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn put(key: &str, value: &str) -> RaftCommand {
    RaftCommand {
        command: Some(Command::Put(PutRequest {
            key: key.to_string().into(),
            value: value.to_string().into(),
            ..Default::default()
        })),
    }
}

/// One member: its config (kept for restarts) and, while running, its node.
pub struct Member {
    pub config: NodeConfig,
    pub addr: SocketAddr,
    pub node: Option<RaftNode>,
}

impl Member {
    pub fn node(&self) -> &RaftNode {
        self.node.as_ref().expect("member is running")
    }

    pub async fn stop(&mut self) {
        if let Some(node) = self.node.take() {
            node.shutdown().await.unwrap();
        }
    }

    /// Restarts the member on the same peer address and data dir.
    pub async fn restart(&mut self) {
        assert!(self.node.is_none());
        let listener = bind_again(self.addr).await;
        self.node = Some(
            RaftNode::start(self.config.clone(), listener)
                .await
                .unwrap(),
        );
    }

    /// Writes applied by this member: its store revision above the empty store's.
    pub fn revision(&self) -> i64 {
        self.node().read(|store| store.revision()) - mvcc::Store::new().revision()
    }
}

async fn bind_again(addr: SocketAddr) -> TcpListener {
    eventually(Duration::from_secs(10), "rebind peer port", || async move {
        TcpListener::bind(addr).await.ok()
    })
    .await
}

pub fn member_config(
    name: &str,
    dir: &std::path::Path,
    addr: SocketAddr,
    snapshot_count: u64,
) -> NodeConfig {
    NodeConfig {
        name: name.to_string(),
        data_dir: dir.join(name),
        peer_urls: vec![format!("http://{addr}")],
        client_urls: vec![format!("http://{name}.client:2379")],
        initial_cluster: Vec::new(),
        initial_cluster_state: InitialClusterState::New,
        initial_cluster_token: "test-token".to_string(),
        heartbeat_interval: Duration::from_millis(50),
        election_timeout: Duration::from_millis(300),
        snapshot_count,
        request_timeout: REQUEST_TIMEOUT,
    }
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub members: Vec<Member>,
}

impl Cluster {
    pub async fn start(size: usize, snapshot_count: u64) -> Cluster {
        // RUST_LOG=info shows what the members do; silent otherwise.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().unwrap();
        let mut listeners = Vec::new();
        for _ in 0..size {
            listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
        }
        let addrs: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
        let initial: Vec<(String, Vec<String>)> = addrs
            .iter()
            .enumerate()
            .map(|(i, addr)| (format!("m{i}"), vec![format!("http://{addr}")]))
            .collect();
        let mut members = Vec::new();
        for (i, listener) in listeners.into_iter().enumerate() {
            let mut config = member_config(&format!("m{i}"), dir.path(), addrs[i], snapshot_count);
            config.initial_cluster = initial.clone();
            let node = RaftNode::start(config.clone(), listener).await.unwrap();
            members.push(Member {
                config,
                addr: addrs[i],
                node: Some(node),
            });
        }
        Cluster { dir, members }
    }

    /// Index of the member every running member agrees is the leader.
    pub async fn leader(&self) -> usize {
        eventually(Duration::from_secs(15), "an agreed leader", || async {
            let running: Vec<(usize, &RaftNode)> = self
                .members
                .iter()
                .enumerate()
                .filter_map(|(i, m)| m.node.as_ref().map(|n| (i, n)))
                .collect();
            let leader = running[0].1.status().leader?;
            if running
                .iter()
                .all(|(_, n)| n.status().leader == Some(leader))
            {
                running
                    .iter()
                    .find(|(_, n)| n.member_id() == leader)
                    .map(|(i, _)| *i)
            } else {
                None
            }
        })
        .await
    }

    pub fn index_of(&self, member_id: u64) -> usize {
        self.members
            .iter()
            .position(|m| m.node.as_ref().is_some_and(|n| n.member_id() == member_id))
            .unwrap()
    }

    /// Proposes until it succeeds (the cluster may be electing a leader).
    pub async fn propose_eventually(&self, via: usize, command: RaftCommand) -> RaftResponse {
        let node = self.members[via].node().clone();
        eventually(Duration::from_secs(15), "a committed proposal", || {
            let node = node.clone();
            let command = command.clone();
            async move {
                match node.propose(command).await {
                    Ok(response) => Some(response),
                    Err(ConsensusError::Etcd(e)) => panic!("unexpected {e}"),
                    Err(_) => None,
                }
            }
        })
        .await
    }

    pub async fn shutdown(mut self) {
        for member in &mut self.members {
            member.stop().await;
        }
    }
}
