//! Observation fixtures shared by the table tests: a three-member cluster (n1, n2, n3) seen
//! from n1, with small modifiers so each table row states only what differs.

#![allow(dead_code)]
#![allow(clippy::unwrap_used)]

pub mod table;

use std::time::Duration;

use ha::{
    ClusterView, DataDirState, Divergence, DynamicConfig, FailoverKey, Instant, LeaderKey,
    LeaseState, LocalPostgres, LongAction, LongActionKind, Lsn, Member, MemberName, MemberRole,
    MemberState, NodeConfig, Observation, OwnLease, PeerAnswer, PeerReply, PeerStatus, PgRole,
    ProcessState, StoreView, SyncKey, SynchronousMode, SystemId, Tags, Timeline,
};

pub const NOW: u64 = 100_000_000;

pub fn name(text: &str) -> MemberName {
    MemberName::new(text)
}

pub fn now() -> Instant {
    Instant::from_millis(NOW)
}

pub fn secs_from_now(secs: i64) -> Instant {
    let millis = i64::try_from(NOW).unwrap() + secs * 1000;
    Instant::from_millis(u64::try_from(millis).unwrap())
}

fn member(member_name: &str, role: MemberRole, wal: u64) -> Member {
    Member {
        name: name(member_name),
        conn_url: Some(format!("postgres://{member_name}:5432/postgres")),
        api_url: Some(format!("http://{member_name}:8008/patroni")),
        state: MemberState::Running,
        role,
        wal_position: Some(Lsn(wal)),
        timeline: Some(Timeline(1)),
        tags: Tags::default(),
        replication_state: None,
    }
}

/// n1 is a streaming replica of leader n2 (n3 is another replica); everything healthy.
pub fn replica_of_n2() -> Observation {
    Observation {
        now: now(),
        node: NodeConfig {
            name: name("n1"),
            tags: Tags::default(),
            can_bootstrap: true,
            use_pg_rewind: true,
            reinit_on_diverged_timelines: false,
            clone_without_leader: false,
        },
        store: StoreView::Cluster(Box::new(ClusterView {
            initialize: Some(Some(SystemId(42))),
            config: DynamicConfig::default(),
            leader: Some(LeaderKey {
                holder: name("n2"),
                mod_revision: 7,
                lease: LeaseState::Attached { lease_id: 99 },
            }),
            members: vec![
                member("n1", MemberRole::Replica, 1000),
                member("n2", MemberRole::Primary, 1000),
                member("n3", MemberRole::Replica, 1000),
            ],
            last_leader_lsn: Some(Lsn(1000)),
            failover: None,
            sync: None,
            history_timeline: None,
            previous_leader: Some(name("n2")),
        })),
        postgres: LocalPostgres {
            data_dir: DataDirState::Initialized {
                system_id: SystemId(42),
            },
            process: ProcessState::Running,
            role: PgRole::Replica,
            timeline: Some(Timeline(1)),
            write_lsn: None,
            received_lsn: Some(Lsn(1000)),
            replayed_lsn: Some(Lsn(1000)),
            upstream: Some(name("n2")),
            divergence: Divergence::None,
            can_rewind: true,
            last_start_failed: false,
            wal_receive_advancing: false,
        },
        long_action: None,
        own_lease: None,
        watchdog_failed: false,
        pre_promote_failed_at: None,
        leader_missing_since: None,
        peers: None,
    }
}

/// n1 is the primary holding the leader key, lease deadline 20 s ahead.
pub fn leader_n1() -> Observation {
    let mut observation = replica_of_n2();
    observation.postgres.role = PgRole::Primary;
    observation.postgres.write_lsn = Some(Lsn(1000));
    observation.postgres.upstream = None;
    observation.own_lease = Some(OwnLease {
        deadline: secs_from_now(20),
    });
    let cluster = cluster_mut(&mut observation);
    cluster.leader.as_mut().unwrap().holder = name("n1");
    cluster.previous_leader = Some(name("n1"));
    cluster.members[0].role = MemberRole::Primary;
    cluster.members[1].role = MemberRole::Replica;
    observation
}

