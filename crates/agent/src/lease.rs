//! The agent's store lease and a `ttl` change in `/config`.
//!
//! A lease keeps the TTL it was granted with; the store answers each keepalive with it. When
//! `/config` sets another `ttl` than the current lease was requested with, the agent grants a
//! new lease with it (the member key and, on
//! the primary, the leader key move to the new lease in the same cycle) and lets the old one
//! expire. The primary's own deadline (design invariant 6) is computed from the TTL of the
//! lease its leader key may still be bound to: during the switch, the shorter of the two.

use std::time::Duration;

/// The TTL a store grants for `configured`: whole seconds, rounded up (the etcd API's unit).
pub(crate) fn granted_ttl(configured: Duration) -> Duration {
    Duration::from_secs(u64::try_from(configured.as_millis().div_ceil(1000)).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn granted_ttl_is_whole_seconds_rounded_up() {
        let cases = [(30_000, 30), (2_500, 3), (1, 1), (0, 0)];
        for (configured_ms, granted_s) in cases {
            assert_eq!(
                granted_ttl(Duration::from_millis(configured_ms)),
                Duration::from_secs(granted_s),
                "{configured_ms} ms"
            );
        }
    }
}
