//! The HAProxy story: clients connect to HAProxy, not to a database host.
//! HAProxy runs with the repository's `deploy/haproxy.cfg` (its addresses replaced by the test
//! cluster's) in front of three `pgwarden run` members; its health checks are the members'
//! `OPTIONS /primary` and `OPTIONS /replica` answers.
//! Writes through the write port land on the primary, reads through the read port on a replica,
//! and after the primary's host dies a write through the same write port lands on the new primary.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ha_cluster_tests::{Cluster, free_port};

/// Debian's HAProxy.
const HAPROXY: &str = "/usr/sbin/haproxy";

/// HAProxy as a child process, killed on drop.
struct HaProxy {
    child: Child,
    log_path: PathBuf,
}

impl HaProxy {
    fn start(config: &Path, log_path: PathBuf) -> anyhow::Result<HaProxy> {
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("create {}", log_path.display()))?;
        // `-db`: stay in the foreground, so the test owns the process.
        let child = Command::new(HAPROXY)
            .arg("-f")
            .arg(config)
            .arg("-db")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {HAPROXY}"))?;
        Ok(HaProxy { child, log_path })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The ports HAProxy binds in the test.
struct Binds {
    primary: u16,
    replicas: u16,
    stats: u16,
}

/// `deploy/haproxy.cfg` with the test's addresses: the `global` section (system log, user,
/// daemon mode) replaced by a minimal one, every `bind` moved to a loopback port, and each
/// section's `server` lines replaced by one per member (`PostgreSQL port`, checked on the
/// REST port). Every other line (defaults, health checks, balancing) is kept as shipped.
fn test_config(shipped: &str, binds: &Binds, servers: &[(String, u16, u16)]) -> String {
    let mut out = String::from("global\n    maxconn 100\n");
    let mut section = String::new();
    let mut servers_written = false;
    for line in shipped.lines() {
        let trimmed = line.trim_start();
        if !line.starts_with(char::is_whitespace)
            && !trimmed.is_empty()
            && !trimmed.starts_with('#')
        {
            section = trimmed.to_owned();
            servers_written = false;
            if section == "global" {
                continue;
            }
        }
        if section == "global" {
            continue;
        }
        if trimmed.starts_with("bind ") {
            let port = match section.as_str() {
                "listen primary" => binds.primary,
                "listen replicas" => binds.replicas,
                _ => binds.stats,
            };
            out.push_str(&format!("    bind 127.0.0.1:{port}\n"));
            continue;
        }
        if trimmed.starts_with("server ") {
            if !servers_written {
                for (name, pg_port, rest_port) in servers {
                    out.push_str(&format!(
                        "    server {name} 127.0.0.1:{pg_port} maxconn 100 check port {rest_port}\n"
                    ));
                }
                servers_written = true;
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Runs `sql` through HAProxy's `port` on a fresh connection; the first column of the last row.
async fn query_via(port: u16, sql: &str) -> anyhow::Result<Option<String>> {
    let (client, connection) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(port)
        .user("postgres")
        .password("secret")
        .dbname("postgres")
        .connect_timeout(Duration::from_secs(2))
        .connect(tokio_postgres::NoTls)
        .await
        .with_context(|| format!("connect through HAProxy port {port}"))?;
    let driver = tokio::spawn(connection);
    let result = tokio::time::timeout(Duration::from_secs(5), client.simple_query(sql)).await;
    drop(client);
    let _ = driver.await;
    let messages = result
        .with_context(|| format!("{sql} through port {port} timed out"))?
        .with_context(|| format!("{sql} through port {port}"))?;
    Ok(messages
        .into_iter()
        .filter_map(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
        .last())
}

/// A write through `port`: inserts one row and answers the serving PostgreSQL's port.
async fn write_via(port: u16, value: &str) -> anyhow::Result<u16> {
    let answer = query_via(
        port,
        &format!(
            "CREATE TABLE IF NOT EXISTS haproxy_story (value text); \
             INSERT INTO haproxy_story VALUES ('{value}'); \
             SELECT inet_server_port()"
        ),
    )
    .await?
    .context("no server port in the answer")?;
    answer
        .parse()
        .with_context(|| format!("server port {answer:?}"))
}

/// Retries `write_via` until it succeeds or `timeout` passes.
async fn eventually_write(port: u16, value: &str, timeout: Duration) -> anyhow::Result<u16> {
    let deadline = Instant::now() + timeout;
    loop {
        match write_via(port, value).await {
            Ok(server_port) => return Ok(server_port),
            Err(error) if Instant::now() > deadline => {
                return Err(
                    error.context(format!("no write through port {port} within {timeout:?}"))
                );
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_routes_writes_to_the_primary_and_follows_a_failover() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(3)?;
    let primary = cluster.wait_healthy(2, Duration::from_secs(120)).await?;

    let shipped_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/haproxy.cfg");
    let shipped = std::fs::read_to_string(&shipped_path)
        .with_context(|| format!("read {}", shipped_path.display()))?;
    let binds = Binds {
        primary: free_port()?,
        replicas: free_port()?,
        stats: free_port()?,
    };
    let servers: Vec<(String, u16, u16)> = cluster
        .nodes
        .iter()
        .map(|node| {
            (
                node.spec.name.clone(),
                node.spec.pg_port,
                node.spec.rest_port,
            )
        })
        .collect();
    let config_path = cluster.dir().join("haproxy.cfg");
    std::fs::write(&config_path, test_config(&shipped, &binds, &servers))?;
    let check = Command::new(HAPROXY)
        .arg("-c")
        .arg("-f")
        .arg(&config_path)
        .output()
        .with_context(|| format!("{HAPROXY} -c"))?;
    assert!(
        check.status.success(),
        "HAProxy refuses the configuration: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let haproxy = HaProxy::start(&config_path, cluster.dir().join("haproxy.log"))?;

    // Phase 1: a write through the write port lands on the primary.
    let primary_port = cluster.nodes[primary].spec.pg_port;
    let served_by = eventually_write(binds.primary, "before", Duration::from_secs(20))
        .await
        .with_context(|| haproxy.log())?;
    assert_eq!(served_by, primary_port, "the write went to the primary");

    // Phase 2: reads through the read port reach replicas only, once HAProxy's checks have
    // marked the primary down on that side (six reads in a row, within a deadline).
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut in_a_row = 0;
    while in_a_row < 6 {
        let in_recovery = query_via(binds.replicas, "SELECT pg_is_in_recovery()").await;
        if matches!(in_recovery.as_ref().map(Option::as_deref), Ok(Some("t"))) {
            in_a_row += 1;
        } else {
            in_a_row = 0;
        }
        if Instant::now() > deadline {
            bail!(
                "reads through port {} did not reach only replicas (last: {in_recovery:?}):\n{}",
                binds.replicas,
                haproxy.log()
            );
        }
    }

    // Phase 3: the primary's host dies; a write through the same port lands on the new primary.
    let killed_at = Instant::now();
    cluster.nodes[primary].kill_hard();
    let served_by = eventually_write(binds.primary, "after", Duration::from_secs(60))
        .await
        .with_context(|| format!("{}\n{}", haproxy.log(), cluster.logs()))?;
    println!(
        "HAProxy write port served a write on port {served_by} {:.2?} after kill -9 of the primary",
        killed_at.elapsed()
    );
    assert_ne!(served_by, primary_port, "the write went to a new primary");
    let new_primary = cluster
        .nodes
        .iter()
        .position(|node| node.spec.pg_port == served_by)
        .context("the write went to an unknown server")?;
    assert_eq!(
        cluster.nodes[new_primary]
            .query("SELECT pg_is_in_recovery()")
            .await?
            .as_deref(),
        Some("f"),
        "the new primary is out of recovery"
    );
    assert_eq!(
        cluster.nodes[new_primary]
            .query("SELECT count(*) FROM haproxy_story WHERE value = 'before'")
            .await?
            .as_deref(),
        Some("1"),
        "the write before the failover survived it"
    );
    drop(haproxy);
    Ok(())
}
