//! One `pgwarden-fake-watchdog` per host, run by the test outside the host's namespace (so a
//! kill of the host's processes does not take it along), standing in for the host's hardware
//! watchdog: when the agent that armed it stops feeding it, it SIGKILLs the processes listed
//! in its pid file, as a watchdog reset would.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ha_cluster_tests::pgwarden_binary;

/// A running stand-in and its files (in the host's directory).
#[derive(Debug)]
pub struct FakeWatchdog {
    fifo: PathBuf,
    pids: PathBuf,
    log: PathBuf,
    child: Child,
}

impl FakeWatchdog {
    /// Starts the stand-in on a FIFO in `dir` and waits (10 s at most) until it listens.
    pub fn start(dir: &Path) -> anyhow::Result<FakeWatchdog> {
        let binary = pgwarden_binary()?.with_file_name("pgwarden-fake-watchdog");
        let fifo = dir.join("watchdog");
        let pids = dir.join("watchdog.pids");
        let log = dir.join("watchdog.log");
        std::fs::write(&pids, "").with_context(|| format!("create {}", pids.display()))?;
        let child = Command::new(&binary)
            .arg(&fifo)
            .arg("--pid-file")
            .arg(&pids)
            .arg("--log")
            .arg(&log)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("start {}", binary.display()))?;
        let watchdog = FakeWatchdog {
            fifo,
            pids,
            log,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !watchdog.log().contains("listening") {
            if Instant::now() > deadline {
                bail!(
                    "the fake watchdog on {} did not listen within 10 s",
                    watchdog.fifo.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(watchdog)
    }

    /// The host's `watchdog:` configuration: the stand-in is required for a promotion.
    pub fn yaml(&self) -> String {
        format!(
            "watchdog:\n  mode: required\n  device: {}\n",
            self.fifo.display()
        )
    }

    /// Lists the processes the stand-in kills when it fires.
    pub fn set_pids(&self, pids: &[i32]) -> anyhow::Result<()> {
        let text: String = pids.iter().map(|pid| format!("{pid}\n")).collect();
        std::fs::write(&self.pids, text).with_context(|| format!("write {}", self.pids.display()))
    }

    /// The stand-in's log (`armed`, `FIRED`, ...).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the agent armed it (and it has not been disarmed or fired since).
    pub fn armed(&self) -> bool {
        let log = self.log();
        log.lines()
            .rev()
            .find(|line| line.contains("armed") || line.contains("FIRED"))
            .is_some_and(|line| line.ends_with(" armed"))
    }

    pub fn fired(&self) -> bool {
        self.log().contains("FIRED")
    }
}

impl Drop for FakeWatchdog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
