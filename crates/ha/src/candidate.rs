//! Who may take over: the healthiest-node rule a replica applies before racing for the leader
//! key (patroni.md §1.7) and the failover candidate ranking a leader applies before a
//! switchover or a failover after a crash. Both are pure functions of the observation,
//! including the peers' `/patroni` answers gathered by the shell.

use crate::decision::NotHealthiest;
use crate::observation::{
    ClusterView, FailoverKey, Observation, PeerAnswer, PeerReply, PeerStatus, ProcessState,
    SynchronousMode,
};
use crate::types::{Lsn, MemberName};

/// The outcome of the healthiest-node rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Healthiness {
    /// Race for the leader key.
    Healthiest,
    /// Do not race; follow whoever wins.
    NotHealthiest(NotHealthiest),
    /// The rule needs these members' answers first (`Action::QueryPeers`).
    NeedPeers(Vec<MemberName>),
}

/// Whether synchronous mode is in force: `/sync` names a leader and the config asks for it.
pub fn synchronous_mode_active(cluster: &ClusterView) -> bool {
    cluster.config.synchronous_mode != SynchronousMode::Off
        && cluster
            .sync
            .as_ref()
            .is_some_and(|sync| sync.leader.is_some())
}

/// Patroni's `is_healthiest_node()` for a node whose PostgreSQL is running (or starting) and
/// that sees no leader key.
pub fn check_healthiest(observation: &Observation, cluster: &ClusterView) -> Healthiness {
    let me = &observation.node.name;
    let local = &observation.postgres;
    if matches!(local.process, ProcessState::Starting { .. }) {
        return Healthiness::NotHealthiest(NotHealthiest::Starting);
    }
    // Before anything else, the running primary included: a node whose required watchdog is
    // unusable never becomes primary (and a running primary without the key is demoted).
    if observation.watchdog_failed {
        return Healthiness::NotHealthiest(NotHealthiest::WatchdogFailed);
    }
    if local.is_running_primary() {
        // A running primary may re-take the key unless someone else promoted since: a stalled
        // old primary must not grab the lock back from a newer timeline.
        let behind = match (local.timeline, cluster.history_timeline) {
            (Some(mine), Some(cluster_timeline)) => mine < cluster_timeline,
            _ => false,
        };
        return if behind {
            Healthiness::NotHealthiest(NotHealthiest::TimelineBehind)
        } else {
            Healthiness::Healthiest
        };
    }
    if !observation.node.tags.may_fail_over() {
        return Healthiness::NotHealthiest(NotHealthiest::NoFailoverTag);
    }
    if observation.pre_promote_failed_recently(cluster.config.ttl) {
        return Healthiness::NotHealthiest(NotHealthiest::PrePromoteFailed);
    }
    // Quorum mode: anyone may race, but needs `/sync.quorum` votes (see below); priority
    // mode: only `/sync` members may.
    let quorum_mode = cluster.config.synchronous_mode == SynchronousMode::Quorum;
    let sync_active = synchronous_mode_active(cluster) && !quorum_mode;
    let quorum_active = synchronous_mode_active(cluster) && quorum_mode;
    let sync_listed =
        |name: &MemberName| cluster.sync.as_ref().is_some_and(|sync| sync.lists(name));
    let voter = |name: &MemberName| {
        quorum_active
            && cluster
                .sync
                .as_ref()
                .is_some_and(|sync| sync.sync_standbys.contains(name))
    };

    let mut check_lag = true;
    let mut former_leader = cluster.previous_leader.clone();
    if let Some(failover) = &cluster.failover {
        // Only `/sync` members (synchronous standbys, or quorum voters in quorum mode) may
        // answer a switchover; a manual failover (no leader named) may target any node, which
        // in quorum mode still needs its votes.
        if (sync_active || quorum_active) && failover.leader.is_some() && !sync_listed(me) {
            return Healthiness::NotHealthiest(NotHealthiest::NotSyncStandby);
        }
        match manual_failover_without_leader(observation, cluster, failover) {
            ManualFailover::Race => return Healthiness::Healthiest,
            ManualFailover::Decided(healthiness) => return healthiness,
            // The named candidate cannot take over: in synchronous mode only `/sync`
            // members may step in for it.
            ManualFailover::RaceIgnoringLag if sync_active && !sync_listed(me) => {
                return Healthiness::NotHealthiest(NotHealthiest::NotSyncStandby);
            }
            ManualFailover::RaceIgnoringLag => {
                check_lag = false;
                if failover.leader.is_some() {
                    former_leader = failover.leader.clone();
                }
            }
        }
    } else if sync_active && !sync_listed(me) {
        return Healthiness::NotHealthiest(NotHealthiest::NotSyncStandby);
    }

    if cluster.config.check_timeline {
        match (local.timeline, cluster.history_timeline) {
            (Some(mine), Some(cluster_timeline)) if mine < cluster_timeline => {
                return Healthiness::NotHealthiest(NotHealthiest::TimelineBehind);
            }
            (None, _) => return Healthiness::NotHealthiest(NotHealthiest::TimelineBehind),
            _ => {}
        }
    }
    let Some(my_position) = local.wal_position() else {
        return Healthiness::NotHealthiest(NotHealthiest::UnknownWalPosition);
    };
    if check_lag && let Some(leader_position) = cluster.last_leader_lsn {
        let lag = my_position.lag_behind(leader_position);
        if lag > cluster.config.maximum_lag_on_failover {
            return Healthiness::NotHealthiest(NotHealthiest::LagTooHigh {
                lag,
                maximum: cluster.config.maximum_lag_on_failover,
            });
        }
    }

    // Compare with every other member that could answer, limited to `/sync` in sync mode.
    let others: Vec<MemberName> = cluster
        .members
        .iter()
        .filter(|member| &member.name != me && member.api_url.is_some())
        .filter(|member| member.tags.may_fail_over() || voter(&member.name))
        .filter(|member| !sync_active || sync_listed(&member.name))
        .map(|member| member.name.clone())
        .collect();
    // Quorum mode: the voters known to be no further than me, myself included.
    let mut votes = u32::from(voter(me));
    if others.is_empty() {
        return quorum_verdict(cluster, me, votes, quorum_active);
    }
    let Some(answers) = &observation.peers else {
        return Healthiness::NeedPeers(others);
    };
    let my_priority = observation.node.tags.failover_priority();
    for answer in answers
        .iter()
        .filter(|answer| others.contains(&answer.name))
    {
        let PeerReply::Status(status) = &answer.reply else {
            continue;
        };
        if voter(&answer.name)
            && !status.is_primary
            && status.wal_position.unwrap_or_default() <= my_position
        {
            votes += 1;
        }
        if !status.tags.may_fail_over() || status.watchdog_failed {
            continue;
        }
        if status.is_primary {
            return Healthiness::NotHealthiest(NotHealthiest::PrimaryStillAlive {
                peer: answer.name.clone(),
            });
        }
        let is_former_leader = former_leader.as_ref() == Some(&answer.name);
        let peer_position = status.wal_position.unwrap_or_default();
        if peer_position > my_position && !(sync_active && is_former_leader) {
            return Healthiness::NotHealthiest(NotHealthiest::PeerAhead {
                peer: answer.name.clone(),
            });
        }
        if peer_position == my_position
            && status.tags.failover_priority() > my_priority
            && !is_former_leader
            && (!quorum_active || voter(&answer.name))
        {
            return Healthiness::NotHealthiest(NotHealthiest::PeerHigherPriority {
                peer: answer.name.clone(),
            });
        }
    }
    quorum_verdict(cluster, me, votes, quorum_active)
}

