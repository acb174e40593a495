//! Failover time: from a worker's crash until every lease it held delivers again at a new
//! owner. One figure per crash that held leases; a crash is measured once every one of its
//! shards delivered after it, or finished (a shard read to its end owes nothing more). The
//! figures come for all crashes and by cause (the fault that crashed the worker), and split
//! into the steps of the lease that delivered last (see [`Phases`]).

use std::collections::BTreeMap;

use kcl_core::write::WriteKind;
use kcl_core::LeaseKey;

/// When a lease of a crashed worker passed the steps of its failover (ms, writes that landed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Steps {
    /// The last assignment to a new owner before it was acquired, or the take of a worker that
    /// took it itself.
    assigned: Option<u64>,
    /// The first acquire or take.
    acquired: Option<u64>,
}

/// A crash waiting for its shards to deliver again.
#[derive(Clone, Debug)]
struct Crash {
    at_ms: u64,
    cause: &'static str,
    /// The crashed worker's row, whose fence (worker liveness) ends the detection.
    worker_row: String,
    fenced: Option<u64>,
    waiting: BTreeMap<LeaseKey, Steps>,
    /// The latest first delivery after the crash among the shards no longer waiting, and the
    /// steps of that shard.
    last_ms: u64,
    last_steps: Steps,
}

impl Crash {
    fn measured(&self) -> Measured {
        Measured {
            ms: self.last_ms - self.at_ms,
            cause: self.cause,
            phases: phases(self.at_ms, self.fenced, self.last_steps, self.last_ms),
        }
    }
}

/// One measured crash.
#[derive(Clone, Copy, Debug)]
struct Measured {
    ms: u64,
    cause: &'static str,
    phases: [u64; 4],
}

/// The crash-to-delivery time of one lease cut at its steps: detection (to the fence of the
/// crashed worker, or where nothing fences, to the lease's assignment or take), reassignment
/// (fence to assignment), pick-up (assignment to acquire) and first delivery (acquire to
/// records delivered). A step that did not happen takes the time of the next, so the four add
/// up to the whole; a fence after the assignment fenced a later process and is not a step.
fn phases(at: u64, fenced: Option<u64>, steps: Steps, delivered: u64) -> [u64; 4] {
    let acquired = steps.acquired.map_or(delivered, |t| t.min(delivered));
    let assigned = steps.assigned.map_or(acquired, |t| t.min(acquired));
    let fenced = fenced
        .filter(|&f| f <= assigned)
        .unwrap_or(assigned)
        .max(at);
    [
        fenced - at,
        assigned.max(fenced) - fenced,
        acquired.max(assigned) - assigned.max(fenced),
        delivered.max(acquired) - acquired.max(assigned).max(fenced),
    ]
}

/// The crashes of a run and how long their leases took to deliver again.
#[derive(Clone, Debug, Default)]
pub struct FailoverWatch {
    open: Vec<Crash>,
    /// Each measured crash.
    done: Vec<Measured>,
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
    /// Where the time went, over the same crashes.
    pub phases: Phases,
}

/// The failover of each crash cut at the steps of the lease that delivered last, each step's
/// median and 99th percentile over the crashes (`None`: no crash measured). The percentiles of
/// the steps need not add up to the whole's: each is over its own distribution.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Phases {
    /// From the crash to the fence of the crashed worker's row that landed (worker liveness),
    /// or, where nothing fences (lease liveness, kcl2), to the lease's assignment or take.
    pub detect: Option<Spread>,
    /// From the fence to the lease's last assignment to a new owner.
    pub reassign: Option<Spread>,
    /// From the assignment to the new owner's acquire (it learns of the assignment from the
    /// row its next heartbeat returns).
    pub pick_up: Option<Spread>,
    /// From the acquire to the first records delivered.
    pub deliver: Option<Spread>,
}

/// A median and a 99th percentile, in seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Spread {
    /// Median seconds.
    pub p50_seconds: f64,
    /// The 99th percentile (nearest rank).
    pub p99_seconds: f64,
}

