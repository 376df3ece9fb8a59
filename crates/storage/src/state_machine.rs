//! The Raft state machine: the etcd keyspace (`mvcc::Store`) in memory, made durable by the Raft
//! log in redb plus snapshots in their own file ([`crate::snapshot_file`]).
//!
//! Apply takes the write lock for one entry at a time, applies its commands in order, answers the
//! entry's responder with one response per command, then publishes each command's watch events
//! in log order. Readers take the read lock for a consistent point in time.
//! On restart the latest snapshot is loaded and openraft re-applies the committed log after it.
//!
//! Values live in the snapshot file: a loaded snapshot's values are slices of a read-only mapping
//! of the file, and after a snapshot is built or installed, the member decodes it that way and
//! swaps the result in for its own index ([`adopt_index`]: a compact, bulk-built index with the
//! file's values), or, when it cannot, points the store's values at the new file a batch at a
//! time ([`share_values`]). Only values written since the latest snapshot are in the member's
//! heap (the member snapshots every `snapshot_count` entries and every 32 MiB of applied values).

use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use bytes::Bytes;

use etcd_proto::raftcmd::RaftBatchResponse;
use futures::{Stream, StreamExt};
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::type_config::alias::{SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::{EntryPayload, OptionalSend, StoredMembership};
use tokio::sync::{broadcast, watch};

use crate::Store;
use crate::codec::LogId;
use crate::db::Db;
use crate::error::StorageError;
use crate::snapshot_file;
use crate::types::{AppliedEvents, RaftReply, TypeConfig};

/// openraft's snapshot: meta plus the state machine's bytes.
pub type Snapshot = SnapshotOf<TypeConfig, Vec<u8>>;
/// Snapshot meta (last included log id, membership).
pub type SnapshotMeta = SnapshotMetaOf<TypeConfig>;
/// Membership as applied, with the log id that introduced it.
pub type Membership = StoredMembershipOf<TypeConfig>;

/// The applied state, shared between openraft's apply and the member's readers.
pub struct SharedState {
    /// The store plus what was applied to it. A std lock: held only for in-memory work, never
    /// across `.await`, taken for writing by apply and snapshot install only.
    state: RwLock<AppliedState>,
    /// Applied commands' events in log order. Sent by apply; receivers are watch streams.
    events: broadcast::Sender<Arc<AppliedEvents>>,
    /// The last applied log index, for waiters (read barrier, forwarded proposals).
    applied_index: watch::Sender<u64>,
    /// Encodings of the whole store under way, each holding the read lock (up to seconds for
    /// millions of keys): while any runs, apply waits for the lock without blocking its thread
    /// and without queueing as a writer, which with std's writer-preferring lock would stall
    /// every reader behind it.
    encoding: AtomicUsize,
    /// Bytes of values applied since the last snapshot was encoded: what the store holds in
    /// memory rather than in the snapshot file.
    unsnapshotted: AtomicU64,
}

/// How often an apply that finds the store being encoded looks again.
const ENCODING_POLL: Duration = Duration::from_millis(1);

/// The store and how far the log has been applied to it.
pub struct AppliedState {
    pub store: Store,
    pub last_applied: Option<LogId>,
    pub membership: Membership,
}

impl SharedState {
    /// A consistent read of the applied state.
    pub fn read(&self) -> RwLockReadGuard<'_, AppliedState> {
        // Apply never leaves the state half-written across a panic point that matters for
        // readers (a panicking apply aborts the member), so a poisoned lock is still readable.
        self.state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, AppliedState> {
        self.state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Bytes of values applied since the last snapshot (held in memory until the next one).
    pub fn unsnapshotted_value_bytes(&self) -> u64 {
        self.unsnapshotted.load(Ordering::Relaxed)
    }

    /// The whole store's snapshot encoding and what it covers, taken under the read lock with
    /// apply told to wait without blocking (see `encoding`). Blocks for as long as the encoding
    /// takes: call it from a blocking thread.
    pub fn encode_snapshot(&self) -> (SnapshotMeta, Vec<u8>) {
        self.encoding.fetch_add(1, Ordering::SeqCst);
        let encoded = {
            let state = self.read();
            self.unsnapshotted.store(0, Ordering::Relaxed);
            let meta = SnapshotMeta {
                last_log_id: state.last_applied,
                last_membership: state.membership.clone(),
            };
            (meta, state.store.encode_snapshot())
        };
        self.encoding.fetch_sub(1, Ordering::SeqCst);
        encoded
    }

    /// The write lock, unless getting it means queueing as a writer behind a snapshot encoding
    /// (which, with std's writer-preferring lock, would stall every reader behind it): at once
    /// when free, waited for when no encoding runs, `None` while one does.
    fn write_unless_encoding(&self) -> Option<RwLockWriteGuard<'_, AppliedState>> {
        match self.state.try_write() {
            Ok(guard) => return Some(guard),
            Err(std::sync::TryLockError::Poisoned(poisoned)) => return Some(poisoned.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => {}
        }
        (self.encoding.load(Ordering::SeqCst) == 0).then(|| self.write())
    }

    /// The write lock for apply; while a snapshot is being encoded, polled without blocking the
    /// thread.
    async fn write_for_apply(&self) -> RwLockWriteGuard<'_, AppliedState> {
        loop {
            if let Some(guard) = self.write_unless_encoding() {
                return guard;
            }
            tokio::time::sleep(ENCODING_POLL).await;
        }
    }

    /// The write lock for snapshot work on a blocking thread, polled while an encoding runs.
    fn write_beside_encodings(&self) -> RwLockWriteGuard<'_, AppliedState> {
        loop {
            if let Some(guard) = self.write_unless_encoding() {
                return guard;
            }
            std::thread::sleep(ENCODING_POLL);
        }
    }

    /// Applied events in log order. A receiver that falls behind gets `Lagged`.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<AppliedEvents>> {
        self.events.subscribe()
    }

    /// The last applied log index, changing as entries are applied.
    pub fn watch_applied_index(&self) -> watch::Receiver<u64> {
        self.applied_index.subscribe()
    }
}

