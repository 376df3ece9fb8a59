//! Control endpoints: validation, outcomes, cluster views, metrics, access control.

use axum::http::{Method, StatusCode};

use super::*;

#[tokio::test]
async fn malformed_requests_get_400_and_change_nothing() {
    let client = new_client(primary(), AccessPolicy::default(), FakeControl::default());
    let in_future = "2999-01-01T00:00:00+00:00";
    for (path, body, code, reason) in [
        ("/switchover", "{not json", 400, "Invalid request body"),
        (
            "/switchover",
            r#"{"leader": "n1", "candidat": "n2"}"#,
            400,
            "unknown field",
        ),
        (
            "/switchover",
            r#"{"candidate": "n2"}"#,
            400,
            "specific leader",
        ),
        (
            "/switchover",
            r#"{"leader": "n1", "candidate": "n1"}"#,
            400,
            "the same",
        ),
        (
            "/switchover",
            r#"{"leader": "n1", "scheduled_at": "tomorrow"}"#,
            400,
            "Unable to parse",
        ),
        (
            "/switchover",
            r#"{"leader": "n1", "scheduled_at": "2999-01-01T00:00:00"}"#,
            400,
            "time zone",
        ),
        (
            "/switchover",
            r#"{"leader": "n1", "scheduled_at": "2000-01-01T00:00:00Z"}"#,
            422,
            "past",
        ),
        ("/failover", r#"{}"#, 400, "specific candidate"),
        (
            "/failover",
            &format!(r#"{{"candidate": "n2", "scheduled_at": "{in_future}"}}"#),
            400,
            "can't be scheduled",
        ),
        ("/restart", r#"{"role": "boss"}"#, 400, "primary or replica"),
        (
            "/restart",
            r#"{"postgres_version": "fifteen"}"#,
            400,
            "version",
        ),
        ("/restart", r#"{"timeout": "soon"}"#, 400, "timeout"),
        ("/restart", r#"{"sometimes": true}"#, 400, "unknown field"),
        (
            "/restart",
            r#"{"schedule": "2000-01-01T00:00:00Z"}"#,
            422,
            "past",
        ),
        (
            "/reinitialize",
            r#"{"force": "yes"}"#,
            400,
            "Invalid request body",
        ),
    ] {
        let (got, text) = client.post(path, body).await;
        assert_eq!(got.as_u16(), code, "POST {path} {body}: {text}");
        assert!(text.contains(reason), "POST {path} {body}: {text}");
    }
    for (method, body) in [
        (Method::PATCH, "[1, 2]"),
        (Method::PUT, "{"),
        (Method::PATCH, ""),
    ] {
        let (code, _, text) = client
            .send(method.clone(), "/config", body, [127, 0, 0, 1], None)
            .await;
        assert_eq!(
            code,
            StatusCode::BAD_REQUEST,
            "{method} /config {body}: {text}"
        );
    }
    assert_eq!(
        client.get("/replica?lag=lots").await,
        StatusCode::BAD_REQUEST
    );
    assert!(
        client.control.calls().is_empty(),
        "{:?}",
        client.control.calls()
    );
}

#[tokio::test]
async fn paused_cluster_refuses_schedules_and_untargeted_switchover() {
    let mut paused = primary();
    paused.pause = true;
    let client = new_client(paused, AccessPolicy::default(), FakeControl::default());
    let (code, text) = client
        .post(
            "/switchover",
            r#"{"leader": "n1", "scheduled_at": "2999-01-01T00:00:00Z"}"#,
        )
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{text}");
    let (code, text) = client.post("/switchover", r#"{"leader": "n1"}"#).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{text}");
    let (code, _) = client
        .post("/restart", r#"{"schedule": "2999-01-01T00:00:00Z"}"#)
        .await;
    assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(client.control.calls().is_empty());
}

#[tokio::test]
async fn control_outcomes_map_to_patroni_codes() {
    let client = new_client(primary(), AccessPolicy::default(), FakeControl::default());
    let (code, text) = client
        .post("/switchover", r#"{"leader": "n1", "candidate": "n2"}"#)
        .await;
    assert_eq!(
        (code, text.as_str()),
        (OK, "Successfully switched over to \"n2\"")
    );
    let (code, text) = client.post("/failover", r#"{"candidate": "n3"}"#).await;
    assert_eq!(
        (code, text.as_str()),
        (OK, "Successfully failed over to \"n3\"")
    );
    let (code, text) = client
        .post(
            "/switchover",
            r#"{"leader": "n1", "scheduled_at": "2999-01-01T00:00:00+02:00"}"#,
        )
        .await;
    assert_eq!(
        (code, text.as_str()),
        (StatusCode::ACCEPTED, "Switchover scheduled")
    );
    let (code, text) = client
        .post(
            "/restart",
            r#"{"role": "master", "postgres_version": "15.4"}"#,
        )
        .await;
    assert_eq!((code, text.as_str()), (OK, "restarted successfully"));
    let (code, _) = client.post("/restart", "").await;
    assert_eq!(code, OK);
    let (code, text) = client.post("/reload", "").await;
    assert_eq!(
        (code, text.as_str()),
        (StatusCode::ACCEPTED, "reload scheduled")
    );
    let (code, text) = client.post("/reinitialize", r#"{"force": true}"#).await;
    assert_eq!(
        (code, text.as_str()),
        (DOWN, "I am the leader, can not reinitialize")
    );
    let (code, _, text) = client
        .send(
            Method::PATCH,
            "/config",
            r#"{"ttl": null, "loop_wait": 5}"#,
            [127, 0, 0, 1],
            None,
        )
        .await;
    assert_eq!((code, text.as_str()), (OK, r#"{"loop_wait":5}"#));
    let (code, _, _) = client
        .send(Method::DELETE, "/switchover", "", [127, 0, 0, 1], None)
        .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(
        client.control.calls(),
        vec![
            r#"Switchover Some("n1") Some("n2") false"#,
            r#"Failover None Some("n3") false"#,
            r#"Switchover Some("n1") None true"#,
            r#"restart Some("primary") Some(150004)"#,
            "restart None None",
            "reload",
            "reinitialize true",
            r#"patch {"loop_wait":5,"ttl":null}"#,
        ]
    );

    for (error, code) in [
        (
            ControlError::PreconditionFailed("leader name does not match".into()),
            412,
        ),
        (ControlError::Unavailable("Switchover failed".into()), 503),
    ] {
        let control = FakeControl {
            switchover: Some(Err(error.clone())),
            ..FakeControl::default()
        };
        let client = new_client(primary(), AccessPolicy::default(), control);
        let (got, text) = client.post("/switchover", r#"{"leader": "n9"}"#).await;
        assert_eq!((got.as_u16(), text), (code, error.to_string()));
    }
}

#[tokio::test]
async fn cluster_history_config_and_metrics() {
    let client = new_client(
        replica(4096),
        AccessPolicy::default(),
        FakeControl::default(),
    );
    for path in ["/cluster", "/history", "/config", "/metrics"] {
        assert_eq!(client.get(path).await, OK, "{path}");
    }
    let (_, _, cluster) = client
        .send(Method::GET, "/cluster", "", [127, 0, 0, 1], None)
        .await;
    assert!(
        cluster.contains(r#""role":"leader""#) && cluster.contains(r#""scope":"demo""#),
        "{cluster}"
    );
    let (_, _, metrics) = client
        .send(Method::GET, "/metrics", "", [127, 0, 0, 1], None)
        .await;
    for line in [
        r#"patroni_replica{scope="demo",name="n1"} 1"#,
        r#"patroni_primary{scope="demo",name="n1"} 0"#,
        r#"patroni_postgres_running{scope="demo",name="n1"} 1"#,
        r#"patroni_xlog_replayed_location{scope="demo",name="n1"} 49995904"#,
        r#"patroni_version{scope="demo",name="n1"} 100"#,
        r#"patroni_postgres_streaming{scope="demo",name="n1"} 1"#,
        r#"pgwarden_lease_time_left_seconds{scope="demo",name="n1"} 0"#,
        r#"pgwarden_store_leader{scope="demo",name="n1"} 1"#,
        "# TYPE patroni_is_paused gauge",
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
}

#[tokio::test]
async fn unsafe_endpoints_need_credentials_and_an_allowed_address() {
    let access = AccessPolicy {
        credentials: Some(Credentials {
            username: "admin".into(),
            password: "secret".into(),
        }),
        allowlist: IpNetwork::parse_entry("192.168.0.0/16").unwrap_or_default(),
        allowlist_include_members: true,
        client_certificate_required: false,
    };
    let client = new_client(primary(), access, FakeControl::default());
    let good = format!("Basic {}", auth::base64_encode(b"admin:secret"));
    let wrong = format!("Basic {}", auth::base64_encode(b"admin:guess"));
    let allowed = [192, 168, 3, 4];
    let member = [10, 9, 9, 9];
    let outside = [172, 16, 0, 1];
    for (peer, authorization, expected) in [
        (allowed, None, StatusCode::UNAUTHORIZED),
        (allowed, Some(wrong.as_str()), StatusCode::UNAUTHORIZED),
        (outside, Some(good.as_str()), StatusCode::FORBIDDEN),
        (allowed, Some(good.as_str()), StatusCode::ACCEPTED),
        (member, Some(good.as_str()), StatusCode::ACCEPTED),
    ] {
        let (code, _, text) = client
            .send(Method::POST, "/reload", "", peer, authorization)
            .await;
        assert_eq!(code, expected, "{peer:?} {authorization:?}: {text}");
    }
    // Reads stay open from anywhere, without credentials.
    let (code, _, _) = client
        .send(Method::GET, "/primary", "", outside, None)
        .await;
    assert_eq!(code, OK);
    let (code, _, _) = client.send(Method::GET, "/config", "", outside, None).await;
    assert_eq!(code, OK);
    let reloads = client
        .control
        .calls()
        .iter()
        .filter(|call| *call == "reload")
        .count();
    assert_eq!(reloads, 2);
}

#[test]
fn merge_patch_merges_recursively_and_null_deletes() {
    let mut config = serde_json::json!({
        "ttl": 30,
        "postgresql": {"parameters": {"work_mem": "4MB", "max_connections": 100}},
    });
    merge_patch(
        &mut config,
        &serde_json::json!({"ttl": null, "postgresql": {"parameters": {"work_mem": "9MB", "max_connections": null}}}),
    );
    assert_eq!(
        config,
        serde_json::json!({"postgresql": {"parameters": {"work_mem": "9MB"}}})
    );
}
