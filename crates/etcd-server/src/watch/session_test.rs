use etcd_proto::etcdserverpb::WatchCreateRequest;
use etcd_proto::etcdserverpb::watch_create_request::FilterType;
use etcd_proto::mvccpb::event::EventType;
use tokio::sync::broadcast;

use super::*;
use crate::backend::Backend;
use crate::testing::FakeNode;

fn create(key: &str, start_revision: i64) -> WatchCreateRequest {
    WatchCreateRequest {
        key: bytes::Bytes::copy_from_slice(key.as_bytes()),
        start_revision,
        ..WatchCreateRequest::default()
    }
}

/// Revisions of every event delivered to `watch_id`, in order.
fn revisions(responses: &[WatchResponse], watch_id: i64) -> Vec<i64> {
    responses
        .iter()
        .filter(|response| response.watch_id == watch_id)
        .flat_map(|response| response.events.iter())
        .map(event_revision)
        .collect()
}

/// Feeds everything queued on `feed` to the session and runs history replay until every
/// watcher is synced, as the stream task does.
fn drain(
    node: &FakeNode,
    feed: &mut broadcast::Receiver<std::sync::Arc<AppliedEvents>>,
    session: &mut WatchSession,
) -> Vec<WatchResponse> {
    let mut out = Vec::new();
    loop {
        match feed.try_recv() {
            Ok(batch) => out.extend(session.on_applied(&batch)),
            Err(broadcast::error::TryRecvError::Lagged(_)) => {
                session.on_lagged(node.read(|store| store.revision()));
            }
            Err(_) => break,
        }
    }
    out.extend(sync(node, session));
    out
}

/// Runs history replay steps until every watcher is synced.
fn sync(node: &FakeNode, session: &mut WatchSession) -> Vec<WatchResponse> {
    let mut out = Vec::new();
    while session.has_unsynced() {
        out.extend(node.read(|store| session.catch_up_step(store)));
    }
    out
}

/// Creates a watcher as the stream task does: `created`, then any replay.
fn open(
    node: &FakeNode,
    session: &mut WatchSession,
    request: WatchCreateRequest,
) -> Vec<WatchResponse> {
    let mut out = session.create(node.read(|store| store.revision()), request);
    out.extend(sync(node, session));
    out
}

#[test]
fn history_catch_up_then_live_without_gap_or_duplicate() {
    let node = FakeNode::leader(16);
    let mut feed = node.subscribe();
    let mut session = node.read(|store| WatchSession::new(store.revision(), usize::MAX));
    for value in ["1", "2", "3"] {
        node.put("k", value);
    }
    // Batches 2..=4 are still queued on the feed; the watcher starts in the past at revision 3.
    let mut out = open(&node, &mut session, create("k", 3));
    assert!(out[0].created);
    assert_eq!(out[0].header.map(|header| header.revision), Some(4));
    node.put("k", "4");
    out.extend(drain(&node, &mut feed, &mut session));
    assert_eq!(revisions(&out, 0), vec![3, 4, 5]);
}

#[test]
fn lagged_feed_replays_from_history() {
    let node = FakeNode::leader(2);
    let mut feed = node.subscribe();
    let mut session = node.read(|store| WatchSession::new(store.revision(), usize::MAX));
    let mut out = open(&node, &mut session, create("k", 0));
    for value in 0..6 {
        node.put("k", &value.to_string());
    }
    out.extend(drain(&node, &mut feed, &mut session));
    assert_eq!(revisions(&out, 0), vec![2, 3, 4, 5, 6, 7]);
}

