//! One demo member: its ports and paths, its generated `pgwarden run` configuration, and the
//! child process running it.
//!
//! A member runs in its own process group, so a Ctrl-C in the terminal reaches only
//! `pgwarden demo`, which then stops every member in order; a member that does not stop by the
//! deadline is killed together with its postmaster.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

/// Where Debian and Ubuntu install PostgreSQL 15's programs.
pub const PG_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";

/// The demo's superuser password (the configuration also trusts local socket connections).
pub const SUPERUSER_PASSWORD: &str = "demo";

/// The ports of one member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub postgresql: u16,
    pub rest: u16,
    pub etcd_api: u16,
    pub raft: u16,
}

impl Ports {
    /// Ports from `--base-port`: member `index` (from 0) uses `base + 10 × index` for
    /// PostgreSQL, `+1` for the REST API, `+2` for the etcd API and `+3` for Raft.
    pub fn from_base(base: u16, index: usize) -> anyhow::Result<Ports> {
        let port = |offset: usize| -> anyhow::Result<u16> {
            u16::try_from(usize::from(base) + 10 * index + offset)
                .ok()
                .filter(|port| *port != 0)
                .with_context(|| format!("--base-port {base}: member {index} runs past port 65535"))
        };
        Ok(Ports {
            postgresql: port(0)?,
            rest: port(1)?,
            etcd_api: port(2)?,
            raft: port(3)?,
        })
    }

    /// Distinct free loopback ports for `count` members, all chosen in one pass. They come
    /// from [`FREE_PORTS`], below the kernel's ephemeral range: a port released here cannot be
    /// handed to another program's outgoing connection before the member binds it, and no
    /// two members draw the same port (every candidate stays bound until all are chosen).
    pub fn free(count: usize) -> anyhow::Result<Vec<Ports>> {
        let len = FREE_PORTS.end - FREE_PORTS.start;
        // Concurrent demos start at different points of the range.
        let offset = u16::try_from(std::process::id() % u32::from(len)).unwrap_or(0);
        let mut held = Vec::with_capacity(4 * count);
        for step in 0..len {
            if held.len() == 4 * count {
                break;
            }
            let port = FREE_PORTS.start + (offset + step) % len;
            if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
                held.push(listener);
            }
        }
        anyhow::ensure!(
            held.len() == 4 * count,
            "only {} free ports in {}..{} for {count} members (4 each); use --base-port",
            held.len(),
            FREE_PORTS.start,
            FREE_PORTS.end
        );
        let ports = held
            .iter()
            .map(|listener| Ok(listener.local_addr()?.port()))
            .collect::<std::io::Result<Vec<u16>>>()
            .context("read a bound port")?;
        Ok(ports
            .chunks_exact(4)
            .map(|four| Ports {
                postgresql: four[0],
                rest: four[1],
                etcd_api: four[2],
                raft: four[3],
            })
            .collect())
    }
}

/// Where [`Ports::free`] looks: below Linux's default ephemeral range (32768–60999).
pub const FREE_PORTS: std::ops::Range<u16> = 10_000..20_000;

/// A member's name, directory and ports.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub name: String,
    pub dir: PathBuf,
    pub ports: Ports,
}

impl NodeSpec {
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("pgwarden.yml")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("pgwarden.log")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("pgdata")
    }

    pub fn socket_dir(&self) -> PathBuf {
        self.dir.join("sock")
    }

    /// The PostgreSQL `host:port` clients use.
    pub fn postgresql_address(&self) -> String {
        format!("127.0.0.1:{}", self.ports.postgresql)
    }

    pub fn rest_address(&self) -> String {
        format!("127.0.0.1:{}", self.ports.rest)
    }

    pub fn etcd_api_address(&self) -> String {
        format!("127.0.0.1:{}", self.ports.etcd_api)
    }

    /// The `pgwarden run` configuration: the embedded store with every other member as a Raft
    /// partner, PostgreSQL on loopback with a small footprint, and password authentication for
    /// TCP connections (local socket connections are trusted, as a packaged PostgreSQL does).
    pub fn config(&self, partners: &[Ports]) -> String {
        let partners: Vec<String> = partners
            .iter()
            .map(|ports| format!("127.0.0.1:{}", ports.raft))
            .collect();
        format!(
            r#"# Generated by `pgwarden demo`.
scope: demo
name: {name}
restapi:
  listen: 127.0.0.1:{rest}
  connect_address: 127.0.0.1:{rest}
raft:
  data_dir: {dir}/raft
  self_addr: 127.0.0.1:{raft}
  partner_addrs: [{partners}]
  etcd_api: 127.0.0.1:{etcd}
bootstrap:
  dcs:
    postgresql:
      parameters:
        wal_keep_size: 64MB
postgresql:
  listen: 127.0.0.1:{pg}
  connect_address: 127.0.0.1:{pg}
  data_dir: {dir}/pgdata
  bin_dir: {bin}
  authentication:
    superuser: {{username: postgres, password: {password}}}
    replication: {{username: replicator, password: {password}}}
  parameters:
    unix_socket_directories: {dir}/sock
    shared_buffers: 16MB
  pg_hba:
  - local all all trust
  - host all all 127.0.0.1/32 scram-sha-256
  - host replication replicator 127.0.0.1/32 scram-sha-256
"#,
            name = self.name,
            rest = self.ports.rest,
            raft = self.ports.raft,
            etcd = self.ports.etcd_api,
            pg = self.ports.postgresql,
            dir = self.dir.display(),
            bin = PG_BIN_DIR,
            partners = partners.join(", "),
            password = SUPERUSER_PASSWORD,
        )
    }
}

