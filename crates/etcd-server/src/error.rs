//! The service layer's error and its single mapping to a gRPC status.

use etcd_proto::errors::{self, EtcdError};
use etcd_proto::raftcmd::ApplyError;

/// Why a service call failed, in terms a client-facing adapter can map to etcd's wire errors.
///
/// The variants mirror the consensus layer's errors one to one, plus the errors apply answers
/// (already in etcd's catalogue shape: a gRPC code and the exact message).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ServiceError {
    #[error("no leader")]
    NoLeader,
    #[error("leader changed")]
    LeaderChanged,
    #[error("request timed out")]
    Timeout,
    #[error("server stopped")]
    Stopped,
    /// An error of etcd's catalogue, raised by validation, a local read or the consensus layer.
    #[error("{0}")]
    Etcd(EtcdError),
    /// Apply refused the command; code and message are etcd's, carried verbatim through the log.
    #[error("{}", .0.message)]
    Apply(ApplyError),
    /// Anything else: surfaced as gRPC `Unknown` with the text, as etcd does for unmapped errors.
    #[error("{0}")]
    Internal(String),
}

impl From<EtcdError> for ServiceError {
    fn from(error: EtcdError) -> Self {
        ServiceError::Etcd(error)
    }
}

/// The one place where pgwarden's errors become gRPC statuses, backed by etcd's catalogue.
///
/// Clients match on the exact message text, so nothing else may build a status for these cases.
pub fn to_status(error: &ServiceError) -> tonic::Status {
    match error {
        ServiceError::NoLeader => errors::NO_LEADER.status(),
        ServiceError::LeaderChanged => errors::LEADER_CHANGED.status(),
        ServiceError::Timeout => errors::TIMEOUT.status(),
        ServiceError::Stopped => errors::STOPPED.status(),
        ServiceError::Etcd(etcd) => etcd.status(),
        ServiceError::Apply(apply) => {
            tonic::Status::new(tonic::Code::from_i32(apply.code), apply.message.clone())
        }
        ServiceError::Internal(text) => tonic::Status::new(tonic::Code::Unknown, text.clone()),
    }
}

impl From<ServiceError> for tonic::Status {
    fn from(error: ServiceError) -> Self {
        to_status(&error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consensus_errors_map_to_etcd_text() {
        let status = to_status(&ServiceError::NoLeader);
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert_eq!(status.message(), "etcdserver: no leader");
        assert_eq!(
            to_status(&ServiceError::LeaderChanged).message(),
            "etcdserver: leader changed"
        );
        assert_eq!(
            to_status(&ServiceError::Timeout).message(),
            "etcdserver: request timed out"
        );
        assert_eq!(
            to_status(&ServiceError::Stopped).message(),
            "etcdserver: server stopped"
        );
    }

    #[test]
    fn apply_errors_keep_code_and_message() {
        let apply = ApplyError {
            code: tonic::Code::NotFound as i32,
            message: "etcdserver: requested lease not found".to_owned(),
        };
        let status = to_status(&ServiceError::Apply(apply));
        assert_eq!(status.code(), tonic::Code::NotFound);
        assert_eq!(status.message(), "etcdserver: requested lease not found");
        let compacted = to_status(&ServiceError::Etcd(errors::COMPACTED));
        assert_eq!(compacted.code(), tonic::Code::OutOfRange);
    }
}
