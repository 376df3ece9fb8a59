//! The cluster as `ctl` sees it: one prefix read of the scope's keys, parsed into members,
//! leader, configuration, history and pending switchover.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use agent::RunConfig;
use bytes::Bytes;
use dcs::{EtcdOptions, EtcdStore, EtcdTls, Expect, HistoryEntry, Keys, KvBackend, MemberData};
use rest::client::RestClient;
use serde_json::Value;

use crate::{Result, failed, usage};

/// Upper bound on one store request from `ctl`.
const STORE_TIMEOUT: Duration = Duration::from_secs(5);

/// The configuration, the store and the scope's keys.
pub struct Context {
    pub config: RunConfig,
    pub store: EtcdStore,
    pub keys: Keys,
    pub endpoints: Vec<String>,
    /// The members' REST client: `https://` members per the `ctl:`/`restapi:` TLS keys.
    pub rest: RestClient,
}

impl Context {
    /// Loads `path` and connects (lazily) to the store's endpoints: `endpoints` when given,
    /// else `etcd3.hosts`, else `raft.etcd_api`. When the embedded store's etcd API serves
    /// TLS (`raft.cert_file`), endpoints are `https://`, the API's certificate is verified
    /// against `raft.trusted_ca_file` and `raft.cert_file` is presented as the client
    /// certificate (for `raft.client_cert_auth`). With an https `etcd3:` store the same
    /// holds for `etcd3.cacert` and `etcd3.cert`/`etcd3.key`, as `pgwarden run` connects.
    pub fn open(path: &Path, endpoints: &[String]) -> Result<Context> {
        let config = RunConfig::load(path)
            .map_err(|error| usage(format!("configuration {}: {error}", path.display())))?;
        let tls = api_tls(&config)
            .map_err(|error| usage(format!("configuration {}: {error}", path.display())))?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let endpoints: Vec<String> = if !endpoints.is_empty() {
            endpoints
                .iter()
                .map(|endpoint| url(endpoint, scheme))
                .collect()
        } else if let Some(etcd3) = &config.etcd3 {
            etcd3.endpoints()
        } else if let Some(api) = config.raft.as_ref().and_then(|raft| raft.etcd_api) {
            let host = if api.ip().is_unspecified() {
                std::net::SocketAddr::from(([127, 0, 0, 1], api.port()))
            } else {
                api
            };
            vec![format!("{scheme}://{host}")]
        } else {
            return Err(usage(format!(
                "configuration {}: neither raft.etcd_api nor etcd3.hosts says where the store is; pass --endpoints",
                path.display()
            )));
        };
        let user = config.etcd3.as_ref().and_then(|etcd3| etcd3.user());
        let store = EtcdStore::new(EtcdOptions {
            endpoints: endpoints.clone(),
            user,
            request_timeout: STORE_TIMEOUT,
            tls,
        })
        .map_err(|error| usage(error.to_string()))?;
        let keys = Keys::new(&config.namespace, &config.scope);
        let rest = config
            .rest_client()
            .map_err(|error| usage(format!("configuration {}: {error}", path.display())))?;
        Ok(Context {
            config,
            store,
            keys,
            endpoints,
            rest,
        })
    }

    /// Refuses a cluster name other than the configured scope.
    pub fn check_cluster(&self, cluster: Option<&str>) -> Result<()> {
        match cluster {
            Some(name) if name != self.config.scope => Err(usage(format!(
                "cluster '{name}' is not the configured scope '{}'",
                self.config.scope
            ))),
            _ => Ok(()),
        }
    }

    /// Reads every key of the scope.
    pub async fn read(&self) -> Result<ClusterState> {
        let (_, kvs) = self
            .store
            .get_prefix(self.keys.prefix())
            .await
            .map_err(|error| {
                failed(format!(
                    "cannot read the cluster from the store at {}: {error}",
                    self.endpoints.join(",")
                ))
            })?;
        let mut state = ClusterState {
            scope: self.config.scope.clone(),
            ..ClusterState::default()
        };
        let members_prefix = self.keys.members_prefix();
        for kv in kvs {
            let text = String::from_utf8_lossy(&kv.value).trim().to_owned();
            if let Some(name) = kv.key.strip_prefix(&members_prefix) {
                if let Ok(data) = serde_json::from_slice::<MemberData>(&kv.value) {
                    state.members.insert(name.to_owned(), data);
                }
            } else if kv.key == self.keys.leader() {
                state.leader = Some(text);
            } else if kv.key == self.keys.initialize() {
                state.system_id = Some(text);
            } else if kv.key == self.keys.config() {
                state.config = serde_json::from_slice(&kv.value).ok();
                state.config_revision = kv.mod_revision;
            } else if kv.key == self.keys.history() {
                state.history = serde_json::from_slice(&kv.value).unwrap_or_default();
            } else if kv.key == self.keys.failover() {
                state.failover = serde_json::from_slice(&kv.value).ok();
            } else if kv.key == self.keys.sync() {
                state.sync = serde_json::from_slice(&kv.value).ok();
            } else if kv.key == self.keys.status() {
                state.optime = serde_json::from_slice::<Value>(&kv.value)
                    .ok()
                    .and_then(|status| status.get("optime").and_then(Value::as_u64));
            }
        }
        Ok(state)
    }

