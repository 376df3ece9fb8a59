//! The auto-compactor (etcd `--auto-compaction-mode` and `--auto-compaction-retention`).
//!
//! - `periodic`: keep the last *retention* of history. As in etcd, compactions are
//!   min(retention, 1 hour) apart and every member samples its revision ten times per such
//!   interval; the leader compacts to the newest revision sampled at least *retention* ago.
//! - `revision`: keep the last *retention* revisions. Every 5 minutes (etcd's interval) the
//!   leader compacts to current revision − retention.
//!
//! Only the Raft leader proposes, through the same service call a client's Compact takes, so
//! every member compacts at the same revision. The plan is a pure function of (time,
//! revisions) in [`Planner`]; the task around it reads the clock and the store.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use etcd_proto::etcdserverpb::CompactionRequest;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backend::{Backend, StatusExt};
use crate::error::ServiceError;
use crate::lease::Clock;
use crate::service::Service;

/// etcd's interval between revision-mode compactions.
const REVISION_MODE_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// etcd compacts at least hourly in periodic mode, sampling ten times per interval.
const PERIODIC_MAX_COMPACT_INTERVAL: Duration = Duration::from_secs(60 * 60);
const PERIODIC_SAMPLES_PER_INTERVAL: u32 = 10;

/// etcd's `--auto-compaction-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompactionMode {
    Periodic,
    Revision,
}

/// Auto-compaction as configured; `None` in [`crate::ServerConfig`] means off (etcd's
/// retention "0").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AutoCompaction {
    /// Keep this much history (time).
    Periodic { retention: Duration },
    /// Keep this many revisions, checking every `interval` (etcd: 5 minutes).
    Revision { retention: i64, interval: Duration },
}

/// A refused `--auto-compaction-mode` / `--auto-compaction-retention` value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AutoCompactionError {
    #[error("unknown mode {0:?} (expected periodic or revision)")]
    Mode(String),
    #[error("{0:?} is not a duration (e.g. 1h, 30m, 90s) or a number of hours")]
    PeriodicRetention(String),
    #[error("{0:?} is not a non-negative number of revisions")]
    RevisionRetention(String),
}

impl AutoCompaction {
    /// Parses etcd's two flags. `periodic` takes a duration ("1h", "30m", "1h30m") or a bare
    /// number of hours ("1", "0.5"); `revision` takes a count. A zero retention turns
    /// auto-compaction off (`Ok(None)`), as in etcd.
    pub fn parse(
        mode: &str,
        retention: &str,
    ) -> Result<Option<AutoCompaction>, AutoCompactionError> {
        let retention = retention.trim();
        match mode.trim() {
            "periodic" => {
                let period = parse_hours(retention)
                    .or_else(|| parse_go_duration(retention))
                    .ok_or_else(|| AutoCompactionError::PeriodicRetention(retention.to_owned()))?;
                Ok((!period.is_zero()).then_some(AutoCompaction::Periodic { retention: period }))
            }
            "revision" => {
                let revisions = retention
                    .parse::<i64>()
                    .ok()
                    .filter(|count| *count >= 0)
                    .ok_or_else(|| AutoCompactionError::RevisionRetention(retention.to_owned()))?;
                Ok((revisions > 0).then_some(AutoCompaction::Revision {
                    retention: revisions,
                    interval: REVISION_MODE_INTERVAL,
                }))
            }
            other => Err(AutoCompactionError::Mode(other.to_owned())),
        }
    }

    /// How often the compactor looks at the store.
    pub fn tick_interval(&self) -> Duration {
        match self {
            AutoCompaction::Periodic { retention } => {
                (*retention).min(PERIODIC_MAX_COMPACT_INTERVAL) / PERIODIC_SAMPLES_PER_INTERVAL
            }
            AutoCompaction::Revision { interval, .. } => *interval,
        }
        .max(Duration::from_millis(10))
    }
}

/// A bare number is hours (etcd: "--auto-compaction-retention=1" keeps one hour).
fn parse_hours(text: &str) -> Option<Duration> {
    let hours = text.parse::<f64>().ok()?;
    if !hours.is_finite() || hours < 0.0 {
        return None;
    }
    Duration::try_from_secs_f64(hours * 3600.0).ok()
}

/// Go's `time.ParseDuration` for non-negative values: one or more `<number><unit>` with
/// units ns, us (or µs), ms, s, m, h; e.g. "1h30m", "2.5s".
fn parse_go_duration(text: &str) -> Option<Duration> {
    if text.is_empty() {
        return None;
    }
    let mut rest = text;
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * seconds_per_unit;
    }
    Duration::try_from_secs_f64(total).ok()
}

/// The compactor's pure core: fed the time and the store's revisions at each tick, it says
/// which revision to compact to, if any.
#[derive(Debug)]
pub struct Planner {
    config: AutoCompaction,
    /// (time, revision) samples, oldest first; periodic mode only.
    samples: VecDeque<(Instant, i64)>,
    /// When this planner last asked for a compaction; periodic mode spaces them by
    /// min(retention, 1 hour).
    last_planned: Option<Instant>,
}

impl Planner {
    pub fn new(config: AutoCompaction) -> Planner {
        Planner {
            config,
            samples: VecDeque::new(),
            last_planned: None,
        }
    }

    /// One look at the store: `revision` is the current revision, `compacted` the current
    /// compact revision. Returns the revision to compact to when it is past `compacted`.
    pub fn tick(&mut self, now: Instant, revision: i64, compacted: i64) -> Option<i64> {
        let target = match &self.config {
            AutoCompaction::Revision { retention, .. } => revision - retention,
            AutoCompaction::Periodic { retention } => {
                self.samples.push_back((now, revision));
                let horizon = now.checked_sub(*retention)?;
                // Keep only the newest sample at or before the horizon, and the later ones.
                while self.samples.len() > 1 && self.samples[1].0 <= horizon {
                    self.samples.pop_front();
                }
                let interval = (*retention).min(PERIODIC_MAX_COMPACT_INTERVAL);
                if self
                    .last_planned
                    .is_some_and(|last| now.saturating_duration_since(last) < interval)
                {
                    return None;
                }
                match self.samples.front() {
                    Some((taken, sampled)) if *taken <= horizon => *sampled,
                    _ => return None,
                }
            }
        };
        if target <= compacted {
            return None;
        }
        self.last_planned = Some(now);
        Some(target)
    }
}

/// Runs the auto-compactor until `stop` is cancelled. Every member keeps sampling; only the
/// leader proposes.
pub async fn run<B: Backend>(
    service: Service<B>,
    config: AutoCompaction,
    clock: Arc<dyn Clock>,
    stop: CancellationToken,
) {
    let mut ticker = tokio::time::interval(config.tick_interval());
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut planner = Planner::new(config);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let (revision, compacted) = service
            .node()
            .read(|store| (store.revision(), store.compact_revision()));
        let Some(target) = planner.tick(clock.now(), revision, compacted) else {
            continue;
        };
        if !service.node().status().is_leader() {
            continue;
        }
        let request = CompactionRequest {
            revision: target,
            physical: false,
        };
        match service.compact(request).await {
            Ok(_) => {
                service.metrics().auto_compactions.increment(1);
                tracing::info!(revision = target, "auto-compacted history");
            }
            // Another compaction got there first: nothing to do.
            Err(ServiceError::Apply(refused))
                if refused.message == etcd_proto::errors::COMPACTED.message => {}
            Err(error) => tracing::warn!(revision = target, %error, "auto-compaction failed"),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
#[path = "compactor_test.rs"]
mod compactor_test;
