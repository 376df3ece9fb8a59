//! Executing a decision's actions in order; the first failure ends the cycle (the `ha`
//! contract). Long actions (bootstrap, clone, rewind, reinitialize) run on a task of their
//! own so the loop keeps renewing the lease while they run.

use std::time::Duration;

use bytes::Bytes;
use dcs::{Expect, HistoryEntry, KvBackend, MemberData, StatusData};
use ha::{Action, CallbackEvent, Decision, DemoteMode, LongActionKind, MemberName, Observation};
use postgres::StopMode;

use crate::agent::{Agent, LongTask};
use crate::pg::LocalPg;

/// How an action failed.
#[derive(Debug)]
pub enum ActError {
    /// This action failed; later actions of the cycle are skipped.
    Failed(String),
    /// The agent must stop (continuing could damage data).
    Fatal(String),
}

pub(crate) type ActResult = Result<(), ActError>;

fn failed(what: &str, error: impl std::fmt::Display) -> ActError {
    ActError::Failed(format!("{what}: {error}"))
}

/// Upper bound on a long action (initdb, clone, rewind).
const LONG_ACTION_TIMEOUT: Duration = Duration::from_secs(3600);

/// How long a stop may take before escalating to immediate.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

impl<B: KvBackend> Agent<B> {
    pub(crate) async fn execute(
        &mut self,
        decision: &Decision,
        observation: &Observation,
    ) -> ActResult {
        for action in &decision.actions {
            self.act(action, observation).await?;
        }
        Ok(())
    }

    fn store_timeout(&self) -> Duration {
        self.store_call_timeout()
    }

    pub(crate) async fn store_call<T>(
        &self,
        what: &str,
        call: impl std::future::Future<Output = dcs::Result<T>>,
    ) -> Result<T, ActError> {
        match tokio::time::timeout(self.store_timeout(), call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(failed(what, error)),
            Err(_) => Err(failed(what, "timed out")),
        }
    }

    fn name_bytes(&self) -> Bytes {
        Bytes::from(self.config.name.clone())
    }

