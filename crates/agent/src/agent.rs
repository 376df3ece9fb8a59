//! The HA loop: wake → observe → `ha::decide` → act → publish, once per cycle.
//!
//! Wake-ups: the decision's `next_wakeup` (at most `loop_wait`), a change under the scope's
//! prefix in the store (leader key deleted, failover key written, ...), the postmaster's exit
//! (a crash is seen at once), a postmaster it started accepting connections, or a long action
//! finishing.
//!
//! The lease: every member keeps one store lease (TTL = `ttl`) alive with one keepalive at the
//! start of each cycle; its member key, and the leader key while it leads, are bound to it.
//! The deadline handed to `decide` is the send time of the last successful keepalive + `ttl`
//! − [`LEASE_SAFETY_MARGIN`] on the agent's monotonic clock (design invariant 6): a primary
//! that cannot renew demotes before the store can have expired its lease. While PostgreSQL
//! runs as primary no store call waits past that deadline, so a store that hangs rather than
//! fails still lets the cycle reach `decide` in time.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use dcs::{Expect, Keys, KvBackend, Snapshot};
use futures::StreamExt;
use ha::{
    Action, ClusterView, DataDirState, Decision, Divergence, DynamicConfig, LocalPostgres,
    LongAction, LongActionKind, Lsn, MemberName, Observation, OwnLease, PgRole, ProcessState,
    StoreView, SystemId, Timeline,
};
use postgres::{AdoptedPostmaster, Postmaster, ServerFacts};
use rest::PatroniStatus;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::RunConfig;
use crate::pg::{LocalPg, has_standby_signal};

/// Subtracted from `ttl` for the primary's own lease deadline: covers the store's lease-check
/// interval (500 ms) and clock-rate differences between hosts.
pub const LEASE_SAFETY_MARGIN: Duration = Duration::from_secs(1);

/// Why the agent stopped on its own.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("stopping: {0}")]
    Fatal(String),
}

/// A long action running on its own task so the loop keeps renewing the lease meanwhile.
/// It ends with a started postmaster (or an error message).
pub(crate) struct LongTask {
    pub kind: LongActionKind,
    pub started_at: ha::Instant,
    pub handle: JoinHandle<Result<Postmaster, String>>,
}

