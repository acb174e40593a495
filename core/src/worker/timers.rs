//! One table of timers, one deadline out (after quinn's `TimerTable`).

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;

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

#[derive(Clone, Debug, Default)]
pub(crate) struct Timers {
    by_key: BTreeMap<TimerKey, Instant>,
    queue: BTreeSet<(Instant, TimerKey)>,
}

impl Timers {
    pub(crate) fn set(&mut self, key: TimerKey, at: Instant) {
        match self.by_key.get_mut(&key) {
            // Re-arming a timer at the instant it already has is the common case (every step of
            // a held lease re-arms its delivery window): no tree changes.
            Some(old) if *old == at => {}
            Some(old) => {
                let previous = core::mem::replace(old, at);
                self.queue.remove(&(previous, key.clone()));
                self.queue.insert((at, key));
            }
            None => {
                self.by_key.insert(key.clone(), at);
                self.queue.insert((at, key));
            }
        }
    }

    pub(crate) fn cancel(&mut self, key: &TimerKey) {
        if let Some(old) = self.by_key.remove(key) {
            self.queue.remove(&(old, key.clone()));
        }
    }

    pub(crate) fn next(&self) -> Option<(Instant, TimerReason)> {
        self.queue.first().map(|(at, k)| (*at, k.reason()))
    }

    pub(crate) fn pop_due(&mut self, now: Instant) -> Vec<TimerKey> {
        let mut due = Vec::new();
        while let Some((at, _)) = self.queue.first() {
            if *at > now {
                break;
            }
            if let Some((_, key)) = self.queue.pop_first() {
                self.by_key.remove(&key);
                due.push(key);
            }
        }
        due
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
}
