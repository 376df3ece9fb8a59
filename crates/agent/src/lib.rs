//! The HA agent of pgwarden: the imperative shell around `ha::decide`.
//!
//! It owns the `pgwarden run` configuration ([`config`]: a `patroni.yml` with a `raft:`
//! section), and the loop ([`Agent`]): wake on a store change, a postmaster exit, a finished
//! long action or the timer; observe the store (through [`dcs`]) and the local PostgreSQL
//! (through [`postgres`]); call `ha::decide`; execute its actions in order with timeouts (long
//! ones — initdb, clone, rewind — on a task of their own so the lease keeps being renewed);
//! publish the member key (bound to the node's lease) and the status the REST API serves.
//!
//! Root: PostgreSQL refuses to run as root. When pgwarden runs as root, every PostgreSQL
//! program runs as `postgresql.os_user` (default `postgres`) and the data directory is handed
//! to that user; otherwise everything runs as the current user.
//!
//! It must not know how the store is replicated (only the [`dcs::KvBackend`] trait), nor the
//! etcd wire API, nor serve HTTP itself: the `rest` crate does, from the published status
//! and through [`AgentControl`], its [`rest::ClusterControl`] (store reads and writes, plus
//! restart, reload and reinitialize commands the loop runs between cycles).
//! The `raft:` TLS files are checked with `consensus::TlsFiles`, the store's own PEM parser;
//! nothing else of `consensus` is used here.

mod act;
mod agent;
mod commands;
pub mod config;
mod control;
mod lease;
mod peers;
mod pending_restart;
mod pg;
mod reload;
mod status;
mod sync;
mod watchdog;

pub use agent::{Agent, AgentError, LEASE_SAFETY_MARGIN};
pub use commands::{Command, CommandReceiver};
pub use config::{ConfigError, RunConfig};
pub use control::AgentControl;
pub use status::identity;
