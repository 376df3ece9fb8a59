//! Lease: grant, revoke, keepalive (leader memory, no log entry), time-to-live, list.

use etcd_proto::errors;
use etcd_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveResponse, LeaseLeasesResponse,
    LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus, LeaseTimeToLiveRequest,
    LeaseTimeToLiveResponse,
};
use etcd_proto::raftcmd::raft_command::Command;
use etcd_proto::raftcmd::raft_response::Response;

use super::{Service, unexpected};
use crate::backend::{Backend, StatusExt};
use crate::error::ServiceError;

/// etcd's largest lease TTL in seconds.
const MAX_LEASE_TTL_SECONDS: i64 = 9_000_000_000;

/// A fresh positive lease ID, chosen by the proposer so that apply stays deterministic.
fn random_lease_id() -> i64 {
    loop {
        let id = rand::random::<i64>() & i64::MAX;
        if id != 0 {
            return id;
        }
    }
}

impl<B: Backend> Service<B> {
    /// Grants a lease: TTL raised to the minimum (ceil(1.5 × election timeout)), ID 0 replaced
    /// by a random positive ID before proposing. The lease starts at grant time on the leader.
    pub async fn lease_grant(
        &self,
        mut request: LeaseGrantRequest,
    ) -> Result<LeaseGrantResponse, ServiceError> {
        if request.ttl > MAX_LEASE_TTL_SECONDS {
            return Err(errors::LEASE_TTL_TOO_LARGE.into());
        }
        request.ttl = request.ttl.max(self.config.min_lease_ttl_seconds());
        if request.id == 0 {
            request.id = random_lease_id();
        }
        match self.propose(Command::LeaseGrant(request)).await? {
            Response::LeaseGrant(mut response) => {
                if response.id == 0 {
                    response.id = request.id;
                }
                if response.ttl == 0 {
                    response.ttl = request.ttl;
                }
                self.leases.granted(response.id, response.ttl);
                response.header = Some(self.member_header(response.header));
                Ok(response)
            }
            _ => Err(unexpected("lease grant")),
        }
    }

    pub async fn lease_revoke(
        &self,
        request: LeaseRevokeRequest,
    ) -> Result<LeaseRevokeResponse, ServiceError> {
        let id = request.id;
        self.check(mvcc::Access::LeaseRevoke(id))?;
        match self.propose(Command::LeaseRevoke(request)).await? {
            Response::LeaseRevoke(mut response) => {
                self.leases.forget(id);
                response.header = Some(self.member_header(response.header));
                Ok(response)
            }
            _ => Err(unexpected("lease revoke")),
        }
    }

    /// One keepalive: answered by the leader from memory (TTL 0 when the lease is gone) after a
    /// quorum confirmed its leadership (no log entry); a follower forwards it to the leader
    /// unless it was already forwarded to us.
    pub async fn lease_keep_alive(
        &self,
        id: i64,
        forwarded: bool,
    ) -> Result<LeaseKeepAliveResponse, ServiceError> {
        let status = self.node.status();
        if status.is_leader() {
            // Confirm the leadership with a quorum before promising a TTL (etcd's
            // ensureLeadership): an isolated former leader must not renew a lease that the new
            // leader, which restarted every lease at election time, may expire first.
            self.node.linearizable_read().await?;
            let confirmed = self.node.status();
            if confirmed.is_leader() && confirmed.term == status.term {
                let ttl = self.leases.keepalive(id);
                return Ok(LeaseKeepAliveResponse {
                    header: Some(self.current_header()),
                    id,
                    ttl,
                });
            }
        }
        if forwarded {
            return Err(ServiceError::NoLeader);
        }
        let ttl = self.forwarder.keepalive(&self.node, id).await?;
        Ok(LeaseKeepAliveResponse {
            header: Some(self.current_header()),
            id,
            ttl,
        })
    }

    /// Remaining TTL from the leader's lease keeper; an unknown lease answers TTL -1.
    pub async fn lease_time_to_live(
        &self,
        request: LeaseTimeToLiveRequest,
        forwarded: bool,
    ) -> Result<LeaseTimeToLiveResponse, ServiceError> {
        let status = self.node.status();
        if !status.is_leader() {
            if forwarded {
                return Err(ServiceError::NoLeader);
            }
            let mut response = self.forwarder.time_to_live(&self.node, request).await?;
            response.header = Some(self.current_header());
            return Ok(response);
        }
        let answer = self.leases.time_to_live(request.id, request.keys);
        Ok(LeaseTimeToLiveResponse {
            header: Some(self.current_header()),
            id: request.id,
            ttl: answer.ttl,
            granted_ttl: answer.granted_ttl,
            keys: answer.keys,
        })
    }

    /// Lists the leases of the applied state.
    pub async fn lease_leases(&self) -> Result<LeaseLeasesResponse, ServiceError> {
        let (revision, mut ids) = self.node.read(|store| {
            let ids: Vec<i64> = store.leases().iter().map(|(id, _)| *id).collect();
            (store.revision(), ids)
        });
        ids.sort_unstable();
        Ok(LeaseLeasesResponse {
            header: Some(self.header(revision)),
            leases: ids.into_iter().map(|id| LeaseStatus { id }).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio_util::sync::CancellationToken;
    use tokio_util::task::TaskTracker;

    use super::*;
    use crate::config::ServerConfig;
    use crate::lease::TokioClock;
    use crate::testing::FakeNode;

    #[tokio::test]
    async fn a_leader_cut_off_from_its_quorum_renews_nothing() {
        let node = FakeNode::leader(4);
        node.grant(5, 10);
        let service = Service::new(
            node.clone(),
            ServerConfig::default(),
            Arc::new(TokioClock),
            TaskTracker::new(),
            CancellationToken::new(),
        );
        let renewed = service.lease_keep_alive(5, false).await;
        assert_eq!(renewed.map(|response| response.ttl).ok(), Some(10));
        node.set_quorum(false);
        let refused = service.lease_keep_alive(5, false).await;
        assert!(matches!(refused, Err(ServiceError::Timeout)), "{refused:?}");
    }
}
