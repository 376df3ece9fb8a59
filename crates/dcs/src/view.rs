//! One prefix read turned into `ha`'s [`ha::ClusterView`], keeping the raw member data the
//! agent needs to reach the members (conn_url, api_url).

use std::collections::BTreeMap;

use ha::{
    ClusterView, DynamicConfig, FailoverKey, LeaderKey, LeaseState, Lsn, Member, MemberName,
    MemberRole, MemberState, ReplicationState, SyncKey, SystemId, Tags, Timeline,
};

use crate::backend::KeyValue;
use crate::keys::Keys;
use crate::values::{HistoryEntry, MemberData, StatusData, dynamic_config_from_json};

/// A parsed snapshot of the scope.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub revision: i64,
    pub view: ClusterView,
    /// Raw member data by name (for conn_url / api_url).
    pub members: BTreeMap<String, MemberData>,
    /// The lease each member key is bound to (the member's own lease; 0 = none).
    pub member_leases: BTreeMap<String, i64>,
    /// `postgresql.parameters` of `/config`.
    pub parameters: BTreeMap<String, String>,
    /// `/config` exists (the first leader writes it otherwise).
    pub has_config: bool,
    pub history: Vec<HistoryEntry>,
}

/// Parses every key under the scope's prefix. Values that do not parse are treated as
/// absent (Patroni does the same), so a manual edit cannot stop the agent.
pub fn parse_snapshot(
    keys: &Keys,
    revision: i64,
    kvs: &[KeyValue],
    defaults: &DynamicConfig,
) -> Snapshot {
    let mut snapshot = Snapshot {
        revision,
        view: ClusterView {
            config: defaults.clone(),
            ..ClusterView::default()
        },
        members: BTreeMap::new(),
        member_leases: BTreeMap::new(),
        parameters: BTreeMap::new(),
        has_config: false,
        history: Vec::new(),
    };
    let members_prefix = keys.members_prefix();
    for kv in kvs {
        let text = String::from_utf8_lossy(&kv.value);
        if let Some(name) = kv.key.strip_prefix(&members_prefix) {
            if let Ok(data) = serde_json::from_slice::<MemberData>(&kv.value) {
                snapshot.view.members.push(member_from_data(name, &data));
                snapshot.members.insert(name.to_owned(), data);
                snapshot.member_leases.insert(name.to_owned(), kv.lease);
            }
        } else if kv.key == keys.leader() {
            snapshot.view.leader = Some(LeaderKey {
                holder: MemberName::new(text.trim()),
                mod_revision: kv.mod_revision,
                lease: if kv.lease == 0 {
                    LeaseState::Detached
                } else {
                    LeaseState::Attached { lease_id: kv.lease }
                },
            });
        } else if kv.key == keys.initialize() {
            let text = text.trim();
            snapshot.view.initialize = Some(if text.is_empty() {
                None
            } else {
                text.parse().ok().map(SystemId)
            });
        } else if kv.key == keys.config() {
            let (config, parameters) = dynamic_config_from_json(&kv.value, defaults);
            snapshot.view.config = config;
            snapshot.parameters = parameters;
            snapshot.has_config = true;
        } else if kv.key == keys.status() {
            if let Ok(status) = serde_json::from_slice::<StatusData>(&kv.value) {
                snapshot.view.last_leader_lsn = Some(Lsn(status.optime));
            }
        } else if kv.key == keys.history() {
            if let Ok(history) = serde_json::from_slice::<Vec<HistoryEntry>>(&kv.value) {
                snapshot.view.history_timeline = history.last().map(|entry| Timeline(entry.0 + 1));
                snapshot.history = history;
            }
        } else if kv.key == keys.failover() {
            snapshot.view.failover = parse_failover(&kv.value);
        } else if kv.key == keys.sync() {
            snapshot.view.sync = parse_sync(&kv.value);
        }
    }
    snapshot
}

fn member_from_data(name: &str, data: &MemberData) -> Member {
    Member {
        name: MemberName::new(name),
        conn_url: Some(data.conn_url.clone()),
        api_url: Some(data.api_url.clone()),
        state: parse_state(&data.state),
        role: parse_role(&data.role),
        wal_position: data.xlog_location.map(Lsn),
        timeline: data.timeline.map(Timeline),
        tags: tags_from_map(&data.tags),
        replication_state: match data.replication_state.as_deref() {
            Some("streaming") => Some(ReplicationState::Streaming),
            Some("in archive recovery") => Some(ReplicationState::InArchiveRecovery),
            _ => None,
        },
    }
}

/// Member tags from their JSON form (Patroni accepts booleans and integers loosely).
pub fn tags_from_map(tags: &BTreeMap<String, serde_json::Value>) -> Tags {
    let flag = |name: &str| {
        tags.get(name).is_some_and(|value| match value {
            serde_json::Value::Bool(flag) => *flag,
            serde_json::Value::String(text) => matches!(text.as_str(), "true" | "on" | "yes"),
            _ => false,
        })
    };
    let integer = |name: &str| {
        tags.get(name)
            .and_then(|value| value.as_i64().or_else(|| value.as_str()?.parse().ok()))
    };
    Tags {
        nofailover: flag("nofailover"),
        failover_priority: integer("failover_priority"),
        nosync: flag("nosync"),
        sync_priority: integer("sync_priority"),
        nostream: flag("nostream"),
        replicatefrom: tags
            .get("replicatefrom")
            .and_then(serde_json::Value::as_str)
            .map(MemberName::new),
        clonefrom: flag("clonefrom"),
    }
}

