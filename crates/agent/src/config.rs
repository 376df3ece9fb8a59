//! The `pgwarden run` configuration: a `patroni.yml` where the meaning is the same, plus a
//! `raft:` section for the embedded store (or `etcd3:` for an external etcd cluster).
//!
//! Parsing is strict: an unknown key or a value of the wrong type is refused with its key path
//! (e.g. `postgresql.parameters: ...`, `restapi.listen: invalid socket address syntax`), and
//! impossible timings (`loop_wait + 2 × retry_timeout > ttl`) are refused at start.
//!
//! Default timings (pgwarden's, not Patroni's 30/10/10), chosen so another node accepts writes
//! within ~5 s of the primary's host dying, while keeping Patroni's safety contract:
//! * `ttl = 5 s`: the leader lease. A failover waits out what is left of it (≤ 5 s after the
//!   primary's last keepalive), so it bounds the failover time; it is also long enough that a
//!   Raft leader election in the store (~1–2 s) does not cost the primary its lease.
//! * `loop_wait = 1 s`: the primary renews every second, so the lease is rarely more than 1 s
//!   old when the primary dies; replicas wake on the store watch anyway, not on this timer.
//! * `retry_timeout = 2 s`: store calls give up after it. `1 + 2 × 2 = 5 ≤ ttl`: a primary
//!   that cannot renew notices and demotes before its lease can expire (design invariant 6;
//!   the agent also demotes at `keepalive sent + ttl − 1 s` on its own monotonic clock).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Yaml(String),
    /// An unknown key or a wrong type, with the key path.
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
}

impl From<consensus::TlsSettingError> for ConfigError {
    /// A TLS setting the store's checks refused, under the key the operator wrote.
    fn from(error: consensus::TlsSettingError) -> ConfigError {
        ConfigError::Invalid {
            path: error.setting.to_owned(),
            reason: error.reason,
        }
    }
}

/// Reads a CA given without a certificate of this side's own (under `key`), checked as the
/// store checks a trusted CA ([`consensus::tls::trust_anchors`]).
pub(crate) fn read_trusted_ca(key: &str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    let unusable =
        |reason: String| RunConfig::invalid(key, format!("{}: {reason}", path.display()));
    let pem = std::fs::read(path).map_err(|error| unusable(error.to_string()))?;
    consensus::tls::trust_anchors(&pem).map_err(|error| unusable(error.to_string()))?;
    Ok(pem)
}

pub const DEFAULT_TTL: Duration = Duration::from_secs(5);
pub const DEFAULT_LOOP_WAIT: Duration = Duration::from_secs(1);
pub const DEFAULT_RETRY_TIMEOUT: Duration = Duration::from_secs(2);

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    pub scope: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    pub name: String,
    pub restapi: RestApiConfig,
    /// How this member and `pgwarden ctl` reach `https://` members (Patroni's `ctl:`).
    #[serde(default)]
    pub ctl: CtlConfig,
    #[serde(default)]
    pub raft: Option<RaftConfig>,
    #[serde(default)]
    pub etcd3: Option<Etcd3Config>,
    #[serde(default)]
    pub bootstrap: Option<BootstrapConfig>,
    pub postgresql: PostgresqlConfig,
    #[serde(default)]
    pub tags: BTreeMap<String, serde_json::Value>,
    /// `watchdog: {mode, device, safety_margin}` (see the `watchdog` crate).
    #[serde(default)]
    pub watchdog: watchdog::WatchdogConfig,
    /// Accepted for compatibility (Patroni's logging section); logs go to stderr.
    #[serde(default)]
    pub log: Option<serde_json::Value>,
}

