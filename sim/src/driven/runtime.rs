//! The [`kcl_aws::Runtime`] a simulated worker process runs its driver on: the executor's timers
//! and spawner, and the clocks of the process's host.
//!
//! The host's clocks are a [`NodeClock`]: a boot clock that drifts at the nemesis' rate and a
//! monotonic clock that stands still while the host is suspended. The runtime's `now` and its
//! timers run on the monotonic clock, as tokio's and smol's do on Linux; `suspend_clocks` reads
//! both, so the driver measures a suspension exactly as it does on a real host (or, with
//! [`WorkerClock::Monotonic`], reads nothing and must be caught by the checkers).

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::exec::Handle;
use crate::fleet::{NodeClock, WorkerClock};

/// One host's clocks, shared by the fleet (which drifts and suspends them) and the runtime.
#[derive(Clone)]
pub(crate) struct HostClock(Arc<Mutex<Host>>);

/// The clocks, and the highest monotonic reading given out: a monotonic clock never goes back,
/// while [`NodeClock`]'s model of a suspend can, when the clock's rate changes during one (it
/// stops the clock by true time, not by the clock's own).
pub(crate) struct Host {
    pub clock: NodeClock,
    highest_monotonic: u64,
}

impl Host {
    /// The monotonic and boot readings at true time `t`, the first never going back.
    fn readings(&mut self, t: u64) -> (u64, u64) {
        let (monotonic, boot) = self.clock.readings(t);
        self.highest_monotonic = self.highest_monotonic.max(monotonic);
        (self.highest_monotonic, boot)
    }
}

impl HostClock {
    pub(crate) fn new(clock: NodeClock) -> Self {
        Self(Arc::new(Mutex::new(Host {
            clock,
            highest_monotonic: 0,
        })))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Host> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A simulated process's runtime.
#[derive(Clone)]
pub(crate) struct SimRuntime {
    exec: Handle,
    clock: HostClock,
    kind: WorkerClock,
    /// What the monotonic clock's 0 is as a `std::time::Instant` (only differences matter).
    base: std::time::Instant,
    /// The host's wall clock error (ms, applied as `+ error - 400`).
    wall_error_ms: u64,
}

impl SimRuntime {
    pub(crate) fn new(
        exec: Handle,
        clock: HostClock,
        kind: WorkerClock,
        base: std::time::Instant,
        wall_error_ms: u64,
    ) -> Self {
        Self {
            exec,
            clock,
            kind,
            base,
            wall_error_ms,
        }
    }

    fn readings(&self) -> (u64, u64) {
        self.clock.lock().readings(self.exec.now_ms())
    }
}

impl kcl_aws::Runtime for SimRuntime {
    fn now(&self) -> std::time::Instant {
        self.base + Duration::from_millis(self.readings().0)
    }

    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send + 'static {
        // Whole milliseconds, rounded up: a timer never fires early.
        let ms = u64::try_from(duration.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX / 4);
        let now = self.exec.now_ms();
        let at = {
            let mut host = self.clock.lock();
            let target = host.readings(now).0.saturating_add(ms);
            first_reaching(&host.clock, now, target)
        };
        self.exec.sleep_until(at)
    }

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.exec.spawn(task);
    }

    fn wall_clock(&self) -> SystemTime {
        let ms = (self.exec.now_ms() + self.wall_error_ms).saturating_sub(400);
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    /// Nothing to add: every simulated process is started with a seed of its own, drawn from
    /// the run's, which names it already (and keeps the run reproducible).
    fn entropy(&self) -> u64 {
        0
    }

    fn suspend_clocks(&self) -> Option<(u64, u64)> {
        match self.kind {
            WorkerClock::Boottime => Some(self.readings()),
            WorkerClock::Monotonic => None,
        }
    }
}

/// A true instant from `now` on at which `clock`'s monotonic reading shows `target`, as its
/// clock stands now (a rate, a suspend under way): the first one where the readings only grow.
/// Found by search over the readings themselves, so a timer never fires before its clock got
/// there, whatever the rate changes and suspends did.
fn first_reaching(clock: &NodeClock, now: u64, target: u64) -> u64 {
    let reaches = |t: u64| clock.readings(t).0 >= target;
    if reaches(now) {
        return now;
    }
    // Gallop to a time that reaches it, then bisect: `lo` never reaches, `hi` does.
    let (mut lo, mut step) = (now, 1u64);
    let mut hi = now + step;
    while !reaches(hi) {
        lo = hi;
        step = step.saturating_mul(2);
        if step > 1 << 50 {
            // A clock that never gets there (it cannot, but a timer must still be finite).
            return hi;
        }
        hi = now.saturating_add(step);
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if reaches(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::driven::exec::{Executor, Group};
    use kcl_aws::Runtime as _;
    use kcl_core::testkit::DriftClock;

    #[test]
    fn timers_run_on_the_monotonic_clock_and_a_suspension_shows_in_boot_time() {
        let mut exec = Executor::new();
        let clock = HostClock::new(NodeClock::new(
            DriftClock::new(5_000, 0),
            WorkerClock::Boottime,
        ));
        let base = std::time::Instant::now();
        let rt = SimRuntime::new(
            exec.handle(),
            clock.clone(),
            WorkerClock::Boottime,
            base,
            400,
        );
        let fired = Arc::new(Mutex::new(None));
        let (rt2, fired2) = (rt.clone(), fired.clone());
        exec.spawn(Group(0), async move {
            rt2.sleep(Duration::from_micros(1_500)).await;
            *fired2.lock().unwrap() = Some(rt2.exec.now_ms());
        });
        exec.run_until(1);
        assert_eq!(*fired.lock().unwrap(), None, "1.5 ms rounds up to 2");
        exec.run_until(10);
        assert_eq!(*fired.lock().unwrap(), Some(2));
        assert_eq!(rt.now() - base, Duration::from_millis(5_010));
        clock.lock().clock.suspend(10, 1_000);
        exec.run_until(2_000);
        assert_eq!(rt.suspend_clocks(), Some((5_010 + 990, 7_000)));
        assert_eq!(
            rt.wall_clock().duration_since(UNIX_EPOCH).unwrap(),
            Duration::from_millis(2_000)
        );
    }

    /// A timer armed while the host is suspended and its clock slowed fires once the monotonic
    /// clock has moved by its duration: after the suspend, at the slow rate.
    #[test]
    fn a_timer_through_a_suspend_and_a_rate_change_fires_when_the_clock_gets_there() {
        let mut clock = NodeClock::new(DriftClock::new(1_000, 0), WorkerClock::Boottime);
        clock.suspend(100, 1_000);
        clock.set_rate(500, 0.2);
        let (monotonic, _) = clock.readings(600);
        let at = first_reaching(&clock, 600, monotonic + 227);
        assert!(at > 1_100, "not before the suspend ends: {at}");
        assert!(clock.readings(at).0 >= monotonic + 227);
        assert!(clock.readings(at - 1).0 < monotonic + 227);
        let host = HostClock::new(clock);
        let first = host.lock().readings(99).0;
        assert!(host.lock().readings(600).0 >= first, "never back");
    }
}
