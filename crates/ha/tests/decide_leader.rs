//! `decide` as tables (1/2): safety, the leader with the lock, followers.
//! Each row is (situation, observation, expected actions, expected reason); situations follow
//! patroni.md §1.2–1.9, the safety rows first.
#![expect(clippy::unwrap_used, reason = "fixtures fail loudly")]

mod common;

use ha::{
    Action, DemoteMode, Divergence, LongActionKind, MemberRole, MemberState, NotHealthiest, PgRole,
    ProcessState, Reason, Timeline, decide,
};

use common::table::*;
use common::*;

#[test]
fn safety_rows() {
    run(vec![
        row(
            "lease deadline passed on a primary: demote without waiting for the store",
            lease_deadline(leader_n1(), -1),
            demote(DemoteMode::ImmediateNoLock, MemberRole::Demoted),
            Reason::LeaseDeadlinePassed,
        ),
        row(
            "lease deadline exactly now counts as passed",
            lease_deadline(leader_n1(), 0),
            demote(DemoteMode::ImmediateNoLock, MemberRole::Demoted),
            Reason::LeaseDeadlinePassed,
        ),
        row(
            "lease deadline passed while paused: invariant 6 still holds",
            paused(lease_deadline(leader_n1(), -1)),
            demote(DemoteMode::ImmediateNoLock, MemberRole::Demoted),
            Reason::LeaseDeadlinePassed,
        ),
        row(
            "lease deadline passed with the store unreachable",
            unreachable(lease_deadline(leader_n1(), -5)),
            demote(DemoteMode::ImmediateNoLock, MemberRole::Demoted),
            Reason::LeaseDeadlinePassed,
        ),
        row(
            "lease deadline passed during a restart: cancel it and demote",
            long_action(lease_deadline(leader_n1(), -1), LongActionKind::Restart, 3),
            concat(vec![
                vec![Action::CancelLongAction],
                demote(DemoteMode::ImmediateNoLock, MemberRole::Demoted),
            ]),
            Reason::LeaseDeadlinePassed,
        ),
        row(
            "lease deadline passed while a primary is still starting",
            lease_deadline(
                with(leader_n1(), |o| {
                    o.postgres.process = ProcessState::Starting {
                        since: secs_from_now(-2),
                    }
                }),
                -1,
            ),
            demote(DemoteMode::ImmediateNoLock, MemberRole::Demoted),
            Reason::LeaseDeadlinePassed,
        ),
        row(
            "lease deadline passed while our promotion runs: cancel it",
            long_action(
                lease_deadline(with(leader_n1(), |o| o.postgres.role = PgRole::Replica), -1),
                LongActionKind::Promote,
                2,
            ),
            vec![Action::CancelLongAction],
            Reason::LeaseDeadlinePassed,
        ),
        row(
            "store unreachable on a primary: demote offline (key left to expire)",
            unreachable(leader_n1()),
            demote(DemoteMode::Offline, MemberRole::Demoted),
            Reason::StoreUnreachableDemoting,
        ),
        row(
            "store unreachable on a replica: keep running",
            unreachable(replica_of_n2()),
            vec![],
            Reason::StoreUnreachable,
        ),
        row(
            "a primary that sees another holder demotes at once",
            with(replica_of_n2(), |o| {
                o.postgres.role = PgRole::Primary;
                o.postgres.write_lsn = Some(ha::Lsn(2000));
            }),
            demote(DemoteMode::ImmediateNoLock, MemberRole::Replica),
            Reason::LostLockDemoting,
        ),
        row(
            "a replica in sync mode that is not in /sync never races",
            peers(sync_mode(no_leader(), &["n3"], "n2"), vec![]),
            vec![],
            Reason::NotHealthiest {
                why: NotHealthiest::NotSyncStandby,
            },
        ),
        row(
            "lost promote: the key went to someone else while promoting",
            long_action(replica_of_n2(), LongActionKind::Promote, 1),
            vec![Action::CancelLongAction],
            Reason::LostLeaderBeforePromote,
        ),
        row(
            "a restarting former primary without the key is demoted",
            long_action(
                with(replica_of_n2(), |o| {
                    o.postgres.role = PgRole::Primary;
                    o.postgres.process = ProcessState::Starting {
                        since: secs_from_now(-1),
                    };
                }),
                LongActionKind::Restart,
                1,
            ),
            vec![
                Action::CancelLongAction,
                Action::Demote {
                    mode: DemoteMode::ImmediateNoLock,
                },
            ],
            Reason::PrimaryWithoutLockDuringAction,
        ),
        row(
            "a primary starting up without the key is demoted before it takes writes",
            with(replica_of_n2(), |o| {
                o.postgres.role = PgRole::Primary;
                o.postgres.process = ProcessState::Starting {
                    since: secs_from_now(-1),
                };
            }),
            demote(DemoteMode::ImmediateNoLock, MemberRole::Replica),
            Reason::LostLockDemoting,
        ),
        row(
            "a stalled old primary on an older timeline does not re-take the key",
            with_cluster(
                with(no_leader(), |o| {
                    o.postgres.role = PgRole::Primary;
                    o.postgres.write_lsn = Some(ha::Lsn(5000));
                }),
                |c| c.history_timeline = Some(Timeline(2)),
            ),
            demote(DemoteMode::ImmediateNoLock, MemberRole::Replica),
            Reason::NotHealthiest {
                why: NotHealthiest::TimelineBehind,
            },
        ),
    ]);
}

