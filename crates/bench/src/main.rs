//! `pgwarden-bench`: runs the same store load against a 3-member pgwarden and a 3-member real etcd on
//! this machine, alternating between them in one invocation, and prints both and their ratios.
//!
//! Workloads (etcd's `tools/benchmark` shapes): put of 256-byte values with 1, 16 and 256 concurrent
//! clients, and linearizable get with 64 clients; optionally, resident memory after loading N keys.
//! Every client is an `etcd-client` connection to the Raft leader's client URL, for both targets.
//!
//! Build both binaries in release first:
//! `cargo build --release -p pgwarden -p pgwarden-bench && target/release/pgwarden-bench`

mod load;
mod report;

use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use pgwarden_tests::Cluster;
use pgwarden_tests::ClusterOptions;
use pgwarden_tests::Target;

use crate::load::Sample;
use crate::load::Workload;
use crate::report::Report;

/// Same load, both stores, alternating rounds, one table.
#[derive(Debug, Parser)]
#[command(name = "pgwarden-bench", version)]
struct Args {
    /// Rounds; each round starts a fresh cluster of each target, in alternating order.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Measured seconds per workload (after a short warm-up).
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Concurrent clients for the put workloads.
    #[arg(long, value_delimiter = ',', default_value = "1,16,256")]
    put_clients: Vec<usize>,
    /// Concurrent clients for the linearizable get workloads.
    #[arg(long, value_delimiter = ',', default_value = "64")]
    get_clients: Vec<usize>,
    /// Value size in bytes.
    #[arg(long, default_value_t = 256)]
    value_size: usize,
    /// After the timed workloads, load this many distinct keys and report the members' resident memory (0 = skip).
    #[arg(long, default_value_t = 0)]
    load_keys: usize,
    /// Members per cluster.
    #[arg(long, default_value_t = 3)]
    members: usize,
    /// Run only one target (etcd or pgwarden), e.g. to check the harness; the comparison needs both.
    #[arg(long)]
    only: Option<String>,
    /// After the memory measurement, keep the cluster running this many seconds (to inspect the
    /// members' processes, e.g. with gdb or /proc), then measure again.
    #[arg(long, default_value_t = 0)]
    hold_after_load: u64,
}

fn main() -> anyhow::Result<()> {
    // One worker per core, stated rather than taken from TOKIO_WORKER_THREADS: that variable
    // reaches the pgwarden members this process starts, and the load must not change with it.
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.rounds > 0, "--rounds must be at least 1");
    anyhow::ensure!(args.seconds > 0, "--seconds must be at least 1");
    anyhow::ensure!(args.members > 0, "--members must be at least 1");
    if let Some(only) = &args.only {
        anyhow::ensure!(
            only == "etcd" || only == "pgwarden",
            "--only must be etcd or pgwarden, got {only:?}"
        );
    }
    let mut workloads: Vec<Workload> = args
        .put_clients
        .iter()
        .map(|&clients| Workload::Put { clients })
        .collect();
    workloads.extend(
        args.get_clients
            .iter()
            .map(|&clients| Workload::LinearizableGet { clients }),
    );
    anyhow::ensure!(
        workloads.iter().all(|w| w.clients() > 0),
        "client counts must be positive"
    );

    let mut report = Report::default();
    for round in 0..args.rounds {
        let order = if round % 2 == 0 {
            [Target::Pgwarden, Target::Etcd]
        } else {
            [Target::Etcd, Target::Pgwarden]
        };
        for target in order {
            if args
                .only
                .as_ref()
                .is_some_and(|only| *only != target.to_string())
            {
                continue;
            }
            eprintln!("round {}/{}: {target}", round + 1, args.rounds);
            let cluster = Cluster::start(target, ClusterOptions::members(args.members))
                .await
                .with_context(|| format!("start a {}-member {target} cluster", args.members))?;
            let leader = cluster
                .leader_index()
                .await
                .context("find the Raft leader")?;
            let endpoint = cluster.member(leader).spec.client_url();
            for workload in &workloads {
                let sample = load::run(
                    &endpoint,
                    *workload,
                    Duration::from_secs(args.seconds),
                    args.value_size,
                )
                .await
                .with_context(|| format!("{workload} against {target}"))?;
                eprintln!("  {workload}: {}", sample.summary());
                report.add(target, *workload, sample);
            }
            if args.load_keys > 0 && round == 0 {
                let started = std::time::Instant::now();
                let retries = load::fill(&endpoint, args.load_keys, args.value_size)
                    .await
                    .with_context(|| format!("load {} keys into {target}", args.load_keys))?;
                let rss = resident_kib(&cluster, leader);
                eprintln!(
                    "  resident memory after {} keys: {} MiB (all members); loaded in {:.0} s, {retries} puts sent again",
                    args.load_keys,
                    rss / 1024,
                    started.elapsed().as_secs_f64()
                );
                report.add_memory(target, rss);
                if args.hold_after_load > 0 {
                    eprintln!(
                        "  holding the cluster {} s (pids above)",
                        args.hold_after_load
                    );
                    tokio::time::sleep(Duration::from_secs(args.hold_after_load)).await;
                    let later = resident_kib(&cluster, leader);
                    eprintln!("  resident memory after the hold: {} MiB", later / 1024);
                }
            }
        }
    }
    println!(
        "{}",
        report.render(args.members, args.value_size, args.load_keys)
    );
    Ok(())
}

/// Sum of the members' resident set sizes in KiB, read from /proc; prints each member's
/// resident set (anonymous and file-backed parts) and marks the Raft leader.
fn resident_kib(cluster: &Cluster, leader: usize) -> u64 {
    let mut total = 0;
    for index in 0..cluster.len() {
        let Some(pid) = cluster.member(index).pid() else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        let field = |name: &str| {
            status
                .lines()
                .find(|line| line.starts_with(name))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let (rss, anon, file, hwm) = (
            field("VmRSS:"),
            field("RssAnon:"),
            field("RssFile:"),
            field("VmHWM:"),
        );
        eprintln!(
            "    member {index} (pid {pid}{}): resident {} MiB (anonymous {} MiB, file {} MiB), peak {} MiB",
            if index == leader { ", leader" } else { "" },
            rss / 1024,
            anon / 1024,
            file / 1024,
            hwm / 1024
        );
        total += rss;
    }
    total
}

impl Sample {
    fn summary(&self) -> String {
        format!(
            "{:.0} ops/s, p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms, {} errors",
            self.ops_per_second(),
            self.percentile_ms(0.50),
            self.percentile_ms(0.90),
            self.percentile_ms(0.99),
            self.percentile_ms(0.999),
            self.percentile_ms(1.0),
            self.errors
        )
    }
}
