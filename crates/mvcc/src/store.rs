//! The store: its state, the apply entry point, and the key writes (put, delete) every command builds on.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::Bound;

use bytes::Bytes;
use etcd_proto::errors::{self, EtcdError};
use etcd_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, ResponseHeader,
};
use etcd_proto::mvccpb::{Event, KeyValue, event::EventType};
use etcd_proto::raftcmd::{
    ApplyError, RaftCommand, RaftResponse, raft_command::Command, raft_response::Response,
};

use crate::auth::AuthState;
use crate::keyspace::{Change, Entry, KeyHistory, KeyIndex, histories_in};
use crate::leases::Lease;
use crate::validate::{validate_delete_range, validate_put};

/// The etcd keyspace as a deterministic state machine: every key's history since the compact
/// revision, the store revision, the lease table (IDs, granted TTLs, attached keys; no timers) and
/// the alarm list. Reads take `&self`; only [`Store::apply`] mutates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    pub(crate) keys: KeyIndex,
    /// Revision of the last write; 1 for an empty new store, so the first write yields 2.
    pub(crate) revision: i64,
    /// Reads and watches below this revision answer `COMPACTED`; 0 until the first compaction.
    pub(crate) compact_revision: i64,
    pub(crate) leases: BTreeMap<i64, Lease>,
    /// Active alarms as (member ID, alarm type).
    pub(crate) alarms: BTreeSet<(u64, i32)>,
    /// Number of live keys at the current revision.
    pub(crate) live_keys: usize,
    /// Exactly the keys compaction may have work on: those with more than one version or whose
    /// newest version is a tombstone. Compaction visits only these, so its cost follows the keys
    /// written since the last one, not the size of the keyspace.
    pub(crate) compactable: BTreeSet<Bytes>,
    /// The newest changes above the compact revision (at most `revision_log_capacity`) in
    /// (revision, sub-revision) order: the revision log watch replay walks when a window holds
    /// fewer changes than the range holds keys.
    pub(crate) changes: VecDeque<Change>,
    /// The log holds every change with revision >= this (above the compact revision); older
    /// windows are replayed by scanning keys. 0 while nothing was dropped for want of room.
    pub(crate) changes_from: i64,
    /// How many changes the revision log keeps ([`REVISION_LOG_CAPACITY`] outside tests).
    pub(crate) revision_log_capacity: usize,
    /// Users, roles, the enabled flag and the auth revision.
    pub(crate) auth: AuthState,
}

/// The outcome of applying one command.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// The answer for the proposer; `RaftResponse::Error` when apply refused the command (nothing changed).
    pub response: RaftResponse,
    /// Watch events this command produced, in (revision, sub-revision) order: PUT kvs full, DELETE kvs
    /// with key + mod_revision, `prev_kv` filled when a previous version existed. Empty when nothing
    /// changed. All share one revision, except for `lease_expire`, where each revoked lease that had
    /// keys is its own revision (read it from each event's `kv.mod_revision`).
    pub events: Vec<Event>,
    /// Store revision after apply.
    pub revision: i64,
}

/// Changes being made under one new main revision.
pub(crate) struct Pending {
    /// The revision the changes get: store revision + 1.
    pub main: i64,
    /// Next sub-revision; also the number of changes made so far.
    pub sub: u32,
    pub events: Vec<Event>,
}

impl Pending {
    pub fn changed(&self) -> bool {
        self.sub > 0
    }
}

pub(crate) fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..ResponseHeader::default()
    })
}

pub(crate) fn error_response(error: EtcdError) -> RaftResponse {
    RaftResponse {
        response: Some(Response::Error(ApplyError {
            code: error.code as i32,
            message: error.message.to_string(),
        })),
    }
}

/// Changes the revision log keeps: 48 bytes each, so ≈ 3 MiB. A watch starting further back is
/// replayed from the key histories instead (same events, cost following the range's keys).
pub(crate) const REVISION_LOG_CAPACITY: usize = 64 * 1024;

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

impl Store {
    /// An empty store at revision 1.
    pub fn new() -> Store {
        Store {
            keys: KeyIndex::new(),
            revision: 1,
            compact_revision: 0,
            leases: BTreeMap::new(),
            alarms: BTreeSet::new(),
            live_keys: 0,
            compactable: BTreeSet::new(),
            changes: VecDeque::new(),
            changes_from: 0,
            revision_log_capacity: REVISION_LOG_CAPACITY,
            auth: AuthState::default(),
        }
    }

    /// Appends to the revision log, dropping its oldest change when full.
    fn log_change(&mut self, change: Change) {
        self.changes.push_back(change);
        while self.changes.len() > self.revision_log_capacity {
            if let Some(dropped) = self.changes.pop_front() {
                self.changes_from = dropped.revision + 1;
            }
        }
    }

