//! Plain HTTP endpoints on the client port: `GET /version` and `GET /health` (etcd semantics).

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use etcd_proto::errors;
use etcd_proto::etcdserverpb::{AlarmType, RangeRequest};
use serde_json::{Value, json};

use crate::backend::Backend;
use crate::config::{CLUSTER_VERSION, SERVER_VERSION};
use crate::error::ServiceError;
use crate::service::Service;

/// The HTTP/1.1 routes served next to gRPC on the same listener.
pub fn router<B: Backend>(service: Service<B>) -> Router {
    Router::new()
        .route("/version", get(version))
        .route("/health", get(health::<B>))
        .with_state(service)
}

async fn version() -> Json<Value> {
    Json(json!({ "etcdserver": SERVER_VERSION, "etcdcluster": CLUSTER_VERSION }))
}

/// Options of `/health`: `serializable=true` skips the leader check and reads locally;
/// each `exclude=<ALARM>` ignores that alarm.
#[derive(Debug, Default, PartialEq, Eq)]
struct HealthOptions {
    serializable: bool,
    excluded_alarms: Vec<String>,
}

fn parse_health_query(query: Option<&str>) -> HealthOptions {
    let mut options = HealthOptions::default();
    for pair in query.unwrap_or_default().split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "serializable" => options.serializable = value.eq_ignore_ascii_case("true"),
            "exclude" if !value.is_empty() => options.excluded_alarms.push(value.to_owned()),
            _ => {}
        }
    }
    options
}

fn unhealthy(reason: String) -> (StatusCode, Json<Value>) {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "health": "false", "reason": reason })),
    )
}

/// Healthy when no (non-excluded) alarm is active, a leader is known (unless serializable),
/// and a one-key range read succeeds.
async fn health<B: Backend>(
    State(service): State<Service<B>>,
    RawQuery(query): RawQuery,
) -> (StatusCode, Json<Value>) {
    let options = parse_health_query(query.as_deref());
    let alarms = service.node().read(|store| store.alarms());
    for alarm in alarms {
        let name = AlarmType::try_from(alarm.alarm)
            .map(|kind| kind.as_str_name())
            .unwrap_or("UNKNOWN");
        if !options
            .excluded_alarms
            .iter()
            .any(|excluded| excluded == name)
        {
            return unhealthy(format!("ALARM {name}"));
        }
    }
    if !options.serializable && service.node().status().leader.is_none() {
        return unhealthy("RAFT NO LEADER".to_owned());
    }
    let probe = RangeRequest {
        key: bytes::Bytes::from_static(b"health"),
        keys_only: true,
        limit: 1,
        serializable: options.serializable,
        ..RangeRequest::default()
    };
    // With auth enabled the anonymous probe is refused, which still proves the member
    // serves requests: etcd counts those two refusals as healthy too.
    match service.range(probe).await {
        Err(ServiceError::Etcd(refused))
            if refused == errors::USER_EMPTY || refused == errors::PERMISSION_DENIED => {}
        Err(error) => return unhealthy(format!("RANGE ERROR:{error}")),
        Ok(_) => {}
    }
    (
        StatusCode::OK,
        Json(json!({ "health": "true", "reason": "" })),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_query_options() {
        assert_eq!(parse_health_query(None), HealthOptions::default());
        let options = parse_health_query(Some("serializable=true&exclude=NOSPACE"));
        assert!(options.serializable);
        assert_eq!(options.excluded_alarms, vec!["NOSPACE".to_owned()]);
    }
}
