//! `decide` as tables (2/2): the leader race, recovery after crashes, bootstrap, pause.

mod common;

use ha::{
    Action, CallbackEvent, DataDirState, DemoteMode, Divergence, LongActionKind, MemberRole,
    NotHealthiest, PgRole, ProcessState, Reason, SystemId, Timeline,
};

use common::table::*;
use common::*;

#[test]
fn leader_race_rows() {
    let all_behind = || vec![peer("n2", 900), peer("n3", 900)];
    let acquire_and_promote = concat(vec![vec![Action::AcquireLeaderKey], promote()]);
    let sync_promote = concat(vec![
        vec![
            Action::AcquireLeaderKey,
            Action::ArmWatchdog,
            Action::PrepareSyncForPromote {
                synchronous_standby_names: vec![],
            },
        ],
        promote_after_sync(),
    ]);
    run(vec![
        row(
            "no leader: ask the others before racing",
            no_leader(),
            vec![Action::QueryPeers {
                members: vec![name("n2"), name("n3")],
            }],
            Reason::AskingPeers,
        ),
        row(
            "no leader, everybody behind me: race and promote",
            peers(no_leader(), all_behind()),
            acquire_and_promote.clone(),
            Reason::PromotedByAcquiringLock,
        ),
        row(
            "no leader, all peers unreachable: race",
            peers(
                no_leader(),
                vec![unreachable_peer("n2"), unreachable_peer("n3")],
            ),
            acquire_and_promote.clone(),
            Reason::PromotedByAcquiringLock,
        ),
        row(
            "a peer with more WAL wins",
            peers(no_leader(), vec![peer("n2", 900), peer("n3", 1001)]),
            vec![],
            Reason::NotHealthiest {
                why: NotHealthiest::PeerAhead { peer: name("n3") },
            },
        ),
        row(
            "the old primary still answers as primary",
            peers(
                no_leader(),
                vec![
                    peer_with("n2", 2000, |s| s.is_primary = true),
                    peer("n3", 900),
                ],
            ),
            vec![],
            Reason::NotHealthiest {
                why: NotHealthiest::PrimaryStillAlive { peer: name("n2") },
            },
        ),
        row(
            "same WAL, higher failover_priority wins",
            peers(
                no_leader(),
                vec![
                    peer("n2", 900),
                    peer_with("n3", 1000, |s| s.tags.failover_priority = Some(5)),
                ],
            ),
            vec![],
            Reason::NotHealthiest {
                why: NotHealthiest::PeerHigherPriority { peer: name("n3") },
            },
        ),
        row(
            "same WAL, higher priority but it is the former leader: ignored",
            peers(
                no_leader(),
                vec![
                    peer_with("n2", 1000, |s| s.tags.failover_priority = Some(5)),
                    peer("n3", 900),
                ],
            ),
            acquire_and_promote.clone(),
            Reason::PromotedByAcquiringLock,
        ),
        row(
            "a peer ahead but tagged nofailover is ignored",
            peers(
                no_leader(),
                vec![
                    peer_with("n2", 5000, |s| s.tags.nofailover = true),
                    peer("n3", 900),
                ],
            ),
            acquire_and_promote.clone(),
            Reason::PromotedByAcquiringLock,
        ),
        row(
            "a peer ahead whose watchdog failed is ignored",
            peers(
                no_leader(),
                vec![
                    peer_with("n3", 5000, |s| s.watchdog_failed = true),
                    peer("n2", 900),
                ],
            ),
            acquire_and_promote.clone(),
            Reason::PromotedByAcquiringLock,
        ),
        row(
            "strict sync mode: commits keep waiting for the old primary after promotion",
            peers(
                with_cluster(sync_mode(no_leader(), &["n1"], "n2"), |c| {
                    c.config.synchronous_mode_strict = true
                }),
                vec![peer("n2", 900)],
            ),
            concat(vec![
                vec![
                    Action::AcquireLeaderKey,
                    Action::ArmWatchdog,
                    Action::PrepareSyncForPromote {
                        synchronous_standby_names: vec![name("n2")],
                    },
                ],
                promote_after_sync(),
            ]),
            Reason::PromotedByAcquiringLock,
        ),
        row(
            "required watchdog unusable: never race",
            peers(
                with(no_leader(), |o| o.watchdog_failed = true),
                all_behind(),
            ),
            vec![],
            Reason::NotHealthiest {
                why: NotHealthiest::WatchdogFailed,
            },
        ),
        row(
            "primary_race_backoff: hold back during the first loop_wait",
            peers(
                with_cluster(
                    with(no_leader(), |o| {
                        o.leader_missing_since = Some(secs_from_now(-3))
                    }),
                    |c| c.config.primary_race_backoff = std::time::Duration::from_secs(60),
                ),
                all_behind(),
            ),
            vec![],
            Reason::RaceBackoff,
        ),
        row(
            "primary_race_backoff: hold back while WAL still arrives",
            peers(
                with_cluster(
                    with(no_leader(), |o| {
                        o.leader_missing_since = Some(secs_from_now(-30));
                        o.postgres.wal_receive_advancing = true;
                    }),
                    |c| c.config.primary_race_backoff = std::time::Duration::from_secs(60),
                ),
                all_behind(),
            ),
            vec![],
            Reason::RaceBackoff,
        ),
        row(
            "primary_race_backoff: WAL stopped after loop_wait, race",
            peers(
                with_cluster(
                    with(no_leader(), |o| {
                        o.leader_missing_since = Some(secs_from_now(-30))
                    }),
                    |c| c.config.primary_race_backoff = std::time::Duration::from_secs(60),
                ),
                all_behind(),
            ),
            acquire_and_promote.clone(),
            Reason::PromotedByAcquiringLock,
        ),
        row(
            "primary_race_backoff: the window is over even if WAL arrives, race",
            peers(
                with_cluster(
                    with(no_leader(), |o| {
                        o.leader_missing_since = Some(secs_from_now(-61));
                        o.postgres.wal_receive_advancing = true;
                    }),
                    |c| c.config.primary_race_backoff = std::time::Duration::from_secs(60),
                ),
                all_behind(),
            ),
            acquire_and_promote.clone(),
            Reason::PromotedByAcquiringLock,
        ),
        row(
            "primary_race_backoff does not delay a targeted failover",
            with_cluster(
                with(failover_key(no_leader(), None, Some("n1")), |o| {
                    o.leader_missing_since = Some(secs_from_now(-1))
                }),
                |c| c.config.primary_race_backoff = std::time::Duration::from_secs(60),
            ),
            concat(vec![
                vec![Action::AcquireLeaderKey, Action::DeleteFailoverKey],
                promote(),
            ]),
            Reason::PromotedByAcquiringLock,
        ),
        row(
            "pre_promote failed within ttl: stay out of the race",
            peers(
                with(no_leader(), |o| {
                    o.pre_promote_failed_at = Some(secs_from_now(-10))
                }),
                all_behind(),
            ),
            vec![],
            Reason::NotHealthiest {
                why: NotHealthiest::PrePromoteFailed,
            },
        ),
        row(
            "pre_promote failed more than ttl ago: race again",
            peers(
                with(no_leader(), |o| {
                    o.pre_promote_failed_at = Some(secs_from_now(-31))
                }),
                all_behind(),
            ),
            acquire_and_promote.clone(),
            Reason::PromotedByAcquiringLock,
        ),
        row(
            "nofailover tag: never race",
            peers(
                with(no_leader(), |o| o.node.tags.nofailover = true),
                all_behind(),
            ),
            vec![],
            Reason::NotHealthiest {
                why: NotHealthiest::NoFailoverTag,
            },
        ),
        row(
            "failover_priority 0 behaves as nofailover",
            peers(
                with(no_leader(), |o| o.node.tags.failover_priority = Some(0)),
                all_behind(),
            ),
            vec![],
            Reason::NotHealthiest {
                why: NotHealthiest::NoFailoverTag,
            },
        ),
        row(
            "lag beyond maximum_lag_on_failover: do not race",
            peers(
                with_cluster(no_leader(), |c| {
                    c.last_leader_lsn = Some(ha::Lsn(1000 + 1_048_577))
                }),
                all_behind(),
            ),
            vec![],
            Reason::NotHealthiest {
                why: NotHealthiest::LagTooHigh {
                    lag: 1_048_577,
                    maximum: 1_048_576,
                },
            },
        ),
        row(
            "lag exactly maximum_lag_on_failover is allowed",
            peers(
                with_cluster(no_leader(), |c| {
                    c.last_leader_lsn = Some(ha::Lsn(1000 + 1_048_576))
                }),
                all_behind(),
            ),
            acquire_and_promote.clone(),
            Reason::PromotedByAcquiringLock,
        ),
        row(
            "check_timeline: a replica on an older timeline does not race",
            peers(
                with_cluster(no_leader(), |c| {
                    c.config.check_timeline = true;
                    c.history_timeline = Some(Timeline(3));
                }),
                all_behind(),
            ),
            vec![],
            Reason::NotHealthiest {
                why: NotHealthiest::TimelineBehind,
            },
        ),
        row(
            "sync mode: a sync standby races against sync members only",
            peers(
                sync_mode(no_leader(), &["n1"], "n2"),
                vec![peer("n3", 5000), peer("n2", 900)],
            ),
            sync_promote.clone(),
            Reason::PromotedByAcquiringLock,
        ),
        row(
            "sync mode: the former leader ahead of the sync standby does not stop it",
            peers(
                sync_mode(no_leader(), &["n1"], "n2"),
                vec![peer("n2", 5000)],
            ),
            sync_promote.clone(),
            Reason::PromotedByAcquiringLock,
        ),
        row(
            "manual failover to me: race, and consume the key",
            failover_key(no_leader(), None, Some("n1")),
            concat(vec![
                vec![Action::AcquireLeaderKey, Action::DeleteFailoverKey],
                promote(),
            ]),
            Reason::PromotedByAcquiringLock,
        ),
        row(
            "manual failover to a healthy other: stand aside",
            peers(
                failover_key(no_leader(), None, Some("n3")),
                vec![peer("n3", 10)],
            ),
            vec![],
            Reason::NotHealthiest {
                why: NotHealthiest::FailoverCandidateIsOther {
                    candidate: name("n3"),
                },
            },
        ),
        row(
            "manual failover to an unreachable other: race with lag ignored",
            peers(
                with_cluster(failover_key(no_leader(), None, Some("n3")), |c| {
                    c.last_leader_lsn = Some(ha::Lsn(100_000_000))
                }),
                vec![unreachable_peer("n3"), peer("n2", 900)],
            ),
            concat(vec![
                vec![Action::AcquireLeaderKey, Action::DeleteFailoverKey],
                promote(),
            ]),
            Reason::PromotedByAcquiringLock,
        ),
        row(
            "switchover in sync mode: a non-sync replica does not race",
            sync_mode(
                failover_key(no_leader(), Some("n2"), Some("n3")),
                &["n3"],
                "n2",
            ),
            vec![],
            Reason::NotHealthiest {
                why: NotHealthiest::NotSyncStandby,
            },
        ),
        row(
            "former leader after a switchover waits for a healthy member",
            peers(
                failover_key(no_leader(), Some("n1"), None),
                vec![peer("n2", 900), unreachable_peer("n3")],
            ),
            vec![],
            Reason::NotHealthiest {
                why: NotHealthiest::FormerLeaderWaits {
                    healthy_peer: name("n2"),
                },
            },
        ),
        row(
            "a running primary without a key takes it back without promoting",
            with(no_leader(), |o| {
                o.postgres.role = PgRole::Primary;
                o.postgres.write_lsn = Some(ha::Lsn(1000));
            }),
            vec![Action::AcquireLeaderKey, Action::ArmWatchdog],
            Reason::AcquiredLockAsPrimary,
        ),
        row(
            "single-member cluster: nobody to ask",
            with_cluster(no_leader(), |c| c.members.truncate(1)),
            acquire_and_promote,
            Reason::PromotedByAcquiringLock,
        ),
    ]);
}

