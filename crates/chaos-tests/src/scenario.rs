//! One chaos scenario from start to verdict: a fresh three-host cluster in synchronous mode,
//! the writer and the observer running, a fault on the primary (or a replica), the fault's
//! end, then the checks over the recorded history and a one-line summary.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

use crate::cluster::{Cluster, ETCD_PORT, TTL};
use crate::history::{self, History};
use crate::load;
use crate::net::unsupported_reason;
use crate::store_history::{StoreHistory, StoreSummary};
use crate::{degrade, faults};

/// The fault a scenario injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL to every process of the primary's host at once; the host is started again
    /// once another host accepts writes.
    KillPrimaryHost,
    /// The primary's host is cut off from both other hosts (the test's clients still reach
    /// it), until another host accepts writes; then the partition heals.
    PartitionPrimary,
    /// SIGSTOP to the primary's agent (PostgreSQL keeps running) until another host accepts
    /// writes; then SIGCONT.
    FreezePrimaryAgent,
    /// A replica's host whose store member does not lead the Raft group is cut off from both
    /// other hosts for two lease periods; the primary must stay primary.
    PartitionReplica,
    /// As [`Fault::PartitionReplica`], for the replica whose store member leads the Raft
    /// group.
    PartitionRaftLeaderReplica,
    /// No fault: every host's CPU and the disk under load for `seconds` (busy loops on every
    /// core, `dd` writes with fsync); the primary must stay primary throughout (soak mode).
    Load { seconds: u64 },
    /// SIGKILL to the primary's agent only (PostgreSQL keeps running); its watchdog stand-in
    /// must reset the host before the lease expires; the host is started again afterwards.
    KillPrimaryAgent,
    /// SIGSTOP to every process of the primary's host for three lease periods, then SIGCONT.
    FreezePrimaryHost,
    /// SIGKILL to every process of the host whose store member leads the Raft group, a
    /// replica's; two lease periods later it is started again. The primary must stay primary.
    KillRaftLeaderReplica,
    /// SIGTERM to each host's agent in turn (replicas first), each started again and healthy
    /// before the next.
    RollingRestart,
    /// Concurrent `POST /switchover` to every host's REST API naming different candidates.
    ConcurrentSwitchovers,
    /// The primary's host drops every packet from the other hosts (its own still leave) for
    /// three lease periods. The primary may or may not move.
    OneWayIntoPrimary,
    /// The other hosts drop every packet from the primary's host (theirs still reach it) for
    /// three lease periods. The primary may or may not move.
    OneWayFromPrimary,
    /// 20 % of the packets between the primary's host and the others are lost for 20 s. The
    /// primary may or may not move.
    LossyPrimary,
    /// The primary's data disk (a loop filesystem) is filled until PostgreSQL fails; another
    /// host must take over; then the space is freed.
    PrimaryDiskFull,
    /// The primary's data disk is frozen (`fsfreeze`) for three lease periods. The primary may
    /// or may not move.
    PrimaryDiskStall,
    /// The primary host's wall clock steps +600 s, then to -600 s, then back (monotonic time
    /// is untouched). The primary must stay primary.
    ClockStepPrimary,
}

impl Fault {
    fn fails_over(self) -> bool {
        !matches!(
            self,
            Fault::PartitionReplica
                | Fault::PartitionRaftLeaderReplica
                | Fault::KillRaftLeaderReplica
                | Fault::ClockStepPrimary
                | Fault::Load { .. }
        )
    }

    /// Whether the hosts run watchdog stand-ins.
    fn watched(self) -> bool {
        self == Fault::KillPrimaryAgent
    }
}

/// What a scenario measured.
#[derive(Debug)]
pub struct Summary {
    pub name: String,
    /// From the fault to the first write another host accepted.
    pub failover: Option<Duration>,
    /// The longest pause between acknowledged writes from the fault until healed.
    pub write_gap: Duration,
    pub acknowledged: usize,
    pub indeterminate: usize,
    pub probes: usize,
    /// Check (c): the store workload's operations and the checker's time.
    pub store: StoreSummary,
}

