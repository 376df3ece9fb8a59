//! etcd v3 conformance: every case runs against a real etcd (the reference) and against `pgwarden etcd`,
//! through independent clients (the `etcd-client` crate and Debian's `etcdctl`).
//!
//! Assertions are written from etcd's observed behaviour; where etcd 3.4 differs from
//! `etcd-api.md`, etcd wins and the case says so in a comment.
//! Test names read `<area>::<target>::<case>`, so `cargo nextest run -E 'test(/::pgwarden::/)'`
//! runs one target. The suites need the pgwarden binary built first: `cargo build -p pgwarden`.

mod binary;
mod cluster_api;
mod compact;
mod etcdctl;
mod kv;
mod lease;
mod maintenance;
mod restart;
mod txn;
mod watch;
