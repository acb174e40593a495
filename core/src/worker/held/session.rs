//! The processor session of a held lease: where the shard's processing stands, the processor
//! call in flight, leaving the lease, and the checkpoint requests waiting to be written.
//!
//! One [`Phase`] follows the shard from its parents to its end; a processor call is part of the
//! phase it runs in. Leaving (a handoff, a shutdown, a failed processor) does not stop the
//! phase's bookkeeping (answers still arrive), but once leaving starts, the session makes no call
//! but `shutdown_requested`, and then none at all.

use alloc::vec::Vec;

use crate::io::{
    CallId, CheckpointError, ChildShard, FencingToken, ProcessorCall, Record, ReleaseReason,
};
use crate::lease::{Lease, LeaseKey, WorkerId};
use crate::sequence::RecordPosition;
use crate::worker::Ctx;

use super::checkpoints::{CheckpointAsk, Checkpoints};
use super::tenure::Leave;

/// Where the shard's processing stands.
#[derive(Clone, Debug, PartialEq)]
enum Phase {
    /// The lease was finished when it was acquired: nothing to process, it is given up again.
    AlreadyFinished,
    /// Waiting for every parent lease to be finished: `reading` answers outstanding, `blocked`
    /// once one parent was not.
    AwaitingParents { reading: usize, blocked: bool },
    /// `initialize` is due, or running (`Some`).
    Initializing(Option<CallId>),
    /// Initialized; the reader gets its first shard iterator.
    Starting,
    /// Records are read and delivered; `Some` while the processor has a batch.
    Running(Option<CallId>),
    /// The shard's end was read: the leases of its split children are being created.
    CreatingChildren {
        children: Vec<ChildShard>,
        outstanding: usize,
        failed: bool,
    },
    /// `shard_ended` is due, or running (`Some`).
    EndingShard {
        children: Vec<ChildShard>,
        call: Option<CallId>,
    },
    /// `shard_ended` returned: `SHARD_END` is to be written.
    Finished { children: Vec<ChildShard> },
}

/// Why the lease is being left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exit {
    Handoff,
    Shutdown,
    ProcessorFailed,
}

/// The processor while the lease is being left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Farewell {
    /// Not told yet: the phase says what it is doing.
    Untold,
    /// `shutdown_requested` is running.
    Asked(CallId),
    /// `shutdown_requested` returned.
    Returned,
    /// Told the lease is lost (or it failed): it gets no more calls. `running` is the call it
    /// was told during, until that call returns: the lease is not left before, since another
    /// owner would process records while this one still does. A call that never returns holds
    /// the lease until its window closes, and it expires for the others.
    Abandoned { running: Option<CallId> },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Leaving {
    why: Exit,
    processor: Farewell,
}

/// The processor, as far as the lease's writes care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Processor {
    NotStarted,
    Busy(CallId),
    Idle,
    Abandoned,
}

/// What the session needs done next (see [`super::HeldLease::step`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    Wait,
    Initialize,
    StartReading,
    /// Read on; `idle` when the processor can take a batch.
    Read {
        idle: bool,
    },
    EndShard,
}

/// A processor's return, as it concerns the rest of the lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Returned {
    /// Not the call in flight: ignored.
    Stale,
    /// The processor failed: the lease is to be released.
    Failed,
    /// `initialize` returned: reading may start.
    Initialized,
    Other,
}

/// The answers to a parent's read, as they come in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ParentsRead {
    Waiting,
    /// Every answer is in and one parent is not finished: read them again later.
    Blocked,
    Done,
}

pub(crate) struct ProcessorSession {
    phase: Phase,
    leaving: Option<Leaving>,
    pub(crate) checkpoints: Checkpoints,
    last_delivered: Option<RecordPosition>,
}

impl ProcessorSession {
    /// A session for a lease just acquired; unless `finished`, it starts by waiting for parents
    /// ([`ProcessorSession::await_parents`]).
    pub(crate) fn new(finished: bool) -> Self {
        Self {
            phase: if finished {
                Phase::AlreadyFinished
            } else {
                Phase::AwaitingParents {
                    reading: 0,
                    blocked: false,
                }
            },
            leaving: None,
            checkpoints: Checkpoints::default(),
            last_delivered: None,
        }
    }

