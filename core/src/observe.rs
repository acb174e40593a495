//! Expiry judged on the observer's own clock: a row is expired when its counter has not
//! changed for the failover time since this observer first saw the current value.
//!
//! No wall clock of another host is ever compared. The time recorded for a new counter value is
//! when its scan *completed* on this observer, which is never before the write that produced it,
//! so the judgement errs towards "still alive".

use alloc::collections::BTreeMap;
use alloc::string::String;
use core::time::Duration;

use crate::time::Instant;

/// When this observer first saw a row's current counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    /// The counter.
    pub counter: u64,
    /// First seen at; `None` for an unowned row first seen unowned (Java treats those as very
    /// old, so the priority path takes new leases at once).
    pub since: Option<Instant>,
}

impl Seen {
    /// How long the counter has been unchanged, `None` meaning "forever".
    pub fn unchanged_for(&self, now: Instant) -> Option<Duration> {
        self.since.map(|s| now.saturating_since(s))
    }

    /// What is known of a row whose counter is `counter` at `now`, given what was known before:
    /// the same counter keeps its first sighting, a new one is first seen now, and a row seen
    /// for the first time counts from now only when it is owned.
    pub fn after(previous: Option<Seen>, counter: u64, owned: bool, now: Instant) -> Seen {
        match previous {
            Some(s) if s.counter == counter => s,
            Some(_) => Seen {
                counter,
                since: Some(now),
            },
            None => Seen {
                counter,
                since: owned.then_some(now),
            },
        }
    }

    /// Whether the counter has been unchanged for longer than `d`.
    pub fn older_than(&self, now: Instant, d: Duration) -> bool {
        self.unchanged_for(now).is_none_or(|u| u > d)
    }
}

/// Remembers, per row key, when each counter value was first seen.
#[derive(Clone, Debug, Default)]
pub struct Observer {
    seen: BTreeMap<String, Seen>,
}

impl Observer {
    /// Records a counter seen at `now`; returns what is known of the row.
    pub fn observe(&mut self, key: &str, counter: u64, owned: bool, now: Instant) -> Seen {
        match self.seen.get_mut(key) {
            Some(s) => {
                *s = Seen::after(Some(*s), counter, owned, now);
                *s
            }
            None => {
                let s = Seen::after(None, counter, owned, now);
                self.seen.insert(key.into(), s);
                s
            }
        }
    }

    /// Records that the row showed `counter` already at `at` (learnt from another row written
    /// after it): a sighting no later than `at`, kept unless an earlier one of the same counter
    /// is known. Safe for a judgement of stillness because the counter was there by then.
    pub fn seen_no_later_than(&mut self, key: &str, counter: u64, at: Instant) {
        let earlier = Seen {
            counter,
            since: Some(at),
        };
        match self.seen.get_mut(key) {
            Some(s) if s.counter == counter && s.since.is_some_and(|since| since <= at) => {}
            Some(s) => *s = earlier,
            None => {
                self.seen.insert(key.into(), earlier);
            }
        }
    }

    /// Forgets rows not in `keep` (deleted rows), so the map does not grow forever.
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.seen.retain(|k, _| keep(k));
    }

    /// What is known of a row.
    pub fn get(&self, key: &str) -> Option<Seen> {
        self.seen.get(key).copied()
    }

    /// Number of rows remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_restarts_on_every_change() {
        let mut o = Observer::default();
        let d = Duration::from_secs(10);
        let s = o.observe("a", 1, true, Instant::from_millis(0));
        assert!(!s.older_than(Instant::from_millis(10_000), d));
        assert!(s.older_than(Instant::from_millis(10_001), d));
        let s = o.observe("a", 1, true, Instant::from_millis(9_000));
        assert_eq!(s.since, Some(Instant::from_millis(0)));
        let s = o.observe("a", 2, true, Instant::from_millis(9_000));
        assert!(!s.older_than(Instant::from_millis(19_000), d));
        let unowned = o.observe("b", 0, false, Instant::from_millis(5));
        assert!(unowned.older_than(Instant::from_millis(5), d));
        o.retain(|k| k == "a");
        assert_eq!(o.len(), 1);
    }
}