    /// Applies one command of the replicated log. Deterministic: the same sequence of commands gives
    /// the same state and the same answers on every member. A refused command changes nothing.
    pub fn apply(&mut self, command: &RaftCommand) -> Applied {
        let mut events = Vec::new();
        let response = match &command.command {
            Some(Command::Put(put)) => self.apply_put(put, &mut events).map(Response::Put),
            Some(Command::DeleteRange(delete)) => self
                .apply_delete_range(delete, &mut events)
                .map(Response::DeleteRange),
            Some(Command::Txn(txn)) => self.apply_txn(txn, &mut events).map(Response::Txn),
            Some(Command::Compaction(compaction)) => {
                self.apply_compaction(compaction).map(Response::Compaction)
            }
            Some(Command::LeaseGrant(grant)) => {
                self.apply_lease_grant(grant).map(Response::LeaseGrant)
            }
            Some(Command::LeaseRevoke(revoke)) => self
                .apply_lease_revoke(revoke, &mut events)
                .map(Response::LeaseRevoke),
            Some(Command::LeaseExpire(expire)) => self
                .apply_lease_expire(expire, &mut events)
                .map(Response::LeaseExpire),
            Some(Command::Alarm(alarm)) => Ok(Response::Alarm(self.apply_alarm(alarm))),
            Some(Command::AuthEnable(request)) => {
                self.apply_auth_enable(request).map(Response::AuthEnable)
            }
            Some(Command::AuthDisable(request)) => {
                self.apply_auth_disable(request).map(Response::AuthDisable)
            }
            Some(Command::UserAdd(request)) => self.apply_user_add(request).map(Response::UserAdd),
            Some(Command::UserDelete(request)) => {
                self.apply_user_delete(request).map(Response::UserDelete)
            }
            Some(Command::UserChangePassword(request)) => self
                .apply_user_change_password(request)
                .map(Response::UserChangePassword),
            Some(Command::UserGrantRole(request)) => self
                .apply_user_grant_role(request)
                .map(Response::UserGrantRole),
            Some(Command::UserRevokeRole(request)) => self
                .apply_user_revoke_role(request)
                .map(Response::UserRevokeRole),
            Some(Command::RoleAdd(request)) => self.apply_role_add(request).map(Response::RoleAdd),
            Some(Command::RoleDelete(request)) => {
                self.apply_role_delete(request).map(Response::RoleDelete)
            }
            Some(Command::RoleGrantPermission(request)) => self
                .apply_role_grant_permission(request)
                .map(Response::RoleGrantPermission),
            Some(Command::RoleRevokePermission(request)) => self
                .apply_role_revoke_permission(request)
                .map(Response::RoleRevokePermission),
            // An empty command (for example a newer proposer's variant this build does not know)
            // changes nothing and is answered with an empty response.
            None => {
                return Applied {
                    response: RaftResponse { response: None },
                    events,
                    revision: self.revision,
                };
            }
        };
        let response = match response {
            Ok(response) => RaftResponse {
                response: Some(response),
            },
            Err(error) => {
                events.clear();
                error_response(error)
            }
        };
        Applied {
            response,
            events,
            revision: self.revision,
        }
    }

    /// Current store revision (revision of the last write; 1 when empty and new).
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// The revision of the last compaction (0 if never compacted).
    pub fn compact_revision(&self) -> i64 {
        self.compact_revision
    }

    /// Number of live keys at the current revision.
    pub fn key_count(&self) -> usize {
        self.live_keys
    }

    pub(crate) fn begin(&self) -> Pending {
        Pending {
            main: self.revision + 1,
            sub: 0,
            events: Vec::new(),
        }
    }

    /// Ends a write: the store revision advances only when something changed.
    pub(crate) fn commit(&mut self, pending: Pending, events: &mut Vec<Event>) {
        if pending.changed() {
            self.revision = pending.main;
        }
        if events.is_empty() {
            *events = pending.events;
        } else {
            events.extend(pending.events);
        }
    }

    fn apply_put(
        &mut self,
        request: &PutRequest,
        events: &mut Vec<Event>,
    ) -> Result<PutResponse, EtcdError> {
        validate_put(request)?;
        self.check_alarms(true)?;
        if request.lease != 0 && !self.leases.contains_key(&request.lease) {
            return Err(errors::LEASE_NOT_FOUND);
        }
        if (request.ignore_value || request.ignore_lease) && self.current(&request.key).is_none() {
            return Err(errors::KEY_NOT_FOUND);
        }
        let mut pending = self.begin();
        let response = self.put_checked(&mut pending, request);
        self.commit(pending, events);
        Ok(response)
    }

