//! Group-commit micro-benchmark: a 3-member cluster on 127.0.0.1 (temp dirs, real fsyncs),
//! N concurrent proposers writing small puts through the leader. Prints, per concurrency level,
//! proposals/s and how many proposals shared one log entry and one fsync on the leader.
//!
//! Run: `cargo run --release -p consensus --example group_commit [total_proposals_per_level]`

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use consensus::{InitialClusterState, NodeConfig, RaftNode};
use etcd_proto::etcdserverpb::PutRequest;
use etcd_proto::raftcmd::{RaftCommand, raft_command::Command};
use tokio::net::TcpListener;

fn put(key: String) -> RaftCommand {
    RaftCommand {
        command: Some(Command::Put(PutRequest {
            key: key.into(),
            value: vec![b'v'; 256].into(),
            ..Default::default()
        })),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let per_level: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(5000);
    let members: usize = std::env::args()
        .nth(2)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(3);
    let dir = tempfile::tempdir()?;
    let mut listeners = Vec::new();
    for _ in 0..members {
        listeners.push(TcpListener::bind("127.0.0.1:0").await?);
    }
    let urls: Vec<String> = listeners
        .iter()
        .map(|l| l.local_addr().map(|a| format!("http://{a}")))
        .collect::<Result<_, _>>()?;
    let initial: Vec<(String, Vec<String>)> = urls
        .iter()
        .enumerate()
        .map(|(i, u)| (format!("m{i}"), vec![u.clone()]))
        .collect();
    let mut nodes = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let config = NodeConfig {
            name: format!("m{i}"),
            data_dir: dir.path().join(format!("m{i}")),
            peer_urls: vec![urls[i].clone()],
            client_urls: vec![],
            initial_cluster: initial.clone(),
            initial_cluster_state: InitialClusterState::New,
            initial_cluster_token: "bench".into(),
            snapshot_count: 100_000,
            ..NodeConfig::default()
        };
        nodes.push(RaftNode::start(config, listener).await?);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let leader = loop {
        if let Some(leader) = nodes[0].status().leader
            && let Some(node) = nodes.iter().find(|n| n.member_id() == leader)
            && node.is_leader()
        {
            break node.clone();
        }
        anyhow::ensure!(Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    leader.propose(put("warmup".into())).await?;

    println!(
        "concurrency  proposals  seconds  proposals/s  proposals/entry  fsyncs/proposal (leader log)"
    );
    for concurrency in [1usize, 16, 256] {
        let total = if concurrency == 1 {
            per_level.min(2000)
        } else {
            per_level
        };
        let (commits_before, entries_before) = leader.log_write_stats();
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let mut workers = Vec::new();
        for _ in 0..concurrency {
            let leader = leader.clone();
            let next = next.clone();
            workers.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        return Ok::<(), consensus::ConsensusError>(());
                    }
                    leader.propose(put(format!("k{concurrency}-{i}"))).await?;
                }
            }));
        }
        for worker in workers {
            worker.await??;
        }
        let seconds = started.elapsed().as_secs_f64();
        let (commits_after, entries_after) = leader.log_write_stats();
        let commits = (commits_after - commits_before).max(1);
        let entries = (entries_after - entries_before).max(1);
        println!(
            "{concurrency:>11}  {total:>9}  {seconds:>7.2}  {:>11.0}  {:>15.1}  {:>10.3}",
            total as f64 / seconds,
            total as f64 / entries as f64,
            commits as f64 / total as f64,
        );
    }
    for node in nodes {
        node.shutdown().await?;
    }
    Ok(())
}