/// n1 is a replica and the leader key is gone (n2 was the leader).
pub fn no_leader() -> Observation {
    let mut observation = replica_of_n2();
    cluster_mut(&mut observation).leader = None;
    observation
}

pub fn cluster_mut(observation: &mut Observation) -> &mut ClusterView {
    match &mut observation.store {
        StoreView::Cluster(cluster) => cluster,
        StoreView::Unreachable { .. } => panic!("fixture has no cluster"),
    }
}

pub fn with(mut observation: Observation, change: impl FnOnce(&mut Observation)) -> Observation {
    change(&mut observation);
    observation
}

pub fn with_cluster(
    mut observation: Observation,
    change: impl FnOnce(&mut ClusterView),
) -> Observation {
    change(cluster_mut(&mut observation));
    observation
}

pub fn unreachable(mut observation: Observation) -> Observation {
    observation.store = StoreView::Unreachable {
        last_known_config: DynamicConfig::default(),
    };
    observation
}

pub fn paused(observation: Observation) -> Observation {
    with_cluster(observation, |cluster| cluster.config.pause = true)
}

pub fn lease_deadline(observation: Observation, secs: i64) -> Observation {
    with(observation, |observation| {
        observation.own_lease = Some(OwnLease {
            deadline: secs_from_now(secs),
        })
    })
}

pub fn long_action(
    observation: Observation,
    kind: LongActionKind,
    started_secs_ago: i64,
) -> Observation {
    with(observation, |observation| {
        observation.long_action = Some(LongAction {
            kind,
            started_at: secs_from_now(-started_secs_ago),
        })
    })
}

pub fn peer(peer_name: &str, wal: u64) -> PeerAnswer {
    PeerAnswer {
        name: name(peer_name),
        reply: PeerReply::Status(PeerStatus {
            is_primary: false,
            wal_position: Some(Lsn(wal)),
            timeline: Some(Timeline(1)),
            tags: Tags::default(),
            watchdog_failed: false,
        }),
    }
}

pub fn peer_with(peer_name: &str, wal: u64, change: impl FnOnce(&mut PeerStatus)) -> PeerAnswer {
    let mut answer = peer(peer_name, wal);
    if let PeerReply::Status(status) = &mut answer.reply {
        change(status);
    }
    answer
}

pub fn unreachable_peer(peer_name: &str) -> PeerAnswer {
    PeerAnswer {
        name: name(peer_name),
        reply: PeerReply::Unreachable,
    }
}

pub fn peers(observation: Observation, answers: Vec<PeerAnswer>) -> Observation {
    with(observation, |observation| observation.peers = Some(answers))
}

pub fn sync_mode(observation: Observation, sync_standbys: &[&str], leader: &str) -> Observation {
    with_cluster(observation, |cluster| {
        cluster.config.synchronous_mode = SynchronousMode::On;
        cluster.sync = Some(SyncKey {
            leader: Some(name(leader)),
            sync_standbys: sync_standbys.iter().map(|standby| name(standby)).collect(),
            quorum: 0,
        });
    })
}

pub fn failover_key(
    observation: Observation,
    leader: Option<&str>,
    candidate: Option<&str>,
) -> Observation {
    with_cluster(observation, |cluster| {
        cluster.failover = Some(FailoverKey {
            leader: leader.map(name),
            candidate: candidate.map(name),
            scheduled_at: None,
        })
    })
}

pub fn crashed(observation: Observation, secs_ago: i64) -> Observation {
    with(observation, |observation| {
        observation.postgres.process = ProcessState::Crashed {
            since: secs_from_now(-secs_ago),
        }
    })
}

pub fn stopped(observation: Observation) -> Observation {
    with(observation, |observation| {
        observation.postgres.process = ProcessState::Stopped { since: None }
    })
}

pub fn start_timeout(observation: Observation, secs: u64) -> Observation {
    with_cluster(observation, |cluster| {
        cluster.config.primary_start_timeout = Duration::from_secs(secs)
    })
}
