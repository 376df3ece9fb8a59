//! Creating a data directory: initdb for a new cluster (patroni.md §6.3), and replica creation
//! by pg_basebackup or a custom `create_replica_methods` command (§6.4).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::ConnInfo;
use crate::error::{Error, Result};
use crate::files;
use crate::tools::{Tools, long_option, path_arg, run_to_completion};

/// `initdb` for a new cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitdbOptions {
    pub data_dir: PathBuf,
    /// The bootstrap superuser name (`-U`).
    pub superuser: String,
    /// A file holding the superuser password (`--pwfile`), readable by the PostgreSQL user.
    pub pwfile: Option<PathBuf>,
    /// Always on by default: pg_rewind needs checksums or `wal_log_hints`.
    pub data_checksums: bool,
    /// Further `bootstrap.initdb` options as (name, value), e.g. ("encoding", Some("UTF8")).
    pub extra: Vec<(String, Option<String>)>,
    pub timeout: Duration,
}

/// Runs initdb into `data_dir` (created with mode 0700 and owned by the PostgreSQL user).
pub async fn initdb(tools: &Tools, options: &InitdbOptions) -> Result<()> {
    tools.run_as.prepare_dir(&options.data_dir, 0o700)?;
    let mut args = vec![
        path_arg("--pgdata", &options.data_dir),
        format!("--username={}", options.superuser),
    ];
    if options.data_checksums {
        args.push("--data-checksums".to_owned());
    }
    if let Some(pwfile) = &options.pwfile {
        args.push(path_arg("--pwfile", pwfile));
    }
    for (name, value) in &options.extra {
        args.push(long_option(name, value.as_deref()));
    }
    tools.run("initdb", &args, &[], options.timeout).await?;
    Ok(())
}

/// Options for cloning a replica with pg_basebackup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasebackupOptions {
    pub data_dir: PathBuf,
    /// A replication-capable connection to the clone source.
    pub source: ConnInfo,
    /// User options (long options only), e.g. ("checkpoint", Some("fast")).
    pub extra: Vec<(String, Option<String>)>,
    /// Attempts before giving up (Patroni: 2), the data directory wiped between them.
    pub attempts: u32,
    pub retry_delay: Duration,
    pub timeout: Duration,
}

/// `pg_basebackup --pgdata=D -X stream --dbname=<conn>` into an emptied data directory.
/// pgwarden writes its own recovery settings afterwards (no `-R`).
pub async fn pg_basebackup(tools: &Tools, options: &BasebackupOptions) -> Result<()> {
    tools.run_as.prepare_dir(&options.data_dir, 0o700)?;
    let mut args = vec![
        path_arg("--pgdata", &options.data_dir),
        "--wal-method=stream".to_owned(),
        format!("--dbname={}", options.source.render()),
    ];
    for (name, value) in &options.extra {
        args.push(long_option(name, value.as_deref()));
    }
    let env = [(
        "PGOPTIONS",
        "-c synchronous_commit=local -c statement_timeout=0",
    )];
    let mut last_error = None;
    for attempt in 0..options.attempts.max(1) {
        if attempt > 0 {
            tokio::time::sleep(options.retry_delay).await;
        }
        files::clear_dir(&options.data_dir)?;
        match tools
            .run("pg_basebackup", &args, &env, options.timeout)
            .await
        {
            Ok(_) => return Ok(()),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or_else(|| Error::StartFailed("pg_basebackup never ran".into())))
}

/// A `create_replica_methods` entry other than `basebackup` (e.g. pgBackRest restore).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomReplicaMethod {
    pub name: String,
    /// The command, already split into words.
    pub command: Vec<String>,
    /// Do not wipe the data directory first (e.g. `pgbackrest --delta`).
    pub keep_data: bool,
    /// Pass none of the standard `--scope/--role/--datadir/--connstring` parameters.
    pub no_params: bool,
    /// May run without a leader (empty connection string).
    pub no_leader: bool,
    /// Extra keys of the method section, passed as `--key=value`.
    pub params: Vec<(String, String)>,
}

/// Patroni's argument contract: `command ... --scope=S --role=replica --datadir=D
/// --connstring=C --key=value...`; `no_params` suppresses all of them.
pub fn custom_method_argv(
    method: &CustomReplicaMethod,
    scope: &str,
    data_dir: &Path,
    connstring: Option<&str>,
) -> Vec<String> {
    let mut argv = method.command.clone();
    if method.no_params {
        return argv;
    }
    argv.push(format!("--scope={scope}"));
    argv.push("--role=replica".to_owned());
    argv.push(path_arg("--datadir", data_dir));
    argv.push(format!("--connstring={}", connstring.unwrap_or_default()));
    for (key, value) in &method.params {
        argv.push(format!("--{key}={value}"));
    }
    argv
}

