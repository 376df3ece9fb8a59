//! The store service: transport-free async functions over the member, shared by the gRPC
//! adapters (and, later, the HTTP JSON gateway).
//!
//! Each function validates, proposes-and-waits or reads (after a read barrier when the read is
//! linearizable), and fills the response header. Nothing here knows tonic's request or stream
//! types; errors are [`ServiceError`]s, mapped to the wire by [`crate::error::to_status`].

mod auth;
mod auth_tokens;
mod cluster;
mod kv;
mod lease;
pub mod recipes;

use std::sync::Arc;

use etcd_proto::etcdserverpb::ResponseHeader;
use etcd_proto::raftcmd::RaftCommand;
use etcd_proto::raftcmd::raft_command::Command;
use etcd_proto::raftcmd::raft_response::Response;
use prost::Message;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backend::Backend;
use crate::config::ServerConfig;
use crate::error::ServiceError;
use crate::lease::forward::LeaderForwarder;
use crate::lease::{Clock, LeaseKeeper};
use crate::metrics::ServerMetrics;
use crate::space::SpaceQuota;

pub use auth::{AuthInfo, token_from_header};
pub use auth_tokens::{TokenOwner, TokenStore};
pub use cluster::snapshot_chunks;

/// The store service for one member. Cheap to clone.
#[derive(Clone)]
pub struct Service<B: Backend> {
    node: B,
    config: Arc<ServerConfig>,
    leases: LeaseKeeper<B>,
    forwarder: Arc<LeaderForwarder>,
    /// Tracks the per-stream tasks (watch streams) so shutdown can wait for them.
    tasks: TaskTracker,
    /// Cancelled when the server shuts down; long-lived streams end on it.
    shutdown: CancellationToken,
    /// Simple auth tokens issued by this member, shared by every clone.
    tokens: Arc<TokenStore>,
    /// Who this service acts for; every request method checks it (see [`auth`]).
    caller: AuthInfo,
    /// This member's metric registry (served at `/metrics`).
    metrics: Arc<ServerMetrics>,
    /// The backend quota, checked before proposing writes that add data.
    space: Arc<SpaceQuota>,
}

impl<B: Backend> Service<B> {
    pub fn new(
        node: B,
        config: ServerConfig,
        clock: Arc<dyn Clock>,
        tasks: TaskTracker,
        shutdown: CancellationToken,
    ) -> Self {
        let forwarder = Arc::new(LeaderForwarder::new(config.forward_timeout));
        let metrics = Arc::new(ServerMetrics::new());
        let space = Arc::new(SpaceQuota::new(
            config.db_size_quota_bytes,
            metrics.nospace_alarms_raised.clone(),
        ));
        Service {
            tokens: Arc::new(TokenStore::new(config.auth_token_ttl, clock.clone())),
            caller: AuthInfo::Anonymous,
            metrics,
            space,
            leases: LeaseKeeper::new(node.clone(), clock),
            node,
            config: Arc::new(config),
            forwarder,
            tasks,
            shutdown,
        }
    }

    pub fn node(&self) -> &B {
        &self.node
    }

    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    pub fn lease_keeper(&self) -> &LeaseKeeper<B> {
        &self.leases
    }

    pub fn metrics(&self) -> &Arc<ServerMetrics> {
        &self.metrics
    }

    pub fn space(&self) -> &SpaceQuota {
        &self.space
    }

    pub fn tasks(&self) -> &TaskTracker {
        &self.tasks
    }

    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// A header from this member at `revision`: cluster ID, member ID and current Raft term.
    pub fn header(&self, revision: i64) -> ResponseHeader {
        let (cluster_id, member_id, raft_term) = self.node.header_identity();
        ResponseHeader {
            cluster_id,
            member_id,
            revision,
            raft_term,
        }
    }

    /// A header at the store's current revision (for replies that carry no revision of their own).
    pub fn current_header(&self) -> ResponseHeader {
        let revision = self.node.read(|store| store.revision());
        self.header(revision)
    }

    /// Overwrites a header computed by apply with this member's identity, keeping its revision
    /// (the revision after the write); a missing header gets the current store revision.
    fn member_header(&self, header: Option<ResponseHeader>) -> ResponseHeader {
        match header {
            Some(applied) if applied.revision > 0 => self.header(applied.revision),
            _ => self.current_header(),
        }
    }

    /// Refuses a request whose encoding exceeds the configured limit (etcd checks the proposal).
    fn check_size(&self, message: &impl Message) -> Result<(), ServiceError> {
        if message.encoded_len() > self.config.max_request_bytes {
            return Err(etcd_proto::errors::REQUEST_TOO_LARGE.into());
        }
        Ok(())
    }

    /// Proposes one command and waits until it is applied locally; an apply refusal becomes
    /// [`ServiceError::Apply`] with etcd's code and message.
    async fn propose(&self, command: Command) -> Result<Response, ServiceError> {
        self.space.check(&self.node, &command).await?;
        self.metrics.proposals_pending.increment(1.0);
        let proposed = self
            .node
            .propose(RaftCommand {
                command: Some(command),
            })
            .await;
        self.metrics.proposals_pending.decrement(1.0);
        let answer = proposed.inspect_err(|_| self.metrics.proposals_failed.increment(1))?;
        match answer.response {
            Some(Response::Error(refused)) => Err(ServiceError::Apply(refused)),
            Some(response) => Ok(response),
            None => Err(ServiceError::Internal(
                "apply returned no answer".to_owned(),
            )),
        }
    }
}

fn unexpected(what: &str) -> ServiceError {
    ServiceError::Internal(format!(
        "apply answered a {what} command with another kind of answer"
    ))
}
