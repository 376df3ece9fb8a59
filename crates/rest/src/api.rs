//! The router: one handler per endpoint. A handler validates the request (400 with the
//! reason, nothing changed), asks [`ClusterControl`], and renders the outcome with Patroni's
//! status code and message.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::auth::{AccessPolicy, Denied};
use crate::control::{
    ClusterControl, ControlError, RestartOutcome, RestartRequest, SwitchoverKind,
    SwitchoverOutcome, SwitchoverRequest,
};
use crate::health::{HealthQuery, health_code, is_health_path};
use crate::status::PatroniStatus;
use crate::timestamp::Timestamp;
use crate::tls::ClientAddress;

/// Everything the REST API serves from.
pub struct Api<C> {
    /// The agent's status, replaced after every cycle.
    pub status: watch::Receiver<PatroniStatus>,
    /// The agent's answers to the cluster and control endpoints.
    pub control: C,
    pub access: AccessPolicy,
    /// Whether this member's embedded store leads Raft (`pgwarden_store_leader`); `None` when
    /// the store is external.
    pub store_leader: Option<StoreLeaderProbe>,
    /// Headers set on every response (Patroni's `http_extra_headers`, `https_extra_headers`,
    /// `server_tokens`).
    pub headers: ResponseHeaders,
}

/// Headers set on every response, replacing a header of the same name the handler set.
#[derive(Debug, Clone, Default)]
pub struct ResponseHeaders(pub Vec<(header::HeaderName, HeaderValue)>);

impl ResponseHeaders {
    /// Adds `name: value`; the reason when HTTP does not allow the name or the value.
    pub fn push(&mut self, name: &str, value: &str) -> Result<(), &'static str> {
        let name = header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| "not a valid HTTP header name")?;
        let value = HeaderValue::from_str(value).map_err(|_| "not a valid HTTP header value")?;
        self.0.push((name, value));
        Ok(())
    }
}

/// Answers whether this member's embedded store is the Raft leader right now.
pub type StoreLeaderProbe = Arc<dyn Fn() -> bool + Send + Sync>;

struct Shared<C> {
    status: watch::Receiver<PatroniStatus>,
    control: C,
    access: AccessPolicy,
    store_leader: Option<StoreLeaderProbe>,
}

type AppState<C> = State<Arc<Shared<C>>>;

/// The router over `api`. Requests need a [`ConnectInfo<SocketAddr>`] (HTTP) or
/// [`ConnectInfo<ClientAddress>`] (HTTPS) extension for the allowlist and the client
/// certificate (the server adds it; a request without one is outside any allowlist and has
/// no certificate).
pub fn router<C: ClusterControl>(api: Api<C>) -> Router {
    let headers = Arc::new(api.headers);
    let shared = Arc::new(Shared {
        status: api.status,
        control: api.control,
        access: api.access,
        store_leader: api.store_leader,
    });
    Router::new()
        .route("/cluster", get(cluster::<C>))
        .route("/history", get(history::<C>))
        .route(
            "/config",
            get(config_get::<C>)
                .patch(config_patch::<C>)
                .put(config_put::<C>),
        )
        .route(
            "/switchover",
            post(switchover::<C>).delete(cancel_switchover::<C>),
        )
        .route("/failover", post(failover::<C>))
        .route("/restart", post(restart::<C>).delete(cancel_restart::<C>))
        .route("/reload", post(reload::<C>))
        .route("/reinitialize", post(reinitialize::<C>))
        .route("/metrics", get(metrics::<C>))
        .fallback(health::<C>)
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            check_access::<C>,
        ))
        .layer(middleware::map_response(move |mut response: Response| {
            let headers = headers.clone();
            async move {
                for (name, value) in &headers.0 {
                    response.headers_mut().insert(name.clone(), value.clone());
                }
                response
            }
        }))
        .with_state(shared)
}

fn status_of<C>(shared: &Shared<C>) -> PatroniStatus {
    shared.status.borrow().clone()
}

