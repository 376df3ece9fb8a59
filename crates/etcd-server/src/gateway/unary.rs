//! The unary half of the gateway: read the body, decode the request, call, encode the reply.

use std::future::Future;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, post};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::json::{self, Caller};
use crate::backend::Backend;
use crate::error::{ServiceError, to_status};
use crate::service::Service;

/// A `POST` route calling `call` with the decoded request and the service acting for the
/// caller the `Authorization` token names (an invalid token is refused before the call, as
/// etcd refuses it); any other method gets 405.
pub fn unary<B, Req, Resp, F, Fut>(call: F) -> MethodRouter<Service<B>>
where
    B: Backend,
    Req: DeserializeOwned + prost::Message + Send + 'static,
    Resp: Serialize + Send + 'static,
    F: Fn(Service<B>, Req) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Resp, tonic::Status>> + Send + 'static,
{
    unary_route(Token::Checked, call)
}

/// [`unary`] for the one call that ignores the caller's token: Authenticate, which is how a
/// client gets a token in the first place.
pub fn unary_without_token<B, Req, Resp, F, Fut>(call: F) -> MethodRouter<Service<B>>
where
    B: Backend,
    Req: DeserializeOwned + prost::Message + Send + 'static,
    Resp: Serialize + Send + 'static,
    F: Fn(Service<B>, Req) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Resp, tonic::Status>> + Send + 'static,
{
    unary_route(Token::Ignored, call)
}

/// Whether a route resolves the caller's token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Checked,
    Ignored,
}

fn unary_route<B, Req, Resp, F, Fut>(token: Token, call: F) -> MethodRouter<Service<B>>
where
    B: Backend,
    Req: DeserializeOwned + prost::Message + Send + 'static,
    Resp: Serialize + Send + 'static,
    F: Fn(Service<B>, Req) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Resp, tonic::Status>> + Send + 'static,
{
    post(
        move |State(service): State<Service<B>>, headers: HeaderMap, body: Body| async move {
            let service = match token {
                Token::Checked => match acting_for_caller(&service, &headers) {
                    Ok(service) => service,
                    Err(refused) => return json::error_response(&refused),
                },
                Token::Ignored => service,
            };
            let request = match read_message::<B, Req>(&service, body).await {
                Ok(request) => request,
                Err(refused) => return refused,
            };
            match call(service, request).await {
                Ok(reply) => match json::encode(&reply) {
                    Ok(body) => json::json_response(StatusCode::OK, body),
                    Err(status) => json::error_response(&status),
                },
                Err(status) => json::error_response(&status),
            }
        },
    )
    .fallback(method_not_allowed)
}

/// Reads a whole request body and decodes it as one message, enforcing the request size
/// limit as gRPC does for the same message. The error is the reply to send.
pub async fn read_message<B, Req>(service: &Service<B>, body: Body) -> Result<Req, Response>
where
    B: Backend,
    Req: DeserializeOwned + prost::Message,
{
    let limit = body_limit(service);
    let text = axum::body::to_bytes(body, limit).await.map_err(|_| {
        json::error_response_with(
            StatusCode::PAYLOAD_TOO_LARGE,
            &tonic::Status::resource_exhausted(format!(
                "gateway: request body larger than max ({limit} bytes)"
            )),
        )
    })?;
    let request: Req = json::decode(&text).map_err(|status| json::error_response(&status))?;
    check_message_size(service, &request).map_err(|status| json::error_response(&status))?;
    Ok(request)
}

/// Most bytes of JSON text read for one message: twice gRPC's decoding limit, room enough
/// for base64 (4/3) and field names around a message gRPC would accept.
pub fn body_limit<B: Backend>(service: &Service<B>) -> usize {
    service.config().grpc_max_receive_bytes().saturating_mul(2)
}

/// Refuses a decoded message that gRPC would refuse, with gRPC's own text.
pub fn check_message_size<B: Backend>(
    service: &Service<B>,
    message: &impl prost::Message,
) -> Result<(), tonic::Status> {
    let size = message.encoded_len();
    let limit = service.config().grpc_max_receive_bytes();
    if size > limit {
        return Err(tonic::Status::resource_exhausted(format!(
            "grpc: received message larger than max ({size} vs. {limit})"
        )));
    }
    Ok(())
}

/// 405 for any method but `POST` on a gateway route, naming the allowed one.
pub async fn method_not_allowed() -> Response {
    let mut response = json::error_response_with(
        StatusCode::METHOD_NOT_ALLOWED,
        &tonic::Status::unimplemented("Method Not Allowed"),
    );
    response
        .headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
    response
}

/// 404 for a path under a gateway prefix that names no route.
pub async fn not_found() -> Response {
    json::error_response_with(
        StatusCode::NOT_FOUND,
        &tonic::Status::not_found("Not Found"),
    )
    .into_response()
}

/// The service acting for the caller named by the request's `Authorization` header (an
/// optional `Bearer ` prefix stripped); without a token, the anonymous caller.
pub fn acting_for_caller<B: Backend>(
    service: &Service<B>,
    headers: &HeaderMap,
) -> Result<Service<B>, tonic::Status> {
    service
        .for_token(Caller::from_headers(headers).token.as_deref())
        .map_err(status)
}

/// Maps a service error to its gRPC status (the one mapping, [`to_status`]).
pub fn status(error: ServiceError) -> tonic::Status {
    to_status(&error)
}
