//! `GET /metrics`: Prometheus text with Patroni's metric names (patroni.md §4.4) and
//! pgwarden's own `pgwarden_*` figures, every sample labelled `{scope, name}`.

use std::fmt::Write;

use crate::status::PatroniStatus;

/// Renders every metric of `status`.
pub fn render(status: &PatroniStatus) -> String {
    let labels = format!(
        "scope=\"{}\",name=\"{}\"",
        escape(&status.patroni.scope),
        escape(&status.patroni.name)
    );
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, value: f64| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    };
    let flag = |on: bool| if on { 1.0 } else { 0.0 };
    let xlog = status.xlog.as_ref();
    let position = |value: Option<u64>| value.map_or(0.0, |lsn| lsn as f64);
    let running = status.running();
    let primary = status.is_primary_leader();
    let replica = status.is_running_replica();

    gauge(
        "patroni_version",
        "Patroni's version, zero-padded (pgwarden's version).",
        version_number(&status.patroni.version),
    );
    gauge(
        "patroni_postgres_running",
        "Value is 1 if PostgreSQL is running, 0 otherwise.",
        flag(running),
    );
    gauge(
        "patroni_primary",
        "Value is 1 if this node is the leader, 0 otherwise.",
        flag(primary),
    );
    gauge(
        "patroni_xlog_location",
        "Current location of the primary's WAL.",
        position(xlog.and_then(|x| x.location)),
    );
    gauge(
        "patroni_standby_leader",
        "Value is 1 if this node is the standby leader, 0 otherwise.",
        flag(status.is_standby_leader()),
    );
    gauge(
        "patroni_replica",
        "Value is 1 if this node is a replica, 0 otherwise.",
        flag(replica),
    );
    gauge(
        "patroni_sync_standby",
        "Value is 1 if this node is a synchronous standby, 0 otherwise.",
        flag(replica && status.sync_standby),
    );
    gauge(
        "patroni_quorum_standby",
        "Value is 1 if this node is a quorum standby, 0 otherwise.",
        flag(replica && status.quorum_standby),
    );
    gauge(
        "patroni_xlog_received_location",
        "Current location of the received WAL.",
        position(xlog.and_then(|x| x.received_location)),
    );
    gauge(
        "patroni_xlog_replayed_location",
        "Current location of the replayed WAL.",
        position(xlog.and_then(|x| x.replayed_location)),
    );
    gauge(
        "patroni_xlog_paused",
        "Value is 1 if WAL replay is paused, 0 otherwise.",
        flag(xlog.and_then(|x| x.paused).unwrap_or(false)),
    );
    gauge(
        "patroni_postgres_server_version",
        "Version of the running PostgreSQL.",
        status.server_version.map_or(0.0, f64::from),
    );
    gauge(
        "patroni_cluster_unlocked",
        "Value is 1 if the cluster is unlocked, 0 if locked.",
        flag(status.cluster_unlocked),
    );
    gauge(
        "patroni_failsafe_mode_is_active",
        "Value is 1 if failsafe mode is active, 0 if inactive.",
        0.0,
    );
    gauge(
        "patroni_postgres_timeline",
        "PostgreSQL timeline of this node (0 if unknown).",
        status.timeline.map_or(0.0, f64::from),
    );
    gauge(
        "patroni_pending_restart",
        "Value is 1 if PostgreSQL needs a restart, 0 otherwise.",
        flag(status.pending_restart),
    );
    gauge(
        "patroni_is_paused",
        "Value is 1 if auto failover is disabled, 0 otherwise.",
        flag(status.pause),
    );
    gauge(
        "patroni_postgres_streaming",
        "Value is 1 if PostgreSQL is streaming, 0 otherwise.",
        flag(status.replication_state.as_deref() == Some("streaming")),
    );
    gauge(
        "patroni_postgres_in_archive_recovery",
        "Value is 1 if PostgreSQL is replicating from the archive, 0 otherwise.",
        flag(status.replication_state.as_deref() == Some("in archive recovery")),
    );

    let figures = &status.agent;
    gauge(
        "pgwarden_leader_key_held",
        "Value is 1 if this member holds the leader key, 0 otherwise.",
        flag(status.holds_leader_key),
    );
    if let Some(store_leader) = figures.store_leader {
        gauge(
            "pgwarden_store_leader",
            "Value is 1 if this member's embedded store is the Raft leader.",
            flag(store_leader),
        );
    }
    gauge(
        "pgwarden_lease_time_left_seconds",
        "Time left on this member's store lease at the last cycle.",
        figures
            .lease_time_left
            .map_or(0.0, |left| left.as_secs_f64()),
    );
    gauge(
        "pgwarden_failovers",
        "Timeline switches (failovers and switchovers) recorded in the history key.",
        figures.timeline_switches as f64,
    );
    gauge(
        "pgwarden_cycle_duration_seconds",
        "Duration of the last HA cycle.",
        figures
            .cycle_duration
            .map_or(0.0, |cycle| cycle.as_secs_f64()),
    );
    out
}

/// `4.1.4` → 40104 (Patroni's zero-padded `040104`, as a number).
fn version_number(version: &str) -> f64 {
    let mut parts = version
        .split(|c: char| !c.is_ascii_digit())
        .filter(|part| !part.is_empty())
        .map(|part| part.parse::<u32>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    let patch = parts.next().unwrap_or(0);
    f64::from(major * 10_000 + minor * 100 + patch)
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
