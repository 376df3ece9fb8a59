//! The embedded store of `pgwarden run`: a Raft member named after its peer address, its
//! etcd v3 API, and the in-process backend the agent uses (the same service instance, so
//! the agent's leases are kept by the lease keeper that serves etcd clients).
//!
//! Every node of the `raft:` group derives the same initial cluster from its own
//! `self_addr` + `partner_addrs`: members are named by their peer address and their IDs are
//! derived from the peer URL (`http://<addr>`, `https://` with peer TLS) and a token made from the scope, so the three
//! nodes form one group without listing names. A non-empty data directory restarts the member
//! it holds. With an empty one the member first asks its partners over the peer transport
//! whether a group already runs (`InitialClusterState::JoinOrNew`): a group that does not list
//! this node (a fourth node whose partners are the three running ones) gets it added as a
//! learner, promoted to a voter once in sync; otherwise the initial cluster is created.
//!
//! Next to the etcd API the member runs what `pgwarden etcd` runs: the lease keeper, the
//! metrics observer (`/metrics` on the etcd API port) and auto-compaction (periodic, keeping
//! [`COMPACTION_RETENTION`] of history); the backend quota is etcd's default.
//!
//! TLS (`raft.cert_file` and the other keys of `agent::config::raft_tls`) goes through the same
//! code as `pgwarden etcd`'s flags: the etcd API listener handshakes each connection with
//! [`etcd_server::tls::ClientTls`] (gRPC and the JSON gateway on one port), and with peer TLS
//! the member's peer URLs, and so its partners', are `https://` (the member IDs are derived
//! from them, so every node of a group must agree on peer TLS), served and dialed with
//! [`consensus::PeerTls`].

use std::sync::Arc;
use std::time::Duration;

use agent::config::RaftConfig;
use anyhow::Context;
use consensus::{InitialClusterState, NodeConfig, PeerTls, RaftNode};
use dcs::LocalStore;
use etcd_server::lease::{Clock, TokioClock};
use etcd_server::space::AutoCompaction;
use etcd_server::{ServerConfig, Service};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::client_listeners;
use crate::client_listeners::ClientListener;

/// Raft timings: etcd's defaults (100 ms heartbeat, 1 s election timeout).
const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(100);
const ELECTION_TIMEOUT: Duration = Duration::from_millis(1000);
const LEASE_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// History kept by auto-compaction. The agents rewrite their member keys every cycle, so without
/// compaction the keyspace's history grows until the backend quota raises NOSPACE; the agents
/// watch from the current revision and never read old ones.
const COMPACTION_RETENTION: Duration = Duration::from_secs(3600);

/// How often the primary's host checks that it is not also the store's Raft leader.
const LEADER_PLACEMENT_INTERVAL: Duration = Duration::from_millis(500);

pub struct EmbeddedStore {
    node: RaftNode,
    service: Service<RaftNode>,
    stop: CancellationToken,
    tasks: TaskTracker,
    serving: JoinHandle<std::io::Result<()>>,
}

fn peer_url(scheme: &str, addr: &std::net::SocketAddr) -> String {
    format!("{scheme}://{addr}")
}

fn scheme(tls: bool) -> &'static str {
    if tls { "https" } else { "http" }
}

