//! The REST API's requests that touch PostgreSQL (restart, reload, reinitialize), run by
//! the HA loop between two cycles: only the loop owns the postmaster, so a request waits for
//! the current cycle to end rather than racing it.

use std::time::Duration;

use dcs::KvBackend;
use postgres::StopMode;
use rest::{ControlError, RestartRequest};
use tokio::sync::{mpsc, oneshot};

use crate::act::ActError;
use crate::agent::Agent;

/// Bound on waiting for a restarted PostgreSQL to accept connections (without `timeout`).
const RESTART_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A request the HA loop runs between two cycles.
#[derive(Debug)]
pub struct Command {
    pub(crate) kind: CommandKind,
    /// Dropped unanswered only if the loop stops first (the caller then answers 503).
    pub(crate) reply: oneshot::Sender<Result<(), ControlError>>,
}

#[derive(Debug)]
pub(crate) enum CommandKind {
    Restart(RestartRequest),
    Reload,
    Reinitialize { force: bool },
}

/// The receiving end the agent's loop selects on (see [`Agent::with_commands`]).
pub type CommandReceiver = mpsc::Receiver<Command>;

impl<B: KvBackend> Agent<B> {
    /// Hands the loop the receiver of [`AgentControl`]'s commands.
    pub fn with_commands(mut self, commands: CommandReceiver) -> Self {
        self.commands = Some(commands);
        self
    }

    /// Runs one command from the REST API and answers it.
    pub(crate) async fn run_command(&mut self, command: Command) {
        let result = match command.kind {
            CommandKind::Restart(request) => self.restart_command(&request).await,
            CommandKind::Reload => self.reload_command(),
            CommandKind::Reinitialize { force } => self.reinitialize_command(force).await,
        };
        if let Err(error) = &result {
            tracing::warn!("REST API command refused: {error}");
        }
        // The caller may have given up waiting; the outcome is logged either way.
        let _ = command.reply.send(result);
    }

    /// `POST /restart`: when every condition holds, a fast stop and a start in the same role,
    /// then waits (bounded) for PostgreSQL to accept connections.
    async fn restart_command(&mut self, request: &RestartRequest) -> Result<(), ControlError> {
        let unavailable = |text: String| ControlError::Unavailable(text);
        if let Some(task) = &self.long_task {
            return Err(unavailable(format!(
                "restart is not possible: {} in progress",
                task.kind.as_str()
            )));
        }
        let (_, role) = crate::status::state_and_role(self);
        let role_ok = request.role.as_ref().is_none_or(|wanted| *wanted == role);
        let version_ok = request.postgres_version.is_none_or(|wanted| {
            self.facts
                .as_ref()
                .is_some_and(|facts| facts.server_version < wanted)
        });
        let pending_ok = !request.restart_pending || self.pending_restart.is_pending();
        if !(role_ok && version_ok && pending_ok) {
            return Err(unavailable("restart conditions are not satisfied".into()));
        }
        tracing::info!("restarting PostgreSQL (REST API request)");
        self.restart_in_place()
            .await
            .map_err(|error| unavailable(format!("restart failed: {}", act_error_text(error))))?;
        self.pending_restart.reloaded();
        let mut limit = request.timeout.unwrap_or(RESTART_READY_TIMEOUT);
        if self.holds_leader {
            // The lease is not renewed while we wait: leave it room.
            limit = limit.min(self.last_config.ttl / 2);
        }
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Ok(probe) = self.pg.connect().await {
                probe.close().await;
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(unavailable(format!(
                    "restart failed: PostgreSQL does not accept connections after {limit:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `POST /reload` (and SIGHUP): the configuration file is read again (see `reload`), then
    /// PostgreSQL re-reads its configuration; the next cycle follows at once. A file that does
    /// not load is refused and changes nothing.
    fn reload_command(&mut self) -> Result<(), ControlError> {
        if let Some(path) = self.config_file.clone() {
            self.reload_config_file(&path).map_err(|error| {
                ControlError::Unavailable(format!(
                    "configuration {} not reloaded, nothing changed: {error}",
                    path.display()
                ))
            })?;
        }
        self.pending_restart.reloaded();
        self.reload_postgres().map_err(|error| {
            ControlError::Unavailable(format!("reload failed: {}", act_error_text(error)))
        })
    }

    /// `POST /reinitialize`: only a replica of a cluster with a leader; `force` cancels a
    /// running long action first.
    async fn reinitialize_command(&mut self, force: bool) -> Result<(), ControlError> {
        let unavailable = |text: &str| ControlError::Unavailable(text.to_owned());
        if self.holds_leader {
            return Err(unavailable("I am the leader, can not reinitialize"));
        }
        let Some(leader) = self
            .snapshot
            .as_ref()
            .and_then(|snapshot| snapshot.view.leader_name().cloned())
        else {
            return Err(unavailable("Cluster has no leader, can not reinitialize"));
        };
        if let Some(task) = self.long_task.take() {
            if !force {
                let busy = format!("{} already in progress", task.kind.as_str());
                self.long_task = Some(task);
                return Err(ControlError::Unavailable(busy));
            }
            tracing::warn!("cancelling {} to reinitialize", task.kind.as_str());
            task.handle.abort();
        }
        tracing::warn!(source = %leader, "reinitializing from the leader (REST API request)");
        self.stop_postgres(StopMode::Immediate)
            .await
            .map_err(|error| ControlError::Unavailable(act_error_text(error)))?;
        self.start_reinitialize(&leader);
        Ok(())
    }
}

fn act_error_text(error: ActError) -> String {
    match error {
        ActError::Failed(text) | ActError::Fatal(text) => text,
    }
}
