//! Switchover under a writer on every member: candidate validation, two concurrent requests
//! of which exactly one wins, never two members accepting writes, and the old primary
//! streaming from the new one afterwards.

use std::time::{Duration, Instant};

use ha_cluster_tests::Cluster;
use ha_cluster_tests::writer::{Writer, http_post, longest_gap, overlapping};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchover_under_a_writer_and_concurrent_requests() -> anyhow::Result<()> {
    let cluster = Cluster::start(3)?;
    let primary = cluster.wait_healthy(2, Duration::from_secs(120)).await?;
    cluster.nodes[primary]
        .query("CREATE TABLE writes (at timestamptz)")
        .await?;
    let ports: Vec<u16> = cluster.nodes.iter().map(|node| node.spec.pg_port).collect();
    let writer = Writer::start(&ports, "writes");
    let leader = cluster.nodes[primary].spec.name.clone();
    let api = cluster.nodes[primary].rest_address();
    let replicas: Vec<String> = cluster
        .nodes
        .iter()
        .map(|node| node.spec.name.clone())
        .filter(|name| *name != leader)
        .collect();

    // Validation: an unknown candidate, the leader itself, and a wrong leader change nothing.
    for body in [
        format!(r#"{{"leader": "{leader}", "candidate": "nobody"}}"#),
        format!(r#"{{"leader": "{leader}", "candidate": "{leader}"}}"#),
        format!(
            r#"{{"leader": "{}", "candidate": "{leader}"}}"#,
            replicas[0]
        ),
        r#"{"candidate": 7}"#.to_owned(),
    ] {
        let (status, reply) = http_post(&api, "/switchover", &body).await?;
        assert!(
            (400..500).contains(&status),
            "{body} answered {status}: {reply}"
        );
    }
    assert_eq!(
        cluster.wait_healthy(2, Duration::from_secs(10)).await?,
        primary
    );

    // Two requests at once, to different candidates: exactly one wins.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let asked = Instant::now();
    let first = format!(
        r#"{{"leader": "{leader}", "candidate": "{}"}}"#,
        replicas[0]
    );
    let second = format!(
        r#"{{"leader": "{leader}", "candidate": "{}"}}"#,
        replicas[1]
    );
    let (a, b) = tokio::join!(
        http_post(&api, "/switchover", &first),
        http_post(&api, "/switchover", &second)
    );
    let (a, b) = (a?, b?);
    let winners: Vec<usize> = [&a, &b]
        .iter()
        .enumerate()
        .filter(|(_, (status, _))| *status == 200)
        .map(|(index, _)| index)
        .collect();
    assert_eq!(winners.len(), 1, "exactly one wins: {a:?} {b:?}");
    let new_primary = cluster
        .wait_writable(primary, Duration::from_secs(30))
        .await?;
    assert_eq!(
        cluster.nodes[new_primary].spec.name, replicas[winners[0]],
        "the winner's candidate leads"
    );
    // The old primary handed its key to the candidate in one transaction (no race).
    assert!(
        cluster.nodes[primary]
            .log()
            .contains("handed the leader key over"),
        "{}",
        cluster.logs()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let commits = writer.commits();
    let from = asked - Duration::from_millis(200);
    assert!(
        !overlapping(&commits, from, cluster.nodes[primary].spec.pg_port),
        "the old primary committed after the new primary did"
    );
    println!(
        "switchover write gap {:.2?}",
        longest_gap(&commits, from, Instant::now())
    );
    // The old primary follows the new one.
    cluster
        .wait_streaming(primary, Duration::from_secs(60))
        .await?;
    assert_eq!(
        cluster.wait_healthy(2, Duration::from_secs(30)).await?,
        new_primary
    );
    Ok(())
}
