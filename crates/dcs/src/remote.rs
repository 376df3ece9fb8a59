//! The remote backend: an external etcd cluster reached over the etcd v3 gRPC API (the
//! `etcd3:` section of `pgwarden run`), with the same semantics as the in-process backend.
//!
//! Endpoints: requests go to one endpoint at a time (one client per endpoint) and move on to
//! the next listed endpoint when it fails: a refused connect, an `Unavailable` answer (a
//! member without a Raft leader says so), a broken connection, or no answer in time (a hung
//! member keeps its connection open and answers nothing). Sticking to an endpoint that works
//! keeps a dead or hung member from costing every few calls a timeout, as random balancing
//! over all endpoints would. Until the request timeout, with a short backoff once every
//! endpoint has failed:
//! * every request is sent again when it was certainly not applied: the TCP connect failed,
//!   or the member answered `etcdserver: no leader`;
//! * a request whose repetition changes nothing (reads, lease calls, unconditional puts, and
//!   rewriting a key with the value it must already have, as the leader key's renewal does)
//!   is also sent again after any other `Unavailable` answer, and after an eighth of the
//!   request timeout without an answer;
//! * any other failure (a conditional write that may have been applied) is returned to the
//!   caller unretried, so a conditional write never reports the outcome of its own echo.
//!
//! The watch reopens on its own: when its stream fails or is cancelled, or requests have moved
//! to another endpoint, it is reopened (with a backoff while the cluster is unreachable), and
//! the first batch after a reopen is empty, meaning "something may have changed meanwhile,
//! re-read". The stream never ends.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, PutOptions, Txn, TxnOp, WatchOptions,
    WatchStream,
};
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::backend::{ChangedKeys, Error, Expect, KeyValue, KvBackend, Result};

/// How long opening a TCP connection to one endpoint may take before the next is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// HTTP/2 pings on open streams (the watch) notice a silently vanished endpoint. etcd refuses
/// pings more often than every 5 s, so stay well above that.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// A request whose repetition changes nothing gives up on one endpoint after this fraction
/// of the request timeout (250 ms of the default 2 s: a healthy member answers a keepalive
/// or a read in milliseconds, and a member stuck behind a hung Raft leader must not eat the
/// budget the next member may need right after the election).
const ATTEMPT_TIMEOUT_DIVISOR: u32 = 8;
/// First and largest pause after every endpoint has failed in a row.
const RETRY_BACKOFF_MIN: Duration = Duration::from_millis(20);
const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How often an open watch checks that requests still go to its endpoint.
const WATCH_ENDPOINT_CHECK: Duration = Duration::from_secs(1);

/// How to reach the external etcd cluster.
#[derive(Debug, Clone)]
pub struct EtcdOptions {
    /// `http://host:port` URLs of the cluster's client endpoints.
    pub endpoints: Vec<String>,
    /// etcd authentication (user name, password), when the cluster has auth enabled.
    pub user: Option<(String, String)>,
    /// Upper bound on one store call, retries included (the agent's `retry_timeout`).
    pub request_timeout: Duration,
    /// TLS for `https://` endpoints; `None` connects in plaintext.
    pub tls: Option<EtcdTls>,
}

/// How to connect to `https://` endpoints: the server's certificate is verified against
/// `trusted_ca_pem` (never the system's CA store), and `client_certificate` is presented
/// when the server asks for one (etcd's `--client-cert-auth`).
#[derive(Clone)]
pub struct EtcdTls {
    pub trusted_ca_pem: Vec<u8>,
    /// Certificate chain and private key, both PEM.
    pub client_certificate: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for EtcdTls {
    /// Never prints the key.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("EtcdTls")
            .field("client_certificate", &self.client_certificate.is_some())
            .finish_non_exhaustive()
    }
}

/// An external etcd cluster as the agent's store. Clones share the clients (one connection
/// per endpoint) and the choice of endpoint.
#[derive(Clone)]
pub struct EtcdStore {
    shared: Arc<Shared>,
}

struct Shared {
    options: EtcdOptions,
    /// One client per endpoint, created on first use (with auth, creating it authenticates,
    /// which needs the endpoint to answer; a failed creation is retried by the next call).
    clients: Vec<OnceCell<Client>>,
    /// Index of the endpoint requests go to. Moved to the next endpoint by whichever call
    /// sees the current one fail (a compare-and-swap, so concurrent failures move it once).
    current: AtomicUsize,
    /// TTL granted to each lease this store created. A keepalive restores a lease's TTL to
    /// its granted TTL, so that is the remaining TTL after a successful keepalive. Held only
    /// for a map lookup or insert, never across an await, hence a blocking mutex.
    granted_ttl: Mutex<HashMap<i64, Duration>>,
}