#[test]
fn leader_rows() {
    run(vec![
        row(
            "steady leader renews",
            leader_n1(),
            vec![Action::RenewLease],
            Reason::LeaderWithLock { me: me() },
        ),
        row(
            "leader after an agent restart (no own lease yet) renews first",
            with(leader_n1(), |o| o.own_lease = None),
            vec![Action::RenewLease],
            Reason::LeaderWithLock { me: me() },
        ),
        row(
            "key is mine but PostgreSQL is a replica: renew, then promote",
            with(leader_n1(), |o| o.postgres.role = PgRole::Replica),
            concat(vec![vec![Action::RenewLease], promote()]),
            Reason::PromotingWithLock,
        ),
        row(
            "key mine, replica, pre_promote just failed: release the key",
            with(leader_n1(), |o| {
                o.postgres.role = PgRole::Replica;
                o.pre_promote_failed_at = Some(secs_from_now(-1));
            }),
            vec![Action::ReleaseLeaderKey],
            Reason::PrePromoteFailedReleasingLock,
        ),
        row(
            "leader in synchronous mode reconciles its standbys",
            sync_mode(leader_n1(), &["n2"], "n1"),
            vec![Action::RenewLease, Action::ReconcileSynchronousStandbys],
            Reason::LeaderWithLock { me: me() },
        ),
        row(
            "leader after sync mode was turned off still cleans /sync up",
            with_cluster(sync_mode(leader_n1(), &["n2"], "n1"), |c| {
                c.config.synchronous_mode = ha::SynchronousMode::Off
            }),
            vec![Action::RenewLease, Action::ReconcileSynchronousStandbys],
            Reason::LeaderWithLock { me: me() },
        ),
        row(
            "key mine in sync mode, PostgreSQL a replica: prepare /sync, then promote",
            with(sync_mode(leader_n1(), &["n1"], "n2"), |o| {
                o.postgres.role = PgRole::Replica
            }),
            concat(vec![
                vec![
                    Action::RenewLease,
                    Action::ArmWatchdog,
                    Action::PrepareSyncForPromote {
                        synchronous_standby_names: vec![],
                    },
                ],
                promote_after_sync(),
            ]),
            Reason::PromotingWithLock,
        ),
        row(
            "switchover requested: ask the candidate first",
            failover_key(leader_n1(), Some("n1"), Some("n2")),
            vec![
                Action::RenewLease,
                Action::QueryPeers {
                    members: vec![name("n2")],
                },
            ],
            Reason::AskingPeers,
        ),
        row(
            "switchover to a healthy candidate: stop, then hand the key over",
            peers(
                failover_key(leader_n1(), Some("n1"), Some("n2")),
                vec![peer("n2", 1000)],
            ),
            vec![
                Action::RenewLease,
                Action::Demote {
                    mode: DemoteMode::Handover,
                },
                Action::HandOverLeaderKey { to: name("n2") },
                cb(ha::CallbackEvent::OnRoleChange, MemberRole::Replica),
            ],
            Reason::Switchover,
        ),
        row(
            "switchover without a candidate: the key goes to the healthiest member",
            peers(
                failover_key(leader_n1(), Some("n1"), None),
                vec![peer("n2", 900), peer("n3", 1000)],
            ),
            vec![
                Action::RenewLease,
                Action::Demote {
                    mode: DemoteMode::Handover,
                },
                Action::HandOverLeaderKey { to: name("n3") },
                cb(ha::CallbackEvent::OnRoleChange, MemberRole::Replica),
            ],
            Reason::Switchover,
        ),
        row(
            "switchover to an unreachable candidate: drop the request",
            peers(
                failover_key(leader_n1(), Some("n1"), Some("n2")),
                vec![unreachable_peer("n2")],
            ),
            vec![Action::RenewLease, Action::DeleteFailoverKey],
            Reason::SwitchoverNoHealthyMembers,
        ),
        row(
            "switchover to a nofailover candidate: no healthy members",
            peers(
                failover_key(leader_n1(), Some("n1"), Some("n2")),
                vec![peer_with("n2", 1000, |s| s.tags.nofailover = true)],
            ),
            vec![Action::RenewLease, Action::DeleteFailoverKey],
            Reason::SwitchoverNoHealthyMembers,
        ),
        row(
            "switchover to a lagging candidate: no healthy members",
            peers(
                with_cluster(failover_key(leader_n1(), Some("n1"), Some("n2")), |c| {
                    c.last_leader_lsn = Some(ha::Lsn(10_000_000))
                }),
                vec![peer("n2", 1)],
            ),
            vec![Action::RenewLease, Action::DeleteFailoverKey],
            Reason::SwitchoverNoHealthyMembers,
        ),
        row(
            "switchover without candidate in sync mode: only the sync standby counts",
            peers(
                sync_mode(failover_key(leader_n1(), Some("n1"), None), &["n3"], "n1"),
                vec![unreachable_peer("n3"), peer("n2", 1000)],
            ),
            vec![Action::RenewLease, Action::DeleteFailoverKey],
            Reason::SwitchoverNoHealthyMembers,
        ),
        row(
            "failover key naming another leader is stale",
            failover_key(leader_n1(), Some("n3"), Some("n2")),
            vec![Action::RenewLease, Action::DeleteFailoverKey],
            Reason::FailoverKeyStale,
        ),
        row(
            "failover key naming me as candidate is consumed",
            failover_key(leader_n1(), None, Some("n1")),
            vec![Action::RenewLease, Action::DeleteFailoverKey],
            Reason::FailoverKeyStale,
        ),
        row(
            "scheduled switchover in the future: wait",
            with_cluster(failover_key(leader_n1(), Some("n1"), Some("n2")), |c| {
                c.failover.as_mut().unwrap().scheduled_at = Some(secs_from_now(3600))
            }),
            vec![Action::RenewLease],
            Reason::SwitchoverScheduled,
        ),
        row(
            "scheduled switchover long past: stale",
            with_cluster(failover_key(leader_n1(), Some("n1"), Some("n2")), |c| {
                c.failover.as_mut().unwrap().scheduled_at = Some(secs_from_now(-3600))
            }),
            vec![Action::RenewLease, Action::DeleteFailoverKey],
            Reason::FailoverKeyStale,
        ),
        row(
            "long action with the key: keep the key alive",
            long_action(leader_n1(), LongActionKind::Restart, 5),
            vec![Action::RenewLease],
            Reason::LongActionWithLock { action: "restart" },
        ),
        row(
            "crash recovery past primary_start_timeout with a healthy replica: give up",
            peers(
                long_action(leader_n1(), LongActionKind::CrashRecovery, 400),
                vec![peer("n2", 1000)],
            ),
            concat(vec![
                vec![Action::RenewLease, Action::CancelLongAction],
                demote(DemoteMode::Immediate, MemberRole::Replica),
            ]),
            Reason::CrashRecoveryTimedOut,
        ),
        row(
            "crash recovery past timeout with nobody to take over: keep going",
            peers(
                long_action(leader_n1(), LongActionKind::CrashRecovery, 400),
                vec![unreachable_peer("n2"), unreachable_peer("n3")],
            ),
            vec![Action::RenewLease],
            Reason::LongActionWithLock {
                action: "doing crash recovery in a single user mode",
            },
        ),
    ]);
}

