//! Check (c): the store's key-value history is linearizable, per key, against a register.
//!
//! Every key is an independent register (absent at first); every put writes a value no
//! other operation ever wrote, so a read names the one write it saw. An operation whose
//! outcome the client never learnt (deadline, broken connection) has no return instant: it
//! may take effect at any point after its invocation, the end of time included, which is
//! the same as "it may or may not have happened". A read that failed constrains nothing and
//! is not part of the history.
//!
//! The search is exponential in the worst case, so it runs key by key under one time limit
//! for the whole check and reports [`Verdict::GaveUp`] past it: the caller must fail the
//! scenario then, never count it as a pass.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use porcupine_rs::{CheckResult, LinearizationInfo, Model, Operation};

/// A value written to a key; unique over the whole history.
pub type Value = u64;

/// What one client operation did, with what it saw when that is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KvOp {
    /// `Put(key, value)`.
    Put { value: Value },
    /// A linearizable `Range(key)`: the value it returned (`None`: the key was absent).
    Get { value: Option<Value> },
    /// `Txn(if value(key) == expected then put(key, new) else range(key))`; `outcome` is
    /// `None` when the client never learnt it.
    Cas {
        expected: Value,
        new: Value,
        outcome: Option<CasOutcome>,
    },
}

/// The answer to a compare-and-swap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CasOutcome {
    Swapped,
    /// The compare failed; the else branch read `current`.
    Refused {
        current: Option<Value>,
    },
}

/// One operation of the recorded history. Instants are nanoseconds on one monotonic clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvCall {
    pub key: u32,
    /// The recording client (a client starts a new id after an operation without outcome,
    /// since that one stays open for ever).
    pub client: u32,
    pub invoked: i64,
    /// `None`: no outcome; the operation may have taken effect at any time after `invoked`.
    pub returned: Option<i64>,
    pub op: KvOp,
}

/// The result of [`check`].
#[derive(Debug)]
pub enum Verdict {
    Linearizable,
    /// Key `key` has no linearization; `detail` names the operation that could not be placed.
    Violation {
        key: u32,
        detail: String,
        info: Box<LinearizationInfo<Register>>,
    },
    /// The search did not finish within the limit (at key `key`).
    GaveUp {
        key: u32,
        limit: Duration,
    },
}

/// A single key as a register; the state is the key's value (`None`: absent).
#[derive(Debug, Clone)]
pub struct Register;

impl Model for Register {
    type State = Option<Value>;
    type Op = KvOp;
    type Metadata = u32;

    fn init() -> Option<Value> {
        None
    }

    fn step(state: &Option<Value>, op: &KvOp) -> (bool, Option<Value>) {
        match *op {
            KvOp::Put { value } => (true, Some(value)),
            KvOp::Get { value } => (value == *state, *state),
            KvOp::Cas {
                expected,
                new,
                outcome,
            } => {
                let matches = *state == Some(expected);
                let after = if matches { Some(new) } else { *state };
                let legal = match outcome {
                    None => true,
                    Some(CasOutcome::Swapped) => matches,
                    Some(CasOutcome::Refused { current }) => !matches && current == *state,
                };
                (legal, after)
            }
        }
    }

    fn describe_operation(op: &KvOp) -> String {
        match op {
            KvOp::Put { value } => format!("put {value}"),
            KvOp::Get { value } => format!("get -> {value:?}"),
            KvOp::Cas {
                expected,
                new,
                outcome,
            } => format!("cas {expected} -> {new}: {outcome:?}"),
        }
    }

    fn describe_metadata(key: Option<&u32>) -> String {
        key.map_or_else(String::new, |key| format!("key {key}"))
    }
}

/// The operations per key, in porcupine's form (reads without outcome dropped).
pub fn per_key(calls: &[KvCall]) -> BTreeMap<u32, Vec<Operation<Register>>> {
    let mut keys: BTreeMap<u32, Vec<Operation<Register>>> = BTreeMap::new();
    for call in calls {
        if call.returned.is_none() && matches!(call.op, KvOp::Get { .. }) {
            continue;
        }
        keys.entry(call.key).or_default().push(Operation {
            client_id: Some(call.client),
            call_time: call.invoked,
            return_time: call.returned.unwrap_or(i64::MAX),
            op: call.op,
            metadata: Some(call.key),
        });
    }
    keys
}

/// Checks `calls` key by key within `limit` in all.
pub fn check(calls: &[KvCall], limit: Duration) -> Verdict {
    let deadline = Instant::now() + limit;
    for (key, operations) in per_key(calls) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Verdict::GaveUp { key, limit };
        }
        // The verdict comes from the search without diagnostics: with them, porcupine
        // counts a search stopped at the limit as a failed one.
        match porcupine_rs::check_operations_timeout(&operations, left) {
            CheckResult::Ok => {}
            CheckResult::Unknown => return Verdict::GaveUp { key, limit },
            CheckResult::Illegal => {
                let (_, info) =
                    porcupine_rs::check_operations_info_timeout(&operations, DIAGNOSTICS_LIMIT);
                let detail = stuck_at(&operations, &info);
                return Verdict::Violation {
                    key,
                    detail,
                    info: Box::new(info),
                };
            }
        }
    }
    Verdict::Linearizable
}

