//! The task behind one watch stream: it owns a [`WatchSession`], reads client requests and the
//! applied-event feed, and writes responses in order.

use std::time::Duration;

use etcd_proto::etcdserverpb::watch_request::RequestUnion;
use etcd_proto::etcdserverpb::{WatchRequest, WatchResponse};
use futures::{Stream, StreamExt};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::mpsc;

use super::session::WatchSession;
use crate::backend::Backend;
use crate::error::{ServiceError, to_status};
use crate::service::Service;

/// How often an idle stream compares the store's revision with the revisions its feed
/// delivered. A member that installed a Raft snapshot moved its store forward without
/// publishing events; the stream's watchers then replay the difference from history.
const RESYNC_INTERVAL: Duration = Duration::from_secs(1);

/// Responses buffered per stream before the task waits for the client to read; while it
/// waits the feed may lag, which the session then repairs from history.
pub const RESPONSE_BUFFER: usize = 128;

/// Options of one watch stream.
#[derive(Debug, Clone, Copy)]
pub struct StreamOptions {
    /// The client asked (gRPC metadata `hasleader: true`) to be cut off when the member has
    /// had no leader for about three election timeouts.
    pub require_leader: bool,
}

type Outbound = mpsc::Sender<Result<WatchResponse, tonic::Status>>;

/// Runs one watch stream until the client goes away, the server shuts down, or (with
/// `require_leader`) the member stays leaderless too long.
pub async fn run<B, S>(service: Service<B>, inbound: S, outbound: Outbound, options: StreamOptions)
where
    B: Backend,
    S: Stream<Item = Result<WatchRequest, tonic::Status>> + Send + Unpin + 'static,
{
    let node = service.node().clone();
    // Subscribe before reading the revision: every batch above it then reaches this stream.
    let mut feed = node.subscribe();
    let fragment_bytes = service.config().max_request_bytes;
    let mut session = node.read(|store| WatchSession::new(store.revision(), fragment_bytes));
    let mut inbound = Some(inbound);
    let interval = sanitize_interval(service.config().progress_notify_interval);
    let mut progress = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    let mut status = node.watch_status();
    let leaderless_limit = service.config().election_timeout * 3;
    // Leaderless already (the leader may have gone between the adapter's check and here).
    let mut leaderless_since = (options.require_leader
        && status.borrow_and_update().leader.is_none())
    .then(tokio::time::Instant::now);
    let shutdown = service.shutdown_token().clone();
    let mut resync = tokio::time::interval_at(
        tokio::time::Instant::now() + RESYNC_INTERVAL,
        RESYNC_INTERVAL,
    );
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    loop {
        let leader_deadline = leaderless_since.map(|since| since + leaderless_limit);
        let responses = tokio::select! {
            () = shutdown.cancelled() => return,
            // The client went away: nobody reads this stream any more.
            () = outbound.closed() => return,
            // Replay history for watchers that are behind, one window at a time, so the store
            // is held briefly and live batches and requests interleave with a long replay.
            () = std::future::ready(()), if session.has_unsynced() => {
                node.read(|store| session.catch_up_step(store))
            },
            applied = feed.recv() => match applied {
                Ok(batch) => session.on_applied(&batch),
                Err(RecvError::Lagged(_)) => {
                    session.on_lagged(node.read(|store| store.revision()));
                    Vec::new()
                }
                Err(RecvError::Closed) => {
                    let _ = outbound.send(Err(to_status(&ServiceError::Stopped))).await;
                    return;
                }
            },
            request = next_request(&mut inbound) => match request {
                Some(Ok(request)) => {
                    // Bring the session up to date first so replies reflect the freshest revision.
                    let mut responses = drain_feed(&node, &mut feed, &mut session);
                    responses.extend(handle_request(&service, &mut session, request));
                    responses
                }
                Some(Err(_)) => return,
                None => {
                    // The client half-closed: keep streaming, as etcd does.
                    inbound = None;
                    Vec::new()
                }
            },
            _ = progress.tick() => session.progress_tick(),
            _ = resync.tick() => {
                // Only when the feed is idle: a revision applied but not yet published is
                // harmless too (it is replayed from history and then skipped on the feed).
                if feed.is_empty() {
                    session.on_lagged(node.read(|store| store.revision()));
                }
                Vec::new()
            },
            changed = status.changed(), if options.require_leader => {
                if changed.is_err() {
                    return;
                }
                let has_leader = status.borrow_and_update().leader.is_some();
                leaderless_since = match (has_leader, leaderless_since) {
                    (true, _) => None,
                    (false, None) => Some(tokio::time::Instant::now()),
                    (false, since) => since,
                };
                Vec::new()
            },
            () = sleep_until(leader_deadline) => {
                let _ = outbound.send(Err(to_status(&ServiceError::NoLeader))).await;
                return;
            },
        };
        for mut response in responses {
            let revision = response
                .header
                .map(|header| header.revision)
                .unwrap_or_default();
            response.header = Some(service.header(revision));
            if outbound.send(Ok(response)).await.is_err() {
                return;
            }
        }
    }
}

async fn next_request<S>(inbound: &mut Option<S>) -> Option<Result<WatchRequest, tonic::Status>>
where
    S: Stream<Item = Result<WatchRequest, tonic::Status>> + Unpin,
{
    match inbound {
        Some(stream) => stream.next().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn drain_feed<B: Backend>(
    node: &B,
    feed: &mut tokio::sync::broadcast::Receiver<std::sync::Arc<crate::backend::AppliedEvents>>,
    session: &mut WatchSession,
) -> Vec<WatchResponse> {
    let mut responses = Vec::new();
    loop {
        match feed.try_recv() {
            Ok(batch) => responses.extend(session.on_applied(&batch)),
            Err(TryRecvError::Lagged(_)) => session.on_lagged(node.read(|store| store.revision())),
            Err(TryRecvError::Empty | TryRecvError::Closed) => return responses,
        }
    }
}

fn handle_request<B: Backend>(
    service: &Service<B>,
    session: &mut WatchSession,
    request: WatchRequest,
) -> Vec<WatchResponse> {
    let node = service.node();
    match request.request_union {
        Some(RequestUnion::CreateRequest(create)) => {
            let store_rev = node.read(|store| store.revision());
            let access = mvcc::Access::Watch {
                key: &create.key,
                range_end: &create.range_end,
            };
            if service.check(access).is_err() {
                return vec![permission_denied(store_rev)];
            }
            session.create(store_rev, create)
        }
        Some(RequestUnion::CancelRequest(cancel)) => session.cancel(cancel.watch_id),
        Some(RequestUnion::ProgressRequest(_)) => session.progress_request(),
        None => Vec::new(),
    }
}

/// etcd's answer to a watch the caller may not read: created and canceled at once, with the
/// text of etcd's gRPC permission-denied error as the reason (`rpctypes.ErrGRPCPermissionDenied`
/// rendered by Go, which clients wrap back into that error).
fn permission_denied(store_rev: i64) -> WatchResponse {
    WatchResponse {
        header: Some(etcd_proto::etcdserverpb::ResponseHeader {
            revision: store_rev,
            ..Default::default()
        }),
        watch_id: -1,
        created: true,
        canceled: true,
        cancel_reason: format!(
            "rpc error: code = PermissionDenied desc = {}",
            etcd_proto::errors::PERMISSION_DENIED.message
        ),
        ..WatchResponse::default()
    }
}

/// A zero interval would make `tokio::time::interval` panic; clamp it to 1 ms.
fn sanitize_interval(interval: Duration) -> Duration {
    interval.max(Duration::from_millis(1))
}
