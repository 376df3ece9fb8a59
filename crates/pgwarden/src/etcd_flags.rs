//! etcd's member flags, as `pgwarden etcd` accepts them, and their validation.
//!
//! [`EtcdFlags`] is what clap parses (etcd's flag names and defaults, `--flag value` and `--flag=value`);
//! [`EtcdFlags::validate`] turns it into an [`EtcdConfig`] or a [`FlagError`] naming the flag at fault.
//! Validation is pure: it binds nothing and reads no files, so it is tested as tables of flags → outcome.

use std::net::IpAddr;
use std::net::Ipv4Addr;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use clap::ValueEnum;
use etcd_server::space::AutoCompaction;
use etcd_server::space::AutoCompactionError;

use crate::ignored_flags::IgnoredFlags;
use crate::tls_flags::TlsConfig;
use crate::tls_flags::TlsFlags;

/// etcd's default client URL (both listen and advertise).
const DEFAULT_CLIENT_URL: &str = "http://localhost:2379";
/// etcd's default peer URL (both listen and initial-advertise).
const DEFAULT_PEER_URL: &str = "http://localhost:2380";
/// etcd refuses election timeouts above this (`--election-timeout ... is too long`).
const MAX_ELECTION_TIMEOUT_MS: u64 = 50_000;
/// Raft needs several heartbeats per election timeout or followers start elections under a healthy leader;
/// etcd requires this ratio and so do we.
const MIN_ELECTION_TO_HEARTBEAT_RATIO: u64 = 5;

/// `pgwarden etcd` flags: etcd's names, meanings and defaults.
#[derive(Debug, Clone, Args)]
pub struct EtcdFlags {
    /// Human-readable name for this member.
    #[arg(long, default_value = "default", env = "ETCD_NAME")]
    pub name: String,

    /// Path to the data directory [default: <name>.etcd].
    #[arg(long, env = "ETCD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Comma-separated URLs to listen on for client traffic (http://IP:port or http://localhost:port).
    #[arg(long, default_value = DEFAULT_CLIENT_URL, env = "ETCD_LISTEN_CLIENT_URLS")]
    pub listen_client_urls: String,

    /// Comma-separated client URLs of this member, advertised to the rest of the cluster and to clients.
    #[arg(long, default_value = DEFAULT_CLIENT_URL, env = "ETCD_ADVERTISE_CLIENT_URLS")]
    pub advertise_client_urls: String,

    /// URL to listen on for peer (Raft) traffic. pgwarden serves peers on exactly one listener.
    #[arg(long, default_value = DEFAULT_PEER_URL, env = "ETCD_LISTEN_PEER_URLS")]
    pub listen_peer_urls: String,

    /// Comma-separated peer URLs of this member, advertised to the rest of the cluster.
    #[arg(long, default_value = DEFAULT_PEER_URL, env = "ETCD_INITIAL_ADVERTISE_PEER_URLS")]
    pub initial_advertise_peer_urls: String,

    /// Initial cluster configuration for bootstrapping: name=peerURL,... [default: <name>=<initial-advertise-peer-urls>].
    /// Ignored when the data directory already holds a member.
    #[arg(long, env = "ETCD_INITIAL_CLUSTER")]
    pub initial_cluster: Option<String>,

    /// Whether this member starts a new cluster or joins an existing one.
    #[arg(long, value_enum, default_value_t = ClusterState::New, env = "ETCD_INITIAL_CLUSTER_STATE")]
    pub initial_cluster_state: ClusterState,

