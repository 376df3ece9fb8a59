//! The `pgwarden` binary: one process per database host.
//!
//! It owns command-line parsing, configuration validation and the wiring of the crates into a running
//! member (one cancellation token, signal handling, logging). It must not hold domain logic: Raft lives in
//! `consensus`, the etcd API in `etcd-server`.
//! Modes: `pgwarden etcd` (a store-only member configured with etcd's own flags), `pgwarden run`
//! (one member supervising PostgreSQL) and `pgwarden demo` (a local cluster of `run` members).

mod cli;
mod client_listeners;
mod demo;
#[cfg(test)]
mod deploy_examples_test;
mod etcd_cmd;
mod etcd_flags;
mod ignored_flags;
mod run;
mod tls_flags;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

use crate::cli::Cli;
use crate::cli::Command;

/// mimalloc instead of the system allocator: a member allocates and frees small buffers for every
/// request (HTTP/2 frames, protobuf messages, log entries) across several threads; measured with
/// `pgwarden-bench`, see the README.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code for flags that cannot be used (clap uses the same for unknown or malformed flags).
const EXIT_USAGE: u8 = 2;

/// Hands the memory mimalloc holds free back to the OS: run after a snapshot moved the store's
/// values to the snapshot file, which frees hundreds of megabytes at once in a large store.
#[allow(
    unsafe_code,
    reason = "a call into mimalloc, the allocator this binary is built with"
)]
fn release_freed_memory() {
    // SAFETY: mi_collect takes no pointers and may be called from any thread at any time.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

/// Turns transparent huge pages off for this process. The allocator's arenas are otherwise backed
/// by 2 MiB pages that stay resident while a few kilobytes of each are in use: with 1M keys a
/// member held about 120 MiB of them (measured with `pgwarden-bench --load-keys 1000000`, see
/// the README). PostgreSQL and callbacks get back the flag pgwarden was started with.
fn disable_transparent_huge_pages() {
    let inherited = nix::sys::prctl::get_thp_disable().unwrap_or(false);
    postgres::os_user::set_children_thp_disabled(inherited);
    if let Err(error) = nix::sys::prctl::set_thp_disable(true) {
        // Only memory use depends on it; the flag may be refused by an old kernel or a sandbox.
        eprintln!("warning: could not turn transparent huge pages off: {error}");
    }
}

fn main() -> ExitCode {
    disable_transparent_huge_pages();
    storage::on_memory_freed(release_freed_memory);
    let cli = Cli::parse_from(cli::normalize_etcd_args(std::env::args_os()));
    match cli.command {
        // The command's own output is the interface: no log subscriber, so the store
        // client's retries stay quiet.
        Command::Ctl(args) => match runtime() {
            Ok(runtime) => runtime.block_on(ctl::run(args)),
            Err(code) => code,
        },
        Command::Etcd(flags) => {
            init_logging();
            let config = match flags.validate() {
                Ok(config) => config,
                Err(error) => {
                    eprintln!("error: {error}");
                    return ExitCode::from(EXIT_USAGE);
                }
            };
            let tls = match tls_flags::load(&config.tls, config.listen_peer.is_tls()) {
                Ok(tls) => tls,
                Err(error) => {
                    eprintln!("error: {error}");
                    return ExitCode::from(EXIT_USAGE);
                }
            };
            let runtime = match runtime() {
                Ok(runtime) => runtime,
                Err(code) => return code,
            };
            match runtime.block_on(etcd_cmd::run(config, tls)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    tracing::error!("{error:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run {
            config,
            validate_config: true,
        } => match run::load(&config) {
            Ok(_) => {
                println!("configuration {} is valid", config.display());
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("error: {error:#}");
                ExitCode::from(EXIT_USAGE)
            }
        },
        Command::Run { config, .. } => {
            init_logging();
            run_command(&config)
        }
        Command::Demo {
            dir,
            base_port,
            nodes,
        } => {
            init_logging();
            demo_command(demo::DemoOptions {
                dir,
                base_port,
                nodes: usize::from(nodes),
            })
        }
    }
}

/// The async runtime of a command, or the exit code when it cannot start.
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Runtime::new().map_err(|error| {
        eprintln!("error: start the async runtime: {error}");
        ExitCode::FAILURE
    })
}

/// `pgwarden demo`: runs this same binary once per member.
fn demo_command(options: demo::DemoOptions) -> ExitCode {
    let binary = match std::env::current_exe() {
        Ok(binary) => binary,
        Err(error) => {
            eprintln!("error: find the pgwarden binary: {error}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    match runtime.block_on(demo::run(options, binary)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// `pgwarden run CONFIG.yml`: a refused configuration exits with the usage code.
fn run_command(path: &std::path::Path) -> ExitCode {
    let config = match run::load(path) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error:#}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    match runtime.block_on(run::run(config, path.to_path_buf())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Log filter when `RUST_LOG` is unset: pgwarden at info, openraft's per-step chatter only from warn.
const DEFAULT_LOG_FILTER: &str = "info,openraft=warn";

/// Logs to stderr, filtered by `RUST_LOG`; colours only on a terminal.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}
