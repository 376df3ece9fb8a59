//! Watch: create, live events, historical replay, prev_kv, filters, cancel, compacted start,
//! progress requests.

use std::time::Duration;

use anyhow::Context;
use anyhow::ensure;
use etcd_client::EventType;
use etcd_client::WatchFilterType;
use etcd_client::WatchOptions;
use etcd_client::WatchResponse;
use etcd_client::WatchStream;
use pgwarden_tests::Cluster;

pgwarden_tests::against_both_targets!(1 => live_events_and_cancel, history_prev_kv_and_filters, compacted_start, progress_request);

/// No single watch response may take longer than this to arrive.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

async fn next(stream: &mut WatchStream) -> anyhow::Result<WatchResponse> {
    tokio::time::timeout(RESPONSE_TIMEOUT, stream.message())
        .await
        .context("no watch response in time")??
        .context("watch stream ended")
}

/// Reads responses until `count` events arrived; returns (type, key, value, mod_revision) tuples.
async fn events(
    stream: &mut WatchStream,
    count: usize,
) -> anyhow::Result<Vec<(EventType, String, String, i64, Option<String>)>> {
    let mut seen = Vec::new();
    while seen.len() < count {
        let response = next(stream).await?;
        ensure!(!response.canceled(), "watch canceled: {response:?}");
        for event in response.events() {
            let kv = event.kv().context("event without kv")?;
            seen.push((
                event.event_type(),
                String::from_utf8_lossy(kv.key()).into_owned(),
                String::from_utf8_lossy(kv.value()).into_owned(),
                kv.mod_revision(),
                event
                    .prev_kv()
                    .map(|prev| String::from_utf8_lossy(prev.value()).into_owned()),
            ));
        }
    }
    Ok(seen)
}

async fn live_events_and_cancel(cluster: &mut Cluster) -> anyhow::Result<()> {
    let mut client = cluster.client().await?;
    let mut stream = client
        .watch("w/", Some(WatchOptions::new().with_prefix()))
        .await?;
    let created = next(&mut stream).await?;
    ensure!(
        created.created() && created.events().is_empty(),
        "{created:?}"
    );
    ensure!(created.header().context("header")?.revision() == 1);
    let watch_id = created.watch_id();

    client.put("w/a", "1", None).await?; // 2
    client.put("outside", "x", None).await?; // 3
    client.delete("w/a", None).await?; // 4
    let seen = events(&mut stream, 2).await?;
    ensure!(
        seen == [
            (EventType::Put, "w/a".into(), "1".into(), 2, None),
            (EventType::Delete, "w/a".into(), String::new(), 4, None),
        ],
        "{seen:?}"
    );

    // A txn's events arrive together in one response.
    client
        .txn(etcd_client::Txn::new().and_then([
            etcd_client::TxnOp::put("w/x", "1", None),
            etcd_client::TxnOp::put("w/y", "1", None),
        ]))
        .await?;
    let batch = next(&mut stream).await?;
    ensure!(
        batch.events().len() == 2 && batch.watch_id() == watch_id,
        "{batch:?}"
    );
    ensure!(batch.header().context("header")?.revision() == 5);

    stream.cancel(watch_id).await?;
    let canceled = next(&mut stream).await?;
    ensure!(
        canceled.canceled() && canceled.watch_id() == watch_id,
        "{canceled:?}"
    );

    // A second watcher on the same stream gets its own id.
    stream.watch("other", None).await?;
    let second = next(&mut stream).await?;
    ensure!(
        second.created() && second.watch_id() != watch_id,
        "{second:?}"
    );
    Ok(())
}