    /// Initial cluster token, mixed into the member and cluster IDs.
    #[arg(
        long,
        default_value = "etcd-cluster",
        env = "ETCD_INITIAL_CLUSTER_TOKEN"
    )]
    pub initial_cluster_token: String,

    /// Time (in milliseconds) of a heartbeat interval.
    #[arg(long, default_value_t = 100, env = "ETCD_HEARTBEAT_INTERVAL")]
    pub heartbeat_interval: u64,

    /// Time (in milliseconds) for an election to timeout.
    #[arg(long, default_value_t = 1000, env = "ETCD_ELECTION_TIMEOUT")]
    pub election_timeout: u64,

    /// Number of applied Raft entries after which a snapshot is taken and the log before it purged.
    ///
    /// pgwarden's default is lower than etcd's 100000: a snapshot here is a compact copy of the keyspace,
    /// and a shorter log keeps restart replay and follower catch-up short.
    #[arg(long, default_value_t = 10_000, env = "ETCD_SNAPSHOT_COUNT")]
    pub snapshot_count: u64,

    /// Auto-compaction mode: "periodic" (keep a duration of history) or "revision" (keep a number of revisions).
    #[arg(long, default_value = "periodic", env = "ETCD_AUTO_COMPACTION_MODE")]
    pub auto_compaction_mode: String,

    /// Auto-compaction retention: in periodic mode a duration ("1h", "30m") or a bare number of hours;
    /// in revision mode a number of revisions. 0 turns auto-compaction off.
    #[arg(long, default_value = "0", env = "ETCD_AUTO_COMPACTION_RETENTION")]
    pub auto_compaction_retention: String,

    /// Raise the NOSPACE alarm when the keyspace would exceed this many bytes (0: 2 GiB; negative: no quota).
    /// pgwarden measures the keyspace's logical size with its retained history, not a file size.
    #[arg(
        long,
        default_value_t = 0,
        allow_negative_numbers = true,
        env = "ETCD_QUOTA_BACKEND_BYTES"
    )]
    pub quota_backend_bytes: i64,

    /// Seconds a simple auth token stays valid without being used.
    #[arg(long, default_value_t = 300, env = "ETCD_AUTH_TOKEN_TTL")]
    pub auth_token_ttl: u64,

    /// etcd's TLS flags (boxed: they would make this the one large variant of the command enum).
    #[command(flatten)]
    pub tls: Box<TlsFlags>,

    #[command(flatten)]
    pub ignored: IgnoredFlags,
}

/// etcd's `--initial-cluster-state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClusterState {
    New,
    Existing,
}

/// A flag whose value pgwarden cannot use; the message names the flag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid value for --{flag}: {reason}")]
pub struct FlagError {
    /// The flag's long name without the leading dashes.
    pub flag: &'static str,
    pub reason: String,
}

impl FlagError {
    pub(crate) fn new(flag: &'static str, reason: impl Into<String>) -> Self {
        Self {
            flag,
            reason: reason.into(),
        }
    }
}

/// A URL to bind: the URL as given (normalised) and the socket address it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenUrl {
    pub url: String,
    pub addr: SocketAddr,
}

impl ListenUrl {
    /// An `https://` listener: served over TLS.
    pub fn is_tls(&self) -> bool {
        self.url.starts_with("https://")
    }
}

/// Validated `pgwarden etcd` configuration: every URL checked, defaults resolved, timings consistent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    pub name: String,
    pub data_dir: PathBuf,
    /// One client listener per URL; each serves the full etcd API (gRPC and JSON gateway).
    pub listen_client: Vec<ListenUrl>,
    pub advertise_client_urls: Vec<String>,
    pub listen_peer: ListenUrl,
    pub initial_advertise_peer_urls: Vec<String>,
    /// name → peer URLs, in the order the names first appear in `--initial-cluster`.
    pub initial_cluster: Vec<(String, Vec<String>)>,
    pub initial_cluster_state: ClusterState,
    pub initial_cluster_token: String,
    pub heartbeat_interval: Duration,
    pub election_timeout: Duration,
    pub snapshot_count: u64,
    /// Server-side auto-compaction; `None` when off.
    pub auto_compaction: Option<AutoCompaction>,
    /// `--quota-backend-bytes` as given (0: etcd's default of 2 GiB; negative: no quota).
    pub quota_backend_bytes: i64,
    /// How long a simple auth token stays valid without being used (`--auth-token-ttl`).
    pub auth_token_ttl: Duration,
    /// Accepted-but-ignored etcd flags as given (`--logger=zap`), for one log line at start.
    pub ignored_flags: Vec<String>,
    /// Certificate paths of the client and peer sides (files are read by `tls_flags::load`).
    pub tls: TlsConfig,
}

