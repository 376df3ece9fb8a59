//! Peer requests leave in one piece. tonic's request body does not say it has ended until it is
//! polled once more after its message, so HTTP/2 sends each peer RPC as HEADERS, DATA and then
//! an empty DATA frame carrying END_STREAM, each its own write on the socket and often its own
//! wake-up of the receiving member. A peer request is one message that is already encoded when
//! the call starts; this layer takes it, looks once (without waiting) whether the body has ended,
//! and if so hands HTTP/2 a body that knows its own end, so the message and END_STREAM travel in
//! one frame (one write less per AppendEntries, vote or forwarded call, and one read less at the
//! receiver). A body that has not ended (a streamed snapshot) goes on as a stream, its first
//! frames in front.

use std::task::{Context, Poll};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use http_body::Frame;
use http_body_util::{BodyExt, BodyStream, Full, StreamBody};
use tonic::body::Body;
use tonic::codegen::http::{Request, Response};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Wraps the peer channel; see the module documentation.
#[derive(Clone, Debug)]
pub(crate) struct WholeBody<S>(pub(crate) S);

impl<S> tower::Service<Request<Body>> for WholeBody<S>
where
    S: tower::Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Response<Body>, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.0.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        // The clone takes the place of the service that was made ready (tower's usual swap).
        let clone = self.0.clone();
        let mut inner = std::mem::replace(&mut self.0, clone);
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let body = whole_if_ended(body).await?;
            inner
                .call(Request::from_parts(parts, body))
                .await
                .map_err(Into::into)
        })
    }
}

/// `body` as one frame that carries its end when its first frame is all there is (seen without
/// waiting); otherwise the frames taken so far followed by the rest of `body`.
async fn whole_if_ended(mut body: Body) -> Result<Body, BoxError> {
    let first = match body.frame().await {
        None => return Ok(Body::empty()),
        Some(frame) => frame?,
    };
    let first = match first.into_data() {
        Ok(data) => data,
        Err(frame) => return Ok(chained(vec![frame], body)),
    };
    if http_body::Body::is_end_stream(&body) {
        return Ok(Body::new(Full::new(first)));
    }
    match body.frame().now_or_never() {
        Some(None) => Ok(Body::new(Full::new(first))),
        Some(Some(second)) => Ok(chained(vec![Frame::data(first), second?], body)),
        None => Ok(chained(vec![Frame::data(first)], body)),
    }
}

/// `taken` followed by what is left of `rest`.
fn chained(taken: Vec<Frame<Bytes>>, rest: Body) -> Body {
    let taken = futures::stream::iter(taken.into_iter().map(Ok::<_, tonic::Status>));
    Body::new(StreamBody::new(taken.chain(BodyStream::new(rest))))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tower::{Service, ServiceExt};

    use super::*;

    /// The frames the inner service read, each with whether the body said it had ended right
    /// after it.
    type Seen = Arc<Mutex<Vec<(Bytes, bool)>>>;

    /// Calls [`WholeBody`] over an inner service that records what it reads.
    async fn send(body: Body) -> Vec<(Bytes, bool)> {
        let seen = Seen::default();
        let record = seen.clone();
        let inner = tower::service_fn(move |request: Request<Body>| {
            let record = record.clone();
            async move {
                let mut body = request.into_body();
                while let Some(frame) = body.frame().await {
                    let data = frame
                        .expect("no body error")
                        .into_data()
                        .expect("a data frame");
                    let ended = http_body::Body::is_end_stream(&body);
                    record.lock().expect("test lock").push((data, ended));
                }
                Ok::<_, std::convert::Infallible>(Response::new(Body::empty()))
            }
        });
        let mut service = WholeBody(inner);
        let response = service
            .ready()
            .await
            .expect("ready")
            .call(Request::new(body))
            .await;
        assert!(response.is_ok());
        let frames = seen.lock().expect("test lock");
        frames.clone()
    }

    fn frames(messages: &[&'static [u8]]) -> Vec<Result<Frame<Bytes>, tonic::Status>> {
        messages
            .iter()
            .map(|m| Ok(Frame::data(Bytes::from_static(m))))
            .collect()
    }

    #[tokio::test]
    async fn a_single_message_reaches_http2_with_its_end() {
        // Like tonic's own body: one message, its end known only on the next poll.
        let body = Body::new(StreamBody::new(futures::stream::iter(frames(&[b"abc"]))));
        assert_eq!(send(body).await, vec![(Bytes::from_static(b"abc"), true)]);
    }

    #[tokio::test]
    async fn a_stream_of_messages_stays_a_stream() {
        let body = Body::new(StreamBody::new(futures::stream::iter(frames(&[
            b"one", b"two", b"three",
        ]))));
        let seen: Vec<Bytes> = send(body).await.into_iter().map(|(data, _)| data).collect();
        assert_eq!(seen, vec!["one", "two", "three"]);
    }

    #[tokio::test]
    async fn a_body_whose_next_frame_is_not_ready_is_not_waited_for() {
        let (tx, rx) = futures::channel::mpsc::unbounded::<Result<Frame<Bytes>, tonic::Status>>();
        tx.unbounded_send(Ok(Frame::data(Bytes::from_static(b"first"))))
            .expect("open channel");
        let body = Body::new(StreamBody::new(rx));
        let later = tokio::spawn(async move {
            tokio::task::yield_now().await;
            tx.unbounded_send(Ok(Frame::data(Bytes::from_static(b"second"))))
                .expect("open channel");
        });
        let seen: Vec<Bytes> = send(body).await.into_iter().map(|(data, _)| data).collect();
        later.await.expect("sender task");
        assert_eq!(seen, vec!["first", "second"]);
    }
}