impl Phases {
    /// One line for the report's summary.
    pub fn summary(&self) -> String {
        let steps = [
            ("detect", self.detect),
            ("reassign", self.reassign),
            ("pick up", self.pick_up),
            ("deliver", self.deliver),
        ];
        if steps.iter().all(|(_, s)| s.is_none()) {
            return "-".into();
        }
        steps
            .iter()
            .filter_map(|(name, s)| {
                s.map(|s| {
                    format!(
                        "{name} p50 {:.1} s, p99 {:.1} s",
                        s.p50_seconds, s.p99_seconds
                    )
                })
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl Spread {
    fn of(mut ms: Vec<u64>) -> Option<Self> {
        ms.sort_unstable();
        Some(Self {
            p50_seconds: percentile(&ms, 50)?,
            p99_seconds: percentile(&ms, 99)?,
        })
    }
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
    /// A worker whose row is `worker_row`, holding `shards`, crashed at `now`, by the fault
    /// `cause`.
    pub fn crashed(
        &mut self,
        now: u64,
        cause: &'static str,
        worker_row: String,
        shards: impl IntoIterator<Item = LeaseKey>,
    ) {
        let waiting: BTreeMap<LeaseKey, Steps> =
            shards.into_iter().map(|k| (k, Steps::default())).collect();
        if !waiting.is_empty() {
            self.open.push(Crash {
                at_ms: now,
                cause,
                worker_row,
                fenced: None,
                waiting,
                last_ms: now,
                last_steps: Steps::default(),
            });
        }
    }

    /// A write of `kind` to the row `key` landed at `now`: a step of a failover if it fenced a
    /// crashed worker or assigned, took or acquired one of its leases.
    pub fn written(&mut self, now: u64, kind: WriteKind, key: &str) {
        if self.open.is_empty()
            || !matches!(
                kind,
                WriteKind::Fence | WriteKind::Assign | WriteKind::Take | WriteKind::Acquire
            )
        {
            return;
        }
        for crash in self.open.iter_mut().filter(|c| c.at_ms < now) {
            if kind == WriteKind::Fence {
                if crash.worker_row == key && crash.fenced.is_none() {
                    crash.fenced = Some(now);
                }
                continue;
            }
            let Some(steps) = crash.waiting.get_mut(key) else {
                continue;
            };
            if steps.acquired.is_some() {
                continue;
            }
            match kind {
                WriteKind::Assign => steps.assigned = Some(now),
                WriteKind::Take => {
                    steps.assigned = Some(now);
                    steps.acquired = Some(now);
                }
                _ => steps.acquired = Some(now),
            }
        }
    }

    /// `shard` delivered records at `now` (only a new owner can: the crashed process is gone).
    pub fn delivered(&mut self, now: u64, shard: &LeaseKey) {
        if self.open.is_empty() {
            return;
        }
        let done = &mut self.done;
        self.open.retain_mut(|crash| {
            if crash.at_ms < now {
                if let Some(steps) = crash.waiting.remove(shard) {
                    crash.last_ms = now;
                    crash.last_steps = steps;
                }
            }
            if crash.waiting.is_empty() {
                done.push(crash.measured());
                return false;
            }
            true
        });
    }

    /// The figures at the end of a run; `finished` tells the shards read to their end.
    pub fn figures(&self, finished: impl Fn(&LeaseKey) -> bool) -> FailoverFigures {
        let mut done = self.done.clone();
        let mut unresolved = 0;
        for crash in &self.open {
            if crash.waiting.keys().all(&finished) {
                done.push(crash.measured());
            } else {
                unresolved += 1;
            }
        }
        let mut causes: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
        for m in &done {
            causes.entry(m.cause).or_default().push(m.ms);
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
        let mut all: Vec<u64> = done.iter().map(|m| m.ms).collect();
        all.sort_unstable();
        let phase = |i: usize| Spread::of(done.iter().map(|m| m.phases[i]).collect());
        FailoverFigures {
            crashes_measured: all.len(),
            crashes_unresolved: unresolved,
            p50_seconds: percentile(&all, 50),
            p99_seconds: percentile(&all, 99),
            by_cause,
            phases: Phases {
                detect: phase(0),
                reassign: phase(1),
                pick_up: phase(2),
                deliver: phase(3),
            },
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

    fn row(worker: &str) -> String {
        format!("worker-row-of-{worker}")
    }

    /// w1 crashes at 1 s holding `a` and `b`; it is fenced at 11 s; `a` is assigned at 11.5 s
    /// and acquired at 12 s, delivers at 12.5 s; `b` is assigned at 11.2 s to a worker that
    /// never acquires it, again at 14 s, acquired at 16 s (its take by another worker after
    /// that is no step), delivers at 17 s. A fence of w1's row after that is not this crash's.
    #[test]
    fn a_crash_is_cut_at_the_steps_of_its_last_lease() {
        let mut w = FailoverWatch::default();
        w.crashed(1_000, "worker_crash", row("w1"), [key("a"), key("b")]);
        w.written(500, WriteKind::Fence, &row("w1"));
        w.written(11_000, WriteKind::Fence, &row("w1"));
        w.written(11_200, WriteKind::Assign, "b");
        w.written(11_500, WriteKind::Assign, "a");
        w.written(12_000, WriteKind::Acquire, "a");
        w.written(12_500, WriteKind::Checkpoint, "a");
        w.delivered(12_500, &key("a"));
        w.written(14_000, WriteKind::Assign, "b");
        w.written(16_000, WriteKind::Acquire, "b");
        w.written(16_500, WriteKind::Take, "b");
        w.written(16_600, WriteKind::Fence, &row("w1"));
        w.delivered(17_000, &key("b"));
        let f = w.figures(|_| false);
        assert_eq!(f.p50_seconds, Some(16.0));
        let p = |s: Option<Spread>| s.map(|s| (s.p50_seconds, s.p99_seconds));
        assert_eq!(p(f.phases.detect), Some((10.0, 10.0)));
        assert_eq!(p(f.phases.reassign), Some((3.0, 3.0)));
        assert_eq!(p(f.phases.pick_up), Some((2.0, 2.0)));
        assert_eq!(p(f.phases.deliver), Some((1.0, 1.0)));
    }

    /// Without a fence (lease liveness, kcl2), detection ends with the take or the assignment;
    /// a take is assignment and acquire at once.
    #[test]
    fn without_a_fence_detection_ends_with_the_take() {
        let mut w = FailoverWatch::default();
        w.crashed(0, "worker_crash", row("w1"), [key("a")]);
        w.written(20_000, WriteKind::Take, "a");
        w.delivered(21_000, &key("a"));
        assert_eq!(phases(0, None, Steps::default(), 5_000), [5_000, 0, 0, 0]);
        let f = w.figures(|_| false);
        let p = |s: Option<Spread>| s.map(|s| s.p99_seconds);
        assert_eq!(p(f.phases.detect), Some(20.0));
        assert_eq!(p(f.phases.reassign), Some(0.0));
        assert_eq!(p(f.phases.pick_up), Some(0.0));
        assert_eq!(p(f.phases.deliver), Some(1.0));
    }

    #[test]
    fn a_crash_is_measured_when_its_last_lease_delivers_again() {
        let mut w = FailoverWatch::default();
        w.crashed(1_000, "worker_crash", row("w1"), [key("a"), key("b")]);
        w.crashed(2_000, "worker_crash", row("w2"), []);
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
        w.crashed(0, "machine_crash", row("w1"), [key("a"), key("b")]);
        w.delivered(3_000, &key("a"));
        let f = w.figures(|k| k.as_str() == "b");
        assert_eq!((f.crashes_measured, f.crashes_unresolved), (1, 0));
        assert_eq!(f.p50_seconds, Some(3.0));
        assert_eq!(f.by_cause["machine_crash"].crashes, 1);
    }

    #[test]
    fn figures_by_cause() {
        let mut w = FailoverWatch::default();
        w.crashed(0, "leader_crash", row("w1"), [key("a")]);
        w.crashed(0, "worker_crash", row("w2"), [key("b")]);
        w.crashed(1_000, "worker_crash", row("w3"), [key("c")]);
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
