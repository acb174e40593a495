//! A drifting clock for simulations: a worker's local time runs at `rate` local milliseconds
//! per true millisecond from an origin, so drift is real to the worker while checkers judge in
//! true time.

use crate::time::Instant;

/// Local time as a function of true time (both in ms).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DriftClock {
    rate: f64,
    local_origin: u64,
    true_origin: u64,
}

impl DriftClock {
    /// A clock showing `local_origin` at true time `true_now`, running at true speed.
    pub fn new(local_origin: u64, true_now: u64) -> Self {
        Self {
            rate: 1.0,
            local_origin,
            true_origin: true_now,
        }
    }

    /// Local milliseconds per true millisecond.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// What the clock shows at true time `t`.
    pub fn local(&self, t: u64) -> Instant {
        // Most clocks never drift: integers give the same answer without the float round trip.
        if self.rate == 1.0 {
            return Instant::from_millis(self.local_origin + t.saturating_sub(self.true_origin));
        }
        let elapsed = t.saturating_sub(self.true_origin) as f64 * self.rate;
        Instant::from_millis(self.local_origin + elapsed as u64)
    }

    /// The first true instant at which the clock shows `local`.
    pub fn true_time(&self, local: Instant) -> u64 {
        if self.rate == 1.0 {
            return self.true_origin + local.as_millis().saturating_sub(self.local_origin);
        }
        let d = local.as_millis().saturating_sub(self.local_origin) as f64 / self.rate;
        let mut t = self.true_origin + ceil(d);
        // Float rounding can leave the ceiling a millisecond off either way: short would wake
        // a worker too early forever, long would wake it late.
        while self.local(t) < local {
            t += 1;
        }
        while t > self.true_origin && self.local(t - 1) >= local {
            t -= 1;
        }
        t
    }

    /// From true time `true_now` on, runs at `rate` (continuing from what it shows now).
    pub fn set_rate(&mut self, true_now: u64, rate: f64) {
        *self = Self {
            rate,
            local_origin: self.local(true_now).as_millis(),
            true_origin: true_now,
        };
    }
}

/// `f64::ceil` for non-negative values, which `core` lacks.
fn ceil(x: f64) -> u64 {
    let t = x as u64;
    if (t as f64) < x {
        t + 1
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clock_at_true_speed_answers_as_the_general_formula_does() {
        let c = DriftClock::new(1_000_000, 500);
        let general = |t: u64| {
            let elapsed = t.saturating_sub(c.true_origin) as f64 * c.rate;
            Instant::from_millis(c.local_origin + elapsed as u64)
        };
        for t in [0, 499, 500, 501, 10_000, 3_600_000] {
            assert_eq!(c.local(t), general(t));
        }
        for local in [0, 999_999, 1_000_000, 1_000_001, 4_600_000] {
            let t = c.true_time(Instant::from_millis(local));
            assert!(c.local(t) >= Instant::from_millis(local));
            assert!(t <= 500 || c.local(t - 1) < Instant::from_millis(local));
        }
    }

    #[test]
    fn true_time_inverts_local_time_at_any_rate() {
        for rate in [0.2, 0.95, 1.0, 1.05, 2.0, 1.0 / 3.0] {
            let mut c = DriftClock::new(1_000_000, 0);
            c.set_rate(500, rate);
            for local in [1_000_500, 1_000_501, 1_003_333, 1_100_000] {
                let t = c.true_time(Instant::from_millis(local));
                assert!(c.local(t) >= Instant::from_millis(local), "rate {rate}");
                assert!(
                    t <= 500 || c.local(t - 1) < Instant::from_millis(local),
                    "rate {rate}"
                );
            }
        }
    }
}
