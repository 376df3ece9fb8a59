//! The in-process backend: the etcd service layer of the member running in this process,
//! called directly (same validation, proposals, read barrier and lease keeper as a gRPC
//! client gets, without the loopback hop).

use std::time::Duration;

use bytes::Bytes;
use etcd_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use etcd_proto::etcdserverpb::request_op::Request;
use etcd_proto::etcdserverpb::{
    Compare, DeleteRangeRequest, LeaseGrantRequest, LeaseRevokeRequest, PutRequest, RangeRequest,
    RequestOp, TxnRequest,
};
use etcd_server::{Backend, Service};
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::broadcast::error::RecvError;

use crate::backend::{ChangedKeys, Error, Expect, KeyValue, KvBackend, Result};

/// The member's own store service, shared with its etcd API listener (so leases granted here
/// are kept by the same lease keeper that expires them).
#[derive(Clone)]
pub struct LocalStore<B: Backend> {
    service: Service<B>,
}

impl<B: Backend> LocalStore<B> {
    pub fn new(service: Service<B>) -> Self {
        Self { service }
    }
}

fn store_error(error: impl std::fmt::Display) -> Error {
    Error::Store(error.to_string())
}

/// The etcd range end that selects every key starting with `prefix`.
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn compare(key: &str, expect: &Expect) -> Compare {
    let key = Bytes::copy_from_slice(key.as_bytes());
    let (target, union) = match expect {
        Expect::Absent => (CompareTarget::Create, TargetUnion::CreateRevision(0)),
        Expect::Value(value) => (CompareTarget::Value, TargetUnion::Value(value.clone())),
        Expect::ModRevision(revision) => (CompareTarget::Mod, TargetUnion::ModRevision(*revision)),
    };
    Compare {
        result: CompareResult::Equal as i32,
        target: target as i32,
        key,
        range_end: Bytes::new(),
        target_union: Some(union),
    }
}

impl<B: Backend> KvBackend for LocalStore<B> {
    async fn get_prefix(&self, prefix: &str) -> Result<(i64, Vec<KeyValue>)> {
        let response = self
            .service
            .range(RangeRequest {
                key: Bytes::copy_from_slice(prefix.as_bytes()),
                range_end: Bytes::from(prefix_end(prefix.as_bytes())),
                ..RangeRequest::default()
            })
            .await
            .map_err(store_error)?;
        let revision = response.header.map_or(0, |header| header.revision);
        let kvs = response
            .kvs
            .into_iter()
            .map(|kv| KeyValue {
                key: String::from_utf8_lossy(&kv.key).into_owned(),
                value: kv.value,
                create_revision: kv.create_revision,
                mod_revision: kv.mod_revision,
                lease: kv.lease,
            })
            .collect();
        Ok((revision, kvs))
    }

    async fn put(&self, key: &str, value: Bytes, lease: i64) -> Result<()> {
        self.service
            .put(PutRequest {
                key: Bytes::copy_from_slice(key.as_bytes()),
                value,
                lease,
                ..PutRequest::default()
            })
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn put_if(&self, key: &str, expect: Expect, value: Bytes, lease: i64) -> Result<bool> {
        let put = RequestOp {
            request: Some(Request::RequestPut(PutRequest {
                key: Bytes::copy_from_slice(key.as_bytes()),
                value,
                lease,
                ..PutRequest::default()
            })),
        };
        let response = self
            .service
            .txn(TxnRequest {
                compare: vec![compare(key, &expect)],
                success: vec![put],
                failure: Vec::new(),
            })
            .await
            .map_err(store_error)?;
        Ok(response.succeeded)
    }

    async fn delete_if(&self, key: &str, expect: Option<Expect>) -> Result<bool> {
        let delete = DeleteRangeRequest {
            key: Bytes::copy_from_slice(key.as_bytes()),
            ..DeleteRangeRequest::default()
        };
        let Some(expect) = expect else {
            let response = self
                .service
                .delete_range(delete)
                .await
                .map_err(store_error)?;
            return Ok(response.deleted > 0);
        };
        let response = self
            .service
            .txn(TxnRequest {
                compare: vec![compare(key, &expect)],
                success: vec![RequestOp {
                    request: Some(Request::RequestDeleteRange(delete)),
                }],
                failure: Vec::new(),
            })
            .await
            .map_err(store_error)?;
        Ok(response.succeeded)
    }

    async fn lease_grant(&self, ttl: Duration) -> Result<i64> {
        let seconds = i64::try_from(ttl.as_millis().div_ceil(1000)).unwrap_or(i64::MAX);
        let response = self
            .service
            .lease_grant(LeaseGrantRequest {
                ttl: seconds,
                id: 0,
            })
            .await
            .map_err(store_error)?;
        Ok(response.id)
    }

    async fn lease_keepalive(&self, id: i64) -> Result<Option<Duration>> {
        let response = self
            .service
            .lease_keep_alive(id, false)
            .await
            .map_err(store_error)?;
        Ok(u64::try_from(response.ttl)
            .ok()
            .filter(|ttl| *ttl > 0)
            .map(Duration::from_secs))
    }

    async fn lease_revoke(&self, id: i64) -> Result<()> {
        self.service
            .lease_revoke(LeaseRevokeRequest { id })
            .await
            .map_err(store_error)?;
        Ok(())
    }

    fn watch_prefix(&self, prefix: &str) -> BoxStream<'static, ChangedKeys> {
        let receiver = self.service.node().subscribe();
        let prefix = prefix.as_bytes().to_vec();
        futures::stream::unfold(receiver, move |mut receiver| {
            let prefix = prefix.clone();
            async move {
                loop {
                    match receiver.recv().await {
                        Ok(applied) => {
                            let changed: ChangedKeys = applied
                                .events
                                .iter()
                                .filter_map(|event| event.kv.as_ref())
                                .filter(|kv| kv.key.starts_with(&prefix))
                                .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
                                .collect();
                            if !changed.is_empty() {
                                return Some((changed, receiver));
                            }
                        }
                        Err(RecvError::Lagged(_)) => return Some((Vec::new(), receiver)),
                        Err(RecvError::Closed) => return None,
                    }
                }
            }
        })
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_increments_the_last_byte() {
        assert_eq!(prefix_end(b"/service/demo/"), b"/service/demo0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
    }
}
