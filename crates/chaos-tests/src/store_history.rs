//! The store workload of check (c): one client per host talking etcd v3 gRPC to that host's
//! store member only, doing puts, linearizable reads and compare-and-swap txns on a few keys
//! under a prefix of its own, each with a client-side deadline, recorded with invoke and
//! return instants on the one CLOCK_MONOTONIC all hosts share.
//!
//! A put or txn that fails in any way other than a refusal at validation is recorded without
//! outcome (it may have been committed); a failed read is not recorded. After an operation
//! without outcome a client issues only reads until one succeeds, so a host cut off from the
//! others adds one open operation per outage, not one per deadline (each open operation
//! multiplies the checker's search).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{Compare, CompareOp, ConnectOptions, GetOptions, Txn, TxnOp, TxnOpResponse};
use tokio::task::JoinHandle;

use anyhow::{Context, bail};

use crate::linearizable::{self, CasOutcome, KvCall, KvOp, Value, Verdict};

/// An operation's client-side deadline.
const DEADLINE: Duration = Duration::from_secs(1);
/// The pause after each operation per client (three clients: about 50 operations/s in all).
const PAUSE: Duration = Duration::from_millis(50);
/// How long the checker may search in all before the check fails as undecided.
const CHECK_LIMIT: Duration = Duration::from_secs(60);
/// Fewer operations with an outcome than this make the check vacuous: it fails.
const MIN_RETURNED: usize = 20;
/// The keys the clients share (each an independent register for the checker).
pub const KEYS: u32 = 4;
/// Where the keys live; pgwarden's own keys are elsewhere.
const PREFIX: &str = "/chaos-linearizable/";

/// The recording clients (aborted when stopped or dropped) and what they recorded.
#[derive(Debug)]
pub struct StoreHistory {
    start: Instant,
    calls: Arc<Mutex<Vec<Recorded>>>,
    tasks: Vec<JoinHandle<()>>,
}

/// One operation as recorded: entered when invoked, completed when it returns.
#[derive(Debug, Clone, Copy)]
struct Recorded {
    key: u32,
    client: u32,
    invoked: Instant,
    /// The operation as invoked (a read's value and a swap's outcome unknown).
    op: KvOp,
    end: End,
}

#[derive(Debug, Clone, Copy)]
enum End {
    /// Still running, or the client never learnt the outcome.
    Open,
    Returned(Instant, KvOp),
    /// Certainly not applied (refused at validation), or a read that failed.
    Failed,
}

impl StoreHistory {
    /// Starts one client per etcd endpoint (`host:port`).
    pub fn start(endpoints: Vec<String>) -> StoreHistory {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let values = Arc::new(AtomicU64::new(1));
        let clients = endpoints.len() as u32;
        let tasks = endpoints
            .into_iter()
            .enumerate()
            .map(|(index, endpoint)| {
                tokio::spawn(client_loop(
                    index as u32,
                    clients,
                    endpoint,
                    values.clone(),
                    calls.clone(),
                ))
            })
            .collect();
        StoreHistory {
            start: Instant::now(),
            calls,
            tasks,
        }
    }