/// A plain-text answer.
fn message(code: StatusCode, text: impl Into<String>) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text.into(),
    )
        .into_response()
}

fn json(code: StatusCode, value: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (code, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(error) => message(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encode JSON: {error}"),
        ),
    }
}

fn refused(error: &ControlError) -> Response {
    message(error.status_code(), error.to_string())
}

/// A refused request: its status code and the reason the client reads.
#[derive(Debug)]
pub(crate) struct Refusal {
    code: StatusCode,
    reason: String,
}

impl Refusal {
    fn new(code: StatusCode, reason: impl Into<String>) -> Self {
        Refusal {
            code,
            reason: reason.into(),
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        message(self.code, self.reason)
    }
}

fn bad_request(reason: impl Into<String>) -> Refusal {
    Refusal::new(StatusCode::BAD_REQUEST, reason)
}

/// Parses a JSON body into `T` (unknown fields refused); an empty body reads as `{}`.
fn parse_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, Refusal> {
    let text: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(text)
        .map_err(|error| bad_request(format!("Invalid request body: {error}")))
}

/// Unsafe methods pass the allowlist, then the client certificate, then the Basic
/// credentials (patroni.md §4.3).
async fn check_access<C: ClusterControl>(
    State(shared): AppState<C>,
    request: Request<Body>,
    next: Next,
) -> Response {
    let unsafe_method = matches!(
        *request.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    if !unsafe_method {
        return next.run(request).await;
    }
    // HTTPS connections carry whether a client certificate was verified; HTTP ones never have one.
    let (peer, verified_certificate) =
        match request.extensions().get::<ConnectInfo<ClientAddress>>() {
            Some(ConnectInfo(client)) => (Some(client.address.ip()), client.verified_certificate),
            None => (
                request
                    .extensions()
                    .get::<ConnectInfo<SocketAddr>>()
                    .map(|info| info.0.ip()),
                false,
            ),
        };
    let member_hosts = if shared.access.allowlist_include_members {
        member_addresses(&shared.control).await
    } else {
        Vec::new()
    };
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    match shared
        .access
        .check(peer, &member_hosts, verified_certificate, authorization)
    {
        Ok(()) => next.run(request).await,
        Err(Denied::NotAllowed) => message(StatusCode::FORBIDDEN, "Access is denied"),
        Err(Denied::NoClientCertificate) => {
            message(StatusCode::FORBIDDEN, "client certificate required")
        }
        Err(Denied::Unauthenticated) => {
            let mut response = message(StatusCode::UNAUTHORIZED, "no auth header received");
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"Patroni\""),
            );
            response
        }
    }
}

/// The members' API hosts (from their `api_url`), resolved to addresses.
async fn member_addresses<C: ClusterControl>(control: &C) -> Vec<IpAddr> {
    let Ok(cluster) = control.cluster().await else {
        return Vec::new();
    };
    cluster
        .members
        .iter()
        .filter_map(|member| member.host.as_deref())
        .flat_map(|host| {
            host.parse::<IpAddr>()
                .map(|ip| vec![ip])
                .unwrap_or_else(|_| {
                    (host, 0)
                        .to_socket_addrs()
                        .map(|addrs| addrs.map(|addr| addr.ip()).collect())
                        .unwrap_or_default()
                })
        })
        .collect()
}

/// The health checks and `/patroni`: GET with the status JSON, HEAD and OPTIONS code only.
async fn health<C: ClusterControl>(
    State(shared): AppState<C>,
    query: Result<Query<std::collections::BTreeMap<String, String>>, QueryRejection>,
    request: Request<Body>,
) -> Response {
    let path = request.uri().path();
    if !is_health_path(path) {
        return message(StatusCode::NOT_FOUND, "Not Found");
    }
    let method = request.method();
    if !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return message(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    }
    let pairs = match query {
        Ok(Query(pairs)) => pairs,
        Err(rejection) => {
            return bad_request(format!("Invalid query string: {rejection}")).into_response();
        }
    };
    let query = match HealthQuery::parse(&pairs) {
        Ok(query) => query,
        Err(reason) => return bad_request(reason).into_response(),
    };
    let status = status_of(&shared);
    let Some(code) = health_code(path, &query, &status, Instant::now()) else {
        return message(StatusCode::NOT_FOUND, "Not Found");
    };
    if *method == Method::GET {
        json(code, &status)
    } else {
        code.into_response()
    }
}

