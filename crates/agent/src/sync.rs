//! Synchronous mode, the shell side of `ha::sync`: the primary turns `pg_stat_replication`
//! into `ha::sync::plan`'s steps and carries them out — `synchronous_standby_names` through
//! postgresql.conf and a reload, the `/sync` key with a compare-and-swap — and prepares both
//! right before a promotion (patroni.md §1.11).
//!
//! Ordering (the plan's invariant, which keeps acknowledged commits on a failover target):
//! a standby enters `/sync` only after PostgreSQL reports it `sync` under the new setting and
//! it has confirmed the primary's flush position of the moment the setting changed; it leaves
//! `/sync` before the setting drops it. `ha::decide` then lets only `/sync` members race.
//!
//! `synchronous_mode: quorum` (`ANY k`): `ha::quorum::plan_quorum` instead, with `/sync`
//! carrying the voters (`sync_standby`) and `quorum`; `ha::decide` then lets a member promote
//! only once `quorum` voters are known to be no further than it.

use bytes::Bytes;
use dcs::{Expect, KvBackend};
use ha::quorum::QuorumStep;
use ha::sync::{ReplicationRow, SyncCommitLevel, SyncInput, SyncStep};
use ha::{Lsn, MemberName, SynchronousMode};
use serde_json::json;

use crate::act::{ActError, ActResult};
use crate::agent::Agent;

/// What the primary remembers between cycles about the setting it wrote.
#[derive(Debug, Default)]
pub(crate) struct SyncState {
    /// The members named by the `synchronous_standby_names` we set.
    guc_members: Vec<MemberName>,
    /// The primary's flush position when that setting changed: a new standby must have
    /// confirmed it before it may enter `/sync`.
    flush_lsn_at_guc_change: Option<Lsn>,
}

/// `synchronous_commit` → which `pg_stat_replication` position acknowledges a commit.
fn commit_level(parameters: &std::collections::BTreeMap<String, String>) -> SyncCommitLevel {
    match parameters.get("synchronous_commit").map(String::as_str) {
        Some("remote_apply") => SyncCommitLevel::RemoteApply,
        Some("remote_write") => SyncCommitLevel::RemoteWrite,
        _ => SyncCommitLevel::Flush,
    }
}

fn replication_rows(facts: &postgres::ServerFacts) -> Vec<ReplicationRow> {
    facts
        .replication
        .iter()
        .map(|row| ReplicationRow {
            application_name: row.application_name.clone(),
            streaming: row.state.as_deref() == Some("streaming"),
            sync_state_sync: matches!(row.sync_state.as_deref(), Some("sync" | "quorum")),
            write_lsn: row.write_lsn.map(|lsn| Lsn(lsn.0)),
            flush_lsn: row.flush_lsn.map(|lsn| Lsn(lsn.0)),
            replay_lsn: row.replay_lsn.map(|lsn| Lsn(lsn.0)),
        })
        .collect()
}

impl<B: KvBackend> Agent<B> {
    /// Right before promoting in synchronous mode: `/sync` names us with no standby yet, and
    /// `synchronous_standby_names` is set (strict mode: the previous synchronous members, or
    /// the placeholder that blocks commits until one is back).
    pub(crate) async fn prepare_sync_for_promote(&mut self, names: &[MemberName]) -> ActResult {
        let config = &self.last_config;
        let quorum_mode = config.synchronous_mode == SynchronousMode::Quorum;
        self.write_sync_key(&[], quorum_mode.then_some(0)).await?;
        let config = &self.last_config;
        let value = if config.synchronous_mode_strict && quorum_mode {
            let count = usize::try_from(config.synchronous_node_count).unwrap_or(1);
            ha::quorum::render_quorum_names(names, count, true)
        } else if config.synchronous_mode_strict {
            ha::sync::render_standby_names(names, config.synchronous_node_count, true)
        } else {
            String::new()
        };
        self.sync.guc_members = names.to_vec();
        self.set_standby_names(if value.is_empty() { None } else { Some(value) })
    }

