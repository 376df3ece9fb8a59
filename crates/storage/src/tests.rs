//! Storage-level tests: what is written survives a reopen, and foreign formats are refused.

use std::collections::BTreeMap;

use etcd_proto::etcdserverpb::PutRequest;
use etcd_proto::raftcmd::{RaftBatch, RaftCommand, raft_command::Command};
use futures::stream;
use openraft::storage::{IOFlushed, RaftLogStorage, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, Membership as RaftMembership, RaftLogReader, Vote};
use redb::ReadableDatabase;

use super::*;

fn put(key: &str, value: &str) -> RaftCommand {
    RaftCommand {
        command: Some(Command::Put(PutRequest {
            key: key.to_string().into(),
            value: value.to_string().into(),
            ..Default::default()
        })),
    }
}

fn normal(index: u64, commands: Vec<RaftCommand>) -> Entry {
    Entry {
        log_id: log_id(1, 1, index),
        payload: EntryPayload::Normal(RaftRequest(RaftBatch { commands })),
    }
}

fn membership_entry(index: u64) -> Entry {
    let nodes = BTreeMap::from([(1u64, MemberNode::default())]);
    Entry {
        log_id: log_id(1, 1, index),
        payload: EntryPayload::Membership(RaftMembership::new(vec![[1u64].into()], nodes).unwrap()),
    }
}

#[tokio::test]
async fn log_vote_committed_and_snapshot_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let entries: Vec<Entry> = std::iter::once(membership_entry(1))
        .chain((2..=20).map(|i| normal(i, vec![put(&format!("k{i}"), "v")])))
        .collect();
    let vote = Vote::new_committed(1, 1);
    {
        let mut storage = Storage::open(dir.path(), 16).unwrap();
        storage.log_store.save_vote(&vote).await.unwrap();
        storage
            .log_store
            .append(entries.clone(), IOFlushed::noop())
            .await
            .unwrap();
        storage
            .log_store
            .save_committed(Some(log_id(1, 1, 10)))
            .await
            .unwrap();
        // Apply the first ten entries and snapshot them.
        let to_apply: Vec<_> = entries[..10]
            .iter()
            .cloned()
            .map(|e| Ok((e, None)))
            .collect();
        storage
            .state_machine
            .apply(stream::iter(to_apply))
            .await
            .unwrap();
        let snapshot = storage.state_machine.build_snapshot().await.unwrap();
        assert_eq!(snapshot.meta.last_log_id, Some(log_id(1, 1, 10)));
        // Closing the store writes the newest committed id, whether or not a later group did.
        storage.log_store.save_vote(&vote).await.unwrap();
    }
    let mut storage = Storage::open(dir.path(), 16).unwrap();
    assert_eq!(storage.log_store.read_vote().await.unwrap(), Some(vote));
    assert_eq!(
        storage.log_store.read_committed().await.unwrap(),
        Some(log_id(1, 1, 10))
    );
    let state = storage.log_store.get_log_state().await.unwrap();
    assert_eq!(state.last_log_id, Some(log_id(1, 1, 20)));
    assert_eq!(state.last_purged_log_id, None);
    assert_eq!(
        storage.log_store.try_get_log_entries(1..=20).await.unwrap(),
        entries
    );
    let (applied, membership) = storage.state_machine.applied_state().await.unwrap();
    assert_eq!(applied, Some(log_id(1, 1, 10)));
    assert_eq!(membership.log_id(), &Some(log_id(1, 1, 1)));
    // Nine puts on top of the empty store's revision.
    assert_eq!(
        storage.shared.read().store.revision(),
        Store::new().revision() + 9
    );
    let current = storage
        .state_machine
        .get_current_snapshot()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(current.meta.last_log_id, Some(log_id(1, 1, 10)));
}

