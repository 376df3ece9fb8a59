//! The metrics observer task: counts leader changes from the member's status feed, hands the
//! member's storage its histograms, and folds histogram samples periodically (upkeep).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::backend::Backend;
use crate::service::Service;

/// How often recorded histogram samples are folded into buckets between scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Whether moving from `last` to `now` is a leader change as etcd counts them: a leader is
/// known and it differs from the previous look (the first leader counts; losing the leader
/// does not; finding one again does, even the same one, as in etcd's raft loop).
pub(crate) fn is_leader_change(last: Option<u64>, now: Option<u64>) -> bool {
    matches!(now, Some(leader) if last != Some(leader))
}

/// Runs until `stop` is cancelled. Status updates are coalesced by the watch channel, so a
/// leader that came and went between two looks is not counted (etcd sees every Raft ready).
pub async fn run<B: Backend>(service: Service<B>, stop: CancellationToken) {
    let metrics = service.metrics().clone();
    if !service
        .node()
        .attach_log_histograms(metrics.log_histograms.clone())
    {
        tracing::debug!("the member's log store already reports to another registry");
    }
    let mut status = service.node().watch_status();
    let mut last_leader = None;
    let mut upkeep = tokio::time::interval(UPKEEP_INTERVAL);
    upkeep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let leader = status.borrow_and_update().leader;
        if is_leader_change(last_leader, leader) {
            metrics.leader_changes.increment(1);
        }
        last_leader = leader;
        tokio::select! {
            _ = stop.cancelled() => break,
            changed = status.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            _ = upkeep.tick() => metrics.run_upkeep(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_leader_change;

    #[test]
    fn leader_changes_count_as_etcd_counts_them() {
        let table = [
            (None, None, false),
            (None, Some(1), true),
            (Some(1), Some(1), false),
            (Some(1), None, false),
            (Some(1), Some(2), true),
        ];
        for (last, now, expected) in table {
            assert_eq!(is_leader_change(last, now), expected, "{last:?} -> {now:?}");
        }
    }
}
