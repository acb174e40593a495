//! One table of timers, one deadline out (after quinn's `TimerTable`).

use alloc::collections::{BTreeMap, BinaryHeap};
use alloc::vec::Vec;
use core::cmp::{Ordering, Reverse};

use crate::io::TimerReason;
use crate::lease::LeaseKey;
use crate::time::Instant;

/// A timer of the worker as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TimerKey {
    Renew,
    Scan,
    Heartbeat,
    LeaderCheck,
    ShardSync,
    Shutdown,
    /// The leader's next fence of a worker row standing still (worker liveness): due the
    /// failover time after it first saw the row's counter, not at the next scan.
    Fence,
    /// The oldest request in flight reaches its timeout (one timer for all of them: they share
    /// one timeout, so they expire in the order they were sent).
    Requests,
}

/// A timer of one lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LeaseTimer {
    Window,
    Fetch,
    Retry,
    Parents,
    HandoffPoll,
    HandoffTimeout,
}

const LEASE_TIMERS: [LeaseTimer; 6] = [
    LeaseTimer::Window,
    LeaseTimer::Fetch,
    LeaseTimer::Retry,
    LeaseTimer::Parents,
    LeaseTimer::HandoffPoll,
    LeaseTimer::HandoffTimeout,
];

/// Which timer fired.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Due {
    Worker(TimerKey),
    Lease(LeaseTimer, LeaseKey),
}

/// A lease's place in the table, which a held lease keeps so that setting its timers finds
/// them without comparing keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TimerSlot(u32);

/// Timers due at one instant fire by rank, then (among one kind of lease timer) by lease key, so
/// the order never depends on when or where a timer was set. Ranks 0 to 6 are the worker's timers
/// up to `Fence`, 7 to 12 the lease timers, 13 `Requests`.
type Rank = u8;

const REQUESTS_RANK: Rank = 13;
const FIRST_LEASE_RANK: Rank = 7;

const WORKER_TIMERS: [TimerKey; 8] = [
    TimerKey::Renew,
    TimerKey::Scan,
    TimerKey::Heartbeat,
    TimerKey::LeaderCheck,
    TimerKey::ShardSync,
    TimerKey::Shutdown,
    TimerKey::Fence,
    TimerKey::Requests,
];

/// What a rank names.
enum Kind {
    /// The worker's timer at this index of [`WORKER_TIMERS`].
    Worker(usize),
    /// The lease timer at this index of [`LEASE_TIMERS`].
    Lease(usize),
}

fn kind_of(rank: Rank) -> Kind {
    match rank {
        REQUESTS_RANK => Kind::Worker(WORKER_TIMERS.len() - 1),
        r if r < FIRST_LEASE_RANK => Kind::Worker(usize::from(r)),
        r => Kind::Lease(usize::from(r - FIRST_LEASE_RANK)),
    }
}

impl TimerKey {
    fn reason(self) -> TimerReason {
        match self {
            Self::Renew => TimerReason::RenewLeases,
            Self::Scan => TimerReason::ScanLeaseTable,
            Self::Heartbeat => TimerReason::Heartbeat,
            Self::LeaderCheck => TimerReason::LeaderCheck,
            Self::ShardSync => TimerReason::ShardSync,
            Self::Shutdown => TimerReason::ShutdownTimeout,
            Self::Fence => TimerReason::FenceWorkers,
            Self::Requests => TimerReason::RequestTimeout,
        }
    }
}

impl LeaseTimer {
    fn reason(self) -> TimerReason {
        match self {
            Self::Window => TimerReason::DeliveryWindow,
            Self::Fetch => TimerReason::Fetch,
            Self::Retry => TimerReason::Retry,
            Self::Parents => TimerReason::ParentPoll,
            Self::HandoffPoll => TimerReason::HandoffPoll,
            Self::HandoffTimeout => TimerReason::HandoffTimeout,
        }
    }
}

/// A heap entry's timer: its rank in the high half (so that the heap's top at an instant is the
/// timer that fires first there, and `next` gives its reason), its lease slot in the low half.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Id(u64);

impl Id {
    fn worker(key: TimerKey) -> Self {
        let rank = match key {
            TimerKey::Requests => REQUESTS_RANK,
            // The others are ranked by their place.
            other => other as Rank,
        };
        Self(u64::from(rank) << 32)
    }

    fn lease(slot: TimerSlot, kind: LeaseTimer) -> Self {
        Self(u64::from(FIRST_LEASE_RANK + kind as Rank) << 32 | u64::from(slot.0))
    }

