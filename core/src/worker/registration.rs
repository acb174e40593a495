//! One process per worker id (`Coordinated`). A worker's heartbeat row carries the incarnation of
//! the process that writes it, and a heartbeat lands only on a row with no incarnation or its
//! own. A process whose first heartbeat is refused reads the row at every heartbeat interval: if
//! its counter moves twice, another live process has this id, and this one stops with
//! [`Event::DuplicateWorkerId`] before it has done anything (once is not enough: the heartbeat a
//! crashed process had in flight may land after its successor started); if the counter stands
//! still for the failover time, the process before it is gone (crashed, or partitioned for longer
//! than any of its leases last), and the row is taken over by a heartbeat conditional on that
//! counter, dropping the notes of assignments made to the process before. A registered worker
//! whose heartbeat is refused was taken over that way after it stood still itself: it stops the
//! same way, writing nothing.
//!
//! Until its heartbeat has landed a worker neither claims leadership nor acquires a lease, so a
//! second process with a live id never delivers.

use super::ctx::Heartbeats;
use super::timers::TimerKey;
use super::{Pending, Phase, Worker};
use crate::io::{Event, Failure, Record};
use crate::item::{Item, Text};
use crate::lease::{Row, WorkerRow};
use crate::rng::Rng;
use crate::time::Instant;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) enum Registration {
    /// No heartbeat of this process has landed yet.
    #[default]
    Unregistered,
    /// The row is another process's: its counter, first seen at `since` on this clock, and how
    /// often it moved while this process watched.
    Probing {
        counter: u64,
        since: Instant,
        moves: u8,
    },
    /// This process's heartbeats land.
    Registered,
}

impl Registration {
    pub(crate) fn registered(&self) -> bool {
        *self == Self::Registered
    }
}

/// The incarnation of a worker built from `seed` (drivers give each process its own): 16 hex
/// digits, from a generator of its own so that the worker's draws are unchanged.
pub(crate) fn incarnation(seed: u64) -> Text {
    let z = Rng::new(seed ^ 0x6b63_6c2d_696e_6361).next_u64();
    Text::from(alloc::format!("{z:016x}").as_str())
}

impl<R: Record + Clone> Worker<R> {
    /// The counter to take the row over at, once another process's row stood still for the
    /// failover time.
    pub(super) fn takeover_counter(&self) -> Option<u64> {
        match self.inbox.registration {
            Registration::Probing { counter, since, .. }
                if self.ctx.now >= since + self.ctx.config.failover_time =>
            {
                Some(counter)
            }
            _ => None,
        }
    }

    /// A heartbeat landed: this process holds the row.
    pub(super) fn registered(&mut self) {
        self.inbox.registration = Registration::Registered;
    }

    /// Worker liveness: a heartbeat of this incarnation sent at `sent` landed, which keeps every
    /// lease it holds until `delivery_window` after `sent`.
    pub(super) fn heartbeat_landed(&mut self, sent: Instant) {
        let landed = &mut self.ctx.heartbeats.landed;
        if landed.is_none_or(|l| sent > l) {
            *landed = Some(sent);
        }
        self.touch_all(|h, _| h.heartbeat_landed(sent));
    }

    /// Worker liveness: no heartbeat that landed, or is in flight, keeps a window open.
    pub(super) fn window_closed(&self) -> bool {
        self.ctx
            .heartbeats
            .holds_until(&self.ctx.config)
            .is_none_or(|end| self.ctx.now >= end)
    }

    /// Worker liveness: a heartbeat failed without landing; the next is sent after a backoff,
    /// never later than its tick.
    pub(super) fn heartbeat_failed(&mut self) {
        let retry = self.ctx.now + self.ctx.backoff(1);
        self.ctx.timers.set_earlier(TimerKey::Heartbeat, retry);
    }

    /// Worker liveness: this process stops being the one its worker row names. Every lease it
    /// holds is dropped (another worker may hold it, or will once the leader sees the row's new
    /// incarnation), and it registers again under a fresh incarnation: at once on its own row
    /// when `own_row` (its windows closed, so the row may change hands), otherwise on a row the
    /// leader fenced or deleted (a row another process took over stops it, as at its start).
    pub(super) fn give_up_incarnation(&mut self, own_row: bool) {
        self.ctx.stats.incarnations_given_up += 1;
        self.touch_all(|h, ctx| h.lose(ctx));
        let fresh = incarnation(self.ctx.rng.next_u64() ^ self.inbox.incarnation_salt);
        let old = self.inbox.incarnation.clone();
        self.inbox.start_over(fresh, own_row.then_some(old));
        self.ctx.heartbeats = Heartbeats::default();
    }

    /// A heartbeat was refused: the row is another process's.
    pub(super) fn heartbeat_refused(&mut self) {
        if self.inbox.registration.registered() {
            self.duplicate_worker_id();
        } else {
            self.ctx
                .read(&WorkerRow::key(&self.ctx.id), Pending::ReadWorkerRow);
        }
    }