impl EtcdStore {
    /// A store over `options.endpoints`; no connection is made until the first call.
    pub fn new(options: EtcdOptions) -> Result<Self> {
        if options.endpoints.is_empty() {
            return Err(Error::Store("no etcd endpoint configured".to_owned()));
        }
        let clients = options.endpoints.iter().map(|_| OnceCell::new()).collect();
        Ok(Self {
            shared: Arc::new(Shared {
                options,
                clients,
                current: AtomicUsize::new(0),
                granted_ttl: Mutex::new(HashMap::new()),
            }),
        })
    }

    fn request_timeout(&self) -> Duration {
        self.shared.options.request_timeout
    }

    fn current_endpoint(&self) -> usize {
        self.shared.current.load(Ordering::Acquire)
    }

    /// Moves requests off endpoint `failed` to the next one, unless another call already did.
    fn move_off(&self, failed: usize) {
        let next = (failed + 1) % self.shared.clients.len();
        if next != failed
            && self
                .shared
                .current
                .compare_exchange(failed, next, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            tracing::info!(
                failed = %self.shared.options.endpoints[failed],
                next = %self.shared.options.endpoints[next],
                "etcd endpoint failed; using the next one"
            );
        }
    }

    async fn client(&self, index: usize) -> Result<Client, etcd_client::Error> {
        let options = &self.shared.options;
        let endpoint = options.endpoints[index].clone();
        self.shared.clients[index]
            .get_or_try_init(|| {
                let mut connect = ConnectOptions::new()
                    .with_connect_timeout(CONNECT_TIMEOUT)
                    .with_keep_alive(KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT)
                    .with_keep_alive_while_idle(false);
                if let Some(tls) = &options.tls {
                    let mut config = etcd_client::TlsOptions::new()
                        .ca_certificate(etcd_client::Certificate::from_pem(&tls.trusted_ca_pem));
                    if let Some((cert_pem, key_pem)) = &tls.client_certificate {
                        config =
                            config.identity(etcd_client::Identity::from_pem(cert_pem, key_pem));
                    }
                    connect = connect.with_tls(config);
                }
                if let Some((name, password)) = &options.user {
                    connect = connect
                        .with_user(name.clone(), password.clone())
                        .with_auto_token_refresh(true);
                }
                Client::connect([endpoint], Some(connect))
            })
            .await
            .cloned()
    }

