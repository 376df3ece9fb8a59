//! Network faults beyond the full partition of [`Network::isolate`]: one-way drops and random
//! packet loss, each an nft table of its own in a host's namespace, removed atomically.

use std::process::Command;

use anyhow::{Context, bail};

use crate::net::Network;

/// The table of a one-way drop.
const ONE_WAY_TABLE: &str = "chaos_oneway";
/// The table of a random packet loss.
const LOSS_TABLE: &str = "chaos_loss";

/// Deletes table `table` in host `index`'s namespace.
fn nft_delete(network: &Network, index: usize, table: &str) -> anyhow::Result<()> {
    let output = Command::new("ip")
        .args([
            "netns",
            "exec",
            network.host(index),
            "nft",
            "delete",
            "table",
            "inet",
            table,
        ])
        .output()
        .context("run nft delete")?;
    if !output.status.success() {
        bail!(
            "nft delete table {table} on host n{} failed: {}",
            index + 1,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// The other hosts' addresses as an nft set body (`a, b`).
fn others(network: &Network, index: usize) -> String {
    (0..network.host_count())
        .filter(|other| *other != index)
        .map(|other| Network::address(other).to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Host `receiver` silently drops every packet arriving from the hosts `senders` (its own
/// packets still leave). For TCP this stalls both directions of a connection, since the
/// peer's acknowledgements are lost too, but packets the receiver sends do arrive.
pub fn drop_incoming(network: &Network, receiver: usize, senders: &[usize]) -> anyhow::Result<()> {
    let senders: Vec<String> = senders
        .iter()
        .map(|sender| Network::address(*sender).to_string())
        .collect();
    // nft 1.0.6 wants each chain on lines of its own.
    let rules = format!(
        "table inet {ONE_WAY_TABLE} {{\n  chain in {{\n    type filter hook input priority 0; policy accept;\n    ip saddr {{ {} }} drop\n  }}\n}}\n",
        senders.join(", ")
    );
    network.nft_load(receiver, &rules)
}

/// Removes host `receiver`'s one-way drop.
pub fn heal_incoming(network: &Network, receiver: usize) -> anyhow::Result<()> {
    nft_delete(network, receiver, ONE_WAY_TABLE)
}

/// Host `index` loses `percent` % of the packets it exchanges with the other hosts, drawn
/// independently per packet in each direction (`numgen random mod 100`). The test's clients
/// in the hub are spared, so the observer keeps seeing what the host does.
pub fn lose_packets(network: &Network, index: usize, percent: u32) -> anyhow::Result<()> {
    let others = others(network, index);
    let rules = format!(
        "table inet {LOSS_TABLE} {{\n  chain in {{\n    type filter hook input priority 0; policy accept;\n    ip saddr {{ {others} }} numgen random mod 100 < {percent} drop\n  }}\n  chain out {{\n    type filter hook output priority 0; policy accept;\n    ip daddr {{ {others} }} numgen random mod 100 < {percent} drop\n  }}\n}}\n"
    );
    network.nft_load(index, &rules)
}

/// Ends host `index`'s packet loss.
pub fn heal_loss(network: &Network, index: usize) -> anyhow::Result<()> {
    nft_delete(network, index, LOSS_TABLE)
}
