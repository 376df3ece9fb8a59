//! PostgreSQL 15 for real: initdb, start and probe a primary; clone a streaming replica with
//! pg_basebackup; promote it; pg_rewind the old primary back as its replica; notice a
//! `kill -9` of the postmaster at once. Runs PostgreSQL as the `postgres` OS user when the
//! test runs as root. Every postmaster started is stopped by a guard.

use std::collections::BTreeMap;
use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use postgres::bootstrap::{
    BasebackupOptions, CustomReplicaMethod, InitdbOptions, ReplicaMethod, create_replica, initdb,
    pg_basebackup,
};
use postgres::config::{ConnInfo, RecoverySettings, ServerSettings, effective_parameters};
use postgres::controldata::{ClusterState, read_controldata};
use postgres::datadir::write_config;
use postgres::postmaster::postmaster_alive;
use postgres::rewind::{RewindOptions, crash_recovery_single_user, pg_rewind};
use postgres::timeline::{LocalPosition, diverged};
use postgres::{AdoptedPostmaster, ConnectTarget, Postmaster, Probe, RunAs, StopMode, Tools};

const BIN_DIR: &str = "/usr/lib/postgresql/15/bin";
const SUPERUSER: &str = "postgres";
const REPLICATION_USER: &str = "replicator";
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

fn tools() -> Result<Tools> {
    Ok(Tools::new(BIN_DIR, RunAs::configured("postgres")?))
}

/// A port no one listens on right now (bound from 0, then released).
fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// A temporary root the PostgreSQL user can traverse (tempdir makes it 0700 for root).
fn test_root() -> Result<tempfile::TempDir> {
    let root = tempfile::Builder::new()
        .prefix("pgwarden-pg-")
        .tempdir_in("/tmp")?;
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755))?;
    Ok(root)
}

async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One PostgreSQL instance under test.
struct Node {
    name: String,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    port: u16,
    postmaster: Option<Postmaster>,
}

impl Node {
    fn new(root: &Path, name: &str, tools: &Tools) -> Result<Node> {
        let socket_dir = root.join(format!("{name}-socket"));
        tools.run_as.prepare_dir(&socket_dir, 0o755)?;
        Ok(Node {
            name: name.to_owned(),
            data_dir: root.join(format!("{name}-data")),
            socket_dir,
            port: free_port()?,
            postmaster: None,
        })
    }

    fn log_file(&self) -> PathBuf {
        self.socket_dir.with_file_name(format!("{}.log", self.name))
    }

    fn print_log(&self) {
        let log = std::fs::read_to_string(self.log_file()).unwrap_or_default();
        println!("--- {} log ---\n{log}", self.name);
    }

    fn target(&self, user: &str) -> ConnectTarget {
        ConnectTarget {
            socket_dir: self.socket_dir.clone(),
            port: self.port,
            user: user.to_owned(),
            password: None,
            dbname: "postgres".to_owned(),
            connect_timeout: Duration::from_secs(5),
        }
    }

    fn conninfo(&self, user: &str, application_name: Option<&str>) -> ConnInfo {
        ConnInfo {
            host: self.socket_dir.display().to_string(),
            port: self.port,
            user: user.to_owned(),
            dbname: "postgres".to_owned(),
            application_name: application_name.map(str::to_owned),
            ..ConnInfo::default()
        }
    }

    fn settings(&self, upstream: Option<&Node>) -> ServerSettings {
        ServerSettings {
            listen_addresses: "127.0.0.1".to_owned(),
            port: self.port,
            unix_socket_directory: self.socket_dir.clone(),
            cluster_name: "pgwarden-test".to_owned(),
            dynamic_parameters: BTreeMap::from([("max_connections".into(), "30".into())]),
            local_parameters: BTreeMap::from([
                ("shared_buffers".into(), "16MB".into()),
                ("fsync".into(), "off".into()),
                ("wal_sender_timeout".into(), "5s".into()),
                ("wal_receiver_status_interval".into(), "1s".into()),
            ]),
            synchronous_standby_names: None,
            hba_file: self.data_dir.join("pg_hba.conf"),
            ident_file: None,
            replica_minimums: BTreeMap::new(),
            recovery: upstream.map(|upstream| RecoverySettings {
                primary_conninfo: Some(upstream.conninfo(REPLICATION_USER, Some(&self.name))),
                primary_slot_name: Some(self.name.clone()),
                ..RecoverySettings::default()
            }),
        }
    }

