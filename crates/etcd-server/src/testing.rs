//! An in-memory member for unit tests: commands are applied to a real `mvcc::Store` at once
//! (no Raft), events are published on a feed, and the status is settable.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use etcd_proto::etcdserverpb::{
    CompactionRequest, DeleteRangeRequest, LeaseGrantRequest, Member, PutRequest,
};
use etcd_proto::raftcmd::raft_command::Command;
use etcd_proto::raftcmd::{RaftCommand, RaftResponse};
use tokio::sync::{broadcast, watch};

use crate::backend::{AppliedEvents, Backend, NodeStatus};
use crate::error::ServiceError;

/// The fake member: one shared store, an applied-event feed, a settable status.
#[derive(Clone)]
pub struct FakeNode {
    store: Arc<Mutex<mvcc::Store>>,
    feed: broadcast::Sender<Arc<AppliedEvents>>,
    status: Arc<watch::Sender<NodeStatus>>,
    proposals: Arc<Mutex<Vec<RaftCommand>>>,
    /// False simulates a leader cut off from its quorum: read barriers time out.
    quorum: Arc<std::sync::atomic::AtomicBool>,
}

fn unsupported() -> ServiceError {
    ServiceError::Internal("not supported by the in-memory member".to_owned())
}

impl FakeNode {
    /// A leader (member 1, term 1) with an empty store at revision 1; the feed keeps `capacity`.
    pub fn leader(capacity: usize) -> Self {
        let (feed, _) = broadcast::channel(capacity);
        let status = NodeStatus {
            member_id: 1,
            cluster_id: 100,
            leader: Some(1),
            term: 1,
            members: vec![Member {
                id: 1,
                name: "one".to_owned(),
                ..Member::default()
            }],
            ..NodeStatus::default()
        };
        FakeNode {
            store: Arc::new(Mutex::new(mvcc::Store::new())),
            feed,
            status: Arc::new(watch::channel(status).0),
            proposals: Arc::new(Mutex::new(Vec::new())),
            quorum: Arc::new(std::sync::atomic::AtomicBool::new(true)),
        }
    }

    fn store(&self) -> MutexGuard<'_, mvcc::Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies a command as every member would and publishes its events.
    pub fn apply(&self, command: Command) -> RaftResponse {
        let applied = self.store().apply(&RaftCommand {
            command: Some(command),
        });
        if !applied.events.is_empty() {
            let _ = self.feed.send(Arc::new(AppliedEvents {
                revision: applied.revision,
                events: applied.events,
            }));
        }
        applied.response
    }

    /// Applies a put without publishing it, as a snapshot install moves the store forward.
    pub fn put_unpublished(&self, key: &str, value: &str) {
        self.store().apply(&RaftCommand {
            command: Some(Command::Put(PutRequest {
                key: Bytes::copy_from_slice(key.as_bytes()),
                value: Bytes::copy_from_slice(value.as_bytes()),
                ..PutRequest::default()
            })),
        });
    }

    pub fn put(&self, key: &str, value: &str) {
        self.apply(Command::Put(PutRequest {
            key: Bytes::copy_from_slice(key.as_bytes()),
            value: Bytes::copy_from_slice(value.as_bytes()),
            ..PutRequest::default()
        }));
    }

    pub fn delete(&self, key: &str) {
        self.apply(Command::DeleteRange(DeleteRangeRequest {
            key: Bytes::copy_from_slice(key.as_bytes()),
            ..DeleteRangeRequest::default()
        }));
    }

    pub fn compact(&self, revision: i64) {
        self.apply(Command::Compaction(CompactionRequest {
            revision,
            physical: true,
        }));
    }

    pub fn grant(&self, id: i64, ttl: i64) {
        self.apply(Command::LeaseGrant(LeaseGrantRequest { ttl, id }));
    }

    pub fn set_quorum(&self, reachable: bool) {
        self.quorum
            .store(reachable, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn set_status(&self, change: impl FnOnce(&mut NodeStatus)) {
        self.status.send_modify(change);
    }

    pub fn proposals(&self) -> Vec<RaftCommand> {
        self.proposals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Backend for FakeNode {
    fn status(&self) -> NodeStatus {
        self.status.borrow().clone()
    }
    fn watch_status(&self) -> watch::Receiver<NodeStatus> {
        self.status.subscribe()
    }
    async fn propose(&self, command: RaftCommand) -> Result<RaftResponse, ServiceError> {
        if self.status().leader.is_none() {
            return Err(ServiceError::NoLeader);
        }
        self.proposals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(command.clone());
        let command = command.command.ok_or_else(unsupported)?;
        Ok(self.apply(command))
    }
    async fn linearizable_read(&self) -> Result<(), ServiceError> {
        if self.status().leader.is_none() {
            return Err(ServiceError::NoLeader);
        }
        if !self.quorum.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(ServiceError::Timeout);
        }
        Ok(())
    }
    fn read<T>(&self, read: impl FnOnce(&mvcc::Store) -> T) -> T {
        read(&self.store())
    }
    fn subscribe(&self) -> broadcast::Receiver<Arc<AppliedEvents>> {
        self.feed.subscribe()
    }
    async fn member_add(
        &self,
        _peer_urls: Vec<String>,
        _is_learner: bool,
    ) -> Result<(Member, Vec<Member>), ServiceError> {
        Err(unsupported())
    }
    async fn member_remove(&self, _id: u64) -> Result<Vec<Member>, ServiceError> {
        Err(unsupported())
    }
    async fn member_update(
        &self,
        _id: u64,
        _peer_urls: Vec<String>,
    ) -> Result<Vec<Member>, ServiceError> {
        Err(unsupported())
    }
    async fn member_promote(&self, _id: u64) -> Result<Vec<Member>, ServiceError> {
        Err(unsupported())
    }
    async fn move_leader(&self, _target: u64) -> Result<(), ServiceError> {
        Ok(())
    }
    async fn snapshot_bytes(&self) -> Result<Vec<u8>, ServiceError> {
        Ok(self.store().encode_snapshot())
    }
    fn db_size(&self) -> u64 {
        4096
    }
}
