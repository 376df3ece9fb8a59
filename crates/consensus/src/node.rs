//! The running member: openraft plus the peer server, the proposer (group commit), the read
//! batcher and the status publisher, owned by one cancellation token and task tracker.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use etcd_proto::etcdserverpb::Member;
use etcd_proto::raftcmd::{RaftBatch, RaftBatchResponse, RaftCommand, RaftResponse};
use openraft::errors::{ClientWriteError, LinearizableReadError, RaftError};
use openraft::type_config::async_runtime::WatchReceiver;
use openraft::{Config, Raft, ReadPolicy, ServerState, SnapshotPolicy};
use storage::{
    AppliedEvents, Db, MemberNode, RaftRequest, SharedState, StateMachine, Storage, TypeConfig,
};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bootstrap;
use crate::config::{NodeConfig, RaftStatus};
use crate::error::ConsensusError;
use crate::forward::ForwardHandler;
use crate::network::{Network, PeerChannels};
use crate::pb::peer_server::PeerServer;
use crate::proposer::{self, Proposal};
use crate::reads::{self, ReadWaiter};
use crate::server::PeerService;
use crate::status;
use crate::tls::PeerTls;

/// The openraft instance of a member.
pub(crate) type RaftInstance = Raft<TypeConfig, StateMachine>;

/// How many proposals may wait for the proposer before `propose` pushes back.
const PROPOSAL_QUEUE: usize = 64 * 1024;
/// A snapshot is also taken once this many bytes of values were applied since the last one,
/// however few log entries carried them (one entry is a whole batch of writes, so `snapshot_count`
/// entries can be millions of puts): values move to the snapshot file when it is written, so
/// this bounds the values the member holds in memory. Each snapshot encodes the whole store, so
/// a smaller bound trades memory for snapshot work: at 32 MiB a member with 1M keys of 256 B
/// (≈ 300 MB encoded) writes a snapshot about every 130k puts.
const SNAPSHOT_VALUE_BYTES: u64 = 32 * 1024 * 1024;
/// How often the applied value bytes are compared with [`SNAPSHOT_VALUE_BYTES`].
const SNAPSHOT_VALUE_CHECK: Duration = Duration::from_secs(1);

/// Why the leader-side half of a request failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LeaderError {
    /// This member is not the leader (it may know who is). Nothing was proposed.
    #[error("not leader")]
    NotLeader(Option<u64>),
    /// Leadership could not be confirmed by a quorum.
    #[error("quorum not reachable")]
    NoQuorum,
    /// The entry was proposed but discarded by a leader change: commit status unknown.
    #[error("proposal discarded by a leader change")]
    Discarded,
    #[error("raft stopped")]
    Stopped,
    #[error("{0}")]
    Internal(String),
}

/// State shared by the member's tasks and its handle.
pub(crate) struct Core {
    pub(crate) config: NodeConfig,
    pub(crate) member_id: u64,
    pub(crate) cluster_id: u64,
    pub(crate) raft: RaftInstance,
    pub(crate) shared: Arc<SharedState>,
    pub(crate) db: Db,
    pub(crate) channels: PeerChannels,
    /// Log append counters of this member's storage.
    pub(crate) log_stats: Arc<storage::LogWriteStats>,
    /// Read-index rounds run by the read batcher (one per group of waiters).
    pub(crate) read_index_rounds: std::sync::atomic::AtomicU64,
    /// Client proposals, sent by `propose`, drained by the proposer task.
    pub(crate) proposals: mpsc::Sender<Proposal>,
    /// Serializes membership changes on the leader (held across the change's awaits; an async
    /// mutex because openraft's joint changes take two log entries).
    pub(crate) membership_lock: tokio::sync::Mutex<()>,
    /// Read-barrier waiters, sent by `linearizable_read`, drained by the read batcher task.
    pub(crate) reads: mpsc::Sender<ReadWaiter>,
    /// Published by the status task; receivers are the server layer and the HA agent.
    pub(crate) status: watch::Sender<RaftStatus>,
    pub(crate) cancel: CancellationToken,
    pub(crate) tasks: TaskTracker,
    /// Answers calls forwarded by followers (see [`crate::forward`]); set once, held weakly so
    /// that the layer above, which holds this member, does not keep itself alive through it.
    pub(crate) forward_handler: std::sync::OnceLock<std::sync::Weak<dyn ForwardHandler>>,
}

