//! An in-memory stand-in for the member, for unit tests of the service layer, the watch
//! session and the lease keeper. It implements just enough etcd semantics for those tests.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use etcd_proto::errors::{self, EtcdError};
use etcd_proto::etcdserverpb::{
    AlarmMember, LeaseGrantResponse, LeaseRevokeResponse, Member, PutResponse, RangeRequest,
    RangeResponse, ResponseHeader, TxnRequest, TxnResponse,
};
use etcd_proto::mvccpb::event::EventType;
use etcd_proto::mvccpb::{Event, KeyValue};
use etcd_proto::raftcmd::raft_command::Command;
use etcd_proto::raftcmd::raft_response::Response;
use etcd_proto::raftcmd::{LeaseExpireResponse, RaftCommand, RaftResponse};
use tokio::sync::{broadcast, watch};

use crate::backend::{AppliedEvents, Backend, LeaseView, NodeStatus, StoreRead};
use crate::error::ServiceError;
use crate::validate::key_in_range;

#[derive(Debug, Default)]
pub struct FakeState {
    pub revision: i64,
    pub compact_revision: i64,
    pub history: Vec<AppliedEvents>,
    pub kvs: BTreeMap<Bytes, KeyValue>,
    pub leases: BTreeMap<i64, LeaseView>,
}

impl FakeState {
    fn new() -> Self {
        FakeState {
            revision: 1,
            ..FakeState::default()
        }
    }

    pub fn put(&mut self, key: &str, value: &str) -> AppliedEvents {
        self.revision += 1;
        let key = Bytes::copy_from_slice(key.as_bytes());
        let previous = self.kvs.get(&key).cloned();
        let kv = KeyValue {
            key: key.clone(),
            create_revision: previous
                .as_ref()
                .map_or(self.revision, |kv| kv.create_revision),
            mod_revision: self.revision,
            version: previous.as_ref().map_or(1, |kv| kv.version + 1),
            value: Bytes::copy_from_slice(value.as_bytes()),
            lease: 0,
        };
        self.kvs.insert(key, kv.clone());
        self.record(vec![Event {
            r#type: EventType::Put as i32,
            kv: Some(kv),
            prev_kv: previous,
        }])
    }

    pub fn delete(&mut self, key: &str) -> Option<AppliedEvents> {
        let key = Bytes::copy_from_slice(key.as_bytes());
        let previous = self.kvs.remove(&key)?;
        self.revision += 1;
        let kv = KeyValue {
            key,
            mod_revision: self.revision,
            ..KeyValue::default()
        };
        Some(self.record(vec![Event {
            r#type: EventType::Delete as i32,
            kv: Some(kv),
            prev_kv: Some(previous),
        }]))
    }

    fn record(&mut self, events: Vec<Event>) -> AppliedEvents {
        let applied = AppliedEvents {
            revision: self.revision,
            events,
        };
        self.history.push(applied.clone());
        applied
    }
}

impl StoreRead for FakeState {
    fn revision(&self) -> i64 {
        self.revision
    }
    fn compact_revision(&self) -> i64 {
        self.compact_revision
    }
    fn range(&self, request: &RangeRequest) -> Result<RangeResponse, EtcdError> {
        if request.revision > self.revision {
            return Err(errors::FUTURE_REV);
        }
        let kvs: Vec<KeyValue> = self
            .kvs
            .values()
            .filter(|kv| key_in_range(&kv.key, &request.key, &request.range_end))
            .cloned()
            .collect();
        let count = i64::try_from(kvs.len()).unwrap_or(i64::MAX);
        Ok(RangeResponse {
            header: None,
            kvs,
            more: false,
            count,
        })
    }
    fn txn_read_only(&self, _request: &TxnRequest) -> Result<TxnResponse, EtcdError> {
        Ok(TxnResponse {
            succeeded: true,
            ..TxnResponse::default()
        })
    }
    fn events(
        &self,
        key: &[u8],
        range_end: &[u8],
        from: i64,
        to: i64,
    ) -> Result<Vec<Event>, EtcdError> {
        if from < self.compact_revision {
            return Err(errors::COMPACTED);
        }
        Ok(self
            .history
            .iter()
            .filter(|applied| applied.revision >= from && applied.revision <= to)
            .flat_map(|applied| applied.events.iter())
            .filter(|event| {
                let event_key = event
                    .kv
                    .as_ref()
                    .map(|kv| kv.key.as_ref())
                    .unwrap_or_default();
                key_in_range(event_key, key, range_end)
            })
            .cloned()
            .collect())
    }
    fn lease(&self, id: i64) -> Option<LeaseView> {
        self.leases.get(&id).cloned()
    }
    fn leases(&self) -> Vec<LeaseView> {
        self.leases.values().cloned().collect()
    }
    fn alarms(&self) -> Vec<AlarmMember> {
        Vec::new()
    }
    fn hash_kv(&self, _revision: i64) -> Result<(u32, i64), EtcdError> {
        Ok((
            u32::try_from(self.revision).unwrap_or(0),
            self.compact_revision,
        ))
    }
}

