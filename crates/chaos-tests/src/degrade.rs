//! Faults that degrade the primary's host rather than remove it: one-way packet drops, random
//! packet loss, a full or a frozen data disk, a stepped wall clock. Each is injected, held,
//! and ended here; the scenario's checks run afterwards as for every fault.

use std::time::{Duration, Instant};

use anyhow::Context;

use crate::cluster::{Cluster, TTL};
use crate::history::History;
use crate::scenario::{Fault, wait_failover};
use crate::{clock, netfault};

/// How long a one-way drop or a frozen disk lasts: three lease periods.
const HOLD: Duration = Duration::from_secs(3 * TTL.as_secs());
/// How long the primary's link loses packets.
const LOSS_HOLD: Duration = Duration::from_secs(20);
/// The share of packets lost on the primary's link, in percent.
const LOSS_PERCENT: u32 = 20;
/// How far the primary's wall clock is stepped, forward and then backward.
const CLOCK_STEP_SECS: i64 = 600;
/// The size of each host's loop disk for the disk scenarios (PostgreSQL's data directory with
/// `wal_keep_size` 64MB fits with room).
pub const DISK_MIB: u64 = 320;

/// Why this machine cannot run `fault` (beyond what every scenario needs), or `None`.
pub fn unsupported_reason(fault: Fault) -> Option<String> {
    match fault {
        Fault::ClockStepPrimary => clock::unsupported_reason(),
        Fault::PrimaryDiskFull | Fault::PrimaryDiskStall => {
            ["mkfs.ext4", "losetup", "fsfreeze", "fallocate"]
                .into_iter()
                .find(|tool| which(tool).is_none())
                .map(|tool| format!("`{tool}` is not installed (e2fsprogs, util-linux)"))
        }
        _ => None,
    }
}

fn which(tool: &str) -> Option<()> {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(std::process::Stdio::null())
        .status()
        .ok()
        .filter(|status| status.success())
        .map(|_| ())
}

/// Injects `fault` on host `primary`, holds it, and ends it; for a fault that must fail over,
/// the time from `fault_at` to the first write another host accepted.
pub async fn inject(
    cluster: &mut Cluster,
    history: &History,
    name: &str,
    fault: Fault,
    primary: usize,
    fault_at: Instant,
) -> anyhow::Result<Option<Duration>> {
    let others: Vec<usize> = (0..cluster.nodes.len())
        .filter(|other| *other != primary)
        .collect();
    match fault {
        Fault::OneWayIntoPrimary => {
            netfault::drop_incoming(&cluster.network, primary, &others)?;
            tokio::time::sleep(HOLD).await;
            netfault::heal_incoming(&cluster.network, primary)?;
            Ok(None)
        }
        Fault::OneWayFromPrimary => {
            for other in &others {
                netfault::drop_incoming(&cluster.network, *other, &[primary])?;
            }
            tokio::time::sleep(HOLD).await;
            for other in &others {
                netfault::heal_incoming(&cluster.network, *other)?;
            }
            Ok(None)
        }
        Fault::LossyPrimary => {
            netfault::lose_packets(&cluster.network, primary, LOSS_PERCENT)?;
            tokio::time::sleep(LOSS_HOLD).await;
            netfault::heal_loss(&cluster.network, primary)?;
            Ok(None)
        }
        Fault::PrimaryDiskFull => {
            let disk = cluster
                .disks
                .get(primary)
                .context("the cluster has no loop disks")?;
            let taken = disk.fill()?;
            println!("{name}: filled n{}'s disk ({taken} bytes)", primary + 1);
            // The writer's rows land in existing pages and WAL segments for a while; switching
            // segments makes PostgreSQL need a new one at once.
            let waited = tokio::select! {
                waited = wait_failover(cluster, history, primary, fault_at) => waited,
                () = switch_wal_forever(cluster, primary) => unreachable!("an endless loop ended"),
            };
            // The old primary, its disk still full, keeps being watched for a while.
            tokio::time::sleep(Duration::from_secs(3)).await;
            disk.free()?;
            println!("{name}: freed n{}'s disk", primary + 1);
            Ok(Some(waited?))
        }
        Fault::PrimaryDiskStall => {
            let disk = cluster
                .disks
                .get(primary)
                .context("the cluster has no loop disks")?;
            // Thawed by a detached process after a minute even if this test dies meanwhile.
            disk.freeze(HOLD + Duration::from_secs(60))?;
            tokio::time::sleep(HOLD).await;
            disk.thaw()?;
            Ok(None)
        }
        Fault::ClockStepPrimary => {
            let clock = cluster
                .clocks
                .get(primary)
                .context("the cluster has no stepped clocks")?;
            for step in [CLOCK_STEP_SECS, -CLOCK_STEP_SECS] {
                clock.step_to(step)?;
                let seen = wait_clock_offset(cluster, primary, step).await?;
                println!(
                    "{name}: n{}'s wall clock stepped to {step:+} s (its PostgreSQL's clock_timestamp() is {seen:+.1} s off)",
                    primary + 1
                );
                tokio::time::sleep(TTL * 2 + Duration::from_secs(2)).await;
            }
            clock.step_to(0)?;
            wait_clock_offset(cluster, primary, 0).await?;
            Ok(None)
        }
        _ => anyhow::bail!("{fault:?} is not a degrading fault"),
    }
}

/// Waits (10 s at most) until host `index`'s wall clock, as its PostgreSQL (started by the
/// agent, with the agent's environment) reports it, is `seconds` off the test's; the offset
/// seen. A clock that did not step would make the scenario prove nothing.
async fn wait_clock_offset(cluster: &Cluster, index: usize, seconds: i64) -> anyhow::Result<f64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = cluster.nodes[index]
            .query("SELECT extract(epoch FROM clock_timestamp())")
            .await
            .unwrap_or_default();
        let real = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .context("the test's clock is before 1970")?
            .as_secs_f64();
        let offset = rows
            .first()
            .and_then(|epoch| epoch.parse::<f64>().ok())
            .map(|epoch| epoch - real);
        if let Some(offset) = offset
            && (offset - seconds as f64).abs() < 5.0
        {
            return Ok(offset);
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "n{}'s wall clock did not step to {seconds:+} s within 10 s (seen: {offset:?})",
                index + 1
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `SELECT pg_switch_wal()` on host `primary` every 250 ms, errors ignored (the server is
/// expected to fail).
async fn switch_wal_forever(cluster: &Cluster, primary: usize) {
    loop {
        let _ = cluster.nodes[primary].query("SELECT pg_switch_wal()").await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The per-host extras `fault` needs when the cluster starts.
pub fn host_setup(fault: Fault) -> crate::cluster::HostSetup {
    crate::cluster::HostSetup {
        loop_disk_mib: matches!(fault, Fault::PrimaryDiskFull | Fault::PrimaryDiskStall)
            .then_some(DISK_MIB),
        fake_clock: fault == Fault::ClockStepPrimary,
    }
}

/// Whether `fault` may or may not move the primary (both are correct; only the safety and
/// liveness checks apply).
pub fn may_fail_over(fault: Fault) -> bool {
    matches!(
        fault,
        Fault::OneWayIntoPrimary
            | Fault::OneWayFromPrimary
            | Fault::LossyPrimary
            | Fault::PrimaryDiskStall
    )
}
