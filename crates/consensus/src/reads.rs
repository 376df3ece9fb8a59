//! The read barrier. Waiters queue up; the read batcher takes all of them, obtains one read
//! index for the whole group (openraft ReadIndex on the leader, or the leader's answer over the
//! peer RPC on a follower), waits until the local state machine applied that index, and releases
//! them together. Every waiter queued before the round started is covered by it.
//!
//! Followers read locally after the leader confirmed the index (rather than forwarding the read),
//! so read load spreads over the members and watch/range data come from the same applied state.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::error::ConsensusError;
use crate::node::{Core, LeaderError};
use crate::pb;
use crate::proposer::never_sent;

/// Pause before retrying when no leader is usable yet.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// One caller of `linearizable_read`.
pub(crate) struct ReadWaiter {
    pub(crate) deadline: Instant,
    pub(crate) reply: oneshot::Sender<Result<(), ConsensusError>>,
}

/// The read batcher task: runs until the member shuts down.
pub(crate) async fn run(core: Arc<Core>, mut waiters: mpsc::Receiver<ReadWaiter>) {
    loop {
        let first = tokio::select! {
            _ = core.cancel.cancelled() => break,
            waiter = waiters.recv() => match waiter {
                Some(waiter) => waiter,
                None => break,
            },
        };
        let mut group = vec![first];
        while let Ok(waiter) = waiters.try_recv() {
            group.push(waiter);
        }
        // The round may run until the latest waiter's deadline; each caller also bounds its
        // own wait, so an earlier caller gets its Timeout on time.
        let deadline = group
            .iter()
            .map(|w| w.deadline)
            .max()
            .unwrap_or_else(Instant::now);
        core.read_index_rounds
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let result = barrier(&core, deadline).await;
        for waiter in group {
            let _ = waiter.reply.send(result.clone());
        }
    }
}

/// One read-index round followed by the wait for local apply.
async fn barrier(core: &Core, deadline: Instant) -> Result<(), ConsensusError> {
    let index = read_index(core, deadline).await?;
    tracing::debug!(member = %format!("{:x}", core.member_id), index, "read index");
    core.wait_applied(index, deadline).await
}

async fn read_index(core: &Core, deadline: Instant) -> Result<u64, ConsensusError> {
    loop {
        let leader = core.wait_for_leader(deadline).await?;
        let outcome = if leader == core.member_id {
            match tokio::time::timeout_at(deadline, core.read_index_as_leader()).await {
                Err(_) => return Err(ConsensusError::Timeout),
                Ok(Ok(index)) => return Ok(index),
                Ok(Err(LeaderError::Stopped)) => return Err(ConsensusError::Stopped),
                Ok(Err(_)) => None,
            }
        } else {
            remote_read_index(core, leader, deadline).await?
        };
        if let Some(index) = outcome {
            return Ok(index);
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

/// Asks `leader` for a read index; `None` means "retry" (not leader, unreachable).
async fn remote_read_index(
    core: &Core,
    leader: u64,
    deadline: Instant,
) -> Result<Option<u64>, ConsensusError> {
    let Some(peer_urls) = core.peer_urls_of(leader) else {
        return Ok(None);
    };
    let mut client = core.channels.client(&peer_urls)?;
    // Reads are idempotent: any transport failure may be retried.
    let reply =
        match tokio::time::timeout_at(deadline, client.read_index(pb::ReadIndexRequest {})).await {
            Err(_) => return Err(ConsensusError::Timeout),
            Ok(Err(status)) => {
                if !never_sent(&status) {
                    tracing::debug!(%status, "read index request failed");
                }
                return Ok(None);
            }
            Ok(Ok(reply)) => reply.into_inner(),
        };
    match pb::ErrorKind::try_from(reply.error).unwrap_or(pb::ErrorKind::Internal) {
        pb::ErrorKind::None => Ok(Some(reply.index)),
        pb::ErrorKind::Internal => Err(ConsensusError::Internal(reply.message)),
        _ => Ok(None),
    }
}
