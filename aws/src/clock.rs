//! The clock the driver gives its worker: the runtime's monotonic clock, plus the time the host
//! spent suspended.
//!
//! `std::time::Instant` (and tokio's and smol's timers) read Linux's `CLOCK_MONOTONIC`, which
//! stands still while a VM or laptop is suspended. A worker fed it alone would resume believing
//! its delivery window open while its leases expired everywhere else. On Linux and Android the
//! driver also reads `CLOCK_BOOTTIME`, which counts the suspension, and
//! [`kcl_core::time::Suspension`] turns the two into the time suspended, which is added to every
//! instant the worker sees: a resumed owner finds its window closed. Elsewhere the suspension
//! is not measured (`std` has no suspend-counting clock on those systems).

use core::time::Duration;
use std::sync::Mutex;

use kcl_core::time::Suspension;

/// The worker's clock: the runtime's monotonic time since the driver started, plus the time the
/// host spent suspended meanwhile.
#[derive(Debug)]
pub(crate) struct WorkerClock {
    origin: std::time::Instant,
    suspend: SuspendCounter,
}

impl WorkerClock {
    /// A clock that reads zero at `origin`, on the runtime's clock.
    pub(crate) fn new(origin: std::time::Instant) -> Self {
        Self {
            origin,
            suspend: SuspendCounter::default(),
        }
    }

    /// The worker's instant at the runtime's `now`, with the monotonic and boot-time clocks'
    /// `readings` ([`crate::Runtime::suspend_clocks`]).
    pub(crate) fn at(
        &self,
        now: std::time::Instant,
        readings: Option<(u64, u64)>,
    ) -> kcl_core::time::Instant {
        kcl_core::time::from_std(self.origin, now) + self.suspend.suspended(readings)
    }
}

/// The host's suspensions since the driver started.
#[derive(Debug, Default)]
pub(crate) struct SuspendCounter {
    suspension: Mutex<Suspension>,
    /// The last measure, kept when the clocks cannot be read: the worker's clock never goes back.
    last: Mutex<Duration>,
}

impl SuspendCounter {
    /// How long the host was suspended since the first call, from the monotonic and boot-time
    /// clocks' `readings` ([`crate::Runtime::suspend_clocks`]); the last measure when `None`.
    pub(crate) fn suspended(&self, readings: Option<(u64, u64)>) -> Duration {
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((monotonic, boottime)) = readings {
            let mut suspension = self
                .suspension
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            *last = suspension.observe(monotonic, boottime);
        }
        *last
    }
}

/// `CLOCK_MONOTONIC` and `CLOCK_BOOTTIME` in milliseconds.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn readings() -> Option<(u64, u64)> {
    use rustix::time::{clock_gettime, ClockId};
    let ms = |t: rustix::time::Timespec| {
        let secs = u64::try_from(t.tv_sec).unwrap_or(0);
        let nanos = u64::try_from(t.tv_nsec).unwrap_or(0);
        secs.saturating_mul(1000).saturating_add(nanos / 1_000_000)
    };
    // Boot time second: read after the monotonic clock, it can only show more.
    let monotonic = ms(clock_gettime(ClockId::Monotonic));
    let boottime = ms(clock_gettime(ClockId::Boottime));
    Some((monotonic, boottime))
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn readings() -> Option<(u64, u64)> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_suspension_while_the_host_runs() {
        let c = SuspendCounter::default();
        assert_eq!(c.suspended(readings()), Duration::ZERO);
        std::thread::sleep(Duration::from_millis(20));
        // Reading the two clocks one after the other can put a millisecond between them.
        assert!(c.suspended(readings()) <= Duration::from_millis(1));
    }

    /// A runtime's readings (a simulated host's) are what the counter measures: boot time
    /// running ahead of the monotonic clock is a suspension.
    #[test]
    fn a_suspension_is_boot_time_running_ahead_of_the_monotonic_clock() {
        let c = SuspendCounter::default();
        assert_eq!(c.suspended(Some((1_000, 5_000))), Duration::ZERO);
        assert_eq!(c.suspended(Some((2_000, 6_000))), Duration::ZERO);
        assert_eq!(
            c.suspended(Some((2_500, 36_500))),
            Duration::from_secs(30),
            "30 s asleep"
        );
        assert_eq!(
            c.suspended(None),
            Duration::from_secs(30),
            "unmeasured: the last measure stands"
        );
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn both_clocks_are_read_on_linux() {
        let (monotonic, boottime) = readings().expect("linux has both clocks");
        assert!(boottime >= monotonic, "{boottime} < {monotonic}");
    }
}
