//! Router tests over a fake [`ClusterControl`]: every endpoint's code in each role,
//! HEAD/OPTIONS, query filters (`health`), validation (400 and nothing asked), outcomes and
//! access control (`control`).

mod control;
mod health;
mod tls;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode, header};
use tokio::sync::watch;
use tower::ServiceExt;

use crate::*;

/// Records every call; answers with the canned outcomes.
#[derive(Clone, Default)]
pub(super) struct FakeControl {
    calls: Arc<Mutex<Vec<String>>>,
    pub(super) switchover: Option<Result<SwitchoverOutcome, ControlError>>,
}

impl FakeControl {
    fn record(&self, call: String) {
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(call);
        }
    }

    pub(super) fn calls(&self) -> Vec<String> {
        self.calls
            .lock()
            .map(|calls| calls.clone())
            .unwrap_or_default()
    }
}

impl ClusterControl for FakeControl {
    async fn cluster(&self) -> Result<ClusterInfo, ControlError> {
        self.record("cluster".into());
        Ok(ClusterInfo {
            members: vec![ClusterMember {
                name: "n1".into(),
                role: "leader".into(),
                state: "running".into(),
                api_url: "http://10.9.9.9:8008/patroni".into(),
                host: Some("10.9.9.9".into()),
                port: Some(5432),
                timeline: Some(1),
                lag: None,
                tags: Default::default(),
                pending_restart: false,
            }],
            scope: "demo".into(),
            pause: false,
            scheduled_switchover: None,
        })
    }
    async fn history(&self) -> Result<serde_json::Value, ControlError> {
        Ok(serde_json::json!([[
            1,
            100,
            "no recovery target specified",
            "t",
            "n2"
        ]]))
    }
    async fn config(&self) -> Result<serde_json::Value, ControlError> {
        Ok(serde_json::json!({"ttl": 30}))
    }
    async fn patch_config(
        &self,
        patch: serde_json::Value,
    ) -> Result<serde_json::Value, ControlError> {
        self.record(format!("patch {patch}"));
        let mut config = serde_json::json!({"ttl": 30});
        merge_patch(&mut config, &patch);
        Ok(config)
    }
    async fn replace_config(
        &self,
        config: serde_json::Value,
    ) -> Result<serde_json::Value, ControlError> {
        self.record(format!("put {config}"));
        Ok(config)
    }
    async fn switchover(
        &self,
        request: SwitchoverRequest,
    ) -> Result<SwitchoverOutcome, ControlError> {
        self.record(format!(
            "{} {:?} {:?} {}",
            request.kind.as_str(),
            request.leader,
            request.candidate,
            request.scheduled_at.is_some()
        ));
        if request.scheduled_at.is_some() {
            return Ok(SwitchoverOutcome::Scheduled);
        }
        self.switchover
            .clone()
            .unwrap_or(Ok(SwitchoverOutcome::Done {
                new_leader: request.candidate.unwrap_or_default(),
            }))
    }
    async fn cancel_switchover(&self) -> Result<(), ControlError> {
        Err(ControlError::NotFound("no switchover is scheduled".into()))
    }
    async fn restart(&self, request: RestartRequest) -> Result<RestartOutcome, ControlError> {
        self.record(format!(
            "restart {:?} {:?}",
            request.role, request.postgres_version
        ));
        Ok(if request.schedule.is_some() {
            RestartOutcome::Scheduled
        } else {
            RestartOutcome::Restarted
        })
    }
    async fn cancel_restart(&self) -> Result<(), ControlError> {
        Ok(())
    }
    async fn reload(&self) -> Result<(), ControlError> {
        self.record("reload".into());
        Ok(())
    }
    async fn reinitialize(&self, force: bool) -> Result<(), ControlError> {
        self.record(format!("reinitialize {force}"));
        Err(ControlError::Unavailable(
            "I am the leader, can not reinitialize".into(),
        ))
    }
}

pub(super) fn status(role: &str, state: &str, leader: bool) -> PatroniStatus {
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
    status.last_cycle = Some(Instant::now());
    status
}

pub(super) fn primary() -> PatroniStatus {
    let mut primary = status("primary", "running", true);
    primary.xlog = Some(Xlog {
        location: Some(50_000_000),
        received_location: None,
        replayed_location: None,
        paused: None,
    });
    primary
}

/// A streaming replica `behind` bytes behind the leader's position.
pub(super) fn replica(behind: u64) -> PatroniStatus {
    let mut replica = status("replica", "running", false);
    replica.replication_state = Some("streaming".into());
    replica.cluster_optime = Some(50_000_000);
    replica.xlog = Some(Xlog {
        location: None,
        received_location: Some(50_000_000 - behind),
        replayed_location: Some(50_000_000 - behind),
        paused: Some(false),
    });
    replica
}

pub(super) struct Client {
    router: axum::Router,
    pub(super) control: FakeControl,
}

pub(super) fn new_client(
    status: PatroniStatus,
    access: AccessPolicy,
    control: FakeControl,
) -> Client {
    let (_tx, rx) = watch::channel(status);
    let router = router(Api {
        status: rx,
        control: control.clone(),
        access,
        store_leader: Some(Arc::new(|| true)),
        headers: ResponseHeaders(vec![(
            axum::http::header::SERVER,
            axum::http::HeaderValue::from_static("pgwarden-test"),
        )]),
    });
    Client { router, control }
}

impl Client {
    pub(super) async fn send(
        &self,
        method: Method,
        uri: &str,
        body: &str,
        peer: [u8; 4],
        authorization: Option<&str>,
    ) -> (StatusCode, bool, String) {
        let mut builder = Request::builder().method(method).uri(uri);
        if let Some(value) = authorization {
            builder = builder.header(header::AUTHORIZATION, value);
        }
        let Ok(mut request) = builder.body(Body::from(body.to_owned())) else {
            panic!("bad test request {uri}");
        };
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::from((peer, 40000))));
        let Ok(response) = self.router.clone().oneshot(request).await;
        let code = response.status();
        let has_type = response.headers().contains_key(header::CONTENT_TYPE);
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap_or_default();
        (code, has_type, String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The headers of the answer to `method uri` from loopback.
    pub(super) async fn headers(&self, method: Method, uri: &str) -> axum::http::HeaderMap {
        let Ok(mut request) = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
        else {
            panic!("bad test request {uri}");
        };
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
        let Ok(response) = self.router.clone().oneshot(request).await;
        response.headers().clone()
    }

    pub(super) async fn get(&self, uri: &str) -> StatusCode {
        self.send(Method::GET, uri, "", [127, 0, 0, 1], None)
            .await
            .0
    }

    pub(super) async fn post(&self, uri: &str, body: &str) -> (StatusCode, String) {
        let (code, _, text) = self
            .send(Method::POST, uri, body, [127, 0, 0, 1], None)
            .await;
        (code, text)
    }
}

pub(super) const OK: StatusCode = StatusCode::OK;
pub(super) const DOWN: StatusCode = StatusCode::SERVICE_UNAVAILABLE;
