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
    /// A value that differs from every other call's, in this process or another, but for a
    /// 64-bit chance: the driver draws its process's incarnations (what names it in the lease
    /// table) from it, apart from the seed of its choices, so two processes given one worker id
    /// and one seed still tell each other apart. Random by default (std's hash keys, drawn from
    /// the operating system once per thread and moved on by every call, mixed with the time and
    /// the process id); a simulated runtime may return a reproducible value when it gives every
    /// process a seed of its own.
    fn entropy(&self) -> u64 {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        hasher.write_u128(nanos);
        hasher.write_u32(std::process::id());
        hasher.finish()
    }
}
