//! `etcd_server::Backend` over `consensus::RaftNode`: the etcd API's view of the Raft member.
//!
//! The two crates were written in parallel and each names its own status and applied-events types
//! with the same fields, so this adapter converts them. Status changes are re-published on a watch
//! channel (latest value wins, nothing to lose). Applied events are re-published on a broadcast
//! channel by one forwarding task; if that task ever falls behind the member's feed it cannot pass
//! the `Lagged` signal on, so it replaces its channel instead: open watch streams then end with
//! "etcdserver: server stopped" and clients re-watch from their last revision, as they do after any
//! server restart. The forwarder keeps up in practice (it only clones an `Arc` per applied entry).

use std::sync::Arc;
use std::sync::Mutex;

use consensus::ConsensusError;
use consensus::RaftNode;
use consensus::RaftStatus;
use etcd_proto::etcdserverpb::Member;
use etcd_proto::raftcmd::RaftCommand;
use etcd_proto::raftcmd::RaftResponse;
use etcd_server::AppliedEvents;
use etcd_server::Backend;
use etcd_server::NodeStatus;
use etcd_server::ServiceError;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How many applied entries the re-published feed buffers per subscriber (the member's own feed
/// buffers as many; a watch session that falls further behind replays from mvcc history).
const EVENT_CAPACITY: usize = 16 * 1024;

/// A running member as the etcd API sees it. Cheap to clone.
#[derive(Clone)]
pub struct RaftBackend {
    node: RaftNode,
    status: watch::Receiver<NodeStatus>,
    /// The current re-published feed; replaced (under this lock, held only to clone or swap the
    /// sender) when the forwarder loses events, so new subscribers start on a complete feed.
    events: Arc<Mutex<broadcast::Sender<Arc<AppliedEvents>>>>,
}

impl RaftBackend {
    /// Wraps `node` and starts the two forwarding tasks on `tasks`; they stop with `stop`.
    pub fn new(node: RaftNode, tasks: &TaskTracker, stop: CancellationToken) -> Self {
        let mut raft_status = node.watch_status();
        let initial = to_node_status(&raft_status.borrow_and_update());
        let (status_tx, status) = watch::channel(initial);
        let status_stop = stop.clone();
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    () = status_stop.cancelled() => return,
                    changed = raft_status.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        // Convert inside the borrow; nothing is held across an await.
                        let current = to_node_status(&raft_status.borrow_and_update());
                        status_tx.send_replace(current);
                    }
                }
            }
        });

        let (events_tx, _) = broadcast::channel(EVENT_CAPACITY);
        let events = Arc::new(Mutex::new(events_tx));
        let mut feed = node.subscribe();
        let forwarded = events.clone();
        tasks.spawn(async move {
            loop {
                let applied = tokio::select! {
                    () = stop.cancelled() => return,
                    applied = feed.recv() => applied,
                };
                match applied {
                    Ok(applied) => {
                        let converted = Arc::new(AppliedEvents {
                            revision: applied.revision,
                            events: applied.events.clone(),
                        });
                        // No subscriber is not an error: watches come and go.
                        let _ = lock(&forwarded).send(converted);
                    }
                    Err(RecvError::Lagged(missed)) => {
                        tracing::warn!(
                            missed,
                            "the applied-event forwarder fell behind; ending open watch streams"
                        );
                        let (fresh, _) = broadcast::channel(EVENT_CAPACITY);
                        *lock(&forwarded) = fresh;
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        });

        Self {
            node,
            status,
            events,
        }
    }
}

/// Locks the feed sender; a poisoned lock still holds a valid sender (nothing panics while holding it).
fn lock(
    events: &Mutex<broadcast::Sender<Arc<AppliedEvents>>>,
) -> std::sync::MutexGuard<'_, broadcast::Sender<Arc<AppliedEvents>>> {
    events
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn to_node_status(status: &RaftStatus) -> NodeStatus {
    NodeStatus {
        member_id: status.member_id,
        cluster_id: status.cluster_id,
        leader: status.leader,
        term: status.term,
        commit_index: status.commit_index,
        applied_index: status.applied_index,
        is_learner: status.is_learner,
        members: status.members.clone(),
    }
}

fn to_service_error(error: ConsensusError) -> ServiceError {
    match error {
        ConsensusError::NoLeader => ServiceError::NoLeader,
        ConsensusError::LeaderChanged => ServiceError::LeaderChanged,
        ConsensusError::Timeout => ServiceError::Timeout,
        ConsensusError::Stopped => ServiceError::Stopped,
        ConsensusError::Etcd(error) => ServiceError::Etcd(error),
        ConsensusError::Internal(text) => ServiceError::Internal(text),
    }
}

impl Backend for RaftBackend {
    fn status(&self) -> NodeStatus {
        to_node_status(&self.node.status())
    }

    fn watch_status(&self) -> watch::Receiver<NodeStatus> {
        self.status.clone()
    }

    async fn propose(&self, command: RaftCommand) -> Result<RaftResponse, ServiceError> {
        self.node.propose(command).await.map_err(to_service_error)
    }

    async fn linearizable_read(&self) -> Result<(), ServiceError> {
        self.node
            .linearizable_read()
            .await
            .map_err(to_service_error)
    }

    fn read<T>(&self, read: impl FnOnce(&mvcc::Store) -> T) -> T {
        self.node.read(read)
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<AppliedEvents>> {
        lock(&self.events).subscribe()
    }

    async fn member_add(
        &self,
        peer_urls: Vec<String>,
        is_learner: bool,
    ) -> Result<(Member, Vec<Member>), ServiceError> {
        self.node
            .member_add(peer_urls, is_learner)
            .await
            .map_err(to_service_error)
    }

    async fn member_remove(&self, id: u64) -> Result<Vec<Member>, ServiceError> {
        self.node.member_remove(id).await.map_err(to_service_error)
    }

    async fn member_update(
        &self,
        id: u64,
        peer_urls: Vec<String>,
    ) -> Result<Vec<Member>, ServiceError> {
        self.node
            .member_update(id, peer_urls)
            .await
            .map_err(to_service_error)
    }

    async fn member_promote(&self, id: u64) -> Result<Vec<Member>, ServiceError> {
        self.node.member_promote(id).await.map_err(to_service_error)
    }

    async fn move_leader(&self, target: u64) -> Result<(), ServiceError> {
        self.node
            .move_leader(target)
            .await
            .map_err(to_service_error)
    }

    async fn snapshot_bytes(&self) -> Result<Vec<u8>, ServiceError> {
        self.node.snapshot_bytes().await.map_err(to_service_error)
    }

    fn db_size(&self) -> u64 {
        self.node.db_size()
    }
}