/// How long a new primary may take after a fault (lease, election and promotion, with room).
const FAILOVER_BOUND: Duration = Duration::from_secs(60);
/// How long the cluster may take to heal after the fault ends.
const HEAL_BOUND: Duration = Duration::from_secs(120);

/// Runs scenario `name` with `fault`; prints why and returns Ok when this machine cannot run
/// it (not root, no `ip` or `nft`).
pub fn run(name: &str, fault: Fault) -> anyhow::Result<()> {
    if let Some(reason) = unsupported_reason().or_else(|| degrade::unsupported_reason(fault)) {
        println!("chaos scenario {name:?} skipped: {reason}");
        return Ok(());
    }
    let mut cluster = Cluster::start_hosts(3, fault.watched(), degrade::host_setup(fault))?;
    // Every thread from here on (the runtime's too) lives in the hub namespace.
    cluster.network.enter_hub()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("build the test runtime")?;
    let summary = match runtime.block_on(drive(&mut cluster, name, fault)) {
        Ok(summary) => summary,
        Err(error) => {
            // `CHAOS_KEEP_FILES=1` keeps the hosts' logs and data directories of a failed run.
            if std::env::var_os("CHAOS_KEEP_FILES").is_some() {
                println!("{name}: files kept in {}", cluster.keep_files().display());
            }
            return Err(error);
        }
    };
    println!(
        "chaos summary | {:<28} | failover {:>8} | write gap {:>8.2?} | acked {:>5} | indeterminate {:>3} | probes {:>5} | (a) ok | (b) ok | (c) ok: store ops {:>5}, open {:>2}, checked in {:.2?} | (d) ok",
        summary.name,
        summary
            .failover
            .map_or("none".to_owned(), |failover| format!("{failover:.2?}")),
        summary.write_gap,
        summary.acknowledged,
        summary.indeterminate,
        summary.probes,
        summary.store.returned,
        summary.store.open,
        summary.store.checked_in,
    );
    Ok(())
}

