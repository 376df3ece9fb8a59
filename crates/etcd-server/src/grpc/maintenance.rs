//! `etcdserverpb.Maintenance`.

use std::pin::Pin;

use etcd_proto::etcdserverpb::maintenance_server::Maintenance;
use etcd_proto::etcdserverpb::{
    AlarmRequest, AlarmResponse, DefragmentRequest, DefragmentResponse, DowngradeRequest,
    DowngradeResponse, HashKvRequest, HashKvResponse, HashRequest, HashResponse, MoveLeaderRequest,
    MoveLeaderResponse, SnapshotRequest, SnapshotResponse, StatusRequest, StatusResponse,
};
use futures::Stream;
use tonic::{Request, Response, Status};

use super::reply;
use crate::backend::Backend;
use crate::error::to_status;
use crate::service::Service;

pub struct MaintenanceApi<B: Backend> {
    pub service: Service<B>,
}

#[tonic::async_trait]
impl<B: Backend> Maintenance for MaintenanceApi<B> {
    type SnapshotStream =
        Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send + 'static>>;

    async fn alarm(
        &self,
        request: Request<AlarmRequest>,
    ) -> Result<Response<AlarmResponse>, Status> {
        reply(self.service.alarm(request.into_inner()).await)
    }

    async fn status(
        &self,
        _request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        reply(self.service.status().await)
    }

    async fn defragment(
        &self,
        request: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        let service = super::caller(&self.service, request.metadata())?;
        reply(service.defragment().await)
    }

    async fn hash(&self, request: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        let service = super::caller(&self.service, request.metadata())?;
        reply(service.hash().await)
    }

    async fn hash_kv(
        &self,
        request: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        let service = super::caller(&self.service, request.metadata())?;
        reply(service.hash_kv(request.into_inner()).await)
    }

    async fn snapshot(
        &self,
        request: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        let service = super::caller(&self.service, request.metadata())?;
        let chunks = service
            .snapshot()
            .await
            .map_err(|error| to_status(&error))?;
        Ok(Response::new(Box::pin(tokio_stream::iter(
            chunks.into_iter().map(Ok),
        ))))
    }

    async fn move_leader(
        &self,
        request: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        let service = super::caller(&self.service, request.metadata())?;
        reply(service.move_leader(request.into_inner()).await)
    }

    /// Cluster downgrades are not supported (only `etcdctl downgrade` uses this call).
    async fn downgrade(
        &self,
        _request: Request<DowngradeRequest>,
    ) -> Result<Response<DowngradeResponse>, Status> {
        Err(Status::unimplemented(
            "downgrade is not supported by pgwarden",
        ))
    }
}