fn default_namespace() -> String {
    "/service".to_owned()
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestApiConfig {
    pub listen: SocketAddr,
    /// `host:port` other members use to reach this API.
    pub connect_address: String,
    /// HTTP Basic credentials required on the unsafe endpoints (POST, PUT, PATCH, DELETE).
    #[serde(default)]
    pub authentication: Option<RestApiAuthentication>,
    /// Addresses, networks (CIDR) or host names allowed to call the unsafe endpoints.
    #[serde(default)]
    pub allowlist: Vec<String>,
    /// The members' API hosts may call the unsafe endpoints too.
    #[serde(default)]
    pub allowlist_include_members: bool,
    /// The REST API's certificate chain (PEM, leaf first); with `keyfile`, the API serves
    /// HTTPS only (see [`crate::config::restapi_tls`]).
    #[serde(default)]
    pub certfile: Option<PathBuf>,
    /// The unencrypted private key (PEM) of `certfile`.
    #[serde(default)]
    pub keyfile: Option<PathBuf>,
    /// Accepted by the parser only to be refused with a clear message.
    #[serde(default)]
    pub keyfile_password: Option<String>,
    /// CA certificates (PEM) client certificates are verified against.
    #[serde(default)]
    pub cafile: Option<PathBuf>,
    /// `none` (default), `optional` or `required`: whether clients must present a certificate
    /// signed by `cafile`.
    #[serde(default)]
    pub verify_client: rest::tls::VerifyClient,
    /// Accepted by the parser only to be refused with a clear message.
    #[serde(default)]
    pub ciphers: Option<String>,
    /// Headers added to every response (Patroni's `http_extra_headers`).
    #[serde(default)]
    pub http_extra_headers: BTreeMap<String, String>,
    /// Headers added to every response when the API serves HTTPS, after
    /// `http_extra_headers` (Patroni's `https_extra_headers`, e.g. HSTS).
    #[serde(default)]
    pub https_extra_headers: BTreeMap<String, String>,
    /// The `Server` header: `original` (default) and `minimal` send `pgwarden/<version>`,
    /// `productonly` sends `pgwarden` (Patroni's `server_tokens`).
    #[serde(default)]
    pub server_tokens: Option<String>,
    /// Accepted for compatibility: the listen backlog is the operating system's default.
    #[serde(default)]
    pub request_queue_size: Option<u32>,
}

/// `restapi.authentication`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestApiAuthentication {
    pub username: String,
    pub password: String,
}

impl RestApiConfig {
    /// The access policy of the unsafe endpoints; an allowlist entry that is neither an
    /// address, a network nor a resolvable host name is refused with its reason.
    pub fn access_policy(&self) -> Result<rest::AccessPolicy, String> {
        let mut allowlist = Vec::new();
        for entry in &self.allowlist {
            allowlist.extend(rest::IpNetwork::parse_entry(entry)?);
        }
        Ok(rest::AccessPolicy {
            credentials: self.authentication.as_ref().map(|auth| rest::Credentials {
                username: auth.username.clone(),
                password: auth.password.clone(),
            }),
            allowlist,
            allowlist_include_members: self.allowlist_include_members,
            client_certificate_required: self.certfile.is_some()
                && self.verify_client != rest::tls::VerifyClient::None,
        })
    }
}

/// The embedded store: this node is one member of a Raft group of `self_addr` +
/// `partner_addrs`, and serves the etcd v3 API on `etcd_api`.
///
/// TLS uses etcd's names without the dashes (see [`crate::config::raft_tls`]): `cert_file`,
/// `key_file`, `trusted_ca_file`, `client_cert_auth` for the etcd API, and their `peer_`
/// forms for the Raft port. Paths are PEM files; all are optional and TLS is off without them.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RaftConfig {
    pub data_dir: PathBuf,
    pub self_addr: SocketAddr,
    #[serde(default)]
    pub partner_addrs: Vec<SocketAddr>,
    #[serde(default)]
    pub etcd_api: Option<SocketAddr>,
    /// The etcd API's certificate chain (leaf first); with `key_file`, the API serves only TLS.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// The private key of `cert_file`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// CA certificates client certificates are verified against; `pgwarden ctl` also verifies
    /// the etcd API's certificate against it.
    #[serde(default)]
    pub trusted_ca_file: Option<PathBuf>,
    /// Refuse etcd API clients without a certificate signed by `trusted_ca_file`.
    #[serde(default)]
    pub client_cert_auth: bool,
    /// The Raft port's certificate chain, also presented to the partners when dialing them;
    /// with `peer_key_file`, members talk to each other only over TLS.
    #[serde(default)]
    pub peer_cert_file: Option<PathBuf>,
    /// The private key of `peer_cert_file`.
    #[serde(default)]
    pub peer_key_file: Option<PathBuf>,
    /// CA certificates the partners' certificates are verified against (required with peer TLS).
    #[serde(default)]
    pub peer_trusted_ca_file: Option<PathBuf>,
    /// Refuse Raft connections without a certificate signed by `peer_trusted_ca_file`.
    #[serde(default)]
    pub peer_client_cert_auth: bool,
}