/// The agent of one member. Owns the postmaster child and the store lease.
pub struct Agent<B: KvBackend> {
    pub(crate) store: B,
    pub(crate) keys: Keys,
    pub(crate) config: RunConfig,
    pub(crate) pg: LocalPg,
    pub(crate) origin: tokio::time::Instant,
    pub(crate) defaults: DynamicConfig,
    /// The postmaster this agent started (its exit is seen at once).
    pub(crate) postmaster: Option<Postmaster>,
    /// A postmaster found running at agent start (not our child).
    pub(crate) adopted: Option<AdoptedPostmaster>,
    /// Set when we stopped PostgreSQL ourselves: its exit is not a crash.
    pub(crate) stop_requested: bool,
    /// When this agent started the postmaster it is waiting on; cleared once it answers. Only
    /// a start sets it, so a postmaster that exits while it is set failed to start.
    pub(crate) started_at: Option<ha::Instant>,
    /// Since when a postmaster that had answered (or was adopted) has not answered: it is
    /// reported as starting, but its exit is a crash, not a failed start.
    pub(crate) unresponsive_since: Option<ha::Instant>,
    /// When PostgreSQL was first seen crashed in this outage. Kept over restarts that fail
    /// and cleared once it runs (or is stopped on purpose), so `primary_start_timeout`
    /// counts from the crash, not from the latest attempt.
    pub(crate) crashed_since: Option<ha::Instant>,
    pub(crate) stopped_since: Option<ha::Instant>,
    pub(crate) last_start_failed: bool,
    pub(crate) long_task: Option<LongTask>,
    pub(crate) lease: Option<i64>,
    /// Send time of the last successful keepalive of `lease`.
    pub(crate) lease_renewed_at: Option<tokio::time::Instant>,
    /// The TTL the leader key's lease was granted with (see `lease`), for the primary's deadline.
    pub(crate) lease_ttl: Duration,
    /// The `ttl` the current lease was requested with (a change in `/config` replaces it).
    pub(crate) lease_requested_ttl: Duration,
    /// The lease keepalive of this cycle succeeded.
    pub(crate) keepalive_ok: bool,
    /// We hold the leader key as far as we know (set on acquire/renew, cleared on loss).
    pub(crate) holds_leader: bool,
    pub(crate) snapshot: Option<Snapshot>,
    pub(crate) last_config: DynamicConfig,
    pub(crate) previous_leader: Option<MemberName>,
    pub(crate) previous_members: Vec<ha::Member>,
    pub(crate) leader_missing_since: Option<ha::Instant>,
    pub(crate) upstream: Option<MemberName>,
    pub(crate) last_received: Option<Lsn>,
    pub(crate) can_rewind: bool,
    pub(crate) facts: Option<ServerFacts>,
    pub(crate) applied_parameters: BTreeMap<String, String>,
    /// Parameters whose configured value waits for a PostgreSQL restart.
    pub(crate) pending_restart: crate::pending_restart::PendingRestart,
    pub(crate) last_member_json: Option<Bytes>,
    pub(crate) last_status_json: Option<Bytes>,
    pub(crate) callbacks: postgres::callbacks::CallbackRunner,
    /// When `pre_promote` last refused a promotion (the node skips leader races for `ttl`).
    pub(crate) pre_promote_failed_at: Option<ha::Instant>,
    pub(crate) status: watch::Sender<PatroniStatus>,
    pub(crate) last_decision: Option<Decision>,
    /// Synchronous mode: what the primary set and when.
    pub(crate) sync: crate::sync::SyncState,
    /// Set when this agent starts a postmaster: the loop wakes once as soon as it accepts
    /// connections, so `/patroni` and the member key report it running at once rather than
    /// up to `loop_wait` later. Cleared by that wake-up.
    pub(crate) wake_when_ready: bool,
    /// Restart, reload and reinitialize requests from the REST API ([`crate::AgentControl`]
    /// holds the sender); run between cycles. `None` when no REST API is wired.
    pub(crate) commands: Option<crate::commands::CommandReceiver>,
    /// The configuration file, read again on `POST /reload` and SIGHUP (`None`: nothing to
    /// re-read, as in tests that build the configuration in memory).
    pub(crate) config_file: Option<std::path::PathBuf>,
    pub(crate) watchdog: crate::watchdog::NodeWatchdog,
    /// Asks the other members `GET /patroni` in the leader race (http, or https with the
    /// `ctl:`/`restapi:` TLS of [`RunConfig::rest_client`]); plain http until
    /// [`Agent::with_rest_client`].
    pub(crate) rest_client: rest::client::RestClient,
}

impl<B: KvBackend> Agent<B> {
    pub fn new(
        store: B,
        config: RunConfig,
        run_as: postgres::RunAs,
        status: watch::Sender<PatroniStatus>,
    ) -> Self {
        let defaults = config.dynamic_defaults();
        let lease_ttl = crate::lease::granted_ttl(defaults.ttl);
        let lease_requested_ttl = defaults.ttl;
        let pg = LocalPg::new(&config, run_as.clone());
        let mut watchdog = crate::watchdog::NodeWatchdog::new(config.watchdog.clone());
        watchdog.check(defaults.ttl, defaults.loop_wait);
        let adopted = AdoptedPostmaster::from_data_dir(&pg.data_dir)
            .ok()
            .flatten();
        Self {
            keys: Keys::new(&config.namespace, &config.scope),
            store,
            pg,
            origin: tokio::time::Instant::now(),
            last_config: defaults.clone(),
            defaults,
            config,
            postmaster: None,
            adopted,
            stop_requested: false,
            started_at: None,
            unresponsive_since: None,
            crashed_since: None,
            stopped_since: None,
            last_start_failed: false,
            long_task: None,
            lease: None,
            lease_renewed_at: None,
            lease_ttl,
            lease_requested_ttl,
            keepalive_ok: false,
            holds_leader: false,
            snapshot: None,
            previous_leader: None,
            previous_members: Vec::new(),
            leader_missing_since: None,
            upstream: None,
            last_received: None,
            can_rewind: true,
            facts: None,
            applied_parameters: BTreeMap::new(),
            pending_restart: Default::default(),
            last_member_json: None,
            last_status_json: None,
            callbacks: postgres::callbacks::CallbackRunner::new(run_as),
            pre_promote_failed_at: None,
            status,
            last_decision: None,
            sync: crate::sync::SyncState::default(),
            wake_when_ready: false,
            commands: None,
            config_file: None,
            watchdog,
            rest_client: rest::client::RestClient::default(),
        }
    }

