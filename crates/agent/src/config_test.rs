#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

use super::*;

const ISSUE_EXAMPLE: &str = r#"
scope: demo
name: n1
restapi:
  listen: 127.0.0.1:8009
  connect_address: 127.0.0.1:8009
raft:
  data_dir: /var/lib/pgwarden/n1/raft
  self_addr: 127.0.0.1:2381            # Raft peer address of this node
  partner_addrs: [127.0.0.1:2382, 127.0.0.1:2383]
  etcd_api: 127.0.0.1:2379
bootstrap:
  dcs:
    ttl: 10
postgresql:
  listen: 127.0.0.1:5432
  connect_address: 127.0.0.1:5432
  data_dir: /var/lib/pgwarden/n1/pgdata
  bin_dir: /usr/lib/postgresql/15/bin
  authentication:
    superuser: {username: postgres, password: secret}
    replication: {username: replicator, password: secret}
  parameters:
    unix_socket_directories: /var/run/pgwarden/n1
    shared_buffers: 32MB
  pg_hba:
  - local all all trust
  - host all all 127.0.0.1/32 trust
  - host replication replicator 127.0.0.1/32 trust
"#;

#[test]
fn the_issue_example_parses() {
    let config = RunConfig::parse(ISSUE_EXAMPLE).unwrap();
    assert_eq!(config.namespace, "/service");
    assert_eq!(config.raft.as_ref().unwrap().partner_addrs.len(), 2);
    assert_eq!(config.dynamic_defaults().ttl, Duration::from_secs(10));
    assert_eq!(config.dynamic_defaults().loop_wait, DEFAULT_LOOP_WAIT);
    assert_eq!(config.local_parameters()["shared_buffers"], "32MB");
    assert_eq!(config.postgresql.os_user, "postgres");
    assert!(config.node_config().use_pg_rewind);
}

fn refusal(text: &str) -> String {
    RunConfig::parse(text).unwrap_err().to_string()
}

#[test]
fn unknown_keys_are_refused_with_their_path() {
    let text = ISSUE_EXAMPLE.replace(
        "    shared_buffers: 32MB",
        "    shared_buffers: 32MB\n    bogus: 1",
    );
    // Parameters are free-form; an unknown key in a typed section is not.
    RunConfig::parse(&text).unwrap();
    let text = ISSUE_EXAMPLE.replace("  pg_hba:", "  bogus: 1\n  pg_hba:");
    let error = refusal(&text);
    assert!(error.starts_with("postgresql"), "{error}");
    assert!(error.contains("bogus"), "{error}");
    let text = ISSUE_EXAMPLE.replace(
        "  etcd_api: 127.0.0.1:2379",
        "  etcd_api: 127.0.0.1:2379\n  peers: 3",
    );
    let error = refusal(&text);
    assert!(
        error.starts_with("raft:") || error.contains("raft"),
        "{error}"
    );
    assert!(error.contains("unknown field `peers`"), "{error}");
}

#[test]
fn wrong_types_are_refused_with_their_path() {
    let text = ISSUE_EXAMPLE.replace("listen: 127.0.0.1:8009", "listen: [1, 2]");
    let error = refusal(&text);
    assert!(error.starts_with("restapi.listen:"), "{error}");
    let text = ISSUE_EXAMPLE.replace("ttl: 10", "ttl: ten");
    let error = refusal(&text);
    assert!(error.starts_with("bootstrap.dcs.ttl:"), "{error}");
}

#[test]
fn impossible_timings_are_refused() {
    let text = ISSUE_EXAMPLE.replace("ttl: 10", "ttl: 10\n    loop_wait: 5\n    retry_timeout: 4");
    let error = refusal(&text);
    assert!(error.contains("impossible timings"), "{error}");
}