#[tokio::test]
async fn truncate_and_purge_move_the_log_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let mut storage = Storage::open(dir.path(), 16).unwrap();
    let entries: Vec<Entry> = (1..=10).map(|i| normal(i, vec![put("k", "v")])).collect();
    storage
        .log_store
        .append(entries.clone(), IOFlushed::noop())
        .await
        .unwrap();
    storage
        .log_store
        .truncate_after(Some(log_id(1, 1, 7)))
        .await
        .unwrap();
    storage.log_store.purge(log_id(1, 1, 3)).await.unwrap();
    let state = storage.log_store.get_log_state().await.unwrap();
    assert_eq!(state.last_log_id, Some(log_id(1, 1, 7)));
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 1, 3)));
    assert_eq!(
        storage.log_store.try_get_log_entries(0..100).await.unwrap(),
        entries[3..7].to_vec()
    );
    drop(storage);
    let mut storage = Storage::open(dir.path(), 16).unwrap();
    let state = storage.log_store.get_log_state().await.unwrap();
    assert_eq!(state.last_log_id, Some(log_id(1, 1, 7)));
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 1, 3)));
    assert_eq!(
        storage.log_store.try_get_log_entries(0..100).await.unwrap(),
        entries[3..7].to_vec()
    );
}

#[tokio::test]
async fn apply_answers_every_command_and_publishes_events_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut storage = Storage::open(dir.path(), 16).unwrap();
    let mut events = storage.shared.subscribe();
    let batch = normal(1, vec![put("a", "1"), put("b", "2"), put("c", "3")]);
    storage
        .state_machine
        .apply(stream::iter(vec![Ok((batch, None))]))
        .await
        .unwrap();
    let revisions: Vec<i64> = (0..3)
        .map(|_| events.try_recv().unwrap().revision)
        .collect();
    let base = Store::new().revision();
    assert_eq!(revisions, vec![base + 1, base + 2, base + 3]);
    assert_eq!(*storage.shared.watch_applied_index().borrow(), 1);
}

#[test]
fn identity_is_persisted() {
    let dir = tempfile::tempdir().unwrap();
    let identity = MemberIdentity {
        member_id: 7,
        cluster_id: 9,
    };
    {
        let storage = Storage::open(dir.path(), 16).unwrap();
        assert_eq!(storage.db.identity().unwrap(), None);
        storage.db.save_identity(&identity).unwrap();
    }
    let storage = Storage::open(dir.path(), 16).unwrap();
    assert_eq!(storage.db.identity().unwrap(), Some(identity));
}

#[test]
fn another_format_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let storage = Storage::open(dir.path(), 16).unwrap();
        let txn = storage.db.database.begin_write().unwrap();
        {
            let mut meta = txn.open_table(schema::META).unwrap();
            meta.insert(schema::FORMAT_VERSION_KEY, 99u32.to_be_bytes().as_slice())
                .unwrap();
        }
        txn.commit().unwrap();
    }
    match Storage::open(dir.path(), 16) {
        Err(StorageError::FormatMismatch {
            found, expected, ..
        }) => {
            assert_eq!(found, Some(99));
            assert_eq!(expected, schema::FORMAT_VERSION);
        }
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("a foreign format was opened"),
    }
    // The refused file is left as it was.
    let database = redb::Database::open(dir.path().join(schema::DB_FILE_NAME)).unwrap();
    let txn = database.begin_read().unwrap();
    let meta = txn.open_table(schema::META).unwrap();
    assert_eq!(
        meta.get(schema::FORMAT_VERSION_KEY)
            .unwrap()
            .unwrap()
            .value(),
        99u32.to_be_bytes()
    );
}

#[tokio::test]
async fn committed_id_is_written_without_waiting_for_an_append_or_an_fsync() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut storage = Storage::open(dir.path(), 16).unwrap();
        storage
            .log_store
            .append(vec![normal(1, vec![put("a", "1")])], IOFlushed::noop())
            .await
            .unwrap();
        storage
            .log_store
            .save_committed(Some(log_id(1, 1, 1)))
            .await
            .unwrap();
        assert_eq!(
            storage.log_store.read_committed().await.unwrap(),
            Some(log_id(1, 1, 1))
        );
        // No later append: the last committed id of an idle member must reach the file too,
        // or a restart would serve the state before it.
    }
    let mut storage = Storage::open(dir.path(), 16).unwrap();
    assert_eq!(
        storage.log_store.read_committed().await.unwrap(),
        Some(log_id(1, 1, 1))
    );
    let stats = storage.log_store.write_stats();
    assert_eq!(stats.snapshot(), (0, 0));
}