    fn processor(&self) -> Processor {
        match self.leaving.map(|l| l.processor) {
            Some(Farewell::Asked(call)) => return Processor::Busy(call),
            Some(Farewell::Returned) => return Processor::Idle,
            Some(Farewell::Abandoned { .. }) => return Processor::Abandoned,
            Some(Farewell::Untold) | None => {}
        }
        match &self.phase {
            Phase::AlreadyFinished | Phase::AwaitingParents { .. } | Phase::Initializing(None) => {
                Processor::NotStarted
            }
            Phase::Initializing(Some(call))
            | Phase::Running(Some(call))
            | Phase::EndingShard {
                call: Some(call), ..
            } => Processor::Busy(*call),
            Phase::Starting
            | Phase::Running(None)
            | Phase::CreatingChildren { .. }
            | Phase::EndingShard { call: None, .. }
            | Phase::Finished { .. } => Processor::Idle,
        }
    }

    pub(crate) fn is_leaving(&self) -> bool {
        self.leaving.is_some()
    }

    pub(crate) fn exit(&self) -> Option<Exit> {
        self.leaving.map(|l| l.why)
    }

    pub(crate) fn is_abandoned(&self) -> bool {
        self.processor() == Processor::Abandoned
    }

    /// Whether an abandoned processor's call still runs (the lease renews no more meanwhile).
    pub(crate) fn abandoned_call_running(&self) -> bool {
        matches!(
            self.leaving,
            Some(Leaving {
                processor: Farewell::Abandoned { running: Some(_) },
                ..
            })
        )
    }

    /// Worker liveness: the lease's window closed while an abandoned call ran, so the driver
    /// cancelled it: the lease is left as if it had returned.
    pub(crate) fn abandoned_call_outlived(&mut self) {
        if let Some(
            leaving @ Leaving {
                processor: Farewell::Abandoned { .. },
                ..
            },
        ) = &mut self.leaving
        {
            leaving.processor = Farewell::Abandoned { running: None };
        }
    }

    pub(crate) fn last_delivered(&self) -> Option<&RecordPosition> {
        self.last_delivered.as_ref()
    }

    /// What to do next, while not leaving.
    pub(crate) fn step(&self) -> Step {
        match &self.phase {
            Phase::Initializing(None) => Step::Initialize,
            Phase::Starting => Step::StartReading,
            Phase::Running(call) => Step::Read {
                idle: call.is_none(),
            },
            Phase::EndingShard { call: None, .. } => Step::EndShard,
            _ => Step::Wait,
        }
    }

    // ---- the shard's phases --------------------------------------------------------------

    /// The parents' leases are read (`parents` of them); with none, the shard starts at once.
    pub(crate) fn await_parents(&mut self, parents: usize) {
        self.phase = if parents == 0 {
            Phase::Initializing(None)
        } else {
            Phase::AwaitingParents {
                reading: parents,
                blocked: false,
            }
        };
    }

    pub(crate) fn parent_read(&mut self, finished: bool) -> ParentsRead {
        let Phase::AwaitingParents { reading, blocked } = &mut self.phase else {
            return ParentsRead::Waiting;
        };
        *reading = reading.saturating_sub(1);
        *blocked |= !finished;
        if *reading > 0 {
            return ParentsRead::Waiting;
        }
        if *blocked {
            return ParentsRead::Blocked;
        }
        self.phase = Phase::Initializing(None);
        ParentsRead::Done
    }

    pub(crate) fn initialize<R>(&mut self, ctx: &mut Ctx<R>, lease: &Lease, token: FencingToken) {
        debug_assert_eq!(self.phase, Phase::Initializing(None));
        let call = ctx.call(
            &lease.key,
            ProcessorCall::Initialize {
                checkpoint: lease.checkpoint.clone(),
                pending_checkpoint: lease.pending_checkpoint.clone(),
                pending_state: lease.pending_checkpoint_state.clone(),
                token,
            },
        );
        self.phase = Phase::Initializing(Some(call));
    }

