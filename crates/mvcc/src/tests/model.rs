//! A deliberately simple reference model of the etcd keyspace: a full copy of the keyspace per
//! revision and the events of each revision, with every rule written out the naive way.
//! The property tests check the real store against it.

use std::collections::BTreeMap;

use bytes::Bytes;
use etcd_proto::errors::{self, EtcdError};
use etcd_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use etcd_proto::etcdserverpb::{
    CompactionResponse, Compare, DeleteRangeRequest, DeleteRangeResponse, LeaseGrantResponse,
    LeaseRevokeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp,
    ResponseHeader, ResponseOp, TxnRequest, TxnResponse, request_op, response_op,
};
use etcd_proto::mvccpb::{Event, KeyValue, event::EventType};
use etcd_proto::raftcmd::{
    LeaseExpireResponse, RaftCommand, RaftResponse, raft_command::Command, raft_response::Response,
};

use crate::store::error_response;
use crate::{MAX_LEASE_TTL, validate_put, validate_range, validate_txn};

type Keyspace = BTreeMap<Bytes, KeyValue>;

pub struct Model {
    /// `states[r - 1]` is the keyspace at revision r (revision 1 is empty).
    states: Vec<Keyspace>,
    /// `events[r - 1]` are the events of revision r.
    events: Vec<Vec<Event>>,
    compact: i64,
    /// Lease ID → granted TTL. Attachments are read from the current keyspace.
    leases: BTreeMap<i64, i64>,
}

fn selects(key: &[u8], range_end: &[u8], candidate: &[u8]) -> bool {
    match range_end {
        b"" => candidate == key,
        b"\0" => candidate >= key,
        end => candidate >= key && candidate < end,
    }
}

fn head(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..Default::default()
    })
}

/// One write in progress: a working copy of the keyspace.
struct Work {
    keyspace: Keyspace,
    revision: i64,
    events: Vec<Event>,
}

impl Work {
    fn now(&self) -> i64 {
        if self.events.is_empty() {
            self.revision - 1
        } else {
            self.revision
        }
    }

    fn put(&mut self, key: &Bytes, value: Bytes, lease: i64) -> Option<KeyValue> {
        let previous = self.keyspace.get(key).cloned();
        let kv = KeyValue {
            key: key.clone(),
            create_revision: previous
                .as_ref()
                .map_or(self.revision, |p| p.create_revision),
            mod_revision: self.revision,
            version: previous.as_ref().map_or(1, |p| p.version + 1),
            value,
            lease,
        };
        self.keyspace.insert(key.clone(), kv.clone());
        self.events.push(Event {
            r#type: EventType::Put as i32,
            kv: Some(kv),
            prev_kv: previous.clone(),
        });
        previous
    }

    fn delete(&mut self, key: &Bytes) -> Option<KeyValue> {
        let previous = self.keyspace.remove(key)?;
        let kv = KeyValue {
            key: key.clone(),
            mod_revision: self.revision,
            ..Default::default()
        };
        self.events.push(Event {
            r#type: EventType::Delete as i32,
            kv: Some(kv),
            prev_kv: Some(previous.clone()),
        });
        Some(previous)
    }
}

fn compare_one(compare: &Compare, kv: &KeyValue) -> bool {
    let union = compare.target_union.clone();
    let ordering = match CompareTarget::try_from(compare.target) {
        Ok(CompareTarget::Value) => kv.value[..].cmp(match &union {
            Some(TargetUnion::Value(value)) => &value[..],
            _ => &[],
        }),
        Ok(CompareTarget::Create) => kv.create_revision.cmp(&match union {
            Some(TargetUnion::CreateRevision(v)) => v,
            _ => 0,
        }),
        Ok(CompareTarget::Mod) => kv.mod_revision.cmp(&match union {
            Some(TargetUnion::ModRevision(v)) => v,
            _ => 0,
        }),
        Ok(CompareTarget::Version) => kv.version.cmp(&match union {
            Some(TargetUnion::Version(v)) => v,
            _ => 0,
        }),
        Ok(CompareTarget::Lease) => kv.lease.cmp(&match union {
            Some(TargetUnion::Lease(v)) => v,
            _ => 0,
        }),
        Err(_) => std::cmp::Ordering::Equal,
    };
    match CompareResult::try_from(compare.result) {
        Ok(CompareResult::Equal) => ordering.is_eq(),
        Ok(CompareResult::NotEqual) => ordering.is_ne(),
        Ok(CompareResult::Greater) => ordering.is_gt(),
        Ok(CompareResult::Less) => ordering.is_lt(),
        Err(_) => true,
    }
}

