//! Compact: reads and compactions below, at and above the compacted revision.

use anyhow::Context;
use anyhow::ensure;
use etcd_client::CompactionOptions;
use etcd_client::GetOptions;
use pgwarden_tests::Cluster;
use pgwarden_tests::grpc::expect_status;
use tonic::Code;

pgwarden_tests::against_both_targets!(1 => compaction);

const COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";
const FUTURE: &str = "etcdserver: mvcc: required revision is a future revision";

async fn compaction(cluster: &mut Cluster) -> anyhow::Result<()> {
    let mut client = cluster.client().await?;
    for value in ["1", "2", "3", "4", "5"] {
        client.put("c", value, None).await?; // revisions 2..=6
    }
    client.delete("c", None).await?; // 7
    client.put("c", "again", None).await?; // 8

    expect_status(client.compact(9, None).await, Code::OutOfRange, FUTURE)?;
    let response = client.compact(4, None).await?;
    ensure!(response.header().context("header")?.revision() == 8);

    // Reading below the compacted revision fails; at it, the newest version <= 4 survives.
    expect_status(
        client
            .get("c", Some(GetOptions::new().with_revision(3)))
            .await,
        Code::OutOfRange,
        COMPACTED,
    )?;
    let at = client
        .get("c", Some(GetOptions::new().with_revision(4)))
        .await?;
    ensure!(at.kvs()[0].value() == b"3", "{at:?}");
    ensure!(
        client
            .get("c", Some(GetOptions::new().with_revision(5)))
            .await?
            .kvs()[0]
            .value()
            == b"4"
    );

    // Compacting at or below the compacted revision again is refused.
    expect_status(client.compact(4, None).await, Code::OutOfRange, COMPACTED)?;
    expect_status(client.compact(2, None).await, Code::OutOfRange, COMPACTED)?;

    // A physical compaction returns once applied; a tombstone at <= 7 vanishes from history.
    client
        .compact(7, Some(CompactionOptions::new().with_physical()))
        .await?;
    let at_seven = client
        .get("c", Some(GetOptions::new().with_revision(7)))
        .await?;
    ensure!(at_seven.kvs().is_empty(), "deleted at 7: {at_seven:?}");
    let now = client.get("c", None).await?;
    ensure!(now.kvs()[0].value() == b"again" && now.kvs()[0].version() == 1);

    // Compacting at the current revision is allowed.
    client.compact(8, None).await?;
    expect_status(
        client
            .get("c", Some(GetOptions::new().with_revision(7)))
            .await,
        Code::OutOfRange,
        COMPACTED,
    )?;
    Ok(())
}
