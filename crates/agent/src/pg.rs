//! The local PostgreSQL as the agent drives it: the settings it renders for each role, the
//! connection targets, and the few composite steps (start, clone, rewind, bootstrap) that the
//! long actions run. Everything PostgreSQL-specific lives in the `postgres` crate; this module
//! only fills its inputs from the run configuration.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use postgres::bootstrap::{BasebackupOptions, InitdbOptions, ReplicaMethod};
use postgres::config::{ConnInfo, RecoverySettings, ServerSettings, slot_name_from_member_name};
use postgres::rewind::RewindOptions;
use postgres::{ConnectTarget, Postmaster, Probe, RunAs, StopMode, Tools};

use crate::config::{RunConfig, split_host_port};

/// How long a single local SQL connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The static facts about the local PostgreSQL, derived once from the configuration.
#[derive(Debug, Clone)]
pub struct LocalPg {
    pub tools: Tools,
    pub data_dir: PathBuf,
    pub scope: String,
    pub name: String,
    listen_host: String,
    port: u16,
    socket_dir: PathBuf,
    superuser: (String, Option<String>),
    replication: (String, Option<String>),
    local_parameters: BTreeMap<String, String>,
    hba: Vec<String>,
    methods: Vec<ReplicaMethod>,
    /// `bootstrap.initdb`, after pgwarden's own initdb options (a later option wins).
    initdb: Vec<(String, Option<String>)>,
    log_file: PathBuf,
    /// `synchronous_standby_names` while this node is the primary in synchronous mode
    /// (`None`: the user's own setting, if any).
    pub synchronous_standby_names: Option<String>,
}

impl LocalPg {
    pub fn new(config: &RunConfig, run_as: RunAs) -> Self {
        let postgresql = &config.postgresql;
        let (listen_host, port) = split_host_port(&postgresql.listen).unwrap_or_default();
        let mut local_parameters = config.local_parameters();
        let socket_dir = local_parameters
            .remove("unix_socket_directories")
            .and_then(|dirs| dirs.split(',').next().map(|dir| PathBuf::from(dir.trim())))
            .unwrap_or_else(|| PathBuf::from("/tmp"));
        // A replica whose upstream is not there yet retries after this; PostgreSQL's 5 s
        // default would dominate the time a rejoining node needs to stream again.
        local_parameters
            .entry("wal_retrieve_retry_interval".to_owned())
            .or_insert_with(|| "500ms".to_owned());
        let credentials =
            |creds: &crate::config::Credentials| (creds.username.clone(), creds.password.clone());
        let mut methods = Vec::new();
        let names = if postgresql.create_replica_methods.is_empty() {
            vec!["basebackup".to_owned()]
        } else {
            postgresql.create_replica_methods.clone()
        };
        for name in names {
            if name == "basebackup" {
                methods.push(ReplicaMethod::Basebackup(Box::new(BasebackupOptions {
                    data_dir: postgresql.data_dir.clone(),
                    source: ConnInfo::default(),
                    extra: vec![("checkpoint".into(), Some("fast".into()))],
                    attempts: 2,
                    retry_delay: Duration::from_secs(1),
                    timeout: Duration::from_secs(3600),
                })));
            } else if let Some(section) = postgresql.method_sections.get(&name) {
                methods.push(ReplicaMethod::Custom(custom_method(&name, section)));
            }
        }
        let mut log_file = postgresql.data_dir.clone().into_os_string();
        log_file.push(".log");
        Self {
            tools: Tools::new(postgresql.bin_dir.clone(), run_as),
            data_dir: postgresql.data_dir.clone(),
            scope: config.scope.clone(),
            name: config.name.clone(),
            listen_host,
            port,
            socket_dir,
            superuser: credentials(&postgresql.authentication.superuser),
            replication: credentials(&postgresql.authentication.replication),
            local_parameters,
            hba: postgresql.pg_hba.clone(),
            methods,
            // Checked when the configuration loaded.
            initdb: config.initdb_options().unwrap_or_default(),
            log_file: PathBuf::from(log_file),
            synchronous_standby_names: None,
        }
    }

    /// This PostgreSQL with what `config` (a reloaded configuration) may change while it
    /// runs: the local parameters, `pg_hba` and the replica creation methods. Where it runs,
    /// its socket and its credentials stay as they are.
    pub fn reloaded(&self, config: &RunConfig) -> Self {
        let fresh = LocalPg::new(config, self.tools.run_as.clone());
        Self {
            local_parameters: fresh.local_parameters,
            hba: fresh.hba,
            methods: fresh.methods,
            initdb: fresh.initdb,
            ..self.clone()
        }
    }