/// The state machine handed to openraft.
#[derive(Clone)]
pub struct StateMachine {
    db: Db,
    shared: Arc<SharedState>,
}

impl StateMachine {
    /// Loads the latest snapshot (or an empty store) from `db`'s directory.
    pub(crate) fn open(db: Db, event_capacity: usize) -> Result<StateMachine, StorageError> {
        snapshot_file::remove_leftover(db.dir())?;
        let (store, last_applied, membership) = match snapshot_file::read_mapped(db.dir())? {
            Some((snapshot, mapped)) => {
                let decoded = match &mapped {
                    Some(mapped) => Store::decode_snapshot_sharing(&snapshot.snapshot, mapped),
                    None => Store::decode_snapshot(&snapshot.snapshot),
                };
                let store = decoded.map_err(|e| StorageError::SnapshotCorrupt {
                    path: db.dir().join(snapshot_file::SNAPSHOT_FILE_NAME),
                    reason: e.to_string(),
                })?;
                (
                    store,
                    snapshot.meta.last_log_id,
                    snapshot.meta.last_membership,
                )
            }
            None => (Store::new(), None, StoredMembership::default()),
        };
        // The snapshot's bytes were read into the heap to be decoded; the store's values are
        // slices of the file's mapping instead.
        crate::release_freed_memory();
        let applied = last_applied.as_ref().map(|id| id.index).unwrap_or(0);
        let (events, _) = broadcast::channel(event_capacity.max(1));
        Ok(StateMachine {
            db,
            shared: Arc::new(SharedState {
                state: RwLock::new(AppliedState {
                    store,
                    last_applied,
                    membership,
                }),
                events,
                applied_index: watch::Sender::new(applied),
                encoding: AtomicUsize::new(0),
                unsnapshotted: AtomicU64::new(0),
            }),
        })
    }

    pub fn shared(&self) -> Arc<SharedState> {
        self.shared.clone()
    }

    /// Writes the snapshot file durably (see [`snapshot_file`]), then points the store's values
    /// at the file's copy of them ([`share_values`]), drops the encoded bytes and lets the
    /// allocator give what was freed back to the OS.
    async fn save_snapshot(&self, meta: &SnapshotMeta, data: Vec<u8>) -> Result<(), io::Error> {
        let meta = meta.clone();
        let dir = self.db.dir().to_path_buf();
        let shared = self.shared.clone();
        blocking(move || -> Result<(), StorageError> {
            let Some(mapped) = snapshot_file::write(&dir, &meta, &data)? else {
                return Ok(());
            };
            match adopt_index(&shared, &data, &mapped) {
                Ok(()) => tracing::debug!("the store's index now comes from the snapshot file"),
                Err(refused) => {
                    tracing::debug!(%refused, "index kept; moving values to the snapshot file");
                    match share_values(&shared, &data, &mapped) {
                        Ok(count) => tracing::debug!(values = count, "values moved to the snapshot file"),
                        // The store keeps its own copies: correct, only larger.
                        Err(e) => tracing::warn!(
                            error = %e,
                            "the store's values stay in memory: the snapshot just written does not list them"
                        ),
                    }
                }
            }
            drop(data);
            crate::release_freed_memory();
            Ok(())
        })
        .await?
        .map_err(StorageError::into_io)
    }
}

/// Runs snapshot work (encoding, file I/O) on a blocking thread.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, io::Error> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| io::Error::other(format!("snapshot task failed: {e}")))
}

