//! A graceful shutdown: every held lease is left (handed over where a handoff is under way,
//! released otherwise) after its processor's `shutdown_requested`; after `shutdown_timeout` the
//! processors still busy are given up on, and one failover time later whatever is left is
//! dropped. Then the worker row is deleted, and the worker stops. A leader hands its row back
//! as soon as the shutdown begins.

use super::held::Exit;
use super::timers::TimerKey;
use super::{Phase, Worker, WriteOp};
use crate::config::BalancingPolicy;
use crate::io::{Event, Record};
use crate::protocol::LeaseOp;

#[derive(Clone, Debug, Default)]
pub(crate) struct Shutdown {
    /// `shutdown_timeout` passed: processors still busy were given up on.
    forced: bool,
    /// Every lease is left, and the worker's own rows are being cleaned up: the writes whose
    /// answers are outstanding.
    cleanup: Option<usize>,
}

impl Shutdown {
    pub(crate) fn cleaning_up(&self) -> bool {
        self.cleanup.is_some()
    }
}

impl<R: Record + Clone> Worker<R> {
    pub(super) fn shutdown(&mut self) {
        if self.ctx.phase != Phase::Running {
            return;
        }
        self.ctx.phase = Phase::ShuttingDown;
        self.ctx.timers.set(
            TimerKey::Shutdown,
            self.ctx.now + self.ctx.config.shutdown_timeout,
        );
        self.touch_all(|h, ctx| h.begin_exit(ctx, Exit::Shutdown));
        self.inbox.give_up();
        // Planning stops with the shutdown: a leader that kept its row would leave the fleet
        // without one until the row expired.
        self.resign_leadership();
        if self.policy() == BalancingPolicy::Coordinated {
            // Tell the leader at once that this worker is leaving.
            self.heartbeat_timer();
        }
    }

    pub(super) fn shutdown_timed_out(&mut self) {
        if !self.shutdown.forced {
            self.shutdown.forced = true;
            self.touch_all(|h, ctx| h.handoff_timed_out(ctx));
            // One more failover time for the final writes, then stop regardless.
            self.ctx.timers.set(
                TimerKey::Shutdown,
                self.ctx.now + self.ctx.config.failover_time,
            );
        } else {
            self.touch_all(|h, ctx| h.lose(ctx));
            self.shutdown.cleanup = Some(0);
        }
    }

    /// After every input: once nothing is held any more, cleans up and stops.
    pub(super) fn after_input(&mut self) {
        // The row is deleted only once no heartbeat is in flight: one landing after the delete
        // would write the row again, for the leader to find dead a retention later.
        if self.ctx.phase != Phase::ShuttingDown
            || !self.held.is_empty()
            || self.inbox.heartbeat_in_flight()
        {
            return;
        }
        if self.shutdown.cleanup.is_none() {
            let mut writes = 0;
            let me = self.ctx.id.clone();
            if self.policy() == BalancingPolicy::Coordinated {
                writes += 1;
                let op = LeaseOp::DeleteWorkerRow {
                    worker: me,
                    incarnation: self.inbox.incarnation.clone(),
                };
                self.ctx.write(&op, WriteOp::WorkerRowDelete);
            }
            self.shutdown.cleanup = Some(writes);
        }
        if self.shutdown.cleanup == Some(0) {
            self.ctx.phase = Phase::Stopped;
            self.ctx.event(Event::Stopped);
        }
    }