    /// The superuser over the local unix socket.
    pub fn local_target(&self) -> ConnectTarget {
        ConnectTarget {
            socket_dir: self.socket_dir.clone(),
            port: self.port,
            user: self.superuser.0.clone(),
            password: self.superuser.1.clone(),
            dbname: "postgres".to_owned(),
            connect_timeout: CONNECT_TIMEOUT,
        }
    }

    pub async fn connect(&self) -> postgres::Result<Probe> {
        Probe::connect(&self.local_target()).await
    }

    /// A connection to another member from its `conn_url` (`postgres://host:port/...`).
    pub fn conninfo(&self, conn_url: &str, replication: bool) -> Option<ConnInfo> {
        let rest = conn_url
            .strip_prefix("postgres://")
            .or_else(|| conn_url.strip_prefix("postgresql://"))?;
        let address = rest.split('/').next()?;
        let (host, port) = split_host_port(address)?;
        let (user, password) = if replication {
            self.replication.clone()
        } else {
            self.superuser.clone()
        };
        Some(ConnInfo {
            host,
            port,
            user,
            password,
            dbname: "postgres".to_owned(),
            application_name: Some(self.name.clone()),
            ..ConnInfo::default()
        })
    }

    /// The replication slot a member streams through on its upstream.
    pub fn slot_name(member: &str) -> String {
        slot_name_from_member_name(member)
    }

    /// Server settings for a primary (`recovery = None`) or a replica.
    pub fn settings(
        &self,
        dynamic_parameters: &BTreeMap<String, String>,
        recovery: Option<RecoverySettings>,
    ) -> ServerSettings {
        ServerSettings {
            listen_addresses: self.listen_host.clone(),
            port: self.port,
            unix_socket_directory: self.socket_dir.clone(),
            cluster_name: self.scope.clone(),
            dynamic_parameters: dynamic_parameters.clone(),
            local_parameters: self.local_parameters.clone(),
            synchronous_standby_names: self.synchronous_standby_names.clone(),
            hba_file: self.data_dir.join("pg_hba.conf"),
            ident_file: None,
            recovery,
            replica_minimums: BTreeMap::new(),
        }
    }

    /// Recovery settings that stream from `upstream` (or wait without one).
    pub fn recovery(&self, upstream: Option<ConnInfo>) -> RecoverySettings {
        RecoverySettings {
            primary_slot_name: upstream.as_ref().map(|_| Self::slot_name(&self.name)),
            primary_conninfo: upstream,
            extra: BTreeMap::from([("recovery_target_timeline".to_owned(), "latest".to_owned())]),
            ..RecoverySettings::default()
        }
    }

    /// Writes postgresql.conf, pg_hba.conf and standby.signal for `settings`.
    pub fn write_config(&self, settings: &ServerSettings) -> postgres::Result<()> {
        postgres::datadir::write_config(&self.data_dir, settings, &self.hba, &self.tools.run_as)
    }

    /// Writes the configuration and spawns the postmaster (does not wait for connections).
    pub fn start(&self, settings: &ServerSettings) -> postgres::Result<Postmaster> {
        self.write_config(settings)?;
        let effective = postgres::config::effective_parameters(settings);
        Postmaster::start(
            &self.tools,
            &self.data_dir,
            &effective.command_line,
            Some(&self.log_file),
        )
    }

    /// initdb with data checksums, start as primary, wait for connections, create the
    /// replication user.
    pub async fn bootstrap(
        &self,
        settings: &ServerSettings,
        timeout: Duration,
    ) -> postgres::Result<Postmaster> {
        let pwfile = match &self.superuser.1 {
            Some(password) => {
                let mut path = self.data_dir.clone().into_os_string();
                path.push(".pwfile");
                let path = PathBuf::from(path);
                postgres::files::write_atomic(
                    &path,
                    password.as_bytes(),
                    0o600,
                    &self.tools.run_as,
                )?;
                Some(path)
            }
            None => None,
        };
        let result = postgres::bootstrap::initdb(
            &self.tools,
            &InitdbOptions {
                data_dir: self.data_dir.clone(),
                superuser: self.superuser.0.clone(),
                pwfile: pwfile.clone(),
                data_checksums: true,
                extra: std::iter::once(("encoding".to_owned(), Some("UTF8".to_owned())))
                    .chain(self.initdb.iter().cloned())
                    .collect(),
                timeout,
            },
        )
        .await;
        if let Some(pwfile) = pwfile {
            let _ = postgres::files::remove_if_exists(&pwfile);
        }
        result?;
        let mut postmaster = self.start(settings)?;
        let ready = async {
            postmaster.wait_ready(&self.local_target(), timeout).await?;
            let probe = self.connect().await?;
            probe
                .ensure_replication_user(&self.replication.0, self.replication.1.as_deref())
                .await?;
            probe.close().await;
            postgres::Result::Ok(())
        }
        .await;
        if let Err(error) = ready {
            // Nothing may keep running on a data directory the caller is about to empty.
            let _ = postmaster.stop(StopMode::Immediate, timeout).await;
            return Err(error);
        }
        Ok(postmaster)
    }

