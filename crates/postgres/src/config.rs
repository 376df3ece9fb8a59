//! Pure rendering of PostgreSQL's configuration: postgresql.conf with the user's parameters
//! and the ones pgwarden forces (patroni.md §3.3), pg_hba.conf, `primary_conninfo` and the
//! recovery settings of a replica (PostgreSQL ≥ 12: `standby.signal` + GUCs).
//! Nothing here touches the file system; [`crate::files`] writes the results.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

/// The file the original `postgresql.conf` is renamed to once; ours includes it first.
pub const BASE_CONF: &str = "postgresql.base.conf";

/// One forced parameter: its default and, for numbers, the smallest value accepted.
struct Forced {
    name: &'static str,
    default: &'static str,
    rule: Rule,
    /// Also passed as `--name=value` on the postmaster command line (beats ALTER SYSTEM).
    on_command_line: bool,
}

enum Rule {
    AtLeast(i64),
    OneOf(&'static [&'static str]),
    Any,
}

/// patroni.md §3.3: only the dynamic configuration may change these; invalid values fall back
/// to the default.
const FORCED: &[Forced] = &[
    Forced {
        name: "wal_level",
        default: "replica",
        rule: Rule::OneOf(&["replica", "hot_standby", "logical"]),
        on_command_line: true,
    },
    Forced {
        name: "hot_standby",
        default: "on",
        rule: Rule::OneOf(&["on"]),
        on_command_line: true,
    },
    Forced {
        name: "max_connections",
        default: "100",
        rule: Rule::AtLeast(25),
        on_command_line: true,
    },
    Forced {
        name: "max_wal_senders",
        default: "10",
        rule: Rule::AtLeast(3),
        on_command_line: true,
    },
    Forced {
        name: "max_replication_slots",
        default: "10",
        rule: Rule::AtLeast(4),
        on_command_line: true,
    },
    Forced {
        name: "max_worker_processes",
        default: "8",
        rule: Rule::AtLeast(2),
        on_command_line: true,
    },
    Forced {
        name: "max_prepared_transactions",
        default: "0",
        rule: Rule::AtLeast(0),
        on_command_line: true,
    },
    Forced {
        name: "max_locks_per_transaction",
        default: "64",
        rule: Rule::AtLeast(32),
        on_command_line: true,
    },
    Forced {
        name: "track_commit_timestamp",
        default: "off",
        rule: Rule::OneOf(&["on", "off", "true", "false"]),
        on_command_line: true,
    },
    Forced {
        name: "wal_log_hints",
        default: "on",
        rule: Rule::OneOf(&["on", "off", "true", "false"]),
        on_command_line: true,
    },
    Forced {
        name: "wal_keep_size",
        default: "128MB",
        rule: Rule::Any,
        on_command_line: false,
    },
];

/// Recovery parameters that belong to the recovery block, never to the user's parameters.
const RECOVERY_PARAMETERS: &[&str] = &[
    "primary_conninfo",
    "primary_slot_name",
    "restore_command",
    "archive_cleanup_command",
    "recovery_end_command",
    "recovery_min_apply_delay",
    "recovery_target",
    "recovery_target_lsn",
    "recovery_target_name",
    "recovery_target_time",
    "recovery_target_xid",
    "recovery_target_inclusive",
    "recovery_target_timeline",
    "recovery_target_action",
    "standby_mode",
];

/// A parameter value that was refused and replaced by the default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedParameter {
    pub name: String,
    pub value: String,
    pub used: String,
}

