//! The node's watchdog as the agent drives it (`watchdog:` config, the `watchdog` crate does
//! the device work). `ha::decide` says *when* (`Action::ArmWatchdog` on every path to primary,
//! and it keeps a node with `watchdog_failed` out of every such path); this module does it.
//!
//! * Checked at start: open the device, read what the driver supports, set the timeout the
//!   lease implies, and disarm it again with the magic close. The outcome is logged; in
//!   `required` mode a failure sets `watchdog_failed`, reported in `/patroni` (which peers
//!   read before a leader race) so this node and its peers keep it out of leader races and of the bootstrap. The
//!   check is repeated every cycle while it fails (and the node holds no armed device), so a
//!   device that appears later makes the node eligible again.
//! * Armed right after this node takes the leader key, before it promotes or keeps serving
//!   as primary. `required` and it cannot be armed: the leader key is released and the action
//!   fails, so the cycle ends before any promotion. `automatic`: a warning, then promote.
//! * Fed after each successful lease keepalive while holding the leader key. A changed `ttl`,
//!   `loop_wait` or `safety_margin` gives the armed device its new timeout at that moment.
//! * Disarmed (magic close) once PostgreSQL has been demoted or stopped at a clean shutdown.
//!   A crash of the agent leaves it armed: the device then stops the node at its timeout, which
//!   is shorter than the lease, so no replica is promoted while this node could still write.

use std::time::Duration;

use bytes::Bytes;
use dcs::{Expect, KvBackend};
use postgres::StopMode;
use watchdog::{Mode, Watchdog, WatchdogConfig};

use crate::act::{ActError, ActResult};
use crate::agent::Agent;

#[derive(Debug, Default)]
pub(crate) struct NodeWatchdog {
    config: WatchdogConfig,
    armed: Option<Watchdog>,
    failed: bool,
    /// `automatic` mode: the device could not be armed and that was logged; logged again
    /// only after it has been armed once more.
    unusable_logged: bool,
}

impl NodeWatchdog {
    pub(crate) fn new(config: WatchdogConfig) -> Self {
        Self {
            config,
            armed: None,
            failed: false,
            unusable_logged: false,
        }
    }

    /// `required` mode and the last check, arming or timeout change failed.
    pub(crate) fn failed(&self) -> bool {
        self.failed
    }

    /// The start-up check: open, arm with the timeout `ttl`/`loop_wait` imply, disarm. Logs
    /// what it found; `required` and unusable sets [`NodeWatchdog::failed`], `automatic` and
    /// unusable is a warning.
    pub(crate) fn check(&mut self, ttl: Duration, loop_wait: Duration) {
        if self.config.mode == Mode::Off || self.armed.is_some() {
            return;
        }
        let device = self.config.device.display().to_string();
        let probed = self
            .config
            .timeout(ttl, loop_wait)
            .and_then(|secs| Watchdog::probe(&self.config.device, secs));
        match probed {
            Ok(probe) => {
                let (identity, options) = probe.support.as_ref().map_or_else(
                    || ("(no WDIOC_GETSUPPORT)".to_owned(), 0),
                    |support| (support.identity.clone(), support.options),
                );
                if probe.support.as_ref().is_some_and(|s| !s.has_magic_close()) {
                    tracing::warn!(device, "watchdog driver has no magic close");
                }
                if self.failed {
                    tracing::info!(device, "required watchdog is usable again");
                }
                tracing::info!(
                    device,
                    identity,
                    options = format_args!("{options:#x}"),
                    timeout_s = probe.timeout,
                    mode = ?self.config.mode,
                    "watchdog checked: it can be armed"
                );
                self.failed = false;
            }
            Err(error) if self.config.mode == Mode::Required => {
                if !self.failed {
                    tracing::error!(
                        device,
                        "watchdog required but not usable: {error}; this node will not become primary"
                    );
                }
                self.failed = true;
            }
            Err(error) => {
                tracing::warn!(
                    device,
                    "watchdog not usable: {error}; this node will become primary without it (mode automatic)"
                );
            }
        }
    }

    /// Checks again while `required` mode has failed and nothing is armed (see the module
    /// docs).
    pub(crate) fn recheck_if_failed(&mut self, ttl: Duration, loop_wait: Duration) {
        if self.failed && self.armed.is_none() {
            self.check(ttl, loop_wait);
        }
    }

