//! Rule tables for revisions, Range, Put, DeleteRange, compaction, events, HashKV, alarms and snapshots.

use bytes::Bytes;
use etcd_proto::errors;
use etcd_proto::etcdserverpb::alarm_request::AlarmAction;
use etcd_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use etcd_proto::etcdserverpb::{AlarmType, PutRequest, RangeRequest};
use etcd_proto::mvccpb::event::EventType;
use etcd_proto::raftcmd::raft_response::Response;

use super::helpers::*;
use crate::{SnapshotError, Store, prefix_range_end};

fn abc_store() -> Store {
    let mut store = Store::new();
    for (key, value) in [("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")] {
        do_put(&mut store, put(key, value)).expect("put");
    }
    store
}

#[test]
fn revisions_versions_and_recreation() {
    let mut store = Store::new();
    assert_eq!(store.revision(), 1);
    assert_eq!(store.compact_revision(), 0);
    let response = do_put(&mut store, put("k", "v1")).expect("put");
    assert_eq!(response.header.expect("header").revision, 2);
    do_put(&mut store, put("k", "v2")).expect("put");
    let kv = store.range(&get("k", "")).expect("range").kvs[0].clone();
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 3, 2));
    let deleted = do_delete(&mut store, delete("k", "")).expect("delete");
    assert_eq!(deleted.deleted, 1);
    assert_eq!(store.revision(), 4);
    assert_eq!(store.key_count(), 0);
    do_put(&mut store, put("k", "v3")).expect("put");
    let kv = store.range(&get("k", "")).expect("range").kvs[0].clone();
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (5, 5, 1));
    // The old incarnation is still readable at its revision.
    let old = store
        .range(&RangeRequest {
            revision: 3,
            ..get("k", "")
        })
        .expect("range at 3");
    assert_eq!(old.kvs[0].value, b("v2"));
    assert_eq!(
        old.header.expect("header").revision,
        5,
        "header carries the current revision"
    );
    let gone = store
        .range(&RangeRequest {
            revision: 4,
            ..get("k", "")
        })
        .expect("range at 4");
    assert!(gone.kvs.is_empty());
}

#[test]
fn range_end_conventions() {
    let mut store = abc_store();
    do_put(&mut store, put("\u{1}", "low")).expect("put");
    let keys = |key: &str, end: &str| {
        pairs(&store, key, end)
            .into_iter()
            .map(|(k, _)| k)
            .collect::<Vec<_>>()
    };
    assert_eq!(keys("b", ""), vec!["b"]);
    assert_eq!(keys("b", "\0"), vec!["b", "c", "d"]);
    assert_eq!(keys("\0", "\0"), vec!["\u{1}", "a", "b", "c", "d"]);
    assert_eq!(keys("a", "c"), vec!["a", "b"]);
    assert_eq!(keys("c", "a"), Vec::<String>::new());
    assert_eq!(keys("c", "c"), Vec::<String>::new());
    assert_eq!(keys("zz", ""), Vec::<String>::new());
}

#[test]
fn prefix_range_end_table() {
    let cases: &[(&[u8], &[u8])] = &[
        (b"a", b"b"),
        (b"/registry/", b"/registry0"),
        (b"a\xff", b"b"),
        (b"a\xfe\xff\xff", b"a\xff"),
        (b"\xff\xff", b"\0"),
        (b"", b"\0"),
    ];
    for (key, end) in cases {
        assert_eq!(prefix_range_end(key), end.to_vec(), "prefix of {key:?}");
    }
}

#[test]
fn limit_more_count_keys_only_count_only() {
    let store = abc_store();
    let response = store
        .range(&RangeRequest {
            limit: 2,
            ..get("a", "\0")
        })
        .expect("range");
    assert_eq!(response.kvs.len(), 2);
    assert!(response.more);
    assert_eq!(response.count, 4);
    let response = store
        .range(&RangeRequest {
            limit: 4,
            ..get("a", "\0")
        })
        .expect("range");
    assert!(!response.more);
    let response = store
        .range(&RangeRequest {
            count_only: true,
            limit: 1,
            ..get("a", "\0")
        })
        .expect("range");
    assert!(response.kvs.is_empty());
    assert!(!response.more);
    assert_eq!(response.count, 4);
    let response = store
        .range(&RangeRequest {
            keys_only: true,
            ..get("a", "\0")
        })
        .expect("range");
    assert!(
        response
            .kvs
            .iter()
            .all(|kv| kv.value.is_empty() && kv.version == 1)
    );
}