/// A running member process.
#[derive(Debug)]
pub struct DemoNode {
    pub spec: NodeSpec,
    /// `None` once the process has been reaped.
    child: Option<Child>,
}

impl DemoNode {
    /// Starts `binary run CONFIG` with its stdout and stderr appended to the member's log.
    pub fn spawn(binary: &Path, spec: NodeSpec) -> anyhow::Result<DemoNode> {
        let log_path = spec.log_path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("open {}", log_path.display()))?;
        let stderr = log
            .try_clone()
            .with_context(|| format!("open {}", log_path.display()))?;
        let child = Command::new(binary)
            .arg("run")
            .arg(spec.config_path())
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info,openraft=warn".to_owned()),
            )
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .process_group(0)
            // The last resort if the demo itself fails between start and stop.
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("start {} run for {}", binary.display(), spec.name))?;
        Ok(DemoNode {
            spec,
            child: Some(child),
        })
    }

    /// `Some(description)` once the member process has exited.
    pub fn exited(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(error) => Some(format!("unknown ({error})")),
        }
    }

    /// The last `lines` lines of the member's log (the log itself goes with a temporary
    /// directory, so failures quote it).
    pub fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(self.spec.log_path()).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(lines).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// The member's `GET /patroni` JSON, or `None` if its REST API does not answer.
    pub async fn patroni(&self) -> Option<serde_json::Value> {
        rest::client::get_json(
            &self.spec.rest_address(),
            "/patroni",
            Duration::from_secs(1),
        )
        .await
    }

    /// Sends SIGTERM (the member stops PostgreSQL with a fast shutdown and leaves the store).
    pub fn terminate(&self) {
        if let Some(pid) = self.child.as_ref().and_then(Child::id) {
            send(pid, Signal::SIGTERM);
        }
    }

    /// Waits up to `deadline` for the member to exit after [`DemoNode::terminate`]; past it,
    /// kills the member and its postmaster. Returns how the member ended.
    pub async fn wait_or_kill(&mut self, deadline: Duration) -> StopOutcome {
        let Some(mut child) = self.child.take() else {
            return StopOutcome::Exited;
        };
        let outcome = match tokio::time::timeout(deadline, child.wait()).await {
            Ok(_) => StopOutcome::Exited,
            Err(_) => {
                // The process may have exited between the timeout and this kill; the
                // error of killing a reaped child is expected then.
                let _ = child.kill().await;
                StopOutcome::Killed
            }
        };
        self.stop_leftover_postmaster().await;
        outcome
    }

    /// A postmaster still running from this member's data directory (its member was killed, or
    /// stopped without stopping PostgreSQL): SIGQUIT, then SIGKILL after five seconds.
    async fn stop_leftover_postmaster(&self) {
        let Some(pid) = self.postmaster_pid() else {
            return;
        };
        if !is_postgres_process(pid) {
            return;
        }
        send(pid, Signal::SIGQUIT);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while is_postgres_process(pid) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if is_postgres_process(pid) {
            send(pid, Signal::SIGKILL);
        }
    }

    fn postmaster_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.spec.data_dir().join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for DemoNode {
    /// The demo failed before stopping this member: kill it (kill_on_drop) and its postmaster.
    fn drop(&mut self) {
        if let Some(pid) = self.child.as_ref().and_then(Child::id) {
            send(pid, Signal::SIGKILL);
        }
        if let Some(pid) = self.postmaster_pid()
            && is_postgres_process(pid)
        {
            send(pid, Signal::SIGKILL);
        }
    }
}

/// How a member ended when the demo stopped it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOutcome {
    Exited,
    Killed,
}

fn send(pid: u32, signal: Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        // The process may already be gone; there is nothing to do about that.
        let _ = kill(Pid::from_raw(pid), signal);
    }
}

/// True while `pid` is a live PostgreSQL process (guards against a stale pid file whose pid
/// was reused).
fn is_postgres_process(pid: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // `pid (comm) state ...`: a zombie (state Z) has exited already.
    let Some((comm, rest)) = status
        .split_once('(')
        .and_then(|(_, rest)| rest.rsplit_once(')'))
    else {
        return false;
    };
    comm.starts_with("postgres") && !rest.trim_start().starts_with('Z')
}