    async fn act(&mut self, action: &Action, observation: &Observation) -> ActResult {
        let lease = self.lease.unwrap_or(0);
        match action {
            Action::AcquireLeaderKey => {
                if lease == 0 {
                    return Err(ActError::Failed(
                        "no store lease to bind the leader key to".into(),
                    ));
                }
                let key = self.keys.leader();
                let won = self
                    .store_call(
                        "acquire the leader key",
                        self.store
                            .put_if(&key, Expect::Absent, self.name_bytes(), lease),
                    )
                    .await?;
                if !won {
                    return Err(ActError::Failed(
                        "another member acquired the leader key".into(),
                    ));
                }
                self.holds_leader = true;
                tracing::info!("acquired the leader key");
            }
            Action::RenewLease => {
                if !self.keepalive_ok {
                    return Err(ActError::Failed(
                        "the lease keepalive of this cycle failed".into(),
                    ));
                }
                let key = self.keys.leader();
                let kept = self
                    .store_call(
                        "refresh the leader key",
                        self.store.put_if(
                            &key,
                            Expect::Value(self.name_bytes()),
                            self.name_bytes(),
                            lease,
                        ),
                    )
                    .await?;
                if !kept {
                    self.holds_leader = false;
                    return Err(ActError::Failed(
                        "the leader key is held by another member".into(),
                    ));
                }
                self.holds_leader = true;
            }
            Action::ReleaseLeaderKey => self.release_leader_key().await?,
            Action::HandOverLeaderKey { to } => self.hand_over_leader_key(to).await?,
            Action::TakeLeaderKey => {
                let key = self.keys.leader();
                self.store_call(
                    "take the leader key",
                    self.store.put(&key, self.name_bytes(), lease),
                )
                .await?;
                self.holds_leader = true;
            }
            Action::ClaimInitializeKey => {
                let key = self.keys.initialize();
                let won = self
                    .store_call(
                        "claim the initialize key",
                        self.store.put_if(&key, Expect::Absent, Bytes::new(), 0),
                    )
                    .await?;
                if !won {
                    return Err(ActError::Failed(
                        "another member is bootstrapping the cluster".into(),
                    ));
                }
                self.write_initial_config().await?;
            }
            Action::WriteInitializeKey { system_id } => {
                let key = self.keys.initialize();
                let claimed_by_us = self
                    .snapshot
                    .as_ref()
                    .is_some_and(|snapshot| snapshot.view.initialize == Some(None));
                let expect = if claimed_by_us {
                    Expect::Value(Bytes::new())
                } else {
                    Expect::Absent
                };
                let value = Bytes::from(system_id.to_string());
                let written = self
                    .store_call(
                        "write the initialize key",
                        self.store.put_if(&key, expect, value, 0),
                    )
                    .await?;
                if !written {
                    return Err(ActError::Failed(
                        "the initialize key changed meanwhile".into(),
                    ));
                }
                self.write_initial_config().await?;
            }
            Action::DeleteFailoverKey => {
                let key = self.keys.failover();
                self.store_call("delete the failover key", self.store.delete_if(&key, None))
                    .await?;
            }
            Action::QueryPeers { .. } => {
                // Answered before acting (the loop asks and decides again); a second request
                // in one cycle is not followed.
            }
            Action::PrepareSyncForPromote {
                synchronous_standby_names,
            } => {
                self.prepare_sync_for_promote(synchronous_standby_names)
                    .await?;
            }
            Action::ArmWatchdog => self.arm_watchdog().await?,
            Action::CancelBootstrap => self.cancel_bootstrap().await?,
            Action::Promote => self.promote(observation).await?,
            Action::ReconcileSynchronousStandbys => self.reconcile_synchronous_standbys().await?,
            Action::Demote { mode } => {
                // A replica does not carry the primary's synchronous standbys.
                self.pg.synchronous_standby_names = None;
                self.demote(*mode).await?;
            }
            Action::StartAsPrimary => {
                let settings = self.pg.settings(&self.dynamic_parameters(), None);
                self.start_postmaster(&settings)?;
            }
            Action::StartReadOnly => {
                let settings = self
                    .pg
                    .settings(&self.dynamic_parameters(), Some(self.pg.recovery(None)));
                self.upstream = None;
                self.start_postmaster(&settings)?;
            }
            Action::StartAsReplica { upstream } => {
                // Without the upstream's address PostgreSQL starts with no primary_conninfo;
                // recording no upstream makes the next cycle repoint once the address is known.
                let (settings, followed) = self.replica_settings(upstream.as_ref());
                self.upstream = followed;
                self.start_postmaster(&settings)?;
            }
            Action::RepointTo { upstream } => {
                let (settings, followed) = self.replica_settings(upstream.as_ref());
                if followed != *upstream {
                    // The upstream's member key is not in the store (yet): keep the current
                    // configuration rather than dropping primary_conninfo, and try again next
                    // cycle.
                    tracing::warn!(
                        upstream = ?upstream,
                        "cannot repoint: the upstream's member key (conn_url) is not in the store"
                    );
                    return Ok(());
                }
                self.pg
                    .write_config(&settings)
                    .map_err(|error| failed("write the replica configuration", error))?;
                self.reload_postgres()?;
                self.upstream = upstream.clone();
            }
            Action::Rewind { source } => {
                self.stop_postgres(StopMode::Fast).await?;
                let Some(conninfo) = self.member_conninfo(source, false) else {
                    return Err(ActError::Failed(format!("no conn_url for {source}")));
                };
                let (settings, _) = self.replica_settings(Some(source));
                self.upstream = Some(source.clone());
                let pg = self.pg.clone();
                self.spawn_long(LongActionKind::Rewind, async move {
                    pg.rewind(conninfo, &settings, LONG_ACTION_TIMEOUT).await
                });
            }
            Action::Reinitialize { source } => {
                self.stop_postgres(StopMode::Immediate).await?;
                self.start_reinitialize(source);
            }
            Action::Bootstrap => {
                let settings = self.pg.settings(&self.dynamic_parameters(), None);
                let pg = self.pg.clone();
                self.spawn_long(LongActionKind::Bootstrap, async move {
                    pg.bootstrap(&settings, LONG_ACTION_TIMEOUT).await
                });
            }
            Action::CreateReplica { source } => {
                let conninfo = source
                    .as_ref()
                    .and_then(|source| self.member_conninfo(source, true));
                let (settings, followed) = self.replica_settings(source.as_ref());
                self.upstream = followed;
                let pg = self.pg.clone();
                self.spawn_long(LongActionKind::CreateReplica, async move {
                    pg.create_replica(conninfo, &settings, LONG_ACTION_TIMEOUT)
                        .await
                });
            }
            Action::RestartInPlace => self.restart_in_place().await?,
            Action::CancelLongAction => {
                if let Some(task) = self.long_task.take() {
                    tracing::warn!("cancelling {}", task.kind.as_str());
                    task.handle.abort();
                }
            }
            Action::RunCallback { event, role } => self.fire_callback(*event, role.as_str()),
            Action::ExitFatal => {
                return Err(ActError::Fatal(observation_message(observation)));
            }
        }
        Ok(())
    }