impl Core {
    /// The leader as openraft currently believes it, read without holding the borrow.
    pub(crate) fn current_leader(&self) -> Option<u64> {
        self.raft.metrics().borrow_watched().current_leader
    }

    /// Waits until some leader is known, up to `deadline`.
    pub(crate) async fn wait_for_leader(&self, deadline: Instant) -> Result<u64, ConsensusError> {
        let mut metrics = self.raft.metrics();
        loop {
            let leader = metrics.borrow_and_update().current_leader;
            if let Some(leader) = leader {
                return Ok(leader);
            }
            tokio::select! {
                changed = metrics.changed() => {
                    if changed.is_err() {
                        return Err(ConsensusError::Stopped);
                    }
                }
                _ = tokio::time::sleep_until(deadline) => return Err(ConsensusError::NoLeader),
                _ = self.cancel.cancelled() => return Err(ConsensusError::Stopped),
            }
        }
    }

    /// Waits until the local state machine applied `index`, up to `deadline`.
    pub(crate) async fn wait_applied(
        &self,
        index: u64,
        deadline: Instant,
    ) -> Result<(), ConsensusError> {
        let mut applied = self.shared.watch_applied_index();
        tokio::select! {
            result = applied.wait_for(|applied| *applied >= index) => {
                result.map(|_| ()).map_err(|_| ConsensusError::Stopped)
            }
            _ = tokio::time::sleep_until(deadline) => Err(ConsensusError::Timeout),
            _ = self.cancel.cancelled() => Err(ConsensusError::Stopped),
        }
    }

    /// Proposes `batch` as one log entry on this member, which must be the leader.
    /// Returns the responses and the entry's index once it is committed and applied here.
    pub(crate) async fn write_as_leader(
        &self,
        batch: RaftBatch,
    ) -> Result<(RaftBatchResponse, u64), LeaderError> {
        match self.raft.client_write(RaftRequest(batch)).await {
            Ok(reply) => Ok((reply.data.0, reply.log_id.index)),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => {
                Err(LeaderError::NotLeader(forward.leader_id))
            }
            Err(RaftError::APIError(ClientWriteError::LogEntryDiscarded(_))) => {
                Err(LeaderError::Discarded)
            }
            Err(RaftError::APIError(other)) => Err(LeaderError::Internal(other.to_string())),
            Err(RaftError::Fatal(_)) => Err(LeaderError::Stopped),
        }
    }

    /// A read index confirmed by a quorum heartbeat round (openraft ReadIndex) on the leader.
    pub(crate) async fn read_index_as_leader(&self) -> Result<u64, LeaderError> {
        match self.raft.get_read_log_id(ReadPolicy::ReadIndex).await {
            Ok((read_log_id, _)) => Ok(read_log_id.index()),
            Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(forward))) => {
                Err(LeaderError::NotLeader(forward.leader_id))
            }
            Err(RaftError::APIError(LinearizableReadError::QuorumNotEnough(_))) => {
                Err(LeaderError::NoQuorum)
            }
            Err(RaftError::Fatal(_)) => Err(LeaderError::Stopped),
        }
    }

    /// The member records of the effective membership, with learner flags.
    pub(crate) fn membership_nodes(&self) -> Vec<(u64, MemberNode, bool)> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow_watched();
        let membership = metrics.membership_config.membership();
        let voters: std::collections::BTreeSet<u64> = membership.voter_ids().collect();
        membership
            .nodes()
            .map(|(id, node)| (*id, node.clone(), !voters.contains(id)))
            .collect()
    }

    /// The peer URLs of member `id`, when the current membership has it: where calls for the
    /// leader (forwarded proposals, read indexes, membership changes, the layer above's calls)
    /// go.
    pub(crate) fn peer_urls_of(&self, id: u64) -> Option<Vec<String>> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow_watched();
        metrics
            .membership_config
            .membership()
            .nodes()
            .find(|(node_id, _)| **node_id == id)
            .map(|(_, node)| node.peer_urls.clone())
    }

    /// etcd's member list.
    pub(crate) fn members(&self) -> Vec<Member> {
        status::members_of(self.membership_nodes())
    }

    pub(crate) fn request_deadline(&self) -> Instant {
        Instant::now() + self.config.request_timeout
    }
}

