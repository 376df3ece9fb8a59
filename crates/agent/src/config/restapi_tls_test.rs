#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

use std::path::Path;

use crate::config::ConfigError;
use crate::config::RunConfig;

/// A configuration whose `restapi:` section ends with `restapi` and that has the top-level
/// lines `extra` (YAML, `{dir}` replaced by `dir`).
fn config_with(restapi: &str, extra: &str, dir: &Path) -> String {
    let text = format!(
        r#"
scope: demo
name: n1
restapi:
  listen: 127.0.0.1:8009
  connect_address: 127.0.0.1:8009
{restapi}
{extra}
raft:
  data_dir: /var/lib/pgwarden/n1/raft
  self_addr: 127.0.0.1:2381
postgresql:
  listen: 127.0.0.1:5432
  connect_address: 127.0.0.1:5432
  data_dir: /var/lib/pgwarden/n1/pgdata
  bin_dir: /usr/lib/postgresql/15/bin
  authentication:
    superuser: {{username: postgres}}
    replication: {{username: replicator}}
"#
    );
    text.replace("{dir}", &dir.display().to_string())
}

fn parse(restapi: &str, extra: &str) -> Result<RunConfig, ConfigError> {
    RunConfig::parse(&config_with(restapi, extra, Path::new("/etc/pgwarden")))
}

/// The key path and reason of a refused configuration.
fn refusal(result: Result<RunConfig, ConfigError>) -> (String, String) {
    match result {
        Err(ConfigError::Invalid { path, reason }) => (path, reason),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn inconsistent_restapi_and_ctl_tls_keys_are_refused_naming_the_key() {
    let pair = "  certfile: /c.pem\n  keyfile: /k.pem";
    let cases = [
        // (restapi lines, top-level lines, refused key, part of the reason)
        (
            "  keyfile_password: x",
            "",
            "restapi.keyfile_password",
            "encrypted",
        ),
        ("  ciphers: HIGH", "", "restapi.ciphers", "not supported"),
        (
            "  certfile: /c.pem",
            "",
            "restapi.keyfile",
            "required with restapi.certfile",
        ),
        (
            "  keyfile: /k.pem",
            "",
            "restapi.certfile",
            "required with restapi.keyfile",
        ),
        (
            "  cafile: /ca.pem",
            "",
            "restapi.cafile",
            "needs TLS: give restapi.certfile",
        ),
        (
            "  cafile: /ca.pem\n  verify_client: required",
            "",
            "restapi.verify_client",
            "needs TLS",
        ),
        (
            "  verify_client: optional",
            "",
            "restapi.verify_client",
            "needs TLS",
        ),
        (
            "  certfile: /c.pem\n  keyfile: /k.pem\n  verify_client: optional",
            "",
            "restapi.verify_client",
            "needs restapi.cafile",
        ),
        (
            "  certfile: /c.pem\n  keyfile: /k.pem\n  verify_client: required",
            "",
            "restapi.verify_client",
            "needs restapi.cafile",
        ),
        (
            "  verify_client: sometimes",
            "",
            "restapi.verify_client",
            "unknown variant",
        ),
        (
            pair,
            "ctl:\n  keyfile_password: x",
            "ctl.keyfile_password",
            "encrypted",
        ),
        (
            pair,
            "ctl:\n  certfile: /c.pem",
            "ctl.keyfile",
            "required with ctl.certfile",
        ),
        (
            pair,
            "ctl:\n  keyfile: /k.pem",
            "ctl.certfile",
            "required with ctl.keyfile",
        ),
        (pair, "ctl:\n  bogus: 1", "ctl.bogus", "unknown field"),
    ];
    for (restapi, extra, key, reason) in cases {
        let (path, message) = refusal(parse(restapi, extra));
        assert_eq!(path, key, "{restapi:?} {extra:?}: {message}");
        assert!(message.contains(reason), "{restapi:?} {extra:?}: {message}");
    }
}

#[test]
fn accepted_keys_and_what_they_turn_on() {
    let plain = parse("", "").unwrap();
    assert!(!plain.rest_uses_tls());
    assert_eq!(plain.api_url(), "http://127.0.0.1:8009/patroni");
    assert!(
        !plain
            .restapi
            .access_policy()
            .unwrap()
            .client_certificate_required
    );
    let cases = [
        // (restapi lines, ctl lines, client certificate required on unsafe methods)
        ("  certfile: /c.pem\n  keyfile: /k.pem", "", false),
        (
            "  certfile: /c.pem\n  keyfile: /k.pem\n  cafile: /ca.pem",
            "",
            false,
        ),
        (
            "  certfile: /c.pem\n  keyfile: /k.pem\n  cafile: /ca.pem\n  verify_client: none",
            "",
            false,
        ),
        (
            "  certfile: /c.pem\n  keyfile: /k.pem\n  cafile: /ca.pem\n  verify_client: optional",
            "ctl:\n  insecure: true",
            true,
        ),
        (
            "  certfile: /c.pem\n  keyfile: /k.pem\n  cafile: /ca.pem\n  verify_client: required",
            "ctl:\n  cacert: /ca.pem\n  certfile: /cc.pem\n  keyfile: /ck.pem",
            true,
        ),
    ];
    for (restapi, extra, required) in cases {
        let config = parse(restapi, extra).unwrap();
        assert!(config.rest_uses_tls());
        assert_eq!(config.api_url(), "https://127.0.0.1:8009/patroni");
        let policy = config.restapi.access_policy().unwrap();
        assert_eq!(policy.client_certificate_required, required, "{restapi:?}");
    }
    // ctl alone (a CA to verify https members with) needs no REST API TLS of its own.
    assert!(parse("", "ctl:\n  cacert: /ca.pem\n  insecure: false").is_ok());
}

/// A self-signed certificate and its key, PEM (usable as a CA and as a member certificate).
fn self_signed() -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    let certificate = params.self_signed(&key).unwrap();
    (certificate.pem(), key.serialize_pem())
}

fn write_files(dir: &Path) {
    let (cert, key) = self_signed();
    let (_, other_key) = self_signed();
    for (name, pem) in [
        ("ca.pem", cert.clone()),
        ("cert.pem", cert),
        ("key.pem", key),
        ("other-key.pem", other_key),
        ("garbage.pem", "not PEM at all\n".to_owned()),
    ] {
        std::fs::write(dir.join(name), pem).unwrap();
    }
}

fn load(dir: &Path, restapi: &str, extra: &str) -> Result<RunConfig, ConfigError> {
    let path = dir.join("pgwarden.yml");
    std::fs::write(&path, config_with(restapi, extra, dir)).unwrap();
    RunConfig::load(&path)
}

#[test]
fn tls_files_are_read_at_load_and_unusable_ones_refused_naming_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path());
    let good = "  certfile: {dir}/cert.pem\n  keyfile: {dir}/key.pem\n  cafile: {dir}/ca.pem\n  \
                verify_client: optional";
    let config = load(dir.path(), good, "").unwrap();
    assert!(config.rest_server_tls().unwrap().is_some());
    assert!(config.rest_client().is_ok());
    assert!(load(dir.path(), "", "ctl:\n  cacert: {dir}/ca.pem").is_ok());

    let cases = [
        // (restapi lines, top-level lines, refused key, file named in the reason)
        (
            "  certfile: {dir}/missing.pem\n  keyfile: {dir}/key.pem",
            "",
            "restapi.certfile",
            "missing.pem",
        ),
        (
            "  certfile: {dir}/cert.pem\n  keyfile: {dir}/garbage.pem",
            "",
            "restapi.keyfile",
            "garbage.pem",
        ),
        (
            "  certfile: {dir}/cert.pem\n  keyfile: {dir}/other-key.pem",
            "",
            "restapi.keyfile",
            "other-key.pem",
        ),
        (
            "  certfile: {dir}/cert.pem\n  keyfile: {dir}/key.pem\n  cafile: {dir}/garbage.pem",
            "",
            "restapi.cafile",
            "garbage.pem",
        ),
        (
            "",
            "ctl:\n  cacert: {dir}/garbage.pem",
            "ctl.cacert",
            "garbage.pem",
        ),
        (
            "",
            "ctl:\n  cacert: {dir}/missing.pem",
            "ctl.cacert",
            "missing.pem",
        ),
        (
            "",
            "ctl:\n  certfile: {dir}/cert.pem\n  keyfile: {dir}/other-key.pem",
            "ctl.keyfile",
            "other-key.pem",
        ),
    ];
    for (restapi, extra, key, file) in cases {
        let (path, message) = refusal(load(dir.path(), restapi, extra));
        assert_eq!(path, key, "{restapi:?} {extra:?}: {message}");
        assert!(message.contains(file), "{restapi:?} {extra:?}: {message}");
    }
}

