//! `pgwarden demo`: a whole cluster on loopback for a first look.
//!
//! It writes one `pgwarden run` configuration per member (embedded store, real PostgreSQL 15)
//! into a temporary directory (or `--dir`), starts this same binary once per member, and prints
//! one line per member state change while the cluster bootstraps. Once one primary and every
//! replica streams, it prints the member table and the endpoints, then keeps reporting state
//! changes (and the table again whenever the cluster is healthy again) until SIGINT or SIGTERM.
//! Then it sends SIGTERM to every member, waits up to [`STOP_DEADLINE`] and kills what is left
//! (members and their postmasters), and removes the temporary directory (`--dir` is kept).
//!
//! Run as root, PostgreSQL runs as the `postgres` OS user: the directories on the way to each
//! member's files are world-traversable (0755) and each socket directory belongs to that user.

mod node;
pub mod table;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};

use self::node::{DemoNode, NodeSpec, Ports, StopOutcome};
use self::table::MemberObservation;

/// How long members get to stop after SIGTERM before they are killed.
pub const STOP_DEADLINE: Duration = Duration::from_secs(30);

/// How long the cluster gets to become healthy before the demo gives up.
const BOOTSTRAP_DEADLINE: Duration = Duration::from_secs(300);

/// How often every member's `/patroni` is read.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// The demo's scope (cluster name) and the store's key prefix.
const SCOPE: &str = "demo";
const KEY_PREFIX: &str = "/service/demo/";

/// `pgwarden demo`'s flags, validated.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Keep the files here instead of a temporary directory removed at exit.
    pub dir: Option<PathBuf>,
    /// Fixed ports from here (see [`Ports::from_base`]) instead of ports from 0.
    pub base_port: Option<u16>,
    /// How many members (at least 1).
    pub nodes: usize,
}

/// Where the members' files live.
enum WorkDir {
    /// Removed when the demo ends.
    Temporary(tempfile::TempDir),
    /// `--dir`: kept.
    Kept(PathBuf),
}

impl WorkDir {
    fn path(&self) -> &Path {
        match self {
            WorkDir::Temporary(dir) => dir.path(),
            WorkDir::Kept(path) => path,
        }
    }
}

/// Runs the demo until a signal; an error stops (kills) every member it started.
pub async fn run(options: DemoOptions, binary: PathBuf) -> anyhow::Result<()> {
    let mut interrupt = signal(SignalKind::interrupt()).context("install the SIGINT handler")?;
    let mut terminate = signal(SignalKind::terminate()).context("install the SIGTERM handler")?;
    let run_as = postgres::RunAs::configured("postgres")
        .context("running as root: PostgreSQL needs the `postgres` OS user")?;
    let work_dir = prepare_work_dir(options.dir.as_deref())?;
    let specs = node_specs(work_dir.path(), &options, &run_as)?;
    println!(
        "pgwarden demo: {} in {}",
        members(specs.len()),
        work_dir.path().display()
    );
    let mut nodes = Vec::new();
    for spec in &specs {
        let partners: Vec<Ports> = specs
            .iter()
            .filter(|other| other.name != spec.name)
            .map(|other| other.ports)
            .collect();
        std::fs::write(spec.config_path(), spec.config(&partners))
            .with_context(|| format!("write {}", spec.config_path().display()))?;
        nodes.push(DemoNode::spawn(&binary, spec.clone())?);
        println!(
            "  {}: started, log {}",
            spec.name,
            spec.log_path().display()
        );
    }

    let outcome = tokio::select! {
        result = watch(&mut nodes) => result,
        _ = interrupt.recv() => { println!("SIGINT received"); Ok(()) }
        _ = terminate.recv() => { println!("SIGTERM received"); Ok(()) }
    };
    stop(&mut nodes).await;
    drop(nodes);
    match work_dir {
        WorkDir::Temporary(dir) => {
            let path = dir.path().to_owned();
            dir.close()
                .with_context(|| format!("remove {}", path.display()))?;
            println!("removed {}", path.display());
        }
        WorkDir::Kept(path) => println!("files kept in {}", path.display()),
    }
    outcome
}

