//! What the REST API asks of the cluster: the [`ClusterControl`] trait the agent implements
//! over the store and its HA loop, with typed requests, outcomes and errors that map to
//! Patroni's status codes and messages (patroni.md §4.2, §4.3).

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use axum::http::StatusCode;
use serde::Serialize;

use crate::timestamp::Timestamp;

/// The cluster as the agent reads it, and the operations that change it. Every method is
/// answered by the agent; the REST API only validates requests and renders the outcome.
pub trait ClusterControl: Clone + Send + Sync + 'static {
    /// `GET /cluster`: every member, read fresh from the store.
    fn cluster(&self) -> impl Future<Output = Result<ClusterInfo, ControlError>> + Send;
    /// `GET /history`: the `history` key, `[[timeline, lsn, reason, timestamp, new_leader], ...]`.
    fn history(&self) -> impl Future<Output = Result<serde_json::Value, ControlError>> + Send;
    /// `GET /config`: the `config` key's JSON.
    fn config(&self) -> impl Future<Output = Result<serde_json::Value, ControlError>> + Send;
    /// `PATCH /config`: merges `patch` into the stored config ([`merge_patch`]) with a
    /// compare-and-swap on the key's mod_revision; answers the new config.
    fn patch_config(
        &self,
        patch: serde_json::Value,
    ) -> impl Future<Output = Result<serde_json::Value, ControlError>> + Send;
    /// `PUT /config`: replaces the stored config; answers it.
    fn replace_config(
        &self,
        config: serde_json::Value,
    ) -> impl Future<Output = Result<serde_json::Value, ControlError>> + Send;
    /// `POST /switchover`, `POST /failover`: writes the `failover` key and, unless scheduled,
    /// waits (bounded) for the leader key to move.
    fn switchover(
        &self,
        request: SwitchoverRequest,
    ) -> impl Future<Output = Result<SwitchoverOutcome, ControlError>> + Send;
    /// `DELETE /switchover`: removes a scheduled switchover.
    fn cancel_switchover(&self) -> impl Future<Output = Result<(), ControlError>> + Send;
    /// `POST /restart`: restarts the local PostgreSQL (now, or at `schedule`) when the
    /// request's conditions hold.
    fn restart(
        &self,
        request: RestartRequest,
    ) -> impl Future<Output = Result<RestartOutcome, ControlError>> + Send;
    /// `DELETE /restart`: removes a scheduled restart.
    fn cancel_restart(&self) -> impl Future<Output = Result<(), ControlError>> + Send;
    /// `POST /reload`: makes PostgreSQL re-read its configuration and the agent run a cycle.
    fn reload(&self) -> impl Future<Output = Result<(), ControlError>> + Send;
    /// `POST /reinitialize`: wipes the local data directory and clones it from the leader
    /// (`force`: even while another long action runs, which is cancelled).
    fn reinitialize(&self, force: bool) -> impl Future<Output = Result<(), ControlError>> + Send;
}

/// Why a control request was refused, with the message the client receives. Each variant is
/// one HTTP status code; the REST API renders the message as the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// 400: the request itself is wrong (a missing candidate, a schedule while paused, ...).
    #[error("{0}")]
    BadRequest(String),
    /// 404: nothing to delete (no scheduled restart or switchover).
    #[error("{0}")]
    NotFound(String),
    /// 409: a conflicting change won (config compare-and-swap, a restart already scheduled).
    #[error("{0}")]
    Conflict(String),
    /// 412: the cluster is not in a state that allows it (leader name mismatch, no healthy
    /// candidate, candidate not a synchronous standby).
    #[error("{0}")]
    PreconditionFailed(String),
    /// 422: a schedule in the past.
    #[error("{0}")]
    Unprocessable(String),
    /// 500: refused by the cluster's mode (a scheduled restart while paused).
    #[error("{0}")]
    Internal(String),
    /// 502: the store did not answer, or the key is missing.
    #[error("{0}")]
    Store(String),
    /// 503: tried and failed, or not possible on this member now.
    #[error("{0}")]
    Unavailable(String),
}

