//! The watchers of one watch stream as a synchronous state machine: requests and applied
//! batches in, responses out. No clock, no task, no I/O beyond reads of a store view.

use std::collections::BTreeMap;

use etcd_proto::errors;
use etcd_proto::etcdserverpb::watch_create_request::FilterType;
use etcd_proto::etcdserverpb::{RangeRequest, ResponseHeader, WatchCreateRequest, WatchResponse};
use etcd_proto::mvccpb::Event;
use etcd_proto::mvccpb::event::EventType;

use prost::Message;

use crate::backend::AppliedEvents;
use crate::validate::key_in_range;

/// Most events per catch-up response; a revision is never split across responses.
const CATCH_UP_EVENTS_PER_RESPONSE: usize = 1000;

#[derive(Debug, Clone)]
struct Watcher {
    key: bytes::Bytes,
    range_end: bytes::Bytes,
    no_put: bool,
    no_delete: bool,
    prev_kv: bool,
    progress_notify: bool,
    /// The client accepts large responses split into fragments.
    fragment: bool,
    /// The next revision this watcher needs: everything below it was delivered or skipped
    /// as not matching.
    next_rev: i64,
    /// Set when events were sent since the last progress notification check.
    sent_since_progress: bool,
}

impl Watcher {
    /// Events of interest to this watcher, with `prev_kv` only if asked for.
    fn select(&self, events: &[Event]) -> Vec<Event> {
        events
            .iter()
            .filter(|event| {
                let key = event
                    .kv
                    .as_ref()
                    .map(|kv| kv.key.as_ref())
                    .unwrap_or_default();
                key_in_range(key, &self.key, &self.range_end)
            })
            .filter(|event| {
                let is_delete = event.r#type == EventType::Delete as i32;
                !(is_delete && self.no_delete || !is_delete && self.no_put)
            })
            .map(|event| {
                let mut event = event.clone();
                if !self.prev_kv {
                    event.prev_kv = None;
                }
                event
            })
            .collect()
    }
}

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..ResponseHeader::default()
    })
}

fn event_revision(event: &Event) -> i64 {
    event
        .kv
        .as_ref()
        .map(|kv| kv.mod_revision)
        .unwrap_or_default()
}

/// Appends `response`, split as etcd's `sendFragments` does when `limit` is set, the response
/// is at least `limit` bytes and holds two events or more: every piece but the last carries
/// `fragment = true`, each piece holds as many events as fit under the limit (at least one).
fn push_fragmented(
    responses: &mut Vec<WatchResponse>,
    response: WatchResponse,
    limit: Option<usize>,
) {
    let Some(limit) = limit else {
        responses.push(response);
        return;
    };
    if response.encoded_len() < limit || response.events.len() < 2 {
        responses.push(response);
        return;
    }
    let template = WatchResponse {
        events: Vec::new(),
        fragment: true,
        ..response.clone()
    };
    let mut current = template.clone();
    for event in response.events {
        current.events.push(event);
        if current.events.len() > 1 && current.encoded_len() >= limit {
            let overflow = current.events.pop();
            responses.push(std::mem::replace(&mut current, template.clone()));
            current.events.extend(overflow);
        }
    }
    current.fragment = false;
    responses.push(current);
}

/// Events on the watcher's keys with `from <= revision <= to`. Starting exactly at the compact
/// revision is allowed, as in etcd: the versions written at that revision survive compaction
/// and are replayed as PUT events (without `prev_kv`, which compaction removed; a delete at
/// exactly that revision left no trace, as in etcd).
fn history(
    store: &mvcc::Store,
    key: &bytes::Bytes,
    range_end: &bytes::Bytes,
    from: i64,
    to: i64,
) -> Result<Vec<Event>, errors::EtcdError> {
    let compact_rev = store.compact_revision();
    if compact_rev == 0 || from != compact_rev {
        return store.events(key, range_end, from, to);
    }
    let at_compaction = store.range(&RangeRequest {
        key: key.clone(),
        range_end: range_end.clone(),
        revision: compact_rev,
        ..RangeRequest::default()
    })?;
    let mut events: Vec<Event> = at_compaction
        .kvs
        .into_iter()
        .filter(|kv| kv.mod_revision == compact_rev)
        .map(|kv| Event {
            r#type: EventType::Put as i32,
            kv: Some(kv),
            prev_kv: None,
        })
        .collect();
    if compact_rev < to {
        events.extend(store.events(key, range_end, compact_rev + 1, to)?);
    }
    Ok(events)
}

/// The first and last revision a batch spans (normally one; several for a lease expiry).
fn batch_revisions(batch: &AppliedEvents) -> (i64, i64) {
    let first = batch
        .events
        .iter()
        .map(event_revision)
        .min()
        .unwrap_or(batch.revision);
    let last = batch
        .events
        .iter()
        .map(event_revision)
        .max()
        .unwrap_or(batch.revision)
        .max(batch.revision);
    (first, last)
}