/// The temporary directory, or `--dir` (created if missing), made world-traversable so
/// PostgreSQL can reach its files when it runs as another user.
fn prepare_work_dir(dir: Option<&Path>) -> anyhow::Result<WorkDir> {
    let work_dir = match dir {
        Some(path) => {
            std::fs::create_dir_all(path).with_context(|| format!("create {}", path.display()))?;
            let path =
                std::path::absolute(path).with_context(|| format!("resolve {}", path.display()))?;
            WorkDir::Kept(path)
        }
        None => WorkDir::Temporary(
            tempfile::Builder::new()
                .prefix("pgwarden-demo-")
                .tempdir()
                .context("create a temporary directory")?,
        ),
    };
    let path = work_dir.path();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("chmod 0755 {}", path.display()))?;
    Ok(work_dir)
}

/// One directory and one set of ports per member; each socket directory belongs to the
/// PostgreSQL OS user.
fn node_specs(
    root: &Path,
    options: &DemoOptions,
    run_as: &postgres::RunAs,
) -> anyhow::Result<Vec<NodeSpec>> {
    let ports = match options.base_port {
        Some(base) => (0..options.nodes)
            .map(|index| Ports::from_base(base, index))
            .collect::<anyhow::Result<Vec<_>>>()?,
        None => Ports::free(options.nodes)?,
    };
    ports
        .into_iter()
        .enumerate()
        .map(|(index, ports)| {
            let name = format!("n{}", index + 1);
            let dir = root.join(&name);
            std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
                .with_context(|| format!("chmod 0755 {}", dir.display()))?;
            let spec = NodeSpec { name, dir, ports };
            run_as
                .prepare_dir(&spec.socket_dir(), 0o755)
                .with_context(|| format!("prepare {}", spec.socket_dir().display()))?;
            Ok(spec)
        })
        .collect()
}

