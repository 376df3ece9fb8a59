//! Patroni's REST API for pgwarden (patroni.md §4): the health checks load balancers and
//! probes use (GET with the status JSON, HEAD and OPTIONS with the code only), `/patroni`,
//! `/metrics`, the cluster views (`/cluster`, `/history`, `/config`) and the unsafe endpoints
//! (`PATCH`/`PUT /config`, `/switchover`, `/failover`, `/restart`, `/reload`,
//! `/reinitialize`) behind an allowlist, a client certificate (with HTTPS and
//! `verify_client`) and HTTP Basic credentials; over HTTP, or HTTPS only ([`tls`]).
//!
//! It reads the status the agent publishes on a `tokio::sync::watch` channel and asks
//! everything else of a [`ClusterControl`] the agent implements: it must not know PostgreSQL,
//! the store, or HA decisions. Malformed requests are refused here with 400 and a reason
//! before anything is asked.
//!
//! Layout: [`status`] (the published status), [`health`] (health-check codes), [`control`]
//! (the trait and its typed requests and errors), `api` (the router and handlers),
//! [`auth`] (allowlist and Basic credentials), [`metrics`] (Prometheus text),
//! [`timestamp`] (ISO 8601 schedules), [`tls`] (the HTTPS listener and the client's TLS),
//! [`client`] (the members' REST client).

mod api;
pub mod auth;
pub mod client;
pub mod control;
pub mod health;
pub mod metrics;
pub mod status;
pub mod timestamp;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;

pub use api::{Api, ResponseHeaders, StoreLeaderProbe, router};
pub use auth::{AccessPolicy, Credentials, IpNetwork};
pub use control::{
    ClusterControl, ClusterInfo, ClusterMember, ControlError, RestartOutcome, RestartRequest,
    ScheduledSwitchover, SwitchoverKind, SwitchoverOutcome, SwitchoverRequest, merge_patch,
};
pub use health::{HealthQuery, health_code};
pub use status::{AgentFigures, AgentIdentity, PatroniStatus, Xlog};
pub use timestamp::Timestamp;
use tokio::net::TcpListener;

/// Serves the REST API on `listener` until `shutdown` resolves: HTTPS only with `tls`
/// (each connection's handshake in its own task), else HTTP.
pub async fn serve<C: ClusterControl>(
    listener: TcpListener,
    api: Api<C>,
    tls: Option<tls::ServerTls>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = router(api);
    match tls {
        None => {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(shutdown)
            .await
        }
        Some(tls) => {
            axum::serve(
                tls::TlsListener::new(listener, tls),
                router.into_make_service_with_connect_info::<tls::ClientAddress>(),
            )
            .with_graceful_shutdown(shutdown)
            .await
        }
    }
}

#[cfg(test)]
mod tests;
