//! One table of timers, one deadline out (after quinn's `TimerTable`).

use alloc::collections::{BTreeMap, BinaryHeap};
use alloc::vec::Vec;
use core::cmp::Reverse;

use crate::io::TimerReason;
use crate::lease::LeaseKey;
use crate::time::Instant;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum TimerKey {
    Renew,
    Scan,
    Heartbeat,
    LeaderCheck,
    ShardSync,
    Shutdown,
    Window(LeaseKey),
    Fetch(LeaseKey),
    Retry(LeaseKey),
    Parents(LeaseKey),
    HandoffPoll(LeaseKey),
    HandoffTimeout(LeaseKey),
    /// The oldest request in flight reaches its timeout (one timer for all of them: they share
    /// one timeout, so they expire in the order they were sent).
    Requests,
}

impl TimerKey {
    pub(crate) fn reason(&self) -> TimerReason {
        match self {
            Self::Renew => TimerReason::RenewLeases,
            Self::Scan => TimerReason::ScanLeaseTable,
            Self::Heartbeat => TimerReason::Heartbeat,
            Self::LeaderCheck => TimerReason::LeaderCheck,
            Self::ShardSync => TimerReason::ShardSync,
            Self::Shutdown => TimerReason::ShutdownTimeout,
            Self::Window(_) => TimerReason::DeliveryWindow,
            Self::Fetch(_) => TimerReason::Fetch,
            Self::Retry(_) => TimerReason::Retry,
            Self::Parents(_) => TimerReason::ParentPoll,
            Self::HandoffPoll(_) => TimerReason::HandoffPoll,
            Self::HandoffTimeout(_) => TimerReason::HandoffTimeout,
            Self::Requests => TimerReason::RequestTimeout,
        }
    }
}

/// Deadlines by key, and a min-heap of `(deadline, key)` entries. Re-arming a timer pushes a
/// new entry and leaves the old one in the heap: an entry is live only while its deadline is
/// the key's current one, and stale entries are dropped when they reach the top. A re-arm is
/// one tree search and a heap push (an ordered set would need a search to remove the old entry
/// and another to insert); the held leases of a busy worker re-arm their timers on nearly every
/// input. A timer that fires keeps its key, disarmed, so the re-arm that usually follows (the
/// next fetch) changes a value in place instead of taking the key out of the tree and putting
/// it back. Timers fire in the same order as before: by deadline, then by key.
#[derive(Clone, Debug, Default)]
pub(crate) struct Timers {
    /// Every key set and not cancelled, with its deadline while armed.
    by_key: BTreeMap<TimerKey, Option<Instant>>,
    /// Keys armed.
    armed: usize,
    queue: BinaryHeap<Reverse<(Instant, TimerKey)>>,
}

impl Timers {
    pub(crate) fn set(&mut self, key: TimerKey, at: Instant) {
        match self.by_key.get_mut(&key) {
            // Re-arming a timer at the instant it already has is the common case (every step of
            // a held lease re-arms its delivery window): nothing changes.
            Some(Some(old)) if *old == at => return,
            Some(Some(old)) => *old = at,
            Some(slot) => {
                *slot = Some(at);
                self.armed += 1;
            }
            None => {
                self.by_key.insert(key.clone(), Some(at));
                self.armed += 1;
            }
        }
        // Only this key's previous entry can have gone stale, and it matters only on top.
        let top_went_stale = matches!(
            self.queue.peek(),
            Some(Reverse((top_at, top_key))) if *top_key == key && *top_at != at
        );
        self.queue.push(Reverse((at, key)));
        if top_went_stale {
            self.drop_stale();
        }
        self.compact();
    }

    pub(crate) fn cancel(&mut self, key: &TimerKey) {
        if let Some(Some(_)) = self.by_key.remove(key) {
            self.armed -= 1;
            self.drop_stale();
        }
    }

    pub(crate) fn next(&self) -> Option<(Instant, TimerReason)> {
        self.queue.peek().map(|Reverse((at, k))| (*at, k.reason()))
    }

    pub(crate) fn pop_due(&mut self, now: Instant) -> Vec<TimerKey> {
        let mut due = Vec::new();
        while let Some(Reverse((at, _))) = self.queue.peek() {
            if *at > now {
                break;
            }
            if let Some(Reverse((_, key))) = self.queue.pop() {
                // The top is live (see `drop_stale`), so this is the key's current deadline.
                if let Some(slot @ Some(_)) = self.by_key.get_mut(&key) {
                    *slot = None;
                    self.armed -= 1;
                }
                due.push(key);
            }
            self.drop_stale();
        }
        due
    }

    fn is_live(&self, at: Instant, key: &TimerKey) -> bool {
        self.by_key.get(key) == Some(&Some(at))
    }

    /// Keeps the top of the heap live, so `next` is the earliest deadline that will fire.
    fn drop_stale(&mut self) {
        while let Some(Reverse((at, key))) = self.queue.peek() {
            if self.is_live(*at, key) {
                return;
            }
            self.queue.pop();
        }
    }

    /// Rebuilds the heap from the live deadlines when stale entries outnumber them, so a timer
    /// re-armed often but far ahead (a delivery window) cannot grow the heap without bound.
    fn compact(&mut self) {
        if self.queue.len() > 2 * self.armed + 64 {
            self.queue = self
                .by_key
                .iter()
                .filter_map(|(key, at)| Some(Reverse(((*at)?, key.clone()))))
                .collect();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_wins_and_reset_moves() {
        let mut t = Timers::default();
        t.set(TimerKey::Renew, Instant::from_millis(10));
        t.set(TimerKey::Scan, Instant::from_millis(5));
        assert_eq!(
            t.next(),
            Some((Instant::from_millis(5), TimerReason::ScanLeaseTable))
        );
        t.set(TimerKey::Scan, Instant::from_millis(20));
        assert_eq!(
            t.next(),
            Some((Instant::from_millis(10), TimerReason::RenewLeases))
        );
        assert_eq!(t.pop_due(Instant::from_millis(15)), [TimerKey::Renew]);
        t.cancel(&TimerKey::Scan);
        assert_eq!(t.next(), None);
    }

    #[test]
    fn a_timer_moved_away_and_back_fires_once() {
        let mut t = Timers::default();
        let k = TimerKey::Fetch(LeaseKey::from("shard-1"));
        t.set(k.clone(), Instant::from_millis(10));
        t.set(k.clone(), Instant::from_millis(30));
        t.set(k.clone(), Instant::from_millis(10));
        t.set(TimerKey::Renew, Instant::from_millis(10));
        // Same deadline: by key, as an ordered set would give them.
        assert_eq!(t.pop_due(Instant::from_millis(40)), [TimerKey::Renew, k]);
        assert_eq!(t.next(), None);
        assert_eq!(t.pop_due(Instant::from_millis(50)), []);
    }

    #[test]
    fn re_arming_far_ahead_keeps_the_heap_bounded() {
        let mut t = Timers::default();
        let k = TimerKey::Window(LeaseKey::from("shard-1"));
        for i in 0..10_000 {
            t.set(k.clone(), Instant::from_millis(1_000_000 - i));
            t.set(TimerKey::Renew, Instant::from_millis(2_000_000 + i));
        }
        assert!(t.queue.len() <= 2 * t.armed + 65, "{}", t.queue.len());
        assert_eq!(
            t.next(),
            Some((Instant::from_millis(990_001), TimerReason::DeliveryWindow))
        );
    }
}
