//! `pgwarden run` on every host of a [`Network`], each with its own PostgreSQL 15 (run as the
//! `postgres` OS user by the agent), its store member and REST API on the host's address.
//! Ports are fixed (5432, 8008, 2379, 2380): every host has a port space of its own.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ha_cluster_tests::writer::http_post;
use ha_cluster_tests::{PG_BIN_DIR, http_get_json, pgwarden_binary};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::clock::FakeClock;
use crate::disk::LoopDisk;
use crate::net::Network;
use crate::watchdog::FakeWatchdog;

pub const PG_PORT: u16 = 5432;
pub const REST_PORT: u16 = 8008;
pub const ETCD_PORT: u16 = 2379;
const RAFT_PORT: u16 = 2380;

/// The leader lease of the chaos clusters (`ttl`, the default of `pgwarden run`).
pub const TTL: Duration = Duration::from_secs(5);

/// One host's `pgwarden run`.
#[derive(Debug)]
pub struct Node {
    pub name: String,
    pub address: Ipv4Addr,
    namespace: String,
    dir: PathBuf,
    /// PostgreSQL's data directory (in the host's directory, or on its loop disk).
    data_dir: PathBuf,
    /// Extra environment of `pgwarden run` (a stepped clock).
    env: Vec<(String, String)>,
    binary: PathBuf,
    child: Option<Child>,
}

