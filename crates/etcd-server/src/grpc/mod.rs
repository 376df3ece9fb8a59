//! gRPC adapters, one per etcd service: take the request, call the store service, map the
//! error with [`crate::error::to_status`]. Headers are filled by the service layer.
//! Each handler of a call etcd checks first resolves the request's token into the service
//! acting for its caller ([`caller`]); the permission check itself is in the service layer.

pub mod auth;
pub mod cluster;
pub mod election;
pub mod kv;
pub mod lease;
pub mod lock;
pub mod maintenance;
pub mod watch;

use crate::backend::Backend;
use crate::error::{ServiceError, to_status};
use crate::service::{Service, token_from_header};

/// gRPC metadata key of the auth token (Go clientv3, etcdctl, the `etcd-client` crate).
pub const TOKEN_METADATA: &str = "token";

/// The auth token of a gRPC request: metadata `token`, else `authorization` (an optional
/// `Bearer ` prefix stripped).
pub fn request_token(metadata: &tonic::metadata::MetadataMap) -> Option<&str> {
    let token = metadata
        .get(TOKEN_METADATA)
        .and_then(|value| value.to_str().ok())
        .filter(|token| !token.is_empty());
    token.or_else(|| {
        metadata
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(token_from_header)
    })
}

/// The service acting for the caller of a gRPC request (see `service::auth`): the token's
/// user; without a token, the user named by the connection's verified client certificate
/// (see `crate::tls`); otherwise anonymous.
pub(crate) fn caller<B: Backend>(
    service: &Service<B>,
    metadata: &tonic::metadata::MetadataMap,
) -> Result<Service<B>, tonic::Status> {
    let token = request_token(metadata);
    if token.is_none()
        && let Some(user) = metadata
            .get(crate::tls::CERT_USER_HEADER)
            .and_then(|value| value.to_str().ok())
    {
        return Ok(service.with_caller(service.authorize_certificate_user(user)));
    }
    service.for_token(token).map_err(|error| to_status(&error))
}

/// Wraps a service result as a tonic reply.
pub(crate) fn reply<T>(
    result: Result<T, ServiceError>,
) -> Result<tonic::Response<T>, tonic::Status> {
    result
        .map(tonic::Response::new)
        .map_err(|error| to_status(&error))
}

/// True when gRPC metadata `key` is present with the value "true".
pub(crate) fn metadata_flag(metadata: &tonic::metadata::MetadataMap, key: &str) -> bool {
    metadata
        .get(key)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.eq_ignore_ascii_case("true"))
}
