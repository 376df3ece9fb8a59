//! Rendering tables: forced parameters, quoting, recovery block, connection strings.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::*;

fn settings() -> ServerSettings {
    ServerSettings {
        listen_addresses: "127.0.0.1".into(),
        port: 5432,
        unix_socket_directory: PathBuf::from("/run/pg"),
        cluster_name: "batman".into(),
        dynamic_parameters: BTreeMap::new(),
        local_parameters: BTreeMap::new(),
        synchronous_standby_names: None,
        hba_file: PathBuf::from("/data/pg_hba.conf"),
        ident_file: None,
        recovery: None,
        replica_minimums: BTreeMap::new(),
    }
}

fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn forced_parameter_table() {
    // (dynamic, local, parameter, expected value, refused?)
    type Params = &'static [(&'static str, &'static str)];
    let rows: &[(Params, Params, &str, &str, bool)] = &[
        (&[], &[], "wal_level", "replica", false),
        (
            &[("wal_level", "logical")],
            &[],
            "wal_level",
            "logical",
            false,
        ),
        (
            &[("wal_level", "hot_standby")],
            &[],
            "wal_level",
            "replica",
            false,
        ),
        (
            &[("wal_level", "minimal")],
            &[],
            "wal_level",
            "replica",
            true,
        ),
        (
            &[],
            &[("wal_level", "logical")],
            "wal_level",
            "replica",
            false,
        ),
        (&[], &[], "hot_standby", "on", false),
        (&[("hot_standby", "off")], &[], "hot_standby", "on", true),
        (&[], &[], "max_connections", "100", false),
        (
            &[("max_connections", "500")],
            &[],
            "max_connections",
            "500",
            false,
        ),
        (
            &[("max_connections", "10")],
            &[],
            "max_connections",
            "100",
            true,
        ),
        (
            &[("max_connections", "lots")],
            &[],
            "max_connections",
            "100",
            true,
        ),
        (
            &[],
            &[("max_connections", "500")],
            "max_connections",
            "100",
            false,
        ),
        (
            &[("max_wal_senders", "2")],
            &[],
            "max_wal_senders",
            "10",
            true,
        ),
        (
            &[("max_replication_slots", "4")],
            &[],
            "max_replication_slots",
            "4",
            false,
        ),
        (
            &[("max_worker_processes", "1")],
            &[],
            "max_worker_processes",
            "8",
            true,
        ),
        (
            &[("max_prepared_transactions", "5")],
            &[],
            "max_prepared_transactions",
            "5",
            false,
        ),
        (
            &[("max_locks_per_transaction", "31")],
            &[],
            "max_locks_per_transaction",
            "64",
            true,
        ),
        (&[], &[], "track_commit_timestamp", "off", false),
        (&[], &[], "wal_log_hints", "on", false),
        (
            &[("wal_log_hints", "off")],
            &[],
            "wal_log_hints",
            "off",
            false,
        ),
        (&[], &[], "wal_keep_size", "128MB", false),
        (
            &[("listen_addresses", "*")],
            &[],
            "listen_addresses",
            "127.0.0.1",
            false,
        ),
        (&[("port", "1")], &[("port", "2")], "port", "5432", false),
        (&[], &[], "cluster_name", "batman", false),
        (&[], &[("work_mem", "8MB")], "work_mem", "8MB", false),
        // The member's own file beats `/config` for ordinary parameters...
        (
            &[("work_mem", "16MB")],
            &[("work_mem", "8MB")],
            "work_mem",
            "8MB",
            false,
        ),
        (&[("work_mem", "16MB")], &[], "work_mem", "16MB", false),
        // ...but never for the ones every member must share.
        (
            &[("max_connections", "30")],
            &[("max_connections", "500")],
            "max_connections",
            "30",
            false,
        ),
        (
            &[("max_locks_per_transaction", "128")],
            &[("max_locks_per_transaction", "64")],
            "max_locks_per_transaction",
            "128",
            false,
        ),
    ];
    for (dynamic, local, name, expected, refused) in rows {
        let mut settings = settings();
        settings.dynamic_parameters = params(dynamic);
        settings.local_parameters = params(local);
        let effective = effective_parameters(&settings);
        assert_eq!(
            effective.parameters.get(*name).map(String::as_str),
            Some(*expected),
            "{name} with dynamic {dynamic:?} local {local:?}"
        );
        assert_eq!(
            effective.refused.iter().any(|r| r.name == *name),
            *refused,
            "{name} refused? dynamic {dynamic:?}"
        );
    }
}

