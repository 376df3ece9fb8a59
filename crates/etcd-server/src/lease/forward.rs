//! A follower forwards leader-only lease calls (keepalive, time-to-live) to the Raft leader
//! over the peer transport (`consensus::ForwardHandler`), as etcd forwards lease renewals over
//! its peer URLs: the peer channel is already open and authenticated with the member's peer
//! certificate, whereas the leader's client URL may ask for a client certificate (or a CA) no
//! member holds.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use etcd_proto::errors::EtcdError;
use etcd_proto::etcdserverpb::{
    LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use futures::future::BoxFuture;
use prost::Message;

use crate::backend::Backend;
use crate::error::{ServiceError, to_status};
use crate::service::{AuthInfo, Service};

/// gRPC metadata key marking a call already forwarded once; the receiver never forwards it
/// again. Forwarded calls now travel over the peer transport; the key is still honoured on the
/// client port for members that forward there.
pub const FORWARDED_METADATA: &str = "pgwarden-forwarded";

/// The forwarded call names.
const KEEPALIVE: &str = "lease/keepalive";
const TIME_TO_LIVE: &str = "lease/timetolive";

fn remote_error(status: &tonic::Status) -> ServiceError {
    match EtcdError::from_message(status.message()) {
        Some(etcd) => ServiceError::Etcd(etcd),
        None if status.code() == tonic::Code::Unavailable => ServiceError::NoLeader,
        None => ServiceError::Internal(status.message().to_owned()),
    }
}

/// The follower's half: sends a call to the leader and waits at most `timeout` for it.
pub struct LeaderForwarder {
    timeout: Duration,
}

impl LeaderForwarder {
    pub fn new(timeout: Duration) -> Self {
        LeaderForwarder { timeout }
    }

    async fn call<B: Backend, R: Message + Default>(
        &self,
        node: &B,
        method: &'static str,
        request: impl Message,
    ) -> Result<R, ServiceError> {
        let body = Bytes::from(request.encode_to_vec());
        match tokio::time::timeout(self.timeout, node.forward_to_leader(method, body)).await {
            Ok(Ok(answer)) => R::decode(answer).map_err(|error| {
                ServiceError::Internal(format!("decode the leader's {method} answer: {error}"))
            }),
            Ok(Err(status)) => Err(remote_error(&status)),
            Err(_) => Err(ServiceError::Timeout),
        }
    }

    /// Renews `id` on the leader; answers the TTL the leader granted (0 = lease gone).
    pub async fn keepalive<B: Backend>(&self, node: &B, id: i64) -> Result<i64, ServiceError> {
        let answer: LeaseKeepAliveResponse = self
            .call(node, KEEPALIVE, LeaseKeepAliveRequest { id })
            .await?;
        Ok(answer.ttl)
    }

    /// Asks the leader for a lease's remaining TTL.
    pub async fn time_to_live<B: Backend>(
        &self,
        node: &B,
        request: LeaseTimeToLiveRequest,
    ) -> Result<LeaseTimeToLiveResponse, ServiceError> {
        self.call(node, TIME_TO_LIVE, request).await
    }
}

/// The leader's half: answers forwarded calls with the service, as a call already forwarded
/// once (a member that no longer leads refuses instead of forwarding again). The follower
/// checked its caller; the leader acts as the store itself.
pub struct ForwardedCalls<B: Backend> {
    service: Service<B>,
}

impl<B: Backend> ForwardedCalls<B> {
    pub fn new(service: &Service<B>) -> Arc<Self> {
        Arc::new(ForwardedCalls {
            service: service.with_caller(AuthInfo::Internal),
        })
    }

    async fn answer(
        service: Service<B>,
        method: String,
        body: Bytes,
    ) -> Result<Bytes, ServiceError> {
        let bad = |error: prost::DecodeError| {
            ServiceError::Internal(format!("decode a forwarded {method} request: {error}"))
        };
        let answer = match method.as_str() {
            KEEPALIVE => {
                let request = LeaseKeepAliveRequest::decode(body).map_err(bad)?;
                service
                    .lease_keep_alive(request.id, true)
                    .await?
                    .encode_to_vec()
            }
            TIME_TO_LIVE => {
                let request = LeaseTimeToLiveRequest::decode(body).map_err(bad)?;
                service
                    .lease_time_to_live(request, true)
                    .await?
                    .encode_to_vec()
            }
            _ => {
                return Err(ServiceError::Internal(format!(
                    "unknown forwarded call {method:?}"
                )));
            }
        };
        Ok(Bytes::from(answer))
    }
}

impl<B: Backend> consensus::ForwardHandler for ForwardedCalls<B> {
    fn handle(
        &self,
        method: String,
        body: Bytes,
    ) -> BoxFuture<'static, Result<Bytes, tonic::Status>> {
        let service = self.service.clone();
        Box::pin(async move {
            Self::answer(service, method, body)
                .await
                .map_err(|error| to_status(&error))
        })
    }
}