    /// A put whose checks passed (lease exists, key exists when ignore_* is set).
    /// One key-index lookup for an existing key, two for a new one.
    pub(crate) fn put_checked(
        &mut self,
        pending: &mut Pending,
        request: &PutRequest,
    ) -> PutResponse {
        let key = &request.key[..];
        let found = self
            .keys
            .range_mut::<[u8], _>((Bound::Included(key), Bound::Included(key)))
            .next();
        let (stored_key, history) = match found {
            Some((stored_key, history)) => (stored_key.clone(), history),
            None => {
                // One copy per new key: the index must not pin the log entry's decode buffer.
                let stored_key = Bytes::copy_from_slice(key);
                let history = self.keys.entry(stored_key.clone()).or_default();
                (stored_key, history)
            }
        };
        let previous = history.latest_live();
        let value = match (previous, request.ignore_value) {
            (Some(previous), true) => previous.value.clone(),
            // After the checks `previous` exists whenever ignore_value is set, so this arm is a
            // fresh value: copied once so the store never pins a log buffer.
            _ => Bytes::copy_from_slice(&request.value),
        };
        let lease = match (previous, request.ignore_lease) {
            (Some(previous), true) => previous.lease,
            _ => request.lease,
        };
        let prev_kv = previous.map(|previous| previous.to_key_value(&stored_key));
        let (create_revision, version, old_lease) =
            previous.map_or((pending.main, 1, 0), |previous| {
                (
                    previous.create_revision,
                    previous.version + 1,
                    previous.lease,
                )
            });
        let entry = Entry {
            value,
            revision: pending.main,
            create_revision,
            version,
            lease,
            sub: pending.sub,
        };
        let kv = entry.to_key_value(&stored_key);
        history.push(entry);
        let has_history = history.entries().len() > 1;
        self.log_change(Change {
            revision: pending.main,
            sub: pending.sub,
            key: stored_key.clone(),
        });
        pending.sub += 1;
        if prev_kv.is_none() {
            self.live_keys += 1;
        }
        if has_history {
            self.compactable.insert(stored_key.clone());
        }
        if old_lease != 0
            && old_lease != lease
            && let Some(old) = self.leases.get_mut(&old_lease)
        {
            old.keys.remove(&stored_key);
        }
        if lease != 0
            && old_lease != lease
            && let Some(new) = self.leases.get_mut(&lease)
        {
            new.keys.insert(stored_key);
        }
        let response_prev_kv = if request.prev_kv {
            prev_kv.clone()
        } else {
            None
        };
        pending.events.push(Event {
            r#type: EventType::Put as i32,
            kv: Some(kv),
            prev_kv,
        });
        PutResponse {
            header: header(pending.main),
            prev_kv: response_prev_kv,
        }
    }

    /// The key's current live version.
    pub(crate) fn current(&self, key: &[u8]) -> Option<&Entry> {
        self.keys.get(key).and_then(KeyHistory::latest_live)
    }

    fn apply_delete_range(
        &mut self,
        request: &DeleteRangeRequest,
        events: &mut Vec<Event>,
    ) -> Result<DeleteRangeResponse, EtcdError> {
        validate_delete_range(request)?;
        self.check_alarms(false)?;
        let mut pending = self.begin();
        let response = self.delete_range_checked(&mut pending, request);
        self.commit(pending, events);
        Ok(response)
    }

    pub(crate) fn delete_range_checked(
        &mut self,
        pending: &mut Pending,
        request: &DeleteRangeRequest,
    ) -> DeleteRangeResponse {
        let doomed: Vec<Bytes> = histories_in(&self.keys, &request.key, &request.range_end)
            .filter(|(_, history)| history.latest_live().is_some())
            .map(|(key, _)| key.clone())
            .collect();
        let mut prev_kvs = Vec::new();
        for key in &doomed {
            if let Some(deleted) = self.write_delete(pending, key)
                && request.prev_kv
            {
                prev_kvs.push(deleted);
            }
        }
        DeleteRangeResponse {
            header: header(if pending.changed() {
                pending.main
            } else {
                self.revision
            }),
            deleted: doomed.len() as i64,
            prev_kvs,
        }
    }

    /// Tombstones a live key under the pending revision; returns the deleted version.
    pub(crate) fn write_delete(&mut self, pending: &mut Pending, key: &Bytes) -> Option<KeyValue> {
        let history = self.keys.get_mut(key)?;
        let previous = history.latest_live()?.clone();
        let tombstone = Entry {
            value: Bytes::new(),
            revision: pending.main,
            create_revision: 0,
            version: 0,
            lease: 0,
            sub: pending.sub,
        };
        let kv = tombstone.to_key_value(key);
        history.push(tombstone);
        self.compactable.insert(key.clone());
        self.log_change(Change {
            revision: pending.main,
            sub: pending.sub,
            key: key.clone(),
        });
        pending.sub += 1;
        self.live_keys -= 1;
        if previous.lease != 0
            && let Some(lease) = self.leases.get_mut(&previous.lease)
        {
            lease.keys.remove(key);
        }
        let prev_kv = previous.to_key_value(key);
        pending.events.push(Event {
            r#type: EventType::Delete as i32,
            kv: Some(kv),
            prev_kv: Some(prev_kv.clone()),
        });
        Some(prev_kv)
    }

    fn apply_compaction(
        &mut self,
        request: &CompactionRequest,
    ) -> Result<CompactionResponse, EtcdError> {
        self.check_alarms(false)?;
        if request.revision <= self.compact_revision {
            return Err(errors::COMPACTED);
        }
        if request.revision > self.revision {
            return Err(errors::FUTURE_REV);
        }
        self.compact(request.revision);
        Ok(CompactionResponse {
            header: header(self.revision),
        })
    }
}
