//! What `decide` returns: ordered actions, a typed reason, a Patroni-worded message and the
//! next wake-up. Code matches on [`Reason`]; humans read [`Decision::message`].

use std::fmt;

use serde::Serialize;

use crate::observation::MemberRole;
use crate::types::{Instant, MemberName, SystemId};

/// One cycle's verdict.
///
/// Contract with the shell: actions run in order, and the first one that fails ends the cycle
/// (later actions are skipped and the shell observes again at once). So `[AcquireLeaderKey,
/// Promote]` promotes only if the key was won, and `[RenewLease, Promote]` only if the renewal
/// succeeded (a successful renewal moves our lease deadline past `now`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub actions: Vec<Action>,
    pub reason: Reason,
    /// The heartbeat line, e.g. `no action. I am (n1), the leader with the lock`.
    pub message: String,
    /// Run the next cycle no later than this (earlier on a watch event or process exit).
    pub next_wakeup: Instant,
}

/// An effect for the shell to carry out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Create the leader key bound to our lease (txn `create_revision == 0`).
    AcquireLeaderKey,
    /// Keepalive our lease and CAS-refresh the leader key (fails if someone else holds it).
    RenewLease,
    /// Delete the leader key if its value is our name.
    ReleaseLeaderKey,
    /// Switchover, after our PostgreSQL stopped: in one transaction, if the leader key is
    /// still ours, make it `to`'s, bound to `to`'s lease (the one its member key carries), so
    /// the candidate promotes on the watch event without racing anyone. When `to`'s lease is
    /// unknown, release the key instead (the candidate then acquires it).
    HandOverLeaderKey { to: MemberName },
    /// Write the leader key unconditionally (only right after our own bootstrap).
    TakeLeaderKey,
    /// Create `/initialize` with an empty value (the bootstrap race; create-only).
    ClaimInitializeKey,
    /// Write `/initialize` = system identifier: create-only when the key is absent (adopting
    /// an existing primary; losing that race ends the cycle), or replace the empty value our
    /// own bootstrap claimed.
    WriteInitializeKey { system_id: SystemId },
    /// Delete the `/failover` key (consumed or stale).
    DeleteFailoverKey,
    /// Ask these members `GET /patroni` and observe again with the answers.
    QueryPeers { members: Vec<MemberName> },
    /// Synchronous mode, right before promoting: write `/sync` = {leader: me, no standbys}
    /// (CAS; a failure ends the cycle, so no promotion) and set `synchronous_standby_names`
    /// to these members (strict mode: the previous `/sync` members except me, so commits wait
    /// for them; the strict placeholder if none) or empty when not strict.
    PrepareSyncForPromote {
        synchronous_standby_names: Vec<MemberName>,
    },
    /// Arm the watchdog (a no-op when it is off or already armed), right after this node took
    /// the leader key and before it promotes or keeps serving as primary. `required` mode and
    /// it cannot be armed: the shell releases the leader key if it holds it, reports
    /// `watchdog_failed` and fails the action, so the cycle ends before any promotion.
    /// `automatic` mode: a warning, and the cycle goes on.
    ArmWatchdog,
    /// Our own bootstrap finished but this node may not become primary (its required
    /// watchdog is unusable): stop PostgreSQL (immediate), empty the data directory and
    /// delete the `/initialize` claim (only while it is still our empty one), so another
    /// member can bootstrap the cluster.
    CancelBootstrap,
    /// Promote the local replica (`pg_promote()` / `pg_ctl promote`).
    Promote,
    /// As the primary: run `sync::plan` over `pg_stat_replication` and apply its steps in order
    /// (mode off: delete `/sync` and restore the user's `synchronous_standby_names`).
    ReconcileSynchronousStandbys,
    /// Stop serving as primary in the given mode (see [`DemoteMode`]).
    Demote { mode: DemoteMode },
    /// Start the crashed primary in place (crash recovery) while we hold the lock.
    StartAsPrimary,
    /// Start in recovery without an upstream (we hold the lock; the next cycle promotes).
    StartReadOnly,
    /// Start as a replica streaming from `upstream` (`None` = no upstream known yet).
    StartAsReplica { upstream: Option<MemberName> },
    /// Rewrite `primary_conninfo`/slot to follow `upstream` and reload (or restart if needed).
    RepointTo { upstream: Option<MemberName> },
    /// Stop PostgreSQL if it runs (fast), crash-recover in single-user mode if pg_control
    /// says it was not shut down cleanly, run pg_rewind against `source` (which must have
    /// checkpointed since its promotion), then start as its replica.
    Rewind { source: MemberName },
    /// Stop PostgreSQL (immediate), wipe the data directory and clone again from `source`.
    Reinitialize { source: MemberName },
    /// initdb a new cluster (the `initialize` race winner only).
    Bootstrap,
    /// Clone a replica from `source` with the configured methods (`None` = a no-leader method).
    CreateReplica { source: Option<MemberName> },
    /// Stop and start again without a role change.
    RestartInPlace,
    /// Cancel the long action in progress.
    CancelLongAction,
    /// Fire a user callback (asynchronously, replacing a still-running one).
    RunCallback {
        event: CallbackEvent,
        role: MemberRole,
    },
    /// Stop the agent: continuing could damage data (e.g. system identifier mismatch).
    ExitFatal,
}

