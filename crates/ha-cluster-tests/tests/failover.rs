//! Three `pgwarden run` members with real PostgreSQL 15: bootstrap from empty, kill -9 of the
//! primary's agent and postmaster, failover, and the old primary's rejoin by pg_rewind.

use std::time::{Duration, Instant};

use ha_cluster_tests::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_failover_and_rejoin() -> anyhow::Result<()> {
    // Phase 1: three empty data directories become one primary and two streaming replicas.
    let started_at = Instant::now();
    let mut cluster = Cluster::start(3)?;
    let primary = cluster.wait_healthy(2, Duration::from_secs(120)).await?;
    println!(
        "bootstrap: one primary and two streaming replicas after {:.2?}",
        started_at.elapsed()
    );
    assert!(
        cluster.nodes[primary].accepts_writes().await,
        "the primary accepts writes"
    );
    for (index, node) in cluster.nodes.iter().enumerate() {
        if index != primary {
            assert!(
                !node.accepts_writes().await,
                "replica {index} refuses writes"
            );
        }
    }

    // Phase 2: kill -9 the primary's agent and postmaster; another node must accept writes.
    let killed_at = Instant::now();
    cluster.nodes[primary].kill_hard();
    let new_primary = cluster
        .wait_writable(primary, Duration::from_secs(30))
        .await?;
    let failover = killed_at.elapsed();
    println!("failover: node {new_primary} accepted writes {failover:.2?} after kill -9");
    assert!(
        failover < Duration::from_secs(20),
        "failover took {failover:?}"
    );

    // Phase 3: the old primary comes back as a replica of the new one (pg_rewind).
    let restarted_at = Instant::now();
    cluster.nodes[primary].start()?;
    cluster
        .wait_streaming(primary, Duration::from_secs(60))
        .await?;
    println!(
        "rejoin: old primary streaming {:.2?} after restart",
        restarted_at.elapsed()
    );
    let status = cluster.nodes[new_primary].patroni().await;
    assert_eq!(
        status.map(|status| status["role"].clone()),
        Some("primary".into())
    );
    // Exactly one writable node.
    let mut writable = 0;
    for node in &cluster.nodes {
        if node.accepts_writes().await {
            writable += 1;
        }
    }
    assert_eq!(writable, 1);
    if std::env::var_os("PGWARDEN_TEST_LOGS").is_some() {
        println!("{}", cluster.logs());
    }
    Ok(())
}