/// Swaps in the store's index decoded from the snapshot just written (`encoded`, saved and mapped
/// as `mapped`): bulk-built, its keys in shared blocks and its values slices of the mapping. The
/// decode runs without the lock; the write lock is held only to bring the decoded index up to
/// date with what was applied since the encoding ([`mvcc::Store::adopt_index`]), and the old index
/// is freed after letting go of it.
fn adopt_index(shared: &SharedState, encoded: &[u8], mapped: &Bytes) -> Result<(), String> {
    let decoded = Store::decode_snapshot_sharing(encoded, mapped).map_err(|e| e.to_string())?;
    let replaced = shared
        .write_beside_encodings()
        .store
        .adopt_index(decoded)
        .map_err(|e| e.to_string())?;
    drop(replaced);
    Ok(())
}

/// Values pointed at the snapshot file per hold of the write lock, so applies and reads keep
/// running while a large store is walked.
const SHARE_BATCH: usize = 4096;

/// Replaces the store's copy of every value `encoded` (a snapshot's bytes) holds with the slice of
/// `mapped` (the saved file's copy of the same bytes) at the same place, a batch at a time; values
/// written or compacted since the snapshot was taken are left alone. Returns how many were
/// replaced.
fn share_values(
    shared: &SharedState,
    encoded: &[u8],
    mapped: &Bytes,
) -> Result<usize, mvcc::SnapshotError> {
    let mut listed = mvcc::SnapshotValues::new(encoded)?;
    let mut replaced = 0;
    loop {
        let batch: Vec<mvcc::SnapshotValue<'_>> = listed
            .by_ref()
            .take(SHARE_BATCH)
            .collect::<Result<_, _>>()?;
        if batch.is_empty() {
            return Ok(replaced);
        }
        let mut state = shared.write_beside_encodings();
        for value in batch {
            let slice = mapped.slice(value.value);
            if state
                .store
                .share_value(value.key, value.revision, value.sub, slice)
            {
                replaced += 1;
            }
        }
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let shared = self.shared.clone();
        let (meta, data) = blocking(move || shared.encode_snapshot()).await?;
        let bytes = data.len();
        self.save_snapshot(&meta, data).await?;
        tracing::info!(
            last_log_index = ?meta.last_log_id.map(|id| id.index),
            bytes,
            "built snapshot"
        );
        // openraft keeps only the meta of a snapshot it had built; the bytes are in the snapshot
        // file, where `get_current_snapshot` reads them when a follower needs them. Handing them
        // back would keep hundreds of megabytes alive until openraft dropped them.
        let snapshot = Snapshot {
            meta,
            snapshot: Vec::new(),
        };
        Ok(snapshot)
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, Membership), io::Error> {
        let state = self.shared.read();
        Ok((state.last_applied, state.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            let mut published = Vec::new();
            let mut responses = RaftBatchResponse::default();
            let index = entry.log_id.index;
            let mut value_bytes = 0;
            let revision = {
                let mut state = self.shared.write_for_apply().await;
                match entry.payload {
                    EntryPayload::Blank => {}
                    EntryPayload::Normal(request) => {
                        responses.responses.reserve(request.0.commands.len());
                        for command in &request.0.commands {
                            let applied = state.store.apply(command);
                            value_bytes += applied
                                .events
                                .iter()
                                .filter_map(|event| event.kv.as_ref())
                                .map(|kv| kv.value.len() as u64)
                                .sum::<u64>();
                            if !applied.events.is_empty() {
                                published.push(Arc::new(AppliedEvents {
                                    revision: applied.revision,
                                    events: applied.events,
                                }));
                            }
                            responses.responses.push(applied.response);
                        }
                    }
                    EntryPayload::Membership(membership) => {
                        state.membership = StoredMembership::new(Some(entry.log_id), membership);
                    }
                }
                state.last_applied = Some(entry.log_id);
                state.store.revision()
            };
            self.shared
                .unsnapshotted
                .fetch_add(value_bytes, Ordering::Relaxed);
            for events in published {
                // No receiver is fine: nobody watches yet.
                let _ = self.shared.events.send(events);
            }
            tracing::trace!(db = %self.db.path().display(), index, revision, "applied entry");
            self.shared.applied_index.send_replace(index);
            if let Some(responder) = responder {
                responder.send(RaftReply(responses));
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Vec<u8>,
    ) -> Result<(), io::Error> {
        let store = Store::decode_snapshot(&snapshot)
            .map_err(|e| io::Error::other(format!("snapshot: {e}")))?;
        let index = meta.last_log_id.as_ref().map(|id| id.index).unwrap_or(0);
        {
            let mut state = self.shared.write();
            state.store = store;
            state.last_applied = meta.last_log_id;
            state.membership = meta.last_membership.clone();
        }
        // Saved after the store is in place, so the values it holds move to the file.
        self.save_snapshot(meta, snapshot).await?;
        self.shared.applied_index.send_replace(index);
        tracing::info!(db = %self.db.path().display(), last_log_index = ?meta.last_log_id.map(|id| id.index), "installed snapshot");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let dir = self.db.dir().to_path_buf();
        blocking(move || snapshot_file::read(&dir))
            .await?
            .map_err(StorageError::into_io)
    }
}
