//! `GET /metrics`: the member's Prometheus text, in etcd's metric names where etcd has one.
//!
//! Each [`crate::Service`] owns one [`ServerMetrics`]: a `metrics-exporter-prometheus` recorder
//! that is *not* installed as the process-wide recorder. Handles are registered on it directly,
//! so several members in one process (the in-process cluster tests) each export their own
//! numbers instead of fighting over, or summing into, one global registry.
//!
//! Where the numbers come from:
//! - gRPC request counts and bytes: a layer on the tonic routes ([`grpc`]), not the handlers;
//! - leader changes: the observer task ([`observer`]) watching the member's status;
//! - proposal failures and in-flight proposals: the service layer's propose path;
//! - log append timings and batch sizes: histograms handed to the member's storage once;
//! - everything that is a level (leader, indexes, sizes, key count): sampled at scrape time.

pub mod grpc;
pub mod observer;

use std::sync::Arc;

use ::metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Metadata, Recorder, Unit};
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusRecorder};

use crate::backend::{Backend, StatusExt};
use crate::config::SERVER_VERSION;
use crate::service::Service;

/// etcd's `etcd_disk_*` buckets start at 1 ms; pgwarden's fsyncs take ~0.1–0.3 ms, so the
/// buckets here start at 0.1 ms (doubling up to ~13 s) to keep the fast end visible.
const DISK_SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.0002, 0.0004, 0.0008, 0.0016, 0.0032, 0.0064, 0.0128, 0.0256, 0.0512, 0.1024, 0.2048,
    0.4096, 0.8192, 1.6384, 3.2768, 6.5536, 13.1072,
];
/// Commands per log entry: 1 (no concurrency) up to the proposer's cap of 1024.
const BATCH_SIZE_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

pub(crate) const WAL_FSYNC_SECONDS: &str = "etcd_disk_wal_fsync_duration_seconds";
pub(crate) const BACKEND_COMMIT_SECONDS: &str = "etcd_disk_backend_commit_duration_seconds";
pub(crate) const GROUP_COMMIT_BATCH_SIZE: &str = "pgwarden_store_group_commit_batch_size";

/// One member's metric registry and the handles recorded into on hot paths. Cheap to share
/// (`Arc`); every handle is an atomic, so recording takes no lock.
pub struct ServerMetrics {
    recorder: Arc<PrometheusRecorder>,
    pub(crate) grpc: grpc::GrpcMetrics,
    pub(crate) leader_changes: Counter,
    pub(crate) proposals_failed: Counter,
    pub(crate) proposals_pending: Gauge,
    pub(crate) auto_compactions: Counter,
    pub(crate) nospace_alarms_raised: Counter,
    levels: Levels,
    /// Handed to the member's storage once (see [`Backend::attach_log_histograms`]).
    pub(crate) log_histograms: LogHistograms,
}

/// Histograms the member's log store records into: the write-ahead log's fdatasync of
/// each append, the append's whole write transaction, and the commands per appended entry.
pub use consensus::LogHistograms;

/// Gauges set from a [`Sample`] right before rendering.
struct Levels {
    has_leader: Gauge,
    is_leader: Gauge,
    is_learner: Gauge,
    proposals_committed: Gauge,
    proposals_applied: Gauge,
    db_total_size: Gauge,
    db_in_use_size: Gauge,
    keys_total: Gauge,
    current_revision: Gauge,
    compact_revision: Gauge,
    quota_backend_bytes: Gauge,
    server_version: Gauge,
    read_index_rounds: Counter,
    log_appends: Counter,
    log_entries: Counter,
}

/// The member's levels at scrape time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    pub has_leader: bool,
    pub is_leader: bool,
    pub is_learner: bool,
    pub commit_index: u64,
    pub applied_index: u64,
    /// Size of the member's storage files (redb file and write-ahead log segments).
    pub db_size_bytes: u64,
    /// The keyspace's logical size (see [`crate::space`]): what the quota is checked against.
    pub db_size_in_use_bytes: u64,
    pub keys: u64,
    pub revision: i64,
    pub compact_revision: i64,
    pub quota_bytes: u64,
    pub read_index_rounds: u64,
    pub log_appends: u64,
    pub log_entries: u64,
}

