//! `pgwarden run CONFIG.yml`: the HA agent supervising the local PostgreSQL and Patroni's REST
//! API over a store, under one cancellation token. The store is either one member of the
//! embedded Raft store (`raft:`) or an external etcd cluster (`etcd3:`, reached through
//! [`dcs::EtcdStore`], over https with the `etcd3:` TLS keys); the agent and the REST API are the same over either.
//!
//! Start order: bind every listener first (a taken port fails before anything changes); with
//! `raft:` start the Raft member, serve its etcd v3 API and keep its Raft leadership off the
//! PostgreSQL primary's host; with `etcd3:` only prepare the client (it connects on first
//! use and keeps retrying, so an etcd cluster that is still starting is waited for); then
//! run the REST API (HTTPS only with `restapi.certfile`) and the agent.
//! Stop order on SIGTERM/SIGINT: the REST API stops answering; the agent stops (a primary
//! stops PostgreSQL with a fast shutdown and deletes the leader key so a replica takes over
//! at once; every member revokes its lease); then, with `raft:`, the leadership placement
//! task, the etcd API and the Raft member stop (an external etcd cluster is left running).

mod store;

use std::path::{Path, PathBuf};
use std::time::Duration;

use agent::{Agent, RunConfig};
use anyhow::Context;
use rest::PatroniStatus;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// Upper bound on a graceful stop once the agent has finished.
const STORE_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Loads and validates the configuration (an error names the key path), then runs.
pub fn load(path: &Path) -> anyhow::Result<RunConfig> {
    RunConfig::load(path).with_context(|| format!("configuration {}", path.display()))
}

/// Runs until SIGINT, SIGTERM or a fatal agent error; SIGHUP reads `config_file` again (as
/// `POST /reload` does).
pub async fn run(config: RunConfig, config_file: PathBuf) -> anyhow::Result<()> {
    // First of all: from here on SIGHUP no longer ends the process (its default), even while
    // the store starts; it is acted on once the agent runs.
    let hangup = signal(SignalKind::hangup()).context("install the SIGHUP handler")?;
    let run_as = postgres::RunAs::configured(&config.postgresql.os_user)
        .context("resolve postgresql.os_user")?;
    if run_as.switches_user() {
        tracing::info!(
            os_user = %config.postgresql.os_user,
            "running as root: PostgreSQL runs as the configured OS user"
        );
    }
    let rest_listener = TcpListener::bind(config.restapi.listen)
        .await
        .with_context(|| format!("bind restapi.listen {}", config.restapi.listen))?;
    let shutdown = CancellationToken::new();
    let (status_tx, status_rx) = tokio::sync::watch::channel(PatroniStatus::initial(
        agent::identity(&config),
        config.dynamic_defaults().ttl,
    ));
    if let Some(raft) = config.raft.clone() {
        let store = store::EmbeddedStore::start(&config.scope, &raft)
            .await
            .context("start the embedded store")?;
        let placement =
            store.keep_raft_leader_off_primary(status_tx.subscribe(), shutdown.child_token());
        let serving = Serving {
            rest_listener,
            status_tx,
            status_rx,
            shutdown,
            store_leader: Some(store.raft_leader_probe()),
        };
        let outcome = serving
            .run_until_stopped(store.backend(), config, config_file, hangup, run_as)
            .await;
        let _ = placement.await;
        tokio::time::timeout(STORE_SHUTDOWN_GRACE, store.shutdown())
            .await
            .context("stopping the store took too long")??;
        tracing::info!("stopped");
        return outcome;
    }
    let Some(etcd3) = config.etcd3.as_ref() else {
        anyhow::bail!("no store configured: add a raft: or an etcd3: section");
    };
    let endpoints = etcd3.endpoints();
    let tls = etcd3.tls().context("etcd3 TLS")?;
    let backend = dcs::EtcdStore::new(dcs::EtcdOptions {
        endpoints: endpoints.clone(),
        user: etcd3.user(),
        request_timeout: config.dynamic_defaults().retry_timeout,
        tls,
    })
    .context("configure the etcd3 store")?;
    tracing::info!(endpoints = ?endpoints, "using the external etcd cluster");
    let serving = Serving {
        rest_listener,
        status_tx,
        status_rx,
        shutdown,
        store_leader: None,
    };
    let outcome = serving
        .run_until_stopped(backend, config, config_file, hangup, run_as)
        .await;
    tracing::info!("stopped");
    outcome
}

