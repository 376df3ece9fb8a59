//! Hosts as network namespaces on a bridge that lives in a hub namespace of its own, so
//! nothing is connected to the root namespace and there is no route out.
//! Names carry the test process's pid, so parallel runs do not collide, and a later run can
//! sweep what a killed run left behind.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use nix::sched::CloneFlags;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Prefix of every namespace this crate creates (`chaos<pid>-hub`, `chaos<pid>-h1`, ...).
const PREFIX: &str = "chaos";

/// The hosts' subnet; host `i` (0-based) is `10.77.0.<i+1>`, the hub is `10.77.0.254`.
/// Each run has its own bridge, so runs may reuse the same addresses.
const SUBNET: [u8; 3] = [10, 77, 0];

/// The hub's own address on the bridge, from which the test's clients connect.
pub const HUB_ADDRESS: Ipv4Addr = Ipv4Addr::new(SUBNET[0], SUBNET[1], SUBNET[2], 254);

/// Name of the nft table a partition installs in a host's namespace.
const PARTITION_TABLE: &str = "chaos";

/// Why a chaos test cannot run here (not root, or `ip`/`nft` missing), or `None`.
pub fn unsupported_reason() -> Option<String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Some("creating network namespaces needs root".to_owned());
    }
    for tool in ["ip", "nft"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !found {
            return Some(format!("`{tool}` is not installed (iproute2, nftables)"));
        }
    }
    None
}

