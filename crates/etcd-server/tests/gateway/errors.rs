//! Version prefixes, `/version` and `/health`, and the HTTP-level errors: 405, 400 for
//! malformed JSON (changing nothing), 404, size limits, etcd's own errors as error bodies.

use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefixes_version_and_http_errors() {
    let member = Member::start().await;
    let addr = member.addr;

    // /version (GET, no prefix) claims a cluster ≥ 3.4 so Patroni picks /v3.
    let version = request(addr, "GET", "/version", &[], b"").await;
    assert_eq!(version.status, 200);
    let version = version.json();
    let cluster: Vec<u32> = version["etcdcluster"]
        .as_str()
        .unwrap()
        .split('.')
        .map(|part| part.parse().unwrap())
        .collect();
    assert!(cluster >= vec![3, 4, 0], "{version}");
    assert!(version["etcdserver"].is_string());
    let health = request(addr, "GET", "/health", &[], b"").await;
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["health"], "true");

    // The same routes under /v3beta and /v3alpha.
    call(
        addr,
        "/v3beta/kv/put",
        json!({"key": b64("p"), "value": b64("beta")}),
    )
    .await;
    let alpha = call(addr, "/v3alpha/kv/range", json!({"key": b64("p")})).await;
    assert_eq!(unb64(alpha["kvs"][0]["value"].as_str().unwrap()), "beta");
    let status = call(addr, "/v3beta/maintenance/status", json!({})).await;
    assert!(
        status["version"].is_string() && status["leader"].is_string(),
        "{status}"
    );
    let mut beta_watch = Stream::open(
        addr,
        "/v3beta/watch",
        &json!({"create_request": {"key": b64("p")}}),
    )
    .await;
    assert_eq!(beta_watch.next().await.unwrap()["result"]["created"], true);
    drop(beta_watch);

    // Nothing but POST: 405 with an error body and `Allow: POST`.
    let get = request(addr, "GET", "/v3/kv/range", &[], b"").await;
    assert_error(&get, 405, 12, "Method Not Allowed");
    assert_eq!(get.header("allow"), Some("POST"));
    let put = request(addr, "PUT", "/v3/watch", &[], b"{}").await;
    assert_eq!(put.status, 405);

    // Malformed JSON: 400, InvalidArgument, and nothing changed.
    let before = revision(&call(addr, "/v3/kv/range", json!({"key": b64("p")})).await);
    for body in [
        &b"{\"key\": "[..],
        b"not json",
        b"[1, 2]",
        b"{\"key\": 5, \"value\": \"dg==\"}",
        b"{\"key\": \"cA==\", \"lease\": \"twelve\"}",
        b"{\"key\": \"%%%\"}",
    ] {
        let reply = request(addr, "POST", "/v3/kv/put", &[], body).await;
        assert_eq!(reply.status, 400, "{}", String::from_utf8_lossy(body));
        let error = reply.json();
        assert_eq!(error["code"], 3, "{error}");
        assert!(
            error["message"].as_str().unwrap().starts_with("malformed"),
            "{error}"
        );
    }
    let malformed_watch = request(addr, "POST", "/v3/watch", &[], b"{\"create_request\":").await;
    assert_eq!(malformed_watch.status, 400);
    let after = revision(&call(addr, "/v3/kv/range", json!({"key": b64("p")})).await);
    assert_eq!(before, after, "a refused request changes nothing");

    // etcd's own validation errors, with etcd's text.
    let no_key = post(addr, "/v3/kv/put", &json!({"value": b64("v")})).await;
    assert_error(&no_key, 400, 3, "etcdserver: key is not provided");
    let no_lease = post(
        addr,
        "/v3/kv/put",
        &json!({"key": b64("k"), "lease": "999"}),
    )
    .await;
    assert_error(&no_lease, 404, 5, "etcdserver: requested lease not found");
    let auth = post(
        addr,
        "/v3/auth/authenticate",
        &json!({"name": "root", "password": "x"}),
    )
    .await;
    assert_error(&auth, 400, 9, "etcdserver: authentication is not enabled");

    // Unknown route under a prefix: 404 with an error body.
    let unknown = post(addr, "/v3/kv/nothing", &json!({})).await;
    assert_error(&unknown, 404, 5, "Not Found");

    // A request larger than gRPC would accept: refused before anything is proposed.
    let huge = "A".repeat(5 * 1024 * 1024);
    let too_large = post(
        addr,
        "/v3/kv/put",
        &json!({"key": b64("big"), "value": huge}),
    )
    .await;
    assert_eq!(
        too_large.status,
        413,
        "{}",
        String::from_utf8_lossy(&too_large.body)
    );
    assert_eq!(too_large.json()["code"], 8);
    let beyond_grpc = "A".repeat(3 * 1024 * 1024);
    let refused = post(
        addr,
        "/v3/kv/put",
        &json!({"key": b64("big"), "value": beyond_grpc}),
    )
    .await;
    assert_error(
        &refused,
        429,
        8,
        "grpc: received message larger than max (2359306 vs. 2097152)",
    );
    let large = "A".repeat(2300 * 1024);
    let over_limit = post(
        addr,
        "/v3/kv/put",
        &json!({"key": b64("big"), "value": large}),
    )
    .await;
    assert_error(&over_limit, 400, 3, "etcdserver: request is too large");

    // An Authorization header (with or without Bearer) is accepted on every route.
    for token in ["Bearer abc.1", "abc.1"] {
        let reply = request(
            addr,
            "POST",
            "/v3/auth/status",
            &[("Authorization", token)],
            b"{}",
        )
        .await;
        assert_eq!(reply.status, 200);
        assert!(reply.json()["header"].is_object());
    }

    member.stop().await;
}