impl EtcdFlags {
    /// Checks every flag and resolves etcd's derived defaults (data dir and initial cluster from the name).
    pub fn validate(&self) -> Result<EtcdConfig, FlagError> {
        let name = self.name.trim().to_owned();
        if name.is_empty() {
            return Err(FlagError::new("name", "must not be empty"));
        }
        let data_dir = self
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("{name}.etcd")));
        if data_dir.as_os_str().is_empty() {
            return Err(FlagError::new("data-dir", "must not be empty"));
        }

        let listen_client = parse_url_list("listen-client-urls", &self.listen_client_urls)?
            .into_iter()
            .map(|url| url.into_listen("listen-client-urls"))
            .collect::<Result<Vec<_>, _>>()?;
        let advertise_client_urls = to_strings(parse_url_list(
            "advertise-client-urls",
            &self.advertise_client_urls,
        )?);

        let mut listen_peers = parse_url_list("listen-peer-urls", &self.listen_peer_urls)?;
        if listen_peers.len() > 1 {
            return Err(FlagError::new(
                "listen-peer-urls",
                format!(
                    "pgwarden listens for peers on exactly one URL, got {}",
                    self.listen_peer_urls
                ),
            ));
        }
        let listen_peer = listen_peers
            .pop()
            .ok_or_else(|| FlagError::new("listen-peer-urls", "no URL given"))?
            .into_listen("listen-peer-urls")?;
        let initial_advertise_peer_urls = to_strings(parse_url_list(
            "initial-advertise-peer-urls",
            &self.initial_advertise_peer_urls,
        )?);

        let initial_cluster = match &self.initial_cluster {
            Some(spec) => parse_initial_cluster(spec)?,
            None => vec![(name.clone(), initial_advertise_peer_urls.clone())],
        };
        check_own_entry(&name, &initial_advertise_peer_urls, &initial_cluster)?;

        let first_https = |flag: &'static str, urls: &[String]| {
            urls.iter()
                .find(|url| url.starts_with("https://"))
                .map(|url| (flag, url.clone()))
        };
        let listen_client_urls: Vec<String> =
            listen_client.iter().map(|url| url.url.clone()).collect();
        let cluster_peer_urls: Vec<String> = initial_cluster
            .iter()
            .flat_map(|(_, urls)| urls.iter().cloned())
            .collect();
        let tls = self.tls.validate(
            first_https("listen-client-urls", &listen_client_urls),
            first_https("listen-peer-urls", std::slice::from_ref(&listen_peer.url)),
            first_https("initial-cluster", &cluster_peer_urls).or_else(|| {
                first_https("initial-advertise-peer-urls", &initial_advertise_peer_urls)
            }),
        )?;

        let initial_cluster_token = self.initial_cluster_token.trim().to_owned();
        if initial_cluster_token.is_empty() {
            return Err(FlagError::new("initial-cluster-token", "must not be empty"));
        }

        check_timings(self.heartbeat_interval, self.election_timeout)?;
        if self.auth_token_ttl == 0 {
            return Err(FlagError::new("auth-token-ttl", "must be positive"));
        }
        if self.snapshot_count == 0 {
            return Err(FlagError::new("snapshot-count", "must be positive"));
        }

        let auto_compaction =
            AutoCompaction::parse(&self.auto_compaction_mode, &self.auto_compaction_retention)
                .map_err(|error| match error {
                    AutoCompactionError::Mode(_) => {
                        FlagError::new("auto-compaction-mode", error.to_string())
                    }
                    AutoCompactionError::PeriodicRetention(_)
                    | AutoCompactionError::RevisionRetention(_) => {
                        FlagError::new("auto-compaction-retention", error.to_string())
                    }
                })?;

        Ok(EtcdConfig {
            name,
            data_dir,
            listen_client,
            advertise_client_urls,
            listen_peer,
            initial_advertise_peer_urls,
            initial_cluster,
            initial_cluster_state: self.initial_cluster_state,
            initial_cluster_token,
            heartbeat_interval: Duration::from_millis(self.heartbeat_interval),
            election_timeout: Duration::from_millis(self.election_timeout),
            snapshot_count: self.snapshot_count,
            auto_compaction,
            quota_backend_bytes: self.quota_backend_bytes,
            auth_token_ttl: Duration::from_secs(self.auth_token_ttl),
            ignored_flags: self.ignored.given.clone(),
            tls,
        })
    }
}