#[test]
fn one_batch_spanning_revisions_is_split_per_revision() {
    let node = FakeNode::leader(16);
    let mut session = WatchSession::new(3, usize::MAX);
    node.put("a", "1");
    node.put("b", "2");
    let mut out = open(&node, &mut session, create("a", 0));
    let batch = AppliedEvents {
        revision: 5,
        events: node
            .read(|store| store.events(b"a", b"\0", 2, 3))
            .unwrap_or_default(),
    };
    out.extend(session.on_applied(&batch));
    assert!(
        revisions(&out, 0).is_empty(),
        "revisions at or below creation are skipped"
    );
    let mut fresh = WatchSession::new(1, usize::MAX);
    let from_two = WatchCreateRequest {
        range_end: bytes::Bytes::from_static(b"\0"),
        ..create("a", 4)
    };
    let _ = open(&node, &mut fresh, from_two);
    node.put("c", "3");
    node.put("d", "4");
    let both = AppliedEvents {
        revision: 5,
        events: node
            .read(|store| store.events(b"a", b"\0", 4, 5))
            .unwrap_or_default(),
    };
    let out = fresh.on_applied(&both);
    assert_eq!(out.len(), 2, "one response per revision");
    assert_eq!(revisions(&out, 0), vec![4, 5]);
}

#[test]
fn compacted_start_cancels_with_compact_revision() {
    let node = FakeNode::leader(16);
    for value in ["1", "2", "3"] {
        node.put("k", value);
    }
    node.compact(3);
    let mut session = WatchSession::new(4, usize::MAX);
    let out = open(&node, &mut session, create("k", 2));
    assert_eq!(out.len(), 2);
    assert!(out[0].created);
    assert!(out[1].canceled);
    assert_eq!(out[1].compact_revision, 3);
    assert_eq!(session.watcher_count(), 0);
    let at_compaction = open(&node, &mut session, create("k", 3));
    assert_eq!(at_compaction.len(), 2, "{at_compaction:?}");
    assert!(!at_compaction[1].canceled);
    assert_eq!(revisions(&at_compaction, 1), vec![3, 4]);
    let negative = open(&node, &mut session, create("k", -1));
    assert_eq!(negative[0].watch_id, -1);
    assert!(negative[0].created && negative[0].canceled);
}

#[test]
fn filters_prev_kv_ids_and_cancel() {
    let node = FakeNode::leader(16);
    let mut feed = node.subscribe();
    let mut session = WatchSession::new(1, usize::MAX);
    let no_put = WatchCreateRequest {
        filters: vec![FilterType::Noput as i32],
        prev_kv: true,
        ..create("k", 0)
    };
    let mut out = open(&node, &mut session, no_put);
    out.extend(open(&node, &mut session, create("k", 0)));
    let duplicate = WatchCreateRequest {
        watch_id: 1,
        ..create("k", 0)
    };
    let refused = open(&node, &mut session, duplicate);
    assert!(refused[0].canceled);
    assert_eq!(refused[0].cancel_reason, errors::WATCH_DUPLICATE_ID_REASON);
    node.put("k", "v");
    node.delete("k");
    out.extend(drain(&node, &mut feed, &mut session));
    let deletes: Vec<_> = out
        .iter()
        .filter(|response| response.watch_id == 0)
        .flat_map(|response| response.events.iter())
        .collect();
    assert_eq!(deletes.len(), 1);
    assert_eq!(deletes[0].r#type, EventType::Delete as i32);
    assert!(deletes[0].prev_kv.is_some());
    let all: Vec<_> = out
        .iter()
        .filter(|response| response.watch_id == 1)
        .flat_map(|response| response.events.iter())
        .collect();
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|event| event.prev_kv.is_none()));
    assert!(session.cancel(1)[0].canceled);
    assert!(session.cancel(1).is_empty());
}

#[test]
fn future_start_waits_and_progress_reports_current_revision() {
    let node = FakeNode::leader(16);
    let mut feed = node.subscribe();
    let mut session = WatchSession::new(1, usize::MAX);
    let notify = WatchCreateRequest {
        progress_notify: true,
        ..create("k", 3)
    };
    let mut out = open(&node, &mut session, notify);
    assert_eq!(out.len(), 1);
    node.put("k", "a");
    node.put("k", "b");
    out.extend(drain(&node, &mut feed, &mut session));
    assert_eq!(revisions(&out, 0), vec![3]);
    assert!(
        session.progress_tick().is_empty(),
        "events were sent since the last check"
    );
    let progress = session.progress_tick();
    assert_eq!(progress.len(), 1);
    assert_eq!(progress[0].header.map(|header| header.revision), Some(3));
    let requested = session.progress_request();
    assert_eq!(requested[0].watch_id, -1);
    assert_eq!(requested[0].header.map(|header| header.revision), Some(3));
}

