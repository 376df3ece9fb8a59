//! Leases: grant (chosen ID, minimum TTL, too large TTL), keepalive, time-to-live with keys, list,
//! revoke deleting keys, expiry.

use std::time::Duration;

use anyhow::Context;
use anyhow::ensure;
use etcd_client::LeaseGrantOptions;
use etcd_client::LeaseTimeToLiveOptions;
use etcd_client::PutOptions;
use pgwarden_tests::Cluster;
use pgwarden_tests::eventually;
use pgwarden_tests::grpc::expect_status;
use tonic::Code;

pgwarden_tests::against_both_targets!(1 => lease_lifecycle, lease_expiry_deletes_keys);

const NOT_FOUND: &str = "etcdserver: requested lease not found";

async fn lease_lifecycle(cluster: &mut Cluster) -> anyhow::Result<()> {
    let mut client = cluster.client().await?;
    let granted = client.lease_grant(60, None).await?;
    ensure!(granted.id() > 0 && granted.ttl() == 60, "{granted:?}");
    let lease = granted.id();

    let chosen = client
        .lease_grant(30, Some(LeaseGrantOptions::new().with_id(0x1234)))
        .await?;
    ensure!(chosen.id() == 0x1234 && chosen.ttl() == 30);

    // TTLs below the minimum (1.5 election timeouts, rounded up: 2 s with the default 1 s) are raised.
    let short = client.lease_grant(1, None).await?;
    ensure!(short.ttl() == 2, "minimum TTL: {short:?}");
    expect_status(
        client.lease_grant(9_000_000_001, None).await,
        Code::OutOfRange,
        "etcdserver: too large lease TTL",
    )?;

    client
        .put("l/1", "a", Some(PutOptions::new().with_lease(lease)))
        .await?;
    client
        .put("l/2", "b", Some(PutOptions::new().with_lease(lease)))
        .await?;
    client.put("plain", "c", None).await?;
    let before_revoke = client
        .get("plain", None)
        .await?
        .header()
        .context("header")?
        .revision();

    let ttl = client
        .lease_time_to_live(lease, Some(LeaseTimeToLiveOptions::new().with_keys()))
        .await?;
    ensure!(ttl.id() == lease && ttl.granted_ttl() == 60);
    ensure!(ttl.ttl() > 0 && ttl.ttl() <= 60, "{ttl:?}");
    let mut keys: Vec<Vec<u8>> = ttl.keys().to_vec();
    keys.sort();
    ensure!(keys == [b"l/1".to_vec(), b"l/2".to_vec()], "{keys:?}");
    let without_keys = client.lease_time_to_live(lease, None).await?;
    ensure!(without_keys.keys().is_empty());

    let listed: Vec<i64> = client
        .leases()
        .await?
        .leases()
        .iter()
        .map(|l| l.id())
        .collect();
    ensure!(
        listed.contains(&lease) && listed.contains(&0x1234),
        "{listed:?}"
    );

    let (mut keeper, mut responses) = client.lease_keep_alive(lease).await?;
    keeper.keep_alive().await?;
    let renewed = responses
        .message()
        .await?
        .context("keepalive stream ended")?;
    ensure!(renewed.id() == lease && renewed.ttl() == 60, "{renewed:?}");

    // Revoking deletes the attached keys in one revision.
    client.lease_revoke(lease).await?;
    let gone = client
        .get("l/", Some(etcd_client::GetOptions::new().with_prefix()))
        .await?;
    ensure!(gone.kvs().is_empty());
    ensure!(gone.header().context("header")?.revision() == before_revoke + 1);
    ensure!(client.get("plain", None).await?.kvs().len() == 1);

    // An unknown lease: time-to-live answers TTL -1 (not an error), keepalive answers TTL 0.
    let unknown = client.lease_time_to_live(lease, None).await?;
    ensure!(unknown.ttl() == -1, "{unknown:?}");
    // The etcd-client crate reads the first keepalive answer itself and turns TTL <= 0 into this error.
    match client.lease_keep_alive(lease).await {
        Err(etcd_client::Error::LeaseKeepAliveError(message)) if message == "lease not found" => {}
        other => anyhow::bail!("keepalive of a revoked lease must answer TTL 0, got {other:?}"),
    }
    expect_status(client.lease_revoke(lease).await, Code::NotFound, NOT_FOUND)?;
    Ok(())
}

async fn lease_expiry_deletes_keys(cluster: &mut Cluster) -> anyhow::Result<()> {
    let mut client = cluster.client().await?;
    let lease = client.lease_grant(2, None).await?.id();
    client
        .put("ephemeral", "v", Some(PutOptions::new().with_lease(lease)))
        .await?;
    eventually(
        "the lease to expire and take its key",
        Duration::from_secs(15),
        || {
            let mut client = client.clone();
            async move {
                let response = client.get("ephemeral", None).await?;
                ensure!(response.kvs().is_empty(), "key still present");
                Ok(())
            }
        },
    )
    .await?;
    let ttl = client.lease_time_to_live(lease, None).await?;
    ensure!(ttl.ttl() == -1, "expired lease: {ttl:?}");
    Ok(())
}
