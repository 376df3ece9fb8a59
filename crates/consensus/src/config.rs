//! What a member needs to start, and what it reports about itself.

use std::path::PathBuf;
use std::time::Duration;

use etcd_proto::etcdserverpb::Member;

/// A Raft member ID (etcd's member ID: a non-zero u64, shown in hex by etcdctl).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemberId(pub u64);

/// Whether this start creates a new cluster or joins an existing one (etcd's --initial-cluster-state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitialClusterState {
    New,
    Existing,
    /// `pgwarden run`'s start: with an empty data dir, ask the other initial-cluster members
    /// whether a group already runs; join it as a learner (promoted to a voter once in sync)
    /// when it does not list this member, otherwise create the initial cluster as `New` does.
    /// A data dir that holds a member restarts it, as with the other states.
    JoinOrNew,
}

/// Default for [`NodeConfig::request_timeout`] (etcd's default request timeout).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything a member needs to start. Built by the binary from etcd-style flags or pgwarden's config.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Human name (etcd --name).
    pub name: String,
    /// Where redb files live (etcd --data-dir). Created if missing.
    pub data_dir: PathBuf,
    /// URLs peers use to reach this member (etcd --initial-advertise-peer-urls), e.g. "http://127.0.0.1:2380".
    pub peer_urls: Vec<String>,
    /// URLs clients use to reach this member (etcd --advertise-client-urls).
    pub client_urls: Vec<String>,
    /// name → peer URLs of the initial members (etcd --initial-cluster). Ignored when data_dir already holds a member.
    pub initial_cluster: Vec<(String, Vec<String>)>,
    pub initial_cluster_state: InitialClusterState,
    /// etcd --initial-cluster-token: mixed into member and cluster IDs.
    pub initial_cluster_token: String,
    /// Raft heartbeat interval (etcd --heartbeat-interval, default 100 ms).
    pub heartbeat_interval: Duration,
    /// Raft election timeout (etcd --election-timeout, default 1000 ms).
    /// A follower refuses votes for this long after the leader's last heartbeat (the leader
    /// lease); its election timer is drawn from [election_timeout / 2, election_timeout)
    /// (see `raft_config` for why this differs from etcd's [E, 2E) draw).
    pub election_timeout: Duration,
    /// Take a snapshot (and purge the log before it) after this many applied entries (etcd --snapshot-count).
    pub snapshot_count: u64,
    /// How long `propose`, `linearizable_read` and membership changes wait before giving up with
    /// `Timeout` or `NoLeader` (default 5 s), so a member cut off from the majority answers
    /// with an error instead of hanging.
    pub request_timeout: Duration,
}

impl Default for NodeConfig {
    /// etcd's defaults, for a single member named "default" in `./default.etcd`.
    fn default() -> Self {
        NodeConfig {
            name: "default".to_string(),
            data_dir: PathBuf::from("default.etcd"),
            peer_urls: vec!["http://localhost:2380".to_string()],
            client_urls: vec!["http://localhost:2379".to_string()],
            initial_cluster: vec![(
                "default".to_string(),
                vec!["http://localhost:2380".to_string()],
            )],
            initial_cluster_state: InitialClusterState::New,
            initial_cluster_token: "etcd-cluster".to_string(),
            heartbeat_interval: Duration::from_millis(100),
            election_timeout: Duration::from_millis(1000),
            snapshot_count: 100_000,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

/// What a client-facing layer can learn about the member without a Raft round trip.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RaftStatus {
    pub member_id: u64,
    pub cluster_id: u64,
    /// Member ID of the current Raft leader, if known.
    pub leader: Option<u64>,
    pub term: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub is_learner: bool,
    /// Full member list with names, peer URLs, client URLs, learner flags (etcd's Member message).
    pub members: Vec<Member>,
}