impl ServerMetrics {
    pub fn new() -> ServerMetrics {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full(WAL_FSYNC_SECONDS.into()),
                DISK_SECONDS_BUCKETS,
            )
            .and_then(|builder| {
                builder.set_buckets_for_metric(
                    Matcher::Full(BACKEND_COMMIT_SECONDS.into()),
                    DISK_SECONDS_BUCKETS,
                )
            })
            .and_then(|builder| {
                builder.set_buckets_for_metric(
                    Matcher::Full(GROUP_COMMIT_BATCH_SIZE.into()),
                    BATCH_SIZE_BUCKETS,
                )
            })
            // The bucket lists are non-empty constants, the only thing the builder checks.
            .unwrap_or_default()
            .build_recorder();
        let recorder = Arc::new(recorder);
        let registry = Registrar {
            recorder: &recorder,
        };
        let levels = Levels {
            has_leader: registry.gauge(
                "etcd_server_has_leader",
                "Whether or not a leader exists. 1 is existence, 0 is not.",
            ),
            is_leader: registry.gauge(
                "etcd_server_is_leader",
                "Whether or not this member is a leader. 1 if is, 0 otherwise.",
            ),
            is_learner: registry.gauge(
                "etcd_server_is_learner",
                "Whether or not this member is a learner. 1 if is, 0 otherwise.",
            ),
            proposals_committed: registry.gauge(
                "etcd_server_proposals_committed_total",
                "The total number of consensus proposals committed (the Raft commit index).",
            ),
            proposals_applied: registry.gauge(
                "etcd_server_proposals_applied_total",
                "The total number of consensus proposals applied (the Raft applied index).",
            ),
            db_total_size: registry.gauge(
                "etcd_mvcc_db_total_size_in_bytes",
                "Total size of the underlying database physically allocated in bytes (the redb file and the Raft log segments).",
            ),
            db_in_use_size: registry.gauge(
                "etcd_mvcc_db_total_size_in_use_in_bytes",
                "Logical size of the keyspace with its retained history, in bytes; checked against the quota.",
            ),
            keys_total: registry.gauge(
                "etcd_debugging_mvcc_keys_total",
                "Total number of keys.",
            ),
            current_revision: registry.gauge(
                "etcd_debugging_mvcc_current_revision",
                "The current revision of store.",
            ),
            compact_revision: registry.gauge(
                "etcd_debugging_mvcc_compact_revision",
                "The revision of the last compaction in store.",
            ),
            quota_backend_bytes: registry.gauge(
                "etcd_server_quota_backend_bytes",
                "Current backend storage quota size in bytes.",
            ),
            server_version: registry.labelled_gauge(
                "etcd_server_version",
                "Which version is running. 1 for 'server_version' label with current version.",
                vec![Label::new("server_version", SERVER_VERSION)],
            ),
            read_index_rounds: registry.counter(
                "pgwarden_store_read_index_rounds_total",
                "Read-index rounds run for linearizable reads (one round serves every read queued before it).",
            ),
            log_appends: registry.counter(
                "pgwarden_store_log_appends_total",
                "Raft log appends, each group one fdatasync of the write-ahead log.",
            ),
            log_entries: registry.counter(
                "pgwarden_store_log_entries_appended_total",
                "Raft log entries written by those appends.",
            ),
        };
        let log_histograms = LogHistograms {
            commit_seconds: registry.histogram(
                WAL_FSYNC_SECONDS,
                "The latency distributions of the Raft log's fdatasync (one per group of appended entries).",
                Unit::Seconds,
            ),
            write_seconds: registry.histogram(
                BACKEND_COMMIT_SECONDS,
                "The latency distributions of a Raft log append's whole write: encoding, write-out and fdatasync.",
                Unit::Seconds,
            ),
            commands_per_entry: registry.histogram(
                GROUP_COMMIT_BATCH_SIZE,
                "Client commands carried by one Raft log entry (group commit: one append, one fsync).",
                Unit::Count,
            ),
        };
        ServerMetrics {
            grpc: grpc::GrpcMetrics::new(&recorder),
            leader_changes: registry.counter(
                "etcd_server_leader_changes_seen_total",
                "The number of leader changes seen.",
            ),
            proposals_failed: registry.counter(
                "etcd_server_proposals_failed_total",
                "The total number of failed proposals seen.",
            ),
            proposals_pending: registry.gauge(
                "etcd_server_proposals_pending",
                "The current number of pending proposals to commit.",
            ),
            auto_compactions: registry.counter(
                "pgwarden_server_auto_compactions_total",
                "Compactions proposed by this member's auto-compactor (while it led).",
            ),
            nospace_alarms_raised: registry.counter(
                "pgwarden_server_nospace_alarms_raised_total",
                "NOSPACE alarms this member raised because a write would exceed the quota.",
            ),
            levels,
            log_histograms,
            recorder,
        }
    }

    /// Prometheus text exposition of every metric, with the levels taken from `sample`.
    pub fn render(&self, sample: &Sample) -> String {
        let levels = &self.levels;
        levels
            .has_leader
            .set(f64::from(u8::from(sample.has_leader)));
        levels.is_leader.set(f64::from(u8::from(sample.is_leader)));
        levels
            .is_learner
            .set(f64::from(u8::from(sample.is_learner)));
        levels.proposals_committed.set(sample.commit_index as f64);
        levels.proposals_applied.set(sample.applied_index as f64);
        levels.db_total_size.set(sample.db_size_bytes as f64);
        levels
            .db_in_use_size
            .set(sample.db_size_in_use_bytes as f64);
        levels.keys_total.set(sample.keys as f64);
        levels.current_revision.set(sample.revision as f64);
        levels.compact_revision.set(sample.compact_revision as f64);
        levels.quota_backend_bytes.set(sample.quota_bytes as f64);
        levels.server_version.set(1.0);
        levels.read_index_rounds.absolute(sample.read_index_rounds);
        levels.log_appends.absolute(sample.log_appends);
        levels.log_entries.absolute(sample.log_entries);
        self.recorder.handle().render()
    }

    /// Folds recorded histogram samples into their buckets. Without it, samples recorded
    /// between scrapes pile up in memory; the observer task runs it periodically.
    pub fn run_upkeep(&self) {
        self.recorder.handle().run_upkeep();
    }
}