    /// As the primary, once per cycle: carry out `ha::sync::plan` (mode off: delete `/sync`
    /// and give `synchronous_standby_names` back to the user's configuration).
    pub(crate) async fn reconcile_synchronous_standbys(&mut self) -> ActResult {
        let config = self.last_config.clone();
        if config.synchronous_mode == SynchronousMode::Off {
            if self.current_sync_key().await?.is_some() {
                let key = self.keys.sync();
                self.store_call("delete the /sync key", self.store.delete_if(&key, None))
                    .await?;
            }
            self.sync.guc_members.clear();
            return self.set_standby_names(None);
        }
        let Some(facts) = self.facts.clone() else {
            return Ok(());
        };
        let Some(snapshot) = self.snapshot.clone() else {
            return Ok(());
        };
        let me = self.me();
        let own_sync = snapshot
            .view
            .sync
            .as_ref()
            .filter(|sync| sync.leader.as_ref() == Some(&me));
        let current_sync: Vec<MemberName> = own_sync
            .map(|sync| sync.sync_standbys.clone())
            .unwrap_or_default();
        let current_quorum = own_sync.map_or(0, |sync| sync.quorum);
        let rows = replication_rows(&facts);
        let current_guc_value = self
            .pg
            .synchronous_standby_names
            .clone()
            .unwrap_or_default();
        let guc_members = self.sync.guc_members.clone();
        let input = SyncInput {
            leader: &me,
            members: &snapshot.view.members,
            replication: &rows,
            node_count: config.synchronous_node_count,
            strict: config.synchronous_mode_strict,
            maximum_lag_on_syncnode: config.maximum_lag_on_syncnode,
            commit_level: commit_level(&snapshot.parameters),
            current_sync: &current_sync,
            current_guc: &guc_members,
            current_guc_value: &current_guc_value,
            flush_lsn_at_guc_change: self.sync.flush_lsn_at_guc_change,
        };
        if config.synchronous_mode == SynchronousMode::Quorum {
            for step in ha::quorum::plan_quorum(&input, current_quorum) {
                match step {
                    QuorumStep::WriteSyncKey { voters, quorum } => {
                        tracing::info!(voters = ?voters, quorum, "quorum voters in /sync");
                        self.write_sync_key(&voters, Some(quorum)).await?;
                    }
                    QuorumStep::SetStandbyNames { value, members } => {
                        self.set_planned_standby_names(&facts, value, members)?;
                    }
                }
            }
            return Ok(());
        }
        for step in ha::sync::plan(&input) {
            match step {
                SyncStep::WriteSyncKey { standbys } => {
                    tracing::info!(standbys = ?standbys, "synchronous standbys in /sync");
                    self.write_sync_key(&standbys, None).await?;
                }
                SyncStep::SetStandbyNames { value, members } => {
                    self.set_planned_standby_names(&facts, value, members)?;
                }
            }
        }
        Ok(())
    }

    /// A planned `synchronous_standby_names` change, remembering its members and the flush
    /// position at the change (see [`SyncState`]).
    fn set_planned_standby_names(
        &mut self,
        facts: &postgres::ServerFacts,
        value: String,
        members: Vec<MemberName>,
    ) -> ActResult {
        tracing::info!(%value, "setting synchronous_standby_names");
        self.sync.guc_members = members;
        self.sync.flush_lsn_at_guc_change =
            facts.flush_lsn.or(facts.write_lsn).map(|lsn| Lsn(lsn.0));
        self.set_standby_names(if value.is_empty() { None } else { Some(value) })
    }

    /// The `/sync` key's mod revision, if it exists.
    async fn current_sync_key(&self) -> Result<Option<i64>, ActError> {
        let key = self.keys.sync();
        let (_, kvs) = self
            .store_call("read the /sync key", self.store.get_prefix(&key))
            .await?;
        Ok(kvs
            .iter()
            .find(|kv| kv.key == key)
            .map(|kv| kv.mod_revision))
    }

    /// `/sync` = {leader: me, sync_standby: "a,b" | null} (and `quorum` in quorum mode), if it
    /// did not change since read.
    async fn write_sync_key(&self, standbys: &[MemberName], quorum: Option<u32>) -> ActResult {
        let expect = match self.current_sync_key().await? {
            Some(revision) => Expect::ModRevision(revision),
            None => Expect::Absent,
        };
        let names: Vec<&str> = standbys.iter().map(MemberName::as_str).collect();
        let mut value = json!({
            "leader": self.config.name,
            "sync_standby": if names.is_empty() { serde_json::Value::Null } else { json!(names.join(",")) },
        });
        if let Some(quorum) = quorum {
            value["quorum"] = json!(quorum);
        }
        let key = self.keys.sync();
        let written = self
            .store_call(
                "write the /sync key",
                self.store
                    .put_if(&key, expect, Bytes::from(value.to_string()), 0),
            )
            .await?;
        if written {
            Ok(())
        } else {
            Err(ActError::Failed(
                "the /sync key changed meanwhile; not writing it".to_owned(),
            ))
        }
    }

    /// Writes postgresql.conf with `value` as `synchronous_standby_names` and reloads.
    fn set_standby_names(&mut self, value: Option<String>) -> ActResult {
        if self.pg.synchronous_standby_names == value {
            return Ok(());
        }
        self.pg.synchronous_standby_names = value;
        let settings = self.current_settings().ok_or_else(|| {
            ActError::Failed(
                "write synchronous_standby_names: the upstream's address is not known".to_owned(),
            )
        })?;
        self.pg.write_config(&settings).map_err(|error| {
            ActError::Failed(format!("write synchronous_standby_names: {error}"))
        })?;
        self.reload_postgres()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_level_follows_synchronous_commit() {
        let mut parameters = std::collections::BTreeMap::new();
        assert_eq!(commit_level(&parameters), SyncCommitLevel::Flush);
        parameters.insert("synchronous_commit".to_owned(), "remote_apply".to_owned());
        assert_eq!(commit_level(&parameters), SyncCommitLevel::RemoteApply);
        parameters.insert("synchronous_commit".to_owned(), "remote_write".to_owned());
        assert_eq!(commit_level(&parameters), SyncCommitLevel::RemoteWrite);
    }
}
