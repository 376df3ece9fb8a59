//! Soak mode's load without a fault: a busy loop on every core and `dd` writes with fsync
//! to the filesystem under the hosts' data directories, for a given time, while the primary
//! is watched through the agents' REST API. Under load alone no host may take over: any
//! change of primary counts as a failover and fails the scenario.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};

use crate::cluster::Cluster;

/// How often the agents are asked who is primary.
const WATCH_PERIOD: Duration = Duration::from_millis(500);
/// How often progress is printed.
const REPORT_PERIOD: Duration = Duration::from_secs(60);
/// One `dd` round's size, in MiB.
const DD_MIB: u64 = 128;

/// A change of primary seen under load.
#[derive(Debug)]
pub struct PrimaryChange {
    pub after: Duration,
    pub from: usize,
    pub to: usize,
}

/// Loads every core and the disk for `duration`, then fails when the primary (`primary` at
/// the start) changed meanwhile.
pub async fn hold(
    cluster: &Cluster,
    name: &str,
    primary: usize,
    duration: Duration,
) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let cores = std::thread::available_parallelism().map_or(2, |cores| cores.get());
    let spinners: Vec<std::thread::JoinHandle<()>> = (0..cores)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || spin(&stop))
        })
        .collect();
    let written = Arc::new(AtomicU64::new(0));
    let disk = tokio::spawn(write_loop(cluster.dir().join("load.dd"), written.clone()));
    println!("{name}: {cores} busy loops and {DD_MIB} MiB dd rounds with fsync for {duration:?}");
    let watched = watch_primary(cluster, name, primary, duration, &written).await;
    stop.store(true, Ordering::Relaxed);
    disk.abort();
    let _ = disk.await;
    for spinner in spinners {
        let _ = spinner.join();
    }
    let _ = std::fs::remove_file(cluster.dir().join("load.dd"));
    let changes = watched?;
    ensure!(
        changes.is_empty(),
        "{name}: {} failover(s) under load without a fault: {changes:?}\n{}",
        changes.len(),
        cluster.logs()
    );
    println!(
        "{name}: no failover under load; {} MiB written by dd",
        written.load(Ordering::Relaxed)
    );
    Ok(())
}

fn spin(stop: &AtomicBool) {
    let mut state: u64 = 1;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..100_000 {
            state = std::hint::black_box(state.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
}

/// `dd` rounds of [`DD_MIB`] MiB with fsync into `path`, counting MiB written, until aborted
/// (the running `dd` is killed when the task is dropped).
async fn write_loop(path: PathBuf, written: Arc<AtomicU64>) {
    loop {
        let status = tokio::process::Command::new("dd")
            .arg("if=/dev/zero")
            .arg(format!("of={}", path.display()))
            .args([
                "bs=1M",
                &format!("count={DD_MIB}"),
                "conv=fsync",
                "status=none",
            ])
            .kill_on_drop(true)
            .status()
            .await;
        match status {
            Ok(status) if status.success() => {
                written.fetch_add(DD_MIB, Ordering::Relaxed);
            }
            // No dd, or the disk is full: keep the CPU load going, retry later.
            _ => tokio::time::sleep(Duration::from_secs(1)).await,
        }
        let _ = tokio::fs::remove_file(&path).await;
    }
}

/// Asks the agents who is primary every [`WATCH_PERIOD`] for `duration`; the changes seen.
async fn watch_primary(
    cluster: &Cluster,
    name: &str,
    primary: usize,
    duration: Duration,
    written: &AtomicU64,
) -> anyhow::Result<Vec<PrimaryChange>> {
    let started = Instant::now();
    let mut current = primary;
    let mut changes = Vec::new();
    let mut reported = started;
    let mut answers = 0usize;
    while started.elapsed() < duration {
        tokio::time::sleep(WATCH_PERIOD).await;
        let mut primaries = Vec::new();
        for (index, node) in cluster.nodes.iter().enumerate() {
            if let Some(status) = node.patroni().await {
                answers += 1;
                if status["role"] == "primary" {
                    primaries.push(index);
                }
            }
        }
        if let Some(other) = primaries.iter().copied().find(|index| *index != current) {
            println!(
                "{name}: n{} reports primary {:.2?} into the load (was n{})",
                other + 1,
                started.elapsed(),
                current + 1
            );
            changes.push(PrimaryChange {
                after: started.elapsed(),
                from: current,
                to: other,
            });
            current = other;
        }
        if reported.elapsed() >= REPORT_PERIOD {
            reported = Instant::now();
            println!(
                "{name}: {:.0?} of load, primary n{}, {} MiB written by dd",
                started.elapsed(),
                current + 1,
                written.load(Ordering::Relaxed)
            );
        }
    }
    (answers > 0)
        .then_some(changes)
        .context("no agent answered GET /patroni under load")
}
