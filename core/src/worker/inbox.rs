//! A worker's heartbeat and inbox under `Coordinated`: its heartbeat row proves it alive and
//! carries, in the row the write returns, the leases the leader assigned or handed to it; each
//! is acquired once its old owner has let go, and acknowledged by the next heartbeat.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;

use super::registration::Registration;
use super::timers::{LeaseTimer, TimerKey};
use super::{Outstanding, Pending, Phase, Worker, WriteOp};
use crate::config::BalancingPolicy;
use crate::io::{Failure, Record};
use crate::item::{Item, Text};
use crate::lease::{Lease, LeaseKey, Row};
use crate::protocol::LeaseOp;
use crate::time::Instant;

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
}

#[derive(Clone, Debug)]
pub(crate) struct Inbox {
    /// This process, as its heartbeats name it.
    pub(super) incarnation: Text,
    /// Whether its heartbeats land ([`super::registration`]).
    pub(super) registration: Registration,
    heartbeat: Outstanding,
    acquiring: BTreeMap<LeaseKey, Acquiring>,
    /// Notes of assignments seen and done with (acquired, given up, or held already), to be
    /// removed from the worker row by the next heartbeat. Notes, not lease keys: a later
    /// assignment of the same lease is a note of its own, which this acknowledgement keeps.
    acks: BTreeSet<Text>,
}

impl Inbox {
    pub(crate) fn new(incarnation: Text) -> Self {
        Self {
            incarnation,
            registration: Registration::default(),
            heartbeat: Outstanding::Idle,
            acquiring: BTreeMap::new(),
            acks: BTreeSet::new(),
        }
    }

    pub(crate) fn heartbeat_in_flight(&self) -> bool {
        self.heartbeat != Outstanding::Idle
    }

    /// Gives up every acquisition under way (at shutdown); they are acknowledged.
    pub(crate) fn give_up(&mut self) {
        for (_, a) in core::mem::take(&mut self.acquiring) {
            self.acks.extend(a.notes);
        }
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
        if self.inbox.heartbeat == Outstanding::Idle && !self.shutdown.cleaning_up() {
            let acked: Vec<Text> = self.inbox.acks.iter().cloned().collect();
            let op = LeaseOp::Heartbeat {
                worker: self.ctx.id.clone(),
                incarnation: self.inbox.incarnation.clone(),
                takeover: self.takeover_counter(),
                registered: false,
                previous: None,
                max_leases: self.ctx.config.max_leases_per_worker,
                leaving: self.ctx.phase != Phase::Running,
                acked: acked.clone(),
            };
            let req = self.ctx.write(&op, WriteOp::Heartbeat { acked });
            self.inbox.heartbeat = Outstanding::InFlight(req);
        }
        let at = self.ctx.now + self.ctx.config.heartbeat_interval;
        self.ctx.timers.set(TimerKey::Heartbeat, at);
    }

    pub(super) fn heartbeat_written(
        &mut self,
        acked: Vec<Text>,
        result: Result<Option<Item>, Failure>,
    ) {
        self.inbox.heartbeat = Outstanding::Idle;
        let item = match result {
            Ok(item) => {
                self.registered();
                match item {
                    Some(item) => item,
                    None => return,
                }
            }
            Err(Failure::ConditionFailed) => return self.heartbeat_refused(),
            Err(_) => return,
        };
        for k in &acked {
            self.inbox.acks.remove(k);
        }
        match Row::from_item(&item) {
            Ok(Row::Worker(row)) => {
                for a in row.assigned {
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
        self.inbox.acquiring.insert(
            key.clone(),
            Acquiring {
                since: self.ctx.now,
                write: Outstanding::Idle,
                expect: counter,
                notes: note.into_iter().collect(),
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
        let req = match a.expect {
            Some(counter) => {
                let op = LeaseOp::Acquire {
                    shard: key.clone(),
                    worker: self.ctx.id.clone(),
                    counter,
                    incarnation: None,
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
        key: LeaseKey,
        sent: Instant,
        result: Result<Option<Item>, Failure>,
    ) {
        let Some(a) = self.inbox.acquiring.get_mut(&key) else {
            self.ctx.stats.stale_results += 1;
            return;
        };
        a.write = Outstanding::Idle;
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
    pub(super) fn acquire_read(&mut self, key: LeaseKey, result: Result<Option<Item>, Failure>) {
        let Some(a) = self.inbox.acquiring.get_mut(&key) else {
            self.ctx.stats.stale_results += 1;
            return;
        };
        a.write = Outstanding::Idle;
        let give_up_at =
            a.since + self.ctx.config.handoff_timeout + self.ctx.config.failover_time * 2;
        let me = self.ctx.id.clone();
        let row = match &result {
            Ok(Some(item)) => Lease::from_item(item).ok(),
            _ => None,
        };
        let keep_waiting = match (&result, &row) {
            (Ok(None), _) => false,
            (Ok(Some(_)), None) => false,
            (Ok(Some(_)), Some(l)) => l.owner.as_ref() == Some(&me) && !l.is_finished(),
            (Err(_), _) => true,
        };
        if !keep_waiting || self.ctx.now >= give_up_at || self.ctx.phase != Phase::Running {
            self.inbox.done(&key);
            return;
        }
        let ready = row.as_ref().filter(|l| l.checkpoint_owner.is_none());
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

    /// A worker that is not the leader (w9 leads, renewing as the test goes).
    fn follower() -> Harness {
        let mut h = Harness::new(Config::default(), "w2");
        h.apply(&LeaseOp::ClaimLeader {
            worker: WorkerId::from("w9"),
            counter: None,
        });
        h
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
        notify(&mut h, "shard-1");
        h.run_until(2_100);
        assert!(!h.holds("shard-1"));
        h.run_until(4_100);
        assert!(assigned(&h).is_empty(), "acknowledged all the same");
        assert_eq!(h.writes(WriteKind::Acquire).len(), 1);
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
