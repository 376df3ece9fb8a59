//! Multi-process faults on three-member clusters: leader kill and failover, catch-up after restart
//! and by snapshot, membership change with a fourth process, and a member cut off from the majority.
//!
//! Each case runs against pgwarden and, as the reference, against a real etcd started with the
//! same flags. Properties are checked from what clients observed (acknowledged writes, revisions,
//! errors), never from log lines. Times are printed for the record; assertions only use generous
//! bounds, since these are not benchmarks.

mod catch_up;
mod failover;
mod isolation;
mod membership;
mod recorder;
