//! `/metrics` and space management (quota / NOSPACE, auto-compaction) against real Raft
//! members in process, on 127.0.0.1, driven by the generated tonic clients and plain HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::time::Duration;

use bytes::Bytes;
use etcd_proto::etcdserverpb::alarm_request::AlarmAction;
use etcd_proto::etcdserverpb::kv_client::KvClient;
use etcd_proto::etcdserverpb::lease_client::LeaseClient;
use etcd_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use etcd_proto::etcdserverpb::request_op::Request as Op;
use etcd_proto::etcdserverpb::watch_client::WatchClient;
use etcd_proto::etcdserverpb::watch_request::RequestUnion;
use etcd_proto::etcdserverpb::{
    AlarmRequest, AlarmType, CompactionRequest, DeleteRangeRequest, LeaseGrantRequest, PutRequest,
    RangeRequest, RequestOp, TxnRequest, WatchCreateRequest, WatchRequest,
};
use etcd_server::ServerConfig;
use etcd_server::space::AutoCompaction;

mod common;

use common::{Cluster, eventually};

fn put(key: &str, value: Vec<u8>) -> PutRequest {
    PutRequest {
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: Bytes::from(value),
        ..PutRequest::default()
    }
}

/// The value of the sample `name{labels}` (labels as rendered, or "" for none), if present.
fn sample_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok())?
        })
}

