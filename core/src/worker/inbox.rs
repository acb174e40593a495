//! A worker's heartbeat and inbox under `Coordinated`: its heartbeat row proves it alive and
//! carries, in the row the write returns, the leases the leader assigned or handed to it; each
//! is acquired once its old owner has let go, and acknowledged by the next heartbeat.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;

use super::heads_up::Hurry;
use super::registration::Registration;
use super::timers::{LeaseTimer, TimerKey};
use super::{Outstanding, Pending, Phase, Worker, WriteOp};
use crate::config::BalancingPolicy;
use crate::io::{Failure, Record, RequestId};
use crate::item::{Item, Text};
use crate::lease::{Lease, LeaseKey, Row};
use crate::protocol::LeaseOp;
use crate::time::Instant;
use core::time::Duration;

/// A lease assigned to this worker, not yet acquired.
#[derive(Clone, Debug)]
struct Acquiring {
    since: Instant,
    /// The acquire, or the read of the row, in flight.
    write: Outstanding,
    /// The counter the acquire is conditional on: the one the assignment left, or the last
    /// read. Unknown after a refused or unanswered acquire, until the row is read again: every
    /// acquire names the counter it expects, so one whose answer was lost cannot land after a
    /// later one and bump the counter under the new holder.
    expect: Option<u64>,
    /// The notes of the worker row that named it (none when the leader assigned itself).
    notes: Vec<Text>,
    /// The move the first note named, which the row shows once it landed.
    named: Option<Move>,
}

/// The write of the leader that a note names. The leader tells the new owner also of a move
/// whose outcome it does not know, and sends the move again with its next plan; the same move
/// leaves the same note, which an acknowledgement of the first would remove unread. So a note
/// read before its move landed is waited for, a scan interval twice (the next plan and one
/// more), before it is given up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Move {
    /// An assignment, which left this counter.
    Assignment { counter_after: u64 },
    /// A handoff, which saw this counter and leaves it as it is.
    Handoff { counter: u64 },
}

impl Move {
    fn of(note: &crate::lease::Assignment) -> Option<Self> {
        match (note.counter(), note.handoff_counter()) {
            (Some(counter_after), _) => Some(Self::Assignment { counter_after }),
            (None, Some(counter)) => Some(Self::Handoff { counter }),
            (None, None) => None,
        }
    }

