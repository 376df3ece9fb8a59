//! What the etcd API needs from the replicated store, as two small traits.
//!
//! [`Backend`] is the member: propose, read barrier, status, membership, the applied-event
//! feed, and reads of the applied `mvcc::Store` at one consistent point in time.
//! Production implements it over `consensus::RaftNode`; unit tests over an in-memory member
//! that applies commands to a real `mvcc::Store` without Raft.

use std::future::Future;
use std::sync::{Arc, Weak};

use bytes::Bytes;

use etcd_proto::etcdserverpb::Member;
use etcd_proto::raftcmd::{RaftCommand, RaftResponse};
use tokio::sync::{broadcast, watch};

use crate::error::ServiceError;

/// What this member knows about the Raft group without a round trip (consensus' view).
pub use consensus::RaftStatus as NodeStatus;

/// One applied command's watch events, published in log order by every member. `revision` is
/// the store revision after the command (a lease expiry that revoked several leases with keys
/// spans several revisions, this being the last).
pub use consensus::AppliedEvents;

/// Questions the API layer asks of a member's status.
pub trait StatusExt {
    /// True when this member believes it is the Raft leader.
    fn is_leader(&self) -> bool;
}

impl StatusExt for NodeStatus {
    fn is_leader(&self) -> bool {
        self.leader == Some(self.member_id)
    }
}

/// The member as the etcd API uses it. Cheap to clone.
pub trait Backend: Clone + Send + Sync + 'static {
    fn status(&self) -> NodeStatus;
    /// (cluster ID, member ID, Raft term) for response headers, without copying the member list.
    fn header_identity(&self) -> (u64, u64, u64) {
        let status = self.status();
        (status.cluster_id, status.member_id, status.term)
    }
    /// Changes whenever leader, term or membership change.
    fn watch_status(&self) -> watch::Receiver<NodeStatus>;
    /// Replicates `command` and returns apply's answer once it is applied locally.
    fn propose(
        &self,
        command: RaftCommand,
    ) -> impl Future<Output = Result<RaftResponse, ServiceError>> + Send;
    /// Replicates `command` only while this member leads (never forwarded to another leader):
    /// for decisions taken from the leader's own in-memory state, such as lease expiry.
    fn propose_as_leader(
        &self,
        command: RaftCommand,
    ) -> impl Future<Output = Result<RaftResponse, ServiceError>> + Send {
        self.propose(command)
    }
    /// Returns once the local applied state includes everything committed before the call.
    fn linearizable_read(&self) -> impl Future<Output = Result<(), ServiceError>> + Send;
    /// Runs `read` against the local applied state at one consistent point in time.
    fn read<T>(&self, read: impl FnOnce(&mvcc::Store) -> T) -> T;
    /// Applied events in log order; a lagging receiver must replay from history.
    fn subscribe(&self) -> broadcast::Receiver<Arc<AppliedEvents>>;
    fn member_add(
        &self,
        peer_urls: Vec<String>,
        is_learner: bool,
    ) -> impl Future<Output = Result<(Member, Vec<Member>), ServiceError>> + Send;
    fn member_remove(
        &self,
        id: u64,
    ) -> impl Future<Output = Result<Vec<Member>, ServiceError>> + Send;
    fn member_update(
        &self,
        id: u64,
        peer_urls: Vec<String>,
    ) -> impl Future<Output = Result<Vec<Member>, ServiceError>> + Send;
    fn member_promote(
        &self,
        id: u64,
    ) -> impl Future<Output = Result<Vec<Member>, ServiceError>> + Send;
    fn move_leader(&self, target: u64) -> impl Future<Output = Result<(), ServiceError>> + Send;
    fn snapshot_bytes(&self) -> impl Future<Output = Result<Vec<u8>, ServiceError>> + Send;
    /// Size in bytes of the member's storage files.
    fn db_size(&self) -> u64;
    /// Counters the member keeps about its own work, for `/metrics` (zero where unknown).
    fn engine_counters(&self) -> EngineCounters {
        EngineCounters::default()
    }
    /// Hands the member's log store the histograms it records appends into. False when it
    /// already has some (the first registry attached keeps them).
    fn attach_log_histograms(&self, _histograms: crate::metrics::LogHistograms) -> bool {
        false
    }
    /// Lets `handler` answer the leader-only calls followers forward to this member, while the
    /// caller keeps it alive. False when the member takes none (or already has a handler).
    fn serve_forwarded(&self, _handler: Weak<dyn consensus::ForwardHandler>) -> bool {
        false
    }
    /// Hands a leader-only call to the leader (see `lease::forward`); `Unavailable` when no
    /// leader can be reached. The caller bounds the time.
    fn forward_to_leader(
        &self,
        _method: &'static str,
        _body: Bytes,
    ) -> impl Future<Output = Result<Bytes, tonic::Status>> + Send {
        std::future::ready(Err(tonic::Status::unavailable("no leader")))
    }
}

/// Monotonic counters of a member's consensus and storage work, sampled at scrape time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineCounters {
    /// Read-index rounds run for linearizable reads.
    pub read_index_rounds: u64,
    /// Raft log appends (each one redb commit and fsync).
    pub log_appends: u64,
    /// Log entries written by those appends.
    pub log_entries: u64,
}