    /// Arms the device. `Err` means: `required` mode and it cannot be armed.
    pub(crate) fn arm(&mut self, ttl: Duration, loop_wait: Duration) -> Result<(), String> {
        if self.config.mode == Mode::Off || self.armed.is_some() {
            return Ok(());
        }
        let armed = self
            .config
            .timeout(ttl, loop_wait)
            .and_then(|secs| Watchdog::arm(&self.config.device, secs));
        match armed {
            Ok(device) => {
                tracing::info!(path = %device.path().display(), timeout_s = device.timeout(), "watchdog armed");
                self.armed = Some(device);
                self.failed = false;
                self.unusable_logged = false;
                Ok(())
            }
            Err(error) if self.config.mode == Mode::Required => {
                self.failed = true;
                Err(format!(
                    "watchdog required but not usable: {error}; not becoming primary"
                ))
            }
            Err(error) => {
                // Tried again every cycle while primary; said once.
                if !self.unusable_logged {
                    tracing::warn!("watchdog not usable, becoming primary without it: {error}");
                    self.unusable_logged = true;
                }
                Ok(())
            }
        }
    }

    /// While holding the leader key: arms the watchdog if it is not armed yet, else gives it
    /// the timeout the current `ttl`/`loop_wait` imply (when that changed) and feeds it. A
    /// `required` watchdog that cannot be armed or take its new timeout is reported through
    /// [`NodeWatchdog::failed`]; `decide` then gives up the leader key.
    pub(crate) fn keep_armed(&mut self, ttl: Duration, loop_wait: Duration) {
        if self.config.mode == Mode::Off {
            return;
        }
        if self.armed.is_none() {
            if let Err(error) = self.arm(ttl, loop_wait) {
                tracing::error!("{error}");
            }
            return;
        }
        self.retime(ttl, loop_wait);
        self.feed();
    }

    /// Gives the armed device the timeout the current config implies, when it differs.
    fn retime(&mut self, ttl: Duration, loop_wait: Duration) {
        let Some(device) = self.armed.as_mut() else {
            return;
        };
        let result = match self.config.timeout(ttl, loop_wait) {
            Ok(secs) if secs == device.timeout() => return,
            Ok(secs) => {
                let old = device.timeout();
                device.set_timeout(secs).map(|()| {
                    tracing::info!(old_s = old, new_s = secs, "watchdog timeout changed");
                })
            }
            Err(error) => Err(error),
        };
        if let Err(error) = result {
            if self.config.mode == Mode::Required {
                tracing::error!("watchdog required but cannot take the new timeout: {error}");
                self.failed = true;
            } else {
                tracing::warn!("watchdog keeps its old timeout: {error}");
            }
        }
    }

    /// Feeds an armed watchdog (no-op otherwise).
    pub(crate) fn feed(&mut self) {
        if let Some(device) = self.armed.as_mut()
            && let Err(error) = device.keepalive()
        {
            tracing::error!("{error}");
        }
    }

    /// Magic close of an armed watchdog (no-op otherwise).
    pub(crate) fn disarm(&mut self) {
        if let Some(mut device) = self.armed.take() {
            match device.disarm() {
                Ok(()) => tracing::info!("watchdog disarmed"),
                Err(error) => tracing::error!("{error}"),
            }
        }
    }
}

impl<B: KvBackend> Agent<B> {
    /// `Action::ArmWatchdog`: a refusal (`required` mode) gives the leader key back if this
    /// node holds it and fails the action, which ends the cycle before any promotion.
    pub(crate) async fn arm_watchdog(&mut self) -> ActResult {
        let (ttl, loop_wait) = (self.last_config.ttl, self.last_config.loop_wait);
        let Err(refused) = self.watchdog.arm(ttl, loop_wait) else {
            return Ok(());
        };
        if self.holds_leader {
            let key = self.keys.leader();
            let me = Bytes::from(self.config.name.clone());
            self.store_call(
                "release the leader key",
                self.store.delete_if(&key, Some(Expect::Value(me))),
            )
            .await?;
            self.holds_leader = false;
            return Err(ActError::Failed(format!("{refused}; leader key released")));
        }
        Err(ActError::Failed(refused))
    }

    /// `Action::CancelBootstrap`: stop our freshly bootstrapped PostgreSQL, empty the data
    /// directory and delete our (still empty) `/initialize` claim so another member can
    /// bootstrap.
    pub(crate) async fn cancel_bootstrap(&mut self) -> ActResult {
        tracing::error!("cancelling the bootstrap: the required watchdog is not usable");
        self.undo_bootstrap().await
    }

    /// What a cancelled or failed bootstrap leaves behind is removed: PostgreSQL stopped, the
    /// data directory emptied, our (still empty) `/initialize` claim deleted.
    pub(crate) async fn undo_bootstrap(&mut self) -> ActResult {
        self.stop_postgres(StopMode::Immediate).await?;
        self.watchdog.disarm();
        postgres::files::clear_dir(&self.pg.data_dir).map_err(|error| {
            ActError::Failed(format!(
                "empty the data directory after a cancelled bootstrap: {error}"
            ))
        })?;
        let key = self.keys.initialize();
        self.store_call(
            "delete the initialize claim",
            self.store
                .delete_if(&key, Some(Expect::Value(Bytes::new()))),
        )
        .await?;
        Ok(())
    }
}

#[cfg(test)]
#[path = "watchdog_test.rs"]
mod tests;
