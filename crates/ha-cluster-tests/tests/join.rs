//! A fourth `pgwarden run` node whose partners are the three running members: its embedded
//! store joins the running Raft group (as a learner, then a voter), its agent clones the
//! primary and streams, and the four-voter group still fails over after losing the primary.

use std::time::{Duration, Instant};

use anyhow::Context;
use ha_cluster_tests::Cluster;
use ha_cluster_tests::eventually;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fourth_node_joins_the_store_and_streams() -> anyhow::Result<()> {
    // Phase 1: a healthy three-node cluster.
    let mut cluster = Cluster::start(3)?;
    cluster.wait_healthy(2, Duration::from_secs(120)).await?;

    // Phase 2: the fourth node joins the store and becomes a streaming replica.
    let joined_at = Instant::now();
    let added = cluster.add_node()?;
    let primary = cluster.wait_healthy(3, Duration::from_secs(180)).await?;
    println!(
        "join: node {added} streaming {:.2?} after start",
        joined_at.elapsed()
    );
    assert_ne!(primary, added, "the new node is a replica");

    // Phase 3: every node's store lists four voters, each published with its name.
    for node in &cluster.nodes {
        let endpoint = format!("http://127.0.0.1:{}", node.spec.etcd_port);
        let members = eventually(Duration::from_secs(60), || async {
            let mut client = etcd_client::Client::connect([endpoint.as_str()], None)
                .await
                .ok()?;
            let members = client.member_list().await.ok()?.members().to_vec();
            let done = members.len() == 4
                && members
                    .iter()
                    .all(|member| !member.is_learner() && !member.name().is_empty());
            done.then_some(members)
        })
        .await
        .with_context(|| {
            format!(
                "{}: four voters in the member list\n{}",
                node.spec.name,
                cluster.logs()
            )
        })?;
        let raft_addr = format!("127.0.0.1:{}", cluster.nodes[added].spec.raft_port);
        assert!(
            members.iter().any(|member| member.name() == raft_addr),
            "the new node is listed under its peer address"
        );
    }

    // Phase 4: `pgwarden run` serves the store's metrics on the etcd API port.
    let metrics = http_get_text(cluster.nodes[added].spec.etcd_port, "/metrics").await?;
    assert!(
        metrics.contains("etcd_server_has_leader 1"),
        "metrics of the joined member:\n{metrics}"
    );

    // Phase 5: the four-voter group loses the primary's host and still fails over.
    let killed_at = Instant::now();
    cluster.nodes[primary].kill_hard();
    let new_primary = cluster
        .wait_writable(primary, Duration::from_secs(60))
        .await?;
    println!(
        "failover with four voters: node {new_primary} accepted writes {:.2?} after kill -9",
        killed_at.elapsed()
    );
    Ok(())
}

/// `GET path` on 127.0.0.1:`port` (HTTP/1.0: no chunked body) → the body as text.
async fn http_get_text(port: u16, path: &str) -> anyhow::Result<String> {
    let fetch = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        anyhow::Ok(String::from_utf8_lossy(&response).into_owned())
    };
    let response = tokio::time::timeout(Duration::from_secs(5), fetch)
        .await
        .context("GET timed out")??;
    Ok(response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default())
}