fn compare_holds(keyspace: &Keyspace, compare: &Compare) -> bool {
    let selected: Vec<&KeyValue> = keyspace
        .values()
        .filter(|kv| selects(&compare.key, &compare.range_end, &kv.key))
        .collect();
    if selected.is_empty() {
        return compare.target != CompareTarget::Value as i32
            && compare_one(compare, &KeyValue::default());
    }
    selected.into_iter().all(|kv| compare_one(compare, kv))
}

/// The range pipeline over one keyspace, written out step by step.
pub fn range_over(
    keyspace: &Keyspace,
    request: &RangeRequest,
    header_revision: i64,
) -> RangeResponse {
    let all: Vec<KeyValue> = keyspace
        .values()
        .filter(|kv| selects(&request.key, &request.range_end, &kv.key))
        .cloned()
        .collect();
    let count = all.len() as i64;
    if request.count_only {
        return RangeResponse {
            header: head(header_revision),
            kvs: vec![],
            more: false,
            count,
        };
    }
    let filtered = request.min_mod_revision != 0
        || request.max_mod_revision != 0
        || request.min_create_revision != 0
        || request.max_create_revision != 0;
    let mut kvs = all;
    if request.sort_order == 0 && !filtered && request.limit > 0 {
        kvs.truncate(request.limit as usize + 1);
    }
    kvs.retain(|kv| {
        let outside =
            |value: i64, min: i64, max: i64| (min != 0 && value < min) || (max != 0 && value > max);
        !outside(
            kv.mod_revision,
            request.min_mod_revision,
            request.max_mod_revision,
        ) && !outside(
            kv.create_revision,
            request.min_create_revision,
            request.max_create_revision,
        )
    });
    let order = if request.sort_order == 0 && request.sort_target != 0 {
        1
    } else {
        request.sort_order
    };
    if order != 0 {
        let key_of = |kv: &KeyValue| -> (Vec<u8>, i64) {
            match request.sort_target {
                0 => (kv.key.to_vec(), 0),
                1 => (vec![], kv.version),
                2 => (vec![], kv.create_revision),
                3 => (vec![], kv.mod_revision),
                _ => (kv.value.to_vec(), 0),
            }
        };
        kvs.sort_by_key(key_of);
        if order == 2 {
            // Descending, ties kept in key order: sort by target descending with a stable sort.
            kvs.sort_by_key(|kv| std::cmp::Reverse(key_of(kv)));
        }
    }
    let mut more = false;
    if request.limit > 0 && kvs.len() > request.limit as usize {
        kvs.truncate(request.limit as usize);
        more = true;
    }
    if request.keys_only {
        for kv in &mut kvs {
            kv.value = Bytes::new();
        }
    }
    RangeResponse {
        header: head(header_revision),
        kvs,
        more,
        count,
    }
}

impl Model {
    pub fn new() -> Model {
        Model {
            states: vec![Keyspace::new()],
            events: vec![vec![]],
            compact: 0,
            leases: BTreeMap::new(),
        }
    }

    pub fn revision(&self) -> i64 {
        self.states.len() as i64
    }

    fn current(&self) -> &Keyspace {
        &self.states[self.states.len() - 1]
    }

    pub fn key_count(&self) -> usize {
        self.current().len()
    }

    fn begin(&self) -> Work {
        Work {
            keyspace: self.current().clone(),
            revision: self.revision() + 1,
            events: vec![],
        }
    }

    fn finish(&mut self, work: Work, events: &mut Vec<Event>) {
        if !work.events.is_empty() {
            self.states.push(work.keyspace);
            events.extend(work.events.iter().cloned());
            self.events.push(work.events);
        }
    }

    pub fn range(&self, request: &RangeRequest) -> Result<RangeResponse, EtcdError> {
        validate_range(request)?;
        let revision = match request.revision {
            r if r > self.revision() => return Err(errors::FUTURE_REV),
            r if r <= 0 => self.revision(),
            r if r < self.compact => return Err(errors::COMPACTED),
            r => r,
        };
        Ok(range_over(
            &self.states[revision as usize - 1],
            request,
            self.revision(),
        ))
    }

    pub fn events(
        &self,
        key: &[u8],
        range_end: &[u8],
        from: i64,
        to: i64,
    ) -> Result<Vec<Event>, EtcdError> {
        if from > 0 && from <= self.compact {
            return Err(errors::COMPACTED);
        }
        let from = from.max(self.compact + 1);
        let to = to.min(self.revision());
        Ok((from..=to)
            .flat_map(|revision| self.events[revision as usize - 1].iter())
            .filter(|event| {
                selects(
                    key,
                    range_end,
                    &event
                        .kv
                        .as_ref()
                        .map(|kv| kv.key.clone())
                        .unwrap_or_default(),
                )
            })
            .cloned()
            .collect())
    }

