//! The fleet's event queue: events by true millisecond, each instant's in the order they were
//! scheduled.
//!
//! Nearly every event is due within seconds (a call's latency, a processor's time, a worker's
//! next timer), so those wait in a ring with one bucket per millisecond: scheduling one is a
//! push, and taking an instant's events is one swap of a vector. A binary heap of a hundred
//! thousand events took a cache miss per level on every push and pop. Events further ahead than
//! the ring reaches (the nemesis's plan, long pauses) wait in an ordered map and come first
//! when their instant comes: an instant enters the ring's reach only after it was out of it, so
//! its far events were all scheduled before any of its near ones.

use std::collections::BTreeMap;

/// Milliseconds the ring covers ahead of the earliest instant it may still hold.
const RING_MS: u64 = 8_192;

/// Emptied buckets kept for reuse.
const SPARE_BUCKETS: usize = 256;

/// Events by instant; within an instant, first scheduled, first taken.
pub(super) struct Queue<E> {
    /// Bucket `t % RING_MS` holds the events due at `t`, for `t` from `base` on, in the order
    /// they were scheduled.
    ring: Vec<Vec<E>>,
    /// No event in the ring is due before this instant.
    base: u64,
    /// Events in the ring.
    in_ring: usize,
    /// Events beyond the ring's reach when scheduled (or before `base`), by instant and order.
    far: BTreeMap<(u64, u64), E>,
    /// Scheduling order of far events.
    seq: u64,
    /// Emptied buckets, kept for their capacity: an instant's bucket is taken whole, and the
    /// next instant to get its first event gets one of these, still in cache. A bucket without
    /// events holds no memory, so the ring costs what is queued, not its length.
    spare: Vec<Vec<E>>,
}

impl<E> Queue<E> {
    pub(super) fn new() -> Self {
        Self {
            ring: (0..RING_MS).map(|_| Vec::new()).collect(),
            base: 0,
            in_ring: 0,
            far: BTreeMap::new(),
            seq: 0,
            spare: Vec::new(),
        }
    }

    /// Schedules `ev` at instant `at`.
    pub(super) fn push(&mut self, at: u64, ev: E) {
        if at >= self.base && at < self.base + RING_MS {
            let bucket = &mut self.ring[(at % RING_MS) as usize];
            if bucket.capacity() == 0 {
                *bucket = self.spare.pop().unwrap_or_default();
            }
            bucket.push(ev);
            self.in_ring += 1;
        } else {
            self.seq += 1;
            self.far.insert((at, self.seq), ev);
        }
    }

    /// The earliest instant with events, if it is no later than `until`, with all of its events
    /// in the order they were scheduled, in `out` (emptied first). Events scheduled for that
    /// instant from now on come with the next call.
    pub(super) fn take_next(&mut self, until: u64, out: &mut Vec<E>) -> Option<u64> {
        out.clear();
        if self.in_ring == 0 && self.far.is_empty() {
            return None;
        }
        let far_first = self.far.keys().next().map(|&(at, _)| at);
        let mut at = far_first.unwrap_or(u64::MAX);
        if self.in_ring > 0 {
            // Skip empty buckets; nothing can be scheduled before the instant being taken.
            let limit = at.min(until.saturating_add(1));
            while self.base < limit && self.ring[(self.base % RING_MS) as usize].is_empty() {
                self.base += 1;
            }
            if self.base < limit {
                at = self.base;
            }
        }
        if at > until {
            return None;
        }
        if at == self.base && self.in_ring > 0 {
            let bucket = &mut self.ring[(at % RING_MS) as usize];
            if !bucket.is_empty() {
                let events = std::mem::take(bucket);
                self.in_ring -= events.len();
                let drained = std::mem::replace(out, events);
                self.recycle(drained);
            }
        }
        if far_first == Some(at) {
            // Scheduled before any of the instant's near events (see the module's comment).
            let near = std::mem::take(out);
            while let Some(entry) = self.far.first_entry() {
                if entry.key().0 != at {
                    break;
                }
                out.push(entry.remove());
            }
            out.extend(near);
        }
        Some(at)
    }

    /// Gives back the vector `take_next` filled, emptied, for its capacity.
    pub(super) fn recycle(&mut self, mut used: Vec<E>) {
        used.clear();
        if self.spare.len() < SPARE_BUCKETS && used.capacity() > 0 {
            self.spare.push(used);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The order of a binary heap on (instant, scheduling order), the queue's specification.
    fn reference(pushes: &[(u64, u32)]) -> Vec<(u64, u32)> {
        let mut v: Vec<(u64, usize, u32)> = pushes
            .iter()
            .enumerate()
            .map(|(i, &(at, id))| (at, i, id))
            .collect();
        v.sort();
        v.into_iter().map(|(at, _, id)| (at, id)).collect()
    }

    fn drain(q: &mut Queue<u32>, until: u64) -> Vec<(u64, u32)> {
        let mut got = Vec::new();
        let mut out = Vec::new();
        while let Some(at) = q.take_next(until, &mut out) {
            got.extend(out.drain(..).map(|id| (at, id)));
        }
        got
    }

    #[test]
    fn near_and_far_events_of_one_instant_come_in_scheduling_order() {
        let mut q = Queue::new();
        q.push(RING_MS + 5, 1); // far when scheduled
        q.push(3, 2);
        let mut out = Vec::new();
        assert_eq!(q.take_next(u64::MAX, &mut out), Some(3));
        q.push(RING_MS + 5, 3); // near now: base moved to 3
        assert_eq!(
            drain(&mut q, u64::MAX),
            vec![(RING_MS + 5, 1), (RING_MS + 5, 3)]
        );
    }

    #[test]
    fn nothing_after_until_is_taken_and_it_stays_queued() {
        let mut q = Queue::new();
        q.push(10, 1);
        q.push(20, 2);
        assert_eq!(drain(&mut q, 15), vec![(10, 1)]);
        q.push(12, 3); // before the ring's base after the scan stopped at 16
        assert_eq!(drain(&mut q, 100), vec![(12, 3), (20, 2)]);
    }

    proptest! {
        #[test]
        fn takes_events_as_a_heap_on_instant_then_order_would(
            batches in proptest::collection::vec(
                proptest::collection::vec((0u64..3 * RING_MS, any::<u32>()), 0..20),
                1..20,
            ),
        ) {
            // Pushes between takes are relative to the instant reached, as the fleet's are.
            let mut q = Queue::new();
            let mut now = 0;
            let mut pending: Vec<(u64, u32)> = Vec::new();
            let mut out = Vec::new();
            for batch in batches {
                for (delta, id) in batch {
                    q.push(now + delta, id);
                    pending.push((now + delta, id));
                }
                let expected = reference(&pending);
                let Some(at) = q.take_next(u64::MAX, &mut out) else {
                    prop_assert!(pending.is_empty());
                    continue;
                };
                let got: Vec<(u64, u32)> = out.drain(..).map(|id| (at, id)).collect();
                prop_assert_eq!(&got[..], &expected[..got.len()]);
                prop_assert!(expected.get(got.len()).is_none_or(|&(t, _)| t > at));
                pending = expected[got.len()..].to_vec();
                now = at;
            }
            prop_assert_eq!(drain(&mut q, u64::MAX), reference(&pending));
        }
    }
}
