//! The client half of the peer transport: openraft's network (append entries, votes, snapshots,
//! leader transfer) and the channels used to forward proposals and reads to the leader.
//!
//! Every peer gets one lazily connected tonic channel that reconnects by itself; every call is
//! bounded by a timeout, so a dead peer costs only its own replication task, never the others.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::Stream;
use openraft::OptionalSend;
use openraft::base::{BoxFuture, BoxStream};
use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::StreamAppendResult;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::type_config::alias::VoteOf;
use reloading::Reloading;
use serde::Serialize;
use serde::de::DeserializeOwned;
use storage::{MemberNode, Snapshot, TypeConfig};
use tonic::transport::{Channel, Endpoint};

use crate::error::ConsensusError;
use crate::pb;
use crate::pb::peer_client::PeerClient;
use crate::whole_body::WholeBody;

/// The channel peer clients call through: each request leaves in one piece.
type PeerChannel = WholeBody<Channel>;

/// Largest peer reply accepted (forwarded batch responses can be large); every client made
/// for a peer gets it, not only the first one.
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Size of one snapshot chunk on the wire.
const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;

/// One channel per peer URL, shared by replication and forwarding.
#[derive(Clone)]
pub(crate) struct PeerChannels {
    /// Guarded by a std mutex: only map lookups happen under it.
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    connect_timeout: Duration,
    /// How `https://` peer URLs are dialed (re-read when its files change); `None`: this member
    /// has no peer TLS and refuses them.
    tls: Option<Arc<Reloading<rustls::ClientConfig>>>,
}

impl PeerChannels {
    pub(crate) fn new(connect_timeout: Duration) -> PeerChannels {
        PeerChannels {
            channels: Arc::new(Mutex::new(HashMap::new())),
            connect_timeout,
            tls: None,
        }
    }

    /// Dials `https://` peer URLs with `tls` (plain `http://` URLs stay plaintext).
    pub(crate) fn with_tls(mut self, tls: Option<Reloading<rustls::ClientConfig>>) -> PeerChannels {
        self.tls = tls.map(Arc::new);
        self
    }

    /// A client for the first reachable URL form of `peer_urls` (the first URL is used).
    pub(crate) fn client(
        &self,
        peer_urls: &[String],
    ) -> Result<PeerClient<PeerChannel>, ConsensusError> {
        let url = peer_urls
            .first()
            .ok_or_else(|| ConsensusError::Internal("member has no peer URL".to_string()))?;
        let mut channels = self
            .channels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(channel) = channels.get(url) {
            return Ok(PeerClient::new(WholeBody(channel.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES));
        }
        let https = url
            .get(..8)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"));
        // tonic gets a plain endpoint for an https URL: the connector below hands it a
        // connection already through the handshake, made with the current configuration.
        let endpoint_url = if https {
            format!("http://{}", &url[8..])
        } else {
            url.clone()
        };
        let endpoint = Endpoint::from_shared(endpoint_url)
            .map_err(|e| ConsensusError::Internal(format!("bad peer URL {url}: {e}")))?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5));
        let channel = if https {
            let tls = self.tls.clone().ok_or_else(|| {
                ConsensusError::Internal(format!(
                    "peer URL {url} needs TLS, but this member has no peer certificate"
                ))
            })?;
            endpoint.connect_with_connector_lazy(tower::service_fn(move |uri| {
                crate::tls_transport::connect(uri, tls.clone())
            }))
        } else {
            endpoint.connect_lazy()
        };
        channels.insert(url.clone(), channel.clone());
        Ok(PeerClient::new(WholeBody(channel)).max_decoding_message_size(MAX_MESSAGE_BYTES))
    }
}

/// openraft's network factory: one [`PeerConnection`] per target.
pub(crate) struct Network {
    pub(crate) channels: PeerChannels,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: u64, node: &MemberNode) -> PeerConnection {
        PeerConnection {
            target,
            client: self.channels.client(&node.peer_urls),
            append_timeout: self.channels.connect_timeout,
            serves_append_stream: Arc::new(AtomicBool::new(true)),
        }
    }
}