impl Node {
    /// Starts `pgwarden run` inside the host's namespace (again, after a kill).
    pub fn start(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("pgwarden.log"))?;
        // `ip netns exec` execs the command, so the child's pid is the agent's.
        let child = Command::new("ip")
            .args(["netns", "exec", &self.namespace])
            .arg(&self.binary)
            .arg("run")
            .arg(self.dir.join("pgwarden.yml"))
            .env("RUST_LOG", "info,openraft=warn")
            .envs(self.env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("start pgwarden run on {}", self.name))?;
        self.child = Some(child);
        Ok(())
    }

    /// The agent's pid while it runs.
    pub fn agent_pid(&self) -> Option<i32> {
        self.child
            .as_ref()
            .and_then(|child| i32::try_from(child.id()).ok())
    }

    /// Reaps the agent after its host was killed.
    pub fn reap(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM to the agent (a clean stop: a primary stops PostgreSQL and releases the leader
    /// key), then waits up to `timeout` for it to exit.
    pub fn terminate(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let pid = self.agent_pid().context("the agent is not running")?;
        kill(Pid::from_raw(pid), Signal::SIGTERM)
            .with_context(|| format!("SIGTERM to {}", self.name))?;
        let deadline = Instant::now() + timeout;
        while let Some(child) = self.child.as_mut() {
            if child.try_wait()?.is_some() {
                self.child = None;
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "the agent of {} did not exit within {timeout:?} of SIGTERM",
                    self.name
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// SIGSTOP (`true`) or SIGCONT (`false`) to the agent only; PostgreSQL keeps running.
    pub fn freeze_agent(&self, frozen: bool) -> anyhow::Result<()> {
        let pid = self.agent_pid().context("the agent is not running")?;
        let signal = if frozen {
            Signal::SIGSTOP
        } else {
            Signal::SIGCONT
        };
        kill(Pid::from_raw(pid), signal).with_context(|| format!("{signal} to {}", self.name))?;
        Ok(())
    }

    /// The agent's `GET /patroni`, or `None` if it does not answer.
    pub async fn patroni(&self) -> Option<serde_json::Value> {
        http_get_json(&format!("{}:{REST_PORT}", self.address), "/patroni").await
    }

    /// A connection configuration for this host's PostgreSQL with a short connect timeout.
    pub fn pg_config(&self) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host(self.address.to_string())
            .port(PG_PORT)
            .user("postgres")
            .password("secret")
            .dbname("postgres")
            .connect_timeout(Duration::from_millis(500));
        config
    }

    /// Runs `sql` (simple protocol) with a 5 s deadline; the rows' first columns.
    pub async fn query(&self, sql: &str) -> anyhow::Result<Vec<String>> {
        let work = async {
            let (client, connection) = self.pg_config().connect(tokio_postgres::NoTls).await?;
            let driver = tokio::spawn(connection);
            let messages = client.simple_query(sql).await;
            drop(client);
            let _ = driver.await;
            messages
        };
        let messages = tokio::time::timeout(Duration::from_secs(5), work)
            .await
            .with_context(|| format!("{sql} on {} timed out", self.name))?
            .with_context(|| format!("{sql} on {}", self.name))?;
        Ok(messages
            .into_iter()
            .filter_map(|message| match message {
                tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
                _ => None,
            })
            .collect())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pgwarden.log")).unwrap_or_default()
    }

    /// The host's PostgreSQL log (pgwarden writes it beside the data directory).
    pub fn postgres_log(&self) -> String {
        let mut path = self.data_dir.clone().into_os_string();
        path.push(".log");
        std::fs::read_to_string(path).unwrap_or_default()
    }

    fn config(&self, peers: &[Ipv4Addr]) -> String {
        let partners: Vec<String> = peers
            .iter()
            .map(|peer| format!("{peer}:{RAFT_PORT}"))
            .collect();
        format!(
            r#"scope: chaos
name: {name}
restapi:
  listen: {address}:{REST_PORT}
  connect_address: {address}:{REST_PORT}
raft:
  data_dir: {dir}/raft
  self_addr: {address}:{RAFT_PORT}
  partner_addrs: [{partners}]
  etcd_api: {address}:{ETCD_PORT}
bootstrap:
  dcs:
    synchronous_mode: true
    postgresql:
      parameters:
        wal_keep_size: 64MB
postgresql:
  listen: {address}:{PG_PORT}
  connect_address: {address}:{PG_PORT}
  data_dir: {data_dir}
  bin_dir: {bin}
  authentication:
    superuser: {{username: postgres, password: secret}}
    replication: {{username: replicator, password: secret}}
  parameters:
    unix_socket_directories: {dir}/sock
    shared_buffers: 16MB
    max_connections: 40
    fsync: 'off'
    wal_sender_timeout: 5s
    wal_receiver_timeout: 5s
  pg_hba:
  - local all all trust
  - host all all 10.77.0.0/24 trust
  - host replication replicator 10.77.0.0/24 trust
"#,
            name = self.name,
            address = self.address,
            dir = self.dir.display(),
            data_dir = self.data_dir.display(),
            partners = partners.join(", "),
            bin = PG_BIN_DIR,
        )
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // The network's teardown SIGKILLs everything left on the host.
        self.reap();
    }
}

/// Three (or more) hosts, each running `pgwarden run`.
#[derive(Debug)]
pub struct Cluster {
    pub nodes: Vec<Node>,
    /// Dropped after the nodes and before the files (field order).
    pub network: Network,
    /// Each host's watchdog stand-in, when the cluster was started with them.
    pub watchdogs: Vec<FakeWatchdog>,
    /// Each host's loop disk, when the cluster was started with them (unmounted after the
    /// hosts' processes are killed, before the files go).
    pub disks: Vec<LoopDisk>,
    /// Each host's stepped wall clock, when the cluster was started with them.
    pub clocks: Vec<FakeClock>,
    dir: tempfile::TempDir,
}

/// Per-host extras a scenario asks for when the cluster starts.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostSetup {
    /// Each host's PostgreSQL data directory on a loop-mounted ext4 of this many MiB.
    pub loop_disk_mib: Option<u64>,
    /// Each host's agent (and the PostgreSQL it starts) reads its wall clock from a file the
    /// test steps.
    pub fake_clock: bool,
}

impl Cluster {
    /// Creates the network and starts `pgwarden run` on each of `size` hosts.
    pub fn start(size: usize) -> anyhow::Result<Cluster> {
        Cluster::start_with(size, false)
    }

    /// As [`Cluster::start`]; with `watched`, every host also gets a watchdog stand-in that
    /// its agent must arm before promoting (`watchdog: {mode: required}`).
    pub fn start_with(size: usize, watched: bool) -> anyhow::Result<Cluster> {
        Cluster::start_hosts(size, watched, HostSetup::default())
    }

    /// As [`Cluster::start_with`], with the per-host extras of `setup`.
    pub fn start_hosts(size: usize, watched: bool, setup: HostSetup) -> anyhow::Result<Cluster> {
        let binary = pgwarden_binary()?;
        let network = Network::up(size)?;
        let dir = tempfile::Builder::new()
            .prefix("pgwarden-chaos-")
            .tempdir()?;
        set_mode(dir.path(), 0o755)?;
        let mut cluster = Cluster {
            nodes: Vec::new(),
            network,
            watchdogs: Vec::new(),
            disks: Vec::new(),
            clocks: Vec::new(),
            dir,
        };
        let addresses: Vec<Ipv4Addr> = (0..size).map(Network::address).collect();
        for index in 0..size {
            let name = format!("n{}", index + 1);
            let node_dir = cluster.dir.path().join(&name);
            std::fs::create_dir_all(node_dir.join("sock"))?;
            set_mode(&node_dir, 0o755)?;
            give_to_postgres(&node_dir.join("sock"))?;
            let mut node = Node {
                name,
                address: addresses[index],
                namespace: cluster.network.host(index).to_owned(),
                data_dir: node_dir.join("pgdata"),
                env: Vec::new(),
                dir: node_dir,
                binary: binary.clone(),
                child: None,
            };
            cluster.prepare_host(&mut node, setup)?;
            let peers: Vec<Ipv4Addr> = addresses
                .iter()
                .copied()
                .filter(|peer| *peer != node.address)
                .collect();
            let mut config = node.config(&peers);
            if watched {
                let watchdog = FakeWatchdog::start(&node.dir)?;
                config.push_str(&watchdog.yaml());
                cluster.watchdogs.push(watchdog);
            }
            std::fs::write(node.dir.join("pgwarden.yml"), config)?;
            node.start()?;
            cluster.nodes.push(node);
        }
        Ok(cluster)
    }

    /// Gives `node` what `setup` asks for, before it starts.
    fn prepare_host(&mut self, node: &mut Node, setup: HostSetup) -> anyhow::Result<()> {
        if let Some(size_mib) = setup.loop_disk_mib {
            let disk =
                LoopDisk::create(&node.dir.join("disk.img"), &node.dir.join("disk"), size_mib)?;
            node.data_dir = disk.mount().join("pgdata");
            self.disks.push(disk);
        }
        if setup.fake_clock {
            let clock = FakeClock::create(&node.dir.join("clock.rc"))?;
            node.env.extend(clock.env());
            self.clocks.push(clock);
        }
        Ok(())
    }

    /// SIGKILL to every process of host `index` (agent, store, postmaster and backends).
    pub fn kill_host(&mut self, index: usize) -> usize {
        let killed = self.network.kill_host(index);
        self.nodes[index].reap();
        killed
    }

    /// The index of the one running primary when the other members are all streaming
    /// replicas, per the agents' `GET /patroni`.
    pub async fn healthy(&self) -> Option<usize> {
        let mut primaries = Vec::new();
        let mut streaming = 0;
        for (index, node) in self.nodes.iter().enumerate() {
            let status = node.patroni().await?;
            if status["state"] != "running" {
                return None;
            }
            if status["role"] == "primary" {
                primaries.push(index);
            } else if status["role"] == "replica" && status["replication_state"] == "streaming" {
                streaming += 1;
            }
        }
        (primaries.len() == 1 && streaming + 1 == self.nodes.len()).then(|| primaries[0])
    }

    /// How many standbys stream from `primary`, per its `pg_stat_replication` (the agents'
    /// view of a replica can lag behind a broken connection).
    pub async fn streaming_from(&self, primary: usize) -> usize {
        self.nodes[primary]
            .query("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")
            .await
            .ok()
            .and_then(|rows| rows.first()?.parse().ok())
            .unwrap_or(0)
    }

    /// Waits until [`Cluster::healthy`] and the primary's PostgreSQL sees every other member
    /// streaming; the primary's index.
    pub async fn wait_healthy(&self, timeout: Duration) -> anyhow::Result<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(primary) = self.healthy().await
                && self.streaming_from(primary).await == self.nodes.len() - 1
            {
                return Ok(primary);
            }
            if Instant::now() > deadline {
                let mut states = Vec::new();
                for (index, node) in self.nodes.iter().enumerate() {
                    let status = node.patroni().await.unwrap_or_default();
                    states.push(format!(
                        "n{}: {} {} {} (streaming from it: {})",
                        index + 1,
                        status["role"],
                        status["state"],
                        status["replication_state"],
                        self.streaming_from(index).await
                    ));
                }
                bail!(
                    "no primary with every replica streaming within {timeout:?}: {}\n{}",
                    states.join("; "),
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The host whose store member is the Raft leader, per the members' etcd
    /// `maintenance/status` (the leader most of the answering members name).
    pub async fn raft_leader(&self) -> Option<usize> {
        let mut members = Vec::new();
        let mut votes: Vec<u64> = Vec::new();
        for node in &self.nodes {
            let address = format!("{}:{ETCD_PORT}", node.address);
            let Ok((200, body)) = tokio::time::timeout(
                Duration::from_secs(2),
                http_post(&address, "/v3/maintenance/status", "{}"),
            )
            .await
            .unwrap_or_else(|_| Ok((0, String::new()))) else {
                members.push(None);
                continue;
            };
            let status: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let id =
                |value: &serde_json::Value| value.as_str().and_then(|id| id.parse::<u64>().ok());
            members.push(id(&status["header"]["member_id"]));
            if let Some(leader) = id(&status["leader"]) {
                votes.push(leader);
            }
        }
        let leader = votes
            .iter()
            .copied()
            .max_by_key(|leader| votes.iter().filter(|vote| *vote == leader).count())?;
        members.iter().position(|member| *member == Some(leader))
    }

    /// The tail of every node's pgwarden and PostgreSQL logs, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            push_tail(&mut out, &node.name, &node.log(), 40);
            let (server, statement_errors) = server_messages(&node.postgres_log());
            push_tail(
                &mut out,
                &format!(
                    "{} PostgreSQL (without {statement_errors} statement errors)",
                    node.name
                ),
                &server,
                30,
            );
        }
        out
    }

    /// Keeps the hosts' files (logs, data directories) after the test, for a post-mortem.
    pub fn keep_files(&mut self) -> &Path {
        self.dir.disable_cleanup(true);
        self.dir.path()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // A frozen filesystem's writers cannot die: thaw before the hosts are killed.
        for disk in &self.disks {
            let _ = disk.thaw();
        }
    }
}

fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}

/// Hands `path` to the postgres OS user (the agent runs PostgreSQL as that user as root).
fn give_to_postgres(path: &Path) -> anyhow::Result<()> {
    let user = nix::unistd::User::from_name("postgres")?.context("no postgres OS user")?;
    std::os::unix::fs::chown(path, Some(user.uid.as_raw()), Some(user.gid.as_raw()))
        .with_context(|| format!("chown {}", path.display()))
}

/// A PostgreSQL log without the clients' failed statements (an `ERROR` line and the `DETAIL`,
/// `HINT` and `STATEMENT` lines that follow it), and how many there were: the workload's writes
/// to a read-only member would otherwise fill the tail a failure message shows, hiding what the
/// server itself did (recovery, the WAL receiver, timeline switches).
fn server_messages(log: &str) -> (String, usize) {
    let mut kept = String::new();
    let mut dropped = 0;
    let mut in_error = false;
    for line in log.lines() {
        let severity = line
            .split_once("] ")
            .map(|(_, rest)| rest.split(':').next().unwrap_or(""))
            .unwrap_or("");
        match severity {
            "ERROR" => {
                in_error = true;
                dropped += 1;
            }
            "DETAIL" | "HINT" | "STATEMENT" | "CONTEXT" if in_error => {}
            _ => {
                in_error = false;
                kept.push_str(line);
                kept.push('\n');
            }
        }
    }
    (kept, dropped)
}

/// Appends the last `lines` lines of `text` to `out` under a `--- title ---` heading.
fn push_tail(out: &mut String, title: &str, text: &str, lines: usize) {
    let tail: Vec<&str> = text.lines().rev().take(lines).collect();
    out.push_str(&format!("--- {title} ---\n"));
    for line in tail.into_iter().rev() {
        out.push_str(line);
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::server_messages;

    #[test]
    fn server_messages_leave_out_failed_statements() {
        let log = "\
2026-11-28 04:00:00.000 UTC [10] LOG:  entering standby mode
2026-11-28 04:00:01.000 UTC [11] ERROR:  cannot execute INSERT in a read-only transaction
2026-11-28 04:00:01.000 UTC [11] STATEMENT:  INSERT INTO t VALUES (1)
2026-11-28 04:00:02.000 UTC [12] FATAL:  could not start WAL streaming: ERROR:  replication slot \"n3\" does not exist
2026-11-28 04:00:02.000 UTC [10] DETAIL:  End of WAL reached on timeline 1 at 0/3000000.
";
        let (kept, dropped) = server_messages(log);
        assert_eq!(dropped, 1);
        assert_eq!(
            kept.lines().collect::<Vec<_>>(),
            vec![
                "2026-11-28 04:00:00.000 UTC [10] LOG:  entering standby mode",
                "2026-11-28 04:00:02.000 UTC [12] FATAL:  could not start WAL streaming: ERROR:  replication slot \"n3\" does not exist",
                "2026-11-28 04:00:02.000 UTC [10] DETAIL:  End of WAL reached on timeline 1 at 0/3000000.",
            ]
        );
    }
}