#[test]
fn recovery_rows() {
    let leader_crashed = |secs_ago| crashed(leader_n1(), secs_ago);
    run(vec![
        row(
            "primary crashed while holding the key: restart in place",
            leader_crashed(1),
            vec![
                Action::RenewLease,
                Action::StartAsPrimary,
                cb(CallbackEvent::OnStart, MemberRole::Primary),
            ],
            Reason::RestartingPrimaryAfterCrash,
        ),
        row(
            "primary_start_timeout 0: ask whether failover is possible",
            start_timeout(leader_crashed(1), 0),
            vec![
                Action::RenewLease,
                Action::QueryPeers {
                    members: vec![name("n2"), name("n3")],
                },
            ],
            Reason::AskingPeers,
        ),
        row(
            "primary_start_timeout 0 and a healthy replica: fail over",
            peers(start_timeout(leader_crashed(1), 0), vec![peer("n2", 1000)]),
            concat(vec![
                vec![Action::RenewLease],
                demote(DemoteMode::Immediate, MemberRole::Replica),
            ]),
            Reason::FailingOverAfterCrash,
        ),
        row(
            "primary_start_timeout 0 but nobody can take over: restart in place",
            peers(
                start_timeout(leader_crashed(1), 0),
                vec![
                    unreachable_peer("n2"),
                    peer_with("n3", 1000, |s| s.tags.nofailover = true),
                ],
            ),
            vec![
                Action::RenewLease,
                Action::StartAsPrimary,
                cb(CallbackEvent::OnStart, MemberRole::Primary),
            ],
            Reason::RestartingPrimaryAfterCrash,
        ),
        row(
            "crashed for longer than primary_start_timeout: fail over",
            peers(leader_crashed(301), vec![peer("n3", 1000)]),
            concat(vec![
                vec![Action::RenewLease],
                demote(DemoteMode::Immediate, MemberRole::Replica),
            ]),
            Reason::FailingOverAfterCrash,
        ),
        row(
            "start failed while holding the key: release it",
            with(leader_crashed(10), |o| o.postgres.last_start_failed = true),
            vec![
                Action::ReleaseLeaderKey,
                cb(CallbackEvent::OnRoleChange, MemberRole::Demoted),
            ],
            Reason::StartFailedReleasingLock,
        ),
        row(
            "stopped replica data dir while holding the key: start read-only",
            with(stopped(leader_n1()), |o| o.postgres.role = PgRole::Replica),
            vec![Action::RenewLease, Action::StartReadOnly],
            Reason::StartingReadOnlyWithLock,
        ),
        row(
            "primary still starting with the key: keep the key",
            with(leader_n1(), |o| {
                o.postgres.process = ProcessState::Starting {
                    since: secs_from_now(-10),
                }
            }),
            vec![Action::RenewLease],
            Reason::StartingWithLock,
        ),
        row(
            "primary starting longer than primary_start_timeout: fail over",
            peers(
                with(leader_n1(), |o| {
                    o.postgres.process = ProcessState::Starting {
                        since: secs_from_now(-301),
                    }
                }),
                vec![peer("n2", 1000)],
            ),
            concat(vec![
                vec![Action::RenewLease],
                demote(DemoteMode::Immediate, MemberRole::Replica),
            ]),
            Reason::StartTimedOut,
        ),
        row(
            "stopped replica: start following the leader",
            stopped(replica_of_n2()),
            vec![
                Action::StartAsReplica {
                    upstream: Some(name("n2")),
                },
                cb(CallbackEvent::OnStart, MemberRole::Replica),
            ],
            Reason::StartingAsReplica,
        ),
        row(
            "crashed replica with no leader: start without upstream",
            crashed(no_leader(), 1),
            vec![
                Action::StartAsReplica { upstream: None },
                cb(CallbackEvent::OnStart, MemberRole::Replica),
            ],
            Reason::StartingAsReplica,
        ),
        row(
            "stopped former primary that diverged: rewind before starting",
            with(stopped(replica_of_n2()), |o| {
                o.postgres.role = PgRole::Primary;
                o.postgres.divergence = Divergence::Diverged;
            }),
            vec![Action::Rewind { source: name("n2") }],
            Reason::Rewinding { source: name("n2") },
        ),
        row(
            "stopped diverged without rewind: start anyway and report",
            with(stopped(replica_of_n2()), |o| {
                o.postgres.divergence = Divergence::Diverged;
                o.postgres.can_rewind = false;
            }),
            vec![Action::StartAsReplica {
                upstream: Some(name("n2")),
            }],
            Reason::DivergedCannotRewind,
        ),
    ]);
}