#[test]
fn count_ignores_revision_filters_and_filters_are_inclusive() {
    let store = abc_store(); // a@2 b@3 c@4 d@5
    let response = store
        .range(&RangeRequest {
            min_mod_revision: 3,
            max_mod_revision: 4,
            ..get("a", "\0")
        })
        .expect("range");
    let keys: Vec<_> = response.kvs.iter().map(|kv| kv.key.clone()).collect();
    assert_eq!(keys, vec![b("b"), b("c")]);
    assert_eq!(response.count, 4);
    let response = store
        .range(&RangeRequest {
            min_create_revision: 5,
            ..get("a", "\0")
        })
        .expect("range");
    assert_eq!(response.kvs.len(), 1);
    let response = store
        .range(&RangeRequest {
            max_create_revision: 2,
            limit: 1,
            ..get("a", "\0")
        })
        .expect("range");
    assert_eq!(response.kvs.len(), 1);
    assert!(!response.more, "more counts post-filter results");
}

#[test]
fn sort_rules() {
    let mut store = abc_store();
    do_put(&mut store, put("a", "9")).expect("put"); // a@6 version 2
    let keys = |request: RangeRequest| -> Vec<String> {
        store
            .range(&request)
            .expect("range")
            .kvs
            .iter()
            .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
            .collect()
    };
    let base = get("a", "\0");
    // Order NONE with a non-key target sorts ascending by the target.
    assert_eq!(
        keys(RangeRequest {
            sort_target: SortTarget::Mod as i32,
            ..base.clone()
        }),
        vec!["b", "c", "d", "a"]
    );
    assert_eq!(
        keys(RangeRequest {
            sort_order: SortOrder::Descend as i32,
            ..base.clone()
        }),
        vec!["d", "c", "b", "a"]
    );
    assert_eq!(
        keys(RangeRequest {
            sort_order: SortOrder::Descend as i32,
            sort_target: SortTarget::Create as i32,
            limit: 1,
            ..base.clone()
        }),
        vec!["d"],
        "WithLastCreate"
    );
    assert_eq!(
        keys(RangeRequest {
            sort_order: SortOrder::Ascend as i32,
            sort_target: SortTarget::Value as i32,
            ..base.clone()
        }),
        vec!["b", "c", "d", "a"]
    );
    assert_eq!(
        keys(RangeRequest {
            sort_order: SortOrder::Descend as i32,
            sort_target: SortTarget::Version as i32,
            ..base.clone()
        })[0],
        "a"
    );
    for bad in [
        RangeRequest {
            sort_order: 7,
            ..base.clone()
        },
        RangeRequest {
            sort_target: -1,
            ..base.clone()
        },
    ] {
        assert_eq!(store.range(&bad), Err(errors::INVALID_SORT_OPTION));
    }
    assert_eq!(store.range(&get("", "")), Err(errors::EMPTY_KEY));
}

#[test]
fn past_reads_future_and_compacted() {
    let mut store = abc_store();
    assert_eq!(
        store.range(&RangeRequest {
            revision: 6,
            ..get("a", "")
        }),
        Err(errors::FUTURE_REV)
    );
    let applied = store.apply(&compact(4));
    assert!(refused(&applied).is_none());
    assert_eq!(store.compact_revision(), 4);
    assert_eq!(
        store.range(&RangeRequest {
            revision: 3,
            ..get("a", "")
        }),
        Err(errors::COMPACTED)
    );
    let at_compaction = store
        .range(&RangeRequest {
            revision: 4,
            ..get("a", "\0")
        })
        .expect("reading at the compact revision is allowed");
    assert_eq!(at_compaction.kvs.len(), 3);
    assert_eq!(refused(&store.apply(&compact(4))), Some(errors::COMPACTED));
    assert_eq!(refused(&store.apply(&compact(3))), Some(errors::COMPACTED));
    assert_eq!(refused(&store.apply(&compact(9))), Some(errors::FUTURE_REV));
    assert_eq!(store.events(b"a", b"\0", 4, 5), Err(errors::COMPACTED));
    assert_eq!(store.events(b"a", b"\0", 5, 5).expect("events").len(), 1);
}

