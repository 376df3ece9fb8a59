//! gRPC request metrics as a layer on the tonic routes, in go-grpc-prometheus' names (what
//! etcd exports): `grpc_server_started_total` when a call arrives,
//! `grpc_server_handled_total` with the call's final `grpc-status` when it ends, and etcd's
//! `etcd_network_client_grpc_{received,sent}_bytes_total` counted from the body frames.
//!
//! The final status of a call is where gRPC puts it: in the response headers of a
//! trailers-only reply (an error before any message), otherwise in the trailers that end the
//! response body. Streams (Watch, LeaseKeepAlive, Snapshot, Observe) are therefore counted
//! as handled when they end, as etcd counts them; a stream the client abandoned before the
//! trailers is counted as `Canceled`.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, RwLock};
use std::task::{Context, Poll};

use ::metrics::{Counter, Key, KeyName, Label, Recorder};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use http_body::Frame;
use metrics_exporter_prometheus::PrometheusRecorder;

use super::METADATA;

/// Past this many distinct method paths, further unknown paths share one label set, so a
/// client sending made-up method names cannot grow the registry without bound.
pub(crate) const MAX_TRACKED_METHODS: usize = 256;

/// gRPC status codes by number, spelled as Go's `codes.Code.String()` (the label values
/// etcd dashboards select on).
const CODE_NAMES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];
const CODE_CANCELED: usize = 1;
const CODE_UNKNOWN: usize = 2;

/// Streaming methods of the etcd API (service, method, grpc_type); every other is unary.
const STREAMING_METHODS: &[(&str, &str, &str)] = &[
    ("etcdserverpb.Watch", "Watch", "bidi_stream"),
    ("etcdserverpb.Lease", "LeaseKeepAlive", "bidi_stream"),
    ("etcdserverpb.Maintenance", "Snapshot", "server_stream"),
    ("v3electionpb.Election", "Observe", "server_stream"),
];

/// The gRPC counters of one member.
pub(crate) struct GrpcMetrics {
    recorder: Arc<PrometheusRecorder>,
    received_bytes: Counter,
    sent_bytes: Counter,
    /// Per method path (`/etcdserverpb.KV/Range`), created on first use.
    methods: RwLock<HashMap<String, Arc<MethodMetrics>>>,
    /// Shared by paths beyond [`MAX_TRACKED_METHODS`].
    overflow: OnceLock<Arc<MethodMetrics>>,
}

/// The counters of one method; a handled counter per status code, registered on first use.
pub(crate) struct MethodMetrics {
    recorder: Arc<PrometheusRecorder>,
    labels: [Label; 3],
    pub(crate) started: Counter,
    handled: [OnceLock<Counter>; 17],
}

impl MethodMetrics {
    fn new(recorder: &Arc<PrometheusRecorder>, service: &str, method: &str) -> MethodMetrics {
        let grpc_type = STREAMING_METHODS
            .iter()
            .find(|(s, m, _)| *s == service && *m == method)
            .map(|(_, _, kind)| *kind)
            .unwrap_or("unary");
        let labels = [
            Label::new("grpc_type", grpc_type),
            Label::new("grpc_service", service.to_owned()),
            Label::new("grpc_method", method.to_owned()),
        ];
        let started = recorder.register_counter(
            &Key::from_parts("grpc_server_started_total", labels.to_vec()),
            &METADATA,
        );
        MethodMetrics {
            recorder: recorder.clone(),
            labels,
            started,
            handled: Default::default(),
        }
    }

    pub(crate) fn handled(&self, code: usize) -> &Counter {
        let code = if code < CODE_NAMES.len() {
            code
        } else {
            CODE_UNKNOWN
        };
        self.handled[code].get_or_init(|| {
            let mut labels = self.labels.to_vec();
            labels.push(Label::new("grpc_code", CODE_NAMES[code]));
            self.recorder.register_counter(
                &Key::from_parts("grpc_server_handled_total", labels),
                &METADATA,
            )
        })
    }
}