    /// Wipes the (stopped) data directory and clones it again from `source`, on a long task.
    pub(crate) fn start_reinitialize(&mut self, source: &MemberName) {
        let conninfo = self.member_conninfo(source, true);
        let (settings, followed) = self.replica_settings(Some(source));
        self.upstream = followed;
        let pg = self.pg.clone();
        self.spawn_long(LongActionKind::Reinitialize, async move {
            pg.reinitialize(conninfo, &settings, LONG_ACTION_TIMEOUT)
                .await
        });
    }

    /// Fires the user callback configured for `event` (if any) with `role`, replacing a
    /// still-running one; a command line that does not split is logged and skipped.
    pub(crate) fn fire_callback(&mut self, event: CallbackEvent, role: &str) {
        let Some(command) = self.config.postgresql.callbacks.get(event.as_str()) else {
            return;
        };
        let fired = postgres::callbacks::split_command(command)
            .map_err(|error| error.to_string())
            .and_then(|argv| {
                self.callbacks
                    .fire(&argv, event.as_str(), role, &self.config.scope)
                    .map_err(|error| error.to_string())
            });
        match fired {
            Ok(()) => tracing::info!(role, "callback {} started", event.as_str()),
            Err(error) => tracing::warn!("callback {}: {error}", event.as_str()),
        }
    }