/// Runs a custom replica creation method as the PostgreSQL user with `PGPASSFILE` set.
pub async fn run_custom_method(
    tools: &Tools,
    method: &CustomReplicaMethod,
    scope: &str,
    data_dir: &Path,
    connstring: Option<&str>,
    pgpass: Option<&Path>,
    timeout: Duration,
) -> Result<()> {
    tools.run_as.prepare_dir(data_dir, 0o700)?;
    if !method.keep_data {
        files::clear_dir(data_dir)?;
    }
    let argv = custom_method_argv(method, scope, data_dir, connstring);
    let Some((program, args)) = argv.split_first() else {
        return Err(Error::StartFailed(format!(
            "method {} has no command",
            method.name
        )));
    };
    let mut command = tools.run_as.command(program);
    command.args(args);
    if let Some(pgpass) = pgpass {
        command.env("PGPASSFILE", pgpass);
    }
    run_to_completion(command, program, timeout)
        .await
        .map(|_| ())
}

/// How to create a replica: the configured methods in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaMethod {
    Basebackup(Box<BasebackupOptions>),
    Custom(CustomReplicaMethod),
}

/// Tries each method in order against `source` into `data_dir` (these override the ones in
/// the basebackup options); the first success wins and its name is returned. On total failure
/// the data directory is wiped (the next cycle retries) and the last error returned.
pub async fn create_replica(
    tools: &Tools,
    methods: &[ReplicaMethod],
    scope: &str,
    data_dir: &Path,
    source: Option<&ConnInfo>,
    pgpass: Option<&Path>,
    timeout: Duration,
) -> Result<String> {
    let mut last_error = None;
    for method in methods {
        let outcome = match method {
            ReplicaMethod::Basebackup(options) => {
                // pg_basebackup needs a source: skipped when cloning without a leader.
                let Some(source) = source else { continue };
                let options = BasebackupOptions {
                    source: source.clone(),
                    data_dir: data_dir.to_owned(),
                    ..options.as_ref().clone()
                };
                pg_basebackup(tools, &options)
                    .await
                    .map(|()| "basebackup".to_owned())
            }
            ReplicaMethod::Custom(custom) if source.is_none() && !custom.no_leader => continue,
            ReplicaMethod::Custom(custom) => {
                let connstring = source.map(ConnInfo::render);
                run_custom_method(
                    tools,
                    custom,
                    scope,
                    data_dir,
                    connstring.as_deref(),
                    pgpass,
                    timeout,
                )
                .await
                .map(|()| custom.name.clone())
            }
        };
        match outcome {
            Ok(name) => return Ok(name),
            Err(error) => last_error = Some(error),
        }
    }
    files::clear_dir(data_dir)?;
    Err(Error::AllMethodsFailed(Box::new(
        last_error
            .unwrap_or_else(|| Error::StartFailed("no replica creation method applies".into())),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn method(no_params: bool) -> CustomReplicaMethod {
        CustomReplicaMethod {
            name: "pgbackrest".into(),
            command: vec![
                "/usr/bin/pgbackrest".into(),
                "--stanza=main".into(),
                "restore".into(),
            ],
            keep_data: true,
            no_params,
            no_leader: true,
            params: vec![("delta".into(), "y".into())],
        }
    }

    #[test]
    fn custom_method_argument_contract() {
        assert_eq!(
            custom_method_argv(
                &method(false),
                "batman",
                Path::new("/data/pg"),
                Some("host=n2 port=5432")
            ),
            [
                "/usr/bin/pgbackrest",
                "--stanza=main",
                "restore",
                "--scope=batman",
                "--role=replica",
                "--datadir=/data/pg",
                "--connstring=host=n2 port=5432",
                "--delta=y",
            ]
        );
        assert_eq!(
            custom_method_argv(&method(false), "batman", Path::new("/data/pg"), None)[6],
            "--connstring="
        );
        assert_eq!(
            custom_method_argv(&method(true), "batman", Path::new("/data/pg"), Some("x")),
            ["/usr/bin/pgbackrest", "--stanza=main", "restore"]
        );
    }
}