    /// Writes the `config` key if it is still at `revision` (0: if it does not exist).
    pub async fn write_config(&self, config: &Value, revision: i64) -> Result<()> {
        let expect = if revision == 0 {
            Expect::Absent
        } else {
            Expect::ModRevision(revision)
        };
        let value = Bytes::from(serde_json::to_vec(config).map_err(|e| failed(e.to_string()))?);
        let written = self
            .store
            .put_if(&self.keys.config(), expect, value, 0)
            .await
            .map_err(|error| failed(format!("cannot write the configuration: {error}")))?;
        if written {
            Ok(())
        } else {
            Err(failed(
                "the configuration changed in the store meanwhile; nothing was written, run the command again",
            ))
        }
    }
}

/// `host:port` → `http://host:port`; URLs unchanged.
fn url(endpoint: &str, scheme: &str) -> String {
    let endpoint = endpoint.trim();
    if endpoint.contains("://") {
        endpoint.to_owned()
    } else {
        format!("{scheme}://{endpoint}")
    }
}

/// The client TLS for the store: an https `etcd3:` cluster's (`etcd3.cacert`, `cert`, `key`),
/// or the embedded store's etcd API when `raft.cert_file` turns it on; the files were already
/// read and checked by `RunConfig::load`.
fn api_tls(config: &RunConfig) -> std::result::Result<Option<EtcdTls>, String> {
    if let Some(etcd3) = &config.etcd3 {
        return etcd3.tls().map_err(|error| error.to_string());
    }
    let Some(raft) = &config.raft else {
        return Ok(None);
    };
    let Some(files) = raft.load_tls().map_err(|error| error.to_string())?.client else {
        return Ok(None);
    };
    let trusted_ca_pem = files.trusted_ca_pem.ok_or_else(|| {
        "raft.trusted_ca_file: required by pgwarden ctl to verify the etcd API's certificate \
         (raft.cert_file turns TLS on)"
            .to_owned()
    })?;
    Ok(Some(EtcdTls {
        trusted_ca_pem,
        client_certificate: Some((files.cert_pem, files.key_pem)),
    }))
}

/// One read of the scope.
#[derive(Debug, Default)]
pub struct ClusterState {
    pub scope: String,
    pub system_id: Option<String>,
    pub leader: Option<String>,
    pub members: BTreeMap<String, MemberData>,
    pub config: Option<Value>,
    /// mod_revision of the `config` key (0: absent).
    pub config_revision: i64,
    pub history: Vec<HistoryEntry>,
    pub failover: Option<Value>,
    pub sync: Option<Value>,
    /// The primary's last published WAL position (`/status`).
    pub optime: Option<u64>,
}

impl ClusterState {
    pub fn paused(&self) -> bool {
        self.config
            .as_ref()
            .and_then(|config| config.get("pause"))
            .is_some_and(|pause| pause.as_bool() == Some(true))
    }

