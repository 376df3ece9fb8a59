//! Property tests: random command sequences applied to the store and to the reference model must
//! give the same responses, revisions, events and reads; snapshots and determinism hold throughout.

use bytes::Bytes;
use etcd_proto::errors::EtcdError;
use etcd_proto::etcdserverpb::compare::TargetUnion;
use etcd_proto::etcdserverpb::{
    CompactionRequest, Compare, DeleteRangeRequest, LeaseGrantRequest, LeaseRevokeRequest,
    PutRequest, RangeRequest, RequestOp, TxnRequest, request_op,
};
use etcd_proto::raftcmd::{
    LeaseExpire, RaftCommand, raft_command::Command, raft_response::Response,
};
use proptest::prelude::*;

use super::model::Model;
use crate::Store;

const KEYS: &[&[u8]] = &[
    b"\0",
    b"a",
    b"a/1",
    b"a/2",
    b"b",
    b"c",
    b"c\xff",
    b"\xff\xff",
];
/// Range ends: single key (twice as likely), to the end, prefix ends, plain bounds, an end before
/// most keys.
const ENDS: &[&[u8]] = &[
    b"",
    b"",
    b"\0",
    b"a0",
    b"b",
    b"c",
    b"d",
    b"a/2",
    b"\xff\xff\xff",
];

fn key() -> impl Strategy<Value = Bytes> {
    prop::sample::select(KEYS).prop_map(Bytes::from_static)
}

fn range_end() -> impl Strategy<Value = Bytes> {
    prop::sample::select(ENDS).prop_map(Bytes::from_static)
}

fn value() -> impl Strategy<Value = Bytes> {
    prop::sample::select(&["", "x", "y", "zz"][..])
        .prop_map(|value| Bytes::copy_from_slice(value.as_bytes()))
}

fn lease() -> impl Strategy<Value = i64> {
    prop_oneof![3 => Just(0_i64), 2 => 1_i64..4]
}

fn put() -> impl Strategy<Value = PutRequest> {
    (key(), value(), lease(), any::<bool>(), 0_u8..14).prop_map(
        |(key, value, lease, prev_kv, flags)| {
            let ignore_value = flags == 1 || flags == 3;
            let ignore_lease = flags == 2 || flags == 3;
            PutRequest {
                key,
                value: if ignore_value { Bytes::new() } else { value },
                lease: if ignore_lease { 0 } else { lease },
                prev_kv,
                ignore_value,
                ignore_lease,
            }
        },
    )
}

fn delete() -> impl Strategy<Value = DeleteRangeRequest> {
    (key(), range_end(), any::<bool>()).prop_map(|(key, range_end, prev_kv)| DeleteRangeRequest {
        key,
        range_end,
        prev_kv,
    })
}

/// Ranges whose revision is a fraction (in 1/8ths) of the store revision, resolved at use.
fn range() -> impl Strategy<Value = (RangeRequest, u8)> {
    (
        key(),
        range_end(),
        prop_oneof![2 => Just(0_i64), 1 => 1_i64..4],
        0_i32..3,
        0_i32..5,
        (any::<bool>(), prop::bool::weighted(0.15)),
        prop_oneof![3 => Just((0_i64, 0_i64)), 1 => (0_i64..8, 0_i64..12)],
        prop_oneof![3 => Just((0_i64, 0_i64)), 1 => (0_i64..8, 0_i64..12)],
        prop_oneof![2 => Just(0_u8), 1 => 0_u8..10],
    )
        .prop_map(
            |(
                key,
                range_end,
                limit,
                order,
                target,
                (keys_only, count_only),
                modr,
                create,
                revision,
            )| {
                (
                    RangeRequest {
                        key,
                        range_end,
                        limit,
                        revision: 0,
                        sort_order: order,
                        sort_target: target,
                        serializable: false,
                        keys_only,
                        count_only,
                        min_mod_revision: modr.0,
                        max_mod_revision: modr.1,
                        min_create_revision: create.0,
                        max_create_revision: create.1,
                    },
                    revision,
                )
            },
        )
}