/// Patroni's demotion modes (patroni.md §1.9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DemoteMode {
    /// Store unreachable: fast stop, keep the key (let it expire), do not look up a leader.
    Offline,
    /// Switchover: checkpoint, fast stop, release the key, then follow the new leader.
    Graceful,
    /// Switchover to a chosen candidate: checkpoint, fast stop, keep the key for the
    /// `HandOverLeaderKey` that follows, then follow the new leader.
    Handover,
    /// Not fit to be primary: immediate stop, release the key, start again as replica.
    Immediate,
    /// Lost the lock (or our lease deadline passed): immediate stop, key is not ours to delete.
    #[serde(rename = "immediate-nolock")]
    ImmediateNoLock,
}

impl DemoteMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Offline => "offline",
            Self::Graceful => "graceful",
            Self::Handover => "handover",
            Self::Immediate => "immediate",
            Self::ImmediateNoLock => "immediate-nolock",
        }
    }

    /// Whether this mode deletes the leader key itself.
    pub fn releases_leader_key(self) -> bool {
        matches!(self, Self::Graceful | Self::Immediate)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallbackEvent {
    OnStart,
    OnStop,
    OnRestart,
    OnReload,
    OnRoleChange,
}

impl CallbackEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OnStart => "on_start",
            Self::OnStop => "on_stop",
            Self::OnRestart => "on_restart",
            Self::OnReload => "on_reload",
            Self::OnRoleChange => "on_role_change",
        }
    }
}

/// Why a member may not race for the leader key (patroni.md §1.7), in check order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NotHealthiest {
    NoFailoverTag,
    /// The watchdog is required but unusable.
    WatchdogFailed,
    /// The `pre_promote` script failed less than `ttl` ago.
    PrePromoteFailed,
    Starting,
    TimelineBehind,
    /// A `/failover` key names another candidate that is healthy.
    FailoverCandidateIsOther {
        candidate: MemberName,
    },
    /// A switchover in synchronous mode: only synchronous standbys may race.
    NotSyncStandby,
    LagTooHigh {
        lag: u64,
        maximum: u64,
    },
    UnknownWalPosition,
    PrimaryStillAlive {
        peer: MemberName,
    },
    PeerAhead {
        peer: MemberName,
    },
    PeerHigherPriority {
        peer: MemberName,
    },
    /// Quorum mode: fewer than `/sync.quorum` voters are known to be no further than me, so
    /// an acknowledged commit may be missing here.
    QuorumNotReached {
        votes: u32,
        needed: u32,
    },
    /// After a manual failover the former leader races only if nobody else is healthy.
    FormerLeaderWaits {
        healthy_peer: MemberName,
    },
}

