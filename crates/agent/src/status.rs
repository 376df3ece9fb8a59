//! What the agent publishes for the REST API after each cycle.

use dcs::KvBackend;
use ha::{Decision, SynchronousMode};
use rest::{AgentFigures, AgentIdentity, PatroniStatus, Xlog};

use crate::agent::Agent;

/// Patroni's `state` and `role` words for the member key and `/patroni`.
pub(crate) fn state_and_role<B: KvBackend>(agent: &Agent<B>) -> (String, String) {
    let running = agent.facts.is_some();
    let state = if let Some(task) = &agent.long_task {
        match task.kind {
            ha::LongActionKind::Bootstrap => "initializing new cluster",
            ha::LongActionKind::CreateReplica | ha::LongActionKind::Reinitialize => {
                "creating replica"
            }
            _ => "starting",
        }
    } else if running {
        "running"
    } else if agent.postmaster.is_some() || agent.adopted.is_some() {
        "starting"
    } else if agent.crashed_since.is_some() {
        "crashed"
    } else {
        "stopped"
    };
    let role = match &agent.facts {
        Some(facts) => role_word(Some(facts.in_recovery), false, false),
        None => role_word(
            None,
            postgres::files::is_empty_dir(&agent.pg.data_dir).unwrap_or(true),
            agent.acting_as_primary(),
        ),
    };
    (state.to_owned(), role.to_owned())
}

/// Patroni's role word. `in_recovery`: what the last probe answered (`None`: no answer, or
/// not running). Without an answer: an empty data directory is `uninitialized`; a running
/// PostgreSQL whose data directory has no `standby.signal` is still the primary it was (a
/// busy primary whose probe timed out must not read as a replica); anything else a replica.
fn role_word(
    in_recovery: Option<bool>,
    empty_data_dir: bool,
    running_without_standby_signal: bool,
) -> &'static str {
    match in_recovery {
        Some(false) => "primary",
        Some(true) => "replica",
        None if empty_data_dir => "uninitialized",
        None if running_without_standby_signal => "primary",
        None => "replica",
    }
}

pub(crate) fn replication_state<B: KvBackend>(agent: &Agent<B>) -> Option<String> {
    let facts = agent.facts.as_ref()?;
    if !facts.in_recovery {
        return None;
    }
    Some(match &facts.wal_receiver {
        Some(receiver) if receiver.status == "streaming" => "streaming".to_owned(),
        _ => "in archive recovery".to_owned(),
    })
}

pub(crate) fn patroni_status<B: KvBackend>(agent: &Agent<B>, decision: &Decision) -> PatroniStatus {
    let (state, role) = state_and_role(agent);
    let facts = agent.facts.as_ref();
    let xlog = facts.map(|facts| {
        if facts.in_recovery {
            Xlog {
                location: None,
                received_location: facts.received_lsn.map(|lsn| lsn.0),
                replayed_location: facts.replayed_lsn.map(|lsn| lsn.0),
                paused: Some(facts.replay_paused),
            }
        } else {
            Xlog {
                location: facts.write_lsn.map(|lsn| lsn.0),
                received_location: None,
                replayed_location: None,
                paused: None,
            }
        }
    });
    let listed_in_sync = listed_in_sync(agent);
    PatroniStatus {
        state,
        role,
        server_version: facts.map(|facts| facts.server_version),
        xlog,
        timeline: facts.and_then(|facts| facts.timeline),
        replication_state: replication_state(agent),
        database_system_identifier: facts.map(|facts| facts.system_identifier.to_string()),
        cluster_unlocked: agent
            .snapshot
            .as_ref()
            .is_some_and(|snapshot| snapshot.view.leader.is_none()),
        pause: agent.last_config.pause,
        sync_standby: listed_in_sync == Some(SynchronousMode::On),
        quorum_standby: listed_in_sync == Some(SynchronousMode::Quorum),
        tags: agent.config.tags.clone(),
        watchdog_failed: agent.watchdog.failed(),
        pending_restart: agent.pending_restart.is_pending(),
        message: decision.message.clone(),
        patroni: identity(&agent.config),
        holds_leader_key: agent.holds_leader,
        last_cycle: Some(std::time::Instant::now()),
        ttl: agent.last_config.ttl,
        cluster_optime: agent
            .snapshot
            .as_ref()
            .and_then(|snapshot| snapshot.view.last_leader_lsn)
            .map(|lsn| lsn.0),
        maximum_lag_on_failover: agent.last_config.maximum_lag_on_failover,
        agent: figures(agent),
    }
}

/// The synchronous mode in force when this running replica is listed in `/sync`
/// (`sync_standby`): `On` makes it a synchronous standby, `Quorum` a quorum standby (a voter).
/// `None` when it is not a running replica, not listed, or synchronous mode is off.
fn listed_in_sync<B: KvBackend>(agent: &Agent<B>) -> Option<SynchronousMode> {
    if !agent.facts.as_ref().is_some_and(|facts| facts.in_recovery) {
        return None;
    }
    let snapshot = agent.snapshot.as_ref()?;
    let mode = snapshot.view.config.synchronous_mode;
    let sync = snapshot.view.sync.as_ref()?;
    (mode != SynchronousMode::Off && sync.sync_standbys.contains(&agent.me())).then_some(mode)
}

/// pgwarden's own figures: the lease's time left and the cycle's duration are measured from
/// this cycle's keepalive (sent at the start of the cycle); failovers are the `history` entries.
fn figures<B: KvBackend>(agent: &Agent<B>) -> AgentFigures {
    let now = tokio::time::Instant::now();
    let renewed = agent.lease_renewed_at.filter(|_| agent.lease.is_some());
    AgentFigures {
        lease_time_left: renewed
            .map(|renewed| (renewed + agent.lease_ttl).saturating_duration_since(now)),
        cycle_duration: renewed
            .filter(|_| agent.keepalive_ok)
            .map(|renewed| now.saturating_duration_since(renewed)),
        timeline_switches: agent
            .snapshot
            .as_ref()
            .map_or(0, |snapshot| snapshot.history.len() as u64),
        store_leader: None,
    }
}

pub fn identity(config: &crate::config::RunConfig) -> AgentIdentity {
    AgentIdentity {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        scope: config.scope.clone(),
        name: config.name.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::role_word;

    #[test]
    fn the_role_follows_the_probe_else_the_data_directory() {
        // (last probe's in_recovery, empty data dir, running without standby.signal) -> role
        let table = [
            ((Some(false), false, false), "primary"),
            ((Some(true), false, true), "replica"),
            ((None, true, false), "uninitialized"),
            ((None, false, true), "primary"),
            ((None, false, false), "replica"),
        ];
        for ((in_recovery, empty, running_primary), role) in table {
            assert_eq!(
                role_word(in_recovery, empty, running_primary),
                role,
                "{in_recovery:?} {empty} {running_primary}"
            );
        }
    }
}
