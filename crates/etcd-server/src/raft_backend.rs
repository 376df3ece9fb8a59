//! The production member: `consensus::RaftNode` as the API's [`Backend`].

use std::sync::{Arc, Weak};

use bytes::Bytes;
use consensus::{ConsensusError, ForwardHandler, RaftNode};
use etcd_proto::etcdserverpb::Member;
use etcd_proto::raftcmd::{RaftCommand, RaftResponse};
use tokio::sync::{broadcast, watch};

use crate::backend::{AppliedEvents, Backend, EngineCounters, NodeStatus};
use crate::error::ServiceError;

impl From<ConsensusError> for ServiceError {
    fn from(error: ConsensusError) -> Self {
        match error {
            ConsensusError::NoLeader => ServiceError::NoLeader,
            ConsensusError::LeaderChanged => ServiceError::LeaderChanged,
            ConsensusError::Timeout => ServiceError::Timeout,
            ConsensusError::Stopped => ServiceError::Stopped,
            ConsensusError::Etcd(etcd) => ServiceError::Etcd(etcd),
            ConsensusError::Internal(text) => ServiceError::Internal(text),
        }
    }
}

impl Backend for RaftNode {
    fn status(&self) -> NodeStatus {
        RaftNode::status(self)
    }

    fn header_identity(&self) -> (u64, u64, u64) {
        // A fresh receiver borrows the current value without cloning the member list; the
        // borrow ends before this function returns (never held across an await).
        let receiver = RaftNode::watch_status(self);
        let status = receiver.borrow();
        (status.cluster_id, status.member_id, status.term)
    }

    fn watch_status(&self) -> watch::Receiver<NodeStatus> {
        RaftNode::watch_status(self)
    }

    async fn propose(&self, command: RaftCommand) -> Result<RaftResponse, ServiceError> {
        Ok(RaftNode::propose(self, command).await?)
    }

    async fn propose_as_leader(&self, command: RaftCommand) -> Result<RaftResponse, ServiceError> {
        Ok(RaftNode::propose_as_leader(self, command).await?)
    }

    async fn linearizable_read(&self) -> Result<(), ServiceError> {
        Ok(RaftNode::linearizable_read(self).await?)
    }

    fn read<T>(&self, read: impl FnOnce(&mvcc::Store) -> T) -> T {
        RaftNode::read(self, read)
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<AppliedEvents>> {
        RaftNode::subscribe(self)
    }

    async fn member_add(
        &self,
        peer_urls: Vec<String>,
        is_learner: bool,
    ) -> Result<(Member, Vec<Member>), ServiceError> {
        Ok(RaftNode::member_add(self, peer_urls, is_learner).await?)
    }

    async fn member_remove(&self, id: u64) -> Result<Vec<Member>, ServiceError> {
        Ok(RaftNode::member_remove(self, id).await?)
    }

    async fn member_update(
        &self,
        id: u64,
        peer_urls: Vec<String>,
    ) -> Result<Vec<Member>, ServiceError> {
        Ok(RaftNode::member_update(self, id, peer_urls).await?)
    }

    async fn member_promote(&self, id: u64) -> Result<Vec<Member>, ServiceError> {
        Ok(RaftNode::member_promote(self, id).await?)
    }

    async fn move_leader(&self, target: u64) -> Result<(), ServiceError> {
        Ok(RaftNode::move_leader(self, target).await?)
    }

    async fn snapshot_bytes(&self) -> Result<Vec<u8>, ServiceError> {
        Ok(RaftNode::snapshot_bytes(self).await?)
    }

    fn db_size(&self) -> u64 {
        RaftNode::db_size(self)
    }

    fn engine_counters(&self) -> EngineCounters {
        let (log_appends, log_entries) = RaftNode::log_write_stats(self);
        EngineCounters {
            read_index_rounds: RaftNode::read_index_rounds(self),
            log_appends,
            log_entries,
        }
    }

    fn attach_log_histograms(&self, histograms: crate::metrics::LogHistograms) -> bool {
        RaftNode::attach_log_histograms(self, histograms)
    }

    fn serve_forwarded(&self, handler: Weak<dyn ForwardHandler>) -> bool {
        RaftNode::serve_forwarded(self, handler)
    }

    async fn forward_to_leader(
        &self,
        method: &'static str,
        body: Bytes,
    ) -> Result<Bytes, tonic::Status> {
        RaftNode::forward_to_leader(self, method, body).await
    }
}