impl fmt::Display for NotHealthiest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoFailoverTag => f.write_str("nofailover tag is set"),
            Self::WatchdogFailed => f.write_str("the required watchdog is not usable"),
            Self::PrePromoteFailed => f.write_str("the pre_promote script failed recently"),
            Self::Starting => f.write_str("postgres is still starting"),
            Self::TimelineBehind => f.write_str("my timeline is behind the cluster timeline"),
            Self::FailoverCandidateIsOther { candidate } => {
                write!(f, "manual failover candidate is {candidate}")
            }
            Self::NotSyncStandby => f.write_str("i am not a synchronous standby"),
            Self::LagTooHigh { lag, maximum } => {
                write!(f, "my lag {lag} exceeds maximum_lag_on_failover {maximum}")
            }
            Self::UnknownWalPosition => f.write_str("my WAL position is unknown"),
            Self::PrimaryStillAlive { peer } => write!(f, "primary {peer} is still alive"),
            Self::PeerAhead { peer } => write!(f, "{peer} has a higher WAL position"),
            Self::PeerHigherPriority { peer } => {
                write!(
                    f,
                    "{peer} has the same WAL position and a higher failover_priority"
                )
            }
            Self::FormerLeaderWaits { healthy_peer } => {
                write!(f, "i am the former leader and {healthy_peer} is healthy")
            }
            Self::QuorumNotReached { votes, needed } => write!(
                f,
                "only {votes} of the {needed} quorum votes say I have every synchronous commit"
            ),
        }
    }
}