/// The connection openraft uses to replicate to one peer.
#[derive(Clone)]
pub(crate) struct PeerConnection {
    target: u64,
    client: Result<PeerClient<PeerChannel>, ConsensusError>,
    /// Least time an AppendEntries carrying entries may take (the election timeout, at most
    /// 1 s). openraft's deadline for one is 3/4 of a heartbeat interval (75 ms by default): on
    /// a loaded host a follower's fsync and reply sometimes take longer, and giving up then only
    /// sends the same entries again after a back-off, stalling every write behind them (p99 of
    /// 16-client puts ~40 ms, with "timed out after 75ms" in the leader's log).
    append_timeout: Duration,
    /// Whether the follower serves `Peer.AppendStream`; cleared when it answers UNIMPLEMENTED
    /// (a member of an earlier pgwarden during a rolling upgrade), after which replication to it
    /// uses one `AppendEntries` call per request for as long as this connection lives.
    serves_append_stream: Arc<AtomicBool>,
}

pub(crate) fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing openraft's plain data types to JSON cannot fail (no maps with non-string keys
    // reach here except through serde's own handling); an empty message would be refused remotely.
    serde_json::to_vec(value).unwrap_or_default()
}

/// A peer request carrying `rpc` as JSON.
fn json_request<T: Serialize>(rpc: &T) -> pb::JsonMessage {
    pb::JsonMessage {
        json: to_json(rpc).into(),
        error: String::new(),
    }
}

pub(crate) fn from_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("decode peer message: {e}"))
}

/// One answer of the replication stream.
type StreamAnswer = Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>;

pub(crate) fn network_error(message: impl ToString) -> RPCError<TypeConfig> {
    RPCError::Network(NetworkError::from_string(message))
}

/// The wire form of openraft's AppendEntries request.
pub(crate) fn append_request(
    rpc: &AppendEntriesRequest<TypeConfig>,
) -> Result<pb::AppendEntriesRequest, RPCError<TypeConfig>> {
    let mut entries = Vec::with_capacity(rpc.entries.len());
    for entry in &rpc.entries {
        entries.push(storage::encode_entry(entry).map_err(network_error)?.into());
    }
    Ok(pb::AppendEntriesRequest {
        vote: to_json(&rpc.vote).into(),
        prev_log_id: to_json(&rpc.prev_log_id).into(),
        leader_commit: to_json(&rpc.leader_commit).into(),
        entries,
    })
}

/// The value in peer `target`'s JSON `reply`, or the error it carries.
pub(crate) fn json_answer<T: DeserializeOwned>(
    target: u64,
    reply: pb::JsonMessage,
) -> Result<T, RPCError<TypeConfig>> {
    if !reply.error.is_empty() {
        return Err(network_error(format!("peer {target}: {}", reply.error)));
    }
    from_json(&reply.json).map_err(network_error)
}

impl PeerConnection {
    pub(crate) fn target(&self) -> u64 {
        self.target
    }

    pub(crate) fn serves_append_stream(&self) -> bool {
        self.serves_append_stream.load(Ordering::Relaxed)
    }

    /// The follower answered `AppendStream` with UNIMPLEMENTED.
    pub(crate) fn lacks_append_stream(&self) {
        if self.serves_append_stream.swap(false, Ordering::Relaxed) {
            tracing::info!(
                member_id = %format!("{:x}", self.target),
                "peer does not serve AppendStream (an earlier pgwarden); replicating to it with one call per request"
            );
        }
    }

    /// How long an AppendEntries may take: heartbeats (no entries) keep openraft's deadline;
    /// see `append_timeout`.
    pub(crate) fn append_deadline(
        &self,
        rpc: &AppendEntriesRequest<TypeConfig>,
        option: &RPCOption,
    ) -> Duration {
        if rpc.entries.is_empty() {
            option.soft_ttl()
        } else {
            option.soft_ttl().max(self.append_timeout)
        }
    }

    pub(crate) fn client(&self) -> Result<PeerClient<PeerChannel>, RPCError<TypeConfig>> {
        self.client.clone().map_err(|e| {
            RPCError::Unreachable(Unreachable::from_string(format!(
                "peer {}: {e}",
                self.target
            )))
        })
    }

