//! etcd's server-side Lock and Election services, implemented as etcd does: the Go
//! `concurrency` recipes (Mutex, Election) run inside the server over KV, lease and the
//! applied-event feed. Recipe errors carry etcd's texts and surface as gRPC `Unknown`.

use bytes::Bytes;
use etcd_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use etcd_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use etcd_proto::etcdserverpb::request_op::Request;
use etcd_proto::etcdserverpb::response_op::Response;
use etcd_proto::etcdserverpb::{
    Compare, DeleteRangeRequest, LeaseGrantRequest, PutRequest, RangeRequest, RequestOp,
    ResponseHeader, TxnRequest, TxnResponse,
};
use etcd_proto::mvccpb::KeyValue;
use etcd_proto::mvccpb::event::EventType;
use tokio::sync::broadcast::error::RecvError;

use super::Service;
use crate::backend::Backend;
use crate::error::ServiceError;

/// TTL of the lease granted when a Lock or Campaign names lease 0 (etcd's session default).
const DEFAULT_SESSION_TTL_SECONDS: i64 = 60;

pub const SESSION_EXPIRED: &str = "mutex: session is expired";
pub const ELECTION_NOT_LEADER: &str = "election: not leader";
pub const ELECTION_NO_LEADER: &str = "election: no leader";
pub const MISSING_LEADER_KEY: &str = "\"leader\" field must be provided";

fn recipe_error(text: &str) -> ServiceError {
    ServiceError::Internal(text.to_owned())
}

/// `<name>/` — the prefix under which every contender's key lives.
pub fn recipe_prefix(name: &[u8]) -> Bytes {
    let mut prefix = name.to_vec();
    prefix.push(b'/');
    Bytes::from(prefix)
}

/// `<name>/<lease ID in lowercase hex>`, as etcd's recipes name a contender's key.
pub fn recipe_key(name: &[u8], lease: i64) -> Bytes {
    let mut key = recipe_prefix(name).to_vec();
    key.extend_from_slice(format!("{lease:x}").as_bytes());
    Bytes::from(key)
}

fn op(request: Request) -> RequestOp {
    RequestOp {
        request: Some(request),
    }
}

fn create_revision_is(key: &Bytes, revision: i64) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Create as i32,
        key: key.clone(),
        range_end: Bytes::new(),
        target_union: Some(TargetUnion::CreateRevision(revision)),
    }
}

/// The range of keys under `prefix`, sorted by create revision, first one only.
fn by_create(prefix: &Bytes, order: SortOrder, max_create_revision: i64) -> RangeRequest {
    RangeRequest {
        key: prefix.clone(),
        range_end: Bytes::from(mvcc::prefix_range_end(prefix)),
        limit: 1,
        sort_order: order as i32,
        sort_target: SortTarget::Create as i32,
        max_create_revision,
        ..RangeRequest::default()
    }
}

fn range_kvs(response: Option<&etcd_proto::etcdserverpb::ResponseOp>) -> Vec<KeyValue> {
    match response.and_then(|op| op.response.as_ref()) {
        Some(Response::ResponseRange(range)) => range.kvs.clone(),
        _ => Vec::new(),
    }
}

impl<B: Backend> Service<B> {
    async fn session_lease(&self, lease: i64) -> Result<i64, ServiceError> {
        if lease != 0 {
            return Ok(lease);
        }
        let granted = self
            .lease_grant(LeaseGrantRequest {
                ttl: DEFAULT_SESSION_TTL_SECONDS,
                id: 0,
            })
            .await?;
        Ok(granted.id)
    }

    /// Puts `key` (bound to `lease`) unless it exists; answers the txn and this contender's
    /// create revision.
    async fn enter(
        &self,
        key: &Bytes,
        lease: i64,
        value: Bytes,
    ) -> Result<(TxnResponse, i64), ServiceError> {
        let txn = TxnRequest {
            compare: vec![create_revision_is(key, 0)],
            success: vec![op(Request::RequestPut(PutRequest {
                key: key.clone(),
                value,
                lease,
                ..PutRequest::default()
            }))],
            failure: vec![op(Request::RequestRange(RangeRequest {
                key: key.clone(),
                ..RangeRequest::default()
            }))],
        };
        let response = self.txn(txn).await?;
        let my_revision = if response.succeeded {
            response
                .header
                .map(|header| header.revision)
                .unwrap_or_default()
        } else {
            range_kvs(response.responses.first())
                .first()
                .map(|kv| kv.create_revision)
                .unwrap_or_default()
        };
        Ok((response, my_revision))
    }

