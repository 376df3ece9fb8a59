//! The synchronous-standby resolver for `synchronous_mode: on` (priority, `FIRST n`), as a pure
//! function (patroni.md §1.11).
//!
//! Ordering invariant kept by the plan: every member listed in `/sync` is really synchronous.
//! To add a standby the GUC `synchronous_standby_names` is changed first and `/sync` only after
//! PostgreSQL confirms it as `sync`; to remove one, `/sync` shrinks first and the GUC after.
//! Quorum mode (`ANY k`) is resolved by `ha::quorum`.

use crate::observation::{Member, MemberState, Tags};
use crate::types::{Lsn, MemberName};

/// The strict-mode placeholder that blocks commits when no standby is available.
pub const STRICT_PLACEHOLDER: &str = "__patroni_strict_sync_replica_placeholder__";

/// Which LSN of `pg_stat_replication` counts, from `synchronous_commit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncCommitLevel {
    /// `remote_apply`: replay_lsn.
    RemoteApply,
    /// `remote_write`: write_lsn.
    RemoteWrite,
    /// `on`/`local`/anything else: flush_lsn.
    #[default]
    Flush,
}

/// One row of `pg_stat_replication` on the primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationRow {
    pub application_name: String,
    /// `state` = `streaming`.
    pub streaming: bool,
    /// `sync_state` = `sync` (or `quorum`).
    pub sync_state_sync: bool,
    pub write_lsn: Option<Lsn>,
    pub flush_lsn: Option<Lsn>,
    pub replay_lsn: Option<Lsn>,
}

impl ReplicationRow {
    pub(crate) fn lsn(&self, level: SyncCommitLevel) -> Lsn {
        match level {
            SyncCommitLevel::RemoteApply => self.replay_lsn,
            SyncCommitLevel::RemoteWrite => self.write_lsn,
            SyncCommitLevel::Flush => self.flush_lsn,
        }
        .unwrap_or_default()
    }
}

/// Everything the resolver reads.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncInput<'a> {
    pub leader: &'a MemberName,
    pub members: &'a [Member],
    pub replication: &'a [ReplicationRow],
    pub node_count: u32,
    pub strict: bool,
    /// `maximum_lag_on_syncnode` in bytes (`None` = off).
    pub maximum_lag_on_syncnode: Option<u64>,
    pub commit_level: SyncCommitLevel,
    /// Members currently in `/sync.sync_standby`.
    pub current_sync: &'a [MemberName],
    /// Members currently named by `synchronous_standby_names` ...
    pub current_guc: &'a [MemberName],
    /// ... and its raw value (to tell empty from the strict placeholder).
    pub current_guc_value: &'a str,
    /// The primary's flush LSN when `synchronous_standby_names` last changed: a newly listed
    /// standby counts as synchronous only once it has reached it, so every commit acknowledged
    /// before the change is on it too. `None` = unknown (no extra requirement).
    pub flush_lsn_at_guc_change: Option<Lsn>,
}

/// One write the primary must make, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncStep {
    /// Write `/sync` = {leader, sync_standby: these} (CAS on its mod_revision).
    WriteSyncKey { standbys: Vec<MemberName> },
    /// Set `synchronous_standby_names` to this value and reload PostgreSQL.
    SetStandbyNames {
        value: String,
        members: Vec<MemberName>,
    },
}

/// Chooses the synchronous standbys and the ordered writes that reach them safely.
pub fn plan(input: &SyncInput<'_>) -> Vec<SyncStep> {
    let desired = choose_standbys(input);
    let mut steps = Vec::new();

    // Shrink `/sync` first to the members that stay, so it never lists a removed standby
    // after the GUC stopped waiting for it.
    let staying: Vec<MemberName> = sorted(
        input
            .current_sync
            .iter()
            .filter(|name| desired.contains(name))
            .cloned()
            .collect(),
    );
    let mut sync_now = sorted(input.current_sync.to_vec());
    if staying != sync_now && !(input.strict && desired.is_empty()) {
        steps.push(SyncStep::WriteSyncKey {
            standbys: staying.clone(),
        });
        sync_now = staying;
    }

    // In strict mode with nobody to pick, keep waiting for the last known standbys (or the
    // placeholder) rather than accepting commits nobody else has.
    let guc_members = if input.strict && desired.is_empty() {
        sync_now.clone()
    } else {
        desired.clone()
    };
    let value = render_standby_names(&guc_members, input.node_count, input.strict);
    if value != input.current_guc_value {
        steps.push(SyncStep::SetStandbyNames {
            value,
            members: guc_members,
        });
    }

    // Add to `/sync` only the standbys PostgreSQL already reports as synchronous and that
    // caught up with what was committed before they were listed.
    let confirmed: Vec<MemberName> = sorted(
        desired
            .iter()
            .filter(|name| confirmed_synchronous(input, name))
            .cloned()
            .collect(),
    );
    let mut next = sync_now.clone();
    for name in confirmed {
        if !next.contains(&name) {
            next.push(name);
        }
    }
    let next = sorted(next);
    if next != sync_now {
        steps.push(SyncStep::WriteSyncKey { standbys: next });
    }
    steps
}

