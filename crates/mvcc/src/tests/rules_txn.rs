//! Rule tables for Txn: compares, branches, nesting, revisions, checks and validation.

use bytes::Bytes;
use etcd_proto::errors;
use etcd_proto::etcdserverpb::compare::{CompareResult as R, CompareTarget as T, TargetUnion as U};
use etcd_proto::etcdserverpb::{
    Compare, PutRequest, RangeRequest, RequestOp, TxnRequest, response_op,
};

use super::helpers::*;
use crate::{Store, is_read_only_txn, validate_txn};

fn succeeded(store: &mut Store, compares: Vec<Compare>) -> bool {
    do_txn(store, txn(compares, vec![], vec![]))
        .expect("txn")
        .succeeded
}

#[test]
fn compare_targets_and_results() {
    let mut store = Store::new();
    store.apply(&grant(3, 10));
    do_put(&mut store, put("k", "m")).expect("put"); // 2
    do_put(&mut store, put_lease("k", "m", 3)).expect("put"); // 3: create 2, mod 3, version 2, lease 3
    let table: Vec<(Compare, bool)> = vec![
        (compare("k", T::Version, R::Equal, U::Version(2)), true),
        (compare("k", T::Version, R::Greater, U::Version(1)), true),
        (compare("k", T::Version, R::Less, U::Version(2)), false),
        (compare("k", T::Version, R::NotEqual, U::Version(2)), false),
        (
            compare("k", T::Create, R::Equal, U::CreateRevision(2)),
            true,
        ),
        (compare("k", T::Mod, R::Equal, U::ModRevision(3)), true),
        (compare("k", T::Mod, R::Less, U::ModRevision(4)), true),
        (compare("k", T::Value, R::Equal, U::Value(b("m"))), true),
        (compare("k", T::Value, R::Greater, U::Value(b("a"))), true),
        (compare("k", T::Value, R::Less, U::Value(b("z"))), true),
        (compare("k", T::Value, R::NotEqual, U::Value(b("m"))), false),
        (compare("k", T::Lease, R::Equal, U::Lease(3)), true),
        // The union field is read according to the target: a mismatched field counts as unset (0).
        (compare("k", T::Version, R::Equal, U::ModRevision(2)), false),
        (
            compare("k", T::Version, R::Greater, U::ModRevision(2)),
            true,
        ),
        // A missing key compares as a zero KeyValue...
        (
            compare("missing", T::Create, R::Equal, U::CreateRevision(0)),
            true,
        ),
        (
            compare("missing", T::Version, R::Equal, U::Version(0)),
            true,
        ),
        (compare("missing", T::Mod, R::Less, U::ModRevision(1)), true),
        (compare("missing", T::Lease, R::Equal, U::Lease(0)), true),
        // ...except VALUE, which is always false on a missing key.
        (
            compare("missing", T::Value, R::Equal, U::Value(Bytes::new())),
            false,
        ),
        (
            compare("missing", T::Value, R::NotEqual, U::Value(b("x"))),
            false,
        ),
    ];
    for (compare, expected) in table {
        assert_eq!(
            succeeded(&mut store, vec![compare.clone()]),
            expected,
            "{compare:?}"
        );
    }
    assert_eq!(
        store.revision(),
        3,
        "read-only txns do not bump the revision"
    );
}

#[test]
fn range_compares_hold_for_every_key() {
    let mut store = Store::new();
    do_put(&mut store, put("p/a", "1")).expect("put");
    do_put(&mut store, put("p/b", "1")).expect("put");
    do_put(&mut store, put("p/b", "2")).expect("put");
    let ranged = |target, result, union, key: &str, end: &str| Compare {
        range_end: b(end),
        ..compare(key, target, result, union)
    };
    assert!(succeeded(
        &mut store,
        vec![ranged(T::Version, R::Greater, U::Version(0), "p/", "p0")]
    ));
    assert!(!succeeded(
        &mut store,
        vec![ranged(T::Version, R::Equal, U::Version(1), "p/", "p0")]
    ));
    assert!(succeeded(
        &mut store,
        vec![ranged(T::Create, R::Less, U::CreateRevision(4), "p/", "\0")]
    ));
    // An empty range compares as a zero KeyValue, VALUE excepted.
    assert!(succeeded(
        &mut store,
        vec![ranged(
            T::Create,
            R::Equal,
            U::CreateRevision(0),
            "q/",
            "q0"
        )]
    ));
    assert!(!succeeded(
        &mut store,
        vec![ranged(T::Value, R::NotEqual, U::Value(b("x")), "q/", "q0")]
    ));
}

