//! The command line of `pgwarden ctl`, with patronictl's command names and flags.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

/// Operate a pgwarden cluster: list its members, switch over, restart, edit its configuration.
#[derive(Debug, Args)]
pub struct CtlArgs {
    /// The configuration file `pgwarden run` reads; the scope, the store's endpoints and the
    /// REST API credentials come from it.
    #[arg(
        short = 'c',
        long = "config",
        env = "PGWARDEN_CONFIG",
        default_value = "/etc/pgwarden/pgwarden.yml",
        global = true
    )]
    pub config: PathBuf,
    /// etcd v3 endpoints of the store (comma-separated `host:port` or URLs), instead of the
    /// configuration's `raft.etcd_api` or `etcd3.hosts`.
    #[arg(long, value_delimiter = ',', global = true)]
    pub endpoints: Vec<String>,
    #[command(subcommand)]
    pub command: CtlCommand,
}

/// Output formats of `list` and `history`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Pretty,
    Json,
    Yaml,
    Tsv,
}

/// Which members a command applies to, by role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleFilter {
    Leader,
    Primary,
    Replica,
    Any,
}

#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// The members as a table: Member, Host, Role, State, TL, Lag in MB.
    List {
        /// The cluster (must be the configured scope; default: it).
        cluster: Option<String>,
        #[arg(short = 'f', long, value_enum, default_value = "pretty")]
        format: Format,
    },
    /// The members as a tree: replicas under the primary they stream from.
    Topology { cluster: Option<String> },
    /// Hand the primary role to another member in a planned way.
    Switchover {
        cluster: Option<String>,
        /// The current primary (checked against the store).
        #[arg(long, alias = "primary")]
        leader: Option<String>,
        /// The member to promote (default: the healthiest replica).
        #[arg(long)]
        candidate: Option<String>,
        /// When to switch over (ISO 8601 with a time zone), instead of now.
        #[arg(long)]
        scheduled: Option<String>,
        /// Do not ask for confirmation.
        #[arg(long)]
        force: bool,
    },
    /// Promote a chosen member, with or without a running primary.
    Failover {
        cluster: Option<String>,
        /// The member to promote.
        #[arg(long)]
        candidate: Option<String>,
        #[arg(long)]
        force: bool,
    },
    /// Restart PostgreSQL on members (all by default).
    Restart {
        cluster: Option<String>,
        members: Vec<String>,
        #[arg(short = 'r', long, value_enum)]
        role: Option<RoleFilter>,
        /// Only members with a parameter change pending a restart.
        #[arg(long)]
        pending: bool,
        /// When to restart (ISO 8601 with a time zone).
        #[arg(long)]
        scheduled: Option<String>,
        /// Seconds PostgreSQL may take to start before the restart counts as failed.
        #[arg(long)]
        timeout: Option<u64>,
        #[arg(long)]
        force: bool,
    },
    /// Make members re-read their configuration (PostgreSQL reload).
    Reload {
        cluster: Option<String>,
        members: Vec<String>,
        #[arg(short = 'r', long, value_enum)]
        role: Option<RoleFilter>,
        #[arg(long)]
        force: bool,
    },
    /// Re-create replicas from the primary (their data directories are replaced).
    Reinit {
        cluster: Option<String>,
        members: Vec<String>,
        /// Wait until each member runs again.
        #[arg(long)]
        wait: bool,
        #[arg(long)]
        force: bool,
    },
    /// Maintenance mode on: no automatic failover, restarts or demotions.
    Pause { cluster: Option<String> },
    /// Maintenance mode off.
    Resume { cluster: Option<String> },
    /// Change the cluster-wide configuration (the store's `config` key).
    EditConfig {
        cluster: Option<String>,
        /// `key.path=value` (YAML value; `null` removes the key). Repeatable.
        #[arg(short = 's', long = "set")]
        set: Vec<String>,
        /// `parameter=value` under `postgresql.parameters`. Repeatable.
        #[arg(short = 'p', long = "pg")]
        pg: Vec<String>,
        /// Merge a YAML file into the configuration (`-` for standard input).
        #[arg(long)]
        apply: Option<PathBuf>,
        /// Replace the configuration with a YAML file (`-` for standard input).
        #[arg(long)]
        replace: Option<PathBuf>,
        /// Do not show the difference.
        #[arg(short = 'q', long)]
        quiet: bool,
        #[arg(long)]
        force: bool,
    },
    /// Print the cluster-wide configuration as YAML.
    ShowConfig { cluster: Option<String> },
    /// The timeline history: TL, LSN, Reason, Timestamp, New Leader.
    History {
        cluster: Option<String>,
        #[arg(short = 'f', long, value_enum, default_value = "pretty")]
        format: Format,
    },
    /// Delete the cluster's state from the store (PostgreSQL keeps running).
    Remove {
        cluster: String,
        /// Do not ask for the confirmations.
        #[arg(long)]
        force: bool,
    },
    /// A libpq connection string for the primary (or a chosen member or role).
    Dsn {
        cluster: Option<String>,
        #[arg(short = 'm', long)]
        member: Option<String>,
        #[arg(short = 'r', long, value_enum)]
        role: Option<RoleFilter>,
    },
    /// Versions of `pgwarden ctl`, and of each member's pgwarden and PostgreSQL.
    Version { cluster: Option<String> },
}
