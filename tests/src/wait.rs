//! Waiting on conditions with deadlines instead of sleeping.

use std::future::Future;
use std::time::Duration;
use std::time::Instant;

use anyhow::anyhow;

/// How often a probe is retried while its condition does not hold.
const PROBE_INTERVAL: Duration = Duration::from_millis(50);

/// Retries `probe` until it returns `Ok` or `timeout` passes; the error then carries the last failure.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let attempt = tokio::time::timeout(remaining.max(PROBE_INTERVAL), probe()).await;
        let error = match attempt {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(error)) => error,
            Err(_) => anyhow!("probe did not answer in time"),
        };
        if Instant::now() >= deadline {
            return Err(error.context(format!("timed out after {timeout:?} waiting for {what}")));
        }
        tokio::time::sleep(PROBE_INTERVAL).await;
    }
}