#[test]
fn command_line_carries_forced_values_but_not_wal_keep_size() {
    let mut settings = settings();
    settings.dynamic_parameters = params(&[("max_connections", "200")]);
    let effective = effective_parameters(&settings);
    assert!(
        effective
            .command_line
            .contains(&"--max_connections=200".to_owned())
    );
    assert!(effective.command_line.contains(&"--port=5432".to_owned()));
    assert!(
        effective
            .command_line
            .contains(&"--cluster_name=batman".to_owned())
    );
    assert!(
        effective
            .command_line
            .contains(&"--hot_standby=on".to_owned())
    );
    assert!(
        !effective
            .command_line
            .iter()
            .any(|o| o.starts_with("--wal_keep_size"))
    );
}

#[test]
fn recovery_parameters_in_user_parameters_are_dropped() {
    let mut settings = settings();
    settings.local_parameters =
        params(&[("primary_conninfo", "host=evil"), ("restore_command", "cp")]);
    let effective = effective_parameters(&settings);
    assert!(!effective.parameters.contains_key("primary_conninfo"));
    assert!(!effective.parameters.contains_key("restore_command"));
}

#[test]
fn postgresql_conf_of_a_primary() {
    let mut settings = settings();
    settings.local_parameters = params(&[("work_mem", "8MB"), ("log_line_prefix", "%m [%p] it's")]);
    settings.synchronous_standby_names = Some("\"postgres-1\"".into());
    let conf = render_postgresql_conf(&settings);
    assert!(conf.contains("include_if_exists 'postgresql.base.conf'\n"));
    assert!(conf.contains("work_mem = '8MB'\n"));
    assert!(conf.contains("log_line_prefix = '%m [%p] it''s'\n"));
    assert!(conf.contains("synchronous_standby_names = '\"postgres-1\"'\n"));
    assert!(conf.contains("unix_socket_directories = '/run/pg'\n"));
    assert!(conf.contains("hba_file = '/data/pg_hba.conf'\n"));
    assert!(!conf.contains("recovery"));
    assert!(!conf.contains("primary_conninfo"));
    // Parameters are sorted: the file is stable across renders.
    let names: Vec<&str> = conf
        .lines()
        .skip_while(|line| !line.is_empty())
        .skip(1)
        .take_while(|line| !line.starts_with("hba_file"))
        .filter_map(|line| line.split(" = ").next())
        .collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted);
}

fn conninfo() -> ConnInfo {
    ConnInfo {
        host: "/run/pg n2".into(),
        port: 5433,
        user: "replicator".into(),
        password: None,
        passfile: Some(PathBuf::from("/tmp/pgpass")),
        dbname: "postgres".into(),
        application_name: Some("n1".into()),
        sslmode: Some("prefer".into()),
        extra: BTreeMap::new(),
    }
}

#[test]
fn conninfo_rendering() {
    assert_eq!(
        conninfo().render(),
        "user=replicator host='/run/pg n2' port=5433 passfile=/tmp/pgpass sslmode=prefer \
         application_name=n1 dbname=postgres"
    );
    let mut with_password = conninfo();
    with_password.host = "10.0.0.2".into();
    with_password.passfile = None;
    with_password.password = Some("it's a \\secret".into());
    with_password.sslmode = None;
    with_password.application_name = None;
    assert_eq!(
        with_password.render(),
        "user=replicator host=10.0.0.2 port=5433 password='it\\'s a \\\\secret' dbname=postgres"
    );
    let mut empty = conninfo();
    empty.user = String::new();
    assert!(empty.render().starts_with("user='' "));
}