#[test]
fn follower_rows() {
    run(vec![
        row(
            "healthy replica following the leader",
            replica_of_n2(),
            vec![],
            Reason::FollowingLeader {
                me: me(),
                leader: name("n2"),
            },
        ),
        row(
            "replica with no upstream re-points to the leader",
            with(replica_of_n2(), |o| o.postgres.upstream = None),
            vec![Action::RepointTo {
                upstream: Some(name("n2")),
            }],
            Reason::RepointingToLeader { leader: name("n2") },
        ),
        row(
            "replica still following the old leader re-points",
            with(replica_of_n2(), |o| o.postgres.upstream = Some(name("n3"))),
            vec![Action::RepointTo {
                upstream: Some(name("n2")),
            }],
            Reason::RepointingToLeader { leader: name("n2") },
        ),
        row(
            "replicatefrom a running member cascades from it",
            with(replica_of_n2(), |o| {
                o.node.tags.replicatefrom = Some(name("n3"));
                o.postgres.upstream = Some(name("n3"));
            }),
            vec![],
            Reason::FollowingLeader {
                me: me(),
                leader: name("n2"),
            },
        ),
        row(
            "replicatefrom a stopped member falls back to the leader",
            with_cluster(
                with(replica_of_n2(), |o| {
                    o.node.tags.replicatefrom = Some(name("n3"));
                    o.postgres.upstream = Some(name("n3"));
                }),
                |c| c.members[2].state = MemberState::Stopped,
            ),
            vec![Action::RepointTo {
                upstream: Some(name("n2")),
            }],
            Reason::RepointingToLeader { leader: name("n2") },
        ),
        row(
            "nostream replica: archive recovery only, no upstream",
            with(replica_of_n2(), |o| {
                o.node.tags.nostream = true;
                o.postgres.upstream = None;
            }),
            vec![],
            Reason::FollowingLeader {
                me: me(),
                leader: name("n2"),
            },
        ),
        row(
            "diverged replica with pg_rewind usable rewinds",
            with(replica_of_n2(), |o| {
                o.postgres.divergence = Divergence::Diverged
            }),
            vec![Action::Rewind { source: name("n2") }],
            Reason::Rewinding { source: name("n2") },
        ),
        row(
            "diverged replica without rewind but with reinit allowed reinitializes",
            with(replica_of_n2(), |o| {
                o.postgres.divergence = Divergence::Diverged;
                o.postgres.can_rewind = false;
                o.node.reinit_on_diverged_timelines = true;
            }),
            vec![Action::Reinitialize { source: name("n2") }],
            Reason::Reinitializing { source: name("n2") },
        ),
        row(
            "diverged replica with neither only reports",
            with(replica_of_n2(), |o| {
                o.postgres.divergence = Divergence::Diverged;
                o.node.use_pg_rewind = false;
            }),
            vec![],
            Reason::DivergedCannotRewind,
        ),
        row(
            "a replica still starting waits",
            with(replica_of_n2(), |o| {
                o.postgres.process = ProcessState::Starting {
                    since: secs_from_now(-3),
                }
            }),
            vec![],
            Reason::WaitingForStart,
        ),
        row(
            "a replica cloning waits for the clone",
            long_action(replica_of_n2(), LongActionKind::CreateReplica, 30),
            vec![],
            Reason::LongActionInProgress {
                action: "creating replica",
            },
        ),
    ]);
}

