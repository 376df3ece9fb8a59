//! `etcdserverpb.Watch`: each bidi stream is served by one tracked task (see `watch::stream`).

use std::pin::Pin;

use etcd_proto::etcdserverpb::watch_server::Watch;
use etcd_proto::etcdserverpb::{WatchRequest, WatchResponse};
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::metadata_flag;
use crate::backend::Backend;
use crate::error::{ServiceError, to_status};
use crate::service::Service;
use crate::watch::stream::{self, RESPONSE_BUFFER, StreamOptions};

/// gRPC metadata key with which clients ask to be cut off without a leader
/// (Go `clientv3.WithRequireLeader`).
pub const HAS_LEADER_METADATA: &str = "hasleader";

pub struct WatchApi<B: Backend> {
    pub service: Service<B>,
}

#[tonic::async_trait]
impl<B: Backend> Watch for WatchApi<B> {
    type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send + 'static>>;

    async fn watch(
        &self,
        request: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let require_leader = metadata_flag(request.metadata(), HAS_LEADER_METADATA);
        let service = super::caller(&self.service, request.metadata())?;
        if require_leader && service.node().status().leader.is_none() {
            return Err(to_status(&ServiceError::NoLeader));
        }
        let (outbound, responses) = mpsc::channel(RESPONSE_BUFFER);
        let task = stream::run(
            service,
            request.into_inner(),
            outbound,
            StreamOptions { require_leader },
        );
        self.service.tasks().spawn(task);
        Ok(Response::new(Box::pin(ReceiverStream::new(responses))))
    }
}