    /// Hands a batch to the processor; returns its size in bytes.
    pub(crate) fn deliver<R: Record>(
        &mut self,
        ctx: &mut Ctx<R>,
        shard: &LeaseKey,
        token: FencingToken,
        records: Vec<R>,
        millis_behind_latest: u64,
    ) -> u64 {
        debug_assert_eq!(self.phase, Phase::Running(None));
        if let Some(last) = records.last() {
            self.last_delivered = Some(last.position().clone());
        }
        let bytes: usize = records.iter().map(Record::size_bytes).sum();
        ctx.stats.batches_delivered += 1;
        ctx.stats.records_delivered += records.len() as u64;
        let call = ctx.call(
            shard,
            ProcessorCall::ProcessRecords {
                records,
                millis_behind_latest,
                token,
            },
        );
        self.phase = Phase::Running(Some(call));
        bytes as u64
    }

    /// The reader got its first iterator.
    pub(crate) fn reading(&mut self) {
        if self.phase == Phase::Starting {
            self.phase = Phase::Running(None);
        }
    }

    /// The shard's end was reached with `children`, `creating` of which are being created now.
    pub(crate) fn shard_end(&mut self, children: Vec<ChildShard>, creating: usize) {
        self.phase = if creating == 0 {
            Phase::EndingShard {
                children,
                call: None,
            }
        } else {
            Phase::CreatingChildren {
                children,
                outstanding: creating,
                failed: false,
            }
        };
    }

    /// A child's lease was created (or existed already), or not (`ok` false). Once every answer
    /// is in and one failed, the children are handed back to be tried again: children must exist
    /// before the parent is finished, or a later shard sync could start them at the initial
    /// position.
    pub(crate) fn child_created(&mut self, ok: bool) -> Option<Vec<ChildShard>> {
        let Phase::CreatingChildren {
            children,
            outstanding,
            failed,
        } = &mut self.phase
        else {
            return None;
        };
        *outstanding = outstanding.saturating_sub(1);
        *failed |= !ok;
        if *outstanding > 0 {
            return None;
        }
        let children = core::mem::take(children);
        if *failed {
            self.phase = Phase::Running(None);
            Some(children)
        } else {
            self.phase = Phase::EndingShard {
                children,
                call: None,
            };
            None
        }
    }

    pub(crate) fn end_shard<R>(&mut self, ctx: &mut Ctx<R>, shard: &LeaseKey, token: FencingToken) {
        if let Phase::EndingShard { call, .. } = &mut self.phase {
            *call = Some(ctx.call(shard, ProcessorCall::ShardEnded { token }));
        }
    }

    /// The children `SHARD_END` records.
    pub(crate) fn children(&self) -> &[ChildShard] {
        match &self.phase {
            Phase::CreatingChildren { children, .. }
            | Phase::EndingShard { children, .. }
            | Phase::Finished { children } => children,
            _ => &[],
        }
    }

    // ---- the processor's answers ---------------------------------------------------------

    pub(crate) fn processor_returned<R>(
        &mut self,
        ctx: &mut Ctx<R>,
        shard: &LeaseKey,
        call: CallId,
        failed: bool,
    ) -> Returned {
        if let Some(Leaving {
            processor: Farewell::Abandoned { running },
            ..
        }) = &mut self.leaving
        {
            if *running == Some(call) {
                *running = None;
                return Returned::Other;
            }
        }
        if self.processor() != Processor::Busy(call) {
            ctx.stats.stale_processor_inputs += 1;
            return Returned::Stale;
        }
        if failed {
            self.leaving = Some(Leaving {
                why: Exit::ProcessorFailed,
                processor: Farewell::Abandoned { running: None },
            });
            self.checkpoints
                .refuse_unsent(ctx, shard, CheckpointError::LeaseLost);
            return Returned::Failed;
        }
        if let Some(leaving) = &mut self.leaving {
            if leaving.processor == Farewell::Asked(call) {
                leaving.processor = Farewell::Returned;
                return Returned::Other;
            }
        }
        match &mut self.phase {
            Phase::Initializing(_) => {
                self.phase = Phase::Starting;
                Returned::Initialized
            }
            Phase::Running(busy) => {
                *busy = None;
                Returned::Other
            }
            Phase::EndingShard { children, .. } => {
                self.phase = Phase::Finished {
                    children: core::mem::take(children),
                };
                Returned::Other
            }
            _ => Returned::Other,
        }
    }

