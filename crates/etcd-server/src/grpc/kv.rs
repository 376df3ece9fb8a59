//! `etcdserverpb.KV`.

use etcd_proto::etcdserverpb::kv_server::Kv;
use etcd_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use tonic::{Request, Response, Status};

use super::reply;
use crate::backend::Backend;
use crate::service::Service;

pub struct KvApi<B: Backend> {
    pub service: Service<B>,
}

#[tonic::async_trait]
impl<B: Backend> Kv for KvApi<B> {
    async fn range(
        &self,
        request: Request<RangeRequest>,
    ) -> Result<Response<RangeResponse>, Status> {
        let service = super::caller(&self.service, request.metadata())?;
        reply(service.range(request.into_inner()).await)
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let service = super::caller(&self.service, request.metadata())?;
        reply(service.put(request.into_inner()).await)
    }

    async fn delete_range(
        &self,
        request: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let service = super::caller(&self.service, request.metadata())?;
        reply(service.delete_range(request.into_inner()).await)
    }

    async fn txn(&self, request: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let service = super::caller(&self.service, request.metadata())?;
        reply(service.txn(request.into_inner()).await)
    }

    async fn compact(
        &self,
        request: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        reply(self.service.compact(request.into_inner()).await)
    }
}