/// A running Raft member. Cheap to clone.
#[derive(Clone)]
pub struct RaftNode {
    core: Arc<Core>,
}

/// openraft's configuration derived from the member's.
///
/// Election timing: etcd draws its election timer from [E, 2E) and a follower refuses votes for
/// E after the last heartbeat (its leader lease). openraft's lease is `election_timeout_max`,
/// so [E, 2E) would make every first election attempt after a leader's death fail against
/// the lease and a failover take 2E + [E, 2E) (measured: 3.5–4 s with E = 1 s). The timer is
/// therefore drawn from [E/2, E): the lease stays E as in etcd and the survivors elect a new
/// leader within about 1.5–2 E (measured with `examples/failover_time.rs`).
fn raft_config(config: &NodeConfig) -> Result<Config, ConsensusError> {
    let election_ms = (config.election_timeout.as_millis() as u64).max(10);
    let heartbeat_ms = (config.heartbeat_interval.as_millis() as u64).clamp(1, election_ms / 4);
    let snapshot_count = config.snapshot_count.max(1);
    Config {
        cluster_name: "pgwarden".to_string(),
        heartbeat_interval: heartbeat_ms,
        election_timeout_min: election_ms / 2,
        election_timeout_max: election_ms,
        // One entry is a whole group-commit batch: a few dozen per append RPC is plenty.
        max_payload_entries: 64,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(snapshot_count),
        // Like etcd's snapshot catch-up entries: keep a tail so slightly lagging followers
        // catch up by log, not by snapshot.
        max_in_snapshot_log_to_keep: snapshot_count.min(5000),
        install_snapshot_timeout: 30_000,
        enable_pre_vote: Some(true),
        // The state machine lives in memory and the committed id is persisted lazily, so a
        // restarted leader must not resume leadership without an election: its read index
        // (old noop, stale committed id) could be older than writes it acknowledged before the
        // restart. Re-electing commits a new noop first, which covers them.
        enable_leader_restore: Some(false),
        broadcast_submitted_on_append: Some(true),
        ..Default::default()
    }
    .validate()
    .map_err(|e| ConsensusError::Internal(format!("raft config: {e}")))
}

impl RaftNode {
    /// Opens (or creates) the member's storage, starts openraft and the peer server on `peer_listener`,
    /// bootstraps a new cluster when `initial_cluster_state` is New and the data dir is empty,
    /// and returns once the member is running (not necessarily with a leader).
    pub async fn start(
        config: NodeConfig,
        peer_listener: tokio::net::TcpListener,
    ) -> Result<RaftNode, ConsensusError> {
        Self::start_with_tls(config, peer_listener, PeerTls::default()).await
    }