#[test]
fn branches_share_one_revision_and_ranges_see_earlier_writes() {
    let mut store = Store::new();
    do_put(&mut store, put("x", "0")).expect("put"); // 2
    let request = txn(
        vec![compare("x", T::Value, R::Equal, U::Value(b("0")))],
        vec![
            op_get(get("a", "")),
            op_put(put("a", "1")),
            op_get(get("a", "")),
            op_put(PutRequest {
                prev_kv: true,
                ..put("x", "1")
            }),
            op_delete(delete("nothing", "")),
            op_get(RangeRequest {
                revision: 2,
                ..get("a", "")
            }),
        ],
        vec![op_put(put("failed", "1"))],
    );
    let applied = store.apply(&cmd(etcd_proto::raftcmd::raft_command::Command::Txn(
        request,
    )));
    assert_eq!(applied.revision, 3);
    assert_eq!(applied.events.len(), 2);
    let Some(etcd_proto::raftcmd::raft_response::Response::Txn(response)) =
        applied.response.response
    else {
        panic!("unexpected {:?}", applied.response)
    };
    assert!(response.succeeded);
    assert_eq!(response.header.expect("header").revision, 3);
    let revisions: Vec<i64> = response
        .responses
        .iter()
        .map(|op| match op.response.as_ref().expect("response") {
            response_op::Response::ResponseRange(r) => r.header.expect("header").revision,
            response_op::Response::ResponsePut(r) => r.header.expect("header").revision,
            response_op::Response::ResponseDeleteRange(r) => r.header.expect("header").revision,
            response_op::Response::ResponseTxn(r) => r.header.expect("header").revision,
        })
        .collect();
    assert_eq!(revisions, vec![2, 3, 3, 3, 3, 3]);
    let range_kvs = |index: usize| match response.responses[index].response.as_ref() {
        Some(response_op::Response::ResponseRange(r)) => r.kvs.clone(),
        other => panic!("unexpected {other:?}"),
    };
    assert!(range_kvs(0).is_empty());
    assert_eq!(
        range_kvs(2)[0].value,
        b("1"),
        "a range sees the txn's earlier put"
    );
    assert!(
        range_kvs(5).is_empty(),
        "an explicit past revision does not see the txn's writes"
    );
    match response.responses[3].response.as_ref() {
        Some(response_op::Response::ResponsePut(put)) => {
            assert_eq!(put.prev_kv.as_ref().expect("prev").value, b("0"))
        }
        other => panic!("unexpected {other:?}"),
    }
    // Sub-revisions order the events as the ops ran.
    let keys: Vec<_> = applied
        .events
        .iter()
        .map(|e| e.kv.as_ref().expect("kv").key.clone())
        .collect();
    assert_eq!(keys, vec![b("a"), b("x")]);
}

#[test]
fn failed_compare_runs_failure_branch() {
    let mut store = Store::new();
    let response = do_txn(
        &mut store,
        txn(
            vec![compare("leader", T::Create, R::Equal, U::CreateRevision(0))],
            vec![op_put(put("leader", "me"))],
            vec![op_get(get("leader", ""))],
        ),
    )
    .expect("txn");
    assert!(response.succeeded);
    let response = do_txn(
        &mut store,
        txn(
            vec![compare("leader", T::Create, R::Equal, U::CreateRevision(0))],
            vec![op_put(put("leader", "other"))],
            vec![op_get(get("leader", ""))],
        ),
    )
    .expect("txn");
    assert!(!response.succeeded);
    assert_eq!(store.revision(), 2);
    assert_eq!(
        pairs(&store, "leader", ""),
        vec![("leader".into(), "me".into())]
    );
}

