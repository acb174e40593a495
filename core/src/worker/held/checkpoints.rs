//! The checkpoint requests of a processor session, each answered once, written one at a time in
//! the order they were made.
//!
//! The invariant kept here: **the checkpoint never moves backwards**, whatever the order of
//! requests and answers. A position is checked against the lease when its write is about to be
//! sent, not when it is asked for, because what is ahead of it in the queue may move the
//! checkpoint first; a commit of the prepared checkpoint takes the prepared position of that
//! moment. A write whose answer was a timeout or a 5xx may have landed, so it is sent again (or
//! the tenure verifies it by a read) before anything behind it: nothing is checked against a
//! checkpoint the table may already have left behind, and the processor's answer is the truth
//! (see [`CheckpointError::OutcomeUnknown`] for the one case where it cannot be known).

use alloc::collections::VecDeque;

use crate::io::{CheckpointError, CheckpointTarget, ProcessorCall};
use crate::lease::{Lease, LeaseKey};
use crate::protocol::CheckpointKind;
use crate::sequence::{Position, RecordPosition};
use crate::worker::Ctx;

/// A checkpoint write: what is sent, and the request it answers.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct CheckpointJob {
    pub(crate) ticket: u64,
    pub(crate) position: Position,
    pub(crate) kind: CheckpointKind,
}

impl CheckpointJob {
    /// Whether `row` is as this write leaves it.
    pub(crate) fn shown_by(&self, row: &Lease) -> bool {
        match &self.kind {
            CheckpointKind::Commit => row.checkpoint == self.position,
            CheckpointKind::Prepare { state } => {
                row.pending_checkpoint.as_ref() == Some(&self.position)
                    && row.pending_checkpoint_state == *state
            }
        }
    }
}

/// What the processor asked for.
#[derive(Clone, Debug)]
pub(crate) enum CheckpointAsk {
    Move {
        target: CheckpointTarget,
        kind: CheckpointKind,
    },
    CommitPrepared,
}

/// A request accepted and not yet answered.
#[derive(Clone, Debug)]
struct Request {
    ticket: u64,
    ask: Asked,
    sent: Sent,
}

/// A request with its target resolved where it must be: a record position when it is made (the
/// last delivered one is that of the moment), the prepared position when it is written.
#[derive(Clone, Debug)]
enum Asked {
    Move {
        position: Position,
        kind: CheckpointKind,
    },
    CommitPrepared,
}

/// How far a request's write got. Only the first request is ever sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sent {
    /// Not sent, or sent and refused: it has not landed.
    No,
    /// Its write is in flight, and no earlier send of it may have landed.
    InFlight,
    /// A send of it had an unknown outcome: it may have landed. It is sent again (or verified)
    /// until the outcome is known.
    MaybeLanded,
}

/// The checkpoint requests accepted and not yet answered.
#[derive(Clone, Debug, Default)]
pub(crate) struct Checkpoints {
    requests: VecDeque<Request>,
}

impl Checkpoints {
    /// Accepts a checkpoint request (to be written before anything else), or answers it when it
    /// can be judged now: a target beyond what was delivered, or nothing delivered to commit.
    pub(crate) fn request<R>(
        &mut self,
        ctx: &mut Ctx<R>,
        shard: &LeaseKey,
        last_delivered: Option<&RecordPosition>,
        ticket: u64,
        ask: CheckpointAsk,
    ) {
        let ask = match ask {
            CheckpointAsk::CommitPrepared => Asked::CommitPrepared,
            CheckpointAsk::Move { target, kind } => {
                let position = match target {
                    CheckpointTarget::LastDelivered => match last_delivered {
                        Some(p) => p.clone(),
                        None => return answer(ctx, shard, ticket, Ok(())),
                    },
                    CheckpointTarget::At(p) => {
                        if last_delivered.is_none_or(|d| &p > d) {
                            return answer(
                                ctx,
                                shard,
                                ticket,
                                Err(CheckpointError::BeyondDelivered),
                            );
                        }
                        p
                    }
                };
                Asked::Move {
                    position: Position::Record(position),
                    kind,
                }
            }
        };
        self.requests.push_back(Request {
            ticket,
            ask,
            sent: Sent::No,
        });
    }