#[tokio::test]
async fn an_idle_writer_stores_the_committed_id_while_running() {
    let dir = tempfile::tempdir().unwrap();
    let mut storage = Storage::open(dir.path(), 16).unwrap();
    storage
        .log_store
        .append(vec![normal(1, vec![put("a", "1")])], IOFlushed::noop())
        .await
        .unwrap();
    storage.log_store.flush().await.unwrap();
    storage
        .log_store
        .save_committed(Some(log_id(1, 1, 1)))
        .await
        .unwrap();
    // A process killed now keeps what the writer wrote: read the file as a restart would,
    // while the member still runs, until the committed id is there.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, _, meta) = crate::wal::Wal::open(storage.db.dir()).unwrap();
        let committed: Option<Option<LogId>> = meta
            .committed
            .as_deref()
            .map(|bytes| serde_json::from_slice(bytes).unwrap());
        if committed == Some(Some(log_id(1, 1, 1))) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the idle writer never stored the committed id: {committed:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn cached_entries_do_not_keep_the_proposers_buffers() {
    let dir = tempfile::tempdir().unwrap();
    let mut storage = Storage::open(dir.path(), 16).unwrap();
    // A value that is a slice of a larger receive buffer, as a decoded client request's is.
    let buffer = bytes::Bytes::from(vec![b'v'; 8192]);
    let command = RaftCommand {
        command: Some(Command::Put(PutRequest {
            key: "k".to_string().into(),
            value: buffer.slice(0..256),
            ..Default::default()
        })),
    };
    storage
        .log_store
        .append(vec![normal(1, vec![command])], IOFlushed::noop())
        .await
        .unwrap();
    let cached = storage.log_store.try_get_log_entries(1..2).await.unwrap();
    let EntryPayload::Normal(request) = &cached[0].payload else {
        panic!("not a normal entry");
    };
    let Some(Command::Put(put)) = &request.0.commands[0].command else {
        panic!("not a put");
    };
    assert_eq!(put.value.len(), 256);
    let inside = buffer.as_ptr_range();
    assert!(
        !inside.contains(&put.value.as_ptr()),
        "the cached entry still points into the proposer's buffer"
    );
}

#[tokio::test]
async fn snapshot_lives_in_its_own_file_and_a_damaged_one_is_refused_by_path() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut storage = Storage::open(dir.path(), 16).unwrap();
        let entries = vec![membership_entry(1), normal(2, vec![put("a", "1")])];
        let to_apply: Vec<_> = entries.into_iter().map(|e| Ok((e, None))).collect();
        storage
            .state_machine
            .apply(stream::iter(to_apply))
            .await
            .unwrap();
        storage.state_machine.build_snapshot().await.unwrap();
    }
    let path = dir.path().join(SNAPSHOT_FILE_NAME);
    assert!(path.exists());
    // Nothing of the snapshot is left in redb.
    {
        let storage = Storage::open(dir.path(), 16).unwrap();
        let txn = storage.db.database.begin_read().unwrap();
        let table = txn.open_table(schema::SNAPSHOT).unwrap();
        assert!(table.get(schema::SNAPSHOT_DATA_KEY).unwrap().is_none());
        assert_eq!(storage.shared.read().last_applied, Some(log_id(1, 1, 2)));
    }
    // A flipped byte in the store's bytes fails the store's own checksum.
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 10;
    bytes[last] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let error = Storage::open(dir.path(), 16).err().unwrap().to_string();
    assert!(error.contains(&path.display().to_string()), "{error}");
    assert!(error.contains("checksum"), "{error}");
}