async fn metrics<C: ClusterControl>(State(shared): AppState<C>) -> Response {
    let mut status = status_of(&shared);
    if let Some(probe) = &shared.store_leader {
        status.agent.store_leader = Some(probe());
    }
    let body = crate::metrics::render(&status);
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

async fn cluster<C: ClusterControl>(State(shared): AppState<C>) -> Response {
    match shared.control.cluster().await {
        Ok(cluster) => json(StatusCode::OK, &cluster),
        Err(error) => refused(&error),
    }
}

async fn history<C: ClusterControl>(State(shared): AppState<C>) -> Response {
    match shared.control.history().await {
        Ok(history) => json(StatusCode::OK, &history),
        Err(error) => refused(&error),
    }
}

async fn config_get<C: ClusterControl>(State(shared): AppState<C>) -> Response {
    match shared.control.config().await {
        Ok(config) => json(StatusCode::OK, &config),
        Err(error) => refused(&error),
    }
}

/// The body of `PATCH`/`PUT /config`: a JSON object.
fn config_body(body: &Bytes) -> Result<serde_json::Value, Refusal> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|error| bad_request(format!("Invalid request body: {error}")))?;
    if !value.is_object() {
        return Err(bad_request(
            "Invalid request body: the config must be a JSON object",
        ));
    }
    Ok(value)
}

async fn config_patch<C: ClusterControl>(State(shared): AppState<C>, body: Bytes) -> Response {
    let patch = match config_body(&body) {
        Ok(patch) => patch,
        Err(refusal) => return refusal.into_response(),
    };
    match shared.control.patch_config(patch).await {
        Ok(config) => json(StatusCode::OK, &config),
        Err(error) => refused(&error),
    }
}

async fn config_put<C: ClusterControl>(State(shared): AppState<C>, body: Bytes) -> Response {
    let config = match config_body(&body) {
        Ok(config) => config,
        Err(refusal) => return refusal.into_response(),
    };
    match shared.control.replace_config(config).await {
        Ok(config) => json(StatusCode::OK, &config),
        Err(error) => refused(&error),
    }
}

/// `POST /switchover` and `POST /failover` bodies.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SwitchoverBody {
    #[serde(default)]
    leader: Option<String>,
    #[serde(default)]
    candidate: Option<String>,
    #[serde(default)]
    scheduled_at: Option<String>,
}

/// Validates a switchover or failover body (patroni.md §4.3's messages); `kind` is what the
/// endpoint asked for, a failover naming a leader is a switchover.
pub(crate) fn switchover_request(
    requested: SwitchoverKind,
    body: &Bytes,
    paused: bool,
    now: SystemTime,
) -> Result<SwitchoverRequest, Refusal> {
    let body: SwitchoverBody = parse_body(body)?;
    let non_empty = |value: Option<String>| value.filter(|text| !text.trim().is_empty());
    let leader = non_empty(body.leader);
    let candidate = non_empty(body.candidate);
    let kind = if leader.is_some() {
        SwitchoverKind::Switchover
    } else {
        requested
    };
    match kind {
        SwitchoverKind::Failover if candidate.is_none() => {
            return Err(bad_request(
                "Failover could be performed only to a specific candidate",
            ));
        }
        SwitchoverKind::Switchover if leader.is_none() => {
            return Err(bad_request(
                "Switchover could be performed only from a specific leader",
            ));
        }
        _ => {}
    }
    if leader.is_some() && leader == candidate {
        return Err(bad_request("Switchover target and source are the same"));
    }
    let scheduled_at = match non_empty(body.scheduled_at) {
        None => None,
        Some(_) if kind == SwitchoverKind::Failover => {
            return Err(bad_request("Failover can't be scheduled"));
        }
        Some(_) if paused => {
            return Err(bad_request("Can't schedule switchover in the paused state"));
        }
        Some(text) => {
            let at = Timestamp::parse(&text).map_err(|reason| {
                bad_request(format!("Unable to parse scheduled timestamp: {reason}"))
            })?;
            if at.at < now {
                return Err(Refusal::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Cannot schedule switchover in the past",
                ));
            }
            Some(at)
        }
    };
    if paused && candidate.is_none() {
        return Err(bad_request(
            "Switchover is possible only to a specific candidate in a paused state",
        ));
    }
    Ok(SwitchoverRequest {
        kind,
        leader,
        candidate,
        scheduled_at,
    })
}

