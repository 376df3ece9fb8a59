//! The HA decision core of pgwarden.
//!
//! It owns the decision table of the PostgreSQL supervisor: [`decide`] maps one immutable
//! [`Observation`] (the cluster as read from the store, local PostgreSQL facts, the long action
//! in progress, our own lease deadline, peers' answers, config and `now`) to a [`Decision`]
//! (ordered actions, a typed reason, Patroni's one-line message and the next wake-up), plus the
//! failover candidate ranking and the synchronous-standby resolver.
//! It must not know tokio, I/O, clocks or randomness: time is an input, every effect is an
//! [`Action`] for the shell (the agent) to execute, and nothing here can fail.
//!
//! How the shell drives it, once per cycle:
//! 1. Build an [`Observation`]: the store snapshot (or [`StoreView::Unreachable`]), local
//!    PostgreSQL facts, the long action it runs, its own lease deadline (send time of the last
//!    successful keepalive + TTL − safety margin), and `now`, all on one monotonic clock.
//! 2. Call [`decide`] and log [`Decision::message`].
//! 3. Execute [`Decision::actions`] in order, stopping at the first failure; on
//!    [`Action::QueryPeers`] ask those members' `GET /patroni` (2 s timeout) and decide again
//!    with [`Observation::peers`] filled in.
//! 4. Sleep until [`Decision::next_wakeup`], or less on a store watch event, a postmaster
//!    exit, or a REST request.
//!
//! ```
//! use ha::{Action, ClusterView, Instant, LocalPostgres, NodeConfig, Observation, StoreView, decide};
//!
//! let observation = Observation {
//!     now: Instant::from_secs(100),
//!     node: NodeConfig { name: "n1".into(), can_bootstrap: true, ..NodeConfig::default() },
//!     store: StoreView::Cluster(Box::new(ClusterView::default())),
//!     postgres: LocalPostgres::default(),
//!     long_action: None,
//!     own_lease: None,
//!     watchdog_failed: false,
//!     pre_promote_failed_at: None,
//!     leader_missing_since: None,
//!     peers: None,
//! };
//! // An empty cluster and an empty data directory: race to bootstrap it.
//! let decision = decide(&observation);
//! assert_eq!(decision.actions, [Action::ClaimInitializeKey, Action::Bootstrap]);
//! assert_eq!(decision.message, "trying to bootstrap a new cluster");
//! ```

mod candidate;
mod decide;
mod decision;
mod observation;
pub mod quorum;
pub mod sync;
mod types;

pub use candidate::{
    FailoverCandidate, Healthiness, check_healthiest, rank_failover_candidates,
    synchronous_mode_active,
};
pub use decide::decide;
pub use decision::{Action, CallbackEvent, Decision, DemoteMode, NotHealthiest, Reason};
pub use observation::{
    ClusterView, DataDirState, Divergence, DynamicConfig, FailoverKey, LeaderKey, LeaseState,
    LocalPostgres, LongAction, LongActionKind, Member, MemberRole, MemberState, NodeConfig,
    Observation, OwnLease, PeerAnswer, PeerReply, PeerStatus, PgRole, ProcessState,
    ReplicationState, StoreView, SyncKey, SynchronousMode, Tags,
};
pub use types::{Instant, Lsn, MemberName, SystemId, Timeline};