#[test]
fn hooks_and_bootstrap_parameters() {
    let text = ISSUE_EXAMPLE
        .replace(
            "  pg_hba:",
            "  callbacks:\n    on_start: \"'/opt/my hooks/cb.sh' -v\"\n  pre_promote: /bin/fence --strict\n  before_stop: /bin/drain\n  pg_hba:",
        )
        .replace(
            "    ttl: 10\n",
            "    ttl: 10\n    postgresql:\n      parameters: {max_connections: 30, hot_standby: true}\n",
        );
    let config = RunConfig::parse(&text).unwrap();
    assert_eq!(
        config.postgresql.callbacks["on_start"],
        "'/opt/my hooks/cb.sh' -v"
    );
    assert_eq!(
        config.postgresql.pre_promote.as_deref(),
        Some("/bin/fence --strict")
    );
    assert_eq!(config.postgresql.before_stop.as_deref(), Some("/bin/drain"));
    let parameters = config.bootstrap_parameters();
    assert_eq!(parameters["max_connections"], "30");
    assert_eq!(parameters["hot_standby"], "on");
    assert!(
        RunConfig::parse(ISSUE_EXAMPLE)
            .unwrap()
            .bootstrap_parameters()
            .is_empty()
    );
    let text = ISSUE_EXAMPLE.replace("  pg_hba:", "  pre_promote: \"/bin/fence 'x\"\n  pg_hba:");
    assert!(
        refusal(&text).starts_with("postgresql.pre_promote:"),
        "{}",
        refusal(&text)
    );
    let text = ISSUE_EXAMPLE.replace(
        "  pg_hba:",
        "  callbacks:\n    on_stop: \"a \\\"b\"\n  pg_hba:",
    );
    assert!(
        refusal(&text).starts_with("postgresql.callbacks.on_stop:"),
        "{}",
        refusal(&text)
    );
}

#[test]
fn replica_method_sections() {
    let text = ISSUE_EXAMPLE.replace(
        "  pg_hba:",
        "  create_replica_methods: [restore]\n  restore:\n    command: /usr/bin/restore --delta\n    keep_data: true\n  pg_hba:",
    );
    let config = RunConfig::parse(&text).expect("a listed method section is accepted");
    assert!(config.postgresql.method_sections.contains_key("restore"));
    let text = ISSUE_EXAMPLE.replace("  pg_hba:", "  bogus: 1\n  pg_hba:");
    let error = refusal(&text);
    assert!(error.starts_with("postgresql.bogus:"), "{error}");
    assert!(error.contains("unknown field `bogus`"), "{error}");
    let text = ISSUE_EXAMPLE.replace(
        "  pg_hba:",
        "  create_replica_methods: [nothere]\n  pg_hba:",
    );
    assert!(refusal(&text).starts_with("postgresql.create_replica_methods:"));
}

#[test]
fn synchronous_mode_values() {
    let text = ISSUE_EXAMPLE.replace("ttl: 10", "ttl: 10\n    synchronous_mode: sometimes");
    let error = refusal(&text);
    assert!(
        error.starts_with("bootstrap.dcs.synchronous_mode:"),
        "{error}"
    );
    let text = ISSUE_EXAMPLE.replace(
        "ttl: 10",
        "ttl: 10\n    synchronous_mode: true\n    synchronous_node_count: 2",
    );
    let config = RunConfig::parse(&text).expect("synchronous mode on");
    let dynamic = config.dynamic_defaults();
    assert_eq!(dynamic.synchronous_mode, ha::SynchronousMode::On);
    assert_eq!(dynamic.synchronous_node_count, 2);
}

#[test]
fn default_timings_satisfy_the_contract() {
    assert!(DEFAULT_LOOP_WAIT + DEFAULT_RETRY_TIMEOUT * 2 <= DEFAULT_TTL);
}

#[test]
fn a_store_section_is_required() {
    let text = ISSUE_EXAMPLE.replace("raft:", "rafty:");
    assert!(refusal(&text).contains("unknown field `rafty`"));
}

#[test]
fn etcd3_hosts_as_list_or_text() {
    let text = ISSUE_EXAMPLE
        .replace("raft:\n  data_dir: /var/lib/pgwarden/n1/raft\n  self_addr: 127.0.0.1:2381            # Raft peer address of this node\n  partner_addrs: [127.0.0.1:2382, 127.0.0.1:2383]\n  etcd_api: 127.0.0.1:2379\n",
            "etcd3:\n  hosts: 127.0.0.1:2379,127.0.0.1:2380\n");
    let config = RunConfig::parse(&text).unwrap();
    assert_eq!(
        config.etcd3.unwrap().endpoints(),
        ["http://127.0.0.1:2379", "http://127.0.0.1:2380"]
    );
}

