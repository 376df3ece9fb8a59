//! The agent's side of the REST API's control endpoints ([`rest::ClusterControl`]).
//!
//! Reads and store writes run on the REST API's task, through the same [`KvBackend`] the
//! loop uses: `/cluster`, `/history`, `/config` (PATCH with a compare-and-swap on the key's
//! mod_revision), and `/switchover`/`/failover`, which write the `failover` key in Patroni's
//! JSON (`{"leader", "member", "scheduled_at"}`) for `ha::decide` to act on, then wait
//! (bounded) for the leader key to move. Anything that touches PostgreSQL (restart, reload,
//! reinitialize) is a [`Command`] the HA loop runs between cycles (see `commands`),
//! answered through a oneshot channel: only the loop owns the postmaster.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use dcs::{Expect, KeyValue, Keys, KvBackend, Snapshot};
use ha::{DynamicConfig, SynchronousMode};
use rest::{
    ClusterControl, ClusterInfo, ClusterMember, ControlError, RestartOutcome, RestartRequest,
    ScheduledSwitchover, SwitchoverKind, SwitchoverOutcome, SwitchoverRequest,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::commands::{Command, CommandKind, CommandReceiver};
use crate::config::RunConfig;

/// How long a store call of a control request may take.
const STORE_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a switchover's progress is read from the store.
const SWITCHOVER_POLL: Duration = Duration::from_millis(250);

/// How long a command may wait for the loop (a cycle may be stopping PostgreSQL).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(180);

/// [`rest::ClusterControl`] over the store and the agent's command channel.
#[derive(Clone)]
pub struct AgentControl<B: KvBackend> {
    store: B,
    keys: Keys,
    scope: String,
    defaults: DynamicConfig,
    /// To the agent's loop; the loop holds the receiver and drops it when it stops.
    commands: mpsc::Sender<Command>,
    /// The pending scheduled restart: a task that sends the restart command at its time.
    /// A std mutex: held only to swap the handle, never across an await.
    scheduled_restart: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl<B: KvBackend> AgentControl<B> {
    /// The control over `store` for the member of `config`, and the receiver to hand to
    /// [`Agent::with_commands`].
    pub fn new(store: B, config: &RunConfig) -> (Self, CommandReceiver) {
        let (tx, rx) = mpsc::channel(4);
        let control = AgentControl {
            store,
            keys: Keys::new(&config.namespace, &config.scope),
            scope: config.scope.clone(),
            defaults: config.dynamic_defaults(),
            commands: tx,
            scheduled_restart: Arc::new(Mutex::new(None)),
        };
        (control, rx)
    }

    async fn read_prefix(&self, prefix: &str) -> Result<(i64, Vec<KeyValue>), ControlError> {
        match tokio::time::timeout(STORE_TIMEOUT, self.store.get_prefix(prefix)).await {
            Ok(Ok(read)) => Ok(read),
            Ok(Err(error)) => Err(ControlError::Store(format!("read the store: {error}"))),
            Err(_) => Err(ControlError::Store("read the store: timed out".into())),
        }
    }

    async fn snapshot(&self) -> Result<(Snapshot, Vec<KeyValue>), ControlError> {
        let (revision, kvs) = self.read_prefix(self.keys.prefix()).await?;
        let snapshot = dcs::parse_snapshot(&self.keys, revision, &kvs, &self.defaults);
        Ok((snapshot, kvs))
    }

    /// One key exactly (a prefix read filtered to the key).
    async fn read_key(&self, key: &str) -> Result<Option<KeyValue>, ControlError> {
        let (_, kvs) = self.read_prefix(key).await?;
        Ok(kvs.into_iter().find(|kv| kv.key == key))
    }

    async fn store_write<T>(
        &self,
        what: &str,
        call: impl std::future::Future<Output = dcs::Result<T>>,
    ) -> Result<T, ControlError> {
        match tokio::time::timeout(STORE_TIMEOUT, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(ControlError::Store(format!("{what}: {error}"))),
            Err(_) => Err(ControlError::Store(format!("{what}: timed out"))),
        }
    }

    async fn send(&self, kind: CommandKind) -> Result<(), ControlError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || ControlError::Unavailable("the agent is not running".into());
        self.commands
            .send(Command { kind, reply })
            .await
            .map_err(|_| stopped())?;
        match tokio::time::timeout(COMMAND_TIMEOUT, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(stopped()),
            Err(_) => Err(ControlError::Unavailable(
                "the agent did not answer in time".into(),
            )),
        }
    }

    /// Waits until the leader key names a member other than `old_leader`, up to
    /// 2 × max(10 s, loop_wait) (patroni.md §4.3).
    async fn wait_for_new_leader(
        &self,
        old_leader: Option<&str>,
        loop_wait: Duration,
        kind: SwitchoverKind,
    ) -> Result<SwitchoverOutcome, ControlError> {
        let limit = loop_wait.max(Duration::from_secs(10)) * 2;
        let deadline = tokio::time::Instant::now() + limit;
        let failed = || ControlError::Unavailable(format!("{} failed", kind.as_str()));
        let failover_key = self.keys.failover();
        loop {
            tokio::time::sleep(SWITCHOVER_POLL).await;
            if let Ok((_, kvs)) = self.read_prefix(self.keys.prefix()).await {
                let holder = kvs
                    .iter()
                    .find(|kv| kv.key == self.keys.leader())
                    .map(|kv| String::from_utf8_lossy(&kv.value).trim().to_owned());
                if let Some(holder) = holder
                    && Some(holder.as_str()) != old_leader
                {
                    return Ok(SwitchoverOutcome::Done { new_leader: holder });
                }
                let key_pending = kvs.iter().any(|kv| kv.key == failover_key);
                let leader_kept = kvs.iter().any(|kv| {
                    kv.key == self.keys.leader()
                        && Some(String::from_utf8_lossy(&kv.value).trim()) == old_leader
                });
                // The leader consumed the key without stepping down (no healthy member).
                if !key_pending && leader_kept {
                    return Err(failed());
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(failed());
            }
        }
    }
}

/// Checks a switchover or failover against the cluster (patroni.md §4.3's 412 reasons) and
/// returns the current leader.
///
/// With `synchronous_mode` on or `quorum`, a switchover goes only to a member listed in
/// `/sync`'s `sync_standby` (a synchronous standby, or a quorum standby, i.e. a voter): a named
/// candidate outside it is refused with "candidate name does not match with sync_standby", and
/// an unnamed one is chosen among those members only (the leader's ranking applies the same
/// rule). A failover (no leader named) may name any member, as the operator's explicit choice.
/// In quorum mode pgwarden refuses a non-voter up front rather than accept a switchover that
/// no eligible member would carry out.
pub(crate) fn check_switchover(
    scope: &str,
    snapshot: &Snapshot,
    request: &SwitchoverRequest,
) -> Result<Option<String>, ControlError> {
    let precondition = |text: String| ControlError::PreconditionFailed(text);
    let action = request.kind.as_str().to_lowercase();
    let view = &snapshot.view;
    let leader = view.leader_name().map(|name| name.as_str().to_owned());
    if let Some(wanted) = &request.leader
        && leader.as_ref() != Some(wanted)
    {
        return Err(precondition("leader name does not match".into()));
    }
    let only_sync_members = view.config.synchronous_mode != SynchronousMode::Off
        && request.kind == SwitchoverKind::Switchover;
    let in_sync_set = |name: &str| {
        view.sync.as_ref().is_some_and(|sync| {
            sync.sync_standbys
                .iter()
                .any(|standby| standby.as_str() == name)
        })
    };
    if let Some(candidate) = &request.candidate {
        if leader.as_ref() == Some(candidate) {
            return Err(precondition(format!(
                "Member {candidate} is already the leader of cluster {scope}"
            )));
        }
        if only_sync_members && !in_sync_set(candidate) {
            return Err(precondition(
                "candidate name does not match with sync_standby".into(),
            ));
        }
        if !snapshot.members.contains_key(candidate) {
            return Err(precondition("candidate does not exist".into()));
        }
    } else if only_sync_members
        && !snapshot
            .members
            .keys()
            .any(|name| Some(name) != leader.as_ref() && in_sync_set(name))
    {
        return Err(precondition(format!(
            "{action} is not possible: can not find sync_standby"
        )));
    }
    let eligible = snapshot.members.iter().any(|(name, data)| {
        Some(name) != leader.as_ref()
            && request
                .candidate
                .as_ref()
                .is_none_or(|candidate| candidate == name)
            && (!only_sync_members || in_sync_set(name))
            && data.state == "running"
            && !dcs::tags_from_map(&data.tags).nofailover
    });
    if !eligible {
        return Err(precondition(format!(
            "{action} is not possible: no good candidates have been found"
        )));
    }
    Ok(leader)
}

/// `postgres://host:port/postgres` → (host, port).
fn host_and_port(conn_url: &str) -> (Option<String>, Option<u16>) {
    let rest = conn_url
        .split_once("://")
        .map_or(conn_url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or_default();
    let authority = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(':') => (
            Some(host.trim_matches(['[', ']']).to_owned()),
            port.parse().ok(),
        ),
        _ => (
            Some(authority.to_owned()).filter(|host| !host.is_empty()),
            None,
        ),
    }
}

fn parse_json(kv: &KeyValue, what: &str) -> Result<serde_json::Value, ControlError> {
    serde_json::from_slice(&kv.value)
        .map_err(|error| ControlError::Store(format!("the {what} key is not JSON: {error}")))
}

impl<B: KvBackend> ClusterControl for AgentControl<B> {
    async fn cluster(&self) -> Result<ClusterInfo, ControlError> {
        let (snapshot, kvs) = self.snapshot().await?;
        let view = &snapshot.view;
        let leader = view.leader_name().map(|name| name.as_str().to_owned());
        let optime = view.last_leader_lsn.map(|lsn| lsn.0);
        let sync_standbys: Vec<String> = view
            .sync
            .as_ref()
            .map(|sync| {
                sync.sync_standbys
                    .iter()
                    .map(|name| name.as_str().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        let members = snapshot
            .members
            .iter()
            .map(|(name, data)| {
                let is_leader = leader.as_ref() == Some(name);
                let role = if is_leader {
                    if data.role == "standby_leader" {
                        "standby_leader"
                    } else {
                        "leader"
                    }
                } else if sync_standbys.contains(name) {
                    match view.config.synchronous_mode {
                        SynchronousMode::Off => "replica",
                        SynchronousMode::On => "sync_standby",
                        SynchronousMode::Quorum => "quorum_standby",
                    }
                } else {
                    "replica"
                };
                let (host, port) = host_and_port(&data.conn_url);
                let position = data.replay_lsn.or(data.xlog_location);
                ClusterMember {
                    name: name.clone(),
                    role: role.to_owned(),
                    state: data.state.clone(),
                    api_url: data.api_url.clone(),
                    host,
                    port,
                    timeline: data.timeline,
                    lag: match (is_leader, optime, position) {
                        (false, Some(optime), Some(position)) => {
                            Some(optime.saturating_sub(position))
                        }
                        _ => None,
                    },
                    tags: data.tags.clone(),
                    pending_restart: data.pending_restart,
                }
            })
            .collect();
        let scheduled_switchover = kvs
            .iter()
            .find(|kv| kv.key == self.keys.failover())
            .and_then(|kv| serde_json::from_slice::<serde_json::Value>(&kv.value).ok())
            .and_then(|failover| {
                let text = |field: &str| failover.get(field)?.as_str().map(str::to_owned);
                Some(ScheduledSwitchover {
                    at: text("scheduled_at")?,
                    from: text("leader"),
                    to: text("member"),
                })
            });
        Ok(ClusterInfo {
            members,
            scope: self.scope.clone(),
            pause: view.config.pause,
            scheduled_switchover,
        })
    }

    async fn history(&self) -> Result<serde_json::Value, ControlError> {
        match self.read_key(&self.keys.history()).await? {
            Some(kv) => parse_json(&kv, "history"),
            None => Ok(serde_json::Value::Array(Vec::new())),
        }
    }

    async fn config(&self) -> Result<serde_json::Value, ControlError> {
        match self.read_key(&self.keys.config()).await? {
            Some(kv) => parse_json(&kv, "config"),
            None => Err(ControlError::Store("the config key does not exist".into())),
        }
    }

    async fn patch_config(
        &self,
        patch: serde_json::Value,
    ) -> Result<serde_json::Value, ControlError> {
        let key = self.keys.config();
        let Some(current) = self.read_key(&key).await? else {
            return Err(ControlError::Unavailable(
                "the config key does not exist".into(),
            ));
        };
        let mut config = parse_json(&current, "config")?;
        rest::merge_patch(&mut config, &patch);
        let value = Bytes::from(config.to_string());
        let written = self
            .store_write(
                "write the config key",
                self.store
                    .put_if(&key, Expect::ModRevision(current.mod_revision), value, 0),
            )
            .await?;
        if !written {
            return Err(ControlError::Conflict(
                "the config key changed concurrently; nothing was written".into(),
            ));
        }
        Ok(config)
    }

    async fn replace_config(
        &self,
        config: serde_json::Value,
    ) -> Result<serde_json::Value, ControlError> {
        let value = Bytes::from(config.to_string());
        self.store_write(
            "write the config key",
            self.store.put(&self.keys.config(), value, 0),
        )
        .await?;
        Ok(config)
    }

    async fn switchover(
        &self,
        request: SwitchoverRequest,
    ) -> Result<SwitchoverOutcome, ControlError> {
        let (snapshot, _) = self.snapshot().await?;
        if request.kind == SwitchoverKind::Switchover && snapshot.view.leader.is_none() {
            return Err(ControlError::PreconditionFailed(
                "the cluster has no leader: use a failover".into(),
            ));
        }
        let old_leader = check_switchover(&self.scope, &snapshot, &request)?;
        let mut value = serde_json::Map::new();
        if let Some(leader) = &request.leader {
            value.insert("leader".into(), leader.clone().into());
        }
        if let Some(candidate) = &request.candidate {
            value.insert("member".into(), candidate.clone().into());
        }
        if let Some(at) = &request.scheduled_at {
            value.insert("scheduled_at".into(), at.text.clone().into());
        }
        let value = Bytes::from(serde_json::Value::Object(value).to_string());
        // Create-only: of two concurrent requests exactly one is written; the other is
        // refused instead of silently replacing the first one's candidate.
        let written = self
            .store_write(
                "write the failover key",
                self.store
                    .put_if(&self.keys.failover(), Expect::Absent, value, 0),
            )
            .await?;
        if !written {
            return Err(ControlError::Conflict(
                "another switchover or failover is already in progress or scheduled".into(),
            ));
        }
        tracing::info!(
            leader = ?request.leader,
            candidate = ?request.candidate,
            scheduled_at = ?request.scheduled_at.as_ref().map(|at| &at.text),
            "{} requested through the REST API",
            request.kind.as_str()
        );
        if request.scheduled_at.is_some() {
            return Ok(SwitchoverOutcome::Scheduled);
        }
        let outcome = self
            .wait_for_new_leader(
                old_leader.as_deref(),
                snapshot.view.config.loop_wait,
                request.kind,
            )
            .await?;
        Ok(match (outcome, request.candidate) {
            (SwitchoverOutcome::Done { new_leader }, Some(candidate))
                if new_leader != candidate =>
            {
                SwitchoverOutcome::Instead {
                    new_leader,
                    candidate,
                }
            }
            (outcome, _) => outcome,
        })
    }

    async fn cancel_switchover(&self) -> Result<(), ControlError> {
        let key = self.keys.failover();
        let scheduled = self.read_key(&key).await?.filter(|kv| {
            serde_json::from_slice::<serde_json::Value>(&kv.value)
                .is_ok_and(|json| json.get("scheduled_at").is_some_and(|at| !at.is_null()))
        });
        let Some(kv) = scheduled else {
            return Err(ControlError::NotFound("no switchover is scheduled".into()));
        };
        let deleted = self
            .store_write(
                "delete the failover key",
                self.store
                    .delete_if(&key, Some(Expect::ModRevision(kv.mod_revision))),
            )
            .await?;
        if !deleted {
            return Err(ControlError::Conflict(
                "the scheduled switchover changed concurrently".into(),
            ));
        }
        Ok(())
    }

    async fn restart(&self, request: RestartRequest) -> Result<RestartOutcome, ControlError> {
        let Some(schedule) = request.schedule.clone() else {
            self.send(CommandKind::Restart(request)).await?;
            return Ok(RestartOutcome::Restarted);
        };
        let mut pending = self
            .scheduled_restart
            .lock()
            .map_err(|_| ControlError::Internal("the scheduled restart lock is poisoned".into()))?;
        if pending.as_ref().is_some_and(|task| !task.is_finished()) {
            return Err(ControlError::Conflict(
                "Another restart is already scheduled".into(),
            ));
        }
        let delay = schedule
            .at
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        let control = self.clone();
        let mut request = request;
        request.schedule = None;
        *pending = Some(tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            match control.send(CommandKind::Restart(request)).await {
                Ok(()) => tracing::info!("scheduled restart done"),
                Err(error) => tracing::warn!("scheduled restart: {error}"),
            }
        }));
        Ok(RestartOutcome::Scheduled)
    }

    async fn cancel_restart(&self) -> Result<(), ControlError> {
        let mut pending = self
            .scheduled_restart
            .lock()
            .map_err(|_| ControlError::Internal("the scheduled restart lock is poisoned".into()))?;
        match pending.take() {
            Some(task) if !task.is_finished() => {
                task.abort();
                Ok(())
            }
            _ => Err(ControlError::NotFound("no restart is scheduled".into())),
        }
    }

    async fn reload(&self) -> Result<(), ControlError> {
        self.send(CommandKind::Reload).await
    }

    async fn reinitialize(&self, force: bool) -> Result<(), ControlError> {
        self.send(CommandKind::Reinitialize { force }).await
    }
}

/// `scheduled_at` of the `failover` key among `kvs`, on the agent's monotonic clock (`now`
/// is the agent's current instant). Absent or unreadable: `None` (an immediate switchover).
pub(crate) fn failover_scheduled_at(
    keys: &Keys,
    kvs: &[KeyValue],
    now: ha::Instant,
) -> Option<ha::Instant> {
    let kv = kvs.iter().find(|kv| kv.key == keys.failover())?;
    let json: serde_json::Value = serde_json::from_slice(&kv.value).ok()?;
    let at = rest::Timestamp::parse(json.get("scheduled_at")?.as_str()?).ok()?;
    let wall_now = SystemTime::now();
    Some(match at.at.duration_since(wall_now) {
        Ok(ahead) => now.saturating_add(ahead),
        Err(behind) => ha::Instant(now.0.saturating_sub(behind.duration())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conn_url_host_and_port() {
        assert_eq!(
            host_and_port("postgres://10.0.0.5:5433/postgres"),
            (Some("10.0.0.5".into()), Some(5433))
        );
        assert_eq!(
            host_and_port("postgres://[::1]:5432/postgres"),
            (Some("::1".into()), Some(5432))
        );
        assert_eq!(
            host_and_port("postgres://db/postgres"),
            (Some("db".into()), None)
        );
    }

    #[test]
    fn scheduled_at_moves_to_the_monotonic_clock() {
        let keys = Keys::new("/service", "demo");
        let in_an_hour = SystemTime::now() + Duration::from_secs(3600);
        let seconds = in_an_hour
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|since| since.as_secs())
            .unwrap_or_default();
        // Format the time as UTC by hand: days since the epoch and the time of day.
        let (days, secs) = (seconds / 86_400, seconds % 86_400);
        let date = civil_from_days(days as i64);
        let text = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            date.0,
            date.1,
            date.2,
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        );
        let kv = KeyValue {
            key: keys.failover(),
            value: Bytes::from(format!(r#"{{"leader": "n1", "scheduled_at": "{text}"}}"#)),
            create_revision: 1,
            mod_revision: 1,
            lease: 0,
        };
        let now = ha::Instant::from_secs(100);
        let at = failover_scheduled_at(&keys, &[kv], now);
        let ahead = at
            .map(|at| at.saturating_since(now).as_secs())
            .unwrap_or_default();
        assert!((3598..=3600).contains(&ahead), "{ahead}");
    }

    /// n1 leads; n2 and n3 run; `/sync` lists `voters` in `mode` (`"on"`, `"quorum"`, `"off"`).
    fn cluster(mode: &str, voters: &str) -> Snapshot {
        let keys = Keys::new("/service", "demo");
        let kv = |key: String, value: String| KeyValue {
            key,
            value: Bytes::from(value),
            create_revision: 1,
            mod_revision: 1,
            lease: 0,
        };
        let member = |name: &str| {
            kv(
                keys.member(name),
                serde_json::json!({"conn_url": "postgres://127.0.0.1:5432/postgres",
                    "api_url": "http://127.0.0.1:8008/patroni", "state": "running",
                    "role": "replica", "version": "0.1.0"})
                .to_string(),
            )
        };
        let kvs = vec![
            kv(keys.leader(), "n1".into()),
            kv(
                keys.config(),
                serde_json::json!({"synchronous_mode": mode}).to_string(),
            ),
            kv(
                keys.sync(),
                serde_json::json!({"leader": "n1", "sync_standby": voters, "quorum": 1})
                    .to_string(),
            ),
            member("n1"),
            member("n2"),
            member("n3"),
        ];
        dcs::parse_snapshot(&keys, 1, &kvs, &DynamicConfig::default())
    }

    fn request(kind: SwitchoverKind, candidate: Option<&str>) -> SwitchoverRequest {
        SwitchoverRequest {
            kind,
            leader: (kind == SwitchoverKind::Switchover).then(|| "n1".to_owned()),
            candidate: candidate.map(str::to_owned),
            scheduled_at: None,
        }
    }

    /// In quorum mode (as in priority mode) a switchover goes only to a `/sync` member; a
    /// failover may name any member; with synchronous mode off anyone may be named.
    #[test]
    fn switchover_candidates_in_synchronous_and_quorum_mode() {
        use SwitchoverKind::{Failover, Switchover};
        let refused = |text: &str| Err(ControlError::PreconditionFailed(text.to_owned()));
        let accepted = Ok(Some("n1".to_owned()));
        let table = [
            ("quorum", "n2", Switchover, Some("n2"), accepted.clone()),
            (
                "quorum",
                "n2",
                Switchover,
                Some("n3"),
                refused("candidate name does not match with sync_standby"),
            ),
            ("quorum", "n2,n3", Switchover, Some("n3"), accepted.clone()),
            ("quorum", "n2", Switchover, None, accepted.clone()),
            (
                "quorum",
                "",
                Switchover,
                None,
                refused("switchover is not possible: can not find sync_standby"),
            ),
            (
                "quorum",
                "n9",
                Switchover,
                None,
                refused("switchover is not possible: can not find sync_standby"),
            ),
            ("quorum", "n2", Failover, Some("n3"), accepted.clone()),
            (
                "on",
                "n2",
                Switchover,
                Some("n3"),
                refused("candidate name does not match with sync_standby"),
            ),
            ("on", "n2", Switchover, None, accepted.clone()),
            ("off", "", Switchover, Some("n3"), accepted.clone()),
            ("off", "", Switchover, None, accepted.clone()),
            (
                "quorum",
                "n2",
                Switchover,
                Some("n1"),
                refused("Member n1 is already the leader of cluster demo"),
            ),
        ];
        for (mode, voters, kind, candidate, expected) in table {
            let got = check_switchover("demo", &cluster(mode, voters), &request(kind, candidate));
            assert_eq!(
                got, expected,
                "{mode} /sync={voters:?} {kind:?} to {candidate:?}"
            );
        }
    }

    /// A voter that is not running (or tagged `nofailover`) cannot take a switchover, and
    /// members outside `/sync` do not stand in for it.
    #[test]
    fn unnamed_quorum_switchover_needs_a_healthy_voter() {
        let mut snapshot = cluster("quorum", "n2");
        if let Some(n2) = snapshot.members.get_mut("n2") {
            n2.state = "stopped".into();
        }
        let got = check_switchover(
            "demo",
            &snapshot,
            &request(SwitchoverKind::Switchover, None),
        );
        assert_eq!(
            got,
            Err(ControlError::PreconditionFailed(
                "switchover is not possible: no good candidates have been found".into()
            ))
        );
    }

    fn civil_from_days(days: i64) -> (i64, i64, i64) {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        (year, month, day)
    }
}