#[tokio::test]
async fn previous_format_moves_its_snapshot_to_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::new();
    store.apply(&put("old", "value"));
    let meta = SnapshotMeta {
        last_log_id: Some(log_id(1, 1, 7)),
        last_membership: Membership::default(),
    };
    {
        // Lay out a version 1 file: the snapshot inside redb.
        let storage = Storage::open(dir.path(), 16).unwrap();
        let txn = storage.db.database.begin_write().unwrap();
        {
            let mut meta_table = txn.open_table(schema::META).unwrap();
            meta_table
                .insert(schema::FORMAT_VERSION_KEY, 1u32.to_be_bytes().as_slice())
                .unwrap();
            let mut table = txn.open_table(schema::SNAPSHOT).unwrap();
            table
                .insert(
                    schema::SNAPSHOT_META_KEY,
                    serde_json::to_vec(&meta).unwrap().as_slice(),
                )
                .unwrap();
            table
                .insert(
                    schema::SNAPSHOT_DATA_KEY,
                    store.encode_snapshot().as_slice(),
                )
                .unwrap();
        }
        txn.commit().unwrap();
    }
    let mut storage = Storage::open(dir.path(), 16).unwrap();
    assert!(dir.path().join(SNAPSHOT_FILE_NAME).exists());
    let (applied, _) = storage.state_machine.applied_state().await.unwrap();
    assert_eq!(applied, Some(log_id(1, 1, 7)));
    assert_eq!(storage.shared.read().store.revision(), store.revision());
    let txn = storage.db.database.begin_read().unwrap();
    let table = txn.open_table(schema::SNAPSHOT).unwrap();
    assert!(table.get(schema::SNAPSHOT_DATA_KEY).unwrap().is_none());
    let meta_table = txn.open_table(schema::META).unwrap();
    assert_eq!(
        meta_table
            .get(schema::FORMAT_VERSION_KEY)
            .unwrap()
            .unwrap()
            .value(),
        schema::FORMAT_VERSION.to_be_bytes()
    );
}

#[tokio::test]
async fn format_2_log_moves_to_the_write_ahead_log() {
    let dir = tempfile::tempdir().unwrap();
    let entries: Vec<Entry> = (4..=9).map(|i| normal(i, vec![put("k", "v")])).collect();
    let vote = Vote::new_committed(3, 1);
    {
        // Lay out a version 2 file: log, vote, committed id and purge point inside redb.
        let storage = Storage::open(dir.path(), 16).unwrap();
        let txn = storage.db.database.begin_write().unwrap();
        {
            let mut meta = txn.open_table(schema::META).unwrap();
            let mut set = |key: &str, value: Vec<u8>| {
                meta.insert(key, value.as_slice()).unwrap();
            };
            set(schema::FORMAT_VERSION_KEY, 2u32.to_be_bytes().to_vec());
            set(schema::VOTE_KEY, serde_json::to_vec(&vote).unwrap());
            set(
                schema::COMMITTED_KEY,
                serde_json::to_vec(&Some(log_id(1, 1, 8))).unwrap(),
            );
            set(
                schema::LAST_PURGED_KEY,
                serde_json::to_vec(&log_id(1, 1, 3)).unwrap(),
            );
            let mut log = txn.open_table(schema::LOG).unwrap();
            for entry in &entries {
                log.insert(
                    schema::log_key(entry.log_id.index),
                    encode_entry(entry).unwrap().as_slice(),
                )
                .unwrap();
            }
        }
        txn.commit().unwrap();
    }
    // A version 2 data dir has no write-ahead log yet.
    std::fs::remove_dir_all(dir.path().join(WAL_DIR)).unwrap();

    let mut storage = Storage::open(dir.path(), 16).unwrap();
    let state = storage.log_store.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 1, 3)));
    assert_eq!(state.last_log_id, Some(log_id(1, 1, 9)));
    assert_eq!(
        storage.log_store.try_get_log_entries(0..100).await.unwrap(),
        entries
    );
    assert_eq!(storage.log_store.read_vote().await.unwrap(), Some(vote));
    assert_eq!(
        storage.log_store.read_committed().await.unwrap(),
        Some(log_id(1, 1, 8))
    );
    let txn = storage.db.database.begin_read().unwrap();
    let log = txn.open_table(schema::LOG).unwrap();
    assert_eq!(redb::ReadableTableMetadata::len(&log).unwrap(), 0);
    let meta = txn.open_table(schema::META).unwrap();
    assert!(meta.get(schema::VOTE_KEY).unwrap().is_none());
    assert_eq!(
        meta.get(schema::FORMAT_VERSION_KEY)
            .unwrap()
            .unwrap()
            .value(),
        schema::FORMAT_VERSION.to_be_bytes()
    );
}