    /// The checkpoint to write next, marked as sent. Requests that the lease as it is now makes
    /// moot are answered on the way: one behind the checkpoint (`Backwards`), a commit of what
    /// is committed already (done), a commit with nothing prepared.
    pub(crate) fn next_write<R>(
        &mut self,
        ctx: &mut Ctx<R>,
        lease: &Lease,
    ) -> Option<CheckpointJob> {
        while let Some(first) = self.requests.front_mut() {
            let ticket = first.ticket;
            let (position, kind) = match &first.ask {
                Asked::Move { position, kind } => (position.clone(), kind.clone()),
                Asked::CommitPrepared => match &lease.pending_checkpoint {
                    Some(p) => (p.clone(), CheckpointKind::Commit),
                    None => {
                        self.requests.pop_front();
                        answer(
                            ctx,
                            &lease.key,
                            ticket,
                            Err(CheckpointError::NothingPrepared),
                        );
                        continue;
                    }
                },
            };
            let verdict = if position < lease.checkpoint {
                Some(Err(CheckpointError::Backwards))
            } else if kind == CheckpointKind::Commit && position == lease.checkpoint {
                Some(Ok(()))
            } else {
                None
            };
            if let Some(result) = verdict {
                debug_assert_ne!(first.sent, Sent::InFlight, "one checkpoint write at a time");
                self.requests.pop_front();
                answer(ctx, &lease.key, ticket, result);
                continue;
            }
            // A resend writes what the first send wrote.
            first.ask = Asked::Move {
                position: position.clone(),
                kind: kind.clone(),
            };
            if first.sent == Sent::No {
                first.sent = Sent::InFlight;
            }
            return Some(CheckpointJob {
                ticket,
                position,
                kind,
            });
        }
        None
    }

    /// `job`'s write landed: the lease row is as it left it, and the processor is told.
    pub(crate) fn landed<R>(&mut self, ctx: &mut Ctx<R>, lease: &mut Lease, job: &CheckpointJob) {
        if self.requests.front().map(|r| r.ticket) != Some(job.ticket) {
            debug_assert!(false, "a checkpoint landed that was not the first request");
            return;
        }
        self.requests.pop_front();
        match &job.kind {
            CheckpointKind::Prepare { state } => {
                lease.pending_checkpoint = Some(job.position.clone());
                lease.pending_checkpoint_state = state.clone();
            }
            CheckpointKind::Commit => {
                lease.checkpoint = job.position.clone();
                lease.pending_checkpoint = None;
                lease.pending_checkpoint_state = None;
                lease.owner_switches_since_checkpoint = 0;
                ctx.stats.checkpoints += 1;
            }
        }
        answer(ctx, &lease.key, job.ticket, Ok(()));
    }

    /// The write sent last failed. A throttled one did not land: unless an earlier send of it
    /// may have, the processor is told. Any other failure may have landed: it is sent again.
    pub(crate) fn failed<R>(&mut self, ctx: &mut Ctx<R>, shard: &LeaseKey, throttled: bool) {
        let Some(first) = self.requests.front_mut() else {
            return;
        };
        match (first.sent, throttled) {
            (Sent::InFlight, true) => {
                let ticket = first.ticket;
                self.requests.pop_front();
                answer(ctx, shard, ticket, Err(CheckpointError::Throttled));
            }
            (Sent::No, _) => {}
            _ => first.sent = Sent::MaybeLanded,
        }
    }

    /// The write sent last was refused by its condition: it did not land (the lease is being
    /// lost, unless an earlier send of it explains the refusal).
    pub(crate) fn refused(&mut self) {
        if let Some(first) = self.requests.front_mut() {
            if first.sent == Sent::InFlight {
                first.sent = Sent::No;
            }
        }
    }

