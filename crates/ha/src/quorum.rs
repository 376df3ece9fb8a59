//! The synchronous-standby resolver for `synchronous_mode: quorum` (`ANY k`), as a pure
//! function (patroni.md §1.11).
//!
//! The primary lists every eligible streaming standby (the voters) in
//! `synchronous_standby_names = ANY k (v1, v2, ...)` with `k = synchronous_node_count`
//! (at most the number of voters), and writes `/sync` = `{leader, sync_standby: "v1,v2",
//! quorum: q}` with `q = n - k + 1` for `n` voters. Every acknowledged commit is on at least
//! `k` voters, so any `q` voters include one that has it: a candidate that knows the WAL
//! positions of `q` voters (itself included when it is one) and sees none ahead of its own
//! has every acknowledged commit. That is the rule `ha::decide` applies before a failover.
//!
//! Safety across a change (the invariant every `/sync` written here keeps): for the
//! `synchronous_standby_names` in force before and after a change (`ANY k0 (G0)` and
//! `ANY k1 (G1)`), `/sync` must hold for commits acknowledged under either. So the plan first
//! writes the transition state `voters = G0 ∪ G1`, `q = |G0 ∪ G1| - min(k0, k1) + 1` (any
//! commit is on `min(k0, k1)` of that union), then changes the setting, and writes the final
//! `(G1, |G1| - k1 + 1)` only once at least `k1` voters of `G1` report `quorum`/`sync` and have
//! confirmed the primary's flush position of the moment the setting changed (so commits
//! acknowledged before the change are on `k1` of them too).

use crate::sync::{
    STRICT_PLACEHOLDER, SyncInput, choose_standbys, confirmed_synchronous, quote_name, sorted,
};
use crate::types::MemberName;

/// One write the primary must make, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuorumStep {
    /// Write `/sync` = {leader, sync_standby: voters, quorum} (CAS on its mod_revision).
    WriteSyncKey {
        voters: Vec<MemberName>,
        quorum: u32,
    },
    /// Set `synchronous_standby_names` to this value (`ANY k (...)`) and reload PostgreSQL.
    SetStandbyNames {
        value: String,
        members: Vec<MemberName>,
    },
}

/// The quorum for `voters` voters when commits wait for `count` of them: `voters - count + 1`
/// (0 with no voters or no commit guarantee: anyone may take over).
pub fn quorum_for(voters: usize, count: usize) -> u32 {
    if voters == 0 || count == 0 {
        return 0;
    }
    u32::try_from(voters.saturating_sub(count) + 1).unwrap_or(u32::MAX)
}

/// `ANY k (a,b)` with names sorted and quoted when needed; empty = asynchronous, or
/// `ANY 1 (placeholder)` when strict mode has nobody.
pub fn render_quorum_names(members: &[MemberName], count: usize, strict: bool) -> String {
    let mut members = members.to_vec();
    members.sort();
    members.dedup();
    if members.is_empty() {
        return if strict {
            format!("ANY 1 ({STRICT_PLACEHOLDER})")
        } else {
            String::new()
        };
    }
    let names: Vec<String> = members
        .iter()
        .map(|name| quote_name(name.as_str()))
        .collect();
    format!(
        "ANY {} ({})",
        count.clamp(1, members.len()),
        names.join(",")
    )
}

/// How many listed standbys a commit waits for under a `synchronous_standby_names` value:
/// `k` of `ANY k (...)`, `FIRST k (...)` or `k (...)`, 1 for a single name, 0 when empty.
pub fn quorum_count(value: &str) -> usize {
    let value = value.trim();
    if value.is_empty() {
        return 0;
    }
    let rest = value
        .strip_prefix("ANY ")
        .or_else(|| value.strip_prefix("FIRST "))
        .unwrap_or(value);
    match rest.split_once('(') {
        Some((count, _)) => count.trim().parse().unwrap_or(1),
        None => 1,
    }
}

/// Chooses the voters and the ordered writes that reach them safely. `current_quorum` is
/// `/sync.quorum` (with `input.current_sync` its voters); `input.current_guc` and
/// `input.current_guc_value` describe the setting in force.
pub fn plan_quorum(input: &SyncInput<'_>, current_quorum: u32) -> Vec<QuorumStep> {
    let voters = choose_standbys(&SyncInput {
        node_count: u32::MAX,
        ..input.clone()
    });
    let wanted_count = usize::try_from(input.node_count.max(1)).unwrap_or(usize::MAX);
    let count = wanted_count.min(voters.len());
    let value = render_quorum_names(&voters, count, input.strict);
    let current_voters = sorted(input.current_sync.to_vec());
    let mut steps = Vec::new();
    let write = |steps: &mut Vec<QuorumStep>, voters: Vec<MemberName>, quorum: u32| {
        if voters != current_voters || quorum != current_quorum {
            steps.push(QuorumStep::WriteSyncKey { voters, quorum });
        }
    };

    if value != input.current_guc_value {
        // In strict mode with nobody to pick, keep waiting for the voters already listed.
        if input.strict && voters.is_empty() && !input.current_guc.is_empty() {
            return steps;
        }
        let old_count = quorum_count(input.current_guc_value);
        let union = sorted(input.current_guc.iter().chain(&voters).cloned().collect());
        let both = match (old_count, count) {
            (0, new) => new,
            (old, 0) => old,
            (old, new) => old.min(new),
        };
        write(&mut steps, union.clone(), quorum_for(union.len(), both));
        steps.push(QuorumStep::SetStandbyNames {
            value,
            members: voters,
        });
        return steps;
    }

    // The setting is in force: the final state once enough voters confirmed it.
    let confirmed = voters
        .iter()
        .filter(|name| confirmed_synchronous(input, name))
        .count();
    if confirmed >= count {
        let quorum = quorum_for(voters.len(), count);
        write(&mut steps, voters, quorum);
    }
    steps
}