/// Address ranges of this process's mappings of files named `snapshot` (a replaced one shows as
/// `snapshot (deleted)`).
fn snapshot_mappings() -> Vec<std::ops::Range<usize>> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    maps.lines()
        .filter(|line| {
            let line = line.trim_end_matches(" (deleted)");
            line.ends_with(&format!("/{SNAPSHOT_FILE_NAME}"))
        })
        .map(|line| {
            let range = line.split_whitespace().next().unwrap();
            let (start, end) = range.split_once('-').unwrap();
            usize::from_str_radix(start, 16).unwrap()..usize::from_str_radix(end, 16).unwrap()
        })
        .collect()
}

/// Every key's current value, and whether it lies in a mapping of a snapshot file.
fn values_and_places(storage: &Storage) -> Vec<(String, String, bool)> {
    let mappings = snapshot_mappings();
    let state = storage.shared.read();
    let response = state
        .store
        .range(&etcd_proto::etcdserverpb::RangeRequest {
            key: b"\0".to_vec().into(),
            range_end: b"\0".to_vec().into(),
            ..Default::default()
        })
        .unwrap();
    response
        .kvs
        .iter()
        .map(|kv| {
            let at = kv.value.as_ptr() as usize;
            (
                String::from_utf8(kv.key.to_vec()).unwrap(),
                String::from_utf8(kv.value.to_vec()).unwrap(),
                mappings.iter().any(|mapping| mapping.contains(&at)),
            )
        })
        .collect()
}

#[tokio::test]
async fn values_move_to_the_snapshot_file_and_stay_readable_when_it_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let value = |key: &str, round: u32| format!("{key} value of round {round}, long enough");
    let apply = |index: u64, key: &str, round: u32| {
        Ok((normal(index, vec![put(key, &value(key, round))]), None))
    };
    let row = |key: &str, round: u32, mapped: bool| (key.to_string(), value(key, round), mapped);
    let all_in_the_file = vec![
        row("a", 1, true),
        row("b", 2, true),
        row("c", 1, true),
        row("d", 2, true),
    ];
    {
        let mut storage = Storage::open(dir.path(), 16).unwrap();
        let first = vec![
            Ok((membership_entry(1), None)),
            apply(2, "a", 1),
            apply(3, "b", 1),
            apply(4, "c", 1),
        ];
        storage
            .state_machine
            .apply(stream::iter(first))
            .await
            .unwrap();
        storage.state_machine.build_snapshot().await.unwrap();
        assert_eq!(
            values_and_places(&storage),
            vec![row("a", 1, true), row("b", 1, true), row("c", 1, true)]
        );
        // Written after the snapshot: in memory until the next one, which replaces the file.
        let second = vec![apply(5, "b", 2), apply(6, "d", 2)];
        storage
            .state_machine
            .apply(stream::iter(second))
            .await
            .unwrap();
        assert_eq!(
            values_and_places(&storage),
            vec![
                row("a", 1, true),
                row("b", 2, false),
                row("c", 1, true),
                row("d", 2, false)
            ]
        );
        storage.state_machine.build_snapshot().await.unwrap();
        assert_eq!(values_and_places(&storage), all_in_the_file);
        // Nothing refers to the replaced file any more, so it is no longer mapped.
        let dir_maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let own = format!("{}/{SNAPSHOT_FILE_NAME} (deleted)", dir.path().display());
        assert!(!dir_maps.contains(&own), "{dir_maps}");
    }
    // A restart maps the file again instead of copying its values.
    let storage = Storage::open(dir.path(), 16).unwrap();
    assert_eq!(values_and_places(&storage), all_in_the_file);
}