impl GrpcMetrics {
    pub(crate) fn new(recorder: &Arc<PrometheusRecorder>) -> GrpcMetrics {
        recorder.describe_counter(
            KeyName::from_const_str("grpc_server_started_total"),
            None,
            "Total number of RPCs started on the server.".into(),
        );
        recorder.describe_counter(
            KeyName::from_const_str("grpc_server_handled_total"),
            None,
            "Total number of RPCs completed on the server, regardless of success or failure."
                .into(),
        );
        let received_bytes = super::Registrar { recorder }.counter(
            "etcd_network_client_grpc_received_bytes_total",
            "The total number of bytes received from grpc clients.",
        );
        let sent_bytes = super::Registrar { recorder }.counter(
            "etcd_network_client_grpc_sent_bytes_total",
            "The total number of bytes sent to grpc clients.",
        );
        GrpcMetrics {
            recorder: recorder.clone(),
            received_bytes,
            sent_bytes,
            methods: RwLock::new(HashMap::new()),
            overflow: OnceLock::new(),
        }
    }

    /// The counters for `path` (`/<service>/<method>`).
    pub(crate) fn method(&self, path: &str) -> Arc<MethodMetrics> {
        if let Some(found) = self
            .methods
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(path)
        {
            return found.clone();
        }
        let mut methods = self
            .methods
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(found) = methods.get(path) {
            return found.clone();
        }
        if methods.len() >= MAX_TRACKED_METHODS {
            return self
                .overflow
                .get_or_init(|| Arc::new(MethodMetrics::new(&self.recorder, "other", "other")))
                .clone();
        }
        let (service, method) = split_path(path);
        let created = Arc::new(MethodMetrics::new(&self.recorder, service, method));
        methods.insert(path.to_owned(), created.clone());
        created
    }
}

/// `/etcdserverpb.KV/Range` → (`etcdserverpb.KV`, `Range`).
fn split_path(path: &str) -> (&str, &str) {
    let trimmed = path.trim_start_matches('/');
    trimmed.split_once('/').unwrap_or((trimmed, "unknown"))
}

/// The status code a response carries in its headers (a trailers-only reply), if any.
fn header_status(headers: &axum::http::HeaderMap) -> Option<usize> {
    headers
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<usize>().ok())
}

/// The axum middleware counting one gRPC call (mounted on the tonic routes only).
pub(crate) async fn track(
    State(metrics): State<Arc<super::ServerMetrics>>,
    request: Request,
    next: Next,
) -> Response {
    let method = metrics.grpc.method(request.uri().path());
    method.started.increment(1);
    let request = request.map(|body| {
        Body::new(CountedBody {
            inner: body,
            bytes: metrics.grpc.received_bytes.clone(),
            on_end: None,
        })
    });
    let response = next.run(request).await;
    if let Some(code) = header_status(response.headers()) {
        method.handled(code).increment(1);
        return response;
    }
    let sent = metrics.grpc.sent_bytes.clone();
    response.map(|body| {
        Body::new(CountedBody {
            inner: body,
            bytes: sent,
            on_end: Some(method),
        })
    })
}

/// A body that counts its data bytes and, on the response side, records the call's final
/// status from the trailers (or `Canceled` when dropped before them).
struct CountedBody {
    inner: Body,
    bytes: Counter,
    /// Set on a response body until its status is recorded.
    on_end: Option<Arc<MethodMetrics>>,
}

impl http_body::Body for CountedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.bytes.increment(data.len() as u64);
                } else if let Some(trailers) = frame.trailers_ref()
                    && let Some(method) = self.on_end.take()
                {
                    method
                        .handled(header_status(trailers).unwrap_or(CODE_UNKNOWN))
                        .increment(1);
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(method) = self.on_end.take() {
                    method.handled(CODE_UNKNOWN).increment(1);
                }
            }
            Poll::Ready(None) | Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for CountedBody {
    fn drop(&mut self) {
        if let Some(method) = self.on_end.take() {
            method.handled(CODE_CANCELED).increment(1);
        }
    }
}