    /// Runs `attempt` against the current endpoint until it succeeds, fails in a way `retry`
    /// does not allow to repeat, or the request timeout passes; moves off every endpoint that
    /// fails on the way.
    async fn call<T, F, Fut>(&self, what: &str, retry: Retry, mut attempt: F) -> Result<T>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let timeout = self.request_timeout();
        let deadline = Instant::now() + timeout;
        let attempt_timeout = match retry {
            Retry::Idempotent => timeout / ATTEMPT_TIMEOUT_DIVISOR,
            // Not sent again, so it may use nearly the whole budget; it ends just before the
            // caller's own timeout (the same `retry_timeout`) so a hung endpoint is still
            // moved off.
            Retry::NotApplied => timeout - timeout / ATTEMPT_TIMEOUT_DIVISOR,
        };
        let mut backoff = RETRY_BACKOFF_MIN;
        let mut failures: usize = 0;
        loop {
            let index = self.current_endpoint();
            let remaining = deadline.saturating_duration_since(Instant::now());
            let outcome = tokio::time::timeout(attempt_timeout.min(remaining), async {
                match self.client(index).await {
                    Ok(client) => attempt(client).await,
                    Err(error) => Err(error),
                }
            })
            .await;
            let endpoint = &self.shared.options.endpoints[index];
            let error = match outcome {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(error)) => {
                    if is_endpoint_failure(&error) {
                        self.move_off(index);
                    }
                    if !retry.allows(&error) {
                        return Err(Error::Store(format!("{what} at {endpoint}: {error}")));
                    }
                    format!("{endpoint}: {error}")
                }
                Err(_) => {
                    self.move_off(index);
                    if retry == Retry::NotApplied || Instant::now() >= deadline {
                        return Err(Error::Timeout(timeout));
                    }
                    format!("{endpoint}: no answer within {attempt_timeout:?}")
                }
            };
            failures += 1;
            if failures.is_multiple_of(self.shared.clients.len()) {
                tokio::time::sleep(backoff.min(deadline.saturating_duration_since(Instant::now())))
                    .await;
                backoff = (backoff * 2).min(RETRY_BACKOFF_MAX);
            }
            if Instant::now() >= deadline {
                return Err(Error::Store(format!(
                    "{what}: no etcd endpoint answered within {timeout:?} (last: {error})"
                )));
            }
        }
    }

    fn remember_ttl(&self, id: i64, ttl: Option<Duration>) {
        let mut granted = self
            .shared
            .granted_ttl
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match ttl {
            Some(ttl) => granted.insert(id, ttl),
            None => granted.remove(&id),
        };
    }

    fn granted_ttl(&self, id: i64) -> Option<Duration> {
        self.shared
            .granted_ttl
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .copied()
    }

    /// Opens a watch of every key under `prefix` and waits for the server to confirm it;
    /// returns it with the index of its endpoint.
    async fn open_watch(&self, prefix: &str) -> Result<(WatchStream, usize)> {
        let prefix = prefix.to_owned();
        self.call("open the watch", Retry::Idempotent, move |mut client| {
            let prefix = prefix.clone();
            async move {
                let mut stream = client
                    .watch(prefix, Some(WatchOptions::new().with_prefix()))
                    .await?;
                match stream.message().await? {
                    Some(response) if response.created() && !response.canceled() => Ok(stream),
                    Some(response) => Err(etcd_client::Error::WatchError(format!(
                        "watch not created: {}",
                        response.cancel_reason()
                    ))),
                    None => Err(etcd_client::Error::WatchError(
                        "the watch stream closed before it was created".to_owned(),
                    )),
                }
            }
        })
        .await
        .map(|stream| (stream, self.current_endpoint()))
    }
}

/// Which failed attempts of a request may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Only attempts that were certainly not applied.
    NotApplied,
    /// Any attempt: applying the request twice has the effect of applying it once.
    Idempotent,
}

impl Retry {
    fn allows(self, error: &etcd_client::Error) -> bool {
        match self {
            Retry::NotApplied => is_not_applied(error),
            Retry::Idempotent => is_endpoint_failure(error),
        }
    }
}

/// True when the endpoint, not the request, failed: it is unreachable, has no Raft leader,
/// timed out, or its connection broke.
fn is_endpoint_failure(error: &etcd_client::Error) -> bool {
    match error {
        etcd_client::Error::GRpcStatus(status) => matches!(
            status.code(),
            tonic::Code::Unavailable
                | tonic::Code::Unknown
                | tonic::Code::Cancelled
                | tonic::Code::DeadlineExceeded
        ),
        etcd_client::Error::TransportError(_)
        | etcd_client::Error::IoError(_)
        | etcd_client::Error::WatchError(_) => true,
        _ => false,
    }
}

/// True when the request was certainly not applied: the TCP connect to the endpoint failed
/// (nothing was sent), or the member refused it for want of a Raft leader.
fn is_not_applied(error: &etcd_client::Error) -> bool {
    let etcd_client::Error::GRpcStatus(status) = error else {
        return false;
    };
    if status.code() != tonic::Code::Unavailable {
        return false;
    }
    if status.message() == "etcdserver: no leader" {
        return true;
    }
    let mut source = std::error::Error::source(status);
    while let Some(cause) = source {
        if cause.is::<tonic::ConnectError>() {
            return true;
        }
        source = cause.source();
    }
    false
}

/// The keepalive answer for a lease the store no longer has: a response with TTL 0, which
/// the client reports as an error.
fn is_lease_gone(error: &etcd_client::Error) -> bool {
    match error {
        etcd_client::Error::LeaseKeepAliveError(message) => message.contains("lease not found"),
        etcd_client::Error::GRpcStatus(status) => {
            status.code() == tonic::Code::NotFound && status.message().contains("lease not found")
        }
        _ => false,
    }
}

fn compare(key: &str, expect: Expect) -> Compare {
    match expect {
        Expect::Absent => Compare::create_revision(key, CompareOp::Equal, 0),
        Expect::Value(value) => Compare::value(key, CompareOp::Equal, value.to_vec()),
        Expect::ModRevision(revision) => Compare::mod_revision(key, CompareOp::Equal, revision),
    }
}