/// Reports state changes until something fails: a member exiting, or the cluster not healthy
/// within [`BOOTSTRAP_DEADLINE`] of the start. Prints the table and endpoints each time the
/// cluster becomes healthy.
async fn watch(nodes: &mut [DemoNode]) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut phases: BTreeMap<String, String> = BTreeMap::new();
    let mut was_healthy = false;
    let mut ever_healthy = false;
    loop {
        for node in nodes.iter_mut() {
            if let Some(status) = node.exited() {
                anyhow::bail!(
                    "{} exited ({status}); the end of its log:\n{}",
                    node.spec.name,
                    node.log_tail(20)
                );
            }
        }
        let observations = observe(nodes).await;
        for observation in &observations {
            let phase = phase(observation.status.as_ref());
            if phases.get(&observation.name) != Some(&phase) {
                println!(
                    "{:>6.1} s  {}: {phase}",
                    started.elapsed().as_secs_f64(),
                    observation.name
                );
                phases.insert(observation.name.clone(), phase);
            }
        }
        let healthy = is_healthy(&observations);
        if healthy && !was_healthy {
            if ever_healthy {
                println!("cluster healthy again");
            } else {
                println!(
                    "cluster healthy after {:.1} s",
                    started.elapsed().as_secs_f64()
                );
            }
            print_table(&observations);
            if !ever_healthy {
                print_endpoints(nodes);
            }
            ever_healthy = true;
        }
        was_healthy = healthy;
        if !ever_healthy && started.elapsed() > BOOTSTRAP_DEADLINE {
            let tails: Vec<String> = nodes
                .iter()
                .map(|node| format!("--- {} ---\n{}", node.spec.name, node.log_tail(10)))
                .collect();
            anyhow::bail!(
                "the cluster did not become healthy within {BOOTSTRAP_DEADLINE:?}; the end of each log:\n{}",
                tails.join("\n")
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

async fn observe(nodes: &[DemoNode]) -> Vec<MemberObservation> {
    let mut observations = Vec::with_capacity(nodes.len());
    for node in nodes {
        observations.push(MemberObservation {
            name: node.spec.name.clone(),
            host: node.spec.postgresql_address(),
            status: node.patroni().await,
        });
    }
    observations
}

/// One line describing where a member is: role and state, and the agent's last decision.
fn phase(status: Option<&serde_json::Value>) -> String {
    let Some(status) = status else {
        return "starting (REST API not answering yet)".to_owned();
    };
    let role = status["role"].as_str().unwrap_or("unknown");
    let mut state = status["state"].as_str().unwrap_or("unknown").to_owned();
    if let Some(replication) = status["replication_state"].as_str() {
        state = format!("{state}, {replication}");
    }
    match status["message"].as_str() {
        Some(message) if !message.is_empty() => format!("{role} ({state}): {message}"),
        _ => format!("{role} ({state})"),
    }
}

/// One running primary and every other member a running, streaming replica.
fn is_healthy(observations: &[MemberObservation]) -> bool {
    let mut primaries = 0;
    for observation in observations {
        let Some(status) = &observation.status else {
            return false;
        };
        if status["state"] != "running" {
            return false;
        }
        match status["role"].as_str() {
            Some("primary") => primaries += 1,
            Some("replica") if status["replication_state"] == "streaming" => {}
            _ => return false,
        }
    }
    primaries == 1
}

fn print_table(observations: &[MemberObservation]) {
    let rows = table::rows(observations);
    let system_identifier = table::system_identifier(observations);
    print!(
        "{}",
        table::render(SCOPE, system_identifier.as_deref(), &rows)
    );
}

fn print_endpoints(nodes: &[DemoNode]) {
    let password = node::SUPERUSER_PASSWORD;
    println!("Endpoints:");
    for node in nodes {
        let spec = &node.spec;
        println!(
            "  {name}  PostgreSQL postgresql://postgres:{password}@{pg}/postgres  REST http://{rest}/patroni  etcd API http://{etcd}",
            name = spec.name,
            pg = spec.postgresql_address(),
            rest = spec.rest_address(),
            etcd = spec.etcd_api_address(),
        );
    }
    let etcd_endpoints: Vec<String> = nodes
        .iter()
        .map(|node| format!("http://{}", node.spec.etcd_api_address()))
        .collect();
    let pg_hosts: Vec<String> = nodes
        .iter()
        .map(|node| node.spec.postgresql_address())
        .collect();
    println!("Try:");
    println!(
        "  ETCDCTL_API=3 etcdctl --endpoints={} get --prefix {KEY_PREFIX}",
        etcd_endpoints.join(",")
    );
    println!(
        "  psql 'postgresql://postgres:{password}@{}/postgres?target_session_attrs=read-write'",
        pg_hosts.join(",")
    );
    println!("Press Ctrl-C to stop the cluster.");
}

/// `1 member`, `3 members`.
fn members(count: usize) -> String {
    if count == 1 {
        "1 member".to_owned()
    } else {
        format!("{count} members")
    }
}

/// SIGTERM to every member at once, then each gets until [`STOP_DEADLINE`] (counted from the
/// signal) before it and its postmaster are killed.
async fn stop(nodes: &mut [DemoNode]) {
    println!("stopping {}", members(nodes.len()));
    let started = Instant::now();
    for node in nodes.iter() {
        node.terminate();
    }
    for node in nodes.iter_mut() {
        let left = STOP_DEADLINE.saturating_sub(started.elapsed());
        match node.wait_or_kill(left).await {
            StopOutcome::Exited => println!(
                "{:>6.1} s  {}: stopped",
                started.elapsed().as_secs_f64(),
                node.spec.name
            ),
            StopOutcome::Killed => println!(
                "{:>6.1} s  {}: killed (did not stop within {STOP_DEADLINE:?}); see {}",
                started.elapsed().as_secs_f64(),
                node.spec.name,
                node.spec.log_path().display()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::json;

    use super::node::FREE_PORTS;

    use super::*;

    fn member(status: Option<serde_json::Value>) -> MemberObservation {
        MemberObservation {
            name: "n".into(),
            host: "h".into(),
            status,
        }
    }

    #[test]
    fn healthy_means_one_primary_and_streaming_replicas() {
        let primary = json!({"state": "running", "role": "primary"});
        let streaming =
            json!({"state": "running", "role": "replica", "replication_state": "streaming"});
        let starting = json!({"state": "starting", "role": "replica"});
        let cases = [
            (vec![Some(primary.clone())], true),
            (vec![Some(primary.clone()), Some(streaming.clone())], true),
            (vec![Some(primary.clone()), Some(starting)], false),
            (vec![Some(primary.clone()), None], false),
            (vec![Some(streaming.clone()), Some(streaming)], false),
            (vec![Some(primary.clone()), Some(primary)], false),
        ];
        for (statuses, expected) in cases {
            let observations: Vec<_> = statuses.into_iter().map(member).collect();
            assert_eq!(is_healthy(&observations), expected, "{observations:?}");
        }
    }

    #[test]
    fn phase_names_role_state_and_decision() {
        assert_eq!(
            phase(Some(&json!({"role": "replica", "state": "running",
                "replication_state": "streaming",
                "message": "no action. I am (n2), a secondary, and following a leader (n1)"}))),
            "replica (running, streaming): no action. I am (n2), a secondary, and following a leader (n1)"
        );
        assert_eq!(phase(None), "starting (REST API not answering yet)");
    }

    #[test]
    fn generated_configurations_load() -> anyhow::Result<()> {
        let specs: Vec<NodeSpec> = (0..3)
            .map(|index| {
                Ok(NodeSpec {
                    name: format!("n{}", index + 1),
                    dir: PathBuf::from(format!("/tmp/demo/n{}", index + 1)),
                    ports: Ports::from_base(20000, index)?,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        for spec in &specs {
            let partners: Vec<Ports> = specs
                .iter()
                .filter(|other| other.name != spec.name)
                .map(|other| other.ports)
                .collect();
            let text = spec.config(&partners);
            let config = agent::RunConfig::parse(&text);
            assert!(config.is_ok(), "{config:?}\n{text}");
        }
        Ok(())
    }

    #[test]
    fn demo_flags_parse_with_defaults_and_bounds() {
        use clap::Parser;

        use crate::cli::{Cli, Command};

        let parsed = Cli::try_parse_from(["pgwarden", "demo"]).map(|cli| cli.command);
        assert!(
            matches!(
                parsed,
                Ok(Command::Demo {
                    dir: None,
                    base_port: None,
                    nodes: 3
                })
            ),
            "{parsed:?}"
        );
        let parsed = Cli::try_parse_from([
            "pgwarden",
            "demo",
            "--dir",
            "/tmp/d",
            "--base-port",
            "15000",
            "--nodes",
            "1",
        ])
        .map(|cli| cli.command);
        assert!(
            matches!(
                &parsed,
                Ok(Command::Demo { dir: Some(dir), base_port: Some(15000), nodes: 1 })
                    if dir == Path::new("/tmp/d")
            ),
            "{parsed:?}"
        );
        for refused in [["--nodes", "0"], ["--nodes", "10"], ["--base-port", "0"]] {
            let args = ["pgwarden", "demo", refused[0], refused[1]];
            assert!(Cli::try_parse_from(args).is_err(), "{args:?} accepted");
        }
    }

    #[test]
    fn base_port_layout() -> anyhow::Result<()> {
        assert_eq!(
            Ports::from_base(15000, 2)?,
            Ports {
                postgresql: 15020,
                rest: 15021,
                etcd_api: 15022,
                raft: 15023,
            }
        );
        assert!(Ports::from_base(65530, 1).is_err());
        Ok(())
    }

    #[test]
    fn free_ports_are_distinct_and_below_the_ephemeral_range() -> anyhow::Result<()> {
        let sets = Ports::free(3)?;
        let ports: Vec<u16> = sets
            .iter()
            .flat_map(|set| [set.postgresql, set.rest, set.etcd_api, set.raft])
            .collect();
        assert_eq!(ports.len(), 12);
        assert_eq!(ports.iter().collect::<BTreeSet<_>>().len(), 12, "{ports:?}");
        assert!(
            ports.iter().all(|port| FREE_PORTS.contains(port)),
            "{ports:?}"
        );
        Ok(())
    }
}
