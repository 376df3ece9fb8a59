//! PostgreSQL's programs (`bin_dir`) and how they are run: as the PostgreSQL OS user, with a
//! timeout, output captured for the error message.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::os_user::RunAs;

/// Where PostgreSQL's binaries are and whom they run as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tools {
    pub bin_dir: PathBuf,
    pub run_as: RunAs,
}

impl Tools {
    pub fn new(bin_dir: impl Into<PathBuf>, run_as: RunAs) -> Self {
        Self {
            bin_dir: bin_dir.into(),
            run_as,
        }
    }

    pub fn binary(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }

    /// A command for `name` in `bin_dir`, as the PostgreSQL user.
    pub fn command(&self, name: &str) -> tokio::process::Command {
        self.run_as.command(self.binary(name))
    }

    /// Runs `name args...` to completion within `timeout`; fails on a non-zero exit.
    pub async fn run<I, S>(
        &self,
        name: &str,
        args: I,
        env: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = self.command(name);
        command.args(args);
        for (key, value) in env {
            command.env(key, value);
        }
        run_to_completion(command, name, timeout).await
    }
}

/// Runs a prepared command, killing it if it outlives `timeout`.
pub(crate) async fn run_to_completion(
    mut command: tokio::process::Command,
    program: &str,
    timeout: Duration,
) -> Result<Output> {
    command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let child = command.spawn().map_err(|source| Error::Spawn {
        program: program.to_owned(),
        source,
    })?;
    let output = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(result) => result.map_err(|source| Error::Spawn {
            program: program.to_owned(),
            source,
        })?,
        Err(_) => {
            return Err(Error::CommandTimedOut {
                program: program.to_owned(),
                timeout,
            });
        }
    };
    if !output.status.success() {
        let mut stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        if stderr.is_empty() {
            stderr = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        }
        return Err(Error::CommandFailed {
            program: program.to_owned(),
            status: output.status,
            stderr,
        });
    }
    Ok(output)
}

/// `--name=value` form of a long option (Patroni's basebackup/rewind option lists).
pub fn long_option(name: &str, value: Option<&str>) -> String {
    let name = name.trim_start_matches('-');
    match value {
        Some(value) => format!("--{name}={value}"),
        None => format!("--{name}"),
    }
}

pub(crate) fn path_arg(flag: &str, path: &Path) -> String {
    format!("{flag}={}", path.display())
}
