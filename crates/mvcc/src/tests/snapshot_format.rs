//! The snapshot format is a storage format: a member restarts from bytes an older build wrote.
//! These golden tests pin the current format (version 2, with auth state) byte for byte and keep
//! decoding version 1 (written before auth existed); changing the encoding must bump
//! `SNAPSHOT_FORMAT_VERSION`, keep decoders for the older versions, and add a fixture for the new
//! one. Regenerate the current fixture (only together with a version bump) with
//! `MVCC_WRITE_SNAPSHOT_FIXTURE=1`.

use etcd_proto::etcdserverpb::AlarmType;
use etcd_proto::etcdserverpb::alarm_request::AlarmAction;

use etcd_proto::authpb::permission::Type;

use super::helpers::*;
use super::rules_auth::*;
use crate::{SNAPSHOT_FORMAT_VERSION, Store};

const FIXTURE_V1: &[u8] = include_bytes!("fixtures/snapshot_v1.bin");
const FIXTURE_V2: &[u8] = include_bytes!("fixtures/snapshot_v2.bin");

/// A store touching every part of the format: live keys, overwritten and re-created keys,
/// tombstones kept after compaction, a txn with several sub-revisions, leases with and without
/// keys, and an alarm.
fn fixture_store() -> Store {
    let mut store = Store::new();
    store.apply(&grant(7, 30));
    store.apply(&grant(8, 60));
    do_put(&mut store, put("a", "1")).expect("put");
    do_put(&mut store, put("a", "2")).expect("put");
    do_put(&mut store, put_lease("b", "leased", 7)).expect("put");
    do_delete(&mut store, delete("a", "")).expect("delete");
    do_put(&mut store, put("a", "again")).expect("put");
    do_txn(
        &mut store,
        txn(
            vec![],
            vec![op_put(put("c", "x")), op_put(put("d", "y"))],
            vec![],
        ),
    )
    .expect("txn");
    do_delete(&mut store, delete("d", "")).expect("delete");
    store.apply(&compact(4));
    store.apply(&alarm(AlarmAction::Activate, 3, AlarmType::Nospace));
    store
}

/// The version 1 store plus auth state: users with and without passwords, roles with several
/// permissions (point, range, open-ended), the root role, auth enabled.
fn fixture_store_v2() -> Store {
    let mut store = fixture_store();
    for command in [
        user_add("root", "$2b$04$root"),
        user_add_no_password("reader"),
        role_add("readers"),
        grant_permission("readers", Type::Read, "a", ""),
        grant_permission("readers", Type::Readwrite, "b", "c"),
        grant_permission("readers", Type::Write, "z", "\0"),
        user_grant_role("root", "root"),
        user_grant_role("reader", "readers"),
        auth_enable(),
    ] {
        expect_auth_ok(&mut store, command);
    }
    store
}

#[test]
fn format_version_2_is_stable() {
    assert_eq!(SNAPSHOT_FORMAT_VERSION, 2);
    let store = fixture_store_v2();
    let encoded = store.encode_snapshot();
    if std::env::var_os("MVCC_WRITE_SNAPSHOT_FIXTURE").is_some() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/tests/fixtures/snapshot_v2.bin"
        );
        std::fs::write(path, &encoded).expect("write fixture");
        return;
    }
    assert_eq!(encoded, FIXTURE_V2, "the version 2 encoding changed");
    let decoded = Store::decode_snapshot(FIXTURE_V2).expect("decode the version 2 fixture");
    assert_eq!(decoded, store);
    assert!(decoded.auth_enabled());
    assert_eq!(decoded.auth_revision(), store.auth_revision());
    assert_eq!(decoded.auth_user_names(), vec!["reader", "root"]);
    assert_eq!(decoded.auth_role("readers").expect("role").len(), 3);
    check_invariants(&decoded);
}

#[test]
fn format_version_1_still_decodes() {
    let store = fixture_store();
    let decoded = Store::decode_snapshot(FIXTURE_V1).expect("decode the version 1 fixture");
    assert!(!decoded.auth_enabled());
    assert_eq!(decoded.auth_revision(), 1);
    assert_eq!(decoded, store);
    check_invariants(&decoded);
    assert_eq!(decoded.lease(7).expect("lease 7").keys, vec![b("b")]);
    assert_eq!(
        decoded.events(b"\0", b"\0", 5, i64::MAX),
        store.events(b"\0", b"\0", 5, i64::MAX)
    );
}

/// Whether every stored value of `store` lies inside `mapped`'s bytes.
fn values_inside(store: &Store, mapped: &bytes::Bytes) -> bool {
    let range = mapped.as_ptr() as usize..mapped.as_ptr() as usize + mapped.len() + 1;
    store.keys.values().all(|history| {
        history
            .entries()
            .iter()
            .all(|entry| entry.value.is_empty() || range.contains(&(entry.value.as_ptr() as usize)))
    })
}