    /// The role PostgreSQL runs in, as callbacks name it: a primary whose last probe got no
    /// answer is still a primary.
    fn running_role(&self) -> &'static str {
        if self.configured_as_primary() {
            "primary"
        } else {
            "replica"
        }
    }

    /// Runs a synchronous hook (`pre_promote`, `before_stop`) bounded by `retry_timeout`
    /// (it runs inside one cycle, while the leader key is not renewed). `Ok(true)` when it
    /// exited 0 or is not configured; `Ok(false)` when it failed or ran out of time.
    async fn run_hook(&self, name: &str, command: Option<&String>) -> Result<bool, String> {
        let Some(command) = command else {
            return Ok(true);
        };
        let argv = postgres::callbacks::split_command(command)?;
        let timeout = self.last_config.retry_timeout;
        let outcome =
            postgres::callbacks::run_hook(self.callbacks.run_as(), &argv, name, timeout).await;
        match outcome {
            Ok(Some(status)) if status.success() => Ok(true),
            Ok(Some(status)) => {
                tracing::warn!("{name} exited with {status}");
                Ok(false)
            }
            Ok(None) => {
                tracing::warn!("{name} did not finish within {timeout:?}; killed");
                Ok(false)
            }
            Err(error) => Err(error.to_string()),
        }
    }

    /// Stops PostgreSQL (fast) and starts it again in the same role; fires `on_restart`.
    pub(crate) async fn restart_in_place(&mut self) -> ActResult {
        let role = self.running_role();
        self.stop_postgres(StopMode::Fast).await?;
        let recovery = crate::pg::has_standby_signal(&self.pg.data_dir).then(|| {
            self.pg.recovery(
                self.upstream
                    .as_ref()
                    .and_then(|up| self.member_conninfo(up, true)),
            )
        });
        let settings = self.pg.settings(&self.dynamic_parameters(), recovery);
        self.start_postmaster(&settings)?;
        self.fire_callback(CallbackEvent::OnRestart, role);
        Ok(())
    }

    fn spawn_long<F>(&mut self, kind: LongActionKind, work: F)
    where
        F: std::future::Future<Output = postgres::Result<postgres::Postmaster>> + Send + 'static,
    {
        let handle = tokio::spawn(async move { work.await.map_err(|error| error.to_string()) });
        self.long_task = Some(LongTask {
            kind,
            started_at: self.now(),
            handle,
        });
    }

    /// The cluster-wide parameters: `/config`'s, or `bootstrap.dcs`'s while `/config` does not
    /// exist yet (the first primary starts before it writes `/config`).
    pub(crate) fn dynamic_parameters(&self) -> std::collections::BTreeMap<String, String> {
        match self.snapshot.as_ref() {
            Some(snapshot) if snapshot.has_config => snapshot.parameters.clone(),
            _ => self.config.bootstrap_parameters(),
        }
    }

    fn member_conninfo(
        &self,
        member: &MemberName,
        replication: bool,
    ) -> Option<postgres::config::ConnInfo> {
        let snapshot = self.snapshot.as_ref()?;
        let data = snapshot.members.get(member.as_str())?;
        self.pg.conninfo(&data.conn_url, replication)
    }

    /// A replica's settings that stream from `upstream`, and whom they really follow:
    /// `upstream` when its member key gives an address, else `None` (PostgreSQL then has no
    /// primary_conninfo). The agent's `upstream` records the latter, so a replica configured
    /// without the address is repointed by a later cycle.
    fn replica_settings(
        &self,
        upstream: Option<&MemberName>,
    ) -> (postgres::config::ServerSettings, Option<MemberName>) {
        let conninfo = upstream.and_then(|upstream| self.member_conninfo(upstream, true));
        let followed = upstream.filter(|_| conninfo.is_some()).cloned();
        let settings = self
            .pg
            .settings(&self.dynamic_parameters(), Some(self.pg.recovery(conninfo)));
        (settings, followed)
    }

    fn start_postmaster(&mut self, settings: &postgres::config::ServerSettings) -> ActResult {
        if self.postmaster.is_some() || self.adopted.is_some() {
            return Err(ActError::Failed("PostgreSQL is already running".into()));
        }
        let postmaster = self
            .pg
            .start(settings)
            .map_err(|error| failed("start PostgreSQL", error))?;
        self.applied_parameters = self.dynamic_parameters();
        self.adopt_child(postmaster);
        Ok(())
    }

    /// Sends PostgreSQL SIGHUP and fires `on_reload`; no-op when it is not running.
    pub(crate) fn reload_postgres(&mut self) -> ActResult {
        if let Some(postmaster) = &self.postmaster {
            postmaster
                .reload()
                .map_err(|error| failed("reload PostgreSQL", error))?;
        } else if let Some(adopted) = &self.adopted {
            adopted
                .reload()
                .map_err(|error| failed("reload PostgreSQL", error))?;
        } else {
            return Ok(());
        }
        self.fire_callback(CallbackEvent::OnReload, self.running_role());
        Ok(())
    }

    /// Stops PostgreSQL in `mode` (our child or an adopted postmaster); no-op when stopped.
    /// `postgresql.before_stop` runs first (bounded, exit code only logged), except before an
    /// immediate stop: that one is an emergency (lost leader key, reinitialize) and waits
    /// for nothing.
    pub(crate) async fn stop_postgres(&mut self, mode: StopMode) -> ActResult {
        let running = self.postmaster.is_some() || self.adopted.is_some();
        if running && mode != StopMode::Immediate {
            let command = self.config.postgresql.before_stop.clone();
            if let Err(error) = self.run_hook("before_stop", command.as_ref()).await {
                tracing::warn!("before_stop: {error}");
            }
        }
        self.stop_requested = true;
        if let Some(postmaster) = self.postmaster.as_mut() {
            crate::pg::stop(postmaster, mode, STOP_TIMEOUT)
                .await
                .map_err(|error| failed("stop PostgreSQL", error))?;
            self.postmaster = None;
        }
        if let Some(adopted) = self.adopted.take() {
            adopted
                .stop(mode, STOP_TIMEOUT)
                .await
                .map_err(|error| failed("stop PostgreSQL", error))?;
        }
        self.stopped_since = Some(self.now());
        self.crashed_since = None;
        self.started_at = None;
        self.unresponsive_since = None;
        // What was observed of the running server no longer holds: `/patroni` and the
        // member key published at the end of this cycle must not show it running.
        self.facts = None;
        Ok(())
    }

    async fn demote(&mut self, mode: DemoteMode) -> ActResult {
        let stop_mode = match mode {
            DemoteMode::Offline | DemoteMode::Graceful | DemoteMode::Handover => StopMode::Fast,
            DemoteMode::Immediate | DemoteMode::ImmediateNoLock => StopMode::Immediate,
        };
        if matches!(mode, DemoteMode::Graceful | DemoteMode::Handover)
            && let Ok(probe) = self.pg.connect().await
        {
            let _ = probe.checkpoint().await;
            probe.close().await;
        }
        tracing::warn!("demoting: stopping PostgreSQL ({})", mode.as_str());
        self.stop_postgres(stop_mode).await?;
        self.watchdog.disarm();
        if mode.releases_leader_key() {
            self.release_leader_key().await?;
        }
        self.holds_leader = false;
        Ok(())
    }

    /// Deletes the leader key if its value is our name.
    async fn release_leader_key(&mut self) -> ActResult {
        let key = self.keys.leader();
        self.store_call(
            "release the leader key",
            self.store
                .delete_if(&key, Some(Expect::Value(self.name_bytes()))),
        )
        .await?;
        self.holds_leader = false;
        Ok(())
    }

    /// Switchover: if the leader key is still ours, make it `to`'s, bound to the lease its
    /// member key carries, in one compare-and-swap; with `to`'s lease unknown or the swap
    /// refused, release the key so `to` acquires it as in a failover.
    async fn hand_over_leader_key(&mut self, to: &MemberName) -> ActResult {
        let key = self.keys.leader();
        let lease = self
            .snapshot
            .as_ref()
            .and_then(|snapshot| snapshot.member_leases.get(to.as_str()).copied())
            .filter(|lease| *lease != 0);
        if let Some(lease) = lease {
            let handed = self
                .store_call(
                    "hand over the leader key",
                    self.store.put_if(
                        &key,
                        Expect::Value(self.name_bytes()),
                        Bytes::from(to.as_str().to_owned()),
                        lease,
                    ),
                )
                .await?;
            if handed {
                tracing::info!(candidate = %to, "handed the leader key over");
                self.holds_leader = false;
                return Ok(());
            }
        }
        tracing::info!(candidate = %to, "releasing the leader key for the candidate");
        self.release_leader_key().await
    }

    /// Promotes the local replica, then makes the new timeline usable by others at once:
    /// a CHECKPOINT (pg_rewind reads the timeline from pg_control), slots for the other
    /// members, and the `history` entry for the timeline switch.
    ///
    /// `postgresql.pre_promote` runs first: when it fails (exit ≠ 0, timeout, or it cannot
    /// start) the promotion is abandoned, the leader key released and the failure time kept
    /// so the node stays out of leader races for `ttl`.
    async fn promote(&mut self, observation: &Observation) -> ActResult {
        let _ = observation;
        let command = self.config.postgresql.pre_promote.clone();
        let allowed = self.run_hook("pre_promote", command.as_ref()).await;
        if allowed != Ok(true) {
            self.pre_promote_failed_at = Some(self.now());
            self.release_leader_key().await?;
            return Err(ActError::Failed(match allowed {
                Err(error) => format!("pre_promote: {error}; not promoting"),
                Ok(_) => "pre_promote failed; not promoting, leader key released".to_owned(),
            }));
        }
        let probe = self
            .pg
            .connect()
            .await
            .map_err(|error| failed("connect to promote", error))?;
        let before = probe.facts().await.ok();
        probe
            .promote_and_poll(Duration::from_secs(30))
            .await
            .map_err(|error| failed("promote", error))?;
        tracing::info!("promoted: PostgreSQL accepts writes");
        self.upstream = None;
        self.ensure_member_slots(&probe).await;
        if let Err(error) = probe.checkpoint().await {
            tracing::warn!("checkpoint after promote: {error}");
        }
        probe.close().await;
        // Record the timeline that ended, with the LSN where it did.
        if let Some(before) = before {
            let ended = before.timeline.unwrap_or(1);
            let lsn = before
                .replayed_lsn
                .or(before.received_lsn)
                .map_or(0, |lsn| lsn.0);
            let mut history = self
                .snapshot
                .as_ref()
                .map(|snapshot| snapshot.history.clone())
                .unwrap_or_default();
            history.push(HistoryEntry(
                ended,
                lsn,
                "no recovery target specified".to_owned(),
                String::new(),
                self.config.name.clone(),
            ));
            if let Ok(json) = serde_json::to_vec(&history) {
                let key = self.keys.history();
                let _ = self
                    .store_call("write history", self.store.put(&key, Bytes::from(json), 0))
                    .await;
            }
        }
        Ok(())
    }

    async fn ensure_member_slots(&self, probe: &postgres::Probe) {
        let Some(snapshot) = &self.snapshot else {
            return;
        };
        for name in snapshot.members.keys() {
            if name != &self.config.name
                && let Err(error) = probe.ensure_physical_slot(&LocalPg::slot_name(name)).await
            {
                tracing::warn!("create the replication slot for {name}: {error}");
            }
        }
    }

    /// Writes `/config` from `bootstrap.dcs` unless it exists (create-only).
    async fn write_initial_config(&self) -> ActResult {
        let key = self.keys.config();
        let json = self.config.initial_dynamic_config_json();
        let value = Bytes::from(serde_json::to_vec(&json).unwrap_or_default());
        self.store_call(
            "write the config key",
            self.store.put_if(&key, Expect::Absent, value, 0),
        )
        .await?;
        Ok(())
    }

    /// Primary upkeep: slots for every member, `/status` with our WAL position.
    pub(crate) async fn leader_upkeep(&mut self) {
        if let Ok(probe) = self.pg.connect().await {
            self.ensure_member_slots(&probe).await;
            probe.close().await;
        }
        let optime = self
            .facts
            .as_ref()
            .and_then(|facts| facts.write_lsn)
            .map_or(0, |lsn| lsn.0);
        let status = StatusData {
            optime,
            ..StatusData::default()
        };
        if let Ok(json) = serde_json::to_vec(&status) {
            let json = Bytes::from(json);
            // Written only when it changed: every write is a store revision and a watch event.
            if self.last_status_json.as_ref() != Some(&json) {
                let key = self.keys.status();
                let put = self.store.put(&key, json.clone(), 0);
                if let Ok(Ok(())) = tokio::time::timeout(self.store_timeout(), put).await {
                    self.last_status_json = Some(json);
                }
            }
        }
        if self
            .snapshot
            .as_ref()
            .is_some_and(|snapshot| !snapshot.has_config)
        {
            let _ = self.write_initial_config().await;
        }
    }

    /// The settings PostgreSQL runs with now: a replica's (standby.signal present) following
    /// its current upstream, or a primary's; `None` while the upstream's address is unknown.
    pub(crate) fn current_settings(&self) -> Option<postgres::config::ServerSettings> {
        let recovery = if crate::pg::has_standby_signal(&self.pg.data_dir) {
            // A replica whose upstream's address is not in this cycle's view (its member key
            // gone with an expired lease, until it republishes it): writing now would drop
            // `primary_conninfo` while the agent goes on believing it follows its upstream,
            // and PostgreSQL would stay in archive recovery for good.
            let conninfo = match &self.upstream {
                Some(upstream) => Some(self.member_conninfo(upstream, true)?),
                None => None,
            };
            Some(self.pg.recovery(conninfo))
        } else {
            None
        };
        Some(self.pg.settings(&self.dynamic_parameters(), recovery))
    }

    /// Reloads PostgreSQL when `/config`'s parameters changed since it was configured, then
    /// finds the parameters whose new value waits for a restart (`pending_restart`).
    pub(crate) async fn apply_dynamic_parameters(&mut self) {
        let parameters = self.dynamic_parameters();
        let Some(settings) = self.current_settings() else {
            // The upstream's address is missing from this cycle's view: a later cycle applies.
            return;
        };
        if parameters != self.applied_parameters {
            match self
                .pg
                .write_config(&settings)
                .and_then(|()| match &self.postmaster {
                    Some(postmaster) => postmaster.reload(),
                    None => self.adopted.map_or(Ok(()), |adopted| adopted.reload()),
                }) {
                Ok(()) => {
                    tracing::info!("dynamic configuration changed; PostgreSQL reloaded");
                    self.applied_parameters = parameters;
                    self.pending_restart.reloaded();
                    if self.postmaster.is_some() || self.adopted.is_some() {
                        self.fire_callback(CallbackEvent::OnReload, self.running_role());
                    }
                }
                Err(error) => tracing::warn!("apply the dynamic configuration: {error}"),
            }
        }
        if self.pending_restart.check_due() && self.facts.is_some() {
            self.check_pending_restart(&settings).await;
        }
    }

    /// Compares the running values with `settings` (see `pending_restart`).
    async fn check_pending_restart(&mut self, settings: &postgres::config::ServerSettings) {
        let Ok(probe) = self.pg.connect().await else {
            return;
        };
        let rows = probe
            .client()
            .query(crate::pending_restart::RUNNING_SETTINGS_SQL, &[])
            .await;
        probe.close().await;
        let running: Vec<crate::pending_restart::RunningSetting> = match rows {
            Ok(rows) => rows
                .iter()
                .filter_map(|row| {
                    Some(crate::pending_restart::RunningSetting {
                        name: row.try_get(0).ok()?,
                        setting: row.try_get(1).ok()?,
                        pending_restart: row.try_get(2).ok()?,
                    })
                })
                .collect(),
            Err(error) => {
                tracing::warn!("read pg_settings for pending restart: {error}");
                return;
            }
        };
        let command_line = postgres::config::effective_parameters(settings).command_line;
        let pending = crate::pending_restart::pending_parameters(&command_line, &running);
        let newly = self.pending_restart.record(pending);
        if !newly.is_empty() {
            tracing::info!(
                parameters = %newly.join(","),
                "pending restart: the new value of these parameters applies after a restart"
            );
        }
    }

    /// Publishes `members/<name>` (bound to our lease) when its content changed.
    pub(crate) async fn publish_member_key(&mut self) {
        let Some(lease) = self.lease else {
            return;
        };
        let data = self.member_data();
        let Ok(json) = serde_json::to_vec(&data) else {
            return;
        };
        let json = Bytes::from(json);
        // Also rewritten when the cycle's read did not find it (deleted by hand, or lost with
        // a lease the store expired): peers need its conn_url to stream from this member.
        let in_store = self
            .snapshot
            .as_ref()
            .is_some_and(|snapshot| snapshot.members.contains_key(self.config.name.as_str()));
        if in_store && self.last_member_json.as_ref() == Some(&json) {
            return;
        }
        let key = self.keys.member(&self.config.name);
        match tokio::time::timeout(
            self.store_timeout(),
            self.store.put(&key, json.clone(), lease),
        )
        .await
        {
            Ok(Ok(())) => self.last_member_json = Some(json),
            Ok(Err(error)) => tracing::warn!("publish the member key: {error}"),
            Err(_) => tracing::warn!("publish the member key: timed out"),
        }
    }

    fn member_data(&self) -> MemberData {
        let (state, role) = crate::status::state_and_role(self);
        let facts = self.facts.as_ref();
        let primary = facts.is_some_and(|facts| !facts.in_recovery);
        let received = facts.and_then(|facts| facts.received_lsn).map(|lsn| lsn.0);
        let replayed = facts.and_then(|facts| facts.replayed_lsn).map(|lsn| lsn.0);
        let xlog_location = if primary {
            facts.and_then(|facts| facts.write_lsn).map(|lsn| lsn.0)
        } else {
            received.max(replayed)
        };
        MemberData {
            conn_url: format!(
                "postgres://{}/postgres",
                self.config.postgresql.connect_address
            ),
            api_url: self.config.api_url(),
            state,
            role,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            xlog_location,
            timeline: facts.and_then(|facts| facts.timeline),
            replication_state: crate::status::replication_state(self),
            receive_lsn: if primary { None } else { received },
            replay_lsn: if primary { None } else { replayed },
            tags: self.config.tags.clone(),
            pending_restart: self.pending_restart.is_pending(),
        }
    }
}

fn observation_message(observation: &Observation) -> String {
    ha::decide(observation).message
}