/// Sum of every sample of `name` whose labels contain all of `labels`.
fn sum_matching(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|line| line.starts_with(&format!("{name}{{")))
        .filter(|line| labels.iter().all(|label| line.contains(label)))
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_name_etcds_series_per_member_after_traffic() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let follower = (leader + 1) % 3;

    tracing::info!("traffic through the leader: puts, linearizable gets, a watch, a lease");
    let channel = cluster.channel(leader).await;
    let mut kv = KvClient::new(channel.clone());
    for i in 0..20 {
        kv.put(put(&format!("/m/{i}"), vec![b'x'; 100]))
            .await
            .unwrap();
        kv.range(RangeRequest {
            key: Bytes::from(format!("/m/{i}")),
            ..RangeRequest::default()
        })
        .await
        .unwrap();
    }
    let refused = kv.put(PutRequest::default()).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    LeaseClient::new(channel.clone())
        .lease_grant(LeaseGrantRequest { ttl: 30, id: 0 })
        .await
        .unwrap();
    let (requests, requests_rx) = tokio::sync::mpsc::channel(4);
    requests
        .send(WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: Bytes::from_static(b"/m/"),
                range_end: Bytes::from_static(b"/m0"),
                ..WatchCreateRequest::default()
            })),
        })
        .await
        .unwrap();
    let mut watch = WatchClient::new(channel.clone())
        .watch(tokio_stream::wrappers::ReceiverStream::new(requests_rx))
        .await
        .unwrap()
        .into_inner();
    watch.message().await.unwrap().expect("watch created");
    drop(requests);
    drop(watch);

    tracing::info!("the leader's /metrics carries etcd's names with the traffic counted");
    let text = eventually("the ended watch stream counted as handled", || async {
        let response = cluster.http_get(leader, "/metrics").await;
        let text = response.split_once("\r\n\r\n")?.1.to_owned();
        let watches_handled = sum_matching(
            &text,
            "grpc_server_handled_total",
            &["grpc_method=\"Watch\"", "grpc_type=\"bidi_stream\""],
        );
        (watches_handled >= 1.0).then_some(text)
    })
    .await;
    for name in [
        "grpc_server_started_total",
        "grpc_server_handled_total",
        "etcd_server_has_leader",
        "etcd_server_is_leader",
        "etcd_server_leader_changes_seen_total",
        "etcd_server_proposals_committed_total",
        "etcd_server_proposals_applied_total",
        "etcd_server_proposals_failed_total",
        "etcd_server_proposals_pending",
        "etcd_disk_wal_fsync_duration_seconds_bucket",
        "etcd_disk_backend_commit_duration_seconds_bucket",
        "etcd_mvcc_db_total_size_in_bytes",
        "etcd_mvcc_db_total_size_in_use_in_bytes",
        "etcd_debugging_mvcc_keys_total",
        "etcd_server_quota_backend_bytes",
        "etcd_network_client_grpc_received_bytes_total",
        "etcd_network_client_grpc_sent_bytes_total",
        "pgwarden_store_group_commit_batch_size_bucket",
        "pgwarden_store_read_index_rounds_total",
        "pgwarden_store_log_appends_total",
    ] {
        assert!(
            text.lines().any(|line| line.starts_with(name)),
            "{name} missing from:\n{text}"
        );
    }
    let puts_ok = sum_matching(
        &text,
        "grpc_server_handled_total",
        &[
            "grpc_service=\"etcdserverpb.KV\"",
            "grpc_method=\"Put\"",
            "grpc_code=\"OK\"",
            "grpc_type=\"unary\"",
        ],
    );
    assert_eq!(puts_ok, 20.0, "{text}");
    let puts_refused = sum_matching(
        &text,
        "grpc_server_handled_total",
        &["grpc_method=\"Put\"", "grpc_code=\"InvalidArgument\""],
    );
    assert_eq!(puts_refused, 1.0);
    let puts_started = sum_matching(&text, "grpc_server_started_total", &["grpc_method=\"Put\""]);
    assert_eq!(puts_started, 21.0);
    assert_eq!(sample_value(&text, "etcd_server_has_leader"), Some(1.0));
    assert_eq!(sample_value(&text, "etcd_server_is_leader"), Some(1.0));
    assert!(sample_value(&text, "etcd_server_leader_changes_seen_total").unwrap() >= 1.0);
    assert_eq!(
        sample_value(&text, "etcd_debugging_mvcc_keys_total"),
        Some(20.0)
    );
    assert!(sample_value(&text, "etcd_disk_wal_fsync_duration_seconds_count").unwrap() >= 1.0);
    assert!(sample_value(&text, "etcd_mvcc_db_total_size_in_use_in_bytes").unwrap() >= 2000.0);
    assert!(sample_value(&text, "etcd_network_client_grpc_received_bytes_total").unwrap() > 2000.0);
    assert!(sample_value(&text, "pgwarden_store_read_index_rounds_total").unwrap() >= 1.0);

    tracing::info!("each member exports its own numbers (no shared global registry)");
    let follower_text = cluster.http_get(follower, "/metrics").await;
    assert_eq!(
        sample_value(&follower_text, "etcd_server_is_leader"),
        Some(0.0)
    );
    assert_eq!(
        sample_value(&follower_text, "etcd_server_has_leader"),
        Some(1.0)
    );
    assert_eq!(
        sum_matching(
            &follower_text,
            "grpc_server_started_total",
            &["grpc_method=\"Put\""]
        ),
        0.0
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revision_auto_compaction_compacts_old_history() {
    let cluster = Cluster::start_with(1, || ServerConfig {
        auto_compaction: Some(AutoCompaction::Revision {
            retention: 5,
            interval: Duration::from_millis(50),
        }),
        ..ServerConfig::default()
    })
    .await;
    let mut kv = KvClient::new(cluster.channel(0).await);
    let mut last = 0;
    for i in 0..20 {
        last = kv
            .put(put("/auto", format!("v{i}").into_bytes()))
            .await
            .unwrap()
            .into_inner()
            .header
            .unwrap()
            .revision;
    }
    let status = eventually(
        "a range at an early revision is refused as compacted",
        || {
            let mut kv = kv.clone();
            async move {
                let refused = kv
                    .range(RangeRequest {
                        key: Bytes::from_static(b"/auto"),
                        revision: 3,
                        ..RangeRequest::default()
                    })
                    .await
                    .err()?;
                Some(refused)
            }
        },
    )
    .await;
    assert_eq!(status.code(), tonic::Code::OutOfRange);
    assert_eq!(
        status.message(),
        "etcdserver: mvcc: required revision has been compacted"
    );
    tracing::info!("the last `retention` revisions stay readable");
    let recent = kv
        .range(RangeRequest {
            key: Bytes::from_static(b"/auto"),
            revision: last - 4,
            ..RangeRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(recent.kvs.len(), 1);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_raises_nospace_refusing_writes_until_compacted_and_disarmed() {
    let cluster = Cluster::start_with(1, || ServerConfig {
        db_size_quota_bytes: 16 * 1024,
        ..ServerConfig::default()
    })
    .await;
    let channel = cluster.channel(0).await;
    let mut kv = KvClient::new(channel.clone());
    let mut maintenance = MaintenanceClient::new(channel.clone());
    let mut leases = LeaseClient::new(channel.clone());
    let member_id = cluster.member(0).node.member_id();

    tracing::info!("puts of 1 KiB fill the 16 KiB quota, then fail with NOSPACE");
    let mut refused = None;
    for i in 0..64 {
        match kv.put(put(&format!("/big/{i}"), vec![b'v'; 1024])).await {
            Ok(_) => {}
            Err(status) => {
                refused = Some((i, status));
                break;
            }
        }
    }
    let (written, status) = refused.expect("the quota refused a put");
    let member_status = maintenance
        .status(etcd_proto::etcdserverpb::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(member_status.db_size_quota, 16 * 1024);
    assert!(
        member_status.db_size_in_use > 10 * 1024,
        "{member_status:?}"
    );
    assert!(
        member_status
            .errors
            .iter()
            .any(|error| error.ends_with("alarm:NOSPACE")),
        "{member_status:?}"
    );
    assert!(written >= 10, "only {written} puts fit in 16 KiB");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    assert_eq!(
        status.message(),
        "etcdserver: mvcc: database space exceeded"
    );

    let alarms = maintenance
        .alarm(AlarmRequest {
            action: AlarmAction::Get as i32,
            member_id: 0,
            alarm: AlarmType::None as i32,
        })
        .await
        .unwrap()
        .into_inner()
        .alarms;
    assert_eq!(alarms.len(), 1);
    assert_eq!(alarms[0].member_id, member_id);
    assert_eq!(alarms[0].alarm, AlarmType::Nospace as i32);

    tracing::info!("while NOSPACE is active, small writes fail too; reads and deletes work");
    let small = kv.put(put("/small", b"x".to_vec())).await.unwrap_err();
    assert_eq!(small.message(), "etcdserver: mvcc: database space exceeded");
    let txn = kv
        .txn(TxnRequest {
            success: vec![RequestOp {
                request: Some(Op::RequestPut(put("/txn", b"x".to_vec()))),
            }],
            ..TxnRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(txn.code(), tonic::Code::ResourceExhausted);
    let lease = leases
        .lease_grant(LeaseGrantRequest { ttl: 30, id: 0 })
        .await
        .unwrap_err();
    assert_eq!(lease.message(), "etcdserver: mvcc: database space exceeded");
    let read = kv
        .range(RangeRequest {
            key: Bytes::from_static(b"/big/"),
            range_end: Bytes::from_static(b"/big0"),
            count_only: true,
            ..RangeRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.count, written as i64);
    let deleted = kv
        .delete_range(DeleteRangeRequest {
            key: Bytes::from_static(b"/big/"),
            range_end: Bytes::from_static(b"/big0"),
            ..DeleteRangeRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.deleted, written as i64);

    tracing::info!("the operator compacts, defragments and disarms: writes work again");
    kv.compact(CompactionRequest {
        revision: deleted.header.unwrap().revision,
        physical: true,
    })
    .await
    .unwrap();
    maintenance
        .defragment(etcd_proto::etcdserverpb::DefragmentRequest {})
        .await
        .unwrap();
    maintenance
        .alarm(AlarmRequest {
            action: AlarmAction::Deactivate as i32,
            member_id,
            alarm: AlarmType::Nospace as i32,
        })
        .await
        .unwrap();
    kv.put(put("/small", b"x".to_vec())).await.unwrap();
    leases
        .lease_grant(LeaseGrantRequest { ttl: 30, id: 0 })
        .await
        .unwrap();
    let alarms = maintenance
        .alarm(AlarmRequest {
            action: AlarmAction::Get as i32,
            member_id: 0,
            alarm: AlarmType::None as i32,
        })
        .await
        .unwrap()
        .into_inner()
        .alarms;
    assert!(alarms.is_empty(), "{alarms:?}");

    let text = cluster.http_get(0, "/metrics").await;
    assert_eq!(
        sample_value(&text, "etcd_server_quota_backend_bytes"),
        Some(16384.0)
    );
    assert_eq!(
        sample_value(&text, "pgwarden_server_nospace_alarms_raised_total"),
        Some(1.0)
    );
    cluster.shutdown().await;
}