#[test]
fn nested_txns_compare_against_the_state_before_the_txn() {
    let mut store = Store::new();
    let nested = txn(
        // "a" does not exist before the txn, so this holds even though the outer branch put it.
        vec![compare("a", T::Version, R::Equal, U::Version(0))],
        vec![op_put(put("then", "1")), op_get(get("a", ""))],
        vec![op_put(put("else", "1"))],
    );
    let response = do_txn(
        &mut store,
        txn(vec![], vec![op_put(put("a", "1")), op_txn(nested)], vec![]),
    )
    .expect("txn");
    assert_eq!(store.revision(), 2);
    assert_eq!(pairs(&store, "a", "\0").len(), 2);
    assert_eq!(pairs(&store, "then", ""), vec![("then".into(), "1".into())]);
    let Some(response_op::Response::ResponseTxn(inner)) = response.responses[1].response.clone()
    else {
        panic!()
    };
    assert!(inner.succeeded);
    assert_eq!(
        inner.header.expect("nested txn header").revision,
        0,
        "etcd fills only the outer header"
    );
    let Some(response_op::Response::ResponseRange(range)) = inner.responses[1].response.clone()
    else {
        panic!()
    };
    assert_eq!(range.kvs.len(), 1, "a nested range sees earlier writes");
}

#[test]
fn txn_checks_refuse_the_whole_txn() {
    let mut store = Store::new();
    do_put(&mut store, put("k", "v")).expect("put");
    let cases: Vec<(TxnRequest, etcd_proto::errors::EtcdError)> = vec![
        (
            txn(
                vec![],
                vec![
                    op_put(put("a", "1")),
                    op_put(PutRequest {
                        ignore_value: true,
                        ..put("missing", "")
                    }),
                ],
                vec![],
            ),
            errors::KEY_NOT_FOUND,
        ),
        (
            txn(
                vec![],
                vec![op_put(put("a", "1")), op_put(put_lease("b", "1", 77))],
                vec![],
            ),
            errors::LEASE_NOT_FOUND,
        ),
        (
            txn(
                vec![],
                vec![
                    op_put(put("a", "1")),
                    op_get(RangeRequest {
                        revision: 9,
                        ..get("a", "")
                    }),
                ],
                vec![],
            ),
            errors::FUTURE_REV,
        ),
        (
            txn(
                vec![],
                vec![op_txn(txn(
                    vec![],
                    vec![op_put(put_lease("b", "1", 77))],
                    vec![],
                ))],
                vec![],
            ),
            errors::LEASE_NOT_FOUND,
        ),
    ];
    for (request, expected) in cases {
        assert_eq!(
            do_txn(&mut store, request.clone()),
            Err(expected),
            "{request:?}"
        );
        assert_eq!(store.revision(), 2);
        assert_eq!(pairs(&store, "a", "\0").len(), 1, "nothing changed");
    }
    // Negative range revisions inside a txn: etcd's compactMainRev starts at -1.
    let negative = |revision| {
        txn(
            vec![],
            vec![op_get(RangeRequest {
                revision,
                ..get("k", "")
            })],
            vec![],
        )
    };
    assert!(do_txn(&mut store, negative(-1)).is_ok());
    assert_eq!(do_txn(&mut store, negative(-2)), Err(errors::COMPACTED));
    assert!(
        store
            .range(&RangeRequest {
                revision: -2,
                ..get("k", "")
            })
            .is_ok(),
        "a plain range reads current"
    );
    // A check on the branch not taken does not matter.
    let request = txn(
        vec![compare("k", T::Value, R::Equal, U::Value(b("v")))],
        vec![op_put(put("a", "1"))],
        vec![op_put(put_lease("b", "1", 77))],
    );
    assert!(do_txn(&mut store, request).expect("txn").succeeded);
}

