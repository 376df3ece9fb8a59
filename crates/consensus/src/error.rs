//! Errors of consensus operations.

/// Errors of consensus operations, mapped to etcd's by the server layer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConsensusError {
    #[error("no leader")]
    NoLeader,
    /// The leader changed while the request was in flight; whether it was committed is unknown.
    #[error("leader changed")]
    LeaderChanged,
    #[error("request timed out")]
    Timeout,
    #[error("server stopped")]
    Stopped,
    /// Carries an etcd catalogue error (member not found, bad transferee, unhealthy cluster, …).
    #[error("{0}")]
    Etcd(etcd_proto::errors::EtcdError),
    #[error("{0}")]
    Internal(String),
}

impl ConsensusError {
    /// The etcd catalogue error a client should see.
    pub fn to_etcd(&self) -> etcd_proto::errors::EtcdError {
        use etcd_proto::errors;
        match self {
            ConsensusError::NoLeader => errors::NO_LEADER,
            ConsensusError::LeaderChanged => errors::LEADER_CHANGED,
            ConsensusError::Timeout => errors::TIMEOUT,
            ConsensusError::Stopped => errors::STOPPED,
            ConsensusError::Etcd(error) => *error,
            ConsensusError::Internal(_) => errors::TIMEOUT,
        }
    }
}