impl Default for ServerMetrics {
    fn default() -> Self {
        ServerMetrics::new()
    }
}

/// Registers described handles on one recorder.
struct Registrar<'recorder> {
    recorder: &'recorder PrometheusRecorder,
}

static METADATA: Metadata<'static> =
    ::metrics::Metadata::new(module_path!(), ::metrics::Level::INFO, Some(module_path!()));

impl Registrar<'_> {
    fn counter(&self, name: &'static str, help: &'static str) -> Counter {
        self.recorder
            .describe_counter(KeyName::from_const_str(name), None, help.into());
        self.recorder
            .register_counter(&Key::from_static_name(name), &METADATA)
    }

    fn gauge(&self, name: &'static str, help: &'static str) -> Gauge {
        self.labelled_gauge(name, help, Vec::new())
    }

    fn labelled_gauge(&self, name: &'static str, help: &'static str, labels: Vec<Label>) -> Gauge {
        self.recorder
            .describe_gauge(KeyName::from_const_str(name), None, help.into());
        self.recorder
            .register_gauge(&Key::from_parts(name, labels), &METADATA)
    }

    fn histogram(&self, name: &'static str, help: &'static str, unit: Unit) -> Histogram {
        self.recorder
            .describe_histogram(KeyName::from_const_str(name), Some(unit), help.into());
        self.recorder
            .register_histogram(&Key::from_static_name(name), &METADATA)
    }
}

/// The member's levels right now, for a scrape.
pub fn sample<B: Backend>(service: &Service<B>) -> Sample {
    let node = service.node();
    let status = node.status();
    let (revision, compact_revision, keys) = node.read(|store| {
        (
            store.revision(),
            store.compact_revision(),
            store.key_count() as u64,
        )
    });
    let counters = node.engine_counters();
    Sample {
        has_leader: status.leader.is_some(),
        is_leader: status.is_leader(),
        is_learner: status.is_learner,
        commit_index: status.commit_index,
        applied_index: status.applied_index,
        db_size_bytes: node.db_size(),
        db_size_in_use_bytes: service.space().logical_size(node),
        keys,
        revision,
        compact_revision,
        quota_bytes: service.space().quota_bytes(),
        read_index_rounds: counters.read_index_rounds,
        log_appends: counters.log_appends,
        log_entries: counters.log_entries,
    }
}

/// The `/metrics` route, served on the client port next to gRPC.
pub fn router<B: Backend>(service: Service<B>) -> Router {
    Router::new()
        .route("/metrics", get(scrape::<B>))
        .with_state(service)
}

async fn scrape<B: Backend>(State(service): State<Service<B>>) -> impl IntoResponse {
    let sample = sample(&service);
    let text = service.metrics().render(&sample);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
mod metrics_test;
