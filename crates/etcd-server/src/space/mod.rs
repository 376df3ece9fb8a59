//! Space management: the backend quota (etcd `--quota-backend-bytes`, raising the NOSPACE
//! alarm) and the auto-compactor (etcd `--auto-compaction-mode/-retention`, in [`compactor`]).
//!
//! What "size" means in pgwarden: the keyspace lives in memory (`mvcc::Store`) and is made
//! durable by the Raft log plus snapshots of the store in redb. etcd checks its quota against
//! the bbolt file, which only shrinks by defragmentation. pgwarden checks the *logical* size
//! of the keyspace instead: every retained version (key bytes + value bytes + a fixed
//! per-version overhead for its revision, version and index entry), tombstones included,
//! from the oldest retained revision to the current one. That is what memory and each
//! snapshot hold, and it shrinks when history is compacted, so etcd's recovery procedure
//! (compact, defragment, `etcdctl alarm disarm`) restores writes even though pgwarden's
//! Defragment has nothing to do. The redb file size is reported separately
//! (`etcd_mvcc_db_total_size_in_bytes`, `Status.dbSize`); lease and auth records are not
//! counted (they are small and bounded by their own limits).
//!
//! The quota is checked where etcd checks it, before proposing a write that adds data (Put,
//! a Txn with puts, LeaseGrant): when the size plus the request's cost would exceed the
//! quota, the member proposes `AlarmRequest{ACTIVATE, NOSPACE}` for itself and refuses the
//! request with `etcdserver: mvcc: database space exceeded`. While the alarm is active every
//! member's apply refuses such writes (the `mvcc` crate's capped applier) and reads and
//! deletes keep working.

pub mod compactor;

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use etcd_proto::errors;
use etcd_proto::etcdserverpb::alarm_request::AlarmAction;
use etcd_proto::etcdserverpb::request_op::Request as Op;
use etcd_proto::etcdserverpb::{AlarmRequest, AlarmType, RangeRequest, RequestOp, TxnRequest};
use etcd_proto::mvccpb::Event;
use etcd_proto::raftcmd::RaftCommand;
use etcd_proto::raftcmd::raft_command::Command;

pub use compactor::{AutoCompaction, AutoCompactionError, CompactionMode};

use crate::backend::Backend;
use crate::error::ServiceError;

/// etcd's default `--quota-backend-bytes` (2 GiB), used when the flag is 0.
pub const DEFAULT_QUOTA_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// Bytes counted per retained version on top of its key and value: revision, sub-revision,
/// create revision, version, lease and the index entry (an estimate of the in-memory cost).
pub const VERSION_OVERHEAD_BYTES: u64 = 64;
/// etcd's cost of a LeaseGrant against the quota (a lease record).
const LEASE_COST_BYTES: u64 = 64;

/// The member's quota and its measurement of the keyspace's logical size.
pub struct SpaceQuota {
    quota_bytes: u64,
    /// Counts the NOSPACE alarms this member proposed.
    alarms_raised: ::metrics::Counter,
    /// The last measured size, readable without the lock (scrapes, contended checks).
    last_size: AtomicU64,
    /// The measurement, advanced incrementally. Locked only inside a store read and never the
    /// other way round; a checker that finds it locked uses `last_size` instead of waiting.
    measured: Mutex<Measured>,
}

/// Where the logical size was last measured.
#[derive(Debug, Default)]
struct Measured {
    /// False until the first full measurement.
    valid: bool,
    revision: i64,
    compact_revision: i64,
    bytes: u64,
}

impl SpaceQuota {
    /// A quota of `quota_bytes` with etcd's reading of the flag: 0 means the default of
    /// 2 GiB, a negative value means no quota. `alarms_raised` counts the NOSPACE alarms it
    /// proposes.
    pub fn new(quota_bytes: i64, alarms_raised: ::metrics::Counter) -> SpaceQuota {
        SpaceQuota {
            alarms_raised,
            quota_bytes: match u64::try_from(quota_bytes) {
                Ok(0) => DEFAULT_QUOTA_BYTES,
                Ok(bytes) => bytes,
                Err(_) => u64::MAX,
            },
            last_size: AtomicU64::new(0),
            measured: Mutex::new(Measured::default()),
        }
    }

    /// The effective quota (`u64::MAX` when there is none).
    pub fn quota_bytes(&self) -> u64 {
        self.quota_bytes
    }

    /// The keyspace's logical size now (see the module docs).
    pub fn logical_size<B: Backend>(&self, node: &B) -> u64 {
        node.read(|store| self.measure(store))
    }

