//! KV: Range, Put, DeleteRange, Txn, Compact.

use etcd_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use etcd_proto::raftcmd::raft_command::Command;
use etcd_proto::raftcmd::raft_response::Response;
use mvcc::Access;

use super::{Service, unexpected};
use crate::backend::Backend;
use crate::error::ServiceError;
use crate::validate;

impl<B: Backend> Service<B> {
    /// Range: serializable reads are local; the default (linearizable) waits for a read barrier.
    /// `header.revision` is the store's current revision at read time, even for past revisions.
    pub async fn range(&self, request: RangeRequest) -> Result<RangeResponse, ServiceError> {
        validate::validate_range(&request)?;
        self.check(Access::Range(&request))?;
        if !request.serializable {
            self.node.linearizable_read().await?;
        }
        let (revision, result) = self
            .node
            .read(|store| (store.revision(), store.range(&request)));
        let mut response = result?;
        response.header = Some(self.header(revision));
        Ok(response)
    }

    pub async fn put(&self, request: PutRequest) -> Result<PutResponse, ServiceError> {
        validate::validate_put(&request)?;
        self.check(Access::Put(&request))?;
        self.check_size(&request)?;
        match self.propose(Command::Put(request)).await? {
            Response::Put(mut response) => {
                response.header = Some(self.member_header(response.header));
                Ok(response)
            }
            _ => Err(unexpected("put")),
        }
    }

    pub async fn delete_range(
        &self,
        request: DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, ServiceError> {
        validate::validate_delete_range(&request)?;
        self.check(Access::DeleteRange(&request))?;
        self.check_size(&request)?;
        match self.propose(Command::DeleteRange(request)).await? {
            Response::DeleteRange(mut response) => {
                response.header = Some(self.member_header(response.header));
                Ok(response)
            }
            _ => Err(unexpected("delete range")),
        }
    }

    /// Txn: a read-only txn is answered locally (after a read barrier unless every range in it
    /// is serializable); any txn that may write goes through the log.
    pub async fn txn(&self, request: TxnRequest) -> Result<TxnResponse, ServiceError> {
        validate::validate_txn(&request, self.config.max_txn_ops)?;
        self.check(Access::Txn(&request))?;
        if validate::is_read_only_txn(&request) {
            if !validate::txn_is_serializable(&request) {
                self.node.linearizable_read().await?;
            }
            let (revision, result) = self
                .node
                .read(|store| (store.revision(), store.txn_read_only(&request)));
            let mut response = result?;
            response.header = Some(self.header(revision));
            return Ok(response);
        }
        self.check_size(&request)?;
        match self.propose(Command::Txn(request)).await? {
            Response::Txn(mut response) => {
                response.header = Some(self.member_header(response.header));
                Ok(response)
            }
            _ => Err(unexpected("txn")),
        }
    }

    /// Compact goes through the log so every member compacts at the same revision; the call
    /// returns after local apply, which satisfies `physical` as well.
    pub async fn compact(
        &self,
        request: CompactionRequest,
    ) -> Result<CompactionResponse, ServiceError> {
        match self.propose(Command::Compaction(request)).await? {
            Response::Compaction(mut response) => {
                response.header = Some(self.member_header(response.header));
                Ok(response)
            }
            _ => Err(unexpected("compaction")),
        }
    }
}
