//! `pgwarden demo` as a user runs it: one command brings up a three-member cluster with real
//! PostgreSQL, prints the member table (one Leader, two streaming replicas), and on Ctrl-C
//! (SIGINT) stops every member and PostgreSQL, removes its temporary directory and exits 0.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ha_cluster_tests::pgwarden_binary;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Generous bound for three members to bootstrap on a busy two-core machine.
const HEALTHY_DEADLINE: Duration = Duration::from_secs(120);
/// The demo gives members 30 s after SIGTERM before killing them; this adds headroom.
const EXIT_DEADLINE: Duration = Duration::from_secs(60);

/// The demo process; on drop (a failed test) it gets SIGINT, and SIGKILL if it lingers.
struct Demo {
    child: Child,
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            interrupt(&self.child);
            let deadline = Instant::now() + EXIT_DEADLINE;
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn interrupt(child: &Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGINT);
    }
}

/// Processes whose command line mentions `dir` (the demo's members and their PostgreSQL).
fn processes_under(dir: &Path) -> Vec<String> {
    let needle = dir.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|entry| {
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            text.contains(&needle)
                .then(|| format!("{}: {text}", entry.file_name().to_string_lossy()))
        })
        .collect()
}

#[test]
fn demo_brings_up_a_healthy_cluster_and_cleans_up_on_ctrl_c() -> anyhow::Result<()> {
    let binary = pgwarden_binary()?;
    let mut child = Command::new(&binary)
        .arg("demo")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("spawn pgwarden demo")?;
    let stdout = child.stdout.take().context("demo stdout")?;
    let demo = Demo { child };
    let (lines_tx, lines_rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });

    // Phase 1: the demo names its directory, reports progress, then prints the table.
    let deadline = Instant::now() + HEALTHY_DEADLINE;
    let mut transcript = Vec::new();
    let mut work_dir: Option<PathBuf> = None;
    let mut table_rows: Vec<String> = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = match lines_rx.recv_timeout(left) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Timeout) => bail!(
                "no healthy table within {HEALTHY_DEADLINE:?}:\n{}",
                transcript.join("\n")
            ),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let mut demo = demo;
                let status = demo.child.wait()?;
                bail!(
                    "pgwarden demo closed its output ({status}) before the table:\n{}",
                    transcript.join("\n")
                )
            }
        };
        transcript.push(line.clone());
        if work_dir.is_none()
            && let Some((_, dir)) = line.split_once(" members in ")
        {
            work_dir = Some(PathBuf::from(dir.trim()));
        }
        if line.starts_with("| n") {
            table_rows.push(line.clone());
        }
        if line.starts_with("Press Ctrl-C") {
            break;
        }
    }
    let work_dir = work_dir.context("the demo did not name its directory")?;
    let leaders = table_rows
        .iter()
        .filter(|row| row.contains("| Leader ") && row.contains("| running "))
        .count();
    let streaming = table_rows
        .iter()
        .filter(|row| row.contains("| Replica ") && row.contains("| streaming "))
        .count();
    assert_eq!(
        (table_rows.len(), leaders, streaming),
        (3, 1, 2),
        "table: {}",
        transcript.join("\n")
    );
    assert!(
        transcript
            .iter()
            .any(|line| line.contains("cluster healthy after")),
        "{}",
        transcript.join("\n")
    );
    assert!(
        work_dir.is_dir(),
        "{} missing while running",
        work_dir.display()
    );
    assert!(
        !processes_under(&work_dir).is_empty(),
        "no member processes found under {}",
        work_dir.display()
    );

    // Phase 2: Ctrl-C stops everything, removes the directory and exits 0.
    let mut demo = demo;
    interrupt(&demo.child);
    let exit_deadline = Instant::now() + EXIT_DEADLINE;
    let status = loop {
        if let Some(status) = demo.child.try_wait()? {
            break status;
        }
        if Instant::now() > exit_deadline {
            bail!("pgwarden demo still running {EXIT_DEADLINE:?} after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = reader.join();
    transcript.extend(lines_rx.try_iter());
    assert!(
        status.success(),
        "exit {status}:\n{}",
        transcript.join("\n")
    );
    assert!(
        !transcript.iter().any(|line| line.contains(": killed")),
        "a member had to be killed:\n{}",
        transcript.join("\n")
    );
    println!("{}", transcript.join("\n"));
    let left = processes_under(&work_dir);
    assert!(left.is_empty(), "processes left: {left:?}");
    assert!(
        !work_dir.exists(),
        "{} still exists after exit",
        work_dir.display()
    );
    Ok(())
}