    /// Clones from `source` with the configured methods, then starts as its replica.
    pub async fn create_replica(
        &self,
        source: Option<ConnInfo>,
        settings: &ServerSettings,
        timeout: Duration,
    ) -> postgres::Result<Postmaster> {
        self.tools.run_as.prepare_dir(&self.data_dir, 0o700)?;
        let replication_source = source.clone();
        postgres::bootstrap::create_replica(
            &self.tools,
            &self.methods,
            &self.scope,
            &self.data_dir,
            replication_source.as_ref(),
            None,
            timeout,
        )
        .await?;
        self.tools.run_as.prepare_dir(&self.data_dir, 0o700)?;
        self.start(settings)
    }

    /// pg_rewind from `source` (a superuser connection), after crash recovery if the data
    /// directory was not shut down cleanly, then start as a replica with `settings`.
    pub async fn rewind(
        &self,
        source: ConnInfo,
        settings: &ServerSettings,
        timeout: Duration,
    ) -> postgres::Result<Postmaster> {
        let control = postgres::controldata::read_controldata(&self.tools, &self.data_dir).await?;
        if control.cluster_state.needs_crash_recovery() {
            postgres::rewind::crash_recovery_single_user(&self.tools, &self.data_dir, timeout)
                .await?;
        }
        postgres::rewind::pg_rewind(
            &self.tools,
            &RewindOptions {
                data_dir: self.data_dir.clone(),
                source,
                extra: Vec::new(),
                timeout,
            },
        )
        .await?;
        self.start(settings)
    }

    /// Wipes the data directory (after stopping) and clones again.
    pub async fn reinitialize(
        &self,
        source: Option<ConnInfo>,
        settings: &ServerSettings,
        timeout: Duration,
    ) -> postgres::Result<Postmaster> {
        postgres::files::clear_dir(&self.data_dir)?;
        self.create_replica(source, settings, timeout).await
    }
}

/// Stops a postmaster (our child) in `mode`; SIGKILL-free: immediate is PostgreSQL's own.
pub async fn stop(
    postmaster: &mut Postmaster,
    mode: StopMode,
    timeout: Duration,
) -> postgres::Result<()> {
    match postmaster.stop(mode, timeout).await {
        Ok(_) => Ok(()),
        Err(postgres::Error::StopTimedOut(_)) if mode != StopMode::Immediate => postmaster
            .stop(StopMode::Immediate, timeout)
            .await
            .map(|_| ()),
        Err(error) => Err(error),
    }
}

fn custom_method(
    name: &str,
    section: &serde_json::Value,
) -> postgres::bootstrap::CustomReplicaMethod {
    let text = |key: &str| {
        section
            .get(key)
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    };
    let flag = |key: &str| {
        section
            .get(key)
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false)
    };
    let command = text("command")
        .map(|command| command.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    let params = section
        .as_object()
        .map(|map| {
            map.iter()
                .filter(|(key, _)| {
                    !matches!(
                        key.as_str(),
                        "command" | "keep_data" | "no_params" | "no_leader"
                    )
                })
                .map(|(key, value)| (key.clone(), crate::config::parameter_text(value)))
                .collect()
        })
        .unwrap_or_default();
    postgres::bootstrap::CustomReplicaMethod {
        name: name.to_owned(),
        command,
        keep_data: flag("keep_data"),
        no_params: flag("no_params"),
        no_leader: flag("no_leader"),
        params,
    }
}

/// Whether the data directory holds `standby.signal` (it starts as a replica).
pub fn has_standby_signal(data_dir: &Path) -> bool {
    data_dir.join("standby.signal").exists()
}
