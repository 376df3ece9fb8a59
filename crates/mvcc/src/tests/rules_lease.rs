//! Rule tables for leases: grant, attach/detach/move, revoke, expire.

use etcd_proto::errors;
use etcd_proto::mvccpb::event::EventType;
use etcd_proto::raftcmd::raft_response::Response;

use super::helpers::*;
use crate::{MAX_LEASE_TTL, Store};

#[test]
fn grant_rules() {
    let mut store = Store::new();
    let applied = store.apply(&grant(5, 10));
    let Some(Response::LeaseGrant(response)) = applied.response.response else {
        panic!()
    };
    assert_eq!((response.id, response.ttl), (5, 10));
    assert_eq!(
        refused(&store.apply(&grant(5, 20))),
        Some(errors::LEASE_EXIST)
    );
    assert_eq!(
        refused(&store.apply(&grant(0, 20))),
        Some(errors::LEASE_NOT_FOUND)
    );
    assert_eq!(
        refused(&store.apply(&grant(6, MAX_LEASE_TTL + 1))),
        Some(errors::LEASE_TTL_TOO_LARGE)
    );
    store.apply(&grant(-3, 1));
    assert_eq!(store.leases(), vec![(-3, 1), (5, 10)]);
    assert_eq!(store.revision(), 1, "grants do not consume revisions");
}

#[test]
fn attach_move_detach() {
    let mut store = Store::new();
    store.apply(&grant(1, 10));
    store.apply(&grant(2, 10));
    do_put(&mut store, put_lease("k", "v", 1)).expect("put");
    do_put(&mut store, put_lease("j", "v", 1)).expect("put");
    assert_eq!(store.lease(1).expect("lease").keys, vec![b("j"), b("k")]);
    do_put(&mut store, put_lease("k", "v", 2)).expect("put");
    assert_eq!(store.lease(1).expect("lease").keys, vec![b("j")]);
    assert_eq!(store.lease(2).expect("lease").keys, vec![b("k")]);
    do_delete(&mut store, delete("j", "")).expect("delete");
    assert!(store.lease(1).expect("lease").keys.is_empty());
    do_put(&mut store, put("k", "v")).expect("put");
    assert!(store.lease(2).expect("lease").keys.is_empty());
    assert_eq!(store.lease(3), None);
}

#[test]
fn revoke_deletes_keys_in_one_revision() {
    let mut store = Store::new();
    store.apply(&grant(1, 10));
    do_put(&mut store, put_lease("b", "v", 1)).expect("put");
    do_put(&mut store, put_lease("a", "v", 1)).expect("put");
    do_put(&mut store, put("free", "v")).expect("put");
    let applied = store.apply(&revoke(1));
    assert!(refused(&applied).is_none());
    assert_eq!(applied.revision, 5);
    let keys: Vec<_> = applied
        .events
        .iter()
        .map(|e| e.kv.as_ref().expect("kv").key.clone())
        .collect();
    assert_eq!(keys, vec![b("a"), b("b")], "keys deleted in key order");
    assert!(
        applied
            .events
            .iter()
            .all(|e| e.r#type == EventType::Delete as i32
                && e.kv.as_ref().expect("kv").mod_revision == 5)
    );
    assert_eq!(pairs(&store, "a", "\0"), vec![("free".into(), "v".into())]);
    assert_eq!(store.lease(1), None);
    assert_eq!(
        refused(&store.apply(&revoke(1))),
        Some(errors::LEASE_NOT_FOUND)
    );
    // A lease without keys goes away without a revision.
    store.apply(&grant(2, 10));
    let applied = store.apply(&revoke(2));
    assert_eq!((applied.revision, applied.events.len()), (5, 0));
}

#[test]
fn expire_skips_unknown_and_gives_each_lease_its_revision() {
    let mut store = Store::new();
    for id in [1, 2, 3] {
        store.apply(&grant(id, 10));
    }
    do_put(&mut store, put_lease("one", "v", 1)).expect("put"); // 2
    do_put(&mut store, put_lease("three", "v", 3)).expect("put"); // 3
    let applied = store.apply(&expire(&[3, 99, 2, 1]));
    let Some(Response::LeaseExpire(response)) = applied.response.response.clone() else {
        panic!()
    };
    assert_eq!(response.ids, vec![3, 2, 1]);
    let revisions: Vec<i64> = applied
        .events
        .iter()
        .map(|e| e.kv.as_ref().expect("kv").mod_revision)
        .collect();
    assert_eq!(revisions, vec![4, 5]);
    assert_eq!(applied.revision, 5);
    assert!(store.leases().is_empty());
    assert_eq!(store.key_count(), 0);
}
