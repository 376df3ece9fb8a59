//! The chaos suite's harness: three hosts as network namespaces on a bridge inside a hub
//! namespace of their own (no route out), `pgwarden run` with real PostgreSQL 15 on each,
//! the test's clients in the hub namespace, faults (host kills, nftables partitions, frozen
//! agents), and checks over the recorded client history, never over log lines.
//! It must not know pgwarden's internals: it talks to hosts only through PostgreSQL and the
//! REST API, and injects faults only from outside the processes.

pub mod clock;
pub mod cluster;
pub mod degrade;
pub mod disk;
mod faults;
pub mod history;
pub mod linearizable;
pub mod load;
pub mod net;
pub mod netfault;
pub mod scenario;
pub mod store_history;
pub mod watchdog;

pub use cluster::Cluster;
pub use net::Network;
pub use scenario::{Fault, run};
