//! `decide`: one HA cycle as a pure function, following Patroni's `_run_cycle` order
//! (patroni.md §1.2) with the lease deadline of design invariant 6 checked first.

use std::time::Duration;

use crate::candidate::{Healthiness, check_healthiest, rank_failover_candidates};
use crate::decision::{Action, CallbackEvent, Decision, DemoteMode, Reason};
use crate::observation::{
    ClusterView, DataDirState, Divergence, DynamicConfig, LongAction, LongActionKind, MemberRole,
    Observation, PgRole, ProcessState, StoreView, SynchronousMode,
};
use crate::types::{Instant, MemberName};

mod recover;

/// Decides what this node does in this cycle. Never fails: it reads no clock and does no I/O.
pub fn decide(observation: &Observation) -> Decision {
    let cycle = Cycle::new(observation);
    let (actions, reason, wake) = cycle.run();
    Decision {
        message: reason.to_string(),
        next_wakeup: wake,
        actions,
        reason,
    }
}

type Verdict = (Vec<Action>, Reason, Instant);

struct Cycle<'a> {
    observation: &'a Observation,
    me: &'a MemberName,
    now: Instant,
}

impl<'a> Cycle<'a> {
    fn new(observation: &'a Observation) -> Self {
        Self {
            observation,
            me: &observation.node.name,
            now: observation.now,
        }
    }

    fn lease_expired(&self) -> bool {
        self.observation
            .own_lease
            .is_some_and(|lease| lease.deadline <= self.now)
    }

    fn after(&self, duration: Duration) -> Instant {
        self.now.saturating_add(duration)
    }

    /// The next regular cycle; a leader also wakes at its lease deadline.
    fn regular_wakeup(&self, config: &DynamicConfig) -> Instant {
        let regular = self.after(config.loop_wait);
        match self.observation.own_lease {
            Some(lease) if lease.deadline > self.now => regular.min(lease.deadline),
            _ => regular,
        }
    }

    fn run(&self) -> Verdict {
        let local = &self.observation.postgres;
        let config = match &self.observation.store {
            StoreView::Unreachable { last_known_config } => last_known_config,
            StoreView::Cluster(cluster) => &cluster.config,
        };

        // Invariant 6 comes before everything, pause included: a primary whose lease may be
        // about to expire stops accepting writes, whatever else is going on.
        let acting_as_primary = local.is_running_primary()
            || (matches!(local.process, ProcessState::Starting { .. })
                && local.role == PgRole::Primary);
        if acting_as_primary && self.lease_expired() {
            let mut actions = Vec::new();
            if self.observation.long_action.is_some() {
                actions.push(Action::CancelLongAction);
            }
            actions.push(Action::Demote {
                mode: DemoteMode::ImmediateNoLock,
            });
            actions.push(role_change(MemberRole::Demoted));
            return (
                actions,
                Reason::LeaseDeadlinePassed,
                self.after(config.loop_wait),
            );
        }

        // A promotion still running when our lease deadline passes must not finish: it would
        // open a primary for writes without the key.
        if self
            .observation
            .long_action
            .is_some_and(|action| action.kind == LongActionKind::Promote)
            && self.lease_expired()
        {
            return (
                vec![Action::CancelLongAction],
                Reason::LeaseDeadlinePassed,
                self.now,
            );
        }

        let cluster = match &self.observation.store {
            StoreView::Unreachable { last_known_config } => {
                let wake = self.after(last_known_config.loop_wait);
                return if local.is_running_primary() && !last_known_config.pause {
                    (
                        vec![
                            Action::Demote {
                                mode: DemoteMode::Offline,
                            },
                            role_change(MemberRole::Demoted),
                        ],
                        Reason::StoreUnreachableDemoting,
                        wake,
                    )
                } else {
                    (Vec::new(), Reason::StoreUnreachable, wake)
                };
            }
            StoreView::Cluster(cluster) => cluster.as_ref(),
        };

        if let Some(action) = self.observation.long_action {
            return self.long_action_in_progress(cluster, action);
        }
        if cluster.config.pause {
            let (actions, inner, wake) = self.paused(cluster);
            return (
                actions,
                Reason::Paused {
                    inner: Box::new(inner),
                },
                wake,
            );
        }
        self.unpaused(cluster)
    }

