//! What the agent observed at the start of one cycle: an immutable snapshot of the cluster as
//! read from the store, the local PostgreSQL facts, the long action in progress, our own lease
//! deadline, the peers' answers, the local configuration and `now`.
//! Everything here is data: the shell builds it, `decide` only reads it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::types::{Instant, Lsn, MemberName, SystemId, Timeline};

/// One cycle's input to [`crate::decide`].
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// The monotonic time at which the observation was taken.
    pub now: Instant,
    pub node: NodeConfig,
    /// The cluster as the store returned it, or the fact that it could not be read.
    pub store: StoreView,
    pub postgres: LocalPostgres,
    /// The long action (bootstrap, clone, promote, rewind, ...) the shell is running, if any.
    pub long_action: Option<LongAction>,
    /// Our own view of the leader lease: set while we believe we hold the leader key.
    pub own_lease: Option<OwnLease>,
    /// `watchdog.mode: required` and the device cannot be used: never race for the key.
    pub watchdog_failed: bool,
    /// When the `pre_promote` script last failed (exit ≠ 0): the node stays out of the race
    /// for one `ttl` after it, and gives back a key it holds instead of promoting.
    pub pre_promote_failed_at: Option<Instant>,
    /// When the shell first saw the leader key missing (reset whenever a leader is seen):
    /// the start of the `primary_race_backoff` window.
    pub leader_missing_since: Option<Instant>,
    /// Answers of the other members to `GET /patroni`, gathered by the shell when a previous
    /// decision asked for them (`Action::QueryPeers`). `None` means "not asked this cycle".
    pub peers: Option<Vec<PeerAnswer>>,
}

/// The local, static part of the configuration that shapes decisions.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeConfig {
    pub name: MemberName,
    pub tags: Tags,
    /// A `bootstrap` section exists, so this node may initialise a new cluster.
    pub can_bootstrap: bool,
    /// `postgresql.use_pg_rewind`.
    pub use_pg_rewind: bool,
    /// `remove_data_directory_on_diverged_timelines`: reinitialize when rewind is impossible.
    pub reinit_on_diverged_timelines: bool,
    /// Some configured replica creation method (`no_leader`) can clone without a leader.
    pub clone_without_leader: bool,
}

/// The store could not be read this cycle (after the shell's retries), or this is what it holds.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreView {
    /// The read failed; the last configuration seen still sets the timing.
    Unreachable {
        last_known_config: DynamicConfig,
    },
    Cluster(Box<ClusterView>),
}

/// A consistent snapshot of the keys under `/<namespace>/<scope>/`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClusterView {
    /// `initialize`: `None` = key absent, `Some(None)` = bootstrap in progress (empty value),
    /// `Some(Some(id))` = initialized with that system identifier.
    pub initialize: Option<Option<SystemId>>,
    pub config: DynamicConfig,
    pub leader: Option<LeaderKey>,
    /// Member keys; the shell adds members of the last snapshot that had a leader (Patroni's
    /// `old_cluster`) so a just-expired member is still asked before a race.
    pub members: Vec<Member>,
    /// `status.optime`: the last WAL position the leader published.
    pub last_leader_lsn: Option<Lsn>,
    pub failover: Option<FailoverKey>,
    pub sync: Option<SyncKey>,
    /// The cluster timeline derived from `history` (last entry + 1), if the key exists.
    pub history_timeline: Option<Timeline>,
    /// The holder of the leader key in the last snapshot that had one (Patroni's
    /// `old_cluster.leader`): the "former leader" of the race rules.
    pub previous_leader: Option<MemberName>,
}

impl ClusterView {
    pub fn member(&self, name: &MemberName) -> Option<&Member> {
        self.members.iter().find(|member| &member.name == name)
    }

    pub fn leader_name(&self) -> Option<&MemberName> {
        self.leader.as_ref().map(|leader| &leader.holder)
    }
}

