//! pgwarden's Raft group member: openraft wired to `storage`, the peer transport, group commit,
//! the read barrier and etcd's Cluster API operations.
//!
//! Owns: the openraft configuration derived from etcd-style settings, member and cluster IDs,
//! bootstrap (new cluster, restart, join), the peer gRPC service and its reconnecting clients
//! (`proto/pgwarden/peer.proto`), the proposer that turns concurrent proposals into one log
//! entry (one append, one fsync, one replication round), follower forwarding (of writes, and of
//! the layer above's leader-only calls, opaquely), the batched
//! read-index barrier, membership changes with etcd's errors, and the member's status.
//!
//! Must not know: redb or the on-disk layout (only `storage` does), the etcd client API
//! (`etcd-server` adapts to it), HA or PostgreSQL.
//!
//! Timeouts: `propose`, `linearizable_read` and membership changes give up after
//! `NodeConfig::request_timeout` with `Timeout` (a leader is known but could not commit or
//! confirm) or `NoLeader`, so a member cut off from the majority answers with errors instead of
//! hanging or serving stale data. A write is acknowledged only after openraft committed it.
//!
//! Design notes:
//! - Followers forward writes (already batched) to the leader and wait until they applied the
//!   entry locally, so a write acknowledged by a member is visible in that member's reads.
//! - A forwarded write is re-sent only when it provably never reached the leader (connection
//!   refused, or the leader answered "not leader" before proposing). Any other failure is
//!   reported as `LeaderChanged` (commit status unknown), never retried: no double apply.
//! - Linearizable reads on a follower ask the leader for a read index (ReadIndex, confirmed by a
//!   quorum heartbeat) and then wait for local apply; reads are not forwarded.
//! - A restarted leader never resumes leadership without an election (openraft's leader
//!   restore is off): the store is in memory and the committed id is persisted lazily, so only
//!   a new term's noop entry makes its read index cover what it acknowledged before.
//! - Election timer drawn from [E/2, E) with E = `election_timeout`: openraft's leader lease
//!   equals the timer's maximum, so this keeps etcd's lease (E) and a ~2 s failover at E = 1 s.

#![cfg_attr(test, allow(clippy::unwrap_used, reason = "tests fail loudly"))]

mod append_channel;
mod append_stream;
mod bootstrap;
mod config;
mod error;
mod forward;
pub mod ids;
mod join;
mod membership;
mod network;
mod node;
mod proposer;
mod reads;
mod server;
mod status;
pub mod tls;
mod tls_transport;
mod whole_body;

/// Generated peer-transport types (`proto/pgwarden/peer.proto`).
#[allow(clippy::all, missing_docs)]
pub(crate) mod pb {
    tonic::include_proto!("pgwarden.peer");
}

pub use config::{DEFAULT_REQUEST_TIMEOUT, InitialClusterState, MemberId, NodeConfig, RaftStatus};
pub use error::ConsensusError;
pub use forward::ForwardHandler;
pub use node::RaftNode;
pub use storage::{AppliedEvents, LogHistograms};
pub use tls::{
    PeerTls, TlsError, TlsFiles, TlsSettingError, TlsSettingNames, TlsSettings, TlsSources,
};