    /// The shell runs a long action (patroni.md §1.3): keep the key alive if it is ours,
    /// otherwise make sure the action cannot leave a primary without the key.
    fn long_action_in_progress(&self, cluster: &ClusterView, action: LongAction) -> Verdict {
        let local = &self.observation.postgres;
        let config = &cluster.config;
        let key_is_mine = cluster.leader_name() == Some(self.me);
        if key_is_mine {
            let crash_recovery_too_long = action.kind == LongActionKind::CrashRecovery
                && self.now.saturating_since(action.started_at) > config.primary_start_timeout;
            if crash_recovery_too_long
                && let Some(verdict) = self.demote_if_failover_possible(
                    cluster,
                    vec![Action::RenewLease, Action::CancelLongAction],
                    Reason::CrashRecoveryTimedOut,
                )
            {
                return verdict;
            }
            return (
                vec![Action::RenewLease],
                Reason::LongActionWithLock {
                    action: action.kind.as_str(),
                },
                self.regular_wakeup(config),
            );
        }
        if action.kind == LongActionKind::Bootstrap || config.pause {
            return (
                Vec::new(),
                Reason::LongActionInProgress {
                    action: action.kind.as_str(),
                },
                self.after(config.loop_wait),
            );
        }
        if action.kind == LongActionKind::Promote {
            return (
                vec![Action::CancelLongAction],
                Reason::LostLeaderBeforePromote,
                self.now,
            );
        }
        if local.role == PgRole::Primary && !matches!(local.process, ProcessState::Stopped { .. }) {
            return (
                vec![
                    Action::CancelLongAction,
                    Action::Demote {
                        mode: DemoteMode::ImmediateNoLock,
                    },
                ],
                Reason::PrimaryWithoutLockDuringAction,
                self.after(config.loop_wait),
            );
        }
        (
            Vec::new(),
            Reason::LongActionInProgress {
                action: action.kind.as_str(),
            },
            self.after(config.loop_wait),
        )
    }

    /// Maintenance mode: never start, stop, promote or demote on our own; keep the key
    /// consistent with what PostgreSQL is (patroni.md §1.10.1).
    fn paused(&self, cluster: &ClusterView) -> Verdict {
        let local = &self.observation.postgres;
        let wake = self.regular_wakeup(&cluster.config);
        let key_is_mine = cluster.leader_name() == Some(self.me);
        match (&cluster.leader, key_is_mine) {
            (Some(_), true) if local.is_running_primary() => (
                vec![Action::RenewLease],
                Reason::LeaderWithLock {
                    me: self.me.clone(),
                },
                wake,
            ),
            (Some(_), true) => (
                vec![Action::ReleaseLeaderKey],
                Reason::ReleasedLockNotPrimary,
                wake,
            ),
            (None, _) if local.is_running_primary() => (
                vec![Action::AcquireLeaderKey],
                Reason::AcquiredLockAsPrimary,
                wake,
            ),
            (None, _)
                if local.is_running()
                    && self.observation.node.tags.may_fail_over()
                    && cluster
                        .failover
                        .as_ref()
                        .is_some_and(|failover| failover.candidate.as_ref() == Some(self.me)) =>
            {
                (
                    [
                        vec![Action::AcquireLeaderKey, Action::DeleteFailoverKey],
                        promotion(cluster, self.me),
                    ]
                    .concat(),
                    Reason::PromotedByAcquiringLock,
                    wake,
                )
            }
            (Some(leader), false) => (
                Vec::new(),
                Reason::FollowingLeader {
                    me: self.me.clone(),
                    leader: leader.holder.clone(),
                },
                wake,
            ),
            (None, _) => (Vec::new(), Reason::NoLeaderWhilePaused, wake),
        }
    }

