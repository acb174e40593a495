//! The checkpoint requests of a processor session: checked when they are made, written one at
//! a time in the order they were made, each answered once.

use alloc::collections::VecDeque;

use crate::io::{CheckpointError, CheckpointTarget, ProcessorCall};
use crate::lease::{Lease, LeaseKey};
use crate::protocol::CheckpointKind;
use crate::sequence::{Position, RecordPosition};
use crate::worker::Ctx;

/// A checkpoint request accepted and waiting for its write.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct CheckpointJob {
    pub(crate) ticket: u64,
    pub(crate) position: Position,
    pub(crate) kind: CheckpointKind,
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

/// The checkpoint requests accepted and not yet written.
#[derive(Clone, Debug, Default)]
pub(crate) struct Checkpoints {
    jobs: VecDeque<CheckpointJob>,
}

impl Checkpoints {
    /// Accepts a checkpoint request (to be written before anything else), or answers it.
    pub(crate) fn request<R>(
        &mut self,
        ctx: &mut Ctx<R>,
        lease: &Lease,
        last_delivered: Option<&RecordPosition>,
        ticket: u64,
        ask: CheckpointAsk,
    ) {
        let answer = |ctx: &mut Ctx<R>, result: Result<(), CheckpointError>| {
            ctx.call(&lease.key, ProcessorCall::CheckpointDone { ticket, result });
        };
        let job = match ask {
            CheckpointAsk::CommitPrepared => match &lease.pending_checkpoint {
                Some(p) => CheckpointJob {
                    ticket,
                    position: p.clone(),
                    kind: CheckpointKind::Commit,
                },
                None => return answer(ctx, Err(CheckpointError::NothingPrepared)),
            },
            CheckpointAsk::Move { target, kind } => {
                let position = match target {
                    CheckpointTarget::LastDelivered => match last_delivered {
                        Some(p) => Position::Record(p.clone()),
                        None => return answer(ctx, Ok(())),
                    },
                    CheckpointTarget::At(p) => {
                        if last_delivered.is_none_or(|d| &p > d) {
                            return answer(ctx, Err(CheckpointError::BeyondDelivered));
                        }
                        Position::Record(p)
                    }
                };
                CheckpointJob {
                    ticket,
                    position,
                    kind,
                }
            }
        };
        if job.position < lease.checkpoint {
            return answer(ctx, Err(CheckpointError::Backwards));
        }
        if job.kind == CheckpointKind::Commit && job.position == lease.checkpoint {
            return answer(ctx, Ok(()));
        }
        self.jobs.push_back(job);
    }

    /// The checkpoint to write next.
    pub(crate) fn next(&self) -> Option<&CheckpointJob> {
        self.jobs.front()
    }

    /// `job`'s write landed: the lease row is as it left it, and the processor is told.
    pub(crate) fn landed<R>(&mut self, ctx: &mut Ctx<R>, lease: &mut Lease, job: &CheckpointJob) {
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
        ctx.call(
            &lease.key,
            ProcessorCall::CheckpointDone {
                ticket: job.ticket,
                result: Ok(()),
            },
        );
        self.jobs.pop_front();
    }

    /// The first waiting checkpoint's write failed; the processor may ask again.
    pub(crate) fn failed<R>(&mut self, ctx: &mut Ctx<R>, shard: &LeaseKey, throttled: bool) {
        if let Some(job) = self.jobs.pop_front() {
            let error = if throttled {
                CheckpointError::Throttled
            } else {
                CheckpointError::Failed
            };
            ctx.call(
                shard,
                ProcessorCall::CheckpointDone {
                    ticket: job.ticket,
                    result: Err(error),
                },
            );
        }
    }

    /// Every waiting request is refused with `error`.
    pub(crate) fn fail_all<R>(
        &mut self,
        ctx: &mut Ctx<R>,
        shard: &LeaseKey,
        error: CheckpointError,
    ) {
        for job in self.jobs.drain(..) {
            ctx.call(
                shard,
                ProcessorCall::CheckpointDone {
                    ticket: job.ticket,
                    result: Err(error.clone()),
                },
            );
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }
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

    #[test]
    fn requests_are_checked_queued_in_order_and_answered_once() {
        let mut ctx = Ctx::new(Config::default(), WorkerId::from("w1"), 7, Instant::ZERO);
        let mut lease = Lease::new(LeaseKey::from("shard-1"), Position::Record(at(3)));
        let mut c = Checkpoints::default();
        let delivered = at(8);
        let commit = |target| CheckpointAsk::Move {
            target,
            kind: CheckpointKind::Commit,
        };
        c.request(
            &mut ctx,
            &lease,
            None,
            1,
            commit(CheckpointTarget::LastDelivered),
        );
        c.request(
            &mut ctx,
            &lease,
            Some(&delivered),
            2,
            commit(CheckpointTarget::At(at(9))),
        );
        c.request(
            &mut ctx,
            &lease,
            Some(&delivered),
            3,
            commit(CheckpointTarget::At(at(2))),
        );
        c.request(
            &mut ctx,
            &lease,
            Some(&delivered),
            4,
            CheckpointAsk::CommitPrepared,
        );
        assert_eq!(
            answers(&mut ctx),
            [
                (1, Ok(())),
                (2, Err(CheckpointError::BeyondDelivered)),
                (3, Err(CheckpointError::Backwards)),
                (4, Err(CheckpointError::NothingPrepared)),
            ]
        );
        assert!(c.is_empty());
        c.request(
            &mut ctx,
            &lease,
            Some(&delivered),
            5,
            commit(CheckpointTarget::At(at(5))),
        );
        c.request(
            &mut ctx,
            &lease,
            Some(&delivered),
            6,
            commit(CheckpointTarget::LastDelivered),
        );
        c.request(
            &mut ctx,
            &lease,
            Some(&delivered),
            7,
            commit(CheckpointTarget::LastDelivered),
        );
        assert!(answers(&mut ctx).is_empty(), "queued, not answered");
        let first = c.next().cloned().expect("queued");
        assert_eq!(
            (first.ticket, first.position.clone()),
            (5, Position::Record(at(5)))
        );
        c.landed(&mut ctx, &mut lease, &first);
        assert_eq!(lease.checkpoint, Position::Record(at(5)));
        assert_eq!(c.next().map(|j| j.ticket), Some(6), "in the order asked");
        c.failed(&mut ctx, &lease.key, true);
        c.fail_all(&mut ctx, &lease.key, CheckpointError::LeaseLost);
        assert_eq!(
            answers(&mut ctx),
            [
                (5, Ok(())),
                (6, Err(CheckpointError::Throttled)),
                (7, Err(CheckpointError::LeaseLost)),
            ]
        );
        assert!(c.is_empty());
    }
}