    /// The answer to a cleanup write (whatever it is: the worker stops either way).
    pub(super) fn cleaned_up(&mut self) {
        if let Some(writes) = &mut self.shutdown.cleanup {
            *writes = writes.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::io::{Event, Input, ProcessorCall, ReleaseReason};
    use crate::worker::testing::{unowned, Harness};
    use crate::write::WriteKind;

    fn holding(config: Config) -> Harness {
        let mut h = Harness::new(config, "w1");
        h.put(&unowned("shard-1"));
        h.run_until(1_000);
        assert!(h.holds("shard-1"));
        h
    }

    #[test]
    fn a_shutdown_asks_the_processor_releases_the_lease_and_stops() {
        let mut h = holding(Config::kcl2());
        h.handle(Input::ShutdownRequested);
        assert!(h
            .calls("shard-1")
            .iter()
            .any(|c| matches!(c, ProcessorCall::ShutdownRequested { .. })));
        assert_eq!(h.writes(WriteKind::Release).len(), 1);
        assert_eq!(h.lease("shard-1").and_then(|l| l.owner), None);
        assert!(h.events().iter().any(|e| matches!(
            e,
            Event::LeaseReleased {
                reason: ReleaseReason::Shutdown,
                ..
            }
        )));
        assert!(h.w.is_stopped());
        assert_eq!(h.events().last(), Some(&&Event::Stopped));
        assert_eq!(h.w.poll_timeout(), None);
        // A processor's task that asks after the stop is still answered.
        h.handle(Input::CheckpointRequested {
            shard: crate::lease::LeaseKey::from("shard-1"),
            ticket: 7,
            token: crate::io::FencingToken(1),
            target: crate::io::CheckpointTarget::LastDelivered,
            prepare: false,
            state: None,
        });
        h.handle(Input::CommitPreparedCheckpoint {
            shard: crate::lease::LeaseKey::from("shard-1"),
            ticket: 8,
            token: crate::io::FencingToken(1),
        });
        assert_eq!(
            h.checkpoint_answers(),
            [
                (7, Err(crate::io::CheckpointError::ShuttingDown)),
                (8, Err(crate::io::CheckpointError::ShuttingDown))
            ]
        );
    }

    #[test]
    fn a_processor_that_does_not_shut_down_in_time_is_given_up_on() {
        let mut h = holding(Config::kcl2());
        h.processor_hangs = true;
        h.handle(Input::ShutdownRequested);
        h.run_until(30_900);
        assert!(!h.w.is_stopped(), "shutdown_requested still runs");
        assert!(h.writes(WriteKind::Release).is_empty());
        h.run_until(31_000);
        assert!(h.calls("shard-1").contains(&&ProcessorCall::LeaseLost));
        // Still running: the lease is not released for another owner to process beside it,
        // and not renewed either, so its window closes and it expires.
        assert!(h.writes(WriteKind::Release).is_empty());
        h.run_until(45_000);
        assert!(h.writes(WriteKind::Release).is_empty());
        assert!(h.events().iter().any(|e| matches!(
            e,
            Event::LeaseReleased {
                reason: ReleaseReason::Lost,
                ..
            }
        )));
        assert!(h.w.is_stopped());
    }

    #[test]
    fn a_shutdown_cut_off_from_the_table_ends_with_the_window_of_its_last_write() {
        let mut h = holding(Config::kcl2());
        h.cut_off = true;
        h.handle(Input::ShutdownRequested);
        // The release, sent at 1 s, may still land: the lease is held until 10 s.
        h.run_until(9_900);
        assert!(!h.w.is_stopped());
        h.run_until(10_100);
        assert!(h.w.is_stopped());
        assert!(h.events().iter().any(|e| matches!(
            e,
            Event::LeaseReleased {
                reason: ReleaseReason::Lost,
                ..
            }
        )));
    }

    #[test]
    fn a_leader_releases_its_row_and_deletes_its_worker_row_before_it_stops() {
        let mut h = holding(Config::default());
        assert!(h.w.is_leader(h.now));
        h.handle(Input::ShutdownRequested);
        assert!(h.w.is_stopped());
        assert!(h
            .table
            .get(crate::lease::LEADER_KEY)
            .is_some_and(|row| !row.contains_key(crate::lease::attr::LEASE_OWNER)));
        assert!(h
            .table
            .keys()
            .all(|k| !k.starts_with(crate::lease::WORKER_KEY_PREFIX)));
    }

    #[test]
    fn a_leader_hands_leadership_over_when_its_shutdown_begins() {
        let mut h = holding(Config::default());
        assert!(h.w.is_leader(h.now));
        // A slow shutdown_requested: the lease is held for up to the shutdown timeout.
        h.processor_hangs = true;
        h.handle(Input::ShutdownRequested);
        h.run_until(2_000);
        assert!(!h.w.is_stopped());
        assert!(!h.w.is_leader(h.now), "no longer acting as leader");
        assert!(
            h.table
                .get(crate::lease::LEADER_KEY)
                .is_some_and(|row| !row.contains_key(crate::lease::attr::LEASE_OWNER)),
            "the leader row is free for a follower to claim at its next check"
        );
        h.run_until(40_000);
        assert!(h.w.is_stopped());
        let releases = h
            .writes(WriteKind::Leader)
            .iter()
            .filter(|w| {
                matches!(&w.action, crate::write::WriteAction::Update(u)
                    if u.contains(&crate::write::Update::Remove(crate::lease::attr::LEASE_OWNER)))
            })
            .count();
        assert_eq!(releases, 1, "released once, at the start");
    }
}
