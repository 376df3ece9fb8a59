//! `watchdog: {mode: required}` with the FIFO stand-in (`pgwarden-fake-watchdog`) per node:
//! the primary arms it and feeds it after each lease renewal; when its agent hangs (SIGSTOP)
//! the stand-in kills the agent and the postmaster before any other node accepts writes, and
//! then a replica takes over.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use ha_cluster_tests::{Cluster, ClusterOptions, pgwarden_binary};

struct Stand(Child);
impl Drop for Stand {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

async fn wait_log(path: &Path, needle: &str, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    while !read(path).contains(needle) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "no {needle:?} in {} within {within:?}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// The stand-in's log says the device is armed right now.
fn armed_now(log: &str) -> bool {
    log.lines()
        .rev()
        .find(|line| line.contains("armed"))
        .is_some_and(|line| !line.contains("disarmed"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_primary_is_killed_by_the_watchdog_before_failover() -> anyhow::Result<()> {
    let wd = tempfile::tempdir()?;
    let fake: PathBuf = pgwarden_binary()?.with_file_name("pgwarden-fake-watchdog");
    let mut stands = Vec::new();
    for name in ["n1", "n2", "n3"] {
        let dir = wd.path();
        std::fs::write(dir.join(format!("pids-{name}")), "")?;
        stands.push(Stand(
            Command::new(&fake)
                .arg(dir.join(format!("wd-{name}")))
                .arg("--pid-file")
                .arg(dir.join(format!("pids-{name}")))
                .arg("--log")
                .arg(dir.join(format!("log-{name}")))
                .spawn()?,
        ));
        wait_log(
            &dir.join(format!("log-{name}")),
            "listening",
            Duration::from_secs(10),
        )
        .await?;
    }
    let options = ClusterOptions {
        node_yaml: format!(
            "watchdog:\n  mode: required\n  device: {}/wd-{{name}}",
            wd.path().display()
        ),
        ..ClusterOptions::default()
    };
    let mut cluster = Cluster::start_with(3, options)?;
    let primary = cluster.wait_healthy(2, Duration::from_secs(120)).await?;
    let name = cluster.nodes[primary].spec.name.clone();
    let log = wd.path().join(format!("log-{name}"));
    // Every node's start-up check arms and disarms its device once; wait for the primary's
    // device to be armed again (its last arming line is not a disarm).
    let deadline = Instant::now() + Duration::from_secs(30);
    while !armed_now(&read(&log)) {
        anyhow::ensure!(Instant::now() < deadline, "not armed:\n{}", read(&log));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let agent = cluster.nodes[primary].agent_pid().unwrap();
    let postmaster = cluster.nodes[primary].postmaster_pid().unwrap();
    std::fs::write(
        wd.path().join(format!("pids-{name}")),
        format!("{agent}\n{postmaster}\n"),
    )?;
    println!(
        "primary {name} armed its watchdog ({})",
        read(&log).trim().replace('\n', "; ")
    );

    let frozen_at = Instant::now();
    assert!(cluster.nodes[primary].freeze());
    // Until the stand-in fires, no other node may accept writes.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !read(&log).contains("FIRED") {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the watchdog never fired:\n{}",
            read(&log)
        );
        for (index, node) in cluster.nodes.iter().enumerate() {
            if index != primary {
                anyhow::ensure!(
                    !node.accepts_writes().await || read(&log).contains("FIRED"),
                    "node {index} accepted writes while the hung primary was still alive"
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let fired = frozen_at.elapsed();
    println!("watchdog fired {fired:.2?} after the primary's agent froze");
    let new_primary = cluster
        .wait_writable(primary, Duration::from_secs(60))
        .await?;
    println!(
        "node {new_primary} accepted writes {:.2?} after the freeze",
        frozen_at.elapsed()
    );
    assert!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(postmaster), None).is_err(),
        "the old postmaster is gone"
    );
    assert!(cluster.nodes[primary].thaw() || !cluster.nodes[primary].is_running());
    Ok(())
}