#[test]
fn compaction_removes_superseded_versions_and_dead_keys() {
    let mut store = Store::new();
    do_put(&mut store, put("x", "1")).expect("put"); // 2
    do_put(&mut store, put("x", "2")).expect("put"); // 3
    do_put(&mut store, put("y", "1")).expect("put"); // 4
    do_delete(&mut store, delete("y", "")).expect("delete"); // 5
    do_put(&mut store, put("x", "3")).expect("put"); // 6
    store.apply(&compact(5));
    assert_eq!(
        store.keys.len(),
        1,
        "y's tombstone at or below 5 removes it"
    );
    let x = &store.keys[&b("x")];
    let revisions: Vec<i64> = x.entries().iter().map(|entry| entry.revision).collect();
    assert_eq!(
        revisions,
        vec![3, 6],
        "newest version at or below 5 survives"
    );
    let events = store.events(b"x", b"", 6, 6).expect("events");
    assert_eq!(events[0].prev_kv.as_ref().expect("prev kv").value, b("2"));
}

#[test]
fn put_options_and_errors() {
    let mut store = Store::new();
    assert_eq!(do_put(&mut store, put("", "v")), Err(errors::EMPTY_KEY));
    let ignore_value = PutRequest {
        ignore_value: true,
        ..put("k", "")
    };
    assert_eq!(
        do_put(&mut store, ignore_value.clone()),
        Err(errors::KEY_NOT_FOUND)
    );
    assert_eq!(
        do_put(
            &mut store,
            PutRequest {
                ignore_value: true,
                ..put("k", "x")
            }
        ),
        Err(errors::VALUE_PROVIDED)
    );
    assert_eq!(
        do_put(
            &mut store,
            PutRequest {
                ignore_lease: true,
                ..put_lease("k", "x", 5)
            }
        ),
        Err(errors::LEASE_PROVIDED)
    );
    assert_eq!(
        do_put(&mut store, put_lease("k", "x", 5)),
        Err(errors::LEASE_NOT_FOUND)
    );
    assert_eq!(store.revision(), 1, "refused puts change nothing");

    store.apply(&grant(5, 10));
    do_put(&mut store, put_lease("k", "v1", 5)).expect("put");
    let response = do_put(
        &mut store,
        PutRequest {
            prev_kv: true,
            ..ignore_value
        },
    )
    .expect("put");
    assert_eq!(response.prev_kv.expect("prev kv").value, b("v1"));
    let kv = store.range(&get("k", "")).expect("range").kvs[0].clone();
    assert_eq!(
        (kv.value.clone(), kv.version, kv.lease),
        (b("v1"), 2, 0),
        "ignore_value keeps the value; lease 0 detaches"
    );
    assert!(store.lease(5).expect("lease").keys.is_empty());
    do_put(&mut store, put_lease("k", "v2", 5)).expect("put");
    do_put(
        &mut store,
        PutRequest {
            ignore_lease: true,
            ..put("k", "v3")
        },
    )
    .expect("put");
    let kv = store.range(&get("k", "")).expect("range").kvs[0].clone();
    assert_eq!(
        (kv.value, kv.lease),
        (b("v3"), 5),
        "ignore_lease keeps the lease"
    );
    let response = do_put(&mut store, put("fresh", "v")).expect("put");
    assert_eq!(response.prev_kv, None);
}