    /// Brings the measurement up to the store's revision: only the versions written since the
    /// last look are added; after a compaction everything retained is measured again (the
    /// keys live at the compact revision plus every later change, walked under the store's
    /// read lock: proportional to the keyspace, so paid once per compaction, not per write).
    fn measure(&self, store: &mvcc::Store) -> u64 {
        let Ok(mut measured) = self.measured.try_lock() else {
            return self.last_size.load(Ordering::Relaxed);
        };
        let revision = store.revision();
        let compact_revision = store.compact_revision();
        let up_to_date = measured.valid
            && measured.compact_revision == compact_revision
            && measured.revision == revision;
        if up_to_date {
            return measured.bytes;
        }
        let incremental = measured.valid && measured.compact_revision == compact_revision;
        let (from, base) = if incremental {
            (measured.revision + 1, measured.bytes)
        } else {
            (compact_revision + 1, live_bytes_at(store, compact_revision))
        };
        let bytes = match store.events(b"\0", b"\0", from, revision) {
            Ok(events) => base + events_bytes(&events),
            // Only a window below the compact revision is refused, which the check above
            // excludes; keep the last figure rather than report nothing.
            Err(_) => return measured.bytes,
        };
        *measured = Measured {
            valid: true,
            revision,
            compact_revision,
            bytes,
        };
        self.last_size.store(bytes, Ordering::Relaxed);
        bytes
    }

    /// etcd's quota check before proposing `command`: refuses a data-adding write that would
    /// take the keyspace past the quota, after raising the NOSPACE alarm for this member.
    pub async fn check<B: Backend>(&self, node: &B, command: &Command) -> Result<(), ServiceError> {
        let cost = cost_of(command);
        if cost == 0 {
            return Ok(());
        }
        let (size, member_already_alarmed) = node.read(|store| {
            let size = self.measure(store);
            let member_id = node.header_identity().1;
            let alarmed = store.alarms().iter().any(|alarm| {
                alarm.member_id == member_id && alarm.alarm == AlarmType::Nospace as i32
            });
            (size, alarmed)
        });
        if size.saturating_add(cost) <= self.quota_bytes {
            return Ok(());
        }
        if !member_already_alarmed {
            let member_id = node.header_identity().1;
            tracing::warn!(
                size,
                cost,
                quota = self.quota_bytes,
                "keyspace would exceed the backend quota; raising the NOSPACE alarm"
            );
            node.propose(RaftCommand {
                command: Some(Command::Alarm(AlarmRequest {
                    action: AlarmAction::Activate as i32,
                    member_id,
                    alarm: AlarmType::Nospace as i32,
                })),
            })
            .await?;
            self.alarms_raised.increment(1);
        }
        Err(errors::NO_SPACE.into())
    }
}

/// Bytes a write adds, as etcd's quota counts them: a Put's key and value, the puts of a Txn
/// (the larger branch, nested txns included), a lease record; 0 for writes that add nothing.
fn cost_of(command: &Command) -> u64 {
    match command {
        Command::Put(put) => put_cost(put.key.len(), put.value.len()),
        Command::Txn(txn) => txn_cost(txn),
        Command::LeaseGrant(_) => LEASE_COST_BYTES,
        _ => 0,
    }
}

fn put_cost(key: usize, value: usize) -> u64 {
    (key + value) as u64 + VERSION_OVERHEAD_BYTES
}

fn txn_cost(txn: &TxnRequest) -> u64 {
    branch_cost(&txn.success).max(branch_cost(&txn.failure))
}

fn branch_cost(ops: &[RequestOp]) -> u64 {
    ops.iter()
        .map(|op| match &op.request {
            Some(Op::RequestPut(put)) => put_cost(put.key.len(), put.value.len()),
            Some(Op::RequestTxn(nested)) => txn_cost(nested),
            _ => 0,
        })
        .sum()
}

/// Logical bytes of the versions live at `compact_revision` (what a compaction keeps of the
/// history at and below it); 0 before the first compaction.
fn live_bytes_at(store: &mvcc::Store, compact_revision: i64) -> u64 {
    if compact_revision <= 0 {
        return 0;
    }
    let everything = RangeRequest {
        key: bytes::Bytes::from_static(b"\0"),
        range_end: bytes::Bytes::from_static(b"\0"),
        revision: compact_revision,
        ..RangeRequest::default()
    };
    store.range(&everything).map_or(0, |response| {
        response
            .kvs
            .iter()
            .map(|kv| (kv.key.len() + kv.value.len()) as u64 + VERSION_OVERHEAD_BYTES)
            .sum()
    })
}

/// Logical bytes of retained versions (tombstones carry only their key).
fn events_bytes(events: &[Event]) -> u64 {
    events
        .iter()
        .map(|event| {
            event.kv.as_ref().map_or(0, |kv| {
                (kv.key.len() + kv.value.len()) as u64 + VERSION_OVERHEAD_BYTES
            })
        })
        .sum()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
mod space_test;
