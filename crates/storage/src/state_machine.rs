//! The Raft state machine: the etcd keyspace (`mvcc::Store`) in memory, made durable by the Raft
//! log in redb plus snapshots in their own file ([`crate::snapshot_file`]).
//!
//! Apply takes the write lock for one entry at a time, applies its commands in order, answers the
//! entry's responder with one response per command, then publishes each command's watch events
//! in log order. Readers take the read lock for a consistent point in time.
//! On restart the latest snapshot is loaded and openraft re-applies the committed log after it.

use std::io;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

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
}

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
        let (store, last_applied, membership) = match snapshot_file::read(db.dir())? {
            Some(snapshot) => {
                let store = Store::decode_snapshot(&snapshot.snapshot).map_err(|e| {
                    StorageError::SnapshotCorrupt {
                        path: db.dir().join(snapshot_file::SNAPSHOT_FILE_NAME),
                        reason: e.to_string(),
                    }
                })?;
                (
                    store,
                    snapshot.meta.last_log_id,
                    snapshot.meta.last_membership,
                )
            }
            None => (Store::new(), None, StoredMembership::default()),
        };
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
            }),
        })
    }

    pub fn shared(&self) -> Arc<SharedState> {
        self.shared.clone()
    }

    /// Writes the snapshot file durably (see [`snapshot_file`]) and hands the bytes back.
    async fn save_snapshot(
        &self,
        meta: &SnapshotMeta,
        data: Vec<u8>,
    ) -> Result<Vec<u8>, io::Error> {
        let meta = meta.clone();
        let dir = self.db.dir().to_path_buf();
        tokio::task::spawn_blocking(move || -> Result<Vec<u8>, StorageError> {
            snapshot_file::write(&dir, &meta, &data)?;
            Ok(data)
        })
        .await
        .map_err(|e| io::Error::other(format!("snapshot task failed: {e}")))?
        .map_err(StorageError::into_io)
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let (meta, data) = {
            let state = self.shared.read();
            let meta = SnapshotMeta {
                last_log_id: state.last_applied,
                last_membership: state.membership.clone(),
            };
            (meta, state.store.encode_snapshot())
        };
        let data = self.save_snapshot(&meta, data).await?;
        let snapshot = Snapshot {
            meta,
            snapshot: data,
        };
        tracing::info!(
            last_log_index = ?snapshot.meta.last_log_id.map(|id| id.index),
            bytes = snapshot.snapshot.len(),
            "built snapshot"
        );
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
            let revision = {
                let mut state = self.shared.write();
                match entry.payload {
                    EntryPayload::Blank => {}
                    EntryPayload::Normal(request) => {
                        responses.responses.reserve(request.0.commands.len());
                        for command in &request.0.commands {
                            let applied = state.store.apply(command);
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
        drop(self.save_snapshot(meta, snapshot).await?);
        let index = meta.last_log_id.as_ref().map(|id| id.index).unwrap_or(0);
        {
            let mut state = self.shared.write();
            state.store = store;
            state.last_applied = meta.last_log_id;
            state.membership = meta.last_membership.clone();
        }
        self.shared.applied_index.send_replace(index);
        tracing::info!(db = %self.db.path().display(), last_log_index = ?meta.last_log_id.map(|id| id.index), "installed snapshot");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let dir = self.db.dir().to_path_buf();
        tokio::task::spawn_blocking(move || snapshot_file::read(&dir))
            .await
            .map_err(|e| io::Error::other(format!("snapshot task failed: {e}")))?
            .map_err(StorageError::into_io)
    }
}
