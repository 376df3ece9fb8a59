//! `etcdserverpb.Cluster`: membership through the member's Raft configuration changes.

use etcd_proto::etcdserverpb::cluster_server::Cluster;
use etcd_proto::etcdserverpb::{
    MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse,
};
use tonic::{Request, Response, Status};

use super::reply;
use crate::backend::Backend;
use crate::service::Service;

pub struct ClusterApi<B: Backend> {
    pub service: Service<B>,
}

#[tonic::async_trait]
impl<B: Backend> Cluster for ClusterApi<B> {
    async fn member_add(
        &self,
        request: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        let service = super::caller(&self.service, request.metadata())?;
        reply(service.member_add(request.into_inner()).await)
    }

    async fn member_remove(
        &self,
        request: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        let service = super::caller(&self.service, request.metadata())?;
        reply(service.member_remove(request.into_inner()).await)
    }

    async fn member_update(
        &self,
        request: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        let service = super::caller(&self.service, request.metadata())?;
        reply(service.member_update(request.into_inner()).await)
    }

    async fn member_list(
        &self,
        request: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        reply(self.service.member_list(request.into_inner()).await)
    }

    async fn member_promote(
        &self,
        request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        let service = super::caller(&self.service, request.metadata())?;
        reply(service.member_promote(request.into_inner()).await)
    }
}