#[test]
fn replica_recovery_block() {
    let mut settings = settings();
    settings.recovery = Some(RecoverySettings {
        primary_conninfo: Some(conninfo()),
        primary_slot_name: Some("n1".into()),
        restore_command: None,
        archive_cleanup_command: None,
        recovery_min_apply_delay: None,
        extra: params(&[("recovery_target_action", "promote"), ("work_mem", "1MB")]),
    });
    let conf = render_postgresql_conf(&settings);
    let block = conf.split("# recovery.conf\n").nth(1).unwrap_or_default();
    assert!(block.contains("primary_conninfo = 'user=replicator host=''/run/pg n2'' port=5433"));
    assert!(block.contains("primary_slot_name = 'n1'\n"));
    assert!(block.contains("recovery_target_timeline = 'latest'\n"));
    for target in [
        "recovery_target",
        "recovery_target_lsn",
        "recovery_target_name",
        "recovery_target_time",
        "recovery_target_xid",
    ] {
        assert!(block.contains(&format!("{target} = ''\n")), "{target}");
    }
    assert!(block.contains("recovery_target_action = 'promote'\n"));
    assert!(
        !block.contains("work_mem"),
        "non-recovery extras are ignored"
    );
    assert!(!block.contains("restore_command"));
}

#[test]
fn replica_without_upstream_has_no_conninfo() {
    let parameters = recovery_parameters(&RecoverySettings {
        restore_command: Some("cp /archive/%f %p".into()),
        ..RecoverySettings::default()
    });
    assert!(!parameters.contains_key("primary_conninfo"));
    assert!(!parameters.contains_key("primary_slot_name"));
    assert_eq!(parameters["restore_command"], "cp /archive/%f %p");
}

#[test]
fn quoting_tables() {
    for (value, quoted) in [
        ("plain", "'plain'"),
        ("it's", "'it''s'"),
        ("C:\\dir", "'C:\\\\dir'"),
        ("", "''"),
    ] {
        assert_eq!(quote_guc_value(value), quoted);
    }
    assert_eq!(quote_ident("replicator"), "\"replicator\"");
    assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
    assert_eq!(quote_literal("pa'ss"), "'pa''ss'");
    assert_eq!(quote_literal("a\\b"), "E'a\\\\b'");
}

#[test]
fn slot_names_from_member_names() {
    for (member, slot) in [
        ("n1", "n1"),
        ("postgres-1", "postgres_1"),
        ("Node.A", "node_a"),
        ("ünï", "__n__"),
    ] {
        let got = slot_name_from_member_name(member);
        assert!(got.len() <= 63);
        if member == "ünï" {
            assert!(got.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
        } else {
            assert_eq!(got, slot, "{member}");
        }
    }
    assert_eq!(slot_name_from_member_name(&"x".repeat(100)).len(), 63);
}

#[test]
fn pg_hba_replaces_the_file() {
    let hba = render_pg_hba(&[
        "local all all trust".into(),
        "host replication replicator 10.0.0.0/8 scram-sha-256  ".into(),
    ]);
    assert_eq!(
        hba,
        "# Written by pgwarden: changes here are overwritten.\nlocal all all trust\n\
         host replication replicator 10.0.0.0/8 scram-sha-256\n"
    );
}

#[test]
fn replicas_raise_parameters_to_the_primarys_values() {
    let mut settings = settings();
    settings.dynamic_parameters = params(&[("max_connections", "100")]);
    settings.replica_minimums = [
        ("max_connections".to_owned(), 200),
        ("max_worker_processes".to_owned(), 4),
    ]
    .into_iter()
    .collect();
    // A primary ignores the minimums.
    let effective = effective_parameters(&settings);
    assert_eq!(effective.parameters["max_connections"], "100");
    assert!(effective.raised.is_empty());
    // A replica is raised where below, left alone where above.
    settings.recovery = Some(RecoverySettings::default());
    let effective = effective_parameters(&settings);
    assert_eq!(effective.parameters["max_connections"], "200");
    assert_eq!(effective.parameters["max_worker_processes"], "8");
    assert!(
        effective
            .command_line
            .contains(&"--max_connections=200".to_owned())
    );
    assert_eq!(
        effective.raised,
        [RefusedParameter {
            name: "max_connections".into(),
            value: "100".into(),
            used: "200".into(),
        }]
    );
}

#[test]
fn pgpass_rendering() {
    let text = render_pgpass(&[
        PgpassEntry {
            host: Some("/run/pg".into()),
            port: Some(5432),
            database: None,
            user: "replicator".into(),
            password: "pa:ss\\word".into(),
        },
        PgpassEntry {
            host: None,
            port: None,
            database: Some("postgres".into()),
            user: "postgres".into(),
            password: "x".into(),
        },
    ]);
    assert_eq!(
        text,
        "/run/pg:5432:*:replicator:pa\\:ss\\\\word\n*:*:postgres:postgres:x\n"
    );
}
