//! The log writer thread: appends readable at once, durable when the callback says so, every
//! write applied in submission order, and the cache never dropping an entry that is not durable.

use etcd_proto::etcdserverpb::PutRequest;
use etcd_proto::raftcmd::{RaftBatch, RaftCommand, raft_command::Command};
use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::type_config::TypeConfigExt;
use openraft::{EntryPayload, RaftLogReader, Vote};

use super::*;

fn normal(term: u64, index: u64) -> Entry {
    Entry {
        log_id: log_id(term, 1, index),
        payload: EntryPayload::Normal(RaftRequest(RaftBatch {
            commands: vec![RaftCommand {
                command: Some(Command::Put(PutRequest {
                    key: format!("k{index}").into(),
                    value: format!("v{term}").into(),
                    ..Default::default()
                })),
            }],
        })),
    }
}

/// Entries stored durably in the write-ahead log.
fn entries_on_disk(storage: &Storage) -> u64 {
    storage.log_store.entries_on_disk() as u64
}

#[tokio::test]
async fn appended_entries_are_on_disk_when_the_callback_reports_them_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut storage = Storage::open(dir.path(), 16).unwrap();
    let entries: Vec<Entry> = (1..=5).map(|i| normal(1, i)).collect();
    let (written_tx, written_rx) = TypeConfig::oneshot();
    storage
        .log_store
        .append(entries.clone(), IOFlushed::signal(written_tx))
        .await
        .unwrap();
    // Readable as soon as append returns, durable or not.
    assert_eq!(
        storage.log_store.try_get_log_entries(1..=5).await.unwrap(),
        entries
    );
    written_rx.await.unwrap().unwrap();
    assert_eq!(entries_on_disk(&storage), 5);
    assert_eq!(storage.log_store.write_stats().snapshot().1, 5);
}

#[tokio::test]
async fn reads_span_disk_and_memory_whatever_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let mut storage = Storage::open(dir.path(), 16).unwrap();
    let total = 3 * 4096 + 17;
    let entries: Vec<Entry> = (1..=total).map(|i| normal(1, i)).collect();
    for chunk in entries.chunks(1000) {
        storage
            .log_store
            .append(chunk.to_vec(), IOFlushed::noop())
            .await
            .unwrap();
    }
    // Some of these may still be queued; the whole log is readable either way.
    assert_eq!(
        storage
            .log_store
            .try_get_log_entries(1..=total)
            .await
            .unwrap(),
        entries
    );
    storage.log_store.flush().await.unwrap();
    assert_eq!(entries_on_disk(&storage), total);
    // Once durable, the oldest entries leave memory at the next append and are read back from
    // the file.
    let next = normal(1, total + 1);
    storage
        .log_store
        .append(vec![next.clone()], IOFlushed::noop())
        .await
        .unwrap();
    let everything = [&entries[..], &[next]].concat();
    assert_eq!(
        storage
            .log_store
            .try_get_log_entries(1..=total + 1)
            .await
            .unwrap(),
        everything
    );
    assert_eq!(
        storage.log_store.try_get_log_entries(3..40).await.unwrap(),
        entries[2..39].to_vec()
    );
}

#[tokio::test]
async fn writes_apply_in_submission_order_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let old: Vec<Entry> = (1..=10).map(|i| normal(1, i)).collect();
    let new: Vec<Entry> = (6..=8).map(|i| normal(2, i)).collect();
    let vote = Vote::new_committed(2, 1);
    {
        let mut storage = Storage::open(dir.path(), 16).unwrap();
        storage
            .log_store
            .append(old.clone(), IOFlushed::noop())
            .await
            .unwrap();
        // Queued behind the append: the truncation must not run before it.
        storage
            .log_store
            .truncate_after(Some(log_id(1, 1, 5)))
            .await
            .unwrap();
        storage.log_store.save_vote(&vote).await.unwrap();
        storage
            .log_store
            .append(new.clone(), IOFlushed::noop())
            .await
            .unwrap();
        storage.log_store.purge(log_id(1, 1, 2)).await.unwrap();
        assert_eq!(
            storage.log_store.try_get_log_entries(0..100).await.unwrap(),
            [&old[2..5], &new[..]].concat()
        );
        // Dropping the storage writes what is still queued and closes the file.
    }
    let mut storage = Storage::open(dir.path(), 16).unwrap();
    assert_eq!(storage.log_store.read_vote().await.unwrap(), Some(vote));
    let state = storage.log_store.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 1, 2)));
    assert_eq!(state.last_log_id, Some(log_id(2, 1, 8)));
    assert_eq!(
        storage.log_store.try_get_log_entries(0..100).await.unwrap(),
        [&old[2..5], &new[..]].concat()
    );
}