/// The leader key as the store reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderKey {
    pub holder: MemberName,
    /// The key's mod_revision (Patroni's leader `version`).
    pub mod_revision: i64,
    /// The lease the key is attached to, as the store reports it.
    pub lease: LeaseState,
}

/// The leader key's lease as seen in the store snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    /// Attached to a live lease with this ID.
    Attached { lease_id: i64 },
    /// The key has no lease (written by an unconditional put, e.g. a manual edit).
    Detached,
}

/// `members/<name>`: what each member publishes about itself every cycle.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Member {
    pub name: MemberName,
    pub conn_url: Option<String>,
    pub api_url: Option<String>,
    pub state: MemberState,
    pub role: MemberRole,
    /// `xlog_location`: primary = current write position, replica = max(received, replayed).
    pub wal_position: Option<Lsn>,
    pub timeline: Option<Timeline>,
    pub tags: Tags,
    pub replication_state: Option<ReplicationState>,
}

/// Patroni's member states, in the index order `/metrics` exports (which must never change).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberState {
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
    #[default]
    Stopped,
    StopFailed,
    Crashed,
}

impl MemberState {
    /// The wording Patroni writes into member data and shows in `patronictl list`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InitializingNewCluster => "initializing new cluster",
            Self::InitdbFailed => "initdb failed",
            Self::RunningCustomBootstrapScript => "running custom bootstrap script",
            Self::CustomBootstrapFailed => "custom bootstrap failed",
            Self::CreatingReplica => "creating replica",
            Self::Running => "running",
            Self::Starting => "starting",
            Self::StartingAfterCustomBootstrap => "starting after custom bootstrap",
            Self::StartFailed => "start failed",
            Self::Restarting => "restarting",
            Self::RestartFailed => "restart failed",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
            Self::StopFailed => "stop failed",
            Self::Crashed => "crashed",
        }
    }
}

/// Patroni's member roles (4.0 wording: `primary`, never `master`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberRole {
    Primary,
    Replica,
    StandbyLeader,
    Demoted,
    Promoted,
    #[default]
    Uninitialized,
}

impl MemberRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Primary => "primary",
            Self::Replica => "replica",
            Self::StandbyLeader => "standby_leader",
            Self::Demoted => "demoted",
            Self::Promoted => "promoted",
            Self::Uninitialized => "uninitialized",
        }
    }
}

/// A replica's `replication_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplicationState {
    Streaming,
    InArchiveRecovery,
}

/// Member tags that change HA behaviour (`tags:` in the local config).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Tags {
    pub nofailover: bool,
    /// `failover_priority` (default 1; `<= 0` behaves as `nofailover`).
    pub failover_priority: Option<i64>,
    pub nosync: bool,
    /// `sync_priority` (default 1; `<= 0` behaves as `nosync`).
    pub sync_priority: Option<i64>,
    pub nostream: bool,
    pub replicatefrom: Option<MemberName>,
    pub clonefrom: bool,
}

impl Tags {
    /// Whether this member may ever become leader by failover (`nofailover` wins over a
    /// positive `failover_priority`).
    pub fn may_fail_over(&self) -> bool {
        !self.nofailover && self.failover_priority() > 0
    }

    pub fn failover_priority(&self) -> i64 {
        self.failover_priority.unwrap_or(1)
    }

    /// Whether this member may be chosen as a synchronous standby.
    pub fn may_be_sync(&self) -> bool {
        !self.nosync && !self.nostream && self.sync_priority() > 0
    }

    pub fn sync_priority(&self) -> i64 {
        self.sync_priority.unwrap_or(1)
    }
}

/// The `/failover` key: a switchover (`leader` set) or a failover (only `candidate`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FailoverKey {
    pub leader: Option<MemberName>,
    pub candidate: Option<MemberName>,
    /// `scheduled_at`, already converted by the shell to the agent's monotonic clock.
    pub scheduled_at: Option<Instant>,
}