/// Why the decision is what it is. `Display` renders Patroni's heartbeat wording.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Reason {
    LeaderWithLock { me: MemberName },
    FollowingLeader { me: MemberName, leader: MemberName },
    RepointingToLeader { leader: MemberName },
    PromotedByAcquiringLock,
    AcquiredLockAsPrimary,
    PromotingWithLock,
    NotHealthiest { why: NotHealthiest },
    AskingPeers,
    LeaseDeadlinePassed,
    LostLockDemoting,
    StoreUnreachableDemoting,
    StoreUnreachable,
    LongActionWithLock { action: &'static str },
    LongActionInProgress { action: &'static str },
    LostLeaderBeforePromote,
    PrimaryWithoutLockDuringAction,
    CrashRecoveryTimedOut,
    StartingWithLock,
    StartTimedOut,
    StartFailedReleasingLock,
    RestartingPrimaryAfterCrash,
    FailingOverAfterCrash,
    StartingReadOnlyWithLock,
    StartingAsReplica,
    Rewinding { source: MemberName },
    Reinitializing { source: MemberName },
    DivergedCannotRewind,
    BootstrapRace,
    WaitingForLeaderToBootstrap,
    CloningFromLeader { leader: MemberName },
    CloningWithoutLeader,
    DataDirEmptyReleasingLock,
    InvalidDataDir,
    SystemIdMismatch,
    StartOnPrimaryFirst,
    Switchover,
    SwitchoverNoHealthyMembers,
    SwitchoverScheduled,
    FailoverKeyStale,
    BootstrapFinished,
    WaitingForStart,
    ReleasedLockNotPrimary,
    NoLeaderWhilePaused,
    RaceBackoff,
    PrePromoteFailedReleasingLock,
    WatchdogFailedNotBootstrapping,
    WatchdogFailedCancellingBootstrap,
    WatchdogFailedReleasingLock,
    Paused { inner: Box<Reason> },
}

impl Reason {
    /// A short stable name for logs and the metric label (`Paused` reports its inner reason;
    /// pause has its own metric).
    pub fn label(&self) -> &'static str {
        match self {
            Self::LeaderWithLock { .. } => "leader_with_lock",
            Self::FollowingLeader { .. } => "following_leader",
            Self::RepointingToLeader { .. } => "repointing_to_leader",
            Self::PromotedByAcquiringLock => "promoted_by_acquiring_lock",
            Self::AcquiredLockAsPrimary => "acquired_lock_as_primary",
            Self::PromotingWithLock => "promoting_with_lock",
            Self::NotHealthiest { .. } => "not_healthiest",
            Self::AskingPeers => "asking_peers",
            Self::LeaseDeadlinePassed => "lease_deadline_passed",
            Self::LostLockDemoting => "lost_lock_demoting",
            Self::StoreUnreachableDemoting => "store_unreachable_demoting",
            Self::StoreUnreachable => "store_unreachable",
            Self::LongActionWithLock { .. } => "long_action_with_lock",
            Self::LongActionInProgress { .. } => "long_action_in_progress",
            Self::LostLeaderBeforePromote => "lost_leader_before_promote",
            Self::PrimaryWithoutLockDuringAction => "primary_without_lock_during_action",
            Self::CrashRecoveryTimedOut => "crash_recovery_timed_out",
            Self::StartingWithLock => "starting_with_lock",
            Self::StartTimedOut => "start_timed_out",
            Self::StartFailedReleasingLock => "start_failed_releasing_lock",
            Self::RestartingPrimaryAfterCrash => "restarting_primary_after_crash",
            Self::FailingOverAfterCrash => "failing_over_after_crash",
            Self::StartingReadOnlyWithLock => "starting_read_only_with_lock",
            Self::StartingAsReplica => "starting_as_replica",
            Self::Rewinding { .. } => "rewinding",
            Self::Reinitializing { .. } => "reinitializing",
            Self::DivergedCannotRewind => "diverged_cannot_rewind",
            Self::BootstrapRace => "bootstrap_race",
            Self::WaitingForLeaderToBootstrap => "waiting_for_leader_to_bootstrap",
            Self::CloningFromLeader { .. } => "cloning_from_leader",
            Self::CloningWithoutLeader => "cloning_without_leader",
            Self::DataDirEmptyReleasingLock => "data_dir_empty_releasing_lock",
            Self::InvalidDataDir => "invalid_data_dir",
            Self::SystemIdMismatch => "system_id_mismatch",
            Self::StartOnPrimaryFirst => "start_on_primary_first",
            Self::Switchover => "switchover",
            Self::SwitchoverNoHealthyMembers => "switchover_no_healthy_members",
            Self::SwitchoverScheduled => "switchover_scheduled",
            Self::FailoverKeyStale => "failover_key_stale",
            Self::BootstrapFinished => "bootstrap_finished",
            Self::WaitingForStart => "waiting_for_start",
            Self::ReleasedLockNotPrimary => "released_lock_not_primary",
            Self::NoLeaderWhilePaused => "no_leader_while_paused",
            Self::RaceBackoff => "race_backoff",
            Self::PrePromoteFailedReleasingLock => "pre_promote_failed_releasing_lock",
            Self::WatchdogFailedNotBootstrapping => "watchdog_failed_not_bootstrapping",
            Self::WatchdogFailedCancellingBootstrap => "watchdog_failed_cancelling_bootstrap",
            Self::WatchdogFailedReleasingLock => "watchdog_failed_releasing_lock",
            Self::Paused { inner } => inner.label(),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LeaderWithLock { me } => {
                write!(f, "no action. I am ({me}), the leader with the lock")
            }
            Self::FollowingLeader { me, leader } => write!(
                f,
                "no action. I am ({me}), a secondary, and following a leader ({leader})"
            ),
            Self::RepointingToLeader { leader } => {
                write!(f, "following new leader after trying and failing to obtain lock; changing primary_conninfo to {leader}")
            }
            Self::PromotedByAcquiringLock => {
                f.write_str("promoted self to leader by acquiring session lock")
            }
            Self::AcquiredLockAsPrimary => f.write_str("acquired session lock as a leader"),
            Self::PromotingWithLock => f.write_str("promoted self to leader because I had the session lock"),
            Self::NotHealthiest { why } => write!(
                f,
                "following a different leader because i am not the healthiest node ({why})"
            ),
            Self::AskingPeers => f.write_str("asking other members before racing for the leader lock"),
            Self::LeaseDeadlinePassed => f.write_str(
                "demoting self because the leader lease could not be renewed before its deadline",
            ),
            Self::LostLockDemoting => {
                f.write_str("demoting self because i do not have the lock and i was a leader")
            }
            Self::StoreUnreachableDemoting => {
                f.write_str("demoted self because DCS is not accessible and I was a leader")
            }
            Self::StoreUnreachable => f.write_str("DCS is not accessible"),
            Self::LongActionWithLock { action } => {
                write!(f, "updated leader lock during {action}")
            }
            Self::LongActionInProgress { action } => write!(f, "{action} in progress"),
            Self::LostLeaderBeforePromote => f.write_str("lost leader before promote"),
            Self::PrimaryWithoutLockDuringAction => f.write_str(
                "demoting self because i do not have the lock and i was a leader",
            ),
            Self::CrashRecoveryTimedOut => f.write_str(
                "cancelled crash recovery: it took longer than primary_start_timeout",
            ),
            Self::StartingWithLock => {
                f.write_str("updated leader lock during starting after failure")
            }
            Self::StartTimedOut => f.write_str(
                "stopped PostgreSQL to fail over: start took longer than primary_start_timeout",
            ),
            Self::StartFailedReleasingLock => {
                f.write_str("removed leader key because postgres failed to start")
            }
            Self::RestartingPrimaryAfterCrash => f.write_str("starting primary after failure"),
            Self::FailingOverAfterCrash => {
                f.write_str("stopped PostgreSQL to fail over after a crash")
            }
            Self::StartingReadOnlyWithLock => {
                f.write_str("starting as readonly because i had the session lock")
            }
            Self::StartingAsReplica => f.write_str("starting as a secondary"),
            Self::Rewinding { source } => write!(f, "running pg_rewind from {source}"),
            Self::Reinitializing { source } => {
                write!(f, "reinitializing: timelines diverged and rewind is not possible (source {source})")
            }
            Self::DivergedCannotRewind => f.write_str(
                "rewind is not possible; the replica stays diverged until it is reinitialized",
            ),
            Self::BootstrapRace => f.write_str("trying to bootstrap a new cluster"),
            Self::WaitingForLeaderToBootstrap => f.write_str("waiting for leader to bootstrap"),
            Self::CloningFromLeader { leader } => {
                write!(f, "trying to bootstrap from leader '{leader}'")
            }
            Self::CloningWithoutLeader => f.write_str("trying to bootstrap (without leader)"),
            Self::DataDirEmptyReleasingLock => {
                f.write_str("data directory is empty; releasing the leader lock")
            }
            Self::InvalidDataDir => f.write_str(
                "data directory has an invalid pg_control; consider reinitializing this member",
            ),
            Self::SystemIdMismatch => f.write_str(
                "the system identifier of the data directory differs from the cluster's /initialize key",
            ),
            Self::StartOnPrimaryFirst => f.write_str(
                "no initialize key and postgres runs as a replica; start on the primary first",
            ),
            Self::Switchover => f.write_str("switchover: demoting myself"),
            Self::SwitchoverNoHealthyMembers => f.write_str(
                "no action. manual failover is not possible: no healthy members found",
            ),
            Self::SwitchoverScheduled => {
                f.write_str("no action. awaiting the scheduled switchover")
            }
            Self::FailoverKeyStale => f.write_str("removed a stale or invalid failover key"),
            Self::BootstrapFinished => f.write_str("initialized a new cluster"),
            Self::WaitingForStart => f.write_str("postgres is still starting"),
            Self::ReleasedLockNotPrimary => {
                f.write_str("removed leader lock because postgres is not running as primary")
            }
            Self::NoLeaderWhilePaused => f.write_str("no leader; not promoting while paused"),
            Self::PrePromoteFailedReleasingLock => {
                f.write_str("Releasing leader lock because the pre_promote script failed")
            }
            Self::RaceBackoff => f.write_str(
                "no leader lock; postponing the race while primary_race_backoff runs",
            ),
            Self::WatchdogFailedNotBootstrapping => {
                f.write_str("not bootstrapping: the required watchdog is not usable")
            }
            Self::WatchdogFailedCancellingBootstrap => f.write_str(
                "cancelling our bootstrap: the required watchdog is not usable",
            ),
            Self::WatchdogFailedReleasingLock => f.write_str(
                "releasing the leader lock: the required watchdog is not usable",
            ),
            Self::Paused { inner } => write!(f, "PAUSE: {inner}"),
        }
    }
}
