//! Failover time: from a worker's crash until every lease it held delivers again at a new
//! owner. One figure per crash that held leases; a crash is measured once every one of its
//! shards delivered after it, or finished (a shard read to its end owes nothing more).

use std::collections::BTreeSet;

use kcl_core::LeaseKey;

/// A crash waiting for its shards to deliver again.
#[derive(Clone, Debug)]
struct Crash {
    at_ms: u64,
    waiting: BTreeSet<LeaseKey>,
    /// The latest first delivery after the crash among the shards no longer waiting.
    last_ms: u64,
}

/// The crashes of a run and how long their leases took to deliver again.
#[derive(Clone, Debug, Default)]
pub struct FailoverWatch {
    open: Vec<Crash>,
    /// Milliseconds from each measured crash to its last lease delivering again.
    done_ms: Vec<u64>,
}

/// Failover over a run's crashes.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct FailoverFigures {
    /// Crashes of workers that held leases, measured (every lease delivered again).
    pub crashes_measured: usize,
    /// Crashes some of whose leases had not delivered again by the end of the run (only the
    /// run's end stops them: the no-loss check covers the records).
    pub crashes_unresolved: usize,
    /// Median seconds from a crash to every lease it held delivering at a new owner.
    pub p50_seconds: Option<f64>,
    /// The 99th percentile (nearest rank).
    pub p99_seconds: Option<f64>,
}

impl FailoverWatch {
    /// A worker holding `shards` crashed at `now`.
    pub fn crashed(&mut self, now: u64, shards: impl IntoIterator<Item = LeaseKey>) {
        let waiting: BTreeSet<LeaseKey> = shards.into_iter().collect();
        if !waiting.is_empty() {
            self.open.push(Crash {
                at_ms: now,
                waiting,
                last_ms: now,
            });
        }
    }

    /// `shard` delivered records at `now` (only a new owner can: the crashed process is gone).
    pub fn delivered(&mut self, now: u64, shard: &LeaseKey) {
        if self.open.is_empty() {
            return;
        }
        let done = &mut self.done_ms;
        self.open.retain_mut(|crash| {
            if crash.at_ms < now && crash.waiting.remove(shard) {
                crash.last_ms = now;
            }
            if crash.waiting.is_empty() {
                done.push(crash.last_ms - crash.at_ms);
                return false;
            }
            true
        });
    }

    /// The figures at the end of a run; `finished` tells the shards read to their end.
    pub fn figures(&self, finished: impl Fn(&LeaseKey) -> bool) -> FailoverFigures {
        let mut done = self.done_ms.clone();
        let mut unresolved = 0;
        for crash in &self.open {
            if crash.waiting.iter().all(&finished) {
                done.push(crash.last_ms - crash.at_ms);
            } else {
                unresolved += 1;
            }
        }
        done.sort_unstable();
        FailoverFigures {
            crashes_measured: done.len(),
            crashes_unresolved: unresolved,
            p50_seconds: percentile(&done, 50),
            p99_seconds: percentile(&done, 99),
        }
    }
}

/// The `p`th percentile of sorted milliseconds, in seconds (nearest rank).
fn percentile(sorted_ms: &[u64], p: usize) -> Option<f64> {
    if sorted_ms.is_empty() {
        return None;
    }
    let rank = (p * sorted_ms.len()).div_ceil(100).max(1);
    Some(sorted_ms[rank - 1] as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> LeaseKey {
        LeaseKey::from(s)
    }

    #[test]
    fn a_crash_is_measured_when_its_last_lease_delivers_again() {
        let mut w = FailoverWatch::default();
        w.crashed(1_000, [key("a"), key("b")]);
        w.crashed(2_000, []);
        w.delivered(500, &key("a"));
        w.delivered(5_000, &key("a"));
        assert_eq!(w.figures(|_| false).crashes_unresolved, 1);
        w.delivered(9_000, &key("b"));
        let f = w.figures(|_| false);
        assert_eq!(f.crashes_measured, 1);
        assert_eq!(f.p50_seconds, Some(8.0));
        assert_eq!(f.p99_seconds, Some(8.0));
    }

    #[test]
    fn finished_shards_owe_no_delivery() {
        let mut w = FailoverWatch::default();
        w.crashed(0, [key("a"), key("b")]);
        w.delivered(3_000, &key("a"));
        let f = w.figures(|k| k.as_str() == "b");
        assert_eq!((f.crashes_measured, f.crashes_unresolved), (1, 0));
        assert_eq!(f.p50_seconds, Some(3.0));
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let ms: Vec<u64> = (1..=100).map(|s| s * 1000).collect();
        assert_eq!(percentile(&ms, 50), Some(50.0));
        assert_eq!(percentile(&ms, 99), Some(99.0));
        assert_eq!(percentile(&ms[..1], 99), Some(1.0));
        assert_eq!(percentile(&[], 50), None);
    }
}
