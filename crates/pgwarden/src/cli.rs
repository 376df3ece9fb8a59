//! The command line of the `pgwarden` binary: one subcommand per mode.
//!
//! Parsing only; each mode validates its own flags and runs in its own module.

use std::ffi::OsString;

use clap::Parser;
use clap::Subcommand;

use crate::etcd_flags::EtcdFlags;

/// pgwarden keeps a PostgreSQL cluster available; it embeds its own Raft store and serves the etcd v3 API.
#[derive(Debug, Parser)]
#[command(name = "pgwarden", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a store-only member configured with etcd's own command-line flags.
    ///
    /// A script that starts an etcd member can start pgwarden instead by changing only the binary.
    Etcd(EtcdFlags),
    /// Supervise the local PostgreSQL with the embedded store, configured by a patroni.yml-like file.
    Run {
        /// The configuration file (patroni.yml layout with a `raft:` section); `PATRONI_*`
        /// environment variables override it as in Patroni.
        config: std::path::PathBuf,
        /// Check the configuration (keys, values, TLS files; environment applied) and exit:
        /// 0 when it would start, 2 naming the key at fault (Patroni's `--validate-config`).
        #[arg(long)]
        validate_config: bool,
    },
    /// Operate a cluster: list, switchover, failover, restart, pause, edit-config, ... (patronictl's commands).
    Ctl(ctl::CtlArgs),
    /// Start a local cluster with real PostgreSQL 15 on loopback for a first look; Ctrl-C stops it.
    ///
    /// Prints each member's progress while it bootstraps, then the member table and the endpoints.
    Demo {
        /// Keep the members' files in this directory instead of a temporary one removed at exit.
        #[arg(long, value_name = "PATH")]
        dir: Option<std::path::PathBuf>,
        /// Use fixed ports: member i (from 0) gets N+10i for PostgreSQL, +1 REST, +2 etcd API,
        /// +3 Raft. Without it, free ports are picked.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
        base_port: Option<u16>,
        /// How many members.
        #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=9))]
        nodes: u8,
    },
}

/// Rewrites etcd's single-dash long flags (`-name n1`, `-data-dir=/x`) after the `etcd` subcommand
/// to the double-dash form clap parses. etcd parses flags with Go's `flag` package, which accepts
/// both spellings, and older scripts and guides use the single dash. Only arguments shaped like a
/// long flag (`-` then a letter and at least one more name character) are rewritten, so one-letter
/// flags (`-h`), negative numbers and a lone `-` pass unchanged; so does everything after `--`.
/// (A flag value that itself looks like `-word` would be rewritten too; etcd's values never do.)
pub fn normalize_etcd_args(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut normalized: Vec<OsString> = Vec::new();
    let mut in_etcd_flags = false;
    for arg in args {
        let text = arg.to_string_lossy().into_owned();
        if in_etcd_flags && text == "--" {
            in_etcd_flags = false;
        } else if in_etcd_flags && is_single_dash_long_flag(&text) {
            let mut double = OsString::from("-");
            double.push(&arg);
            normalized.push(double);
            continue;
        } else if normalized.len() == 1 && text == "etcd" {
            in_etcd_flags = true;
        }
        normalized.push(arg);
    }
    normalized
}

fn is_single_dash_long_flag(text: &str) -> bool {
    let Some(rest) = text.strip_prefix('-') else {
        return false;
    };
    let name = rest.split('=').next().unwrap_or_default();
    !rest.starts_with('-')
        && name.len() > 1
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}
