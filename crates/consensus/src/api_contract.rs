// CONTRACT (kept by the consensus work; consumed by etcd-server and the binary).
// Signatures here are the agreed public surface of `consensus`. Bodies are stubs until implemented.
// Additions are fine; changing a signature needs the consumers updated in the same commit.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use etcd_proto::etcdserverpb::Member;
use etcd_proto::raftcmd::{RaftCommand, RaftResponse};

/// A Raft member ID (etcd's member ID: a non-zero u64, shown in hex by etcdctl).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemberId(pub u64);

/// Whether this start creates a new cluster or joins an existing one (etcd's --initial-cluster-state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitialClusterState {
    New,
    Existing,
}

/// Everything a member needs to start. Built by the binary from etcd-style flags or pgwarden's config.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Human name (etcd --name).
    pub name: String,
    /// Where redb files live (etcd --data-dir). Created if missing.
    pub data_dir: PathBuf,
    /// URLs peers use to reach this member (etcd --initial-advertise-peer-urls), e.g. "http://127.0.0.1:2380".
    pub peer_urls: Vec<String>,
    /// URLs clients use to reach this member (etcd --advertise-client-urls).
    pub client_urls: Vec<String>,
    /// name → peer URLs of the initial members (etcd --initial-cluster). Ignored when data_dir already holds a member.
    pub initial_cluster: Vec<(String, Vec<String>)>,
    pub initial_cluster_state: InitialClusterState,
    /// etcd --initial-cluster-token: mixed into member and cluster IDs.
    pub initial_cluster_token: String,
    /// Raft heartbeat interval (etcd --heartbeat-interval, default 100 ms).
    pub heartbeat_interval: Duration,
    /// Raft election timeout (etcd --election-timeout, default 1000 ms).
    pub election_timeout: Duration,
    /// Take a snapshot (and purge the log before it) after this many applied entries (etcd --snapshot-count).
    pub snapshot_count: u64,
}

/// What a client-facing layer can learn about the member without a Raft round trip.
#[derive(Debug, Clone, Default)]
pub struct RaftStatus {
    pub member_id: u64,
    pub cluster_id: u64,
    /// Member ID of the current Raft leader, if known.
    pub leader: Option<u64>,
    pub term: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub is_learner: bool,
    /// Full member list with names, peer URLs, client URLs, learner flags (etcd's Member message).
    pub members: Vec<Member>,
}

/// One applied command's watch events, published in log order by every member.
#[derive(Debug, Clone)]
pub struct AppliedEvents {
    /// The revision the command created.
    pub revision: i64,
    /// Events in (revision, sub-revision) order; PUT kvs are full, DELETE kvs carry key + mod_revision.
    /// `prev_kv` is filled when a previous version existed (watchers that did not ask drop it).
    pub events: Vec<etcd_proto::mvccpb::Event>,
}

/// Errors of consensus operations, mapped to etcd's by the server layer.
#[derive(Debug, thiserror::Error)]
pub enum ConsensusError {
    #[error("no leader")]
    NoLeader,
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

/// A running Raft member. Cheap to clone.
#[derive(Clone)]
pub struct RaftNode {
    _inner: Arc<()>,
}

impl RaftNode {
    /// Opens (or creates) the member's storage, starts openraft and the peer server on `peer_listener`,
    /// bootstraps a new cluster when `initial_cluster_state` is New and the data dir is empty,
    /// and returns once the member is running (not necessarily with a leader).
    pub async fn start(_config: NodeConfig, _peer_listener: tokio::net::TcpListener) -> Result<RaftNode, ConsensusError> {
        todo!()
    }
    pub fn member_id(&self) -> u64 { todo!() }
    pub fn cluster_id(&self) -> u64 { todo!() }
    /// Replicates `command` (group commit: concurrent proposals share one log entry and one fsync),
    /// forwarding to the leader when this member is a follower; returns apply's answer once the
    /// command is committed and applied locally.
    pub async fn propose(&self, _command: RaftCommand) -> Result<RaftResponse, ConsensusError> { todo!() }
    /// Read barrier: returns once this member's applied state includes everything committed
    /// before the call (openraft read index). Concurrent calls may share one round.
    pub async fn linearizable_read(&self) -> Result<(), ConsensusError> { todo!() }
    /// Runs `read` against the local applied state (a consistent point in time).
    pub fn read<T>(&self, _read: impl FnOnce(&mvcc::Store) -> T) -> T { todo!() }
    /// Applied events in log order. A lagging receiver gets `Lagged` and must replay from mvcc history.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<AppliedEvents>> { todo!() }
    pub fn status(&self) -> RaftStatus { todo!() }
    /// Changes whenever leader, term or membership change.
    pub fn watch_status(&self) -> tokio::sync::watch::Receiver<RaftStatus> { todo!() }
    pub async fn member_add(&self, _peer_urls: Vec<String>, _is_learner: bool) -> Result<(Member, Vec<Member>), ConsensusError> { todo!() }
    pub async fn member_remove(&self, _id: u64) -> Result<Vec<Member>, ConsensusError> { todo!() }
    pub async fn member_update(&self, _id: u64, _peer_urls: Vec<String>) -> Result<Vec<Member>, ConsensusError> { todo!() }
    pub async fn member_promote(&self, _id: u64) -> Result<Vec<Member>, ConsensusError> { todo!() }
    /// Leader transfer (etcd MoveLeader). Must be called on the leader.
    pub async fn move_leader(&self, _target: u64) -> Result<(), ConsensusError> { todo!() }
    /// A point-in-time copy of the state machine (for Maintenance.Snapshot).
    pub async fn snapshot_bytes(&self) -> Result<Vec<u8>, ConsensusError> { todo!() }
    /// Size in bytes of the member's storage files.
    pub fn db_size(&self) -> u64 { todo!() }
    /// Stops openraft and the peer server; flushes storage.
    pub async fn shutdown(&self) -> Result<(), ConsensusError> { todo!() }
}

#[allow(dead_code)]
fn _unused(_: SocketAddr) {}
