//! Errors of PostgreSQL control, named for what the caller can do about them.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("could not start {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} failed ({status}): {stderr}")]
    CommandFailed {
        program: String,
        status: ExitStatus,
        stderr: String,
    },
    #[error("{program} did not finish within {timeout:?}")]
    CommandTimedOut { program: String, timeout: Duration },
    #[error("OS user {0:?} does not exist")]
    UserNotFound(String),
    #[error("look up OS user {name:?}: {source}")]
    UserLookup {
        name: String,
        #[source]
        source: nix::Error,
    },
    #[error("postmaster exited during startup ({0})")]
    StartFailed(String),
    #[error("PostgreSQL did not accept connections within {0:?}")]
    NotReady(Duration),
    /// The server took the connection but did not complete its start-up handshake in time
    /// (a stopped or hung postmaster: the kernel still accepts on its socket).
    #[error("PostgreSQL did not answer a new connection within {0:?}")]
    Unresponsive(Duration),
    #[error("postmaster did not exit within {0:?}")]
    StopTimedOut(Duration),
    #[error("signal postmaster {pid}: {source}")]
    Signal {
        pid: i32,
        #[source]
        source: nix::Error,
    },
    #[error("SQL: {0}")]
    Sql(#[from] tokio_postgres::Error),
    #[error("unexpected SQL result: {0}")]
    UnexpectedResult(String),
    #[error("pg_controldata output: {0}")]
    ControlData(String),
    #[error("every replica creation method failed; last: {0}")]
    AllMethodsFailed(Box<Error>),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io {
        action,
        path,
        source,
    }
}