/// The issue example with its `raft:` section replaced by `store` (YAML lines).
fn with_store(store: &str) -> String {
    let raft_start = ISSUE_EXAMPLE.find("raft:\n").unwrap();
    let raft_end = ISSUE_EXAMPLE.find("bootstrap:\n").unwrap();
    format!(
        "{}{store}{}",
        &ISSUE_EXAMPLE[..raft_start],
        &ISSUE_EXAMPLE[raft_end..]
    )
}

#[test]
fn etcd3_accepts_patroni_keys() {
    let config = RunConfig::parse(&with_store(
        "etcd3:\n  hosts: [127.0.0.1:2379, '127.0.0.1:2479']\n  protocol: http\n  username: patroni\n  password: secret\n",
    ))
    .unwrap();
    assert!(config.raft.is_none());
    let etcd3 = config.etcd3.unwrap();
    assert_eq!(
        etcd3.endpoints(),
        ["http://127.0.0.1:2379", "http://127.0.0.1:2479"]
    );
    assert_eq!(
        etcd3.user(),
        Some(("patroni".to_owned(), "secret".to_owned()))
    );
    let config = RunConfig::parse(&with_store("etcd3:\n  host: 10.0.0.1:2379\n")).unwrap();
    let etcd3 = config.etcd3.unwrap();
    assert_eq!(etcd3.endpoints(), ["http://10.0.0.1:2379"]);
    assert_eq!(etcd3.user(), None);
}

#[test]
fn etcd3_refusals_name_their_key() {
    let cases = [
        (
            "etcd3:\n  hosts: 127.0.0.1:2379\n  protocol: https\n",
            "etcd3.protocol: https is not supported",
        ),
        (
            "etcd3:\n  hosts: 127.0.0.1:2379\n  protocol: gopher\n",
            "etcd3.protocol:",
        ),
        (
            "etcd3:\n  hosts: https://127.0.0.1:2379\n",
            "etcd3.hosts: \"https://127.0.0.1:2379\": only http://",
        ),
        ("etcd3:\n  hosts: ''\n", "etcd3.hosts: at least one"),
        ("etcd3: {}\n", "etcd3.hosts: at least one"),
        (
            "etcd3:\n  hosts: [localhost]\n",
            "etcd3.hosts: \"localhost\" is not host:port",
        ),
        (
            "etcd3:\n  hosts: 127.0.0.1:2379\n  username: patroni\n",
            "etcd3.password: required with etcd3.username",
        ),
        (
            "etcd3:\n  hosts: 127.0.0.1:2379\n  cacert: /ca.pem\n",
            "unknown field `cacert`",
        ),
        ("", "raft: a store is required"),
    ];
    for (store, expected) in cases {
        let error = refusal(&with_store(store));
        assert!(error.contains(expected), "{store:?}: {error}");
    }
    let both = ISSUE_EXAMPLE.replace(
        "bootstrap:\n",
        "etcd3:\n  host: 127.0.0.1:2379\nbootstrap:\n",
    );
    let error = refusal(&both);
    assert!(
        error.starts_with("etcd3: `raft:` and `etcd3:` exclude each other"),
        "{error}"
    );
}

#[test]
fn restapi_access_keys() {
    let text = ISSUE_EXAMPLE.replace(
        "  connect_address: 127.0.0.1:8009\n",
        "  connect_address: 127.0.0.1:8009\n  authentication: {username: admin, password: secret}\n  allowlist: [10.0.0.0/8, 127.0.0.1]\n  allowlist_include_members: true\n",
    );
    let policy = RunConfig::parse(&text)
        .unwrap()
        .restapi
        .access_policy()
        .unwrap();
    assert_eq!(policy.credentials.unwrap().username, "admin");
    assert_eq!(policy.allowlist.len(), 2);
    assert!(policy.allowlist_include_members);
    let open = RunConfig::parse(ISSUE_EXAMPLE)
        .unwrap()
        .restapi
        .access_policy()
        .unwrap();
    assert_eq!(open, rest::AccessPolicy::default());
    let bad = ISSUE_EXAMPLE.replace(
        "  connect_address: 127.0.0.1:8009\n",
        "  connect_address: 127.0.0.1:8009\n  allowlist: [10.0.0.0/99]\n",
    );
    let reason = RunConfig::parse(&bad)
        .unwrap()
        .restapi
        .access_policy()
        .unwrap_err();
    assert!(reason.contains("10.0.0.0/99"), "{reason}");
}
