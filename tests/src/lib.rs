//! Shared harness for pgwarden's cross-implementation suites.
//!
//! It owns starting real member processes — either a real etcd (`/usr/bin/etcd`) or `pgwarden etcd` —
//! from the same etcd command-line flags, waiting for them with deadlines, faulting them (SIGKILL,
//! SIGTERM, SIGSTOP/SIGCONT, restart) and tearing everything down on drop, plus small helpers for the
//! `etcd-client` crate and `etcdctl`. It must not know pgwarden's internals: the suites judge pgwarden
//! only through the etcd wire API, exactly as they judge etcd, so every difference shows.

pub mod cases;
pub mod cluster;
pub mod etcdctl;
pub mod grpc;
pub mod known_gaps;
pub mod member;
pub mod ports;
pub mod target;
pub mod tls;
pub mod wait;

pub use cluster::Cluster;
pub use cluster::ClusterOptions;
pub use etcdctl::Etcdctl;
pub use target::Target;
pub use wait::eventually;

/// Installs a test log subscriber once per process (`RUST_LOG` filters; default info).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}
