use bytes::Bytes;
use etcd_proto::etcdserverpb::{
    CompactionRequest, DeleteRangeRequest, LeaseGrantRequest, PutRequest,
};

use super::*;

fn apply(store: &mut mvcc::Store, command: Command) {
    store.apply(&RaftCommand {
        command: Some(command),
    });
}

fn put(key: &str, value_len: usize) -> Command {
    Command::Put(PutRequest {
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: Bytes::from(vec![b'v'; value_len]),
        ..PutRequest::default()
    })
}

fn quota(bytes: i64) -> SpaceQuota {
    SpaceQuota::new(bytes, ::metrics::Counter::noop())
}

#[test]
fn zero_quota_means_etcds_default() {
    assert_eq!(quota(0).quota_bytes(), 2 * 1024 * 1024 * 1024);
    assert_eq!(quota(4096).quota_bytes(), 4096);
    assert_eq!(
        quota(-1).quota_bytes(),
        u64::MAX,
        "negative: no quota, as in etcd"
    );
}

#[test]
fn only_writes_that_add_data_cost_anything() {
    assert_eq!(cost_of(&put("k", 10)), 11 + VERSION_OVERHEAD_BYTES);
    assert_eq!(
        cost_of(&Command::LeaseGrant(LeaseGrantRequest { ttl: 5, id: 0 })),
        LEASE_COST_BYTES
    );
    assert_eq!(
        cost_of(&Command::DeleteRange(DeleteRangeRequest::default())),
        0
    );
    let put_op = |len| RequestOp {
        request: Some(Op::RequestPut(PutRequest {
            key: Bytes::from_static(b"k"),
            value: Bytes::from(vec![0; len]),
            ..PutRequest::default()
        })),
    };
    let txn = TxnRequest {
        success: vec![put_op(10), put_op(10)],
        failure: vec![RequestOp {
            request: Some(Op::RequestTxn(TxnRequest {
                success: vec![put_op(100)],
                ..TxnRequest::default()
            })),
        }],
        ..TxnRequest::default()
    };
    assert_eq!(
        cost_of(&Command::Txn(txn)),
        101 + VERSION_OVERHEAD_BYTES,
        "the larger branch, nested puts included"
    );
    let deletes_only = TxnRequest {
        success: vec![RequestOp {
            request: Some(Op::RequestDeleteRange(DeleteRangeRequest::default())),
        }],
        ..TxnRequest::default()
    };
    assert_eq!(cost_of(&Command::Txn(deletes_only)), 0);
}

#[test]
fn logical_size_follows_writes_incrementally_and_shrinks_after_compaction() {
    let meter = quota(1 << 20);
    let mut store = mvcc::Store::new();
    assert_eq!(meter.measure(&store), 0);
    for _ in 0..10 {
        apply(&mut store, put("/a", 100));
    }
    let per_version = 2 + 100 + VERSION_OVERHEAD_BYTES;
    assert_eq!(meter.measure(&store), 10 * per_version);
    apply(&mut store, put("/b", 50));
    assert_eq!(
        meter.measure(&store),
        10 * per_version + 2 + 50 + VERSION_OVERHEAD_BYTES
    );
    let revision = store.revision();
    apply(
        &mut store,
        Command::Compaction(CompactionRequest {
            revision,
            physical: true,
        }),
    );
    assert_eq!(
        meter.measure(&store),
        per_version + 2 + 50 + VERSION_OVERHEAD_BYTES,
        "only the newest version of each key is left"
    );
    assert_eq!(
        meter.last_size.load(Ordering::Relaxed),
        meter.measure(&store)
    );
}