#[test]
fn bootstrap_rows() {
    let empty = |observation: ha::Observation| {
        stopped(with(observation, |o| {
            o.postgres.data_dir = DataDirState::Empty
        }))
    };
    let fresh = || {
        with_cluster(empty(no_leader()), |c| {
            c.initialize = None;
            c.previous_leader = None;
        })
    };
    run(vec![
        row(
            "fresh cluster: race for /initialize and initdb",
            fresh(),
            vec![Action::ClaimInitializeKey, Action::Bootstrap],
            Reason::BootstrapRace,
        ),
        row(
            "fresh cluster without a bootstrap section: wait",
            with(fresh(), |o| o.node.can_bootstrap = false),
            vec![],
            Reason::WaitingForLeaderToBootstrap,
        ),
        row(
            "fresh cluster, nofailover: never bootstrap",
            with(fresh(), |o| o.node.tags.nofailover = true),
            vec![],
            Reason::WaitingForLeaderToBootstrap,
        ),
        row(
            "someone else is bootstrapping (empty /initialize): wait",
            with_cluster(fresh(), |c| c.initialize = Some(None)),
            vec![],
            Reason::WaitingForLeaderToBootstrap,
        ),
        row(
            "empty data dir with a leader: clone from it",
            empty(replica_of_n2()),
            vec![Action::CreateReplica {
                source: Some(name("n2")),
            }],
            Reason::CloningFromLeader { leader: name("n2") },
        ),
        row(
            "empty data dir: prefer a running clonefrom member",
            with_cluster(empty(replica_of_n2()), |c| {
                c.members[2].tags.clonefrom = true
            }),
            vec![Action::CreateReplica {
                source: Some(name("n3")),
            }],
            Reason::CloningFromLeader { leader: name("n2") },
        ),
        row(
            "empty data dir, no leader, a no_leader method configured: clone without leader",
            with(empty(no_leader()), |o| o.node.clone_without_leader = true),
            vec![Action::CreateReplica { source: None }],
            Reason::CloningWithoutLeader,
        ),
        row(
            "empty data dir while holding the key: release it",
            empty(leader_n1()),
            vec![Action::ReleaseLeaderKey],
            Reason::DataDirEmptyReleasingLock,
        ),
        row(
            "our bootstrap finished: publish sysid and take the key",
            with_cluster(
                with(no_leader(), |o| {
                    o.postgres.role = PgRole::Primary;
                    o.postgres.write_lsn = Some(ha::Lsn(100));
                }),
                |c| c.initialize = Some(None),
            ),
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
            "our freshly initialised primary still starting: wait, do not demote",
            with_cluster(
                with(no_leader(), |o| {
                    o.postgres.role = PgRole::Primary;
                    o.postgres.process = ProcessState::Starting {
                        since: secs_from_now(-1),
                    };
                }),
                |c| c.initialize = Some(None),
            ),
            vec![],
            Reason::WaitingForStart,
        ),
        row(
            "bootstrap in progress with our key (sysid not yet written): write it",
            with_cluster(leader_n1(), |c| c.initialize = Some(None)),
            vec![
                Action::WriteInitializeKey {
                    system_id: SystemId(42),
                },
                Action::RenewLease,
            ],
            Reason::LeaderWithLock { me: me() },
        ),
        row(
            "data dir of another cluster: stop",
            with_cluster(replica_of_n2(), |c| c.initialize = Some(Some(SystemId(7)))),
            vec![Action::ExitFatal],
            Reason::SystemIdMismatch,
        ),
        row(
            "adopting a running standalone primary: write /initialize, take the key",
            with_cluster(
                with(no_leader(), |o| {
                    o.postgres.role = PgRole::Primary;
                    o.postgres.write_lsn = Some(ha::Lsn(100));
                }),
                |c| c.initialize = None,
            ),
            vec![
                Action::WriteInitializeKey {
                    system_id: SystemId(42),
                },
                Action::AcquireLeaderKey,
                Action::ArmWatchdog,
            ],
            Reason::AcquiredLockAsPrimary,
        ),
        row(
            "no /initialize and a running replica: start on the primary first",
            with_cluster(no_leader(), |c| c.initialize = None),
            vec![Action::ExitFatal],
            Reason::StartOnPrimaryFirst,
        ),
        row(
            "unreadable pg_control: report only",
            with(replica_of_n2(), |o| {
                o.postgres.data_dir = DataDirState::Invalid
            }),
            vec![],
            Reason::InvalidDataDir,
        ),
        row(
            "bootstrap running: nothing else happens",
            long_action(fresh(), LongActionKind::Bootstrap, 5),
            vec![],
            Reason::LongActionInProgress {
                action: "bootstrap",
            },
        ),
    ]);
}

