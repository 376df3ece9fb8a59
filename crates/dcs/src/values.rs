//! The JSON values Patroni stores, with Patroni's field names so tools that read a Patroni
//! cluster's keys see a pgwarden cluster the same way.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `members/<name>`: what each member publishes about itself every cycle.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct MemberData {
    /// `postgres://host:port/postgres`.
    pub conn_url: String,
    /// `http://host:port/patroni`.
    pub api_url: String,
    /// Patroni's state wording (`running`, `starting`, `creating replica`, ...).
    pub state: String,
    /// `primary` or `replica` (or `uninitialized`, `demoted`, ...).
    pub role: String,
    /// The agent version.
    pub version: String,
    /// Primary: current write position; replica: max(received, replayed), as an integer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xlog_location: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receive_lsn: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_lsn: Option<u64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pending_restart: bool,
}

/// `status`: the leader's last WAL position and its slots.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct StatusData {
    pub optime: u64,
    #[serde(default)]
    pub slots: BTreeMap<String, u64>,
    #[serde(default)]
    pub retain_slots: Vec<String>,
}

/// One `history` entry: `[timeline, lsn, reason, timestamp, new_leader]` (the timeline that
/// ended, the switch LSN, why, when, and who took over).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry(pub u32, pub u64, pub String, pub String, pub String);

/// `synchronous_mode` as Patroni accepts it: a boolean, `on`/`off`/`true`/`false`, or
/// `quorum`; `None` for anything else.
pub fn synchronous_mode_from_json(value: &serde_json::Value) -> Option<ha::SynchronousMode> {
    match value {
        serde_json::Value::Bool(true) => Some(ha::SynchronousMode::On),
        serde_json::Value::Bool(false) => Some(ha::SynchronousMode::Off),
        serde_json::Value::String(text) => match text.to_ascii_lowercase().as_str() {
            "on" | "true" | "yes" => Some(ha::SynchronousMode::On),
            "off" | "false" | "no" => Some(ha::SynchronousMode::Off),
            "quorum" => Some(ha::SynchronousMode::Quorum),
            _ => None,
        },
        _ => None,
    }
}

