//! Patroni's REST API subset for pgwarden: `GET /patroni` (the status JSON peers read during
//! the leader race) and the health-check endpoints load balancers and probes use (`/primary`,
//! `/leader`, `/replica`, `/read-write`, `/read-only`, `/health`, `/liveness`, `/readiness`)
//! with Patroni's status codes (patroni.md §4.1): GET answers the status JSON with the code,
//! HEAD and OPTIONS the code only.
//! It reads only the status the agent publishes on a `tokio::sync::watch` channel: it must
//! not know PostgreSQL, the store, or HA decisions.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// What the agent publishes after every cycle; `/patroni` serialises it as Patroni does.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PatroniStatus {
    /// PostgreSQL state in Patroni's wording (`running`, `starting`, `stopped`, ...).
    pub state: String,
    /// `primary`, `replica` or `uninitialized`.
    pub role: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_version: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub xlog: Option<Xlog>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeline: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replication_state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_system_identifier: Option<String>,
    /// True when no member holds the leader key.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cluster_unlocked: bool,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, serde_json::Value>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub watchdog_failed: bool,
    /// A configured parameter's new value waits for a PostgreSQL restart.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub pending_restart: bool,
    /// The last decision's one-line message.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    pub patroni: AgentIdentity,
    /// This node holds the leader key (not serialised; drives `/leader` and `/primary`).
    #[serde(skip)]
    pub holds_leader_key: bool,
    /// When the HA loop last finished a cycle (drives `/liveness`).
    #[serde(skip)]
    pub last_cycle: Option<Instant>,
    /// The current `ttl` (drives `/liveness`).
    #[serde(skip)]
    pub ttl: Duration,
}

/// `xlog`: a primary reports `location`; a replica the received and replayed positions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Xlog {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub received_location: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replayed_location: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
}

/// `patroni`: {version, scope, name}.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentIdentity {
    pub version: String,
    pub scope: String,
    pub name: String,
}

impl PatroniStatus {
    /// The status of an agent that has not finished a cycle yet.
    pub fn initial(identity: AgentIdentity, ttl: Duration) -> Self {
        Self {
            state: "stopped".to_owned(),
            role: "uninitialized".to_owned(),
            server_version: None,
            xlog: None,
            timeline: None,
            replication_state: None,
            database_system_identifier: None,
            cluster_unlocked: false,
            tags: BTreeMap::new(),
            watchdog_failed: false,
            pending_restart: false,
            message: String::new(),
            patroni: identity,
            holds_leader_key: false,
            last_cycle: None,
            ttl,
        }
    }

    fn running(&self) -> bool {
        self.state == "running"
    }

    fn is_primary_leader(&self) -> bool {
        self.holds_leader_key && self.role == "primary" && self.running()
    }

    fn is_running_replica(&self) -> bool {
        self.role == "replica" && self.running()
    }
}

/// The status code of a health-check `path` (patroni.md §4.1); `None` for an unknown path.
pub fn health_code(path: &str, status: &PatroniStatus, now: Instant) -> Option<StatusCode> {
    let path = path.trim_end_matches('/');
    let ok = match path {
        "/patroni" => true,
        "" | "/primary" | "/read-write" => status.is_primary_leader(),
        "/leader" => status.holds_leader_key && status.running(),
        "/replica" => status.is_running_replica(),
        "/read-only" => status.is_primary_leader() || status.is_running_replica(),
        "/health" => status.running(),
        "/liveness" => {
            let limit = if status.holds_leader_key {
                status.ttl
            } else {
                status.ttl * 2
            };
            status
                .last_cycle
                .is_some_and(|last| now.saturating_duration_since(last) <= limit)
        }
        "/readiness" => {
            status.is_primary_leader()
                || (status.is_running_replica()
                    && status.replication_state.as_deref() == Some("streaming"))
        }
        other if other.contains("master") => status.is_primary_leader(),
        _ => return None,
    };
    Some(if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    })
}

/// The router over `status`.
pub fn router(status: watch::Receiver<PatroniStatus>) -> Router {
    Router::new().fallback(move |request: Request<Body>| {
        let status = status.clone();
        async move { answer(&request, &status.borrow().clone()) }
    })
}