    fn rank(self) -> Rank {
        // The rank was put in from a u8.
        (self.0 >> 32) as u8
    }

    fn slot(self) -> usize {
        (self.0 & u64::from(u32::MAX)) as usize
    }
}

/// A timer's deadline while armed: an `Option<Instant>` in one word (a held lease keeps six).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Deadline(u64);

impl Default for Deadline {
    fn default() -> Self {
        Self::NONE
    }
}

impl Deadline {
    /// Disarmed. The instant it stands for, `u64::MAX` ms, is 584 million years after start.
    const NONE: Self = Self(u64::MAX);

    fn get(self) -> Option<Instant> {
        (self != Self::NONE).then(|| Instant::from_millis(self.0))
    }

    fn set(&mut self, at: Instant) {
        self.0 = at.as_millis();
    }

    fn take(&mut self) -> Option<Instant> {
        let at = self.get();
        *self = Self::NONE;
        at
    }
}

#[derive(Clone, Debug)]
struct LeaseSlot {
    key: LeaseKey,
    at: [Deadline; LEASE_TIMERS.len()],
    /// Held by a lease of this worker, which keeps the slot; otherwise the slot goes when its
    /// last timer does.
    claimed: bool,
}

impl LeaseSlot {
    fn is_idle(&self) -> bool {
        !self.claimed && self.at.iter().all(|d| *d == Deadline::NONE)
    }
}

/// Deadlines by timer, and a min-heap of `(deadline, timer)` entries. Re-arming a timer pushes
/// a new entry and leaves the old one in the heap: an entry is live only while its deadline is
/// the timer's current one, and stale entries are dropped when they reach the top.
///
/// A held lease's timers live in a slot it keeps ([`TimerSlot`]), and heap entries name timers
/// by number, so setting a timer (nearly every step of a busy worker re-arms one or two) is an
/// array write and a heap push, with no key compared or cloned.
#[derive(Clone, Debug, Default)]
pub(crate) struct Timers {
    worker: [Deadline; WORKER_TIMERS.len()],
    slots: Vec<Option<LeaseSlot>>,
    free: Vec<u32>,
    /// The slot of every lease that has one; searched only when a lease gets or gives up its
    /// slot.
    by_key: BTreeMap<LeaseKey, u32>,
    /// Timers armed.
    armed: usize,
    queue: BinaryHeap<Reverse<(Instant, Id)>>,
    /// Room to sort the timers that fire at one wake-up, kept between wake-ups.
    firing: Vec<(Instant, Rank, Due)>,
}

impl Timers {
    /// The slot of `key`'s timers, kept until [`Timers::release`].
    pub(crate) fn claim(&mut self, key: &LeaseKey) -> TimerSlot {
        let slot = self.slot_of(key);
        if let Some(Some(s)) = self.slots.get_mut(slot.0 as usize) {
            s.claimed = true;
        }
        slot
    }

    /// Cancels the timers of a held lease and gives its slot up. A pending hand-off poll (set
    /// by [`Timers::set_for`], for a lease this worker is still acquiring) is left armed.
    pub(crate) fn release(&mut self, slot: TimerSlot) {
        for kind in LEASE_TIMERS {
            if kind != LeaseTimer::HandoffPoll {
                self.cancel_lease(slot, kind);
            }
        }
        if let Some(Some(s)) = self.slots.get_mut(slot.0 as usize) {
            s.claimed = false;
        }
        self.free_if_idle(slot.0 as usize);
    }

