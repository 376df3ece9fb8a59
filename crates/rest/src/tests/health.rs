//! Health checks: codes by role, HEAD/OPTIONS, query filters.

use axum::http::{Method, StatusCode, header};

use super::*;

#[tokio::test]
async fn health_codes_by_role() {
    let mut stopped = status("replica", "stopped", false);
    stopped.last_cycle = None;
    let mut paused = replica(0);
    paused.pause = true;
    paused.last_cycle = None;
    let mut sync = replica(0);
    sync.sync_standby = true;
    let mut quorum = replica(0);
    quorum.quorum_standby = true;
    let roles = [
        ("primary", primary()),
        ("replica", replica(0)),
        ("lagging", replica(20_000_000)),
        ("stopped", stopped),
        ("paused", paused),
        ("sync", sync),
        ("quorum", quorum),
    ];
    // Columns: primary, streaming replica, replica 20 MB behind, stopped, paused replica
    // (no recent cycle), synchronous standby (priority mode), quorum standby (quorum mode).
    let table: &[(&str, [StatusCode; 7])] = &[
        ("/", [OK, DOWN, DOWN, DOWN, DOWN, DOWN, DOWN]),
        ("/primary", [OK, DOWN, DOWN, DOWN, DOWN, DOWN, DOWN]),
        ("/master", [OK, DOWN, DOWN, DOWN, DOWN, DOWN, DOWN]),
        ("/leader", [OK, DOWN, DOWN, DOWN, DOWN, DOWN, DOWN]),
        ("/read-write", [OK, DOWN, DOWN, DOWN, DOWN, DOWN, DOWN]),
        (
            "/standby-leader",
            [DOWN, DOWN, DOWN, DOWN, DOWN, DOWN, DOWN],
        ),
        ("/replica", [DOWN, OK, OK, DOWN, OK, OK, OK]),
        ("/replica?lag=10MB", [DOWN, OK, DOWN, DOWN, OK, OK, OK]),
        ("/replica?lag=30000000", [DOWN, OK, OK, DOWN, OK, OK, OK]),
        (
            "/replica?replication_state=streaming",
            [DOWN, OK, OK, DOWN, OK, OK, OK],
        ),
        ("/read-only", [OK, OK, OK, DOWN, OK, OK, OK]),
        ("/read-only?lag=1MB", [OK, OK, DOWN, DOWN, OK, OK, OK]),
        ("/synchronous", [DOWN, DOWN, DOWN, DOWN, DOWN, OK, DOWN]),
        ("/sync", [DOWN, DOWN, DOWN, DOWN, DOWN, OK, DOWN]),
        ("/read-only-sync", [OK, DOWN, DOWN, DOWN, DOWN, OK, DOWN]),
        (
            "/read-only-synchronous",
            [OK, DOWN, DOWN, DOWN, DOWN, OK, DOWN],
        ),
        ("/quorum", [DOWN, DOWN, DOWN, DOWN, DOWN, DOWN, OK]),
        ("/quorum?lag=1MB", [DOWN, DOWN, DOWN, DOWN, DOWN, DOWN, OK]),
        ("/read-only-quorum", [OK, DOWN, DOWN, DOWN, DOWN, DOWN, OK]),
        ("/asynchronous", [DOWN, OK, OK, DOWN, OK, DOWN, DOWN]),
        (
            "/asynchronous?lag=1MB",
            [DOWN, OK, DOWN, DOWN, OK, DOWN, DOWN],
        ),
        ("/health", [OK, OK, OK, DOWN, OK, OK, OK]),
        ("/liveness", [OK, OK, OK, DOWN, OK, OK, OK]),
        ("/readiness", [OK, OK, DOWN, DOWN, OK, OK, OK]),
        ("/readiness?lag=30MB", [OK, OK, OK, DOWN, OK, OK, OK]),
        ("/patroni", [OK, OK, OK, OK, OK, OK, OK]),
    ];
    for (path, expected) in table {
        for ((role, subject), want) in roles.iter().zip(expected) {
            let client = new_client(
                subject.clone(),
                AccessPolicy::default(),
                FakeControl::default(),
            );
            assert_eq!(client.get(path).await, *want, "GET {path} as {role}");
        }
    }
    let client = new_client(primary(), AccessPolicy::default(), FakeControl::default());
    assert_eq!(client.get("/nope").await, StatusCode::NOT_FOUND);
}

/// HAProxy's `option httpchk OPTIONS /primary` (and `/replica`) reads only the status code:
/// OPTIONS and HEAD answer it without a body, GET with the status JSON.
#[tokio::test]
async fn options_and_head_answer_the_health_code_without_a_body() {
    for (method, path, subject, expected, has_body) in [
        (Method::OPTIONS, "/primary", primary(), OK, false),
        (Method::OPTIONS, "/primary", replica(0), DOWN, false),
        (Method::OPTIONS, "/", primary(), OK, false),
        (Method::OPTIONS, "/replica", replica(0), OK, false),
        (Method::OPTIONS, "/replica", primary(), DOWN, false),
        (Method::HEAD, "/primary", primary(), OK, false),
        (
            Method::HEAD,
            "/replica?lag=1MB",
            replica(20_000_000),
            DOWN,
            false,
        ),
        (Method::GET, "/replica", primary(), DOWN, true),
        (
            Method::POST,
            "/primary",
            primary(),
            StatusCode::METHOD_NOT_ALLOWED,
            true,
        ),
    ] {
        let client = new_client(subject, AccessPolicy::default(), FakeControl::default());
        let (code, has_type, body) = client
            .send(method.clone(), path, "", [127, 0, 0, 1], None)
            .await;
        assert_eq!(code, expected, "{method} {path}");
        assert_eq!(has_type, has_body, "{method} {path}: {body}");
        if method == Method::GET {
            assert!(body.contains("\"role\":\"primary\""), "{body}");
        }
    }
}