    fn write_config(&self, tools: &Tools, upstream: Option<&Node>) -> Result<()> {
        let hba = [
            "local all all trust",
            "local replication all trust",
            "host all all 127.0.0.1/32 trust",
            "host replication all 127.0.0.1/32 trust",
        ]
        .map(String::from);
        write_config(
            &self.data_dir,
            &self.settings(upstream),
            &hba,
            &tools.run_as,
        )?;
        Ok(())
    }

    async fn start(&mut self, tools: &Tools, upstream: Option<&Node>) -> Result<()> {
        let options = effective_parameters(&self.settings(upstream)).command_line;
        let mut postmaster =
            Postmaster::start(tools, &self.data_dir, &options, Some(&self.log_file()))?;
        postmaster.stop_on_drop();
        postmaster
            .wait_ready(&self.target(SUPERUSER), STEP_TIMEOUT)
            .await
            .with_context(|| format!("start {}", self.name))?;
        self.postmaster = Some(postmaster);
        Ok(())
    }

    async fn stop(&mut self, mode: StopMode) -> Result<()> {
        if let Some(mut postmaster) = self.postmaster.take() {
            postmaster.stop(mode, STEP_TIMEOUT).await?;
        }
        Ok(())
    }

    async fn probe(&self) -> Result<Probe> {
        Ok(Probe::connect(&self.target(SUPERUSER)).await?)
    }

    async fn count_rows(&self) -> Result<i64> {
        let probe = self.probe().await?;
        let row = probe
            .client()
            .query_one("SELECT count(*) FROM history", &[])
            .await?;
        Ok(row.get(0))
    }
}

async fn init_primary(root: &Path, tools: &Tools, name: &str) -> Result<Node> {
    let mut node = Node::new(root, name, tools)?;
    initdb(
        tools,
        &InitdbOptions {
            data_dir: node.data_dir.clone(),
            superuser: SUPERUSER.to_owned(),
            pwfile: None,
            data_checksums: true,
            extra: vec![("encoding".into(), Some("UTF8".into()))],
            timeout: STEP_TIMEOUT,
        },
    )
    .await?;
    let mode = std::fs::metadata(&node.data_dir)?.permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "data directory mode");
    node.write_config(tools, None)?;
    node.start(tools, None).await?;
    Ok(node)
}

