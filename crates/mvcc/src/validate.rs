//! Checks that need no state: what etcd's gRPC layer refuses before proposing.
//! The server calls them before proposing; apply runs them again (without the configurable op limit)
//! so a malformed command in the log is answered with the same error and changes nothing.

use std::collections::BTreeSet;

use etcd_proto::errors::{self, EtcdError};
use etcd_proto::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest, range_request,
    request_op,
};

use crate::keyspace::in_range;

/// Range checks: key present, sort order and target valid enum values.
pub fn validate_range(request: &RangeRequest) -> Result<(), EtcdError> {
    if request.key.is_empty() {
        return Err(errors::EMPTY_KEY);
    }
    if range_request::SortOrder::try_from(request.sort_order).is_err()
        || range_request::SortTarget::try_from(request.sort_target).is_err()
    {
        return Err(errors::INVALID_SORT_OPTION);
    }
    Ok(())
}

/// Put checks: key present; `ignore_value` only with an empty value; `ignore_lease` only with lease 0.
pub fn validate_put(request: &PutRequest) -> Result<(), EtcdError> {
    if request.key.is_empty() {
        return Err(errors::EMPTY_KEY);
    }
    if request.ignore_value && !request.value.is_empty() {
        return Err(errors::VALUE_PROVIDED);
    }
    if request.ignore_lease && request.lease != 0 {
        return Err(errors::LEASE_PROVIDED);
    }
    Ok(())
}

/// DeleteRange checks: key present.
pub fn validate_delete_range(request: &DeleteRangeRequest) -> Result<(), EtcdError> {
    if request.key.is_empty() {
        return Err(errors::EMPTY_KEY);
    }
    Ok(())
}

/// Txn checks, in etcd's order: the op limit (`max(len(compare), len(success), len(failure)) > max_txn_ops`,
/// nested txns included), empty compare keys, every op's own checks (an empty RequestOp is
/// `KEY_NOT_FOUND`, as etcd answers), then the duplicate-key rule on each branch.
pub fn validate_txn(request: &TxnRequest, max_txn_ops: usize) -> Result<(), EtcdError> {
    check_txn_request(request, max_txn_ops)?;
    check_intervals(&request.success)?;
    check_intervals(&request.failure)?;
    Ok(())
}

/// Whether a txn can be answered without the log: every op of both branches is a range or a
/// nested txn that is itself read-only.
pub fn is_read_only_txn(request: &TxnRequest) -> bool {
    request
        .success
        .iter()
        .chain(&request.failure)
        .all(|op| match &op.request {
            Some(request_op::Request::RequestRange(_)) => true,
            Some(request_op::Request::RequestTxn(nested)) => is_read_only_txn(nested),
            _ => false,
        })
}

fn check_txn_request(request: &TxnRequest, max_txn_ops: usize) -> Result<(), EtcdError> {
    let ops = request
        .compare
        .len()
        .max(request.success.len())
        .max(request.failure.len());
    if ops > max_txn_ops {
        return Err(errors::TOO_MANY_OPS);
    }
    if request
        .compare
        .iter()
        .any(|compare: &Compare| compare.key.is_empty())
    {
        return Err(errors::EMPTY_KEY);
    }
    for op in request.success.iter().chain(&request.failure) {
        check_request_op(op, max_txn_ops)?;
    }
    Ok(())
}

fn check_request_op(op: &RequestOp, max_txn_ops: usize) -> Result<(), EtcdError> {
    match &op.request {
        Some(request_op::Request::RequestRange(range)) => validate_range(range),
        Some(request_op::Request::RequestPut(put)) => validate_put(put),
        Some(request_op::Request::RequestDeleteRange(delete)) => validate_delete_range(delete),
        Some(request_op::Request::RequestTxn(nested)) => check_txn_request(nested, max_txn_ops),
        None => Err(errors::KEY_NOT_FOUND),
    }
}

/// A DeleteRange's selection as (key, range_end) with etcd's range conventions.
type DeleteInterval<'a> = (&'a [u8], &'a [u8]);

/// etcd's `checkIntervals`: within one branch no key may be put twice and no put may fall inside a
/// delete interval, counting puts and deletes of nested txns (whose then/else branches are exclusive,
/// so they may put the same key). The walk order is etcd's: this level's deletes first, then nested
/// txns in order (each nested put is checked against the deletes seen so far), then this level's puts.
/// Unlike etcd, a delete with `range_end = "\0"` counts as "to the end" here (etcd's interval tree
/// treats it as an empty interval, which lets a put overlap a delete-to-the-end unnoticed).
fn check_intervals(
    ops: &[RequestOp],
) -> Result<(BTreeSet<&[u8]>, Vec<DeleteInterval<'_>>), EtcdError> {
    let mut deletes: Vec<DeleteInterval<'_>> = ops
        .iter()
        .filter_map(|op| match &op.request {
            Some(request_op::Request::RequestDeleteRange(delete)) => {
                Some((&delete.key[..], &delete.range_end[..]))
            }
            _ => None,
        })
        .collect();
    let overlaps = |deletes: &[DeleteInterval<'_>], key: &[u8]| {
        deletes.iter().any(|(start, end)| in_range(start, end, key))
    };

    let mut puts: BTreeSet<&[u8]> = BTreeSet::new();
    for op in ops {
        let Some(request_op::Request::RequestTxn(nested)) = &op.request else {
            continue;
        };
        let (puts_then, deletes_then) = check_intervals(&nested.success)?;
        let (puts_else, deletes_else) = check_intervals(&nested.failure)?;
        for key in &puts_then {
            if puts.contains(key) || overlaps(&deletes, key) {
                return Err(errors::DUPLICATE_KEY);
            }
            puts.insert(key);
        }
        for key in &puts_else {
            if (puts.contains(key) && !puts_then.contains(key)) || overlaps(&deletes, key) {
                return Err(errors::DUPLICATE_KEY);
            }
            puts.insert(key);
        }
        deletes.extend(deletes_then);
        deletes.extend(deletes_else);
    }

    for op in ops {
        let Some(request_op::Request::RequestPut(put)) = &op.request else {
            continue;
        };
        let key = &put.key[..];
        if puts.contains(key) || overlaps(&deletes, key) {
            return Err(errors::DUPLICATE_KEY);
        }
        puts.insert(key);
    }
    Ok((puts, deletes))
}
