//! Time as an input: the lease keeper reads the clock only through [`Clock`].

use tokio::time::Instant;

/// A monotonic clock. Production uses tokio's (which tests can pause and advance).
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Instant;
}

/// tokio's monotonic clock; under `start_paused` tests it advances only when told to.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioClock;

impl Clock for TokioClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}