    fn slot_of(&mut self, key: &LeaseKey) -> TimerSlot {
        if let Some(&i) = self.by_key.get(key) {
            return TimerSlot(i);
        }
        let entry = LeaseSlot {
            key: key.clone(),
            at: [Deadline::NONE; LEASE_TIMERS.len()],
            claimed: false,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(entry);
                i
            }
            None => {
                // A worker holds far fewer than 2^32 leases.
                let i = u32::try_from(self.slots.len()).unwrap_or(u32::MAX);
                self.slots.push(Some(entry));
                i
            }
        };
        self.by_key.insert(key.clone(), i);
        TimerSlot(i)
    }

    fn free_if_idle(&mut self, i: usize) {
        if let Some(slot) = self.slots.get_mut(i) {
            if slot.as_ref().is_some_and(LeaseSlot::is_idle) {
                if let Some(s) = slot.take() {
                    self.by_key.remove(&s.key);
                }
                // Heap entries may still name this slot: they are stale, and stay so until the
                // slot is reused, when one can only match a deadline the new lease has itself.
                self.free.push(i as u32);
            }
        }
    }

    fn deadline(&mut self, id: Id) -> Option<&mut Deadline> {
        match kind_of(id.rank()) {
            Kind::Worker(i) => self.worker.get_mut(i),
            Kind::Lease(k) => self.slots.get_mut(id.slot())?.as_mut()?.at.get_mut(k),
        }
    }

    fn arm(&mut self, id: Id, at: Instant) {
        if Deadline::NONE.0 == at.as_millis() {
            // The end of time (where a saturating sum lands) never comes, and is how a
            // deadline says disarmed.
            return self.disarm(id);
        }
        let Some(deadline) = self.deadline(id) else {
            return;
        };
        match deadline.get() {
            // Re-arming a timer at the instant it already has is the common case (every step
            // of a held lease re-arms its delivery window): nothing changes.
            Some(old) if old == at => return,
            Some(_) => deadline.set(at),
            None => {
                deadline.set(at);
                self.armed += 1;
            }
        }
        // Only this timer's previous entry can have gone stale, and it matters only on top.
        let top_went_stale = matches!(
            self.queue.peek(),
            Some(Reverse((top_at, top))) if *top == id && *top_at != at
        );
        self.queue.push(Reverse((at, id)));
        if top_went_stale {
            self.drop_stale();
        }
        self.compact();
    }

    fn disarm(&mut self, id: Id) {
        if let Some(deadline) = self.deadline(id) {
            if deadline.take().is_some() {
                self.armed -= 1;
                self.drop_stale();
            }
        }
    }

    pub(crate) fn set(&mut self, key: TimerKey, at: Instant) {
        self.arm(Id::worker(key), at);
    }

    /// Sets a worker timer to `at` unless it is armed for an earlier instant.
    pub(crate) fn set_earlier(&mut self, key: TimerKey, at: Instant) {
        let id = Id::worker(key);
        let armed = self
            .deadline(id)
            .and_then(|d| (*d).get())
            .is_some_and(|old| old <= at);
        if !armed {
            self.arm(id, at);
        }
    }

    pub(crate) fn set_lease(&mut self, slot: TimerSlot, kind: LeaseTimer, at: Instant) {
        self.arm(Id::lease(slot, kind), at);
    }

    pub(crate) fn cancel_lease(&mut self, slot: TimerSlot, kind: LeaseTimer) {
        self.disarm(Id::lease(slot, kind));
    }

    /// Sets a timer of a lease this worker does not hold.
    pub(crate) fn set_for(&mut self, key: &LeaseKey, kind: LeaseTimer, at: Instant) {
        let slot = self.slot_of(key);
        self.set_lease(slot, kind, at);
    }

    pub(crate) fn next(&self) -> Option<(Instant, TimerReason)> {
        let Reverse((at, id)) = self.queue.peek()?;
        let reason = match kind_of(id.rank()) {
            Kind::Worker(i) => WORKER_TIMERS.get(i)?.reason(),
            Kind::Lease(k) => LEASE_TIMERS.get(k)?.reason(),
        };
        Some((*at, reason))
    }

    /// The timers due at `now`, disarmed, into `due` in firing order: by deadline, then by
    /// rank, then by lease key.
    pub(crate) fn pop_due(&mut self, now: Instant, due: &mut Vec<Due>) {
        let mut firing = core::mem::take(&mut self.firing);
        while let Some(&Reverse((at, id))) = self.queue.peek() {
            if at > now {
                break;
            }
            self.queue.pop();
            // The top is live (see `drop_stale`), so this is the timer's current deadline.
            let rank = id.rank();
            let fired = match kind_of(rank) {
                Kind::Worker(i) => self
                    .worker
                    .get_mut(i)
                    .and_then(Deadline::take)
                    .and_then(|_| Some(Due::Worker(*WORKER_TIMERS.get(i)?))),
                Kind::Lease(k) => match self.slots.get_mut(id.slot()) {
                    Some(Some(slot)) => slot
                        .at
                        .get_mut(k)
                        .and_then(Deadline::take)
                        .and_then(|_| Some(Due::Lease(*LEASE_TIMERS.get(k)?, slot.key.clone()))),
                    _ => None,
                },
            };
            if let Some(fired) = fired {
                self.armed -= 1;
                if matches!(fired, Due::Lease(..)) {
                    self.free_if_idle(id.slot());
                }
                firing.push((at, rank, fired));
            }
            self.drop_stale();
        }
        if firing.len() > 1 {
            firing.sort_by(|a, b| {
                a.0.cmp(&b.0)
                    .then(a.1.cmp(&b.1))
                    .then_with(|| match (&a.2, &b.2) {
                        (Due::Lease(_, x), Due::Lease(_, y)) => x.cmp(y),
                        _ => Ordering::Equal,
                    })
            });
        }
        due.extend(firing.drain(..).map(|(_, _, d)| d));
        self.firing = firing;
    }

    fn is_live(&self, at: Instant, id: Id) -> bool {
        let deadline = match kind_of(id.rank()) {
            Kind::Worker(i) => self.worker.get(i),
            Kind::Lease(k) => match self.slots.get(id.slot()) {
                Some(Some(slot)) => slot.at.get(k),
                _ => None,
            },
        };
        deadline.and_then(|d| d.get()) == Some(at)
    }

    /// Keeps the top of the heap live, so `next` is the earliest deadline that will fire.
    fn drop_stale(&mut self) {
        while let Some(&Reverse((at, id))) = self.queue.peek() {
            if self.is_live(at, id) {
                return;
            }
            self.queue.pop();
        }
    }

    /// Rebuilds the heap from the live deadlines when stale entries outnumber them, so a timer
    /// re-armed often but far ahead (a delivery window) cannot grow the heap without bound.
    fn compact(&mut self) {
        if self.queue.len() > 2 * self.armed + 64 {
            let worker = WORKER_TIMERS
                .iter()
                .zip(self.worker)
                .filter_map(|(k, at)| Some(Reverse((at.get()?, Id::worker(*k)))));
            let leases = self.slots.iter().enumerate().flat_map(|(i, s)| {
                LEASE_TIMERS.iter().filter_map(move |kind| {
                    let at = s.as_ref()?.at[*kind as usize].get()?;
                    // Slots are numbered from a u32 (see `slot_of`).
                    Some(Reverse((at, Id::lease(TimerSlot(i as u32), *kind))))
                })
            });
            self.queue = worker.chain(leases).collect();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    /// Ranks are positional: every worker timer but the requests' ranks below the lease timers
    /// and names itself back, the lease timers fit below the requests' rank.
    #[test]
    fn every_timer_has_a_rank_of_its_own() {
        for (i, key) in WORKER_TIMERS.iter().enumerate() {
            let rank = Id::worker(*key).rank();
            if *key == TimerKey::Requests {
                assert_eq!(rank, REQUESTS_RANK);
            } else {
                assert!(rank < FIRST_LEASE_RANK, "{key:?}");
            }
            assert!(
                matches!(kind_of(rank), Kind::Worker(j) if j == i),
                "{key:?}"
            );
        }
        for (k, kind) in LEASE_TIMERS.iter().enumerate() {
            let rank = Id::lease(TimerSlot(0), *kind).rank();
            assert!(rank < REQUESTS_RANK, "{kind:?}");
            assert!(
                matches!(kind_of(rank), Kind::Lease(j) if j == k),
                "{kind:?}"
            );
        }
    }

    impl Timers {
        fn due(&mut self, now: Instant) -> Vec<Due> {
            let mut due = Vec::new();
            self.pop_due(now, &mut due);
            due
        }
    }

    #[test]
    fn earliest_wins_and_reset_moves() {
        let mut t = Timers::default();
        let shard = t.claim(&LeaseKey::from("shard-1"));
        t.set(TimerKey::Renew, at(10));
        t.set_lease(shard, LeaseTimer::Fetch, at(5));
        assert_eq!(t.next(), Some((at(5), TimerReason::Fetch)));
        t.set_lease(shard, LeaseTimer::Fetch, at(20));
        assert_eq!(t.next(), Some((at(10), TimerReason::RenewLeases)));
        assert_eq!(t.due(at(15)), [Due::Worker(TimerKey::Renew)]);
        t.release(shard);
        assert_eq!(t.next(), None);
        assert!(t.slots.iter().all(Option::is_none), "{:?}", t.slots);
    }

    #[test]
    fn a_timer_moved_away_and_back_fires_once() {
        let mut t = Timers::default();
        let k = LeaseKey::from("shard-1");
        let s = t.claim(&k);
        t.set_lease(s, LeaseTimer::Fetch, at(10));
        t.set_lease(s, LeaseTimer::Fetch, at(30));
        t.set_lease(s, LeaseTimer::Fetch, at(10));
        t.set(TimerKey::Renew, at(10));
        assert_eq!(
            t.due(at(40)),
            [
                Due::Worker(TimerKey::Renew),
                Due::Lease(LeaseTimer::Fetch, k)
            ]
        );
        assert_eq!(t.next(), None);
        assert_eq!(t.due(at(50)), []);
    }

    #[test]
    fn one_instant_fires_by_rank_then_by_lease_key() {
        let mut t = Timers::default();
        // Claimed in the opposite order of their keys, so slot order is not key order.
        let b = LeaseKey::from("shard-b");
        let a = LeaseKey::from("shard-a");
        let sb = t.claim(&b);
        let sa = t.claim(&a);
        t.set(TimerKey::Requests, at(7));
        t.set_lease(sb, LeaseTimer::Fetch, at(7));
        t.set_lease(sa, LeaseTimer::Retry, at(7));
        t.set_lease(sa, LeaseTimer::Fetch, at(7));
        t.set_for(&LeaseKey::from("shard-c"), LeaseTimer::HandoffPoll, at(7));
        t.set(TimerKey::Scan, at(7));
        t.set_lease(sb, LeaseTimer::Window, at(6));
        assert_eq!(
            t.due(at(7)),
            [
                Due::Lease(LeaseTimer::Window, b.clone()),
                Due::Worker(TimerKey::Scan),
                Due::Lease(LeaseTimer::Fetch, a.clone()),
                Due::Lease(LeaseTimer::Fetch, b),
                Due::Lease(LeaseTimer::Retry, a),
                Due::Lease(LeaseTimer::HandoffPoll, LeaseKey::from("shard-c")),
                Due::Worker(TimerKey::Requests),
            ]
        );
        // The poll's slot went with its timer; the held leases keep theirs.
        assert_eq!(t.slots.iter().flatten().count(), 2);
    }

    #[test]
    fn a_released_slot_is_reused_without_reviving_old_deadlines() {
        let mut t = Timers::default();
        let old = t.claim(&LeaseKey::from("shard-1"));
        t.set_lease(old, LeaseTimer::Fetch, at(10));
        t.release(old);
        let new = t.claim(&LeaseKey::from("shard-2"));
        assert_eq!(new, old, "the slot is reused");
        t.set_lease(new, LeaseTimer::Fetch, at(20));
        assert_eq!(t.due(at(15)), []);
        assert_eq!(
            t.due(at(20)),
            [Due::Lease(LeaseTimer::Fetch, LeaseKey::from("shard-2"))]
        );
    }

    #[test]
    fn a_hand_off_poll_outlives_the_release_of_its_lease() {
        let mut t = Timers::default();
        let k = LeaseKey::from("shard-1");
        let s = t.claim(&k);
        t.set_for(&k, LeaseTimer::HandoffPoll, at(10));
        t.set_lease(s, LeaseTimer::HandoffTimeout, at(5));
        t.release(s);
        assert_eq!(t.due(at(10)), [Due::Lease(LeaseTimer::HandoffPoll, k)]);
        assert!(t.slots.iter().all(Option::is_none));
    }

    #[test]
    fn a_deadline_at_the_end_of_time_never_fires() {
        let mut t = Timers::default();
        let s = t.claim(&LeaseKey::from("shard-1"));
        t.set_lease(s, LeaseTimer::Fetch, at(10));
        t.set_lease(s, LeaseTimer::Fetch, Instant::from_millis(u64::MAX));
        t.set(TimerKey::Renew, Instant::from_millis(u64::MAX));
        assert_eq!(t.next(), None);
        assert_eq!(t.armed, 0);
        assert_eq!(t.due(Instant::from_millis(u64::MAX)), []);
    }

    #[test]
    fn re_arming_far_ahead_keeps_the_heap_bounded() {
        let mut t = Timers::default();
        let s = t.claim(&LeaseKey::from("shard-1"));
        for i in 0..10_000 {
            t.set_lease(s, LeaseTimer::Window, at(1_000_000 - i));
            t.set(TimerKey::Renew, at(2_000_000 + i));
        }
        assert!(t.queue.len() <= 2 * t.armed + 65, "{}", t.queue.len());
        assert_eq!(t.next(), Some((at(990_001), TimerReason::DeliveryWindow)));
    }
}