/// How long the search for diagnostics of a known violation may take.
const DIAGNOSTICS_LIMIT: Duration = Duration::from_secs(20);

/// Names where the search got stuck: the longest partial linearization found, and the
/// earliest-returning operation outside it (one that no order could place).
fn stuck_at(operations: &[Operation<Register>], info: &LinearizationInfo<Register>) -> String {
    let longest: Vec<usize> = info
        .partial_linearizations
        .iter()
        .flatten()
        .max_by_key(|sequence| sequence.len())
        .cloned()
        .unwrap_or_default();
    let describe = |index: usize| {
        operations.get(index).map_or(String::new(), |operation| {
            format!(
                "client {} {} invoked {:.3} s, returned {}",
                operation.client_id.unwrap_or_default(),
                Register::describe_operation(&operation.op),
                operation.call_time as f64 / 1e9,
                if operation.return_time == i64::MAX {
                    "never".to_owned()
                } else {
                    format!("{:.3} s", operation.return_time as f64 / 1e9)
                }
            )
        })
    };
    let unplaced = (0..operations.len())
        .filter(|index| !longest.contains(index))
        .min_by_key(|index| operations[*index].return_time);
    let tail: Vec<String> = longest
        .iter()
        .rev()
        .take(4)
        .rev()
        .map(|index| describe(*index))
        .collect();
    format!(
        "{} of {} operations linearized; the last of them: [{}]; first operation no order could place: {}",
        longest.len(),
        operations.len(),
        tail.join("; "),
        unplaced.map_or("none".to_owned(), describe)
    )
}