/// Everything that shapes postgresql.conf for one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    /// `listen_addresses` (from `postgresql.listen`; empty = unix socket only).
    pub listen_addresses: String,
    pub port: u16,
    pub unix_socket_directory: PathBuf,
    /// `cluster_name` = scope.
    pub cluster_name: String,
    /// Cluster-wide parameters from the dynamic configuration (may include forced ones).
    pub dynamic_parameters: BTreeMap<String, String>,
    /// Parameters from the local configuration (forced ones are ignored here).
    pub local_parameters: BTreeMap<String, String>,
    /// `synchronous_standby_names` when pgwarden owns it (synchronous mode).
    pub synchronous_standby_names: Option<String>,
    pub hba_file: PathBuf,
    pub ident_file: Option<PathBuf>,
    /// Present on a replica: written as GUCs next to an empty `standby.signal`.
    pub recovery: Option<RecoverySettings>,
    /// On a replica, the values pg_control says the primary runs with
    /// ([`crate::controldata::ControlData::recorded_settings`]): a hot standby refuses to
    /// start below them, so such parameters are raised (patroni.md §3.3).
    pub replica_minimums: BTreeMap<String, u64>,
}

/// What a replica needs to follow its upstream (patroni.md §3.4).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecoverySettings {
    /// `None` = no upstream yet (or `nostream`): recover from the archive only.
    pub primary_conninfo: Option<ConnInfo>,
    /// The slot named after *this* member on the upstream.
    pub primary_slot_name: Option<String>,
    pub restore_command: Option<String>,
    pub archive_cleanup_command: Option<String>,
    pub recovery_min_apply_delay: Option<String>,
    /// User `recovery_conf` extras.
    pub extra: BTreeMap<String, String>,
}

/// A libpq connection string, rendered `keyword=value` with libpq quoting.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnInfo {
    /// Host name, IP address, or a directory holding the unix socket.
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    pub passfile: Option<PathBuf>,
    pub dbname: String,
    pub application_name: Option<String>,
    pub sslmode: Option<String>,
    /// Extra libpq keywords (gssencmode, channel_binding, target_session_attrs...).
    pub extra: BTreeMap<String, String>,
}