/// An `http://host:port` or `https://host:port` URL, host kept as written (a name, an IPv4
/// address or a bracketed IPv6 address).
#[derive(Debug, Clone, PartialEq, Eq)]
struct HttpUrl {
    host: String,
    port: u16,
    /// `https://`: the listener serves TLS, or the peer is dialed over TLS.
    tls: bool,
}

impl HttpUrl {
    fn normalised(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}:{}", self.host, self.port)
    }

    /// Listen URLs must name an address to bind: an IP address or `localhost` (bound as 127.0.0.1).
    fn into_listen(self, flag: &'static str) -> Result<ListenUrl, FlagError> {
        let bare_host = self.host.trim_start_matches('[').trim_end_matches(']');
        let ip = if bare_host.eq_ignore_ascii_case("localhost") {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            bare_host.parse::<IpAddr>().map_err(|_| {
                FlagError::new(
                    flag,
                    format!(
                        "expected an IP address or localhost to bind in {}",
                        self.normalised()
                    ),
                )
            })?
        };
        Ok(ListenUrl {
            url: self.normalised(),
            addr: SocketAddr::new(ip, self.port),
        })
    }
}

fn to_strings(urls: Vec<HttpUrl>) -> Vec<String> {
    urls.iter().map(HttpUrl::normalised).collect()
}

/// Parses a comma-separated URL list (empty items are refused, as etcd does).
fn parse_url_list(flag: &'static str, list: &str) -> Result<Vec<HttpUrl>, FlagError> {
    let urls = list
        .split(',')
        .map(|item| parse_http_url(flag, item.trim()))
        .collect::<Result<Vec<_>, _>>()?;
    if urls.is_empty() {
        return Err(FlagError::new(flag, "no URL given"));
    }
    Ok(urls)
}