/// An external etcd cluster, as Patroni's `etcd3:` section: the endpoints (`proxy`, `url`,
/// `hosts` or `host`, see [`crate::config::etcd3`]), the `protocol` (`http` or `https`), etcd
/// auth credentials, and for https Patroni's TLS keys (see [`crate::config::etcd3_tls`]).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Etcd3Config {
    #[serde(default)]
    pub hosts: Option<HostList>,
    #[serde(default)]
    pub host: Option<String>,
    /// One endpoint as a URL (`http[s]://[user:password@]host[:port]`); wins over `hosts`.
    #[serde(default)]
    pub url: Option<String>,
    /// An endpoint that is a proxy in front of etcd, as a URL; wins over `url`.
    #[serde(default)]
    pub proxy: Option<String>,
    /// Accepted as Patroni's: pgwarden always uses the configured endpoints as given.
    #[serde(default)]
    pub use_proxies: Option<bool>,
    /// DNS SRV discovery: accepted by the parser only to be refused with a clear message.
    #[serde(default)]
    pub srv: Option<String>,
    #[serde(default)]
    pub srv_suffix: Option<String>,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// CA certificates (PEM) the etcd servers' certificates are verified against; required
    /// with https, and the only trust anchors used (never the system's CA store).
    #[serde(default)]
    pub cacert: Option<PathBuf>,
    /// Client certificate chain (PEM) presented to etcd (for etcd's `--client-cert-auth`).
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// The unencrypted private key (PEM) of `cert`.
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// Patroni's password of an encrypted `key`: accepted by the parser only to be refused
    /// with a clear message (pgwarden reads unencrypted keys only).
    #[serde(default)]
    pub key_password: Option<String>,
}

/// `hosts:` as a list or a comma-separated string (Patroni accepts both).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum HostList {
    List(Vec<String>),
    Text(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapConfig {
    #[serde(default)]
    pub dcs: Option<DcsBootstrap>,
    /// initdb options: `- encoding: UTF8` maps or bare `- data-checksums` words.
    #[serde(default)]
    pub initdb: Vec<serde_json::Value>,
    #[serde(default)]
    pub method: Option<String>,
}

/// `bootstrap.dcs`: the dynamic configuration written to `/config` by the first leader.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct DcsBootstrap {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loop_wait: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_timeout: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum_lag_on_failover: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_start_timeout: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_stop_timeout: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_race_backoff: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synchronous_mode: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synchronous_mode_strict: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synchronous_node_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_timeline: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failsafe_mode: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_slots_ttl: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_slots: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgresql: Option<DcsPostgresql>,
}

#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct DcsPostgresql {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_pg_rewind: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_slots: Option<bool>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pg_hba: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove_data_directory_on_rewind_failure: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove_data_directory_on_diverged_timelines: Option<bool>,
}

