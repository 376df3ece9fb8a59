//! What the clients saw, recorded against the one CLOCK_MONOTONIC all hosts share, and the
//! checks run over it.
//!
//! * The writer: one client per host inserting unique `(writer, seq)` rows into `chaos_kv`
//!   with a client-side deadline. Each attempt is recorded as acknowledged, failed (refused
//!   as read-only, so certainly not written) or indeterminate (deadline, cancel, broken
//!   connection: it may or may not have committed).
//! * The observer: every 50 ms per host, `SELECT NOT pg_is_in_recovery()` and, on a
//!   read-write server, a committed probe INSERT; a probe counts as accepted only when its
//!   commit was acknowledged within the deadline (a commit waiting for a synchronous standby
//!   is not a write the node accepts).

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_postgres::error::SqlState;

/// A statement's client-side deadline; past it the client cancels the statement and records
/// the attempt as indeterminate.
const DEADLINE: Duration = Duration::from_secs(1);

/// The observer's period per host (20 Hz).
const OBSERVER_PERIOD: Duration = Duration::from_millis(50);

/// The tables the writer and the observer need, created on the primary before they start.
pub const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS chaos_kv (writer int, seq bigint, PRIMARY KEY (writer, seq)); \
     CREATE TABLE IF NOT EXISTS chaos_probe (at timestamptz)";

/// How one write attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Acknowledged,
    /// Refused by a read-only server: it was certainly not written.
    Failed,
    /// Deadline passed, cancelled or connection lost: it may have committed.
    Indeterminate,
}

/// One write attempt of the writer.
#[derive(Debug, Clone, Copy)]
pub struct Write {
    /// The host the client talked to (also the `writer` column).
    pub node: usize,
    pub seq: i64,
    pub invoked: Instant,
    pub completed: Instant,
    pub outcome: Outcome,
}

/// One observer round on one host.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    pub node: usize,
    pub invoked: Instant,
    pub completed: Instant,
    /// `NOT pg_is_in_recovery()`, when the server answered.
    pub read_write: Option<bool>,
    /// The probe INSERT's commit was acknowledged.
    pub accepted: bool,
}