#[test]
fn pause_rows() {
    let paused_reason = |inner| Reason::Paused {
        inner: Box::new(inner),
    };
    run(vec![
        row(
            "paused leader keeps renewing",
            paused(leader_n1()),
            vec![Action::RenewLease],
            paused_reason(Reason::LeaderWithLock { me: me() }),
        ),
        row(
            "paused leader whose PostgreSQL stopped releases the key",
            paused(stopped(leader_n1())),
            vec![Action::ReleaseLeaderKey],
            paused_reason(Reason::ReleasedLockNotPrimary),
        ),
        row(
            "paused, no leader, replica: never promote",
            paused(peers(no_leader(), vec![])),
            vec![],
            paused_reason(Reason::NoLeaderWhilePaused),
        ),
        row(
            "paused, no leader, running primary grabs the key",
            paused(with(no_leader(), |o| {
                o.postgres.role = PgRole::Primary;
                o.postgres.write_lsn = Some(ha::Lsn(1000));
            })),
            vec![Action::AcquireLeaderKey],
            paused_reason(Reason::AcquiredLockAsPrimary),
        ),
        row(
            "paused, crashed replica is not restarted",
            paused(crashed(replica_of_n2(), 5)),
            vec![],
            paused_reason(Reason::FollowingLeader {
                me: me(),
                leader: name("n2"),
            }),
        ),
        row(
            "paused, explicit failover candidate is me: take over",
            paused(failover_key(no_leader(), None, Some("n1"))),
            concat(vec![
                vec![Action::AcquireLeaderKey, Action::DeleteFailoverKey],
                promote(),
            ]),
            paused_reason(Reason::PromotedByAcquiringLock),
        ),
    ]);
}
