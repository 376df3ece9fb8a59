//! Self-healing and quorum loss with three `pgwarden run` members and real PostgreSQL 15:
//! a PostgreSQL crash on the primary is restarted in place under the same lease (no failover,
//! same timeline), also when the postmaster first went silent (SIGSTOP) and then died; a
//! crashed replica restarts and catches up; a replica forked onto its own timeline is rewound
//! or re-created per configuration; a primary whose store loses its majority (peers dead or
//! hung) stops accepting writes before its lease deadline, and the cluster heals when the
//! majority returns; with `primary_start_timeout: 0` a primary crash fails over instead, and a
//! primary whose PostgreSQL fails to start gives up its key at once.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use ha_cluster_tests::{Cluster, ClusterOptions, Node, http_get_json};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::task::JoinHandle;

/// The default leader lease (`ttl`) of a `pgwarden run` cluster.
const TTL: Duration = Duration::from_secs(5);

/// Waits until `probe` holds, polling every 50 ms; fails with `what` and the logs after
/// `timeout`.
async fn eventually<F, Fut>(
    cluster: &Cluster,
    timeout: Duration,
    what: &str,
    mut probe: F,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if probe().await {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what}: not within {timeout:?}\n{}", cluster.logs());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A three-member cluster with one primary and two streaming replicas; the primary's index.
async fn healthy_cluster(options: ClusterOptions) -> anyhow::Result<(Cluster, usize)> {
    let started_at = Instant::now();
    let cluster = Cluster::start_with(3, options)?;
    let primary = cluster.wait_healthy(2, Duration::from_secs(120)).await?;
    println!(
        "bootstrap: primary n{} and two streaming replicas after {:.2?}",
        primary + 1,
        started_at.elapsed()
    );
    Ok((cluster, primary))
}

fn replicas_of(cluster: &Cluster, primary: usize) -> Vec<usize> {
    (0..cluster.nodes.len())
        .filter(|index| *index != primary)
        .collect()
}

async fn timeline(node: &Node) -> anyhow::Result<String> {
    node.query("SELECT timeline_id FROM pg_control_checkpoint()")
        .await?
        .context("pg_control_checkpoint() returned no row")
}

/// One `/patroni` answer seen by the [`RoleMonitor`].
#[derive(Debug, Clone)]
struct RoleSample {
    node: usize,
    after: Duration,
    role: String,
    state: String,
}

/// Polls `/patroni` of every node at about 20 Hz on its own task and records every answer,
/// so a test can check afterwards who claimed to be primary while it was healing.
struct RoleMonitor {
    stop: Arc<AtomicBool>,
    task: JoinHandle<Vec<RoleSample>>,
}

impl RoleMonitor {
    fn start(cluster: &Cluster) -> RoleMonitor {
        let addresses: Vec<String> = cluster.nodes.iter().map(Node::rest_address).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = stop.clone();
        let task = tokio::spawn(async move {
            let started_at = Instant::now();
            let mut samples = Vec::new();
            while !stop_flag.load(Ordering::SeqCst) {
                for (node, address) in addresses.iter().enumerate() {
                    if let Some(status) = http_get_json(address, "/patroni").await {
                        samples.push(RoleSample {
                            node,
                            after: started_at.elapsed(),
                            role: status["role"].as_str().unwrap_or_default().to_owned(),
                            state: status["state"].as_str().unwrap_or_default().to_owned(),
                        });
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            samples
        });
        RoleMonitor { stop, task }
    }

    async fn finish(self) -> anyhow::Result<Vec<RoleSample>> {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.context("join the role monitor")
    }
}

/// Seconds since midnight UTC of a wall-clock time.
fn seconds_of_day(time: SystemTime) -> f64 {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    (since_epoch.as_secs() % 86_400) as f64 + f64::from(since_epoch.subsec_micros()) / 1e6
}

/// Seconds since midnight UTC of a log line's timestamp (`2026-01-01T12:34:56.123456Z ...`).
fn log_line_seconds_of_day(line: &str) -> Option<f64> {
    let timestamp = line.split_whitespace().next()?;
    let (_, time) = timestamp.split_once('T')?;
    let time = time.trim_end_matches('Z');
    let mut parts = time.split(':');
    let hours: f64 = parts.next()?.parse().ok()?;
    let minutes: f64 = parts.next()?.parse().ok()?;
    let seconds: f64 = parts.next()?.parse().ok()?;
    Some(hours * 3600.0 + minutes * 60.0 + seconds)
}

/// How long after `since` the first line of `log` containing `needle` was written.
fn logged_after(log: &str, needle: &str, since: SystemTime) -> Option<Duration> {
    let line = log.lines().find(|line| line.contains(needle))?;
    let delta = (log_line_seconds_of_day(line)? - seconds_of_day(since)).rem_euclid(86_400.0);
    Some(Duration::from_secs_f64(delta))
}

/// Fails, saying `what` happened, when a member other than `primary` answered `/patroni` as
/// primary.
fn assert_no_other_primary(samples: &[RoleSample], primary: usize, what: &str) {
    let usurpers: Vec<&RoleSample> = samples
        .iter()
        .filter(|sample| sample.node != primary && sample.role == "primary")
        .collect();
    assert!(usurpers.is_empty(), "{what}: {usurpers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_crash_restarts_in_place() -> anyhow::Result<()> {
    let (cluster, primary) = healthy_cluster(ClusterOptions::default()).await?;
    let node = &cluster.nodes[primary];
    assert!(node.accepts_writes().await, "the primary accepts writes");
    let timeline_before = timeline(node).await?;
    let pid_before = node
        .postmaster_pid()
        .context("the primary's postmaster pid")?;
    let log_offset = node.log().len();

    // Phase 1: SIGKILL the primary's postmaster; its agent keeps running and holding the lease.
    let monitor = RoleMonitor::start(&cluster);
    let killed_wall = SystemTime::now();
    let killed_at = Instant::now();
    assert_eq!(node.kill_postmaster(), Some(pid_before));

    // Phase 2: the same node accepts writes again, from a new postmaster (crash recovery).
    eventually(
        &cluster,
        Duration::from_secs(60),
        "the crashed primary accepts writes again",
        || async { node.postmaster_pid() != Some(pid_before) && node.accepts_writes().await },
    )
    .await?;
    let recovered = killed_at.elapsed();
    println!(
        "primary crash: n{} writable again {recovered:.2?} after kill -9 of its postmaster",
        primary + 1
    );

    // Phase 3: the replicas stream from the new postmaster again.
    eventually(
        &cluster,
        Duration::from_secs(60),
        "both replicas stream from the restarted primary",
        || async {
            node.query("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")
                .await
                .ok()
                .flatten()
                .as_deref()
                == Some("2")
        },
    )
    .await?;
    println!(
        "primary crash: both replicas streaming again {:.2?} after the kill",
        killed_at.elapsed()
    );
    for replica in replicas_of(&cluster, primary) {
        cluster
            .wait_streaming(replica, Duration::from_secs(60))
            .await?;
    }
    // Keep watching for two lease periods: a replica that wrongly raced for the key would
    // have done so once the lease could have expired.
    while killed_at.elapsed() < TTL * 2 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let samples = monitor.finish().await?;

    // No other member claimed the primary role while it recovered.
    assert_no_other_primary(
        &samples,
        primary,
        "another member became primary during crash recovery",
    );
    let down: Vec<Duration> = samples
        .iter()
        .filter(|sample| sample.node == primary && sample.state != "running")
        .map(|sample| sample.after)
        .collect();
    println!(
        "primary crash: {} /patroni samples; the crashed node reported not running in {} of them, from {:.2?} to {:.2?}",
        samples.len(),
        down.len(),
        down.first(),
        down.last()
    );

    // Crash recovery, not a promotion: the timeline is unchanged, and it still leads.
    assert_eq!(
        timeline(node).await?,
        timeline_before,
        "timeline after restart"
    );
    eventually(
        &cluster,
        Duration::from_secs(10),
        "the restarted primary reports holding the leader key (GET /leader 200)",
        || async { node.http_status("/leader").await == Some(200) },
    )
    .await?;

    // The agent handled the exit as a crash and restarted PostgreSQL as primary.
    let log = node.log();
    let log = &log[log_offset.min(log.len())..];
    let detected = logged_after(log, "postmaster exited unexpectedly", killed_wall)
        .with_context(|| format!("no crash line in the primary's log:\n{log}"))?;
    let restarted = logged_after(log, "restarting_primary_after_crash", killed_wall)
        .with_context(|| format!("no restart decision in the primary's log:\n{log}"))?;
    println!(
        "primary crash: exit seen after {detected:.3?}, restart decided after {restarted:.3?}"
    );
    // The exit wakes the loop; the next timer tick (loop_wait = 1 s) would be later than this.
    assert!(
        detected < Duration::from_secs(1),
        "the crash was seen only after {detected:?}"
    );
    Ok(())
}

/// A primary's postmaster that stops answering (SIGSTOP, as a hung or dying server) and then
/// dies is a crash, not a failed start: the node restarts it in place under its key. Once, a
/// cycle that saw the silent postmaster as "starting" made its exit read as a start that
/// failed, and the primary gave up its key (a failover instead of a restart, seen in CI when
/// a cycle ran between the SIGKILL and the kernel's reaping of the process).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_then_dead_postmaster_is_restarted_in_place() -> anyhow::Result<()> {
    let (cluster, primary) = healthy_cluster(ClusterOptions::default()).await?;
    let node = &cluster.nodes[primary];
    let pid_before = node
        .postmaster_pid()
        .context("the primary's postmaster pid")?;
    let monitor = RoleMonitor::start(&cluster);
    let postmaster = Pid::from_raw(pid_before);
    kill(postmaster, Signal::SIGSTOP)?;
    eventually(
        &cluster,
        Duration::from_secs(30),
        "the agent to report its silent postmaster as starting",
        || async {
            node.patroni()
                .await
                .is_some_and(|status| status["state"] == "starting")
        },
    )
    .await?;
    kill(postmaster, Signal::SIGKILL)?;
    eventually(
        &cluster,
        Duration::from_secs(60),
        "the primary accepts writes again from a new postmaster",
        || async { node.postmaster_pid() != Some(pid_before) && node.accepts_writes().await },
    )
    .await?;
    let samples = monitor.finish().await?;
    assert_no_other_primary(
        &samples,
        primary,
        "another member became primary during crash recovery",
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_crash_restarts_and_catches_up() -> anyhow::Result<()> {
    let (cluster, primary) = healthy_cluster(ClusterOptions::default()).await?;
    let replica = replicas_of(&cluster, primary)[0];
    let primary_node = &cluster.nodes[primary];
    let replica_node = &cluster.nodes[replica];
    primary_node
        .query("CREATE TABLE crash_rows (id int)")
        .await?;
    let pid_before = replica_node
        .postmaster_pid()
        .context("the replica's postmaster pid")?;
    let log_offset = replica_node.log().len();

    // Phase 1: SIGKILL the replica's postmaster and write on the primary meanwhile.
    let monitor = RoleMonitor::start(&cluster);
    let killed_at = Instant::now();
    assert_eq!(replica_node.kill_postmaster(), Some(pid_before));
    for _ in 0..10 {
        primary_node
            .query("INSERT INTO crash_rows SELECT generate_series(1, 100)")
            .await?;
    }

    // Phase 2: the replica runs again from a new postmaster and streams.
    eventually(
        &cluster,
        Duration::from_secs(60),
        "the crashed replica runs again",
        || async {
            replica_node
                .postmaster_pid()
                .is_some_and(|pid| pid != pid_before)
        },
    )
    .await?;
    cluster
        .wait_streaming(replica, Duration::from_secs(60))
        .await?;
    println!(
        "replica crash: n{} streaming {:.2?} after kill -9",
        replica + 1,
        killed_at.elapsed()
    );

    // Phase 3: it has every row written while it was down.
    eventually(
        &cluster,
        Duration::from_secs(30),
        "the replica has the 1000 rows",
        || async {
            replica_node
                .query("SELECT count(*) FROM crash_rows")
                .await
                .ok()
                .flatten()
                .as_deref()
                == Some("1000")
        },
    )
    .await?;
    println!(
        "replica crash: caught up {:.2?} after kill -9",
        killed_at.elapsed()
    );
    assert_eq!(
        replica_node
            .query("SELECT pg_is_in_recovery()")
            .await?
            .as_deref(),
        Some("t"),
        "the replica restarted as a replica"
    );

    let samples = monitor.finish().await?;
    assert_no_other_primary(&samples, primary, "a replica became primary");
    assert!(
        primary_node.accepts_writes().await,
        "the primary still accepts writes"
    );
    let log = replica_node.log();
    let log = &log[log_offset.min(log.len())..];
    assert!(
        log.contains("postmaster exited unexpectedly"),
        "the replica's agent saw the crash:\n{log}"
    );
    Ok(())
}

/// How the primary's store loses its majority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QuorumLoss {
    /// Both replica hosts die (agent and postmaster SIGKILLed): peers refuse connections.
    Killed,
    /// Both replica agents hang (SIGSTOP): store requests get no answer and no error.
    Frozen,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_loss_stops_writes_then_heals() -> anyhow::Result<()> {
    quorum_loss_scenario(QuorumLoss::Killed).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_loss_with_hung_peers_stops_writes_then_heals() -> anyhow::Result<()> {
    quorum_loss_scenario(QuorumLoss::Frozen).await
}

/// The primary's store loses its majority: it must refuse writes before its lease could
/// expire and never accept one again; when the peers return, the cluster heals.
async fn quorum_loss_scenario(how: QuorumLoss) -> anyhow::Result<()> {
    let (mut cluster, primary) = healthy_cluster(ClusterOptions::default()).await?;
    let replicas = replicas_of(&cluster, primary);
    assert!(cluster.nodes[primary].accepts_writes().await);

    // Phase 1: the store keeps one member of three; quorum is gone with the second peer.
    let lost_at = match how {
        QuorumLoss::Killed => {
            cluster.nodes[replicas[0]].kill_hard();
            let lost_at = Instant::now();
            cluster.nodes[replicas[1]].kill_hard();
            lost_at
        }
        QuorumLoss::Frozen => {
            assert!(cluster.nodes[replicas[0]].freeze());
            let lost_at = Instant::now();
            assert!(cluster.nodes[replicas[1]].freeze());
            lost_at
        }
    };

    // Phase 2: probe writes until well past the lease; record the last one that committed.
    let node = &cluster.nodes[primary];
    let mut last_accepted: Option<Duration> = None;
    let mut first_refused: Option<Duration> = None;
    let mut accepted_after_refusal = Vec::new();
    while lost_at.elapsed() < TTL * 2 + Duration::from_secs(2) {
        let accepted = node.accepts_writes().await;
        let at = lost_at.elapsed();
        match (accepted, first_refused) {
            (true, None) => last_accepted = Some(at),
            (true, Some(_)) => accepted_after_refusal.push(at),
            (false, None) => first_refused = Some(at),
            (false, Some(_)) => {}
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let Some(refused) = first_refused else {
        bail!(
            "{how:?}: the primary kept accepting writes {:?} after losing quorum\n{}",
            lost_at.elapsed(),
            cluster.logs()
        );
    };
    println!(
        "quorum loss ({how:?}): last write accepted at {last_accepted:.2?}, first refused at {refused:.2?} after losing quorum"
    );
    assert!(
        accepted_after_refusal.is_empty(),
        "{how:?}: writes accepted again after the first refusal, at {accepted_after_refusal:?}"
    );
    // The last keepalive was sent before quorum was lost, so the agent's own lease deadline
    // (`ttl` − 1 s after that keepalive) falls before `lost_at + ttl − 1 s`, and the store
    // may expire the lease `ttl` after `lost_at` at the earliest. No write may commit after
    // the deadline; half a second is allowed for the immediate stop and the probe itself.
    if let Some(last) = last_accepted {
        assert!(
            last < TTL - Duration::from_millis(500),
            "{how:?}: a write committed {last:?} after losing quorum, past the lease (ttl {TTL:?})\n{}",
            cluster.logs()
        );
    }
    assert!(refused < TTL * 2, "writes refused only after {refused:?}");
    assert_ne!(
        node.http_status("/primary").await,
        Some(200),
        "/primary still reports a running primary holding the lock"
    );
    if let Some(status) = node.patroni().await {
        assert!(
            !(status["role"] == "primary" && status["state"] == "running"),
            "/patroni still reports a running primary: {status}"
        );
    }

    // Phase 3: the peers come back; one writable primary and two streaming replicas.
    let restarted_at = Instant::now();
    for replica in &replicas {
        match how {
            QuorumLoss::Killed => cluster.nodes[*replica].start()?,
            QuorumLoss::Frozen => assert!(cluster.nodes[*replica].thaw()),
        }
    }
    let new_primary = cluster.wait_healthy(2, Duration::from_secs(120)).await?;
    let recovery = restarted_at.elapsed();
    let mut writable = Vec::new();
    for (index, node) in cluster.nodes.iter().enumerate() {
        if node.accepts_writes().await {
            writable.push(index);
        }
    }
    println!(
        "quorum loss ({how:?}): healed {recovery:.2?} after the peers returned; primary n{}",
        new_primary + 1
    );
    assert_eq!(writable, vec![new_primary], "exactly one writable primary");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_crash_fails_over_when_start_timeout_is_zero() -> anyhow::Result<()> {
    let options = ClusterOptions {
        dcs_yaml: "primary_start_timeout: 0".to_owned(),
        ..ClusterOptions::default()
    };
    let (cluster, primary) = healthy_cluster(options).await?;
    let pid_before = cluster.nodes[primary]
        .postmaster_pid()
        .context("the primary's postmaster pid")?;

    // Phase 1: a crash with no start budget: another member takes over instead.
    let killed_at = Instant::now();
    assert_eq!(cluster.nodes[primary].kill_postmaster(), Some(pid_before));
    let new_primary = cluster
        .wait_writable(primary, Duration::from_secs(30))
        .await?;
    println!(
        "primary_start_timeout 0: n{} accepts writes {:.2?} after the crash of n{}",
        new_primary + 1,
        killed_at.elapsed(),
        primary + 1
    );

    // Phase 2: the crashed primary rejoins as a replica of the new one.
    cluster
        .wait_streaming(primary, Duration::from_secs(60))
        .await?;
    println!(
        "primary_start_timeout 0: old primary streaming {:.2?} after the crash",
        killed_at.elapsed()
    );
    let mut writable = Vec::new();
    for (index, node) in cluster.nodes.iter().enumerate() {
        if node.accepts_writes().await {
            writable.push(index);
        }
    }
    assert_eq!(writable, vec![new_primary], "exactly one writable primary");
    Ok(())
}

/// How a member configured to follow handles a timeline it cannot follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DivergedRepair {
    /// `use_pg_rewind: true` (the default): pg_rewind from the leader.
    Rewind,
    /// `use_pg_rewind: false` and `remove_data_directory_on_diverged_timelines: true`: the
    /// data directory is wiped and cloned again.
    Reinitialize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diverged_replica_is_rewound() -> anyhow::Result<()> {
    diverged_replica_scenario(DivergedRepair::Rewind).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diverged_replica_is_reinitialized_when_configured() -> anyhow::Result<()> {
    diverged_replica_scenario(DivergedRepair::Reinitialize).await
}

/// A replica promoted behind its agent's back forks a new timeline it cannot follow the
/// leader from: its agent stops it and repairs it per configuration (rewind or re-create),
/// after which it streams from the leader again without the writes of its fork.
async fn diverged_replica_scenario(repair: DivergedRepair) -> anyhow::Result<()> {
    let options = ClusterOptions {
        postgresql_yaml: match repair {
            DivergedRepair::Rewind => String::new(),
            DivergedRepair::Reinitialize => {
                "use_pg_rewind: false\nremove_data_directory_on_diverged_timelines: true".to_owned()
            }
        },
        ..ClusterOptions::default()
    };
    let (cluster, primary) = healthy_cluster(options).await?;
    let replica = replicas_of(&cluster, primary)[0];
    let primary_node = &cluster.nodes[primary];
    let replica_node = &cluster.nodes[replica];
    let timeline_before = timeline(primary_node).await?;
    primary_node
        .query("CREATE TABLE diverge (id int); INSERT INTO diverge VALUES (1)")
        .await?;
    let log_offset = replica_node.log().len();

    // Phase 1: promote the replica by hand; it may take a write on its own timeline.
    let forked_at = Instant::now();
    // The agent stops the forked server as soon as it sees it promoted, which can close the
    // session before `pg_promote()` returns ("connection closed", once in CI): that, or a
    // server already out of recovery, means the promotion happened. The fork itself is shown
    // below by the agent's repair decision.
    eventually(
        &cluster,
        Duration::from_secs(30),
        "the replica to be promoted by hand",
        || async {
            match replica_node.query("SELECT pg_promote()").await {
                Ok(answer) => answer.as_deref() == Some("t"),
                Err(error) => {
                    let error = format!("{error:#}");
                    error.contains("connection closed")
                        || error.contains("recovery is not in progress")
                }
            }
        },
    )
    .await?;
    let _ = replica_node.query("INSERT INTO diverge VALUES (666)").await;
    primary_node.query("INSERT INTO diverge VALUES (2)").await?;

    // Phase 2: the replica is repaired and streams from the leader again.
    eventually(
        &cluster,
        Duration::from_secs(120),
        "the diverged replica streams from the leader with its rows",
        || async {
            replica_node
                .query("SELECT string_agg(id::text, ',' ORDER BY id) FROM diverge")
                .await
                .ok()
                .flatten()
                .as_deref()
                == Some("1,2")
                && replica_node
                    .query("SELECT pg_is_in_recovery()")
                    .await
                    .ok()
                    .flatten()
                    .as_deref()
                    == Some("t")
        },
    )
    .await?;
    cluster
        .wait_streaming(replica, Duration::from_secs(60))
        .await?;
    println!(
        "diverged replica ({repair:?}): n{} streaming without its fork {:.2?} after the promotion",
        replica + 1,
        forked_at.elapsed()
    );
    let log = replica_node.log();
    let log = &log[log_offset.min(log.len())..];
    let label = match repair {
        DivergedRepair::Rewind => "reason=\"rewinding\"",
        DivergedRepair::Reinitialize => "reason=\"reinitializing\"",
    };
    assert!(
        log.contains(label),
        "{repair:?}: the replica's agent logged no {label} decision:\n{log}"
    );

    // The leader was never disturbed: same timeline, the only writable member.
    assert_eq!(timeline(primary_node).await?, timeline_before);
    let mut writable = Vec::new();
    for (index, node) in cluster.nodes.iter().enumerate() {
        if node.accepts_writes().await {
            writable.push(index);
        }
    }
    assert_eq!(writable, vec![primary], "exactly one writable primary");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_that_cannot_start_releases_the_key_at_once() -> anyhow::Result<()> {
    // A long start timeout: the failover below must not wait for it.
    const START_TIMEOUT: Duration = Duration::from_secs(300);
    let options = ClusterOptions {
        dcs_yaml: format!("primary_start_timeout: {}", START_TIMEOUT.as_secs()),
        ..ClusterOptions::default()
    };
    let (cluster, primary) = healthy_cluster(options).await?;
    let node = &cluster.nodes[primary];
    let pid_before = node
        .postmaster_pid()
        .context("the primary's postmaster pid")?;

    // Phase 1: a configuration error makes every start fail at once, then PostgreSQL
    // crashes: the restart in place fails, and a primary whose PostgreSQL failed to start
    // gives up the leader key at once (as Patroni's post-recovery step does) rather than
    // holding it, unwritable, until `primary_start_timeout`.
    let auto_conf = node.spec.data_dir().join("postgresql.auto.conf");
    let original = std::fs::read_to_string(&auto_conf).context("read postgresql.auto.conf")?;
    std::fs::write(&auto_conf, format!("{original}no_such_parameter = on\n"))
        .context("break postgresql.auto.conf")?;
    let killed_at = Instant::now();
    assert_eq!(node.kill_postmaster(), Some(pid_before));

    // Phase 2: another member takes over, long before the start timeout.
    let new_primary = cluster
        .wait_writable(primary, Duration::from_secs(60))
        .await?;
    println!(
        "start failed: n{} accepts writes {:.2?} after the crash of n{}",
        new_primary + 1,
        killed_at.elapsed(),
        primary + 1
    );
    let log = node.log();
    assert!(
        log.contains("reason=\"start_failed_releasing_lock\""),
        "the crashed primary's agent logged no release after the failed start:\n{}",
        cluster.logs()
    );

    // Phase 3: with its configuration repaired, the old primary rejoins as a replica.
    std::fs::write(&auto_conf, original).context("repair postgresql.auto.conf")?;
    cluster
        .wait_streaming(primary, Duration::from_secs(60))
        .await?;
    println!(
        "start failed: old primary streaming {:.2?} after the crash",
        killed_at.elapsed()
    );
    let mut writable = Vec::new();
    for (index, node) in cluster.nodes.iter().enumerate() {
        if node.accepts_writes().await {
            writable.push(index);
        }
    }
    assert_eq!(writable, vec![new_primary], "exactly one writable primary");
    Ok(())
}