/// Unknown keys are refused by `RunConfig::validate` rather than by serde: the custom replica
/// method sections are collected by `flatten`, which serde cannot combine with
/// `deny_unknown_fields`, and every collected key that is not a listed method is refused there
/// with its path.
#[derive(Debug, Clone, Deserialize)]
pub struct PostgresqlConfig {
    /// `host:port` PostgreSQL listens on (host may be a comma list).
    pub listen: String,
    /// `host:port` other members connect to.
    pub connect_address: String,
    pub data_dir: PathBuf,
    pub bin_dir: PathBuf,
    #[serde(default)]
    pub config_dir: Option<PathBuf>,
    #[serde(default)]
    pub pgpass: Option<PathBuf>,
    pub authentication: Authentication,
    #[serde(default)]
    pub parameters: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub pg_hba: Vec<String>,
    /// `on_start`, `on_stop`, `on_restart`, `on_reload`, `on_role_change`: command lines run
    /// with `<event> <role> <scope>` appended, asynchronously.
    #[serde(default)]
    pub callbacks: BTreeMap<String, String>,
    /// Fencing hook run (synchronously, bounded by `retry_timeout`) after taking the leader
    /// key and before promoting; a non-zero exit or a timeout abandons the promotion.
    #[serde(default)]
    pub pre_promote: Option<String>,
    /// Run (synchronously, bounded by `retry_timeout`) before pgwarden stops PostgreSQL,
    /// except for an immediate stop; its exit code is only logged.
    #[serde(default)]
    pub before_stop: Option<String>,
    #[serde(default)]
    pub create_replica_methods: Vec<String>,
    #[serde(default)]
    pub basebackup: Option<serde_json::Value>,
    #[serde(default = "yes")]
    pub use_pg_rewind: bool,
    #[serde(default)]
    pub remove_data_directory_on_rewind_failure: bool,
    #[serde(default)]
    pub remove_data_directory_on_diverged_timelines: bool,
    /// The OS user PostgreSQL runs as when pgwarden runs as root (PostgreSQL refuses root).
    #[serde(default = "default_os_user")]
    pub os_user: String,
    /// Accepted for compatibility with Patroni files: pgwarden always reaches its own
    /// PostgreSQL over the Unix socket (`use_unix_socket`) and replicates over TCP
    /// (`use_unix_socket_repl`), bounds start and stop itself (`pg_ctl_timeout`), and does not
    /// publish a connection pooler's address (`proxy_address`).
    #[serde(default)]
    pub use_unix_socket: Option<bool>,
    #[serde(default)]
    pub use_unix_socket_repl: Option<bool>,
    #[serde(default)]
    pub pg_ctl_timeout: Option<u64>,
    #[serde(default)]
    pub proxy_address: Option<String>,
    /// Custom replica methods by name (`<name>: {command: ..., no_leader: ...}`), as Patroni
    /// puts them directly under `postgresql:`; only sections named in
    /// `create_replica_methods` are read.
    #[serde(flatten)]
    pub method_sections: BTreeMap<String, serde_json::Value>,
}

fn yes() -> bool {
    true
}

