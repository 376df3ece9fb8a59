//! The chaos scenarios, each on a fresh three-host cluster in synchronous mode with a writer
//! and a 20 Hz observer running. Every scenario checks (a) at most one host accepts writes at
//! any instant (from the writer's and from the observer's record), (b) no acknowledged write
//! is lost and no refused one appears, (d) after the fault the cluster heals: one primary and
//! every replica streaming. Each prints a `chaos summary` line with the failover time and the
//! write gap.

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
#[ignore = "pgwarden bug found here: the old primary (agent frozen, PostgreSQL running) keeps streaming WAL to the third host until that host repoints to the new primary, so the third host is ahead of the new timeline's fork point (PostgreSQL: new timeline forked off before current recovery point) and stays in archive recovery; the agent does not rewind or re-create such a replica, so the cluster does not heal (2 of 7 runs beyond 120 s); CHAOS_KEEP_FILES=1 keeps the logs"]
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
