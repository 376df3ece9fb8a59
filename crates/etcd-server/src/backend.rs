//! What the etcd API needs from the replicated store, as two small traits.
//!
//! [`Backend`] is the member (propose, read barrier, status, membership, applied-event feed);
//! [`StoreRead`] is a consistent point-in-time view of the applied MVCC state.
//! Production implements both over `consensus::RaftNode` and `mvcc::Store`; unit tests
//! implement them over an in-memory fake so the watch hub and lease keeper run without Raft.

use std::future::Future;
use std::sync::Arc;

use etcd_proto::errors::EtcdError;
use etcd_proto::etcdserverpb::{
    AlarmMember, Member, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use etcd_proto::mvccpb::Event;
use etcd_proto::raftcmd::{RaftCommand, RaftResponse};
use tokio::sync::{broadcast, watch};

use crate::error::ServiceError;

/// What this member knows about the Raft group without a round trip.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeStatus {
    pub member_id: u64,
    pub cluster_id: u64,
    /// Member ID of the current Raft leader, if known.
    pub leader: Option<u64>,
    pub term: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub is_learner: bool,
    /// Full member list (names, peer URLs, client URLs, learner flags).
    pub members: Vec<Member>,
}

impl NodeStatus {
    /// True when this member believes it is the Raft leader.
    pub fn is_leader(&self) -> bool {
        self.leader == Some(self.member_id)
    }

    /// Client URLs of the current leader, for forwarding leader-only calls (lease keepalive).
    pub fn leader_client_urls(&self) -> Option<Vec<String>> {
        let leader = self.leader?;
        self.members
            .iter()
            .find(|member| member.id == leader)
            .map(|member| member.client_ur_ls.clone())
    }
}

/// One applied command's watch events, published in log order by every member.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AppliedEvents {
    /// The revision the command created.
    pub revision: i64,
    /// Events in (revision, sub-revision) order; `prev_kv` filled when a previous version existed.
    pub events: Vec<Event>,
}

/// A lease as the applied state knows it (no expiry: only the leader's lease keeper tracks time).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseView {
    pub id: i64,
    /// TTL in seconds as granted.
    pub granted_ttl: i64,
    /// Keys attached to the lease.
    pub keys: Vec<bytes::Bytes>,
}

/// A consistent point-in-time view of the applied keyspace.
pub trait StoreRead {
    /// Current store revision (1 for an empty new cluster).
    fn revision(&self) -> i64;
    /// Revision of the last compaction (0 if never compacted).
    fn compact_revision(&self) -> i64;
    /// Range as etcd defines it; the header is filled by the caller.
    fn range(&self, request: &RangeRequest) -> Result<RangeResponse, EtcdError>;
    /// Executes a txn whose every op is a range; the header is filled by the caller.
    fn txn_read_only(&self, request: &TxnRequest) -> Result<TxnResponse, EtcdError>;
    /// Events on `[key, range_end)` (etcd range conventions) with `from <= revision <= to`,
    /// in (revision, sub-revision) order, with `prev_kv` where a previous version exists.
    /// Fails with COMPACTED when `from` is below the compact revision.
    fn events(
        &self,
        key: &[u8],
        range_end: &[u8],
        from: i64,
        to: i64,
    ) -> Result<Vec<Event>, EtcdError>;
    fn lease(&self, id: i64) -> Option<LeaseView>;
    fn leases(&self) -> Vec<LeaseView>;
    fn alarms(&self) -> Vec<AlarmMember>;
    /// Deterministic hash of the keyspace history up to `revision` (0 = current) and the
    /// compact revision it covers; equal on every member at the same revision.
    fn hash_kv(&self, revision: i64) -> Result<(u32, i64), EtcdError>;
}

/// The member as the etcd API uses it. Cheap to clone.
pub trait Backend: Clone + Send + Sync + 'static {
    fn status(&self) -> NodeStatus;
    /// Changes whenever leader, term or membership change.
    fn watch_status(&self) -> watch::Receiver<NodeStatus>;
    /// Replicates `command` and returns apply's answer once it is applied locally.
    fn propose(
        &self,
        command: RaftCommand,
    ) -> impl Future<Output = Result<RaftResponse, ServiceError>> + Send;
    /// Returns once the local applied state includes everything committed before the call.
    fn linearizable_read(&self) -> impl Future<Output = Result<(), ServiceError>> + Send;
    /// Runs `read` against the local applied state at one consistent point in time.
    fn read<T>(&self, read: impl FnOnce(&dyn StoreRead) -> T) -> T;
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
}
