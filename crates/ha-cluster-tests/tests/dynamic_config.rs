//! The cluster-wide configuration (`/service/demo/config`, Patroni's JSON) written by an
//! operator through the etcd API reaches every node: a reloadable parameter applies
//! everywhere, a parameter that needs a restart is reported as `pending_restart` and not
//! applied, and a new `ttl` moves every member's lease to the new TTL.

use std::time::Duration;

use anyhow::Context;
use etcd_client::{Client, GetOptions};
use ha_cluster_tests::Cluster;
use ha_cluster_tests::eventually;
use serde_json::{Value, json};

const CONFIG_KEY: &str = "/service/demo/config";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_parameters_reach_every_node() -> anyhow::Result<()> {
    let cluster = Cluster::start(3)?;
    let primary = cluster.wait_healthy(2, Duration::from_secs(120)).await?;
    let endpoint = format!("http://127.0.0.1:{}", cluster.nodes[0].spec.etcd_port);
    let mut client = Client::connect([endpoint.as_str()], None)
        .await
        .context("connect to the etcd API")?;

    // Phase 1: a reloadable parameter (work_mem) applies on every node.
    update_config(&mut client, |config| {
        config["postgresql"]["parameters"]["work_mem"] = json!("7MB");
    })
    .await?;
    for node in &cluster.nodes {
        eventually(Duration::from_secs(60), || async {
            (node.query("SHOW work_mem").await.ok()?.as_deref() == Some("7MB")).then_some(())
        })
        .await
        .with_context(|| format!("work_mem on {}\n{}", node.spec.name, cluster.logs()))?;
    }

    // Phase 2: max_connections needs a restart: every node reports pending_restart and
    // keeps running with the old value.
    let running = cluster.nodes[primary]
        .query("SHOW max_connections")
        .await?
        .context("max_connections")?;
    let wanted: u64 = running.parse::<u64>()? + 10;
    update_config(&mut client, |config| {
        config["postgresql"]["parameters"]["max_connections"] = json!(wanted);
    })
    .await?;
    for node in &cluster.nodes {
        eventually(Duration::from_secs(60), || async {
            let status = node.patroni().await?;
            (status["pending_restart"] == json!(true)).then_some(())
        })
        .await
        .with_context(|| format!("pending_restart on {}\n{}", node.spec.name, cluster.logs()))?;
        assert_eq!(
            node.query("SHOW max_connections").await?.as_deref(),
            Some(running.as_str()),
            "{}: max_connections applies only after a restart",
            node.spec.name
        );
    }

    // Phase 3: a new ttl moves every member key to a lease with the new TTL.
    update_config(&mut client, |config| config["ttl"] = json!(23)).await?;
    for node in &cluster.nodes {
        let key = format!("/service/demo/members/{}", node.spec.name);
        eventually(Duration::from_secs(60), || {
            let mut client = client.clone();
            let key = key.clone();
            async move {
                let response = client.get(key, None).await.ok()?;
                let lease = response.kvs().first()?.lease();
                let ttl = client.lease_time_to_live(lease, None).await.ok()?;
                (ttl.granted_ttl() == 23).then_some(())
            }
        })
        .await
        .with_context(|| format!("ttl of {}'s lease\n{}", node.spec.name, cluster.logs()))?;
    }
    // The primary still holds the leader key (now on its new lease).
    let leader = client
        .get("/service/demo/leader", Some(GetOptions::new()))
        .await?;
    let holder = leader
        .kvs()
        .first()
        .map(|kv| kv.value_str().unwrap_or_default().to_owned());
    assert_eq!(
        holder.as_deref(),
        Some(cluster.nodes[primary].spec.name.as_str())
    );
    Ok(())
}

/// Reads `/config` (waiting for the first leader to write it), applies `change`, writes it back.
async fn update_config(client: &mut Client, change: impl FnOnce(&mut Value)) -> anyhow::Result<()> {
    let current = eventually(Duration::from_secs(60), || {
        let mut client = client.clone();
        async move {
            let response = client.get(CONFIG_KEY, None).await.ok()?;
            let value = response.kvs().first()?.value().to_vec();
            serde_json::from_slice::<Value>(&value).ok()
        }
    })
    .await
    .context("read /config")?;
    let mut config = current;
    if !config["postgresql"].is_object() {
        config["postgresql"] = json!({});
    }
    if !config["postgresql"]["parameters"].is_object() {
        config["postgresql"]["parameters"] = json!({});
    }
    change(&mut config);
    client
        .put(CONFIG_KEY, serde_json::to_vec(&config)?, None)
        .await
        .context("write /config")?;
    Ok(())
}
