//! Serving every etcd service on one listener: gRPC (HTTP/2) and the plain HTTP endpoints
//! (HTTP/1.1) share the port, so a JSON gateway can later be merged into the same router.

use std::future::Future;
use std::sync::Arc;

use axum::serve::ListenerExt;
use etcd_proto::etcdserverpb::auth_server::AuthServer;
use etcd_proto::etcdserverpb::cluster_server::ClusterServer;
use etcd_proto::etcdserverpb::kv_server::KvServer;
use etcd_proto::etcdserverpb::lease_server::LeaseServer;
use etcd_proto::etcdserverpb::maintenance_server::MaintenanceServer;
use etcd_proto::etcdserverpb::watch_server::WatchServer;
use etcd_proto::v3electionpb::election_server::ElectionServer;
use etcd_proto::v3lockpb::lock_server::LockServer;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::service::Routes;

use crate::backend::Backend;
use crate::config::ServerConfig;
use crate::grpc::auth::AuthApi;
use crate::grpc::cluster::ClusterApi;
use crate::grpc::election::ElectionApi;
use crate::grpc::kv::KvApi;
use crate::grpc::lease::LeaseApi;
use crate::grpc::lock::LockApi;
use crate::grpc::maintenance::MaintenanceApi;
use crate::grpc::watch::WatchApi;
use crate::lease::forward::ForwardedCalls;
use crate::lease::{Clock, TokioClock};
use crate::service::Service;

/// Why serving stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("serving the etcd API: {0}")]
    Io(#[from] std::io::Error),
}

/// Every gRPC service of the etcd API, its JSON gateway (`/v3/...`), `/version` and `/health`,
/// as one axum router.
pub fn router<B: Backend>(service: &Service<B>) -> axum::Router {
    let max_receive = service.config().grpc_max_receive_bytes();
    let routes = Routes::new(
        KvServer::new(KvApi {
            service: service.clone(),
        })
        .max_decoding_message_size(max_receive),
    )
    .add_service(
        WatchServer::new(WatchApi {
            service: service.clone(),
        })
        .max_decoding_message_size(max_receive),
    )
    .add_service(
        LeaseServer::new(LeaseApi {
            service: service.clone(),
        })
        .max_decoding_message_size(max_receive),
    )
    .add_service(
        ClusterServer::new(ClusterApi {
            service: service.clone(),
        })
        .max_decoding_message_size(max_receive),
    )
    .add_service(
        MaintenanceServer::new(MaintenanceApi {
            service: service.clone(),
        })
        .max_decoding_message_size(max_receive),
    )
    .add_service(
        AuthServer::new(AuthApi {
            service: service.clone(),
        })
        .max_decoding_message_size(max_receive),
    )
    .add_service(
        LockServer::new(LockApi {
            service: service.clone(),
        })
        .max_decoding_message_size(max_receive),
    )
    .add_service(
        ElectionServer::new(ElectionApi {
            service: service.clone(),
        })
        .max_decoding_message_size(max_receive),
    );
    // Counted per call by a layer on the gRPC routes only (not the HTTP ones).
    let grpc = routes
        .into_axum_router()
        .layer(axum::middleware::from_fn_with_state(
            service.metrics().clone(),
            crate::metrics::grpc::track,
        ))
        .layer(axum::middleware::from_fn(
            crate::tls::attach_certificate_user,
        ));
    crate::http::router(service.clone())
        .merge(crate::gateway::router(service.clone()))
        .merge(crate::metrics::router(service.clone()))
        .merge(grpc)
}

/// Serves the etcd API of `node` on `listener` until `shutdown` resolves, with the lease
/// keeper running alongside. On shutdown, open watch and keepalive streams end, the lease
/// keeper stops, and the call returns once every task it started has finished.
pub async fn serve_backend<B: Backend>(
    listener: tokio::net::TcpListener,
    node: B,
    config: ServerConfig,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let tasks = TaskTracker::new();
    let stop = CancellationToken::new();
    let lease_check_interval = config.lease_check_interval;
    let service = Service::new(node, config, clock.clone(), tasks.clone(), stop.clone());
    tasks.spawn(
        service
            .lease_keeper()
            .clone()
            .run(lease_check_interval, stop.clone()),
    );
    spawn_service_tasks(&service, clock, &stop);
    let app = router(&service);
    let stop_on_signal = stop.clone();
    // Replies are several small HTTP/2 frames; without TCP_NODELAY, Nagle's algorithm holds
    // the later ones until the client's (delayed) ACK, adding up to ~40 ms per reply.
    let listener = listener.tap_io(|stream| {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "setting TCP_NODELAY on a client connection failed");
        }
    });
    // etcdctl 3.4's URL-form `:authority` is made bare before hyper sees it (see h2_authority).
    let listener = crate::h2_authority::AuthorityFixListener::new(listener);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            stop_on_signal.cancel();
        })
        .await;
    stop.cancel();
    tasks.close();
    tasks.wait().await;
    result.map_err(ServeError::Io)
}

/// Registers the service as the member's answer to followers' forwarded lease calls, and starts
/// the member's metrics observer (leader changes, storage histograms, upkeep) and, when
/// configured, the auto-compactor, on the service's task tracker until `stop` is cancelled.
/// Whoever builds a [`Service`] without [`serve_backend`] calls this next to the lease keeper.
pub fn spawn_service_tasks<B: Backend>(
    service: &Service<B>,
    clock: Arc<dyn Clock>,
    stop: &CancellationToken,
) {
    let tasks = service.tasks();
    // Followers' lease calls reach this member's service while the service runs: the task
    // holds the only strong reference, the member a weak one.
    let forwarded: Arc<dyn consensus::ForwardHandler> = ForwardedCalls::new(service);
    if !service.node().serve_forwarded(Arc::downgrade(&forwarded)) {
        tracing::debug!("the member takes no forwarded calls, or already has a handler");
    }
    let held_until = stop.clone();
    tasks.spawn(async move {
        held_until.cancelled().await;
        drop(forwarded);
    });
    tasks.spawn(crate::metrics::observer::run(service.clone(), stop.clone()));
    if let Some(auto_compaction) = service.config().auto_compaction.clone() {
        tasks.spawn(crate::space::compactor::run(
            service.clone(),
            auto_compaction,
            clock,
            stop.clone(),
        ));
    }
}

/// Serves the etcd API of a Raft member on `listener` until `shutdown` resolves (see
/// [`serve_backend`]), with tokio's clock for lease expiry.
pub async fn serve(
    listener: tokio::net::TcpListener,
    node: consensus::RaftNode,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    serve_backend(listener, node, config, Arc::new(TokioClock), shutdown).await
}
