use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use clap::error::ErrorKind;

use super::*;
use crate::cli::Cli;
use crate::cli::Command;

fn parse(args: &[&str]) -> Result<EtcdFlags, clap::Error> {
    let argv = ["pgwarden", "etcd"].iter().chain(args.iter());
    match Cli::try_parse_from(argv)?.command {
        Command::Etcd(flags) => Ok(flags),
        other => panic!("`pgwarden etcd` parsed as {other:?}"),
    }
}

fn config(args: &[&str]) -> EtcdConfig {
    let flags = parse(args).unwrap_or_else(|error| panic!("{args:?} must parse: {error}"));
    flags
        .validate()
        .unwrap_or_else(|error| panic!("{args:?} must validate: {error}"))
}

fn flag_error(args: &[&str]) -> FlagError {
    let flags = parse(args).unwrap_or_else(|error| panic!("{args:?} must parse: {error}"));
    match flags.validate() {
        Ok(config) => panic!("{args:?} must be refused, got {config:?}"),
        Err(error) => error,
    }
}

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("test address")
}

#[test]
fn zero_flags_give_a_single_member_on_etcds_default_ports() {
    let config = config(&[]);
    assert_eq!(config.name, "default");
    assert_eq!(config.data_dir, PathBuf::from("default.etcd"));
    assert_eq!(config.listen_client.len(), 1);
    assert_eq!(config.listen_client[0].addr, addr("127.0.0.1:2379"));
    assert_eq!(config.advertise_client_urls, vec!["http://localhost:2379"]);
    assert_eq!(config.listen_peer.addr, addr("127.0.0.1:2380"));
    assert_eq!(
        config.initial_cluster,
        vec![(
            "default".to_owned(),
            vec!["http://localhost:2380".to_owned()]
        )]
    );
    assert_eq!(config.initial_cluster_state, ClusterState::New);
    assert_eq!(config.initial_cluster_token, "etcd-cluster");
    assert_eq!(config.heartbeat_interval, Duration::from_millis(100));
    assert_eq!(config.election_timeout, Duration::from_millis(1000));
    assert!(config.snapshot_count > 0);
    assert!(config.ignored_flags.is_empty());
}

#[test]
fn name_derives_data_dir_and_initial_cluster_like_etcd() {
    let config = config(&[
        "--name",
        "n1",
        "--initial-advertise-peer-urls",
        "http://127.0.0.1:12380",
        "--listen-peer-urls",
        "http://127.0.0.1:12380",
    ]);
    assert_eq!(config.data_dir, PathBuf::from("n1.etcd"));
    assert_eq!(
        config.initial_cluster,
        vec![("n1".to_owned(), vec!["http://127.0.0.1:12380".to_owned()])]
    );
}

#[test]
fn a_three_member_script_parses_with_both_flag_spellings() {
    let config = config(&[
        "--name=n2",
        "--data-dir",
        "/var/lib/n2",
        "--listen-client-urls=http://127.0.0.1:22379,http://0.0.0.0:22479",
        "--advertise-client-urls",
        "http://10.0.0.2:22379",
        "--listen-peer-urls=http://127.0.0.1:22380",
        "--initial-advertise-peer-urls",
        "http://127.0.0.1:22380",
        "--initial-cluster",
        "n1=http://127.0.0.1:12380,n2=http://127.0.0.1:22380,n3=http://127.0.0.1:32380",
        "--initial-cluster-state=existing",
        "--initial-cluster-token",
        "tok",
        "--heartbeat-interval=50",
        "--election-timeout",
        "500",
        "--snapshot-count=100",
    ]);
    assert_eq!(config.name, "n2");
    assert_eq!(config.data_dir, PathBuf::from("/var/lib/n2"));
    let listen: Vec<SocketAddr> = config.listen_client.iter().map(|l| l.addr).collect();
    assert_eq!(listen, vec![addr("127.0.0.1:22379"), addr("0.0.0.0:22479")]);
    assert_eq!(config.advertise_client_urls, vec!["http://10.0.0.2:22379"]);
    assert_eq!(config.listen_peer.addr, addr("127.0.0.1:22380"));
    let names: Vec<&str> = config
        .initial_cluster
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(names, vec!["n1", "n2", "n3"]);
    assert_eq!(config.initial_cluster_state, ClusterState::Existing);
    assert_eq!(config.initial_cluster_token, "tok");
    assert_eq!(config.heartbeat_interval, Duration::from_millis(50));
    assert_eq!(config.election_timeout, Duration::from_millis(500));
    assert_eq!(config.snapshot_count, 100);
}