async fn is_streaming(node: &Node) -> Option<postgres::ServerFacts> {
    let facts = node.probe().await.ok()?.facts().await.ok()?;
    let streaming = facts
        .wal_receiver
        .as_ref()
        .is_some_and(|receiver| receiver.status == "streaming");
    (facts.in_recovery && streaming).then_some(facts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_replica_promote_rewind() -> Result<()> {
    let tools = tools()?;
    let root = test_root()?;

    // Phase 1: a new cluster, probed as a primary.
    let mut n1 = init_primary(root.path(), &tools, "n1").await?;
    let primary = n1.probe().await?;
    let facts = primary.facts().await?;
    assert!(!facts.in_recovery);
    assert_eq!(facts.timeline, Some(1));
    assert!(facts.server_version >= 150_000, "{}", facts.server_version);
    assert!(facts.write_lsn.is_some() && facts.flush_lsn.is_some());
    assert!(facts.received_lsn.is_none() && facts.wal_receiver.is_none());
    primary
        .ensure_replication_user(REPLICATION_USER, Some("s3cr'et"))
        .await?;
    assert!(primary.ensure_physical_slot("n2").await?);
    assert!(
        !primary.ensure_physical_slot("n2").await?,
        "second create is a no-op"
    );
    primary
        .client()
        .batch_execute(
            "CREATE TABLE history (id serial PRIMARY KEY, note text);
             INSERT INTO history (note) SELECT 'row ' || g FROM generate_series(1, 100) g;",
        )
        .await?;

    // Phase 2: clone n2 with pg_basebackup; it streams from n1 through slot n2.
    let mut n2 = Node::new(root.path(), "n2", &tools)?;
    pg_basebackup(
        &tools,
        &BasebackupOptions {
            data_dir: n2.data_dir.clone(),
            source: n1.conninfo(REPLICATION_USER, Some("n2")),
            extra: vec![("checkpoint".into(), Some("fast".into()))],
            attempts: 2,
            retry_delay: Duration::from_secs(1),
            timeout: STEP_TIMEOUT,
        },
    )
    .await?;
    // pg_control of the clone records the primary's settings a hot standby must match.
    let cloned = read_controldata(&tools, &n2.data_dir).await?;
    assert_eq!(cloned.recorded_settings.get("max_connections"), Some(&30));
    assert_eq!(cloned.system_identifier, facts.system_identifier);
    n2.write_config(&tools, Some(&n1))?;
    assert!(n2.data_dir.join("standby.signal").exists());
    n2.start(&tools, Some(&n1)).await?;
    let replica_facts = eventually("n2 streaming", STEP_TIMEOUT, || is_streaming(&n2)).await?;
    assert_eq!(replica_facts.timeline, Some(1));
    assert_eq!(replica_facts.system_identifier, facts.system_identifier);
    let receiver = replica_facts
        .wal_receiver
        .clone()
        .unwrap_or_else(|| unreachable!());
    assert_eq!(receiver.slot_name.as_deref(), Some("n2"));

    primary
        .client()
        .batch_execute("INSERT INTO history (note) VALUES ('after clone')")
        .await?;
    let target = primary.facts().await?.write_lsn.context("primary LSN")?;
    eventually("n2 replays the new row", STEP_TIMEOUT, || async {
        let facts = n2.probe().await.ok()?.facts().await.ok()?;
        (facts.replayed_lsn? >= target).then_some(())
    })
    .await?;
    assert_eq!(n2.count_rows().await?, 101);
    let replication = primary.facts().await?.replication;
    let row = replication
        .iter()
        .find(|row| row.application_name == "n2")
        .context("n2 in pg_stat_replication")?;
    assert_eq!(row.state.as_deref(), Some("streaming"));
    assert_eq!(row.sync_state.as_deref(), Some("async"));
    let slots = primary.slots().await?;
    assert!(
        slots
            .iter()
            .any(|slot| slot.name == "n2" && slot.active && slot.physical)
    );
    assert!(
        !primary.drop_slot("n2").await?,
        "an active slot is not dropped"
    );

    // Phase 3: promote n2 while n1 still runs, then let n1 diverge on timeline 1.
    let replica = n2.probe().await?;
    let promote_started = Instant::now();
    assert!(replica.promote(Duration::from_secs(30)).await?);
    println!("pg_promote(wait) took {:?}", promote_started.elapsed());
    let promoted = replica.facts().await?;
    assert!(!promoted.in_recovery);
    assert_eq!(promoted.timeline, Some(2));
    replica.ensure_physical_slot("n1").await?;
    // pg_rewind reads the new timeline from the source's pg_control: checkpoint first.
    replica.checkpoint().await?;
    replica
        .client()
        .batch_execute("INSERT INTO history (note) VALUES ('on timeline 2')")
        .await?;
    primary
        .client()
        .batch_execute(
            "INSERT INTO history (note) SELECT 'diverged ' || g FROM generate_series(1, 50) g;
             CHECKPOINT;",
        )
        .await?;
    drop(primary);
    n1.stop(StopMode::Fast).await?;
    let control = read_controldata(&tools, &n1.data_dir).await?;
    assert_eq!(control.cluster_state, ClusterState::ShutDown);
    assert_eq!(control.checkpoint_timeline, 1);
    assert!(control.rewind_possible(), "initdb --data-checksums");
    let history = replica.timeline_history(2).await?;
    assert_eq!(history.len(), 1);
    assert!(
        diverged(
            LocalPosition::ShutDownPrimary {
                timeline: control.checkpoint_timeline,
                checkpoint: control.checkpoint_lsn,
            },
            2,
            &history,
        ),
        "n1 wrote past the switchpoint {:?}",
        history[0].switchpoint
    );
    assert!(!postmaster_alive(&n1.data_dir)?);

    // Phase 4: pg_rewind n1 from n2 and bring it back as n2's replica on timeline 2.
    let rewind_started = Instant::now();
    pg_rewind(
        &tools,
        &RewindOptions {
            data_dir: n1.data_dir.clone(),
            source: n2.conninfo(SUPERUSER, None),
            extra: vec![("progress".into(), None)],
            timeout: STEP_TIMEOUT,
        },
    )
    .await?;
    println!("pg_rewind took {:?}", rewind_started.elapsed());
    n1.write_config(&tools, Some(&n2))?;
    n1.start(&tools, Some(&n2)).await?;
    let rejoined = eventually("n1 streaming from n2", STEP_TIMEOUT, || is_streaming(&n1))
        .await
        .inspect_err(|_| {
            n1.print_log();
            n2.print_log();
        })?;
    assert_eq!(rejoined.timeline, Some(2));
    let replayed = rejoined.replayed_lsn.context("replayed")?;
    assert!(!diverged(
        LocalPosition::Replica {
            timeline: 2,
            replayed
        },
        2,
        &history
    ));
    let target = replica.facts().await?.write_lsn.context("n2 LSN")?;
    eventually("n1 catches up with n2", STEP_TIMEOUT, || async {
        let facts = n1.probe().await.ok()?.facts().await.ok()?;
        (facts.replayed_lsn? >= target).then_some(())
    })
    .await?;
    assert_eq!(n1.count_rows().await?, 102, "the diverged rows are gone");
    let rows = replica.facts().await?.replication;
    assert!(rows.iter().any(|row| row.application_name == "n1"));

    drop(replica);
    n1.stop(StopMode::Immediate).await?;
    n2.stop(StopMode::Fast).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postmaster_crash_is_noticed_at_once() -> Result<()> {
    let tools = tools()?;
    let root = test_root()?;
    let mut node = init_primary(root.path(), &tools, "crash").await?;
    let mut postmaster = node.postmaster.take().context("running")?;
    let pid = postmaster.pid();
    assert!(postmaster_alive(&node.data_dir)?);

    let killed_at = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    let exit = tokio::time::timeout(Duration::from_secs(5), postmaster.exited()).await?;
    let noticed_after = killed_at.elapsed();
    println!("postmaster kill -9 noticed after {noticed_after:?}");
    assert_eq!(exit.signal(), Some(9));
    assert!(
        noticed_after < Duration::from_millis(500),
        "{noticed_after:?}"
    );

    // pg_control still says "in production": bring it to a clean shutdown in single-user mode
    // (what pg_rewind needs), retrying while orphaned backends still hold shared memory.
    let control = read_controldata(&tools, &node.data_dir).await?;
    assert_eq!(control.cluster_state, ClusterState::InProduction);
    assert!(control.cluster_state.needs_crash_recovery());
    eventually("single-user crash recovery", STEP_TIMEOUT, || async {
        crash_recovery_single_user(&tools, &node.data_dir, STEP_TIMEOUT)
            .await
            .ok()
    })
    .await?;
    let control = read_controldata(&tools, &node.data_dir).await?;
    assert_eq!(control.cluster_state, ClusterState::ShutDown);

    let options = effective_parameters(&node.settings(None)).command_line;
    let mut restarted =
        Postmaster::start(&tools, &node.data_dir, &options, Some(&node.log_file()))?;
    restarted.stop_on_drop();
    restarted
        .wait_ready(&node.target(SUPERUSER), STEP_TIMEOUT)
        .await?;
    node.postmaster = Some(restarted);
    assert!(!node.probe().await?.facts().await?.in_recovery);

    // An agent restart: the postmaster is no longer our child, found through its pid file.
    let mut forgotten = node.postmaster.take().context("running")?;
    let forgotten_pid = forgotten.pid();
    let adopted = AdoptedPostmaster::from_data_dir(&node.data_dir)?.context("adopted")?;
    assert_eq!(adopted.pid(), forgotten_pid);
    adopted.reload()?;
    adopted.stop(StopMode::Fast, STEP_TIMEOUT).await?;
    assert_eq!(forgotten.exited().await.signal(), None, "clean exit");
    assert!(AdoptedPostmaster::from_data_dir(&node.data_dir)?.is_none());
    let control = read_controldata(&tools, &node.data_dir).await?;
    assert_eq!(control.cluster_state, ClusterState::ShutDown);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_start_is_reported_without_waiting_out_the_timeout() -> Result<()> {
    let tools = tools()?;
    let root = test_root()?;
    let mut node = init_primary(root.path(), &tools, "badstart").await?;
    node.stop(StopMode::Fast).await?;

    let started = Instant::now();
    let mut postmaster = Postmaster::start(
        &tools,
        &node.data_dir,
        &["--shared_buffers=not-a-size".to_owned()],
        Some(&node.log_file()),
    )?;
    postmaster.stop_on_drop();
    let result = postmaster
        .wait_ready(&node.target(SUPERUSER), Duration::from_secs(60))
        .await;
    assert!(
        matches!(result, Err(postgres::Error::StartFailed(_))),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_replica_methods_follow_patronis_contract() -> Result<()> {
    let tools = tools()?;
    let root = test_root()?;
    let data_dir = root.path().join("custom-data");
    let method = |name: &str, script: &str| CustomReplicaMethod {
        name: name.to_owned(),
        command: vec!["/bin/sh".into(), "-c".into(), script.into(), "sh".into()],
        keep_data: false,
        no_params: false,
        no_leader: false,
        params: vec![("stanza".into(), "main".into())],
    };
    let failing = method("broken", "exit 3");
    // Runs as the PostgreSQL user: it can write into the 0700 data directory it owns.
    let recording = method(
        "recorder",
        &format!(
            "printf '%s\\n' \"$@\" \"$PGPASSFILE\" > {}/args",
            data_dir.display()
        ),
    );
    let source = ConnInfo {
        host: "10.0.0.2".into(),
        port: 5432,
        user: REPLICATION_USER.into(),
        dbname: "postgres".into(),
        ..ConnInfo::default()
    };
    let used = create_replica(
        &tools,
        &[
            ReplicaMethod::Custom(failing.clone()),
            ReplicaMethod::Custom(recording),
        ],
        "batman",
        &data_dir,
        Some(&source),
        Some(Path::new("/tmp/pgpass-test")),
        STEP_TIMEOUT,
    )
    .await?;
    assert_eq!(used, "recorder");
    let args = std::fs::read_to_string(data_dir.join("args"))?;
    assert_eq!(
        args.lines().collect::<Vec<_>>(),
        [
            "--scope=batman",
            "--role=replica",
            &format!("--datadir={}", data_dir.display()),
            "--connstring=user=replicator host=10.0.0.2 port=5432 dbname=postgres",
            "--stanza=main",
            "/tmp/pgpass-test",
        ]
    );

    // Every method failing wipes the data directory and reports the last error.
    let result = create_replica(
        &tools,
        &[ReplicaMethod::Custom(failing)],
        "batman",
        &data_dir,
        Some(&source),
        None,
        STEP_TIMEOUT,
    )
    .await;
    assert!(
        matches!(result, Err(postgres::Error::AllMethodsFailed(_))),
        "{result:?}"
    );
    assert!(postgres::files::is_empty_dir(&data_dir)?);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_ctl_promote_and_slots_on_a_replica() -> Result<()> {
    let tools = tools()?;
    let root = test_root()?;
    let mut n1 = init_primary(root.path(), &tools, "p1").await?;
    let primary = n1.probe().await?;
    primary
        .ensure_replication_user(REPLICATION_USER, None)
        .await?;
    primary.ensure_physical_slot("p2").await?;

    let mut n2 = Node::new(root.path(), "p2", &tools)?;
    pg_basebackup(
        &tools,
        &BasebackupOptions {
            data_dir: n2.data_dir.clone(),
            source: n1.conninfo(REPLICATION_USER, Some("p2")),
            extra: vec![],
            attempts: 1,
            retry_delay: Duration::ZERO,
            timeout: STEP_TIMEOUT,
        },
    )
    .await?;
    n2.write_config(&tools, Some(&n1))?;
    n2.start(&tools, Some(&n1)).await?;
    let facts = eventually("p2 streaming", STEP_TIMEOUT, || is_streaming(&n2)).await?;

    // A slot kept on the replica for a cascading member, advanced as Patroni does.
    let replica = n2.probe().await?;
    assert!(replica.ensure_physical_slot("p3").await?);
    let replayed = facts.replayed_lsn.context("replayed")?;
    replica.advance_slot("p3", replayed).await?;
    let slot = replica
        .slots()
        .await?
        .into_iter()
        .find(|slot| slot.name == "p3")
        .context("slot p3")?;
    assert!(slot.physical && !slot.active);
    assert!(
        slot.restart_lsn.is_some_and(|lsn| lsn >= replayed),
        "{slot:?}"
    );
    assert!(replica.drop_slot("p3").await?);
    assert!(!replica.drop_slot("p3").await?, "already gone");

    let promote_started = Instant::now();
    postgres::postmaster::pg_ctl_promote(&tools, &n2.data_dir, Duration::from_secs(30)).await?;
    println!("pg_ctl promote -w took {:?}", promote_started.elapsed());
    let promoted = replica.facts().await?;
    assert!(!promoted.in_recovery);
    assert_eq!(promoted.timeline, Some(2));

    // The same once more with the polling promotion, on a fresh clone of the new primary.
    let mut n3 = Node::new(root.path(), "p3", &tools)?;
    replica
        .ensure_replication_user(REPLICATION_USER, None)
        .await?;
    replica.ensure_physical_slot("p3").await?;
    // Through create_replica this time: a no-leader-only custom method is skipped, then
    // basebackup clones from the source given here.
    let methods = [
        ReplicaMethod::Custom(CustomReplicaMethod {
            name: "archive-only".into(),
            command: vec!["/bin/false".into()],
            keep_data: false,
            no_params: true,
            no_leader: false,
            params: vec![],
        }),
        ReplicaMethod::Basebackup(Box::new(BasebackupOptions {
            data_dir: PathBuf::new(),
            source: ConnInfo::default(),
            extra: vec![("checkpoint".into(), Some("fast".into()))],
            attempts: 1,
            retry_delay: Duration::ZERO,
            timeout: STEP_TIMEOUT,
        })),
    ];
    let used = create_replica(
        &tools,
        &methods[1..],
        "pgwarden-test",
        &n3.data_dir,
        Some(&n2.conninfo(REPLICATION_USER, Some("p3"))),
        None,
        STEP_TIMEOUT,
    )
    .await?;
    assert_eq!(used, "basebackup");
    let skipped = create_replica(
        &tools,
        &methods[..1],
        "pgwarden-test",
        &root.path().join("never"),
        None,
        None,
        STEP_TIMEOUT,
    )
    .await;
    assert!(skipped.is_err(), "no method applies without a leader");
    n3.write_config(&tools, Some(&n2))?;
    n3.start(&tools, Some(&n2)).await?;
    eventually("p3 streaming", STEP_TIMEOUT, || is_streaming(&n3)).await?;
    let third = n3.probe().await?;
    let promote_started = Instant::now();
    third.promote_and_poll(Duration::from_secs(30)).await?;
    println!(
        "pg_promote(false) + polling took {:?}",
        promote_started.elapsed()
    );
    let facts = third.facts().await?;
    assert!(!facts.in_recovery);
    assert_eq!(facts.timeline, Some(3));
    drop(third);
    n3.stop(StopMode::Immediate).await?;

    drop(primary);
    drop(replica);
    n1.stop(StopMode::Immediate).await?;
    n2.stop(StopMode::Immediate).await?;
    Ok(())
}