fn answer(request: &Request<Body>, status: &PatroniStatus) -> Response {
    let Some(code) = health_code(request.uri().path(), status, Instant::now()) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if request.method() == Method::GET {
        let body = serde_json::to_vec(status).unwrap_or_default();
        (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
    } else if request.method() == Method::HEAD || request.method() == Method::OPTIONS {
        code.into_response()
    } else {
        StatusCode::METHOD_NOT_ALLOWED.into_response()
    }
}

/// Serves the REST API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    status: watch::Receiver<PatroniStatus>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(status))
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(role: &str, state: &str, leader: bool) -> PatroniStatus {
        let mut status = PatroniStatus::initial(
            AgentIdentity {
                version: "0.1.0".into(),
                scope: "demo".into(),
                name: "n1".into(),
            },
            Duration::from_secs(5),
        );
        status.role = role.into();
        status.state = state.into();
        status.holds_leader_key = leader;
        status
    }

    #[test]
    fn patroni_status_codes() {
        let now = Instant::now();
        let primary = status("primary", "running", true);
        let replica = status("replica", "running", false);
        let stopped = status("replica", "stopped", false);
        let ok = Some(StatusCode::OK);
        let unavailable = Some(StatusCode::SERVICE_UNAVAILABLE);
        for (path, subject, expected) in [
            ("/primary", &primary, ok),
            ("/master", &primary, ok),
            ("/leader", &primary, ok),
            ("/read-write", &primary, ok),
            ("/replica", &primary, unavailable),
            ("/read-only", &primary, ok),
            ("/primary", &replica, unavailable),
            ("/replica", &replica, ok),
            ("/read-only", &replica, ok),
            ("/health", &replica, ok),
            ("/health", &stopped, unavailable),
            ("/patroni", &stopped, ok),
            ("/nope", &stopped, None),
        ] {
            assert_eq!(
                health_code(path, subject, now),
                expected,
                "{path} {subject:?}"
            );
        }
    }

    /// HAProxy's `option httpchk OPTIONS /primary` (and `/replica`) reads only the status code:
    /// OPTIONS and HEAD answer it without a body, GET with the status JSON.
    #[test]
    fn options_and_head_answer_the_health_code_without_a_body() -> anyhow::Result<()> {
        let primary = status("primary", "running", true);
        let replica = status("replica", "running", false);
        for (method, path, subject, expected, has_body) in [
            (Method::OPTIONS, "/primary", &primary, StatusCode::OK, false),
            (
                Method::OPTIONS,
                "/primary",
                &replica,
                StatusCode::SERVICE_UNAVAILABLE,
                false,
            ),
            (Method::OPTIONS, "/replica", &replica, StatusCode::OK, false),
            (
                Method::OPTIONS,
                "/replica",
                &primary,
                StatusCode::SERVICE_UNAVAILABLE,
                false,
            ),
            (Method::HEAD, "/primary", &primary, StatusCode::OK, false),
            (
                Method::GET,
                "/replica",
                &primary,
                StatusCode::SERVICE_UNAVAILABLE,
                true,
            ),
            (
                Method::POST,
                "/primary",
                &primary,
                StatusCode::METHOD_NOT_ALLOWED,
                false,
            ),
        ] {
            let request = Request::builder()
                .method(method.clone())
                .uri(path)
                .body(Body::empty())?;
            let response = answer(&request, subject);
            assert_eq!(response.status(), expected, "{method} {path} {subject:?}");
            assert_eq!(
                response.headers().contains_key(header::CONTENT_TYPE),
                has_body,
                "{method} {path}"
            );
        }
        Ok(())
    }

    #[test]
    fn liveness_follows_the_last_cycle() {
        let now = Instant::now();
        let mut replica = status("replica", "running", false);
        assert_eq!(
            health_code("/liveness", &replica, now),
            Some(StatusCode::SERVICE_UNAVAILABLE)
        );
        replica.last_cycle = Some(now);
        assert_eq!(
            health_code("/liveness", &replica, now),
            Some(StatusCode::OK)
        );
    }
}