#[test]
fn a_repeated_name_in_initial_cluster_gives_that_member_several_peer_urls() {
    let config = config(&[
        "--name=a",
        "--initial-advertise-peer-urls=http://127.0.0.1:1,http://127.0.0.2:1",
        "--listen-peer-urls=http://127.0.0.1:1",
        "--initial-cluster=a=http://127.0.0.2:1,b=http://127.0.0.3:1,a=http://127.0.0.1:1",
    ]);
    assert_eq!(
        config.initial_cluster,
        vec![
            (
                "a".to_owned(),
                vec![
                    "http://127.0.0.2:1".to_owned(),
                    "http://127.0.0.1:1".to_owned()
                ]
            ),
            ("b".to_owned(), vec!["http://127.0.0.3:1".to_owned()]),
        ]
    );
}

#[test]
fn ipv6_and_trailing_slash_urls_are_accepted() {
    let config = config(&[
        "--listen-client-urls=http://[::1]:2379/",
        "--advertise-client-urls=http://[::1]:2379",
    ]);
    assert_eq!(config.listen_client[0].addr, addr("[::1]:2379"));
    assert_eq!(config.listen_client[0].url, "http://[::1]:2379");
}

#[test]
fn bad_urls_are_refused_naming_the_flag() {
    let cases: &[(&[&str], &str, &str)] = &[
        (
            &["--listen-client-urls=https://127.0.0.1:2379"],
            "listen-client-urls",
            "give --cert-file and --key-file",
        ),
        (
            &["--advertise-client-urls=unixs://h:1"],
            "advertise-client-urls",
            "http:// or https://",
        ),
        (
            &["--listen-peer-urls=unix://x"],
            "listen-peer-urls",
            "http://",
        ),
        (
            &["--listen-client-urls=http://127.0.0.1"],
            "listen-client-urls",
            "host:port",
        ),
        (
            &["--listen-client-urls=http://127.0.0.1:99999"],
            "listen-client-urls",
            "invalid port",
        ),
        (
            &["--listen-client-urls=http://127.0.0.1:2379/path"],
            "listen-client-urls",
            "path",
        ),
        (
            &["--listen-client-urls=http://example.com:2379"],
            "listen-client-urls",
            "IP address",
        ),
        (
            &["--listen-client-urls=http://127.0.0.1:2379,"],
            "listen-client-urls",
            "empty URL",
        ),
        (
            &["--advertise-client-urls="],
            "advertise-client-urls",
            "empty URL",
        ),
        (
            &["--listen-peer-urls=http://127.0.0.1:1,http://127.0.0.1:2"],
            "listen-peer-urls",
            "exactly one",
        ),
    ];
    for (args, flag, words) in cases {
        let error = flag_error(args);
        assert_eq!(error.flag, *flag, "{args:?}: {error}");
        let message = error.to_string();
        assert!(message.contains(&format!("--{flag}")), "{message}");
        assert!(message.contains(words), "{args:?}: {message}");
    }
}

#[test]
fn the_own_member_must_be_in_initial_cluster_with_its_peer_urls() {
    let missing = flag_error(&["--name=n9", "--initial-cluster=n1=http://127.0.0.1:2380"]);
    assert_eq!(missing.flag, "initial-cluster");
    assert!(missing.to_string().contains("n9"), "{missing}");

    let mismatch = flag_error(&[
        "--name=n1",
        "--initial-advertise-peer-urls=http://127.0.0.1:2380",
        "--initial-cluster=n1=http://127.0.0.1:9999",
    ]);
    assert_eq!(mismatch.flag, "initial-cluster");
    assert!(
        mismatch
            .to_string()
            .contains("--initial-advertise-peer-urls"),
        "{mismatch}"
    );

    let malformed = flag_error(&["--initial-cluster=default"]);
    assert_eq!(malformed.flag, "initial-cluster");
    let unnamed = flag_error(&["--initial-cluster==http://localhost:2380"]);
    assert_eq!(unnamed.flag, "initial-cluster");
    let shared_url = flag_error(&[
        "--initial-cluster=default=http://localhost:2380,other=http://localhost:2380",
    ]);
    assert!(shared_url.to_string().contains("twice"), "{shared_url}");
}

