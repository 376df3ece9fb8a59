//! The replication stream to one follower (openraft's `stream_append`): AppendEntries requests in
//! openraft's order, answered in that order, where an entry-less request does not wait for the
//! answers before it, and a commit update that the next entries would carry is not sent at all.
//!
//! openraft sends every follower an entry-less AppendEntries each time the commit index moves
//! (and entry-less probes), and its default stream sends one request at a time. At one client
//! the next put's entries then wait for the previous put's commit update to travel to the
//! follower and back. Here a request waits only for the requests with entries still in flight:
//! one carrying entries is appended before the next is sent, as before, while an entry-less
//! request only names a log id the follower already acknowledged, so it may go out behind
//! unanswered ones. The requests travel in order on one long-lived call
//! ([`crate::append_channel`]), and the follower hands them to openraft in that order. Every
//! request keeps its own deadline ([`PeerConnection::append_deadline`]); the first failure,
//! conflict or partial success is the last answer of the stream, and openraft starts a new one.
//!
//! A commit update (an entry-less request while openraft's request stream is still open) is held
//! back for [`COMMIT_UPDATE_HOLD`]: openraft builds every request with the commit index current
//! at that moment, so a request that follows within the hold carries the same commit index or a
//! later one, and the held request is dropped unsent. At one client that saves each follower one
//! RPC per put (the previous put's commit travels with the next put's entries); an idle group
//! delivers the commit once the hold ends. A request stream that ends after its entry-less
//! request (openraft's heartbeats, a probe) is sent at once, so heartbeats, the leader lease and
//! read indexes never wait. Dropping a held request loses no acknowledgement openraft needs: it
//! counts an answer as covering every request up to the log id it matched.

use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesOrdered;
use openraft::base::{BoxFuture, BoxStream};
use openraft::errors::RPCError;
use openraft::network::{RPCOption, RaftNetworkV2};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, StreamAppendResult};
use openraft::type_config::alias::LogIdOf;
use storage::TypeConfig;
use tokio::time::Instant;

use crate::append_channel::AppendChannel;
use crate::network::PeerConnection;

/// How long a commit update waits for a request that would carry it instead. Longer than a
/// client's turn-around at one client (answer, next request, its append), short enough that a
/// follower's watchers and local reads barely notice; reads through a follower do not wait for
/// it at all, since the leader's read-index heartbeats carry the commit index.
const COMMIT_UPDATE_HOLD: Duration = Duration::from_millis(2);

type LogId = Option<LogIdOf<TypeConfig>>;
type Request = AppendEntriesRequest<TypeConfig>;
type Reply = Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>>;
type Answer = Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>;

/// Whether the next request may be sent while `entries_in_flight` requests carrying entries are
/// unanswered.
pub(crate) fn may_send(entries_in_flight: usize) -> bool {
    entries_in_flight == 0
}

/// One request sent and not yet answered: whether it carried entries, the range it covers
/// (`prev_log_id`, last log id) and its answer.
type InFlight = BoxFuture<'static, (bool, LogId, LogId, Reply)>;

struct Pipeline<S, F> {
    input: S,
    send: F,
    hold: Duration,
    in_flight: FuturesOrdered<InFlight>,
    entries_in_flight: usize,
    /// A commit update not sent yet, and when it goes out unless a newer request replaces it.
    held: Option<(Request, Instant)>,
    input_done: bool,
    stopped: bool,
}

/// Runs `input` to the follower behind `connection`; see the module documentation.
pub(crate) fn stream<'s, S>(
    connection: PeerConnection,
    input: S,
    option: RPCOption,
) -> BoxStream<'s, Answer>
where
    S: futures::Stream<Item = Request> + Send + Unpin + 'static,
{
    let send: Box<dyn FnMut(Request) -> BoxFuture<'static, Reply> + Send> =
        if connection.serves_append_stream() {
            let mut channel = AppendChannel::open(connection.clone());
            Box::new(move |request: Request| {
                let deadline = connection.append_deadline(&request, &option);
                channel.send(request, deadline)
            })
        } else {
            // A follower of an earlier pgwarden: one call per request.
            Box::new(move |request: Request| {
                let mut connection = connection.clone();
                let option = option.clone();
                Box::pin(async move { connection.append_entries(request, option).await })
            })
        };
    pipeline(input, send, COMMIT_UPDATE_HOLD)
}

