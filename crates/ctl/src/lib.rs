//! `pgwarden ctl`: the operator's command line, shaped after patronictl so its users' hands
//! already know it.
//!
//! It owns the commands ([`CtlArgs`]), reading a scope's keys from the store through the etcd
//! v3 API ([`dcs::EtcdStore`]: the local member's `raft.etcd_api`, the `etcd3:` hosts, or
//! `--endpoints`), rendering them ([`table`]), writing the `config` and `failover` keys with a
//! compare-and-swap, and asking members to act through their REST API (switchover, failover,
//! restart, reload, reinitialize) as patronictl does.
//!
//! Exit codes: 0 done; 1 the operation failed, was refused, or was not confirmed; 2 bad
//! arguments or configuration (clap's usage errors are 2 as well).
//!
//! It must not know how the store is replicated or how the agent decides: it reads and writes
//! keys in Patroni's layout and talks to members over HTTP or HTTPS (the `ctl:` TLS keys, else
//! the `restapi:` ones, as patronictl), like any external tool.

#![cfg_attr(test, allow(clippy::unwrap_used, reason = "tests fail loudly"))]

mod args;
mod cluster;
mod commands;
mod config_edit;
pub mod table;

use std::process::ExitCode;

pub use args::{CtlArgs, CtlCommand};

/// Why a command stopped.
#[derive(Debug)]
pub enum CtlError {
    /// Bad arguments or configuration (exit 2).
    Usage(String),
    /// The operation failed, was refused or not confirmed (exit 1).
    Failed(String),
}

impl std::fmt::Display for CtlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Usage(message) | Self::Failed(message) => f.write_str(message),
        }
    }
}

impl From<anyhow::Error> for CtlError {
    fn from(error: anyhow::Error) -> Self {
        Self::Failed(format!("{error:#}"))
    }
}

pub(crate) type Result<T, E = CtlError> = std::result::Result<T, E>;

pub(crate) fn failed(message: impl Into<String>) -> CtlError {
    CtlError::Failed(message.into())
}

pub(crate) fn usage(message: impl Into<String>) -> CtlError {
    CtlError::Usage(message.into())
}

/// Runs one command; prints its error to stderr and turns the outcome into the exit code.
pub async fn run(args: CtlArgs) -> ExitCode {
    match commands::dispatch(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(CtlError::Usage(message)) => {
            eprintln!("Error: {message}");
            ExitCode::from(2)
        }
        Err(CtlError::Failed(message)) => {
            eprintln!("Error: {message}");
            ExitCode::from(1)
        }
    }
}