/// The watchers of one stream. Responses carry only `header.revision`; the transport fills
/// cluster ID, member ID and term.
///
/// A watcher is *synced* when its next needed revision is above `current_rev`: everything it
/// still needs will arrive on the feed. An *unsynced* watcher (started in the past, or left
/// behind by a lagging feed) replays history in windows of [`CATCH_UP_REVISIONS`] through
/// [`Self::catch_up_step`], so a long replay never holds the store for long; live batches
/// skip it until it has caught up.
#[derive(Debug)]
pub struct WatchSession {
    watchers: BTreeMap<i64, Watcher>,
    /// Next ID handed to a create request with `watch_id` 0.
    next_auto_id: i64,
    /// Every applied batch up to this revision has been processed by this session (or, after
    /// the feed lagged, is known to be in the store's history).
    current_rev: i64,
    /// Event responses larger than this are split for watchers that asked for fragments.
    fragment_bytes: usize,
    /// A progress request arrived while some watcher was unsynced; answered once all are.
    progress_pending: bool,
}

/// Most revisions replayed for one watcher by one [`WatchSession::catch_up_step`].
pub const CATCH_UP_REVISIONS: i64 = 1000;

impl WatchSession {
    /// A session whose feed subscription was taken before reading `current_rev` from the store;
    /// `fragment_bytes` is the size above which responses are fragmented (etcd uses the
    /// request size limit).
    pub fn new(current_rev: i64, fragment_bytes: usize) -> Self {
        WatchSession {
            watchers: BTreeMap::new(),
            next_auto_id: 0,
            current_rev,
            fragment_bytes,
            progress_pending: false,
        }
    }

    pub fn watcher_count(&self) -> usize {
        self.watchers.len()
    }

    /// True while some watcher must replay history ([`Self::catch_up_step`] has work).
    pub fn has_unsynced(&self) -> bool {
        self.watchers
            .values()
            .any(|watcher| watcher.next_rev <= self.current_rev)
    }

    /// Handles a create request: the `created` reply (header at the store revision). A watcher
    /// starting at or below the session's revision then replays history through
    /// [`Self::catch_up_step`]; one starting later waits for the feed.
    pub fn create(&mut self, store_rev: i64, request: WatchCreateRequest) -> Vec<WatchResponse> {
        if request.start_revision < 0 {
            return vec![WatchResponse {
                header: header(store_rev),
                watch_id: -1,
                created: true,
                canceled: true,
                cancel_reason: errors::COMPACTED.message.to_owned(),
                ..WatchResponse::default()
            }];
        }
        let watch_id = if request.watch_id == 0 {
            while self.watchers.contains_key(&self.next_auto_id) {
                self.next_auto_id += 1;
            }
            let id = self.next_auto_id;
            self.next_auto_id += 1;
            id
        } else {
            request.watch_id
        };
        if self.watchers.contains_key(&watch_id) {
            return vec![WatchResponse {
                header: header(store_rev),
                watch_id,
                created: true,
                canceled: true,
                cancel_reason: errors::WATCH_DUPLICATE_ID_REASON.to_owned(),
                ..WatchResponse::default()
            }];
        }
        let key = if request.key.is_empty() {
            bytes::Bytes::from_static(b"\0")
        } else {
            request.key
        };
        let watcher = Watcher {
            key,
            range_end: request.range_end,
            no_put: request.filters.contains(&(FilterType::Noput as i32)),
            no_delete: request.filters.contains(&(FilterType::Nodelete as i32)),
            prev_kv: request.prev_kv,
            fragment: request.fragment,
            progress_notify: request.progress_notify,
            next_rev: if request.start_revision == 0 {
                store_rev + 1
            } else {
                request.start_revision
            },
            sent_since_progress: false,
        };
        self.watchers.insert(watch_id, watcher);
        vec![WatchResponse {
            header: header(store_rev),
            watch_id,
            created: true,
            ..WatchResponse::default()
        }]
    }

    /// Replays one window of history for every unsynced watcher, up to the store's revision;
    /// a watcher whose next needed revision was compacted gets one `compact_revision` reply
    /// and is removed. Answers a deferred progress request once every watcher is synced.
    pub fn catch_up_step(&mut self, store: &mvcc::Store) -> Vec<WatchResponse> {
        let store_rev = store.revision();
        let compact_rev = store.compact_revision();
        let mut responses = Vec::new();
        let behind: Vec<i64> = self
            .watchers
            .iter()
            .filter(|(_, watcher)| watcher.next_rev <= self.current_rev)
            .map(|(watch_id, _)| *watch_id)
            .collect();
        for watch_id in behind {
            let Some(watcher) = self.watchers.get_mut(&watch_id) else {
                continue;
            };
            let from = watcher.next_rev;
            if from > store_rev {
                // The feed announced a revision the store does not show yet; retry next step.
                continue;
            }
            let to = store_rev.min(from.saturating_add(CATCH_UP_REVISIONS - 1));
            let replay = if from < compact_rev {
                Err(errors::COMPACTED)
            } else {
                history(store, &watcher.key, &watcher.range_end, from, to)
            };
            let Ok(events) = replay else {
                self.watchers.remove(&watch_id);
                responses.push(WatchResponse {
                    header: header(store_rev),
                    watch_id,
                    canceled: true,
                    compact_revision: compact_rev,
                    ..WatchResponse::default()
                });
                continue;
            };
            watcher.next_rev = to + 1;
            let selected = watcher.select(&events);
            if selected.is_empty() {
                continue;
            }
            watcher.sent_since_progress = true;
            let fragment_limit = watcher.fragment.then_some(self.fragment_bytes);
            let mut batch: Vec<Event> = Vec::new();
            for event in selected {
                let starts_new_revision = batch
                    .last()
                    .is_some_and(|last| event_revision(last) != event_revision(&event));
                if batch.len() >= CATCH_UP_EVENTS_PER_RESPONSE && starts_new_revision {
                    let response = WatchResponse {
                        header: header(store_rev),
                        watch_id,
                        events: std::mem::take(&mut batch),
                        ..WatchResponse::default()
                    };
                    push_fragmented(&mut responses, response, fragment_limit);
                }
                batch.push(event);
            }
            let response = WatchResponse {
                header: header(store_rev),
                watch_id,
                events: batch,
                ..WatchResponse::default()
            };
            push_fragmented(&mut responses, response, fragment_limit);
        }
        responses.extend(self.pending_progress());
        responses
    }

