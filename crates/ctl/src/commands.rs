//! One function per command: read the cluster, check the request against it, confirm, act,
//! report — in patronictl's words where it has them.

use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::args::{CtlArgs, CtlCommand, Format, RoleFilter};
use crate::cluster::{ClusterState, Context, host_port};
use crate::config_edit;
use crate::table::Table;
use crate::{Result, failed, usage};

/// How long a member may take to answer a switchover or failover (it waits for the new
/// primary before answering).
const SWITCHOVER_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a member may take to answer any other request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `reinit --wait` and the switchover fallback wait.
const WAIT_TIMEOUT: Duration = Duration::from_secs(300);

/// patronictl takes `restart CLUSTER [MEMBERS]`; a first word that is not the scope is taken
/// as a member, so `restart n2` works too.
fn cluster_or_member(
    ctx: &Context,
    cluster: Option<String>,
    members: &mut Vec<String>,
) -> Option<String> {
    match cluster {
        Some(name) if name != ctx.config.scope => {
            members.insert(0, name);
            None
        }
        other => other,
    }
}

pub async fn dispatch(args: CtlArgs) -> Result<()> {
    let ctx = Context::open(&args.config, &args.endpoints)?;
    match args.command {
        CtlCommand::List { cluster, format } => {
            ctx.check_cluster(cluster.as_deref())?;
            list(&ctx, format).await
        }
        CtlCommand::Topology { cluster } => {
            ctx.check_cluster(cluster.as_deref())?;
            topology(&ctx).await
        }
        CtlCommand::Switchover {
            cluster,
            leader,
            candidate,
            scheduled,
            force,
        } => {
            ctx.check_cluster(cluster.as_deref())?;
            switchover(&ctx, leader, candidate, scheduled, force).await
        }
        CtlCommand::Failover {
            cluster,
            candidate,
            force,
        } => {
            ctx.check_cluster(cluster.as_deref())?;
            failover(&ctx, candidate, force).await
        }
        CtlCommand::Restart {
            cluster,
            mut members,
            role,
            pending,
            scheduled,
            timeout,
            force,
        } => {
            let cluster = cluster_or_member(&ctx, cluster, &mut members);
            ctx.check_cluster(cluster.as_deref())?;
            let mut body = serde_json::Map::new();
            if pending {
                body.insert("restart_pending".into(), json!(true));
            }
            if let Some(scheduled) = scheduled {
                body.insert("schedule".into(), json!(scheduled));
            }
            if let Some(timeout) = timeout {
                body.insert("timeout".into(), json!(timeout));
            }
            let body = Value::Object(body);
            let state = ctx.read().await?;
            let targets = select(&state, &members, role, pending)?;
            confirm(
                &format!(
                    "Are you sure you want to restart members {}?",
                    targets.join(", ")
                ),
                force,
            )?;
            each_member(&ctx, &state, &targets, "restart", "/restart", Some(&body)).await
        }
        CtlCommand::Reload {
            cluster,
            mut members,
            role,
            force,
        } => {
            let cluster = cluster_or_member(&ctx, cluster, &mut members);
            ctx.check_cluster(cluster.as_deref())?;
            let state = ctx.read().await?;
            let targets = select(&state, &members, role, false)?;
            confirm(
                &format!(
                    "Are you sure you want to reload members {}?",
                    targets.join(", ")
                ),
                force,
            )?;
            each_member(&ctx, &state, &targets, "reload", "/reload", None).await
        }
        CtlCommand::Reinit {
            cluster,
            mut members,
            wait,
            force,
        } => {
            let cluster = cluster_or_member(&ctx, cluster, &mut members);
            ctx.check_cluster(cluster.as_deref())?;
            if members.is_empty() {
                return Err(usage("reinit needs at least one member"));
            }
            reinit(&ctx, &members, wait, force).await
        }
        CtlCommand::Pause { cluster } => {
            ctx.check_cluster(cluster.as_deref())?;
            set_pause(&ctx, true).await
        }
        CtlCommand::Resume { cluster } => {
            ctx.check_cluster(cluster.as_deref())?;
            set_pause(&ctx, false).await
        }
        CtlCommand::EditConfig {
            cluster,
            set,
            pg,
            apply,
            replace,
            quiet,
            force,
        } => {
            ctx.check_cluster(cluster.as_deref())?;
            let edits = Edits {
                set,
                pg,
                apply,
                replace,
            };
            edit_config(&ctx, edits, quiet, force).await
        }
        CtlCommand::ShowConfig { cluster } => {
            ctx.check_cluster(cluster.as_deref())?;
            let state = ctx.read().await?;
            let config = state
                .config
                .ok_or_else(|| failed("the cluster has no configuration in the store yet"))?;
            print!("{}", config_edit::to_yaml(&config));
            Ok(())
        }
        CtlCommand::History { cluster, format } => {
            ctx.check_cluster(cluster.as_deref())?;
            history(&ctx, format).await
        }
        CtlCommand::Remove { cluster, force } => {
            ctx.check_cluster(Some(&cluster))?;
            remove(&ctx, force).await
        }
        CtlCommand::Dsn {
            cluster,
            member,
            role,
        } => {
            ctx.check_cluster(cluster.as_deref())?;
            dsn(&ctx, member, role).await
        }
        CtlCommand::Version { cluster } => {
            ctx.check_cluster(cluster.as_deref())?;
            version(&ctx).await
        }
    }
}