#[test]
fn ctl_sends_its_own_credentials_else_the_rest_apis() {
    let rest_auth = "  authentication: {username: api, password: a}";
    let cases = [
        // (restapi lines, top-level lines, the user ctl sends)
        ("", "", None),
        (rest_auth, "", Some("api")),
        (
            rest_auth,
            "ctl:\n  authentication: {username: operator, password: o}",
            Some("operator"),
        ),
        (
            "",
            "ctl:\n  authentication: {username: operator, password: o}",
            Some("operator"),
        ),
    ];
    for (restapi, extra, expected) in cases {
        let config = parse(restapi, extra).unwrap();
        assert_eq!(
            config.ctl_credentials().map(|auth| auth.username.as_str()),
            expected,
            "{restapi:?} {extra:?}"
        );
    }
}

#[test]
fn response_headers_follow_server_tokens_and_the_extra_headers() {
    let names = |restapi: &str, extra: &str| -> Vec<(String, String)> {
        let config = parse(restapi, extra).unwrap();
        config
            .rest_response_headers()
            .unwrap()
            .0
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    value.to_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    };
    let version = concat!("pgwarden/", env!("CARGO_PKG_VERSION"));
    assert_eq!(names("", ""), [("server".to_owned(), version.to_owned())]);
    assert_eq!(names("  server_tokens: ProductOnly", "")[0].1, "pgwarden");
    let extra = "  http_extra_headers: {X-Frame-Options: SAMEORIGIN}\n  https_extra_headers: {Strict-Transport-Security: max-age=31536000}";
    // Plain HTTP: the https headers are checked but not sent.
    assert_eq!(
        names(extra, ""),
        [
            ("server".to_owned(), version.to_owned()),
            ("x-frame-options".to_owned(), "SAMEORIGIN".to_owned())
        ]
    );
    let https = format!("{extra}\n  certfile: /c.pem\n  keyfile: /k.pem");
    assert_eq!(names(&https, "").len(), 3);

    for (restapi, key) in [
        ("  server_tokens: everything", "restapi.server_tokens"),
        (
            "  http_extra_headers: {\"Bad Name\": x}",
            "restapi.http_extra_headers.Bad Name",
        ),
        (
            "  https_extra_headers: {X-Ok: \"line\\nbreak\"}",
            "restapi.https_extra_headers.X-Ok",
        ),
    ] {
        let (path, _) = refusal(parse(restapi, ""));
        assert_eq!(path, key, "{restapi}");
    }
}