#[test]
fn large_responses_are_fragmented_only_when_asked() {
    let node = FakeNode::leader(16);
    let mut feed = node.subscribe();
    let mut session = WatchSession::new(1, 64);
    let whole = WatchCreateRequest {
        range_end: bytes::Bytes::from_static(b"\0"),
        ..create("a", 0)
    };
    let fragmented = WatchCreateRequest {
        fragment: true,
        ..whole.clone()
    };
    let _ = open(&node, &mut session, whole);
    let _ = open(&node, &mut session, fragmented);
    let txn_puts: Vec<etcd_proto::etcdserverpb::RequestOp> = (0..4)
        .map(|index| etcd_proto::etcdserverpb::RequestOp {
            request: Some(etcd_proto::etcdserverpb::request_op::Request::RequestPut(
                etcd_proto::etcdserverpb::PutRequest {
                    key: bytes::Bytes::from(format!("key-{index}")),
                    value: bytes::Bytes::from(vec![b'v'; 40]),
                    ..Default::default()
                },
            )),
        })
        .collect();
    node.apply(etcd_proto::raftcmd::raft_command::Command::Txn(
        etcd_proto::etcdserverpb::TxnRequest {
            success: txn_puts,
            ..Default::default()
        },
    ));
    let out = drain(&node, &mut feed, &mut session);
    let unfragmented: Vec<_> = out.iter().filter(|r| r.watch_id == 0).collect();
    assert_eq!(unfragmented.len(), 1);
    assert_eq!(unfragmented[0].events.len(), 4);
    let pieces: Vec<_> = out.iter().filter(|r| r.watch_id == 1).collect();
    assert!(pieces.len() > 1);
    assert!(
        pieces[..pieces.len() - 1]
            .iter()
            .all(|piece| piece.fragment)
    );
    assert!(!pieces[pieces.len() - 1].fragment);
    assert_eq!(
        pieces.iter().map(|piece| piece.events.len()).sum::<usize>(),
        4
    );
}

#[test]
fn long_replay_runs_in_windows_and_interleaves_with_live_batches() {
    let node = FakeNode::leader(4096);
    let mut feed = node.subscribe();
    let mut session = node.read(|store| WatchSession::new(store.revision(), usize::MAX));
    for index in 0..2500 {
        node.put("k", &index.to_string());
    }
    // Batches 2..=2501 are queued; processing them first makes the watcher start behind.
    let mut out = Vec::new();
    while let Ok(batch) = feed.try_recv() {
        out.extend(session.on_applied(&batch));
    }
    out.extend(session.create(node.read(|store| store.revision()), create("k", 2)));
    assert!(session.has_unsynced());
    assert!(
        session.progress_request().is_empty(),
        "a progress request waits for the replay"
    );
    out.extend(node.read(|store| session.catch_up_step(store)));
    assert!(session.has_unsynced(), "one step replays one window");
    // A live write arrives mid-replay; it is delivered once, after the replay reaches it.
    node.put("k", "live");
    while let Ok(batch) = feed.try_recv() {
        out.extend(session.on_applied(&batch));
    }
    out.extend(sync(&node, &mut session));
    let expected: Vec<i64> = (2..=2502).collect();
    assert_eq!(revisions(&out, 0), expected);
    let progress: Vec<_> = out
        .iter()
        .filter(|response| response.watch_id == -1)
        .collect();
    assert_eq!(
        progress.len(),
        1,
        "the deferred progress request is answered once synced"
    );
    assert_eq!(progress[0].header.map(|header| header.revision), Some(2502));
}