async fn switchover<C: ClusterControl>(State(shared): AppState<C>, body: Bytes) -> Response {
    run_switchover(&shared, SwitchoverKind::Switchover, &body).await
}

async fn failover<C: ClusterControl>(State(shared): AppState<C>, body: Bytes) -> Response {
    run_switchover(&shared, SwitchoverKind::Failover, &body).await
}

async fn run_switchover<C: ClusterControl>(
    shared: &Shared<C>,
    kind: SwitchoverKind,
    body: &Bytes,
) -> Response {
    let paused = status_of(shared).pause;
    let request = match switchover_request(kind, body, paused, SystemTime::now()) {
        Ok(request) => request,
        Err(refusal) => return refusal.into_response(),
    };
    let kind = request.kind;
    match shared.control.switchover(request).await {
        Ok(SwitchoverOutcome::Scheduled) => message(StatusCode::ACCEPTED, "Switchover scheduled"),
        Ok(SwitchoverOutcome::Done { new_leader }) => {
            let verb = match kind {
                SwitchoverKind::Switchover => "switched over",
                SwitchoverKind::Failover => "failed over",
            };
            message(
                StatusCode::OK,
                format!("Successfully {verb} to \"{new_leader}\""),
            )
        }
        Ok(SwitchoverOutcome::Instead {
            new_leader,
            candidate,
        }) => {
            let verb = match kind {
                SwitchoverKind::Switchover => "Switched over",
                SwitchoverKind::Failover => "Failed over",
            };
            message(
                StatusCode::OK,
                format!("{verb} to \"{new_leader}\" instead of \"{candidate}\""),
            )
        }
        Err(error) => refused(&error),
    }
}

async fn cancel_switchover<C: ClusterControl>(State(shared): AppState<C>) -> Response {
    match shared.control.cancel_switchover().await {
        Ok(()) => message(StatusCode::OK, "scheduled switchover deleted"),
        Err(error) => refused(&error),
    }
}

/// `POST /restart` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RestartBody {
    #[serde(default)]
    restart_pending: Option<bool>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    postgres_version: Option<String>,
    #[serde(default)]
    timeout: Option<serde_json::Value>,
    #[serde(default)]
    schedule: Option<String>,
}

