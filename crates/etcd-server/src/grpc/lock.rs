//! `v3lockpb.Lock`: etcd's server-side lock over the store service (see `service::recipes`).

use etcd_proto::v3lockpb::lock_server::Lock;
use etcd_proto::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};
use tonic::{Request, Response, Status};

use super::reply;
use crate::backend::Backend;
use crate::service::Service;

pub struct LockApi<B: Backend> {
    pub service: Service<B>,
}

#[tonic::async_trait]
impl<B: Backend> Lock for LockApi<B> {
    async fn lock(&self, request: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        let service = super::caller(&self.service, request.metadata())?;
        let request = request.into_inner();
        let result = service.lock(request.name, request.lease).await;
        reply(result.map(|(header, key)| LockResponse {
            header: Some(service.header(header.revision)),
            key,
        }))
    }

    async fn unlock(
        &self,
        request: Request<UnlockRequest>,
    ) -> Result<Response<UnlockResponse>, Status> {
        let service = super::caller(&self.service, request.metadata())?;
        let result = service.unlock(request.into_inner().key).await;
        reply(result.map(|header| UnlockResponse {
            header: Some(header),
        }))
    }
}
