//! The status the agent publishes after every cycle, serialised as `GET /patroni` answers it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;

/// What the agent publishes after every cycle; `/patroni` serialises it as Patroni does.
/// Fields marked `serde(skip)` drive the health checks and `/metrics` only.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PatroniStatus {
    /// PostgreSQL state in Patroni's wording (`running`, `starting`, `stopped`, ...).
    pub state: String,
    /// `primary`, `replica`, `standby_leader` or `uninitialized`.
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
    /// The cluster is in maintenance mode (`pause: true` in `/config`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub pause: bool,
    /// This replica is listed in the `/sync` key as a synchronous standby in priority mode
    /// (`synchronous_mode: on`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub sync_standby: bool,
    /// This replica is listed in the `/sync` key as a quorum standby (a voter) in quorum mode
    /// (`synchronous_mode: quorum`); never set together with `sync_standby`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub quorum_standby: bool,
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
    /// The leader's last published WAL position (`/status.optime`), for `/replica?lag=`.
    #[serde(skip)]
    pub cluster_optime: Option<u64>,
    /// `maximum_lag_on_failover` of `/config`: `/readiness`'s default lag bound.
    #[serde(skip)]
    pub maximum_lag_on_failover: u64,
    /// pgwarden's own figures for `/metrics`.
    #[serde(skip)]
    pub agent: AgentFigures,
}

/// pgwarden's own figures, exported as `pgwarden_*` metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentFigures {
    /// Time left on this member's store lease at publication (`None`: no lease).
    pub lease_time_left: Option<Duration>,
    /// How long the last HA cycle took, from its lease keepalive to publication.
    pub cycle_duration: Option<Duration>,
    /// Timeline switches recorded in the `history` key (each one a failover or switchover).
    pub timeline_switches: u64,
    /// This member's embedded store is the Raft leader (`None`: not known, e.g. external etcd).
    pub store_leader: Option<bool>,
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
            pause: false,
            sync_standby: false,
            quorum_standby: false,
            tags: BTreeMap::new(),
            watchdog_failed: false,
            pending_restart: false,
            message: String::new(),
            patroni: identity,
            holds_leader_key: false,
            last_cycle: None,
            ttl,
            cluster_optime: None,
            maximum_lag_on_failover: 1_048_576,
            agent: AgentFigures::default(),
        }
    }

    pub(crate) fn running(&self) -> bool {
        self.state == "running"
    }

    /// Holds the leader key with a running primary (not a standby cluster's leader).
    pub(crate) fn is_primary_leader(&self) -> bool {
        self.holds_leader_key && self.role == "primary" && self.running()
    }

    /// Holds the leader key of a standby cluster.
    pub(crate) fn is_standby_leader(&self) -> bool {
        self.holds_leader_key && self.role == "standby_leader" && self.running()
    }

    pub(crate) fn is_running_replica(&self) -> bool {
        self.role == "replica" && self.running()
    }

    /// The replayed position of a replica (the received one when nothing was replayed yet).
    pub(crate) fn replayed_location(&self) -> Option<u64> {
        let xlog = self.xlog.as_ref()?;
        xlog.replayed_location.or(xlog.received_location)
    }

    /// A tag's value as text (`true`, `on`, numbers as written), for `?tag_key=value`.
    pub(crate) fn tag_text(&self, name: &str) -> Option<String> {
        Some(match self.tags.get(name)? {
            serde_json::Value::String(text) => text.clone(),
            other => other.to_string(),
        })
    }

    /// A boolean tag such as `noloadbalance` or `nofailover` is set.
    pub(crate) fn tag_flag(&self, name: &str) -> bool {
        self.tags.get(name).is_some_and(|value| match value {
            serde_json::Value::Bool(flag) => *flag,
            serde_json::Value::String(text) => {
                matches!(
                    text.to_ascii_lowercase().as_str(),
                    "true" | "on" | "yes" | "1"
                )
            }
            serde_json::Value::Number(number) => number.as_i64().is_some_and(|n| n != 0),
            _ => false,
        })
    }
}
