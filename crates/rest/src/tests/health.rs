//! Health checks: codes by role, HEAD/OPTIONS, query filters.

use axum::http::{Method, StatusCode};

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
    let roles = [
        ("primary", primary()),
        ("replica", replica(0)),
        ("lagging", replica(20_000_000)),
        ("stopped", stopped),
        ("paused", paused),
        ("sync", sync),
    ];
    // Columns: primary, streaming replica, replica 20 MB behind, stopped, paused replica
    // (no recent cycle), synchronous standby.
    let table: &[(&str, [StatusCode; 6])] = &[
        ("/", [OK, DOWN, DOWN, DOWN, DOWN, DOWN]),
        ("/primary", [OK, DOWN, DOWN, DOWN, DOWN, DOWN]),
        ("/master", [OK, DOWN, DOWN, DOWN, DOWN, DOWN]),
        ("/leader", [OK, DOWN, DOWN, DOWN, DOWN, DOWN]),
        ("/read-write", [OK, DOWN, DOWN, DOWN, DOWN, DOWN]),
        ("/standby-leader", [DOWN, DOWN, DOWN, DOWN, DOWN, DOWN]),
        ("/replica", [DOWN, OK, OK, DOWN, OK, OK]),
        ("/replica?lag=10MB", [DOWN, OK, DOWN, DOWN, OK, OK]),
        ("/replica?lag=30000000", [DOWN, OK, OK, DOWN, OK, OK]),
        (
            "/replica?replication_state=streaming",
            [DOWN, OK, OK, DOWN, OK, OK],
        ),
        ("/read-only", [OK, OK, OK, DOWN, OK, OK]),
        ("/read-only?lag=1MB", [OK, OK, DOWN, DOWN, OK, OK]),
        ("/synchronous", [DOWN, DOWN, DOWN, DOWN, DOWN, OK]),
        ("/sync", [DOWN, DOWN, DOWN, DOWN, DOWN, OK]),
        ("/asynchronous", [DOWN, OK, OK, DOWN, OK, DOWN]),
        ("/asynchronous?lag=1MB", [DOWN, OK, DOWN, DOWN, OK, DOWN]),
        ("/health", [OK, OK, OK, DOWN, OK, OK]),
        ("/liveness", [OK, OK, OK, DOWN, OK, OK]),
        ("/readiness", [OK, OK, DOWN, DOWN, OK, OK]),
        ("/readiness?lag=30MB", [OK, OK, OK, DOWN, OK, OK]),
        ("/patroni", [OK, OK, OK, OK, OK, OK]),
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