/// What runs over either store: the REST API and the agent, until a signal or the agent's end.
struct Serving {
    rest_listener: TcpListener,
    /// The agent publishes its status here; the REST API and the leadership placement task read it.
    status_tx: tokio::sync::watch::Sender<PatroniStatus>,
    status_rx: tokio::sync::watch::Receiver<PatroniStatus>,
    /// Cancelled on a signal or when the agent ends; the REST API stops on it, the agent and
    /// the placement task on child tokens.
    shutdown: CancellationToken,
    /// Whether this member's embedded store leads Raft (`/metrics`); `None` with external etcd.
    store_leader: Option<rest::StoreLeaderProbe>,
}

impl Serving {
    /// Runs the REST API and the agent over `backend`; on a signal (or the agent's end) stops
    /// the REST API first (probes see the node go away), then the agent.
    async fn run_until_stopped<B: dcs::KvBackend>(
        self,
        backend: B,
        config: RunConfig,
        config_file: PathBuf,
        mut hangup: tokio::signal::unix::Signal,
        run_as: postgres::RunAs,
    ) -> anyhow::Result<()> {
        let Serving {
            rest_listener,
            status_tx,
            status_rx,
            shutdown,
            store_leader,
        } = self;
        let access = config
            .restapi
            .access_policy()
            .map_err(|reason| anyhow::anyhow!("restapi.allowlist: {reason}"))?;
        let rest_tls = config.rest_server_tls().context("restapi TLS")?;
        let rest_client = config.rest_client().context("ctl TLS")?;
        let (control, commands) = agent::AgentControl::new(backend.clone(), &config);
        let reloader = control.clone();
        let api = rest::Api {
            status: status_rx,
            control,
            access,
            store_leader,
            headers: config.rest_response_headers()?,
        };
        let rest_stop = shutdown.clone();
        let rest = tokio::spawn(async move {
            rest::serve(rest_listener, api, rest_tls, rest_stop.cancelled_owned()).await
        });
        let agent = Agent::new(backend, config, run_as, status_tx)
            .with_commands(commands)
            .with_config_file(config_file)
            .with_rest_client(rest_client);
        let agent_stop = shutdown.child_token();
        let mut agent_task = tokio::spawn(agent.run(agent_stop.clone()));
        tracing::info!("pgwarden run started");

        let mut interrupt =
            signal(SignalKind::interrupt()).context("install the SIGINT handler")?;
        let mut terminate =
            signal(SignalKind::terminate()).context("install the SIGTERM handler")?;
        // SIGHUP reloads, as for Patroni (`systemctl reload`); left at its default it would
        // end the process and leave PostgreSQL running without its supervisor.
        let mut agent_done = false;
        let outcome = loop {
            tokio::select! {
                _ = hangup.recv() => {
                    tracing::info!("SIGHUP received; reloading the configuration");
                    if let Err(error) = rest::ClusterControl::reload(&reloader).await {
                        tracing::error!("reload on SIGHUP: {error}");
                    }
                }
                _ = interrupt.recv() => {
                    tracing::info!("SIGINT received; shutting down");
                    break Ok(());
                }
                _ = terminate.recv() => {
                    tracing::info!("SIGTERM received; shutting down");
                    break Ok(());
                }
                joined = &mut agent_task => {
                    agent_done = true;
                    break match joined {
                        Ok(Ok(())) => Ok(()),
                        Ok(Err(error)) => Err(anyhow::Error::new(error)),
                        Err(error) => Err(anyhow::Error::new(error).context("the agent task failed")),
                    };
                }
            }
        };
        shutdown.cancel();
        if let Ok(Err(error)) = rest.await {
            tracing::error!("REST API stopped with an error: {error}");
        }
        if !agent_done {
            match agent_task.await {
                Ok(Err(error)) => tracing::error!("{error}"),
                Err(error) => tracing::error!("the agent task failed: {error}"),
                Ok(Ok(())) => {}
            }
        }
        outcome
    }
}
