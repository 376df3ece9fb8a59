//! `v3electionpb.Election`: etcd's server-side election over the store service (see
//! `service::recipes`).

use std::pin::Pin;

use etcd_proto::v3electionpb::election_server::Election;
use etcd_proto::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderKey, LeaderRequest, LeaderResponse, ProclaimRequest,
    ProclaimResponse, ResignRequest, ResignResponse,
};
use futures::Stream;
use tonic::{Request, Response, Status};

use super::reply;
use crate::backend::Backend;
use crate::error::{ServiceError, to_status};
use crate::service::Service;
use crate::service::recipes::MISSING_LEADER_KEY;

pub struct ElectionApi<B: Backend> {
    pub service: Service<B>,
}

fn leader_key(leader: Option<LeaderKey>) -> Result<LeaderKey, ServiceError> {
    leader.ok_or_else(|| ServiceError::Internal(MISSING_LEADER_KEY.to_owned()))
}

#[tonic::async_trait]
impl<B: Backend> Election for ElectionApi<B> {
    type ObserveStream =
        Pin<Box<dyn Stream<Item = Result<LeaderResponse, Status>> + Send + 'static>>;

    async fn campaign(
        &self,
        request: Request<CampaignRequest>,
    ) -> Result<Response<CampaignResponse>, Status> {
        let service = super::caller(&self.service, request.metadata())?;
        let request = request.into_inner();
        let name = request.name.clone();
        let result = service
            .campaign(request.name, request.lease, request.value)
            .await;
        reply(result.map(|(header, key, rev, lease)| CampaignResponse {
            header: Some(service.header(header.revision)),
            leader: Some(LeaderKey {
                name,
                key,
                rev,
                lease,
            }),
        }))
    }

    async fn proclaim(
        &self,
        request: Request<ProclaimRequest>,
    ) -> Result<Response<ProclaimResponse>, Status> {
        let service = super::caller(&self.service, request.metadata())?;
        let request = request.into_inner();
        let result = match leader_key(request.leader) {
            Ok(leader) => {
                service
                    .proclaim(leader.key, leader.rev, leader.lease, request.value)
                    .await
            }
            Err(error) => Err(error),
        };
        reply(result.map(|header| ProclaimResponse {
            header: Some(header),
        }))
    }

    async fn leader(
        &self,
        request: Request<LeaderRequest>,
    ) -> Result<Response<LeaderResponse>, Status> {
        let service = super::caller(&self.service, request.metadata())?;
        let result = service.election_leader(&request.into_inner().name).await;
        reply(result.map(|(header, kv)| LeaderResponse {
            header: Some(header),
            kv: Some(kv),
        }))
    }

    /// Streams the leader each time it changes (a new leader key, or a new value from the
    /// same leader); the stream ends with the server.
    async fn observe(
        &self,
        request: Request<LeaderRequest>,
    ) -> Result<Response<Self::ObserveStream>, Status> {
        let service = super::caller(&self.service, request.metadata())?;
        let name = request.into_inner().name;
        let service = service.clone();
        let updates = futures::stream::unfold(
            (service, name, None, false),
            |(service, name, last, failed)| async move {
                if failed {
                    return None;
                }
                match service.next_leader(&name, last.as_ref()).await {
                    Ok((header, kv)) => {
                        let response = LeaderResponse {
                            header: Some(header),
                            kv: Some(kv.clone()),
                        };
                        Some((Ok(response), (service, name, Some(kv), false)))
                    }
                    Err(ServiceError::Stopped) => None,
                    Err(error) => Some((Err(to_status(&error)), (service, name, last, true))),
                }
            },
        );
        Ok(Response::new(Box::pin(updates)))
    }

    async fn resign(
        &self,
        request: Request<ResignRequest>,
    ) -> Result<Response<ResignResponse>, Status> {
        let service = super::caller(&self.service, request.metadata())?;
        let result = match leader_key(request.into_inner().leader) {
            Ok(leader) => service.resign(leader.key, leader.rev).await,
            Err(error) => Err(error),
        };
        reply(result.map(|header| ResignResponse {
            header: Some(header),
        }))
    }
}
