//! The health-check endpoints (patroni.md §4.1): each answers 200 or 503 from the published
//! status alone; GET adds the status JSON, HEAD and OPTIONS (HAProxy's `httpchk`) the code only.

use std::collections::BTreeMap;
use std::time::Instant;

use axum::http::StatusCode;

use crate::status::PatroniStatus;

/// The query parameters a health check understands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthQuery {
    /// `?lag=`: the most a replica may be behind the leader's position, in bytes.
    pub lag: Option<u64>,
    /// `?replication_state=streaming`: the replica must be in this replication state.
    pub replication_state: Option<String>,
    /// `?tag_<name>=<value>`: the member's tag `name` must have this value.
    pub tags: BTreeMap<String, String>,
    /// `/readiness?mode=write`: compare the received rather than the replayed position.
    pub mode_write: bool,
}

impl HealthQuery {
    /// Reads the query parameters; an unreadable `lag` or `mode` is refused with the reason.
    pub fn parse(pairs: &BTreeMap<String, String>) -> Result<Self, String> {
        let mut query = HealthQuery::default();
        for (name, value) in pairs {
            if name == "lag" {
                query.lag = Some(parse_size(value).ok_or_else(|| {
                    format!(
                        "lag must be a size in bytes (e.g. 1048576, 16kB, 64MB, 1GB), not {value:?}"
                    )
                })?);
            } else if name == "replication_state" {
                query.replication_state = Some(value.clone());
            } else if name == "mode" {
                query.mode_write = match value.as_str() {
                    "apply" => false,
                    "write" => true,
                    _ => return Err(format!("mode must be apply or write, not {value:?}")),
                };
            } else if let Some(tag) = name.strip_prefix("tag_") {
                query.tags.insert(tag.to_owned(), value.clone());
            }
        }
        Ok(query)
    }
}

/// A size as Patroni accepts it in `?lag=`: bytes, or a number with `B`, `kB`, `MB`, `GB`
/// or `TB` (PostgreSQL's units, powers of 1024).
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let multiplier: u64 = match unit.trim() {
        "" | "B" => 1,
        "kB" | "KB" => 1 << 10,
        "MB" => 1 << 20,
        "GB" => 1 << 30,
        "TB" => 1 << 40,
        _ => return None,
    };
    number.checked_mul(multiplier)
}

/// The paths answered by [`health_code`] (trailing `/` ignored, plus anything containing
/// `master`, which means the primary check).
pub fn is_health_path(path: &str) -> bool {
    let path = path.trim_end_matches('/');
    matches!(
        path,
        "" | "/patroni"
            | "/primary"
            | "/leader"
            | "/read-write"
            | "/standby-leader"
            | "/standby_leader"
            | "/replica"
            | "/read-only"
            | "/synchronous"
            | "/sync"
            | "/read-only-sync"
            | "/read-only-synchronous"
            | "/quorum"
            | "/read-only-quorum"
            | "/asynchronous"
            | "/async"
            | "/health"
            | "/liveness"
            | "/readiness"
    ) || path.contains("master")
}

/// The status code of a health-check `path` (patroni.md §4.1); `None` for an unknown path.
pub fn health_code(
    path: &str,
    query: &HealthQuery,
    status: &PatroniStatus,
    now: Instant,
) -> Option<StatusCode> {
    if !is_health_path(path) {
        return None;
    }
    let path = path.trim_end_matches('/');
    let replica = || replica_check(query, status);
    let ok = match path {
        "/patroni" => true,
        "" | "/primary" | "/read-write" => status.is_primary_leader(),
        "/standby-leader" | "/standby_leader" => status.is_standby_leader(),
        "/leader" => status.holds_leader_key && status.running(),
        "/replica" => replica(),
        "/read-only" => status.is_primary_leader() || status.is_standby_leader() || replica(),
        // `/sync` lists only priority-mode synchronous standbys, `/quorum` only quorum-mode
        // voters; the `read-only-` variants add the leader (primary or standby leader).
        "/synchronous" | "/sync" => replica() && status.sync_standby,
        "/read-only-sync" | "/read-only-synchronous" => {
            leader_running(status) || (replica() && status.sync_standby)
        }
        "/quorum" => replica() && status.quorum_standby,
        "/read-only-quorum" => leader_running(status) || (replica() && status.quorum_standby),
        "/asynchronous" | "/async" => replica() && !status.sync_standby && !status.quorum_standby,
        "/health" => status.running(),
        "/liveness" => {
            let limit = if status.holds_leader_key {
                status.ttl
            } else {
                status.ttl * 2
            };
            status.pause
                || status
                    .last_cycle
                    .is_some_and(|last| now.saturating_duration_since(last) <= limit)
        }
        "/readiness" => readiness(query, status),
        // Any other health path contains `master`: the primary check.
        _ => status.is_primary_leader(),
    };
    Some(if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    })
}

/// The member holding the leader key runs PostgreSQL as the primary or the standby leader.
fn leader_running(status: &PatroniStatus) -> bool {
    status.is_primary_leader() || status.is_standby_leader()
}

/// `/replica`: a running replica without `noloadbalance`, within `?lag=` of the leader's
/// position, in `?replication_state=`, with every `?tag_<name>=<value>`.
fn replica_check(query: &HealthQuery, status: &PatroniStatus) -> bool {
    if !status.is_running_replica() || status.tag_flag("noloadbalance") {
        return false;
    }
    if let Some(lag) = query.lag
        && lag_of(status, false).is_some_and(|behind| behind > lag)
    {
        return false;
    }
    if let Some(wanted) = &query.replication_state
        && status.replication_state.as_ref() != Some(wanted)
    {
        return false;
    }
    query
        .tags
        .iter()
        .all(|(name, value)| status.tag_text(name).as_ref() == Some(value))
}

/// `/readiness`: the leader; or a streaming replica within `?lag=` (default
/// `maximum_lag_on_failover`) by its replayed (`mode=apply`) or received (`mode=write`) position.
fn readiness(query: &HealthQuery, status: &PatroniStatus) -> bool {
    if status.is_primary_leader() || status.is_standby_leader() {
        return true;
    }
    if !status.is_running_replica() || status.replication_state.as_deref() != Some("streaming") {
        return false;
    }
    let limit = query.lag.unwrap_or(status.maximum_lag_on_failover);
    lag_of(status, query.mode_write).is_none_or(|behind| behind <= limit)
}

/// How far a replica is behind the leader's last published position, in bytes; `None` when
/// either position is unknown.
fn lag_of(status: &PatroniStatus, received: bool) -> Option<u64> {
    let leader = status.cluster_optime?;
    let own = if received {
        status.xlog.as_ref()?.received_location?
    } else {
        status.replayed_location()?
    };
    Some(leader.saturating_sub(own))
}