/// Quorum mode: with `votes` voters (myself included) known to be no further than me, I have
/// every acknowledged commit once `votes` reaches `/sync.quorum` (see `ha::quorum`); so does
/// the former primary itself when nobody is ahead of it.
fn quorum_verdict(
    cluster: &ClusterView,
    me: &MemberName,
    votes: u32,
    quorum_active: bool,
) -> Healthiness {
    let Some(sync) = cluster.sync.as_ref().filter(|_| quorum_active) else {
        return Healthiness::Healthiest;
    };
    if votes >= sync.quorum || sync.leader.as_ref() == Some(me) {
        return Healthiness::Healthiest;
    }
    Healthiness::NotHealthiest(NotHealthiest::QuorumNotReached {
        votes,
        needed: sync.quorum,
    })
}

enum ManualFailover {
    Race,
    RaceIgnoringLag,
    Decided(Healthiness),
}

/// Replica side of a `/failover` key with no leader key (patroni.md §1.8).
fn manual_failover_without_leader(
    observation: &Observation,
    cluster: &ClusterView,
    failover: &FailoverKey,
) -> ManualFailover {
    let me = &observation.node.name;
    match &failover.candidate {
        Some(candidate) if candidate == me => ManualFailover::Race,
        Some(candidate) => {
            let Some(answers) = &observation.peers else {
                return ManualFailover::Decided(Healthiness::NeedPeers(vec![candidate.clone()]));
            };
            let candidate_healthy = answers.iter().any(|answer| {
                &answer.name == candidate
                    && matches!(&answer.reply, PeerReply::Status(status)
                        if status.tags.may_fail_over() && !status.watchdog_failed)
            });
            if candidate_healthy {
                return ManualFailover::Decided(Healthiness::NotHealthiest(
                    NotHealthiest::FailoverCandidateIsOther {
                        candidate: candidate.clone(),
                    },
                ));
            }
            former_leader_waits(observation, cluster, failover)
        }
        None => former_leader_waits(observation, cluster, failover),
    }
}