    fn unpaused(&self, cluster: &ClusterView) -> Verdict {
        let local = &self.observation.postgres;
        let config = &cluster.config;
        let key_is_mine = cluster.leader_name() == Some(self.me);
        let mut prefix = Vec::new();

        match local.data_dir {
            DataDirState::Empty => return self.empty_data_dir(cluster, key_is_mine),
            DataDirState::Invalid => {
                return (
                    Vec::new(),
                    Reason::InvalidDataDir,
                    self.after(config.loop_wait),
                );
            }
            DataDirState::Initialized { system_id } => match cluster.initialize {
                Some(Some(cluster_id)) if cluster_id != system_id => {
                    return (vec![Action::ExitFatal], Reason::SystemIdMismatch, self.now);
                }
                // Our own bootstrap finished: publish the system identifier and take the key.
                Some(None) if cluster.leader.is_none() && local.is_running_primary() => {
                    if self.observation.watchdog_failed {
                        return (
                            vec![Action::CancelBootstrap],
                            Reason::WatchdogFailedCancellingBootstrap,
                            self.now,
                        );
                    }
                    // Armed before anything is published: a failure leaves the claim ours
                    // and empty, and the next cycle cancels the bootstrap.
                    return (
                        vec![
                            Action::ArmWatchdog,
                            Action::WriteInitializeKey { system_id },
                            Action::TakeLeaderKey,
                            Action::RunCallback {
                                event: CallbackEvent::OnStart,
                                role: MemberRole::Primary,
                            },
                        ],
                        Reason::BootstrapFinished,
                        self.now,
                    );
                }
                Some(None) if key_is_mine => {
                    prefix.push(Action::WriteInitializeKey { system_id });
                }
                None if cluster.leader.is_none() => {
                    if local.is_running() && local.role == PgRole::Replica {
                        return (
                            vec![Action::ExitFatal],
                            Reason::StartOnPrimaryFirst,
                            self.now,
                        );
                    }
                    prefix.push(Action::WriteInitializeKey { system_id });
                }
                _ => {}
            },
        }

        let (mut actions, reason, wake) = match local.process {
            ProcessState::Stopped { .. } | ProcessState::Crashed { .. } => {
                self.recover(cluster, key_is_mine)
            }
            ProcessState::Starting { since } => self.starting(cluster, key_is_mine, since),
            ProcessState::Running => match &cluster.leader {
                None => self.unhealthy_cluster(cluster),
                Some(_) if key_is_mine => self.leader_with_lock(cluster),
                Some(leader) => self.follow(cluster, &leader.holder),
            },
        };
        prefix.append(&mut actions);
        (prefix, reason, wake)
    }

    fn empty_data_dir(&self, cluster: &ClusterView, key_is_mine: bool) -> Verdict {
        let wake = self.after(cluster.config.loop_wait);
        if key_is_mine {
            return (
                vec![Action::ReleaseLeaderKey],
                Reason::DataDirEmptyReleasingLock,
                self.now,
            );
        }
        match (&cluster.initialize, &cluster.leader) {
            (None, None)
                if self.observation.node.can_bootstrap
                    && self.observation.node.tags.may_fail_over()
                    && self.observation.watchdog_failed =>
            {
                (Vec::new(), Reason::WatchdogFailedNotBootstrapping, wake)
            }
            (None, None)
                if self.observation.node.can_bootstrap
                    && self.observation.node.tags.may_fail_over() =>
            {
                (
                    vec![Action::ClaimInitializeKey, Action::Bootstrap],
                    Reason::BootstrapRace,
                    wake,
                )
            }
            (_, Some(leader)) => {
                let source = self.clone_source(cluster, &leader.holder);
                (
                    vec![Action::CreateReplica {
                        source: Some(source),
                    }],
                    Reason::CloningFromLeader {
                        leader: leader.holder.clone(),
                    },
                    wake,
                )
            }
            (Some(_), None) if self.observation.node.clone_without_leader => (
                vec![Action::CreateReplica { source: None }],
                Reason::CloningWithoutLeader,
                wake,
            ),
            _ => (Vec::new(), Reason::WaitingForLeaderToBootstrap, wake),
        }
    }

    /// A running member tagged `clonefrom` (first by name, for determinism), else the leader.
    fn clone_source(&self, cluster: &ClusterView, leader: &MemberName) -> MemberName {
        cluster
            .members
            .iter()
            .filter(|member| &member.name != self.me && member.tags.clonefrom)
            .filter(|member| member.state == crate::observation::MemberState::Running)
            .map(|member| member.name.clone())
            .min()
            .unwrap_or_else(|| leader.clone())
    }

    /// Whom a replica streams from: nobody when tagged `nostream`, its `replicatefrom` member
    /// when that one runs, else the leader.
    fn follow_target(
        &self,
        cluster: &ClusterView,
        leader: Option<&MemberName>,
    ) -> Option<MemberName> {
        if self.observation.node.tags.nostream {
            // Archive recovery only: no primary_conninfo at all.
            return None;
        }
        let cascade = self
            .observation
            .node
            .tags
            .replicatefrom
            .as_ref()
            .filter(|name| *name != self.me)
            .filter(|name| {
                cluster
                    .member(name)
                    .is_some_and(|member| member.state == crate::observation::MemberState::Running)
            });
        cascade.or(leader).cloned()
    }