fn compare() -> impl Strategy<Value = Compare> {
    (
        key(),
        prop_oneof![3 => Just(Bytes::new()), 1 => range_end()],
        0_i32..4,
        0_i32..5,
        0_i64..6,
        value(),
    )
        .prop_map(|(key, range_end, result, target, number, value)| {
            let target_union = match target {
                0 => TargetUnion::Version(number),
                1 => TargetUnion::CreateRevision(number * 2),
                2 => TargetUnion::ModRevision(number * 2),
                3 => TargetUnion::Value(value),
                _ => TargetUnion::Lease(number % 4),
            };
            Compare {
                result,
                target,
                key,
                range_end,
                target_union: Some(target_union),
            }
        })
}

fn leaf_op() -> impl Strategy<Value = RequestOp> {
    prop_oneof![
        3 => put().prop_map(|put| RequestOp { request: Some(request_op::Request::RequestPut(put)) }),
        2 => delete().prop_map(|delete| RequestOp { request: Some(request_op::Request::RequestDeleteRange(delete)) }),
        2 => range().prop_map(|(mut range, revision)| {
            // Inside a txn only revision 0 or small explicit revisions (some may be future/compacted).
            range.revision = match revision {
                9 => -2,
                8 => -1,
                other => i64::from(other / 2),
            };
            RequestOp { request: Some(request_op::Request::RequestRange(range)) }
        }),
    ]
}

fn txn() -> impl Strategy<Value = TxnRequest> {
    let flat = (
        prop::collection::vec(compare(), 0..3),
        prop::collection::vec(leaf_op(), 0..4),
        prop::collection::vec(leaf_op(), 0..3),
    )
        .prop_map(|(compare, success, failure)| TxnRequest {
            compare,
            success,
            failure,
        });
    flat.prop_recursive(2, 12, 3, |inner| {
        (
            prop::collection::vec(compare(), 0..3),
            prop::collection::vec(
                prop_oneof![3 => leaf_op(), 1 => inner.prop_map(|txn| RequestOp { request: Some(request_op::Request::RequestTxn(txn)) })],
                0..4,
            ),
            prop::collection::vec(leaf_op(), 0..3),
        )
            .prop_map(|(compare, success, failure)| TxnRequest { compare, success, failure })
    })
}

/// A command template; compaction revisions are fractions of the current revision, resolved at use.
#[derive(Debug, Clone)]
enum Step {
    Command(Command),
    Compact(u8),
    Read(RangeRequest, u8),
    /// Watch replay of (key, range_end) from/to fractions of the store revision.
    Replay(Bytes, Bytes, u8, u8),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => put().prop_map(|put| Step::Command(Command::Put(put))),
        2 => delete().prop_map(|delete| Step::Command(Command::DeleteRange(delete))),
        4 => txn().prop_map(|txn| Step::Command(Command::Txn(txn))),
        3 => (1_i64..4, 1_i64..100).prop_map(|(id, ttl)| Step::Command(Command::LeaseGrant(LeaseGrantRequest { ttl, id }))),
        1 => (1_i64..5).prop_map(|id| Step::Command(Command::LeaseRevoke(LeaseRevokeRequest { id }))),
        1 => prop::collection::vec(1_i64..5, 0..3).prop_map(|ids| Step::Command(Command::LeaseExpire(LeaseExpire { ids }))),
        1 => (0_u8..10).prop_map(Step::Compact),
        3 => range().prop_map(|(range, revision)| Step::Read(range, revision)),
        1 => (key(), range_end(), 0_u8..10, 0_u8..10).prop_map(|(key, end, from, to)| Step::Replay(key, end, from, to)),
    ]
}

fn fraction(revision: i64, eighths: u8) -> i64 {
    revision * i64::from(eighths) / 8
}