impl ControlError {
    pub fn status_code(&self) -> StatusCode {
        match self {
            ControlError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ControlError::NotFound(_) => StatusCode::NOT_FOUND,
            ControlError::Conflict(_) => StatusCode::CONFLICT,
            ControlError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            ControlError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ControlError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ControlError::Store(_) => StatusCode::BAD_GATEWAY,
            ControlError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// Switchover (a leader is named: only that leader steps down) or failover (only a
/// candidate is named; allowed without a healthy leader, never scheduled).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwitchoverKind {
    Switchover,
    Failover,
}

impl SwitchoverKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SwitchoverKind::Switchover => "Switchover",
            SwitchoverKind::Failover => "Failover",
        }
    }
}

/// A validated `POST /switchover` or `POST /failover` body.
#[derive(Debug, Clone, PartialEq)]
pub struct SwitchoverRequest {
    pub kind: SwitchoverKind,
    /// The member that must hold the leader key now (required for a switchover).
    pub leader: Option<String>,
    /// The member that should take over (required for a failover).
    pub candidate: Option<String>,
    /// When the leader steps down (switchover only; with a time zone, in the future).
    pub scheduled_at: Option<Timestamp>,
}

/// What a switchover request achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwitchoverOutcome {
    /// 202 `Switchover scheduled`.
    Scheduled,
    /// 200 `Successfully switched over to "new_leader"`.
    Done { new_leader: String },
    /// 200 `Switched over to "new_leader" instead of "candidate"` (Patroni's words when
    /// another member took over than the one asked for).
    Instead {
        new_leader: String,
        candidate: String,
    },
}

/// A validated `POST /restart` body: restart only if every given condition holds.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RestartRequest {
    /// Only when a parameter change waits for a restart.
    pub restart_pending: bool,
    /// Only when this member has this role (`primary` or `replica`).
    pub role: Option<String>,
    /// Only when the running server's version is older than this (`PG_VERSION_NUM` form).
    pub postgres_version: Option<u32>,
    /// How long PostgreSQL may take to start again.
    pub timeout: Option<Duration>,
    /// When to restart (in the future, with a time zone).
    pub schedule: Option<Timestamp>,
}

/// What a restart request achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestartOutcome {
    /// 200 `restarted successfully`.
    Restarted,
    /// 202 `restart scheduled`.
    Scheduled,
}

/// `GET /cluster`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterInfo {
    pub members: Vec<ClusterMember>,
    pub scope: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub pause: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduled_switchover: Option<ScheduledSwitchover>,
}

/// One member of `GET /cluster`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterMember {
    pub name: String,
    /// `leader`, `standby_leader`, `sync_standby` (priority mode), `quorum_standby` (quorum
    /// mode) or `replica`.
    pub role: String,
    pub state: String,
    pub api_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeline: Option<u32>,
    /// Bytes behind the leader's position (replicas only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag: Option<u64>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, serde_json::Value>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub pending_restart: bool,
}

/// `scheduled_switchover` of `GET /cluster`: `{at, from, to}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScheduledSwitchover {
    pub at: String,
    pub from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

/// Merges `patch` into `target` as `PATCH /config` does: objects merge recursively, `null`
/// deletes the key, anything else replaces the value.
pub fn merge_patch(target: &mut serde_json::Value, patch: &serde_json::Value) {
    let serde_json::Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = serde_json::Value::Object(serde_json::Map::new());
    }
    if let serde_json::Value::Object(target) = target {
        for (key, value) in patch {
            if value.is_null() {
                target.remove(key);
            } else {
                merge_patch(
                    target.entry(key.clone()).or_insert(serde_json::Value::Null),
                    value,
                );
            }
        }
    }
}
