//! PostgreSQL control for pgwarden.
//!
//! It owns everything that touches a PostgreSQL instance, as small independent parts rather
//! than one object: configuration rendering ([`config`], pure) and atomic file writes
//! ([`files`], [`datadir`]); the postmaster as a child process with start/stop/reload and an
//! exit notification ([`postmaster`]); SQL facts and commands ([`probe`]); `pg_controldata`
//! ([`controldata`]); timeline divergence ([`timeline`]); bootstrap and replica creation ([`bootstrap`]); pg_rewind ([`rewind`]);
//! user callbacks ([`callbacks`]); and the OS identity PostgreSQL runs as ([`os_user`]:
//! PostgreSQL refuses root).
//! It must not make HA decisions nor know the store: the agent decides, then calls in here.

pub mod bootstrap;
pub mod callbacks;
pub mod config;
pub mod controldata;
pub mod datadir;
mod error;
pub mod files;
mod lsn;
pub mod os_user;
pub mod postmaster;
pub mod probe;
pub mod rewind;
pub mod timeline;
pub mod tools;

pub use error::{Error, Result};
pub use lsn::Lsn;
pub use os_user::RunAs;
pub use postmaster::{AdoptedPostmaster, Postmaster, PostmasterExit, StopMode};
pub use probe::{ConnectTarget, Probe, ServerFacts};
pub use tools::Tools;
