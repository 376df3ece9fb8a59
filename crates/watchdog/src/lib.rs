//! The node watchdog.
//!
//! Owns: the `watchdog:` config section (`mode`, `device`, `safety_margin`), the timeout it
//! implies for a given `ttl` / `loop_wait`, and the device itself — open (which starts the
//! timer), set and read back the timeout, keepalive, and the magic close (`'V'`, then close)
//! that disarms it. Must not know: leases, roles or the store. The agent decides *when* to arm
//! (right before promotion), feed (after each successful leader-key renewal) and disarm (after
//! demotion or a clean stop).
//!
//! A crash must not disarm: dropping a [`Watchdog`] closes the file **without** writing `'V'`, so
//! the device keeps counting and kills the machine (or, in tests, the node's processes) at the
//! timeout. Only [`Watchdog::disarm`] stops it.
//!
//! Device kinds:
//! * a character device (`/dev/watchdog`): `WDIOC_GETSUPPORT` for the driver's identity and
//!   options (logged; a driver that cannot take a timeout is refused), `WDIOC_SETTIMEOUT`, then
//!   `WDIOC_GETTIMEOUT` to read the effective value back; keepalive is `WDIOC_KEEPALIVE`.
//! * anything else (test-only "file mode", for the FIFO stand-in `pgwarden-fake-watchdog`,
//!   since these machines have no watchdog driver): open write-only and non-blocking (a FIFO
//!   without a reader fails to arm), `T<secs>\n` stands in for `WDIOC_SETTIMEOUT`, and every
//!   other write is a keepalive.

#![cfg_attr(test, allow(clippy::unwrap_used, reason = "tests fail loudly"))]

#[allow(unsafe_code)] // ioctls take raw pointers; confined to this one module, see its docs.
mod ioctl;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `watchdog.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Never open a device.
    Off,
    /// Use the device when it can be armed; promote without it otherwise (logged).
    #[default]
    Automatic,
    /// Never promote without an armed watchdog; the node reports `watchdog_failed`.
    Required,
}

/// The `watchdog:` config section, parsed strictly.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchdogConfig {
    #[serde(default)]
    pub mode: Mode,
    #[serde(default = "default_device")]
    pub device: PathBuf,
    /// Seconds the watchdog fires before the lease would expire. Unset or `-1`: `ttl / 2`
    /// (pgwarden's `ttl` is small — 5 s by default — so a fixed 5 s margin would leave nothing).
    #[serde(default)]
    pub safety_margin: Option<f64>,
}

impl Default for WatchdogConfig {
    fn default() -> Self {
        Self {
            mode: Mode::default(),
            device: default_device(),
            safety_margin: None,
        }
    }
}

fn default_device() -> PathBuf {
    PathBuf::from("/dev/watchdog")
}

/// Why the watchdog cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "watchdog timeout {timeout}s (ttl {ttl:?} - safety_margin {margin:?}) leaves no slack over loop_wait {loop_wait:?}"
    )]
    NoSlack {
        timeout: u64,
        ttl: Duration,
        margin: Duration,
        loop_wait: Duration,
    },
    #[error("opening watchdog device {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("setting the timeout of watchdog device {path} to {secs}s: {source}")]
    SetTimeout {
        path: PathBuf,
        secs: u32,
        source: std::io::Error,
    },
    #[error("watchdog device {path} uses {effective}s, more than the {wanted}s the lease allows")]
    TimeoutTooLong {
        path: PathBuf,
        wanted: u32,
        effective: u32,
    },
    #[error("watchdog device {path} ({identity}) cannot set its timeout (no WDIOF_SETTIMEOUT)")]
    NoSetTimeout { path: PathBuf, identity: String },
    #[error("keepalive to watchdog device {path}: {source}")]
    Keepalive {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("disarming watchdog device {path}: {source}")]
    Disarm {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl WatchdogConfig {
    /// The device timeout for a lease of `ttl` renewed every `loop_wait`: `ttl - safety_margin`
    /// in whole seconds (rounded down), refused when it is not above `loop_wait` (the agent
    /// could not feed it in time) or is zero.
    pub fn timeout(&self, ttl: Duration, loop_wait: Duration) -> Result<u32, Error> {
        let margin = match self.safety_margin {
            Some(m) if m >= 0.0 => Duration::from_secs_f64(m),
            _ => ttl / 2,
        };
        let timeout = ttl.saturating_sub(margin).as_secs();
        if timeout == 0 || Duration::from_secs(timeout) <= loop_wait {
            return Err(Error::NoSlack {
                timeout,
                ttl,
                margin,
                loop_wait,
            });
        }
        Ok(u32::try_from(timeout).unwrap_or(u32::MAX))
    }
}

/// `WDIOF_SETTIMEOUT`: the driver takes `WDIOC_SETTIMEOUT`.
pub const WDIOF_SETTIMEOUT: u32 = 0x0080;
/// `WDIOF_MAGICCLOSE`: writing `'V'` before the close stops the timer.
pub const WDIOF_MAGICCLOSE: u32 = 0x0100;

/// What a character device's driver says about itself (`WDIOC_GETSUPPORT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Support {
    /// The driver's identity string, e.g. `Software Watchdog`.
    pub identity: String,
    /// `WDIOF_*` option bits.
    pub options: u32,
    pub firmware_version: u32,
}

impl Support {
    pub fn can_set_timeout(&self) -> bool {
        self.options & WDIOF_SETTIMEOUT != 0
    }

    pub fn has_magic_close(&self) -> bool {
        self.options & WDIOF_MAGICCLOSE != 0
    }
}