/// The recording tasks (aborted when dropped) and what they recorded.
#[derive(Debug)]
pub struct History {
    writes: Arc<Mutex<Vec<Write>>>,
    probes: Arc<Mutex<Vec<Probe>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl History {
    /// Starts a writer and an observer per host (connection settings per host).
    pub fn start(hosts: Vec<tokio_postgres::Config>) -> History {
        let writes = Arc::new(Mutex::new(Vec::new()));
        let probes = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (node, config) in hosts.into_iter().enumerate() {
            tasks.push(tokio::spawn(write_loop(
                node,
                config.clone(),
                writes.clone(),
            )));
            tasks.push(tokio::spawn(observe_loop(node, config, probes.clone())));
        }
        History {
            writes,
            probes,
            tasks,
        }
    }

    pub fn writes(&self) -> Vec<Write> {
        self.writes
            .lock()
            .map(|writes| writes.clone())
            .unwrap_or_default()
    }

    pub fn probes(&self) -> Vec<Probe> {
        self.probes
            .lock()
            .map(|probes| probes.clone())
            .unwrap_or_default()
    }

    /// The first acknowledged write or accepted probe on a host other than `except`, completed
    /// after `since`: (host, when).
    pub fn first_accepted_elsewhere(
        &self,
        except: usize,
        since: Instant,
    ) -> Option<(usize, Instant)> {
        accepted_intervals(&self.writes(), &self.probes())
            .into_iter()
            .filter(|(node, _, completed)| *node != except && *completed >= since)
            .map(|(node, _, completed)| (node, completed))
            .min_by_key(|(_, completed)| *completed)
    }

    /// Whether host `node` acknowledged a writer's write completed after `since`.
    pub fn acknowledged_on(&self, node: usize, since: Instant) -> bool {
        self.writes().iter().any(|write| {
            write.node == node && write.outcome == Outcome::Acknowledged && write.completed >= since
        })
    }

    /// Stops the recording tasks.
    pub fn stop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Drop for History {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `(node, invoked, completed)` of every acknowledged write and accepted probe.
pub fn accepted_intervals(writes: &[Write], probes: &[Probe]) -> Vec<(usize, Instant, Instant)> {
    writes
        .iter()
        .filter(|write| write.outcome == Outcome::Acknowledged)
        .map(|write| (write.node, write.invoked, write.completed))
        .chain(
            probes
                .iter()
                .filter(|probe| probe.accepted)
                .map(|probe| (probe.node, probe.invoked, probe.completed)),
        )
        .collect()
}

/// Check (a), at most one host accepts writes at any instant, over accepted intervals
/// `(node, invoked, completed)` since `since`.
/// A host that first accepted a write before another host's first accepted write must accept
/// none invoked after that one completed: its commit then certainly followed the other host's
/// first commit, so both were accepting writes. (This also refuses a fail-back to the old
/// primary within the window, which a single-fault scenario does not do.)
/// Returns one line per violation.
pub fn overlap_violations(accepted: &[(usize, Instant, Instant)], since: Instant) -> Vec<String> {
    let mut first: BTreeMap<usize, Instant> = BTreeMap::new();
    for (node, _, completed) in accepted.iter().filter(|(_, invoked, _)| *invoked >= since) {
        let entry = first.entry(*node).or_insert(*completed);
        *entry = (*entry).min(*completed);
    }
    let mut violations = Vec::new();
    for (earlier, earlier_first) in &first {
        for (later, later_first) in &first {
            if later_first <= earlier_first {
                continue;
            }
            let after: Vec<&(usize, Instant, Instant)> = accepted
                .iter()
                .filter(|(node, invoked, _)| node == earlier && invoked > later_first)
                .collect();
            if let Some((_, invoked, _)) = after.first() {
                violations.push(format!(
                    "n{} accepted {} write(s) after n{} accepted its first ({:?} later)",
                    earlier + 1,
                    after.len(),
                    later + 1,
                    invoked.saturating_duration_since(*later_first)
                ));
            }
        }
    }
    violations
}

/// Check (b) against the rows `(writer, seq)` on the final primary: acknowledged writes
/// missing, and failed writes present. Returns one line per violation (at most a few each).
pub fn durability_violations(writes: &[Write], rows: &HashSet<(usize, i64)>) -> Vec<String> {
    let lost: Vec<&Write> = writes
        .iter()
        .filter(|write| write.outcome == Outcome::Acknowledged)
        .filter(|write| !rows.contains(&(write.node, write.seq)))
        .collect();
    let phantom: Vec<&Write> = writes
        .iter()
        .filter(|write| write.outcome == Outcome::Failed)
        .filter(|write| rows.contains(&(write.node, write.seq)))
        .collect();
    let mut violations = Vec::new();
    if !lost.is_empty() {
        violations.push(format!(
            "{} acknowledged write(s) lost, e.g. {:?}",
            lost.len(),
            &lost[..lost.len().min(3)]
        ));
    }
    if !phantom.is_empty() {
        violations.push(format!(
            "{} refused write(s) present, e.g. {:?}",
            phantom.len(),
            &phantom[..phantom.len().min(3)]
        ));
    }
    violations
}

/// The longest pause between acknowledged writes completed in `[from, until]`, counting
/// from `from`.
pub fn write_gap(writes: &[Write], from: Instant, until: Instant) -> Duration {
    let mut times: Vec<Instant> = writes
        .iter()
        .filter(|write| write.outcome == Outcome::Acknowledged)
        .map(|write| write.completed)
        .filter(|completed| *completed >= from && *completed <= until)
        .collect();
    times.sort();
    let mut previous = from;
    let mut longest = Duration::ZERO;
    for time in times.into_iter().chain(std::iter::once(until)) {
        longest = longest.max(time.saturating_duration_since(previous));
        previous = time;
    }
    longest
}

/// Connects with the client deadline; `None` when the host does not answer.
async fn connect(config: &tokio_postgres::Config) -> Option<tokio_postgres::Client> {
    let (client, connection) =
        tokio::time::timeout(DEADLINE, config.connect(tokio_postgres::NoTls))
            .await
            .ok()?
            .ok()?;
    tokio::spawn(connection);
    Some(client)
}

/// Runs `statement` with the client deadline. Past it, cancels the statement (a commit
/// waiting for a synchronous standby then returns, committed locally), gives the server one
/// more deadline to answer and returns `Err(())`: the attempt outlived its deadline whatever
/// the server says, and the connection must be dropped. A cancel request travels apart from
/// the session and PostgreSQL may deliver it more than once (to the backend and to its
/// process group), so on a kept connection a late one can cancel the *next* statement's wait
/// for the synchronous standby and turn it into an acknowledged commit that was never
/// replicated.
async fn execute(
    client: &tokio_postgres::Client,
    statement: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Result<u64, tokio_postgres::Error>, ()> {
    let run = client.execute(statement, params);
    tokio::pin!(run);
    if let Ok(result) = tokio::time::timeout(DEADLINE, &mut run).await {
        return Ok(result);
    }
    let _ = client
        .cancel_token()
        .cancel_query(tokio_postgres::NoTls)
        .await;
    let _ = tokio::time::timeout(DEADLINE, &mut run).await;
    Err(())
}

async fn write_loop(node: usize, config: tokio_postgres::Config, writes: Arc<Mutex<Vec<Write>>>) {
    let writer = node as i32;
    let mut seq: i64 = 0;
    loop {
        let Some(client) = connect(&config).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        loop {
            seq += 1;
            let invoked = Instant::now();
            let result = execute(
                &client,
                "INSERT INTO chaos_kv (writer, seq) VALUES ($1, $2)",
                &[&writer, &seq],
            )
            .await;
            let completed = Instant::now();
            let (outcome, reconnect) = match result {
                Ok(Ok(_)) => (Outcome::Acknowledged, false),
                Ok(Err(error)) if error.code() == Some(&SqlState::READ_ONLY_SQL_TRANSACTION) => {
                    (Outcome::Failed, false)
                }
                Ok(Err(_)) => (Outcome::Indeterminate, client.is_closed()),
                Err(()) => (Outcome::Indeterminate, true),
            };
            if let Ok(mut writes) = writes.lock() {
                writes.push(Write {
                    node,
                    seq,
                    invoked,
                    completed,
                    outcome,
                });
            }
            if reconnect {
                break;
            }
            let pause = if outcome == Outcome::Acknowledged {
                20
            } else {
                100
            };
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
    }
}

async fn observe_loop(node: usize, config: tokio_postgres::Config, probes: Arc<Mutex<Vec<Probe>>>) {
    let mut ticks = tokio::time::interval(OBSERVER_PERIOD);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut client: Option<tokio_postgres::Client> = None;
    loop {
        ticks.tick().await;
        let invoked = Instant::now();
        if client.as_ref().is_none_or(|client| client.is_closed()) {
            client = connect(&config).await;
        }
        let Some(connected) = &client else {
            record(
                &probes,
                Probe {
                    node,
                    invoked,
                    completed: Instant::now(),
                    read_write: None,
                    accepted: false,
                },
            );
            continue;
        };
        let role = tokio::time::timeout(
            DEADLINE,
            connected.query_one("SELECT NOT pg_is_in_recovery()", &[]),
        )
        .await;
        let read_write = match role {
            Ok(Ok(row)) => row.try_get::<_, bool>(0).ok(),
            _ => None,
        };
        let mut accepted = false;
        let mut drop_connection = read_write.is_none();
        if read_write == Some(true) {
            match execute(connected, "INSERT INTO chaos_probe VALUES (now())", &[]).await {
                Ok(Ok(_)) => accepted = true,
                Ok(Err(_)) => {}
                Err(()) => drop_connection = true,
            }
        }
        record(
            &probes,
            Probe {
                node,
                invoked,
                completed: Instant::now(),
                read_write,
                accepted,
            },
        );
        if drop_connection {
            client = None;
        }
    }
}

fn record(probes: &Mutex<Vec<Probe>>, probe: Probe) {
    if let Ok(mut probes) = probes.lock() {
        probes.push(probe);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_is_an_old_write_invoked_after_the_new_first_commit() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let clean = vec![
            (0, at(0), at(5)),
            (0, at(10), at(300)),
            (1, at(200), at(310)),
            (1, at(320), at(330)),
        ];
        // n1's last write was invoked before n2's first commit completed: no proof of overlap.
        assert!(overlap_violations(&clean, at(0)).is_empty());
        let mut both = clean.clone();
        both.push((0, at(315), at(318)));
        assert_eq!(overlap_violations(&both, at(0)).len(), 1);
    }

    #[test]
    fn lost_and_phantom_writes() {
        let now = Instant::now();
        let write = |seq, outcome| Write {
            node: 0,
            seq,
            invoked: now,
            completed: now,
            outcome,
        };
        let writes = vec![
            write(1, Outcome::Acknowledged),
            write(2, Outcome::Indeterminate),
            write(3, Outcome::Failed),
        ];
        let rows: HashSet<(usize, i64)> = [(0, 1), (0, 2)].into_iter().collect();
        assert!(durability_violations(&writes, &rows).is_empty());
        let rows: HashSet<(usize, i64)> = [(0, 3)].into_iter().collect();
        assert_eq!(durability_violations(&writes, &rows).len(), 2);
    }

    #[test]
    fn gap_counts_to_the_end_of_the_window() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let write = |ms| Write {
            node: 0,
            seq: 0,
            invoked: at(ms),
            completed: at(ms),
            outcome: Outcome::Acknowledged,
        };
        let writes = vec![write(10), write(20), write(500)];
        assert_eq!(
            write_gap(&writes, at(0), at(600)),
            Duration::from_millis(480)
        );
        assert_eq!(
            write_gap(&writes, at(0), at(1500)),
            Duration::from_millis(1000)
        );
    }
}