/// Asks `question [y/N]` on the terminal unless `force`; anything but yes aborts.
fn confirm(question: &str, force: bool) -> Result<()> {
    if force {
        return Ok(());
    }
    let answer = prompt(&format!("{question} [y/N]: "))?;
    if matches!(answer.trim(), "y" | "Y" | "yes" | "Yes") {
        Ok(())
    } else {
        Err(failed("Aborted (nothing was changed)"))
    }
}

fn prompt(text: &str) -> Result<String> {
    eprint!("{text}");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    let read = std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|error| failed(format!("reading the answer: {error}")))?;
    if read == 0 {
        return Err(failed(
            "no answer on standard input (nothing was changed); pass --force to skip the confirmation",
        ));
    }
    Ok(answer.trim().to_owned())
}

/// Basic-auth credentials for the members' unsafe endpoints (`ctl.authentication`, else
/// `restapi.authentication`).
fn credentials(ctx: &Context) -> Option<(String, String)> {
    ctx.config
        .ctl_credentials()
        .map(|auth| (auth.username.clone(), auth.password.clone()))
}

fn api_url<'a>(state: &'a ClusterState, name: &str) -> Result<&'a str> {
    state
        .members
        .get(name)
        .map(|member| member.api_url.as_str())
        .ok_or_else(|| failed(format!("member {name} is not in the cluster")))
}