    /// The worker row, read after a refused heartbeat.
    pub(super) fn worker_row_read(&mut self, result: Result<Option<Item>, Failure>) {
        if self.inbox.registration.registered() || self.ctx.phase == Phase::Stopped {
            return;
        }
        let row = match result {
            // Gone (deleted by the leader): the next heartbeat creates it.
            Ok(None) => {
                self.inbox.registration = Registration::Unregistered;
                return;
            }
            Ok(Some(item)) => match Row::from_item(&item) {
                Ok(Row::Worker(row)) => row,
                Ok(_) => return,
                Err(error) => return self.ctx.malformed(&item, error),
            },
            Err(_) => return,
        };
        if row.incarnation.as_deref() == Some(self.inbox.incarnation.as_str()) {
            // A heartbeat of this process landed although its answer was lost.
            return self.registered();
        }
        let moves = match self.inbox.registration {
            // Standing still: the takeover waits for the failover time since `since`.
            Registration::Probing { counter, .. } if counter == row.counter => return,
            Registration::Probing { moves, .. } => moves + 1,
            _ => 0,
        };
        if moves >= 2 {
            return self.duplicate_worker_id();
        }
        self.inbox.registration = Registration::Probing {
            counter: row.counter,
            since: self.ctx.now,
            moves,
        };
    }

    /// Another live process has this worker id: stop, delivering nothing more and writing
    /// nothing (the leases held are left to expire; they carry the id the other process uses).
    fn duplicate_worker_id(&mut self) {
        self.ctx.stats.duplicate_worker_id = 1;
        self.ctx.event(Event::DuplicateWorkerId {
            worker: self.ctx.id.clone(),
        });
        self.touch_all(|h, ctx| h.lose(ctx));
        self.inbox.give_up();
        self.abdicate();
        self.ctx.phase = Phase::Stopped;
        self.ctx.event(Event::Stopped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::protocol::LeaseOp;
    use crate::worker::testing::Harness;

    /// Another process's heartbeat on the row of `w1`.
    fn other_beats(h: &mut Harness) {
        h.apply(&LeaseOp::Heartbeat {
            failure_domain: None,
            worker: crate::lease::WorkerId::from("w1"),
            incarnation: "other".into(),
            takeover: None,
            registered: false,
            previous: None,
            max_leases: 1,
            leaving: false,
            reads_stalled: false,
            acked: alloc::vec::Vec::new(),
        });
    }

    fn row(h: &Harness) -> WorkerRow {
        match h.table.get("kcl-rs:worker:w1").map(Row::from_item) {
            Some(Ok(Row::Worker(row))) => row,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_row_of_a_process_gone_quiet_is_taken_over_after_the_failover_time() {
        let mut h = Harness::new(Config::default(), "w1");
        other_beats(&mut h);
        h.run_until(5_000);
        assert_eq!(row(&h).incarnation.as_deref(), Some("other"), "refused");
        assert!(!h.w.inbox.registration.registered());
        h.run_until(20_000);
        assert_eq!(
            row(&h).incarnation.as_deref(),
            Some(h.w.inbox.incarnation.as_str())
        );
        assert!(h.w.inbox.registration.registered());
        assert_eq!(h.w.stats().duplicate_worker_id, 0);
    }

    #[test]
    fn a_process_that_sees_another_heartbeat_with_its_id_stops() {
        let mut h = Harness::new(Config::default(), "w1");
        other_beats(&mut h);
        for t in [2_500, 5_000, 7_500] {
            h.run_until(t);
            other_beats(&mut h);
        }
        h.run_until(12_000);
        assert_eq!(h.w.stats().duplicate_worker_id, 1);
        assert!(h.w.is_stopped());
        assert!(h
            .events()
            .iter()
            .any(|e| matches!(e, Event::DuplicateWorkerId { .. })));
        assert_eq!(row(&h).incarnation.as_deref(), Some("other"), "left alone");
        assert!(
            h.writes(crate::write::WriteKind::Leader).is_empty(),
            "no claim on leadership"
        );
    }

    /// Two processes with one seed (reproducible choices) and their own incarnation seeds are
    /// two processes; without one, the seed names the process.
    #[test]
    fn the_incarnation_may_be_drawn_apart_from_the_seed() {
        let worker = |seed, incarnation_seed| {
            Worker::<crate::io::BasicRecord>::with_incarnation(
                Config::default(),
                crate::lease::WorkerId::from("w1"),
                seed,
                incarnation_seed,
                Instant::ZERO,
            )
            .expect("valid")
        };
        let (mut a, mut b) = (worker(7, 1), worker(7, 2));
        assert_ne!(a.inbox.incarnation, b.inbox.incarnation);
        assert_eq!(a.inbox.incarnation, incarnation(1));
        // So are the incarnations they register under after giving theirs up, drawn at the
        // same point of one seed's stream.
        a.give_up_incarnation(true);
        b.give_up_incarnation(true);
        assert_ne!(a.inbox.incarnation, b.inbox.incarnation);
        let by_seed = Worker::<crate::io::BasicRecord>::new(
            Config::default(),
            crate::lease::WorkerId::from("w1"),
            7,
            Instant::ZERO,
        )
        .expect("valid");
        assert_eq!(by_seed.inbox.incarnation, incarnation(7));
    }

    #[test]
    fn incarnations_differ_by_seed_and_are_16_hex_digits() {
        let a = incarnation(1);
        assert_eq!(a.as_str().len(), 16);
        assert!(a.as_str().chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, incarnation(2));
        assert_eq!(a, incarnation(1));
    }
}
