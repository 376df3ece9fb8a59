//! etcd flags that `pgwarden etcd` accepts and ignores, listed in one place.
//!
//! Scripts that start etcd commonly pass logging, compaction and quota flags; refusing them would make
//! "change only the binary" fail for no benefit. Each one is harmless to ignore: pgwarden logs through
//! `RUST_LOG`, keeps the v2 API off, serves `/metrics` on the client port, and applies fixed request limits.
//! (Auto-compaction and the backend quota are implemented: see `etcd_flags`.)
//! Flags that change where data lives or how peers are reached (e.g. `--wal-dir`, CRL or cipher flags) are not
//! here: they are refused as unknown, so a script never silently gets a different setup than it asked for.
//! (etcd's certificate flags are implemented: see `tls_flags`.)

use clap::Arg;
use clap::ArgAction;
use clap::ArgMatches;
use clap::Args;
use clap::FromArgMatches;
use clap::parser::ValueSource;

/// How an ignored flag takes its value, following Go's `flag` package that etcd uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ValueShape {
    /// A boolean: `--flag` or `--flag=false` (never `--flag false`).
    Bool,
    /// A string or number: `--flag value` or `--flag=value`.
    Value,
}

/// Every etcd flag accepted and ignored, with how it takes a value.
const IGNORED_ETCD_FLAGS: &[(&str, ValueShape)] = &[
    ("logger", ValueShape::Value),
    ("log-level", ValueShape::Value),
    ("log-outputs", ValueShape::Value),
    ("debug", ValueShape::Bool),
    ("enable-v2", ValueShape::Bool),
    ("enable-pprof", ValueShape::Bool),
    ("max-request-bytes", ValueShape::Value),
    ("max-txn-ops", ValueShape::Value),
    ("max-snapshots", ValueShape::Value),
    ("max-wals", ValueShape::Value),
    ("metrics", ValueShape::Value),
    ("listen-metrics-urls", ValueShape::Value),
    ("strict-reconfig-check", ValueShape::Bool),
    ("pre-vote", ValueShape::Bool),
    ("initial-election-tick-advance", ValueShape::Bool),
    ("experimental-initial-corrupt-check", ValueShape::Bool),
];

/// The ignored etcd flags that were given on the command line, rendered as `--flag=value`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IgnoredFlags {
    pub given: Vec<String>,
}

impl FromArgMatches for IgnoredFlags {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut given = Vec::new();
        for (flag, _) in IGNORED_ETCD_FLAGS {
            if matches.value_source(flag) != Some(ValueSource::CommandLine) {
                continue;
            }
            let values = matches
                .get_many::<String>(flag)
                .into_iter()
                .flatten()
                .map(|value| format!("--{flag}={value}"));
            given.extend(values);
        }
        Ok(Self { given })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl Args for IgnoredFlags {
    fn augment_args(command: clap::Command) -> clap::Command {
        IGNORED_ETCD_FLAGS
            .iter()
            .fold(command, |command, (flag, shape)| {
                let arg = Arg::new(*flag)
                    .long(*flag)
                    .hide(true)
                    .action(ArgAction::Append);
                let arg = match shape {
                    ValueShape::Bool => arg
                        .num_args(0..=1)
                        .require_equals(true)
                        .default_missing_value("true"),
                    ValueShape::Value => arg.num_args(1),
                };
                command.arg(arg)
            })
            .after_help(after_help())
    }

    fn augment_args_for_update(command: clap::Command) -> clap::Command {
        Self::augment_args(command)
    }
}

/// Lists the ignored flags in `--help`, so the hidden args are not a surprise.
fn after_help() -> String {
    let names: Vec<String> = IGNORED_ETCD_FLAGS
        .iter()
        .map(|(flag, _)| format!("--{flag}"))
        .collect();
    format!(
        "Accepted and ignored (etcd flags scripts commonly pass): {}",
        names.join(" ")
    )
}
