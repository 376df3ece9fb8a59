//! Lease routes and the keepalive stream, the watch stream, and the lock, election (with the
//! observe stream), cluster and maintenance (with the snapshot stream) routes.

use serde_json::{Value, json};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_routes_and_aliases() {
    let member = Member::start().await;
    let addr = member.addr;
    let grant = call(addr, "/v3/lease/grant", json!({"TTL": "60", "ID": "4242"})).await;
    assert_eq!(grant["ID"], "4242");
    call(
        addr,
        "/v3/kv/put",
        json!({"key": b64("leased"), "value": b64("v"), "lease": "4242"}),
    )
    .await;
    for path in ["/v3/lease/timetolive", "/v3/kv/lease/timetolive"] {
        let ttl = call(addr, path, json!({"ID": "4242", "keys": true})).await;
        assert_eq!(ttl["grantedTTL"], "60", "{ttl}");
        let remaining: i64 = ttl["TTL"].as_str().unwrap().parse().unwrap();
        assert!((55..=60).contains(&remaining), "{ttl}");
        assert_eq!(unb64(ttl["keys"][0].as_str().unwrap()), "leased");
    }
    for path in ["/v3/lease/leases", "/v3/kv/lease/leases"] {
        let leases = call(addr, path, json!({})).await;
        assert_eq!(leases["leases"], json!([{"ID": "4242"}]), "{leases}");
    }

    // A keepalive stream answers each message as it arrives, in order.
    let mut keepalive = Stream::open(addr, "/v3/lease/keepalive", &json!({"ID": 4242})).await;
    assert_eq!(keepalive.status, 200);
    assert_eq!(keepalive.next().await.unwrap()["result"]["TTL"], "60");
    keepalive.send(&json!({"ID": "4242"})).await;
    assert_eq!(keepalive.next().await.unwrap()["result"]["TTL"], "60");
    keepalive.finish_body().await;
    assert!(
        keepalive.next().await.is_none(),
        "the stream ends with its body"
    );

    // Revoke through the alias; the leased key goes with it.
    call(addr, "/v3/kv/lease/revoke", json!({"ID": "4242"})).await;
    let ttl = call(addr, "/v3/lease/timetolive", json!({"ID": "4242"})).await;
    assert_eq!(ttl["TTL"], "-1");
    let range = call(addr, "/v3/kv/range", json!({"key": b64("leased")})).await;
    assert!(range.get("kvs").is_none());
    let grant_again = post(addr, "/v3/lease/grant", &json!({"TTL": 60, "ID": 4242})).await;
    assert_eq!(grant_again.status, 200);
    let duplicate = post(addr, "/v3/lease/grant", &json!({"TTL": 60, "ID": 4242})).await;
    assert_error(&duplicate, 400, 9, "etcdserver: lease already exists");

    member.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_stream_replays_then_follows_and_ends_when_closed() {
    let member = Member::start().await;
    let addr = member.addr;
    let first = revision(
        &call(
            addr,
            "/v3/kv/put",
            json!({"key": b64("w/1"), "value": b64("a")}),
        )
        .await,
    );
    call(
        addr,
        "/v3/kv/put",
        json!({"key": b64("w/2"), "value": b64("b")}),
    )
    .await;

    // Patroni's watch: a prefix from a past revision, with an empty filter list.
    let mut watch = Stream::open(
        addr,
        "/v3/watch",
        &json!({"create_request": {
            "key": b64("w/"), "range_end": b64("w0"), "start_revision": first.to_string(), "filters": []
        }}),
    )
    .await;
    assert_eq!(watch.status, 200);
    let created = watch.next().await.unwrap();
    assert_eq!(created["result"]["created"], true, "{created}");
    assert!(
        created["result"].get("watch_id").is_none(),
        "watch 0 is omitted: {created}"
    );
    assert!(created["result"]["header"]["revision"].is_string());

    // The replay: both past puts, PUT's type omitted (it is the default).
    let mut events = Vec::new();
    while events.len() < 2 {
        let line = watch.next().await.unwrap();
        events.extend(
            line["result"]["events"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        );
    }
    assert!(
        events.iter().all(|event| event.get("type").is_none()),
        "{events:?}"
    );
    let keys: Vec<String> = events
        .iter()
        .map(|event| unb64(event["kv"]["key"].as_str().unwrap()))
        .collect();
    assert_eq!(keys, ["w/1", "w/2"]);

    // The client finishes its body: the watch keeps streaming (a half-close, as in etcd).
    watch.finish_body().await;
    call(addr, "/v3/kv/deleterange", json!({"key": b64("w/1")})).await;
    let deleted = watch.next().await.unwrap();
    let event = &deleted["result"]["events"][0];
    assert_eq!(event["type"], "DELETE", "{deleted}");
    assert_eq!(unb64(event["kv"]["key"].as_str().unwrap()), "w/1");

    // A second stream whose body stays open: a second watcher, then a cancel, then a
    // malformed message, which ends the stream with an error line.
    let mut second = Stream::open(
        addr,
        "/v3/watch",
        &json!({"create_request": {"key": b64("x")}}),
    )
    .await;
    assert_eq!(second.next().await.unwrap()["result"]["created"], true);
    second
        .send(&json!({"create_request": {"key": b64("y"), "watch_id": 7}}))
        .await;
    let created_y = second.next().await.unwrap();
    assert_eq!(created_y["result"]["watch_id"], "7", "{created_y}");
    second
        .send(&json!({"cancel_request": {"watch_id": "7"}}))
        .await;
    let canceled = second.next().await.unwrap();
    assert_eq!(canceled["result"]["canceled"], true, "{canceled}");
    second.send_raw(b"{\"create_request\": ").await;
    second.send_raw(b"5}").await;
    let error = second.next().await.unwrap();
    assert_eq!(error["error"]["grpc_code"], 3, "{error}");
    assert_eq!(error["error"]["code"], 3, "{error}");
    assert_eq!(error["error"]["http_code"], 400, "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("malformed")
    );
    assert!(
        second.next().await.is_none(),
        "the stream ends after its error"
    );

    // Closing the connection cancels the first watch; the server then stops cleanly, which
    // it only does once every stream task it started has ended.
    drop(watch);
    member.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_election_cluster_and_maintenance_routes() {
    let member = Member::start().await;
    let addr = member.addr;
    let lease = call(addr, "/v3/lease/grant", json!({"TTL": 30})).await["ID"].clone();

    let locked = call(
        addr,
        "/v3/lock/lock",
        json!({"name": b64("mutex"), "lease": lease}),
    )
    .await;
    let key = locked["key"].as_str().unwrap().to_owned();
    assert!(unb64(&key).starts_with("mutex/"), "{locked}");
    call(addr, "/v3/lock/unlock", json!({"key": key})).await;

    let campaign = call(
        addr,
        "/v3/election/campaign",
        json!({"name": b64("e"), "lease": lease, "value": b64("v1")}),
    )
    .await;
    let leadership = campaign["leader"].clone();
    assert_eq!(leadership["name"], b64("e"));
    let mut observe = Stream::open(addr, "/v3/election/observe", &json!({"name": b64("e")})).await;
    let observed = observe.next().await.unwrap();
    assert_eq!(
        unb64(observed["result"]["kv"]["value"].as_str().unwrap()),
        "v1"
    );
    call(
        addr,
        "/v3/election/proclaim",
        json!({"leader": leadership, "value": b64("v2")}),
    )
    .await;
    let observed = observe.next().await.unwrap();
    assert_eq!(
        unb64(observed["result"]["kv"]["value"].as_str().unwrap()),
        "v2"
    );
    let current = call(addr, "/v3/election/leader", json!({"name": b64("e")})).await;
    assert_eq!(unb64(current["kv"]["value"].as_str().unwrap()), "v2");
    call(addr, "/v3/election/resign", json!({"leader": leadership})).await;
    let none = post(addr, "/v3/election/leader", &json!({"name": b64("e")})).await;
    assert_error(&none, 500, 2, "election: no leader");
    let missing = post(addr, "/v3/election/proclaim", &json!({"value": b64("v")})).await;
    assert_eq!(missing.status, 500);
    drop(observe);

    // Maintenance.
    let alarms = call(addr, "/v3/maintenance/alarm", json!({"action": "GET"})).await;
    assert!(alarms.get("alarms").is_none(), "{alarms}");
    call(addr, "/v3/maintenance/defragment", json!({})).await;
    assert!(call(addr, "/v3/maintenance/hash", json!({})).await["hash"].is_number());
    let hashkv = call(addr, "/v3/maintenance/hashkv", json!({"revision": 0})).await;
    assert!(hashkv["hash"].is_number(), "{hashkv}");
    let downgrade = post(addr, "/v3/maintenance/downgrade", &json!({})).await;
    assert_eq!(downgrade.status, 501);

    // Snapshot: chunks as lines, the last one holding the 32-byte SHA-256 and nothing left.
    let snapshot = post(addr, "/v3/maintenance/snapshot", &json!({})).await;
    assert_eq!(snapshot.status, 200);
    let lines: Vec<Value> = snapshot
        .body
        .split(|byte| *byte == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| serde_json::from_slice(line).unwrap())
        .collect();
    assert!(lines.len() >= 2, "{} lines", lines.len());
    let last = &lines.last().unwrap()["result"];
    assert!(last.get("remaining_bytes").is_none(), "{last}");
    assert_eq!(
        last["blob"].as_str().unwrap().len(),
        44,
        "base64 of 32 bytes"
    );

    // Cluster: the member list under every prefix; removing an unknown member is refused.
    let list = call(addr, "/v3alpha/cluster/member/list", json!({})).await;
    assert_eq!(list["members"].as_array().unwrap().len(), 1);
    let remove = post(addr, "/v3/cluster/member/remove", &json!({"ID": "12345"})).await;
    assert_error(&remove, 404, 5, "etcdserver: member not found");

    member.stop().await;
}
