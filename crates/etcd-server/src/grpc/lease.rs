//! `etcdserverpb.Lease`. Keepalives are answered by the leader from memory; a follower
//! forwards them (and time-to-live calls) to the leader.

use std::pin::Pin;

use etcd_proto::etcdserverpb::lease_server::Lease;
use etcd_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::{metadata_flag, reply};
use crate::backend::Backend;
use crate::error::to_status;
use crate::lease::forward::FORWARDED_METADATA;
use crate::service::Service;

pub struct LeaseApi<B: Backend> {
    pub service: Service<B>,
}

#[tonic::async_trait]
impl<B: Backend> Lease for LeaseApi<B> {
    type LeaseKeepAliveStream =
        Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send + 'static>>;

    async fn lease_grant(
        &self,
        request: Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        reply(self.service.lease_grant(request.into_inner()).await)
    }

    async fn lease_revoke(
        &self,
        request: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        let service = super::caller(&self.service, request.metadata())?;
        reply(service.lease_revoke(request.into_inner()).await)
    }

    /// One reply per request, in order; the stream ends at the first error (the client
    /// reopens it), or when the client closes its side.
    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let forwarded = metadata_flag(request.metadata(), FORWARDED_METADATA);
        let service = self.service.clone();
        let shutdown = service.shutdown_token().clone();
        let requests = request.into_inner().take_until(shutdown.cancelled_owned());
        let responses = requests
            .then(move |request| {
                let service = service.clone();
                async move {
                    let request = request?;
                    service
                        .lease_keep_alive(request.id, forwarded)
                        .await
                        .map_err(|error| to_status(&error))
                }
            })
            .scan(false, |failed, result| {
                // Stop after delivering the first error, as a gRPC stream ends with its status.
                if *failed {
                    return futures::future::ready(None);
                }
                *failed = result.is_err();
                futures::future::ready(Some(result))
            });
        Ok(Response::new(Box::pin(responses)))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let forwarded = metadata_flag(request.metadata(), FORWARDED_METADATA);
        reply(
            self.service
                .lease_time_to_live(request.into_inner(), forwarded)
                .await,
        )
    }

    async fn lease_leases(
        &self,
        _request: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        reply(self.service.lease_leases().await)
    }
}