    /// Cancels a watcher; an unknown ID gets no reply.
    pub fn cancel(&mut self, watch_id: i64) -> Vec<WatchResponse> {
        if self.watchers.remove(&watch_id).is_none() {
            return Vec::new();
        }
        let mut responses = vec![WatchResponse {
            header: header(self.current_rev),
            watch_id,
            canceled: true,
            ..WatchResponse::default()
        }];
        responses.extend(self.pending_progress());
        responses
    }

    /// Delivers one applied batch to every synced watcher that needs it, one response per
    /// revision (a batch normally holds one revision; a lease expiry revoking several leases
    /// with keys holds one per lease). A watcher behind the batch is left to its history
    /// replay, which will cover this batch too.
    pub fn on_applied(&mut self, batch: &AppliedEvents) -> Vec<WatchResponse> {
        let (first_rev, last_rev) = batch_revisions(batch);
        self.current_rev = self.current_rev.max(last_rev);
        let mut responses = Vec::new();
        for (watch_id, watcher) in &mut self.watchers {
            if watcher.next_rev > last_rev || watcher.next_rev < first_rev {
                continue;
            }
            let from = watcher.next_rev;
            watcher.next_rev = last_rev + 1;
            let unseen: Vec<Event> = batch
                .events
                .iter()
                .filter(|event| event_revision(event) >= from)
                .cloned()
                .collect();
            let events = watcher.select(&unseen);
            if events.is_empty() {
                continue;
            }
            watcher.sent_since_progress = true;
            let fragment_limit = watcher.fragment.then_some(self.fragment_bytes);
            let mut start = 0;
            while start < events.len() {
                let revision = event_revision(&events[start]);
                let end = events[start..]
                    .iter()
                    .position(|event| event_revision(event) != revision)
                    .map_or(events.len(), |offset| start + offset);
                let response = WatchResponse {
                    header: header(revision),
                    watch_id: *watch_id,
                    events: events[start..end].to_vec(),
                    ..WatchResponse::default()
                };
                push_fragmented(&mut responses, response, fragment_limit);
                start = end;
            }
        }
        responses
    }

    /// The feed receiver lagged and dropped batches (or the store moved on without publishing,
    /// as after a snapshot install): everything up to `store_rev` is in the store's history,
    /// so watchers behind it become unsynced and replay it; later batches at or below it are
    /// skipped as already replayed. Always safe to call: at worst it turns live delivery into
    /// replay for revisions still on their way through the feed.
    pub fn on_lagged(&mut self, store_rev: i64) {
        self.current_rev = self.current_rev.max(store_rev);
    }

    /// A progress request: one reply with watch_id -1 at the session's revision, once every
    /// watcher of the stream is synced (deferred until then, as etcd does).
    pub fn progress_request(&mut self) -> Vec<WatchResponse> {
        self.progress_pending = true;
        self.pending_progress()
    }

    fn pending_progress(&mut self) -> Vec<WatchResponse> {
        if !self.progress_pending || self.has_unsynced() {
            return Vec::new();
        }
        self.progress_pending = false;
        vec![WatchResponse {
            header: header(self.current_rev),
            watch_id: -1,
            ..WatchResponse::default()
        }]
    }

    /// Periodic progress notification: an empty reply for each synced watcher that asked for
    /// notifications and had no events since the previous check.
    pub fn progress_tick(&mut self) -> Vec<WatchResponse> {
        let current_rev = self.current_rev;
        let mut responses = Vec::new();
        for (watch_id, watcher) in &mut self.watchers {
            let synced = watcher.next_rev > current_rev;
            if synced && watcher.progress_notify && !watcher.sent_since_progress {
                responses.push(WatchResponse {
                    header: header(current_rev),
                    watch_id: *watch_id,
                    ..WatchResponse::default()
                });
            }
            watcher.sent_since_progress = false;
        }
        responses
    }
}

#[cfg(test)]
#[path = "session_test.rs"]
mod tests;
