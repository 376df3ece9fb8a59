//! PostgreSQL not running or still starting (patroni.md §1.4, §1.10, and §1.2 step 6):
//! restart in place, start read-only or as a replica, rewind or reinitialize.

use super::{Cycle, Verdict, on_start, role_change};
use crate::decision::{Action, DemoteMode, Reason};
use crate::observation::{ClusterView, Divergence, MemberRole, PgRole, ProcessState};
use crate::types::{Instant, MemberName};

impl Cycle<'_> {
    /// PostgreSQL is not running (patroni.md §1.4).
    pub(super) fn recover(&self, cluster: &ClusterView, key_is_mine: bool) -> Verdict {
        let local = &self.observation.postgres;
        let config = &cluster.config;
        let wake = self.after(config.loop_wait);
        if key_is_mine {
            if local.last_start_failed {
                return (
                    vec![Action::ReleaseLeaderKey, role_change(MemberRole::Demoted)],
                    Reason::StartFailedReleasingLock,
                    self.now,
                );
            }
            let crashed_since = match local.process {
                ProcessState::Crashed { since } => Some(since),
                _ => None,
            };
            if let (Some(since), PgRole::Primary) = (crashed_since, local.role) {
                let out_of_time = config.primary_start_timeout.is_zero()
                    || self.now.saturating_since(since) > config.primary_start_timeout;
                if out_of_time
                    && let Some(verdict) = self.demote_if_failover_possible(
                        cluster,
                        vec![Action::RenewLease],
                        Reason::FailingOverAfterCrash,
                    )
                {
                    return verdict;
                }
                return (
                    vec![
                        Action::RenewLease,
                        Action::StartAsPrimary,
                        on_start(MemberRole::Primary),
                    ],
                    Reason::RestartingPrimaryAfterCrash,
                    self.regular_wakeup(config),
                );
            }
            return (
                vec![Action::RenewLease, Action::StartReadOnly],
                Reason::StartingReadOnlyWithLock,
                self.regular_wakeup(config),
            );
        }
        let leader = cluster.leader_name();
        if let (Divergence::Diverged, Some(leader)) = (local.divergence, leader) {
            return self.diverged(cluster, leader, false);
        }
        (
            vec![
                Action::StartAsReplica {
                    upstream: self.follow_target(cluster, leader),
                },
                on_start(MemberRole::Replica),
            ],
            Reason::StartingAsReplica,
            wake,
        )
    }

    /// Our timeline forked off the leader's: rewind, reinitialize, or report (§1.10).
    pub(super) fn diverged(
        &self,
        cluster: &ClusterView,
        leader: &MemberName,
        running: bool,
    ) -> Verdict {
        let node = &self.observation.node;
        let wake = self.after(cluster.config.loop_wait);
        if node.use_pg_rewind && self.observation.postgres.can_rewind {
            return (
                vec![Action::Rewind {
                    source: leader.clone(),
                }],
                Reason::Rewinding {
                    source: leader.clone(),
                },
                wake,
            );
        }
        if node.reinit_on_diverged_timelines {
            return (
                vec![Action::Reinitialize {
                    source: leader.clone(),
                }],
                Reason::Reinitializing {
                    source: leader.clone(),
                },
                wake,
            );
        }
        let actions = if running {
            Vec::new()
        } else {
            vec![Action::StartAsReplica {
                upstream: self.follow_target(cluster, Some(leader)),
            }]
        };
        (actions, Reason::DivergedCannotRewind, wake)
    }

    pub(super) fn starting(
        &self,
        cluster: &ClusterView,
        key_is_mine: bool,
        since: Instant,
    ) -> Verdict {
        let config = &cluster.config;
        if key_is_mine {
            let role = self.observation.postgres.role;
            if role == PgRole::Primary
                && self.now.saturating_since(since) > config.primary_start_timeout
                && let Some(verdict) = self.demote_if_failover_possible(
                    cluster,
                    vec![Action::RenewLease],
                    Reason::StartTimedOut,
                )
            {
                return verdict;
            }
            return (
                vec![Action::RenewLease],
                Reason::StartingWithLock,
                self.regular_wakeup(config),
            );
        }
        let our_bootstrap_starting = cluster.initialize == Some(None) && cluster.leader.is_none();
        if self.observation.postgres.role == PgRole::Primary && !our_bootstrap_starting {
            // A primary coming up without the key must not start taking writes (the one
            // exception: the cluster we just initialised, which takes the key once running).
            return (
                vec![
                    Action::Demote {
                        mode: DemoteMode::ImmediateNoLock,
                    },
                    role_change(MemberRole::Replica),
                ],
                Reason::LostLockDemoting,
                self.after(config.loop_wait),
            );
        }
        (
            Vec::new(),
            Reason::WaitingForStart,
            self.after(config.loop_wait),
        )
    }
}
