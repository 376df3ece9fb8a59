//! The server half of the peer transport: hands Raft messages to openraft and serves the
//! leader-side halves of forwarded proposals, read indexes and membership changes.

use std::sync::Arc;

use futures::StreamExt;
use futures::stream::BoxStream;
use openraft::raft::{AppendEntriesRequest, TransferLeaderRequest, VoteRequest};
use openraft::type_config::alias::VoteOf;
use prost::Message;
use storage::{LogId, Snapshot, SnapshotMeta, TypeConfig};
use tonic::{Request, Response, Status, Streaming};

use crate::network::{from_json, to_json};
use crate::node::{Core, LeaderError};
use crate::pb;
use crate::pb::peer_server::Peer;

/// Requests of one replication stream handed to openraft before the first unanswered one is
/// answered; the leader sends entries only after the previous entries are answered, so this
/// bounds commit updates and probes queued behind them.
const STREAM_APPENDS_IN_FLIGHT: usize = 64;

/// The tonic service mounted on the peer listener.
pub(crate) struct PeerService {
    pub(crate) core: Arc<Core>,
}

fn json_reply<T: serde::Serialize, E: std::fmt::Display>(
    result: Result<T, E>,
) -> Response<pb::JsonMessage> {
    Response::new(json_message(result))
}

/// The JSON of `result`'s value, or its error.
fn json_message<T: serde::Serialize, E: std::fmt::Display>(
    result: Result<T, E>,
) -> pb::JsonMessage {
    match result {
        Ok(value) => pb::JsonMessage {
            json: to_json(&value).into(),
            error: String::new(),
        },
        Err(error) => pb::JsonMessage {
            json: Default::default(),
            error: error.to_string(),
        },
    }
}

fn bad_request(error: String) -> Status {
    Status::invalid_argument(error)
}

impl From<&LeaderError> for pb::ErrorKind {
    fn from(error: &LeaderError) -> Self {
        match error {
            LeaderError::NotLeader(_) => pb::ErrorKind::NotLeader,
            LeaderError::NoQuorum => pb::ErrorKind::Timeout,
            LeaderError::Discarded => pb::ErrorKind::Internal,
            LeaderError::Stopped => pb::ErrorKind::Stopped,
            LeaderError::Internal(_) => pb::ErrorKind::Internal,
        }
    }
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn append_entries(
        &self,
        request: Request<pb::AppendEntriesRequest>,
    ) -> Result<Response<pb::JsonMessage>, Status> {
        let rpc = append_rpc(request.into_inner()).map_err(bad_request)?;
        Ok(json_reply(self.core.raft.append_entries(rpc).await))
    }

    type AppendStreamStream = BoxStream<'static, Result<pb::JsonMessage, Status>>;

    /// Each request goes to openraft in arrival order while earlier ones are still being
    /// handled (an AppendEntries waits for its entries to be durable); answers leave in request
    /// order. A request that cannot be decoded is answered with an error, which ends the
    /// leader's stream. The call ends when this member stops (the peer server's graceful
    /// shutdown waits for open calls, and an idle leader would keep this one open).
    async fn append_stream(
        &self,
        request: Request<Streaming<pb::AppendEntriesRequest>>,
    ) -> Result<Response<Self::AppendStreamStream>, Status> {
        let stopped = self.core.cancel.clone().cancelled_owned();
        let core = self.core.clone();
        let answers = request
            .into_inner()
            .map(move |request| {
                let core = core.clone();
                async move {
                    Ok(match append_rpc(request?) {
                        Ok(rpc) => json_message(core.raft.append_entries(rpc).await),
                        Err(error) => json_message::<(), _>(Err(error)),
                    })
                }
            })
            .buffered(STREAM_APPENDS_IN_FLIGHT)
            .take_until(stopped);
        Ok(Response::new(Box::pin(answers)))
    }

    async fn vote(
        &self,
        request: Request<pb::JsonMessage>,
    ) -> Result<Response<pb::JsonMessage>, Status> {
        let rpc: VoteRequest<TypeConfig> =
            from_json(&request.into_inner().json).map_err(bad_request)?;
        Ok(json_reply(self.core.raft.vote(rpc).await))
    }

    async fn pre_vote(
        &self,
        request: Request<pb::JsonMessage>,
    ) -> Result<Response<pb::JsonMessage>, Status> {
        let rpc: VoteRequest<TypeConfig> =
            from_json(&request.into_inner().json).map_err(bad_request)?;
        Ok(json_reply(self.core.raft.pre_vote(rpc).await))
    }

