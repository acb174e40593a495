//! What the driver needs of an async runtime: a clock, a timer and a way to spawn.

use std::future::Future;
use std::time::{Duration, Instant};

/// An async runtime, as the driver uses it. kcl-tokio and kcl-smol implement it; a test can too.
pub trait Runtime: Clone + Send + Sync + 'static {
    /// The runtime's monotonic clock. Must be the clock its timers run on (tokio's, so that
    /// paused time in tests moves both).
    fn now(&self) -> Instant;
    /// Completes after `duration`.
    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send + 'static;
    /// Runs `task` in the background.
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static);
}
