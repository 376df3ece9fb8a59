//! A follower forwards leader-only lease calls (keepalive, time-to-live) to the Raft leader over
//! the leader's advertised client URL, with the generated etcd lease client.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use etcd_proto::errors::EtcdError;
use etcd_proto::etcdserverpb::lease_client::LeaseClient;
use etcd_proto::etcdserverpb::{
    LeaseKeepAliveRequest, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use tonic::transport::{Channel, Endpoint};

use crate::backend::{NodeStatus, StatusExt};
use crate::error::ServiceError;

/// gRPC metadata key marking a call already forwarded once; the receiver never forwards it
/// again, so a stale view of the leader cannot make two members bounce a call between them.
pub const FORWARDED_METADATA: &str = "pgwarden-forwarded";

/// Caches one channel to the current leader; a leader change replaces it.
pub struct LeaderForwarder {
    timeout: Duration,
    /// (leader member ID, client) of the last leader used. Held only to clone or replace.
    cached: Mutex<Option<(u64, LeaseClient<Channel>)>>,
}

fn remote_error(status: &tonic::Status) -> ServiceError {
    match EtcdError::from_message(status.message()) {
        Some(etcd) => ServiceError::Etcd(etcd),
        None if status.code() == tonic::Code::Unavailable => ServiceError::NoLeader,
        None => ServiceError::Internal(status.message().to_owned()),
    }
}

impl LeaderForwarder {
    pub fn new(timeout: Duration) -> Self {
        LeaderForwarder {
            timeout,
            cached: Mutex::new(None),
        }
    }

    fn client(&self, status: &NodeStatus) -> Result<LeaseClient<Channel>, ServiceError> {
        let leader = status.leader.ok_or(ServiceError::NoLeader)?;
        let mut cached = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((cached_leader, client)) = cached.as_ref()
            && *cached_leader == leader
        {
            return Ok(client.clone());
        }
        let url = status
            .leader_client_urls()
            .and_then(|urls| urls.into_iter().next())
            .ok_or(ServiceError::NoLeader)?;
        let endpoint = Endpoint::from_shared(url)
            .map_err(|error| ServiceError::Internal(format!("bad leader client URL: {error}")))?
            .connect_timeout(self.timeout)
            .timeout(self.timeout);
        let client = LeaseClient::new(endpoint.connect_lazy());
        *cached = Some((leader, client.clone()));
        Ok(client)
    }

    fn forget(&self) {
        *self.cached.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    fn mark<T>(message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.metadata_mut().insert(
            FORWARDED_METADATA,
            tonic::metadata::MetadataValue::from_static("true"),
        );
        request
    }

    /// Renews `id` on the leader; answers the TTL the leader granted (0 = lease gone).
    pub async fn keepalive(&self, status: &NodeStatus, id: i64) -> Result<i64, ServiceError> {
        let mut client = self.client(status)?;
        let outbound = tokio_stream::once(LeaseKeepAliveRequest { id });
        let call = async {
            let mut responses = client
                .lease_keep_alive(Self::mark(outbound))
                .await?
                .into_inner();
            responses.message().await
        };
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(Some(response))) => Ok(response.ttl),
            Ok(Ok(None)) => Err(ServiceError::NoLeader),
            Ok(Err(status)) => {
                self.forget();
                Err(remote_error(&status))
            }
            Err(_) => {
                self.forget();
                Err(ServiceError::Timeout)
            }
        }
    }

    /// Asks the leader for a lease's remaining TTL.
    pub async fn time_to_live(
        &self,
        status: &NodeStatus,
        request: LeaseTimeToLiveRequest,
    ) -> Result<LeaseTimeToLiveResponse, ServiceError> {
        let mut client = self.client(status)?;
        match client.lease_time_to_live(Self::mark(request)).await {
            Ok(response) => Ok(response.into_inner()),
            Err(status) => {
                self.forget();
                Err(remote_error(&status))
            }
        }
    }
}
