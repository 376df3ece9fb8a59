//! `v3lockpb.Lock`: not implemented yet (clients such as `etcdctl lock` use the client-side
//! recipe over KV, lease and watch instead, which works).

use etcd_proto::v3lockpb::lock_server::Lock;
use etcd_proto::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};
use tonic::{Request, Response, Status};

use crate::backend::Backend;
use crate::service::Service;

pub struct LockApi<B: Backend> {
    pub service: Service<B>,
}

#[tonic::async_trait]
impl<B: Backend> Lock for LockApi<B> {
    async fn lock(&self, _request: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        Err(Status::unimplemented(
            "the v3lock service is not implemented by pgwarden yet",
        ))
    }

    async fn unlock(
        &self,
        _request: Request<UnlockRequest>,
    ) -> Result<Response<UnlockResponse>, Status> {
        Err(Status::unimplemented(
            "the v3lock service is not implemented by pgwarden yet",
        ))
    }
}
