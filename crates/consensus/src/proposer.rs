//! Group commit: the proposer task drains every queued proposal (up to a bound) into one
//! `RaftBatch` log entry, so many concurrent clients share one append, one fsync and one
//! replication round. On a follower the batch is forwarded to the leader in one peer RPC.

use std::sync::Arc;
use std::time::Duration;

use etcd_proto::raftcmd::{RaftBatch, RaftBatchResponse, RaftCommand, RaftResponse};
use prost::Message;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::time::Instant;

use crate::error::ConsensusError;
use crate::node::{Core, LeaderError};
use crate::pb;

/// Most commands carried by one log entry.
pub(crate) const MAX_BATCH_COMMANDS: usize = 1024;
/// Batches being committed at once. While they are in flight, new proposals queue up and form
/// the next (larger) batch.
const BATCHES_IN_FLIGHT: usize = 2;
/// Pause before retrying when no leader is usable yet.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// One client command waiting to be committed.
pub(crate) struct Proposal {
    pub(crate) command: RaftCommand,
    pub(crate) deadline: Instant,
    pub(crate) reply: oneshot::Sender<Result<RaftResponse, ConsensusError>>,
}

/// The proposer task: runs until the member shuts down.
pub(crate) async fn run(core: Arc<Core>, mut proposals: mpsc::Receiver<Proposal>) {
    let in_flight = Arc::new(Semaphore::new(BATCHES_IN_FLIGHT));
    loop {
        let first = tokio::select! {
            _ = core.cancel.cancelled() => break,
            proposal = proposals.recv() => match proposal {
                Some(proposal) => proposal,
                None => break,
            },
        };
        let permit = tokio::select! {
            _ = core.cancel.cancelled() => break,
            permit = in_flight.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH_COMMANDS {
            match proposals.try_recv() {
                Ok(proposal) => batch.push(proposal),
                Err(_) => break,
            }
        }
        let core = core.clone();
        let tasks = core.tasks.clone();
        tasks.spawn(async move {
            commit_batch(&core, batch).await;
            drop(permit);
        });
    }
    // Whatever is still queued is answered with Stopped by dropping its reply channel.
}

/// Commits one batch and answers each proposal with its own response.
async fn commit_batch(core: &Core, batch: Vec<Proposal>) {
    let deadline = batch
        .iter()
        .map(|p| p.deadline)
        .max()
        .unwrap_or_else(Instant::now);
    let mut commands = Vec::with_capacity(batch.len());
    let mut replies = Vec::with_capacity(batch.len());
    for proposal in batch {
        commands.push(proposal.command);
        replies.push(proposal.reply);
    }
    match replicate(core, RaftBatch { commands }, deadline).await {
        Ok(responses) if responses.responses.len() == replies.len() => {
            for (reply, response) in replies.into_iter().zip(responses.responses) {
                let _ = reply.send(Ok(response));
            }
        }
        Ok(responses) => {
            let message = format!(
                "apply answered {} responses for {} commands",
                responses.responses.len(),
                replies.len()
            );
            tracing::error!("{message}");
            for reply in replies {
                let _ = reply.send(Err(ConsensusError::Internal(message.clone())));
            }
        }
        Err(error) => {
            for reply in replies {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}

/// Gets `batch` committed as one entry: locally when this member leads, otherwise forwarded.
/// Retries only where nothing can have been proposed (not the leader, no leader, connection
/// refused), so a command is never applied twice; gives up at `deadline`.
pub(crate) async fn replicate(
    core: &Core,
    batch: RaftBatch,
    deadline: Instant,
) -> Result<RaftBatchResponse, ConsensusError> {
    // Encoded only when forwarded: the leader proposes the batch as it is.
    let mut encoded: Option<Vec<u8>> = None;
    let mut batch = Some(batch);
    loop {
        let leader = core.wait_for_leader(deadline).await?;
        if leader == core.member_id {
            let Some(owned) = batch.take() else {
                return Err(ConsensusError::Internal(
                    "batch already proposed".to_string(),
                ));
            };
            let result =
                tokio::time::timeout_at(deadline, core.write_as_leader(owned.clone())).await;
            match result {
                Err(_) => return Err(ConsensusError::Timeout),
                Ok(Ok((responses, _))) => return Ok(responses),
                Ok(Err(LeaderError::NotLeader(_))) => batch = Some(owned),
                Ok(Err(LeaderError::Discarded)) => return Err(ConsensusError::LeaderChanged),
                Ok(Err(LeaderError::Stopped)) => return Err(ConsensusError::Stopped),
                Ok(Err(LeaderError::NoQuorum)) => return Err(ConsensusError::Timeout),
                Ok(Err(LeaderError::Internal(message))) => {
                    return Err(ConsensusError::Internal(message));
                }
            }
        } else {
            let encoded = match (&mut encoded, &batch) {
                (Some(encoded), _) => encoded,
                (slot @ None, Some(batch)) => slot.insert(batch.encode_to_vec()),
                (None, None) => {
                    return Err(ConsensusError::Internal(
                        "batch already proposed".to_string(),
                    ));
                }
            };
            match forward(core, leader, encoded, deadline).await? {
                Forwarded::Done(responses, index) => {
                    core.wait_applied(index, deadline).await?;
                    return Ok(responses);
                }
                Forwarded::Retry => {}
            }
        }
        if Instant::now() + RETRY_PAUSE >= deadline {
            return Err(if core.current_leader().is_some() {
                ConsensusError::Timeout
            } else {
                ConsensusError::NoLeader
            });
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

enum Forwarded {
    Done(RaftBatchResponse, u64),
    /// Nothing was proposed: try again with the (possibly new) leader.
    Retry,
}

/// Whether a transport error happened while connecting, so the request never reached the peer.
/// Anything else (a reset or closed connection, a protocol error) may have happened after the
/// peer received it: the outcome is unknown and must not be retried.
pub(crate) fn never_sent(status: &tonic::Status) -> bool {
    let text = format!("{status:?}").to_ascii_lowercase();
    status.code() == tonic::Code::Unavailable
        && (text.contains("connection refused")
            || text.contains("tcp connect error")
            || text.contains("error trying to connect"))
}

/// Sends the batch to `leader` over the peer RPC.
async fn forward(
    core: &Core,
    leader: u64,
    encoded: &[u8],
    deadline: Instant,
) -> Result<Forwarded, ConsensusError> {
    let Some(peer_urls) = core.peer_urls_of(leader) else {
        return Ok(Forwarded::Retry);
    };
    let mut client = core.channels.client(&peer_urls)?;
    let request = pb::ProposeRequest {
        batch: encoded.to_vec().into(),
    };
    let reply = match tokio::time::timeout_at(deadline, client.propose(request)).await {
        Err(_) => return Err(ConsensusError::Timeout),
        Ok(Err(status)) if never_sent(&status) => return Ok(Forwarded::Retry),
        Ok(Err(status)) => {
            tracing::warn!(%status, "forwarded proposal failed; commit status unknown");
            return Err(ConsensusError::LeaderChanged);
        }
        Ok(Ok(reply)) => reply.into_inner(),
    };
    match pb::ErrorKind::try_from(reply.error).unwrap_or(pb::ErrorKind::Internal) {
        pb::ErrorKind::None => {
            let responses = RaftBatchResponse::decode(reply.responses).map_err(|e| {
                ConsensusError::Internal(format!("decode forwarded responses: {e}"))
            })?;
            Ok(Forwarded::Done(responses, reply.index))
        }
        pb::ErrorKind::NotLeader | pb::ErrorKind::NoLeader => Ok(Forwarded::Retry),
        pb::ErrorKind::Timeout => Err(ConsensusError::Timeout),
        // The leader stopped while the batch was in its log: another leader may commit it.
        pb::ErrorKind::Stopped => Err(ConsensusError::LeaderChanged),
        pb::ErrorKind::Internal => {
            if reply.message.contains("discarded") {
                Err(ConsensusError::LeaderChanged)
            } else {
                Err(ConsensusError::Internal(reply.message))
            }
        }
    }
}