/// The stream of answers for `input`, each request sent with `send`; commit updates held `hold`.
fn pipeline<'s, S, F>(input: S, send: F, hold: Duration) -> BoxStream<'s, Answer>
where
    S: futures::Stream<Item = Request> + Send + Unpin + 'static,
    F: FnMut(Request) -> BoxFuture<'static, Reply> + Send + 'static,
{
    let pipeline = Pipeline {
        input,
        send,
        hold,
        in_flight: FuturesOrdered::new(),
        entries_in_flight: 0,
        held: None,
        input_done: false,
        stopped: false,
    };
    Box::pin(futures::stream::unfold(pipeline, Pipeline::next_answer))
}

impl<S, F> Pipeline<S, F>
where
    S: futures::Stream<Item = Request> + Send + Unpin + 'static,
    F: FnMut(Request) -> BoxFuture<'static, Reply> + Send + 'static,
{
    /// The next answer in request order, sending requests meanwhile as [`may_send`] allows.
    async fn next_answer(mut self) -> Option<(Answer, Self)> {
        if self.stopped {
            return None;
        }
        loop {
            let read_input = !self.input_done && may_send(self.entries_in_flight);
            let held_until = self.held.as_ref().map(|(_, until)| *until);
            tokio::select! {
                biased;
                Some((has_entries, prev, last, reply)) = self.in_flight.next(),
                    if !self.in_flight.is_empty() =>
                {
                    if has_entries {
                        self.entries_in_flight -= 1;
                    }
                    return Some((self.answer(prev, last, reply), self));
                }
                request = self.input.next(), if read_input => match request {
                    None => {
                        self.input_done = true;
                        self.release_held();
                    }
                    Some(request) => self.accept(request),
                },
                () = tokio::time::sleep_until(held_until.unwrap_or_else(Instant::now)),
                    if held_until.is_some() => self.release_held(),
                else => return None,
            }
        }
    }

    /// openraft's answer for one reply; a failure, conflict or partial success ends the stream.
    fn answer(&mut self, prev: LogId, last: LogId, reply: Reply) -> Answer {
        match reply {
            Ok(response) => {
                let partial = matches!(
                    &response,
                    AppendEntriesResponse::PartialSuccess(matched) if *matched != last
                );
                let result = response.into_stream_result(prev, last);
                self.stopped = partial || result.is_err();
                Ok(result)
            }
            Err(error) => {
                self.stopped = true;
                Err(error)
            }
        }
    }

    /// A request from openraft: it replaces a held commit update (it carries the same commit
    /// index or a later one); entries go out at once, a commit update is held.
    fn accept(&mut self, request: Request) {
        let held_until = self.held.take().map(|(_, until)| until);
        if request.entries.is_empty() {
            let until = held_until.unwrap_or_else(|| Instant::now() + self.hold);
            self.held = Some((request, until));
        } else {
            self.dispatch(request);
        }
    }

    fn release_held(&mut self) {
        if let Some((request, _)) = self.held.take() {
            self.dispatch(request);
        }
    }

    fn dispatch(&mut self, request: Request) {
        let has_entries = !request.entries.is_empty();
        let prev = request.prev_log_id;
        let last = request.entries.last().map(|entry| entry.log_id).or(prev);
        if has_entries {
            self.entries_in_flight += 1;
        }
        let reply = (self.send)(request);
        self.in_flight.push_back(Box::pin(
            async move { (has_entries, prev, last, reply.await) },
        ));
    }
}

#[cfg(test)]
#[path = "append_stream_tests.rs"]
mod tests;
