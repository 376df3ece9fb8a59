//! A harness for HA acceptance tests: three (or more) `pgwarden run` processes, each with its
//! own PostgreSQL 15, on loopback ports bound from 0, in a temporary directory that is handed
//! to the `postgres` OS user when the tests run as root.
//! Everything started is torn down by PID in `Drop` (the agent with SIGKILL, the postmaster
//! from its pid file with SIGQUIT, then SIGKILL).
//! It must not know pgwarden's internals: it talks to nodes only through their REST API and
//! PostgreSQL, as an operator would.

pub mod etcd;
pub mod tls;
pub mod writer;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Where PostgreSQL 15 lives on the test machines.
pub const PG_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";

/// The `pgwarden` binary: `PGWARDEN_BIN`, or the workspace's debug build, brought up to date by
/// the build the README's test command runs first (`cargo build --workspace --bins`). The same
/// command, not `-p pgwarden`: building one package resolves its dependencies' features apart
/// from the workspace's, so the two builds would relink each other's binaries (minutes on a
/// loaded 2-core machine, inside a test's time bound), and this one also builds the fake
/// watchdog the chaos tests use.
pub fn pgwarden_binary() -> anyhow::Result<PathBuf> {
    if let Ok(path) = std::env::var("PGWARDEN_BIN") {
        return Ok(PathBuf::from(path));
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(cargo)
        .args(["build", "-q", "--workspace", "--bins"])
        .current_dir(&workspace)
        .status()
        .context("run cargo build --workspace --bins")?;
    if !status.success() {
        bail!("cargo build --workspace --bins failed");
    }
    Ok(workspace.join("target/debug/pgwarden"))
}

/// First port of the range `free_port` picks from, and its size: below Linux's ephemeral
/// range (32768–60999), where ports bound from 0 and the outgoing connections of every other
/// test land. A port found free here is not taken by them in the moment before a member binds
/// it (ports bound from 0 were, now and then).
const PORT_RANGE_START: u16 = 20_000;
const PORT_RANGE_LEN: u16 = 12_000;

/// The next candidate offset in the port range (starts at a per-process point).
static NEXT_PORT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);

/// Runs `pgwarden ctl -c CONFIG ARGS` with an empty standard input; (exit code, stdout, stderr).
/// Writes a node configuration whose store section is `store_yaml` (its TLS file at `missing`
/// does not exist) and checks that `pgwarden run` exits with code 2 and `pgwarden ctl list`
/// fails, both naming `key`, and run also the file.
pub fn refused_at_start(
    dir: &Path,
    store_yaml: &str,
    key: &str,
    missing: &Path,
) -> anyhow::Result<()> {
    let config = dir.join("pgwarden.yml");
    std::fs::write(
        &config,
        format!(
            "scope: demo\nname: n1\nrestapi:\n  listen: 127.0.0.1:1\n  connect_address: 127.0.0.1:1\n\
             {store_yaml}postgresql:\n  listen: 127.0.0.1:1\n  connect_address: 127.0.0.1:1\n  \
             data_dir: {dir}/pgdata\n  bin_dir: /nonexistent\n  authentication:\n    \
             superuser: {{username: postgres}}\n    replication: {{username: replicator}}\n",
            dir = dir.display(),
        ),
    )?;
    let output = Command::new(pgwarden_binary()?)
        .arg("run")
        .arg(&config)
        .stdin(Stdio::null())
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.code() != Some(2)
        || !stderr.contains(key)
        || !stderr.contains(&missing.display().to_string())
    {
        bail!(
            "pgwarden run: {:?}, expected exit 2 naming {key} and the file: {stderr}",
            output.status.code()
        );
    }
    let (code, stdout, stderr) = ctl(&config, &["list"])?;
    if code == 0 || !stderr.contains(key) {
        bail!("pgwarden ctl list: {code}, expected a failure naming {key}: {stdout}{stderr}");
    }
    Ok(())
}

