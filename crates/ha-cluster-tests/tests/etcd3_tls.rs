//! `pgwarden run` over an external etcd store reached only over TLS (`etcd3:` with Patroni's
//! `protocol: https`, `cacert`, `cert`, `key`).
//!
//! The store is one `pgwarden etcd` member serving clients on an https URL with
//! `--client-cert-auth`, so a node that did not verify the server against `cacert` or did not
//! present `cert` could not read or write a key at all. One node bootstraps and becomes the
//! primary; the leader key is read over TLS with the same CA and certificate; a client without
//! a certificate is refused; and `pgwarden ctl -c CONFIG list` reads the cluster over TLS from
//! the run configuration. A configuration naming a missing `cacert` is refused at start.

use std::time::Duration;

use anyhow::Context;
use ha_cluster_tests::etcd::EtcdCluster;
use ha_cluster_tests::tls::Certificates;
use ha_cluster_tests::{Cluster, ClusterOptions, ctl, eventually, refused_at_start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_over_an_https_etcd3_store() -> anyhow::Result<()> {
    // Phase 1: the store serves its clients only over TLS and refuses clients without a
    // certificate signed by the test CA. The directory outlives the store and the node.
    let certificate_dir = tempfile::tempdir()?;
    let certificates = Certificates::generate()?;
    let files = certificates.write(certificate_dir.path())?;
    let etcd = EtcdCluster::start_tls(
        1,
        Duration::from_secs(30),
        certificates.clone(),
        files.clone(),
    )
    .await?;

    // Phase 2: one node configured with the etcd3 TLS keys bootstraps and becomes the primary.
    let cluster = Cluster::start_with(
        1,
        ClusterOptions {
            etcd3_hosts: Some(etcd.hosts()),
            etcd3_yaml: format!(
                "protocol: https\ncacert: {}\ncert: {}\nkey: {}\n",
                files.ca.display(),
                files.cert.display(),
                files.key.display()
            ),
            ..ClusterOptions::default()
        },
    )?;
    let primary = cluster
        .wait_healthy(0, Duration::from_secs(60))
        .await
        .with_context(|| etcd.logs())?;
    let primary_name = cluster.nodes[primary].spec.name.clone();

    // Phase 3: the leader key is in the store, read over TLS with the CA and the certificate.
    let client = etcd.client().await?;
    let leader = eventually(Duration::from_secs(20), || {
        let mut client = client.clone();
        async move {
            let response = client.get("/service/demo/leader", None).await.ok()?;
            Some(response.kvs().first()?.value_str().ok()?.to_owned())
        }
    })
    .await
    .context("the leader key over TLS")?;
    assert_eq!(leader, primary_name);

    // Phase 4: the store really demands a client certificate (so the node presented one).
    let anonymous = etcd_client::ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(3))
        .with_tls(certificates.client_tls(false));
    if let Ok(mut anonymous) =
        etcd_client::Client::connect([etcd.members[0].endpoint()], Some(anonymous)).await
    {
        let result = anonymous.get("/service/demo/leader", None).await;
        assert!(result.is_err(), "no client certificate: {result:?}");
    }

    // Phase 5: `pgwarden ctl` connects with the run configuration's etcd3 TLS keys.
    let (code, stdout, stderr) = ctl(cluster.nodes[primary].config_path(), &["list"])?;
    assert_eq!(code, 0, "ctl list: {stdout}{stderr}");
    assert!(
        stdout.contains(&primary_name) && stdout.contains("Leader"),
        "{stdout}"
    );
    Ok(())
}

#[test]
fn a_missing_cacert_is_refused_at_start() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let missing = dir.path().join("missing-ca.pem");
    refused_at_start(
        dir.path(),
        &format!(
            "etcd3:\n  protocol: https\n  hosts: [127.0.0.1:1]\n  cacert: {}\n",
            missing.display()
        ),
        "etcd3.cacert",
        &missing,
    )
}