    // ---- leaving ---------------------------------------------------------------------------

    /// Starts leaving; false when it already is.
    pub(crate) fn begin_leaving(&mut self, why: Exit) -> bool {
        if self.leaving.is_some() {
            return false;
        }
        self.leaving = Some(Leaving {
            why,
            processor: Farewell::Untold,
        });
        true
    }

    /// Asks an idle processor to shut down (it may still checkpoint), once; never one that was
    /// told its shard ended (the shard's end outranks leaving, see [`Self::last_write`]).
    pub(crate) fn ask_to_shut_down<R>(
        &mut self,
        ctx: &mut Ctx<R>,
        shard: &LeaseKey,
        token: FencingToken,
    ) {
        let idle = self.processor() == Processor::Idle && !self.shard_ended();
        if let Some(leaving) = &mut self.leaving {
            if idle
                && leaving.processor == Farewell::Untold
                && matches!(leaving.why, Exit::Handoff | Exit::Shutdown)
            {
                let call = ctx.call(shard, ProcessorCall::ShutdownRequested { token });
                leaving.processor = Farewell::Asked(call);
            }
        }
    }

    /// Leaving took too long: a processor still busy is told the lease is lost, and the lease
    /// is left once its call returns, or expires if it never does (see [`Farewell::Abandoned`]).
    pub(crate) fn give_up_waiting<R>(&mut self, ctx: &mut Ctx<R>, shard: &LeaseKey) {
        if let (Some(leaving), Processor::Busy(call)) = (self.leaving, self.processor()) {
            ctx.call(shard, ProcessorCall::LeaseLost);
            self.leaving = Some(Leaving {
                processor: Farewell::Abandoned {
                    running: Some(call),
                },
                ..leaving
            });
            self.checkpoints
                .refuse_unsent(ctx, shard, CheckpointError::LeaseLost);
        }
    }

    /// The lease is lost: a processor that started is told, waiting requests are answered. The
    /// session ends with the lease.
    pub(crate) fn lose<R>(&mut self, ctx: &mut Ctx<R>, shard: &LeaseKey) {
        if matches!(self.processor(), Processor::Busy(_) | Processor::Idle) {
            ctx.call(shard, ProcessorCall::LeaseLost);
        }
        self.checkpoints.end(ctx, shard);
    }

    /// Whether the processor's `shard_ended` returned.
    fn shard_ended(&self) -> bool {
        matches!(self.phase, Phase::Finished { .. })
    }

    /// The last write the lease is ready for, if any: none while checkpoints wait or the
    /// processor has not finished. Once `shard_ended` has returned, the shard's end is written
    /// whatever else asked the lease to leave (a handoff, a shutdown): the processor was told the
    /// shard ended, and no later owner may be told it again.
    pub(crate) fn last_write(
        &self,
        me: &WorkerId,
        checkpoint_owner: Option<&WorkerId>,
    ) -> Option<Leave> {
        if !self.checkpoints.is_empty() {
            return None;
        }
        if self.shard_ended() {
            return Some(Leave::FinishShard);
        }
        let Some(leaving) = self.leaving else {
            return matches!(self.phase, Phase::Finished { .. } | Phase::AlreadyFinished)
                .then_some(Leave::FinishShard);
        };
        let processor_done = match self.processor() {
            Processor::NotStarted => true,
            Processor::Abandoned => !self.abandoned_call_running(),
            Processor::Idle => {
                leaving.processor == Farewell::Returned || leaving.why == Exit::ProcessorFailed
            }
            Processor::Busy(_) => false,
        };
        // A lease handed over (this worker is its checkpoint owner) goes to the receiver,
        // whatever the reason to leave: a release would take it from the receiver too.
        let handed_over = checkpoint_owner == Some(me);
        match leaving.why {
            Exit::ProcessorFailed if handed_over => Some(Leave::CompleteHandoff),
            Exit::ProcessorFailed => Some(Leave::Release(ReleaseReason::ProcessorFailed)),
            Exit::Handoff if processor_done => Some(Leave::CompleteHandoff),
            Exit::Shutdown if processor_done => Some(if handed_over {
                Leave::CompleteHandoff
            } else {
                Leave::Release(ReleaseReason::Shutdown)
            }),
            Exit::Handoff | Exit::Shutdown => None,
        }
    }