/// The fake member: one shared state, an applied-event feed, a settable status.
#[derive(Clone)]
pub struct FakeNode {
    state: Arc<Mutex<FakeState>>,
    feed: broadcast::Sender<Arc<AppliedEvents>>,
    status: Arc<watch::Sender<NodeStatus>>,
    proposals: Arc<Mutex<Vec<RaftCommand>>>,
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
            ..NodeStatus::default()
        };
        FakeNode {
            state: Arc::new(Mutex::new(FakeState::new())),
            feed,
            status: Arc::new(watch::channel(status).0),
            proposals: Arc::new(Mutex::new(Vec::new())),
        }
    }

    pub fn state(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies a put and publishes its events, as apply does.
    pub fn apply_put(&self, key: &str, value: &str) -> i64 {
        let applied = self.state().put(key, value);
        let revision = applied.revision;
        let _ = self.feed.send(Arc::new(applied));
        revision
    }

    pub fn apply_delete(&self, key: &str) {
        let applied = self.state().delete(key);
        if let Some(applied) = applied {
            let _ = self.feed.send(Arc::new(applied));
        }
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

    pub fn add_lease(&self, id: i64, ttl: i64) {
        self.state().leases.insert(
            id,
            LeaseView {
                id,
                granted_ttl: ttl,
                keys: Vec::new(),
            },
        );
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
        self.proposals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(command.clone());
        let header = |revision| {
            Some(ResponseHeader {
                revision,
                ..ResponseHeader::default()
            })
        };
        let response = match command.command {
            Some(Command::Put(put)) => {
                let key = String::from_utf8_lossy(&put.key).into_owned();
                let value = String::from_utf8_lossy(&put.value).into_owned();
                let revision = self.apply_put(&key, &value);
                Response::Put(PutResponse {
                    header: header(revision),
                    prev_kv: None,
                })
            }
            Some(Command::LeaseGrant(grant)) => {
                self.add_lease(grant.id, grant.ttl);
                let revision = self.state().revision;
                Response::LeaseGrant(LeaseGrantResponse {
                    header: header(revision),
                    id: grant.id,
                    ttl: grant.ttl,
                    error: String::new(),
                })
            }
            Some(Command::LeaseRevoke(revoke)) => {
                if self.state().leases.remove(&revoke.id).is_none() {
                    return Ok(RaftResponse {
                        response: Some(Response::Error(etcd_proto::raftcmd::ApplyError {
                            code: errors::LEASE_NOT_FOUND.code as i32,
                            message: errors::LEASE_NOT_FOUND.message.to_owned(),
                        })),
                    });
                }
                Response::LeaseRevoke(LeaseRevokeResponse {
                    header: header(self.state().revision),
                })
            }
            Some(Command::LeaseExpire(expire)) => {
                let mut removed = Vec::new();
                for id in expire.ids {
                    if self.state().leases.remove(&id).is_some() {
                        removed.push(id);
                    }
                }
                Response::LeaseExpire(LeaseExpireResponse { ids: removed })
            }
            _ => {
                return Err(ServiceError::Internal(
                    "not supported by the fake".to_owned(),
                ));
            }
        };
        Ok(RaftResponse {
            response: Some(response),
        })
    }
    async fn linearizable_read(&self) -> Result<(), ServiceError> {
        if self.status().leader.is_none() {
            return Err(ServiceError::NoLeader);
        }
        Ok(())
    }
    fn read<T>(&self, read: impl FnOnce(&dyn StoreRead) -> T) -> T {
        let state = self.state();
        read(&*state)
    }
    fn subscribe(&self) -> broadcast::Receiver<Arc<AppliedEvents>> {
        self.feed.subscribe()
    }
    async fn member_add(
        &self,
        _peer_urls: Vec<String>,
        _is_learner: bool,
    ) -> Result<(Member, Vec<Member>), ServiceError> {
        Err(ServiceError::Internal(
            "not supported by the fake".to_owned(),
        ))
    }
    async fn member_remove(&self, _id: u64) -> Result<Vec<Member>, ServiceError> {
        Err(ServiceError::Internal(
            "not supported by the fake".to_owned(),
        ))
    }
    async fn member_update(
        &self,
        _id: u64,
        _peer_urls: Vec<String>,
    ) -> Result<Vec<Member>, ServiceError> {
        Err(ServiceError::Internal(
            "not supported by the fake".to_owned(),
        ))
    }
    async fn member_promote(&self, _id: u64) -> Result<Vec<Member>, ServiceError> {
        Err(ServiceError::Internal(
            "not supported by the fake".to_owned(),
        ))
    }
    async fn move_leader(&self, _target: u64) -> Result<(), ServiceError> {
        Ok(())
    }
    async fn snapshot_bytes(&self) -> Result<Vec<u8>, ServiceError> {
        Ok(vec![1, 2, 3])
    }
    fn db_size(&self) -> u64 {
        4096
    }
}