    /// The file the configuration was loaded from: `POST /reload` reads it again.
    pub fn with_config_file(mut self, path: std::path::PathBuf) -> Self {
        self.config_file = Some(path);
        self
    }

    /// The client the leader race asks `https://` members with ([`RunConfig::rest_client`]).
    pub fn with_rest_client(mut self, rest_client: rest::client::RestClient) -> Self {
        self.rest_client = rest_client;
        self
    }

    pub(crate) fn now(&self) -> ha::Instant {
        ha::Instant(self.origin.elapsed())
    }

    pub(crate) fn me(&self) -> MemberName {
        MemberName::new(&self.config.name)
    }

    /// Our own lease deadline while we hold the leader key (design invariant 6): the send
    /// time of the last successful keepalive + the lease's TTL − [`LEASE_SAFETY_MARGIN`];
    /// already passed when we lead without ever having renewed.
    pub(crate) fn own_lease_deadline(&self) -> Option<tokio::time::Instant> {
        if !self.holds_leader {
            return None;
        }
        Some(match self.lease_renewed_at {
            Some(renewed) => renewed + self.lease_ttl.saturating_sub(LEASE_SAFETY_MARGIN),
            None => self.origin,
        })
    }

    /// How long one store call of this cycle may wait: `retry_timeout`, except while this
    /// node acts as primary under the leader key, where no call may run past the lease
    /// deadline. A store that stops answering without failing (lost quorum, hung peers) then
    /// still lets the cycle reach `decide` by the deadline and demote, instead of after the
    /// keepalive, the read and the refresh have each used up `retry_timeout`.
    pub(crate) fn store_call_timeout(&self) -> Duration {
        let retry_timeout = self.last_config.retry_timeout;
        match self.own_lease_deadline() {
            Some(deadline) if self.acting_as_primary() => {
                retry_timeout.min(deadline.saturating_duration_since(tokio::time::Instant::now()))
            }
            _ => retry_timeout,
        }
    }

    /// PostgreSQL runs (or starts) as a primary, as far as the last observation knows: it
    /// may accept writes, so the lease deadline binds it.
    pub(crate) fn acting_as_primary(&self) -> bool {
        let process_alive = self.postmaster.is_some() || self.adopted.is_some();
        process_alive && self.configured_as_primary()
    }

    /// PostgreSQL runs as a primary by the last observation, or, when the last probe got no
    /// answer (a busy server, a full connection limit), by its data directory: no
    /// `standby.signal`.
    pub(crate) fn configured_as_primary(&self) -> bool {
        match &self.facts {
            Some(facts) => !facts.in_recovery,
            None => !has_standby_signal(&self.pg.data_dir),
        }
    }

