//! Process-level faults of the chaos scenarios, injected from outside the hosts: the agent
//! killed while PostgreSQL keeps running, a whole host frozen and thawed, the store's Raft
//! leader killed on a replica's host, a rolling restart, and concurrent switchover requests.
//! Each returns once the fault is over; the scenario's checks run after it.

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};
use ha_cluster_tests::writer::http_post;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::cluster::{Cluster, ETCD_PORT, REST_PORT, TTL};
use crate::history::{self, History};
use crate::scenario::{wait_failover, wait_until};

/// How long a restarted host may take to be back as a streaming replica.
const REJOIN_BOUND: Duration = Duration::from_secs(120);
/// How long a clean stop of an agent (PostgreSQL's fast shutdown included) may take.
const STOP_BOUND: Duration = Duration::from_secs(60);

/// SIGKILL to the primary's agent only, after its watchdog stand-in was told to reset the host
/// (kill every process of it) when it fires. Until the stand-in fires no other host may accept
/// a write; then another host must take over. The host is started again afterwards. Returns
/// the failover time.
pub(crate) async fn kill_primary_agent(
    cluster: &mut Cluster,
    name: &str,
    history: &History,
    primary: usize,
    fault_at: Instant,
) -> anyhow::Result<Duration> {
    let watchdog = cluster
        .watchdogs
        .get(primary)
        .context("the cluster runs no watchdog stand-ins")?;
    wait_until(
        Duration::from_secs(10),
        "the primary's watchdog armed",
        || watchdog.armed(),
    )
    .await
    .with_context(|| watchdog.log())?;
    // A watchdog reset takes the whole host down, not only the postmaster.
    let pids = cluster.network.pids(primary);
    watchdog.set_pids(&pids)?;
    let agent = cluster.nodes[primary]
        .agent_pid()
        .context("the primary's agent is not running")?;
    kill(Pid::from_raw(agent), Signal::SIGKILL)
        .with_context(|| format!("SIGKILL to the agent of n{}", primary + 1))?;
    let deadline = fault_at + Duration::from_secs(30);
    while !watchdog.fired() {
        if Instant::now() > deadline {
            bail!(
                "the watchdog of n{} did not fire within 30 s of its agent's kill:\n{}",
                primary + 1,
                watchdog.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let fired_at = fired_instant(&watchdog.log()).unwrap_or_else(Instant::now);
    println!(
        "{name}: the watchdog of n{} fired {:.2?} after its agent was killed ({} processes listed)",
        primary + 1,
        fired_at.saturating_duration_since(fault_at),
        pids.len()
    );
    let failover = wait_failover(cluster, history, primary, fault_at).await?;
    ensure!(
        fault_at + failover >= fired_at,
        "{name}: another host accepted a write {failover:.2?} after the fault, before the old primary's watchdog fired ({:.2?})",
        fired_at.saturating_duration_since(fault_at)
    );
    cluster.nodes[primary].reap();
    cluster.nodes[primary].start()?;
    Ok(failover)
}

/// When the stand-in logged `FIRED` (Unix seconds), on the monotonic clock.
fn fired_instant(log: &str) -> Option<Instant> {
    let line = log.lines().find(|line| line.contains("FIRED"))?;
    let unix: f64 = line.split_whitespace().next()?.parse().ok()?;
    let now_unix = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
    let ago = now_unix.checked_sub(Duration::from_secs_f64(unix))?;
    Instant::now().checked_sub(ago)
}

/// SIGSTOP to every process of the primary's host for three lease periods (at least until
/// another host accepts writes), then SIGCONT. Returns the failover time.
pub(crate) async fn freeze_primary_host(
    cluster: &Cluster,
    name: &str,
    history: &History,
    primary: usize,
    fault_at: Instant,
) -> anyhow::Result<Duration> {
    let pids = cluster.network.pids(primary);
    signal_all(&pids, Signal::SIGSTOP);
    println!("{name}: froze {} processes on n{}", pids.len(), primary + 1);
    let waited = wait_failover(cluster, history, primary, fault_at).await;
    tokio::time::sleep_until((fault_at + TTL * 3).into()).await;
    signal_all(&pids, Signal::SIGCONT);
    signal_all(&cluster.network.pids(primary), Signal::SIGCONT);
    println!(
        "{name}: thawed n{} after {:.2?}",
        primary + 1,
        fault_at.elapsed()
    );
    waited
}

fn signal_all(pids: &[i32], signal: Signal) {
    for pid in pids {
        let _ = kill(Pid::from_raw(*pid), signal);
    }
}

/// SIGKILL to every process of the host whose store member leads the Raft group, which must
/// not be the primary's (leadership is moved to a replica first when it is); the host stays
/// down for two lease periods and is started again.
pub(crate) async fn kill_raft_leader_replica(
    cluster: &mut Cluster,
    name: &str,
    primary: usize,
) -> anyhow::Result<()> {
    let mut leader = cluster
        .raft_leader()
        .await
        .context("no store member names a Raft leader")?;
    if leader == primary {
        let target = (0..cluster.nodes.len())
            .find(|index| *index != primary)
            .context("no replica")?;
        move_raft_leader(cluster, leader, target).await?;
        println!(
            "{name}: moved the Raft leadership from the primary's host n{} to n{}",
            primary + 1,
            target + 1
        );
        leader = target;
    }
    let killed = cluster.kill_host(leader);
    println!(
        "{name}: killed {killed} processes on n{} (store Raft leader, PostgreSQL replica)",
        leader + 1
    );
    tokio::time::sleep(TTL * 2 + Duration::from_secs(2)).await;
    cluster.nodes[leader].start()?;
    Ok(())
}

/// Asks the Raft leader on host `from` to hand leadership to the member on host `to`, and
/// waits (10 s at most) until the members name it.
async fn move_raft_leader(cluster: &Cluster, from: usize, to: usize) -> anyhow::Result<()> {
    let status = |index: usize| {
        let address = format!("{}:{ETCD_PORT}", cluster.nodes[index].address);
        async move {
            let (code, body) = tokio::time::timeout(
                Duration::from_secs(5),
                http_post(&address, "/v3/maintenance/status", "{}"),
            )
            .await
            .context("maintenance/status timed out")??;
            ensure!(
                code == 200,
                "maintenance/status on {address}: {code} {body}"
            );
            let status: serde_json::Value = serde_json::from_str(&body)?;
            status["header"]["member_id"]
                .as_str()
                .map(str::to_owned)
                .context("maintenance/status names no member_id")
        }
    };
    let target = status(to).await?;
    let address = format!("{}:{ETCD_PORT}", cluster.nodes[from].address);
    let body = serde_json::json!({ "targetID": target }).to_string();
    let (code, answer) = tokio::time::timeout(
        Duration::from_secs(10),
        http_post(&address, "/v3/maintenance/transfer-leadership", &body),
    )
    .await
    .context("transfer-leadership timed out")??;
    ensure!(
        code == 200,
        "transfer-leadership to n{}: {code} {answer}",
        to + 1
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while cluster.raft_leader().await != Some(to) {
        if Instant::now() > deadline {
            bail!(
                "the Raft leadership did not move to n{} within 10 s",
                to + 1
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// SIGTERM to each host's agent in turn, replicas first and the primary last, each started
/// again and back as a streaming replica before the next. A replica's restart must not move
/// the primary; the primary's may move it once. Returns the time from the primary's SIGTERM
/// to the first write another host accepted.
pub(crate) async fn rolling_restart(
    cluster: &mut Cluster,
    name: &str,
    history: &History,
    primary: usize,
) -> anyhow::Result<Duration> {
    let mut order: Vec<usize> = (0..cluster.nodes.len())
        .filter(|index| *index != primary)
        .collect();
    order.push(primary);
    let mut failover = None;
    for host in order {
        // As a careful operator does: each restart starts from a cluster whose primary has a
        // synchronous standby recorded (a primary that leaves while none is recorded leaves
        // no replica allowed to take over).
        wait_synchronous_standby(cluster, primary).await?;
        let step = Instant::now();
        cluster.nodes[host].terminate(STOP_BOUND)?;
        let stopped = step.elapsed();
        let left = cluster.network.pids(host);
        ensure!(
            left.is_empty(),
            "{name}: n{}'s agent exited after SIGTERM but left processes {left:?}",
            host + 1
        );
        if host == primary {
            failover = Some(wait_failover(cluster, history, primary, step).await?);
        }
        cluster.nodes[host].start()?;
        let now_primary = cluster.wait_healthy(REJOIN_BOUND).await?;
        let movers: HashSet<usize> =
            history::accepted_intervals(&history.writes(), &history.probes())
                .into_iter()
                .filter(|(node, invoked, _)| *node != primary && *invoked >= step)
                .map(|(node, _, _)| node)
                .collect();
        if host == primary {
            ensure!(
                movers.len() <= 1 && now_primary != primary,
                "{name}: the primary n{}'s restart moved the primary to {movers:?} (now n{})",
                primary + 1,
                now_primary + 1
            );
        } else {
            ensure!(
                movers.is_empty() && now_primary == primary,
                "{name}: the replica n{}'s restart moved the primary from n{} (now n{}, writes accepted on {movers:?})",
                host + 1,
                primary + 1,
                now_primary + 1
            );
        }
        println!(
            "{name}: n{} stopped {stopped:.2?} after SIGTERM, healthy again {:.2?} after it; primary n{}",
            host + 1,
            step.elapsed(),
            now_primary + 1
        );
    }
    failover.context("the primary was not restarted")
}

/// Waits (60 s at most) until the cluster is healthy with `primary` as its primary and a
/// replica's agent reports itself the synchronous standby (`GET /sync` answers 200).
async fn wait_synchronous_standby(cluster: &Cluster, primary: usize) -> anyhow::Result<usize> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if cluster.healthy().await == Some(primary) {
            for (index, node) in cluster.nodes.iter().enumerate() {
                let address = format!("{}:{REST_PORT}", node.address);
                if index != primary && http_status(&address, "/sync").await == Some(200) {
                    return Ok(index);
                }
            }
        }
        if Instant::now() > deadline {
            bail!(
                "n{} had no synchronous standby within 60 s:\n{}",
                primary + 1,
                cluster.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The status code of `GET path` (2 s deadline), or `None` when there is no answer.
async fn http_status(address: &str, path: &str) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fetch = async {
        let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await.ok()?;
        response.split_whitespace().nth(1)?.parse().ok()
    };
    tokio::time::timeout(Duration::from_secs(2), fetch)
        .await
        .ok()
        .flatten()
}

/// Two or three `POST /switchover` at once, one to each host's REST API, all from the current
/// primary but naming different candidates. At least one must succeed, and every success must
/// name a host that became primary. Returns the failover time.
pub(crate) async fn concurrent_switchovers(
    cluster: &Cluster,
    name: &str,
    history: &History,
    primary: usize,
    fault_at: Instant,
) -> anyhow::Result<Duration> {
    let leader = cluster.nodes[primary].name.clone();
    let replicas: Vec<usize> = (0..cluster.nodes.len())
        .filter(|index| *index != primary)
        .collect();
    let mut calls = Vec::new();
    for (index, node) in cluster.nodes.iter().enumerate() {
        let candidate = replicas[index % replicas.len()];
        let address = format!("{}:{REST_PORT}", node.address);
        let body = serde_json::json!({
            "leader": leader,
            "candidate": cluster.nodes[candidate].name,
        })
        .to_string();
        let call = tokio::spawn(async move {
            tokio::time::timeout(
                Duration::from_secs(60),
                http_post(&address, "/switchover", &body),
            )
            .await
        });
        calls.push((index, candidate, call));
    }
    let mut claimed = Vec::new();
    for (index, candidate, call) in calls {
        let answer = match call.await {
            Ok(Ok(Ok((code, body)))) => {
                if (200..300).contains(&code) {
                    claimed.push(body.clone());
                }
                format!("{code} {}", body.trim())
            }
            Ok(Ok(Err(error))) => format!("error {error:#}"),
            Ok(Err(_)) => "no answer within 60 s".to_owned(),
            Err(error) => format!("task failed: {error}"),
        };
        println!(
            "{name}: switchover n{} -> n{} via n{}: {answer}",
            primary + 1,
            candidate + 1,
            index + 1
        );
    }
    ensure!(
        !claimed.is_empty(),
        "{name}: none of the concurrent switchovers succeeded"
    );
    let failover = wait_failover(cluster, history, primary, fault_at).await?;
    let now_primary = cluster.wait_healthy(REJOIN_BOUND).await?;
    let became: HashSet<String> = history::accepted_intervals(&history.writes(), &history.probes())
        .into_iter()
        .filter(|(node, invoked, _)| *node != primary && *invoked >= fault_at)
        .map(|(node, _, _)| cluster.nodes[node].name.clone())
        .chain(std::iter::once(cluster.nodes[now_primary].name.clone()))
        .collect();
    for claim in &claimed {
        ensure!(
            became
                .iter()
                .any(|host| claim.contains(&format!("to \\\"{host}\\\""))
                    || claim.contains(&format!("to \"{host}\""))),
            "{name}: a switchover claimed {claim:?} but only {became:?} became primary"
        );
    }
    Ok(failover)
}
