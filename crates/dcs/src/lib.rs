//! The cluster state of one pgwarden scope in Patroni's key layout.
//!
//! It owns the keys under `/<namespace>/<scope>/` (`leader`, `members/<name>`, `initialize`,
//! `config`, `status`, `history`, `failover`, `sync`), their JSON values as Patroni writes
//! them, the parsing of one prefix read into `ha`'s [`ha::ClusterView`], and the small
//! [`KvBackend`] trait the agent writes through, with two implementations of the same
//! semantics (the HA code is the same over either):
//! * [`LocalStore`], for the embedded store (`raft:`), calls the etcd service layer of the
//!   member in the same process (no loopback gRPC hop);
//! * [`EtcdStore`], for an external etcd cluster (`etcd3:`), speaks the etcd v3 gRPC API to
//!   its endpoints, retrying unreachable ones and reopening its watch on its own.
//!
//! It must not know PostgreSQL, HA decisions, or how the store is replicated.

mod backend;
mod keys;
mod local;
mod remote;
mod values;
mod view;

pub use backend::{ChangedKeys, Error, Expect, KeyValue, KvBackend, Result};
pub use keys::Keys;
pub use local::LocalStore;
pub use remote::{EtcdOptions, EtcdStore, EtcdTls};
pub use values::{
    HistoryEntry, MemberData, StatusData, dynamic_config_from_json, synchronous_mode_from_json,
};
pub use view::{Snapshot, parse_snapshot, tags_from_map};
