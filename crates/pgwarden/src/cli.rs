//! The command line of the `pgwarden` binary: one subcommand per mode.
//!
//! Parsing only; each mode validates its own flags and runs in its own module.

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
}