/// Writes porcupine's HTML view of a failed check to `path`.
pub fn visualize(info: &LinearizationInfo<Register>, path: &Path) -> std::io::Result<()> {
    porcupine_rs::visualize_path::<Register>(info, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(client: u32, invoked: i64, returned: Option<i64>, op: KvOp) -> KvCall {
        KvCall {
            key: 0,
            client,
            invoked,
            returned,
            op,
        }
    }

    fn put(value: Value) -> KvOp {
        KvOp::Put { value }
    }

    fn get(value: Option<Value>) -> KvOp {
        KvOp::Get { value }
    }

    fn verdict(calls: &[KvCall]) -> Verdict {
        check(calls, Duration::from_secs(10))
    }

    fn is_linearizable(calls: &[KvCall]) -> bool {
        matches!(verdict(calls), Verdict::Linearizable)
    }

    #[test]
    fn sequential_reads_see_the_last_put() {
        let history = [
            call(0, 0, Some(10), get(None)),
            call(0, 20, Some(30), put(1)),
            call(1, 40, Some(50), get(Some(1))),
            call(1, 60, Some(70), put(2)),
            call(0, 80, Some(90), get(Some(2))),
        ];
        assert!(is_linearizable(&history));
    }

    #[test]
    fn a_stale_read_is_rejected() {
        // put 2 returned before the read was invoked; the read still saw 1.
        let history = [
            call(0, 0, Some(10), put(1)),
            call(0, 20, Some(30), put(2)),
            call(1, 40, Some(50), get(Some(1))),
        ];
        match verdict(&history) {
            Verdict::Violation { key, detail, .. } => {
                assert_eq!(key, 0);
                assert!(detail.contains("get -> Some(1)"), "{detail}");
            }
            other => panic!("a stale read passed: {other:?}"),
        }
    }

    #[test]
    fn concurrent_reads_may_see_either_side_of_a_put() {
        let history = [
            call(0, 0, Some(10), put(1)),
            call(0, 20, Some(60), put(2)),
            call(1, 30, Some(40), get(Some(2))),
            call(2, 45, Some(50), get(Some(1))),
        ];
        // Both reads overlap the put of 2, but the one that saw 1 began after the one that
        // saw 2 ended: the register cannot go back to 1.
        assert!(!is_linearizable(&history));
        let history = [
            call(0, 0, Some(10), put(1)),
            call(0, 20, Some(60), put(2)),
            call(1, 30, Some(40), get(Some(2))),
            call(2, 30, Some(50), get(Some(1))),
        ];
        // Overlapping reads: the one that saw 1 may come first.
        assert!(is_linearizable(&history));
        let history = [
            call(0, 0, Some(10), put(1)),
            call(0, 20, Some(60), put(2)),
            call(1, 30, Some(40), get(Some(1))),
            call(2, 45, Some(50), get(Some(2))),
        ];
        assert!(is_linearizable(&history));
    }

    #[test]
    fn a_put_without_outcome_may_take_effect_late_or_never() {
        let never = [
            call(0, 0, Some(10), put(1)),
            call(1, 20, None, put(2)),
            call(2, 30, Some(40), get(Some(1))),
        ];
        assert!(is_linearizable(&never));
        let late = [
            call(0, 0, Some(10), put(1)),
            call(1, 20, None, put(2)),
            call(2, 30, Some(40), get(Some(1))),
            call(2, 1_000, Some(1_010), get(Some(2))),
        ];
        assert!(is_linearizable(&late));
        // Once seen, it stays until something overwrites it.
        let flip = [
            call(0, 0, Some(10), put(1)),
            call(1, 20, None, put(2)),
            call(2, 30, Some(40), get(Some(2))),
            call(2, 50, Some(60), get(Some(1))),
        ];
        assert!(!is_linearizable(&flip));
        // A read never sees a value before its put was invoked.
        let early = [
            call(0, 0, Some(10), get(Some(2))),
            call(1, 20, None, put(2)),
        ];
        assert!(!is_linearizable(&early));
    }

    #[test]
    fn compare_and_swap_outcomes() {
        let swapped = KvOp::Cas {
            expected: 1,
            new: 3,
            outcome: Some(CasOutcome::Swapped),
        };
        let refused_at_1 = KvOp::Cas {
            expected: 1,
            new: 3,
            outcome: Some(CasOutcome::Refused { current: Some(1) }),
        };
        let unknown = KvOp::Cas {
            expected: 1,
            new: 3,
            outcome: None,
        };
        assert!(is_linearizable(&[
            call(0, 0, Some(10), put(1)),
            call(1, 20, Some(30), swapped),
            call(0, 40, Some(50), get(Some(3))),
        ]));
        // The compare cannot fail while the key holds the expected value.
        assert!(!is_linearizable(&[
            call(0, 0, Some(10), put(1)),
            call(1, 20, Some(30), refused_at_1),
        ]));
        // A swap on an absent key cannot succeed.
        assert!(!is_linearizable(&[call(1, 20, Some(30), swapped)]));
        // Without outcome, the swap may have happened ...
        assert!(is_linearizable(&[
            call(0, 0, Some(10), put(1)),
            call(1, 20, None, unknown),
            call(0, 40, Some(50), get(Some(3))),
        ]));
        // ... or not.
        assert!(is_linearizable(&[
            call(0, 0, Some(10), put(1)),
            call(1, 20, None, unknown),
            call(0, 40, Some(50), get(Some(1))),
        ]));
    }

    #[test]
    fn keys_are_independent_and_failed_reads_do_not_count() {
        let mut history = vec![
            call(0, 0, Some(10), put(1)),
            call(0, 20, None, get(Some(99))),
        ];
        history.push(KvCall {
            key: 1,
            ..call(1, 30, Some(40), get(None))
        });
        assert!(is_linearizable(&history));
        history.push(KvCall {
            key: 1,
            ..call(1, 50, Some(60), get(Some(1)))
        });
        assert!(matches!(
            verdict(&history),
            Verdict::Violation { key: 1, .. }
        ));
    }

    #[test]
    fn the_limit_is_reported_not_passed() {
        // Many concurrent puts without outcome and a read of a value nobody wrote: the search
        // must try every order of the puts before it can say no.
        let mut history: Vec<KvCall> = (0..40)
            .map(|value| call(value, 0, None, put(u64::from(value))))
            .collect();
        history.push(call(99, 1, Some(2), get(Some(1_000))));
        // The search cannot rule out every order of the puts within 200 ms.
        let started = Instant::now();
        match check(&history, Duration::from_millis(200)) {
            Verdict::GaveUp { key: 0, .. } => {}
            other => panic!("{other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(10));
        match check(&history, Duration::ZERO) {
            Verdict::GaveUp { key: 0, .. } => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_long_simulated_history_with_open_writes_is_linearizable() {
        // Three clients on one key, each operation taking effect at an instant inside its
        // interval; every 500th write never returns (applied or not, alternately).
        let mut state: Option<Value> = None;
        let mut history = Vec::new();
        let mut next_value = 1;
        let mut client_ids = [0u32, 1, 2];
        for step in 0..6_000i64 {
            let client = (step % 3) as usize;
            // Takes effect at `invoked + 5`, in step order; overlaps the next operation.
            let invoked = step * 10;
            let returned = invoked + 17;
            let op = if step % 2 == 0 {
                let value = next_value;
                next_value += 1;
                let open = step % 500 == 0;
                if !open || step % 1_000 == 0 {
                    state = Some(value);
                }
                if open {
                    history.push(call(client_ids[client], invoked, None, put(value)));
                    client_ids[client] += 3;
                    continue;
                }
                put(value)
            } else {
                get(state)
            };
            history.push(call(client_ids[client], invoked, Some(returned), op));
        }
        let started = Instant::now();
        assert!(matches!(
            check(&history, Duration::from_secs(60)),
            Verdict::Linearizable
        ));
        println!(
            "{} operations checked in {:.2?}",
            history.len(),
            started.elapsed()
        );
    }
}