#[test]
fn messages_use_patroni_wording() {
    assert_eq!(
        decide(&leader_n1()).message,
        "no action. I am (n1), the leader with the lock"
    );
    assert_eq!(
        decide(&replica_of_n2()).message,
        "no action. I am (n1), a secondary, and following a leader (n2)"
    );
    assert_eq!(
        decide(&peers(no_leader(), vec![peer("n2", 1), peer("n3", 1)])).message,
        "promoted self to leader by acquiring session lock"
    );
    assert!(
        decide(&peers(no_leader(), vec![peer("n2", 5000)]))
            .message
            .starts_with("following a different leader because i am not the healthiest node")
    );
    assert_eq!(
        decide(&paused(leader_n1())).message,
        "PAUSE: no action. I am (n1), the leader with the lock"
    );
    assert_eq!(
        decide(&unreachable(leader_n1())).message,
        "demoted self because DCS is not accessible and I was a leader"
    );
}

#[test]
fn wakeups() {
    // A leader wakes by its lease deadline even if loop_wait is longer.
    let decision = decide(&lease_deadline(leader_n1(), 4));
    assert_eq!(decision.next_wakeup, secs_from_now(4));
    let decision = decide(&lease_deadline(leader_n1(), 60));
    assert_eq!(decision.next_wakeup, secs_from_now(10));
    // Asking peers means observing again at once.
    assert_eq!(decide(&no_leader()).next_wakeup, now());
    // A replica sleeps loop_wait (store watch events wake it earlier).
    assert_eq!(decide(&replica_of_n2()).next_wakeup, secs_from_now(10));
    // A switchover scheduled sooner than loop_wait: wake exactly then, not early.
    let soon = with_cluster(failover_key(leader_n1(), Some("n1"), Some("n2")), |c| {
        c.failover.as_mut().unwrap().scheduled_at = Some(secs_from_now(3))
    });
    let decision = decide(&soon);
    assert_eq!(decision.next_wakeup, secs_from_now(3));
    assert!(
        !decision
            .actions
            .iter()
            .any(|a| matches!(a, Action::Demote { .. }))
    );
}