/// Runs `ip ARGS`, failing with its stderr.
fn ip(args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .with_context(|| format!("run ip {}", args.join(" ")))?;
    if !output.status.success() {
        bail!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// The pids of every process in namespace `name`.
fn namespace_pids(name: &str) -> Vec<i32> {
    Command::new("ip")
        .args(["netns", "pids", name])
        .output()
        .map(|output| {
            String::from_utf8_lossy(&output.stdout)
                .split_whitespace()
                .filter_map(|pid| pid.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// SIGKILL to every process in namespace `name`, then deletes it.
fn remove_namespace(name: &str) {
    for pid in namespace_pids(name) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    let _ = ip(&["netns", "del", name]);
}

/// Removes the namespaces of earlier runs whose test process is gone (killed by a timeout
/// before its `Drop` could run).
fn sweep_stale() {
    let Ok(output) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(owner) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<i32>().ok())
        else {
            continue;
        };
        if owner != std::process::id() as i32 && kill(Pid::from_raw(owner), None).is_err() {
            remove_namespace(name);
        }
    }
}

/// `count` hosts on an isolated bridge; torn down (processes SIGKILLed, namespaces deleted)
/// when dropped, also on panic.
#[derive(Debug)]
pub struct Network {
    hub: Option<String>,
    hosts: Vec<String>,
}

impl Network {
    /// Creates the hub namespace with its bridge, and `count` host namespaces each with an
    /// `eth0` on the bridge at `10.77.0.<i+1>/24` (the verified recipe of the toolkit).
    pub fn up(count: usize) -> anyhow::Result<Network> {
        sweep_stale();
        let run = format!("{PREFIX}{}", std::process::id());
        let hub = format!("{run}-hub");
        let mut network = Network {
            hub: None,
            hosts: Vec::new(),
        };
        ip(&["netns", "add", &hub])?;
        network.hub = Some(hub.clone());
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &hub, "link", "set", "br0", "up"])?;
        ip(&["-n", &hub, "link", "set", "lo", "up"])?;
        ip(&[
            "-n",
            &hub,
            "addr",
            "add",
            &format!("{HUB_ADDRESS}/24"),
            "dev",
            "br0",
        ])?;
        for index in 0..count {
            let host = format!("{run}-h{}", index + 1);
            ip(&["netns", "add", &host])?;
            network.hosts.push(host.clone());
            let port = format!("port{}", index + 1);
            // Both ends are created in place, so no interface ever appears in the root namespace.
            ip(&[
                "link", "add", "eth0", "netns", &host, "type", "veth", "peer", "name", &port,
                "netns", &hub,
            ])?;
            ip(&["-n", &hub, "link", "set", &port, "master", "br0"])?;
            ip(&["-n", &hub, "link", "set", &port, "up"])?;
            ip(&["-n", &host, "link", "set", "lo", "up"])?;
            ip(&[
                "-n",
                &host,
                "addr",
                "add",
                &format!("{}/24", Network::address(index)),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &host, "link", "set", "eth0", "up"])?;
        }
        Ok(network)
    }

    /// Host `index`'s address on the bridge.
    pub fn address(index: usize) -> Ipv4Addr {
        Ipv4Addr::new(SUBNET[0], SUBNET[1], SUBNET[2], index as u8 + 1)
    }

    /// Host `index`'s namespace name (for `ip netns exec`).
    pub fn host(&self, index: usize) -> &str {
        &self.hosts[index]
    }

    pub fn host_count(&self) -> usize {
        self.hosts.len()
    }

    /// Moves the calling thread into the hub namespace, so that sockets it (and every thread
    /// it spawns later, such as a tokio runtime's) opens reach the hosts over the bridge.
    pub fn enter_hub(&self) -> anyhow::Result<()> {
        let hub = self.hub.as_deref().context("the hub namespace is gone")?;
        let file = std::fs::File::open(format!("/run/netns/{hub}"))
            .with_context(|| format!("open namespace {hub}"))?;
        nix::sched::setns(&file, CloneFlags::CLONE_NEWNET)
            .with_context(|| format!("enter namespace {hub}"))?;
        Ok(())
    }

    /// The pids of every process on host `index`.
    pub fn pids(&self, index: usize) -> Vec<i32> {
        namespace_pids(&self.hosts[index])
    }

    /// SIGKILL to every process on host `index` at once (the host dies).
    pub fn kill_host(&self, index: usize) -> usize {
        let pids = self.pids(index);
        for pid in &pids {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGSTOP);
        }
        for pid in &pids {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
        }
        pids.len()
    }

    /// Cuts host `index` off from every other host, both ways, with a silent drop (peers see
    /// timeouts, not refusals); the hub, where the test's clients are, still reaches it.
    pub fn isolate(&self, index: usize) -> anyhow::Result<()> {
        let others: Vec<String> = (0..self.hosts.len())
            .filter(|other| *other != index)
            .map(|other| Network::address(other).to_string())
            .collect();
        let others = others.join(", ");
        // nft 1.0.6 wants each chain on lines of its own.
        let rules = format!(
            "table inet {PARTITION_TABLE} {{\n  chain in {{\n    type filter hook input priority 0; policy accept;\n    ip saddr {{ {others} }} drop\n  }}\n  chain out {{\n    type filter hook output priority 0; policy accept;\n    ip daddr {{ {others} }} drop\n  }}\n}}\n"
        );
        self.nft_load(index, &rules)
    }

    /// Loads `rules` (an nft script) in host `index`'s namespace.
    pub(crate) fn nft_load(&self, index: usize, rules: &str) -> anyhow::Result<()> {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.hosts[index], "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("run nft")?;
        child
            .stdin
            .take()
            .context("nft stdin")?
            .write_all(rules.as_bytes())
            .context("write nft rules")?;
        let output = child.wait_with_output().context("wait for nft")?;
        if !output.status.success() {
            bail!(
                "nft -f on host n{} failed: {}\n{rules}",
                index + 1,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(())
    }

    /// Removes host `index`'s partition (atomic: the table goes at once).
    pub fn heal(&self, index: usize) -> anyhow::Result<()> {
        ip(&[
            "netns",
            "exec",
            &self.hosts[index],
            "nft",
            "delete",
            "table",
            "inet",
            PARTITION_TABLE,
        ])
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for host in &self.hosts {
            remove_namespace(host);
        }
        if let Some(hub) = &self.hub {
            remove_namespace(hub);
        }
    }
}
