//! The replication stream to one follower (openraft's `stream_append`): AppendEntries requests in
//! openraft's order, answered in that order, where an entry-less request does not hold back the
//! requests after it.
//!
//! openraft sends every follower an entry-less AppendEntries each time the commit index moves
//! (and entry-less probes), and its default stream sends one request at a time. At one client
//! the next put's entries then wait for the previous put's commit update to travel to the
//! follower and back. Here a request waits only for the requests with entries still in flight:
//! those must reach the follower in order (one appended before the next is sent, as before),
//! while an entry-less request only names a log id the follower already acknowledged, so it may
//! be overtaken. The follower then handles it after entries that follow its `prev_log_id`, which
//! Raft allows: an AppendEntries without entries truncates nothing and the commit index only
//! moves forward. Every request keeps its own deadline ([`PeerConnection`]'s `append_entries`);
//! the first failure, conflict or partial success is the last answer of the stream, and openraft
//! starts a new one.

use futures::StreamExt;
use futures::stream::FuturesOrdered;
use openraft::base::{BoxFuture, BoxStream};
use openraft::errors::RPCError;
use openraft::network::{RPCOption, RaftNetworkV2};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, StreamAppendResult};
use openraft::type_config::alias::LogIdOf;
use storage::TypeConfig;

use crate::network::PeerConnection;

type LogId = Option<LogIdOf<TypeConfig>>;
type Answer = Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>;

/// Whether the next request may be sent while `entries_in_flight` requests carrying entries are
/// unanswered.
pub(crate) fn may_send(entries_in_flight: usize) -> bool {
    entries_in_flight == 0
}

/// One request sent and not yet answered: whether it carried entries, the range it covers
/// (`prev_log_id`, last log id) and its answer.
type InFlight = BoxFuture<
    'static,
    (
        bool,
        LogId,
        LogId,
        Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>>,
    ),
>;

struct Pipeline<S> {
    input: S,
    connection: PeerConnection,
    option: RPCOption,
    in_flight: FuturesOrdered<InFlight>,
    entries_in_flight: usize,
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
    S: futures::Stream<Item = AppendEntriesRequest<TypeConfig>> + Send + Unpin + 'static,
{
    let pipeline = Pipeline {
        input,
        connection,
        option,
        in_flight: FuturesOrdered::new(),
        entries_in_flight: 0,
        input_done: false,
        stopped: false,
    };
    Box::pin(futures::stream::unfold(pipeline, Pipeline::next_answer))
}

impl<S> Pipeline<S>
where
    S: futures::Stream<Item = AppendEntriesRequest<TypeConfig>> + Send + Unpin + 'static,
{
    /// The next answer in request order, sending requests meanwhile as [`may_send`] allows.
    async fn next_answer(mut self) -> Option<(Answer, Self)> {
        if self.stopped {
            return None;
        }
        loop {
            let send = !self.input_done && may_send(self.entries_in_flight);
            tokio::select! {
                biased;
                Some((has_entries, prev, last, result)) = self.in_flight.next(),
                    if !self.in_flight.is_empty() =>
                {
                    if has_entries {
                        self.entries_in_flight -= 1;
                    }
                    let answer = match result {
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
                    };
                    return Some((answer, self));
                }
                request = self.input.next(), if send => match request {
                    None => self.input_done = true,
                    Some(request) => self.send(request),
                },
                else => return None,
            }
        }
    }

    fn send(&mut self, request: AppendEntriesRequest<TypeConfig>) {
        let has_entries = !request.entries.is_empty();
        let prev = request.prev_log_id;
        let last = request
            .entries
            .last()
            .map(|entry| entry.log_id)
            .or(prev);
        if has_entries {
            self.entries_in_flight += 1;
        }
        let mut connection = self.connection.clone();
        let option = self.option.clone();
        self.in_flight.push_back(Box::pin(async move {
            let result = connection.append_entries(request, option).await;
            (has_entries, prev, last, result)
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::may_send;

    #[test]
    fn only_unanswered_entries_hold_back_the_next_request() {
        for (entries_in_flight, expected) in [(0, true), (1, false), (2, false)] {
            assert_eq!(may_send(entries_in_flight), expected, "{entries_in_flight}");
        }
    }
}
