//! `pgwarden run CONFIG.yml`: one member of the embedded store, the HA agent supervising the
//! local PostgreSQL, and Patroni's REST API, under one cancellation token.
//!
//! Start order: bind every listener first (a taken port fails before anything changes), start
//! the Raft member (`raft:`), serve its etcd v3 API, then run the agent and the REST API.
//! Stop order on SIGTERM/SIGINT: the REST API stops answering; the agent stops (a primary
//! stops PostgreSQL with a fast shutdown and deletes the leader key so a replica takes over
//! at once; every member revokes its lease); then the etcd API and the Raft member stop.

mod store;

use std::path::Path;
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

/// Runs until a signal or a fatal agent error.
pub async fn run(config: RunConfig) -> anyhow::Result<()> {
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
    let Some(raft) = config.raft.clone() else {
        anyhow::bail!(
            "etcd3: an external etcd store is not supported by this build yet; use the raft: section"
        );
    };
    let store = store::EmbeddedStore::start(&config.scope, &raft)
        .await
        .context("start the embedded store")?;

    let shutdown = CancellationToken::new();
    let (status_tx, status_rx) = tokio::sync::watch::channel(PatroniStatus::initial(
        agent::identity(&config),
        config.dynamic_defaults().ttl,
    ));
    let rest_stop = shutdown.clone();
    let rest = tokio::spawn(async move {
        rest::serve(rest_listener, status_rx, rest_stop.cancelled_owned()).await
    });
    let placement =
        store.keep_raft_leader_off_primary(status_tx.subscribe(), shutdown.child_token());
    let agent = Agent::new(store.backend(), config, run_as, status_tx);
    let agent_stop = shutdown.child_token();
    let mut agent_task = tokio::spawn(agent.run(agent_stop.clone()));
    tracing::info!("pgwarden run started");

    let mut interrupt = signal(SignalKind::interrupt()).context("install the SIGINT handler")?;
    let mut terminate = signal(SignalKind::terminate()).context("install the SIGTERM handler")?;
    let mut agent_done = false;
    let outcome = tokio::select! {
        _ = interrupt.recv() => { tracing::info!("SIGINT received; shutting down"); Ok(()) }
        _ = terminate.recv() => { tracing::info!("SIGTERM received; shutting down"); Ok(()) }
        joined = &mut agent_task => {
            agent_done = true;
            match joined {
                Ok(Ok(())) => Ok(()),
                Ok(Err(error)) => Err(anyhow::Error::new(error)),
                Err(error) => Err(anyhow::Error::new(error).context("the agent task failed")),
            }
        }
    };
    // REST first (probes see the node go away), then the agent, then the store.
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
    let _ = placement.await;
    tokio::time::timeout(STORE_SHUTDOWN_GRACE, store.shutdown())
        .await
        .context("stopping the store took too long")??;
    tracing::info!("stopped");
    outcome
}
