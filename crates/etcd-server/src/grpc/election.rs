//! `v3electionpb.Election`: not implemented yet (the client-side election recipe over KV,
//! lease and watch works).

use std::pin::Pin;

use etcd_proto::v3electionpb::election_server::Election;
use etcd_proto::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderRequest, LeaderResponse, ProclaimRequest,
    ProclaimResponse, ResignRequest, ResignResponse,
};
use futures::Stream;
use tonic::{Request, Response, Status};

use crate::backend::Backend;
use crate::service::Service;

pub struct ElectionApi<B: Backend> {
    pub service: Service<B>,
}

fn unimplemented() -> Status {
    Status::unimplemented("the v3election service is not implemented by pgwarden yet")
}

#[tonic::async_trait]
impl<B: Backend> Election for ElectionApi<B> {
    type ObserveStream =
        Pin<Box<dyn Stream<Item = Result<LeaderResponse, Status>> + Send + 'static>>;

    async fn campaign(
        &self,
        _request: Request<CampaignRequest>,
    ) -> Result<Response<CampaignResponse>, Status> {
        Err(unimplemented())
    }

    async fn proclaim(
        &self,
        _request: Request<ProclaimRequest>,
    ) -> Result<Response<ProclaimResponse>, Status> {
        Err(unimplemented())
    }

    async fn leader(
        &self,
        _request: Request<LeaderRequest>,
    ) -> Result<Response<LeaderResponse>, Status> {
        Err(unimplemented())
    }

    async fn observe(
        &self,
        _request: Request<LeaderRequest>,
    ) -> Result<Response<Self::ObserveStream>, Status> {
        Err(unimplemented())
    }

    async fn resign(
        &self,
        _request: Request<ResignRequest>,
    ) -> Result<Response<ResignResponse>, Status> {
        Err(unimplemented())
    }
}
