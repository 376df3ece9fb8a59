//! The etcd keyspace as a deterministic, pure state machine.
//!
//! Owns: revisions (one global counter, 1 when empty, +1 per write), every key's history since the
//! compact revision (create/mod revision, version, tombstones, re-creation), Range / Put /
//! DeleteRange / Txn with etcd's exact semantics and errors, compaction, the lease table as data
//! (IDs, granted TTLs, attached keys — no timers: expiry arrives as a command), the alarm list, the
//! watch events each command produces and their replay from history, HashKV, and the snapshot
//! encoding of all of it. Errors are `etcd_proto::errors::EtcdError` values from etcd's catalogue.
//!
//! Must not know: tokio, storage, openraft, clocks or randomness. It takes data and returns data:
//! [`Store::apply`] of the same commands gives the same state and answers on every member.
//!
//! Values and keys are `bytes::Bytes`, copied once when a write is applied (so the store never pins
//! a log buffer) and then shared, not copied, between the store, range responses and watch events.

mod history;
mod keyspace;
mod range;
mod snapshot;
mod store;
mod txn;
mod validate;

#[cfg(test)]
mod tests;

pub use keyspace::prefix_range_end;
pub use snapshot::{SNAPSHOT_FORMAT_VERSION, SNAPSHOT_MAGIC, SnapshotError};
pub use store::{Applied, LeaseView, MAX_LEASE_TTL, Store};
pub use validate::{
    is_read_only_txn, validate_delete_range, validate_put, validate_range, validate_txn,
};