    async fn transfer_leader(
        &self,
        request: Request<pb::JsonMessage>,
    ) -> Result<Response<pb::JsonMessage>, Status> {
        let rpc: TransferLeaderRequest<TypeConfig> =
            from_json(&request.into_inner().json).map_err(bad_request)?;
        match self.core.raft.handle_transfer_leader(rpc).await {
            Ok(reply) => Ok(json_reply::<_, String>(Ok(reply))),
            Err(fatal) => Ok(json_reply::<(), _>(Err(fatal))),
        }
    }

    async fn install_snapshot(
        &self,
        request: Request<Streaming<pb::SnapshotChunk>>,
    ) -> Result<Response<pb::JsonMessage>, Status> {
        let mut chunks = request.into_inner();
        let Some(first) = chunks.next().await.transpose()? else {
            return Err(bad_request("empty snapshot stream".to_string()));
        };
        let vote: VoteOf<TypeConfig> = from_json(&first.vote).map_err(bad_request)?;
        let meta: SnapshotMeta = from_json(&first.meta).map_err(bad_request)?;
        let mut data = first.data.to_vec();
        while let Some(chunk) = chunks.next().await.transpose()? {
            data.extend_from_slice(&chunk.data);
        }
        let snapshot = Snapshot {
            meta,
            snapshot: data,
        };
        Ok(json_reply(
            self.core.raft.install_full_snapshot(vote, snapshot).await,
        ))
    }

    async fn propose(
        &self,
        request: Request<pb::ProposeRequest>,
    ) -> Result<Response<pb::ProposeResponse>, Status> {
        let batch = etcd_proto::raftcmd::RaftBatch::decode(request.into_inner().batch)
            .map_err(|e| bad_request(format!("decode batch: {e}")))?;
        let reply = match self.core.write_as_leader(batch).await {
            Ok((responses, index)) => pb::ProposeResponse {
                responses: responses.encode_to_vec().into(),
                index,
                ..Default::default()
            },
            Err(error) => pb::ProposeResponse {
                error: pb::ErrorKind::from(&error) as i32,
                leader_hint: leader_hint(&error),
                message: error.to_string(),
                ..Default::default()
            },
        };
        Ok(Response::new(reply))
    }

    async fn read_index(
        &self,
        _request: Request<pb::ReadIndexRequest>,
    ) -> Result<Response<pb::ReadIndexResponse>, Status> {
        let reply = match self.core.read_index_as_leader().await {
            Ok(index) => pb::ReadIndexResponse {
                index,
                ..Default::default()
            },
            Err(error) => pb::ReadIndexResponse {
                error: pb::ErrorKind::from(&error) as i32,
                leader_hint: leader_hint(&error),
                message: error.to_string(),
                ..Default::default()
            },
        };
        Ok(Response::new(reply))
    }

    async fn get_members(
        &self,
        _request: Request<pb::GetMembersRequest>,
    ) -> Result<Response<pb::GetMembersResponse>, Status> {
        let nodes = self.core.membership_nodes();
        Ok(Response::new(pb::GetMembersResponse {
            members_json: to_json(&nodes).into(),
            cluster_id: self.core.cluster_id,
        }))
    }

    async fn change_member(
        &self,
        request: Request<pb::JsonMessage>,
    ) -> Result<Response<pb::JsonMessage>, Status> {
        let change = from_json(&request.into_inner().json).map_err(bad_request)?;
        let result = self.core.change_member_as_leader(change).await;
        Ok(json_reply(result))
    }

    async fn forward(
        &self,
        request: Request<pb::ForwardRequest>,
    ) -> Result<Response<pb::ForwardResponse>, Status> {
        let body = crate::forward::serve(&self.core, request.into_inner()).await?;
        Ok(Response::new(pb::ForwardResponse { body }))
    }
}

/// openraft's AppendEntries request from its wire form (`network::append_request` makes it).
fn append_rpc(
    request: pb::AppendEntriesRequest,
) -> Result<AppendEntriesRequest<TypeConfig>, String> {
    let mut entries = Vec::with_capacity(request.entries.len());
    for bytes in &request.entries {
        entries.push(storage::decode_entry(bytes).map_err(|e| e.to_string())?);
    }
    Ok(AppendEntriesRequest::<TypeConfig> {
        vote: from_json::<VoteOf<TypeConfig>>(&request.vote)?,
        prev_log_id: from_json::<Option<LogId>>(&request.prev_log_id)?,
        leader_commit: from_json::<Option<LogId>>(&request.leader_commit)?,
        entries,
    })
}

/// The leader a refused request should go to, when this member knows it (0 = unknown).
fn leader_hint(error: &LeaderError) -> u64 {
    match error {
        LeaderError::NotLeader(Some(leader)) => *leader,
        _ => 0,
    }
}