pub fn ctl(config: &Path, args: &[&str]) -> anyhow::Result<(i32, String, String)> {
    let output = Command::new(pgwarden_binary()?)
        .arg("ctl")
        .arg("-c")
        .arg(config)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("run pgwarden ctl")?;
    Ok((
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

/// A free loopback port: the next one in the test range that can be bound now (released at
/// once). Processes start at different points of the range, and one process never hands out
/// the same port twice.
pub fn free_port() -> anyhow::Result<u16> {
    let start = u16::try_from(std::process::id() % u32::from(PORT_RANGE_LEN)).unwrap_or(0);
    for _ in 0..PORT_RANGE_LEN {
        let step = NEXT_PORT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let port = PORT_RANGE_START + (start.wrapping_add(step.wrapping_mul(7)) % PORT_RANGE_LEN);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!(
        "no free port in {PORT_RANGE_START}..{}",
        PORT_RANGE_START + PORT_RANGE_LEN
    )
}

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// Hands `path` to the postgres OS user when running as root.
fn give_to_postgres(path: &Path) -> anyhow::Result<()> {
    if is_root() {
        let user = nix::unistd::User::from_name("postgres")?.context("no postgres OS user")?;
        std::os::unix::fs::chown(path, Some(user.uid.as_raw()), Some(user.gid.as_raw()))?;
    }
    Ok(())
}

/// One member's ports and paths.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub name: String,
    pub dir: PathBuf,
    pub raft_port: u16,
    pub etcd_port: u16,
    pub rest_port: u16,
    pub pg_port: u16,
}

impl NodeSpec {
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("pgdata")
    }

    pub fn socket_dir(&self) -> PathBuf {
        self.dir.join("sock")
    }

    /// The node's `pgwarden run` configuration: the `raft:` section with `partners` as its
    /// partner Raft ports, or `etcd3:` when the options name external hosts.
    fn config(&self, partners: &[u16], options: &ClusterOptions) -> String {
        let store = match &options.etcd3_hosts {
            None => {
                let partners: Vec<String> = partners
                    .iter()
                    .map(|port| format!("127.0.0.1:{port}"))
                    .collect();
                let raft_extra: String = options
                    .raft_yaml
                    .replace("{name}", &self.name)
                    .lines()
                    .map(|line| format!("  {line}\n"))
                    .collect();
                format!(
                    "raft:\n  data_dir: {dir}/raft\n  self_addr: 127.0.0.1:{raft}\n  partner_addrs: [{partners}]\n  etcd_api: 127.0.0.1:{etcd}\n{raft_extra}",
                    dir = self.dir.display(),
                    raft = self.raft_port,
                    etcd = self.etcd_port,
                    partners = partners.join(", "),
                )
            }
            Some(hosts) => {
                let etcd3_extra: String = options
                    .etcd3_yaml
                    .lines()
                    .map(|line| format!("  {line}\n"))
                    .collect();
                format!("etcd3:\n  hosts: [{}]\n{etcd3_extra}", hosts.join(", "))
            }
        };
        let dcs_extra: String = options
            .dcs_yaml
            .lines()
            .map(|line| format!("    {line}\n"))
            .collect();
        let dcs_parameters: String = options
            .dcs_parameters_yaml
            .lines()
            .map(|line| format!("        {line}\n"))
            .collect();
        let postgresql_extra: String = options
            .postgresql_yaml
            .replace("{name}", &self.name)
            .lines()
            .map(|line| format!("  {line}\n"))
            .collect();
        let node_extra: String = options
            .node_yaml
            .replace("{name}", &self.name)
            .replace("{dir}", &self.dir.display().to_string())
            .lines()
            .map(|line| format!("{line}\n"))
            .collect();
        let restapi_extra: String = options
            .restapi_yaml
            .lines()
            .map(|line| format!("  {line}\n"))
            .collect();
        let bootstrap_extra: String = options
            .bootstrap_yaml
            .lines()
            .map(|line| format!("  {line}\n"))
            .collect();
        format!(
            r#"scope: demo
name: {name}
{node_extra}
restapi:
  listen: 127.0.0.1:{rest}
  connect_address: 127.0.0.1:{rest}
{restapi_extra}{store}bootstrap:
  dcs:
{dcs_extra}    postgresql:
      parameters:
        wal_keep_size: 64MB
{dcs_parameters}{bootstrap_extra}postgresql:
  listen: 127.0.0.1:{pg}
  connect_address: 127.0.0.1:{pg}
  data_dir: {dir}/pgdata
  bin_dir: {bin}
{postgresql_extra}  authentication:
    superuser: {{username: postgres, password: secret}}
    replication: {{username: replicator, password: secret}}
  parameters:
    unix_socket_directories: {dir}/sock
    shared_buffers: 16MB
    max_connections: 30
    fsync: 'off'
  pg_hba:
  - local all all trust
  - host all all 127.0.0.1/32 trust
  - host replication replicator 127.0.0.1/32 trust
"#,
            name = self.name,
            rest = self.rest_port,
            pg = self.pg_port,
            dir = self.dir.display(),
            bin = PG_BIN_DIR,
        )
    }
}

/// A running (or stopped) member.
#[derive(Debug)]
pub struct Node {
    pub spec: NodeSpec,
    config_path: PathBuf,
    log_path: PathBuf,
    binary: PathBuf,
    child: Option<Child>,
}

impl Node {
    /// Starts `pgwarden run` (again).
    pub fn start(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)?;
        let child = Command::new(&self.binary)
            .arg("run")
            .arg(&self.config_path)
            .env("RUST_LOG", "info,openraft=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawn pgwarden run")?;
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL to the agent and to its postmaster together (a host dying, as seen by peers).
    pub fn kill_hard(&mut self) {
        let postmaster = self.postmaster_pid();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(pid) = postmaster {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        // The postmaster's children exit when it is gone; wait for the pid to disappear.
        if let Some(pid) = postmaster {
            let deadline = Instant::now() + Duration::from_secs(10);
            while kill(Pid::from_raw(pid), None).is_ok() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// The node's `pgwarden run` configuration file (what `pgwarden ctl -c` reads too).
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// SIGKILL to the postmaster only (a PostgreSQL crash; the agent keeps running).
    /// Returns the killed pid.
    pub fn kill_postmaster(&self) -> Option<i32> {
        let pid = self.postmaster_pid()?;
        kill(Pid::from_raw(pid), Signal::SIGKILL).ok()?;
        Some(pid)
    }

    /// SIGSTOP to the agent only (the host hangs: its store member and REST API stop
    /// answering while their connections stay open; PostgreSQL keeps running).
    /// Returns false when the agent is not running. Undo with [`Node::thaw`].
    pub fn freeze(&self) -> bool {
        self.signal_agent(Signal::SIGSTOP)
    }

    /// The pid of this node's `pgwarden run`, while it is a child of the test.
    pub fn agent_pid(&self) -> Option<i32> {
        self.child
            .as_ref()
            .and_then(|child| i32::try_from(child.id()).ok())
    }

    /// SIGHUP to the agent: it reads its configuration file again.
    pub fn hangup(&self) -> bool {
        self.signal_agent(Signal::SIGHUP)
    }

    /// SIGCONT to the agent after [`Node::freeze`].
    pub fn thaw(&self) -> bool {
        self.signal_agent(Signal::SIGCONT)
    }

    fn signal_agent(&self, signal: Signal) -> bool {
        let Some(child) = &self.child else {
            return false;
        };
        let Ok(pid) = i32::try_from(child.id()) else {
            return false;
        };
        kill(Pid::from_raw(pid), signal).is_ok()
    }

    /// True while `pgwarden run` of this node is a running child of the test.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// The first column of the first row of `sql` on this node's PostgreSQL, as text.
    pub async fn query(&self, sql: &str) -> anyhow::Result<Option<String>> {
        let (client, connection) = tokio_postgres::Config::new()
            .host("127.0.0.1")
            .port(self.spec.pg_port)
            .user("postgres")
            .password("secret")
            .dbname("postgres")
            .connect_timeout(Duration::from_secs(2))
            .connect(tokio_postgres::NoTls)
            .await
            .with_context(|| format!("connect to {}", self.spec.name))?;
        let driver = tokio::spawn(connection);
        let result = tokio::time::timeout(Duration::from_secs(5), client.simple_query(sql)).await;
        drop(client);
        let _ = driver.await;
        let messages = result
            .with_context(|| format!("{sql} on {} timed out", self.spec.name))?
            .with_context(|| format!("{sql} on {}", self.spec.name))?;
        Ok(messages.into_iter().find_map(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        }))
    }

    pub fn postmaster_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.spec.data_dir().join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// The node's `GET /patroni` JSON, or `None` if it does not answer.
    pub async fn patroni(&self) -> Option<serde_json::Value> {
        http_get_json(&format!("127.0.0.1:{}", self.spec.rest_port), "/patroni").await
    }

    /// The node's REST API address (`127.0.0.1:port`).
    pub fn rest_address(&self) -> String {
        format!("127.0.0.1:{}", self.spec.rest_port)
    }

    /// The HTTP status code of `GET path` on the node's REST API (e.g. `/primary`: 200 while
    /// it is a running primary holding the leader key), or `None` if it does not answer.
    pub async fn http_status(&self, path: &str) -> Option<u16> {
        http_get_status(&self.rest_address(), path).await
    }

    /// True when an INSERT commits on this node (it accepts writes).
    pub async fn accepts_writes(&self) -> bool {
        let connect = tokio_postgres::Config::new()
            .host("127.0.0.1")
            .port(self.spec.pg_port)
            .user("postgres")
            .password("secret")
            .dbname("postgres")
            .connect_timeout(Duration::from_millis(500))
            .connect(tokio_postgres::NoTls)
            .await;
        let Ok((client, connection)) = connect else {
            return false;
        };
        let driver = tokio::spawn(connection);
        let ok = tokio::time::timeout(
            Duration::from_secs(2),
            client.batch_execute(
                "CREATE TABLE IF NOT EXISTS probe (at timestamptz); INSERT INTO probe VALUES (now())",
            ),
        )
        .await
        .is_ok_and(|result| result.is_ok());
        drop(client);
        let _ = driver.await;
        ok
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let postmaster = self.postmaster_pid();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(pid) = postmaster {
            let pid = Pid::from_raw(pid);
            let _ = kill(pid, Signal::SIGQUIT);
            let deadline = Instant::now() + Duration::from_secs(5);
            while kill(pid, None).is_ok() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = kill(pid, Signal::SIGKILL);
        }
    }
}

/// How a test cluster is configured.
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// `None`: every node embeds the store (`raft:`). `Some(hosts)`: every node uses these
    /// external etcd endpoints (`etcd3: {hosts: [...]}`, `host:port` each).
    pub etcd3_hosts: Option<Vec<String>>,
    /// Extra YAML lines under every node's `etcd3:` section (unindented, e.g. `protocol: https`
    /// and the TLS keys); only with `etcd3_hosts`.
    pub etcd3_yaml: String,
    /// Extra YAML lines under `bootstrap.dcs` (unindented, e.g. `ttl: 10`).
    pub dcs_yaml: String,
    /// Extra YAML lines under `bootstrap.dcs.postgresql.parameters` (unindented, e.g.
    /// `max_connections: 30`).
    pub dcs_parameters_yaml: String,
    /// Extra YAML lines under every node's local `postgresql:` section (unindented, e.g.
    /// `use_pg_rewind: false`); `{name}` stands for the node's name.
    pub postgresql_yaml: String,
    /// Extra top-level YAML lines in every node's configuration (e.g. a `watchdog:` section);
    /// `{name}` stands for the node's name and `{dir}` for its directory.
    pub node_yaml: String,
    /// Extra YAML lines under every node's `raft:` section (unindented, e.g. the TLS keys);
    /// `{name}` stands for the node's name.
    pub raft_yaml: String,
    /// Extra YAML lines under every node's `restapi:` section (unindented, e.g. the TLS keys
    /// `certfile`, `keyfile`, `cafile`, `verify_client`).
    pub restapi_yaml: String,
    /// Extra YAML lines under `bootstrap:` beside `dcs` (unindented, e.g. `initdb: [...]`).
    pub bootstrap_yaml: String,
}

/// A cluster of `pgwarden run` members in one temporary directory.
#[derive(Debug)]
pub struct Cluster {
    pub nodes: Vec<Node>,
    options: ClusterOptions,
    binary: PathBuf,
    /// Dropped after the nodes (field order), so processes stop before files go.
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Writes the configurations of `size` members (embedded store) and starts them all.
    pub fn start(size: usize) -> anyhow::Result<Cluster> {
        Self::start_with(size, ClusterOptions::default())
    }

    /// Writes the configurations of `size` members per `options` and starts them all.
    pub fn start_with(size: usize, options: ClusterOptions) -> anyhow::Result<Cluster> {
        let binary = pgwarden_binary()?;
        let dir = tempfile::Builder::new().prefix("pgwarden-ha-").tempdir()?;
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )?;
        let mut cluster = Cluster {
            nodes: Vec::new(),
            options,
            binary,
            dir,
        };
        let specs = (1..=size)
            .map(|index| cluster.new_spec(index))
            .collect::<anyhow::Result<Vec<_>>>()?;
        for spec in &specs {
            let partners: Vec<u16> = specs
                .iter()
                .filter(|other| other.name != spec.name)
                .map(|other| other.raft_port)
                .collect();
            cluster.launch(spec.clone(), &partners)?;
        }
        Ok(cluster)
    }

    /// Starts one more member (`n<len+1>`) whose partners are every existing member; returns
    /// its index.
    pub fn add_node(&mut self) -> anyhow::Result<usize> {
        let spec = self.new_spec(self.nodes.len() + 1)?;
        let partners: Vec<u16> = self.nodes.iter().map(|node| node.spec.raft_port).collect();
        self.launch(spec, &partners)?;
        Ok(self.nodes.len() - 1)
    }

    /// The temporary directory holding every node's files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn new_spec(&self, index: usize) -> anyhow::Result<NodeSpec> {
        let node_dir = self.dir.path().join(format!("n{index}"));
        std::fs::create_dir_all(node_dir.join("sock"))?;
        std::fs::set_permissions(
            &node_dir,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )?;
        give_to_postgres(&node_dir.join("sock"))?;
        Ok(NodeSpec {
            name: format!("n{index}"),
            dir: node_dir,
            raft_port: free_port()?,
            etcd_port: free_port()?,
            rest_port: free_port()?,
            pg_port: free_port()?,
        })
    }

    fn launch(&mut self, spec: NodeSpec, partners: &[u16]) -> anyhow::Result<()> {
        let config_path = spec.dir.join("pgwarden.yml");
        std::fs::write(&config_path, spec.config(partners, &self.options))?;
        let mut node = Node {
            log_path: spec.dir.join("pgwarden.log"),
            spec,
            config_path,
            binary: self.binary.clone(),
            child: None,
        };
        node.start()?;
        self.nodes.push(node);
        Ok(())
    }

    /// Waits until one running primary and `replicas` streaming replicas; returns the
    /// primary's index.
    pub async fn wait_healthy(&self, replicas: usize, timeout: Duration) -> anyhow::Result<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut primary = None;
            let mut streaming = 0;
            for (index, node) in self.nodes.iter().enumerate() {
                if let Some(status) = node.patroni().await {
                    let running = status["state"] == "running";
                    if running && status["role"] == "primary" {
                        primary = Some(index);
                    } else if running
                        && status["role"] == "replica"
                        && status["replication_state"] == "streaming"
                    {
                        streaming += 1;
                    }
                }
            }
            if let Some(primary) = primary
                && streaming >= replicas
            {
                return Ok(primary);
            }
            if Instant::now() > deadline {
                bail!("cluster not healthy within {timeout:?}:\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until a node other than `except` accepts writes; returns its index.
    pub async fn wait_writable(&self, except: usize, timeout: Duration) -> anyhow::Result<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            for (index, node) in self.nodes.iter().enumerate() {
                if index != except && node.accepts_writes().await {
                    return Ok(index);
                }
            }
            if Instant::now() > deadline {
                bail!("no writable primary within {timeout:?}:\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until node `index` is a streaming replica.
    pub async fn wait_streaming(&self, index: usize, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.nodes[index].patroni().await
                && status["role"] == "replica"
                && status["state"] == "running"
                && status["replication_state"] == "streaming"
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "node {index} not streaming within {timeout:?}:\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The tail of every node's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            let log = node.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            out.push_str(&format!("--- {} ---\n", node.spec.name));
            for line in tail.into_iter().rev() {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

/// `GET path` on `address` → the response's status code (HTTP/1.1, `Connection: close`),
/// 1 s timeout.
pub async fn http_get_status(address: &str, path: &str) -> Option<u16> {
    let fetch = async {
        let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.ok()?;
        let text = String::from_utf8_lossy(&response);
        // The status line: `HTTP/1.1 200 OK`.
        text.split_whitespace().nth(1)?.parse().ok()
    };
    tokio::time::timeout(Duration::from_secs(1), fetch)
        .await
        .ok()
        .flatten()
}

/// Polls `probe` until it returns `Some` or `within` passes.
pub async fn eventually<T, F, Fut>(within: Duration, mut probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = probe().await {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("not reached within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The `/sync` key (scope `demo`) as JSON, read through the etcd API on `etcd_port`.
pub async fn sync_key(etcd_port: u16) -> anyhow::Result<Option<serde_json::Value>> {
    let mut client =
        etcd_client::Client::connect([format!("http://127.0.0.1:{etcd_port}")], None).await?;
    let response = client.get("/service/demo/sync", None).await?;
    Ok(response
        .kvs()
        .first()
        .and_then(|kv| serde_json::from_slice(kv.value()).ok()))
}

/// `GET path` on `address` → JSON body (HTTP/1.1, `Connection: close`), 1 s timeout.
pub async fn http_get_json(address: &str, path: &str) -> Option<serde_json::Value> {
    let body = http_get_text(address, path, Duration::from_secs(1)).await?;
    serde_json::from_str(&body).ok()
}

/// `GET path` on `address` → the body as text (HTTP/1.1, `Connection: close`), or `None` when
/// nothing answered within `timeout`.
pub async fn http_get_text(address: &str, path: &str, timeout: Duration) -> Option<String> {
    let fetch = async {
        let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.ok()?;
        let text = String::from_utf8_lossy(&response).into_owned();
        Some(text.split_once("\r\n\r\n")?.1.to_owned())
    };
    tokio::time::timeout(timeout, fetch).await.ok().flatten()
}