fn default_os_user() -> String {
    "postgres".to_owned()
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Authentication {
    pub superuser: Credentials,
    pub replication: Credentials,
    #[serde(default)]
    pub rewind: Option<Credentials>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    pub username: String,
    #[serde(default)]
    pub password: Option<String>,
}

/// Splits `host:port` (the last colon separates the port).
pub fn split_host_port(text: &str) -> Option<(String, u16)> {
    let (host, port) = text.rsplit_once(':')?;
    Some((host.trim_matches(['[', ']']).to_owned(), port.parse().ok()?))
}

fn seconds(value: Option<f64>, default: Duration) -> Duration {
    value
        .filter(|secs| secs.is_finite() && *secs >= 0.0)
        .map_or(default, Duration::from_secs_f64)
}

impl RunConfig {
    /// The headers every REST API response carries: the `Server` header of `server_tokens`,
    /// then `http_extra_headers`, then (HTTPS only) `https_extra_headers`; a header name or
    /// value HTTP does not allow is refused naming its key.
    pub fn rest_response_headers(&self) -> Result<rest::ResponseHeaders, ConfigError> {
        let restapi = &self.restapi;
        let version = concat!("pgwarden/", env!("CARGO_PKG_VERSION"));
        let server = match restapi
            .server_tokens
            .as_deref()
            .map(str::to_ascii_lowercase)
        {
            None => version,
            Some(tokens) if tokens == "original" || tokens == "minimal" => version,
            Some(tokens) if tokens == "productonly" => "pgwarden",
            Some(tokens) => {
                return Err(Self::invalid(
                    "restapi.server_tokens",
                    format!("{tokens:?}: expected original, minimal or productonly"),
                ));
            }
        };
        let mut headers = rest::ResponseHeaders::default();
        let mut checked = rest::ResponseHeaders::default();
        headers
            .push("server", server)
            .map_err(|reason| Self::invalid("restapi.server_tokens", reason))?;
        let https = restapi.certfile.is_some();
        let sections = [
            ("http_extra_headers", &restapi.http_extra_headers, true),
            ("https_extra_headers", &restapi.https_extra_headers, https),
        ];
        for (section, extra, applies) in sections {
            for (name, value) in extra {
                let target = if applies { &mut headers } else { &mut checked };
                target.push(name, value).map_err(|reason| {
                    Self::invalid(&format!("restapi.{section}.{name}"), reason)
                })?;
            }
        }
        Ok(headers)
    }

    /// The Basic credentials `pgwarden ctl` sends: `ctl.authentication`, else
    /// `restapi.authentication` (as patronictl).
    pub fn ctl_credentials(&self) -> Option<&RestApiAuthentication> {
        self.ctl
            .authentication
            .as_ref()
            .or(self.restapi.authentication.as_ref())
    }

    /// Reads and validates a configuration file (or a directory of YAML files merged in name
    /// order, see `files`) with the `PATRONI_*` environment over it, including the TLS files of
    /// `raft:` or `etcd3:`, `restapi:` and `ctl:` (read and parsed, so a missing or unusable
    /// file is refused here, naming its key and path).
    pub fn load(path: &Path) -> Result<RunConfig, ConfigError> {
        let config = Self::from_value(files::read(path)?, std::env::vars())?;
        if let Some(raft) = &config.raft {
            raft.load_tls()?;
        }
        if let Some(etcd3) = &config.etcd3 {
            etcd3.tls()?;
        }
        config.rest_server_tls()?;
        config.rest_client()?;
        Ok(config)
    }

    /// Parses and validates the YAML text.
    pub fn parse(text: &str) -> Result<RunConfig, ConfigError> {
        Self::parse_with_environment(text, std::iter::empty())
    }

    /// Parses the YAML text, applies Patroni's `PATRONI_*` variables found in `environment`
    /// over it ([`environment`]), and validates the result; a refused key that a variable set
    /// names the variable too.
    pub fn parse_with_environment(
        text: &str,
        environment: impl IntoIterator<Item = (String, String)>,
    ) -> Result<RunConfig, ConfigError> {
        // YAML → a JSON value first, so the typed pass can name the key path of a refusal.
        let value: serde_json::Value =
            serde_saphyr::from_str(text).map_err(|error| ConfigError::Yaml(error.to_string()))?;
        Self::from_value(value, environment)
    }

    /// [`RunConfig::parse_with_environment`] of YAML already parsed.
    fn from_value(
        mut value: serde_json::Value,
        environment: impl IntoIterator<Item = (String, String)>,
    ) -> Result<RunConfig, ConfigError> {
        let applied = environment::apply(&mut value, environment)?;
        let config: RunConfig = serde_path_to_error::deserialize(value)
            .map_err(|error| ConfigError::Invalid {
                path: error.path().to_string(),
                reason: error.inner().to_string(),
            })
            .map_err(|error| environment::name_the_variable(error, &applied))?;
        config
            .validate()
            .map_err(|error| environment::name_the_variable(error, &applied))?;
        Ok(config)
    }

    pub(crate) fn invalid(path: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: path.to_owned(),
            reason: reason.into(),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.rest_response_headers()?;
        self.initdb_options()?;
        if self.scope.is_empty() || self.scope.contains('/') {
            return Err(Self::invalid(
                "scope",
                "must be a non-empty name without '/'",
            ));
        }
        if self.name.is_empty() || self.name.contains('/') {
            return Err(Self::invalid(
                "name",
                "must be a non-empty name without '/'",
            ));
        }
        match (&self.raft, &self.etcd3) {
            (None, None) => {
                return Err(Self::invalid(
                    "raft",
                    "a store is required: `raft:` (embedded) or `etcd3:` (external etcd)",
                ));
            }
            (Some(_), Some(_)) => {
                return Err(Self::invalid(
                    "etcd3",
                    "`raft:` and `etcd3:` exclude each other: configure one store",
                ));
            }
            _ => {}
        }
        if let Some(etcd3) = &self.etcd3 {
            etcd3.validate()?;
        }
        if let Some(raft) = &self.raft {
            raft.validate_tls()?;
        }
        self.validate_rest_tls()?;
        for (path, address) in [
            ("restapi.connect_address", &self.restapi.connect_address),
            ("postgresql.listen", &self.postgresql.listen),
            (
                "postgresql.connect_address",
                &self.postgresql.connect_address,
            ),
        ] {
            if split_host_port(address).is_none() {
                return Err(Self::invalid(path, format!("{address:?} is not host:port")));
            }
        }
        for name in &self.postgresql.create_replica_methods {
            if name != "basebackup" && !self.postgresql.method_sections.contains_key(name) {
                return Err(Self::invalid(
                    "postgresql.create_replica_methods",
                    format!("method {name:?} has no `postgresql.{name}` section"),
                ));
            }
        }
        for key in self.postgresql.method_sections.keys() {
            if !self.postgresql.create_replica_methods.contains(key) {
                return Err(Self::invalid(
                    &format!("postgresql.{key}"),
                    format!("unknown field `{key}` (not a listed create_replica_methods entry)"),
                ));
            }
        }
        let hooks = self
            .postgresql
            .callbacks
            .iter()
            .map(|(event, command)| (format!("postgresql.callbacks.{event}"), command))
            .chain(
                [
                    ("pre_promote", &self.postgresql.pre_promote),
                    ("before_stop", &self.postgresql.before_stop),
                ]
                .into_iter()
                .filter_map(|(name, command)| {
                    Some((format!("postgresql.{name}"), command.as_ref()?))
                }),
            );
        for (path, command) in hooks {
            postgres::callbacks::split_command(command)
                .map_err(|reason| Self::invalid(&path, reason))?;
        }
        if let Some(mode) = &self.dcs_bootstrap().synchronous_mode
            && dcs::synchronous_mode_from_json(mode).is_none()
        {
            return Err(Self::invalid(
                "bootstrap.dcs.synchronous_mode",
                format!("{mode} is not on, off or quorum"),
            ));
        }
        let dynamic = self.dynamic_defaults();
        if dynamic.loop_wait + dynamic.retry_timeout * 2 > dynamic.ttl {
            return Err(Self::invalid(
                "bootstrap.dcs",
                format!(
                    "impossible timings: loop_wait ({:?}) + 2 * retry_timeout ({:?}) > ttl ({:?})",
                    dynamic.loop_wait, dynamic.retry_timeout, dynamic.ttl
                ),
            ));
        }
        Ok(())
    }

    /// `bootstrap.initdb` as initdb long options, in order: `- data-checksums` (a bare word)
    /// is `--data-checksums`, `- encoding: UTF8` (a one-key mapping) is `--encoding=UTF8`.
    /// Options pgwarden sets itself (`pgdata`, `username`, `pwfile`) or that would leave an
    /// unusable cluster (`nosync`, `sync-only`, `version`, …) are refused naming the entry.
    pub fn initdb_options(&self) -> Result<Vec<(String, Option<String>)>, ConfigError> {
        const REFUSED: [&str; 10] = [
            "pgdata",
            "D",
            "username",
            "U",
            "pwfile",
            "pwprompt",
            "W",
            "nosync",
            "sync-only",
            "version",
        ];
        let entries = self
            .bootstrap
            .as_ref()
            .map(|bootstrap| bootstrap.initdb.as_slice())
            .unwrap_or_default();
        let mut options = Vec::with_capacity(entries.len());
        for (index, entry) in entries.iter().enumerate() {
            let key = format!("bootstrap.initdb[{index}]");
            let (name, value) = match entry {
                serde_json::Value::String(flag) => (flag.clone(), None),
                serde_json::Value::Object(map) if map.len() == 1 => {
                    let Some((name, value)) = map.iter().next() else {
                        continue;
                    };
                    let value = match value {
                        serde_json::Value::String(text) => text.clone(),
                        serde_json::Value::Number(number) => number.to_string(),
                        serde_json::Value::Bool(flag) => flag.to_string(),
                        _ => {
                            return Err(Self::invalid(
                                &key,
                                "the value must be a string or a number",
                            ));
                        }
                    };
                    (name.clone(), Some(value))
                }
                _ => {
                    return Err(Self::invalid(
                        &key,
                        "expected an option name (`- data-checksums`) or a one-key mapping (`- encoding: UTF8`)",
                    ));
                }
            };
            let bare = name.trim_start_matches('-');
            if bare.is_empty() || bare.contains(char::is_whitespace) {
                return Err(Self::invalid(
                    &key,
                    format!("{name:?} is not an initdb option"),
                ));
            }
            if REFUSED.contains(&bare) {
                return Err(Self::invalid(
                    &key,
                    format!(
                        "{bare} is set by pgwarden (data_dir, the superuser) or would leave an unusable cluster"
                    ),
                ));
            }
            options.push((bare.to_owned(), value));
        }
        Ok(options)
    }

    /// `bootstrap.dcs`, if given.
    pub fn dcs_bootstrap(&self) -> DcsBootstrap {
        self.bootstrap
            .as_ref()
            .and_then(|bootstrap| bootstrap.dcs.clone())
            .unwrap_or_default()
    }

    /// The dynamic configuration this node assumes until it reads `/config`: pgwarden's
    /// defaults overridden by `bootstrap.dcs`.
    pub fn dynamic_defaults(&self) -> ha::DynamicConfig {
        let dcs = self.dcs_bootstrap();
        let mut config = ha::DynamicConfig {
            ttl: seconds(dcs.ttl, DEFAULT_TTL),
            loop_wait: seconds(dcs.loop_wait, DEFAULT_LOOP_WAIT),
            retry_timeout: seconds(dcs.retry_timeout, DEFAULT_RETRY_TIMEOUT),
            primary_start_timeout: seconds(dcs.primary_start_timeout, Duration::from_secs(300)),
            primary_race_backoff: seconds(dcs.primary_race_backoff, Duration::ZERO),
            ..ha::DynamicConfig::default()
        };
        if let Some(lag) = dcs.maximum_lag_on_failover {
            config.maximum_lag_on_failover = lag;
        }
        if let Some(check) = dcs.check_timeline {
            config.check_timeline = check;
        }
        if let Some(mode) = dcs
            .synchronous_mode
            .as_ref()
            .and_then(dcs::synchronous_mode_from_json)
        {
            config.synchronous_mode = mode;
        }
        if let Some(strict) = dcs.synchronous_mode_strict {
            config.synchronous_mode_strict = strict;
        }
        if let Some(count) = dcs.synchronous_node_count.filter(|count| *count >= 1) {
            config.synchronous_node_count = count;
        }
        config
    }

    /// The JSON written to `/config` when this node bootstraps the cluster (the effective
    /// timings are always written so every node uses the same ones).
    pub fn initial_dynamic_config_json(&self) -> serde_json::Value {
        let mut dcs = self.dcs_bootstrap();
        let defaults = self.dynamic_defaults();
        dcs.ttl = Some(defaults.ttl.as_secs_f64());
        dcs.loop_wait = Some(defaults.loop_wait.as_secs_f64());
        dcs.retry_timeout = Some(defaults.retry_timeout.as_secs_f64());
        serde_json::to_value(&dcs).unwrap_or(serde_json::Value::Null)
    }

    pub fn node_config(&self) -> ha::NodeConfig {
        let dcs_postgresql = self.dcs_bootstrap().postgresql.unwrap_or_default();
        ha::NodeConfig {
            name: ha::MemberName::new(&self.name),
            tags: dcs::tags_from_map(&self.tags),
            can_bootstrap: true,
            use_pg_rewind: dcs_postgresql
                .use_pg_rewind
                .unwrap_or(self.postgresql.use_pg_rewind),
            reinit_on_diverged_timelines: self.postgresql.remove_data_directory_on_rewind_failure
                || self.postgresql.remove_data_directory_on_diverged_timelines
                || dcs_postgresql
                    .remove_data_directory_on_rewind_failure
                    .unwrap_or(false),
            clone_without_leader: false,
        }
    }

    /// `bootstrap.dcs.postgresql.parameters`, as strings: the cluster-wide parameters until
    /// `/config` exists (the bootstrapping primary starts with them, so it already runs with
    /// the values its replicas will read from `/config`).
    pub fn bootstrap_parameters(&self) -> BTreeMap<String, String> {
        self.dcs_bootstrap()
            .postgresql
            .unwrap_or_default()
            .parameters
            .iter()
            .map(|(name, value)| (name.clone(), parameter_text(value)))
            .collect()
    }

    /// PostgreSQL parameters of the local file, as strings.
    pub fn local_parameters(&self) -> BTreeMap<String, String> {
        self.postgresql
            .parameters
            .iter()
            .map(|(name, value)| (name.clone(), parameter_text(value)))
            .collect()
    }
}

/// A parameter value as PostgreSQL reads it (booleans as on/off).
pub fn parameter_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(text) => text.clone(),
        serde_json::Value::Bool(true) => "on".to_owned(),
        serde_json::Value::Bool(false) => "off".to_owned(),
        other => other.to_string(),
    }
}

pub mod environment;
pub mod etcd3;
pub mod etcd3_tls;
mod files;
pub mod raft_tls;
pub mod restapi_tls;

pub use restapi_tls::CtlConfig;

#[cfg(test)]
#[path = "config_test.rs"]
mod tests;
