//! Request checks done before proposing, so that a bad request changes nothing and costs no
//! log entry. Messages are etcd's exact ones.

use std::collections::HashSet;

use etcd_proto::errors::{self, EtcdError};
use etcd_proto::etcdserverpb::request_op::Request;
use etcd_proto::etcdserverpb::{
    DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest, range_request,
};

pub fn range(request: &RangeRequest) -> Result<(), EtcdError> {
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

pub fn put(request: &PutRequest) -> Result<(), EtcdError> {
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

pub fn delete_range(request: &DeleteRangeRequest) -> Result<(), EtcdError> {
    if request.key.is_empty() {
        return Err(errors::EMPTY_KEY);
    }
    Ok(())
}

/// Checks sizes, every op, and etcd's duplicate-key rule (per branch, nested txns included).
pub fn txn(request: &TxnRequest, max_ops: usize) -> Result<(), EtcdError> {
    let most = request
        .compare
        .len()
        .max(request.success.len())
        .max(request.failure.len());
    if most > max_ops {
        return Err(errors::TOO_MANY_OPS);
    }
    for compare in &request.compare {
        if compare.key.is_empty() {
            return Err(errors::EMPTY_KEY);
        }
    }
    for op in request.success.iter().chain(&request.failure) {
        match &op.request {
            None => return Err(errors::KEY_NOT_FOUND),
            Some(Request::RequestRange(range_request)) => range(range_request)?,
            Some(Request::RequestPut(put_request)) => put(put_request)?,
            Some(Request::RequestDeleteRange(delete)) => delete_range(delete)?,
            Some(Request::RequestTxn(nested)) => txn(nested, max_ops)?,
        }
    }
    branch_writes(&request.success)?;
    branch_writes(&request.failure)?;
    Ok(())
}

/// True when the txn (nested ones included) contains no write at all.
pub fn txn_is_read_only(request: &TxnRequest) -> bool {
    request
        .success
        .iter()
        .chain(&request.failure)
        .all(|op| match &op.request {
            Some(Request::RequestRange(_)) => true,
            Some(Request::RequestTxn(nested)) => txn_is_read_only(nested),
            _ => false,
        })
}

/// True when every range of a read-only txn asked for a serializable read.
pub fn txn_is_serializable(request: &TxnRequest) -> bool {
    request
        .success
        .iter()
        .chain(&request.failure)
        .all(|op| match &op.request {
            Some(Request::RequestRange(range_request)) => range_request.serializable,
            Some(Request::RequestTxn(nested)) => txn_is_serializable(nested),
            _ => false,
        })
}

type Interval = (Vec<u8>, Vec<u8>);

/// Keys put and intervals deleted by one branch; fails on a repeated put or a put inside a
/// deleted interval. A nested txn's two branches may write the same key (they are exclusive).
fn branch_writes(ops: &[RequestOp]) -> Result<(Vec<Interval>, HashSet<Vec<u8>>), EtcdError> {
    let mut deletes: Vec<Interval> = Vec::new();
    let mut puts: HashSet<Vec<u8>> = HashSet::new();
    for op in ops {
        match &op.request {
            Some(Request::RequestDeleteRange(delete)) => {
                deletes.push((delete.key.to_vec(), delete.range_end.to_vec()));
            }
            Some(Request::RequestPut(put_request)) if !puts.insert(put_request.key.to_vec()) => {
                return Err(errors::DUPLICATE_KEY);
            }
            _ => {}
        }
    }
    for op in ops {
        if let Some(Request::RequestTxn(nested)) = &op.request {
            let (success_deletes, success_puts) = branch_writes(&nested.success)?;
            let (failure_deletes, failure_puts) = branch_writes(&nested.failure)?;
            let nested_puts: HashSet<Vec<u8>> =
                success_puts.union(&failure_puts).cloned().collect();
            if nested_puts.iter().any(|key| puts.contains(key)) {
                return Err(errors::DUPLICATE_KEY);
            }
            puts.extend(nested_puts);
            deletes.extend(success_deletes);
            deletes.extend(failure_deletes);
        }
    }
    for key in &puts {
        if deletes
            .iter()
            .any(|(start, end)| key_in_range(key, start, end))
        {
            return Err(errors::DUPLICATE_KEY);
        }
    }
    Ok((deletes, puts))
}

/// etcd's range convention: empty `end` = the single key `start`; `end == "\0"` = every key
/// from `start` on; otherwise the half-open interval `[start, end)` in bytewise order.
pub fn key_in_range(key: &[u8], start: &[u8], end: &[u8]) -> bool {
    if end.is_empty() {
        return key == start;
    }
    if end == [0] {
        return key >= start;
    }
    key >= start && key < end
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn put_op(key: &'static str) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestPut(PutRequest {
                key: Bytes::from(key),
                ..PutRequest::default()
            })),
        }
    }

    fn delete_op(key: &'static str, end: &'static str) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
                key: Bytes::from(key),
                range_end: Bytes::from(end),
                prev_kv: false,
            })),
        }
    }

    #[test]
    fn duplicate_puts_and_overlapping_deletes_are_refused() {
        let twice = TxnRequest {
            success: vec![put_op("a"), put_op("a")],
            ..TxnRequest::default()
        };
        assert_eq!(txn(&twice, 128), Err(errors::DUPLICATE_KEY));
        let overlap = TxnRequest {
            success: vec![put_op("b"), delete_op("a", "c")],
            ..TxnRequest::default()
        };
        assert_eq!(txn(&overlap, 128), Err(errors::DUPLICATE_KEY));
        let separate_branches = TxnRequest {
            success: vec![put_op("a")],
            failure: vec![put_op("a")],
            ..TxnRequest::default()
        };
        assert_eq!(txn(&separate_branches, 128), Ok(()));
        let nested_exclusive = TxnRequest {
            success: vec![RequestOp {
                request: Some(Request::RequestTxn(separate_branches.clone())),
            }],
            ..TxnRequest::default()
        };
        assert_eq!(txn(&nested_exclusive, 128), Ok(()));
        let nested_conflict = TxnRequest {
            success: vec![
                put_op("a"),
                RequestOp {
                    request: Some(Request::RequestTxn(separate_branches)),
                },
            ],
            ..TxnRequest::default()
        };
        assert_eq!(txn(&nested_conflict, 128), Err(errors::DUPLICATE_KEY));
    }

    #[test]
    fn limits_and_empty_ops() {
        let many = TxnRequest {
            success: (0..3).map(|_| delete_op("a", "")).collect(),
            ..TxnRequest::default()
        };
        assert_eq!(txn(&many, 2), Err(errors::TOO_MANY_OPS));
        let empty_op = TxnRequest {
            success: vec![RequestOp { request: None }],
            ..TxnRequest::default()
        };
        assert_eq!(txn(&empty_op, 128), Err(errors::KEY_NOT_FOUND));
        let ignore_value = PutRequest {
            key: Bytes::from("k"),
            value: Bytes::from("v"),
            ignore_value: true,
            ..PutRequest::default()
        };
        assert_eq!(put(&ignore_value), Err(errors::VALUE_PROVIDED));
        let bad_sort = RangeRequest {
            key: Bytes::from("k"),
            sort_order: 9,
            ..RangeRequest::default()
        };
        assert_eq!(range(&bad_sort), Err(errors::INVALID_SORT_OPTION));
    }

    #[test]
    fn range_conventions() {
        assert!(key_in_range(b"a", b"a", b""));
        assert!(!key_in_range(b"ab", b"a", b""));
        assert!(key_in_range(b"zzz", b"a", b"\0"));
        assert!(key_in_range(b"ab", b"a", b"b"));
        assert!(!key_in_range(b"b", b"a", b"b"));
    }
}