#[test]
fn timings_must_be_positive_and_election_at_least_five_heartbeats() {
    let cases: &[(&[&str], &str)] = &[
        (&["--heartbeat-interval=0"], "heartbeat-interval"),
        (&["--election-timeout=0"], "election-timeout"),
        (
            &["--heartbeat-interval=100", "--election-timeout=499"],
            "election-timeout",
        ),
        (
            &["--heartbeat-interval=1000", "--election-timeout=60000"],
            "election-timeout",
        ),
        (&["--snapshot-count=0"], "snapshot-count"),
        (&["--name= "], "name"),
        (&["--initial-cluster-token="], "initial-cluster-token"),
    ];
    for (args, flag) in cases {
        assert_eq!(flag_error(args).flag, *flag, "{args:?}");
    }
    let exact = config(&["--heartbeat-interval=100", "--election-timeout=500"]);
    assert_eq!(exact.election_timeout, Duration::from_millis(500));
}

#[test]
fn unknown_and_malformed_flags_are_usage_errors_naming_the_flag() {
    let cases: &[(&[&str], &str)] = &[
        (&["--no-such-flag=1"], "--no-such-flag"),
        (&["--wal-dir", "/tmp/wal"], "--wal-dir"),
        (&["--heartbeat-interval=fast"], "--heartbeat-interval"),
        (
            &["--initial-cluster-state=maybe"],
            "--initial-cluster-state",
        ),
        (&["--enable-v2", "false"], "false"),
    ];
    for (args, named) in cases {
        let error = parse(args).expect_err("must be refused");
        assert_eq!(error.exit_code(), 2, "{args:?}");
        assert_ne!(error.kind(), ErrorKind::DisplayHelp);
        let message = error.to_string();
        assert!(message.contains(named), "{args:?}: {message}");
    }
}

#[test]
fn common_harmless_etcd_flags_are_accepted_and_reported_as_ignored() {
    let config = config(&[
        "--logger=zap",
        "--log-level",
        "info",
        "--enable-v2=false",
        "--enable-pprof",
    ]);
    assert_eq!(
        config.ignored_flags,
        vec![
            "--logger=zap",
            "--log-level=info",
            "--enable-v2=false",
            "--enable-pprof=true",
        ]
    );
}

#[test]
fn etcds_single_dash_spelling_is_accepted() {
    let argv = [
        "pgwarden",
        "etcd",
        "-name",
        "n1",
        "-data-dir=/d",
        "-initial-advertise-peer-urls",
        "http://127.0.0.1:2380",
        "-listen-peer-urls=http://127.0.0.1:2380",
        "-heartbeat-interval",
        "50",
        "-election-timeout=500",
        "-enable-v2=false",
    ]
    .map(std::ffi::OsString::from);
    let normalized = crate::cli::normalize_etcd_args(argv);
    let Command::Etcd(flags) = Cli::try_parse_from(normalized).expect("parses").command else {
        panic!("`pgwarden etcd` parsed as another command");
    };
    let config = flags.validate().expect("validates");
    assert_eq!(config.name, "n1");
    assert_eq!(config.data_dir, PathBuf::from("/d"));
    assert_eq!(config.heartbeat_interval, Duration::from_millis(50));
    assert_eq!(config.election_timeout, Duration::from_millis(500));
    assert_eq!(config.ignored_flags, vec!["--enable-v2=false"]);
}

