//! Asking other members `GET /patroni` before racing for the leader key (patroni.md §1.7):
//! the shared REST client (http, or https per `ctl:`/`restapi:`), 2 s per peer, no retries,
//! all peers at once.

use std::time::Duration;

use ha::{Lsn, MemberName, PeerAnswer, PeerReply, PeerStatus, Timeline};

/// Patroni's per-peer timeout for the leader race.
const PEER_TIMEOUT: Duration = Duration::from_secs(2);

/// Asks every `(name, api_url)` at once; an unreachable or unparsable peer is `Unreachable`.
pub async fn query(
    client: &rest::client::RestClient,
    peers: Vec<(MemberName, String)>,
) -> Vec<PeerAnswer> {
    let asks = peers.into_iter().map(|(name, url)| async move {
        // `api_url` is `http(s)://host:port/patroni`: ask that path.
        let path = rest::client::url_path(&url, "/patroni");
        let reply = match client.get_json(&url, path, PEER_TIMEOUT).await {
            Some(json) => PeerReply::Status(peer_status(&json)),
            None => PeerReply::Unreachable,
        };
        PeerAnswer { name, reply }
    });
    futures::future::join_all(asks).await
}

/// The race-relevant fields of a `/patroni` answer.
pub fn peer_status(json: &serde_json::Value) -> PeerStatus {
    let text = |key: &str| json.get(key).and_then(serde_json::Value::as_str);
    let xlog = json.get("xlog");
    let position = |key: &str| {
        xlog.and_then(|xlog| xlog.get(key))
            .and_then(serde_json::Value::as_u64)
    };
    let is_primary =
        matches!(text("role"), Some("primary" | "master")) && text("state") == Some("running");
    let wal_position = if is_primary {
        position("location")
    } else {
        match (position("received_location"), position("replayed_location")) {
            (Some(received), Some(replayed)) => Some(received.max(replayed)),
            (received, replayed) => received.or(replayed),
        }
    };
    let tags = json
        .get("tags")
        .and_then(serde_json::Value::as_object)
        .map(dcs_tags)
        .unwrap_or_default();
    PeerStatus {
        is_primary,
        wal_position: wal_position.map(Lsn),
        timeline: json
            .get("timeline")
            .and_then(serde_json::Value::as_u64)
            .and_then(|timeline| u32::try_from(timeline).ok())
            .map(Timeline),
        tags,
        watchdog_failed: json
            .get("watchdog_failed")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false),
    }
}

fn dcs_tags(map: &serde_json::Map<String, serde_json::Value>) -> ha::Tags {
    let tags = map
        .iter()
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    dcs::tags_from_map(&tags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_replica_status() {
        let json = serde_json::json!({
            "state": "running", "role": "replica", "timeline": 2,
            "xlog": {"received_location": 100, "replayed_location": 90},
            "tags": {"nofailover": true},
        });
        let status = peer_status(&json);
        assert!(!status.is_primary);
        assert_eq!(status.wal_position, Some(Lsn(100)));
        assert_eq!(status.timeline, Some(Timeline(2)));
        assert!(status.tags.nofailover);
    }
}
