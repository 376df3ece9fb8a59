//! The etcd v3 API over pgwarden's replicated store.
//!
//! Owns: the store service (propose-and-wait, read barrier, response headers) in [`service`];
//! one thin gRPC adapter per etcd service in [`grpc`] (validate → call service → map error);
//! the watch sessions fed by the member's applied-event feed in [`watch`]; the leader-only
//! lease keeper and the follower's keepalive forwarding in [`lease`]; etcd's server-side Lock
//! and Election recipes in [`service::recipes`]; `/version` and `/health` in [`http`]; etcd's
//! HTTP JSON gateway (`/v3/...`, a second adapter over the same service) in [`gateway`]; and
//! [`serve`]-ing all of it on one listener, with `GET /metrics` ([`metrics`]) and space
//! management (the backend quota and auto-compaction, [`space`]).
//! The client listener accepts the URL-form HTTP/2 `:authority` of etcdctl 3.4 ([`h2_authority`])
//! and, when configured, TLS with client certificate authentication ([`tls`]).
//! Errors become gRPC statuses in exactly one function, [`error::to_status`], backed by
//! etcd's catalogue in `etcd_proto::errors`.
//!
//! Must not know: redb or any storage detail, openraft internals, HA decisions, PostgreSQL.
//! It sees the member only through the small [`backend::Backend`] trait (reads go to the
//! applied `mvcc::Store`), so the service layer stays transport-free for a second (JSON
//! gateway) adapter.

pub mod backend;
pub mod config;
pub mod error;
pub mod gateway;
pub mod grpc;
pub mod h2_authority;
pub mod http;
pub mod lease;
pub mod metrics;
mod raft_backend;
pub mod server;
pub mod service;
pub mod space;
pub mod tls;
mod validate;
pub mod watch;

#[cfg(test)]
mod testing;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
mod server_test;

pub use backend::{AppliedEvents, Backend, NodeStatus, StatusExt};
pub use config::ServerConfig;
pub use error::{ServiceError, to_status};
pub use server::{ServeError, serve, serve_backend};
pub use service::Service;