#[test]
fn only_long_flag_shapes_are_rewritten() {
    let argv = [
        "pgwarden",
        "etcd",
        "-h",
        "-1",
        "-",
        "--name",
        "-x",
        "-snapshot-count",
        "--",
        "-name",
    ]
    .map(std::ffi::OsString::from);
    let normalized: Vec<String> = crate::cli::normalize_etcd_args(argv)
        .into_iter()
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        normalized,
        [
            "pgwarden",
            "etcd",
            "-h",
            "-1",
            "-",
            "--name",
            "-x",
            "--snapshot-count",
            "--",
            "-name"
        ]
    );
}

#[test]
fn space_flags_default_to_etcds_no_auto_compaction_and_a_two_gib_quota() {
    let config = config(&[]);
    assert_eq!(config.auto_compaction, None);
    assert_eq!(
        config.quota_backend_bytes, 0,
        "0 means etcd's default of 2 GiB"
    );
}

#[test]
fn space_flags_take_etcds_values() {
    let hour = Duration::from_secs(3600);
    let cases: &[(&[&str], Option<AutoCompaction>, i64)] = &[
        (
            &["--auto-compaction-retention=1"],
            Some(AutoCompaction::Periodic { retention: hour }),
            0,
        ),
        (
            &[
                "--auto-compaction-mode",
                "periodic",
                "--auto-compaction-retention",
                "30m",
            ],
            Some(AutoCompaction::Periodic {
                retention: hour / 2,
            }),
            0,
        ),
        (
            &[
                "--auto-compaction-mode=revision",
                "--auto-compaction-retention=1000",
            ],
            Some(AutoCompaction::Revision {
                retention: 1000,
                interval: Duration::from_secs(300),
            }),
            0,
        ),
        (&["--auto-compaction-mode=revision"], None, 0),
        (
            &["--quota-backend-bytes", "8589934592"],
            None,
            8_589_934_592,
        ),
        (&["--quota-backend-bytes=-1"], None, -1),
    ];
    for (args, auto_compaction, quota) in cases {
        let config = config(args);
        assert_eq!(&config.auto_compaction, auto_compaction, "{args:?}");
        assert_eq!(config.quota_backend_bytes, *quota, "{args:?}");
        assert!(config.ignored_flags.is_empty(), "{args:?}");
    }
}

#[test]
fn bad_space_flag_values_are_refused_naming_the_flag() {
    let refused: &[(&[&str], &str)] = &[
        (&["--auto-compaction-mode=hourly"], "auto-compaction-mode"),
        (
            &["--auto-compaction-retention=1d"],
            "auto-compaction-retention",
        ),
        (
            &["--auto-compaction-retention=-2"],
            "auto-compaction-retention",
        ),
        (
            &[
                "--auto-compaction-mode=revision",
                "--auto-compaction-retention=1h",
            ],
            "auto-compaction-retention",
        ),
    ];
    for (args, flag) in refused {
        let error = flag_error(args);
        assert_eq!(error.flag, *flag, "{args:?}");
        assert!(
            error
                .to_string()
                .starts_with(&format!("invalid value for --{flag}: "))
        );
    }
    let unparsable = parse(&["--quota-backend-bytes=2GB"]).expect_err("not a number");
    assert_eq!(unparsable.exit_code(), 2);
    assert!(unparsable.to_string().contains("--quota-backend-bytes"));
}

#[test]
fn auth_token_ttl_defaults_to_etcds_five_minutes_and_must_be_positive() {
    assert_eq!(config(&[]).auth_token_ttl, Duration::from_secs(300));
    assert_eq!(
        config(&["--auth-token-ttl=60"]).auth_token_ttl,
        Duration::from_secs(60)
    );
    assert_eq!(
        flag_error(&["--auth-token-ttl", "0"]).flag,
        "auth-token-ttl"
    );
    let unparsable = parse(&["--auth-token-ttl=5m"]).expect_err("seconds only");
    assert!(unparsable.to_string().contains("--auth-token-ttl"));
}

