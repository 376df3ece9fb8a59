//! The revision log is bounded: it keeps the newest changes, and a watch window starting before
//! them is replayed from the key histories with the same events.

use super::helpers::*;
use crate::Store;
use crate::store::REVISION_LOG_CAPACITY;

/// A store with `REVISION_LOG_CAPACITY + 100` puts cycling over 1000 keys (revisions 2 onwards).
fn overflowing_store() -> Store {
    let mut store = Store::new();
    for index in 0..REVISION_LOG_CAPACITY + 100 {
        do_put(&mut store, put(&format!("k{:04}", index % 1000), "v")).expect("put");
    }
    store
}

#[test]
fn the_log_keeps_its_newest_changes_and_older_windows_replay_the_same_events() {
    let store = overflowing_store();
    assert_eq!(store.changes.len(), REVISION_LOG_CAPACITY);
    // The first 100 changes (revisions 2..=101) were dropped.
    assert_eq!(store.changes_from, 102);
    for from in [2, 50, 101, 102, 103, store.revision() - 5] {
        let (by_key_scan, _) = store.events_both_ways(b"k", b"l", from, i64::MAX);
        let events = store.events(b"k", b"l", from, i64::MAX).expect("events");
        assert_eq!(
            events.len() as i64,
            store.revision() - from.max(2) + 1,
            "from {from}"
        );
        assert_eq!(events, by_key_scan, "from {from}");
    }
    // Windows inside the log may walk it; both ways agree there.
    let (by_key_scan, by_revision_log) = store.events_both_ways(b"k", b"l", 102, i64::MAX);
    assert_eq!(by_key_scan, by_revision_log);
}

#[test]
fn a_decoded_store_keeps_the_same_log_and_compaction_makes_it_whole_again() {
    let mut store = overflowing_store();
    let decoded = Store::decode_snapshot(&store.encode_snapshot()).expect("decode");
    assert_eq!(decoded, store);
    // Compacting at or past the dropped changes: every readable window is in the log again.
    store.apply(&compact(101));
    assert_eq!(store.changes_from, 0);
    assert_eq!(
        Store::decode_snapshot(&store.encode_snapshot()).expect("decode"),
        store
    );
    let (by_key_scan, by_revision_log) = store.events_both_ways(b"k", b"l", 0, i64::MAX);
    assert_eq!(by_key_scan, by_revision_log);
}

#[test]
fn an_index_is_adopted_only_while_the_log_holds_every_change_since_its_snapshot() {
    let mut store = Store::new();
    do_put(&mut store, put("k", "v")).expect("put");
    let early = store.encode_snapshot();
    let store_then = store.clone();
    let overflowing = overflowing_store();
    let recent = Store::decode_snapshot(&overflowing.encode_snapshot()).expect("decode");
    // Newer than the store: not an earlier state of it.
    let mut adopting = store_then.clone();
    assert_eq!(
        adopting.adopt_index(recent.clone()).err(),
        Some(crate::AdoptRefused::NotEarlier)
    );
    assert_eq!(adopting, store_then);
    // The log dropped changes made since the early snapshot.
    let mut adopting = overflowing.clone();
    let early = Store::decode_snapshot(&early).expect("decode");
    assert_eq!(
        adopting.adopt_index(early).err(),
        Some(crate::AdoptRefused::LogTooShort)
    );
    assert_eq!(adopting, overflowing);
    // The latest snapshot always fits.
    let mut adopting = overflowing.clone();
    assert!(adopting.adopt_index(recent).is_ok());
    assert_eq!(adopting, overflowing);
}