/// The former leader races only when no other member is healthy.
fn former_leader_waits(
    observation: &Observation,
    cluster: &ClusterView,
    failover: &FailoverKey,
) -> ManualFailover {
    let me = &observation.node.name;
    if failover.leader.as_ref() != Some(me) {
        return ManualFailover::RaceIgnoringLag;
    }
    let others: Vec<MemberName> = cluster
        .members
        .iter()
        .filter(|member| &member.name != me && member.api_url.is_some())
        .map(|member| member.name.clone())
        .collect();
    let Some(answers) = &observation.peers else {
        if others.is_empty() {
            return ManualFailover::RaceIgnoringLag;
        }
        return ManualFailover::Decided(Healthiness::NeedPeers(others));
    };
    let healthy_other = answers.iter().find(|answer| {
        others.contains(&answer.name)
            && matches!(&answer.reply, PeerReply::Status(status)
                if status.tags.may_fail_over() && !status.watchdog_failed)
    });
    match healthy_other {
        Some(peer) => ManualFailover::Decided(Healthiness::NotHealthiest(
            NotHealthiest::FormerLeaderWaits {
                healthy_peer: peer.name.clone(),
            },
        )),
        None => ManualFailover::RaceIgnoringLag,
    }
}

/// A member the leader could hand over to, with the facts it was ranked by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailoverCandidate {
    pub name: MemberName,
    pub wal_position: Lsn,
    pub failover_priority: i64,
}

/// Members other than `me` that could take over now, best first: eligible (reachable, not
/// `nofailover`, watchdog healthy, within `maximum_lag_on_failover` of `/status.optime`, timeline
/// not behind when `check_timeline`, a synchronous standby in sync mode unless this is a manual
/// failover, the named candidate if one is given), then by WAL position, `failover_priority`,
/// and name so the order is total.
pub fn rank_failover_candidates(
    cluster: &ClusterView,
    me: &MemberName,
    answers: &[PeerAnswer],
    only: Option<&MemberName>,
    manual_failover: bool,
) -> Vec<FailoverCandidate> {
    let sync_active = synchronous_mode_active(cluster);
    let mut candidates: Vec<FailoverCandidate> = cluster
        .members
        .iter()
        .filter(|member| &member.name != me && member.api_url.is_some())
        .filter(|member| member.tags.may_fail_over())
        .filter(|member| only.is_none_or(|only| only == &member.name))
        .filter(|member| {
            manual_failover
                || !sync_active
                || cluster
                    .sync
                    .as_ref()
                    .is_some_and(|sync| sync.lists(&member.name))
        })
        .filter_map(|member| {
            let status = answers.iter().find_map(|answer| match &answer.reply {
                PeerReply::Status(status) if answer.name == member.name => Some(status),
                _ => None,
            })?;
            eligible(cluster, status).then(|| FailoverCandidate {
                name: member.name.clone(),
                wal_position: status.wal_position.unwrap_or_default(),
                failover_priority: status.tags.failover_priority(),
            })
        })
        .collect();
    candidates.sort_by(|a, b| {
        b.wal_position
            .cmp(&a.wal_position)
            .then(b.failover_priority.cmp(&a.failover_priority))
            .then(a.name.cmp(&b.name))
    });
    candidates
}

fn eligible(cluster: &ClusterView, status: &PeerStatus) -> bool {
    if !status.tags.may_fail_over() || status.watchdog_failed || status.is_primary {
        return false;
    }
    if let (Some(leader_position), Some(position)) = (cluster.last_leader_lsn, status.wal_position)
        && position.lag_behind(leader_position) > cluster.config.maximum_lag_on_failover
    {
        return false;
    }
    if status.wal_position.is_none() && cluster.last_leader_lsn.is_some() {
        return false;
    }
    if cluster.config.check_timeline
        && let Some(cluster_timeline) = cluster.history_timeline
        && status
            .timeline
            .is_none_or(|timeline| timeline < cluster_timeline)
    {
        return false;
    }
    true
}
