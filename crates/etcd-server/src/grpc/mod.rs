//! gRPC adapters, one per etcd service: take the request, call the store service, map the
//! error with [`crate::error::to_status`]. Headers are filled by the service layer.

pub mod auth;
pub mod cluster;
pub mod election;
pub mod kv;
pub mod lease;
pub mod lock;
pub mod maintenance;
pub mod watch;

use crate::error::{ServiceError, to_status};

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
