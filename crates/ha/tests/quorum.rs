//! Quorum commit (`synchronous_mode: quorum`, `ANY k`) as tables: the primary's resolver
//! (`ha::quorum::plan_quorum`) and the failover rule a replica applies before racing
//! (votes from `/sync.quorum` voters; patroni.md §1.7, §1.11).

mod common;

use ha::quorum::{QuorumStep, plan_quorum, quorum_count, quorum_for, render_quorum_names};
use ha::sync::{ReplicationRow, STRICT_PLACEHOLDER, SyncCommitLevel, SyncInput};
use ha::{Action, Lsn, Member, MemberState, NotHealthiest, Reason, SyncKey, SynchronousMode, Tags};

use common::table::*;
use common::*;

fn names(list: &[&str]) -> Vec<ha::MemberName> {
    list.iter().map(|n| name(n)).collect()
}

fn streaming(app: &str, flush: u64, quorum: bool) -> ReplicationRow {
    ReplicationRow {
        application_name: app.to_owned(),
        streaming: true,
        sync_state_sync: quorum,
        write_lsn: Some(Lsn(flush)),
        flush_lsn: Some(Lsn(flush)),
        replay_lsn: Some(Lsn(flush)),
    }
}

struct Setup {
    members: Vec<Member>,
    replication: Vec<ReplicationRow>,
    node_count: u32,
    strict: bool,
    current_sync: Vec<ha::MemberName>,
    current_quorum: u32,
    current_guc: Vec<ha::MemberName>,
    current_guc_value: String,
    flush_lsn_at_guc_change: Option<Lsn>,
}

impl Setup {
    /// Primary n1, standbys n2 and n3 streaming; nothing set yet.
    fn new() -> Self {
        let running = |member: &str| Member {
            name: name(member),
            state: MemberState::Running,
            tags: Tags::default(),
            ..Member::default()
        };
        Self {
            members: vec![running("n1"), running("n2"), running("n3")],
            replication: vec![streaming("n2", 1000, false), streaming("n3", 900, false)],
            node_count: 1,
            strict: false,
            current_sync: vec![],
            current_quorum: 0,
            current_guc: vec![],
            current_guc_value: String::new(),
            flush_lsn_at_guc_change: None,
        }
    }

    fn plan(&self) -> Vec<QuorumStep> {
        let leader = name("n1");
        let input = SyncInput {
            leader: &leader,
            members: &self.members,
            replication: &self.replication,
            node_count: self.node_count,
            strict: self.strict,
            maximum_lag_on_syncnode: None,
            commit_level: SyncCommitLevel::Flush,
            current_sync: &self.current_sync,
            current_guc: &self.current_guc,
            current_guc_value: &self.current_guc_value,
            flush_lsn_at_guc_change: self.flush_lsn_at_guc_change,
        };
        plan_quorum(&input, self.current_quorum)
    }

    fn with_guc(mut self, value: &str, members: &[&str]) -> Self {
        self.current_guc_value = value.to_owned();
        self.current_guc = names(members);
        self
    }

    fn with_sync(mut self, voters: &[&str], quorum: u32) -> Self {
        self.current_sync = names(voters);
        self.current_quorum = quorum;
        self
    }
}

fn write(voters: &[&str], quorum: u32) -> QuorumStep {
    QuorumStep::WriteSyncKey {
        voters: names(voters),
        quorum,
    }
}

fn set(value: &str, members: &[&str]) -> QuorumStep {
    QuorumStep::SetStandbyNames {
        value: value.to_owned(),
        members: names(members),
    }
}

#[test]
fn render_and_quorum_arithmetic() {
    assert_eq!(
        render_quorum_names(&names(&["n3", "n2"]), 1, false),
        "ANY 1 (n2,n3)"
    );
    assert_eq!(render_quorum_names(&names(&["n2"]), 3, false), "ANY 1 (n2)");
    assert_eq!(
        render_quorum_names(&names(&["N2", "n3"]), 2, false),
        "ANY 2 (\"N2\",n3)"
    );
    assert_eq!(render_quorum_names(&[], 1, false), "");
    assert_eq!(
        render_quorum_names(&[], 1, true),
        format!("ANY 1 ({STRICT_PLACEHOLDER})")
    );
    assert_eq!(quorum_count("ANY 2 (a,b,c)"), 2);
    assert_eq!(quorum_count("n2"), 1, "priority mode, one standby");
    assert_eq!(quorum_count("2 (n2,n3)"), 2, "priority mode, FIRST 2");
    assert_eq!(quorum_count(""), 0);
    // ANY k over n voters: any n - k + 1 voters include one with each commit.
    assert_eq!(quorum_for(2, 1), 2);
    assert_eq!(quorum_for(3, 2), 2);
    assert_eq!(quorum_for(3, 3), 1);
    assert_eq!(quorum_for(0, 1), 0);
}

