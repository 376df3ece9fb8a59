//! `pgwarden-fake-watchdog PATH --pid-file F [--timeout SECS] [--log L]`: a test-only,
//! user-space stand-in for `/dev/watchdog` (these machines have no watchdog driver).
//!
//! It creates a FIFO at PATH and reads it. Any byte from a writer arms it and is a keepalive;
//! `T<secs>\n` sets the timeout (standing in for `WDIOC_SETTIMEOUT`); a `'V'` as the last byte
//! before the writer closes disarms it (magic close). A writer that closes without `'V'` (a
//! crash) leaves it armed. When armed and no byte arrived within the timeout, it sends SIGKILL
//! to every id listed in the pid file (one per line; a negative id is a process group), logs
//! `FIRED` with the Unix time, and disarms.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pgwarden-fake-watchdog: {e}");
            ExitCode::FAILURE
        }
    }
}

fn log(path: &Option<PathBuf>, msg: &str) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let line = format!("{now:.3} {msg}\n");
    match path {
        Some(p) => {
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
            {
                let _ = f.write_all(line.as_bytes());
            }
        }
        None => eprint!("{line}"),
    }
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let path = PathBuf::from(
        args.next()
            .ok_or("usage: PATH --pid-file F [--timeout S] [--log L]")?,
    );
    let (mut pid_file, mut timeout, mut log_path) = (None, Duration::from_secs(5), None);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--pid-file" => pid_file = Some(PathBuf::from(value)),
            "--log" => log_path = Some(PathBuf::from(value)),
            "--timeout" => {
                timeout = Duration::from_secs_f64(
                    value
                        .parse()
                        .map_err(|e| format!("--timeout {value}: {e}"))?,
                )
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    let pid_file = pid_file.ok_or("--pid-file is required")?;
    if !path.exists() {
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .map_err(|e| format!("mkfifo {}: {e}", path.display()))?;
    }
    let mut fifo = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(&path)
        .map_err(|e| format!("opening {}: {e}", path.display()))?;
    log(&log_path, &format!("listening on {}", path.display()));
    let (mut deadline, mut magic, mut pending) = (None::<Instant>, false, String::new());
    let mut buf = [0u8; 256];
    loop {
        match fifo.read(&mut buf) {
            Ok(0) => {
                if magic && deadline.is_some() {
                    log(&log_path, "magic close -> disarmed");
                    deadline = None;
                }
                magic = false;
            }
            Ok(n) => {
                for &b in &buf[..n] {
                    if b == b'T' || !pending.is_empty() {
                        if b == b'\n' {
                            if let Ok(secs) = pending[1..].parse::<u64>() {
                                timeout = Duration::from_secs(secs);
                                log(&log_path, &format!("timeout {secs}s"));
                            }
                            pending.clear();
                        } else {
                            pending.push(char::from(b));
                        }
                    }
                    magic = b == b'V';
                }
                if deadline.is_none() {
                    log(&log_path, "armed");
                }
                deadline = Some(Instant::now() + timeout);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => return Err(format!("reading {}: {e}", path.display())),
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let ids = std::fs::read_to_string(&pid_file).unwrap_or_default();
            for id in ids.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(id),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            log(
                &log_path,
                &format!(
                    "FIRED killed [{}]",
                    ids.split_whitespace().collect::<Vec<_>>().join(" ")
                ),
            );
            deadline = None;
        }
        // Polling interval of this test stand-in; keeps firing within 50 ms of the deadline.
        std::thread::sleep(Duration::from_millis(50));
    }
}
