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
fn etcd3_endpoints_come_from_proxy_url_hosts_or_host_as_in_patroni() {
    // (etcd3 section, endpoints, credentials)
    type Case = (
        &'static str,
        &'static [&'static str],
        Option<(&'static str, &'static str)>,
    );
    let cases: [Case; 6] = [
        (
            "etcd3:\n  url: http://patroni:secret@10.0.0.1:2379\n",
            &["http://10.0.0.1:2379"],
            Some(("patroni", "secret")),
        ),
        (
            "etcd3:\n  url: http://10.0.0.1\n  hosts: [10.0.0.2:2379]\n",
            &["http://10.0.0.1:2379"],
            None,
        ),
        (
            "etcd3:\n  proxy: http://proxy:23790\n  url: http://10.0.0.1:2379\n  use_proxies: true\n",
            &["http://proxy:23790"],
            None,
        ),
        (
            "etcd3:\n  hosts: 10.0.0.1,10.0.0.2:2479\n  host: 10.0.0.3:2379\n",
            &["http://10.0.0.1:2379", "http://10.0.0.2:2479"],
            None,
        ),
        (
            "etcd3:\n  host: etcd.internal\n  use_proxies: false\n",
            &["http://etcd.internal:2379"],
            None,
        ),
        (
            "etcd3:\n  url: http://u:p@10.0.0.1:2379\n  username: patroni\n  password: secret\n",
            &["http://10.0.0.1:2379"],
            Some(("patroni", "secret")),
        ),
    ];
    for (store, endpoints, user) in cases {
        let etcd3 = RunConfig::parse(&with_store(store))
            .unwrap_or_else(|error| panic!("{store:?}: {error}"))
            .etcd3
            .unwrap();
        assert_eq!(etcd3.endpoints(), endpoints, "{store:?}");
        assert_eq!(
            etcd3.user(),
            user.map(|(name, password)| (name.to_owned(), password.to_owned())),
            "{store:?}"
        );
    }
}