async fn drive(cluster: &mut Cluster, name: &str, fault: Fault) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let primary = cluster.wait_healthy(HEAL_BOUND).await?;
    let standby = wait_synchronous_standby(cluster, primary).await?;
    cluster.nodes[primary].query(history::SCHEMA).await?;
    println!(
        "{name}: primary n{}, synchronous standby n{} after {:.2?}",
        primary + 1,
        standby + 1,
        started.elapsed()
    );
    let mut history = History::start(cluster.nodes.iter().map(|node| node.pg_config()).collect());
    let mut store = StoreHistory::start(
        cluster
            .nodes
            .iter()
            .map(|node| format!("{}:{ETCD_PORT}", node.address))
            .collect(),
    );
    let warm = Instant::now();
    wait_until(
        Duration::from_secs(30),
        "the writer's first acknowledged write",
        || history.acknowledged_on(primary, warm),
    )
    .await
    .with_context(|| cluster.logs())?;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Safety phase: the fault.
    let fault_at = Instant::now();
    let mut failover = None;
    match fault {
        Fault::KillPrimaryHost => {
            let killed = cluster.kill_host(primary);
            println!("{name}: killed {killed} processes on n{}", primary + 1);
            failover = Some(wait_failover(cluster, &history, primary, fault_at).await?);
            cluster.nodes[primary].start()?;
        }
        Fault::PartitionPrimary => {
            cluster.network.isolate(primary)?;
            failover = Some(wait_failover(cluster, &history, primary, fault_at).await?);
            // The old primary, still cut off, keeps being watched for a while.
            tokio::time::sleep(Duration::from_secs(3)).await;
            cluster.network.heal(primary)?;
        }
        Fault::FreezePrimaryAgent => {
            cluster.nodes[primary].freeze_agent(true)?;
            let waited = wait_failover(cluster, &history, primary, fault_at).await;
            tokio::time::sleep(Duration::from_secs(3)).await;
            cluster.nodes[primary].freeze_agent(false)?;
            failover = Some(waited?);
        }
        Fault::PartitionReplica | Fault::PartitionRaftLeaderReplica => {
            let raft_leader = cluster
                .raft_leader()
                .await
                .context("no store member names a Raft leader")?;
            let replica = if fault == Fault::PartitionRaftLeaderReplica {
                ensure!(
                    raft_leader != primary,
                    "the store's Raft leader is on the primary's host n{}",
                    primary + 1
                );
                raft_leader
            } else {
                (0..cluster.nodes.len())
                    .find(|index| *index != primary && *index != raft_leader)
                    .context("every replica leads the store")?
            };
            println!(
                "{name}: cutting off replica n{} (synchronous standby: {}, store Raft leader: {})",
                replica + 1,
                replica == standby,
                replica == raft_leader
            );
            cluster.network.isolate(replica)?;
            tokio::time::sleep(TTL * 2 + Duration::from_secs(2)).await;
            cluster.network.heal(replica)?;
        }
        Fault::Load { seconds } => {
            load::hold(cluster, name, primary, Duration::from_secs(seconds)).await?;
        }
        Fault::KillPrimaryAgent => {
            failover =
                Some(faults::kill_primary_agent(cluster, name, &history, primary, fault_at).await?);
        }
        Fault::FreezePrimaryHost => {
            failover = Some(
                faults::freeze_primary_host(cluster, name, &history, primary, fault_at).await?,
            );
        }
        Fault::KillRaftLeaderReplica => {
            faults::kill_raft_leader_replica(cluster, name, primary).await?;
        }
        Fault::RollingRestart => {
            failover = Some(faults::rolling_restart(cluster, name, &history, primary).await?);
        }
        Fault::ConcurrentSwitchovers => {
            failover = Some(
                faults::concurrent_switchovers(cluster, name, &history, primary, fault_at).await?,
            );
        }
        Fault::OneWayIntoPrimary
        | Fault::OneWayFromPrimary
        | Fault::LossyPrimary
        | Fault::PrimaryDiskFull
        | Fault::PrimaryDiskStall
        | Fault::ClockStepPrimary => {
            failover = degrade::inject(cluster, &history, name, fault, primary, fault_at).await?;
        }
    }
    let fault_ended = Instant::now();

    // Liveness phase: one primary, every replica streaming, writes acknowledged again.
    let (final_primary, healed) = wait_settled(cluster, &history).await?;
    history.stop();
    store.stop();
    let writes = history.writes();
    let probes = history.probes();
    let healed_at = Instant::now();

    // (a) at most one host accepts writes at any instant: from the writer, from the observer.
    let from_writer =
        history::overlap_violations(&history::accepted_intervals(&writes, &[]), fault_at);
    let from_observer =
        history::overlap_violations(&history::accepted_intervals(&[], &probes), fault_at);
    let from_both =
        history::overlap_violations(&history::accepted_intervals(&writes, &probes), fault_at);
    ensure!(
        from_writer.is_empty() && from_observer.is_empty() && from_both.is_empty(),
        "{name}: two hosts accepted writes at once: writer {from_writer:?}, observer {from_observer:?}, together {from_both:?}\n{}",
        cluster.logs()
    );
    // (b) every acknowledged write is on the final primary; no refused one is.
    let rows: HashSet<(usize, i64)> = cluster.nodes[final_primary]
        .query("SELECT writer || ':' || seq FROM chaos_kv")
        .await?
        .iter()
        .filter_map(|row| {
            let (writer, seq) = row.split_once(':')?;
            Some((writer.parse().ok()?, seq.parse().ok()?))
        })
        .collect();
    let lost = history::durability_violations(&writes, &rows);
    ensure!(lost.is_empty(), "{name}: {lost:?}\n{}", cluster.logs());
    // (d) healed: checked by wait_healthy above; the primary changed only with a failover.
    if degrade::may_fail_over(fault) {
        failover = history
            .first_accepted_elsewhere(primary, fault_at)
            .map(|(_, at)| at.saturating_duration_since(fault_at));
        println!(
            "{name}: the primary {} (n{} -> n{})",
            if final_primary == primary {
                "stayed"
            } else {
                "moved"
            },
            primary + 1,
            final_primary + 1
        );
    } else if fault.fails_over() {
        ensure!(
            final_primary != primary,
            "{name}: n{} is primary again after the fault",
            primary + 1
        );
    } else {
        ensure!(
            final_primary == primary,
            "{name}: the primary moved from n{} to n{} though only a replica was cut off",
            primary + 1,
            final_primary + 1
        );
        if let Some((other, at)) = history.first_accepted_elsewhere(primary, fault_at) {
            bail!(
                "{name}: n{} accepted writes {:?} after the fault though only a replica was cut off",
                other + 1,
                at.saturating_duration_since(fault_at)
            );
        }
    }
    // (c) the store's key-value history is linearizable.
    let store = store
        .check()
        .await
        .with_context(|| format!("{name}: (c)"))?;
    println!(
        "{name}: fault held {:.2?}, healed {:.2?} after it ended",
        fault_ended.saturating_duration_since(fault_at),
        healed.saturating_duration_since(fault_ended)
    );
    Ok(Summary {
        name: name.to_owned(),
        failover,
        write_gap: history::write_gap(&writes, fault_at, healed_at),
        acknowledged: writes
            .iter()
            .filter(|write| write.outcome == history::Outcome::Acknowledged)
            .count(),
        indeterminate: writes
            .iter()
            .filter(|write| write.outcome == history::Outcome::Indeterminate)
            .count(),
        probes: probes.len(),
        store,
    })
}