fn put_options(lease: i64) -> Option<PutOptions> {
    (lease != 0).then(|| PutOptions::new().with_lease(lease))
}

impl KvBackend for EtcdStore {
    async fn get_prefix(&self, prefix: &str) -> Result<(i64, Vec<KeyValue>)> {
        let prefix = prefix.to_owned();
        let mut response = self
            .call("read the scope", Retry::Idempotent, move |mut client| {
                let prefix = prefix.clone();
                async move {
                    client
                        .get(prefix, Some(GetOptions::new().with_prefix()))
                        .await
                }
            })
            .await?;
        let revision = response.header().map_or(0, |header| header.revision());
        let kvs = response
            .take_kvs()
            .into_iter()
            .map(|kv| KeyValue {
                key: String::from_utf8_lossy(kv.key()).into_owned(),
                value: Bytes::copy_from_slice(kv.value()),
                create_revision: kv.create_revision(),
                mod_revision: kv.mod_revision(),
                lease: kv.lease(),
            })
            .collect();
        Ok((revision, kvs))
    }

    async fn put(&self, key: &str, value: Bytes, lease: i64) -> Result<()> {
        let key = key.to_owned();
        self.call("put", Retry::Idempotent, move |mut client| {
            let (key, value) = (key.clone(), value.to_vec());
            async move { client.put(key, value, put_options(lease)).await }
        })
        .await?;
        Ok(())
    }

    async fn put_if(&self, key: &str, expect: Expect, value: Bytes, lease: i64) -> Result<bool> {
        let key = key.to_owned();
        // Rewriting a key with the value it must already have (the leader key's renewal)
        // has the same outcome when applied twice.
        let retry = match &expect {
            Expect::Value(expected) if *expected == value => Retry::Idempotent,
            _ => Retry::NotApplied,
        };
        let response = self
            .call("conditional put", retry, move |mut client| {
                let txn = Txn::new()
                    .when([compare(&key, expect.clone())])
                    .and_then([TxnOp::put(key.clone(), value.to_vec(), put_options(lease))]);
                async move { client.txn(txn).await }
            })
            .await?;
        Ok(response.succeeded())
    }

    async fn delete_if(&self, key: &str, expect: Option<Expect>) -> Result<bool> {
        let key = key.to_owned();
        let Some(expect) = expect else {
            let response = self
                .call("delete", Retry::NotApplied, move |mut client| {
                    let key = key.clone();
                    async move { client.delete(key, None).await }
                })
                .await?;
            return Ok(response.deleted() > 0);
        };
        let response = self
            .call(
                "conditional delete",
                Retry::NotApplied,
                move |mut client| {
                    let txn = Txn::new()
                        .when([compare(&key, expect.clone())])
                        .and_then([TxnOp::delete(key.clone(), None)]);
                    async move { client.txn(txn).await }
                },
            )
            .await?;
        Ok(response.succeeded())
    }

    async fn lease_grant(&self, ttl: Duration) -> Result<i64> {
        let seconds = i64::try_from(ttl.as_millis().div_ceil(1000)).unwrap_or(i64::MAX);
        let response = self
            .call(
                "grant a lease",
                Retry::Idempotent,
                move |mut client| async move { client.lease_grant(seconds, None).await },
            )
            .await?;
        let granted = u64::try_from(response.ttl()).unwrap_or(0);
        self.remember_ttl(response.id(), Some(Duration::from_secs(granted)));
        Ok(response.id())
    }

    async fn lease_keepalive(&self, id: i64) -> Result<Option<Duration>> {
        let alive = self
            .call(
                "keep the lease alive",
                Retry::Idempotent,
                move |mut client| async move {
                    match client.lease_keep_alive(id).await {
                        Ok(pair) => Ok(Some(pair)),
                        Err(error) if is_lease_gone(&error) => Ok(None),
                        Err(error) => Err(error),
                    }
                },
            )
            .await?;
        let Some((mut keeper, mut responses)) = alive else {
            self.remember_ttl(id, None);
            return Ok(None);
        };
        if let Some(ttl) = self.granted_ttl(id) {
            return Ok(Some(ttl));
        }
        // A lease this store did not grant: its granted TTL is unknown, so ask once more
        // on the open stream to learn the TTL the keepalive restored.
        let timeout = self.request_timeout();
        let second = async {
            keeper.keep_alive().await?;
            responses.message().await
        };
        match tokio::time::timeout(timeout, second).await {
            Ok(Ok(Some(response))) if response.ttl() > 0 => {
                let ttl = Duration::from_secs(u64::try_from(response.ttl()).unwrap_or(0));
                self.remember_ttl(id, Some(ttl));
                Ok(Some(ttl))
            }
            Ok(Ok(_)) => Ok(None),
            Ok(Err(error)) => Err(Error::Store(format!("keep the lease alive: {error}"))),
            Err(_) => Err(Error::Timeout(timeout)),
        }
    }