async fn history_prev_kv_and_filters(cluster: &mut Cluster) -> anyhow::Result<()> {
    let mut client = cluster.client().await?;
    client.put("h", "1", None).await?; // 2
    client.put("h", "2", None).await?; // 3
    client.delete("h", None).await?; // 4
    client.put("h", "3", None).await?; // 5

    let mut replay = client
        .watch(
            "h",
            Some(WatchOptions::new().with_start_revision(2).with_prev_key()),
        )
        .await?;
    ensure!(next(&mut replay).await?.created());
    let seen = events(&mut replay, 4).await?;
    ensure!(
        seen == [
            (EventType::Put, "h".into(), "1".into(), 2, None),
            (EventType::Put, "h".into(), "2".into(), 3, Some("1".into())),
            (
                EventType::Delete,
                "h".into(),
                String::new(),
                4,
                Some("2".into())
            ),
            (EventType::Put, "h".into(), "3".into(), 5, None),
        ],
        "{seen:?}"
    );
    // After the replay the watcher is live.
    client.put("h", "4", None).await?; // 6
    let live = events(&mut replay, 1).await?;
    ensure!(live[0].3 == 6 && live[0].4.as_deref() == Some("3"));

    let mut deletes_only = client
        .watch(
            "h",
            Some(
                WatchOptions::new()
                    .with_start_revision(2)
                    .with_filters([WatchFilterType::NoPut]),
            ),
        )
        .await?;
    ensure!(next(&mut deletes_only).await?.created());
    let seen = events(&mut deletes_only, 1).await?;
    ensure!(
        seen.len() == 1 && seen[0].0 == EventType::Delete && seen[0].3 == 4,
        "{seen:?}"
    );

    let mut puts_only = client
        .watch(
            "h",
            Some(
                WatchOptions::new()
                    .with_start_revision(4)
                    .with_filters([WatchFilterType::NoDelete]),
            ),
        )
        .await?;
    ensure!(next(&mut puts_only).await?.created());
    let seen = events(&mut puts_only, 2).await?;
    ensure!(
        seen.iter().map(|e| e.3).collect::<Vec<_>>() == [5, 6],
        "{seen:?}"
    );
    Ok(())
}

async fn compacted_start(cluster: &mut Cluster) -> anyhow::Result<()> {
    let mut client = cluster.client().await?;
    for value in ["1", "2", "3", "4"] {
        client.put("c", value, None).await?; // 2..=5
    }
    client.compact(4, None).await?;
    let mut stream = client
        .watch("c", Some(WatchOptions::new().with_start_revision(2)))
        .await?;
    // etcd 3.4 first confirms the creation, then cancels the watcher with the compacted revision.
    let mut response = next(&mut stream).await?;
    if response.created() && !response.canceled() {
        response = next(&mut stream).await?;
    }
    ensure!(response.canceled(), "{response:?}");
    ensure!(response.compact_revision() == 4, "{response:?}");
    ensure!(response.events().is_empty());

    // Watching from exactly the compacted revision works.
    let mut from_compacted = client
        .watch("c", Some(WatchOptions::new().with_start_revision(4)))
        .await?;
    ensure!(next(&mut from_compacted).await?.created());
    let seen = events(&mut from_compacted, 2).await?;
    ensure!(
        seen.iter().map(|e| e.3).collect::<Vec<_>>() == [4, 5],
        "{seen:?}"
    );
    Ok(())
}

async fn progress_request(cluster: &mut Cluster) -> anyhow::Result<()> {
    let mut client = cluster.client().await?;
    client.put("p", "1", None).await?; // 2
    let mut stream = client.watch("p", None).await?;
    let created = next(&mut stream).await?;
    ensure!(created.created());
    client.put("unwatched", "1", None).await?; // 3
    stream.request_progress().await?;
    let progress = next(&mut stream).await?;
    // etcd 3.4 answers a progress request with watch_id -1 (meant for every watcher on the stream)
    // and the current store revision, without events.
    ensure!(
        progress.events().is_empty() && !progress.canceled(),
        "{progress:?}"
    );
    ensure!(progress.watch_id() == -1, "{progress:?}");
    ensure!(
        progress.header().context("header")?.revision() == 3,
        "{progress:?}"
    );
    Ok(())
}
