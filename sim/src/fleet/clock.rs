//! A worker's clock as its driver reads it. The machine's boot clock counts host suspension and
//! drifts at the nemesis' rate; the monotonic clock is the boot clock less the time spent
//! suspended, so it stands still through a suspend. A driver that counts suspension
//! ([`WorkerClock::Boottime`], what kcl-aws does on Linux) gives its worker the monotonic reading
//! plus the suspension [`kcl_core::time::Suspension`] measures from both clocks; one that does not
//! ([`WorkerClock::Monotonic`]) gives the bare monotonic reading, and a resumed owner then
//! believes its delivery window still open, which the checkers must report.

use core::time::Duration;

use kcl_core::testkit::DriftClock;
use kcl_core::time::Suspension;
use kcl_core::Instant;

/// Which clock the simulated drivers give their workers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerClock {
    /// Monotonic plus the measured suspension (kcl-aws on Linux).
    Boottime,
    /// Monotonic alone: a suspend must then be reported by the checkers.
    Monotonic,
}

/// One worker's clocks.
#[derive(Clone, Debug)]
pub(crate) struct NodeClock {
    boot: DriftClock,
    /// Time the monotonic clock stood still in suspends that are over (ms).
    stopped_ms: u64,
    /// The suspend under way or last begun: true start and end (ms).
    suspend: Option<(u64, u64)>,
    suspension: Suspension,
    kind: WorkerClock,
}

impl NodeClock {
    pub(crate) fn new(boot: DriftClock, kind: WorkerClock) -> Self {
        Self {
            boot,
            stopped_ms: 0,
            suspend: None,
            suspension: Suspension::new(),
            kind,
        }
    }

    /// The host is suspended from true time `t` for `ms`: the monotonic clock stands still.
    pub(crate) fn suspend(&mut self, t: u64, ms: u64) {
        self.suspend = Some(match self.suspend {
            // Overlapping suspends are one, to the later end.
            Some((s, e)) if t < e => (s, e.max(t + ms)),
            Some((s, e)) => {
                self.stopped_ms += e - s;
                (t, t + ms)
            }
            None => (t, t + ms),
        });
    }

    /// How long the monotonic clock has stood still by true time `t`.
    fn stopped(&self, t: u64) -> u64 {
        self.stopped_ms + self.suspend.map_or(0, |(s, e)| t.min(e).saturating_sub(s))
    }

    /// What the driver gives its worker at true time `t`.
    pub(crate) fn local(&mut self, t: u64) -> Instant {
        let boot = self.boot.local(t).as_millis();
        let monotonic = boot.saturating_sub(self.stopped(t));
        let reading = Instant::from_millis(monotonic);
        match self.kind {
            WorkerClock::Boottime => reading + self.suspension.observe(monotonic, boot),
            WorkerClock::Monotonic => reading,
        }
    }

    /// The first true instant at which the worker's clock shows `local`.
    pub(crate) fn true_time(&self, local: Instant) -> u64 {
        match self.kind {
            // Every reading adds what the monotonic clock missed: the boot clock's time.
            WorkerClock::Boottime => self.boot.true_time(local),
            WorkerClock::Monotonic => self.monotonic_true_time(local),
        }
    }

    /// The first true instant at which the monotonic clock shows `local`.
    fn monotonic_true_time(&self, local: Instant) -> u64 {
        let before = self
            .boot
            .true_time(local + Duration::from_millis(self.stopped_ms));
        match self.suspend {
            // Not reached before the suspend began: only after it, later by its length.
            Some((s, e)) if before > s => self
                .boot
                .true_time(local + Duration::from_millis(self.stopped_ms + e - s))
                .max(e),
            _ => before,
        }
    }

    /// The host's monotonic and boot clocks at true time `t` (ms), raw: what a driver reads
    /// before it adds the suspension it measures from the two.
    pub(crate) fn readings(&self, t: u64) -> (u64, u64) {
        let boot = self.boot.local(t).as_millis();
        (boot.saturating_sub(self.stopped(t)), boot)
    }

    /// Local milliseconds per true millisecond.
    pub(crate) fn rate(&self) -> f64 {
        self.boot.rate()
    }

    /// From true time `t` on, the clocks run at `rate`.
    pub(crate) fn set_rate(&mut self, t: u64, rate: f64) {
        self.boot.set_rate(t, rate);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    #[test]
    fn a_suspend_stops_the_monotonic_clock_and_the_driver_counts_it_back() {
        for kind in [WorkerClock::Boottime, WorkerClock::Monotonic] {
            let mut c = NodeClock::new(DriftClock::new(1_000, 0), kind);
            assert_eq!(c.local(500), at(1_500));
            c.suspend(1_000, 30_000);
            // Nobody reads a suspended worker's clock; the checkers convert its deadlines.
            let resumed = c.local(31_000);
            match kind {
                WorkerClock::Boottime => {
                    assert_eq!(resumed, at(32_000));
                    assert_eq!(c.true_time(at(5_000)), 4_000);
                }
                WorkerClock::Monotonic => {
                    assert_eq!(resumed, at(2_000), "stood still for 30 s");
                    assert_eq!(c.true_time(at(1_800)), 800);
                    assert_eq!(c.true_time(at(5_000)), 34_000);
                }
            }
            assert_eq!(c.local(c.true_time(at(40_000))), at(40_000));
        }
    }
}
