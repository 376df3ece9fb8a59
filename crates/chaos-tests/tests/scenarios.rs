//! The chaos scenarios, each on a fresh three-host cluster in synchronous mode with a writer
//! and a 20 Hz observer running. Every scenario checks (a) at most one host accepts writes at
//! any instant (from the writer's and from the observer's record), (b) no acknowledged write
//! is lost and no refused one appears, (c) the store's key-value history, recorded by an etcd
//! v3 client per host meanwhile, is linearizable, (d) after the fault the cluster heals: one
//! primary and every replica streaming. Each prints a `chaos summary` line with the failover
//! time, the write gap and the store operations checked.

use chaos_tests::{Fault, run};

#[test]
fn kill_primary_host() -> anyhow::Result<()> {
    run("kill -9 primary host", Fault::KillPrimaryHost)
}

#[test]
fn partition_primary_from_majority() -> anyhow::Result<()> {
    run("partition primary", Fault::PartitionPrimary)
}

#[test]
fn freeze_primary_agent() -> anyhow::Result<()> {
    run("freeze primary agent", Fault::FreezePrimaryAgent)
}

#[test]
fn partition_replica() -> anyhow::Result<()> {
    run("partition replica", Fault::PartitionReplica)
}

#[test]
fn partition_raft_leader_replica() -> anyhow::Result<()> {
    run(
        "partition Raft-leader replica",
        Fault::PartitionRaftLeaderReplica,
    )
}

#[test]
fn kill_primary_agent() -> anyhow::Result<()> {
    run("kill -9 primary agent", Fault::KillPrimaryAgent)
}

#[test]
fn freeze_primary_host() -> anyhow::Result<()> {
    run("freeze primary host", Fault::FreezePrimaryHost)
}

#[test]
fn kill_raft_leader_replica() -> anyhow::Result<()> {
    run("kill -9 Raft-leader replica", Fault::KillRaftLeaderReplica)
}

#[test]
fn rolling_restart() -> anyhow::Result<()> {
    run("rolling restart", Fault::RollingRestart)
}

#[test]
fn concurrent_switchovers() -> anyhow::Result<()> {
    run("concurrent switchovers", Fault::ConcurrentSwitchovers)
}

#[test]
fn one_way_into_primary() -> anyhow::Result<()> {
    run("one-way: primary deaf", Fault::OneWayIntoPrimary)
}

#[test]
fn one_way_from_primary() -> anyhow::Result<()> {
    run("one-way: primary unheard", Fault::OneWayFromPrimary)
}

#[test]
fn packet_loss_on_primary() -> anyhow::Result<()> {
    run("20% loss on primary link", Fault::LossyPrimary)
}

#[test]
fn primary_disk_full() -> anyhow::Result<()> {
    run("primary disk full", Fault::PrimaryDiskFull)
}

#[test]
fn primary_disk_stall() -> anyhow::Result<()> {
    run("primary disk stall", Fault::PrimaryDiskStall)
}

#[test]
fn clock_step_on_primary() -> anyhow::Result<()> {
    run("clock step on primary", Fault::ClockStepPrimary)
}
