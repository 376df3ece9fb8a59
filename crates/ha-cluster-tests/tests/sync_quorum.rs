//! Quorum commit (`synchronous_mode: quorum`) with three members and real PostgreSQL: the
//! primary lists both replicas as `ANY 1 (a,b)` in `synchronous_standby_names`, `/sync`
//! carries the voters and `quorum: 2`, and after a kill -9 of the primary while a writer is
//! committing, the new primary (a voter that heard from the other voter) has every commit the
//! old one acknowledged.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ha_cluster_tests::writer::{http_patch, http_post};
use ha_cluster_tests::{Cluster, ClusterOptions, eventually, http_get_text, sync_key};

async fn connect(port: u16) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(port)
        .user("postgres")
        .password("secret")
        .dbname("postgres")
        .connect_timeout(Duration::from_secs(2))
        .connect(tokio_postgres::NoTls)
        .await?;
    tokio::spawn(connection);
    Ok(client)
}

/// Commits one id after another on `client` until an insert fails or takes longer than
/// `timeout`; the ids acknowledged so far, and the writer's task.
fn spawn_writer(
    client: tokio_postgres::Client,
    timeout: Duration,
) -> (Arc<Mutex<Vec<i32>>>, tokio::task::JoinHandle<()>) {
    let acknowledged = Arc::new(Mutex::new(Vec::<i32>::new()));
    let ids = acknowledged.clone();
    let writer = tokio::spawn(async move {
        for id in 0.. {
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&id];
            let insert = client.execute("INSERT INTO acknowledged VALUES ($1)", &params);
            match tokio::time::timeout(timeout, insert).await {
                Ok(Ok(_)) => ids.lock().map(|mut ids| ids.push(id)).unwrap_or(()),
                _ => break,
            }
        }
    });
    (acknowledged, writer)
}

/// The acknowledged ids that the `acknowledged` table on the server at `port` lacks.
async fn missing_on(port: u16, acknowledged: &[i32]) -> anyhow::Result<Vec<i32>> {
    let present = connect(port)
        .await?
        .query("SELECT id FROM acknowledged", &[])
        .await?
        .iter()
        .map(|row| row.get::<_, i32>(0))
        .collect::<std::collections::BTreeSet<i32>>();
    Ok(acknowledged
        .iter()
        .filter(|id| !present.contains(id))
        .copied()
        .collect())
}

