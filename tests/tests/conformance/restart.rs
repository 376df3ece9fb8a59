//! Restart on an existing data dir: the member keeps its identity and data, and the
//! initial-cluster flags (here a different token and state) are ignored, as etcd does.

use anyhow::Context;
use anyhow::ensure;
use pgwarden_tests::Cluster;

pgwarden_tests::against_both_targets!(1 => restart_keeps_identity_and_ignores_initial_flags);

async fn restart_keeps_identity_and_ignores_initial_flags(
    cluster: &mut Cluster,
) -> anyhow::Result<()> {
    let mut client = cluster.client().await?;
    let revision = client
        .put("durable", "yes", None)
        .await?
        .header()
        .context("header")?
        .revision();
    let member_id = cluster.member_id(0).await?;
    let cluster_id = client
        .status()
        .await?
        .header()
        .context("header")?
        .cluster_id();

    let status = cluster.member_mut(0).terminate()?;
    tracing::info!(%status, "stopped; restarting with other initial-cluster flags");
    let spec = &mut cluster.member_mut(0).spec;
    spec.initial_cluster_token = "another-token".to_owned();
    spec.initial_cluster_state = "existing";
    cluster.restart(0)?;
    cluster.wait_ready().await?;

    let mut client = cluster.client().await?;
    let got = client.get("durable", None).await?;
    ensure!(
        got.kvs().first().map(|kv| kv.value()) == Some(b"yes".as_slice()),
        "{got:?}"
    );
    ensure!(
        got.header().context("header")?.revision() == revision,
        "{got:?}"
    );
    ensure!(
        cluster.member_id(0).await? == member_id,
        "the member ID survives a restart"
    );
    let status = client.status().await?;
    ensure!(
        status.header().context("header")?.cluster_id() == cluster_id,
        "{status:?}"
    );
    Ok(())
}