    /// Runs cycles until `shutdown`; then releases the leader key and stops PostgreSQL
    /// (fast) if this node is the primary, and revokes the lease.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), AgentError> {
        let mut changes = self.store.watch_prefix(self.keys.prefix());
        let outcome = loop {
            let wakeup = match self.cycle().await {
                Ok(wakeup) => wakeup,
                Err(error) => break Err(error),
            };
            let sleep_until = self.origin + wakeup.0;
            let keys = self.keys.clone();
            let holds_leader = self.holds_leader;
            let wait_ready = self.wake_when_ready && self.postmaster.is_some();
            // The exit of a postmaster that has accepted connections is a crash, handled at
            // once; one that never came up (a failed start) is retried at the next regular
            // wake-up, not in a tight loop.
            let watch_exit = !self.wake_when_ready;
            let mut became_ready = false;
            let mut command = None;
            let stop = loop {
                tokio::select! {
                    () = shutdown.cancelled() => break true,
                    () = tokio::time::sleep_until(sleep_until) => break false,
                    changed = changes.next() => match changed {
                        // Only keys that change a decision wake the loop early: member keys
                        // and `/status` change every cycle somewhere and would make the
                        // members' cycles chase each other (the timer picks them up).
                        Some(changed) if !changed.is_empty()
                            && !changed.iter().any(|key| wakes_the_loop(&keys, key, holds_leader)) => continue,
                        Some(_) => break false,
                        None => {
                            // The store stopped: cycle on the timer (it reports unreachable).
                            changes = futures::stream::pending().boxed();
                        }
                    },
                    _ = postmaster_exit(&mut self.postmaster), if watch_exit => break false,
                    _ = long_task_done(&mut self.long_task) => break false,
                    () = accepts_connections(&self.pg), if wait_ready => {
                        became_ready = true;
                        break false;
                    }
                    Some(received) = next_command(&mut self.commands) => {
                        command = Some(received);
                        break false;
                    }
                }
            };
            if let Some(command) = command {
                self.run_command(command).await;
            }
            if became_ready {
                self.wake_when_ready = false;
            }
            if stop {
                break Ok(());
            }
        };
        self.shutdown().await;
        outcome
    }

    /// Leaves the cluster cleanly: a primary stops PostgreSQL (fast, so the last WAL is
    /// flushed to replicas) and then deletes the leader key so a replica takes over at once.
    async fn shutdown(&mut self) {
        if let Some(task) = self.long_task.take() {
            task.handle.abort();
        }
        let timeout = self.last_config.retry_timeout;
        let primary = self.holds_leader;
        if self.postmaster.is_some() {
            // `before_stop`, the stop, then `on_stop` (waited for, within `retry_timeout`,
            // since the agent exits next).
            let role = if primary { "primary" } else { "replica" };
            match self.stop_postgres(postgres::StopMode::Fast).await {
                Ok(()) => {
                    self.fire_callback(ha::CallbackEvent::OnStop, role);
                    let _ = tokio::time::timeout(timeout, self.callbacks.wait()).await;
                }
                Err(error) => tracing::error!("stop PostgreSQL at shutdown: {error:?}"),
            }
        }
        if self.postmaster.is_none() {
            self.watchdog.disarm();
        }
        if primary {
            let leader = self.keys.leader();
            let me = Bytes::from(self.config.name.clone());
            match tokio::time::timeout(
                timeout,
                self.store.delete_if(&leader, Some(Expect::Value(me))),
            )
            .await
            {
                Ok(Ok(_)) => tracing::info!("released the leader key"),
                _ => tracing::warn!("could not release the leader key; it expires with the lease"),
            }
        }
        if let Some(lease) = self.lease.take() {
            let _ = tokio::time::timeout(timeout, self.store.lease_revoke(lease)).await;
        }
    }

    /// One cycle; returns when the next one is due at the latest.
    async fn cycle(&mut self) -> Result<ha::Instant, AgentError> {
        self.collect_long_task().await?;
        self.keep_lease_alive().await;
        let store_view = self.read_store().await;
        let (ttl, loop_wait) = (self.last_config.ttl, self.last_config.loop_wait);
        self.watchdog.recheck_if_failed(ttl, loop_wait);
        let postgres = self.observe_postgres(&store_view).await;
        let mut observation = self.observation(store_view, postgres);
        let mut decision = ha::decide(&observation);
        // The request may follow other actions (a primary renews its lease before asking
        // whether anyone can take over): wherever it sits, ask and decide again.
        let asked = decision.actions.iter().find_map(|action| match action {
            Action::QueryPeers { members } => Some(members.clone()),
            _ => None,
        });
        if let Some(members) = asked {
            let peers = self.peer_urls(&members);
            observation.peers = Some(crate::peers::query(&self.rest_client, peers).await);
            observation.now = self.now();
            decision = ha::decide(&observation);
        }
        let changed = self
            .last_decision
            .as_ref()
            .is_none_or(|last| last.reason != decision.reason);
        if changed {
            tracing::info!(reason = decision.reason.label(), "{}", decision.message);
        } else {
            tracing::debug!(reason = decision.reason.label(), "{}", decision.message);
        }
        let result = self.execute(&decision, &observation).await;
        let wakeup = match result {
            Ok(()) => decision.next_wakeup,
            Err(crate::act::ActError::Fatal(message)) => return Err(AgentError::Fatal(message)),
            Err(crate::act::ActError::Failed(message)) => {
                tracing::warn!("action failed: {message}");
                // Observe again soon, but not in a hot loop.
                self.now()
                    .saturating_add(Duration::from_millis(200))
                    .min(decision.next_wakeup)
            }
        };
        self.after_actions(&observation).await;
        self.publish(&decision);
        self.last_decision = Some(decision);
        Ok(wakeup)
    }

    /// Takes the result of a finished long action. A failed bootstrap is undone (data
    /// directory emptied, `/initialize` claim deleted, so another member can bootstrap) and
    /// stops the agent, as Patroni stops: the same configuration would fail again.
    async fn collect_long_task(&mut self) -> Result<(), AgentError> {
        let finished = self
            .long_task
            .as_ref()
            .is_some_and(|task| task.handle.is_finished());
        if !finished {
            return Ok(());
        }
        let Some(task) = self.long_task.take() else {
            return Ok(());
        };
        match task.handle.await {
            Ok(Ok(postmaster)) => {
                tracing::info!("{} finished; PostgreSQL started", task.kind.as_str());
                self.adopt_child(postmaster);
                // A new or rebuilt replica started: `on_start` (the bootstrap's fires when
                // the cycle sees the new primary and takes the key).
                if matches!(
                    task.kind,
                    LongActionKind::CreateReplica
                        | LongActionKind::Reinitialize
                        | LongActionKind::Rewind
                ) {
                    self.fire_callback(ha::CallbackEvent::OnStart, "replica");
                }
            }
            Ok(Err(message)) if task.kind == LongActionKind::Bootstrap => {
                let undone = match self.undo_bootstrap().await {
                    Ok(()) => "the data directory was emptied and the initialize key released",
                    Err(error) => {
                        tracing::error!("undo the failed bootstrap: {error:?}");
                        "undoing it failed too (see the log)"
                    }
                };
                return Err(AgentError::Fatal(format!(
                    "bootstrap failed: {message}; {undone}"
                )));
            }
            Ok(Err(message)) => {
                tracing::error!("{} failed: {message}", task.kind.as_str());
                self.last_start_failed = matches!(task.kind, LongActionKind::Restart);
            }
            Err(error) if error.is_cancelled() => {}
            Err(error) => tracing::error!("{} task failed: {error}", task.kind.as_str()),
        }
        Ok(())
    }

    pub(crate) fn adopt_child(&mut self, postmaster: Postmaster) {
        self.postmaster = Some(postmaster);
        self.adopted = None;
        self.stop_requested = false;
        self.started_at = Some(self.now());
        self.unresponsive_since = None;
        self.stopped_since = None;
        self.last_start_failed = false;
        self.wake_when_ready = true;
    }

    /// One keepalive (or a new grant when the lease is gone, or when `/config` changed `ttl`);
    /// records the send time.
    async fn keep_lease_alive(&mut self) {
        let timeout = self.store_call_timeout();
        let sent = tokio::time::Instant::now();
        self.keepalive_ok = false;
        // The lease being replaced for a new ttl, and its TTL.
        let mut replaced = None;
        if let Some(lease) = self.lease {
            match tokio::time::timeout(timeout, self.store.lease_keepalive(lease)).await {
                Ok(Ok(Some(granted))) => {
                    self.keepalive_ok = true;
                    if self.holds_leader {
                        let (ttl, loop_wait) = (self.last_config.ttl, self.last_config.loop_wait);
                        self.watchdog.keep_armed(ttl, loop_wait);
                    }
                    self.lease_renewed_at = Some(sent);
                    self.lease_ttl = granted;
                    if self.lease_requested_ttl != self.last_config.ttl {
                        tracing::info!(
                            old = ?self.lease_requested_ttl,
                            new = ?self.last_config.ttl,
                            "ttl changed; granting a lease with the new ttl"
                        );
                        replaced = Some((lease, granted));
                        self.lease = None;
                    }
                }
                Ok(Ok(None)) => {
                    tracing::warn!(lease, "the store lease expired; granting a new one");
                    self.lease = None;
                    self.lease_renewed_at = None;
                    self.holds_leader = false;
                    self.last_member_json = None;
                }
                Ok(Err(error)) => tracing::warn!("lease keepalive failed: {error}"),
                Err(_) => tracing::warn!("lease keepalive timed out after {timeout:?}"),
            }
        }
        if self.lease.is_none() {
            let ttl = self.last_config.ttl;
            match tokio::time::timeout(timeout, self.store.lease_grant(ttl)).await {
                Ok(Ok(lease)) => {
                    self.lease = Some(lease);
                    self.lease_renewed_at = Some(sent);
                    self.keepalive_ok = true;
                    // Until this cycle rebinds the leader key, it may still be on the old
                    // lease (renewed at `sent` too): count with the shorter TTL.
                    let granted = crate::lease::granted_ttl(ttl);
                    self.lease_requested_ttl = ttl;
                    self.lease_ttl = replaced.map_or(granted, |(_, old)| old.min(granted));
                    // The member key moves to the new lease.
                    self.last_member_json = None;
                }
                Ok(Err(error)) => tracing::warn!("lease grant failed: {error}"),
                Err(_) => tracing::warn!("lease grant timed out after {timeout:?}"),
            }
            // A failed replacement keeps the renewed old lease (the keys are bound to it);
            // the next cycle tries again.
            if self.lease.is_none()
                && let Some((old, _)) = replaced
            {
                self.lease = Some(old);
            }
        }
    }

    async fn read_store(&mut self) -> StoreView {
        let timeout = self.store_call_timeout();
        let read = tokio::time::timeout(timeout, self.store.get_prefix(self.keys.prefix())).await;
        match read {
            Ok(Ok((revision, kvs))) => {
                let mut snapshot = dcs::parse_snapshot(&self.keys, revision, &kvs, &self.defaults);
                if let Some(failover) = snapshot.view.failover.as_mut() {
                    failover.scheduled_at =
                        crate::control::failover_scheduled_at(&self.keys, &kvs, self.now());
                }
                self.last_config = snapshot.view.config.clone();
                let now = self.now();
                match snapshot.view.leader_name() {
                    Some(leader) => {
                        self.previous_leader = Some(leader.clone());
                        self.previous_members = snapshot.view.members.clone();
                        self.leader_missing_since = None;
                    }
                    None => {
                        self.leader_missing_since.get_or_insert(now);
                        // Patroni's old_cluster: members of the last snapshot with a leader.
                        for member in &self.previous_members {
                            if snapshot.view.member(&member.name).is_none() {
                                snapshot.view.members.push(member.clone());
                            }
                        }
                    }
                }
                snapshot.view.previous_leader = self.previous_leader.clone();
                self.holds_leader = snapshot.view.leader_name() == Some(&self.me());
                let view = snapshot.view.clone();
                self.snapshot = Some(snapshot);
                StoreView::Cluster(Box::new(view))
            }
            Ok(Err(error)) => {
                tracing::warn!("store read failed: {error}");
                StoreView::Unreachable {
                    last_known_config: self.last_config.clone(),
                }
            }
            Err(_) => {
                tracing::warn!("store read timed out after {timeout:?}");
                StoreView::Unreachable {
                    last_known_config: self.last_config.clone(),
                }
            }
        }
    }

    fn observation(&self, store: StoreView, postgres: LocalPostgres) -> Observation {
        let own_lease = self.own_lease_deadline().map(|deadline| OwnLease {
            deadline: ha::Instant(deadline.saturating_duration_since(self.origin)),
        });
        Observation {
            now: self.now(),
            node: self.config.node_config(),
            store,
            postgres,
            long_action: self.long_task.as_ref().map(|task| LongAction {
                kind: task.kind,
                started_at: task.started_at,
            }),
            own_lease,
            watchdog_failed: self.watchdog.failed(),
            pre_promote_failed_at: self.pre_promote_failed_at,
            leader_missing_since: self.leader_missing_since,
            peers: None,
        }
    }

    fn peer_urls(&self, members: &[MemberName]) -> Vec<(MemberName, String)> {
        let Some(snapshot) = &self.snapshot else {
            return Vec::new();
        };
        members
            .iter()
            .map(|name| {
                let url = snapshot
                    .members
                    .get(name.as_str())
                    .map(|data| data.api_url.clone())
                    .unwrap_or_default();
                (name.clone(), url)
            })
            .collect()
    }

    /// Local PostgreSQL facts: the process, its role and positions, the data directory.
    async fn observe_postgres(&mut self, store: &StoreView) -> LocalPostgres {
        let now = self.now();
        let data_dir = self.pg.data_dir.clone();
        let mut local = LocalPostgres {
            last_start_failed: self.last_start_failed,
            can_rewind: self.can_rewind,
            upstream: self.upstream.clone(),
            ..LocalPostgres::default()
        };
        self.facts = None;
        let child_exited = self.postmaster.as_mut().and_then(Postmaster::try_exited);
        if let Some(exit) = child_exited {
            self.postmaster = None;
            self.unresponsive_since = None;
            // Still set: this start was never seen answering.
            let never_ran = self.started_at.take().is_some();
            if self.stop_requested {
                self.stopped_since = Some(now);
            } else {
                tracing::warn!("postmaster exited unexpectedly ({:?})", exit.status);
                self.crashed_since.get_or_insert(now);
                // A postmaster that exits before it ever answered failed to start (say, crash
                // recovery on a full disk): a primary then releases the leader key at once
                // (patroni.md §1.2 step 8) instead of restarting it until
                // `primary_start_timeout`, with writes impossible all along.
                if never_ran {
                    tracing::warn!("PostgreSQL failed to start: it exited before it answered");
                    self.last_start_failed = true;
                    local.last_start_failed = true;
                }
            }
        }
        if self.adopted.is_some_and(|adopted| !adopted.is_alive()) {
            self.adopted = None;
            self.stopped_since.get_or_insert(now);
        }
        let process_alive = self.postmaster.is_some() || self.adopted.is_some();
        if process_alive && let Ok(probe) = self.pg.connect().await {
            if let Ok(facts) = probe.facts().await {
                self.facts = Some(facts);
            }
            probe.close().await;
        }
        local.process = match (&self.facts, process_alive) {
            (Some(_), _) => {
                self.started_at = None;
                self.unresponsive_since = None;
                self.crashed_since = None;
                self.wake_when_ready = false;
                ProcessState::Running
            }
            // A start of ours not answering yet, or a running postmaster that stopped
            // answering (it may be dying: a crash must not later read as a failed start).
            (None, true) => ProcessState::Starting {
                since: self
                    .started_at
                    .unwrap_or_else(|| *self.unresponsive_since.get_or_insert(now)),
            },
            (None, false) => match self.crashed_since {
                Some(since) => ProcessState::Crashed { since },
                None => ProcessState::Stopped {
                    since: self.stopped_since,
                },
            },
        };
        let pg_version = data_dir.join("PG_VERSION").exists();
        let empty = postgres::files::is_empty_dir(&data_dir).unwrap_or(true);
        let mut control_timeline = None;
        local.data_dir = if empty {
            DataDirState::Empty
        } else if let Some(facts) = &self.facts {
            DataDirState::Initialized {
                system_id: SystemId(facts.system_identifier),
            }
        } else if !pg_version {
            DataDirState::Invalid
        } else {
            match postgres::controldata::read_controldata(&self.pg.tools, &data_dir).await {
                Ok(control) => {
                    self.can_rewind = control.rewind_possible();
                    local.can_rewind = self.can_rewind;
                    control_timeline = Some(control.checkpoint_timeline);
                    DataDirState::Initialized {
                        system_id: SystemId(control.system_identifier),
                    }
                }
                Err(_) => DataDirState::Invalid,
            }
        };
        match &self.facts {
            Some(facts) => {
                local.role = if facts.in_recovery {
                    PgRole::Replica
                } else {
                    PgRole::Primary
                };
                local.timeline = facts.timeline.map(Timeline);
                local.write_lsn = facts.write_lsn.map(|lsn| Lsn(lsn.0));
                local.received_lsn = facts.received_lsn.map(|lsn| Lsn(lsn.0));
                local.replayed_lsn = facts.replayed_lsn.map(|lsn| Lsn(lsn.0));
                let streaming = facts
                    .wal_receiver
                    .as_ref()
                    .is_some_and(|receiver| receiver.status == "streaming");
                local.wal_receive_advancing = streaming && local.received_lsn > self.last_received;
                if streaming {
                    self.last_received = local.received_lsn;
                }
            }
            None => {
                local.role = if has_standby_signal(&data_dir) || empty {
                    PgRole::Replica
                } else {
                    PgRole::Primary
                };
                local.timeline = control_timeline.map(Timeline);
            }
        }
        local.divergence = self.divergence(store, &local);
        local
    }

    /// Whether our history forked off the leader's: a former primary on an older timeline
    /// (it may have written past the switch point), or anyone on a newer one. pg_rewind
    /// finds "no rewind required" itself when the fork turns out to be harmless.
    fn divergence(&self, store: &StoreView, local: &LocalPostgres) -> Divergence {
        let StoreView::Cluster(cluster) = store else {
            return Divergence::Unknown;
        };
        let Some(leader) = leader_member(cluster) else {
            return Divergence::Unknown;
        };
        if leader.name == self.me() {
            return Divergence::Unknown;
        }
        let (Some(ours), Some(theirs)) = (local.timeline, leader.timeline) else {
            return Divergence::Unknown;
        };
        if ours > theirs || (ours < theirs && local.role == PgRole::Primary) {
            Divergence::Diverged
        } else if ours < theirs && self.replayed_past_switch_point(ours, local) {
            // A replica that went on receiving the old primary's WAL after the new primary's
            // timeline forked off can never follow it (PostgreSQL: "new timeline forked off
            // current database system timeline before current recovery point").
            Divergence::Diverged
        } else if ours == theirs && local.role == PgRole::Primary {
            // Two primaries on one timeline cannot both be a prefix of each other.
            Divergence::Diverged
        } else {
            Divergence::None
        }
    }

    /// Whether a replica still on timeline `ours` holds WAL past the point where `ours` ended
    /// according to the `history` key (while it is not streaming: a replica that streams
    /// follows the switch by itself).
    fn replayed_past_switch_point(&self, ours: Timeline, local: &LocalPostgres) -> bool {
        if local.role != PgRole::Replica || local.wal_receive_advancing {
            return false;
        }
        let streaming = self
            .facts
            .as_ref()
            .and_then(|facts| facts.wal_receiver.as_ref())
            .is_some_and(|receiver| receiver.status == "streaming");
        if streaming {
            return false;
        }
        let Some(switch_point) = self.snapshot.as_ref().and_then(|snapshot| {
            snapshot
                .history
                .iter()
                .find(|entry| entry.0 == ours.0)
                .map(|entry| entry.1)
        }) else {
            return false;
        };
        let position = local
            .received_lsn
            .into_iter()
            .chain(local.replayed_lsn)
            .max()
            .map_or(0, |lsn| lsn.0);
        position > switch_point
    }

    /// Per-cycle upkeep that is not a decision: the member key, and on the primary the
    /// `/config` key (first leader), `/status`, replication slots and dynamic parameters.
    async fn after_actions(&mut self, observation: &Observation) {
        let _ = observation;
        self.publish_member_key().await;
        let running = self.postmaster.is_some() || self.adopted.is_some();
        if running {
            self.apply_dynamic_parameters().await;
        }
        if self.holds_leader && self.facts.as_ref().is_some_and(|facts| !facts.in_recovery) {
            self.leader_upkeep().await;
        }
    }

    fn publish(&self, decision: &Decision) {
        let status = crate::status::patroni_status(self, decision);
        self.status.send_replace(status);
    }
}

