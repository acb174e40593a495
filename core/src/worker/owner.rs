//! One held lease: renewal and its delivery window, the shard consumer (parents, initialize,
//! fetch, deliver, shard end), checkpoints, and leaving (handoff, shutdown, loss).
//!
//! Every change goes through [`Held::drive`], which looks at the state and issues whatever is
//! next, so the order in which results arrive never matters.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use super::timers::{LeaseTimer, TimerSlot};
use super::{Ctx, Pending, WriteOp};
use crate::config::{Config, InitialPosition};
use crate::io::{
    CallId, CheckpointError, CheckpointTarget, ChildShard, Event, Failure, FencingToken,
    FetchedRecords, ProcessorCall, Record, ReleaseReason, StartingPosition,
};
use crate::item::{Item, Text};
use crate::lease::{Followed, Lease, WorkerId};
use crate::protocol::{CheckpointKind, LeaseOp};
use crate::sequence::{Position, RecordPosition};
use crate::time::Instant;

/// A write on a held lease and what to do when it lands.
#[derive(Clone, Debug)]
pub(crate) enum OwnedWrite {
    Renew {
        counter_after: u64,
    },
    Checkpoint {
        counter_after: u64,
        /// Boxed: every request in flight carries an `OwnedWrite`, and renewals are the many.
        job: alloc::boxed::Box<CheckpointJob>,
    },
    Final {
        kind: FinalKind,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FinalKind {
    CompleteHandoff,
    Release(ReleaseReason),
    ShardEnd,
}

/// What the processor asked for.
#[derive(Clone, Debug)]
pub(crate) enum CheckpointAsk {
    Move {
        target: CheckpointTarget,
        prepare: bool,
        state: Option<Vec<u8>>,
    },
    CommitPrepared,
}

#[derive(Clone, Debug)]
pub(crate) struct CheckpointJob {
    ticket: u64,
    position: Position,
    prepare: bool,
    state: Option<Vec<u8>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Stage {
    Parents { reading: usize, blocked: bool },
    Initializing,
    Starting,
    Running,
    EndingChildren { outstanding: usize, failed: bool },
    EndingProcessor,
    EndingWrite,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CallKind {
    Initialize,
    Process,
    ShardEnded,
    ShutdownRequested,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proc {
    NotStarted,
    Busy(CallId, CallKind),
    Idle,
    /// Told the lease is lost (or failed): gets no more calls.
    Abandoned,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Exit {
    Handoff,
    Shutdown,
    ProcessorFailed,
}

pub(crate) struct Held<R> {
    pub(crate) lease: Lease,
    pub(crate) token: FencingToken,
    /// Where this lease's timers are, until [`Held::forget_timers`].
    timers: TimerSlot,
    /// Send time of the last write on this lease known to have succeeded.
    renewed_sent: Instant,
    /// Send time of the oldest write whose outcome is unknown since then.
    unknown_since: Option<Instant>,
    /// A stolen lease's old owner may deliver until its own window closes.
    no_delivery_before: Instant,
    write: Option<Instant>,
    write_attempts: u32,
    retry_at: Instant,
    verifying: Option<OwnedWrite>,
    verify_read_due: bool,
    pub(crate) renew_due: bool,
    stage: Stage,
    proc: Proc,
    shutdown_called: bool,
    pub(crate) exit: Option<Exit>,
    jobs: VecDeque<CheckpointJob>,
    // Retrieval.
    start: Option<StartingPosition>,
    filter: Option<RecordPosition>,
    iterator: Option<Text>,
    iterator_pending: bool,
    fetch_sent: Option<Instant>,
    next_fetch_at: Instant,
    fetch_attempts: u32,
    prefetched: VecDeque<(Vec<R>, u64)>,
    end: Option<Vec<ChildShard>>,
    children: Vec<ChildShard>,
    last_delivered: Option<RecordPosition>,
    bytes_since_renew: u64,
    throughput_kbps: f64,
    gone: bool,
}

impl<R: Record + Clone> Held<R> {
    /// A lease this worker now holds: `lease` is the row after the write that made it ours,
    /// sent at `sent`.
    pub(crate) fn new(ctx: &mut Ctx<R>, lease: Lease, sent: Instant, steal: bool) -> Self {
        let token = FencingToken(lease.counter);
        ctx.stats.leases_acquired += 1;
        if steal {
            ctx.stats.leases_stolen += 1;
        }
        ctx.event(Event::LeaseAcquired {
            shard: lease.key.clone(),
            token,
        });
        let no_delivery_before = if steal {
            ctx.now + ctx.config.failover_time
        } else {
            ctx.now
        };
        let timers = ctx.timers.claim(&lease.key);
        let mut h = Self {
            lease,
            token,
            timers,
            renewed_sent: sent,
            unknown_since: None,
            no_delivery_before,
            write: None,
            write_attempts: 0,
            retry_at: ctx.now,
            verifying: None,
            verify_read_due: false,
            renew_due: false,
            stage: Stage::Parents {
                reading: 0,
                blocked: false,
            },
            proc: Proc::NotStarted,
            shutdown_called: false,
            exit: None,
            jobs: VecDeque::new(),
            start: None,
            filter: None,
            iterator: None,
            iterator_pending: false,
            fetch_sent: None,
            next_fetch_at: ctx.now,
            fetch_attempts: 0,
            prefetched: VecDeque::new(),
            end: None,
            children: Vec::new(),
            last_delivered: None,
            bytes_since_renew: 0,
            throughput_kbps: 0.0,
            gone: false,
        };
        if h.lease.is_finished() {
            // Nothing to process: give the finished lease up again at once.
            h.stage = Stage::EndingWrite;
        } else {
            h.read_parents(ctx);
        }
        h
    }

    pub(crate) fn is_gone(&self) -> bool {
        self.gone
    }

    fn window_end(&self, config: &Config) -> Instant {
        self.renewed_sent + config.delivery_window()
    }

    pub(crate) fn deliver_until(&self, config: &Config, now: Instant) -> Option<Instant> {
        let end = self.window_end(config);
        (self.exit.is_none()
            && !self.gone
            && self.verifying.is_none()
            && now < end
            && now >= self.no_delivery_before)
            .then_some(end)
    }

    pub(crate) fn view(&self, config: &Config, now: Instant) -> super::LeaseView<'_> {
        super::LeaseView {
            lease: &self.lease,
            token: self.token,
            deliver_until: self.deliver_until(config, now),
        }
    }

    pub(crate) fn forget_timers(&self, ctx: &mut Ctx<R>) {
        ctx.timers.release(self.timers);
    }

    // ---- the step function -------------------------------------------------------------

    pub(crate) fn drive(&mut self, ctx: &mut Ctx<R>) {
        if self.gone {
            return;
        }
        let now = ctx.now;
        let window_end = self.window_end(&ctx.config);
        if now >= window_end {
            // The window closed. A write in flight (or one of unknown outcome being verified)
            // sent late enough may still reopen it; until then deliver nothing.
            let rescue = match (self.write, &self.verifying) {
                (Some(sent), _) => Some(sent),
                (None, Some(_)) => self.unknown_since,
                _ => None,
            };
            match rescue.map(|s| s + ctx.config.delivery_window()) {
                Some(end) if end > now => {
                    ctx.timers.set_lease(self.timers, LeaseTimer::Window, end)
                }
                _ => return self.lose(ctx),
            }
        } else {
            ctx.timers
                .set_lease(self.timers, LeaseTimer::Window, window_end);
        }
        self.next_write(ctx);
        if self.gone {
            return;
        }
        if self.exit.is_some() {
            self.drive_exit(ctx);
            return;
        }
        match self.stage {
            Stage::Parents { .. } | Stage::EndingChildren { .. } | Stage::EndingWrite => {}
            Stage::Initializing => {
                if self.proc == Proc::NotStarted {
                    let call = ctx.call(
                        &self.lease.key,
                        ProcessorCall::Initialize {
                            checkpoint: self.lease.checkpoint.clone(),
                            pending_checkpoint: self.lease.pending_checkpoint.clone(),
                            pending_state: self.lease.pending_checkpoint_state.clone(),
                            token: self.token,
                        },
                    );
                    self.proc = Proc::Busy(call, CallKind::Initialize);
                }
            }
            Stage::Starting => self.request_iterator(ctx),
            Stage::Running => {
                self.deliver(ctx);
                self.fetch(ctx);
                if self.end.is_some()
                    && self.prefetched.is_empty()
                    && self.proc == Proc::Idle
                    && ctx.now >= self.next_fetch_at
                {
                    self.children = self.end.take().unwrap_or_default();
                    self.create_children(ctx);
                }
            }
            Stage::EndingProcessor => {
                if self.proc == Proc::Idle {
                    let call = ctx.call(
                        &self.lease.key,
                        ProcessorCall::ShardEnded { token: self.token },
                    );
                    self.proc = Proc::Busy(call, CallKind::ShardEnded);
                }
            }
        }
    }

    fn drive_exit(&mut self, ctx: &mut Ctx<R>) {
        self.prefetched.clear();
        if self.proc == Proc::Idle
            && !self.shutdown_called
            && matches!(self.exit, Some(Exit::Handoff | Exit::Shutdown))
        {
            self.shutdown_called = true;
            let call = ctx.call(
                &self.lease.key,
                ProcessorCall::ShutdownRequested { token: self.token },
            );
            self.proc = Proc::Busy(call, CallKind::ShutdownRequested);
        }
        self.next_write(ctx);
    }

    /// Starts leaving the lease (handoff requested, worker shutdown).
    pub(crate) fn begin_exit(&mut self, ctx: &mut Ctx<R>, exit: Exit) {
        if self.exit.is_some() {
            return;
        }
        let limit = match exit {
            Exit::Shutdown => ctx.config.shutdown_timeout,
            _ => ctx.config.handoff_timeout,
        };
        self.exit = Some(exit);
        ctx.timers
            .set_lease(self.timers, LeaseTimer::HandoffTimeout, ctx.now + limit);
    }

    pub(crate) fn handoff_timed_out(&mut self, ctx: &mut Ctx<R>) {
        if self.exit.is_some() && matches!(self.proc, Proc::Busy(..)) {
            // The processor did not finish in time: it is told the lease is gone, and the lease
            // moves on. Its batch may still be running: the fencing token is what guards sinks.
            ctx.call(&self.lease.key, ProcessorCall::LeaseLost);
            self.proc = Proc::Abandoned;
            self.fail_jobs(ctx, CheckpointError::LeaseLost);
        }
    }

    fn final_ready(&self, me: &WorkerId) -> Option<FinalKind> {
        if !self.jobs.is_empty() {
            return None;
        }
        let processor_done = matches!(self.proc, Proc::NotStarted | Proc::Abandoned)
            || (self.proc == Proc::Idle
                && (self.shutdown_called || self.exit == Some(Exit::ProcessorFailed)));
        match &self.exit {
            Some(Exit::ProcessorFailed) => Some(FinalKind::Release(ReleaseReason::ProcessorFailed)),
            Some(Exit::Handoff) if processor_done => Some(FinalKind::CompleteHandoff),
            Some(Exit::Shutdown) if processor_done => {
                Some(if self.lease.checkpoint_owner.as_ref() == Some(me) {
                    FinalKind::CompleteHandoff
                } else {
                    FinalKind::Release(ReleaseReason::Shutdown)
                })
            }
            Some(_) => None,
            None => (self.stage == Stage::EndingWrite).then_some(FinalKind::ShardEnd),
        }
    }

    fn next_write(&mut self, ctx: &mut Ctx<R>) {
        if self.verify_read_due {
            if ctx.now < self.retry_at {
                ctx.timers
                    .set_lease(self.timers, LeaseTimer::Retry, self.retry_at);
            } else {
                self.send_verify_read(ctx);
            }
            return;
        }
        if self.write.is_some() || self.verifying.is_some() {
            return;
        }
        if ctx.now < self.retry_at {
            ctx.timers
                .set_lease(self.timers, LeaseTimer::Retry, self.retry_at);
            return;
        }
        let shard = self.lease.key.clone();
        let counter = self.lease.counter;
        let holder = ctx.id.clone();
        let (lease_op, op) = if let Some(job) = self.jobs.front().cloned() {
            let kind = if job.prepare {
                CheckpointKind::Prepare {
                    state: job.state.clone(),
                }
            } else {
                CheckpointKind::Commit
            };
            (
                LeaseOp::Checkpoint {
                    shard,
                    counter,
                    holder,
                    at: job.position.clone(),
                    kind,
                },
                OwnedWrite::Checkpoint {
                    counter_after: counter + 1,
                    job: alloc::boxed::Box::new(job),
                },
            )
        } else if let Some(kind) = self.final_ready(&holder) {
            let lease_op = match kind {
                FinalKind::CompleteHandoff => LeaseOp::CompleteHandoff {
                    shard,
                    counter,
                    holder,
                },
                FinalKind::Release(_) => LeaseOp::Release {
                    shard,
                    counter,
                    holder,
                },
                FinalKind::ShardEnd => LeaseOp::FinishShard {
                    shard,
                    counter,
                    holder,
                    children: self.children.iter().map(|c| c.shard_id.clone()).collect(),
                },
            };
            (lease_op, OwnedWrite::Final { kind })
        } else if self.renew_due {
            // Throughput over the last renewal interval, smoothed (alpha 0.5, as Java 3.x).
            let secs = ctx.config.renew_interval().as_secs_f64().max(0.001);
            let kbps = (self.bytes_since_renew as f64 / 1024.0) / secs;
            self.throughput_kbps = 0.5 * self.throughput_kbps + 0.5 * kbps;
            self.bytes_since_renew = 0;
            (
                LeaseOp::Renew {
                    shard,
                    counter,
                    holder,
                    throughput_kbps: self.throughput_kbps,
                },
                OwnedWrite::Renew {
                    counter_after: counter + 1,
                },
            )
        } else {
            return;
        };
        self.write = Some(ctx.now);
        ctx.write(&lease_op, Some(self.token), WriteOp::Owned(op));
    }

    /// The result of a write on this lease.
    pub(crate) fn written(
        &mut self,
        ctx: &mut Ctx<R>,
        w: OwnedWrite,
        sent: Instant,
        result: Result<Option<Item>, Failure>,
    ) {
        self.write = None;
        match result {
            Ok(item) => {
                self.write_attempts = 0;
                if sent > self.renewed_sent {
                    self.renewed_sent = sent;
                }
                self.unknown_since = None;
                match w {
                    OwnedWrite::Renew { counter_after } => {
                        self.lease.counter = counter_after;
                        self.renew_due = false;
                        ctx.stats.renewals += 1;
                    }
                    OwnedWrite::Checkpoint { counter_after, job } => {
                        self.lease.counter = counter_after;
                        self.apply_job(ctx, &job);
                        self.jobs.pop_front();
                    }
                    OwnedWrite::Final { kind } => return self.finish(ctx, kind),
                }
                if let Some(item) = item {
                    self.absorb(ctx, &item);
                }
            }
            Err(Failure::ConditionFailed) => match w {
                // The lease moved on: what the final write meant to do is moot.
                OwnedWrite::Final { .. } => self.lose(ctx),
                // Only one of this worker's own writes of unknown outcome can explain a lost
                // race on a lease it holds; without one, the lease is gone.
                _ if self.unknown_since.is_none() => self.lose(ctx),
                other => {
                    self.verifying = Some(other);
                    self.send_verify_read(ctx);
                }
            },
            Err(f) => {
                if f != Failure::Throttled {
                    // A timeout or 5xx may still have landed.
                    self.unknown_since = Some(self.unknown_since.map_or(sent, |u| u.min(sent)));
                }
                if let OwnedWrite::Checkpoint { .. } = w {
                    if let Some(job) = self.jobs.pop_front() {
                        let e = if f == Failure::Throttled {
                            CheckpointError::Throttled
                        } else {
                            CheckpointError::Failed
                        };
                        ctx.call(
                            &self.lease.key,
                            ProcessorCall::CheckpointDone {
                                ticket: job.ticket,
                                result: Err(e),
                            },
                        );
                    }
                }
                self.write_attempts += 1;
                let delay = ctx.backoff(self.write_attempts);
                self.retry_at = ctx.now + delay;
            }
        }
    }

    fn send_verify_read(&mut self, ctx: &mut Ctx<R>) {
        self.verify_read_due = false;
        ctx.read(
            self.lease.key.as_str(),
            Pending::ReadOwn {
                shard: self.lease.key.clone(),
                token: self.token,
                expect_counter: self.lease.counter + 1,
            },
        );
    }

    /// The answer to the read that follows a lost conditional write.
    pub(crate) fn verified(
        &mut self,
        ctx: &mut Ctx<R>,
        expect_counter: u64,
        result: Result<Option<Item>, Failure>,
    ) {
        let Some(op) = self.verifying.take() else {
            return;
        };
        if result.is_err() {
            // The read failed: ask again while the window (or the unknown write) allows.
            self.verifying = Some(op);
            self.verify_read_due = true;
            self.write_attempts += 1;
            let delay = ctx.backoff(self.write_attempts);
            self.retry_at = ctx.now + delay;
            return;
        }
        let row = match result {
            Ok(Some(item)) => Lease::from_item(&item).ok(),
            _ => None,
        };
        let me = ctx.id.clone();
        match (row, self.unknown_since) {
            (Some(row), Some(since))
                if row.counter == expect_counter
                    && (row.owner.as_ref() == Some(&me)
                        || row.checkpoint_owner.as_ref() == Some(&me)) =>
            {
                // One of this worker's own writes of unknown outcome landed: adopt its counter,
                // dating the renewal by the oldest such write's send time.
                if since > self.renewed_sent {
                    self.renewed_sent = since;
                }
                self.unknown_since = None;
                self.lease.counter = row.counter;
                if let OwnedWrite::Checkpoint { job, .. } = op {
                    if !job.prepare && row.checkpoint == job.position {
                        self.apply_job(ctx, &job);
                        self.jobs.pop_front();
                    }
                }
                self.lease.owner = row.owner;
                self.lease.checkpoint_owner = row.checkpoint_owner;
                self.detect_handoff(ctx);
            }
            _ => self.lose(ctx),
        }
    }

    /// Learns from the row a write returned: a handoff request shows up here.
    /// Takes from the row its own write returned what others may have changed (see
    /// [`Followed`]).
    fn absorb(&mut self, ctx: &mut Ctx<R>, item: &Item) {
        match Followed::from_item(item) {
            Ok(row) => {
                follow(&mut self.lease.owner, row.owner);
                follow(&mut self.lease.checkpoint_owner, row.checkpoint_owner);
                self.lease.extra = row.extra(item);
                self.detect_handoff(ctx);
            }
            Err(error) => ctx.malformed(item, error),
        }
    }

    fn detect_handoff(&mut self, ctx: &mut Ctx<R>) {
        let me = &ctx.id;
        if self.lease.checkpoint_owner.as_ref() == Some(me) && self.lease.owner.as_ref() != Some(me)
        {
            self.begin_exit(ctx, Exit::Handoff);
        }
    }

    fn apply_job(&mut self, ctx: &mut Ctx<R>, job: &CheckpointJob) {
        if job.prepare {
            self.lease.pending_checkpoint = Some(job.position.clone());
            self.lease.pending_checkpoint_state = job.state.clone();
        } else {
            self.lease.checkpoint = job.position.clone();
            self.lease.pending_checkpoint = None;
            self.lease.pending_checkpoint_state = None;
            self.lease.owner_switches_since_checkpoint = 0;
            ctx.stats.checkpoints += 1;
        }
        ctx.call(
            &self.lease.key,
            ProcessorCall::CheckpointDone {
                ticket: job.ticket,
                result: Ok(()),
            },
        );
    }

    fn finish(&mut self, ctx: &mut Ctx<R>, kind: FinalKind) {
        let reason = match kind {
            FinalKind::CompleteHandoff => {
                ctx.stats.handoffs_completed += 1;
                if self.exit == Some(Exit::Shutdown) {
                    ReleaseReason::Shutdown
                } else {
                    ReleaseReason::HandedOver
                }
            }
            FinalKind::Release(r) => r,
            FinalKind::ShardEnd => ReleaseReason::ShardEnded,
        };
        if kind == FinalKind::ShardEnd {
            self.lease.checkpoint = Position::ShardEnd;
        }
        ctx.event(Event::LeaseReleased {
            shard: self.lease.key.clone(),
            reason,
        });
        self.gone = true;
    }

    /// The lease is lost: the processor is told, nothing more is delivered or written.
    pub(crate) fn lose(&mut self, ctx: &mut Ctx<R>) {
        if self.gone {
            return;
        }
        if matches!(self.proc, Proc::Busy(..) | Proc::Idle) {
            ctx.call(&self.lease.key, ProcessorCall::LeaseLost);
        }
        self.proc = Proc::Abandoned;
        self.fail_jobs(ctx, CheckpointError::LeaseLost);
        ctx.stats.leases_lost += 1;
        ctx.event(Event::LeaseReleased {
            shard: self.lease.key.clone(),
            reason: ReleaseReason::Lost,
        });
        self.gone = true;
    }

    fn fail_jobs(&mut self, ctx: &mut Ctx<R>, e: CheckpointError) {
        for job in self.jobs.drain(..) {
            ctx.call(
                &self.lease.key,
                ProcessorCall::CheckpointDone {
                    ticket: job.ticket,
                    result: Err(e.clone()),
                },
            );
        }
    }

    // ---- processor ---------------------------------------------------------------------

    pub(crate) fn processor_returned(&mut self, ctx: &mut Ctx<R>, call: CallId, failed: bool) {
        let kind = match self.proc {
            Proc::Busy(c, kind) if c == call => kind,
            _ => {
                ctx.stats.stale_processor_inputs += 1;
                return;
            }
        };
        if failed {
            self.proc = Proc::Abandoned;
            self.fail_jobs(ctx, CheckpointError::LeaseLost);
            self.exit = Some(Exit::ProcessorFailed);
            return;
        }
        self.proc = Proc::Idle;
        match kind {
            CallKind::Initialize => {
                self.stage = Stage::Starting;
                self.start = Some(self.starting_position(&ctx.config));
            }
            CallKind::ShardEnded => self.stage = Stage::EndingWrite,
            CallKind::Process | CallKind::ShutdownRequested => {}
        }
    }

    pub(crate) fn checkpoint_requested(
        &mut self,
        ctx: &mut Ctx<R>,
        ticket: u64,
        ask: CheckpointAsk,
    ) {
        let answer = |ctx: &mut Ctx<R>, r: Result<(), CheckpointError>| {
            ctx.call(
                &self.lease.key,
                ProcessorCall::CheckpointDone { ticket, result: r },
            );
        };
        if self.proc == Proc::Abandoned || self.gone {
            return answer(ctx, Err(CheckpointError::LeaseLost));
        }
        let job = match ask {
            CheckpointAsk::CommitPrepared => match &self.lease.pending_checkpoint {
                Some(p) => CheckpointJob {
                    ticket,
                    position: p.clone(),
                    prepare: false,
                    state: None,
                },
                None => return answer(ctx, Err(CheckpointError::NothingPrepared)),
            },
            CheckpointAsk::Move {
                target,
                prepare,
                state,
            } => {
                let position = match target {
                    CheckpointTarget::LastDelivered => match &self.last_delivered {
                        Some(p) => Position::Record(p.clone()),
                        None => return answer(ctx, Ok(())),
                    },
                    CheckpointTarget::At(p) => {
                        if self.last_delivered.as_ref().is_none_or(|d| &p > d) {
                            return answer(ctx, Err(CheckpointError::BeyondDelivered));
                        }
                        Position::Record(p)
                    }
                };
                CheckpointJob {
                    ticket,
                    position,
                    prepare,
                    state,
                }
            }
        };
        if job.position < self.lease.checkpoint {
            return answer(ctx, Err(CheckpointError::Backwards));
        }
        if !job.prepare && job.position == self.lease.checkpoint {
            return answer(ctx, Ok(()));
        }
        self.jobs.push_back(job);
    }

    // ---- retrieval ---------------------------------------------------------------------

    fn starting_position(&mut self, config: &Config) -> StartingPosition {
        match &self.lease.checkpoint {
            Position::TrimHorizon => StartingPosition::TrimHorizon,
            Position::Latest => StartingPosition::Latest,
            Position::AtTimestamp => match config.initial_position {
                InitialPosition::AtTimestamp(ts) => StartingPosition::AtTimestamp(ts),
                _ => StartingPosition::TrimHorizon,
            },
            Position::Record(p) => {
                // AT the checkpoint's sequence number, dropping what was processed: this also
                // resumes inside a KPL aggregated record.
                self.filter = Some(p.clone());
                StartingPosition::AtSequenceNumber(p.sequence.clone())
            }
            Position::ShardEnd => StartingPosition::TrimHorizon,
        }
    }

    pub(crate) fn read_parents(&mut self, ctx: &mut Ctx<R>) {
        let parents = self.lease.parent_shard_ids.clone();
        if parents.is_empty() {
            self.stage = Stage::Initializing;
            return;
        }
        self.stage = Stage::Parents {
            reading: parents.len(),
            blocked: false,
        };
        for p in &parents {
            ctx.read(
                p.as_str(),
                Pending::ReadParent {
                    shard: self.lease.key.clone(),
                    token: self.token,
                },
            );
        }
    }

    pub(crate) fn parent_read(&mut self, ctx: &mut Ctx<R>, result: Result<Option<Item>, Failure>) {
        let Stage::Parents { reading, blocked } = &mut self.stage else {
            return;
        };
        *reading = reading.saturating_sub(1);
        let finished = match result {
            Ok(None) => true,
            Ok(Some(item)) => Lease::from_item(&item).is_ok_and(|l| l.is_finished()),
            Err(_) => false,
        };
        *blocked |= !finished;
        if *reading == 0 {
            if *blocked {
                ctx.timers.set_lease(
                    self.timers,
                    LeaseTimer::Parents,
                    ctx.now + ctx.config.parent_poll_interval,
                );
            } else {
                self.stage = Stage::Initializing;
            }
        }
    }

    fn request_iterator(&mut self, ctx: &mut Ctx<R>) {
        if self.iterator_pending || self.iterator.is_some() {
            return;
        }
        if ctx.now < self.next_fetch_at {
            ctx.timers
                .set_lease(self.timers, LeaseTimer::Fetch, self.next_fetch_at);
            return;
        }
        let position = self.start.clone().unwrap_or(StartingPosition::TrimHorizon);
        self.iterator_pending = true;
        let shard = self.lease.key.clone();
        let token = self.token;
        ctx.request(
            Pending::Iterator {
                shard: shard.clone(),
                token,
            },
            |req| crate::io::Command::GetShardIterator {
                req,
                shard,
                position,
            },
        );
    }

    pub(crate) fn iterator_obtained(&mut self, ctx: &mut Ctx<R>, result: Result<Text, Failure>) {
        self.iterator_pending = false;
        match result {
            Ok(it) => {
                self.iterator = Some(it);
                self.fetch_attempts = 0;
                if self.stage == Stage::Starting {
                    self.stage = Stage::Running;
                }
            }
            Err(f) => self.back_off(ctx, &f),
        }
    }

    fn back_off(&mut self, ctx: &mut Ctx<R>, f: &Failure) {
        if *f == Failure::Throttled {
            ctx.stats.throttled += 1;
        }
        self.fetch_attempts += 1;
        let delay = ctx.backoff(self.fetch_attempts);
        self.next_fetch_at = ctx.now + delay;
        ctx.timers
            .set_lease(self.timers, LeaseTimer::Fetch, self.next_fetch_at);
    }

    fn fetch(&mut self, ctx: &mut Ctx<R>) {
        if self.end.is_some()
            || self.fetch_sent.is_some()
            || self.prefetched.len() >= ctx.config.max_prefetched_batches
        {
            return;
        }
        let Some(iterator) = self.iterator.clone() else {
            return self.request_iterator(ctx);
        };
        if ctx.now < self.next_fetch_at {
            ctx.timers
                .set_lease(self.timers, LeaseTimer::Fetch, self.next_fetch_at);
            return;
        }
        self.fetch_sent = Some(ctx.now);
        let shard = self.lease.key.clone();
        let token = self.token;
        let limit = ctx.config.max_records;
        ctx.request(
            Pending::Fetch {
                shard: shard.clone(),
                token,
            },
            |req| crate::io::Command::GetRecords {
                req,
                shard,
                iterator,
                limit,
            },
        );
    }

    pub(crate) fn records_fetched(
        &mut self,
        ctx: &mut Ctx<R>,
        result: Result<FetchedRecords<R>, Failure>,
    ) {
        let sent = self.fetch_sent.take().unwrap_or(ctx.now);
        match result {
            Ok(batch) => {
                self.fetch_attempts = 0;
                let mut records = batch.records;
                // A full batch means more is waiting, whatever `MillisBehindLatest` says (it is
                // rounded, and emulators report 0 for open shards): read on at the pace limit.
                let full = records.len() >= ctx.config.max_records as usize;
                if let Some(floor) = &self.filter {
                    records.retain(|r| r.position() > floor);
                    if !records.is_empty() {
                        self.filter = None;
                    }
                }
                let empty = records.is_empty();
                if !empty {
                    self.prefetched
                        .push_back((records, batch.millis_behind_latest));
                }
                match batch.next_iterator {
                    Some(it) => self.iterator = Some(it),
                    None => {
                        self.iterator = None;
                        self.end = Some(batch.child_shards);
                    }
                }
                let pace = sent + ctx.config.min_fetch_interval;
                let idle = if empty || (batch.millis_behind_latest == 0 && !full) {
                    ctx.now + ctx.config.idle_time_between_reads
                } else {
                    ctx.now
                };
                self.next_fetch_at = pace.max(idle);
            }
            Err(Failure::ExpiredIterator) => {
                ctx.stats.expired_iterators += 1;
                // Resume right after the last record delivered: AT its sequence number, dropping
                // it and anything before (so a partly delivered aggregate resumes inside itself).
                self.iterator = None;
                self.prefetched.clear();
                if let Some(p) = &self.last_delivered {
                    self.filter = Some(p.clone());
                    self.start = Some(StartingPosition::AtSequenceNumber(p.sequence.clone()));
                } else {
                    self.start = Some(self.starting_position(&ctx.config));
                }
                self.next_fetch_at = ctx.now;
            }
            Err(f) => self.back_off(ctx, &f),
        }
    }

    fn deliver(&mut self, ctx: &mut Ctx<R>) {
        if self.proc != Proc::Idle || self.prefetched.is_empty() {
            return;
        }
        if self.deliver_until(&ctx.config, ctx.now).is_none() {
            if ctx.now < self.no_delivery_before {
                ctx.timers
                    .set_lease(self.timers, LeaseTimer::Fetch, self.no_delivery_before);
            }
            return;
        }
        let Some((records, millis_behind_latest)) = self.prefetched.pop_front() else {
            return;
        };
        if let Some(last) = records.last() {
            self.last_delivered = Some(last.position().clone());
        }
        let bytes: usize = records.iter().map(Record::size_bytes).sum();
        self.bytes_since_renew += bytes as u64;
        ctx.stats.batches_delivered += 1;
        ctx.stats.records_delivered += records.len() as u64;
        let call = ctx.call(
            &self.lease.key,
            ProcessorCall::ProcessRecords {
                records,
                millis_behind_latest,
                token: self.token,
            },
        );
        self.proc = Proc::Busy(call, CallKind::Process);
    }

    // ---- shard end ---------------------------------------------------------------------

    /// Creates the leases of the children split off this shard. A merged child is left to shard
    /// sync, which creates it once every parent's lease exists: created now, before the other
    /// parent's lease, its owner would take that missing parent for finished.
    fn create_children(&mut self, ctx: &mut Ctx<R>) {
        let own: Vec<&ChildShard> = self
            .children
            .iter()
            .filter(|c| c.parents.iter().all(|p| p == &self.lease.key))
            .collect();
        if own.is_empty() {
            self.stage = Stage::EndingProcessor;
            return;
        }
        self.stage = Stage::EndingChildren {
            outstanding: own.len(),
            failed: false,
        };
        for child in own {
            let mut lease = Lease::new(child.shard_id.clone(), Position::TrimHorizon);
            lease.parent_shard_ids = child.parents.clone();
            lease.parent_shard_ids.sort_unstable();
            lease.hash_range = child.hash_range;
            ctx.write(
                &LeaseOp::Create { lease },
                None,
                WriteOp::Create {
                    child_of: Some((self.lease.key.clone(), self.token)),
                },
            );
        }
    }

    /// A child lease was created (or already existed).
    pub(crate) fn child_created(&mut self, ctx: &mut Ctx<R>, ok: bool) {
        let Stage::EndingChildren {
            outstanding,
            failed,
        } = &mut self.stage
        else {
            return;
        };
        *outstanding = outstanding.saturating_sub(1);
        *failed |= !ok;
        if *outstanding == 0 {
            if *failed {
                // Children must exist before the parent is finished, or a later shard sync could
                // start them at the initial position: try again after a pause.
                self.fetch_attempts += 1;
                let delay = ctx.backoff(self.fetch_attempts);
                self.next_fetch_at = ctx.now + delay;
                self.stage = Stage::Running;
                self.end = Some(core::mem::take(&mut self.children));
                ctx.timers
                    .set_lease(self.timers, LeaseTimer::Fetch, self.next_fetch_at);
            } else {
                self.stage = Stage::EndingProcessor;
            }
        }
    }
}

/// Sets a worker attribute to the row's value, keeping the id it has when the name is the same
/// (nearly always: a renewal reads back the owner it wrote).
fn follow(slot: &mut Option<WorkerId>, name: Option<&str>) {
    if slot.as_ref().map(WorkerId::as_str) != name {
        *slot = name.map(WorkerId::from);
    }
}