#[test]
fn decoding_sharing_a_mapping_gives_the_same_store_with_values_in_the_mapping() {
    let store = fixture_store_v2();
    let encoded = store.encode_snapshot();
    let mapped = bytes::Bytes::from(encoded.clone());
    let shared = Store::decode_snapshot_sharing(&encoded, &mapped).expect("decode");
    assert_eq!(shared, store);
    assert!(values_inside(&shared, &mapped));
    assert!(!values_inside(
        &Store::decode_snapshot(&encoded).expect("decode"),
        &mapped
    ));
    let shorter = mapped.slice(1..);
    assert!(Store::decode_snapshot_sharing(&encoded, &shorter).is_err());
}

#[test]
fn values_listed_from_a_snapshot_replace_the_stores_own_copies() {
    let mut store = fixture_store_v2();
    let before = store.clone();
    let encoded = store.encode_snapshot();
    let mapped = bytes::Bytes::from(encoded.clone());
    let mut versions = 0;
    for listed in crate::SnapshotValues::new(&encoded).expect("list") {
        let listed = listed.expect("well-formed");
        assert!(store.share_value(
            listed.key,
            listed.revision,
            listed.sub,
            mapped.slice(listed.value)
        ));
        versions += 1;
    }
    let stored: usize = store
        .keys
        .values()
        .map(|history| history.entries().len())
        .sum();
    assert_eq!(versions, stored);
    assert_eq!(store, before, "sharing changes no value");
    assert!(values_inside(&store, &mapped));
    // A version written after the snapshot keeps its own copy; unknown versions are left alone.
    store.apply(&alarm(AlarmAction::Deactivate, 3, AlarmType::Nospace));
    do_put(&mut store, put("a", "newer")).expect("put");
    assert!(!store.share_value(
        b"a",
        store.revision + 1,
        0,
        bytes::Bytes::from_static(b"newer")
    ));
    assert!(!store.share_value(b"a", store.revision, 0, bytes::Bytes::from_static(b"lo")));
    assert!(!store.share_value(b"missing", 2, 0, bytes::Bytes::new()));
    assert_eq!(
        store
            .keys
            .get(b"a".as_slice())
            .and_then(|history| history.latest_live())
            .map(|entry| entry.value.clone()),
        Some(bytes::Bytes::from_static(b"newer"))
    );
}

mod damaged {
    use proptest::prelude::*;

    use super::*;

    /// Re-seals a damaged body with a valid checksum, so the structural checks behind the CRC run.
    fn reseal(mut bytes: Vec<u8>) -> Vec<u8> {
        if bytes.len() >= 4 {
            let body_length = bytes.len() - 4;
            let checksum = crc32fast::hash(&bytes[..body_length]);
            bytes[body_length..].copy_from_slice(&checksum.to_le_bytes());
        }
        bytes
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: std::env::var("PROPTEST_CASES").ok().and_then(|cases| cases.parse().ok()).unwrap_or(512),
            .. ProptestConfig::default()
        })]

        /// Damaged snapshots are refused or decode into a store whose derived structures are
        /// consistent; decode never panics and never trusts a length it cannot back with bytes.
        #[test]
        fn damaged_snapshots_never_panic(
            flips in prop::collection::vec((0_usize..600, any::<u8>()), 1..4),
            cut in prop::option::of(0_usize..600),
            version_1 in any::<bool>(),
        ) {
            let mut bytes = if version_1 { FIXTURE_V1.to_vec() } else { FIXTURE_V2.to_vec() };
            for (position, value) in flips {
                let position = position % bytes.len();
                bytes[position] = value;
            }
            if let Some(cut) = cut {
                bytes.truncate(cut);
            }
            // Checksum-protected: unchanged bytes decode, anything else is refused.
            if let Ok(store) = Store::decode_snapshot(&bytes) {
                check_invariants(&store);
            }
            // Resealed: the structural checks alone must hold the line.
            if let Ok(store) = Store::decode_snapshot(&reseal(bytes.clone())) {
                check_invariants(&store);
                let _ = store.events(b"\0", b"\0", 0, i64::MAX);
                let _ = store.hash_kv(0);
                let _ = store.encode_snapshot();
            }
            // Listing value positions stops at the first malformed record and stays in bounds.
            let resealed = reseal(bytes.clone());
            if let Ok(listed) = crate::SnapshotValues::new(&resealed) {
                for value in listed.flatten() {
                    assert!(value.value.end <= resealed.len());
                }
            }
        }
    }
}
