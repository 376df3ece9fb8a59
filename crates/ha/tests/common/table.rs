//! Table-row helpers for the `decide` suites.

use ha::{Action, CallbackEvent, DemoteMode, MemberRole, Observation, Reason, decide};

use super::name;

pub struct Row {
    pub situation: &'static str,
    pub observation: Observation,
    pub actions: Vec<Action>,
    pub reason: Reason,
}

pub fn row(
    situation: &'static str,
    observation: Observation,
    actions: Vec<Action>,
    reason: Reason,
) -> Row {
    Row {
        situation,
        observation,
        actions,
        reason,
    }
}

pub fn cb(event: CallbackEvent, role: MemberRole) -> Action {
    Action::RunCallback { event, role }
}

/// A promotion: arm the watchdog, promote, the role-change callback.
pub fn promote() -> Vec<Action> {
    concat(vec![vec![Action::ArmWatchdog], promote_after_sync()])
}

/// The end of a synchronous-mode promotion, after `ArmWatchdog` and `PrepareSyncForPromote`.
pub fn promote_after_sync() -> Vec<Action> {
    vec![
        Action::Promote,
        cb(CallbackEvent::OnRoleChange, MemberRole::Primary),
    ]
}

pub fn demote(mode: DemoteMode, role: MemberRole) -> Vec<Action> {
    vec![
        Action::Demote { mode },
        cb(CallbackEvent::OnRoleChange, role),
    ]
}

pub fn concat(parts: Vec<Vec<Action>>) -> Vec<Action> {
    parts.into_iter().flatten().collect()
}

pub fn me() -> ha::MemberName {
    name("n1")
}

pub fn run(rows: Vec<Row>) {
    let mut failures = Vec::new();
    for row in &rows {
        let decision = decide(&row.observation);
        if decision.actions != row.actions || decision.reason != row.reason {
            failures.push(format!(
                "{}:\n  expected {:?} / {:?}\n  got      {:?} / {:?} ({})",
                row.situation,
                row.actions,
                row.reason,
                decision.actions,
                decision.reason,
                decision.message
            ));
        }
        assert_eq!(decision.message, decision.reason.to_string());
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}
