//! The node's watchdog as the agent drives it (`watchdog:` config, the `watchdog` crate does
//! the device work).
//!
//! * Armed right before a promotion. `required` and it cannot be armed: the promotion is
//!   refused (the caller releases the leader key) and `watchdog_failed` is reported so this node
//!   and its peers keep it out of leader races. `automatic`: promote anyway, with a warning.
//! * Fed after each successful lease keepalive while holding the leader key.
//! * Disarmed (magic close) once PostgreSQL has been demoted or stopped at a clean shutdown.
//!   A crash of the agent leaves it armed: the device then stops the node at its timeout, which
//!   is shorter than the lease, so no replica is promoted while this node could still write.

use std::time::Duration;
use watchdog::{Mode, Watchdog, WatchdogConfig};

#[derive(Debug, Default)]
pub(crate) struct NodeWatchdog {
    config: WatchdogConfig,
    armed: Option<Watchdog>,
    failed: bool,
}

impl NodeWatchdog {
    pub(crate) fn new(config: WatchdogConfig) -> Self {
        Self {
            config,
            armed: None,
            failed: false,
        }
    }

    /// `required` mode and the last attempt to arm failed.
    pub(crate) fn failed(&self) -> bool {
        self.failed
    }

    /// Arms the device before a promotion. `Err` means: do not promote.
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
                Ok(())
            }
            Err(error) if self.config.mode == Mode::Required => {
                self.failed = true;
                Err(format!(
                    "watchdog required but not usable: {error}; not promoting"
                ))
            }
            Err(error) => {
                tracing::warn!("watchdog not usable, promoting without it: {error}");
                Ok(())
            }
        }
    }

    /// While holding the leader key: arms the watchdog if it is not armed yet (a primary made
    /// by bootstrap, or adopted at start), else feeds it. A `required` watchdog that cannot be
    /// armed is reported through [`NodeWatchdog::failed`].
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
        self.feed();
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

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    fn node(mode: Mode, device: &std::path::Path) -> NodeWatchdog {
        NodeWatchdog::new(WatchdogConfig {
            mode,
            device: device.to_owned(),
            safety_margin: None,
        })
    }

    const TTL: Duration = Duration::from_secs(5);
    const LOOP: Duration = Duration::from_secs(1);

    #[test]
    fn required_unusable_refuses_and_reports() {
        let missing = std::path::Path::new("/nonexistent/pgwarden-watchdog");
        let mut wd = node(Mode::Required, missing);
        assert!(wd.arm(TTL, LOOP).is_err());
        assert!(wd.failed());
        let mut wd = node(Mode::Automatic, missing);
        assert!(wd.arm(TTL, LOOP).is_ok(), "automatic promotes without it");
        assert!(!wd.failed());
        let mut wd = node(Mode::Off, missing);
        assert!(wd.arm(TTL, LOOP).is_ok());
    }

    #[test]
    fn arm_feed_disarm_in_file_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wd");
        std::fs::write(&path, b"").unwrap();
        let mut wd = node(Mode::Required, &path);
        wd.arm(TTL, LOOP).unwrap();
        wd.arm(TTL, LOOP).unwrap(); // already armed: no second open
        wd.feed();
        wd.disarm();
        wd.feed(); // disarmed: nothing written
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "T2\nkV");
        assert!(!wd.failed());
    }
}