#[test]
fn https_urls_take_their_certificates_from_etcds_tls_flags() {
    let config = config(&[
        "--listen-client-urls=https://127.0.0.1:2379,http://127.0.0.1:2381",
        "--advertise-client-urls=https://127.0.0.1:2379",
        "--listen-peer-urls=https://127.0.0.1:2380",
        "--initial-advertise-peer-urls=https://127.0.0.1:2380",
        "--cert-file=c.pem",
        "--key-file=k.pem",
        "--trusted-ca-file=ca.pem",
        "--client-cert-auth",
        "--peer-cert-file=pc.pem",
        "--peer-key-file=pk.pem",
        "--peer-trusted-ca-file=pca.pem",
        "--peer-client-cert-auth=true",
    ]);
    assert!(config.listen_client[0].is_tls());
    assert!(!config.listen_client[1].is_tls());
    assert!(config.listen_peer.is_tls());
    assert_eq!(config.initial_cluster[0].1, vec!["https://127.0.0.1:2380"]);
    let client = config.tls.client.expect("client TLS");
    assert_eq!(client.cert_file, PathBuf::from("c.pem"));
    assert_eq!(client.trusted_ca_file, Some(PathBuf::from("ca.pem")));
    assert!(client.client_cert_auth);
    let peer = config.tls.peer.expect("peer TLS");
    assert_eq!(peer.key_file, PathBuf::from("pk.pem"));
    assert!(peer.client_cert_auth);

    let plain = self::config(&[]);
    assert_eq!(plain.tls, crate::tls_flags::TlsConfig::default());
}

#[test]
fn tls_flag_combinations_that_cannot_work_are_refused_naming_the_flag() {
    let https_peer: &[&str] = &[
        "--listen-peer-urls=https://127.0.0.1:2380",
        "--initial-advertise-peer-urls=https://127.0.0.1:2380",
    ];
    let with_peer = |more: &[&'static str]| -> Vec<&'static str> {
        let mut args = vec![
            "--listen-peer-urls=https://127.0.0.1:2380",
            "--initial-advertise-peer-urls=https://127.0.0.1:2380",
        ];
        args.extend_from_slice(more);
        args
    };
    let cases: Vec<(Vec<&str>, &str, &str)> = vec![
        (
            vec!["--listen-client-urls=https://127.0.0.1:2379"],
            "listen-client-urls",
            "--cert-file",
        ),
        (
            vec!["--cert-file=c.pem"],
            "key-file",
            "required with --cert-file",
        ),
        (
            vec!["--key-file=k.pem"],
            "cert-file",
            "required with --key-file",
        ),
        (
            vec![
                "--cert-file=c.pem",
                "--key-file=k.pem",
                "--client-cert-auth",
            ],
            "client-cert-auth",
            "--trusted-ca-file",
        ),
        (vec!["--auto-tls"], "auto-tls", "does not generate"),
        (
            vec!["--peer-auto-tls=true"],
            "peer-auto-tls",
            "does not generate",
        ),
        (https_peer.to_vec(), "listen-peer-urls", "--peer-cert-file"),
        (
            with_peer(&["--peer-cert-file=c.pem", "--peer-key-file=k.pem"]),
            "initial-cluster",
            "--peer-trusted-ca-file",
        ),
        (
            vec![
                "--name=a",
                "--initial-advertise-peer-urls=http://127.0.0.1:2380",
                "--initial-cluster=a=http://127.0.0.1:2380,b=https://127.0.0.1:2390",
            ],
            "peer-cert-file",
            "",
        ),
        (
            with_peer(&[
                "--peer-cert-file=c.pem",
                "--peer-key-file=k.pem",
                "--peer-client-cert-auth",
            ]),
            "peer-client-cert-auth",
            "--peer-trusted-ca-file",
        ),
    ];
    for (args, flag, words) in cases {
        let error = flag_error(&args);
        let message = error.to_string();
        assert!(
            error.flag == flag || message.contains(&format!("--{flag}")),
            "{args:?}: {message}"
        );
        assert!(message.contains(words), "{args:?}: {message}");
    }
    // A certificate without https URLs is accepted (etcd does too); it is simply unused.
    let unused = config(&["--cert-file=c.pem", "--key-file=k.pem"]);
    assert!(unused.tls.client.is_some());
}