/// Validates a restart body: known keys with readable values only.
pub(crate) fn restart_request(
    body: &Bytes,
    paused: bool,
    now: SystemTime,
) -> Result<RestartRequest, Refusal> {
    let body: RestartBody = parse_body(body)?;
    let role = match body.role.as_deref() {
        None => None,
        Some("primary" | "master") => Some("primary".to_owned()),
        Some("replica") => Some("replica".to_owned()),
        Some(_) => {
            return Err(bad_request(
                "PostgreSQL role should be either primary or replica",
            ));
        }
    };
    let postgres_version = match body.postgres_version.as_deref() {
        None => None,
        Some(text) => Some(version_number(text).ok_or_else(|| {
            bad_request(format!(
                "PostgreSQL version should be in the major.minor format, not {text:?}"
            ))
        })?),
    };
    let timeout = match &body.timeout {
        None => None,
        Some(value) => Some(parse_timeout(value).ok_or_else(|| {
            bad_request(format!(
                "timeout must be a number of seconds (e.g. 30 or \"30s\"), not {value}"
            ))
        })?),
    };
    let schedule = match body.schedule.as_deref() {
        None => None,
        Some(_) if paused => {
            return Err(Refusal::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Can't schedule restart in the paused mode",
            ));
        }
        Some(text) => {
            let at = Timestamp::parse(text).map_err(|reason| {
                bad_request(format!("Unable to parse scheduled timestamp: {reason}"))
            })?;
            if at.at < now {
                return Err(Refusal::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Cannot schedule in the past",
                ));
            }
            Some(at)
        }
    };
    Ok(RestartRequest {
        restart_pending: body.restart_pending.unwrap_or(false),
        role,
        postgres_version,
        timeout,
        schedule,
    })
}

/// `15.4` → 150004, `9.6.24` → 90624 (`server_version_num`).
fn version_number(text: &str) -> Option<u32> {
    let parts: Vec<u32> = text
        .trim()
        .split('.')
        .map(|part| part.parse().ok())
        .collect::<Option<_>>()?;
    match parts.as_slice() {
        [major] if *major >= 10 => Some(major * 10_000),
        [major, minor] if *major >= 10 => Some(major * 10_000 + minor),
        [major, minor] => Some(major * 10_000 + minor * 100),
        [major, minor, patch] if *major < 10 => Some(major * 10_000 + minor * 100 + patch),
        _ => None,
    }
}

fn parse_timeout(value: &serde_json::Value) -> Option<Duration> {
    let seconds = match value {
        serde_json::Value::Number(number) => number.as_f64()?,
        serde_json::Value::String(text) => text.trim().trim_end_matches('s').trim().parse().ok()?,
        _ => return None,
    };
    (seconds.is_finite() && seconds > 0.0).then(|| Duration::from_secs_f64(seconds))
}

async fn restart<C: ClusterControl>(State(shared): AppState<C>, body: Bytes) -> Response {
    let paused = status_of(&shared).pause;
    let request = match restart_request(&body, paused, SystemTime::now()) {
        Ok(request) => request,
        Err(refusal) => return refusal.into_response(),
    };
    match shared.control.restart(request).await {
        Ok(RestartOutcome::Restarted) => message(StatusCode::OK, "restarted successfully"),
        Ok(RestartOutcome::Scheduled) => message(StatusCode::ACCEPTED, "restart scheduled"),
        Err(error) => refused(&error),
    }
}

async fn cancel_restart<C: ClusterControl>(State(shared): AppState<C>) -> Response {
    match shared.control.cancel_restart().await {
        Ok(()) => message(StatusCode::OK, "scheduled restart deleted"),
        Err(error) => refused(&error),
    }
}

async fn reload<C: ClusterControl>(State(shared): AppState<C>) -> Response {
    match shared.control.reload().await {
        Ok(()) => message(StatusCode::ACCEPTED, "reload scheduled"),
        Err(error) => refused(&error),
    }
}

/// `POST /reinitialize` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReinitializeBody {
    #[serde(default)]
    force: bool,
    /// Accepted for compatibility: pgwarden always clones from the leader.
    #[serde(default)]
    #[expect(
        dead_code,
        reason = "accepted for compatibility; pgwarden clones from the leader"
    )]
    from_leader: bool,
}

async fn reinitialize<C: ClusterControl>(State(shared): AppState<C>, body: Bytes) -> Response {
    let body: ReinitializeBody = match parse_body(&body) {
        Ok(body) => body,
        Err(refusal) => return refusal.into_response(),
    };
    match shared.control.reinitialize(body.force).await {
        Ok(()) => message(StatusCode::OK, "reinitialize started"),
        Err(error) => refused(&error),
    }
}
