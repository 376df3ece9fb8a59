//! Failover candidate ranking (design.md §4) and the synchronous-standby resolver
//! (patroni.md §1.11) as tables.

mod common;

use ha::sync::{
    ReplicationRow, STRICT_PLACEHOLDER, SyncCommitLevel, SyncInput, SyncStep, choose_standbys,
    plan, render_standby_names,
};
use ha::{Lsn, Member, MemberState, Tags, rank_failover_candidates};

use common::*;

fn ranked(observation: &ha::Observation, only: Option<&str>, manual: bool) -> Vec<String> {
    let ha::StoreView::Cluster(cluster) = &observation.store else {
        panic!("no cluster");
    };
    let only = only.map(name);
    rank_failover_candidates(
        cluster,
        &name("n1"),
        observation.peers.as_deref().unwrap_or_default(),
        only.as_ref(),
        manual,
    )
    .into_iter()
    .map(|candidate| candidate.name.to_string())
    .collect()
}

#[test]
fn ranking_table() {
    let base = || leader_n1();
    type RankRow = (
        &'static str,
        ha::Observation,
        Option<&'static str>,
        bool,
        Vec<&'static str>,
    );
    let rows: Vec<RankRow> = vec![
        (
            "higher WAL first",
            peers(base(), vec![peer("n2", 900), peer("n3", 950)]),
            None,
            false,
            vec!["n3", "n2"],
        ),
        (
            "equal WAL: higher failover_priority first",
            peers(
                base(),
                vec![
                    peer("n2", 900),
                    peer_with("n3", 900, |s| s.tags.failover_priority = Some(3)),
                ],
            ),
            None,
            false,
            vec!["n3", "n2"],
        ),
        (
            "equal everything: by name",
            peers(base(), vec![peer("n3", 900), peer("n2", 900)]),
            None,
            false,
            vec!["n2", "n3"],
        ),
        (
            "nofailover, watchdog failed and unreachable are out",
            peers(
                base(),
                vec![
                    peer_with("n2", 999, |s| s.tags.nofailover = true),
                    peer_with("n3", 999, |s| s.watchdog_failed = true),
                ],
            ),
            None,
            false,
            vec![],
        ),
        (
            "unreachable is out",
            peers(base(), vec![unreachable_peer("n2"), peer("n3", 1)]),
            None,
            false,
            vec!["n3"],
        ),
        (
            "lag beyond maximum_lag_on_failover is out",
            peers(
                with_cluster(base(), |c| c.last_leader_lsn = Some(Lsn(2_000_000))),
                vec![
                    peer("n2", 2_000_000 - 1_048_577),
                    peer("n3", 2_000_000 - 1_048_576),
                ],
            ),
            None,
            false,
            vec!["n3"],
        ),
        (
            "a member answering as primary is out",
            peers(
                base(),
                vec![
                    peer_with("n2", 2000, |s| s.is_primary = true),
                    peer("n3", 10),
                ],
            ),
            None,
            false,
            vec!["n3"],
        ),
        (
            "sync mode: only sync standbys",
            peers(
                sync_mode(base(), &["n2"], "n1"),
                vec![peer("n2", 10), peer("n3", 999)],
            ),
            None,
            false,
            vec!["n2"],
        ),
        (
            "sync mode, manual failover: async allowed",
            peers(
                sync_mode(base(), &["n2"], "n1"),
                vec![peer("n2", 10), peer("n3", 999)],
            ),
            None,
            true,
            vec!["n3", "n2"],
        ),
        (
            "restricted to the named candidate",
            peers(base(), vec![peer("n2", 10), peer("n3", 999)]),
            Some("n2"),
            false,
            vec!["n2"],
        ),
        (
            "member without api_url is out",
            peers(
                with_cluster(base(), |c| c.members[2].api_url = None),
                vec![peer("n2", 10), peer("n3", 999)],
            ),
            None,
            false,
            vec!["n2"],
        ),
        (
            "check_timeline: behind the cluster timeline is out",
            peers(
                with_cluster(base(), |c| {
                    c.config.check_timeline = true;
                    c.history_timeline = Some(ha::Timeline(2));
                }),
                vec![
                    peer("n2", 10),
                    peer_with("n3", 10, |s| s.timeline = Some(ha::Timeline(2))),
                ],
            ),
            None,
            false,
            vec!["n3"],
        ),
    ];
    for (situation, observation, only, manual, expected) in rows {
        assert_eq!(ranked(&observation, only, manual), expected, "{situation}");
    }
}

