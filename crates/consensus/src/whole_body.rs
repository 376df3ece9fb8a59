//! Peer requests leave in one piece. tonic's request body does not say it has ended until it is
//! polled once more after its message, so HTTP/2 sends each peer RPC as HEADERS, DATA and then
//! an empty DATA frame carrying END_STREAM, each its own write on the socket and often its own
//! wake-up of the receiving member. A peer request is one message that is already encoded when
//! the call starts; this layer gathers it and hands HTTP/2 a body that knows its own end, so the
//! message and END_STREAM travel in one frame (one write less per AppendEntries, vote or
//! forwarded call, and one read less at the receiver).

use std::task::{Context, Poll};

use futures::future::BoxFuture;
use http_body_util::{BodyExt, Full};
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
            // A gRPC request body carries no trailers; only its bytes are kept.
            let bytes = body.collect().await?.to_bytes();
            let request = Request::from_parts(parts, Body::new(Full::new(bytes)));
            inner.call(request).await.map_err(Into::into)
        })
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http_body_util::StreamBody;
    use tonic::codegen::http::Response;
    use tower::{Service, ServiceExt};

    use super::*;

    /// What the inner service saw: the first frame's bytes, and whether the body said it had
    /// ended right after that frame.
    type Seen = (Bytes, bool);

    #[tokio::test]
    async fn the_message_and_its_end_reach_http2_as_one_frame() {
        let (seen_tx, seen_rx) = tokio::sync::oneshot::channel::<Seen>();
        let seen_tx = std::sync::Arc::new(std::sync::Mutex::new(Some(seen_tx)));
        let inner = tower::service_fn(move |request: Request<Body>| {
            let seen_tx = seen_tx.clone();
            async move {
                let mut body = request.into_body();
                let frame = body.frame().await.expect("a frame").expect("no body error");
                let data = frame.into_data().expect("a data frame");
                let ended = http_body::Body::is_end_stream(&body);
                if let Some(tx) = seen_tx.lock().expect("test lock").take() {
                    let _ = tx.send((data, ended));
                }
                Ok::<_, std::convert::Infallible>(Response::new(Body::empty()))
            }
        });
        // Like tonic's own body: one message, and the end known only on the next poll.
        let message = futures::stream::iter([Ok::<_, tonic::Status>(http_body::Frame::data(
            Bytes::from_static(b"\0\0\0\0\x03abc"),
        ))]);
        let request = Request::new(Body::new(StreamBody::new(message)));
        let mut service = WholeBody(inner);
        let response = service.ready().await.expect("ready").call(request).await;
        assert!(response.is_ok());
        let (data, ended) = seen_rx.await.expect("the inner service saw the request");
        assert_eq!(&data[..], b"\0\0\0\0\x03abc");
        assert!(
            ended,
            "the body must report its end together with its only frame"
        );
    }
}
