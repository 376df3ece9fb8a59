//! The few store operations the HA agent needs, as a trait with one implementation per store.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;

/// Why a store operation failed. Every variant means "the outcome is unknown or refused":
/// the agent treats the store as unreachable for this cycle.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("store request failed: {0}")]
    Store(String),
    #[error("store request timed out after {0:?}")]
    Timeout(Duration),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One key as read from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    pub create_revision: i64,
    pub mod_revision: i64,
    /// The lease the key is attached to; 0 = none.
    pub lease: i64,
}

/// The condition of a conditional write or delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// The key must not exist (`create_revision == 0`).
    Absent,
    /// The key's value must equal this.
    Value(Bytes),
    /// The key's mod_revision must equal this.
    ModRevision(i64),
}

/// Keys changed by one applied store command (only those under the watched prefix).
pub type ChangedKeys = Vec<String>;

/// The store as the agent uses it. Reads are linearizable; conditional writes are one
/// transaction; leases are etcd leases (TTL in whole seconds).
pub trait KvBackend: Clone + Send + Sync + 'static {
    /// Every key under `prefix` and the store revision of the read.
    fn get_prefix(&self, prefix: &str)
    -> impl Future<Output = Result<(i64, Vec<KeyValue>)>> + Send;
    /// Writes `value` (attached to `lease`, 0 = none) unconditionally.
    fn put(&self, key: &str, value: Bytes, lease: i64) -> impl Future<Output = Result<()>> + Send;
    /// Writes `value` if `expect` holds; false when it did not (nothing written).
    fn put_if(
        &self,
        key: &str,
        expect: Expect,
        value: Bytes,
        lease: i64,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Deletes `key` if `expect` holds (`None` = unconditionally); false when it did not.
    fn delete_if(
        &self,
        key: &str,
        expect: Option<Expect>,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Grants a lease of `ttl` (rounded up to whole seconds) and returns its ID.
    fn lease_grant(&self, ttl: Duration) -> impl Future<Output = Result<i64>> + Send;
    /// One keepalive: the remaining TTL, or `None` when the lease no longer exists.
    fn lease_keepalive(&self, id: i64) -> impl Future<Output = Result<Option<Duration>>> + Send;
    fn lease_revoke(&self, id: i64) -> impl Future<Output = Result<()>> + Send;
    /// Changes under `prefix` from now on. The stream ends when the store stops; a consumer
    /// that falls behind gets an empty batch meaning "something changed, re-read".
    fn watch_prefix(&self, prefix: &str) -> BoxStream<'static, ChangedKeys>;
}