fn parse_http_url(flag: &'static str, url: &str) -> Result<HttpUrl, FlagError> {
    if url.is_empty() {
        return Err(FlagError::new(flag, "empty URL in the list"));
    }
    let lower = url.to_ascii_lowercase();
    let (rest, tls) = if lower.starts_with("http://") {
        (&url["http://".len()..], false)
    } else if lower.starts_with("https://") {
        (&url["https://".len()..], true)
    } else {
        return Err(FlagError::new(
            flag,
            format!("{url}: URL scheme must be http:// or https:// (e.g. http://127.0.0.1:2379)"),
        ));
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains(['/', '?', '#', '@']) {
        return Err(FlagError::new(
            flag,
            format!("{url}: expected http://host:port without a path"),
        ));
    }
    let (host, port) = split_host_port(authority)
        .ok_or_else(|| FlagError::new(flag, format!("{url}: expected http://host:port")))?;
    let port = port
        .parse::<u16>()
        .map_err(|_| FlagError::new(flag, format!("{url}: invalid port {port:?}")))?;
    Ok(HttpUrl {
        host: host.to_owned(),
        port,
        tls,
    })
}

/// Splits `host:port` or `[v6]:port`; `None` when the port or the host is missing.
fn split_host_port(authority: &str) -> Option<(&str, &str)> {
    let (host, port) = if authority.starts_with('[') {
        let close = authority.find(']')?;
        let port = authority[close + 1..].strip_prefix(':')?;
        (&authority[..=close], port)
    } else {
        let (host, port) = authority.rsplit_once(':')?;
        if host.contains(':') {
            return None;
        }
        (host, port)
    };
    if host.is_empty() || port.is_empty() {
        return None;
    }
    Some((host, port))
}

/// Parses `name=url,name=url,...`; a name may repeat to give a member several peer URLs (etcd's format).
fn parse_initial_cluster(spec: &str) -> Result<Vec<(String, Vec<String>)>, FlagError> {
    const FLAG: &str = "initial-cluster";
    let mut members: Vec<(String, Vec<String>)> = Vec::new();
    for item in spec.split(',') {
        let item = item.trim();
        let Some((name, url)) = item.split_once('=') else {
            return Err(FlagError::new(
                FLAG,
                format!("{item:?} is not name=http://host:port"),
            ));
        };
        let name = name.trim();
        if name.is_empty() {
            return Err(FlagError::new(FLAG, format!("{item:?} has an empty name")));
        }
        let url = parse_http_url(FLAG, url.trim())?.normalised();
        if let Some((other, _)) = members.iter().find(|(_, urls)| urls.contains(&url)) {
            return Err(FlagError::new(
                FLAG,
                format!("peer URL {url} is given twice (for {other} and {name})"),
            ));
        }
        match members.iter_mut().find(|(existing, _)| existing == name) {
            Some((_, urls)) => urls.push(url),
            None => members.push((name.to_owned(), vec![url])),
        }
    }
    Ok(members)
}

/// The member's own entry must be in the initial cluster with exactly its advertised peer URLs,
/// otherwise the other members would dial an address this member does not claim.
fn check_own_entry(
    name: &str,
    advertise_peer_urls: &[String],
    initial_cluster: &[(String, Vec<String>)],
) -> Result<(), FlagError> {
    let Some((_, listed)) = initial_cluster.iter().find(|(member, _)| member == name) else {
        let names: Vec<&str> = initial_cluster.iter().map(|(n, _)| n.as_str()).collect();
        return Err(FlagError::new(
            "initial-cluster",
            format!(
                "this member's --name {name:?} is not in it (it lists {})",
                names.join(", ")
            ),
        ));
    };
    let mut listed_sorted = listed.clone();
    listed_sorted.sort();
    let mut advertised_sorted = advertise_peer_urls.to_vec();
    advertised_sorted.sort();
    advertised_sorted.dedup();
    if listed_sorted != advertised_sorted {
        return Err(FlagError::new(
            "initial-cluster",
            format!(
                "it gives {name}={} but --initial-advertise-peer-urls is {}",
                listed.join(","),
                advertise_peer_urls.join(",")
            ),
        ));
    }
    Ok(())
}

fn check_timings(heartbeat_ms: u64, election_ms: u64) -> Result<(), FlagError> {
    if heartbeat_ms == 0 {
        return Err(FlagError::new("heartbeat-interval", "must be positive"));
    }
    if election_ms == 0 {
        return Err(FlagError::new("election-timeout", "must be positive"));
    }
    if election_ms < MIN_ELECTION_TO_HEARTBEAT_RATIO.saturating_mul(heartbeat_ms) {
        return Err(FlagError::new(
            "election-timeout",
            format!(
                "{election_ms}ms must be at least {MIN_ELECTION_TO_HEARTBEAT_RATIO} times \
                 --heartbeat-interval ({heartbeat_ms}ms)"
            ),
        ));
    }
    if election_ms > MAX_ELECTION_TIMEOUT_MS {
        return Err(FlagError::new(
            "election-timeout",
            format!("{election_ms}ms is too long; it must be at most {MAX_ELECTION_TIMEOUT_MS}ms"),
        ));
    }
    Ok(())
}

#[cfg(test)]
#[path = "etcd_flags_test.rs"]
mod etcd_flags_test;