    /// Whether `row` is as it was before this move landed (or another came first): the counter
    /// before the assignment's, or the handoff's counter with an owner other than `me` and no
    /// old owner finishing.
    fn not_landed(self, row: &Lease, me: &crate::lease::WorkerId) -> bool {
        match self {
            Self::Assignment { counter_after } => row.counter < counter_after,
            Self::Handoff { counter } => {
                row.counter == counter
                    && row.owner.as_ref() != Some(me)
                    && row.checkpoint_owner.is_none()
            }
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Inbox {
    /// This process, as its heartbeats name it.
    pub(super) incarnation: Text,
    /// Mixed into every incarnation this process draws after its first: how its incarnation
    /// seed differs from the seed of its choices, so two processes sharing that seed never draw
    /// the same one (0 when the seed names the process too).
    pub(super) incarnation_salt: u64,
    /// Worker liveness: the incarnation this process gave up with every lease it held, whose
    /// row its next heartbeat may take over at once ([`crate::protocol`]).
    pub(super) previous: Option<Text>,
    /// Whether its heartbeats land ([`super::registration`]).
    pub(super) registration: Registration,
    heartbeat: Outstanding,
    acquiring: BTreeMap<LeaseKey, Acquiring>,
    /// Notes of assignments seen and done with (acquired, given up, or held already), to be
    /// removed from the worker row by the next heartbeat. Notes, not lease keys: a later
    /// assignment of the same lease is a note of its own, which this acknowledgement keeps.
    acks: BTreeSet<Text>,
    /// Heartbeating often, told by a heads-up that an assignment may come.
    pub(super) hurry: Hurry,
}

impl Inbox {
    pub(crate) fn new(incarnation: Text, incarnation_salt: u64) -> Self {
        Self {
            incarnation,
            incarnation_salt,
            previous: None,
            registration: Registration::default(),
            heartbeat: Outstanding::Idle,
            acquiring: BTreeMap::new(),
            acks: BTreeSet::new(),
            hurry: Hurry::default(),
        }
    }

    pub(crate) fn heartbeat_in_flight(&self) -> bool {
        self.heartbeat != Outstanding::Idle
    }

    /// Worker liveness: starts over as the process `incarnation`, unregistered, having given up
    /// `previous` when its row may be taken over at once. The acquisitions under way, the notes
    /// and the heartbeat in flight were the old incarnation's (that heartbeat's answer is stale).
    pub(crate) fn start_over(&mut self, incarnation: Text, previous: Option<Text>) {
        self.acquiring.clear();
        self.acks.clear();
        self.hurry = Hurry::default();
        self.heartbeat = Outstanding::Idle;
        self.incarnation = incarnation;
        self.previous = previous;
        self.registration = Registration::Unregistered;
    }

    /// Gives up every acquisition under way (at shutdown); they are acknowledged.
    pub(crate) fn give_up(&mut self) {
        for (_, a) in core::mem::take(&mut self.acquiring) {
            self.acks.extend(a.notes);
        }
    }

    /// The acquisition of `key` whose request `req` is answered, now waiting for nothing; `None`
    /// for an answer to another request (a late answer to an earlier acquisition of the same
    /// lease, given up since, carries a row that may have moved on twice).
    fn answered(&mut self, key: &LeaseKey, req: RequestId) -> Option<&mut Acquiring> {
        let a = self
            .acquiring
            .get_mut(key)
            .filter(|a| a.write == Outstanding::InFlight(req))?;
        a.write = Outstanding::Idle;
        Some(a)
    }

    /// The acquisition of `key` is over, whatever its outcome: its notes are acknowledged.
    fn done(&mut self, key: &LeaseKey) {
        if let Some(a) = self.acquiring.remove(key) {
            self.acks.extend(a.notes);
        }
    }
}

impl<R: Record + Clone> Worker<R> {
    pub(super) fn heartbeat_timer(&mut self) {
        if self.policy() != BalancingPolicy::Coordinated || self.ctx.phase == Phase::Stopped {
            return;
        }
        let worker_liveness = self.ctx.config.worker_liveness();
        if worker_liveness && self.inbox.registration.registered() && self.window_closed() {
            // Leases lost to a closed window would look alive for as long as this process's
            // heartbeats land: it gives up its incarnation, which orphans them.
            self.give_up_incarnation(true);
        }
        if self.inbox.heartbeat == Outstanding::Idle && !self.shutdown.cleaning_up() {
            let acked: Vec<Text> = self.inbox.acks.iter().cloned().collect();
            let registered = worker_liveness && self.inbox.registration.registered();
            let op = LeaseOp::Heartbeat {
                worker: self.ctx.id.clone(),
                incarnation: self.inbox.incarnation.clone(),
                takeover: self.takeover_counter(),
                registered,
                previous: self.inbox.previous.clone().filter(|_| !registered),
                max_leases: self.ctx.config.max_leases_per_worker,
                leaving: self.ctx.phase != Phase::Running,
                reads_stalled: self.reads_stalled(),
                acked: acked.clone(),
                failure_domain: self.ctx.config.failure_domain.as_deref().map(Text::from),
            };
            let incarnation = self.inbox.incarnation.clone();
            let req = self
                .ctx
                .write(&op, WriteOp::Heartbeat { acked, incarnation });
            self.inbox.heartbeat = Outstanding::InFlight(req);
            if worker_liveness {
                self.ctx.heartbeats.in_flight = Some(self.ctx.now);
            }
        }
        self.probe_kinesis();
        let at = self
            .inbox
            .hurry
            .next_heartbeat(self.ctx.now, &self.ctx.config);
        self.ctx.timers.set(TimerKey::Heartbeat, at);
    }

    pub(super) fn heartbeat_written(
        &mut self,
        acked: Vec<Text>,
        sent: Instant,
        result: Result<Option<Item>, Failure>,
    ) {
        self.inbox.heartbeat = Outstanding::Idle;
        self.stall_unreported();
        let worker_liveness = self.ctx.config.worker_liveness();
        if worker_liveness {
            self.ctx.heartbeats.in_flight = None;
        }
        let item = match result {
            Ok(item) => {
                self.registered();
                self.inbox.previous = None;
                if worker_liveness {
                    self.heartbeat_landed(sent);
                }
                match item {
                    Some(item) => item,
                    None => return,
                }
            }
            Err(Failure::ConditionFailed)
                if worker_liveness && self.inbox.registration.registered() =>
            {
                // Fenced, deleted or taken over: another worker may hold these leases now.
                self.give_up_incarnation(false);
                return;
            }
            Err(Failure::ConditionFailed) => return self.heartbeat_refused(),
            Err(_) => {
                if worker_liveness {
                    // Lost heartbeats close every window at once: try again soon, never later
                    // than the next tick.
                    self.heartbeat_failed();
                }
                return;
            }
        };
        for k in &acked {
            self.inbox.acks.remove(k);
        }
        match Row::from_item(&item) {
            Ok(Row::Worker(row)) => {
                if worker_liveness {
                    self.ctx.heartbeats.liveness = Some(row.liveness());
                    self.renew_leadership();
                }
                for a in row.assigned {
                    if a.is_heads_up() {
                        let due = a.heads_up_due().map(|(from, to)| {
                            (Duration::from_millis(from), Duration::from_millis(to))
                        });
                        if self.inbox.acks.insert(a.note) {
                            if let Some(due) = due {
                                let (now, config) = (self.ctx.now, &self.ctx.config);
                                self.inbox.hurry.heads_up(now, due, config);
                                let at = self.inbox.hurry.next_heartbeat(now, config);
                                self.ctx.timers.set_earlier(TimerKey::Heartbeat, at);
                            }
                        }
                        continue;
                    }
                    if worker_liveness && a.counter().is_none() && self.held.contains_key(&a.shard)
                    {
                        // A handoff of a lease this worker holds: no renewal shows it the row,
                        // so one renewal is sent to read it back (see `HeldLease::adopt_changes`).
                        self.touch(&a.shard, |h, _| h.renew_due());
                        self.inbox.acks.insert(a.note);
                        continue;
                    }
                    let counter = a.counter();
                    self.start_acquire(a.shard, Some(a.note), counter);
                }
            }
            Ok(_) => {}
            Err(error) => self.ctx.malformed(&item, error),
        }
    }

    /// Acquires `key`, assigned to this worker (by the row note `note`, if any) at `counter`,
    /// when known; a lease held already, or one assigned while not running, is only
    /// acknowledged.
    pub(super) fn start_acquire(
        &mut self,
        key: LeaseKey,
        note: Option<Text>,
        counter: Option<u64>,
    ) {
        if self.held.contains_key(&key) || self.ctx.phase != Phase::Running {
            self.inbox.acks.extend(note);
            return;
        }
        if let Some(a) = self.inbox.acquiring.get_mut(&key) {
            if let Some(note) = note {
                if !a.notes.contains(&note) {
                    a.notes.push(note);
                }
            }
            return;
        }
        let named = note
            .as_ref()
            .and_then(|n| Move::of(&crate::lease::Assignment::parse(n.as_str())));
        self.inbox.acquiring.insert(
            key.clone(),
            Acquiring {
                since: self.ctx.now,
                write: Outstanding::Idle,
                expect: counter,
                notes: note.into_iter().collect(),
                named,
            },
        );
        self.acquire_write(key);
    }

    fn acquire_write(&mut self, key: LeaseKey) {
        let Some(a) = self.inbox.acquiring.get(&key) else {
            return;
        };
        if a.write != Outstanding::Idle {
            return;
        }
        if self.ctx.config.worker_liveness() && self.ctx.heartbeats.landed.is_none() {
            // No heartbeat of this incarnation landed yet: a lease acquired now would have no
            // window to deliver in, and would look alive once one lands. Wait, within bounds.
            let give_up_at = a.since + self.ctx.config.handoff_timeout;
            if self.ctx.now >= give_up_at {
                self.inbox.done(&key);
            } else {
                let at = self.ctx.now + self.ctx.config.handoff_poll_interval;
                self.ctx.timers.set_for(&key, LeaseTimer::HandoffPoll, at);
            }
            return;
        }
        let req = match a.expect {
            Some(counter) => {
                let op = LeaseOp::Acquire {
                    shard: key.clone(),
                    worker: self.ctx.id.clone(),
                    counter,
                    incarnation: self
                        .ctx
                        .config
                        .worker_liveness()
                        .then(|| self.inbox.incarnation.clone()),
                };
                self.ctx.write(&op, WriteOp::Acquire)
            }
            None => self
                .ctx
                .read(key.as_str(), Pending::ReadAcquire { shard: key.clone() }),
        };
        if let Some(a) = self.inbox.acquiring.get_mut(&key) {
            a.write = Outstanding::InFlight(req);
        }
    }

    /// An acquire's answer: the returned row is the lease; refused, the row is read to see
    /// whether the old owner is still finishing.
    pub(super) fn acquired(
        &mut self,
        req: RequestId,
        key: LeaseKey,
        sent: Instant,
        result: Result<Option<Item>, Failure>,
    ) {
        let Some(a) = self.inbox.answered(&key, req) else {
            self.ctx.stats.stale_results += 1;
            return;
        };
        if !matches!(result, Ok(Some(_))) {
            a.expect = None;
        }
        match result {
            Ok(Some(item)) => {
                self.inbox.done(&key);
                self.adopt(item, sent, false);
            }
            Ok(None) | Err(Failure::ConditionFailed) => self.acquire_write(key),
            Err(_) => self.ctx.timers.set_for(
                &key,
                LeaseTimer::HandoffPoll,
                self.ctx.now + self.ctx.config.handoff_poll_interval,
            ),
        }
    }

    /// The row of a lease being acquired: acquire it once the old owner completed, poll while it
    /// has not, give up once it is someone else's, gone or finished, or the wait is too long.
    pub(super) fn acquire_read(
        &mut self,
        req: RequestId,
        key: LeaseKey,
        result: Result<Option<Item>, Failure>,
    ) {
        let Some(a) = self.inbox.answered(&key, req) else {
            self.ctx.stats.stale_results += 1;
            return;
        };
        let give_up_at =
            a.since + self.ctx.config.handoff_timeout + self.ctx.config.failover_time * 2;
        let (since, named) = (a.since, a.named);
        let me = self.ctx.id.clone();
        let row = match &result {
            Ok(Some(item)) => Lease::from_item(item).ok(),
            _ => None,
        };
        let not_landed = match (named, &row) {
            (Some(named), Some(l)) => {
                named.not_landed(l, &me)
                    && !l.is_finished()
                    && self.ctx.now < since + self.ctx.config.scan_interval * 2
            }
            _ => false,
        };
        // Under worker liveness a lease this process acquired (an acquire whose answer was
        // lost landed) lives while it heartbeats, also once handed on: it is held from the row,
        // so that it is left by a write of its own (see `crate::protocol`, worker liveness 4).
        let acquired_unseen = self.ctx.config.worker_liveness()
            && row.as_ref().is_some_and(|l| {
                l.owner_incarnation.as_deref() == Some(self.inbox.incarnation.as_str())
                    && (l.owner.as_ref() == Some(&me) || l.checkpoint_owner.as_ref() == Some(&me))
            });
        if acquired_unseen && self.ctx.phase == Phase::Running {
            if let Ok(Some(item)) = result {
                self.inbox.done(&key);
                let sent = self.ctx.now;
                return self.adopt(item, sent, false);
            }
        }
        let keep_waiting = match (&result, &row) {
            (Ok(None), _) => false,
            (Ok(Some(_)), None) => false,
            (Ok(Some(_)), Some(l)) => {
                (l.owner.as_ref() == Some(&me) && !l.is_finished()) || not_landed
            }
            (Err(_), _) => true,
        };
        if !keep_waiting || self.ctx.now >= give_up_at || self.ctx.phase != Phase::Running {
            self.inbox.done(&key);
            return;
        }
        let ready = row
            .as_ref()
            .filter(|l| l.owner.as_ref() == Some(&me) && l.checkpoint_owner.is_none());
        if let Some(l) = ready {
            if let Some(a) = self.inbox.acquiring.get_mut(&key) {
                a.expect = Some(l.counter);
            }
            self.acquire_write(key);
        } else {
            self.ctx.timers.set_for(
                &key,
                LeaseTimer::HandoffPoll,
                self.ctx.now + self.ctx.config.handoff_poll_interval,
            );
        }
    }

    pub(super) fn acquire_poll(&mut self, key: LeaseKey) {
        if self.inbox.acquiring.contains_key(&key) {
            self.acquire_write(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::lease::{LeaseKey, Row, WorkerId, WorkerRow};
    use crate::protocol::LeaseOp;
    use crate::worker::testing::{owned, Harness};
    use crate::write::WriteKind;

    /// A worker that is not the leader (w9 leads, renewing as the test goes), under lease
    /// liveness: a heartbeat every 2 s carries its assignments.
    fn follower() -> Harness {
        let mut h = Harness::new(Config::default().with_lease_liveness(), "w2");
        h.apply(&LeaseOp::ClaimLeader {
            standby: None,
            worker: WorkerId::from("w9"),
            counter: None,
            heartbeat: None,
        });
        h
    }

    fn worker_liveness() -> Config {
        Config::default().with_worker_liveness()
    }

    fn own_row(h: &Harness) -> WorkerRow {
        match h
            .table
            .get(&WorkerRow::key(&WorkerId::from("w1")))
            .map(Row::from_item)
        {
            Some(Ok(Row::Worker(row))) => row,
            other => panic!("{other:?}"),
        }
    }

    /// A lone worker under worker liveness: it leads, assigns itself the lease and acquires it
    /// under its incarnation, then keeps it by heartbeats alone.
    fn alone_holding() -> Harness {
        let mut h = Harness::new(worker_liveness(), "w1");
        h.put(&crate::worker::testing::unowned("shard-1"));
        h.run_until(30_000);
        assert!(h.holds("shard-1"));
        let lease = h.lease("shard-1").expect("row");
        assert_eq!(
            lease.owner_incarnation.as_deref(),
            own_row(&h).incarnation.as_deref()
        );
        h
    }

    /// A heads-up read with a heartbeat quickens the heartbeats around the window it names
    /// (every poll, not every heartbeat interval), and is acknowledged like any note.
    #[test]
    fn a_heads_up_quickens_the_heartbeats_around_its_window() {
        let mut h = alone_holding();
        let before = h.writes(WriteKind::WorkerHeartbeat).len();
        h.apply(&LeaseOp::HeadsUp {
            worker: WorkerId::from("w1"),
            shard: LeaseKey::from("shard-9"),
            counter: 3,
            due_ms: (10_000, 10_000),
        });
        let mut sent = alloc::vec::Vec::new();
        for t in (30_000..=60_000).step_by(50) {
            h.run_until(t);
            let n = h.writes(WriteKind::WorkerHeartbeat).len();
            if n > before + sent.len() {
                sent.push(t);
            }
        }
        let read = sent[0];
        assert!(
            read <= 30_000 + 3_400,
            "the next heartbeat reads it: {read}"
        );
        let quick: alloc::vec::Vec<u64> = sent
            .windows(2)
            .filter(|w| w[1] - w[0] <= 500)
            .map(|w| w[1])
            .collect();
        // From 10 s less a heartbeat interval and a poll to 10 s and a scan after the read.
        assert!(quick.len() >= 10, "{sent:?}");
        assert!(
            quick[0] >= read + 6_000 && quick[0] <= read + 6_800,
            "{sent:?}"
        );
        assert!(
            quick.last().is_some_and(|&t| t <= read + 12_500),
            "{sent:?}"
        );
        let last_gap = sent.windows(2).last().map(|w| w[1] - w[0]);
        assert!(
            last_gap.is_some_and(|g| g > 3_000),
            "back to the interval: {sent:?}"
        );
        assert!(own_row(&h).assigned.is_empty(), "acknowledged");
    }

    #[test]
    fn under_worker_liveness_heartbeats_alone_keep_the_leases() {
        let mut h = alone_holding();
        h.run_until(120_000);
        assert!(h.holds("shard-1"));
        assert!(h.writes(WriteKind::Renew).is_empty());
        assert!(h.w.delivery_deadline("shard-1").is_some());
        assert_eq!(h.w.stats().incarnations_given_up, 0);
    }

    /// Fenced by a leader: the next heartbeat is refused, every lease is dropped at once, and
    /// the worker registers again under a fresh incarnation (then, leading alone, takes the
    /// lease back under it).
    #[test]
    fn a_fenced_worker_drops_its_leases_and_registers_again() {
        let mut h = alone_holding();
        let row = own_row(&h);
        let before = row.incarnation.clone().expect("registered");
        h.apply(&LeaseOp::FenceWorker {
            worker: WorkerId::from("w1"),
            counter: row.counter,
            incarnation: before.as_str().into(),
        });
        h.run_until(34_000);
        assert_eq!(h.w.stats().incarnations_given_up, 1);
        assert!(h
            .calls("shard-1")
            .iter()
            .any(|c| matches!(c, crate::io::ProcessorCall::LeaseLost)));
        h.run_until(60_000);
        let after = own_row(&h).incarnation.expect("registered again");
        assert_ne!(after, before);
        assert!(h.holds("shard-1"));
        assert_eq!(
            h.lease("shard-1")
                .and_then(|l| l.owner_incarnation)
                .as_deref(),
            Some(after.as_str())
        );
    }

    /// Cut off from the table for longer than a window: the leases are lost when the window
    /// closes, and the worker gives up its incarnation (its heartbeats may have landed unseen,
    /// so the leases would look alive for ever); back in touch, it takes its own row over at once.
    #[test]
    fn a_worker_whose_window_closed_gives_up_its_incarnation() {
        let mut h = alone_holding();
        let before = own_row(&h).incarnation.expect("registered");
        h.cut_off = true;
        h.run_until(50_000);
        assert!(!h.holds("shard-1"));
        assert!(h.w.stats().incarnations_given_up >= 1);
        h.cut_off = false;
        h.run_until(120_000);
        let after = own_row(&h).incarnation.expect("registered again");
        assert_ne!(after, before);
        assert!(h.holds("shard-1"));
    }

    /// An operator's eviction (`kcl-admin release`) of a lease held under worker liveness: the
    /// note it leaves in the holder's row (`@h`, read the row) makes the holder send one renewal,
    /// which is refused; the row read back shows the lease gone, so the processor is told and
    /// nothing more is delivered. Then the lease is assigned again (here to the same worker, the
    /// only one).
    #[test]
    fn an_evicted_lease_is_dropped_once_the_holder_is_told() {
        let mut h = alone_holding();
        let counter = h.lease("shard-1").expect("row").counter;
        h.apply(&LeaseOp::Evict {
            shard: LeaseKey::from("shard-1"),
            counter,
        });
        h.apply(&LeaseOp::Notify {
            worker: WorkerId::from("w1"),
            shard: LeaseKey::from("shard-1"),
            counter: counter + 1,
            handoff: true,
        });
        let lost = |h: &Harness| {
            h.calls("shard-1")
                .iter()
                .filter(|c| matches!(c, crate::io::ProcessorCall::LeaseLost))
                .count()
        };
        assert_eq!(lost(&h), 0);
        // One heartbeat to see the note, a renewal refused, a read back.
        h.run_until(36_000);
        assert_eq!(lost(&h), 1, "{:?}", h.log);
        assert!(!h.writes(WriteKind::Renew).is_empty());
        h.run_until(90_000);
        assert!(h.holds("shard-1"));
        let lease = h.lease("shard-1").expect("row");
        assert!(lease.counter > counter + 1);
        assert_eq!(
            lease.owner_incarnation.as_deref(),
            own_row(&h).incarnation.as_deref()
        );
    }

    fn assigned(h: &Harness) -> alloc::vec::Vec<LeaseKey> {
        match h
            .table
            .get(&WorkerRow::key(&WorkerId::from("w2")))
            .map(Row::from_item)
        {
            Some(Ok(Row::Worker(row))) => row.assigned.into_iter().map(|a| a.shard).collect(),
            other => panic!("{other:?}"),
        }
    }

    /// The leader's note of an assignment of `shard` to w2: each call a new assignment.
    fn notify(h: &mut Harness, shard: &str) {
        let counter = h.log.len() as u64;
        note(h, shard, counter, false);
    }

    fn note(h: &mut Harness, shard: &str, counter: u64, handoff: bool) {
        h.apply(&LeaseOp::Notify {
            worker: WorkerId::from("w2"),
            shard: LeaseKey::from(shard),
            counter,
            handoff,
        });
    }

    #[test]
    fn an_assignment_in_the_heartbeat_row_is_acquired_and_acknowledged() {
        let mut h = follower();
        h.run_until(100);
        h.put(&owned("shard-1", "w2", 4));
        notify(&mut h, "shard-1");
        assert_eq!(assigned(&h), [LeaseKey::from("shard-1")]);
        h.run_until(2_100);
        assert!(h.holds("shard-1"));
        assert_eq!(h.lease("shard-1").map(|l| l.counter), Some(5), "acquired");
        h.run_until(4_100);
        assert!(
            assigned(&h).is_empty(),
            "acknowledged by the next heartbeat"
        );
        assert!(!h.w.is_leader(h.now));
    }

    #[test]
    fn a_handoff_is_acquired_once_the_old_owner_completed_it() {
        let mut h = follower();
        h.run_until(100);
        let mut handing = owned("shard-1", "w2", 4);
        handing.checkpoint_owner = Some(WorkerId::from("w1"));
        h.put(&handing);
        note(&mut h, "shard-1", 4, true);
        h.run_until(3_000);
        assert!(!h.holds("shard-1"), "w1 still finishes");
        // The row is polled by reads, and no acquire is written while the old owner finishes.
        assert!(h.writes(WriteKind::Acquire).is_empty());
        let polls = h
            .log
            .iter()
            .filter(|c| matches!(c, crate::io::Command::ReadLease { key, .. } if key == "shard-1"))
            .count();
        assert!(polls >= 2, "polled: {polls}");
        h.apply(&LeaseOp::CompleteHandoff {
            shard: LeaseKey::from("shard-1"),
            counter: 4,
            holder: WorkerId::from("w1"),
        });
        h.run_until(3_600);
        assert!(h.holds("shard-1"));
        assert_eq!(h.lease("shard-1").map(|l| l.counter), Some(6));
    }

    #[test]
    fn an_assignment_that_moved_on_is_given_up() {
        let mut h = follower();
        h.run_until(100);
        h.put(&owned("shard-1", "w3", 4));
        // Assigned to w2 at counter 2; the row moved on to w3 since.
        note(&mut h, "shard-1", 3, false);
        h.run_until(2_100);
        assert!(!h.holds("shard-1"));
        h.run_until(4_100);
        assert!(assigned(&h).is_empty(), "acknowledged all the same");
        assert_eq!(h.writes(WriteKind::Acquire).len(), 1);
    }

    /// w2 reads the note of a move of w3's lease (at `counter`, a handoff or not) before the
    /// move's write landed, if it ever would: it had an unknown outcome (a timeout), and the
    /// leader tells the new owner all the same. At 3 s the leader's next plan sends the same
    /// move again, which lands (`land`), and the same note (the counter is the same). w2 waits
    /// for the move the note names rather than give it up and acknowledge the note, which would
    /// remove the note sent again.
    fn note_read_before_its_move_landed(counter: u64, handoff: bool, land: impl Fn(&mut Harness)) {
        let mut h = follower();
        h.run_until(100);
        h.put(&owned("shard-1", "w3", 4));
        note(&mut h, "shard-1", counter, handoff);
        h.run_until(2_100);
        assert!(!h.holds("shard-1"));
        h.run_until(3_000);
        land(&mut h);
        note(&mut h, "shard-1", counter, handoff);
        h.run_until(6_000);
        assert!(h.holds("shard-1"), "{:?}", h.log);
        assert_eq!(h.lease("shard-1").map(|l| l.counter), Some(6));
        h.run_until(8_100);
        assert!(assigned(&h).is_empty(), "acknowledged once acquired");
    }

    #[test]
    fn an_assignment_read_before_its_write_landed_is_acquired_once_it_lands() {
        note_read_before_its_move_landed(5, false, |h| {
            h.apply(&LeaseOp::Assign {
                shard: LeaseKey::from("shard-1"),
                counter: 4,
                to: WorkerId::from("w2"),
            });
        });
    }

    /// The row w2 reads first is still w3's, with no checkpoint owner and the counter the note
    /// names; the handoff lands and w3 completes it.
    #[test]
    fn a_handoff_read_before_its_write_landed_is_acquired_once_it_lands() {
        note_read_before_its_move_landed(4, true, |h| {
            h.apply(&LeaseOp::InitiateHandoff {
                shard: LeaseKey::from("shard-1"),
                from: WorkerId::from("w3"),
                to: WorkerId::from("w2"),
            });
            h.apply(&LeaseOp::CompleteHandoff {
                shard: LeaseKey::from("shard-1"),
                counter: 4,
                holder: WorkerId::from("w3"),
            });
        });
    }

    #[test]
    fn an_acknowledgement_does_not_remove_a_new_assignment_of_the_same_lease() {
        let mut h = follower();
        h.run_until(100);
        h.put(&owned("shard-1", "w2", 4));
        notify(&mut h, "shard-1");
        h.run_until(2_100);
        assert!(
            h.holds("shard-1"),
            "acquired; acknowledged by the next heartbeat"
        );
        // Before that heartbeat, the leader assigns shard-1 to w2 again (say its processor
        // failed and the lease was released meanwhile).
        notify(&mut h, "shard-1");
        h.run_until(2_200);
        let heartbeats = h.writes(WriteKind::WorkerHeartbeat).len();
        h.run_until(4_100);
        assert!(h.writes(WriteKind::WorkerHeartbeat).len() > heartbeats);
        assert!(
            !assigned(&h).is_empty(),
            "the acknowledgement of the first assignment removed the second"
        );
    }
}