/// The keys whose change is worth a cycle at once: the leader key (deleted = race now; not
/// for its holder, whose own refresh writes it every cycle), `/failover`, `/initialize`,
/// `/config` and `/sync`.
fn wakes_the_loop(keys: &Keys, key: &str, holds_leader: bool) -> bool {
    (key == keys.leader() && !holds_leader)
        || key == keys.failover()
        || key == keys.initialize()
        || key == keys.config()
        || key == keys.sync()
}

fn leader_member(cluster: &ClusterView) -> Option<&ha::Member> {
    let name = cluster.leader_name()?;
    cluster.member(name)
}

async fn postmaster_exit(postmaster: &mut Option<Postmaster>) {
    match postmaster {
        Some(postmaster) => {
            postmaster.exited().await;
        }
        None => std::future::pending().await,
    }
}

/// How often a starting postmaster is asked whether it accepts connections yet.
const READY_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Returns once the local PostgreSQL accepts a connection.
async fn accepts_connections(pg: &LocalPg) {
    loop {
        tokio::time::sleep(READY_POLL_INTERVAL).await;
        if let Ok(probe) = pg.connect().await {
            probe.close().await;
            return;
        }
    }
}

/// The next REST API command; pending forever without a channel or once it closed.
async fn next_command(
    commands: &mut Option<crate::commands::CommandReceiver>,
) -> Option<crate::commands::Command> {
    match commands {
        Some(receiver) => match receiver.recv().await {
            Some(command) => Some(command),
            None => {
                *commands = None;
                std::future::pending().await
            }
        },
        None => std::future::pending().await,
    }
}

async fn long_task_done(task: &mut Option<LongTask>) {
    loop {
        match task {
            Some(task) if task.handle.is_finished() => return,
            Some(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            None => std::future::pending().await,
        }
    }
}
