//! The postmaster as a child process of the agent: start, stop in a mode, reload, and an exit
//! notification that fires the moment it dies (a crash is seen at once, not at the next poll).
//!
//! The agent spawns `postgres -D <data>` itself (not `pg_ctl start`, whose postmaster is
//! re-parented away) in its own process group, so a signal to the agent's group does not reach
//! PostgreSQL and PostgreSQL keeps running if the agent exits. A postmaster found running at
//! agent start (not our child) is seen through its pid file instead.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::Child;

use crate::error::{Error, Result, io};
use crate::tools::Tools;

/// `pg_ctl stop -m` modes, as the signal the postmaster gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// SIGTERM: wait for clients to disconnect.
    Smart,
    /// SIGINT: disconnect clients, checkpoint, exit cleanly.
    Fast,
    /// SIGQUIT: exit at once; crash recovery at next start.
    Immediate,
}

impl StopMode {
    fn signal(self) -> Signal {
        match self {
            Self::Smart => Signal::SIGTERM,
            Self::Fast => Signal::SIGINT,
            Self::Immediate => Signal::SIGQUIT,
        }
    }
}

/// How the postmaster ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PostmasterExit {
    pub status: ExitStatus,
}

impl PostmasterExit {
    /// Killed by this signal number (e.g. 9 for `kill -9`), if it was.
    pub fn signal(&self) -> Option<i32> {
        std::os::unix::process::ExitStatusExt::signal(&self.status)
    }
}

/// A postmaster started by this agent.
///
/// Dropping it does not stop PostgreSQL (an agent restart must not take the database down)
/// unless [`Postmaster::stop_on_drop`] was called, which tests use as their cleanup guard.
#[derive(Debug)]
pub struct Postmaster {
    child: Child,
    pid: i32,
    data_dir: PathBuf,
    exit: Option<PostmasterExit>,
    stop_on_drop: bool,
}

impl Postmaster {
    /// Spawns `postgres -D data_dir options...` (options are `--name=value`), its stderr
    /// appended to `log_file` (PostgreSQL's own `logging_collector` may take over from there).
    /// Returns once the process exists; use [`Postmaster::wait_ready`] for connections.
    pub fn start(
        tools: &Tools,
        data_dir: &Path,
        options: &[String],
        log_file: Option<&Path>,
    ) -> Result<Postmaster> {
        let stderr = match log_file {
            Some(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(io("open", path))?;
                tools.run_as.chown(path)?;
                std::process::Stdio::from(file)
            }
            None => std::process::Stdio::null(),
        };
        let mut command = tools.command("postgres");
        command
            .arg("-D")
            .arg(data_dir)
            .args(options)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(stderr)
            .process_group(0)
            .kill_on_drop(false);
        let child = command.spawn().map_err(|source| Error::Spawn {
            program: "postgres".to_owned(),
            source,
        })?;
        let pid = child
            .id()
            .and_then(|pid| i32::try_from(pid).ok())
            .ok_or_else(|| {
                Error::StartFailed("postmaster exited before its pid was read".into())
            })?;
        Ok(Postmaster {
            child,
            pid,
            data_dir: data_dir.to_owned(),
            exit: None,
            stop_on_drop: false,
        })
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Sends SIGQUIT (immediate shutdown) when dropped while still running.
    pub fn stop_on_drop(&mut self) {
        self.stop_on_drop = true;
    }

    /// Resolves when the postmaster exits, for whatever reason. Cancel-safe: use it in a
    /// `select!` next to the agent's timer so a crash wakes the HA loop at once.
    pub async fn exited(&mut self) -> PostmasterExit {
        if let Some(exit) = self.exit {
            return exit;
        }
        let exit = match self.child.wait().await {
            Ok(status) => PostmasterExit { status },
            // `wait` fails only if the child was already reaped; report it as gone.
            Err(_) => PostmasterExit {
                status: std::os::unix::process::ExitStatusExt::from_raw(0),
            },
        };
        self.exit = Some(exit);
        exit
    }

    /// The exit, if it already happened (non-blocking).
    pub fn try_exited(&mut self) -> Option<PostmasterExit> {
        if self.exit.is_none()
            && let Ok(Some(status)) = self.child.try_wait()
        {
            self.exit = Some(PostmasterExit { status });
        }
        self.exit
    }

    pub fn signal(&self, signal: Signal) -> Result<()> {
        kill(Pid::from_raw(self.pid), signal).map_err(|source| Error::Signal {
            pid: self.pid,
            source,
        })
    }

    /// Re-reads configuration files (SIGHUP).
    pub fn reload(&self) -> Result<()> {
        self.signal(Signal::SIGHUP)
    }

    /// Stops in `mode` and waits up to `timeout` for the exit.
    pub async fn stop(&mut self, mode: StopMode, timeout: Duration) -> Result<PostmasterExit> {
        if let Some(exit) = self.try_exited() {
            return Ok(exit);
        }
        self.signal(mode.signal())?;
        tokio::time::timeout(timeout, self.exited())
            .await
            .map_err(|_| Error::StopTimedOut(timeout))
    }

    /// Waits until PostgreSQL accepts connections on `socket_dir`/`port`, failing at once if
    /// the postmaster exits first (a failed start is seen without waiting out the timeout).
    pub async fn wait_ready(
        &mut self,
        target: &crate::probe::ConnectTarget,
        timeout: Duration,
    ) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(exit) = self.try_exited() {
                return Err(Error::StartFailed(format!("{:?}", exit.status)));
            }
            if let Ok(probe) = crate::probe::Probe::connect(target).await {
                probe.close().await;
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::NotReady(timeout));
            }
            tokio::select! {
                exit = self.exited() => {
                    return Err(Error::StartFailed(format!("{:?}", exit.status)));
                }
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    }
}

