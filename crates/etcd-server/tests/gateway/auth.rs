//! Auth over the gateway, as Patroni uses it: users and roles set up through `/v3/auth/*`,
//! `/v3/auth/authenticate` for a token, then the token in the `Authorization` header (with or
//! without `Bearer `) on KV, watch and lease calls; etcd's errors without or with a bad token.

use serde_json::json;

use crate::support::*;

/// Posts with an `Authorization` header.
async fn post_as(
    addr: std::net::SocketAddr,
    token: &str,
    path: &str,
    body: &serde_json::Value,
) -> Reply {
    let text = body.to_string();
    request(
        addr,
        "POST",
        path,
        &[("Authorization", token)],
        text.as_bytes(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_from_authenticate_travel_in_the_authorization_header() {
    let member = Member::start().await;
    let addr = member.addr;

    // Before auth is enabled, Authenticate says so (Patroni then runs without auth).
    let early = post(
        addr,
        "/v3/auth/authenticate",
        &json!({"name": "root", "password": "pw"}),
    )
    .await;
    assert_error(&early, 400, 9, "etcdserver: authentication is not enabled");

    // Phase: root and a reader of /service/ set up over the gateway, then auth enabled.
    call(
        addr,
        "/v3/auth/user/add",
        json!({"name": "root", "password": "rootpw"}),
    )
    .await;
    call(addr, "/v3/auth/role/add", json!({"name": "root"})).await;
    call(
        addr,
        "/v3/auth/user/grant",
        json!({"user": "root", "role": "root"}),
    )
    .await;
    call(
        addr,
        "/v3/auth/user/add",
        json!({"name": "patroni", "password": "secret"}),
    )
    .await;
    call(addr, "/v3/auth/role/add", json!({"name": "dcs"})).await;
    call(
        addr,
        "/v3/auth/role/grant",
        json!({"name": "dcs", "perm": {"permType": "READWRITE", "key": b64("/service/"), "range_end": b64("/service0")}}),
    )
    .await;
    call(
        addr,
        "/v3/auth/user/grant",
        json!({"user": "patroni", "role": "dcs"}),
    )
    .await;
    call(addr, "/v3/auth/enable", json!({})).await;

    // Phase: the token Patroni gets, and what it may do with it.
    let wrong = post(
        addr,
        "/v3/auth/authenticate",
        &json!({"name": "patroni", "password": "nope"}),
    )
    .await;
    assert_error(
        &wrong,
        400,
        3,
        "etcdserver: authentication failed, invalid user ID or password",
    );
    let token = call(
        addr,
        "/v3/auth/authenticate",
        json!({"name": "patroni", "password": "secret"}),
    )
    .await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let put = json!({"key": b64("/service/batman/leader"), "value": b64("pg0")});
    let written = post_as(addr, &token, "/v3/kv/put", &put).await;
    assert_eq!(
        written.status,
        200,
        "{}",
        String::from_utf8_lossy(&written.body)
    );
    let read = post_as(
        addr,
        &format!("Bearer {token}"),
        "/v3/kv/range",
        &json!({"key": b64("/service/batman/leader")}),
    )
    .await;
    assert_eq!(read.status, 200);
    assert_eq!(
        unb64(read.json()["kvs"][0]["value"].as_str().unwrap()),
        "pg0"
    );
    let lease = post_as(addr, &token, "/v3/lease/grant", &json!({"TTL": 30})).await;
    assert_eq!(lease.status, 200);

    // Outside its key range, without a token, and with a bad token: etcd's errors.
    let outside = post_as(
        addr,
        &token,
        "/v3/kv/put",
        &json!({"key": b64("/other"), "value": b64("x")}),
    )
    .await;
    assert_error(&outside, 403, 7, "etcdserver: permission denied");
    let anonymous = post(
        addr,
        "/v3/kv/range",
        &json!({"key": b64("/service/batman/leader")}),
    )
    .await;
    assert_error(&anonymous, 400, 3, "etcdserver: user name is empty");
    let forged = post_as(
        addr,
        "forged.1",
        "/v3/kv/range",
        &json!({"key": b64("/service/")}),
    )
    .await;
    assert_error(&forged, 401, 16, "etcdserver: invalid auth token");
    let forged_watch = post_as(
        addr,
        "forged.1",
        "/v3/watch",
        &json!({"create_request": {"key": b64("/service/")}}),
    )
    .await;
    assert_error(&forged_watch, 401, 16, "etcdserver: invalid auth token");

    // Management needs root.
    let as_patroni = post_as(addr, &token, "/v3/auth/user/list", &json!({})).await;
    assert_error(&as_patroni, 403, 7, "etcdserver: permission denied");
    let root = call(
        addr,
        "/v3/auth/authenticate",
        json!({"name": "root", "password": "rootpw"}),
    )
    .await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let users = post_as(addr, &root, "/v3/auth/user/list", &json!({})).await;
    assert_eq!(users.status, 200);
    assert_eq!(users.json()["users"], json!(["patroni", "root"]));
    let status = post_as(addr, &root, "/v3/auth/status", &json!({})).await;
    assert_eq!(status.json()["enabled"], true);
    let disabled = post_as(addr, &root, "/v3/auth/disable", &json!({})).await;
    assert_eq!(disabled.status, 200);

    member.stop().await;
}
