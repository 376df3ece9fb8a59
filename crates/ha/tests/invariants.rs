//! The safety invariants of design.md §2, checked over every combination of a grid of
//! observations (82,944 of them): whatever the situation, `decide` never breaks them.

mod common;

use ha::{
    Action, ClusterView, FailoverKey, LeaderKey, LeaseState, LongAction, LongActionKind,
    Observation, OwnLease, PgRole, ProcessState, StoreView, SyncKey, SynchronousMode, decide,
};

use common::*;

fn grid() -> Vec<Observation> {
    let holders = [None, Some("n1"), Some("n2")];
    let processes = [
        ProcessState::Running,
        ProcessState::Stopped { since: None },
        ProcessState::Crashed {
            since: secs_from_now(-1),
        },
        ProcessState::Crashed {
            since: secs_from_now(-400),
        },
        ProcessState::Starting {
            since: secs_from_now(-1),
        },
        ProcessState::Starting {
            since: secs_from_now(-400),
        },
    ];
    let roles = [PgRole::Primary, PgRole::Replica];
    let leases = [None, Some(-1), Some(20)];
    let actions = [
        None,
        Some((LongActionKind::Promote, 1)),
        Some((LongActionKind::Restart, 1)),
        Some((LongActionKind::CrashRecovery, 400)),
    ];
    let peer_sets = [
        None,
        Some(vec![peer("n2", 900), peer("n3", 900)]),
        Some(vec![peer("n2", 5000), peer("n3", 900)]),
        Some(vec![unreachable_peer("n2"), unreachable_peer("n3")]),
    ];
    let sync_setups = [None, Some(true), Some(false)];
    let failovers = [
        None,
        Some((None, "n1")),
        Some((None, "n3")),
        Some((Some("n2"), "n3")),
    ];

    let mut observations = Vec::new();
    for holder in holders {
        for process in processes {
            for role in roles {
                for lease in leases {
                    for action in actions {
                        for pause in [false, true] {
                            for unreachable_store in [false, true] {
                                for peer_set in &peer_sets {
                                    for sync in sync_setups {
                                        for failover in failovers {
                                            let mut o = replica_of_n2();
                                            o.postgres.process = process;
                                            o.postgres.role = role;
                                            if role == PgRole::Primary {
                                                o.postgres.write_lsn = Some(ha::Lsn(1000));
                                                o.postgres.upstream = None;
                                            }
                                            o.own_lease = lease.map(|secs| OwnLease {
                                                deadline: secs_from_now(secs),
                                            });
                                            o.long_action = action.map(|(kind, ago)| LongAction {
                                                kind,
                                                started_at: secs_from_now(-ago),
                                            });
                                            o.peers = peer_set.clone();
                                            let cluster = cluster_mut(&mut o);
                                            cluster.leader = holder.map(|holder| LeaderKey {
                                                holder: name(holder),
                                                mod_revision: 1,
                                                lease: LeaseState::Attached { lease_id: 1 },
                                            });
                                            cluster.config.pause = pause;
                                            if let Some(me_listed) = sync {
                                                cluster.config.synchronous_mode =
                                                    SynchronousMode::On;
                                                cluster.sync = Some(SyncKey {
                                                    leader: Some(name("n2")),
                                                    sync_standbys: vec![name(if me_listed {
                                                        "n1"
                                                    } else {
                                                        "n3"
                                                    })],
                                                    quorum: 0,
                                                });
                                            }
                                            cluster.failover =
                                                failover.map(|(leader, candidate)| FailoverKey {
                                                    leader: leader.map(name),
                                                    candidate: Some(name(candidate)),
                                                    scheduled_at: None,
                                                });
                                            if unreachable_store {
                                                o = unreachable(o);
                                            }
                                            observations.push(o);
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    observations
}

fn cluster(observation: &Observation) -> Option<&ClusterView> {
    match &observation.store {
        StoreView::Cluster(cluster) => Some(cluster),
        StoreView::Unreachable { .. } => None,
    }
}

fn key_is_mine(observation: &Observation) -> bool {
    cluster(observation)
        .and_then(|cluster| cluster.leader.as_ref())
        .is_some_and(|leader| leader.holder == observation.node.name)
}

#[test]
fn invariants_hold_over_the_grid() {
    let observations = grid();
    assert_eq!(observations.len(), 82_944);
    for observation in &observations {
        let decision = decide(observation);
        let actions = &decision.actions;
        let position = |wanted: fn(&Action) -> bool| actions.iter().position(wanted);
        let context = || format!("{observation:#?}\n=> {decision:#?}");

        // Invariant 7: never promote unless the key is won in this decision or ours and
        // renewed first (the shell stops at the first failed action).
        if let Some(promote) = position(|a| matches!(a, Action::Promote)) {
            let acquired =
                position(|a| matches!(a, Action::AcquireLeaderKey)).is_some_and(|at| at < promote);
            let renewed = key_is_mine(observation)
                && position(|a| matches!(a, Action::RenewLease)).is_some_and(|at| at < promote);
            assert!(
                acquired || renewed,
                "promote without the key:\n{}",
                context()
            );
        }

        // Invariant 8, the other half: in synchronous mode `/sync` names the new leader before
        // it promotes, so no other node still listed can race it.
        if let Some(promote) = position(|a| matches!(a, Action::Promote))
            && cluster(observation)
                .is_some_and(|c| c.config.synchronous_mode != SynchronousMode::Off)
        {
            let prepared = position(|a| matches!(a, Action::PrepareSyncForPromote { .. }))
                .is_some_and(|at| at < promote);
            assert!(prepared, "sync-mode promote without /sync:\n{}", context());
        }

        // Invariant 6: a primary past its lease deadline demotes and does nothing else first.
        let acting_as_primary = observation.postgres.role == PgRole::Primary
            && matches!(
                observation.postgres.process,
                ProcessState::Running | ProcessState::Starting { .. }
            );
        let expired = observation
            .own_lease
            .is_some_and(|lease| lease.deadline <= observation.now);
        if acting_as_primary && expired {
            let first_effect = actions
                .iter()
                .find(|a| !matches!(a, Action::CancelLongAction));
            assert!(
                matches!(first_effect, Some(Action::Demote { .. })),
                "expired lease without demote:\n{}",
                context()
            );
            assert!(!actions.contains(&Action::RenewLease), "{}", context());
        }

        // A promotion in flight past the lease deadline is cancelled.
        if expired
            && observation
                .long_action
                .is_some_and(|action| action.kind == LongActionKind::Promote)
        {
            assert!(actions.contains(&Action::CancelLongAction), "{}", context());
        }

        // Never try to take a key somebody else holds.
        let held_by_other = cluster(observation)
            .and_then(|c| c.leader.as_ref())
            .is_some_and(|leader| leader.holder != observation.node.name);
        if held_by_other {
            assert!(
                !actions.contains(&Action::AcquireLeaderKey),
                "{}",
                context()
            );
            assert!(!actions.contains(&Action::Promote), "{}", context());
            assert!(!actions.contains(&Action::RenewLease), "{}", context());
        }

        // Invariant 8: in synchronous mode only a synchronous standby takes over, except on
        // an explicit manual failover (no leader named) to it.
        if let Some(c) = cluster(observation)
            && let Some(sync) = &c.sync
            && c.config.synchronous_mode == SynchronousMode::On
            && !sync.lists(&observation.node.name)
            && observation.postgres.role == PgRole::Replica
        {
            let manual_failover_to_me = c.failover.as_ref().is_some_and(|f| {
                f.leader.is_none() && f.candidate.as_ref() == Some(&observation.node.name)
            });
            if !manual_failover_to_me {
                assert!(
                    !actions.contains(&Action::AcquireLeaderKey),
                    "{}",
                    context()
                );
            }
        }

        // Never promote and demote in the same cycle; never act on PostgreSQL when unreachable
        // except to demote.
        let promotes = actions.contains(&Action::Promote);
        let demotes = actions.iter().any(|a| matches!(a, Action::Demote { .. }));
        assert!(!(promotes && demotes), "{}", context());
        if cluster(observation).is_none() {
            assert!(
                actions.iter().all(|a| matches!(
                    a,
                    Action::Demote { .. } | Action::RunCallback { .. } | Action::CancelLongAction
                )),
                "{}",
                context()
            );
        }

        // The leader wakes by its lease deadline; nothing wakes in the past.
        assert!(decision.next_wakeup >= observation.now, "{}", context());
        if let Some(lease) = observation.own_lease
            && lease.deadline > observation.now
            && key_is_mine(observation)
        {
            assert!(decision.next_wakeup <= lease.deadline, "{}", context());
        }
        assert_eq!(decision.message, decision.reason.to_string());
    }
}
