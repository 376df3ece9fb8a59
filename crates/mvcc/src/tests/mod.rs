//! In-crate tests: rule tables, a reference model and property tests against it.

mod helpers;
mod model;
mod properties;
mod revision_log;
mod rules_auth;
mod rules_kv;
mod rules_lease;
mod rules_txn;
mod snapshot_format;