#[test]
fn etcd3_refusals_name_their_key() {
    let cases = [
        (
            "etcd3:\n  hosts: 127.0.0.1:2379\n  protocol: gopher\n",
            "etcd3.protocol:",
        ),
        (
            "etcd3:\n  hosts: unix://127.0.0.1:2379\n",
            "etcd3.hosts: \"unix://127.0.0.1:2379\": only http:// and https://",
        ),
        ("etcd3:\n  hosts: ''\n", "etcd3.hosts: at least one"),
        ("etcd3: {}\n", "etcd3.hosts: at least one"),
        (
            "etcd3:\n  hosts: [localhost:port]\n",
            "etcd3.hosts: \"localhost:port\" is not host:port",
        ),
        (
            "etcd3:\n  srv: example.com\n",
            "etcd3.srv: DNS SRV discovery is not supported",
        ),
        (
            "etcd3:\n  url: gopher://10.0.0.1:2379\n",
            "etcd3.url: \"gopher://10.0.0.1:2379\": only http:// and https://",
        ),
        (
            "etcd3:\n  proxy: http://10.0.0.1:2379\n  protocol: https\n  cacert: /ca.pem\n",
            "etcd3.protocol: https, but etcd3.proxy is http://",
        ),
        (
            "etcd3:\n  hosts: 127.0.0.1:2379\n  username: patroni\n",
            "etcd3.password: required with etcd3.username",
        ),
        (
            "etcd3:\n  hosts: 127.0.0.1:2379\n  certfile: /ca.pem\n",
            "unknown field `certfile`",
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

/// The key path and reason of a refusal.
fn refused_key(result: Result<RunConfig, ConfigError>) -> (String, String) {
    match result {
        Err(ConfigError::Invalid { path, reason }) => (path, reason),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn etcd3_https_endpoints() {
    let cases = [
        (
            "etcd3:\n  hosts: [127.0.0.1:2379, 127.0.0.1:2479]\n  protocol: https\n  cacert: /ca.pem\n",
            vec!["https://127.0.0.1:2379", "https://127.0.0.1:2479"],
        ),
        (
            "etcd3:\n  hosts: https://127.0.0.1:2379,https://127.0.0.1:2479\n  cacert: /ca.pem\n",
            vec!["https://127.0.0.1:2379", "https://127.0.0.1:2479"],
        ),
        (
            "etcd3:\n  host: https://10.0.0.1:2379\n  protocol: https\n  cacert: /ca.pem\n  \
             cert: /client.pem\n  key: /client-key.pem\n",
            vec!["https://10.0.0.1:2379"],
        ),
    ];
    for (store, endpoints) in cases {
        let etcd3 = RunConfig::parse(&with_store(store))
            .unwrap_or_else(|error| panic!("{store:?}: {error}"))
            .etcd3
            .unwrap();
        assert!(etcd3.uses_tls(), "{store:?}");
        assert_eq!(etcd3.endpoints(), endpoints, "{store:?}");
    }
    let plain = RunConfig::parse(&with_store("etcd3:\n  hosts: http://127.0.0.1:2379\n"))
        .unwrap()
        .etcd3
        .unwrap();
    assert!(!plain.uses_tls());
    assert!(plain.tls().unwrap().is_none());
}

#[test]
fn etcd3_tls_rules_name_their_key() {
    let cases = [
        (
            "protocol: https",
            "etcd3.cacert",
            "required with https: pgwarden verifies the etcd servers' certificates against this CA only",
        ),
        (
            "hosts: https://127.0.0.1:2379",
            "etcd3.cacert",
            "required with https",
        ),
        (
            "protocol: https\n  cacert: /ca.pem\n  cert: /client.pem",
            "etcd3.key",
            "required with etcd3.cert",
        ),
        (
            "protocol: https\n  cacert: /ca.pem\n  key: /client-key.pem",
            "etcd3.cert",
            "required with etcd3.key",
        ),
        (
            "cacert: /ca.pem",
            "etcd3.cacert",
            "only used with protocol: https",
        ),
        (
            "protocol: http\n  cert: /client.pem\n  key: /client-key.pem",
            "etcd3.cert",
            "only used with protocol: https",
        ),
        (
            "key: /client-key.pem",
            "etcd3.key",
            "only used with protocol: https",
        ),
        (
            "hosts: [http://127.0.0.1:2379, https://127.0.0.1:2479]\n  cacert: /ca.pem",
            "etcd3.hosts",
            "http:// and https:// hosts are mixed",
        ),
        (
            "hosts: [127.0.0.1:2379, https://127.0.0.1:2479]\n  cacert: /ca.pem",
            "etcd3.hosts",
            "mixed",
        ),
        (
            "protocol: http\n  hosts: https://127.0.0.1:2479\n  cacert: /ca.pem",
            "etcd3.protocol",
            "etcd3.hosts is https://",
        ),
        (
            "protocol: https\n  hosts: http://127.0.0.1:2479\n  cacert: /ca.pem",
            "etcd3.protocol",
            "etcd3.hosts is http://",
        ),
        (
            "protocol: https\n  cacert: /ca.pem\n  cert: /client.pem\n  key: /client-key.pem\n  \
             key_password: secret",
            "etcd3.key_password",
            "encrypted private keys are not supported: decrypt the key file",
        ),
        ("protocol: tls", "etcd3.protocol", "use http or https"),
    ];
    for (keys, key, reason) in cases {
        let hosts = if keys.contains("hosts:") {
            ""
        } else {
            "hosts: 127.0.0.1:2379\n  "
        };
        let store = format!("etcd3:\n  {hosts}{keys}\n");
        let (path, message) = refused_key(RunConfig::parse(&with_store(&store)));
        assert_eq!(path, key, "{store:?}: {message}");
        assert!(message.contains(reason), "{store:?}: {message}");
    }
}

/// A self-signed certificate and its key, PEM (usable as a CA and as a client certificate).
fn self_signed() -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    let certificate = params.self_signed(&key).unwrap();
    (certificate.pem(), key.serialize_pem())
}

/// Writes `ca.pem`, `client.pem`, `client-key.pem`, `other-key.pem` and `garbage.pem` into `dir`.
fn write_etcd3_tls_files(dir: &Path) {
    let (ca, _) = self_signed();
    let (client, client_key) = self_signed();
    let (_, other_key) = self_signed();
    for (name, pem) in [
        ("ca.pem", ca),
        ("client.pem", client),
        ("client-key.pem", client_key),
        ("other-key.pem", other_key),
        ("garbage.pem", "not PEM at all\n".to_owned()),
    ] {
        std::fs::write(dir.join(name), pem).unwrap();
    }
}

/// Writes a configuration with an https `etcd3:` section of `keys` (`{dir}`: the files'
/// directory) and loads it.
fn load_etcd3(dir: &Path, keys: &str) -> Result<RunConfig, ConfigError> {
    let keys = keys.replace("{dir}", &dir.display().to_string());
    let store = format!("etcd3:\n  protocol: https\n  hosts: 127.0.0.1:2379\n{keys}");
    let path = dir.join("pgwarden.yml");
    std::fs::write(&path, with_store(&store)).unwrap();
    RunConfig::load(&path)
}

#[test]
fn etcd3_tls_files_are_read_at_load() {
    let dir = tempfile::tempdir().unwrap();
    write_etcd3_tls_files(dir.path());
    let ca_only = load_etcd3(dir.path(), "  cacert: {dir}/ca.pem\n").unwrap();
    let tls = ca_only.etcd3.unwrap().tls().unwrap().unwrap();
    assert_eq!(
        tls.trusted_ca_pem,
        std::fs::read(dir.path().join("ca.pem")).unwrap()
    );
    assert!(tls.client_certificate.is_none());

    let with_client = load_etcd3(
        dir.path(),
        "  cacert: {dir}/ca.pem\n  cert: {dir}/client.pem\n  key: {dir}/client-key.pem\n",
    )
    .unwrap();
    let tls = with_client.etcd3.unwrap().tls().unwrap().unwrap();
    let (cert, key) = tls.client_certificate.unwrap();
    assert_eq!(cert, std::fs::read(dir.path().join("client.pem")).unwrap());
    assert_eq!(
        key,
        std::fs::read(dir.path().join("client-key.pem")).unwrap()
    );
    assert!(!tls.trusted_ca_pem.is_empty());
}

#[test]
fn unusable_etcd3_tls_files_are_refused_naming_the_key_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write_etcd3_tls_files(dir.path());
    let client = "  cert: {dir}/client.pem\n  key: {dir}/client-key.pem\n";
    let cases = [
        // The CA alone, and beside a client certificate: each path checks it.
        (
            "  cacert: {dir}/missing.pem\n",
            "etcd3.cacert",
            "missing.pem",
            "No such file",
        ),
        (
            "  cacert: {dir}/garbage.pem\n",
            "etcd3.cacert",
            "garbage.pem",
            "CA",
        ),
        (
            "  cacert: {dir}/client-key.pem\n",
            "etcd3.cacert",
            "client-key.pem",
            "CA",
        ),
        (
            "  cacert: {dir}/missing.pem\n  cert: {dir}/client.pem\n  key: {dir}/client-key.pem\n",
            "etcd3.cacert",
            "missing.pem",
            "No such file",
        ),
        (
            "  cacert: {dir}/garbage.pem\n  cert: {dir}/client.pem\n  key: {dir}/client-key.pem\n",
            "etcd3.cacert",
            "garbage.pem",
            "CA",
        ),
        (
            "  cacert: {dir}/ca.pem\n  cert: {dir}/garbage.pem\n  key: {dir}/client-key.pem\n",
            "etcd3.cert",
            "garbage.pem",
            "certificate",
        ),
        (
            "  cacert: {dir}/ca.pem\n  cert: {dir}/missing.pem\n  key: {dir}/client-key.pem\n",
            "etcd3.cert",
            "missing.pem",
            "No such file",
        ),
        (
            "  cacert: {dir}/ca.pem\n  cert: {dir}/client.pem\n  key: {dir}/garbage.pem\n",
            "etcd3.key",
            "garbage.pem",
            "private key",
        ),
        (
            "  cacert: {dir}/ca.pem\n  cert: {dir}/client.pem\n  key: {dir}/other-key.pem\n",
            "etcd3.key",
            "other-key.pem",
            "private key",
        ),
    ];
    assert!(load_etcd3(dir.path(), &format!("  cacert: {{dir}}/ca.pem\n{client}")).is_ok());
    for (keys, key, file, reason) in cases {
        let (path, message) = refused_key(load_etcd3(dir.path(), keys));
        assert_eq!(path, key, "{keys}: {message}");
        let file = dir.path().join(file).display().to_string();
        assert!(
            message.contains(&file) && message.contains(reason),
            "{keys}: {message}"
        );
    }
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

#[test]
fn patroni_environment_variables_override_the_file_and_are_named_when_refused() {
    let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    };
    let config = RunConfig::parse_with_environment(
        ISSUE_EXAMPLE,
        env(&[
            ("PATRONI_NAME", "n7"),
            ("PATRONI_RESTAPI_LISTEN", "0.0.0.0:8010"),
            ("PATRONI_REPLICATION_PASSWORD", "from-env"),
        ]),
    )
    .unwrap();
    assert_eq!(config.name, "n7");
    assert_eq!(config.restapi.listen.port(), 8010);
    assert_eq!(
        config
            .postgresql
            .authentication
            .replication
            .password
            .as_deref(),
        Some("from-env")
    );

    let refused = RunConfig::parse_with_environment(
        ISSUE_EXAMPLE,
        env(&[("PATRONI_RESTAPI_LISTEN", "nowhere")]),
    );
    match refused {
        Err(ConfigError::Invalid { path, reason }) => {
            assert_eq!(path, "restapi.listen");
            assert!(reason.contains("(from PATRONI_RESTAPI_LISTEN)"), "{reason}");
        }
        other => panic!("accepted: {other:?}"),
    }
    let refused =
        RunConfig::parse_with_environment(ISSUE_EXAMPLE, env(&[("PATRONI_SCOPE", "a/b")]));
    match refused {
        Err(ConfigError::Invalid { path, reason }) => {
            assert_eq!(path, "scope");
            assert!(reason.contains("(from PATRONI_SCOPE)"), "{reason}");
        }
        other => panic!("accepted: {other:?}"),
    }
}

#[test]
fn patroni_postgresql_keys_pgwarden_does_not_need_are_accepted() {
    let text = ISSUE_EXAMPLE.replace(
        "  pg_hba:",
        "  use_unix_socket: true\n  use_unix_socket_repl: false\n  pg_ctl_timeout: 60\n  proxy_address: 127.0.0.1:6432\n  pg_hba:",
    );
    let config = RunConfig::parse(&text).unwrap();
    assert_eq!(config.postgresql.pg_ctl_timeout, Some(60));
    assert!(config.postgresql.method_sections.is_empty());
}

#[test]
fn bootstrap_initdb_entries_become_initdb_options_or_are_refused_by_entry() {
    let with = |initdb: &str| {
        RunConfig::parse(
            &ISSUE_EXAMPLE.replace("bootstrap:\n", &format!("bootstrap:\n  initdb: {initdb}\n")),
        )
    };
    let options = with("[data-checksums, {encoding: UTF8}, {locale: C}, {wal-segsize: 32}]")
        .unwrap()
        .initdb_options()
        .unwrap();
    assert_eq!(
        options,
        [
            ("data-checksums".to_owned(), None),
            ("encoding".to_owned(), Some("UTF8".to_owned())),
            ("locale".to_owned(), Some("C".to_owned())),
            ("wal-segsize".to_owned(), Some("32".to_owned())),
        ]
    );
    for (initdb, entry) in [
        ("[{pgdata: /x}]", "bootstrap.initdb[0]"),
        ("[data-checksums, nosync]", "bootstrap.initdb[1]"),
        ("[{a: 1, b: 2}]", "bootstrap.initdb[0]"),
        ("[[nested]]", "bootstrap.initdb[0]"),
        ("[{locale: [C]}]", "bootstrap.initdb[0]"),
        ("[\"two words\"]", "bootstrap.initdb[0]"),
    ] {
        match with(initdb) {
            Err(ConfigError::Invalid { path, .. }) => assert_eq!(path, entry, "{initdb}"),
            other => panic!("{initdb} accepted: {other:?}"),
        }
    }
}
