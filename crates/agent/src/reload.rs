//! The local configuration file read again while running (`POST /reload`, `pgwarden ctl
//! reload`, SIGHUP), as Patroni does.
//!
//! What a running member can take at once: `tags`, the user hooks (`postgresql.callbacks`,
//! `pre_promote`, `before_stop`), the local PostgreSQL `parameters` and `pg_hba` (written to
//! PostgreSQL's files and reloaded; a parameter that needs a PostgreSQL restart shows as
//! `pending_restart`), the replica creation methods, and `bootstrap` and `log`. Everything
//! else — identity (`scope`, `namespace`, `name`), the REST API and `ctl:`, the store (`raft`,
//! `etcd3`), `watchdog`, and where and as whom PostgreSQL runs — keeps its running value until
//! pgwarden restarts; a warning names each such key whose value changed. A file that does not
//! load (unreadable, bad YAML, a refused key) changes nothing: the error names file and key.

use std::path::Path;

use dcs::KvBackend;

use crate::agent::Agent;
use crate::config::{ConfigError, RunConfig};

/// The running configuration with the keys of `new` that apply at once, and the keys whose
/// new value waits for a restart (their running value is kept).
pub(crate) fn merge(running: &RunConfig, new: RunConfig) -> (RunConfig, Vec<&'static str>) {
    let mut merged = running.clone();
    merged.tags = new.tags.clone();
    merged.bootstrap = new.bootstrap.clone();
    merged.log = new.log.clone();
    let (live, fresh) = (&mut merged.postgresql, &new.postgresql);
    live.parameters = fresh.parameters.clone();
    live.pg_hba = fresh.pg_hba.clone();
    live.callbacks = fresh.callbacks.clone();
    live.pre_promote = fresh.pre_promote.clone();
    live.before_stop = fresh.before_stop.clone();
    live.create_replica_methods = fresh.create_replica_methods.clone();
    live.basebackup = fresh.basebackup.clone();
    live.method_sections = fresh.method_sections.clone();

    let (old, new_pg) = (&merged.postgresql, &new.postgresql);
    let candidates: [(&'static str, bool); 19] = [
        ("scope", merged.scope != new.scope),
        ("namespace", merged.namespace != new.namespace),
        ("name", merged.name != new.name),
        ("restapi", merged.restapi != new.restapi),
        ("ctl", merged.ctl != new.ctl),
        ("raft", merged.raft != new.raft),
        ("etcd3", merged.etcd3 != new.etcd3),
        ("watchdog", merged.watchdog != new.watchdog),
        ("postgresql.listen", old.listen != new_pg.listen),
        (
            "postgresql.connect_address",
            old.connect_address != new_pg.connect_address,
        ),
        ("postgresql.data_dir", old.data_dir != new_pg.data_dir),
        ("postgresql.bin_dir", old.bin_dir != new_pg.bin_dir),
        ("postgresql.config_dir", old.config_dir != new_pg.config_dir),
        ("postgresql.pgpass", old.pgpass != new_pg.pgpass),
        (
            "postgresql.authentication",
            old.authentication != new_pg.authentication,
        ),
        (
            "postgresql.use_pg_rewind",
            old.use_pg_rewind != new_pg.use_pg_rewind,
        ),
        (
            "postgresql.remove_data_directory_on_rewind_failure",
            old.remove_data_directory_on_rewind_failure
                != new_pg.remove_data_directory_on_rewind_failure,
        ),
        (
            "postgresql.remove_data_directory_on_diverged_timelines",
            old.remove_data_directory_on_diverged_timelines
                != new_pg.remove_data_directory_on_diverged_timelines,
        ),
        ("postgresql.os_user", old.os_user != new_pg.os_user),
    ];
    let waiting = candidates
        .into_iter()
        .filter_map(|(key, changed)| changed.then_some(key))
        .collect();
    (merged, waiting)
}

impl<B: KvBackend> Agent<B> {
    /// Reads `path` again and takes what applies at once (see the module doc); PostgreSQL's
    /// files are rewritten when the local parameters or `pg_hba` changed (the caller reloads
    /// PostgreSQL). Nothing changes when the file does not load.
    pub(crate) fn reload_config_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let new = RunConfig::load(path)?;
        let (merged, waiting) = merge(&self.config, new);
        if !waiting.is_empty() {
            tracing::warn!(
                file = %path.display(),
                "changed keys that take effect when pgwarden restarts (running values kept): {}",
                waiting.join(", ")
            );
        }
        let postgres_files_changed = merged.postgresql.parameters
            != self.config.postgresql.parameters
            || merged.postgresql.pg_hba != self.config.postgresql.pg_hba;
        self.pg = self.pg.reloaded(&merged);
        self.config = merged;
        tracing::info!(file = %path.display(), "configuration reloaded");
        if postgres_files_changed && (self.postmaster.is_some() || self.adopted.is_some()) {
            match self.current_settings() {
                Some(settings) => {
                    if let Err(error) = self.pg.write_config(&settings) {
                        tracing::warn!(
                            "write PostgreSQL's configuration after the reload: {error}"
                        );
                    }
                }
                // Not now (see `current_settings`): the next cycle that can writes and
                // reloads, as for a changed `/config`.
                None => self.applied_parameters.clear(),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "reload_test.rs"]
mod tests;