fn parse_state(text: &str) -> MemberState {
    use MemberState::*;
    [
        InitializingNewCluster,
        InitdbFailed,
        RunningCustomBootstrapScript,
        CustomBootstrapFailed,
        CreatingReplica,
        Running,
        Starting,
        StartingAfterCustomBootstrap,
        StartFailed,
        Restarting,
        RestartFailed,
        Stopping,
        Stopped,
        StopFailed,
        Crashed,
    ]
    .into_iter()
    .find(|state| state.as_str() == text)
    .unwrap_or(Stopped)
}

fn parse_role(text: &str) -> MemberRole {
    match text {
        "primary" | "master" => MemberRole::Primary,
        "replica" => MemberRole::Replica,
        "standby_leader" => MemberRole::StandbyLeader,
        "demoted" => MemberRole::Demoted,
        "promoted" => MemberRole::Promoted,
        _ => MemberRole::Uninitialized,
    }
}

fn parse_failover(value: &[u8]) -> Option<FailoverKey> {
    let json: serde_json::Value = serde_json::from_slice(value).ok()?;
    let name = |field: &str| json.get(field)?.as_str().map(MemberName::new);
    Some(FailoverKey {
        leader: name("leader"),
        candidate: name("member").or_else(|| name("candidate")),
        scheduled_at: None,
    })
}

fn parse_sync(value: &[u8]) -> Option<SyncKey> {
    let json: serde_json::Value = serde_json::from_slice(value).ok()?;
    let standbys = json
        .get("sync_standby")
        .and_then(serde_json::Value::as_str)
        .map(|list| {
            list.split(',')
                .map(str::trim)
                .filter(|name| !name.is_empty())
                .map(MemberName::new)
                .collect()
        })
        .unwrap_or_default();
    Some(SyncKey {
        leader: json
            .get("leader")
            .and_then(serde_json::Value::as_str)
            .map(MemberName::new),
        sync_standbys: standbys,
        quorum: json
            .get("quorum")
            .and_then(serde_json::Value::as_u64)
            .and_then(|quorum| u32::try_from(quorum).ok())
            .unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn kv(key: &str, value: &str, lease: i64) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: Bytes::copy_from_slice(value.as_bytes()),
            create_revision: 1,
            mod_revision: 7,
            lease,
        }
    }

    #[test]
    fn parses_a_patroni_cluster() {
        let keys = Keys::new("/service", "demo");
        let kvs = [
            kv("/service/demo/leader", "n1", 42),
            kv("/service/demo/initialize", "7301234567890123456", 0),
            kv("/service/demo/config", r#"{"ttl": 5, "loop_wait": 1}"#, 0),
            kv(
                "/service/demo/status",
                r#"{"optime": 1000, "slots": {}}"#,
                0,
            ),
            kv(
                "/service/demo/history",
                r#"[[1, 500, "no recovery target specified", "t", "n1"]]"#,
                0,
            ),
            kv(
                "/service/demo/failover",
                r#"{"leader": "n1", "member": "n2"}"#,
                0,
            ),
            kv(
                "/service/demo/members/n1",
                r#"{"conn_url": "postgres://127.0.0.1:5432/postgres", "api_url": "http://127.0.0.1:8008/patroni",
                   "state": "running", "role": "primary", "version": "4.0.0", "xlog_location": 1000, "timeline": 2,
                   "tags": {"nofailover": true}}"#,
                42,
            ),
        ];
        let snapshot = parse_snapshot(&keys, 9, &kvs, &DynamicConfig::default());
        let view = &snapshot.view;
        assert_eq!(view.leader_name(), Some(&MemberName::new("n1")));
        assert_eq!(
            view.leader.as_ref().map(|leader| leader.lease),
            Some(LeaseState::Attached { lease_id: 42 })
        );
        assert_eq!(
            view.initialize,
            Some(Some(SystemId(7_301_234_567_890_123_456)))
        );
        assert_eq!(view.config.ttl, std::time::Duration::from_secs(5));
        assert_eq!(view.last_leader_lsn, Some(Lsn(1000)));
        assert_eq!(view.history_timeline, Some(Timeline(2)));
        assert_eq!(
            view.failover
                .as_ref()
                .and_then(|failover| failover.candidate.clone()),
            Some(MemberName::new("n2"))
        );
        let member = &view.members[0];
        assert_eq!(member.state, MemberState::Running);
        assert_eq!(member.role, MemberRole::Primary);
        assert!(member.tags.nofailover);
        assert_eq!(
            snapshot.members["n1"].conn_url,
            "postgres://127.0.0.1:5432/postgres"
        );
    }

    #[test]
    fn empty_initialize_means_bootstrap_in_progress() {
        let keys = Keys::new("/service", "demo");
        let snapshot = parse_snapshot(
            &keys,
            1,
            &[kv("/service/demo/initialize", "", 0)],
            &DynamicConfig::default(),
        );
        assert_eq!(snapshot.view.initialize, Some(None));
    }
}
