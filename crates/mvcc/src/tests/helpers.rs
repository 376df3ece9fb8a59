//! Builders for commands and short accessors for answers.

use bytes::Bytes;
use etcd_proto::errors::EtcdError;
use etcd_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use etcd_proto::etcdserverpb::{
    AlarmRequest, AlarmType, CompactionRequest, Compare, DeleteRangeRequest, DeleteRangeResponse,
    LeaseGrantRequest, LeaseRevokeRequest, PutRequest, PutResponse, RangeRequest, RequestOp,
    TxnRequest, TxnResponse, alarm_request::AlarmAction, request_op,
};
use etcd_proto::raftcmd::{
    LeaseExpire, RaftCommand, raft_command::Command, raft_response::Response,
};

use crate::{Applied, Store};

pub fn b(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

pub fn put(key: &str, value: &str) -> PutRequest {
    PutRequest {
        key: b(key),
        value: b(value),
        ..Default::default()
    }
}

pub fn put_lease(key: &str, value: &str, lease: i64) -> PutRequest {
    PutRequest {
        lease,
        ..put(key, value)
    }
}

pub fn delete(key: &str, range_end: &str) -> DeleteRangeRequest {
    DeleteRangeRequest {
        key: b(key),
        range_end: b(range_end),
        prev_kv: true,
    }
}

pub fn get(key: &str, range_end: &str) -> RangeRequest {
    RangeRequest {
        key: b(key),
        range_end: b(range_end),
        ..Default::default()
    }
}

pub fn op_put(request: PutRequest) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(request)),
    }
}

pub fn op_delete(request: DeleteRangeRequest) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestDeleteRange(request)),
    }
}

pub fn op_get(request: RangeRequest) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestRange(request)),
    }
}

pub fn op_txn(request: TxnRequest) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestTxn(request)),
    }
}

pub fn compare(
    key: &str,
    target: CompareTarget,
    result: CompareResult,
    union: TargetUnion,
) -> Compare {
    Compare {
        result: result as i32,
        target: target as i32,
        key: b(key),
        range_end: Bytes::new(),
        target_union: Some(union),
    }
}

pub fn txn(compare: Vec<Compare>, success: Vec<RequestOp>, failure: Vec<RequestOp>) -> TxnRequest {
    TxnRequest {
        compare,
        success,
        failure,
    }
}

pub fn cmd(command: Command) -> RaftCommand {
    RaftCommand {
        command: Some(command),
    }
}

pub fn grant(id: i64, ttl: i64) -> RaftCommand {
    cmd(Command::LeaseGrant(LeaseGrantRequest { ttl, id }))
}

pub fn revoke(id: i64) -> RaftCommand {
    cmd(Command::LeaseRevoke(LeaseRevokeRequest { id }))
}

pub fn expire(ids: &[i64]) -> RaftCommand {
    cmd(Command::LeaseExpire(LeaseExpire { ids: ids.to_vec() }))
}

pub fn compact(revision: i64) -> RaftCommand {
    cmd(Command::Compaction(CompactionRequest {
        revision,
        physical: false,
    }))
}

pub fn alarm(action: AlarmAction, member_id: u64, alarm: AlarmType) -> RaftCommand {
    cmd(Command::Alarm(AlarmRequest {
        action: action as i32,
        member_id,
        alarm: alarm as i32,
    }))
}

/// The error of a refused command, if it was refused.
pub fn refused(applied: &Applied) -> Option<EtcdError> {
    match &applied.response.response {
        Some(Response::Error(error)) => {
            let known = EtcdError::from_message(&error.message);
            assert!(known.is_some(), "unknown error text {:?}", error.message);
            known.inspect(|known| assert_eq!(known.code as i32, error.code))
        }
        _ => None,
    }
}

pub fn do_put(store: &mut Store, request: PutRequest) -> Result<PutResponse, EtcdError> {
    let applied = store.apply(&cmd(Command::Put(request)));
    match applied.response.response {
        Some(Response::Put(response)) => Ok(response),
        _ => Err(refused(&applied).unwrap_or_else(|| panic!("unexpected {:?}", applied.response))),
    }
}

pub fn do_delete(
    store: &mut Store,
    request: DeleteRangeRequest,
) -> Result<DeleteRangeResponse, EtcdError> {
    let applied = store.apply(&cmd(Command::DeleteRange(request)));
    match applied.response.response {
        Some(Response::DeleteRange(response)) => Ok(response),
        _ => Err(refused(&applied).unwrap_or_else(|| panic!("unexpected {:?}", applied.response))),
    }
}

pub fn do_txn(store: &mut Store, request: TxnRequest) -> Result<TxnResponse, EtcdError> {
    let applied = store.apply(&cmd(Command::Txn(request)));
    match applied.response.response {
        Some(Response::Txn(response)) => Ok(response),
        _ => Err(refused(&applied).unwrap_or_else(|| panic!("unexpected {:?}", applied.response))),
    }
}

/// Keys and values of a range at the current revision, as strings.
pub fn pairs(store: &Store, key: &str, range_end: &str) -> Vec<(String, String)> {
    store
        .range(&get(key, range_end))
        .expect("range")
        .kvs
        .iter()
        .map(|kv| {
            (
                String::from_utf8_lossy(&kv.key).into_owned(),
                String::from_utf8_lossy(&kv.value).into_owned(),
            )
        })
        .collect()
}

/// Checks every derived structure of the store against the key histories it is derived from.
pub fn check_invariants(store: &Store) {
    use std::collections::{BTreeMap, BTreeSet};
    let mut live = 0;
    let mut compactable = BTreeSet::new();
    let mut attached: BTreeMap<i64, BTreeSet<Bytes>> = BTreeMap::new();
    for (key, history) in &store.keys {
        assert!(!history.entries().is_empty(), "empty history for {key:?}");
        assert!(
            history
                .entries()
                .windows(2)
                .all(|pair| (pair[0].revision, pair[0].sub) < (pair[1].revision, pair[1].sub)),
            "versions out of order for {key:?}"
        );
        assert!(
            history
                .entries()
                .iter()
                .all(|entry| entry.revision <= store.revision())
        );
        if history.is_compactable() {
            compactable.insert(key.clone());
        }
        if let Some(current) = history.latest_live() {
            live += 1;
            if current.lease != 0 {
                attached
                    .entry(current.lease)
                    .or_default()
                    .insert(key.clone());
            }
        }
    }
    let mut changes: Vec<(i64, u32, Bytes)> = store
        .keys
        .iter()
        .flat_map(|(key, history)| {
            history
                .entries()
                .iter()
                .filter(|entry| entry.revision > store.compact_revision())
                .map(|entry| (entry.revision, entry.sub, key.clone()))
        })
        .collect();
    changes.sort();
    let logged: Vec<(i64, u32, Bytes)> = store
        .changes
        .iter()
        .map(|change| (change.revision, change.sub, change.key.clone()))
        .collect();
    assert_eq!(logged, changes, "revision log");
    assert_eq!(store.live_keys, live, "live key count");
    assert_eq!(store.compactable, compactable, "compactable set");
    for (id, keys) in &attached {
        assert!(
            store.leases.contains_key(id),
            "key attached to unknown lease {id}"
        );
        assert_eq!(&store.leases[id].keys, keys, "keys of lease {id}");
    }
    for (id, lease) in &store.leases {
        if !attached.contains_key(id) {
            assert!(lease.keys.is_empty(), "lease {id} lists detached keys");
        }
    }
}