/// Candidates from `pg_stat_replication`: streaming running members that may be synchronous,
/// best first (sync_priority, already sync, LSN), the most lagging dropped when
/// `maximum_lag_on_syncnode` is set, at most `node_count`, returned sorted by name.
pub fn choose_standbys(input: &SyncInput<'_>) -> Vec<MemberName> {
    let member_tags = |name: &str| -> Option<&Tags> {
        input
            .members
            .iter()
            .find(|member| member.name.as_str() == name && member.state == MemberState::Running)
            .map(|member| &member.tags)
    };
    let mut rows: Vec<(&ReplicationRow, &Tags)> = input
        .replication
        .iter()
        .filter(|row| row.streaming && row.application_name != input.leader.as_str())
        .filter_map(|row| member_tags(&row.application_name).map(|tags| (row, tags)))
        .filter(|(_, tags)| tags.may_be_sync())
        .collect();
    if let Some(maximum) = input.maximum_lag_on_syncnode {
        let best = rows
            .iter()
            .map(|(row, _)| row.lsn(input.commit_level))
            .max()
            .unwrap_or_default();
        rows.retain(|(row, _)| row.lsn(input.commit_level).lag_behind(best) <= maximum);
    }
    rows.sort_by(|(a, a_tags), (b, b_tags)| {
        b_tags
            .sync_priority()
            .cmp(&a_tags.sync_priority())
            .then(b.sync_state_sync.cmp(&a.sync_state_sync))
            .then(b.lsn(input.commit_level).cmp(&a.lsn(input.commit_level)))
            .then(b_tags.may_fail_over().cmp(&a_tags.may_fail_over()))
            .then(a.application_name.cmp(&b.application_name))
    });
    let chosen = rows
        .into_iter()
        .take(usize::try_from(input.node_count.max(1)).unwrap_or(usize::MAX))
        .map(|(row, _)| MemberName::new(row.application_name.clone()))
        .collect();
    sorted(chosen)
}

/// `synchronous_standby_names` in Patroni's format: one name alone, several as
/// `N (a,b)`, names sorted and quoted when needed; empty = asynchronous, or the strict
/// placeholder when strict mode has nobody.
pub fn render_standby_names(members: &[MemberName], node_count: u32, strict: bool) -> String {
    let members = sorted(members.to_vec());
    match members.as_slice() {
        [] if strict => STRICT_PLACEHOLDER.to_owned(),
        [] => String::new(),
        [single] => quote_name(single.as_str()),
        many => {
            let names: Vec<String> = many.iter().map(|name| quote_name(name.as_str())).collect();
            let count = usize::try_from(node_count.max(1))
                .unwrap_or(usize::MAX)
                .min(many.len());
            format!("{count} ({})", names.join(","))
        }
    }
}

/// Quotes a standby name unless it is a plain lowercase identifier (and not a keyword).
pub(crate) fn quote_name(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|first| first.is_ascii_lowercase() || first == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$')
        && !matches!(name, "first" | "any");
    if plain {
        name.to_owned()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

pub(crate) fn sorted(mut names: Vec<MemberName>) -> Vec<MemberName> {
    names.sort();
    names.dedup();
    names
}

/// Whether `name` is in the setting PostgreSQL has in force, is reported synchronous (`sync`
/// or `quorum`) and has confirmed the flush position of the moment the setting changed.
pub(crate) fn confirmed_synchronous(input: &SyncInput<'_>, name: &MemberName) -> bool {
    input.current_guc.contains(name)
        && input.replication.iter().any(|row| {
            row.application_name == name.as_str()
                && row.sync_state_sync
                && input
                    .flush_lsn_at_guc_change
                    .is_none_or(|needed| row.lsn(input.commit_level) >= needed)
        })
}