/// The `/sync` key (priority mode; `quorum` is kept for display).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncKey {
    pub leader: Option<MemberName>,
    pub sync_standbys: Vec<MemberName>,
    pub quorum: u32,
}

impl SyncKey {
    /// Whether `name` is listed as the sync leader or one of the synchronous standbys.
    pub fn lists(&self, name: &MemberName) -> bool {
        self.leader.as_ref() == Some(name) || self.sync_standbys.contains(name)
    }
}

/// `synchronous_mode` in `/config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SynchronousMode {
    #[default]
    Off,
    On,
    Quorum,
}

/// The dynamic configuration (`/config`) with Patroni's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct DynamicConfig {
    pub ttl: Duration,
    pub loop_wait: Duration,
    pub retry_timeout: Duration,
    /// `maximum_lag_on_failover` in bytes.
    pub maximum_lag_on_failover: u64,
    pub primary_start_timeout: Duration,
    pub synchronous_mode: SynchronousMode,
    pub synchronous_mode_strict: bool,
    pub synchronous_node_count: u32,
    /// `maximum_lag_on_syncnode` in bytes; `None` = off (Patroni's -1).
    pub maximum_lag_on_syncnode: Option<u64>,
    pub check_timeline: bool,
    /// `primary_race_backoff` (zero = off): how long a replica may hold back from the race
    /// while the "dead" primary's WAL still arrives.
    pub primary_race_backoff: Duration,
    pub pause: bool,
}

impl Default for DynamicConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(30),
            loop_wait: Duration::from_secs(10),
            retry_timeout: Duration::from_secs(10),
            maximum_lag_on_failover: 1_048_576,
            primary_start_timeout: Duration::from_secs(300),
            synchronous_mode: SynchronousMode::Off,
            synchronous_mode_strict: false,
            synchronous_node_count: 1,
            maximum_lag_on_syncnode: None,
            check_timeline: false,
            primary_race_backoff: Duration::ZERO,
            pause: false,
        }
    }
}

/// Facts about the local PostgreSQL, gathered by the shell (process table, pg_control, SQL).
#[derive(Debug, Clone, PartialEq)]
pub struct LocalPostgres {
    pub data_dir: DataDirState,
    pub process: ProcessState,
    /// Role of the running server (`pg_is_in_recovery()`), or, when stopped, the role its
    /// data directory would start in (no `standby.signal` and a primary's pg_control = primary).
    pub role: PgRole,
    pub timeline: Option<Timeline>,
    /// Primary: `pg_current_wal_lsn()`; replica: unused.
    pub write_lsn: Option<Lsn>,
    pub received_lsn: Option<Lsn>,
    pub replayed_lsn: Option<Lsn>,
    /// The member `primary_conninfo` currently points at (replicas only).
    pub upstream: Option<MemberName>,
    /// The result of the shell's timeline/LSN divergence check against the leader.
    pub divergence: Divergence,
    /// pg_rewind is usable: binary present and `wal_log_hints` or data checksums on.
    pub can_rewind: bool,
    /// The last start attempt failed (PostgreSQL exited before accepting connections).
    pub last_start_failed: bool,
    /// Streaming, and the received LSN grew since the previous cycle: the upstream is alive.
    pub wal_receive_advancing: bool,
}

impl Default for LocalPostgres {
    fn default() -> Self {
        Self {
            data_dir: DataDirState::Empty,
            process: ProcessState::Stopped { since: None },
            role: PgRole::Replica,
            timeline: None,
            write_lsn: None,
            received_lsn: None,
            replayed_lsn: None,
            upstream: None,
            divergence: Divergence::Unknown,
            can_rewind: false,
            last_start_failed: false,
            wal_receive_advancing: false,
        }
    }
}