/// Waits until the cluster is healthy and its primary acknowledges the writer's writes
/// (a primary reported healthy right at the end of a fault may still lose its lease, so a
/// primary that acknowledges nothing for a while is looked up again); the primary and when it
/// was found healthy.
async fn wait_settled(cluster: &Cluster, history: &History) -> anyhow::Result<(usize, Instant)> {
    let deadline = Instant::now() + HEAL_BOUND;
    loop {
        let primary = cluster.wait_healthy(HEAL_BOUND).await?;
        let healed = Instant::now();
        if wait_until(
            Duration::from_secs(10),
            "an acknowledged write after the heal",
            || history.acknowledged_on(primary, healed),
        )
        .await
        .is_ok()
        {
            return Ok((primary, healed));
        }
        if Instant::now() > deadline {
            bail!(
                "no primary acknowledged writes within {HEAL_BOUND:?} after the fault:\n{}",
                cluster.logs()
            );
        }
    }
}

/// Waits until a host other than `old` accepts a write; the time from the fault.
pub(crate) async fn wait_failover(
    cluster: &Cluster,
    history: &History,
    old: usize,
    fault_at: Instant,
) -> anyhow::Result<Duration> {
    let deadline = fault_at + FAILOVER_BOUND;
    loop {
        if let Some((_, at)) = history.first_accepted_elsewhere(old, fault_at) {
            return Ok(at.saturating_duration_since(fault_at));
        }
        if Instant::now() > deadline {
            bail!(
                "no other host accepted writes within {FAILOVER_BOUND:?} of the fault on n{}:\n{}",
                old + 1,
                cluster.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the primary names a synchronous standby that PostgreSQL reports `sync`; its
/// index.
async fn wait_synchronous_standby(cluster: &Cluster, primary: usize) -> anyhow::Result<usize> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let sync = cluster.nodes[primary]
            .query("SELECT application_name FROM pg_stat_replication WHERE sync_state = 'sync'")
            .await
            .unwrap_or_default();
        if let Some(name) = sync.first()
            && let Some(index) = cluster.nodes.iter().position(|node| &node.name == name)
        {
            return Ok(index);
        }
        if Instant::now() > deadline {
            bail!("no synchronous standby within 60 s:\n{}", cluster.logs());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub(crate) async fn wait_until(
    timeout: Duration,
    what: &str,
    mut done: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !done() {
        if Instant::now() > deadline {
            bail!("{what}: not within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}