fn check_reads_agree(store: &Store, model: &Model) {
    let whole = RangeRequest {
        key: Bytes::from_static(b"\0"),
        range_end: Bytes::from_static(b"\0"),
        ..Default::default()
    };
    for revision in 0..=model.revision() + 1 {
        let request = RangeRequest {
            revision,
            ..whole.clone()
        };
        assert_eq!(
            store.range(&request),
            model.range(&request),
            "whole keyspace at {revision}"
        );
    }
    for from in 0..=model.revision() + 1 {
        assert_eq!(
            store.events(b"\0", b"\0", from, i64::MAX),
            model.events(b"\0", b"\0", from, i64::MAX),
            "events from {from}"
        );
    }
    assert_eq!(
        store.events(b"a", b"b", 2, model.revision() - 1),
        model.events(b"a", b"b", 2, model.revision() - 1)
    );
    let (by_key_scan, by_revision_log) = store.events_both_ways(b"\0", b"\0", 0, i64::MAX);
    assert_eq!(by_key_scan, by_revision_log, "replay strategies agree");
    assert_eq!(store.key_count(), model.key_count());
    assert_eq!(store.leases(), model.leases());
    for (id, _) in store.leases() {
        let keys = store.lease(id).map(|lease| lease.keys);
        assert_eq!(keys, model.lease_keys(id), "keys of lease {id}");
    }
}

fn run(steps: &[Step]) -> (Store, Vec<RaftCommand>) {
    let mut store = Store::new();
    let mut model = Model::new();
    let mut commands = Vec::new();
    for step in steps {
        let command = match step {
            Step::Command(command) => command.clone(),
            Step::Compact(eighths) => Command::Compaction(CompactionRequest {
                revision: fraction(store.revision(), *eighths) + 1,
                physical: false,
            }),
            Step::Replay(key, range_end, from, to) => {
                let from = fraction(store.revision() + 1, *from);
                let to = fraction(store.revision() + 1, *to);
                let replayed = store.events(key, range_end, from, to);
                assert_eq!(
                    replayed,
                    model.events(key, range_end, from, to),
                    "replay of {key:?}..{range_end:?} from {from} to {to}"
                );
                if let Ok(events) = replayed {
                    let (by_key_scan, by_revision_log) =
                        store.events_both_ways(key, range_end, from, to);
                    assert_eq!(by_key_scan, events, "key scan replay");
                    assert_eq!(by_revision_log, events, "revision log replay");
                }
                continue;
            }
            Step::Read(range, eighths) => {
                let request = RangeRequest {
                    revision: fraction(store.revision() + 1, *eighths),
                    ..range.clone()
                };
                assert_eq!(store.range(&request), model.range(&request), "{request:?}");
                continue;
            }
        };
        let command = RaftCommand {
            command: Some(command),
        };
        let before = store.clone();
        let applied = store.apply(&command);
        if let Some(Command::Compaction(compaction)) = &command.command
            && matches!(applied.response.response, Some(Response::Compaction(_)))
        {
            // Both ways of visiting compaction candidates give the state apply produced.
            for walk in [true, false] {
                let mut other = before.clone();
                other.compact_with(compaction.revision, walk);
                assert_eq!(other, store, "compaction with walk = {walk}");
            }
        }
        let (response, events) = model.apply(&command);
        assert_eq!(applied.response, response, "response to {command:?}");
        assert_eq!(applied.events, events, "events of {command:?}");
        super::helpers::check_invariants(&store);
        assert_eq!(
            applied.revision,
            model.revision(),
            "revision after {command:?}"
        );
        if let Some(Command::Txn(txn)) = &command.command
            && crate::is_read_only_txn(txn)
        {
            // The local read-only path answers exactly what apply answered.
            let applied_answer = match &applied.response.response {
                Some(Response::Txn(response)) => Ok(response.clone()),
                Some(Response::Error(error)) => {
                    Err(EtcdError::from_message(&error.message).expect("catalogue error"))
                }
                other => panic!("unexpected {other:?}"),
            };
            assert_eq!(store.txn_read_only(txn), applied_answer);
        }
        commands.push(command);
    }
    check_reads_agree(&store, &model);
    (store, commands)
}