    /// Returns once `key` no longer exists with create revision `create_revision`.
    async fn wait_for_delete(&self, key: &Bytes, create_revision: i64) -> Result<(), ServiceError> {
        let mut feed = self.node.subscribe();
        let still_there = |service: &Self| {
            service.node.read(|store| {
                store
                    .range(&RangeRequest {
                        key: key.clone(),
                        ..RangeRequest::default()
                    })
                    .map(|range| {
                        range
                            .kvs
                            .iter()
                            .any(|kv| kv.create_revision == create_revision)
                    })
            })
        };
        if !still_there(self)? {
            return Ok(());
        }
        loop {
            let batch = tokio::select! {
                () = self.shutdown.cancelled() => return Err(ServiceError::Stopped),
                batch = feed.recv() => batch,
            };
            match batch {
                Ok(batch) => {
                    let deleted = batch.events.iter().any(|event| {
                        event.r#type == EventType::Delete as i32
                            && event.kv.as_ref().is_some_and(|kv| kv.key == *key)
                    });
                    if deleted {
                        return Ok(());
                    }
                }
                Err(RecvError::Lagged(_)) => {
                    if !still_there(self)? {
                        return Ok(());
                    }
                }
                Err(RecvError::Closed) => return Err(ServiceError::Stopped),
            }
        }
    }

    /// Waits until no key under `prefix` has a create revision at or below `max_create_revision`.
    async fn wait_deletes(
        &self,
        prefix: &Bytes,
        max_create_revision: i64,
    ) -> Result<ResponseHeader, ServiceError> {
        loop {
            let range = self
                .range(by_create(
                    prefix,
                    SortOrder::Descend,
                    max_create_revision.max(1),
                ))
                .await?;
            let Some(last) = range.kvs.first() else {
                return Ok(range.header.unwrap_or_default());
            };
            self.wait_for_delete(&last.key, last.create_revision)
                .await?;
        }
    }

    /// Lock: the caller owns `<name>/<lease hex>` once it is the oldest key under the prefix,
    /// and the key still exists after waiting (else the session expired). If the caller goes
    /// away while waiting, its key is deleted.
    pub async fn lock(
        &self,
        name: Bytes,
        lease: i64,
    ) -> Result<(ResponseHeader, Bytes), ServiceError> {
        let lease = self.session_lease(lease).await?;
        let prefix = recipe_prefix(&name);
        let key = recipe_key(&name, lease);
        let (_, my_revision) = self.enter(&key, lease, Bytes::new()).await?;
        let mut abandon = AbandonGuard {
            service: Some(self.clone()),
            key: key.clone(),
        };
        self.wait_deletes(&prefix, my_revision - 1).await?;
        let mine = self
            .range(RangeRequest {
                key: key.clone(),
                ..RangeRequest::default()
            })
            .await?;
        abandon.service = None;
        if mine.kvs.is_empty() {
            return Err(recipe_error(SESSION_EXPIRED));
        }
        Ok((mine.header.unwrap_or_default(), key))
    }

    pub async fn unlock(&self, key: Bytes) -> Result<ResponseHeader, ServiceError> {
        let deleted = self
            .delete_range(DeleteRangeRequest {
                key,
                ..DeleteRangeRequest::default()
            })
            .await?;
        Ok(deleted.header.unwrap_or_default())
    }

    /// Campaign: enters the election with `value`, then waits until every older contender is
    /// gone. Answers the header and (key, create revision, lease) of the leadership.
    pub async fn campaign(
        &self,
        name: Bytes,
        lease: i64,
        value: Bytes,
    ) -> Result<(ResponseHeader, Bytes, i64, i64), ServiceError> {
        let lease = self.session_lease(lease).await?;
        let prefix = recipe_prefix(&name);
        let key = recipe_key(&name, lease);
        let (response, my_revision) = self.enter(&key, lease, value.clone()).await?;
        if !response.succeeded {
            let current = range_kvs(response.responses.first());
            if current.first().is_some_and(|kv| kv.value != value) {
                self.proclaim(key.clone(), my_revision, lease, value)
                    .await?;
            }
        }
        let mut abandon = AbandonGuard {
            service: Some(self.clone()),
            key: key.clone(),
        };
        let header = self.wait_deletes(&prefix, my_revision - 1).await?;
        abandon.service = None;
        Ok((header, key, my_revision, lease))
    }