/// Waits (30 s at most) until the writer has `count` acknowledged commits.
async fn wait_acknowledged(acknowledged: &Mutex<Vec<i32>>, count: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while acknowledged.lock().map(|ids| ids.len()).unwrap_or(0) < count {
        anyhow::ensure!(Instant::now() < deadline, "the writer stalled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_commit_keeps_every_acknowledged_commit_over_a_kill_9() -> anyhow::Result<()> {
    let mut cluster = Cluster::start_with(
        3,
        ClusterOptions {
            dcs_yaml: "synchronous_mode: quorum".to_owned(),
            ..ClusterOptions::default()
        },
    )?;
    let primary = cluster.wait_healthy(2, Duration::from_secs(120)).await?;
    let primary_name = cluster.nodes[primary].spec.name.clone();
    let mut replicas: Vec<String> = (0..3)
        .filter(|index| *index != primary)
        .map(|index| cluster.nodes[index].spec.name.clone())
        .collect();
    replicas.sort();
    let expected_guc = format!("ANY 1 ({})", replicas.join(","));
    let etcd_port = cluster.nodes[primary].spec.etcd_port;

    // Both replicas are quorum standbys in PostgreSQL, and `/sync` names them with quorum 2.
    let node = &cluster.nodes[primary];
    let found = eventually(Duration::from_secs(60), || async {
        let guc = node
            .query("SHOW synchronous_standby_names")
            .await
            .ok()
            .flatten()?;
        let quorum_rows = node
            .query("SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'quorum'")
            .await
            .ok()
            .flatten()?;
        let sync = sync_key(etcd_port).await.ok().flatten()?;
        (guc == expected_guc && quorum_rows == "2" && sync["quorum"] == serde_json::json!(2))
            .then_some((guc, sync))
    })
    .await;
    let (guc, sync) = match found {
        Ok(found) => found,
        Err(error) => anyhow::bail!("{error}: no ANY 1 quorum:\n{}", cluster.logs()),
    };
    println!("synchronous_standby_names = {guc}; /sync = {sync}");
    assert_eq!(sync["leader"], serde_json::json!(primary_name));
    assert_eq!(sync["sync_standby"], serde_json::json!(replicas.join(",")));

    // A writer commits one id after another; the primary dies (kill -9) while it writes.
    let client = connect(cluster.nodes[primary].spec.pg_port).await?;
    client
        .batch_execute("CREATE TABLE acknowledged (id int primary key)")
        .await?;
    let (acknowledged, writer) = spawn_writer(client, Duration::from_secs(2));
    wait_acknowledged(&acknowledged, 300).await?;
    cluster.nodes[primary].kill_hard();
    let _ = writer.await;
    let acknowledged = acknowledged
        .lock()
        .map(|ids| ids.clone())
        .unwrap_or_default();
    println!(
        "{} commits acknowledged before the kill",
        acknowledged.len()
    );

    let new_primary = cluster
        .wait_writable(primary, Duration::from_secs(60))
        .await?;
    let lost = missing_on(cluster.nodes[new_primary].spec.pg_port, &acknowledged).await?;
    assert!(
        lost.is_empty(),
        "{} acknowledged commits lost on {}: {lost:?}",
        lost.len(),
        cluster.nodes[new_primary].spec.name
    );
    println!(
        "{} took over with all {} acknowledged commits",
        cluster.nodes[new_primary].spec.name,
        acknowledged.len()
    );
    Ok(())
}

/// The `/sync` key's voters and quorum, once they are exactly `voters` and `quorum`.
async fn wait_for_sync(
    cluster: &Cluster,
    etcd_port: u16,
    leader: &str,
    voters: &str,
    quorum: u32,
) -> anyhow::Result<()> {
    let found = eventually(Duration::from_secs(60), || async {
        let sync = sync_key(etcd_port).await.ok().flatten()?;
        (sync["leader"] == serde_json::json!(leader)
            && sync["sync_standby"] == serde_json::json!(voters)
            && sync["quorum"] == serde_json::json!(quorum))
        .then_some(())
    })
    .await;
    found.map_err(|error| {
        anyhow::anyhow!(
            "{error}: /sync never became {{leader {leader}, voters {voters}, quorum {quorum}}}\n{}",
            cluster.logs()
        )
    })
}

/// Quorum standbys seen from outside, and switchovers in quorum mode, with one member tagged
/// `nosync` (never a voter):
/// 1. the voter answers `/quorum` and `/read-only-quorum` with 200, `/sync` with 503; `/cluster`
///    calls it `quorum_standby`, `ctl list` `Quorum Standby`, and `/metrics` says
///    `patroni_quorum_standby 1`;
/// 2. a switchover to the `nosync` member is refused with 412 and changes nothing;
/// 3. a switchover to the voter, under a writer, loses no acknowledged commit;
/// 4. with `synchronous_mode_strict`, the new primary whose only voter is killed keeps commits
///    waiting (it does not go asynchronous), and the waiting commit completes once the voter is
///    back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_standbys_and_switchover_only_to_a_voter() -> anyhow::Result<()> {
    let started = Instant::now();
    let mut cluster = Cluster::start_with(
        3,
        ClusterOptions {
            dcs_yaml: "synchronous_mode: quorum".to_owned(),
            ..ClusterOptions::default()
        },
    )?;
    let primary = cluster.wait_healthy(2, Duration::from_secs(120)).await?;
    let others: Vec<usize> = (0..3).filter(|index| *index != primary).collect();
    let (voter, outsider) = (others[0], others[1]);
    let names: Vec<String> = cluster
        .nodes
        .iter()
        .map(|node| node.spec.name.clone())
        .collect();
    let name = |index: usize| names[index].clone();
    let (primary_name, voter_name, outsider_name) = (name(primary), name(voter), name(outsider));
    let etcd_port = cluster.nodes[primary].spec.etcd_port;

    // The outsider restarts tagged `nosync`: from then on only the voter is in `/sync`.
    println!(
        "[{:.1?}] phase 1: {outsider_name} restarts with nosync; {voter_name} is the only voter",
        started.elapsed()
    );
    cluster.nodes[outsider].kill_hard();
    let mut config = std::fs::read_to_string(cluster.nodes[outsider].config_path())?;
    config.push_str("tags:\n  nosync: true\n");
    std::fs::write(cluster.nodes[outsider].config_path(), config)?;
    cluster.nodes[outsider].start()?;
    cluster
        .wait_streaming(outsider, Duration::from_secs(120))
        .await?;
    println!("[{:.1?}] {outsider_name} streams again", started.elapsed());
    wait_for_sync(&cluster, etcd_port, &primary_name, &voter_name, 1).await?;
    println!("[{:.1?}] /sync names {voter_name} alone", started.elapsed());

    let expected_codes = [
        (voter, "/quorum", 200),
        (voter, "/read-only-quorum", 200),
        (voter, "/sync", 503),
        (voter, "/read-only-sync", 503),
        (voter, "/async", 503),
        (outsider, "/quorum", 503),
        (outsider, "/read-only-quorum", 503),
        (outsider, "/async", 200),
        (primary, "/quorum", 503),
        (primary, "/read-only-quorum", 200),
    ];
    let codes = eventually(Duration::from_secs(30), || async {
        let mut codes = Vec::new();
        for (index, path, _) in expected_codes {
            codes.push((index, path, cluster.nodes[index].http_status(path).await?));
        }
        (codes == expected_codes).then_some(codes)
    })
    .await;
    if let Err(error) = codes {
        let mut seen = Vec::new();
        for (index, path, want) in expected_codes {
            let got = cluster.nodes[index].http_status(path).await;
            seen.push(format!("{} {path}: want {want}, got {got:?}", name(index)));
        }
        anyhow::bail!(
            "{error}: health codes\n{}\n{}",
            seen.join("\n"),
            cluster.logs()
        );
    }
    let api = cluster.nodes[primary].rest_address();
    let roles = eventually(Duration::from_secs(10), || async {
        let view = ha_cluster_tests::http_get_json(&api, "/cluster").await?;
        let role = |member: &str| {
            view["members"]
                .as_array()?
                .iter()
                .find(|entry| entry["name"] == serde_json::json!(member))
                .map(|entry| entry["role"].clone())
        };
        (role(&voter_name)? == "quorum_standby" && role(&outsider_name)? == "replica")
            .then_some(view)
    })
    .await;
    anyhow::ensure!(roles.is_ok(), "/cluster roles never showed quorum_standby");
    // `pgwarden ctl list` names the voter's role as Patroni's table does.
    let output = std::process::Command::new(ha_cluster_tests::pgwarden_binary()?)
        .arg("ctl")
        .arg("-c")
        .arg(cluster.nodes[primary].config_path())
        .args(["list", "-f", "json"])
        .stdin(std::process::Stdio::null())
        .output()?;
    let rows: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let role_of = |member: &str| {
        rows.as_array()
            .and_then(|rows| rows.iter().find(|row| row["Member"] == member))
            .map(|row| row["Role"].clone())
    };
    assert_eq!(
        role_of(&voter_name),
        Some("Quorum Standby".into()),
        "{rows}"
    );
    assert_eq!(role_of(&outsider_name), Some("Replica".into()), "{rows}");
    let metrics = http_get_text(
        &cluster.nodes[voter].rest_address(),
        "/metrics",
        Duration::from_secs(2),
    )
    .await
    .unwrap_or_default();
    for wanted in ["patroni_quorum_standby{", "patroni_sync_standby{"] {
        let line = metrics
            .lines()
            .find(|line| line.starts_with(wanted))
            .unwrap_or_default();
        let value = if wanted.contains("quorum") {
            " 1"
        } else {
            " 0"
        };
        assert!(line.ends_with(value), "{wanted}: {line:?} in\n{metrics}");
    }

    // A switchover to the outsider is refused: it is not a voter.
    println!(
        "[{:.1?}] phase 2: a switchover to {outsider_name} (not a voter) is refused",
        started.elapsed()
    );
    let refused = format!(r#"{{"leader": "{primary_name}", "candidate": "{outsider_name}"}}"#);
    let (status, reply) = http_post(&api, "/switchover", &refused).await?;
    assert_eq!(
        (status, reply.as_str()),
        (412, "candidate name does not match with sync_standby"),
        "switchover to a non-voter"
    );
    assert_eq!(
        cluster.wait_healthy(2, Duration::from_secs(10)).await?,
        primary,
        "the refused switchover moved the leader"
    );

    // Under a writer, a switchover to the voter keeps every acknowledged commit.
    println!(
        "[{:.1?}] phase 3: a switchover to {voter_name} under a writer",
        started.elapsed()
    );
    let client = connect(cluster.nodes[primary].spec.pg_port).await?;
    client
        .batch_execute("CREATE TABLE acknowledged (id int primary key)")
        .await?;
    let (acknowledged, writer) = spawn_writer(client, Duration::from_secs(5));
    wait_acknowledged(&acknowledged, 200).await?;
    let wanted = format!(r#"{{"leader": "{primary_name}", "candidate": "{voter_name}"}}"#);
    let (status, reply) = http_post(&api, "/switchover", &wanted).await?;
    assert_eq!(
        status,
        200,
        "switchover to the voter: {reply}\n{}",
        cluster.logs()
    );
    let _ = writer.await;
    let acknowledged = acknowledged
        .lock()
        .map(|ids| ids.clone())
        .unwrap_or_default();
    let new_primary = cluster
        .wait_writable(primary, Duration::from_secs(60))
        .await?;
    assert_eq!(new_primary, voter, "the key went to {}", name(new_primary));
    let lost = missing_on(cluster.nodes[voter].spec.pg_port, &acknowledged).await?;
    assert!(
        lost.is_empty(),
        "{} acknowledged commits lost: {lost:?}",
        lost.len()
    );
    println!(
        "{voter_name} took over with all {} acknowledged commits",
        acknowledged.len()
    );

    // Strict mode: the old primary becomes the only voter; killed, commits wait for it.
    println!(
        "[{:.1?}] phase 4: synchronous_mode_strict, the only voter {primary_name} is killed",
        started.elapsed()
    );
    cluster
        .wait_streaming(primary, Duration::from_secs(120))
        .await?;
    let new_api = cluster.nodes[voter].rest_address();
    let (status, reply) =
        http_patch(&new_api, "/config", r#"{"synchronous_mode_strict": true}"#).await?;
    assert_eq!(status, 200, "PATCH /config: {reply}");
    wait_for_sync(&cluster, etcd_port, &voter_name, &primary_name, 1).await?;
    let new_client = connect(cluster.nodes[voter].spec.pg_port).await?;
    cluster.nodes[primary].kill_hard();
    let blocked = tokio::spawn(async move {
        new_client
            .execute("INSERT INTO acknowledged VALUES (-1)", &[])
            .await
            .map(|_| ())
    });
    // Until the killed voter's member key expires and well past it, the commit waits and
    // `synchronous_standby_names` still names a standby.
    let node = &cluster.nodes[voter];
    eventually(Duration::from_secs(60), || async {
        let view = ha_cluster_tests::http_get_json(&new_api, "/cluster").await?;
        let listed = view["members"]
            .as_array()?
            .iter()
            .any(|entry| entry["name"] == serde_json::json!(primary_name));
        (!listed).then_some(())
    })
    .await?;
    let hold_until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < hold_until {
        anyhow::ensure!(!blocked.is_finished(), "a commit completed with no voter");
        let guc = node
            .query("SHOW synchronous_standby_names")
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        anyhow::ensure!(
            guc.starts_with("ANY 1 ("),
            "strict mode went asynchronous: synchronous_standby_names = {guc:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The voter comes back: the waiting commit completes.
    println!(
        "[{:.1?}] phase 4: {primary_name} comes back; the waiting commit completes",
        started.elapsed()
    );
    cluster.nodes[primary].start()?;
    match tokio::time::timeout(Duration::from_secs(120), blocked).await {
        Ok(Ok(Ok(()))) => {
            println!("[{:.1?}] the waiting commit completed", started.elapsed());
            Ok(())
        }
        other => anyhow::bail!(
            "the waiting commit did not complete: {other:?}\n{}",
            cluster.logs()
        ),
    }
}