    /// [`RaftNode::start`] with TLS on the peer transport: the peer server serves TLS when
    /// `tls.server` is set (requiring client certificates when it says so), and `https://` peer
    /// URLs are dialed with `tls.client`. Unusable TLS material fails the start.
    pub async fn start_with_tls(
        config: NodeConfig,
        peer_listener: tokio::net::TcpListener,
        tls: PeerTls,
    ) -> Result<RaftNode, ConsensusError> {
        // Built before anything starts, so unusable TLS material fails the start cleanly.
        let peer_server_tls = tls
            .server_config()
            .map_err(|e| ConsensusError::Internal(format!("peer TLS: {e}")))?
            .map(Arc::new);
        let peer_client_tls = tls
            .client_config()
            .map_err(|e| ConsensusError::Internal(format!("peer TLS: {e}")))?;
        let data_dir = config.data_dir.clone();
        let storage = tokio::task::spawn_blocking(move || {
            Storage::open(&data_dir, storage::DEFAULT_EVENT_CAPACITY)
        })
        .await
        .map_err(|e| ConsensusError::Internal(format!("open storage: {e}")))?
        .map_err(|e| ConsensusError::Internal(format!("open storage: {e}")))?;
        let channels = PeerChannels::new(config.election_timeout.min(Duration::from_secs(1)))
            .with_tls(peer_client_tls);
        let plan = bootstrap::plan(
            &config,
            &storage.db,
            &channels,
            &peer_listener,
            peer_server_tls.as_ref(),
        )
        .await?;
        let raft_config = Arc::new(raft_config(&config)?);
        let network = Network {
            channels: channels.clone(),
        };
        let raft = Raft::new(
            plan.identity.member_id,
            raft_config,
            network,
            storage.log_store.clone(),
            storage.state_machine.clone(),
        )
        .await
        .map_err(|e| ConsensusError::Internal(format!("start raft: {e}")))?;

        let (proposals_tx, proposals_rx) = mpsc::channel(PROPOSAL_QUEUE);
        let (reads_tx, reads_rx) = mpsc::channel(PROPOSAL_QUEUE);
        let core = Arc::new(Core {
            config,
            member_id: plan.identity.member_id,
            cluster_id: plan.identity.cluster_id,
            raft,
            shared: storage.shared.clone(),
            db: storage.db.clone(),
            channels,
            log_stats: storage.log_store.write_stats(),
            read_index_rounds: std::sync::atomic::AtomicU64::new(0),
            proposals: proposals_tx,
            reads: reads_tx,
            membership_lock: tokio::sync::Mutex::new(()),
            status: watch::Sender::new(RaftStatus::default()),
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
            forward_handler: std::sync::OnceLock::new(),
        });

        let service = PeerServer::new(PeerService { core: core.clone() })
            .max_decoding_message_size(64 * 1024 * 1024)
            .max_encoding_message_size(64 * 1024 * 1024);
        let cancel = core.cancel.clone();
        let router = tonic::transport::Server::builder().add_service(service);
        let served = match peer_server_tls {
            Some(config) => {
                let incoming = crate::tls_transport::accept(
                    peer_listener,
                    config,
                    &core.tasks,
                    cancel.clone(),
                );
                futures::future::Either::Left(
                    router.serve_with_incoming_shutdown(incoming, cancel.cancelled_owned()),
                )
            }
            None => {
                // tonic ignores `tcp_nodelay` for a listener of our own: set it on every
                // connection, or a follower's small replies wait behind Nagle for the
                // leader's delayed ACK (40 ms stalls of every write, several times a second
                // under load).
                let incoming = futures::StreamExt::map(
                    tokio_stream::wrappers::TcpListenerStream::new(peer_listener),
                    |accepted: std::io::Result<tokio::net::TcpStream>| {
                        accepted.inspect(|stream| {
                            if let Err(error) = stream.set_nodelay(true) {
                                tracing::warn!(%error, "set TCP_NODELAY on a peer connection");
                            }
                        })
                    },
                );
                futures::future::Either::Right(
                    router.serve_with_incoming_shutdown(incoming, cancel.cancelled_owned()),
                )
            }
        };
        core.tasks.spawn(async move {
            if let Err(error) = served.await {
                tracing::error!(%error, "peer server failed");
            }
        });

        if let Some(initial_members) = plan.initialize {
            // Every initial member initializes with the same membership (same IDs, names, peer
            // URLs, no client URLs), which openraft documents as safe; NotAllowed means the
            // group already formed (another member's log reached us first).
            match core.raft.initialize(initial_members).await {
                Ok(()) => {
                    tracing::info!(member_id = %format!("{:x}", core.member_id), "initialized new cluster")
                }
                Err(RaftError::APIError(error)) => {
                    tracing::info!(%error, "cluster already initialized")
                }
                Err(RaftError::Fatal(error)) => {
                    return Err(ConsensusError::Internal(format!("initialize: {error}")));
                }
            }
        }

        core.tasks.spawn(proposer::run(core.clone(), proposals_rx));
        core.tasks.spawn(reads::run(core.clone(), reads_rx));
        core.tasks.spawn(status::run(core.clone()));
        core.tasks.spawn(snapshot_when_values_pile_up(core.clone()));
        core.tasks
            .spawn(crate::membership::publish_self(core.clone()));
        if plan.promote_self {
            core.tasks.spawn(crate::join::promote_self(core.clone()));
        }
        Ok(RaftNode { core })
    }