#[test]
fn validation_rules() {
    let ok = |request: &TxnRequest| validate_txn(request, 3);
    let puts = |keys: &[&str]| {
        keys.iter()
            .map(|key| op_put(put(key, "v")))
            .collect::<Vec<RequestOp>>()
    };
    assert_eq!(
        ok(&txn(vec![], puts(&["a", "b", "c", "d"]), vec![])),
        Err(errors::TOO_MANY_OPS)
    );
    let compares = vec![compare("k", T::Version, R::Equal, U::Version(0)); 4];
    assert_eq!(
        ok(&txn(compares, vec![], vec![])),
        Err(errors::TOO_MANY_OPS)
    );
    assert_eq!(
        ok(&txn(vec![], puts(&["a", "b", "c"]), puts(&["a", "b", "c"]))),
        Ok(())
    );
    assert_eq!(
        ok(&txn(vec![], puts(&["a", "a"]), vec![])),
        Err(errors::DUPLICATE_KEY)
    );
    assert_eq!(
        ok(&txn(
            vec![],
            vec![op_delete(delete("a", "c")), op_put(put("b", "v"))],
            vec![]
        )),
        Err(errors::DUPLICATE_KEY)
    );
    assert_eq!(
        ok(&txn(
            vec![],
            vec![op_delete(delete("a", "\0")), op_put(put("z", "v"))],
            vec![]
        )),
        Err(errors::DUPLICATE_KEY),
        "a delete to the end covers every later key"
    );
    assert_eq!(
        ok(&txn(
            vec![],
            vec![op_delete(delete("a", "c")), op_put(put("c", "v"))],
            vec![]
        )),
        Ok(())
    );
    assert_eq!(
        ok(&txn(
            vec![],
            vec![op_delete(delete("a", "c")), op_delete(delete("b", "d"))],
            vec![]
        )),
        Ok(()),
        "overlapping deletes are allowed"
    );
    assert_eq!(
        ok(&txn(
            vec![],
            vec![op_get(get("a", "")), op_put(put("a", "v"))],
            vec![]
        )),
        Ok(())
    );
    let nested_then_else = txn(vec![], puts(&["a"]), puts(&["a"]));
    assert_eq!(
        ok(&txn(vec![], vec![op_txn(nested_then_else.clone())], vec![])),
        Ok(()),
        "then/else are exclusive"
    );
    assert_eq!(
        ok(&txn(
            vec![],
            vec![op_txn(nested_then_else), op_put(put("a", "v"))],
            vec![]
        )),
        Err(errors::DUPLICATE_KEY)
    );
    assert_eq!(
        ok(&txn(
            vec![],
            vec![
                op_delete(delete("a", "")),
                op_txn(txn(vec![], vec![], puts(&["a"])))
            ],
            vec![]
        )),
        Err(errors::DUPLICATE_KEY)
    );
    assert_eq!(
        ok(&txn(vec![], vec![RequestOp { request: None }], vec![])),
        Err(errors::KEY_NOT_FOUND)
    );
    assert_eq!(
        ok(&txn(
            vec![compare("", T::Version, R::Equal, U::Version(0))],
            vec![],
            vec![]
        )),
        Err(errors::EMPTY_KEY)
    );
    assert_eq!(
        ok(&txn(
            vec![],
            vec![op_get(RangeRequest {
                sort_order: 9,
                ..get("a", "")
            })],
            vec![]
        )),
        Err(errors::INVALID_SORT_OPTION)
    );
    assert_eq!(
        ok(&txn(
            vec![],
            vec![op_put(PutRequest {
                ignore_value: true,
                ..put("a", "v")
            })],
            vec![]
        )),
        Err(errors::VALUE_PROVIDED)
    );
    assert_eq!(
        ok(&txn(
            vec![],
            vec![op_txn(txn(vec![], puts(&["a", "b", "c", "d"]), vec![]))],
            vec![]
        )),
        Err(errors::TOO_MANY_OPS),
        "nested txns obey the limit too"
    );
    // Apply refuses what validation refuses (without the configurable op limit).
    let mut store = Store::new();
    assert_eq!(
        do_txn(&mut store, txn(vec![], puts(&["a", "a"]), vec![])),
        Err(errors::DUPLICATE_KEY)
    );
    assert_eq!(store.revision(), 1);
}

#[test]
fn read_only_txns_answer_like_apply() {
    let mut store = Store::new();
    do_put(&mut store, put("a", "1")).expect("put");
    do_put(&mut store, put("b", "2")).expect("put");
    let request = txn(
        vec![compare("a", T::Value, R::Equal, U::Value(b("1")))],
        vec![
            op_get(get("a", "\0")),
            op_txn(txn(vec![], vec![op_get(get("b", ""))], vec![])),
        ],
        vec![op_get(get("b", ""))],
    );
    assert!(is_read_only_txn(&request));
    let local = store.txn_read_only(&request).expect("read-only txn");
    let applied = do_txn(&mut store, request).expect("txn");
    assert_eq!(local, applied);
    assert_eq!(store.revision(), 3);
    let writing = txn(vec![], vec![op_put(put("a", "2"))], vec![]);
    assert!(!is_read_only_txn(&writing));
    assert_eq!(store.txn_read_only(&writing), Err(errors::NOT_CAPABLE));
}
