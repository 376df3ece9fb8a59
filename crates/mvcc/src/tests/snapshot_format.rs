//! The snapshot format is a storage format: a member restarts from bytes an older build wrote.
//! This golden test pins format version 1 byte for byte; changing the encoding must bump
//! `SNAPSHOT_FORMAT_VERSION`, keep a decoder for version 1, and add a fixture for the new version.
//! Regenerate a fixture (only together with a version bump) with `MVCC_WRITE_SNAPSHOT_FIXTURE=1`.

use etcd_proto::etcdserverpb::AlarmType;
use etcd_proto::etcdserverpb::alarm_request::AlarmAction;

use super::helpers::*;
use crate::{SNAPSHOT_FORMAT_VERSION, Store};

const FIXTURE_V1: &[u8] = include_bytes!("fixtures/snapshot_v1.bin");

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

#[test]
fn format_version_1_is_stable() {
    assert_eq!(SNAPSHOT_FORMAT_VERSION, 1);
    let store = fixture_store();
    let encoded = store.encode_snapshot();
    if std::env::var_os("MVCC_WRITE_SNAPSHOT_FIXTURE").is_some() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/tests/fixtures/snapshot_v1.bin"
        );
        std::fs::write(path, &encoded).expect("write fixture");
        return;
    }
    assert_eq!(encoded, FIXTURE_V1, "the version 1 encoding changed");
    let decoded = Store::decode_snapshot(FIXTURE_V1).expect("decode the version 1 fixture");
    assert_eq!(decoded, store);
    check_invariants(&decoded);
    assert_eq!(decoded.lease(7).expect("lease 7").keys, vec![b("b")]);
    assert_eq!(
        decoded.events(b"\0", b"\0", 5, i64::MAX),
        store.events(b"\0", b"\0", 5, i64::MAX)
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
            flips in prop::collection::vec((0_usize..430, any::<u8>()), 1..4),
            cut in prop::option::of(0_usize..430),
        ) {
            let mut bytes = FIXTURE_V1.to_vec();
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
            if let Ok(store) = Store::decode_snapshot(&reseal(bytes)) {
                check_invariants(&store);
                let _ = store.events(b"\0", b"\0", 0, i64::MAX);
                let _ = store.hash_kv(0);
                let _ = store.encode_snapshot();
            }
        }
    }
}
