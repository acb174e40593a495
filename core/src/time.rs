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
