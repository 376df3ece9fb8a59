//! The streaming half of the gateway: `/v3/watch` and `/v3/lease/keepalive` (the body is a
//! sequence of JSON request messages), `/v3/maintenance/snapshot` and `/v3/election/observe`
//! (one request, many replies). Replies are HTTP 200, chunked, one `{"result": ...}` line per
//! message; an error after the first line is one `{"error": ...}` line, then the stream ends.
//!
//! A malformed *first* message is refused as a unary call is (400, nothing started), so a
//! client with a bad request gets a plain error rather than an empty stream.

use std::convert::Infallible;
use std::pin::Pin;

use axum::body::{Body, BodyDataStream};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use etcd_proto::etcdserverpb::{
    LeaseKeepAliveRequest, SnapshotRequest, WatchRequest, WatchResponse,
};
use etcd_proto::v3electionpb::{LeaderRequest, LeaderResponse};
use futures::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;

use super::json;
use super::splitter::JsonSplitter;
use super::unary::{acting_for_caller, body_limit, check_message_size, status};
use crate::backend::Backend;
use crate::error::ServiceError;
use crate::service::Service;
use crate::watch::stream::{self as watch_stream, RESPONSE_BUFFER, StreamOptions};

/// The HTTP header grpc-gateway turns into the gRPC metadata `hasleader`.
const HAS_LEADER_HEADER: &str = "grpc-metadata-hasleader";

type Lines = Pin<Box<dyn Stream<Item = Bytes> + Send + 'static>>;

/// The request side of a bidirectional call: body bytes cut into messages and decoded.
struct Inbound<B: Backend> {
    body: BodyDataStream,
    splitter: JsonSplitter,
    service: Service<B>,
    body_ended: bool,
}

impl<B: Backend> Inbound<B> {
    fn new(service: Service<B>, body: Body) -> Self {
        Inbound {
            splitter: JsonSplitter::new(body_limit(&service)),
            body: body.into_data_stream(),
            service,
            body_ended: false,
        }
    }

    /// The next message, `None` once the client finished its body.
    async fn next<T: DeserializeOwned + prost::Message>(
        &mut self,
    ) -> Result<Option<T>, tonic::Status> {
        loop {
            let text = self
                .splitter
                .next_message()
                .map_err(|error| tonic::Status::invalid_argument(error.to_string()))?;
            if let Some(text) = text {
                let message: T = json::decode(&text)?;
                check_message_size(&self.service, &message)?;
                return Ok(Some(message));
            }
            if self.body_ended {
                self.splitter
                    .finish()
                    .map_err(|error| tonic::Status::invalid_argument(error.to_string()))?;
                return Ok(None);
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.splitter.push(&chunk),
                Some(Err(error)) => {
                    return Err(tonic::Status::cancelled(format!(
                        "reading the request body: {error}"
                    )));
                }
                None => self.body_ended = true,
            }
        }
    }
}

