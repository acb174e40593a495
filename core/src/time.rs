//! Time as a value: the core never reads a clock.
//!
//! [`Instant`] is a point on the caller's monotonic clock in milliseconds from an arbitrary
//! origin (after smoltcp). Spans are [`core::time::Duration`]. Expiry is always judged on the
//! observer's own clock, so two workers' instants are never compared with each other.

use core::ops::{Add, Sub};
use core::time::Duration;

/// A point on the caller's monotonic clock, in milliseconds from an arbitrary origin.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Instant(u64);

impl Instant {
    /// The origin of the clock.
    pub const ZERO: Self = Self(0);

    /// An instant `millis` milliseconds after the origin.
    pub const fn from_millis(millis: u64) -> Self {
        Self(millis)
    }

    /// Milliseconds since the origin.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// The span from `earlier` to `self`, zero when `earlier` is later.
    pub fn saturating_since(self, earlier: Self) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Add<Duration> for Instant {
    type Output = Self;
    fn add(self, rhs: Duration) -> Self {
        Self(self.0.saturating_add(millis(rhs)))
    }
}

impl Sub<Duration> for Instant {
    type Output = Self;
    fn sub(self, rhs: Duration) -> Self {
        Self(self.0.saturating_sub(millis(rhs)))
    }
}

/// A point on the wall clock: milliseconds since the Unix epoch. The core reads one only where a
/// lease is created, to fix where a `LATEST` lease starts ([`crate::sync`]); expiry and every
/// other timer run on [`Instant`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct WallTime(u64);

impl WallTime {
    /// `millis` milliseconds after the Unix epoch.
    pub const fn from_unix_millis(millis: u64) -> Self {
        Self(millis)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn unix_millis(self) -> u64 {
        self.0
    }
}

impl Sub<Duration> for WallTime {
    type Output = Self;
    fn sub(self, rhs: Duration) -> Self {
        Self(self.0.saturating_sub(millis(rhs)))
    }
}

/// Host suspension, measured from two clocks: one that stops while the host is suspended (Linux
/// `CLOCK_MONOTONIC`, which `std::time::Instant` reads) and one that does not (`CLOCK_BOOTTIME`).
///
/// A worker whose clock stopped during a VM or laptop suspend would resume believing its delivery
/// window still open, while every other worker's clock ran on and its leases expired. Its
/// driver adds [`Suspension::observe`] to the instants it gives the worker, so that after a
/// resume the worker's clock has moved by the time it was away and the window is closed. The
/// readings may have any origins; only how far the two clocks drift apart counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Suspension {
    /// `boottime - monotonic` at the first reading (ms).
    first_gap: Option<i128>,
    suspended: u64,
}

impl Suspension {
    /// Nothing observed yet.
    pub const fn new() -> Self {
        Self {
            first_gap: None,
            suspended: 0,
        }
    }

    /// The time the host was suspended since the first observation, given a reading of each
    /// clock in milliseconds. It never decreases: a reading that shows less (one clock read a
    /// little before the other) changes nothing.
    pub fn observe(&mut self, monotonic_ms: u64, boottime_ms: u64) -> Duration {
        let gap = i128::from(boottime_ms) - i128::from(monotonic_ms);
        let first = *self.first_gap.get_or_insert(gap);
        let grown = u64::try_from(gap - first).unwrap_or(0);
        self.suspended = self.suspended.max(grown);
        Duration::from_millis(self.suspended)
    }
}

#[cfg(feature = "std")]
mod std_conversions {
    extern crate std;
    use super::Instant;

    /// Converts a `std::time::Instant` relative to an origin the caller keeps for the
    /// lifetime of its worker (a process-wide origin works).
    pub fn from_std(origin: std::time::Instant, now: std::time::Instant) -> Instant {
        Instant::from_millis(
            u64::try_from(now.saturating_duration_since(origin).as_millis()).unwrap_or(u64::MAX),
        )
    }

    /// The wall-clock time of `t` (a clock set before 1970 reads as the epoch).
    pub fn wall_time(t: std::time::SystemTime) -> super::WallTime {
        let since = t
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        super::WallTime::from_unix_millis(u64::try_from(since).unwrap_or(u64::MAX))
    }
}
#[cfg(feature = "std")]
pub use std_conversions::{from_std, wall_time};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_suspension_is_the_growth_of_the_gap_between_the_clocks() {
        let mut s = Suspension::new();
        let d = Duration::from_millis;
        assert_eq!(s.observe(1_000, 5_000), d(0));
        assert_eq!(s.observe(2_000, 6_000), d(0), "both ran");
        assert_eq!(s.observe(2_500, 36_500), d(30_000), "suspended for 30 s");
        assert_eq!(s.observe(2_600, 36_590), d(30_000), "never decreases");
        assert_eq!(s.observe(3_000, 37_100), d(30_100));
        // Origins do not matter: a boot clock behind the monotonic one.
        let mut t = Suspension::new();
        assert_eq!(t.observe(9_000, 10), d(0));
        assert_eq!(t.observe(9_100, 5_110), d(5_000));
    }

    #[test]
    fn arithmetic_saturates() {
        let t = Instant::from_millis(10);
        assert_eq!((t - Duration::from_millis(20)).as_millis(), 0);
        assert_eq!((t + Duration::from_secs(1)).as_millis(), 1010);
        assert_eq!(t.saturating_since(Instant::from_millis(30)), Duration::ZERO);
        assert_eq!(
            Instant::from_millis(u64::MAX) + Duration::from_secs(1),
            Instant::from_millis(u64::MAX)
        );
    }
}