fn running(member_name: &str, tags: Tags) -> Member {
    Member {
        name: name(member_name),
        state: MemberState::Running,
        tags,
        ..Member::default()
    }
}

fn streaming(app: &str, flush: u64, sync: bool) -> ReplicationRow {
    ReplicationRow {
        application_name: app.to_owned(),
        streaming: true,
        sync_state_sync: sync,
        write_lsn: Some(Lsn(flush + 10)),
        flush_lsn: Some(Lsn(flush)),
        replay_lsn: Some(Lsn(flush.saturating_sub(10))),
    }
}

struct Setup {
    members: Vec<Member>,
    replication: Vec<ReplicationRow>,
    node_count: u32,
    strict: bool,
    max_lag: Option<u64>,
    current_sync: Vec<ha::MemberName>,
    current_guc: Vec<ha::MemberName>,
    current_guc_value: String,
    flush_lsn_at_guc_change: Option<Lsn>,
}

impl Setup {
    fn new() -> Self {
        Self {
            members: vec![
                running("n1", Tags::default()),
                running("n2", Tags::default()),
                running("n3", Tags::default()),
            ],
            replication: vec![streaming("n2", 1000, false), streaming("n3", 900, false)],
            node_count: 1,
            strict: false,
            max_lag: None,
            current_sync: vec![],
            current_guc: vec![],
            current_guc_value: String::new(),
            flush_lsn_at_guc_change: None,
        }
    }

    fn input(&self) -> SyncInput<'_> {
        static LEADER: std::sync::OnceLock<ha::MemberName> = std::sync::OnceLock::new();
        SyncInput {
            leader: LEADER.get_or_init(|| name("n1")),
            members: &self.members,
            replication: &self.replication,
            node_count: self.node_count,
            strict: self.strict,
            maximum_lag_on_syncnode: self.max_lag,
            commit_level: SyncCommitLevel::Flush,
            current_sync: &self.current_sync,
            current_guc: &self.current_guc,
            current_guc_value: &self.current_guc_value,
            flush_lsn_at_guc_change: self.flush_lsn_at_guc_change,
        }
    }
}

fn names(list: &[&str]) -> Vec<ha::MemberName> {
    list.iter().map(|n| name(n)).collect()
}

#[test]
fn choose_standbys_table() {
    let choose = |setup: Setup| -> Vec<String> {
        choose_standbys(&setup.input())
            .into_iter()
            .map(|n| n.to_string())
            .collect()
    };
    assert_eq!(choose(Setup::new()), ["n2"], "most advanced first");
    let mut setup = Setup::new();
    setup.replication = vec![streaming("n2", 1000, false), streaming("n3", 900, true)];
    assert_eq!(choose(setup), ["n3"], "already sync beats a higher LSN");
    let mut setup = Setup::new();
    setup.members[2].tags.sync_priority = Some(5);
    assert_eq!(choose(setup), ["n3"], "sync_priority beats everything");
    let mut setup = Setup::new();
    setup.members[1].tags.nosync = true;
    assert_eq!(choose(setup), ["n3"], "nosync excluded");
    let mut setup = Setup::new();
    setup.members[1].tags.sync_priority = Some(0);
    assert_eq!(choose(setup), ["n3"], "sync_priority 0 behaves as nosync");
    let mut setup = Setup::new();
    setup.members[1].state = MemberState::Stopped;
    assert_eq!(choose(setup), ["n3"], "not running: excluded");
    let mut setup = Setup::new();
    setup.replication[0].streaming = false;
    assert_eq!(choose(setup), ["n3"], "not streaming: excluded");
    let mut setup = Setup::new();
    setup.replication.push(streaming("stranger", 5000, true));
    assert_eq!(choose(setup), ["n2"], "not a member: excluded");
    let mut setup = Setup::new();
    setup.node_count = 2;
    assert_eq!(choose(setup), ["n2", "n3"], "synchronous_node_count 2");
    let mut setup = Setup::new();
    setup.node_count = 2;
    setup.max_lag = Some(50);
    assert_eq!(
        choose(setup),
        ["n2"],
        "maximum_lag_on_syncnode drops the laggard"
    );
}

