//! What the driver needs of an async runtime: its clocks, a timer and a way to spawn. Every
//! clock the driver reads goes through this trait, so a simulated runtime controls them all.

use std::future::Future;
use std::time::{Duration, Instant, SystemTime};

/// An async runtime, as the driver uses it. kcl-tokio and kcl-smol implement it; a test can too.
pub trait Runtime: Clone + Send + Sync + 'static {
    /// The runtime's monotonic clock. Must be the clock its timers run on (tokio's, so that
    /// paused time in tests moves both).
    fn now(&self) -> Instant;
    /// Completes after `duration`.
    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send + 'static;
    /// Runs `task` in the background.
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static);
    /// Wall-clock time: when a shard listing was answered (a root lease at `LATEST` starts
    /// there). The host's clock by default.
    fn wall_clock(&self) -> SystemTime {
        SystemTime::now()
    }
    /// The host's `CLOCK_MONOTONIC` and `CLOCK_BOOTTIME` in milliseconds, read in that order, from
    /// which the driver measures the time the host spent suspended; `None` where it cannot be
    /// measured. The operating system's clocks by default (Linux and Android; `None` elsewhere).
    fn suspend_clocks(&self) -> Option<(u64, u64)> {
        crate::clock::readings()
    }
}