    /// Demote immediately if some other member can take over; ask peers when unknown.
    /// `None` when nobody can: the caller keeps going as primary.
    fn demote_if_failover_possible(
        &self,
        cluster: &ClusterView,
        mut actions: Vec<Action>,
        reason: Reason,
    ) -> Option<Verdict> {
        let Some(answers) = &self.observation.peers else {
            let members = self.other_members_with_api(cluster);
            if members.is_empty() {
                return None;
            }
            actions.push(Action::QueryPeers { members });
            return Some((actions, Reason::AskingPeers, self.now));
        };
        if rank_failover_candidates(cluster, self.me, answers, None, false).is_empty() {
            return None;
        }
        actions.push(Action::Demote {
            mode: DemoteMode::Immediate,
        });
        actions.push(role_change(MemberRole::Replica));
        Some((actions, reason, self.after(cluster.config.loop_wait)))
    }

    fn other_members_with_api(&self, cluster: &ClusterView) -> Vec<MemberName> {
        cluster
            .members
            .iter()
            .filter(|member| &member.name != self.me && member.api_url.is_some())
            .map(|member| member.name.clone())
            .collect()
    }

    /// No leader key (patroni.md §1.5).
    fn unhealthy_cluster(&self, cluster: &ClusterView) -> Verdict {
        let local = &self.observation.postgres;
        let wake = self.after(cluster.config.loop_wait);
        if let Some(verdict) = self.race_backoff(cluster) {
            return verdict;
        }
        match check_healthiest(self.observation, cluster) {
            Healthiness::NeedPeers(members) => (
                vec![Action::QueryPeers { members }],
                Reason::AskingPeers,
                self.now,
            ),
            Healthiness::Healthiest => {
                let mut actions = vec![Action::AcquireLeaderKey];
                if cluster.failover.is_some() {
                    actions.push(Action::DeleteFailoverKey);
                }
                if local.role == PgRole::Primary {
                    actions.push(Action::ArmWatchdog);
                    return (
                        actions,
                        Reason::AcquiredLockAsPrimary,
                        self.regular_wakeup(&cluster.config),
                    );
                }
                actions.extend(promotion(cluster, self.me));
                (actions, Reason::PromotedByAcquiringLock, wake)
            }
            Healthiness::NotHealthiest(why) => {
                let actions = if local.role == PgRole::Primary {
                    vec![
                        Action::Demote {
                            mode: DemoteMode::ImmediateNoLock,
                        },
                        role_change(MemberRole::Replica),
                    ]
                } else {
                    Vec::new()
                };
                (actions, Reason::NotHealthiest { why }, wake)
            }
        }
    }

    /// `primary_race_backoff` (patroni.md §1.5.1): a replica holds back from the race during
    /// the first `loop_wait` of the window and, up to the backoff, while WAL still arrives (the
    /// "dead" primary is alive). Not for a targeted failover, nor for a running primary.
    fn race_backoff(&self, cluster: &ClusterView) -> Option<Verdict> {
        let config = &cluster.config;
        let local = &self.observation.postgres;
        let targeted = cluster
            .failover
            .as_ref()
            .is_some_and(|failover| failover.candidate.is_some());
        if config.primary_race_backoff.is_zero() || targeted || local.role == PgRole::Primary {
            return None;
        }
        let since = self.observation.leader_missing_since.unwrap_or(self.now);
        let elapsed = self.now.saturating_since(since);
        let window_end = since.saturating_add(config.primary_race_backoff);
        let hold = elapsed < config.primary_race_backoff
            && (elapsed < config.loop_wait || local.wal_receive_advancing);
        hold.then(|| {
            (
                Vec::new(),
                Reason::RaceBackoff,
                self.after(config.loop_wait).min(window_end),
            )
        })
    }

