#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

use std::path::Path;

use rcgen::CertificateParams;
use rcgen::KeyPair;

use crate::config::ConfigError;
use crate::config::RunConfig;

/// A configuration whose `raft:` section ends with `tls` (YAML lines indented by two).
fn config_with(tls: &str) -> String {
    format!(
        r#"
scope: demo
name: n1
restapi:
  listen: 127.0.0.1:8009
  connect_address: 127.0.0.1:8009
raft:
  data_dir: /var/lib/pgwarden/n1/raft
  self_addr: 127.0.0.1:2381
  partner_addrs: [127.0.0.1:2382]
  etcd_api: 127.0.0.1:2379
{tls}
postgresql:
  listen: 127.0.0.1:5432
  connect_address: 127.0.0.1:5432
  data_dir: /var/lib/pgwarden/n1/pgdata
  bin_dir: /usr/lib/postgresql/15/bin
  authentication:
    superuser: {{username: postgres}}
    replication: {{username: replicator}}
"#
    )
}

/// The key path and reason of a refused configuration.
fn refusal(result: Result<RunConfig, ConfigError>) -> (String, String) {
    match result {
        Err(ConfigError::Invalid { path, reason }) => (path, reason),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn without_tls_keys_both_ports_are_plaintext() {
    let config = RunConfig::parse(&config_with("")).unwrap();
    let raft = config.raft.unwrap();
    assert!(!raft.api_uses_tls());
    assert!(!raft.peer_uses_tls());
    let tls = raft.load_tls().unwrap();
    assert!(tls.client.is_none() && tls.peer.is_none());
}

#[test]
fn every_tls_key_parses() {
    let config = RunConfig::parse(&config_with(
        "  cert_file: /etc/pgwarden/api.pem\n  key_file: /etc/pgwarden/api-key.pem\n  \
         trusted_ca_file: /etc/pgwarden/ca.pem\n  client_cert_auth: true\n  \
         peer_cert_file: /etc/pgwarden/peer.pem\n  peer_key_file: /etc/pgwarden/peer-key.pem\n  \
         peer_trusted_ca_file: /etc/pgwarden/ca.pem\n  peer_client_cert_auth: true",
    ))
    .unwrap();
    let raft = config.raft.unwrap();
    assert!(raft.api_uses_tls() && raft.peer_uses_tls());
    assert!(raft.client_cert_auth && raft.peer_client_cert_auth);
    assert_eq!(
        raft.peer_trusted_ca_file.as_deref(),
        Some(Path::new("/etc/pgwarden/ca.pem"))
    );
}

#[test]
fn inconsistent_tls_keys_are_refused_naming_the_key() {
    let cases = [
        (
            "  cert_file: /c.pem",
            "raft.key_file",
            "required with raft.cert_file",
        ),
        (
            "  key_file: /k.pem",
            "raft.cert_file",
            "required with raft.key_file",
        ),
        (
            "  client_cert_auth: true",
            "raft.client_cert_auth",
            "needs TLS",
        ),
        (
            "  cert_file: /c.pem\n  key_file: /k.pem\n  client_cert_auth: true",
            "raft.client_cert_auth",
            "needs raft.trusted_ca_file",
        ),
        (
            "  trusted_ca_file: /ca.pem",
            "raft.trusted_ca_file",
            "needs TLS",
        ),
        (
            "  peer_cert_file: /c.pem",
            "raft.peer_key_file",
            "required with raft.peer_cert_file",
        ),
        (
            "  peer_cert_file: /c.pem\n  peer_key_file: /k.pem",
            "raft.peer_trusted_ca_file",
            "required with raft.peer_cert_file",
        ),
        (
            "  peer_client_cert_auth: true",
            "raft.peer_client_cert_auth",
            "needs TLS",
        ),
    ];
    for (yaml, key, reason) in cases {
        let (path, message) = refusal(RunConfig::parse(&config_with(yaml)));
        assert_eq!(path, key, "{yaml}");
        assert!(message.contains(reason), "{yaml}: {message}");
    }
}

#[test]
fn an_unknown_tls_key_is_refused() {
    let (path, _) = refusal(RunConfig::parse(&config_with("  ca_file: /ca.pem")));
    assert_eq!(path, "raft.ca_file");
}

/// A self-signed certificate and its key, PEM.
fn self_signed() -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    let certificate = params.self_signed(&key).unwrap();
    (certificate.pem(), key.serialize_pem())
}

/// Writes the PEM files of a full TLS setup into `dir` and returns the `raft:` TLS lines.
fn full_tls(dir: &Path) -> String {
    let (cert, key) = self_signed();
    std::fs::write(dir.join("cert.pem"), &cert).unwrap();
    std::fs::write(dir.join("key.pem"), key).unwrap();
    std::fs::write(dir.join("ca.pem"), cert).unwrap();
    let dir = dir.display();
    format!(
        "  cert_file: {dir}/cert.pem\n  key_file: {dir}/key.pem\n  trusted_ca_file: {dir}/ca.pem\n  \
         client_cert_auth: true\n  peer_cert_file: {dir}/cert.pem\n  peer_key_file: {dir}/key.pem\n  \
         peer_trusted_ca_file: {dir}/ca.pem\n  peer_client_cert_auth: true"
    )
}

#[test]
fn load_reads_every_tls_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pgwarden.yml");
    std::fs::write(&path, config_with(&full_tls(dir.path()))).unwrap();
    let config = RunConfig::load(&path).unwrap();
    let tls = config.raft.unwrap().load_tls().unwrap();
    let client = tls.client.unwrap();
    assert!(client.client_cert_auth && client.trusted_ca_pem.is_some());
    assert!(tls.peer.unwrap().client_cert_auth);
}

#[test]
fn unusable_tls_files_are_refused_naming_the_key_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let tls = full_tls(dir.path());
    std::fs::write(dir.path().join("garbage.pem"), "not PEM at all\n").unwrap();
    let (_, other_key) = self_signed();
    std::fs::write(dir.path().join("other-key.pem"), other_key).unwrap();
    let base = dir.path().display().to_string();
    let cases = [
        (
            "/cert.pem",
            "/missing.pem",
            "raft.cert_file",
            "No such file",
        ),
        ("/key.pem", "/garbage.pem", "raft.key_file", "private key"),
        ("/key.pem", "/other-key.pem", "raft.key_file", "private key"),
        ("/ca.pem", "/garbage.pem", "raft.trusted_ca_file", "CA"),
    ];
    for (original, replacement, key, reason) in cases {
        // Only the client side's line changes: the peer keys end in `/cert.pem` etc. too, so
        // replace the first occurrence only.
        let yaml = tls.replacen(
            &format!("{base}{original}"),
            &format!("{base}{replacement}"),
            1,
        );
        let path = dir.path().join("pgwarden.yml");
        std::fs::write(&path, config_with(&yaml)).unwrap();
        let (refused_key, message) = refusal(RunConfig::load(&path));
        assert_eq!(refused_key, key, "{replacement}: {message}");
        assert!(
            message.contains(&format!("{base}{replacement}")) && message.contains(reason),
            "{key}: {message}"
        );
    }
    let yaml = tls.replace(
        &format!("peer_cert_file: {base}/cert.pem"),
        &format!("peer_cert_file: {base}/garbage.pem"),
    );
    let path = dir.path().join("pgwarden.yml");
    std::fs::write(&path, config_with(&yaml)).unwrap();
    let (refused_key, message) = refusal(RunConfig::load(&path));
    assert_eq!(refused_key, "raft.peer_cert_file", "{message}");
    assert!(message.contains("garbage.pem"), "{message}");
}