    /// The processor is gone while the lease is still held: requests not sent are refused with
    /// `error`; one sent is answered by its outcome, as any other.
    pub(crate) fn refuse_unsent<R>(
        &mut self,
        ctx: &mut Ctx<R>,
        shard: &LeaseKey,
        error: CheckpointError,
    ) {
        let keep = usize::from(self.requests.front().is_some_and(|r| r.sent != Sent::No));
        for r in self.requests.drain(keep..) {
            answer(ctx, shard, r.ticket, Err(error.clone()));
        }
    }

    /// The lease is no longer held: every request is answered, `LeaseLost` if its write never
    /// landed, `OutcomeUnknown` if it may have.
    pub(crate) fn end<R>(&mut self, ctx: &mut Ctx<R>, shard: &LeaseKey) {
        for r in self.requests.drain(..) {
            let error = match r.sent {
                Sent::No => CheckpointError::LeaseLost,
                Sent::InFlight | Sent::MaybeLanded => CheckpointError::OutcomeUnknown,
            };
            answer(ctx, shard, r.ticket, Err(error));
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }

    /// Whether a request waits that was never sent.
    pub(crate) fn has_unsent(&self) -> bool {
        self.requests.iter().any(|r| r.sent == Sent::No)
    }
}

fn answer<R>(ctx: &mut Ctx<R>, shard: &LeaseKey, ticket: u64, result: Result<(), CheckpointError>) {
    ctx.call(shard, ProcessorCall::CheckpointDone { ticket, result });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::io::{BasicRecord, Command};
    use crate::lease::WorkerId;
    use crate::sequence::SequenceNumber;
    use crate::time::Instant;
    use alloc::vec::Vec;

    fn at(n: u64) -> RecordPosition {
        RecordPosition::new(SequenceNumber::parse(&alloc::format!("{n}")).expect("digits"))
    }

    fn answers(ctx: &mut Ctx<BasicRecord>) -> Vec<(u64, Result<(), CheckpointError>)> {
        ctx.out
            .drain(..)
            .filter_map(|c| match c {
                Command::Processor {
                    action: ProcessorCall::CheckpointDone { ticket, result },
                    ..
                } => Some((ticket, result)),
                _ => None,
            })
            .collect()
    }

    fn commit(target: CheckpointTarget) -> CheckpointAsk {
        CheckpointAsk::Move {
            target,
            kind: CheckpointKind::Commit,
        }
    }

    fn setup() -> (Ctx<BasicRecord>, Lease, Checkpoints) {
        let ctx = Ctx::new(Config::default(), WorkerId::from("w1"), 7, Instant::ZERO);
        let lease = Lease::new(LeaseKey::from("shard-1"), Position::Record(at(3)));
        (ctx, lease, Checkpoints::default())
    }

    #[test]
    fn requests_are_judged_when_written_in_the_order_asked_and_answered_once() {
        let (mut ctx, mut lease, mut c) = setup();
        let key = lease.key.clone();
        let delivered = at(8);
        c.request(
            &mut ctx,
            &key,
            None,
            1,
            commit(CheckpointTarget::LastDelivered),
        );
        c.request(
            &mut ctx,
            &key,
            Some(&delivered),
            2,
            commit(CheckpointTarget::At(at(9))),
        );
        assert_eq!(
            answers(&mut ctx),
            [(1, Ok(())), (2, Err(CheckpointError::BeyondDelivered))],
            "what the request alone decides is answered at once"
        );
        for (ticket, n) in [(3, 6), (4, 5), (5, 6), (6, 8)] {
            c.request(
                &mut ctx,
                &key,
                Some(&delivered),
                ticket,
                commit(CheckpointTarget::At(at(n))),
            );
        }
        c.request(
            &mut ctx,
            &key,
            Some(&delivered),
            7,
            CheckpointAsk::CommitPrepared,
        );
        assert!(answers(&mut ctx).is_empty(), "queued, not answered");
        let first = c.next_write(&mut ctx, &lease).expect("queued");
        assert_eq!(
            (first.ticket, &first.position),
            (3, &Position::Record(at(6)))
        );
        c.landed(&mut ctx, &mut lease, &first);
        assert_eq!(lease.checkpoint, Position::Record(at(6)));
        let next = c.next_write(&mut ctx, &lease).expect("queued");
        assert_eq!(
            next.ticket, 6,
            "5 is behind the checkpoint, 6 the checkpoint itself"
        );
        c.landed(&mut ctx, &mut lease, &next);
        assert_eq!(c.next_write(&mut ctx, &lease), None);
        assert_eq!(
            answers(&mut ctx),
            [
                (3, Ok(())),
                (4, Err(CheckpointError::Backwards)),
                (5, Ok(())),
                (6, Ok(())),
                (7, Err(CheckpointError::NothingPrepared)),
            ]
        );
        assert!(c.is_empty());
    }

    #[test]
    fn a_write_of_unknown_outcome_is_sent_again_before_anything_behind_it() {
        let (mut ctx, mut lease, mut c) = setup();
        let key = lease.key.clone();
        let delivered = at(8);
        c.request(
            &mut ctx,
            &key,
            Some(&delivered),
            1,
            commit(CheckpointTarget::At(at(8))),
        );
        c.request(
            &mut ctx,
            &key,
            Some(&delivered),
            2,
            commit(CheckpointTarget::At(at(5))),
        );
        let first = c.next_write(&mut ctx, &lease).expect("queued");
        c.failed(&mut ctx, &key, false);
        assert!(
            answers(&mut ctx).is_empty(),
            "it may have landed: not answered"
        );
        let again = c.next_write(&mut ctx, &lease).expect("queued");
        assert_eq!(again, first);
        c.failed(&mut ctx, &key, true);
        assert!(
            answers(&mut ctx).is_empty(),
            "a throttled resend says nothing of the first send"
        );
        c.refused();
        let verified = c.next_write(&mut ctx, &lease).expect("queued");
        let mut row = lease.clone();
        row.checkpoint = Position::Record(at(8));
        assert!(verified.shown_by(&row));
        c.landed(&mut ctx, &mut lease, &verified);
        assert_eq!(c.next_write(&mut ctx, &lease), None);
        assert_eq!(
            answers(&mut ctx),
            [(1, Ok(())), (2, Err(CheckpointError::Backwards))]
        );
    }

    #[test]
    fn at_the_end_each_request_says_whether_it_may_have_landed() {
        let (mut ctx, lease, mut c) = setup();
        let key = lease.key.clone();
        let delivered = at(8);
        for ticket in 1..=3 {
            c.request(
                &mut ctx,
                &key,
                Some(&delivered),
                ticket,
                commit(CheckpointTarget::At(at(8))),
            );
        }
        c.next_write(&mut ctx, &lease).expect("queued");
        c.refuse_unsent(&mut ctx, &key, CheckpointError::LeaseLost);
        assert_eq!(
            answers(&mut ctx),
            [
                (2, Err(CheckpointError::LeaseLost)),
                (3, Err(CheckpointError::LeaseLost))
            ],
            "the one in flight is answered by its outcome"
        );
        assert!(!c.is_empty() && !c.has_unsent());
        c.end(&mut ctx, &key);
        assert_eq!(
            answers(&mut ctx),
            [(1, Err(CheckpointError::OutcomeUnknown))]
        );
        c.request(
            &mut ctx,
            &key,
            Some(&delivered),
            4,
            commit(CheckpointTarget::At(at(8))),
        );
        c.next_write(&mut ctx, &lease).expect("queued");
        c.refused();
        c.end(&mut ctx, &key);
        assert_eq!(
            answers(&mut ctx),
            [(4, Err(CheckpointError::LeaseLost))],
            "refused by its condition: it did not land"
        );
    }

    #[test]
    fn a_prepared_checkpoint_is_shown_by_the_row_with_its_state() {
        let (_, mut row, _) = setup();
        let job = CheckpointJob {
            ticket: 1,
            position: Position::Record(at(5)),
            kind: CheckpointKind::Prepare {
                state: Some(alloc::vec![1]),
            },
        };
        assert!(!job.shown_by(&row));
        row.pending_checkpoint = Some(Position::Record(at(5)));
        assert!(!job.shown_by(&row), "without its state");
        row.pending_checkpoint_state = Some(alloc::vec![1]);
        assert!(job.shown_by(&row));
    }
}
