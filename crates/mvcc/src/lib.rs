//! The etcd keyspace as a deterministic, pure state machine.
//!
//! Owns: revisions (one global counter, 1 when empty, +1 per write), every key's history since the
//! compact revision (create/mod revision, version, tombstones, re-creation), Range / Put /
//! DeleteRange / Txn with etcd's exact semantics and errors, compaction, the lease table as data
//! (IDs, granted TTLs, attached keys — no timers: expiry arrives as a command), the alarm list,
//! etcd's auth store (users with bcrypt hashes computed by the proposer, roles, key-range
//! permissions, the auth revision) and the permission checks against it, the
//! watch events each command produces and their replay from history, HashKV, and the snapshot
//! encoding of all of it. Errors are `etcd_proto::errors::EtcdError` values from etcd's catalogue.
//!
//! Must not know: tokio, storage, openraft, clocks or randomness. It takes data and returns data:
//! [`Store::apply`] of the same commands gives the same state and answers on every member.
//!
//! Values and keys are `bytes::Bytes`, copied once when a write is applied (so the store never pins
//! a log buffer) and then shared, not copied, between the store, range responses and watch events.
//!
//! Where etcd's code and its documentation differ, this crate follows the code (etcd 3.5/3.6
//! `server/etcdserver/txn`, `mvcc`), and where etcd has an accident, the documented rule:
//! - Every compare of a txn, nested txns' included, is evaluated against the state before the
//!   txn (etcd's `compareToPath`), and the chosen path's puts and ranges are checked before any op
//!   runs, so a refused txn changes nothing. Ranges executed inside the txn see its earlier writes.
//! - Inside a txn, a nested txn's own response header is empty (revision 0); etcd fills only the
//!   outer one. Range/put/delete responses inside carry only the revision as of that op.
//! - The duplicate-key rule treats a delete with `range_end = "\0"` as reaching the end of the
//!   keyspace; etcd's interval tree reads it as empty and lets a put overlap it.
//! - With NOSPACE active, a txn with a put anywhere (nested included) is refused; etcd's quota only
//!   counts top-level puts.
//! - Sorting is stable: ties keep key order (etcd leaves tie order unspecified).
//! - Lease TTLs are stored as proposed; raising a TTL to the minimum is the proposer's job, as is
//!   picking a lease ID when a client sent 0.
//! - A compaction at revision <= 0 is `COMPACTED` (etcd accepts 0 on a never-compacted store).

mod adopt;
mod alarms;
mod auth;
mod auth_check;
mod history;
mod keyspace;
mod leases;
mod range;
mod snapshot;
mod store;
mod txn;
mod validate;

#[cfg(test)]
mod tests;

pub use adopt::{AdoptRefused, ReplacedIndex};
pub use auth::{ROOT_ROLE, ROOT_USER, UserView};
pub use auth_check::{Access, Caller};
pub use keyspace::prefix_range_end;
pub use leases::{LeaseView, MAX_LEASE_TTL};
pub use snapshot::{
    SNAPSHOT_FORMAT_VERSION, SNAPSHOT_MAGIC, SnapshotError, SnapshotValue, SnapshotValues,
};
pub use store::{Applied, Store};
pub use validate::{
    is_read_only_txn, validate_delete_range, validate_put, validate_range, validate_txn,
};
