//! KV routes: JSON shapes of put/range/deleterange/txn, Patroni's exact request shapes
//! (patroni.md §2.3), compaction and its errors, and gRPC on the same port.

use etcd_proto::etcdserverpb::RangeRequest;
use etcd_proto::etcdserverpb::kv_client::KvClient;
use serde_json::{Value, json};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_routes_speak_etcds_json() {
    let member = Member::start().await;
    let addr = member.addr;

    // Put: the header's 64-bit fields are strings, names are proto names.
    let put = call(
        addr,
        "/v3/kv/put",
        json!({"key": b64("/a/1"), "value": b64("one")}),
    )
    .await;
    let first_rev = revision(&put);
    assert!(put["header"]["cluster_id"].is_string(), "{put}");
    assert!(put["header"]["member_id"].is_string(), "{put}");
    assert!(put["header"]["raft_term"].is_string(), "{put}");
    assert!(put.get("prev_kv").is_none(), "{put}");
    call(
        addr,
        "/v3/kv/put",
        json!({"key": b64("/a/2"), "value": b64("two")}),
    )
    .await;

    // Range over a prefix; camelCase input names are accepted too.
    let range = call(
        addr,
        "/v3/kv/range",
        json!({"key": b64("/a/"), "rangeEnd": b64("/a0"), "serializable": true}),
    )
    .await;
    assert_eq!(range["count"], "2");
    let kvs = range["kvs"].as_array().unwrap();
    assert_eq!(unb64(kvs[0]["key"].as_str().unwrap()), "/a/1");
    assert_eq!(unb64(kvs[0]["value"].as_str().unwrap()), "one");
    assert_eq!(kvs[0]["mod_revision"], first_rev.to_string());
    assert_eq!(kvs[0]["create_revision"], first_rev.to_string());
    assert_eq!(kvs[0]["version"], "1");
    assert!(
        kvs[0].get("lease").is_none(),
        "defaults are omitted: {range}"
    );

    // An empty range has neither kvs nor count; `more: false` is omitted.
    let empty = call(addr, "/v3/kv/range", json!({"key": b64("/none")})).await;
    assert!(
        empty.get("kvs").is_none() && empty.get("count").is_none(),
        "{empty}"
    );
    assert!(empty.get("more").is_none(), "{empty}");

    // Int64 request fields as numbers or strings; limit and count_only.
    let limited = call(
        addr,
        "/v3/kv/range",
        json!({"key": b64("/a/"), "range_end": b64("/a0"), "limit": 1, "revision": first_rev + 1}),
    )
    .await;
    assert_eq!(limited["kvs"].as_array().unwrap().len(), 1);
    assert_eq!(limited["more"], true);
    let counted = call(
        addr,
        "/v3/kv/range",
        json!({"key": b64("/a/"), "range_end": b64("/a0"), "count_only": true}),
    )
    .await;
    assert_eq!(counted["count"], "2");
    assert!(counted.get("kvs").is_none());

    // Put with prev_kv.
    let overwrite = call(
        addr,
        "/v3/kv/put",
        json!({"key": b64("/a/1"), "value": b64("uno"), "prev_kv": true}),
    )
    .await;
    assert_eq!(
        unb64(overwrite["prev_kv"]["value"].as_str().unwrap()),
        "one"
    );

    // Txn: enums by name, a oneof by its member name, a range in the failure branch.
    let txn = call(
        addr,
        "/v3/kv/txn",
        json!({
            "compare": [{"key": b64("/a/1"), "target": "VALUE", "result": "EQUAL", "value": b64("nope")}],
            "success": [{"request_put": {"key": b64("/a/1"), "value": b64("never")}}],
            "failure": [{"request_range": {"key": b64("/a/1")}}],
        }),
    )
    .await;
    assert!(txn.get("succeeded").is_none(), "false is omitted: {txn}");
    let got = &txn["responses"][0]["response_range"]["kvs"][0];
    assert_eq!(unb64(got["value"].as_str().unwrap()), "uno");

    // DeleteRange over the prefix with prev_kv.
    let deleted = call(
        addr,
        "/v3/kv/deleterange",
        json!({"key": b64("/a/"), "range_end": b64("/a0"), "prev_kv": true}),
    )
    .await;
    assert_eq!(deleted["deleted"], "2");
    assert_eq!(deleted["prev_kvs"].as_array().unwrap().len(), 2);

    // The gRPC routes on the same port still work and see the gateway's writes.
    let mut kv = KvClient::connect(format!("http://{addr}")).await.unwrap();
    let seen = kv
        .range(RangeRequest {
            key: "warmup".into(),
            ..RangeRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(seen.kvs.len(), 1);

    member.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patronis_request_shapes() {
    // The calls of patroni/dcs/etcd3.py, field for field (patroni.md §2.3).
    let member = Member::start().await;
    let addr = member.addr;
    let leader = b64("/service/batman/leader");
    let name = b64("pg0");

    let members = call(addr, "/v3/cluster/member/list", json!({})).await;
    let client_urls = members["members"][0]["clientURLs"]
        .as_array()
        .unwrap_or_else(|| panic!("{members}"));
    assert_eq!(client_urls[0], format!("http://{addr}"));
    assert!(members["members"][0]["ID"].is_string());

    let grant = call(addr, "/v3/lease/grant", json!({"TTL": 30})).await;
    let lease = grant["ID"].as_str().unwrap().to_owned();
    assert_eq!(grant["TTL"], "30");

    // initialize: create-only put.
    let init = json!({
        "compare": [{"key": b64("/service/batman/initialize"), "target": "CREATE", "create_revision": "0"}],
        "success": [{"request_put": {"key": b64("/service/batman/initialize"), "value": b64("7001")}}],
    });
    assert_eq!(
        call(addr, "/v3/kv/txn", init.clone()).await["succeeded"],
        true
    );
    assert!(
        call(addr, "/v3/kv/txn", init)
            .await
            .get("succeeded")
            .is_none()
    );

    // touch_member: put with the lease.
    call(
        addr,
        "/v3/kv/put",
        json!({"key": b64("/service/batman/members/pg0"), "value": b64("{}"), "lease": lease}),
    )
    .await;

    // Acquire the leader lock.
    let acquire = call(
        addr,
        "/v3/kv/txn",
        json!({
            "compare": [{"key": leader, "target": "CREATE", "create_revision": "0"}],
            "success": [{"request_put": {"key": leader, "value": name, "lease": lease}}],
        }),
    )
    .await;
    assert_eq!(acquire["succeeded"], true);

    // The prefix read Patroni's cache does, then the leader key's fields it uses.
    let prefix = call(
        addr,
        "/v3/kv/range",
        json!({"key": b64("/service/batman/"), "range_end": b64("/service/batman0"), "serializable": true}),
    )
    .await;
    let kvs = prefix["kvs"].as_array().unwrap();
    let leader_kv = kvs
        .iter()
        .find(|kv| kv["key"] == leader)
        .expect("leader key listed");
    assert_eq!(leader_kv["lease"], lease);
    assert!(leader_kv["mod_revision"].is_string() && leader_kv["create_revision"].is_string());

    // Keepalive: one line with the TTL; the stream ends with the request body.
    let keepalive = post(addr, "/v3/lease/keepalive", &json!({"ID": lease})).await;
    assert_eq!(keepalive.status, 200);
    let lines: Vec<&[u8]> = keepalive
        .body
        .split(|byte| *byte == b'\n')
        .filter(|line| !line.is_empty())
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "{}",
        String::from_utf8_lossy(&keepalive.body)
    );
    let alive: Value = serde_json::from_slice(lines[0]).unwrap();
    assert_eq!(alive["result"]["TTL"], "30");
    assert_eq!(alive["result"]["ID"], lease);

    // update_leader after a lease change, with the leader key gone: the first compare fails
    // and the nested txn in the failure branch re-creates the key.
    let new_lease = call(addr, "/v3/lease/grant", json!({"TTL": 30})).await["ID"].clone();
    call(addr, "/v3/kv/deleterange", json!({"key": leader})).await;
    let put = json!({"request_put": {"key": leader, "value": name, "lease": new_lease}});
    let update = call(
        addr,
        "/v3/kv/txn",
        json!({
            "compare": [{"key": leader, "target": "VALUE", "value": name}],
            "success": [put],
            "failure": [{"request_txn": {
                "compare": [{"key": leader, "target": "CREATE", "create_revision": "0"}],
                "success": [put],
            }}],
        }),
    )
    .await;
    assert!(update.get("succeeded").is_none(), "{update}");
    assert_eq!(
        update["responses"][0]["response_txn"]["succeeded"], true,
        "{update}"
    );

    // CAS write of config on mod_revision, then a stale CAS fails.
    let config = b64("/service/batman/config");
    let created = call(
        addr,
        "/v3/kv/put",
        json!({"key": config, "value": b64("{}")}),
    )
    .await;
    let version = revision(&created).to_string();
    let cas = |version: String| {
        json!({
            "compare": [{"key": config, "target": "MOD", "mod_revision": version}],
            "success": [{"request_put": {"key": config, "value": b64("{\"ttl\":30}")}}],
        })
    };
    assert_eq!(
        call(addr, "/v3/kv/txn", cas(version.clone())).await["succeeded"],
        true
    );
    assert!(
        call(addr, "/v3/kv/txn", cas(version))
            .await
            .get("succeeded")
            .is_none()
    );

    // delete lock: compare the value, then delete.
    let release = call(
        addr,
        "/v3/kv/txn",
        json!({
            "compare": [{"key": leader, "target": "VALUE", "value": name}],
            "success": [{"request_delete_range": {"key": leader}}],
        }),
    )
    .await;
    assert_eq!(release["succeeded"], true);
    assert_eq!(
        release["responses"][0]["response_delete_range"]["deleted"],
        "1"
    );

    // A revoked lease: keepalive answers without TTL, and Patroni re-grants.
    call(addr, "/v3/lease/revoke", json!({"ID": lease})).await;
    let gone = post(addr, "/v3/lease/keepalive", &json!({"ID": lease})).await;
    let gone: Value =
        serde_json::from_slice(gone.body.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert!(gone["result"].get("TTL").is_none(), "{gone}");
    let revoke_again = post(addr, "/v3/lease/revoke", &json!({"ID": lease})).await;
    assert_error(
        &revoke_again,
        404,
        5,
        "etcdserver: requested lease not found",
    );

    // delete_cluster: prefix delete.
    let wiped = call(
        addr,
        "/v3/kv/deleterange",
        json!({"key": b64("/service/batman/"), "range_end": b64("/service/batman0")}),
    )
    .await;
    assert!(wiped["deleted"].is_string());

    member.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_and_its_errors() {
    let member = Member::start().await;
    let addr = member.addr;
    let mut last = 0;
    for value in ["1", "2", "3"] {
        last = revision(
            &call(
                addr,
                "/v3/kv/put",
                json!({"key": b64("c"), "value": b64(value)}),
            )
            .await,
        );
    }
    let compacted = call(addr, "/v3/kv/compaction", json!({"revision": last - 1})).await;
    assert!(revision(&compacted) >= last);

    let old = post(
        addr,
        "/v3/kv/range",
        &json!({"key": b64("c"), "revision": last - 2}),
    )
    .await;
    assert_error(
        &old,
        400,
        11,
        "etcdserver: mvcc: required revision has been compacted",
    );
    let future = post(
        addr,
        "/v3/kv/range",
        &json!({"key": b64("c"), "revision": last + 100}),
    )
    .await;
    assert_error(
        &future,
        400,
        11,
        "etcdserver: mvcc: required revision is a future revision",
    );
    let again = post(addr, "/v3/kv/compaction", &json!({"revision": last - 1})).await;
    assert_error(
        &again,
        400,
        11,
        "etcdserver: mvcc: required revision has been compacted",
    );

    // A watch from a compacted revision is created and then canceled with compact_revision.
    let mut watch = Stream::open(
        addr,
        "/v3/watch",
        &json!({"create_request": {"key": b64("c"), "start_revision": last - 2}}),
    )
    .await;
    assert_eq!(watch.status, 200);
    let mut lines = Vec::new();
    while let Some(line) = watch.next().await {
        let canceled = line["result"]["canceled"] == true;
        lines.push(line);
        if canceled {
            break;
        }
    }
    let last_line = &lines.last().unwrap()["result"];
    assert_eq!(
        last_line["compact_revision"],
        (last - 1).to_string(),
        "{lines:?}"
    );
    drop(watch);

    member.stop().await;
}