    async fn lease_revoke(&self, id: i64) -> Result<()> {
        let outcome = self
            .call(
                "revoke the lease",
                Retry::Idempotent,
                move |mut client| async move {
                    match client.lease_revoke(id).await {
                        Ok(_) => Ok(()),
                        // Already gone: what revoking wanted.
                        Err(error) if is_lease_gone(&error) => Ok(()),
                        Err(error) => Err(error),
                    }
                },
            )
            .await;
        self.remember_ttl(id, None);
        outcome
    }

    fn watch_prefix(&self, prefix: &str) -> BoxStream<'static, ChangedKeys> {
        let watch = Watch {
            store: self.clone(),
            prefix: prefix.to_owned(),
            stream: None,
            reopened: false,
            failing: false,
        };
        futures::stream::unfold(watch, |mut watch| async move {
            let changed = watch.next_batch().await;
            Some((changed, watch))
        })
        .boxed()
    }
}

/// The state of one `watch_prefix` stream across reconnects.
struct Watch {
    store: EtcdStore,
    prefix: String,
    /// The open etcd watch and the index of its endpoint; `None` while it has to be
    /// (re)opened.
    stream: Option<(WatchStream, usize)>,
    /// The watch was lost once: the next open is announced with an empty batch.
    reopened: bool,
    /// Opening failed at least once since the last success (logged once per outage).
    failing: bool,
}

impl Watch {
    /// The next batch of changed keys under the prefix; empty right after a reopen.
    async fn next_batch(&mut self) -> ChangedKeys {
        let mut backoff = RETRY_BACKOFF_MIN;
        loop {
            let Some((stream, endpoint)) = self.stream.as_mut() else {
                match self.store.open_watch(&self.prefix).await {
                    Ok(opened) => {
                        self.stream = Some(opened);
                        backoff = RETRY_BACKOFF_MIN;
                        if self.failing {
                            tracing::info!(prefix = %self.prefix, "etcd watch re-established");
                            self.failing = false;
                        }
                        if std::mem::take(&mut self.reopened) {
                            return Vec::new();
                        }
                    }
                    Err(error) => {
                        if !self.failing {
                            tracing::warn!(prefix = %self.prefix, "etcd watch unavailable, retrying: {error}");
                            self.failing = true;
                        }
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(RETRY_BACKOFF_MAX);
                    }
                }
                continue;
            };
            let endpoint = *endpoint;
            let message = tokio::select! {
                message = stream.message() => message,
                () = tokio::time::sleep(WATCH_ENDPOINT_CHECK) => {
                    // Requests moved off this endpoint (it failed them, or is hung): follow.
                    if self.store.current_endpoint() != endpoint {
                        tracing::info!(prefix = %self.prefix, "etcd endpoint changed; reopening the watch");
                        self.lose_stream();
                    }
                    continue;
                }
            };
            match message {
                Ok(Some(response)) if response.canceled() => {
                    tracing::info!(
                        prefix = %self.prefix,
                        reason = response.cancel_reason(),
                        "etcd cancelled the watch; reopening"
                    );
                    self.lose_stream();
                }
                Ok(Some(response)) => {
                    let changed: ChangedKeys = response
                        .events()
                        .iter()
                        .filter_map(|event| event.kv())
                        .filter(|kv| kv.key().starts_with(self.prefix.as_bytes()))
                        .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
                        .collect();
                    if !changed.is_empty() {
                        return changed;
                    }
                }
                Ok(None) => {
                    tracing::info!(prefix = %self.prefix, "etcd closed the watch; reopening");
                    self.store.move_off(endpoint);
                    self.lose_stream();
                }
                Err(error) => {
                    tracing::info!(prefix = %self.prefix, "etcd watch failed, reopening: {error}");
                    self.store.move_off(endpoint);
                    self.lose_stream();
                }
            }
        }
    }

    fn lose_stream(&mut self) {
        self.stream = None;
        self.reopened = true;
    }
}

#[cfg(test)]
#[path = "remote_test.rs"]
mod tests;
