//! The cluster state of one pgwarden scope in Patroni's key layout.
//!
//! It owns the keys under `/<namespace>/<scope>/` (`leader`, `members/<name>`, `initialize`,
//! `config`, `status`, `history`, `failover`, `sync`), their JSON values as Patroni writes
//! them, the parsing of one prefix read into `ha`'s [`ha::ClusterView`], and the small
//! [`KvBackend`] trait the agent writes through.
//! The in-process implementation ([`LocalStore`]) calls the etcd service layer of the member
//! in the same process (no loopback gRPC hop).
//! It must not know PostgreSQL, HA decisions, or how the store is replicated.

mod backend;
mod keys;
mod local;
mod values;
mod view;

pub use backend::{ChangedKeys, Error, Expect, KeyValue, KvBackend, Result};
pub use keys::Keys;
pub use local::LocalStore;
pub use values::{HistoryEntry, MemberData, StatusData, dynamic_config_from_json};
pub use view::{Snapshot, parse_snapshot, tags_from_map};