    /// Runs one unary call with the RPC's deadline and decodes the JSON reply.
    async fn call<T, F, Fut>(&self, option: &RPCOption, call: F) -> Result<T, RPCError<TypeConfig>>
    where
        T: DeserializeOwned,
        F: FnOnce(PeerClient<PeerChannel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<pb::JsonMessage>, tonic::Status>>,
    {
        self.call_within(option.soft_ttl(), call).await
    }

    /// Runs one unary call that must answer within `deadline` and decodes the JSON reply.
    async fn call_within<T, F, Fut>(
        &self,
        deadline: Duration,
        call: F,
    ) -> Result<T, RPCError<TypeConfig>>
    where
        T: DeserializeOwned,
        F: FnOnce(PeerClient<PeerChannel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<pb::JsonMessage>, tonic::Status>>,
    {
        let client = self.client()?;
        let reply = tokio::time::timeout(deadline, call(client))
            .await
            .map_err(|_| {
                network_error(format!(
                    "peer {}: timed out after {deadline:?}",
                    self.target
                ))
            })?
            .map_err(|status| network_error(format!("peer {}: {}", self.target, status.message())))?
            .into_inner();
        json_answer(self.target, reply)
    }
}

impl RaftNetworkV2<TypeConfig> for PeerConnection {
    type SnapshotData = Vec<u8>;

    /// Entry-less requests do not wait for each other's answers: see [`crate::append_stream`].
    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> BoxFuture<'s, Result<BoxStream<'s, StreamAnswer>, RPCError<TypeConfig>>>
    where
        S: Stream<Item = AppendEntriesRequest<TypeConfig>> + OptionalSend + Unpin + 'static,
    {
        let connection = self.clone();
        Box::pin(async move { Ok(crate::append_stream::stream(connection, input, option)) })
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let deadline = self.append_deadline(&rpc, &option);
        let request = append_request(&rpc)?;
        self.call_within(deadline, |mut client| async move {
            client.append_entries(request).await
        })
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        let request = json_request(&rpc);
        self.call(
            &option,
            |mut client| async move { client.vote(request).await },
        )
        .await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        let request = json_request(&rpc);
        self.call(&option, |mut client| async move {
            client.pre_vote(request).await
        })
        .await
    }

    async fn transfer_leader(
        &mut self,
        rpc: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        let request = json_request(&rpc);
        self.call(&option, |mut client| async move {
            client.transfer_leader(request).await
        })
        .await
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<TypeConfig>,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let mut client = self.client.clone().map_err(|e| {
            StreamingError::Unreachable(Unreachable::from_string(format!(
                "peer {}: {e}",
                self.target
            )))
        })?;
        let meta = to_json(&snapshot.meta);
        let vote = to_json(&vote);
        let data = snapshot.snapshot;
        let mut chunks = Vec::with_capacity(data.len() / SNAPSHOT_CHUNK_BYTES + 1);
        let mut first = true;
        let mut rest: &[u8] = &data;
        while first || !rest.is_empty() {
            let take = rest.len().min(SNAPSHOT_CHUNK_BYTES);
            let (chunk, tail) = rest.split_at(take);
            chunks.push(pb::SnapshotChunk {
                vote: if first {
                    vote.clone().into()
                } else {
                    Default::default()
                },
                meta: if first {
                    meta.clone().into()
                } else {
                    Default::default()
                },
                data: chunk.to_vec().into(),
            });
            rest = tail;
            first = false;
        }
        let target = self.target;
        // A snapshot may be large: allow a generous multiple of the RPC deadline.
        let deadline = option.hard_ttl().max(Duration::from_secs(30));
        let send = async move {
            let reply = tokio::time::timeout(
                deadline,
                client.install_snapshot(futures::stream::iter(chunks)),
            )
            .await
            .map_err(|_| {
                StreamingError::Network(NetworkError::from_string(format!(
                    "peer {target}: snapshot timed out"
                )))
            })?
            .map_err(|status| {
                StreamingError::Network(NetworkError::from_string(format!(
                    "peer {target}: {}",
                    status.message()
                )))
            })?
            .into_inner();
            if !reply.error.is_empty() {
                return Err(StreamingError::Network(NetworkError::from_string(format!(
                    "peer {target}: {}",
                    reply.error
                ))));
            }
            from_json::<SnapshotResponse<TypeConfig>>(&reply.json)
                .map_err(|e| StreamingError::Network(NetworkError::from_string(e)))
        };
        tokio::select! {
            result = send => result,
            closed = cancel => Err(StreamingError::Closed(closed)),
        }
    }
}