/// A 200 streaming reply of NDJSON lines.
fn stream_response(lines: Lines) -> Response {
    let mut response = Response::new(Body::from_stream(lines.map(Ok::<Bytes, Infallible>)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Reads the first message of a streaming call, without waiting for the end of the body (a
/// client may keep it open): a malformed one is answered as a unary error (the `Err` reply);
/// an empty body answers `Ok(None)`.
async fn first_message<B, T>(inbound: &mut Inbound<B>) -> Result<Option<T>, Response>
where
    B: Backend,
    T: DeserializeOwned + prost::Message,
{
    inbound.next::<T>().await.map_err(|refused| {
        if refused.code() == tonic::Code::ResourceExhausted {
            json::error_response_with(StatusCode::PAYLOAD_TOO_LARGE, &refused)
        } else {
            json::error_response(&refused)
        }
    })
}

/// `/v3/watch`: one watch stream per call, served by the same task as a gRPC watch stream.
/// The client finishing its body half-closes the stream: watchers keep streaming, as in etcd.
/// The client closing the connection ends the stream and cancels its watchers. The header
/// `Grpc-Metadata-Hasleader: true` (grpc-gateway's way to pass gRPC metadata) asks to be cut
/// off when the member has no leader, as `hasleader` does on gRPC.
pub async fn watch<B: Backend>(
    State(service): State<Service<B>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let require_leader = headers
        .get(HAS_LEADER_HEADER)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.eq_ignore_ascii_case("true"));
    let service = match acting_for_caller(&service, &headers) {
        Ok(service) => service,
        Err(refused) => return json::error_response(&refused),
    };
    if require_leader && service.node().status().leader.is_none() {
        return json::error_response(&status(ServiceError::NoLeader));
    }
    let mut inbound = Inbound::new(service.clone(), body);
    let first = match first_message::<B, WatchRequest>(&mut inbound).await {
        Ok(first) => first,
        Err(refused) => return refused,
    };
    // A malformed later message ends the stream with an error line: the request side sends
    // it here and ends, which ends the watch task; its last replies are flushed first.
    let (refusal_tx, refusal_rx) = oneshot::channel::<tonic::Status>();
    let requests = futures::stream::unfold(
        (inbound, first, Some(refusal_tx)),
        |(mut inbound, first, refusal)| async move {
            if let Some(first) = first {
                return Some((Ok(first), (inbound, None, refusal)));
            }
            match inbound.next::<WatchRequest>().await {
                Ok(Some(request)) => Some((Ok(request), (inbound, None, refusal))),
                Ok(None) => None,
                Err(refused) => {
                    if let Some(refusal) = refusal {
                        let _ = refusal.send(refused.clone());
                    }
                    Some((Err(refused), (inbound, None, None)))
                }
            }
        },
    );
    let (outbound, responses) =
        mpsc::channel::<Result<WatchResponse, tonic::Status>>(RESPONSE_BUFFER);
    service.tasks().spawn(watch_stream::run(
        service.clone(),
        Box::pin(requests),
        outbound,
        StreamOptions { require_leader },
    ));
    let replies = until_first_error(ReceiverStream::new(responses).map(|reply| match reply {
        Ok(response) => Ok(json::result_line(&response)),
        Err(refused) => Err(json::error_line(&refused)),
    }));
    let refusal = futures::stream::once(refusal_rx)
        .filter_map(|refused| async move { refused.ok().map(|status| json::error_line(&status)) });
    stream_response(Box::pin(replies.chain(refusal)))
}

/// `/v3/lease/keepalive`: one reply per request message, in order; the stream ends after the
/// client finished its body and every request was answered (a client sending one `{"ID": ..}`
/// and reading the reply to its end gets exactly one line), or at the first error. Like etcd
/// (and the gRPC adapter), a keepalive does not look at the caller's token.
pub async fn lease_keep_alive<B: Backend>(
    State(service): State<Service<B>>,
    body: Body,
) -> Response {
    let mut inbound = Inbound::new(service.clone(), body);
    let first = match first_message::<B, LeaseKeepAliveRequest>(&mut inbound).await {
        Ok(first) => first,
        Err(refused) => return refused,
    };
    let shutdown = service.shutdown_token().clone();
    let replies = futures::stream::unfold(
        (inbound, first, false),
        |(mut inbound, first, body_done)| async move {
            if body_done {
                return None;
            }
            let request = match first {
                Some(first) => Some(first),
                None => match inbound.next::<LeaseKeepAliveRequest>().await {
                    Ok(next) => next,
                    Err(refused) => {
                        return Some((Err(json::error_line(&refused)), (inbound, None, true)));
                    }
                },
            }?;
            let service = inbound.service.clone();
            let line = match service.lease_keep_alive(request.id, false).await {
                Ok(response) => Ok(json::result_line(&response)),
                Err(error) => Err(json::error_line(&status(error))),
            };
            Some((line, (inbound, None, false)))
        },
    );
    let replies = until_first_error(replies).take_until(shutdown.cancelled_owned());
    stream_response(Box::pin(replies))
}

/// `/v3/maintenance/snapshot`: the snapshot's chunks, one line each, the last carrying the
/// SHA-256 of the others as `blob`.
pub async fn snapshot<B: Backend>(
    State(service): State<Service<B>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let service = match acting_for_caller(&service, &headers) {
        Ok(service) => service,
        Err(refused) => return json::error_response(&refused),
    };
    let mut inbound = Inbound::new(service.clone(), body);
    if let Err(refused) = first_message::<B, SnapshotRequest>(&mut inbound).await {
        return refused;
    }
    match service.snapshot().await {
        Ok(chunks) => stream_response(Box::pin(futures::stream::iter(
            chunks.into_iter().map(|chunk| json::result_line(&chunk)),
        ))),
        Err(error) => json::error_response(&status(error)),
    }
}

/// `/v3/election/observe`: the election's leader now (once there is one) and at each change;
/// the stream ends with the server or at the first error.
pub async fn observe<B: Backend>(
    State(service): State<Service<B>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let service = match acting_for_caller(&service, &headers) {
        Ok(service) => service,
        Err(refused) => return json::error_response(&refused),
    };
    let mut inbound = Inbound::new(service.clone(), body);
    let request = match first_message::<B, LeaderRequest>(&mut inbound).await {
        Ok(request) => request.unwrap_or_default(),
        Err(refused) => return refused,
    };
    let updates = futures::stream::unfold(
        (service, request.name, None, false),
        |(service, name, last, failed)| async move {
            if failed {
                return None;
            }
            match service.next_leader(&name, last.as_ref()).await {
                Ok((header, kv)) => {
                    let response = LeaderResponse {
                        header: Some(header),
                        kv: Some(kv.clone()),
                    };
                    let line = Ok(json::result_line(&response));
                    Some((line, (service, name, Some(kv), false)))
                }
                Err(ServiceError::Stopped) => None,
                Err(error) => {
                    let line = Err(json::error_line(&status(error)));
                    Some((line, (service, name, last, true)))
                }
            }
        },
    );
    stream_response(Box::pin(until_first_error(updates)))
}

/// Passes result lines through and ends the stream right after the first error line.
fn until_first_error(
    lines: impl Stream<Item = Result<Bytes, Bytes>> + Send + 'static,
) -> impl Stream<Item = Bytes> + Send + 'static {
    lines.scan(false, |ended, line| {
        if *ended {
            return futures::future::ready(None);
        }
        *ended = line.is_err();
        futures::future::ready(Some(line.unwrap_or_else(|error| error)))
    })
}
