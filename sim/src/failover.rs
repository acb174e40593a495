//! Failover time: from a worker's crash until every lease it held delivers again at a new
//! owner. One figure per crash that held leases; a crash is measured once every one of its
//! shards delivered after it, or finished (a shard read to its end owes nothing more). The
//! figures come for all crashes and by cause (the fault that crashed the worker).

use std::collections::{BTreeMap, BTreeSet};

use kcl_core::LeaseKey;

/// A crash waiting for its shards to deliver again.
#[derive(Clone, Debug)]
struct Crash {
    at_ms: u64,
    cause: &'static str,
    waiting: BTreeSet<LeaseKey>,
    /// The latest first delivery after the crash among the shards no longer waiting.
    last_ms: u64,
}

/// The crashes of a run and how long their leases took to deliver again.
#[derive(Clone, Debug, Default)]
pub struct FailoverWatch {
    open: Vec<Crash>,
    /// Milliseconds from each measured crash to its last lease delivering again, with its cause.
    done_ms: Vec<(u64, &'static str)>,
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
    /// The measured crashes by cause (`worker_crash`, `machine_crash`, `leader_crash`, ...).
    pub by_cause: BTreeMap<String, CauseFigures>,
}

/// Failover over the crashes of one cause.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct CauseFigures {
    /// Crashes measured.
    pub crashes: usize,
    /// Median seconds.
    pub p50_seconds: f64,
    /// The 99th percentile (nearest rank).
    pub p99_seconds: f64,
    /// The slowest.
    pub max_seconds: f64,
}

impl FailoverWatch {
    /// A worker holding `shards` crashed at `now`, by the fault `cause`.
    pub fn crashed(
        &mut self,
        now: u64,
        cause: &'static str,
        shards: impl IntoIterator<Item = LeaseKey>,
    ) {
        let waiting: BTreeSet<LeaseKey> = shards.into_iter().collect();
        if !waiting.is_empty() {
            self.open.push(Crash {
                at_ms: now,
                cause,
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
                done.push((crash.last_ms - crash.at_ms, crash.cause));
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
                done.push((crash.last_ms - crash.at_ms, crash.cause));
            } else {
                unresolved += 1;
            }
        }
        let mut causes: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
        for &(ms, cause) in &done {
            causes.entry(cause).or_default().push(ms);
        }
        let by_cause = causes
            .into_iter()
            .map(|(cause, mut ms)| {
                ms.sort_unstable();
                let figures = CauseFigures {
                    crashes: ms.len(),
                    p50_seconds: percentile(&ms, 50).unwrap_or_default(),
                    p99_seconds: percentile(&ms, 99).unwrap_or_default(),
                    max_seconds: ms.last().map_or(0.0, |&m| m as f64 / 1000.0),
                };
                (cause.to_owned(), figures)
            })
            .collect();
        let mut all: Vec<u64> = done.iter().map(|&(ms, _)| ms).collect();
        all.sort_unstable();
        FailoverFigures {
            crashes_measured: all.len(),
            crashes_unresolved: unresolved,
            p50_seconds: percentile(&all, 50),
            p99_seconds: percentile(&all, 99),
            by_cause,
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
        w.crashed(1_000, "worker_crash", [key("a"), key("b")]);
        w.crashed(2_000, "worker_crash", []);
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
        w.crashed(0, "machine_crash", [key("a"), key("b")]);
        w.delivered(3_000, &key("a"));
        let f = w.figures(|k| k.as_str() == "b");
        assert_eq!((f.crashes_measured, f.crashes_unresolved), (1, 0));
        assert_eq!(f.p50_seconds, Some(3.0));
        assert_eq!(f.by_cause["machine_crash"].crashes, 1);
    }

    #[test]
    fn figures_by_cause() {
        let mut w = FailoverWatch::default();
        w.crashed(0, "leader_crash", [key("a")]);
        w.crashed(0, "worker_crash", [key("b")]);
        w.crashed(1_000, "worker_crash", [key("c")]);
        w.delivered(4_000, &key("a"));
        w.delivered(2_000, &key("b"));
        w.delivered(6_000, &key("c"));
        let f = w.figures(|_| false);
        assert_eq!(f.crashes_measured, 3);
        let worker = &f.by_cause["worker_crash"];
        assert_eq!(
            (worker.crashes, worker.p50_seconds, worker.max_seconds),
            (2, 2.0, 5.0)
        );
        assert_eq!(f.by_cause["leader_crash"].p99_seconds, 4.0);
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
