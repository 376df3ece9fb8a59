//! The `pgwarden` binary: one process per database host.
//!
//! It owns command-line parsing, configuration validation and the wiring of the crates into a running
//! member (one cancellation token, signal handling, logging). It must not hold domain logic: Raft lives in
//! `consensus`, the etcd API in `etcd-server`.
//! Today it has one mode, `pgwarden etcd`: a store-only member configured with etcd's own flags.

mod cli;
mod etcd_flags;
mod ignored_flags;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::Cli;
use crate::cli::Command;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Etcd(flags) => match flags.validate() {
            Ok(config) => {
                eprintln!("{config:?}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::from(2)
            }
        },
    }
}