    pub fn lease_keys(&self, id: i64) -> Option<Vec<Bytes>> {
        self.leases.contains_key(&id).then(|| {
            self.current()
                .values()
                .filter(|kv| kv.lease == id)
                .map(|kv| kv.key.clone())
                .collect()
        })
    }

    pub fn leases(&self) -> Vec<(i64, i64)> {
        self.leases.iter().map(|(id, ttl)| (*id, *ttl)).collect()
    }

    pub fn apply(&mut self, command: &RaftCommand) -> (RaftResponse, Vec<Event>) {
        let mut events = vec![];
        let result = match &command.command {
            Some(Command::Put(put)) => self.put(put, &mut events).map(Response::Put),
            Some(Command::DeleteRange(delete)) => {
                self.delete(delete, &mut events).map(Response::DeleteRange)
            }
            Some(Command::Txn(txn)) => self.txn(txn, &mut events).map(Response::Txn),
            Some(Command::Compaction(compaction)) => {
                if compaction.revision <= self.compact {
                    Err(errors::COMPACTED)
                } else if compaction.revision > self.revision() {
                    Err(errors::FUTURE_REV)
                } else {
                    self.compact = compaction.revision;
                    Ok(Response::Compaction(CompactionResponse {
                        header: head(self.revision()),
                    }))
                }
            }
            Some(Command::LeaseGrant(grant)) => {
                if grant.id == 0 {
                    Err(errors::LEASE_NOT_FOUND)
                } else if grant.ttl > MAX_LEASE_TTL {
                    Err(errors::LEASE_TTL_TOO_LARGE)
                } else if let std::collections::btree_map::Entry::Vacant(slot) =
                    self.leases.entry(grant.id)
                {
                    slot.insert(grant.ttl);
                    Ok(Response::LeaseGrant(LeaseGrantResponse {
                        header: head(self.revision()),
                        id: grant.id,
                        ttl: grant.ttl,
                        error: String::new(),
                    }))
                } else {
                    Err(errors::LEASE_EXIST)
                }
            }
            Some(Command::LeaseRevoke(revoke)) => {
                if self.revoke(revoke.id, &mut events) {
                    Ok(Response::LeaseRevoke(LeaseRevokeResponse {
                        header: head(self.revision()),
                    }))
                } else {
                    Err(errors::LEASE_NOT_FOUND)
                }
            }
            Some(Command::LeaseExpire(expire)) => {
                let ids = expire
                    .ids
                    .iter()
                    .copied()
                    .filter(|id| self.revoke(*id, &mut events))
                    .collect();
                Ok(Response::LeaseExpire(LeaseExpireResponse { ids }))
            }
            other => panic!("the model does not generate {other:?}"),
        };
        match result {
            Ok(response) => (
                RaftResponse {
                    response: Some(response),
                },
                events,
            ),
            Err(error) => (error_response(error), vec![]),
        }
    }

    fn revoke(&mut self, id: i64, events: &mut Vec<Event>) -> bool {
        let Some(keys) = self.lease_keys(id) else {
            return false;
        };
        self.leases.remove(&id);
        let mut work = self.begin();
        for key in keys {
            work.delete(&key);
        }
        self.finish(work, events);
        true
    }

    fn put(&mut self, put: &PutRequest, events: &mut Vec<Event>) -> Result<PutResponse, EtcdError> {
        validate_put(put)?;
        if put.lease != 0 && !self.leases.contains_key(&put.lease) {
            return Err(errors::LEASE_NOT_FOUND);
        }
        if (put.ignore_value || put.ignore_lease) && !self.current().contains_key(&put.key) {
            return Err(errors::KEY_NOT_FOUND);
        }
        let mut work = self.begin();
        let response = Self::put_in(&mut work, put);
        self.finish(work, events);
        Ok(response)
    }

    fn put_in(work: &mut Work, put: &PutRequest) -> PutResponse {
        let existing = work.keyspace.get(&put.key).cloned().unwrap_or_default();
        let value = if put.ignore_value {
            existing.value
        } else {
            put.value.clone()
        };
        let lease = if put.ignore_lease {
            existing.lease
        } else {
            put.lease
        };
        let previous = work.put(&put.key, value, lease);
        PutResponse {
            header: head(work.revision),
            prev_kv: if put.prev_kv { previous } else { None },
        }
    }