/// The member table of `list`.
pub fn member_table(state: &ClusterState) -> Table {
    let pending = state.members.values().any(|member| member.pending_restart);
    let tags = state.members.values().any(|member| !member.tags.is_empty());
    let mut columns = vec!["Member", "Host", "Role", "State", "TL", "Lag in MB"];
    if pending {
        columns.push("Pending restart");
    }
    if tags {
        columns.push("Tags");
    }
    let mut table = Table::new(&columns);
    let mut names: Vec<&String> = state.members.keys().collect();
    // The leader first, then the others by name.
    names.sort_by_key(|name| {
        (
            state.leader.as_deref() != Some(name.as_str()),
            name.as_str(),
        )
    });
    for name in names {
        let member = &state.members[name];
        let streaming = member.replication_state.as_deref() == Some("streaming");
        let state_word = if streaming && member.state == "running" {
            "streaming".to_owned()
        } else {
            member.state.clone()
        };
        let lag = if state.leader.as_deref() == Some(name.as_str()) {
            String::new()
        } else {
            state.lag_of(name).map_or_else(
                || "unknown".to_owned(),
                |bytes| (bytes / (1024 * 1024)).to_string(),
            )
        };
        let mut row = vec![
            name.clone(),
            state.host_of(name),
            state.role_of(name).to_owned(),
            state_word,
            member.timeline.map(|tl| tl.to_string()).unwrap_or_default(),
            lag,
        ];
        if pending {
            row.push(if member.pending_restart { "*" } else { "" }.to_owned());
        }
        if tags {
            row.push(
                member
                    .tags
                    .iter()
                    .map(|(key, value)| format!("{key}: {value}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            );
        }
        table.push(row);
    }
    table
}

fn title(state: &ClusterState) -> String {
    match &state.system_id {
        Some(id) if !id.is_empty() => format!("Cluster: {} ({id})", state.scope),
        _ => format!("Cluster: {} (uninitialized)", state.scope),
    }
}

fn footer(state: &ClusterState) -> String {
    let mut out = String::new();
    if state.paused() {
        out.push_str(" Maintenance mode: on\n");
    }
    if let Some(at) = state.scheduled_switchover() {
        out.push_str(&format!(" Switchover scheduled at: {at}\n"));
    }
    out
}

fn print_table(table: &Table, format: Format, title: &str, footer: &str, scope: &str) {
    match format {
        Format::Pretty => print!("{}{footer}", table.render(title)),
        Format::Tsv => print!("{}", table.tsv()),
        Format::Json | Format::Yaml => {
            let rows: Vec<Value> = table
                .objects()
                .into_iter()
                .map(|mut row| {
                    if let Value::Object(object) = &mut row {
                        object.insert("Cluster".into(), json!(scope));
                    }
                    row
                })
                .collect();
            let rows = Value::Array(rows);
            if format == Format::Json {
                println!("{rows}");
            } else {
                print!("{}", config_edit::to_yaml(&rows));
            }
        }
    }
}

async fn list(ctx: &Context, format: Format) -> Result<()> {
    let state = ctx.read().await?;
    let table = member_table(&state);
    print_table(
        &table,
        format,
        &title(&state),
        &footer(&state),
        &state.scope,
    );
    Ok(())
}

async fn topology(ctx: &Context) -> Result<()> {
    let state = ctx.read().await?;
    let mut table = member_table(&state);
    for row in &mut table.rows {
        if state.leader.as_deref() != Some(row[0].as_str()) && state.leader.is_some() {
            row[0] = format!("+ {}", row[0]);
        }
    }
    print!("{}{}", table.render(&title(&state)), footer(&state));
    Ok(())
}

async fn switchover(
    ctx: &Context,
    leader: Option<String>,
    candidate: Option<String>,
    scheduled: Option<String>,
    force: bool,
) -> Result<()> {
    let state = ctx.read().await?;
    let current = state
        .leader
        .clone()
        .ok_or_else(|| failed("the cluster has no leader; use failover --candidate"))?;
    if let Some(leader) = &leader
        && *leader != current
    {
        return Err(failed(format!(
            "{leader} is not the leader; the leader is {current}"
        )));
    }
    if let Some(candidate) = &candidate {
        if *candidate == current {
            return Err(failed(format!("{candidate} is already the leader")));
        }
        api_url(&state, candidate)?;
    } else if state.members.len() < 2 {
        return Err(failed("there is no other member to switch over to"));
    }
    confirm(
        &format!(
            "Are you sure you want to switchover cluster {}, demoting current leader {current}{}?",
            state.scope,
            scheduled
                .as_deref()
                .map(|at| format!(" at {at}"))
                .unwrap_or_default()
        ),
        force,
    )?;
    let mut body = json!({"leader": current});
    if let Some(candidate) = &candidate {
        body["candidate"] = json!(candidate);
    }
    if let Some(at) = &scheduled {
        body["scheduled_at"] = json!(at);
    }
    let started = Instant::now();
    let reply = ctx
        .rest
        .request(
            api_url(&state, &current)?,
            "POST",
            "/switchover",
            Some(&body),
            credentials(ctx).as_ref(),
            SWITCHOVER_TIMEOUT,
        )
        .await;
    match reply {
        Ok(reply) if reply.status == 200 || reply.status == 202 => {
            println!("{}", reply.body.trim());
            if reply.status == 200 {
                println!("Switchover took {:.2?}", started.elapsed());
                list(ctx, Format::Pretty).await?;
            }
            Ok(())
        }
        Ok(reply) => Err(failed(format!(
            "switchover failed, status code={}, ({})",
            reply.status,
            reply.body.trim()
        ))),
        Err(error) => {
            // The leader's API is unreachable: ask through the store, as patronictl does.
            eprintln!("The leader's REST API did not answer ({error}); writing the failover key");
            let mut key = json!({"leader": current});
            if let Some(candidate) = &candidate {
                key["member"] = json!(candidate);
            }
            if let Some(at) = &scheduled {
                key["scheduled_at"] = json!(at);
            }
            put_failover_key(ctx, &key).await?;
            if scheduled.is_some() {
                println!("Switchover scheduled");
                return Ok(());
            }
            wait_for_new_leader(ctx, &current).await
        }
    }
}

async fn put_failover_key(ctx: &Context, key: &Value) -> Result<()> {
    use dcs::KvBackend;
    let written = ctx
        .store
        .put_if(
            &ctx.keys.failover(),
            dcs::Expect::Absent,
            key.to_string().into(),
            0,
        )
        .await
        .map_err(|error| failed(format!("cannot write the failover key: {error}")))?;
    if written {
        Ok(())
    } else {
        Err(failed(
            "another switchover or failover is already in progress or scheduled",
        ))
    }
}

async fn wait_for_new_leader(ctx: &Context, old: &str) -> Result<()> {
    let deadline = Instant::now() + WAIT_TIMEOUT;
    loop {
        let state = ctx.read().await?;
        if let Some(leader) = &state.leader
            && leader != old
        {
            println!("Successfully switched over to \"{leader}\"");
            return list(ctx, Format::Pretty).await;
        }
        if Instant::now() > deadline {
            return Err(failed(format!(
                "no new leader within {WAIT_TIMEOUT:?}; the failover key stays in place"
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn failover(ctx: &Context, candidate: Option<String>, force: bool) -> Result<()> {
    let candidate = candidate.ok_or_else(|| usage("failover needs --candidate"))?;
    let state = ctx.read().await?;
    api_url(&state, &candidate)?;
    if state.leader.as_deref() == Some(candidate.as_str()) {
        return Err(failed(format!("{candidate} is already the leader")));
    }
    confirm(
        &format!(
            "Are you sure you want to failover cluster {}{}, promoting {candidate}?",
            state.scope,
            state
                .leader
                .as_deref()
                .map(|leader| format!(", demoting current leader {leader}"))
                .unwrap_or_default()
        ),
        force,
    )?;
    // The leader's API coordinates when there is a leader; otherwise the candidate's.
    let target = state
        .leader
        .as_deref()
        .filter(|leader| state.members.contains_key(*leader))
        .unwrap_or(&candidate);
    let reply = ctx
        .rest
        .request(
            api_url(&state, target)?,
            "POST",
            "/failover",
            Some(&json!({"candidate": candidate})),
            credentials(ctx).as_ref(),
            SWITCHOVER_TIMEOUT,
        )
        .await
        .map_err(|error| failed(format!("failover request to {target}: {error}")))?;
    if reply.status == 200 || reply.status == 202 {
        println!("{}", reply.body.trim());
        list(ctx, Format::Pretty).await
    } else {
        Err(failed(format!(
            "failover failed, status code={}, ({})",
            reply.status,
            reply.body.trim()
        )))
    }
}

/// The members a restart or reload applies to.
fn select(
    state: &ClusterState,
    members: &[String],
    role: Option<RoleFilter>,
    pending: bool,
) -> Result<Vec<String>> {
    for name in members {
        if !state.members.contains_key(name) {
            return Err(failed(format!("member {name} is not in the cluster")));
        }
    }
    let chosen: Vec<String> = state
        .members
        .iter()
        .filter(|(name, _)| members.is_empty() || members.contains(name))
        .filter(|(name, _)| {
            let leads = state.leader.as_deref() == Some(name.as_str());
            match role {
                None | Some(RoleFilter::Any) => true,
                Some(RoleFilter::Leader | RoleFilter::Primary) => leads,
                Some(RoleFilter::Replica) => !leads,
            }
        })
        .filter(|(_, member)| !pending || member.pending_restart)
        .map(|(name, _)| name.clone())
        .collect();
    if chosen.is_empty() {
        return Err(failed("no member matches"));
    }
    Ok(chosen)
}

/// POSTs `path` to each member; prints one line per member; fails if any did.
async fn each_member(
    ctx: &Context,
    state: &ClusterState,
    targets: &[String],
    what: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<()> {
    let mut failures = 0;
    for name in targets {
        let reply = ctx
            .rest
            .request(
                api_url(state, name)?,
                "POST",
                path,
                body,
                credentials(ctx).as_ref(),
                REQUEST_TIMEOUT,
            )
            .await;
        match reply {
            Ok(reply) if (200..300).contains(&reply.status) => {
                println!("Success: {what} on member {name}: {}", reply.body.trim());
            }
            Ok(reply) => {
                failures += 1;
                println!(
                    "Failed: {what} for member {name}, status code={}, ({})",
                    reply.status,
                    reply.body.trim()
                );
            }
            Err(error) => {
                failures += 1;
                println!("Failed: {what} for member {name}: {error}");
            }
        }
    }
    if failures == 0 {
        Ok(())
    } else {
        Err(failed(format!("{what} failed on {failures} member(s)")))
    }
}

async fn reinit(ctx: &Context, members: &[String], wait: bool, force: bool) -> Result<()> {
    let state = ctx.read().await?;
    for name in members {
        api_url(&state, name)?;
        if state.leader.as_deref() == Some(name.as_str()) {
            return Err(failed(format!(
                "{name} is the leader; only replicas can be reinitialized"
            )));
        }
    }
    confirm(
        &format!(
            "Are you sure you want to reinitialize members {}? Their data directories are replaced.",
            members.join(", ")
        ),
        force,
    )?;
    let body = json!({"force": force});
    each_member(
        ctx,
        &state,
        members,
        "reinitialize",
        "/reinitialize",
        Some(&body),
    )
    .await?;
    if wait {
        for name in members {
            wait_running(ctx, &state, name).await?;
            println!("{name}: running again");
        }
    }
    Ok(())
}

async fn wait_running(ctx: &Context, state: &ClusterState, name: &str) -> Result<()> {
    let url = api_url(state, name)?;
    let deadline = Instant::now() + WAIT_TIMEOUT;
    // Give the member a moment to leave `running` first.
    tokio::time::sleep(Duration::from_secs(1)).await;
    loop {
        if let Ok(reply) = ctx
            .rest
            .request(url, "GET", "/patroni", None, None, REQUEST_TIMEOUT)
            .await
            && let Ok(status) = serde_json::from_str::<Value>(&reply.body)
            && status["state"] == "running"
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(failed(format!(
                "{name} is not running after {WAIT_TIMEOUT:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn set_pause(ctx: &Context, pause: bool) -> Result<()> {
    let state = ctx.read().await?;
    if state.paused() == pause {
        return Err(failed(if pause {
            "Cluster is already paused"
        } else {
            "Cluster is not paused"
        }));
    }
    let mut config = state.config.clone().unwrap_or_else(|| json!({}));
    config_edit::merge_patch(
        &mut config,
        &json!({"pause": if pause { json!(true) } else { Value::Null }}),
    );
    ctx.write_config(&config, state.config_revision).await?;
    println!(
        "Success: cluster management is {}",
        if pause { "paused" } else { "resumed" }
    );
    Ok(())
}

/// The requested edits of `edit-config`.
struct Edits {
    set: Vec<String>,
    pg: Vec<String>,
    apply: Option<std::path::PathBuf>,
    replace: Option<std::path::PathBuf>,
}

fn read_yaml(path: &std::path::Path) -> Result<Value> {
    let text = if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .map_err(|error| usage(format!("reading standard input: {error}")))?;
        text
    } else {
        std::fs::read_to_string(path)
            .map_err(|error| usage(format!("reading {}: {error}", path.display())))?
    };
    serde_saphyr::from_str::<Value>(&text)
        .map_err(|error| usage(format!("{}: not valid YAML: {error}", path.display())))
}

async fn edit_config(ctx: &Context, edits: Edits, quiet: bool, force: bool) -> Result<()> {
    let state = ctx.read().await?;
    let old = state.config.clone().unwrap_or_else(|| json!({}));
    let mut new = match &edits.replace {
        Some(path) => read_yaml(path)?,
        None => old.clone(),
    };
    if let Some(path) = &edits.apply {
        config_edit::merge_patch(&mut new, &read_yaml(path)?);
    }
    for assignment in &edits.set {
        config_edit::apply_set(&mut new, assignment).map_err(usage)?;
    }
    for assignment in &edits.pg {
        config_edit::apply_pg(&mut new, assignment).map_err(usage)?;
    }
    if edits.set.is_empty()
        && edits.pg.is_empty()
        && edits.apply.is_none()
        && edits.replace.is_none()
    {
        new = edit_in_editor(&old)?;
    }
    let defaults = ctx.config.dynamic_defaults();
    config_edit::validate(
        &new,
        (
            defaults.ttl.as_secs_f64(),
            defaults.loop_wait.as_secs_f64(),
            defaults.retry_timeout.as_secs_f64(),
        ),
    )
    .map_err(|reason| usage(format!("the new configuration is refused: {reason}")))?;
    if new == old {
        println!("Not changed");
        return Ok(());
    }
    if !quiet {
        print!(
            "{}",
            config_edit::diff(&config_edit::to_yaml(&old), &config_edit::to_yaml(&new))
        );
    }
    confirm("Apply these changes?", force)?;
    ctx.write_config(&new, state.config_revision).await?;
    println!("Configuration changed");
    Ok(())
}

fn edit_in_editor(config: &Value) -> Result<Value> {
    let editor = std::env::var("EDITOR")
        .or_else(|_| std::env::var("VISUAL"))
        .unwrap_or_else(|_| "vi".to_owned());
    let file = tempfile::Builder::new()
        .prefix("pgwarden-config-")
        .suffix(".yaml")
        .tempfile()
        .map_err(|error| failed(format!("temporary file: {error}")))?;
    std::fs::write(file.path(), config_edit::to_yaml(config))
        .map_err(|error| failed(format!("temporary file: {error}")))?;
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(file.path())
        .status()
        .map_err(|error| failed(format!("starting the editor {editor}: {error}")))?;
    if !status.success() {
        return Err(failed(format!(
            "the editor {editor} exited with {status}; nothing was changed"
        )));
    }
    read_yaml(file.path())
}

async fn history(ctx: &Context, format: Format) -> Result<()> {
    let state = ctx.read().await?;
    let mut table = Table::new(&["TL", "LSN", "Reason", "Timestamp", "New Leader"]);
    for entry in &state.history {
        table.push(vec![
            entry.0.to_string(),
            entry.1.to_string(),
            entry.2.clone(),
            entry.3.clone(),
            entry.4.clone(),
        ]);
    }
    print_table(&table, format, "", "", &state.scope);
    Ok(())
}

async fn remove(ctx: &Context, force: bool) -> Result<()> {
    use dcs::KvBackend;
    let state = ctx.read().await?;
    if !force {
        let name = prompt("Please confirm the cluster name to remove: ")?;
        if name != state.scope {
            return Err(failed(
                "Cluster names specified do not match (nothing was changed)",
            ));
        }
        let phrase = format!(
            "You are about to remove all information in the store for {}, please type: \"Yes I am aware\": ",
            state.scope
        );
        if prompt(&phrase)? != "Yes I am aware" {
            return Err(failed(
                "You did not exactly type \"Yes I am aware\" (nothing was changed)",
            ));
        }
        if let Some(leader) = &state.leader {
            let typed = prompt(
                "This cluster currently is healthy. Please specify the leader name to continue: ",
            )?;
            if typed != *leader {
                return Err(failed(
                    "You did not specify the current leader of the cluster (nothing was changed)",
                ));
            }
        }
    }
    let (_, kvs) = ctx
        .store
        .get_prefix(ctx.keys.prefix())
        .await
        .map_err(|error| failed(format!("cannot read the cluster: {error}")))?;
    for kv in &kvs {
        ctx.store
            .delete_if(&kv.key, None)
            .await
            .map_err(|error| failed(format!("deleting {}: {error}", kv.key)))?;
    }
    println!("Removed {} keys of cluster {}", kvs.len(), state.scope);
    Ok(())
}

async fn dsn(ctx: &Context, member: Option<String>, role: Option<RoleFilter>) -> Result<()> {
    let state = ctx.read().await?;
    let name = match (member, role) {
        (Some(member), _) => member,
        (None, Some(RoleFilter::Replica)) => state
            .members
            .iter()
            .find(|(name, member)| {
                state.leader.as_deref() != Some(name.as_str()) && member.state == "running"
            })
            .map(|(name, _)| name.clone())
            .ok_or_else(|| failed("no running replica"))?,
        (None, Some(RoleFilter::Any)) => state
            .members
            .keys()
            .next()
            .cloned()
            .ok_or_else(|| failed("the cluster has no members"))?,
        (None, _) => state
            .leader
            .clone()
            .ok_or_else(|| failed("the cluster has no leader"))?,
    };
    let member = state
        .members
        .get(&name)
        .ok_or_else(|| failed(format!("member {name} is not in the cluster")))?;
    let address = host_port(&member.conn_url);
    let (host, port) = address.rsplit_once(':').ok_or_else(|| {
        failed(format!(
            "member {name} has no host:port in {}",
            member.conn_url
        ))
    })?;
    println!("host={host} port={port}");
    Ok(())
}

async fn version(ctx: &Context) -> Result<()> {
    println!("pgwarden ctl version {}", env!("CARGO_PKG_VERSION"));
    let state = ctx.read().await?;
    for (name, member) in &state.members {
        let reply = ctx
            .rest
            .request(
                &member.api_url,
                "GET",
                "/patroni",
                None,
                None,
                REQUEST_TIMEOUT,
            )
            .await;
        match reply
            .ok()
            .and_then(|reply| serde_json::from_str::<Value>(&reply.body).ok())
        {
            Some(status) => {
                let pgwarden = status["patroni"]["version"]
                    .as_str()
                    .unwrap_or("?")
                    .to_owned();
                let pg = status["server_version"]
                    .as_u64()
                    .map(|v| format!("{}.{}", v / 10000, v % 10000))
                    .unwrap_or_else(|| "?".to_owned());
                println!("{name}: pgwarden {pgwarden} PostgreSQL {pg}");
            }
            None => println!("{name}: unreachable ({})", member.api_url),
        }
    }
    Ok(())
}
