//! One member process: its flags, its log file, and the signals the suites send it.

use std::fs::File;
use std::path::PathBuf;
use std::process::Child;
use std::process::Command;
use std::process::ExitStatus;
use std::process::Stdio;
use std::time::Duration;
use std::time::Instant;

use anyhow::Context;
use nix::sys::signal::Signal;
use nix::sys::signal::kill;
use nix::unistd::Pid;

use crate::target::Target;

/// How long a member gets to exit after SIGTERM before it is killed.
const TERMINATE_GRACE: Duration = Duration::from_secs(10);
/// How long SIGSTOP may take to stop every thread of a member.
const PAUSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How many trailing log lines a failure report shows per member.
const LOG_TAIL_LINES: usize = 40;

/// The etcd flags of one member; the same for both targets.
#[derive(Debug, Clone)]
pub struct MemberSpec {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    /// `name=peer URL` for every initial member, comma-separated (etcd's `--initial-cluster`).
    pub initial_cluster: String,
    pub initial_cluster_state: &'static str,
    pub initial_cluster_token: String,
    pub heartbeat_ms: u64,
    pub election_ms: u64,
    pub snapshot_count: u64,
    /// `http` or `https` (TLS on both ports; the TLS flags are in `extra_flags`).
    pub scheme: &'static str,
    /// Flags after the common ones (e.g. the certificate files).
    pub extra_flags: Vec<String>,
}

impl MemberSpec {
    pub fn client_url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme, self.client_port)
    }

    pub fn peer_url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme, self.peer_port)
    }

    /// The command line a script would use for etcd; pgwarden gets the same after `etcd`.
    pub fn flags(&self) -> Vec<String> {
        let mut flags = vec![
            format!("--name={}", self.name),
            format!("--data-dir={}", self.data_dir.display()),
            format!("--listen-client-urls={}", self.client_url()),
            format!("--advertise-client-urls={}", self.client_url()),
            format!("--listen-peer-urls={}", self.peer_url()),
            format!("--initial-advertise-peer-urls={}", self.peer_url()),
            format!("--initial-cluster={}", self.initial_cluster),
            format!("--initial-cluster-state={}", self.initial_cluster_state),
            format!("--initial-cluster-token={}", self.initial_cluster_token),
            format!("--heartbeat-interval={}", self.heartbeat_ms),
            format!("--election-timeout={}", self.election_ms),
            format!("--snapshot-count={}", self.snapshot_count),
            // A flag scripts commonly pass: etcd 3.4 uses it, pgwarden accepts and ignores it.
            "--logger=zap".to_owned(),
        ];
        flags.extend(self.extra_flags.iter().cloned());
        flags
    }
}

/// A member process (or its stopped remains: data dir and log stay for a restart).
#[derive(Debug)]
pub struct Member {
    pub spec: MemberSpec,
    target: Target,
    child: Option<Child>,
}

impl Member {
    pub fn new(target: Target, spec: MemberSpec) -> Self {
        Self {
            spec,
            target,
            child: None,
        }
    }

    /// Starts the process; its stdout and stderr are appended to the member's log file.
    pub fn spawn(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.child.is_none(),
            "{} is already running",
            self.spec.name
        );
        let (program, leading_args) = self.target.command()?;
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.spec.log_path)
            .with_context(|| format!("open {}", self.spec.log_path.display()))?;
        let log_err = log.try_clone().context("clone the log file handle")?;
        let child = Command::new(&program)
            .args(leading_args)
            .args(self.spec.flags())
            .env(
                "RUST_LOG",
                std::env::var("PGWARDEN_MEMBER_LOG")
                    .unwrap_or_else(|_| "info,openraft=warn".to_owned()),
            )
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .with_context(|| format!("spawn {} for {}", program.display(), self.spec.name))?;
        self.child = Some(child);
        Ok(())
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `Some(status)` when the process has exited on its own (the child is then forgotten).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok().flatten()?;
        self.child = None;
        Some(status)
    }

    /// SIGKILL and reap (a stopped process dies too); a no-op when not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits up to a grace period; kills and reports an error if it does not exit.
    pub fn terminate(&mut self) -> anyhow::Result<ExitStatus> {
        let mut child = self
            .child
            .take()
            .with_context(|| format!("{} is not running", self.spec.name))?;
        // A stopped process would keep SIGTERM pending; resume it first.
        signal_pid(child.id(), Signal::SIGCONT);
        signal_pid(child.id(), Signal::SIGTERM);
        let deadline = Instant::now() + TERMINATE_GRACE;
        loop {
            if let Some(status) = child.try_wait().context("wait for the member")? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                anyhow::bail!(
                    "{} did not exit within {TERMINATE_GRACE:?} of SIGTERM",
                    self.spec.name
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGSTOP until the guard drops: the process keeps its sockets but answers nothing (a hung
    /// host). The guard resumes it with SIGCONT even when the test fails half-way.
    /// Returns once every thread of the process is stopped, so nothing it sends afterwards can
    /// come from after the pause.
    pub fn pause(&self) -> anyhow::Result<PauseGuard> {
        let pid = self.pid().context("member is not running")?;
        signal_pid(pid, Signal::SIGSTOP);
        let guard = PauseGuard { pid };
        let deadline = Instant::now() + PAUSE_TIMEOUT;
        while !all_threads_stopped(pid) {
            anyhow::ensure!(
                Instant::now() < deadline,
                "{} did not stop within {PAUSE_TIMEOUT:?} of SIGSTOP",
                self.spec.name
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(guard)
    }

    /// The member's log contains `needle` (case-insensitive).
    pub fn log_contains(&self, needle: &str) -> bool {
        std::fs::read_to_string(&self.spec.log_path)
            .map(|log| log.to_lowercase().contains(&needle.to_lowercase()))
            .unwrap_or(false)
    }

    /// The last lines of the member's log, for failure reports.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.spec.log_path).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let start = lines.len().saturating_sub(LOG_TAIL_LINES);
        lines[start..].join("\n")
    }
}

/// Whether every thread of `pid` is in the stopped state ('T' in /proc/<pid>/task/<tid>/stat).
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().all(|task| {
        std::fs::read_to_string(task.path().join("stat"))
            .ok()
            // The state follows the parenthesised command name, which may itself contain spaces.
            .and_then(|stat| {
                stat.rsplit_once(") ")
                    .map(|(_, rest)| rest.starts_with('T'))
            })
            .unwrap_or(false)
    })
}

/// Sends `signal` to `pid`; a process that is already gone is not an error here.
fn signal_pid(pid: u32, signal: Signal) {
    let Ok(raw) = i32::try_from(pid) else { return };
    if let Err(error) = kill(Pid::from_raw(raw), signal) {
        tracing::debug!(pid, ?signal, %error, "signal not delivered");
    }
}

/// A paused member; dropping the guard resumes it (SIGCONT).
#[derive(Debug)]
#[must_use = "the member resumes as soon as the guard drops"]
pub struct PauseGuard {
    pid: u32,
}

impl Drop for PauseGuard {
    fn drop(&mut self) {
        signal_pid(self.pid, Signal::SIGCONT);
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill();
    }
}
