//! Running Debian's `etcdctl` (API v3) against a cluster, with a deadline.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// No etcdctl invocation in the suites may take longer than this.
const ETCDCTL_TIMEOUT: Duration = Duration::from_secs(30);

/// An etcdctl bound to a set of endpoints.
#[derive(Debug, Clone)]
pub struct Etcdctl {
    binary: PathBuf,
    endpoints: Vec<String>,
    /// Global flags given to every invocation (e.g. `--cacert`, `--cert`, `--key`).
    global_args: Vec<String>,
}

/// What one invocation did: exit code (`None` when killed by a signal) and its output.
#[derive(Debug, Clone)]
pub struct EtcdctlOutput {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl EtcdctlOutput {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Fails with the whole output when the command did not succeed.
    pub fn ok(self) -> anyhow::Result<Self> {
        anyhow::ensure!(self.success(), "etcdctl failed: {self:?}");
        Ok(self)
    }
}

impl Etcdctl {
    pub fn new(endpoints: Vec<String>) -> Self {
        let binary = std::env::var_os("ETCDCTL_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/bin/etcdctl"));
        Self {
            binary,
            endpoints,
            global_args: Vec::new(),
        }
    }

    /// Passes `args` to every invocation, after `--endpoints`.
    pub fn with_global_args(mut self, args: Vec<String>) -> Self {
        self.global_args = args;
        self
    }

    pub async fn run(&self, args: &[&str]) -> anyhow::Result<EtcdctlOutput> {
        self.run_with_stdin(args, None).await
    }

    /// Runs a command that does not exit on its own (e.g. `watch`) for `duration`, then kills it and
    /// returns what it printed; `during` runs meanwhile (e.g. the writes the watch should see).
    pub async fn run_for<F: std::future::Future<Output = anyhow::Result<()>>>(
        &self,
        args: &[&str],
        duration: Duration,
        during: F,
    ) -> anyhow::Result<EtcdctlOutput> {
        let mut child = Command::new(&self.binary)
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoints.join(",")))
            .args(&self.global_args)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawn {}", self.binary.display()))?;
        let (during, _) = tokio::join!(during, tokio::time::sleep(duration));
        during?;
        child.start_kill().context("stop etcdctl")?;
        let output = tokio::time::timeout(ETCDCTL_TIMEOUT, child.wait_with_output())
            .await
            .context("etcdctl did not die after SIGKILL")?
            .context("wait for etcdctl")?;
        Ok(EtcdctlOutput {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }

    /// Runs `etcdctl --endpoints=... <args>`, feeding `stdin` when given.
    pub async fn run_with_stdin(
        &self,
        args: &[&str],
        stdin: Option<&str>,
    ) -> anyhow::Result<EtcdctlOutput> {
        let mut command = Command::new(&self.binary);
        command
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoints.join(",")))
            .args(&self.global_args)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .with_context(|| format!("spawn {}", self.binary.display()))?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input.as_bytes())
                .await
                .context("write etcdctl stdin")?;
            drop(pipe);
        }
        let output = tokio::time::timeout(ETCDCTL_TIMEOUT, child.wait_with_output())
            .await
            .with_context(|| format!("etcdctl {args:?} did not finish in {ETCDCTL_TIMEOUT:?}"))?
            .context("wait for etcdctl")?;
        Ok(EtcdctlOutput {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }
}
