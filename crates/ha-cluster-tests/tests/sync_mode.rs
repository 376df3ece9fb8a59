//! Synchronous mode with three members and real PostgreSQL: the primary names one synchronous
//! standby in `synchronous_standby_names` and in the store's `/sync` key, every commit it
//! acknowledges is on that standby, and after a kill -9 of the primary only the synchronous
//! standby takes over — with every acknowledged row.

use std::time::{Duration, Instant};

use ha_cluster_tests::{Cluster, ClusterOptions, sync_key};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_synchronous_standby_takes_over_with_every_acknowledged_commit()
-> anyhow::Result<()> {
    let mut cluster = Cluster::start_with(
        3,
        ClusterOptions {
            dcs_yaml: "synchronous_mode: true".to_owned(),
            ..ClusterOptions::default()
        },
    )?;
    let primary = cluster.wait_healthy(2, Duration::from_secs(120)).await?;
    let etcd_port = cluster.nodes[primary].spec.etcd_port;

    // The primary picks one standby; PostgreSQL reports it `sync`, then `/sync` lists it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let standby = loop {
        let in_pg = cluster.nodes[primary]
            .query("SELECT application_name FROM pg_stat_replication WHERE sync_state = 'sync'")
            .await
            .ok()
            .flatten();
        let in_store = sync_key(etcd_port)
            .await
            .ok()
            .flatten()
            .and_then(|sync| sync["sync_standby"].as_str().map(str::to_owned));
        if let (Some(in_pg), Some(in_store)) = (in_pg, in_store)
            && in_pg == in_store
        {
            break in_store;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no synchronous standby within 60 s:\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let leader = sync_key(etcd_port)
        .await?
        .map(|sync| sync["leader"].clone());
    assert_eq!(
        leader,
        Some(serde_json::json!(cluster.nodes[primary].spec.name))
    );
    let names = cluster.nodes[primary]
        .query("SHOW synchronous_standby_names")
        .await?
        .unwrap_or_default();
    assert!(names.contains(&standby), "{names}");
    println!("synchronous standby: {standby} ({names})");

    // Acknowledged commits, then the primary dies at once.
    let (client, connection) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(cluster.nodes[primary].spec.pg_port)
        .user("postgres")
        .password("secret")
        .dbname("postgres")
        .connect(tokio_postgres::NoTls)
        .await?;
    let driver = tokio::spawn(connection);
    client
        .batch_execute("CREATE TABLE acknowledged (id int primary key)")
        .await?;
    let mut acknowledged = 0;
    for id in 0..300 {
        client
            .execute("INSERT INTO acknowledged VALUES ($1)", &[&id])
            .await?;
        acknowledged += 1;
    }
    drop(client);
    let _ = driver.await;
    cluster.nodes[primary].kill_hard();

    let new_primary = cluster
        .wait_writable(primary, Duration::from_secs(60))
        .await?;
    assert_eq!(
        cluster.nodes[new_primary].spec.name, standby,
        "only the synchronous standby may take over"
    );
    let count = cluster.nodes[new_primary]
        .query("SELECT count(*) FROM acknowledged")
        .await?;
    assert_eq!(
        count,
        Some(acknowledged.to_string()),
        "acknowledged rows lost"
    );

    // The old primary comes back as a replica; the new primary picks a synchronous standby.
    cluster.nodes[primary].start()?;
    cluster.wait_healthy(2, Duration::from_secs(120)).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let sync = sync_key(cluster.nodes[new_primary].spec.etcd_port).await?;
        if let Some(sync) = sync
            && sync["leader"] == serde_json::json!(standby)
            && sync["sync_standby"].is_string()
        {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the new primary named no synchronous standby:\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}
