//! The HA decision core of pgwarden.
//!
//! It owns the decision table of the PostgreSQL supervisor: [`decide`] maps one immutable
//! [`Observation`] (the cluster as read from the store, local PostgreSQL facts, the long action
//! in progress, our own lease deadline, peers' answers, config and `now`) to a [`Decision`]
//! (ordered actions, a typed reason, Patroni's one-line message and the next wake-up), plus the
//! failover candidate ranking and the synchronous-standby resolver.
//! It must not know tokio, I/O, clocks or randomness: time is an input, every effect is an
//! [`Action`] for the shell (the agent) to execute, and nothing here can fail.

mod candidate;
mod decide;
mod decision;
mod observation;
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
