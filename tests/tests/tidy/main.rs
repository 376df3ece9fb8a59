//! Architecture boundaries, checked rather than hoped for.
//!
//! Reads `cargo metadata` and fails when a crate depends on something ARCHITECTURE.md says it must
//! not know: the pure cores on runtimes or I/O, the store's layers on HA or PostgreSQL, and so on.
//! Adding an edge on purpose means changing the table here and ARCHITECTURE.md in the same commit.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::process::Command;

use anyhow::Context;

/// (crate, dependencies it must not have, why). Normal and build dependencies count; dev ones do not.
const FORBIDDEN: &[(&str, &[&str], &str)] = &[
    (
        "mvcc",
        &[
            "tokio",
            "redb",
            "openraft",
            "storage",
            "consensus",
            "etcd-server",
            "rand",
        ],
        "apply is deterministic: no runtime, storage, Raft, clock or randomness",
    ),
    (
        "ha",
        &[
            "tokio",
            "tokio-postgres",
            "postgres",
            "dcs",
            "etcd-client",
            "nix",
            "rand",
        ],
        "the HA decision is pure: it does no I/O and cannot fail",
    ),
    (
        "storage",
        &[
            "tonic",
            "axum",
            "ha",
            "postgres",
            "agent",
            "etcd-server",
            "consensus",
        ],
        "storage owns redb and knows nothing of transports, HA or PostgreSQL",
    ),
    (
        "consensus",
        &["redb", "axum", "ha", "postgres", "agent", "etcd-server"],
        "consensus wires openraft; redb stays behind storage",
    ),
    (
        "etcd-server",
        &["redb", "storage", "ha", "postgres", "agent", "dcs", "rest"],
        "the etcd API sees the store only through consensus and mvcc",
    ),
    (
        "postgres",
        &["ha", "dcs", "consensus", "storage", "etcd-server", "rest"],
        "PostgreSQL control makes no decisions and does not know the store",
    ),
    (
        "rest",
        &["postgres", "storage", "consensus", "redb"],
        "the REST API reads the agent's published status, never PostgreSQL or the store",
    ),
    (
        "etcd-proto",
        &[
            "mvcc",
            "storage",
            "consensus",
            "etcd-server",
            "openraft",
            "redb",
        ],
        "wire types know nothing of pgwarden's behaviour",
    ),
];

#[test]
fn crate_graph_respects_the_architecture() -> anyhow::Result<()> {
    let dependencies = workspace_dependencies()?;
    let mut violations = Vec::new();
    for (krate, forbidden, why) in FORBIDDEN {
        let Some(actual) = dependencies.get(*krate) else {
            continue;
        };
        for name in forbidden.iter().filter(|name| actual.contains(**name)) {
            violations.push(format!("{krate} -> {name}: {why}"));
        }
    }
    assert!(
        violations.is_empty(),
        "forbidden dependency edges:\n{}",
        violations.join("\n")
    );
    // The table must name real crates, or it silently checks nothing.
    for (krate, _, _) in FORBIDDEN {
        assert!(
            dependencies.contains_key(*krate),
            "tidy names {krate}, which is not a workspace member"
        );
    }
    Ok(())
}

/// Workspace member name → names of its normal and build dependencies.
fn workspace_dependencies() -> anyhow::Result<BTreeMap<String, BTreeSet<String>>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .context("run cargo metadata")?;
    anyhow::ensure!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("parse cargo metadata")?;
    let packages = metadata["packages"]
        .as_array()
        .context("metadata has no packages")?;
    let mut graph = BTreeMap::new();
    for package in packages {
        let name = package["name"]
            .as_str()
            .context("package without a name")?
            .to_owned();
        let deps = package["dependencies"]
            .as_array()
            .context("package without dependencies")?
            .iter()
            .filter(|dep| dep["kind"].as_str() != Some("dev"))
            .filter_map(|dep| dep["name"].as_str().map(str::to_owned))
            .collect();
        graph.insert(name, deps);
    }
    Ok(graph)
}
