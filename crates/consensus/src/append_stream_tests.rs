//! The replication stream against a scripted follower that answers every request at once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use openraft::{EntryPayload, Vote};
use storage::{Entry, log_id};

use super::*;

const NEVER: Duration = Duration::from_secs(3600);
const TEST_BOUND: Duration = Duration::from_secs(30);

/// A request from `prev` carrying entries up to `last` (none when `last == prev`), with the
/// commit index `commit`.
fn request(prev: u64, last: u64, commit: u64) -> Request {
    AppendEntriesRequest {
        vote: Vote::new_committed(1, 1),
        prev_log_id: Some(log_id(1, 1, prev)),
        leader_commit: Some(log_id(1, 1, commit)),
        entries: (prev + 1..=last)
            .map(|index| Entry {
                log_id: log_id(1, 1, index),
                payload: EntryPayload::Blank,
            })
            .collect(),
    }
}

/// What the follower received: (entries, commit index) per request, in order.
type Received = Arc<Mutex<Vec<(usize, u64)>>>;

fn follower() -> (
    Received,
    impl FnMut(Request) -> BoxFuture<'static, Reply> + Send + 'static,
) {
    let received = Received::default();
    let log = received.clone();
    let send = move |request: Request| -> BoxFuture<'static, Reply> {
        let commit = request.leader_commit.map_or(0, |id| id.index);
        log.lock()
            .expect("test lock")
            .push((request.entries.len(), commit));
        Box::pin(async { Ok(AppendEntriesResponse::Success) })
    };
    (received, send)
}

fn matched(answer: Option<Answer>) -> u64 {
    match answer {
        Some(Ok(Ok(Some(id)))) => id.index,
        other => panic!("expected a successful answer, got {other:?}"),
    }
}

#[test]
fn only_unanswered_entries_hold_back_the_next_request() {
    for (entries_in_flight, expected) in [(0, true), (1, false), (2, false)] {
        assert_eq!(may_send(entries_in_flight), expected, "{entries_in_flight}");
    }
}

/// Runs `requests` (prev, last, commit) through a pipeline whose input then closes; returns the
/// log ids the answers matched and what the follower received.
async fn run_closed(requests: &[(u64, u64, u64)]) -> (Vec<u64>, Vec<(usize, u64)>) {
    let (received, send) = follower();
    let (sender, input) = futures::channel::mpsc::unbounded();
    for &(prev, last, commit) in requests {
        sender
            .unbounded_send(request(prev, last, commit))
            .expect("open channel");
    }
    drop(sender);
    let answers =
        tokio::time::timeout(TEST_BOUND, pipeline(input, send, NEVER).collect::<Vec<_>>())
            .await
            .expect("the stream ends once its input has");
    let matched = answers.into_iter().map(|a| matched(Some(a))).collect();
    let received = received.lock().expect("test lock").clone();
    (matched, received)
}

#[tokio::test]
async fn a_commit_update_followed_by_entries_is_not_sent() {
    let (matched, received) = run_closed(&[(3, 3, 3), (3, 5, 3)]).await;
    assert_eq!(matched, vec![5]);
    assert_eq!(received, vec![(2, 3)]);
}

#[tokio::test]
async fn a_heartbeat_goes_out_at_once() {
    let (received, send) = follower();
    let input = futures::stream::once(async { request(7, 7, 6) });
    let mut answers = pipeline(Box::pin(input), send, NEVER);
    let first = tokio::time::timeout(TEST_BOUND, answers.next())
        .await
        .expect("a one-request stream is not held back");
    assert_eq!(matched(first), 7);
    assert_eq!(*received.lock().expect("test lock"), vec![(0, 6)]);
}

#[tokio::test]
async fn a_lone_commit_update_goes_out_when_its_hold_ends() {
    let hold = Duration::from_millis(20);
    let (received, send) = follower();
    let (requests, input) = futures::channel::mpsc::unbounded();
    requests
        .unbounded_send(request(4, 4, 4))
        .expect("open channel");
    let started = Instant::now();
    let mut answers = pipeline(input, send, hold);
    let first = tokio::time::timeout(TEST_BOUND, answers.next())
        .await
        .expect("the held update goes out");
    assert!(started.elapsed() >= hold);
    assert_eq!(matched(first), 4);
    assert_eq!(*received.lock().expect("test lock"), vec![(0, 4)]);
    drop(requests);
}

#[tokio::test]
async fn entries_wait_for_entries_in_flight_and_keep_their_order() {
    let (matched, received) = run_closed(&[(0, 2, 0), (2, 4, 2), (4, 4, 4), (4, 6, 4)]).await;
    assert_eq!(matched, vec![2, 4, 6]);
    assert_eq!(
        received,
        vec![(2, 0), (2, 2), (2, 4)],
        "the commit update between the second and third entries travels with the third"
    );
}
