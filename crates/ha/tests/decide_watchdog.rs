//! `decide` as tables: `watchdog.mode: required` with an unusable device (`watchdog_failed`).
//! Such a node never becomes primary: not by bootstrap, not by a leader race, not by keeping
//! a key it already holds. Every path to primary arms the watchdog first.

mod common;

use ha::{
    Action, CallbackEvent, DataDirState, DemoteMode, MemberRole, NotHealthiest, PgRole, Reason,
    SystemId,
};

use common::table::*;
use common::*;

fn failed(observation: ha::Observation) -> ha::Observation {
    with(observation, |o| o.watchdog_failed = true)
}

fn fresh() -> ha::Observation {
    with_cluster(
        stopped(with(no_leader(), |o| {
            o.postgres.data_dir = DataDirState::Empty
        })),
        |c| {
            c.initialize = None;
            c.previous_leader = None;
        },
    )
}

/// Our own initdb finished: a running primary, `/initialize` claimed empty, no leader key.
fn bootstrapped() -> ha::Observation {
    with_cluster(
        with(no_leader(), |o| {
            o.postgres.role = PgRole::Primary;
            o.postgres.write_lsn = Some(ha::Lsn(100));
        }),
        |c| c.initialize = Some(None),
    )
}

#[test]
fn required_watchdog_rows() {
    let all_behind = || vec![peer("n2", 900), peer("n3", 900)];
    let not_healthiest = Reason::NotHealthiest {
        why: NotHealthiest::WatchdogFailed,
    };
    run(vec![
        row(
            "fresh cluster, watchdog usable: bootstrap",
            fresh(),
            vec![Action::ClaimInitializeKey, Action::Bootstrap],
            Reason::BootstrapRace,
        ),
        row(
            "fresh cluster, required watchdog unusable: never bootstrap",
            failed(fresh()),
            vec![],
            Reason::WatchdogFailedNotBootstrapping,
        ),
        row(
            "our bootstrap finished: arm before publishing anything",
            bootstrapped(),
            vec![
                Action::ArmWatchdog,
                Action::WriteInitializeKey {
                    system_id: SystemId(42),
                },
                Action::TakeLeaderKey,
                cb(CallbackEvent::OnStart, MemberRole::Primary),
            ],
            Reason::BootstrapFinished,
        ),
        row(
            "our bootstrap finished but the watchdog failed: cancel it, take no key",
            failed(bootstrapped()),
            vec![Action::CancelBootstrap],
            Reason::WatchdogFailedCancellingBootstrap,
        ),
        row(
            "no leader, best candidate, watchdog usable: race, arm, promote",
            peers(no_leader(), all_behind()),
            concat(vec![vec![Action::AcquireLeaderKey], promote()]),
            Reason::PromotedByAcquiringLock,
        ),
        row(
            "no leader, the only candidate, watchdog failed: never race",
            failed(peers(no_leader(), vec![])),
            vec![],
            not_healthiest.clone(),
        ),
        row(
            "running primary without the key, watchdog failed: demote, do not take the key",
            failed(with(no_leader(), |o| {
                o.postgres.role = PgRole::Primary;
                o.postgres.write_lsn = Some(ha::Lsn(1000));
            })),
            demote(DemoteMode::ImmediateNoLock, MemberRole::Replica),
            not_healthiest.clone(),
        ),
        row(
            "running primary without the key, watchdog usable: take the key and arm",
            with(no_leader(), |o| {
                o.postgres.role = PgRole::Primary;
                o.postgres.write_lsn = Some(ha::Lsn(1000));
            }),
            vec![Action::AcquireLeaderKey, Action::ArmWatchdog],
            Reason::AcquiredLockAsPrimary,
        ),
        row(
            "primary with the key, watchdog failed: graceful demote (releases the key)",
            failed(leader_n1()),
            demote(DemoteMode::Graceful, MemberRole::Replica),
            Reason::WatchdogFailedReleasingLock,
        ),
        row(
            "key ours while a replica, watchdog failed: release it, do not promote",
            failed(with(leader_n1(), |o| o.postgres.role = PgRole::Replica)),
            vec![Action::ReleaseLeaderKey],
            Reason::WatchdogFailedReleasingLock,
        ),
        row(
            "key ours while a replica, watchdog usable: arm, then promote",
            with(leader_n1(), |o| o.postgres.role = PgRole::Replica),
            concat(vec![vec![Action::RenewLease], promote()]),
            Reason::PromotingWithLock,
        ),
        row(
            "replica following a leader, watchdog failed: keep following",
            failed(replica_of_n2()),
            vec![],
            Reason::FollowingLeader {
                me: me(),
                leader: name("n2"),
            },
        ),
    ]);
}