#[test]
fn plan_keeps_every_acknowledged_commit_findable() {
    let rows: Vec<(&str, Setup, Vec<QuorumStep>)> = vec![
        (
            "enabling: /sync names the voters before commits wait for them, then the GUC",
            Setup::new(),
            vec![write(&["n2", "n3"], 2), set("ANY 1 (n2,n3)", &["n2", "n3"])],
        ),
        (
            "GUC in force, PostgreSQL not yet reporting quorum: nothing more",
            Setup::new()
                .with_guc("ANY 1 (n2,n3)", &["n2", "n3"])
                .with_sync(&["n2", "n3"], 2),
            vec![],
        ),
        (
            "steady: ANY 1 over 2 voters, quorum 2",
            {
                let mut setup = Setup::new()
                    .with_guc("ANY 1 (n2,n3)", &["n2", "n3"])
                    .with_sync(&["n2", "n3"], 2);
                setup.replication = vec![streaming("n2", 1000, true), streaming("n3", 900, true)];
                setup
            },
            vec![],
        ),
        (
            "after a promotion (/sync has no voters): final state once k voters confirmed",
            {
                let mut setup = Setup::new()
                    .with_guc("ANY 1 (n2,n3)", &["n2", "n3"])
                    .with_sync(&[], 0);
                setup.replication = vec![streaming("n2", 1000, true), streaming("n3", 900, false)];
                setup.flush_lsn_at_guc_change = Some(Lsn(1000));
                setup
            },
            vec![write(&["n2", "n3"], 2)],
        ),
        (
            "reported quorum but behind the flush LSN of the change: not confirmed",
            {
                let mut setup = Setup::new()
                    .with_guc("ANY 1 (n2,n3)", &["n2", "n3"])
                    .with_sync(&[], 0);
                setup.replication = vec![streaming("n2", 999, true), streaming("n3", 900, true)];
                setup.flush_lsn_at_guc_change = Some(Lsn(1000));
                setup
            },
            vec![],
        ),
        (
            "n3 leaves: the union stays in /sync with the stronger quorum, then the GUC",
            {
                let mut setup = Setup::new()
                    .with_guc("ANY 1 (n2,n3)", &["n2", "n3"])
                    .with_sync(&["n2", "n3"], 2);
                setup.replication = vec![streaming("n2", 1000, true)];
                setup
            },
            vec![set("ANY 1 (n2)", &["n2"])],
        ),
        (
            "then, with ANY 1 (n2) confirmed: /sync shrinks to n2, quorum 1",
            {
                let mut setup = Setup::new()
                    .with_guc("ANY 1 (n2)", &["n2"])
                    .with_sync(&["n2", "n3"], 2);
                setup.replication = vec![streaming("n2", 1000, true)];
                setup
            },
            vec![write(&["n2"], 1)],
        ),
        (
            "k raised to 2: the union state counts with the old k until the GUC is confirmed",
            {
                let mut setup = Setup::new()
                    .with_guc("ANY 1 (n2,n3)", &["n2", "n3"])
                    .with_sync(&["n2", "n3"], 2);
                setup.node_count = 2;
                setup.replication = vec![streaming("n2", 1000, true), streaming("n3", 900, true)];
                setup
            },
            vec![set("ANY 2 (n2,n3)", &["n2", "n3"])],
        ),
        (
            "ANY 2 (n2,n3) confirmed by both: quorum 1 (either voter has every commit)",
            {
                let mut setup = Setup::new()
                    .with_guc("ANY 2 (n2,n3)", &["n2", "n3"])
                    .with_sync(&["n2", "n3"], 2);
                setup.node_count = 2;
                setup.replication = vec![streaming("n2", 1000, true), streaming("n3", 900, true)];
                setup
            },
            vec![write(&["n2", "n3"], 1)],
        ),
        (
            "strict, nobody streaming: keep waiting for the listed voters",
            {
                let mut setup = Setup::new()
                    .with_guc("ANY 1 (n2,n3)", &["n2", "n3"])
                    .with_sync(&["n2", "n3"], 2);
                setup.strict = true;
                setup.replication = vec![];
                setup
            },
            vec![],
        ),
        (
            "strict, nobody ever: the placeholder blocks commits",
            {
                let mut setup = Setup::new();
                setup.strict = true;
                setup.replication = vec![];
                setup
            },
            vec![set(&format!("ANY 1 ({STRICT_PLACEHOLDER})"), &[])],
        ),
    ];
    let mut failures = Vec::new();
    for (situation, setup, expected) in rows {
        let got = setup.plan();
        if got != expected {
            failures.push(format!(
                "{situation}:\n  expected {expected:?}\n  got      {got:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// n2 (the primary) is gone; `/sync` = {leader n2, voters, quorum}; I am n1 at LSN 1000.
fn quorum_failover(voters: &[&str], quorum: u32, answers: Vec<ha::PeerAnswer>) -> ha::Observation {
    peers(
        with_cluster(no_leader(), |cluster| {
            cluster.config.synchronous_mode = SynchronousMode::Quorum;
            cluster.sync = Some(SyncKey {
                leader: Some(name("n2")),
                sync_standbys: names(voters),
                quorum,
            });
        }),
        answers,
    )
}

#[test]
fn failover_needs_quorum_votes() {
    let promote_quorum = concat(vec![
        vec![
            Action::AcquireLeaderKey,
            Action::ArmWatchdog,
            Action::PrepareSyncForPromote {
                synchronous_standby_names: vec![],
            },
        ],
        promote_after_sync(),
    ]);
    run(vec![
        row(
            "ANY 1 over n1,n3: n3 answers and is not ahead, 2 votes of 2: promote",
            quorum_failover(&["n1", "n3"], 2, vec![peer("n3", 900)]),
            promote_quorum.clone(),
            Reason::PromotedByAcquiringLock,
        ),
        row(
            "ANY 1 over n1,n3: n3 unreachable, 1 vote of 2: the commit may be on n3 only",
            quorum_failover(&["n1", "n3"], 2, vec![unreachable_peer("n3")]),
            vec![],
            Reason::NotHealthiest {
                why: NotHealthiest::QuorumNotReached {
                    votes: 1,
                    needed: 2,
                },
            },
        ),
        row(
            "n3 (a voter) is ahead: it takes over",
            quorum_failover(&["n1", "n3"], 2, vec![peer("n3", 1100)]),
            vec![],
            Reason::NotHealthiest {
                why: NotHealthiest::PeerAhead { peer: name("n3") },
            },
        ),
        row(
            "not a voter myself, the only voter n3 answers behind me: 1 vote of 1",
            quorum_failover(&["n3"], 1, vec![peer("n3", 900)]),
            promote_quorum.clone(),
            Reason::PromotedByAcquiringLock,
        ),
        row(
            "not a voter, the only voter unreachable: no vote",
            quorum_failover(&["n3"], 1, vec![unreachable_peer("n3")]),
            vec![],
            Reason::NotHealthiest {
                why: NotHealthiest::QuorumNotReached {
                    votes: 0,
                    needed: 1,
                },
            },
        ),
        row(
            "a nofailover voter still votes",
            quorum_failover(
                &["n1", "n3"],
                2,
                vec![peer_with("n3", 900, |status| status.tags.nofailover = true)],
            ),
            promote_quorum.clone(),
            Reason::PromotedByAcquiringLock,
        ),
        row(
            "ANY 2 over n1,n3 (quorum 1): n3 unreachable, my own vote suffices",
            quorum_failover(&["n1", "n3"], 1, vec![unreachable_peer("n3")]),
            promote_quorum,
            Reason::PromotedByAcquiringLock,
        ),
    ]);
}

/// n1 is the primary in quorum mode: `/sync` = {leader n1, voters n2, quorum 1}; n3 is not a
/// voter (e.g. `nosync`). A switchover request (`failover` key) is pending; the peers answered.
fn quorum_switchover(
    leader: Option<&str>,
    candidate: Option<&str>,
    answers: Vec<ha::PeerAnswer>,
) -> ha::Observation {
    peers(
        failover_key(
            with_cluster(leader_n1(), |cluster| {
                cluster.config.synchronous_mode = SynchronousMode::Quorum;
                cluster.sync = Some(SyncKey {
                    leader: Some(name("n1")),
                    sync_standbys: names(&["n2"]),
                    quorum: 1,
                });
            }),
            leader,
            candidate,
        ),
        answers,
    )
}

/// A switchover in quorum mode hands the leader key only to a voter: never to a member
/// outside `/sync`, however far ahead or however high its priority; a named non-voter or no
/// healthy voter cancels the request. A failover (no leader named) may name any member.
#[test]
fn quorum_switchover_hands_the_key_only_to_a_voter() {
    let hand_over = |to: &str| {
        vec![
            Action::RenewLease,
            Action::Demote {
                mode: ha::DemoteMode::Handover,
            },
            Action::HandOverLeaderKey { to: name(to) },
            cb(ha::CallbackEvent::OnRoleChange, ha::MemberRole::Replica),
        ]
    };
    let ahead_and_preferred = || {
        vec![
            peer("n2", 1000),
            peer_with("n3", 1000, |status| {
                status.tags.failover_priority = Some(10);
            }),
        ]
    };
    run(vec![
        row(
            "unnamed switchover: n3 is preferred but not a voter, n2 gets the key",
            quorum_switchover(Some("n1"), None, ahead_and_preferred()),
            hand_over("n2"),
            Reason::Switchover,
        ),
        row(
            "switchover to n2 (a voter)",
            quorum_switchover(Some("n1"), Some("n2"), ahead_and_preferred()),
            hand_over("n2"),
            Reason::Switchover,
        ),
        row(
            "switchover to n3 (not a voter): cancelled, nobody gets the key",
            quorum_switchover(Some("n1"), Some("n3"), ahead_and_preferred()),
            vec![Action::RenewLease, Action::DeleteFailoverKey],
            Reason::SwitchoverNoHealthyMembers,
        ),
        row(
            "unnamed switchover with the only voter unreachable: cancelled",
            quorum_switchover(
                Some("n1"),
                None,
                vec![unreachable_peer("n2"), peer("n3", 1000)],
            ),
            vec![Action::RenewLease, Action::DeleteFailoverKey],
            Reason::SwitchoverNoHealthyMembers,
        ),
        row(
            "failover (no leader named) to n3: the operator's explicit choice",
            quorum_switchover(None, Some("n3"), vec![peer("n3", 1000)]),
            hand_over("n3"),
            Reason::Switchover,
        ),
    ]);
}

/// The leader key was released during a switchover (the handover did not take): in quorum
/// mode only voters race for it, as in priority mode only `/sync` members do.
#[test]
fn quorum_switchover_race_is_for_voters_only() {
    // n2 (the old primary) released the key for a switchover; I am n1.
    let released = |voters: &[&str], leader: Option<&str>| {
        failover_key(
            quorum_failover(voters, 1, vec![peer("n2", 900), peer("n3", 900)]),
            leader,
            None,
        )
    };
    let promote_quorum = concat(vec![
        vec![
            Action::AcquireLeaderKey,
            Action::DeleteFailoverKey,
            Action::ArmWatchdog,
            Action::PrepareSyncForPromote {
                synchronous_standby_names: vec![],
            },
        ],
        promote_after_sync(),
    ]);
    run(vec![
        row(
            "switchover from n2, I am not a voter (n3 is): I do not race",
            released(&["n3"], Some("n2")),
            vec![],
            Reason::NotHealthiest {
                why: NotHealthiest::NotSyncStandby,
            },
        ),
        row(
            "switchover from n2, I am a voter: I race",
            released(&["n1", "n3"], Some("n2")),
            promote_quorum.clone(),
            Reason::PromotedByAcquiringLock,
        ),
        row(
            "failover (no leader named), not a voter but the voter n3 votes for me",
            released(&["n3"], None),
            promote_quorum,
            Reason::PromotedByAcquiringLock,
        ),
    ]);
}