impl ConnInfo {
    /// The `keyword=value ...` form used by `primary_conninfo`, pg_rewind and pg_basebackup.
    pub fn render(&self) -> String {
        let mut parts: Vec<(String, String)> = vec![
            ("user".into(), self.user.clone()),
            ("host".into(), self.host.clone()),
            ("port".into(), self.port.to_string()),
        ];
        if let Some(password) = &self.password {
            parts.push(("password".into(), password.clone()));
        }
        if let Some(passfile) = &self.passfile {
            parts.push(("passfile".into(), passfile.display().to_string()));
        }
        if let Some(sslmode) = &self.sslmode {
            parts.push(("sslmode".into(), sslmode.clone()));
        }
        if let Some(application_name) = &self.application_name {
            parts.push(("application_name".into(), application_name.clone()));
        }
        parts.push(("dbname".into(), self.dbname.clone()));
        for (key, value) in &self.extra {
            parts.push((key.clone(), value.clone()));
        }
        parts
            .iter()
            .map(|(key, value)| format!("{key}={}", quote_conninfo_value(value)))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// libpq quoting: bare when safe, else single-quoted with `\` and `'` backslash-escaped.
fn quote_conninfo_value(value: &str) -> String {
    let bare = !value.is_empty()
        && !value
            .chars()
            .any(|c| c.is_whitespace() || c == '\'' || c == '\\');
    if bare {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

/// A value as postgresql.conf wants it: single-quoted, `'` doubled, `\` escaped.
pub fn quote_guc_value(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// The parameters PostgreSQL runs with, and the dynamic values refused on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectiveParameters {
    pub parameters: BTreeMap<String, String>,
    /// `--name=value` options for the postmaster command line.
    pub command_line: Vec<String>,
    pub refused: Vec<RefusedParameter>,
    /// Parameters raised to the primary's value (the member should report `pending_restart`
    /// once the primary lowers them again).
    pub raised: Vec<RefusedParameter>,
}

/// Merges dynamic and local parameters and applies the forced ones: a local value beats the
/// dynamic one for ordinary parameters; local values of forced parameters are ignored and
/// dynamic ones are validated, recovery parameters are dropped (they
/// belong to the recovery block), and listen/port/cluster_name/socket come from the settings.
pub fn effective_parameters(settings: &ServerSettings) -> EffectiveParameters {
    let is_forced = |name: &str| FORCED.iter().any(|forced| forced.name == name);
    let is_recovery = |name: &str| RECOVERY_PARAMETERS.contains(&name);
    let mut parameters: BTreeMap<String, String> = BTreeMap::new();
    // The member's own file wins over the cluster-wide values, except for the forced
    // parameters, which every member must share and which come from `/config` alone.
    for (name, value) in settings
        .dynamic_parameters
        .iter()
        .chain(&settings.local_parameters)
    {
        if !is_forced(name) && !is_recovery(name) {
            parameters.insert(name.clone(), value.clone());
        }
    }
    let mut refused = Vec::new();
    let mut raised = Vec::new();
    let mut command_line = Vec::new();
    for forced in FORCED {
        let requested = settings.dynamic_parameters.get(forced.name);
        let mut value = match requested {
            Some(value) if accepts(&forced.rule, value) => normalise(forced.name, value),
            Some(value) => {
                refused.push(RefusedParameter {
                    name: forced.name.to_owned(),
                    value: value.clone(),
                    used: forced.default.to_owned(),
                });
                forced.default.to_owned()
            }
            None => forced.default.to_owned(),
        };
        if settings.recovery.is_some()
            && let Some(minimum) = settings.replica_minimums.get(forced.name)
            && value.parse::<u64>().is_ok_and(|current| current < *minimum)
        {
            raised.push(RefusedParameter {
                name: forced.name.to_owned(),
                value: value.clone(),
                used: minimum.to_string(),
            });
            value = minimum.to_string();
        }
        if forced.on_command_line {
            command_line.push(format!("--{}={}", forced.name, value));
        }
        parameters.insert(forced.name.to_owned(), value);
    }
    let identity = [
        ("listen_addresses", settings.listen_addresses.clone()),
        ("port", settings.port.to_string()),
        ("cluster_name", settings.cluster_name.clone()),
    ];
    for (name, value) in identity {
        command_line.push(format!("--{name}={value}"));
        parameters.insert(name.to_owned(), value);
    }
    parameters.insert(
        "unix_socket_directories".to_owned(),
        settings.unix_socket_directory.display().to_string(),
    );
    if let Some(names) = &settings.synchronous_standby_names {
        parameters.insert("synchronous_standby_names".to_owned(), names.clone());
    }
    command_line.sort();
    EffectiveParameters {
        parameters,
        command_line,
        refused,
        raised,
    }
}

fn accepts(rule: &Rule, value: &str) -> bool {
    match rule {
        Rule::AtLeast(minimum) => value.trim().parse::<i64>().is_ok_and(|n| n >= *minimum),
        Rule::OneOf(allowed) => allowed.contains(&value.trim().to_ascii_lowercase().as_str()),
        Rule::Any => !value.trim().is_empty(),
    }
}

fn normalise(name: &str, value: &str) -> String {
    let value = value.trim();
    if name == "wal_level" && value.eq_ignore_ascii_case("hot_standby") {
        // PostgreSQL ≥ 9.6 spells it `replica`.
        return "replica".to_owned();
    }
    value.to_owned()
}

/// postgresql.conf: the base file first, then every parameter sorted by name, the hba/ident
/// files, and on a replica the recovery block (`recovery_target*` forced empty so a restored
/// base backup's targets cannot stop streaming).
pub fn render_postgresql_conf(settings: &ServerSettings) -> String {
    let effective = effective_parameters(settings);
    let mut out = String::new();
    out.push_str("# Written by pgwarden: changes here are overwritten.\n");
    let _ = writeln!(out, "include_if_exists {}", quote_guc_value(BASE_CONF));
    out.push('\n');
    for (name, value) in &effective.parameters {
        let _ = writeln!(out, "{name} = {}", quote_guc_value(value));
    }
    let _ = writeln!(
        out,
        "hba_file = {}",
        quote_guc_value(&settings.hba_file.display().to_string())
    );
    if let Some(ident_file) = &settings.ident_file {
        let _ = writeln!(
            out,
            "ident_file = {}",
            quote_guc_value(&ident_file.display().to_string())
        );
    }
    if let Some(recovery) = &settings.recovery {
        out.push_str("\n# recovery.conf\n");
        for (name, value) in recovery_parameters(recovery) {
            let _ = writeln!(out, "{name} = {}", quote_guc_value(&value));
        }
    }
    out
}

/// The recovery GUCs of a replica, sorted by name.
pub fn recovery_parameters(recovery: &RecoverySettings) -> BTreeMap<String, String> {
    let mut parameters: BTreeMap<String, String> = recovery
        .extra
        .iter()
        .filter(|(name, _)| RECOVERY_PARAMETERS.contains(&name.as_str()))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    for target in [
        "recovery_target",
        "recovery_target_lsn",
        "recovery_target_name",
        "recovery_target_time",
        "recovery_target_xid",
    ] {
        parameters.insert(target.to_owned(), String::new());
    }
    parameters.insert("recovery_target_timeline".to_owned(), "latest".to_owned());
    let optional = [
        (
            "primary_conninfo",
            recovery.primary_conninfo.as_ref().map(ConnInfo::render),
        ),
        ("primary_slot_name", recovery.primary_slot_name.clone()),
        ("restore_command", recovery.restore_command.clone()),
        (
            "archive_cleanup_command",
            recovery.archive_cleanup_command.clone(),
        ),
        (
            "recovery_min_apply_delay",
            recovery.recovery_min_apply_delay.clone(),
        ),
    ];
    for (name, value) in optional {
        match value {
            Some(value) => parameters.insert(name.to_owned(), value),
            None => parameters.remove(name),
        };
    }
    parameters.remove("standby_mode");
    parameters
}

/// pg_hba.conf from the configured lines, one per line, fully replacing the file.
pub fn render_pg_hba(lines: &[String]) -> String {
    let mut out = String::from("# Written by pgwarden: changes here are overwritten.\n");
    for line in lines {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A physical slot name derived from a member name (Patroni's `slot_name_from_member_name`):
/// lowercase, characters other than `[a-z0-9_]` replaced by `_`, at most 63 bytes.
pub fn slot_name_from_member_name(member: &str) -> String {
    let mut slot: String = member
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    slot.truncate(63);
    slot
}

/// One line of a pgpass file; `None` fields are written as `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgpassEntry {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub database: Option<String>,
    pub user: String,
    pub password: String,
}

/// The pgpass file given to pg_basebackup, pg_rewind and replicas (`passfile=`):
/// `host:port:database:user:password`, with `\` and `:` escaped by a backslash.
pub fn render_pgpass(entries: &[PgpassEntry]) -> String {
    let escape = |field: &str| field.replace('\\', "\\\\").replace(':', "\\:");
    let or_any = |field: Option<String>| field.map_or_else(|| "*".to_owned(), |f| escape(&f));
    entries
        .iter()
        .map(|entry| {
            format!(
                "{}:{}:{}:{}:{}\n",
                or_any(entry.host.clone()),
                entry
                    .port
                    .map_or_else(|| "*".to_owned(), |port| port.to_string()),
                or_any(entry.database.clone()),
                escape(&entry.user),
                escape(&entry.password),
            )
        })
        .collect()
}

/// Quotes an SQL identifier (`"name"`, `"` doubled).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes an SQL string literal (`'text'`, `'` doubled; `E''` when a backslash is present).
pub fn quote_literal(text: &str) -> String {
    let escaped = text.replace('\'', "''");
    if text.contains('\\') {
        format!("E'{}'", escaped.replace('\\', "\\\\"))
    } else {
        format!("'{escaped}'")
    }
}

#[cfg(test)]
mod tests;