#[test]
fn render_table() {
    assert_eq!(render_standby_names(&[], 1, false), "");
    assert_eq!(render_standby_names(&[], 1, true), STRICT_PLACEHOLDER);
    assert_eq!(render_standby_names(&names(&["n2"]), 1, false), "n2");
    assert_eq!(
        render_standby_names(&names(&["n3", "n2"]), 2, false),
        "2 (n2,n3)"
    );
    assert_eq!(
        render_standby_names(&names(&["n3", "n2"]), 5, false),
        "2 (n2,n3)"
    );
    assert_eq!(
        render_standby_names(&names(&["postgres-1"]), 1, false),
        "\"postgres-1\""
    );
    assert_eq!(
        render_standby_names(&names(&["Node"]), 1, false),
        "\"Node\""
    );
    assert_eq!(
        render_standby_names(&names(&["first"]), 1, false),
        "\"first\""
    );
}

#[test]
fn plan_keeps_the_ordering_invariant() {
    // Enabling: the GUC first; /sync waits for PostgreSQL's confirmation.
    let setup = Setup::new();
    assert_eq!(
        plan(&setup.input()),
        vec![SyncStep::SetStandbyNames {
            value: "n2".into(),
            members: names(&["n2"]),
        }]
    );

    // Confirmed as sync by pg_stat_replication: now /sync lists it.
    let mut setup = Setup::new();
    setup.replication = vec![streaming("n2", 1000, true), streaming("n3", 900, false)];
    setup.current_guc = names(&["n2"]);
    setup.current_guc_value = "n2".into();
    assert_eq!(
        plan(&setup.input()),
        vec![SyncStep::WriteSyncKey {
            standbys: names(&["n2"]),
        }]
    );

    // Reported sync but not yet at the flush LSN of the GUC change: not confirmed yet.
    let mut setup = Setup::new();
    setup.replication = vec![streaming("n2", 1000, true), streaming("n3", 900, false)];
    setup.current_guc = names(&["n2"]);
    setup.current_guc_value = "n2".into();
    setup.flush_lsn_at_guc_change = Some(Lsn(1001));
    assert_eq!(plan(&setup.input()), vec![]);
    setup.flush_lsn_at_guc_change = Some(Lsn(1000));
    assert_eq!(
        plan(&setup.input()),
        vec![SyncStep::WriteSyncKey {
            standbys: names(&["n2"]),
        }]
    );

    // Steady: nothing to write.
    let mut setup = Setup::new();
    setup.replication = vec![streaming("n2", 1000, true), streaming("n3", 900, false)];
    setup.current_guc = names(&["n2"]);
    setup.current_guc_value = "n2".into();
    setup.current_sync = names(&["n2"]);
    assert_eq!(plan(&setup.input()), vec![]);

    // n2 disappears: shrink /sync first, then the GUC moves to n3 (confirmed later).
    let mut setup = Setup::new();
    setup.replication = vec![streaming("n3", 900, false)];
    setup.current_guc = names(&["n2"]);
    setup.current_guc_value = "n2".into();
    setup.current_sync = names(&["n2"]);
    assert_eq!(
        plan(&setup.input()),
        vec![
            SyncStep::WriteSyncKey { standbys: vec![] },
            SyncStep::SetStandbyNames {
                value: "n3".into(),
                members: names(&["n3"]),
            },
        ]
    );

    // Strict mode with nobody streaming: keep /sync and keep waiting for the old standby.
    let mut setup = Setup::new();
    setup.strict = true;
    setup.replication = vec![];
    setup.current_guc = names(&["n2"]);
    setup.current_guc_value = "n2".into();
    setup.current_sync = names(&["n2"]);
    assert_eq!(plan(&setup.input()), vec![]);

    // Strict mode, nobody ever: the placeholder blocks commits.
    let mut setup = Setup::new();
    setup.strict = true;
    setup.replication = vec![];
    assert_eq!(
        plan(&setup.input()),
        vec![SyncStep::SetStandbyNames {
            value: STRICT_PLACEHOLDER.into(),
            members: vec![],
        }]
    );

    // Non-strict with nobody: asynchronous (empty GUC) after /sync is emptied.
    let mut setup = Setup::new();
    setup.replication = vec![];
    setup.current_guc = names(&["n2"]);
    setup.current_guc_value = "n2".into();
    setup.current_sync = names(&["n2"]);
    assert_eq!(
        plan(&setup.input()),
        vec![
            SyncStep::WriteSyncKey { standbys: vec![] },
            SyncStep::SetStandbyNames {
                value: String::new(),
                members: vec![],
            },
        ]
    );
}