    /// The leader key is ours and PostgreSQL runs (patroni.md §1.6, §1.8).
    fn leader_with_lock(&self, cluster: &ClusterView) -> Verdict {
        let local = &self.observation.postgres;
        let config = &cluster.config;
        let wake = self.regular_wakeup(config);
        let mut actions = vec![Action::RenewLease];

        if self.observation.watchdog_failed {
            // Required watchdog unusable: never promote with the key, nor keep serving as
            // primary; give the key back so another member takes over.
            let actions = if local.role == PgRole::Primary {
                vec![
                    Action::Demote {
                        mode: DemoteMode::Graceful,
                    },
                    role_change(MemberRole::Replica),
                ]
            } else {
                vec![Action::ReleaseLeaderKey]
            };
            return (actions, Reason::WatchdogFailedReleasingLock, wake);
        }

        if let Some(failover) = &cluster.failover
            && local.role == PgRole::Primary
        {
            let candidate_is_me = failover.candidate.as_ref() == Some(self.me);
            let leader_is_other = failover
                .leader
                .as_ref()
                .is_some_and(|leader| leader != self.me);
            let stale = failover
                .scheduled_at
                .is_some_and(|at| self.now.saturating_since(at) > config.loop_wait.mul_f64(1.5));
            if candidate_is_me || leader_is_other || stale {
                actions.push(Action::DeleteFailoverKey);
                return (actions, Reason::FailoverKeyStale, wake);
            }
            // A scheduled switchover waits for its time exactly: the next cycle runs then.
            if let Some(at) = failover.scheduled_at
                && at > self.now
            {
                return (actions, Reason::SwitchoverScheduled, wake.min(at));
            }
            let Some(answers) = &self.observation.peers else {
                let members = match &failover.candidate {
                    Some(candidate) => vec![candidate.clone()],
                    None => self.other_members_with_api(cluster),
                };
                actions.push(Action::QueryPeers { members });
                return (actions, Reason::AskingPeers, self.now);
            };
            let manual_failover = failover.leader.is_none();
            let ranked = rank_failover_candidates(
                cluster,
                self.me,
                answers,
                failover.candidate.as_ref(),
                manual_failover,
            );
            if ranked.is_empty() {
                actions.push(Action::DeleteFailoverKey);
                return (actions, Reason::SwitchoverNoHealthyMembers, wake);
            }
            // The best-ranked healthy member gets the key straight from us once our
            // PostgreSQL has stopped: no race, and it promotes on the watch event.
            actions.push(Action::Demote {
                mode: DemoteMode::Handover,
            });
            actions.push(Action::HandOverLeaderKey {
                to: ranked[0].name.clone(),
            });
            actions.push(role_change(MemberRole::Replica));
            return (actions, Reason::Switchover, wake);
        }

        if local.role == PgRole::Replica {
            if self.observation.pre_promote_failed_recently(config.ttl) {
                // The fencing script said no: give the key back rather than promote.
                return (
                    vec![Action::ReleaseLeaderKey],
                    Reason::PrePromoteFailedReleasingLock,
                    wake,
                );
            }
            actions.extend(promotion(cluster, self.me));
            return (actions, Reason::PromotingWithLock, wake);
        }
        if config.synchronous_mode != SynchronousMode::Off || cluster.sync.is_some() {
            actions.push(Action::ReconcileSynchronousStandbys);
        }
        (
            actions,
            Reason::LeaderWithLock {
                me: self.me.clone(),
            },
            wake,
        )
    }

    /// Someone else holds the leader key: be its replica (patroni.md §1.6 `follow()`).
    fn follow(&self, cluster: &ClusterView, leader: &MemberName) -> Verdict {
        let local = &self.observation.postgres;
        let wake = self.after(cluster.config.loop_wait);
        if local.role == PgRole::Primary {
            return (
                vec![
                    Action::Demote {
                        mode: DemoteMode::ImmediateNoLock,
                    },
                    role_change(MemberRole::Replica),
                ],
                Reason::LostLockDemoting,
                wake,
            );
        }
        if local.divergence == Divergence::Diverged {
            return self.diverged(cluster, leader, true);
        }
        let target = self.follow_target(cluster, Some(leader));
        if local.upstream != target {
            return (
                vec![Action::RepointTo { upstream: target }],
                Reason::RepointingToLeader {
                    leader: leader.clone(),
                },
                wake,
            );
        }
        (
            Vec::new(),
            Reason::FollowingLeader {
                me: self.me.clone(),
                leader: leader.clone(),
            },
            wake,
        )
    }
}

/// The promotion: the watchdog is armed first (with the key already held), then in
/// synchronous mode `/sync` and the GUC are prepared (patroni.md §1.11 "Before promote"),
/// then promote, then the role-change callback.
fn promotion(cluster: &ClusterView, me: &MemberName) -> Vec<Action> {
    let mut actions = vec![Action::ArmWatchdog];
    if cluster.config.synchronous_mode != SynchronousMode::Off {
        let synchronous_standby_names = if cluster.config.synchronous_mode_strict {
            cluster
                .sync
                .iter()
                .flat_map(|sync| sync.leader.iter().chain(sync.sync_standbys.iter()))
                .filter(|name| *name != me)
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        actions.push(Action::PrepareSyncForPromote {
            synchronous_standby_names,
        });
    }
    actions.push(Action::Promote);
    actions.push(role_change(MemberRole::Primary));
    actions
}

fn role_change(role: MemberRole) -> Action {
    Action::RunCallback {
        event: CallbackEvent::OnRoleChange,
        role,
    }
}

fn on_start(role: MemberRole) -> Action {
    Action::RunCallback {
        event: CallbackEvent::OnStart,
        role,
    }
}
