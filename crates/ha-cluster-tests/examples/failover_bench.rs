//! Failover benchmark: `cargo run -p ha-cluster-tests --example failover_bench [TRIALS]`.
//!
//! Each trial starts a fresh three-member cluster (default settings, loopback), waits for one
//! primary and two streaming replicas, kills the primary's `pgwarden` and postmaster with
//! SIGKILL together, and measures (1) the time until another node commits an INSERT, and
//! (2) after restarting the killed node, the time until it streams again as a replica.
//! Prints every trial and the median and worst of each.
//!
//! A host dies at a random moment relative to its agent's loop, so the age of the primary's
//! lease when it dies is spread evenly over one `loop_wait` (1 s by default). Trial `k` of `n`
//! waits `k/n` of a second more before the kill, so the trials sample that spread evenly
//! instead of all landing at one phase of the loop.

use std::time::{Duration, Instant};

use ha_cluster_tests::Cluster;

fn summary(label: &str, samples: &mut [Duration]) {
    samples.sort();
    let median = samples[samples.len() / 2];
    let worst = samples[samples.len() - 1];
    println!(
        "{label}: median {median:.2?}, worst {worst:.2?} over {} trials",
        samples.len()
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let trials: usize = std::env::args()
        .nth(1)
        .and_then(|arg| arg.parse().ok())
        .unwrap_or(5);
    let mut to_writable = Vec::new();
    let mut to_streaming = Vec::new();
    for trial in 1..=trials {
        let mut cluster = Cluster::start(3)?;
        let primary = cluster.wait_healthy(2, Duration::from_secs(120)).await?;
        // Let the cluster settle (member keys, slots) as a running cluster would be.
        let phase = Duration::from_secs(1).mul_f64((trial - 1) as f64 / trials as f64);
        tokio::time::sleep(Duration::from_secs(2) + phase).await;
        let killed_at = Instant::now();
        cluster.nodes[primary].kill_hard();
        let new_primary = cluster
            .wait_writable(primary, Duration::from_secs(60))
            .await?;
        let writable = killed_at.elapsed();
        let restarted_at = Instant::now();
        cluster.nodes[primary].start()?;
        cluster
            .wait_streaming(primary, Duration::from_secs(120))
            .await?;
        let streaming = restarted_at.elapsed();
        println!(
            "trial {trial} (phase {phase:.2?}): node n{} writable {writable:.2?} after kill -9 of n{}; old primary streaming {streaming:.2?} after restart",
            new_primary + 1,
            primary + 1
        );
        to_writable.push(writable);
        to_streaming.push(streaming);
    }
    summary("time to writable after kill -9", &mut to_writable);
    summary(
        "old primary streaming again after restart",
        &mut to_streaming,
    );
    Ok(())
}