    /// Proclaim: a new value from the current leader; refused unless the leadership
    /// (key with that create revision) still holds.
    pub async fn proclaim(
        &self,
        key: Bytes,
        revision: i64,
        lease: i64,
        value: Bytes,
    ) -> Result<ResponseHeader, ServiceError> {
        let txn = TxnRequest {
            compare: vec![create_revision_is(&key, revision)],
            success: vec![op(Request::RequestPut(PutRequest {
                key,
                value,
                lease,
                ..PutRequest::default()
            }))],
            failure: Vec::new(),
        };
        let response = self.txn(txn).await?;
        if !response.succeeded {
            return Err(recipe_error(ELECTION_NOT_LEADER));
        }
        Ok(response.header.unwrap_or_default())
    }

    /// Resign: deletes the leadership key if it still belongs to this leadership.
    pub async fn resign(&self, key: Bytes, revision: i64) -> Result<ResponseHeader, ServiceError> {
        let txn = TxnRequest {
            compare: vec![create_revision_is(&key, revision)],
            success: vec![op(Request::RequestDeleteRange(DeleteRangeRequest {
                key,
                ..DeleteRangeRequest::default()
            }))],
            failure: Vec::new(),
        };
        let response = self.txn(txn).await?;
        Ok(response.header.unwrap_or_default())
    }

    /// The current leader: the oldest key under the election's prefix.
    pub async fn election_leader(
        &self,
        name: &[u8],
    ) -> Result<(ResponseHeader, KeyValue), ServiceError> {
        let range = self
            .range(by_create(&recipe_prefix(name), SortOrder::Ascend, 0))
            .await?;
        let header = range.header.unwrap_or_default();
        match range.kvs.into_iter().next() {
            Some(kv) => Ok((header, kv)),
            None => Err(recipe_error(ELECTION_NO_LEADER)),
        }
    }

    /// Waits until the election's leader differs from `last` (by key and mod revision) and
    /// answers the new one; there being no leader is not a change to report.
    pub async fn next_leader(
        &self,
        name: &[u8],
        last: Option<&KeyValue>,
    ) -> Result<(ResponseHeader, KeyValue), ServiceError> {
        let prefix = recipe_prefix(name);
        let mut feed = self.node.subscribe();
        loop {
            match self.election_leader(name).await {
                Ok((header, kv)) => {
                    let changed = last.is_none_or(|last| {
                        last.key != kv.key || last.mod_revision != kv.mod_revision
                    });
                    if changed {
                        return Ok((header, kv));
                    }
                }
                Err(ServiceError::Internal(text)) if text == ELECTION_NO_LEADER => {}
                Err(error) => return Err(error),
            }
            // Wait for any change under the prefix (or a lag, after which the state is re-read).
            loop {
                let batch = tokio::select! {
                    () = self.shutdown.cancelled() => return Err(ServiceError::Stopped),
                    batch = feed.recv() => batch,
                };
                match batch {
                    Ok(batch) => {
                        let touches = batch.events.iter().any(|event| {
                            event
                                .kv
                                .as_ref()
                                .is_some_and(|kv| kv.key.starts_with(&prefix))
                        });
                        if touches {
                            break;
                        }
                    }
                    Err(RecvError::Lagged(_)) => break,
                    Err(RecvError::Closed) => return Err(ServiceError::Stopped),
                }
            }
        }
    }
}

/// Deletes a contender's key if the Lock or Campaign call is dropped (client gone) before it
/// finished waiting, as etcd's recipes do on cancellation.
struct AbandonGuard<B: Backend> {
    /// `None` once the call completed: the key then belongs to the caller.
    service: Option<Service<B>>,
    key: Bytes,
}

impl<B: Backend> Drop for AbandonGuard<B> {
    fn drop(&mut self) {
        let Some(service) = self.service.take() else {
            return;
        };
        let key = self.key.clone();
        let tasks = service.tasks.clone();
        tasks.spawn(async move {
            let request = DeleteRangeRequest {
                key,
                ..DeleteRangeRequest::default()
            };
            if let Err(error) = service.delete_range(request).await {
                tracing::warn!(%error, "deleting an abandoned lock or campaign key failed");
            }
        });
    }
}
