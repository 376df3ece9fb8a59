//! Failover measurement with etcd's default timings (heartbeat 100 ms, election 1000 ms):
//! a 3-member cluster on 127.0.0.1; the leader is stopped and the time until a survivor
//! commits a write is printed. Repeated a few times, restarting the stopped member in between.
//!
//! Run: `cargo run --release -p consensus --example failover_time [rounds]`

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use consensus::{InitialClusterState, NodeConfig, RaftNode};
use etcd_proto::etcdserverpb::PutRequest;
use etcd_proto::raftcmd::{RaftCommand, raft_command::Command};
use tokio::net::TcpListener;

fn put(key: &str) -> RaftCommand {
    RaftCommand {
        command: Some(Command::Put(PutRequest {
            key: key.to_string().into(),
            value: "v".into(),
            ..Default::default()
        })),
    }
}

async fn leader_index(nodes: &[Option<RaftNode>]) -> anyhow::Result<usize> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for (i, node) in nodes.iter().enumerate() {
            if let Some(node) = node
                && node.is_leader()
            {
                return Ok(i);
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rounds: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(5);
    let dir = tempfile::tempdir()?;
    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(TcpListener::bind("127.0.0.1:0").await?);
    }
    let addrs: Vec<SocketAddr> = listeners
        .iter()
        .map(|l| l.local_addr())
        .collect::<Result<_, _>>()?;
    let initial: Vec<(String, Vec<String>)> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| (format!("m{i}"), vec![format!("http://{a}")]))
        .collect();
    let configs: Vec<NodeConfig> = (0..3)
        .map(|i| NodeConfig {
            name: format!("m{i}"),
            data_dir: dir.path().join(format!("m{i}")),
            peer_urls: vec![format!("http://{}", addrs[i])],
            client_urls: vec![],
            initial_cluster: initial.clone(),
            initial_cluster_state: InitialClusterState::New,
            initial_cluster_token: "failover".into(),
            ..NodeConfig::default()
        })
        .collect();
    let mut nodes = Vec::new();
    for (config, listener) in configs.iter().zip(listeners) {
        nodes.push(Some(RaftNode::start(config.clone(), listener).await?));
    }
    for round in 0..rounds {
        let leader = leader_index(&nodes).await?;
        let Some(node) = nodes[leader].as_ref() else {
            anyhow::bail!("leader not running")
        };
        node.propose(put("before")).await?;
        if let Some(node) = nodes[leader].take() {
            node.shutdown().await?;
        }
        let stopped = Instant::now();
        let survivor = (leader + 1) % 3;
        let Some(node) = nodes[survivor].clone() else {
            anyhow::bail!("survivor not running")
        };
        loop {
            if node.propose(put("after")).await.is_ok() {
                break;
            }
        }
        println!(
            "round {round}: writes accepted {:?} after the leader stopped",
            stopped.elapsed()
        );
        let listener = TcpListener::bind(addrs[leader]).await?;
        nodes[leader] = Some(RaftNode::start(configs[leader].clone(), listener).await?);
    }
    for node in nodes.into_iter().flatten() {
        node.shutdown().await?;
    }
    Ok(())
}
