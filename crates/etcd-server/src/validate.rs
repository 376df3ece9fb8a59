//! Request checks done before proposing, so that a bad request changes nothing and costs no
//! log entry. The checks themselves are mvcc's (apply runs them again); this module adds what
//! only the server needs: read classification and etcd's key-range matching for watchers.

use etcd_proto::etcdserverpb::TxnRequest;
use etcd_proto::etcdserverpb::request_op::Request;

pub use mvcc::{
    is_read_only_txn, validate_delete_range, validate_put, validate_range, validate_txn,
};

/// True when every range of a read-only txn (nested ones included) asked for a serializable
/// read, so the txn can be answered from local state without a read barrier.
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

    #[test]
    fn range_conventions() {
        assert!(key_in_range(b"a", b"a", b""));
        assert!(!key_in_range(b"ab", b"a", b""));
        assert!(key_in_range(b"zzz", b"a", b"\0"));
        assert!(key_in_range(b"ab", b"a", b"b"));
        assert!(!key_in_range(b"b", b"a", b"b"));
    }
}
