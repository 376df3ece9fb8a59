//! Watch: one [`WatchSession`] per gRPC watch stream, fed by the member's applied-event feed.
//!
//! The feed (`Backend::subscribe`) is the hub: every member publishes applied events in log
//! order, so a session sees revisions in order across Raft leader changes. A watcher that
//! starts in the past, or whose stream's feed receiver lagged, replays the MVCC history in
//! windows of 1000 revisions and then continues live; per-watcher `next_rev` makes the switch
//! seamless (no gap, no duplicate).
//!
//! A follower that installs a Raft snapshot jumps revisions without publishing events; each
//! stream notices within a second (or at the next applied batch) and its watchers replay the
//! difference from history, or get `compact_revision` if the snapshot no longer holds it.

pub mod session;
pub mod stream;

pub use session::WatchSession;