impl LocalPostgres {
    /// Our WAL position as Patroni compares it: a primary's write position, a replica's
    /// max(received, replayed).
    pub fn wal_position(&self) -> Option<Lsn> {
        match self.role {
            PgRole::Primary => self.write_lsn,
            PgRole::Replica => match (self.received_lsn, self.replayed_lsn) {
                (Some(received), Some(replayed)) => Some(received.max(replayed)),
                (received, replayed) => received.or(replayed),
            },
        }
    }

    pub fn is_running(&self) -> bool {
        matches!(self.process, ProcessState::Running)
    }

    pub fn is_running_primary(&self) -> bool {
        self.is_running() && self.role == PgRole::Primary
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataDirState {
    /// Missing or empty: a new cluster must be bootstrapped or a replica cloned.
    Empty,
    /// Holds a cluster whose pg_control reports this system identifier.
    Initialized { system_id: SystemId },
    /// Non-empty but pg_control is unreadable or has no valid system identifier.
    Invalid,
}

/// The postmaster as the shell sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessState {
    /// Not running; `since` = when the shell first saw it down (None if never started).
    Stopped {
        since: Option<Instant>,
    },
    /// Exited without being asked to (crash, OOM kill), first seen at `since`: restarts that
    /// fail after it do not move it, so `primary_start_timeout` counts from the crash.
    Crashed {
        since: Instant,
    },
    /// Started, not yet accepting connections.
    Starting {
        since: Instant,
    },
    Running,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgRole {
    Primary,
    Replica,
}

/// Whether our history diverged from the leader's (Patroni's `_check_timeline_and_lsn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Divergence {
    /// Not checked (no leader, leader unreachable, or not needed this cycle).
    Unknown,
    /// Our WAL is a prefix of the leader's: plain streaming works.
    None,
    /// Our timeline forked off the leader's: pg_rewind (or reinitialize) is required.
    Diverged,
}

/// The one long action the shell runs in the background (Patroni's AsyncExecutor).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LongAction {
    pub kind: LongActionKind,
    pub started_at: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LongActionKind {
    Bootstrap,
    CreateReplica,
    Promote,
    Restart,
    StartAfterDemotion,
    CrashRecovery,
    Rewind,
    Reinitialize,
}

impl LongActionKind {
    /// Patroni's wording for the action in "updated leader lock during ...".
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bootstrap => "bootstrap",
            Self::CreateReplica => "creating replica",
            Self::Promote => "promote",
            Self::Restart => "restart",
            Self::StartAfterDemotion => "starting after demotion",
            Self::CrashRecovery => "doing crash recovery in a single user mode",
            Self::Rewind => "running pg_rewind",
            Self::Reinitialize => "reinitialize",
        }
    }
}

/// Our own view of the leader lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnLease {
    /// Send time of the last successful keepalive + TTL − safety margin, on our monotonic
    /// clock. Past it a primary must stop accepting writes (design invariant 6).
    pub deadline: Instant,
}

/// One peer's answer to `GET <api_url>/patroni` (2 s timeout, no retries).
#[derive(Debug, Clone, PartialEq)]
pub struct PeerAnswer {
    pub name: MemberName,
    pub reply: PeerReply,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PeerReply {
    Unreachable,
    Status(PeerStatus),
}

/// The fields of a peer's `/patroni` status that the leader race reads.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PeerStatus {
    /// Running as a primary that is not in recovery ("Primary is still alive").
    pub is_primary: bool,
    /// Its WAL position (primary: location; replica: max(received, replayed)).
    pub wal_position: Option<Lsn>,
    pub timeline: Option<Timeline>,
    pub tags: Tags,
    pub watchdog_failed: bool,
}

impl Observation {
    /// The `pre_promote` script failed less than `ttl` ago.
    pub fn pre_promote_failed_recently(&self, ttl: std::time::Duration) -> bool {
        self.pre_promote_failed_at
            .is_some_and(|at| self.now.saturating_since(at) < ttl)
    }
}