/// Reads the dynamic configuration (`/config`) into `ha`'s typed form, with Patroni's defaults
/// for missing keys, plus `postgresql.parameters` as strings. Malformed JSON gives defaults.
pub fn dynamic_config_from_json(
    value: &[u8],
    defaults: &ha::DynamicConfig,
) -> (ha::DynamicConfig, BTreeMap<String, String>) {
    let mut config = defaults.clone();
    let mut parameters = BTreeMap::new();
    let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(value)
    else {
        return (config, parameters);
    };
    let seconds = |name: &str| {
        map.get(name)
            .and_then(|value| value.as_f64().or_else(|| value.as_str()?.parse().ok()))
            .filter(|secs| secs.is_finite() && *secs >= 0.0)
            .map(Duration::from_secs_f64)
    };
    let integer = |name: &str| {
        map.get(name)
            .and_then(|value| value.as_u64().or_else(|| value.as_str()?.parse().ok()))
    };
    if let Some(ttl) = seconds("ttl") {
        config.ttl = ttl;
    }
    if let Some(loop_wait) = seconds("loop_wait") {
        config.loop_wait = loop_wait;
    }
    if let Some(retry_timeout) = seconds("retry_timeout") {
        config.retry_timeout = retry_timeout;
    }
    if let Some(timeout) = seconds("primary_start_timeout") {
        config.primary_start_timeout = timeout;
    }
    if let Some(backoff) = seconds("primary_race_backoff") {
        config.primary_race_backoff = backoff;
    }
    if let Some(lag) = integer("maximum_lag_on_failover") {
        config.maximum_lag_on_failover = lag;
    }
    if let Some(mode) = map
        .get("synchronous_mode")
        .and_then(synchronous_mode_from_json)
    {
        config.synchronous_mode = mode;
    }
    if let Some(strict) = map
        .get("synchronous_mode_strict")
        .and_then(serde_json::Value::as_bool)
    {
        config.synchronous_mode_strict = strict;
    }
    if let Some(count) = integer("synchronous_node_count").filter(|count| *count >= 1) {
        config.synchronous_node_count = u32::try_from(count).unwrap_or(u32::MAX);
    }
    if let Some(lag) = map
        .get("maximum_lag_on_syncnode")
        .and_then(serde_json::Value::as_i64)
    {
        config.maximum_lag_on_syncnode = u64::try_from(lag).ok().filter(|lag| *lag > 0);
    }
    if let Some(pause) = map.get("pause").and_then(serde_json::Value::as_bool) {
        config.pause = pause;
    }
    if let Some(check) = map
        .get("check_timeline")
        .and_then(serde_json::Value::as_bool)
    {
        config.check_timeline = check;
    }
    if let Some(serde_json::Value::Object(postgresql)) = map.get("postgresql")
        && let Some(serde_json::Value::Object(values)) = postgresql.get("parameters")
    {
        for (name, value) in values {
            let text = match value {
                serde_json::Value::String(text) => text.clone(),
                serde_json::Value::Bool(true) => "on".to_owned(),
                serde_json::Value::Bool(false) => "off".to_owned(),
                other => other.to_string(),
            };
            parameters.insert(name.clone(), text);
        }
    }
    (config, parameters)
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a test fails loudly")]
mod tests {
    use super::*;

    #[test]
    fn dynamic_config_reads_patroni_keys() {
        let json = br#"{"ttl": 6, "loop_wait": 1, "retry_timeout": 2.5,
            "maximum_lag_on_failover": 1024,
            "postgresql": {"parameters": {"work_mem": "8MB", "max_connections": 50, "jit": false}}}"#;
        let (config, parameters) = dynamic_config_from_json(json, &ha::DynamicConfig::default());
        assert_eq!(config.ttl, Duration::from_secs(6));
        assert_eq!(config.retry_timeout, Duration::from_millis(2500));
        assert_eq!(config.maximum_lag_on_failover, 1024);
        assert_eq!(parameters["work_mem"], "8MB");
        assert_eq!(parameters["max_connections"], "50");
        assert_eq!(parameters["jit"], "off");
        assert_eq!(config.synchronous_mode, ha::SynchronousMode::Off);
    }

    #[test]
    fn dynamic_config_reads_synchronous_mode() {
        let json = br#"{"synchronous_mode": true, "synchronous_mode_strict": true,
            "synchronous_node_count": 2, "maximum_lag_on_syncnode": -1}"#;
        let (config, _) = dynamic_config_from_json(json, &ha::DynamicConfig::default());
        assert_eq!(config.synchronous_mode, ha::SynchronousMode::On);
        assert!(config.synchronous_mode_strict);
        assert_eq!(config.synchronous_node_count, 2);
        assert_eq!(config.maximum_lag_on_syncnode, None);
        let quorum = serde_json::json!("quorum");
        assert_eq!(
            synchronous_mode_from_json(&quorum),
            Some(ha::SynchronousMode::Quorum)
        );
        assert_eq!(
            synchronous_mode_from_json(&serde_json::json!("sometimes")),
            None
        );
    }

    #[test]
    fn member_json_has_patroni_fields() {
        let member = MemberData {
            conn_url: "postgres://127.0.0.1:5432/postgres".into(),
            api_url: "http://127.0.0.1:8008/patroni".into(),
            state: "running".into(),
            role: "primary".into(),
            version: "0.1.0".into(),
            xlog_location: Some(67_108_960),
            timeline: Some(1),
            ..MemberData::default()
        };
        let json: serde_json::Value = serde_json::to_value(&member).unwrap();
        assert_eq!(json["xlog_location"], 67_108_960);
        assert_eq!(json["role"], "primary");
        assert!(json.get("replication_state").is_none());
        let history = HistoryEntry(
            1,
            100,
            "no recovery target specified".into(),
            "t".into(),
            "n2".into(),
        );
        assert_eq!(
            serde_json::to_string(&history).unwrap(),
            r#"[1,100,"no recovery target specified","t","n2"]"#
        );
    }
}