impl EmbeddedStore {
    pub async fn start(scope: &str, raft: &RaftConfig) -> anyhow::Result<EmbeddedStore> {
        // Read again (RunConfig::load checked them): the material is not kept in the config.
        let tls = raft.load_tls().context("load the raft TLS files")?;
        let client_tls = tls
            .client
            .as_ref()
            .map(etcd_server::tls::ClientTls::new)
            .transpose()
            .context("raft TLS (cert_file, key_file, trusted_ca_file)")?;
        let peer_tls = PeerTls {
            server: tls.peer.clone(),
            client: tls.peer,
        };
        let peer_scheme = scheme(raft.peer_uses_tls());
        let peer_listener = TcpListener::bind(raft.self_addr)
            .await
            .with_context(|| format!("bind raft.self_addr {}", raft.self_addr))?;
        let api_addr = raft
            .etcd_api
            .unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
        let api_listener = TcpListener::bind(api_addr)
            .await
            .with_context(|| format!("bind raft.etcd_api {api_addr}"))?;
        let api_url = format!(
            "{}://{}",
            scheme(client_tls.is_some()),
            api_listener.local_addr()?
        );
        let mut initial_cluster = vec![(
            raft.self_addr.to_string(),
            vec![peer_url(peer_scheme, &raft.self_addr)],
        )];
        for partner in &raft.partner_addrs {
            initial_cluster.push((partner.to_string(), vec![peer_url(peer_scheme, partner)]));
        }
        let node = RaftNode::start_with_tls(
            NodeConfig {
                name: raft.self_addr.to_string(),
                data_dir: raft.data_dir.clone(),
                peer_urls: vec![peer_url(peer_scheme, &raft.self_addr)],
                client_urls: vec![api_url.clone()],
                initial_cluster,
                initial_cluster_state: InitialClusterState::JoinOrNew,
                initial_cluster_token: format!("pgwarden-{scope}"),
                heartbeat_interval: HEARTBEAT_INTERVAL,
                election_timeout: ELECTION_TIMEOUT,
                snapshot_count: 10_000,
                request_timeout: consensus::DEFAULT_REQUEST_TIMEOUT,
            },
            peer_listener,
            peer_tls,
        )
        .await
        .context("start the Raft member")?;
        tracing::info!(
            member_id = %format!("{:x}", node.member_id()),
            cluster_id = %format!("{:x}", node.cluster_id()),
            etcd_api = %api_url,
            "Raft member started"
        );
        let server_config = ServerConfig {
            election_timeout: ELECTION_TIMEOUT,
            // An expired leader lease is noticed within 100 ms instead of etcd's 500 ms: it
            // is on the failover's critical path.
            lease_check_interval: LEASE_CHECK_INTERVAL,
            auto_compaction: Some(AutoCompaction::Periodic {
                retention: COMPACTION_RETENTION,
            }),
            ..ServerConfig::default()
        };
        let lease_check_interval = server_config.lease_check_interval;
        let tasks = TaskTracker::new();
        let stop = CancellationToken::new();
        let clock: Arc<dyn Clock> = Arc::new(TokioClock);
        let service = Service::new(
            node.clone(),
            server_config,
            clock.clone(),
            tasks.clone(),
            stop.clone(),
        );
        tasks.spawn(
            service
                .lease_keeper()
                .clone()
                .run(lease_check_interval, stop.clone()),
        );
        etcd_server::server::spawn_service_tasks(&service, clock, &stop);
        let listeners = vec![ClientListener {
            listener: api_listener,
            tls: client_tls,
        }];
        let serving = {
            let service = service.clone();
            let tasks = tasks.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let graceful = stop.clone().cancelled_owned();
                client_listeners::serve_service(listeners, &service, &tasks, &stop, graceful).await
            })
        };
        Ok(EmbeddedStore {
            node,
            service,
            stop,
            tasks,
            serving,
        })
    }

    /// The agent's in-process view of this member's store. The agent is a trusted in-process
    /// caller, so it keeps working after an operator enables etcd auth.
    pub fn backend(&self) -> LocalStore<RaftNode> {
        LocalStore::new(
            self.service
                .with_caller(etcd_server::service::AuthInfo::Internal),
        )
    }

    /// Answers whether this member currently leads the store's Raft group (for `/metrics`).
    pub fn raft_leader_probe(&self) -> rest::StoreLeaderProbe {
        let node = self.node.clone();
        std::sync::Arc::new(move || node.is_leader())
    }

    /// Keeps the store's Raft leadership off this host while it runs the PostgreSQL primary
    /// (design.md §4, "the failover time budget"): if both died together, a new Raft leader
    /// would first have to restart every lease at a full TTL, adding an election and a whole
    /// TTL to the failover. Runs until `stop`.
    pub fn keep_raft_leader_off_primary(
        &self,
        status: tokio::sync::watch::Receiver<rest::PatroniStatus>,
        stop: CancellationToken,
    ) -> JoinHandle<()> {
        let node = self.node.clone();
        tokio::spawn(async move {
            let mut attempt: usize = 0;
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(LEADER_PLACEMENT_INTERVAL) => {}
                }
                let is_primary = {
                    let status = status.borrow();
                    status.holds_leader_key && status.role == "primary"
                };
                if !is_primary || !node.is_leader() {
                    continue;
                }
                let own_id = node.member_id();
                let others: Vec<u64> = node
                    .status()
                    .members
                    .iter()
                    .filter(|member| member.id != own_id && !member.is_learner)
                    .map(|member| member.id)
                    .collect();
                if others.is_empty() {
                    continue;
                }
                // Rotate through the voters so one unreachable member does not block the move.
                let target = others[attempt % others.len()];
                attempt = attempt.wrapping_add(1);
                match node.move_leader(target).await {
                    Ok(()) => tracing::info!(
                        target = %format!("{target:x}"),
                        "moved the store's Raft leadership off the PostgreSQL primary's host"
                    ),
                    Err(error) => tracing::debug!("moving the Raft leadership failed: {error}"),
                }
            }
        })
    }

    /// Stops the etcd API (open streams end), the lease keeper, then the Raft member.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.stop.cancel();
        match self.serving.await {
            Ok(Err(error)) => tracing::error!("etcd API stopped with an error: {error}"),
            Err(error) => tracing::error!("etcd API task failed: {error}"),
            Ok(Ok(())) => {}
        }
        self.tasks.close();
        self.tasks.wait().await;
        self.node.shutdown().await.context("stop the Raft member")
    }
}
