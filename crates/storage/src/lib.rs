//! pgwarden's durable storage for its Raft group member: a write-ahead log (segment files), one
//! redb file (identity and format version) and one snapshot file per member.
//!
//! Owns: the on-disk schema ([`schema`], with a format version checked at open), the openraft
//! type configuration ([`TypeConfig`]), the Raft log store ([`LogStore`]: entries, vote,
//! committed id, purge point) and the state machine ([`StateMachine`]) with its snapshots.
//!
//! Durability model: the etcd keyspace (`mvcc::Store`) lives in memory, its values mostly as slices
//! of a read-only mapping of the latest snapshot file (see [`StateMachine`]). It is durable through the
//! Raft log (every entry fdatasynced in the write-ahead log before openraft is told it is written) plus snapshots
//! (the store's encoded bytes, the last applied log id and the membership, in one file beside the
//! redb file, replaced atomically). On restart the member loads the latest snapshot and openraft re-applies the
//! committed log entries after it; the committed id is saved for exactly that purpose.
//!
//! Must not know: gRPC, the peer transport, HA, PostgreSQL. Only this crate knows redb.

#![cfg_attr(test, allow(clippy::unwrap_used, reason = "tests fail loudly"))]

mod codec;
mod db;
mod error;
mod log_store;
mod log_writer;
pub mod schema;
mod snapshot_file;
mod state_machine;
mod types;
mod wal;

use std::path::Path;
use std::sync::Arc;

pub use codec::{CodecError, Entry, LogId, decode_entry, encode_entry, log_id};
pub use db::Db;
pub use error::StorageError;
pub use log_store::{LogHistograms, LogStore, LogWriteStats};
/// The etcd keyspace held by the state machine.
pub use mvcc::Store;
pub use snapshot_file::{SNAPSHOT_FILE_NAME, SNAPSHOT_FILE_VERSION};
pub use state_machine::{
    AppliedState, Membership, SharedState, Snapshot, SnapshotMeta, StateMachine,
};
pub use types::{AppliedEvents, MemberIdentity, MemberNode, RaftReply, RaftRequest, TypeConfig};
pub use wal::{SEGMENT_BYTES, SEGMENT_MAGIC, WAL_DIR};

/// What the process runs after a snapshot freed the store's copies of its values (they now live
/// in the snapshot file), so the allocator can hand the memory back to the OS; set once by the
/// binary, which alone knows its allocator.
static RELEASE_FREED_MEMORY: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

/// Sets the hook run after a snapshot freed memory (see [`RELEASE_FREED_MEMORY`]); the first call
/// wins.
pub fn on_memory_freed(release: fn()) {
    let _ = RELEASE_FREED_MEMORY.set(release);
}

/// Runs the hook set with [`on_memory_freed`], if any.
pub(crate) fn release_freed_memory() {
    if let Some(release) = RELEASE_FREED_MEMORY.get() {
        release();
    }
}

/// Default capacity of the applied-events channel: how far a watcher may fall behind before it
/// is told it lagged.
pub const DEFAULT_EVENT_CAPACITY: usize = 16 * 1024;

/// A member's opened storage: what openraft needs plus the shared applied state.
pub struct Storage {
    pub db: Db,
    pub log_store: LogStore,
    pub state_machine: StateMachine,
    pub shared: Arc<SharedState>,
}

impl Storage {
    /// Opens (or creates) the storage in `data_dir`.
    pub fn open(data_dir: &Path, event_capacity: usize) -> Result<Storage, StorageError> {
        let db = Db::open(data_dir)?;
        let log_store = LogStore::open(&db)?;
        let state_machine = StateMachine::open(db.clone(), event_capacity)?;
        let shared = state_machine.shared();
        Ok(Storage {
            db,
            log_store,
            state_machine,
            shared,
        })
    }
}

#[cfg(test)]
mod log_writer_tests;
#[cfg(test)]
mod tests;
