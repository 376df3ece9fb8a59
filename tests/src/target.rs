//! Which implementation a suite runs against, and where its binary is.

use std::fmt;
use std::path::PathBuf;

use anyhow::Context;
use anyhow::bail;

/// The server implementation under test. Both are started with the same etcd flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A real etcd (Debian's 3.4 in CI): the reference behaviour.
    Etcd,
    /// `pgwarden etcd` from this workspace.
    Pgwarden,
}

impl Target {
    /// The program and the leading arguments that precede the etcd flags.
    pub fn command(self) -> anyhow::Result<(PathBuf, Vec<String>)> {
        match self {
            Target::Etcd => Ok((etcd_binary()?, Vec::new())),
            Target::Pgwarden => Ok((pgwarden_binary()?, vec!["etcd".to_owned()])),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Target::Etcd => "etcd",
            Target::Pgwarden => "pgwarden",
        })
    }
}

/// `ETCD_BIN`, else `/usr/bin/etcd`, else `etcd` on the PATH.
fn etcd_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("ETCD_BIN") {
        return Ok(PathBuf::from(path));
    }
    let debian = PathBuf::from("/usr/bin/etcd");
    if debian.exists() {
        return Ok(debian);
    }
    find_on_path("etcd").context("etcd not found: install Debian's etcd-server or set ETCD_BIN")
}

/// `PGWARDEN_BIN`, else `target/<profile>/pgwarden` next to the running test executable
/// (which lives in `target/<profile>/deps/`). The suites do not build it: run
/// `cargo build -p pgwarden` (or `cargo build --workspace --bins`) first.
fn pgwarden_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("PGWARDEN_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().context("locate the test executable")?;
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .context("test executable has no target/<profile>/deps parent")?;
    let binary = profile_dir.join("pgwarden");
    if !binary.exists() {
        bail!(
            "pgwarden binary not found at {}: run `cargo build --workspace --bins` first or set PGWARDEN_BIN",
            binary.display()
        );
    }
    Ok(binary)
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}