    // ---- checkpoints ---------------------------------------------------------------------

    /// Accepts a checkpoint request (to be written before anything else), or answers it: a
    /// processor that was abandoned may not checkpoint any more.
    pub(crate) fn checkpoint_requested<R>(
        &mut self,
        ctx: &mut Ctx<R>,
        lease: &Lease,
        ticket: u64,
        ask: CheckpointAsk,
    ) {
        if self.is_abandoned() {
            ctx.call(
                &lease.key,
                ProcessorCall::CheckpointDone {
                    ticket,
                    result: Err(CheckpointError::LeaseLost),
                },
            );
            return;
        }
        self.checkpoints
            .request(ctx, &lease.key, self.last_delivered.as_ref(), ticket, ask);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::io::CheckpointTarget;
    use crate::io::{BasicRecord, Command};
    use crate::protocol::CheckpointKind;
    use crate::sequence::Position;
    use crate::sequence::SequenceNumber;
    use crate::time::Instant;
    use alloc::string::String;
    use alloc::vec;

    fn ctx() -> Ctx<BasicRecord> {
        Ctx::new(Config::default(), WorkerId::from("w1"), 7, Instant::ZERO)
    }

    fn shard() -> LeaseKey {
        LeaseKey::from("shard-1")
    }

    fn at(n: u64) -> RecordPosition {
        RecordPosition::new(SequenceNumber::parse(&alloc::format!("{n}")).expect("digits"))
    }

    fn record(n: u64) -> BasicRecord {
        BasicRecord {
            position: at(n),
            partition_key: String::from("k"),
            data: vec![0; 10],
        }
    }

    /// The processor calls issued since the last look, with their call ids.
    fn calls(ctx: &mut Ctx<BasicRecord>) -> Vec<(CallId, ProcessorCall<BasicRecord>)> {
        ctx.out
            .drain(..)
            .filter_map(|c| match c {
                Command::Processor { call, action, .. } => Some((call, action)),
                _ => None,
            })
            .collect()
    }

    fn only_call(ctx: &mut Ctx<BasicRecord>) -> CallId {
        let calls = calls(ctx);
        assert_eq!(calls.len(), 1, "{calls:?}");
        calls[0].0
    }

    fn answers(ctx: &mut Ctx<BasicRecord>) -> Vec<Result<(), CheckpointError>> {
        calls(ctx)
            .into_iter()
            .filter_map(|(_, a)| match a {
                ProcessorCall::CheckpointDone { result, .. } => Some(result),
                _ => None,
            })
            .collect()
    }

    /// A session past `initialize`, with the reader started.
    fn running(ctx: &mut Ctx<BasicRecord>, lease: &Lease) -> ProcessorSession {
        let mut s = ProcessorSession::new(false);
        s.await_parents(0);
        assert_eq!(s.step(), Step::Initialize);
        s.initialize(ctx, lease, FencingToken(1));
        let init = only_call(ctx);
        assert_eq!(
            s.processor_returned(ctx, &shard(), init, false),
            Returned::Initialized
        );
        s.reading();
        s
    }

    fn deliver(ctx: &mut Ctx<BasicRecord>, s: &mut ProcessorSession, n: u64) -> CallId {
        s.deliver(ctx, &shard(), FencingToken(1), vec![record(n)], 0);
        only_call(ctx)
    }

    #[test]
    fn a_shard_goes_from_its_parents_to_its_end() {
        let mut ctx = ctx();
        let lease = Lease::new(shard(), Position::TrimHorizon);
        let mut s = ProcessorSession::new(false);
        s.await_parents(2);
        assert_eq!(s.parent_read(true), ParentsRead::Waiting);
        assert_eq!(s.parent_read(false), ParentsRead::Blocked);
        assert_eq!(s.step(), Step::Wait, "blocked until read again");
        s.await_parents(2);
        assert_eq!(s.parent_read(true), ParentsRead::Waiting);
        assert_eq!(s.parent_read(true), ParentsRead::Done);
        assert_eq!(s.step(), Step::Initialize);
        s.initialize(&mut ctx, &lease, FencingToken(1));
        let init = only_call(&mut ctx);
        assert_eq!(s.step(), Step::Wait);
        assert_eq!(
            s.processor_returned(&mut ctx, &shard(), CallId(99), false),
            Returned::Stale
        );
        assert_eq!(ctx.stats.stale_processor_inputs, 1);
        assert_eq!(
            s.processor_returned(&mut ctx, &shard(), init, false),
            Returned::Initialized
        );
        assert_eq!(s.step(), Step::StartReading);
        s.reading();
        assert_eq!(s.step(), Step::Read { idle: true });
        let batch = deliver(&mut ctx, &mut s, 5);
        assert_eq!(s.step(), Step::Read { idle: false });
        assert_eq!(s.last_delivered(), Some(&at(5)));
        s.processor_returned(&mut ctx, &shard(), batch, false);
        let children = vec![ChildShard {
            shard_id: LeaseKey::from("shard-2"),
            parents: vec![shard()],
            hash_range: None,
        }];
        s.shard_end(children.clone(), 1);
        assert_eq!(s.step(), Step::Wait);
        assert_eq!(
            s.child_created(false),
            Some(children.clone()),
            "tried again later"
        );
        assert_eq!(s.step(), Step::Read { idle: true });
        s.shard_end(children.clone(), 1);
        assert_eq!(s.child_created(true), None);
        assert_eq!(s.step(), Step::EndShard);
        assert_eq!(s.last_write(&WorkerId::from("w1"), None), None);
        s.end_shard(&mut ctx, &shard(), FencingToken(1));
        let ended = only_call(&mut ctx);
        s.processor_returned(&mut ctx, &shard(), ended, false);
        assert_eq!(
            s.last_write(&WorkerId::from("w1"), None),
            Some(Leave::FinishShard)
        );
        assert_eq!(s.children(), &children[..]);
    }

    #[test]
    fn a_lease_finished_when_acquired_is_given_up_without_a_processor() {
        let mut ctx = ctx();
        let mut s = ProcessorSession::new(true);
        assert_eq!(s.step(), Step::Wait);
        assert_eq!(
            s.last_write(&WorkerId::from("w1"), None),
            Some(Leave::FinishShard)
        );
        assert!(s.children().is_empty());
        s.lose(&mut ctx, &shard());
        assert!(calls(&mut ctx).is_empty(), "no processor to tell");
    }

    #[test]
    fn a_handoff_waits_for_the_batch_then_asks_the_processor_to_shut_down() {
        let mut ctx = ctx();
        let me = WorkerId::from("w1");
        let lease = Lease::new(shard(), Position::TrimHorizon);
        let mut s = running(&mut ctx, &lease);
        let batch = deliver(&mut ctx, &mut s, 5);
        assert!(s.begin_leaving(Exit::Handoff));
        assert!(!s.begin_leaving(Exit::Shutdown), "one exit");
        s.ask_to_shut_down(&mut ctx, &shard(), FencingToken(1));
        assert!(calls(&mut ctx).is_empty(), "not while it processes");
        assert_eq!(s.last_write(&me, Some(&me)), None);
        s.processor_returned(&mut ctx, &shard(), batch, false);
        s.ask_to_shut_down(&mut ctx, &shard(), FencingToken(1));
        let shutdown = calls(&mut ctx);
        assert!(matches!(
            shutdown[..],
            [(_, ProcessorCall::ShutdownRequested { .. })]
        ));
        s.ask_to_shut_down(&mut ctx, &shard(), FencingToken(1));
        assert!(calls(&mut ctx).is_empty(), "asked once");
        assert_eq!(s.last_write(&me, Some(&me)), None);
        s.processor_returned(&mut ctx, &shard(), shutdown[0].0, false);
        assert_eq!(s.last_write(&me, Some(&me)), Some(Leave::CompleteHandoff));
    }

    #[test]
    fn a_shutdown_hands_over_a_lease_in_handoff_and_releases_the_others() {
        let mut ctx = ctx();
        let me = WorkerId::from("w1");
        let lease = Lease::new(shard(), Position::TrimHorizon);
        let mut s = running(&mut ctx, &lease);
        s.begin_leaving(Exit::Shutdown);
        s.ask_to_shut_down(&mut ctx, &shard(), FencingToken(1));
        let call = only_call(&mut ctx);
        s.processor_returned(&mut ctx, &shard(), call, false);
        assert_eq!(
            s.last_write(&me, None),
            Some(Leave::Release(ReleaseReason::Shutdown))
        );
        assert_eq!(s.last_write(&me, Some(&me)), Some(Leave::CompleteHandoff));
        assert_eq!(s.exit(), Some(Exit::Shutdown));
    }

    #[test]
    fn a_processor_that_does_not_finish_leaving_in_time_is_abandoned() {
        let mut ctx = ctx();
        let mut lease = Lease::new(shard(), Position::TrimHorizon);
        let mut s = running(&mut ctx, &lease);
        let batch = deliver(&mut ctx, &mut s, 5);
        s.checkpoint_requested(
            &mut ctx,
            &lease,
            1,
            CheckpointAsk::Move {
                target: CheckpointTarget::LastDelivered,
                kind: CheckpointKind::Commit,
            },
        );
        assert!(!s.checkpoints.is_empty());
        s.give_up_waiting(&mut ctx, &shard());
        assert!(calls(&mut ctx).is_empty(), "only while leaving");
        s.begin_leaving(Exit::Handoff);
        s.give_up_waiting(&mut ctx, &shard());
        let told = calls(&mut ctx);
        assert!(matches!(told[0], (_, ProcessorCall::LeaseLost)), "{told:?}");
        assert!(matches!(
            told[1],
            (
                _,
                ProcessorCall::CheckpointDone {
                    ticket: 1,
                    result: Err(CheckpointError::LeaseLost)
                }
            )
        ));
        assert!(s.is_abandoned() && s.checkpoints.is_empty());
        lease.checkpoint = Position::Record(at(1));
        s.checkpoint_requested(&mut ctx, &lease, 2, CheckpointAsk::CommitPrepared);
        assert_eq!(answers(&mut ctx), [Err(CheckpointError::LeaseLost)]);
        assert!(s.abandoned_call_running());
        assert_eq!(
            s.last_write(&WorkerId::from("w1"), None),
            None,
            "not left while its batch still runs"
        );
        assert_eq!(
            s.processor_returned(&mut ctx, &shard(), batch, false),
            Returned::Other
        );
        assert_eq!(
            s.processor_returned(&mut ctx, &shard(), batch, false),
            Returned::Stale,
            "once"
        );
        assert_eq!(
            s.last_write(&WorkerId::from("w1"), None),
            Some(Leave::CompleteHandoff),
            "the lease moves on once the batch returned"
        );
    }

    #[test]
    fn a_failed_processor_releases_its_lease_and_its_checkpoints() {
        let mut ctx = ctx();
        let lease = Lease::new(shard(), Position::TrimHorizon);
        let mut s = running(&mut ctx, &lease);
        let batch = deliver(&mut ctx, &mut s, 5);
        s.checkpoint_requested(
            &mut ctx,
            &lease,
            1,
            CheckpointAsk::Move {
                target: CheckpointTarget::At(at(5)),
                kind: CheckpointKind::Commit,
            },
        );
        assert_eq!(
            s.processor_returned(&mut ctx, &shard(), batch, true),
            Returned::Failed
        );
        assert_eq!(answers(&mut ctx), [Err(CheckpointError::LeaseLost)]);
        assert_eq!(
            s.last_write(&WorkerId::from("w1"), None),
            Some(Leave::Release(ReleaseReason::ProcessorFailed))
        );
    }

    #[test]
    fn checkpoint_requests_are_refused_with_the_reason() {
        let mut ctx = ctx();
        let mut lease = Lease::new(shard(), Position::Record(at(3)));
        let mut s = running(&mut ctx, &lease);
        let ask = |target| CheckpointAsk::Move {
            target,
            kind: CheckpointKind::Commit,
        };
        s.checkpoint_requested(&mut ctx, &lease, 1, ask(CheckpointTarget::LastDelivered));
        assert_eq!(
            answers(&mut ctx),
            [Ok(())],
            "nothing delivered: nothing to do"
        );
        let batch = deliver(&mut ctx, &mut s, 5);
        s.processor_returned(&mut ctx, &shard(), batch, false);
        s.checkpoint_requested(&mut ctx, &lease, 2, ask(CheckpointTarget::At(at(6))));
        s.checkpoint_requested(&mut ctx, &lease, 3, ask(CheckpointTarget::At(at(2))));
        s.checkpoint_requested(&mut ctx, &lease, 4, ask(CheckpointTarget::At(at(3))));
        s.checkpoint_requested(&mut ctx, &lease, 5, CheckpointAsk::CommitPrepared);
        assert_eq!(
            answers(&mut ctx),
            [Err(CheckpointError::BeyondDelivered)],
            "judged when asked"
        );
        assert_eq!(s.checkpoints.next_write(&mut ctx, &lease), None);
        assert_eq!(
            answers(&mut ctx),
            [
                Err(CheckpointError::Backwards),
                Ok(()),
                Err(CheckpointError::NothingPrepared),
            ],
            "judged when their turn to be written came"
        );
        assert!(s.checkpoints.is_empty());
        // Accepted, then written.
        s.checkpoint_requested(&mut ctx, &lease, 6, ask(CheckpointTarget::At(at(4))));
        s.checkpoint_requested(
            &mut ctx,
            &lease,
            7,
            CheckpointAsk::Move {
                target: CheckpointTarget::LastDelivered,
                kind: CheckpointKind::Prepare {
                    state: Some(vec![7]),
                },
            },
        );
        let first = s.checkpoints.next_write(&mut ctx, &lease).expect("waiting");
        assert_eq!(first.ticket, 6);
        s.checkpoints.landed(&mut ctx, &mut lease, &first);
        assert_eq!(lease.checkpoint, Position::Record(at(4)));
        assert_eq!(ctx.stats.checkpoints, 1);
        let second = s.checkpoints.next_write(&mut ctx, &lease).expect("waiting");
        s.checkpoints.landed(&mut ctx, &mut lease, &second);
        assert_eq!(lease.pending_checkpoint, Some(Position::Record(at(5))));
        assert_eq!(lease.pending_checkpoint_state, Some(vec![7]));
        assert_eq!(lease.checkpoint, Position::Record(at(4)), "prepared only");
        assert_eq!(answers(&mut ctx), [Ok(()), Ok(())]);
        s.checkpoint_requested(&mut ctx, &lease, 8, CheckpointAsk::CommitPrepared);
        s.checkpoint_requested(&mut ctx, &lease, 9, ask(CheckpointTarget::LastDelivered));
        let third = s.checkpoints.next_write(&mut ctx, &lease).expect("waiting");
        assert_eq!(
            (third.ticket, third.position),
            (8, Position::Record(at(5))),
            "the prepared position"
        );
        s.checkpoints.failed(&mut ctx, &shard(), true);
        let fourth = s.checkpoints.next_write(&mut ctx, &lease).expect("waiting");
        s.checkpoints.failed(&mut ctx, &shard(), false);
        assert_eq!(
            s.checkpoints.next_write(&mut ctx, &lease),
            Some(fourth),
            "a write of unknown outcome is sent again"
        );
        s.lose(&mut ctx, &shard());
        assert_eq!(
            answers(&mut ctx),
            [
                Err(CheckpointError::Throttled),
                Err(CheckpointError::OutcomeUnknown)
            ]
        );
    }
}
