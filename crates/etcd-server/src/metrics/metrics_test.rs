use super::*;

#[test]
fn render_names_etcds_series_with_the_sampled_levels() {
    let metrics = ServerMetrics::new();
    metrics.log_histograms.commit_seconds.record(0.00015);
    metrics.log_histograms.commands_per_entry.record(3.0);
    metrics.leader_changes.increment(1);
    let text = metrics.render(&Sample {
        has_leader: true,
        is_leader: false,
        commit_index: 7,
        applied_index: 6,
        db_size_bytes: 1 << 20,
        db_size_in_use_bytes: 5000,
        keys: 12,
        quota_bytes: 1 << 30,
        read_index_rounds: 4,
        ..Sample::default()
    });
    for line in [
        "etcd_server_has_leader 1",
        "etcd_server_is_leader 0",
        "etcd_server_proposals_committed_total 7",
        "etcd_server_proposals_applied_total 6",
        "etcd_mvcc_db_total_size_in_bytes 1048576",
        "etcd_mvcc_db_total_size_in_use_in_bytes 5000",
        "etcd_debugging_mvcc_keys_total 12",
        "etcd_server_quota_backend_bytes 1073741824",
        "etcd_server_leader_changes_seen_total 1",
        "pgwarden_store_read_index_rounds_total 4",
        "etcd_server_version{server_version=\"3.5.17\"} 1",
        "etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.0002\"} 1",
        "etcd_disk_wal_fsync_duration_seconds_count 1",
        "pgwarden_store_group_commit_batch_size_bucket{le=\"4\"} 1",
        "# HELP etcd_server_has_leader Whether or not a leader exists. 1 is existence, 0 is not.",
        "# TYPE etcd_disk_wal_fsync_duration_seconds histogram",
    ] {
        assert!(
            text.lines().any(|rendered| rendered == line),
            "{line:?} missing from:\n{text}"
        );
    }
}

#[test]
fn registries_are_independent() {
    let first = ServerMetrics::new();
    let second = ServerMetrics::new();
    first.proposals_failed.increment(3);
    let sample = Sample::default();
    assert!(
        first
            .render(&sample)
            .contains("etcd_server_proposals_failed_total 3")
    );
    assert!(
        second
            .render(&sample)
            .contains("etcd_server_proposals_failed_total 0")
    );
}

#[test]
fn grpc_methods_are_labelled_by_service_method_type_and_code() {
    let metrics = ServerMetrics::new();
    let put = metrics.grpc.method("/etcdserverpb.KV/Put");
    put.started.increment(1);
    put.handled(0).increment(1);
    let watch = metrics.grpc.method("/etcdserverpb.Watch/Watch");
    watch.handled(1).increment(1);
    let text = metrics.render(&Sample::default());
    assert!(text.contains(
        "grpc_server_handled_total{grpc_type=\"unary\",grpc_service=\"etcdserverpb.KV\",grpc_method=\"Put\",grpc_code=\"OK\"} 1"
    ), "{text}");
    assert!(text.contains(
        "grpc_server_handled_total{grpc_type=\"bidi_stream\",grpc_service=\"etcdserverpb.Watch\",grpc_method=\"Watch\",grpc_code=\"Canceled\"} 1"
    ), "{text}");
    assert!(Arc::ptr_eq(
        &put,
        &metrics.grpc.method("/etcdserverpb.KV/Put")
    ));
}

#[test]
fn made_up_method_paths_cannot_grow_the_registry_without_bound() {
    let metrics = ServerMetrics::new();
    for i in 0..(grpc::MAX_TRACKED_METHODS + 50) {
        metrics
            .grpc
            .method(&format!("/etcdserverpb.KV/Made{i}"))
            .started
            .increment(1);
    }
    let text = metrics.render(&Sample::default());
    let series = text
        .lines()
        .filter(|line| line.starts_with("grpc_server_started_total{"))
        .count();
    assert_eq!(series, grpc::MAX_TRACKED_METHODS + 1);
    assert!(text.contains("grpc_method=\"other\"} 50"));
}