/// The outcome of [`Watchdog::probe`]: the device could be armed with this timeout and was
/// disarmed again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// `None` for the FIFO stand-in, or a driver without `WDIOC_GETSUPPORT`.
    pub support: Option<Support>,
    /// The timeout the device accepted, in seconds.
    pub timeout: u32,
}

/// An armed watchdog. Dropping it does NOT disarm (see the crate docs).
#[derive(Debug)]
pub struct Watchdog {
    path: PathBuf,
    file: Option<File>,
    char_device: bool,
    timeout: u32,
    support: Option<Support>,
}

impl Watchdog {
    /// Opens `path` (this starts the timer), asks the driver what it supports, asks for
    /// `timeout_secs` and reads the effective timeout back. Refuses (and disarms) a driver that
    /// cannot set a timeout, and a device that keeps a longer timeout than asked: it would fire
    /// after the lease expires, too late to prevent two primaries.
    pub fn arm(path: &Path, timeout_secs: u32) -> Result<Self, Error> {
        let char_device = std::fs::metadata(path)
            .map(|m| m.file_type().is_char_device())
            .unwrap_or(false);
        let file = OpenOptions::new()
            .write(true)
            .custom_flags(if char_device {
                0
            } else {
                nix::libc::O_NONBLOCK
            })
            .open(path)
            .map_err(|source| Error::Open {
                path: path.to_owned(),
                source,
            })?;
        // A driver without WDIOC_GETSUPPORT still gets its timeout set; one that says it cannot
        // take a timeout is refused below.
        let support = if char_device {
            ioctl::get_support(&file).ok().map(|info| Support {
                identity: String::from_utf8_lossy(&info.identity)
                    .trim_end_matches('\0')
                    .to_owned(),
                options: info.options,
                firmware_version: info.firmware_version,
            })
        } else {
            None
        };
        let mut armed = Self {
            path: path.to_owned(),
            file: Some(file),
            char_device,
            timeout: 0,
            support,
        };
        if let Some(support) = armed.support.clone()
            && !support.can_set_timeout()
        {
            // Leaving it running would be worse than useless; disarm before refusing.
            let _ = armed.disarm();
            return Err(Error::NoSetTimeout {
                path: path.to_owned(),
                identity: support.identity,
            });
        }
        if let Err(error) = armed.set_timeout(timeout_secs) {
            let _ = armed.disarm();
            return Err(error);
        }
        Ok(armed)
    }

    /// Opens, arms with `timeout_secs` and disarms again (magic close): the start-up check that
    /// tells whether this node could arm its watchdog when it has to.
    pub fn probe(path: &Path, timeout_secs: u32) -> Result<Probe, Error> {
        let mut armed = Self::arm(path, timeout_secs)?;
        let probe = Probe {
            support: armed.support.clone(),
            timeout: armed.timeout,
        };
        armed.disarm()?;
        Ok(probe)
    }

    /// Sets a new timeout on the armed device (`WDIOC_SETTIMEOUT`, read back with
    /// `WDIOC_GETTIMEOUT`; `T<secs>\n` in file mode) — after `ttl`, `loop_wait` or
    /// `safety_margin` changed. A device that keeps a longer timeout than asked is refused: it
    /// would fire after the lease expires, too late to prevent two primaries. The device stays
    /// armed either way; the caller decides what a refusal means.
    pub fn set_timeout(&mut self, timeout_secs: u32) -> Result<(), Error> {
        let set_err = |source| Error::SetTimeout {
            path: self.path.clone(),
            secs: timeout_secs,
            source,
        };
        let Some(file) = self.file.as_mut() else {
            return Err(set_err(std::io::Error::other("watchdog already disarmed")));
        };
        let effective = if self.char_device {
            ioctl::set_timeout(file, timeout_secs).map_err(|e| set_err(e.into()))?;
            ioctl::get_timeout(file).map_err(|e| set_err(e.into()))?
        } else {
            file.write_all(format!("T{timeout_secs}\n").as_bytes())
                .map_err(set_err)?;
            timeout_secs
        };
        self.timeout = effective;
        if effective > timeout_secs {
            return Err(Error::TimeoutTooLong {
                path: self.path.clone(),
                wanted: timeout_secs,
                effective,
            });
        }
        Ok(())
    }

    /// The driver's identity and options, when it answered `WDIOC_GETSUPPORT`.
    pub fn support(&self) -> Option<&Support> {
        self.support.as_ref()
    }

    /// The timeout the device really uses, in seconds.
    pub fn timeout(&self) -> u32 {
        self.timeout
    }

    /// The device path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Feeds the watchdog. Call right after each successful leader-key renewal.
    pub fn keepalive(&mut self) -> Result<(), Error> {
        let err = |source| Error::Keepalive {
            path: self.path.clone(),
            source,
        };
        let Some(file) = self.file.as_mut() else {
            return Err(err(std::io::Error::other("watchdog already disarmed")));
        };
        if self.char_device {
            ioctl::keepalive(file).map_err(|e| err(e.into()))
        } else {
            file.write_all(b"k").map_err(err)
        }
    }

    /// Magic close: writes `'V'` and closes, which stops the timer (on drivers with
    /// `WDIOF_MAGICCLOSE`; a `nowayout` device keeps running regardless).
    pub fn disarm(&mut self) -> Result<(), Error> {
        let Some(mut file) = self.file.take() else {
            return Ok(());
        };
        file.write_all(b"V").map_err(|source| Error::Disarm {
            path: self.path.clone(),
            source,
        })
    }
}

#[cfg(test)]
mod tests;