#[test]
fn delete_range_prev_kvs_and_no_revision_when_nothing_deleted() {
    let mut store = abc_store();
    let response = do_delete(&mut store, delete("x", "z")).expect("delete");
    assert_eq!(response.deleted, 0);
    assert_eq!(response.header.expect("header").revision, 5);
    assert_eq!(store.revision(), 5);
    let applied = store.apply(&cmd(
        etcd_proto::raftcmd::raft_command::Command::DeleteRange(delete("b", "d")),
    ));
    assert_eq!(applied.revision, 6);
    let Some(Response::DeleteRange(response)) = applied.response.response else {
        panic!("unexpected {:?}", applied.response)
    };
    assert_eq!(response.deleted, 2);
    assert_eq!(
        response
            .prev_kvs
            .iter()
            .map(|kv| kv.key.clone())
            .collect::<Vec<_>>(),
        vec![b("b"), b("c")]
    );
    assert_eq!(applied.events.len(), 2);
    for event in &applied.events {
        assert_eq!(event.r#type, EventType::Delete as i32);
        let kv = event.kv.as_ref().expect("kv");
        assert_eq!((kv.mod_revision, kv.version, kv.create_revision), (6, 0, 0));
        assert!(kv.value.is_empty());
        assert!(event.prev_kv.is_some());
    }
    assert_eq!(
        do_delete(&mut store, delete("", "")),
        Err(errors::EMPTY_KEY)
    );
    // Without prev_kv nothing is returned but keys are still deleted.
    let mut request = delete("a", "");
    request.prev_kv = false;
    let response = do_delete(&mut store, request).expect("delete");
    assert_eq!((response.deleted, response.prev_kvs.len()), (1, 0));
}

#[test]
fn put_events_carry_full_kv_and_prev() {
    let mut store = Store::new();
    let first = store.apply(&cmd(etcd_proto::raftcmd::raft_command::Command::Put(put(
        "k", "1",
    ))));
    assert_eq!(first.events.len(), 1);
    assert_eq!(first.events[0].prev_kv, None);
    let second = store.apply(&cmd(etcd_proto::raftcmd::raft_command::Command::Put(put(
        "k", "2",
    ))));
    let kv = second.events[0].kv.as_ref().expect("kv");
    assert_eq!(
        (kv.value.clone(), kv.version, kv.mod_revision),
        (b("2"), 2, 3)
    );
    assert_eq!(
        second.events[0].prev_kv.as_ref().expect("prev").value,
        b("1")
    );
    // Replay equals what apply produced.
    let replay = store.events(b"k", b"", 1, 3).expect("events");
    assert_eq!(replay, [first.events, second.events].concat());
    assert_eq!(
        store.events(b"k", b"", 0, 100).expect("events").len(),
        2,
        "to is clamped, from 0 = oldest"
    );
}

#[test]
fn hash_kv_bounds_and_equality() {
    let store = abc_store();
    let other = abc_store();
    assert_eq!(store.hash_kv(0), other.hash_kv(0));
    let (hash_now, compacted, hashed) = store.hash_kv(0).expect("hash");
    assert_eq!((compacted, hashed), (0, 5));
    let (hash_past, _, _) = store.hash_kv(3).expect("hash");
    assert_ne!(hash_now, hash_past);
    assert_eq!(store.hash_kv(6), Err(errors::FUTURE_REV));
    let mut compacted_store = abc_store();
    compacted_store.apply(&compact(4));
    assert_eq!(compacted_store.hash_kv(3), Err(errors::COMPACTED));
}

#[test]
fn alarms_and_quota() {
    let mut store = abc_store();
    let applied = store.apply(&alarm(AlarmAction::Activate, 7, AlarmType::Nospace));
    let Some(Response::Alarm(response)) = applied.response.response else {
        panic!()
    };
    assert_eq!(response.alarms.len(), 1);
    assert_eq!(do_put(&mut store, put("k", "v")), Err(errors::NO_SPACE));
    assert_eq!(refused(&store.apply(&grant(1, 10))), Some(errors::NO_SPACE));
    do_delete(&mut store, delete("a", "")).expect("deletes are allowed while NOSPACE");
    let applied = store.apply(&alarm(AlarmAction::Get, 0, AlarmType::None));
    let Some(Response::Alarm(response)) = applied.response.response else {
        panic!()
    };
    assert_eq!(
        (response.alarms[0].member_id, response.alarms[0].alarm),
        (7, AlarmType::Nospace as i32)
    );
    assert!(refused(&store.apply(&alarm(AlarmAction::Activate, 7, AlarmType::None))).is_none());
    assert_eq!(store.alarms().len(), 1, "activating NONE is a no-op");
    store.apply(&alarm(AlarmAction::Deactivate, 7, AlarmType::Nospace));
    assert!(store.alarms().is_empty());
    do_put(&mut store, put("k", "v")).expect("put after deactivation");
    store.apply(&alarm(AlarmAction::Activate, 8, AlarmType::Corrupt));
    assert_eq!(do_delete(&mut store, delete("b", "")), Err(errors::CORRUPT));
}

#[test]
fn snapshot_round_trip_and_rejections() {
    let mut store = abc_store();
    store.apply(&grant(9, 30));
    do_put(&mut store, put_lease("leased", "v", 9)).expect("put");
    do_delete(&mut store, delete("b", "")).expect("delete");
    store.apply(&compact(3));
    store.apply(&alarm(AlarmAction::Activate, 1, AlarmType::Nospace));
    let bytes = store.encode_snapshot();
    let decoded = Store::decode_snapshot(&bytes).expect("decode");
    assert_eq!(decoded, store);
    assert_eq!(decoded.encode_snapshot(), bytes);

    assert_eq!(
        Store::decode_snapshot(b"nonsense"),
        Err(SnapshotError::BadMagic)
    );
    let mut newer = bytes.clone();
    newer[8] = 3;
    assert!(matches!(
        Store::decode_snapshot(&newer),
        Err(SnapshotError::UnsupportedVersion {
            found: 3,
            supported: 2
        })
    ));
    let mut flipped = bytes.clone();
    let middle = bytes.len() / 2;
    flipped[middle] ^= 0x40;
    assert!(matches!(
        Store::decode_snapshot(&flipped),
        Err(SnapshotError::Checksum { .. })
    ));
    assert!(Store::decode_snapshot(&bytes[..bytes.len() - 9]).is_err());
    assert!(Store::decode_snapshot(&bytes[..10]).is_err());
}

#[test]
fn empty_command_changes_nothing() {
    let mut store = abc_store();
    let before = store.clone();
    let applied = store.apply(&etcd_proto::raftcmd::RaftCommand { command: None });
    assert_eq!(applied.response.response, None);
    assert!(applied.events.is_empty());
    assert_eq!(applied.revision, 5);
    assert_eq!(store, before);
}

#[test]
fn refused_commands_produce_no_events_and_keep_the_revision() {
    let mut store = abc_store();
    let before = store.clone();
    for command in [
        cmd(etcd_proto::raftcmd::raft_command::Command::Put(put_lease(
            "k", "v", 42,
        ))),
        cmd(etcd_proto::raftcmd::raft_command::Command::DeleteRange(
            delete("", ""),
        )),
        revoke(42),
        compact(99),
    ] {
        let applied = store.apply(&command);
        assert!(refused(&applied).is_some(), "{command:?}");
        assert!(applied.events.is_empty());
        assert_eq!(applied.revision, 5);
    }
    assert_eq!(store, before);
}

#[test]
fn compaction_strategies_agree() {
    // Many keys, a few with history: the sparse case; then every key with history: the dense case.
    for overwritten in [3_usize, 200] {
        let mut store = Store::new();
        for index in 0..200 {
            do_put(&mut store, put(&format!("k{index:03}"), "1")).expect("put");
        }
        for index in 0..overwritten {
            do_put(&mut store, put(&format!("k{index:03}"), "2")).expect("put");
        }
        do_delete(&mut store, delete("k150", "k160")).expect("delete");
        do_put(&mut store, put("k155", "back")).expect("put");
        let revision = store.revision() - 1;
        let mut walked = store.clone();
        let mut looked_up = store.clone();
        walked.compact_with(revision, true);
        looked_up.compact_with(revision, false);
        store.apply(&compact(revision));
        assert_eq!(walked, looked_up, "{overwritten} overwritten");
        assert_eq!(store, walked);
        check_invariants(&walked);
        assert!(walked.keys.len() < 200, "deleted keys are gone");
    }
}

#[test]
fn stored_bytes_never_pin_the_log_buffer() {
    // A decoded log entry's fields are slices of one shared buffer; the store must copy them.
    let buffer = Bytes::from(vec![b'x'; 4096]);
    let request = PutRequest {
        key: buffer.slice(0..3),
        value: buffer.slice(100..200),
        ..Default::default()
    };
    let mut store = Store::new();
    do_put(&mut store, request).expect("put");
    let inside = |bytes: &Bytes| {
        let start = buffer.as_ptr() as usize;
        let address = bytes.as_ptr() as usize;
        address >= start && address < start + buffer.len()
    };
    let (key, history) = store.keys.iter().next().expect("one key");
    assert!(!inside(key), "key shares the log buffer");
    assert!(
        !inside(&history.entries()[0].value),
        "value shares the log buffer"
    );
    // Reads and events share the stored copy instead of copying again.
    let read = store.range(&get("xxx", "")).expect("range");
    assert_eq!(
        read.kvs[0].value.as_ptr(),
        history.entries()[0].value.as_ptr()
    );
}

#[test]
fn store_is_shareable_across_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Store>();
    shareable::<crate::Applied>();
}

#[test]
fn a_key_with_one_version_holds_it_inline() {
    use crate::keyspace::{Entry, KeyHistory};
    assert_eq!(size_of::<KeyHistory>(), size_of::<Entry>());
    let mut store = Store::new();
    do_put(&mut store, put("a", "1")).expect("put");
    do_put(&mut store, put("a", "2")).expect("put");
    do_put(&mut store, put("b", "1")).expect("put");
    assert_eq!(store.keys[&b"a"[..]].entries().len(), 2);
    store.apply(&compact(store.revision()));
    // Back to one version after compaction; still answering the same.
    assert_eq!(store.keys[&b"a"[..]].entries().len(), 1);
    assert_eq!(
        pairs(&store, "a", "c"),
        vec![("a".into(), "2".into()), ("b".into(), "1".into())]
    );
}