#[test]
fn crashed_primary_state_is_seen_as_not_running() {
    let observation = leader_n1();
    assert!(observation.postgres.is_running_primary());
    let observation = crashed(observation, 1);
    assert!(!observation.postgres.is_running_primary());
    assert_eq!(observation.postgres.role, PgRole::Primary);
}

#[test]
fn decisions_serialize_for_status_and_logs() {
    let decision = decide(&peers(no_leader(), vec![peer("n2", 1), peer("n3", 1)]));
    let json = serde_json::to_value(&decision).unwrap();
    assert_eq!(
        json["actions"][0],
        serde_json::json!({"action": "acquire_leader_key"})
    );
    assert_eq!(
        json["reason"],
        serde_json::json!({"reason": "promoted_by_acquiring_lock"})
    );
    assert_eq!(
        json["message"],
        "promoted self to leader by acquiring session lock"
    );
    assert_eq!(decision.reason.label(), "promoted_by_acquiring_lock");

    let decision = decide(&lease_deadline(leader_n1(), -1));
    let json = serde_json::to_value(&decision).unwrap();
    assert_eq!(
        json["actions"][0],
        serde_json::json!({"action": "demote", "mode": "immediate-nolock"})
    );
    assert_eq!(decision.reason.label(), "lease_deadline_passed");
    assert_eq!(
        decide(&paused(leader_n1())).reason.label(),
        "leader_with_lock"
    );
}