proptest! {
    // 512 cases by default; PROPTEST_CASES raises it for a longer soak.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|cases| cases.parse().ok()).unwrap_or(512),
        .. ProptestConfig::default()
    })]

    #[test]
    fn store_matches_the_model(steps in prop::collection::vec(step(), 1..80)) {
        run(&steps);
    }

    #[test]
    fn snapshots_and_replicas_are_identical(steps in prop::collection::vec(step(), 1..40)) {
        let (store, commands) = run(&steps);
        // Determinism: a second member fed the same log ends identical.
        let mut replica = Store::new();
        for command in &commands {
            replica.apply(command);
        }
        prop_assert_eq!(&replica, &store);
        prop_assert_eq!(replica.hash_kv(0), store.hash_kv(0));
        // Snapshot: decode(encode) is the same state, answering the same.
        let decoded = Store::decode_snapshot(&store.encode_snapshot()).expect("decode");
        prop_assert_eq!(&decoded, &store);
        let whole = RangeRequest { key: Bytes::from_static(b"\0"), range_end: Bytes::from_static(b"\0"), ..Default::default() };
        for revision in store.compact_revision().max(1)..=store.revision() {
            let request = RangeRequest { revision, ..whole.clone() };
            prop_assert_eq!(decoded.range(&request), store.range(&request));
            prop_assert_eq!(decoded.hash_kv(revision), store.hash_kv(revision));
        }
        prop_assert_eq!(decoded.events(b"\0", b"\0", 0, i64::MAX), store.events(b"\0", b"\0", 0, i64::MAX));
        // Applying more to both keeps them identical.
        let mut decoded = decoded;
        let mut original = store;
        for command in commands.iter().rev().take(5) {
            prop_assert_eq!(decoded.apply(command), original.apply(command));
        }
    }

    /// A member swaps in the index decoded from a snapshot it took a while ago: nothing it
    /// answers may change, and the versions the snapshot holds use its copies of their values.
    #[test]
    fn adopting_an_earlier_snapshots_index_changes_nothing(
        steps in prop::collection::vec(step(), 1..40),
        cut in 0usize..40,
    ) {
        let (store, commands) = run(&steps);
        let mut earlier = Store::new();
        for command in &commands[..cut.min(commands.len())] {
            earlier.apply(command);
        }
        let encoded = earlier.encode_snapshot();
        let mapped = Bytes::from(encoded.clone());
        let snapshot = Store::decode_snapshot_sharing(&encoded, &mapped).expect("decode");
        let mut adopted = store.clone();
        let outcome = adopted.adopt_index(snapshot).map(drop);
        prop_assert_eq!(&adopted, &store);
        match outcome {
            Ok(()) => {
                prop_assert!(older_values_inside(&adopted, earlier.revision(), &mapped));
                prop_assert_eq!(adopted.hash_kv(0), store.hash_kv(0));
                prop_assert_eq!(adopted.events(b"\0", b"\0", 0, i64::MAX), store.events(b"\0", b"\0", 0, i64::MAX));
                super::helpers::check_invariants(&adopted);
                let mut original = store;
                for command in commands.iter().rev().take(5) {
                    prop_assert_eq!(adopted.apply(command), original.apply(command));
                }
                prop_assert_eq!(adopted, original);
            }
            Err(crate::AdoptRefused::CompactedPast) => {
                prop_assert!(store.compact_revision() > earlier.revision());
            }
            Err(refused) => prop_assert!(false, "refused: {}", refused),
        }
    }
}

/// Whether every version of `store` at or below `revision` with a value has it inside `mapped`.
fn older_values_inside(store: &Store, revision: i64, mapped: &Bytes) -> bool {
    let range = mapped.as_ptr() as usize..mapped.as_ptr() as usize + mapped.len();
    store.keys.values().all(|history| {
        history
            .entries()
            .iter()
            .filter(|entry| entry.revision <= revision && !entry.value.is_empty())
            .all(|entry| range.contains(&(entry.value.as_ptr() as usize)))
    })
}
