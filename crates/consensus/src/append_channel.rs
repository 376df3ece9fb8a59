//! The leader's half of one long-lived `AppendStream` call to a follower: each AppendEntries
//! request is one message on the call and its answer the next message back, in request order.
//!
//! A unary call per request costs both members a new HTTP/2 stream each time (request headers,
//! response headers and trailers, a server task and the service stack), and the request's
//! headers and its message leave in two writes. On an open call a request is one DATA frame and
//! its answer another. The call lives as long as openraft's replication stream
//! ([`crate::append_stream`]); any failure closes it and fails every unanswered request, and
//! openraft starts a new stream (and so a new call). A follower that answers the call with
//! UNIMPLEMENTED (an earlier pgwarden, during a rolling upgrade) is marked on its connection, and
//! [`crate::append_stream`] sends it one `AppendEntries` call per request from then on.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use openraft::base::BoxFuture;
use openraft::errors::RPCError;
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse};
use storage::TypeConfig;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::UnboundedReceiverStream;

use crate::network::{PeerConnection, append_request, json_answer, network_error};
use crate::pb;

type Reply = Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>>;

/// Why requests fail once the call has ended with no other word from it.
const CLOSED: &str = "replication stream closed";

/// What the reader answers a waiting request with: the follower's message, or why the call
/// closed.
type Answer = Result<pb::JsonMessage, String>;

/// Requests sent and not yet answered, in order; `closed` once the call has ended (with why).
#[derive(Default)]
struct Waiting {
    answers: VecDeque<oneshot::Sender<Answer>>,
    closed: Option<String>,
}

impl Waiting {
    /// Ends the call: every waiting request, and every later one, gets `why`.
    fn close(&mut self, why: String) {
        for waiter in self.answers.drain(..) {
            let _ = waiter.send(Err(why.clone()));
        }
        self.closed.get_or_insert(why);
    }
}

/// One open `AppendStream` call; dropping it ends the call.
pub(crate) struct AppendChannel {
    /// The follower's member id, for errors.
    target: u64,
    requests: mpsc::UnboundedSender<pb::AppendEntriesRequest>,
    waiting: Arc<Mutex<Waiting>>,
    reader: JoinHandle<()>,
}

impl Drop for AppendChannel {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl AppendChannel {
    /// Opens the call to the follower behind `connection` (its first message goes with the
    /// first request).
    pub(crate) fn open(connection: PeerConnection) -> AppendChannel {
        let (requests, outgoing) = mpsc::unbounded_channel();
        let waiting = Arc::new(Mutex::new(Waiting::default()));
        let target = connection.target();
        let reader = tokio::spawn(read_answers(
            connection,
            UnboundedReceiverStream::new(outgoing),
            waiting.clone(),
        ));
        AppendChannel {
            target,
            requests,
            waiting,
            reader,
        }
    }

    /// Sends `rpc` on the call; the future is its answer, within the request's own deadline.
    pub(crate) fn send(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        deadline: std::time::Duration,
    ) -> BoxFuture<'static, Reply> {
        let target = self.target;
        let refused = |why: &str| -> BoxFuture<'static, Reply> {
            futures::future::ready(Err(network_error(format!("peer {target}: {why}")))).boxed()
        };
        let request = match append_request(&rpc) {
            Ok(request) => request,
            Err(error) => return futures::future::ready(Err(error)).boxed(),
        };
        let (answer, answered) = oneshot::channel();
        {
            let mut waiting = self
                .waiting
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some(why) = &waiting.closed {
                return refused(why);
            }
            // Queued under the lock, so answers and requests keep one order.
            if self.requests.send(request).is_err() {
                waiting.close(CLOSED.to_string());
                return refused(CLOSED);
            }
            waiting.answers.push_back(answer);
        }
        Box::pin(async move {
            let answer = tokio::time::timeout(deadline, answered)
                .await
                .map_err(|_| network_error(format!("peer {target}: timed out after {deadline:?}")))?
                .unwrap_or_else(|_| Err(CLOSED.to_string()))
                .map_err(|why| network_error(format!("peer {target}: {why}")))?;
            json_answer(target, answer)
        })
    }
}

/// Runs the call and hands each answer to the request waiting longest; when the call ends,
/// fails the rest.
async fn read_answers(
    connection: PeerConnection,
    outgoing: UnboundedReceiverStream<pb::AppendEntriesRequest>,
    waiting: Arc<Mutex<Waiting>>,
) {
    let why = match connection.client() {
        Err(error) => error.to_string(),
        Ok(mut client) => match client.append_stream(outgoing).await {
            Err(status) => {
                if status.code() == tonic::Code::Unimplemented {
                    connection.lacks_append_stream();
                }
                status.message().to_string()
            }
            Ok(response) => {
                let mut answers = response.into_inner();
                loop {
                    match answers.message().await {
                        Ok(Some(answer)) => {
                            let waiter = waiting
                                .lock()
                                .unwrap_or_else(|poisoned| poisoned.into_inner())
                                .answers
                                .pop_front();
                            match waiter {
                                Some(waiter) => {
                                    let _ = waiter.send(Ok(answer));
                                }
                                None => break "an answer to no request".to_string(),
                            }
                        }
                        Ok(None) => break "replication stream ended".to_string(),
                        Err(status) => break status.message().to_string(),
                    }
                }
            }
        },
    };
    waiting
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .close(why);
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use openraft::Vote;
    use openraft::network::RaftNetworkFactory;
    use storage::MemberNode;
    use tokio_stream::wrappers::TcpListenerStream;

    use super::*;
    use crate::network::{Network, PeerChannels};

    /// A member of an earlier pgwarden serves the peer service without `AppendStream`.
    #[tokio::test]
    async fn a_follower_without_append_stream_is_marked_after_one_refusal() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_routes(tonic::service::Routes::default())
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        let mut network = Network {
            channels: PeerChannels::new(Duration::from_secs(1)),
        };
        let node = MemberNode {
            name: "earlier".to_string(),
            peer_urls: vec![format!("http://{address}")],
            client_urls: Vec::new(),
        };
        let connection = network.new_client(7, &node).await;
        assert!(connection.serves_append_stream());

        let mut channel = AppendChannel::open(connection.clone());
        let request = AppendEntriesRequest {
            vote: Vote::new_committed(1, 1),
            prev_log_id: None,
            leader_commit: None,
            entries: Vec::new(),
        };
        let refused = channel.send(request, Duration::from_secs(5)).await;
        assert!(refused.is_err(), "{refused:?}");
        assert!(!connection.serves_append_stream());
        // Every clone (the next stream openraft starts) now sends one call per request.
        assert!(!connection.clone().serves_append_stream());
        server.abort();
    }
}
