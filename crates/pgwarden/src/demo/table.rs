//! The member table: one row per member in patronictl's columns (Member, Host, Role, State, TL,
//! Lag in MB), built from each member's `GET /patroni` status.
//!
//! Pure: it takes the statuses already fetched (or their absence) and returns text, so
//! `pgwarden demo` and a later `pgwarden ctl list` print the same table.

use serde_json::Value;

/// One MiB, the unit of the Lag column.
const MIB: u64 = 1024 * 1024;

/// What is known of one member: its name, the PostgreSQL `host:port` clients use, and its
/// `GET /patroni` JSON (`None` when the REST API did not answer).
#[derive(Debug, Clone)]
pub struct MemberObservation {
    pub name: String,
    pub host: String,
    pub status: Option<Value>,
}

/// One rendered row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRow {
    pub member: String,
    pub host: String,
    /// `Leader`, `Replica`, `Uninitialized`, or empty when the member did not answer.
    pub role: String,
    /// PostgreSQL's state; for a running replica its replication state (`streaming`), as
    /// patronictl shows it.
    pub state: String,
    pub timeline: Option<u64>,
    /// How far the replica's WAL position is behind the leader's, in whole MiB; `None` for the
    /// leader or when a position is unknown.
    pub lag_mb: Option<u64>,
}

/// The rows of `members`, in the given order. A replica's lag is measured against the WAL
/// location of the member reporting `role: primary` (its furthest of received and replayed
/// positions, as patronictl measures it).
pub fn rows(members: &[MemberObservation]) -> Vec<MemberRow> {
    let leader_location = members
        .iter()
        .filter_map(|member| member.status.as_ref())
        .find(|status| status["role"] == "primary")
        .and_then(|status| status["xlog"]["location"].as_u64());
    members
        .iter()
        .map(|member| row(member, leader_location))
        .collect()
}

fn row(member: &MemberObservation, leader_location: Option<u64>) -> MemberRow {
    let Some(status) = &member.status else {
        return MemberRow {
            member: member.name.clone(),
            host: member.host.clone(),
            role: String::new(),
            state: "no answer".to_owned(),
            timeline: None,
            lag_mb: None,
        };
    };
    let role_text = status["role"].as_str().unwrap_or_default();
    let state_text = status["state"].as_str().unwrap_or("unknown");
    let role = match role_text {
        "primary" => "Leader".to_owned(),
        "replica" => "Replica".to_owned(),
        "" => String::new(),
        other => capitalized(other),
    };
    let state = match status["replication_state"].as_str() {
        Some(replication) if role_text == "replica" && state_text == "running" => {
            replication.to_owned()
        }
        _ => state_text.to_owned(),
    };
    let replica_location = [
        status["xlog"]["received_location"].as_u64(),
        status["xlog"]["replayed_location"].as_u64(),
    ]
    .into_iter()
    .flatten()
    .max();
    let lag_mb = match (role_text, leader_location, replica_location) {
        ("replica", Some(leader), Some(replica)) => Some(leader.saturating_sub(replica) / MIB),
        _ => None,
    };
    MemberRow {
        member: member.name.clone(),
        host: member.host.clone(),
        role,
        state,
        timeline: status["timeline"].as_u64(),
        lag_mb,
    }
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

/// The system identifier the members report (the first one found), for the table's title.
pub fn system_identifier(members: &[MemberObservation]) -> Option<String> {
    members
        .iter()
        .filter_map(|member| member.status.as_ref())
        .find_map(|status| status["database_system_identifier"].as_str())
        .map(str::to_owned)
}

/// The boxed table with a `+ Cluster: SCOPE (SYSTEM ID) ` title in its top border, drawn
/// by the same table code as `pgwarden ctl list`.
pub fn render(scope: &str, system_identifier: Option<&str>, rows: &[MemberRow]) -> String {
    let mut table = ctl::table::Table::new(&["Member", "Host", "Role", "State", "TL", "Lag in MB"]);
    for row in rows {
        table.push(vec![
            row.member.clone(),
            row.host.clone(),
            row.role.clone(),
            row.state.clone(),
            row.timeline.map(|tl| tl.to_string()).unwrap_or_default(),
            row.lag_mb.map(|lag| lag.to_string()).unwrap_or_default(),
        ]);
    }
    let title = match system_identifier {
        Some(id) => format!("Cluster: {scope} ({id})"),
        None => format!("Cluster: {scope}"),
    };
    table.render(&title)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn observation(name: &str, status: Option<Value>) -> MemberObservation {
        MemberObservation {
            name: name.to_owned(),
            host: format!("127.0.0.1:{}", 5432 + name.len()),
            status,
        }
    }

    #[test]
    fn rows_follow_patronictl_wording_and_lag() {
        let members = [
            observation(
                "n1",
                Some(json!({"state": "running", "role": "primary", "timeline": 2,
                    "xlog": {"location": 50 * MIB + 10}})),
            ),
            observation(
                "n2",
                Some(json!({"state": "running", "role": "replica", "timeline": 2,
                    "replication_state": "streaming",
                    "xlog": {"received_location": 50 * MIB, "replayed_location": 40 * MIB}})),
            ),
            observation(
                "n3",
                Some(json!({"state": "starting", "role": "replica",
                    "replication_state": "streaming"})),
            ),
            observation("n4", None),
        ];
        let rows = rows(&members);
        let summary: Vec<(&str, &str, Option<u64>, Option<u64>)> = rows
            .iter()
            .map(|row| {
                (
                    row.role.as_str(),
                    row.state.as_str(),
                    row.timeline,
                    row.lag_mb,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("Leader", "running", Some(2), None),
                ("Replica", "streaming", Some(2), Some(0)),
                ("Replica", "starting", None, None),
                ("", "no answer", None, None),
            ]
        );
    }

    #[test]
    fn a_replica_behind_by_megabytes() {
        let members = [
            observation(
                "n1",
                Some(
                    json!({"state": "running", "role": "primary", "xlog": {"location": 90 * MIB}}),
                ),
            ),
            observation(
                "n2",
                Some(json!({"state": "running", "role": "replica",
                    "xlog": {"replayed_location": 20 * MIB}})),
            ),
        ];
        assert_eq!(rows(&members)[1].lag_mb, Some(70));
    }

    #[test]
    fn renders_a_boxed_table_with_the_cluster_title() {
        let rows = [
            MemberRow {
                member: "n1".into(),
                host: "127.0.0.1:5432".into(),
                role: "Leader".into(),
                state: "running".into(),
                timeline: Some(1),
                lag_mb: None,
            },
            MemberRow {
                member: "n2".into(),
                host: "127.0.0.1:5433".into(),
                role: "Replica".into(),
                state: "streaming".into(),
                timeline: Some(1),
                lag_mb: Some(0),
            },
        ];
        let expected = "\
+ Cluster: demo (7) ------+---------+-----------+----+-----------+
| Member | Host           | Role    | State     | TL | Lag in MB |
+--------+----------------+---------+-----------+----+-----------+
| n1     | 127.0.0.1:5432 | Leader  | running   |  1 |           |
| n2     | 127.0.0.1:5433 | Replica | streaming |  1 |         0 |
+--------+----------------+---------+-----------+----+-----------+
";
        assert_eq!(render("demo", Some("7"), &rows), expected);
    }
}
