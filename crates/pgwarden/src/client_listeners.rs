//! Serving one etcd API on several client listeners (etcd's comma-separated `--listen-client-urls`).
//!
//! The listeners must share one `etcd_server::Service`: lease keepalives are kept in the service's
//! memory, so a second service on another listener would run its own lease keeper and expire leases
//! that clients keep alive through the first. The single-listener case uses `etcd_server::serve`;
//! this module builds the same service from etcd-server's public parts and feeds it connections
//! accepted on every listener.
//!
//! An `https://` listener runs each accepted connection's TLS handshake in a task of its own
//! (bounded by `etcd_server::tls::HANDSHAKE_TIMEOUT`), so a slow or failing client never delays
//! the others; a failed handshake (e.g. no client certificate under `--client-cert-auth`) closes
//! only that connection. Each connection's verified client certificate name is the connect info
//! the etcd API uses for certificate-based auth.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use consensus::RaftNode;
use etcd_server::ServerConfig;
use etcd_server::Service;
use etcd_server::lease::TokioClock;
use etcd_server::tls::{ClientIdentity, ClientStream, ClientTls};
use tokio::net::TcpListener;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Accepted connections waiting for the HTTP server; small, since it accepts them immediately.
const ACCEPT_QUEUE: usize = 64;
/// Pause after a failed accept (e.g. out of file descriptors) before trying again.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// A client listener and, for an `https://` URL, its TLS.
pub struct ClientListener {
    pub listener: TcpListener,
    pub tls: Option<ClientTls>,
}

/// Serves `node`'s etcd API on every listener until `shutdown` is cancelled, then waits for the
/// service's tasks (lease keeper, streams) to finish.
pub async fn serve_all(
    listeners: Vec<ClientListener>,
    node: RaftNode,
    config: ServerConfig,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let tasks = TaskTracker::new();
    let stop = CancellationToken::new();
    let lease_check_interval = config.lease_check_interval;
    let clock: Arc<TokioClock> = Arc::new(TokioClock);
    let service = Service::new(node, config, clock.clone(), tasks.clone(), stop.clone());
    tasks.spawn(
        service
            .lease_keeper()
            .clone()
            .run(lease_check_interval, stop.clone()),
    );
    etcd_server::server::spawn_service_tasks(&service, clock, &stop);
    let stop_on_shutdown = stop.clone();
    let result = serve_service(listeners, &service, &tasks, &stop, async move {
        shutdown.cancelled().await;
        stop_on_shutdown.cancel();
    })
    .await;
    stop.cancel();
    tasks.close();
    tasks.wait().await;
    result
}

/// Serves an existing `service` on every listener until `graceful` resolves. The accept and
/// handshake tasks run on `tasks` and stop with `stop`; the caller owns the service's own
/// tasks (lease keeper, metrics) and waits for `tasks` afterwards.
pub async fn serve_service(
    listeners: Vec<ClientListener>,
    service: &Service<RaftNode>,
    tasks: &TaskTracker,
    stop: &CancellationToken,
    graceful: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let merged = MergedListener::start(listeners, tasks, stop)?;
    let app = etcd_server::server::router(service);
    let merged = etcd_server::h2_authority::AuthorityFixListener::new(merged);
    let app = app.into_make_service_with_connect_info::<ClientIdentity>();
    axum::serve(merged, app)
        .with_graceful_shutdown(graceful)
        .await
}

/// Connections from several TCP listeners, as one `axum::serve::Listener`.
struct MergedListener {
    /// Filled by one accept task per listener; those tasks stop with the service's token.
    accepted: mpsc::Receiver<(ClientStream, SocketAddr)>,
    local_addr: SocketAddr,
}

impl MergedListener {
    fn start(
        listeners: Vec<ClientListener>,
        tasks: &TaskTracker,
        stop: &CancellationToken,
    ) -> std::io::Result<Self> {
        let (sender, accepted) = mpsc::channel(ACCEPT_QUEUE);
        let mut local_addr = None;
        for ClientListener { listener, tls } in listeners {
            let addr = listener.local_addr()?;
            local_addr.get_or_insert(addr);
            let sender = sender.clone();
            let stop = stop.clone();
            let handshakes = tasks.clone();
            tasks.spawn(async move {
                loop {
                    let accepted = tokio::select! {
                        () = stop.cancelled() => return,
                        accepted = listener.accept() => accepted,
                    };
                    match accepted {
                        Ok((stream, peer)) => {
                            if let Err(error) = stream.set_nodelay(true) {
                                tracing::debug!(%error, "set TCP_NODELAY");
                            }
                            match &tls {
                                None => {
                                    if sender
                                        .send((ClientStream::Plain(stream), peer))
                                        .await
                                        .is_err()
                                    {
                                        return;
                                    }
                                }
                                Some(tls) => {
                                    handshakes.spawn(handshake(
                                        tls.clone(),
                                        stream,
                                        peer,
                                        sender.clone(),
                                        stop.clone(),
                                    ));
                                }
                            }
                        }
                        Err(error) => {
                            tracing::warn!(%addr, %error, "accept failed");
                            tokio::time::sleep(ACCEPT_RETRY).await;
                        }
                    }
                }
            });
        }
        let local_addr = local_addr.ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "no client listener")
        })?;
        Ok(Self {
            accepted,
            local_addr,
        })
    }
}

/// Completes one TLS handshake and hands the connection to the HTTP server; a failed
/// handshake only closes this connection.
async fn handshake(
    tls: ClientTls,
    stream: TcpStream,
    peer: SocketAddr,
    sender: mpsc::Sender<(ClientStream, SocketAddr)>,
    stop: CancellationToken,
) {
    let connected = tokio::select! {
        () = stop.cancelled() => return,
        connected = tls.handshake(stream) => connected,
    };
    match connected {
        Ok(stream) => {
            // The receiver is gone only during shutdown; the connection closes with it.
            let _ = sender.send((stream, peer)).await;
        }
        Err(error) => tracing::debug!(%peer, %error, "TLS handshake with a client failed"),
    }
}

impl axum::serve::Listener for MergedListener {
    type Io = ClientStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(connection) => connection,
            // Every accept task stopped: shutdown is under way, so no connection will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}