#[tokio::test]
async fn tag_filters_and_noloadbalance() {
    let mut tagged = replica(0);
    tagged.tags.insert("zone".into(), serde_json::json!("a"));
    tagged
        .tags
        .insert("nofailover".into(), serde_json::json!(true));
    let client_tagged = new_client(
        tagged.clone(),
        AccessPolicy::default(),
        FakeControl::default(),
    );
    assert_eq!(client_tagged.get("/replica?tag_zone=a").await, OK);
    assert_eq!(client_tagged.get("/replica?tag_zone=b").await, DOWN);
    assert_eq!(client_tagged.get("/replica?tag_nofailover=true").await, OK);
    assert_eq!(client_tagged.get("/replica?tag_rack=1").await, DOWN);
    // nofailover does not take a replica out of the read pool; noloadbalance does.
    assert_eq!(client_tagged.get("/replica").await, OK);
    tagged
        .tags
        .insert("noloadbalance".into(), serde_json::json!(true));
    let client_nolb = new_client(tagged, AccessPolicy::default(), FakeControl::default());
    assert_eq!(client_nolb.get("/replica").await, DOWN);
    assert_eq!(client_nolb.get("/read-only").await, DOWN);
    assert_eq!(client_nolb.get("/health").await, OK);
    // The primary check ignores tag parameters.
    let primary = new_client(primary(), AccessPolicy::default(), FakeControl::default());
    assert_eq!(primary.get("/primary?tag_zone=b").await, OK);
}

/// A quorum standby is lagging or stopped: `/quorum` follows the replica check (`?lag=`,
/// running), and the standby leader of a standby cluster answers the `read-only-` variants.
#[tokio::test]
async fn quorum_checks_follow_the_replica_check() {
    let mut lagging = replica(20_000_000);
    lagging.quorum_standby = true;
    let mut stopped = status("replica", "stopped", false);
    stopped.quorum_standby = true;
    let standby_leader = status("standby_leader", "running", true);
    for (path, subject, expected) in [
        ("/quorum", lagging.clone(), OK),
        ("/quorum?lag=1MB", lagging.clone(), DOWN),
        ("/read-only-quorum?lag=1MB", lagging, DOWN),
        ("/quorum", stopped.clone(), DOWN),
        ("/read-only-quorum", stopped, DOWN),
        ("/read-only-quorum", standby_leader.clone(), OK),
        ("/read-only-sync", standby_leader.clone(), OK),
        ("/quorum", standby_leader, DOWN),
    ] {
        let client = new_client(subject, AccessPolicy::default(), FakeControl::default());
        assert_eq!(client.get(path).await, expected, "GET {path}");
    }
}

/// `patroni_quorum_standby` is 1 only on a quorum standby and `patroni_sync_standby` only on a
/// priority-mode synchronous standby; `/patroni` says `quorum_standby: true` as Patroni does.
#[tokio::test]
async fn quorum_and_sync_standby_metrics_and_status() {
    let mut sync = replica(0);
    sync.sync_standby = true;
    let mut quorum = replica(0);
    quorum.quorum_standby = true;
    for (subject, sync_metric, quorum_metric) in [
        (sync, 1, 0),
        (quorum, 0, 1),
        (replica(0), 0, 0),
        (primary(), 0, 0),
    ] {
        let is_quorum = subject.quorum_standby;
        let client = new_client(subject, AccessPolicy::default(), FakeControl::default());
        let (_, _, metrics) = client
            .send(Method::GET, "/metrics", "", [127, 0, 0, 1], None)
            .await;
        for line in [
            format!(r#"patroni_sync_standby{{scope="demo",name="n1"}} {sync_metric}"#),
            format!(r#"patroni_quorum_standby{{scope="demo",name="n1"}} {quorum_metric}"#),
        ] {
            assert!(metrics.contains(&line), "{line} missing from\n{metrics}");
        }
        let (_, _, body) = client
            .send(Method::GET, "/patroni", "", [127, 0, 0, 1], None)
            .await;
        assert_eq!(
            body.contains(r#""quorum_standby":true"#),
            is_quorum,
            "{body}"
        );
        assert!(!body.contains(r#""sync_standby":false"#), "{body}");
    }
}

/// The configured headers (here `Server: pgwarden-test`) are on every answer: a health check,
/// a HEAD, a refused unsafe request, a cluster view.
#[tokio::test]
async fn every_answer_carries_the_configured_headers() {
    let client = new_client(
        primary(),
        AccessPolicy {
            allowlist: IpNetwork::parse_entry("10.0.0.1").expect("address"),
            ..AccessPolicy::default()
        },
        FakeControl::default(),
    );
    for (method, uri) in [
        (Method::GET, "/primary"),
        (Method::HEAD, "/replica"),
        (Method::POST, "/restart"),
        (Method::GET, "/cluster"),
    ] {
        let headers = client.headers(method.clone(), uri).await;
        assert_eq!(
            headers.get(header::SERVER).map(|value| value.as_bytes()),
            Some(&b"pgwarden-test"[..]),
            "{method} {uri}"
        );
    }
}
