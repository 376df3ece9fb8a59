//! Watch: one [`WatchSession`] per gRPC watch stream, fed by the member's applied-event feed.
//!
//! The feed (`Backend::subscribe`) is the hub: every member publishes applied events in log
//! order, so a session sees revisions in order across Raft leader changes. A session that
//! starts in the past, or whose feed receiver lagged, replays from the MVCC history and then
//! continues live; per-watcher `next_rev` makes the switch seamless (no gap, no duplicate).

pub mod session;
pub mod stream;

pub use session::WatchSession;