    /// Stops the clients; a write still in flight stays in the history without outcome.
    pub fn stop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }

    /// The history for the checker, instants in nanoseconds since the workload started;
    /// failed operations left out.
    pub fn calls(&self) -> Vec<KvCall> {
        let nanos = |at: Instant| {
            i64::try_from(at.saturating_duration_since(self.start).as_nanos()).unwrap_or(i64::MAX)
        };
        self.calls
            .lock()
            .map(|calls| {
                calls
                    .iter()
                    .filter_map(|call| {
                        let (returned, op) = match call.end {
                            End::Open => (None, call.op),
                            End::Returned(at, op) => (Some(nanos(at)), op),
                            End::Failed => return None,
                        };
                        Some(KvCall {
                            key: call.key,
                            client: call.client,
                            invoked: nanos(call.invoked),
                            returned,
                            op,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Operations that returned an outcome, writes without outcome, and failed operations.
    pub fn counts(&self) -> (usize, usize, usize) {
        let Ok(calls) = self.calls.lock() else {
            return (0, 0, 0);
        };
        let count =
            |wanted: fn(&End) -> bool| calls.iter().filter(|call| wanted(&call.end)).count();
        (
            count(|end| matches!(end, End::Returned(..))),
            count(|end| matches!(end, End::Open)),
            count(|end| matches!(end, End::Failed)),
        )
    }
}

/// What check (c) saw.
#[derive(Debug, Clone, Copy, Default)]
pub struct StoreSummary {
    /// Operations that returned an outcome.
    pub returned: usize,
    /// Writes without outcome (open in the history), those in flight when the workload
    /// stopped included.
    pub open: usize,
    /// Refused writes and failed reads (left out of the history).
    pub failed: usize,
    /// How long the checker took.
    pub checked_in: Duration,
}

impl StoreHistory {
    /// Check (c): the recorded history is linearizable, per key, as a register. Fails when
    /// it is not (writing porcupine's HTML view and the key's operations next to the system
    /// temp directory's `pgwarden-chaos-*` files, named in the error), when the checker does
    /// not decide within its limit, or when too few operations returned to say anything.
    pub async fn check(&self) -> anyhow::Result<StoreSummary> {
        let (returned, open, failed) = self.counts();
        if returned < MIN_RETURNED {
            bail!(
                "the store workload got only {returned} answers ({open} writes without outcome, {failed} failed)"
            );
        }
        let calls = self.calls();
        let started = Instant::now();
        let verdict =
            tokio::task::spawn_blocking(move || (linearizable::check(&calls, CHECK_LIMIT), calls))
                .await
                .context("the linearizability checker panicked")?;
        let checked_in = started.elapsed();
        match verdict {
            (Verdict::Linearizable, _) => Ok(StoreSummary {
                returned,
                open,
                failed,
                checked_in,
            }),
            (Verdict::GaveUp { key, limit }, _) => bail!(
                "the linearizability checker did not decide key {} within {limit:?} ({returned} operations, {open} without outcome)",
                key_name(key)
            ),
            (Verdict::Violation { key, detail, info }, calls) => {
                let stem = std::env::temp_dir().join(format!(
                    "pgwarden-chaos-linearizability-{}-k{key}",
                    std::process::id()
                ));
                let html = stem.with_extension("html");
                let text = stem.with_extension("txt");
                let _ = linearizable::visualize(&info, &html);
                let lines: Vec<String> = calls
                    .iter()
                    .filter(|call| call.key == key)
                    .map(|call| format!("{call:?}"))
                    .collect();
                let _ = std::fs::write(&text, lines.join("\n"));
                bail!(
                    "the store's history of key {} is not linearizable: {detail} (instants from the workload's start; all operations of the key in {}, porcupine's view in {})",
                    key_name(key),
                    text.display(),
                    html.display()
                )
            }
        }
    }
}

impl Drop for StoreHistory {
    fn drop(&mut self) {
        self.stop();
    }
}

fn key_name(key: u32) -> String {
    format!("{PREFIX}k{key}")
}

fn encode(value: Value) -> String {
    value.to_string()
}

fn decode(bytes: &[u8]) -> Option<Value> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// How an attempt ended.
enum Attempt {
    Done(KvOp),
    /// Certainly not applied.
    Refused,
    /// May or may not have been applied.
    Unknown,
}

fn attempt<T>(
    reply: Result<Result<T, etcd_client::Error>, tokio::time::error::Elapsed>,
    done: impl FnOnce(T) -> KvOp,
) -> Attempt {
    match reply {
        Ok(Ok(reply)) => Attempt::Done(done(reply)),
        Ok(Err(error)) if refused(&error) => Attempt::Refused,
        Ok(Err(_)) | Err(_) => Attempt::Unknown,
    }
}

async fn client_loop(
    index: u32,
    clients: u32,
    endpoint: String,
    values: Arc<AtomicU64>,
    calls: Arc<Mutex<Vec<Recorded>>>,
) {
    let options = ConnectOptions::new()
        .with_connect_timeout(DEADLINE)
        .with_timeout(DEADLINE);
    // The channel connects lazily and reconnects by itself; building it fails only on a
    // malformed endpoint.
    let client = loop {
        match etcd_client::Client::connect([endpoint.as_str()], Some(options.clone())).await {
            Ok(client) => break client,
            Err(_) => tokio::time::sleep(PAUSE).await,
        }
    };
    let mut kv = client.kv_client();
    // A fresh client id after each write without outcome (that one stays open).
    let mut client_id = index;
    let mut reads_only = false;
    let mut turn: u64 = u64::from(index) + 1;
    // The last value this client saw per key, for its swaps.
    let mut seen: Vec<Option<Value>> = vec![None; KEYS as usize];
    loop {
        turn = turn
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let key = ((turn >> 33) % u64::from(KEYS)) as u32;
        let choice = (turn >> 40) % 10;
        let name = key_name(key);
        let op = if reads_only || choice < 4 {
            KvOp::Get { value: None }
        } else if choice < 8 || seen[key as usize].is_none() {
            KvOp::Put {
                value: values.fetch_add(1, Ordering::Relaxed),
            }
        } else {
            KvOp::Cas {
                expected: seen[key as usize].unwrap_or_default(),
                new: values.fetch_add(1, Ordering::Relaxed),
                outcome: None,
            }
        };
        let invoked = Instant::now();
        let slot = {
            let Ok(mut calls) = calls.lock() else { return };
            calls.push(Recorded {
                key,
                client: client_id,
                invoked,
                op,
                end: End::Open,
            });
            calls.len() - 1
        };
        let result = match op {
            KvOp::Get { .. } => attempt(
                tokio::time::timeout(DEADLINE, kv.get(name.as_str(), None::<GetOptions>)).await,
                |reply| KvOp::Get {
                    value: reply.kvs().first().and_then(|kv| decode(kv.value())),
                },
            ),
            KvOp::Put { value } => attempt(
                tokio::time::timeout(DEADLINE, kv.put(name.as_str(), encode(value), None)).await,
                |_| op,
            ),
            KvOp::Cas { expected, new, .. } => {
                let txn = Txn::new()
                    .when([Compare::value(
                        name.as_str(),
                        CompareOp::Equal,
                        encode(expected),
                    )])
                    .and_then([TxnOp::put(name.as_str(), encode(new), None)])
                    .or_else([TxnOp::get(name.as_str(), None)]);
                attempt(tokio::time::timeout(DEADLINE, kv.txn(txn)).await, |reply| {
                    let outcome = if reply.succeeded() {
                        CasOutcome::Swapped
                    } else {
                        let current =
                            reply
                                .op_responses()
                                .into_iter()
                                .find_map(|response| match response {
                                    TxnOpResponse::Get(get) => {
                                        Some(get.kvs().first().and_then(|kv| decode(kv.value())))
                                    }
                                    _ => None,
                                });
                        CasOutcome::Refused {
                            current: current.flatten(),
                        }
                    };
                    KvOp::Cas {
                        expected,
                        new,
                        outcome: Some(outcome),
                    }
                })
            }
        };
        let returned = Instant::now();
        let is_read = matches!(op, KvOp::Get { .. });
        let end = match result {
            Attempt::Done(done) => {
                reads_only = false;
                seen[key as usize] = match done {
                    KvOp::Get { value } => value,
                    KvOp::Put { value } => Some(value),
                    KvOp::Cas {
                        new,
                        outcome: Some(CasOutcome::Swapped),
                        ..
                    } => Some(new),
                    KvOp::Cas {
                        outcome: Some(CasOutcome::Refused { current }),
                        ..
                    } => current,
                    KvOp::Cas { outcome: None, .. } => seen[key as usize],
                };
                End::Returned(returned, done)
            }
            Attempt::Unknown if !is_read => {
                reads_only = true;
                client_id += clients;
                End::Open
            }
            Attempt::Refused | Attempt::Unknown => End::Failed,
        };
        let failed = !matches!(end, End::Returned(..));
        if let Ok(mut calls) = calls.lock()
            && let Some(call) = calls.get_mut(slot)
        {
            call.end = end;
        }
        tokio::time::sleep(if failed { PAUSE * 4 } else { PAUSE }).await;
    }
}

/// Whether the server refused the request before proposing it (nothing was written).
fn refused(error: &etcd_client::Error) -> bool {
    matches!(
        error,
        etcd_client::Error::GRpcStatus(status) if matches!(
            status.code(),
            tonic::Code::InvalidArgument
                | tonic::Code::PermissionDenied
                | tonic::Code::Unauthenticated
        )
    )
}