    fn delete(
        &mut self,
        delete: &DeleteRangeRequest,
        events: &mut Vec<Event>,
    ) -> Result<DeleteRangeResponse, EtcdError> {
        if delete.key.is_empty() {
            return Err(errors::EMPTY_KEY);
        }
        let mut work = self.begin();
        let response = Self::delete_in(&mut work, delete);
        self.finish(work, events);
        Ok(response)
    }

    fn delete_in(work: &mut Work, delete: &DeleteRangeRequest) -> DeleteRangeResponse {
        let doomed: Vec<Bytes> = work
            .keyspace
            .keys()
            .filter(|key| selects(&delete.key, &delete.range_end, key))
            .cloned()
            .collect();
        let prev_kvs: Vec<KeyValue> = doomed.iter().filter_map(|key| work.delete(key)).collect();
        DeleteRangeResponse {
            header: head(work.now()),
            deleted: doomed.len() as i64,
            prev_kvs: if delete.prev_kv { prev_kvs } else { vec![] },
        }
    }

    fn chosen<'t>(&self, txn: &'t TxnRequest) -> (bool, &'t [RequestOp]) {
        let succeeded = txn
            .compare
            .iter()
            .all(|compare| compare_holds(self.current(), compare));
        (
            succeeded,
            if succeeded {
                &txn.success
            } else {
                &txn.failure
            },
        )
    }

    /// Checks every put and range of the path the compares (on the state before the txn) choose.
    fn check(&self, txn: &TxnRequest) -> Result<(), EtcdError> {
        let (_, ops) = self.chosen(txn);
        for op in ops {
            match &op.request {
                Some(request_op::Request::RequestPut(put)) => {
                    if (put.ignore_value || put.ignore_lease)
                        && !self.current().contains_key(&put.key)
                    {
                        return Err(errors::KEY_NOT_FOUND);
                    }
                    if put.lease != 0 && !self.leases.contains_key(&put.lease) {
                        return Err(errors::LEASE_NOT_FOUND);
                    }
                }
                Some(request_op::Request::RequestTxn(nested)) => self.check(nested)?,
                _ => {}
            }
        }
        Ok(())
    }

    fn check_ranges(&self, txn: &TxnRequest) -> Result<(), EtcdError> {
        let (_, ops) = self.chosen(txn);
        for op in ops {
            match &op.request {
                Some(request_op::Request::RequestRange(range))
                    if range.revision > self.revision() =>
                {
                    return Err(errors::FUTURE_REV);
                }
                Some(request_op::Request::RequestRange(range))
                    if range.revision != 0
                        && range.revision < (if self.compact == 0 { -1 } else { self.compact }) =>
                {
                    return Err(errors::COMPACTED);
                }
                Some(request_op::Request::RequestTxn(nested)) => self.check_ranges(nested)?,
                _ => {}
            }
        }
        Ok(())
    }

    fn txn(&mut self, txn: &TxnRequest, events: &mut Vec<Event>) -> Result<TxnResponse, EtcdError> {
        validate_txn(txn, usize::MAX)?;
        self.check(txn)?;
        self.check_ranges(txn)?;
        let mut work = self.begin();
        let mut response = self.run(&mut work, txn);
        self.finish(work, events);
        response.header = head(self.revision());
        Ok(response)
    }

    fn run(&self, work: &mut Work, txn: &TxnRequest) -> TxnResponse {
        // Compares of nested txns see the state before the whole txn, so they use `self`.
        let (succeeded, ops) = self.chosen(txn);
        let mut responses = vec![];
        for op in ops {
            let response = match &op.request {
                Some(request_op::Request::RequestRange(range)) => {
                    let now = work.now();
                    let keyspace = if range.revision > 0 {
                        self.states[range.revision as usize - 1].clone()
                    } else {
                        work.keyspace.clone()
                    };
                    response_op::Response::ResponseRange(range_over(&keyspace, range, now))
                }
                Some(request_op::Request::RequestPut(put)) => {
                    response_op::Response::ResponsePut(Self::put_in(work, put))
                }
                Some(request_op::Request::RequestDeleteRange(delete)) => {
                    response_op::Response::ResponseDeleteRange(Self::delete_in(work, delete))
                }
                Some(request_op::Request::RequestTxn(nested)) => {
                    let mut nested_response = self.run(work, nested);
                    nested_response.header = Some(ResponseHeader::default());
                    response_op::Response::ResponseTxn(nested_response)
                }
                None => unreachable!("validation refuses empty ops"),
            };
            responses.push(ResponseOp {
                response: Some(response),
            });
        }
        TxnResponse {
            header: None,
            succeeded,
            responses,
        }
    }
}
