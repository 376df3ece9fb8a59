//! Quorum commit (`synchronous_mode: quorum`) with three members and real PostgreSQL: the
//! primary lists both replicas as `ANY 1 (a,b)` in `synchronous_standby_names`, `/sync`
//! carries the voters and `quorum: 2`, and after a kill -9 of the primary while a writer is
//! committing, the new primary (a voter that heard from the other voter) has every commit the
//! old one acknowledged.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ha_cluster_tests::{Cluster, ClusterOptions, eventually};

/// The `/sync` key as JSON, read through the etcd API on `etcd_port`.
async fn sync_key(etcd_port: u16) -> anyhow::Result<Option<serde_json::Value>> {
    let mut client =
        etcd_client::Client::connect([format!("http://127.0.0.1:{etcd_port}")], None).await?;
    let response = client.get("/service/demo/sync", None).await?;
    Ok(response
        .kvs()
        .first()
        .and_then(|kv| serde_json::from_slice(kv.value()).ok()))
}

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
    let acknowledged = Arc::new(Mutex::new(Vec::<i32>::new()));
    let writer = {
        let acknowledged = acknowledged.clone();
        tokio::spawn(async move {
            for id in 0.. {
                let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&id];
                let insert = client.execute("INSERT INTO acknowledged VALUES ($1)", &params);
                match tokio::time::timeout(Duration::from_secs(2), insert).await {
                    Ok(Ok(_)) => acknowledged
                        .lock()
                        .map(|mut ids| ids.push(id))
                        .unwrap_or(()),
                    _ => break,
                }
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while acknowledged.lock().map(|ids| ids.len()).unwrap_or(0) < 300 {
        anyhow::ensure!(Instant::now() < deadline, "the writer stalled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
    let present = connect(cluster.nodes[new_primary].spec.pg_port)
        .await?
        .query("SELECT id FROM acknowledged", &[])
        .await?
        .iter()
        .map(|row| row.get::<_, i32>(0))
        .collect::<std::collections::BTreeSet<i32>>();
    let lost: Vec<i32> = acknowledged
        .iter()
        .filter(|id| !present.contains(id))
        .copied()
        .collect();
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