    /// The synchronous standbys named in the `sync` key.
    pub fn sync_standbys(&self) -> Vec<String> {
        let Some(sync) = &self.sync else {
            return Vec::new();
        };
        match sync.get("sync_standby") {
            Some(Value::String(names)) => names.split(',').map(|n| n.trim().to_owned()).collect(),
            Some(Value::Array(names)) => names
                .iter()
                .filter_map(|name| name.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Patroni's role words for the table: a member listed in the `sync` key is a
    /// `Sync Standby` with `synchronous_mode: on`, a `Quorum Standby` with `quorum`, and a
    /// `Replica` when synchronous mode is off.
    pub fn role_of(&self, name: &str) -> &'static str {
        if self.leader.as_deref() == Some(name) {
            return "Leader";
        }
        if !self.sync_standbys().iter().any(|standby| standby == name) {
            return "Replica";
        }
        let mode = self
            .config
            .as_ref()
            .and_then(|config| config.get("synchronous_mode"));
        match mode {
            Some(Value::String(text)) if text.eq_ignore_ascii_case("quorum") => "Quorum Standby",
            Some(Value::Bool(true)) => "Sync Standby",
            Some(Value::String(text))
                if matches!(
                    text.to_ascii_lowercase().as_str(),
                    "on" | "true" | "yes" | "1"
                ) =>
            {
                "Sync Standby"
            }
            _ => "Replica",
        }
    }

    /// The primary's WAL position: `/status` or the leader member's `xlog_location`.
    pub fn leader_position(&self) -> Option<u64> {
        let from_member = self
            .leader
            .as_ref()
            .and_then(|leader| self.members.get(leader))
            .and_then(|member| member.xlog_location);
        match (self.optime, from_member) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// Bytes a replica's position is behind the primary's, if both are known.
    pub fn lag_of(&self, name: &str) -> Option<u64> {
        if self.leader.as_deref() == Some(name) {
            return None;
        }
        let member = self.members.get(name)?;
        let position = member
            .replay_lsn
            .or(member.xlog_location)
            .or(member.receive_lsn)?;
        Some(self.leader_position()?.saturating_sub(position))
    }

    /// `scheduled_at` of a pending switchover, if any.
    pub fn scheduled_switchover(&self) -> Option<String> {
        self.failover
            .as_ref()?
            .get("scheduled_at")?
            .as_str()
            .map(str::to_owned)
    }

    /// The `host:port` of a member's PostgreSQL, from its `conn_url`.
    pub fn host_of(&self, name: &str) -> String {
        self.members
            .get(name)
            .map(|member| host_port(&member.conn_url))
            .unwrap_or_default()
    }
}

/// `postgres://user@host:port/db` → `host:port`.
pub fn host_port(conn_url: &str) -> String {
    let rest = conn_url
        .split_once("://")
        .map_or(conn_url, |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, rest)| rest);
    rest.split('/').next().unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_strips_scheme_user_and_database() {
        assert_eq!(
            host_port("postgres://127.0.0.1:5432/postgres"),
            "127.0.0.1:5432"
        );
        assert_eq!(host_port("postgresql://u@db1:5433/x"), "db1:5433");
        assert_eq!(host_port("db2:5432"), "db2:5432");
    }

    #[test]
    fn endpoints_get_a_scheme() {
        assert_eq!(url("127.0.0.1:2379", "http"), "http://127.0.0.1:2379");
        assert_eq!(url("127.0.0.1:2379", "https"), "https://127.0.0.1:2379");
        assert_eq!(url("https://h:1", "http"), "https://h:1");
    }

    #[test]
    fn lag_is_measured_from_the_primarys_best_known_position() {
        let mut state = ClusterState {
            leader: Some("n1".into()),
            optime: Some(1000),
            ..ClusterState::default()
        };
        state.members.insert(
            "n1".into(),
            serde_json::from_value(serde_json::json!({"conn_url": "postgres://h:1/postgres", "api_url": "http://h:2/patroni", "state": "running", "role": "primary", "version": "0.1.0", "xlog_location": 1200})).unwrap(),
        );
        state.members.insert(
            "n2".into(),
            serde_json::from_value(serde_json::json!({"conn_url": "postgres://h:3/postgres", "api_url": "http://h:4/patroni", "state": "running", "role": "replica", "version": "0.1.0", "xlog_location": 200})).unwrap(),
        );
        assert_eq!(state.lag_of("n1"), None);
        assert_eq!(state.lag_of("n2"), Some(1000));
        assert_eq!(state.role_of("n1"), "Leader");
        assert_eq!(state.role_of("n2"), "Replica");
        state.sync = Some(serde_json::json!({"leader": "n1", "sync_standby": "n2", "quorum": 1}));
        for (mode, role) in [
            (serde_json::json!("quorum"), "Quorum Standby"),
            (serde_json::json!("on"), "Sync Standby"),
            (serde_json::json!(true), "Sync Standby"),
            (serde_json::json!("off"), "Replica"),
        ] {
            state.config = Some(serde_json::json!({ "synchronous_mode": mode }));
            assert_eq!(state.role_of("n2"), role, "{mode}");
        }
    }
}