    pub fn member_id(&self) -> u64 {
        self.core.member_id
    }

    pub fn cluster_id(&self) -> u64 {
        self.core.cluster_id
    }

    /// Lets `handler` answer the calls followers forward to this member (see
    /// [`ForwardHandler`]) for as long as its owner keeps it alive. The first registration
    /// stays; a later one is refused (false).
    pub fn serve_forwarded(&self, handler: std::sync::Weak<dyn ForwardHandler>) -> bool {
        self.core.forward_handler.set(handler).is_ok()
    }

    /// Hands a leader-only call of the layer above to the member this one believes leads, over
    /// the peer transport (this member's own handler when it leads). No leader known, or the
    /// leader unreachable: `Unavailable`. Unbounded in time: the caller sets the deadline.
    pub async fn forward_to_leader(
        &self,
        method: &str,
        body: bytes::Bytes,
    ) -> Result<bytes::Bytes, tonic::Status> {
        crate::forward::to_leader(&self.core, method, body).await
    }

    /// Replicates `command` (group commit: concurrent proposals share one log entry and one fsync),
    /// forwarding to the leader when this member is a follower; returns apply's answer once the
    /// command is committed and applied locally.
    pub async fn propose(&self, command: RaftCommand) -> Result<RaftResponse, ConsensusError> {
        let (reply_tx, reply_rx) = oneshot::channel();
        let deadline = self.core.request_deadline();
        let proposal = Proposal {
            command,
            deadline,
            reply: reply_tx,
        };
        self.core
            .proposals
            .send(proposal)
            .await
            .map_err(|_| ConsensusError::Stopped)?;
        // The proposer answers every proposal by its deadline; the outer bound is a backstop.
        match tokio::time::timeout_at(deadline + Duration::from_millis(500), reply_rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ConsensusError::Stopped),
            Err(_) => Err(ConsensusError::Timeout),
        }
    }

    /// Replicates `command` only while this member leads, never forwarding it: for decisions a
    /// leader takes from its own in-memory state (lease expiry). A member that lost the lead
    /// gets `NoLeader` instead of handing its stale decision to the next leader; an entry it
    /// appended but could not commit is discarded by Raft when it rejoins.
    pub async fn propose_as_leader(
        &self,
        command: RaftCommand,
    ) -> Result<RaftResponse, ConsensusError> {
        let batch = RaftBatch {
            commands: vec![command],
        };
        let deadline = self.core.request_deadline();
        match tokio::time::timeout_at(deadline, self.core.write_as_leader(batch)).await {
            Err(_) => Err(ConsensusError::Timeout),
            Ok(Ok((mut responses, _))) => responses
                .responses
                .pop()
                .ok_or_else(|| ConsensusError::Internal("apply answered no response".to_owned())),
            Ok(Err(LeaderError::NotLeader(_))) => Err(ConsensusError::NoLeader),
            Ok(Err(LeaderError::Discarded)) => Err(ConsensusError::LeaderChanged),
            Ok(Err(LeaderError::Stopped)) => Err(ConsensusError::Stopped),
            Ok(Err(LeaderError::NoQuorum)) => Err(ConsensusError::Timeout),
            Ok(Err(LeaderError::Internal(message))) => Err(ConsensusError::Internal(message)),
        }
    }

    /// Read barrier: returns once this member's applied state includes everything committed
    /// before the call (openraft read index). Concurrent calls share one round.
    pub async fn linearizable_read(&self) -> Result<(), ConsensusError> {
        let (reply_tx, reply_rx) = oneshot::channel();
        let deadline = self.core.request_deadline();
        self.core
            .reads
            .send(ReadWaiter {
                deadline,
                reply: reply_tx,
            })
            .await
            .map_err(|_| ConsensusError::Stopped)?;
        match tokio::time::timeout_at(deadline + Duration::from_millis(500), reply_rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ConsensusError::Stopped),
            Err(_) => Err(ConsensusError::Timeout),
        }
    }

    /// Runs `read` against the local applied state (a consistent point in time).
    pub fn read<T>(&self, read: impl FnOnce(&mvcc::Store) -> T) -> T {
        let state = self.core.shared.read();
        read(&state.store)
    }

    /// Applied events in log order. A lagging receiver gets `Lagged` and must replay from mvcc history.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<AppliedEvents>> {
        self.core.shared.subscribe()
    }

    /// The member's view right now (leader, term, indexes, members).
    pub fn status(&self) -> RaftStatus {
        status::current(&self.core)
    }

    /// Changes whenever leader, term or membership change.
    pub fn watch_status(&self) -> watch::Receiver<RaftStatus> {
        self.core.status.subscribe()
    }

    /// Whether openraft currently runs this member as the leader.
    pub fn is_leader(&self) -> bool {
        self.core.raft.metrics().borrow_watched().state == ServerState::Leader
    }

    /// (log append commits, entries appended) since this member started: each commit is one
    /// fsync, each entry one group-commit batch.
    pub fn log_write_stats(&self) -> (u64, u64) {
        self.core.log_stats.snapshot()
    }

    /// Hands the log store the histograms its appends record into (commit time, write time,
    /// commands per entry). Only the first call takes effect; false for later ones.
    pub fn attach_log_histograms(&self, histograms: storage::LogHistograms) -> bool {
        self.core.log_stats.histograms.set(histograms).is_ok()
    }

    /// Read-index rounds run since this member started (each serves every read queued before it).
    pub fn read_index_rounds(&self) -> u64 {
        self.core
            .read_index_rounds
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The last log index included in this member's latest snapshot, if it has one.
    pub fn snapshot_index(&self) -> Option<u64> {
        self.core
            .raft
            .metrics()
            .borrow_watched()
            .snapshot
            .as_ref()
            .map(|id| id.index)
    }

    /// The last log index this member has purged from its log, if any. A leader postpones a purge
    /// while a replication request in flight still reads the entries, so this may trail the
    /// snapshot index.
    pub fn purged_index(&self) -> Option<u64> {
        self.core
            .raft
            .metrics()
            .borrow_watched()
            .purged
            .as_ref()
            .map(|id| id.index)
    }

    /// A point-in-time copy of the state machine (for Maintenance.Snapshot).
    pub async fn snapshot_bytes(&self) -> Result<Vec<u8>, ConsensusError> {
        let shared = self.core.shared.clone();
        tokio::task::spawn_blocking(move || shared.encode_snapshot().1)
            .await
            .map_err(|e| ConsensusError::Internal(format!("snapshot: {e}")))
    }

    /// Size in bytes of the member's storage files.
    pub fn db_size(&self) -> u64 {
        self.core.db.size()
    }

    /// Stops openraft and the peer server; flushes storage.
    /// Order: stop accepting proposals and peer traffic, stop openraft, wait for every task.
    /// Storage needs no flush of its own: every redb commit that mattered was already durable.
    pub async fn shutdown(&self) -> Result<(), ConsensusError> {
        self.core.cancel.cancel();
        self.core.tasks.close();
        let raft_result = self.core.raft.shutdown().await;
        self.core.tasks.wait().await;
        raft_result.map_err(|e| ConsensusError::Internal(format!("stop raft: {e}")))
    }

    pub(crate) fn core(&self) -> &Arc<Core> {
        &self.core
    }
}

/// The initial membership's nodes, identical on every initial member.
pub(crate) type InitialMembers = BTreeMap<u64, MemberNode>;

/// Asks openraft for a snapshot whenever [`SNAPSHOT_VALUE_BYTES`] of values were applied since the
/// last one (openraft ignores the request while a snapshot is being built).
async fn snapshot_when_values_pile_up(core: Arc<Core>) {
    let mut check = tokio::time::interval(SNAPSHOT_VALUE_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = core.cancel.cancelled() => break,
            _ = check.tick() => {}
        }
        if core.shared.unsnapshotted_value_bytes() >= SNAPSHOT_VALUE_BYTES
            && core.raft.trigger().snapshot().await.is_err()
        {
            // openraft stopped; the member is shutting down or failed and says so elsewhere.
            break;
        }
    }
}