impl Drop for Postmaster {
    fn drop(&mut self) {
        if self.stop_on_drop && self.try_exited().is_none() {
            // Best effort: the postmaster stops its children on SIGQUIT; tokio reaps it.
            let _ = kill(Pid::from_raw(self.pid), Signal::SIGQUIT);
        }
    }
}

/// A postmaster this agent did not spawn (found running at agent start through its pid
/// file). It can be signalled and stopped like our own, but its exit is seen by polling,
/// not at once: restart it under a [`Postmaster`] when convenient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdoptedPostmaster {
    pid: i32,
}

impl AdoptedPostmaster {
    /// The live postmaster of `data_dir`, if its pid file names a running process.
    pub fn from_data_dir(data_dir: &Path) -> Result<Option<AdoptedPostmaster>> {
        let Some(pid) = read_pid_file(data_dir)? else {
            return Ok(None);
        };
        let adopted = AdoptedPostmaster { pid };
        Ok(adopted.is_alive().then_some(adopted))
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Signal 0 succeeds (or is refused for lack of permission, which proves it exists) and
    /// the process is not a zombie (exited, waiting to be reaped by its parent).
    pub fn is_alive(&self) -> bool {
        let exists = matches!(
            kill(Pid::from_raw(self.pid), None),
            Ok(()) | Err(nix::Error::EPERM)
        );
        exists && !is_zombie(self.pid)
    }

    pub fn signal(&self, signal: Signal) -> Result<()> {
        kill(Pid::from_raw(self.pid), signal).map_err(|source| Error::Signal {
            pid: self.pid,
            source,
        })
    }

    pub fn reload(&self) -> Result<()> {
        self.signal(Signal::SIGHUP)
    }

    /// Stops in `mode`, polling every 50 ms until the process is gone or `timeout` passes.
    pub async fn stop(&self, mode: StopMode, timeout: Duration) -> Result<()> {
        if !self.is_alive() {
            return Ok(());
        }
        self.signal(mode.signal())?;
        let deadline = tokio::time::Instant::now() + timeout;
        while self.is_alive() {
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::StopTimedOut(timeout));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }
}

/// Linux: the state letter after the command name in `/proc/<pid>/stat` is `Z` for a zombie.
fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    })
}

/// The first line of `postmaster.pid`: the PID of a running (or stale) postmaster.
pub fn read_pid_file(data_dir: &Path) -> Result<Option<i32>> {
    let path = data_dir.join("postmaster.pid");
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text
            .lines()
            .next()
            .and_then(|line| line.trim().parse().ok())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(io("read", path)(error)),
    }
}

/// Whether a postmaster from the pid file is alive.
pub fn postmaster_alive(data_dir: &Path) -> Result<bool> {
    Ok(AdoptedPostmaster::from_data_dir(data_dir)?.is_some())
}

/// `pg_ctl promote -w`: ends recovery and waits until the server accepts writes.
pub async fn pg_ctl_promote(tools: &Tools, data_dir: &Path, timeout: Duration) -> Result<()> {
    let timeout_secs = timeout.as_secs().max(1).to_string();
    tools
        .run(
            "pg_ctl",
            [
                "promote".as_ref(),
                "-w".as_ref(),
                "-t".as_ref(),
                std::ffi::OsStr::new(&timeout_secs),
                "-D".as_ref(),
                data_dir.as_os_str(),
            ],
            &[],
            timeout + Duration::from_secs(5),
        )
        .await
        .map(|_| ())
}
