//! Switchover benchmark: `cargo run -p ha-cluster-tests --example switchover_bench [N]`.
//!
//! One three-member cluster (default settings, loopback) and a writer that keeps one
//! connection per member and commits an INSERT every few milliseconds wherever it can. N times
//! (default 5), `POST /switchover` to the primary's REST API names the next replica; the write
//! gap is the longest pause between two commits from just before the request until the new
//! primary has committed. Any commit on the old primary after the new one's first is refused
//! as two writable primaries. Prints each switchover and the median and worst gap.

use std::time::{Duration, Instant};

use ha_cluster_tests::Cluster;
use ha_cluster_tests::writer::{Writer, http_post, longest_gap, overlapping};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|arg| arg.parse().ok())
        .unwrap_or(5);
    let cluster = Cluster::start(3)?;
    let mut primary = cluster.wait_healthy(2, Duration::from_secs(120)).await?;
    cluster.nodes[primary]
        .query("CREATE TABLE bench_writes (at timestamptz)")
        .await?;
    let ports: Vec<u16> = cluster.nodes.iter().map(|node| node.spec.pg_port).collect();
    let writer = Writer::start(&ports, "bench_writes");
    let mut gaps = Vec::new();
    for round in 1..=rounds {
        cluster.wait_healthy(2, Duration::from_secs(60)).await?;
        // Let the writer run on the settled cluster first.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let leader = cluster.nodes[primary].spec.name.clone();
        let candidate = cluster.nodes[(primary + 1) % cluster.nodes.len()]
            .spec
            .name
            .clone();
        let asked = Instant::now();
        let (status, body) = http_post(
            &cluster.nodes[primary].rest_address(),
            "/switchover",
            &format!(r#"{{"leader": "{leader}", "candidate": "{candidate}"}}"#),
        )
        .await?;
        let answered = asked.elapsed();
        anyhow::ensure!(status == 200, "switchover answered {status}: {body}");
        let new_primary = cluster
            .wait_writable(primary, Duration::from_secs(30))
            .await?;
        // A commit on the new primary closes the gap; give the writer a moment to make it.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let commits = writer.commits();
        let from = asked - Duration::from_millis(200);
        anyhow::ensure!(
            !overlapping(&commits, from, cluster.nodes[primary].spec.pg_port),
            "the old primary committed after the new one did"
        );
        let gap = longest_gap(&commits, from, Instant::now());
        println!(
            "switchover {round}: {leader} -> {} (asked {candidate}), write gap {gap:.2?}, API answered after {answered:.2?}",
            cluster.nodes[new_primary].spec.name
        );
        gaps.push(gap);
        primary = new_primary;
    }
    gaps.sort();
    println!(
        "write gap: median {:.2?}, worst {:.2?} over {} switchovers",
        gaps[gaps.len() / 2],
        gaps[gaps.len() - 1],
        gaps.len()
    );
    Ok(())
}
