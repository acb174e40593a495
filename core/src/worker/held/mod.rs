//! One held lease: its [`tenure`] (renewal, the delivery window, its own writes), its shard
//! [`reader`] and its processor [`session`], stepped together by [`HeldLease::step`].
//!
//! Every answer or timer only updates state; the step that follows looks at the state and issues
//! whatever is next, so the order in which answers arrive never matters.

mod checkpoints;
mod reader;
mod session;
mod tenure;

use crate::config::Config;
use crate::io::{
    CheckpointError, ChildShard, Event, Failure, FencingToken, FetchedRecords, Record,
    ReleaseReason,
};
use crate::item::{Item, Text};
use crate::lease::{Followed, Lease, WorkerId};
use crate::protocol::LeaseOp;
use crate::sequence::Position;
use crate::time::Instant;

use super::timers::{LeaseTimer, TimerSlot};
use super::{Ctx, LeaseView, Pending, WriteOp};

pub(crate) use checkpoints::CheckpointAsk;
pub(crate) use session::Exit;

use reader::ShardReader;
use session::{ParentsRead, ProcessorSession, Returned, Step};
use tenure::{Leave, Next, OwnWrite, RowSeen, Tenure, Verified, Written};

pub(crate) struct HeldLease<R> {
    /// The row as this worker last wrote or read it.
    pub(crate) lease: Lease,
    pub(crate) token: FencingToken,
    /// Where this lease's timers are, until [`HeldLease::forget_timers`].
    timers: TimerSlot,
    tenure: Tenure,
    reader: ShardReader<R>,
    session: ProcessorSession,
    /// Released or lost: the worker forgets it after this step.
    gone: bool,
    /// Worker liveness: the window closed while an abandoned processor's call ran, and the
    /// lease is being left by its last write (nothing is delivered any more).
    outlived: bool,
}

impl<R: Record + Clone> HeldLease<R> {
    /// A lease this worker now holds: `lease` is the row after the write that made it ours,
    /// sent at `sent`.
    pub(crate) fn new(ctx: &mut Ctx<R>, lease: Lease, sent: Instant, stolen: bool) -> Self {
        let token = FencingToken(lease.counter);
        ctx.stats.leases_acquired += 1;
        if stolen {
            ctx.stats.leases_stolen += 1;
        }
        ctx.event(Event::LeaseAcquired {
            shard: lease.key.clone(),
            token,
        });
        let finished = lease.is_finished();
        // Under worker liveness the window runs from the last heartbeat that landed, whenever
        // the acquire was sent: the leader moves a lease of this process only after fencing
        // it, which that heartbeat's window outlasts. Without one, the window is closed.
        let anchor = if ctx.config.worker_liveness() {
            ctx.heartbeats.landed.unwrap_or_else(|| {
                Instant::from_millis(
                    ctx.now
                        .as_millis()
                        .saturating_sub(ctx.config.delivery_window().as_millis() as u64),
                )
            })
        } else {
            sent
        };
        let mut held = Self {
            timers: ctx.timers.claim(&lease.key),
            tenure: Tenure::new(&ctx.config, ctx.now, anchor, stolen),
            reader: ShardReader::new(ctx.now),
            session: ProcessorSession::new(finished),
            lease,
            token,
            gone: false,
            outlived: false,
        };
        if !finished {
            held.read_parents(ctx);
        }
        held
    }

    pub(crate) fn is_gone(&self) -> bool {
        self.gone
    }

    /// The end of the lease's current window: its last successful renewal's sending plus the
    /// delivery window, on this worker's clock.
    pub(crate) fn window_end(&self, config: &Config) -> Instant {
        self.tenure.window_end(config)
    }

    pub(crate) fn deliver_until(&self, config: &Config, now: Instant) -> Option<Instant> {
        if self.gone || self.session.is_leaving() {
            return None;
        }
        self.tenure.deliver_until(config, now)
    }

    pub(crate) fn view(&self, config: &Config, now: Instant) -> LeaseView<'_> {
        LeaseView {
            lease: &self.lease,
            token: self.token,
            deliver_until: self.deliver_until(config, now),
        }
    }

    pub(crate) fn forget_timers(&self, ctx: &mut Ctx<R>) {
        ctx.timers.release(self.timers);
    }

    /// Issues whatever is next, in this order:
    /// 1. the tenure's window: once it has closed (and no write in flight may reopen it), the
    ///    lease is lost;
    /// 2. the tenure's next write, by priority: the checkpoint the processor asked for first,
    ///    then the last write the session is ready for, then a renewal that is due (none while
    ///    an abandoned processor's call still runs: the lease is left to expire);
    /// 3. while leaving, only: what was read ahead is dropped, and an idle processor is asked to
    ///    shut down;
    /// 4. otherwise the session's next processor call, fed by the reader, then the reader's next
    ///    request.
    pub(crate) fn step(&mut self, ctx: &mut Ctx<R>) {
        if self.gone {
            return;
        }
        let frozen = self.session.abandoned_call_running();
        if !self.outlived && !self.tenure.window_holds(ctx, self.timers, frozen) {
            // The window of an abandoned processor's lease stopped following the heartbeats:
            // under worker liveness nobody takes a lease of a live worker, so it is left by its
            // last write (a call still running is cancelled at the window's end, the driver's
            // contract), also when the call returned after its window had closed.
            if !(self.session.is_abandoned() && ctx.config.worker_liveness()) {
                return self.lose(ctx);
            }
            self.outlived = true;
            self.session.abandoned_call_outlived();
        }
        self.next_write(ctx);
        if self.session.is_leaving() {
            self.reader.clear();
            self.session
                .ask_to_shut_down(ctx, &self.lease.key, self.token);
        } else {
            self.step_session(ctx);
        }
        debug_assert!(
            !self.session.is_abandoned() || !self.session.checkpoints.has_unsent(),
            "no checkpoint waits to be sent once the processor is abandoned"
        );
        debug_assert!(
            !self.session.is_leaving() || !self.reader.has_batch(),
            "nothing is read ahead while leaving"
        );
    }

    fn step_session(&mut self, ctx: &mut Ctx<R>) {
        let shard = &self.lease.key;
        match self.session.step() {
            Step::Wait => {}
            Step::Initialize => self.session.initialize(ctx, &self.lease, self.token),
            Step::StartReading => self
                .reader
                .request_iterator(ctx, self.timers, shard, self.token),
            Step::EndShard => self.session.end_shard(ctx, shard, self.token),
            Step::Read { idle } => {
                if idle {
                    self.deliver(ctx);
                }
                self.reader.fetch(
                    ctx,
                    self.timers,
                    &self.lease.key,
                    self.lease.hash_range,
                    self.token,
                );
                if self.session.step() == (Step::Read { idle: true })
                    && self.reader.end_reached(ctx.now)
                {
                    let children = self.reader.take_end();
                    self.create_children(ctx, children);
                    // The phase moved on (with no children to create, to the end itself): take
                    // its step now. It reads no more, so this recurses once.
                    self.step_session(ctx);
                }
            }
        }
    }

    fn deliver(&mut self, ctx: &mut Ctx<R>) {
        if !self.reader.has_batch() {
            return;
        }
        if self.deliver_until(&ctx.config, ctx.now).is_none() {
            self.tenure.wait_for_delivery(ctx, self.timers);
            return;
        }
        let Some((records, millis_behind_latest)) = self.reader.next_batch() else {
            return;
        };
        let bytes = self.session.deliver(
            ctx,
            &self.lease.key,
            self.token,
            records,
            millis_behind_latest,
        );
        self.tenure.delivered_bytes(bytes);
    }

    // ---- the tenure's writes ---------------------------------------------------------------

    fn next_write(&mut self, ctx: &mut Ctx<R>) {
        match self.tenure.poll(ctx, self.timers) {
            Next::Wait => return,
            Next::VerifyRead => return self.send_verify_read(ctx),
            Next::Write => {}
        }
        let shard = self.lease.key.clone();
        let counter = self.lease.counter;
        let holder = ctx.id.clone();
        let checkpoint = self.session.checkpoints.next_write(ctx, &self.lease);
        let (op, write) = if let Some(job) = checkpoint {
            let op = LeaseOp::Checkpoint {
                shard,
                counter,
                holder,
                at: job.position.clone(),
                kind: job.kind.clone(),
            };
            (op, OwnWrite::Checkpoint(alloc::boxed::Box::new(job)))
        } else if let Some(leave) = self
            .session
            .last_write(&holder, self.lease.checkpoint_owner.as_ref())
        {
            let op = match leave {
                Leave::CompleteHandoff => LeaseOp::CompleteHandoff {
                    shard,
                    counter,
                    holder,
                },
                Leave::Release(_) => LeaseOp::Release {
                    shard,
                    counter,
                    holder,
                },
                Leave::FinishShard => LeaseOp::FinishShard {
                    shard,
                    counter,
                    holder,
                    children: self
                        .session
                        .children()
                        .iter()
                        .map(|c| c.shard_id.clone())
                        .collect(),
                },
            };
            (op, OwnWrite::Leave(leave))
        } else if self.tenure.renew_due() && !self.session.abandoned_call_running() {
            let op = LeaseOp::Renew {
                shard,
                counter,
                holder,
                throughput_kbps: self.tenure.renewal_throughput(&ctx.config),
            };
            (op, OwnWrite::Renew)
        } else {
            return;
        };
        self.tenure.sent(ctx.now, write);
        ctx.own_write(&op, self.token);
    }

    /// The answer to this lease's own write.
    pub(crate) fn written(&mut self, ctx: &mut Ctx<R>, result: Result<Option<Item>, Failure>) {
        let outcome = match &result {
            Ok(_) => self.tenure.written(ctx, Ok(())),
            Err(f) => self.tenure.written(ctx, Err(f)),
        };
        let Some(outcome) = outcome else {
            ctx.stats.stale_results += 1;
            return;
        };
        if matches!(result, Err(Failure::ConditionFailed)) {
            self.session.checkpoints.refused();
            // A refused write wrote nothing; an abandoned processor's checkpoint is answered
            // now, not sent again (the processor was told its lease is lost).
            if self.session.is_abandoned() {
                self.session.checkpoints.refuse_unsent(
                    ctx,
                    &self.lease.key,
                    CheckpointError::LeaseLost,
                );
            }
        }
        match outcome {
            Written::Landed(write) => {
                self.lease.counter += 1;
                match write {
                    OwnWrite::Renew => ctx.stats.renewals += 1,
                    OwnWrite::Checkpoint(job) => {
                        self.session.checkpoints.landed(ctx, &mut self.lease, &job)
                    }
                    OwnWrite::Leave(leave) => return self.finish(ctx, leave),
                }
                if let Ok(Some(item)) = result {
                    self.adopt_changes(ctx, &item);
                }
            }
            Written::Lost => self.lose(ctx),
            Written::Verify => self.send_verify_read(ctx),
            Written::Failed { write, throttled } => {
                if let OwnWrite::Checkpoint(_) = write {
                    self.session
                        .checkpoints
                        .failed(ctx, &self.lease.key, throttled);
                }
            }
        }
    }

    fn send_verify_read(&mut self, ctx: &mut Ctx<R>) {
        self.tenure.verify_read_sent();
        ctx.read(
            self.lease.key.as_str(),
            Pending::ReadOwn {
                shard: self.lease.key.clone(),
                token: self.token,
                expect_counter: self.lease.counter + 1,
            },
        );
    }

    /// The answer to the read that follows a refused write.
    pub(crate) fn verified(
        &mut self,
        ctx: &mut Ctx<R>,
        expect_counter: u64,
        result: Result<Option<Item>, Failure>,
    ) {
        let row = match &result {
            Ok(Some(item)) => Lease::from_item(item).ok(),
            _ => None,
        };
        let me = &ctx.id;
        let seen = match &row {
            _ if result.is_err() => RowSeen::Unread,
            Some(row)
                if row.counter == expect_counter
                    && (row.owner.as_ref() == Some(me)
                        || row.checkpoint_owner.as_ref() == Some(me)) =>
            {
                RowSeen::OwnWriteLanded
            }
            Some(row)
                if row.counter == self.lease.counter
                    && row.owner.as_ref() != Some(me)
                    && row.checkpoint_owner.as_ref() == Some(me) =>
            {
                RowSeen::HandoffUnseen
            }
            _ => RowSeen::Moved,
        };
        match self.tenure.verified(ctx, seen) {
            None | Some(Verified::Retry) => {}
            Some(Verified::Lost) => self.lose(ctx),
            Some(Verified::HandoffUnseen) => {
                // The next write completes the handoff ([`ProcessorSession::last_write`]).
                if let Some(row) = row {
                    self.lease.owner = row.owner;
                    self.lease.checkpoint_owner = row.checkpoint_owner;
                }
            }
            Some(Verified::Held(write)) => {
                let Some(row) = row else { return };
                // One of this worker's own writes of unknown outcome landed: adopt its counter.
                self.lease.counter = row.counter;
                if let OwnWrite::Checkpoint(job) = write {
                    if job.shown_by(&row) {
                        self.session.checkpoints.landed(ctx, &mut self.lease, &job);
                    }
                }
                self.lease.owner = row.owner;
                self.lease.checkpoint_owner = row.checkpoint_owner;
                self.notice_handoff(ctx);
            }
        }
    }

    /// Takes from the row its own write returned what others may have changed (see
    /// [`Followed`]): a handoff request shows up here.
    fn adopt_changes(&mut self, ctx: &mut Ctx<R>, item: &Item) {
        match Followed::from_item(item) {
            Ok(row) => {
                follow(&mut self.lease.owner, row.owner);
                follow(&mut self.lease.checkpoint_owner, row.checkpoint_owner);
                self.lease.extra = row.extra(item);
                self.notice_handoff(ctx);
            }
            Err(error) => ctx.malformed(item, error),
        }
    }

    pub(crate) fn notice_handoff(&mut self, ctx: &mut Ctx<R>) {
        let me = &ctx.id;
        if self.lease.checkpoint_owner.as_ref() == Some(me) && self.lease.owner.as_ref() != Some(me)
        {
            self.begin_exit(ctx, Exit::Handoff);
        }
    }

    pub(crate) fn renew_due(&mut self) {
        self.tenure.set_renew_due();
    }

    /// Worker liveness: a heartbeat sent at `sent` landed. The window of a lease whose
    /// abandoned processor's call still runs stays where it was, so that it closes.
    pub(crate) fn heartbeat_landed(&mut self, sent: Instant) {
        if !self.session.abandoned_call_running() {
            self.tenure.heartbeat_landed(sent);
        }
    }

    // ---- leaving ---------------------------------------------------------------------------

    /// Starts leaving the lease (handoff requested, worker shutdown).
    pub(crate) fn begin_exit(&mut self, ctx: &mut Ctx<R>, exit: Exit) {
        if !self.session.begin_leaving(exit) {
            return;
        }
        let limit = match exit {
            Exit::Shutdown => ctx.config.shutdown_timeout,
            _ => ctx.config.handoff_timeout,
        };
        ctx.timers
            .set_lease(self.timers, LeaseTimer::HandoffTimeout, ctx.now + limit);
    }

    /// The processor did not finish leaving in time.
    pub(crate) fn handoff_timed_out(&mut self, ctx: &mut Ctx<R>) {
        self.session.give_up_waiting(ctx, &self.lease.key);
    }

    fn finish(&mut self, ctx: &mut Ctx<R>, leave: Leave) {
        let reason = match leave {
            Leave::CompleteHandoff => {
                ctx.stats.handoffs_completed += 1;
                match self.session.exit() {
                    Some(Exit::Shutdown) => ReleaseReason::Shutdown,
                    Some(Exit::ProcessorFailed) => ReleaseReason::ProcessorFailed,
                    _ => ReleaseReason::HandedOver,
                }
            }
            Leave::Release(reason) => reason,
            Leave::FinishShard => {
                self.lease.checkpoint = Position::ShardEnd;
                ReleaseReason::ShardEnded
            }
        };
        // Requests made while the last write was in flight were never sent.
        self.session.checkpoints.end(ctx, &self.lease.key);
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
        self.session.lose(ctx, &self.lease.key);
        ctx.stats.leases_lost += 1;
        ctx.event(Event::LeaseReleased {
            shard: self.lease.key.clone(),
            reason: ReleaseReason::Lost,
        });
        self.gone = true;
    }

    // ---- the processor ---------------------------------------------------------------------

    pub(crate) fn processor_returned(
        &mut self,
        ctx: &mut Ctx<R>,
        call: crate::io::CallId,
        failed: bool,
    ) {
        let returned = self
            .session
            .processor_returned(ctx, &self.lease.key, call, failed);
        if returned == Returned::Initialized {
            self.reader.start_at(
                &self.lease.checkpoint,
                self.lease.starting_timestamp,
                &ctx.config,
            );
        }
    }

    pub(crate) fn checkpoint_requested(
        &mut self,
        ctx: &mut Ctx<R>,
        ticket: u64,
        ask: CheckpointAsk,
    ) {
        if self.gone {
            ctx.call(
                &self.lease.key,
                crate::io::ProcessorCall::CheckpointDone {
                    ticket,
                    result: Err(CheckpointError::LeaseLost),
                },
            );
            return;
        }
        self.session
            .checkpoint_requested(ctx, &self.lease, ticket, ask);
    }

    // ---- parents, the reader's answers and children -----------------------------------------

    /// Reads the parents' leases (again); with none, the shard starts at once.
    pub(crate) fn read_parents(&mut self, ctx: &mut Ctx<R>) {
        let parents = &self.lease.parent_shard_ids;
        self.session.await_parents(parents.len());
        for p in parents {
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
        let finished = match result {
            Ok(None) => true,
            Ok(Some(item)) => Lease::from_item(&item).is_ok_and(|l| l.is_finished()),
            Err(_) => false,
        };
        if self.session.parent_read(finished) == ParentsRead::Blocked {
            ctx.timers.set_lease(
                self.timers,
                LeaseTimer::Parents,
                ctx.now + ctx.config.parent_poll_interval,
            );
        }
    }

    /// The stream no longer lists this shard: it is finished as if its end had been read (what
    /// was read ahead is delivered first), with no children to create (shard sync creates them
    /// from the listing).
    pub(crate) fn shard_gone(&mut self, ctx: &mut Ctx<R>) {
        if self.reader.mark_gone(ctx.now) {
            self.session.reading();
            ctx.stats.shards_gone += 1;
            ctx.event(Event::ShardGone {
                shard: self.lease.key.clone(),
            });
        }
    }

    pub(crate) fn iterator_obtained(&mut self, ctx: &mut Ctx<R>, result: Result<Text, Failure>) {
        if self.reader.iterator_obtained(ctx, self.timers, result) {
            self.session.reading();
        }
    }

    /// Kinesis answers this worker again: the reader's backoff ends now.
    pub(crate) fn read_now(&mut self, ctx: &mut Ctx<R>) {
        self.reader.retry_now(ctx, self.timers);
    }

    /// The stream refused this shard's starting position although it still lists the shard:
    /// reported once per run of refusals (the reader asks again after its backoff).
    pub(crate) fn start_refused(&mut self, ctx: &mut Ctx<R>, reason: alloc::string::String) {
        if let Some(position) = self.reader.refusal_to_report() {
            ctx.stats.iterators_refused += 1;
            ctx.event(Event::IteratorRefused {
                shard: self.lease.key.clone(),
                position,
                reason,
            });
        }
    }

    pub(crate) fn records_fetched(
        &mut self,
        ctx: &mut Ctx<R>,
        result: Result<FetchedRecords<R>, Failure>,
    ) {
        self.reader
            .records_fetched(ctx, self.timers, result, self.session.last_delivered());
    }

    /// Creates the leases of the children split off this shard. A merged child is left to shard
    /// sync, which creates it once every parent's lease exists: created now, before the other
    /// parent's lease, its owner would take that missing parent for finished.
    fn create_children(&mut self, ctx: &mut Ctx<R>, children: alloc::vec::Vec<ChildShard>) {
        let mut creating = 0;
        for child in children
            .iter()
            .filter(|c| c.parents.iter().all(|p| p == &self.lease.key))
        {
            let mut lease = Lease::new(child.shard_id.clone(), Position::TrimHorizon);
            lease.parent_shard_ids = child.parents.clone();
            lease.parent_shard_ids.sort_unstable();
            lease.hash_range = child.hash_range;
            ctx.write(
                &LeaseOp::Create {
                    lease: alloc::boxed::Box::new(lease),
                },
                WriteOp::Create {
                    child_of: Some((self.lease.key.clone(), self.token)),
                },
            );
            creating += 1;
        }
        self.session.shard_end(children, creating);
    }

    /// A child lease was created (or already existed), or not.
    pub(crate) fn child_created(&mut self, ctx: &mut Ctx<R>, ok: bool) {
        if let Some(children) = self.session.child_created(ok) {
            self.reader.retry_end(ctx, self.timers, children);
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

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::io::{
        BasicRecord, CheckpointError, CheckpointTarget, Command, Event, Failure, FencingToken,
        Input, ProcessorCall, ReleaseReason,
    };
    use crate::lease::{LeaseKey, WorkerId};
    use crate::sequence::{Position, RecordPosition, SequenceNumber};
    use crate::worker::testing::{at, record, unowned, Harness};
    use crate::write::WriteKind;

    /// A Java-2.x-style worker holding `shard-1`, its processor initialized.
    fn holding() -> Harness {
        let mut h = Harness::new(Config::kcl2(), "w1");
        h.put(&unowned("shard-1"));
        h.run_until(100);
        assert!(h.holds("shard-1"));
        assert!(matches!(
            h.calls("shard-1")[..],
            [ProcessorCall::Initialize { .. }]
        ));
        h
    }

    /// `holding()`, with records 1 to 5 delivered to the processor; the ownership's token.
    fn delivered() -> (Harness, FencingToken) {
        let mut h = holding();
        h.records = (1..=5).map(record).collect();
        h.run_until(1_000);
        let token = h
            .calls("shard-1")
            .iter()
            .find_map(|c| match c {
                ProcessorCall::ProcessRecords { records, token, .. } if records.len() == 5 => {
                    Some(*token)
                }
                _ => None,
            })
            .expect("the five records were delivered");
        (h, token)
    }

    fn ask(ticket: u64, token: FencingToken, n: u64, prepare: bool) -> Input<BasicRecord> {
        Input::CheckpointRequested {
            shard: LeaseKey::from("shard-1"),
            ticket,
            token,
            target: CheckpointTarget::At(at(n)),
            prepare,
            state: prepare.then(|| alloc::vec![n as u8]),
        }
    }

    fn commit_prepared(ticket: u64, token: FencingToken) -> Input<BasicRecord> {
        Input::CommitPreparedCheckpoint {
            shard: LeaseKey::from("shard-1"),
            ticket,
            token,
        }
    }

    fn checkpoint(h: &Harness) -> Position {
        h.lease("shard-1").expect("row").checkpoint
    }

    fn released(h: &Harness, why: ReleaseReason) -> bool {
        h.events().iter().any(|e| {
            matches!(e, Event::LeaseReleased { shard, reason } if shard.as_str() == "shard-1" && *reason == why)
        })
    }

    #[test]
    fn renewals_keep_the_window_open() {
        let mut h = holding();
        h.run_until(60_000);
        assert!(h.holds("shard-1"));
        assert!(h.w.delivery_deadline("shard-1").is_some());
        assert!(h.writes(WriteKind::Renew).len() >= 17, "every 3.3 s");
    }

    #[test]
    fn a_lease_cut_off_from_the_table_is_lost_when_its_window_closes() {
        let mut h = holding();
        h.cut_off = true;
        h.run_until(9_000);
        assert!(h.holds("shard-1"), "renewals sent since still may land");
        h.run_until(20_000);
        assert!(!h.holds("shard-1"));
        assert!(released(&h, ReleaseReason::Lost));
        assert_eq!(h.calls("shard-1").last(), Some(&&ProcessorCall::LeaseLost));
    }

    #[test]
    fn a_handoff_read_back_from_a_renewal_is_completed_after_shutdown_requested() {
        let mut h = holding();
        h.apply(&crate::protocol::LeaseOp::InitiateHandoff {
            shard: LeaseKey::from("shard-1"),
            from: WorkerId::from("w1"),
            to: WorkerId::from("w2"),
        });
        h.run_until(4_000);
        assert!(!h.holds("shard-1"));
        assert!(h
            .calls("shard-1")
            .iter()
            .any(|c| matches!(c, ProcessorCall::ShutdownRequested { .. })));
        assert_eq!(h.writes(WriteKind::CompleteHandoff).len(), 1);
        assert!(released(&h, ReleaseReason::HandedOver));
        let lease = h.lease("shard-1").expect("row");
        assert_eq!(lease.owner, Some(WorkerId::from("w2")));
        assert_eq!(lease.checkpoint_owner, None);
    }

    /// `holding()`, and the leader has just asked for a handoff to w2 that w1 has not seen yet
    /// (no renewal since): w1 leaves for `why` before its next renewal.
    fn leaving_before_seeing_a_handoff(why: &str) -> Harness {
        let mut h = holding();
        h.apply(&crate::protocol::LeaseOp::InitiateHandoff {
            shard: LeaseKey::from("shard-1"),
            from: WorkerId::from("w1"),
            to: WorkerId::from("w2"),
        });
        let shard = LeaseKey::from("shard-1");
        match why {
            "shutdown" => h.handle(Input::ShutdownRequested),
            _ => {
                h.processor_hangs = true;
                h.records = (1..=2).map(record).collect();
                h.run_until(1_000);
                let call = h
                    .log
                    .iter()
                    .rev()
                    .find_map(|c| match c {
                        Command::Processor {
                            call,
                            action: ProcessorCall::ProcessRecords { .. },
                            ..
                        } => Some(*call),
                        _ => None,
                    })
                    .expect("a batch");
                h.handle(Input::ProcessorFailed { shard, call });
            }
        }
        h.run_until(3_000);
        h
    }

    /// A holder that gives its lease up before it has seen a handoff leaves it to the receiver:
    /// its release must not remove the receiver's ownership (Java's evict removes only the
    /// checkpoint owner).
    #[test]
    fn a_release_before_the_handoff_is_seen_completes_it_instead() {
        for why in ["shutdown", "processor failure"] {
            let h = leaving_before_seeing_a_handoff(why);
            assert!(!h.holds("shard-1"), "{why}");
            let row = h.lease("shard-1").expect("row");
            assert_eq!(
                row.owner,
                Some(WorkerId::from("w2")),
                "{why}: the receiver's"
            );
            assert_eq!(row.checkpoint_owner, None, "{why}");
            assert_eq!(h.writes(WriteKind::CompleteHandoff).len(), 1, "{why}");
            let reason = if why == "shutdown" {
                ReleaseReason::Shutdown
            } else {
                ReleaseReason::ProcessorFailed
            };
            assert!(released(&h, reason), "{why}: {:?}", h.events());
        }
    }

    #[test]
    fn a_renewal_of_unknown_outcome_is_verified_when_the_next_is_refused() {
        let mut h = holding();
        h.unknown_outcome = Some(WriteKind::Renew);
        h.run_until(20_000);
        let reads = h
            .log
            .iter()
            .filter(|c| matches!(c, Command::ReadLease { key, .. } if key == "shard-1"))
            .count();
        assert_eq!(reads, 1, "one verification read");
        assert!(h.holds("shard-1"), "the renewal that timed out had landed");
        assert!(!released(&h, ReleaseReason::Lost));
        assert_eq!(h.w.stats().condition_failures, 1);
    }

    #[test]
    fn a_checkpoint_behind_one_asked_before_it_is_refused_when_its_turn_comes() {
        let (mut h, token) = delivered();
        // A processor and its clone ask before either is written.
        h.w.handle(h.now, ask(1, token, 5, false));
        h.w.handle(h.now, ask(2, token, 3, false));
        h.pump();
        assert_eq!(checkpoint(&h), Position::Record(at(5)));
        assert_eq!(
            h.checkpoint_answers(),
            [(1, Ok(())), (2, Err(CheckpointError::Backwards))]
        );
    }

    #[test]
    fn a_prepared_checkpoint_is_committed_as_the_row_is_when_its_turn_comes() {
        let (mut h, token) = delivered();
        h.handle(ask(1, token, 4, true));
        assert_eq!(h.checkpoint_answers(), [(1, Ok(()))]);
        // A commit beyond the prepared position, and the commit of the prepared one behind it.
        h.w.handle(h.now, ask(2, token, 5, false));
        h.w.handle(h.now, commit_prepared(3, token));
        h.pump();
        assert_eq!(checkpoint(&h), Position::Record(at(5)));
        assert_eq!(
            h.checkpoint_answers(),
            [
                (1, Ok(())),
                (2, Ok(())),
                (3, Err(CheckpointError::NothingPrepared))
            ]
        );
    }

    #[test]
    fn a_checkpoint_of_unknown_outcome_is_settled_before_anything_behind_it() {
        let (mut h, token) = delivered();
        h.unknown_outcome = Some(WriteKind::Checkpoint);
        h.handle(ask(1, token, 5, false));
        h.run_until(3_000);
        h.handle(ask(2, token, 3, false));
        h.run_until(6_000);
        assert_eq!(checkpoint(&h), Position::Record(at(5)));
        assert_eq!(
            h.checkpoint_answers(),
            [(1, Ok(())), (2, Err(CheckpointError::Backwards))],
            "the first landed (its answer was lost) and the second is behind it"
        );
        assert!(h.holds("shard-1"));
    }

    /// Worker liveness: a checkpoint write is in flight when the processor fails (it is
    /// abandoned), and the write is refused by its condition, so the row is read to decide.
    /// Nothing was written, and an abandoned processor's checkpoint is not sent again: it is
    /// answered at once (found by driver mode's rolling deploy, seed 1, lease -> default).
    #[test]
    fn a_refused_checkpoint_of_an_abandoned_processor_is_answered_not_sent_again() {
        let mut h = Harness::new(Config::default(), "w1");
        h.put(&unowned("shard-1"));
        h.run_until(1_000);
        assert!(h.holds("shard-1"));
        h.records = (1..=5).map(record).collect();
        h.run_until(2_000);
        let token = h
            .calls("shard-1")
            .iter()
            .find_map(|c| match c {
                ProcessorCall::ProcessRecords { token, .. } => Some(*token),
                _ => None,
            })
            .expect("records delivered");
        h.processor_hangs = true;
        h.records = (6..=7).map(record).collect();
        h.run_until(3_000);
        let busy = h.call_in_flight("shard-1").expect("a batch under way");
        h.cut_off = true;
        let from = h.log.len();
        h.handle(ask(1, token, 5, false));
        let (req, write) = h.log[from..]
            .iter()
            .find_map(|c| match c {
                Command::WriteLease { req, write } if write.kind == WriteKind::Checkpoint => {
                    Some((*req, write.clone()))
                }
                _ => None,
            })
            .expect("the checkpoint was sent");
        h.handle(Input::ProcessorFailed {
            shard: LeaseKey::from("shard-1"),
            call: busy,
        });
        h.handle(Input::LeaseWritten {
            req,
            result: Err(Failure::ConditionFailed),
        });
        assert_eq!(
            h.checkpoint_answers(),
            [(1, Err(CheckpointError::LeaseLost))]
        );
        h.cut_off = false;
        let sent = |h: &Harness| {
            h.log
                .iter()
                .filter(|c| matches!(c, Command::WriteLease { write: w, .. } if *w == write))
                .count()
        };
        let before = sent(&h);
        h.run_until(30_000);
        assert_eq!(sent(&h), before, "sent again");
        assert_eq!(h.checkpoint_answers().len(), 1, "answered once");
    }

    #[test]
    fn a_checkpoint_whose_outcome_is_unknown_when_the_lease_is_lost_says_so() {
        let (mut h, token) = delivered();
        h.unknown_outcome = Some(WriteKind::Checkpoint);
        h.handle(ask(1, token, 5, false));
        h.cut_off = true;
        h.w.handle(h.now, ask(2, token, 5, false));
        h.run_until(30_000);
        assert!(!h.holds("shard-1"));
        assert_eq!(
            h.checkpoint_answers(),
            [
                (1, Err(CheckpointError::OutcomeUnknown)),
                (2, Err(CheckpointError::LeaseLost))
            ]
        );
    }

    #[test]
    fn checkpoints_asked_while_the_last_write_is_in_flight_are_answered() {
        let (mut h, token) = delivered();
        // The release is in flight when the processor asks.
        h.cut_off = true;
        h.handle(Input::ShutdownRequested);
        h.run_until(2_000);
        assert_eq!(
            h.writes(WriteKind::Release).len(),
            1,
            "the release was sent"
        );
        h.handle(ask(1, token, 5, false));
        h.cut_off = false;
        let req = h
            .log
            .iter()
            .rev()
            .find_map(|c| match c {
                Command::WriteLease { req, write } if write.kind == WriteKind::Release => {
                    Some(*req)
                }
                _ => None,
            })
            .expect("release");
        let write = h.writes(WriteKind::Release)[0].clone();
        let result = h.write(&write);
        h.handle(Input::LeaseWritten { req, result });
        assert!(!h.holds("shard-1"));
        assert_eq!(
            h.checkpoint_answers(),
            [(1, Err(CheckpointError::LeaseLost))]
        );
    }

    /// `holding()`, its shard at its end and the processor's `shard_ended` under way.
    fn ending() -> Harness {
        let mut h = holding();
        h.shard_closed = true;
        h.processor_hangs = true;
        // The next read finds the end (within the idle time between reads); the end is acted
        // on when that time is up, not at the next renewal.
        h.run_until(2_200);
        assert!(matches!(
            h.calls("shard-1").last(),
            Some(ProcessorCall::ShardEnded { .. })
        ));
        h
    }

    /// The processor's `shard_ended` returns; then the worker goes on until `ms`.
    fn shard_ended_returns(h: &mut Harness, ms: u64) {
        let call = h.call_in_flight("shard-1").expect("shard_ended");
        h.processor_hangs = false;
        h.handle(Input::ProcessorReturned {
            shard: LeaseKey::from("shard-1"),
            call,
        });
        h.run_until(ms);
    }

    fn shard_end_won(h: &Harness) {
        let after_end: alloc::vec::Vec<_> = h
            .calls("shard-1")
            .into_iter()
            .skip_while(|c| !matches!(c, ProcessorCall::ShardEnded { .. }))
            .skip(1)
            .collect();
        assert!(
            !after_end
                .iter()
                .any(|c| matches!(c, ProcessorCall::ShutdownRequested { .. })),
            "shutdown_requested after shard_ended: {after_end:?}"
        );
        assert_eq!(checkpoint(h), Position::ShardEnd);
        assert!(released(h, ReleaseReason::ShardEnded));
        assert!(h.writes(WriteKind::CompleteHandoff).is_empty());
        assert!(h.writes(WriteKind::Release).is_empty());
    }

    #[test]
    fn shard_end_wins_over_a_handoff_asked_while_shard_ended_runs() {
        let mut h = ending();
        h.apply(&crate::protocol::LeaseOp::InitiateHandoff {
            shard: LeaseKey::from("shard-1"),
            from: WorkerId::from("w1"),
            to: WorkerId::from("w2"),
        });
        h.run_until(9_000);
        assert!(h.holds("shard-1"), "shard_ended is still running");
        shard_ended_returns(&mut h, 11_000);
        shard_end_won(&h);
        let row = h.lease("shard-1").expect("row");
        assert_eq!(
            (row.owner, row.checkpoint_owner),
            (None, None),
            "w2 will not acquire it"
        );
    }

    #[test]
    fn shard_end_wins_over_a_shutdown_asked_while_shard_ended_runs() {
        let mut h = ending();
        h.handle(Input::ShutdownRequested);
        h.run_until(6_000);
        shard_ended_returns(&mut h, 11_000);
        shard_end_won(&h);
    }

    #[test]
    fn a_last_write_refused_because_an_own_write_of_unknown_outcome_landed_is_verified() {
        let mut h = holding();
        h.unknown_outcome = Some(WriteKind::Renew);
        h.run_until(3_500);
        assert_eq!(
            h.writes(WriteKind::Renew).len(),
            1,
            "landed, answered with a timeout"
        );
        // The release goes out with the counter the worker knows, one behind the row's.
        h.handle(Input::ShutdownRequested);
        h.run_until(8_000);
        assert!(released(&h, ReleaseReason::Shutdown), "{:?}", h.events());
        assert!(!released(&h, ReleaseReason::Lost));
        assert_eq!(
            h.lease("shard-1").and_then(|l| l.owner),
            None,
            "not stranded"
        );
    }

    /// `holding()`, a batch running in the processor when the leader asks for a handoff to w2.
    fn handing_off_a_running_batch() -> Harness {
        let mut h = holding();
        h.processor_hangs = true;
        h.records = (1..=5).map(record).collect();
        h.run_until(1_000);
        assert!(matches!(
            h.calls("shard-1").last(),
            Some(ProcessorCall::ProcessRecords { .. })
        ));
        h.apply(&crate::protocol::LeaseOp::InitiateHandoff {
            shard: LeaseKey::from("shard-1"),
            from: WorkerId::from("w1"),
            to: WorkerId::from("w2"),
        });
        h
    }

    #[test]
    fn a_handoff_that_times_out_is_not_completed_while_the_batch_still_runs() {
        let mut h = handing_off_a_running_batch();
        // The handoff is noticed at the next renewal (about 3 s) and times out 30 s later.
        h.run_until(34_500);
        assert!(h.calls("shard-1").contains(&&ProcessorCall::LeaseLost));
        assert!(h.holds("shard-1"), "the batch still runs");
        let renewals = h.writes(WriteKind::Renew).len();
        h.run_until(60_000);
        assert_eq!(
            h.writes(WriteKind::Renew).len(),
            renewals,
            "no more renewals"
        );
        assert!(
            h.writes(WriteKind::CompleteHandoff).is_empty(),
            "never while it runs"
        );
        assert!(
            released(&h, ReleaseReason::Lost),
            "the window closed: the lease expires"
        );
        let row = h.lease("shard-1").expect("row");
        assert_eq!(
            row.checkpoint_owner,
            Some(WorkerId::from("w1")),
            "left to expire"
        );
    }

    #[test]
    fn a_handoff_that_timed_out_is_completed_once_the_batch_returns() {
        let mut h = handing_off_a_running_batch();
        h.run_until(34_500);
        assert!(h.calls("shard-1").contains(&&ProcessorCall::LeaseLost));
        let call = h.call_in_flight("shard-1").expect("the batch");
        h.processor_hangs = false;
        h.handle(Input::ProcessorReturned {
            shard: LeaseKey::from("shard-1"),
            call,
        });
        h.run_until(36_000);
        assert_eq!(h.writes(WriteKind::CompleteHandoff).len(), 1);
        assert!(released(&h, ReleaseReason::HandedOver));
        assert_eq!(h.lease("shard-1").and_then(|l| l.checkpoint_owner), None);
    }

    /// A worker about to take `shard-1`, whose GetShardIterator answers NotFound; the stream
    /// lists `listed`.
    fn vanishing(listed: &[&str]) -> Harness {
        let mut h = listing(listed);
        h.iterator_failure = Some(Failure::NotFound);
        h
    }

    /// A worker about to take `shard-1`; the stream lists `listed`.
    fn listing(listed: &[&str]) -> Harness {
        let mut h = Harness::new(Config::kcl2(), "w1");
        h.shards = listed
            .iter()
            .map(|id| crate::io::ShardDescription {
                shard_id: LeaseKey::from(*id),
                parent: None,
                adjacent_parent: None,
                hash_range: crate::lease::HashKeyRange { start: 0, end: 1 },
                closed: false,
            })
            .collect();
        h.put(&unowned("shard-1"));
        h
    }

    fn finished_as_gone(h: &Harness) -> bool {
        h.w.stats().shards_gone == 1
            && checkpoint(h) == Position::ShardEnd
            && h.calls("shard-1")
                .iter()
                .any(|c| matches!(c, ProcessorCall::ShardEnded { .. }))
    }

    fn iterators_asked(h: &Harness) -> usize {
        h.log
            .iter()
            .filter(|c| matches!(c, Command::GetShardIterator { .. }))
            .count()
    }

    #[test]
    fn a_shard_the_stream_no_longer_lists_is_finished() {
        let mut h = vanishing(&["shard-2"]);
        h.run_until(10_000);
        assert!(
            h.calls("shard-1")
                .iter()
                .any(|c| matches!(c, ProcessorCall::ShardEnded { .. })),
            "{:?}",
            h.calls("shard-1")
        );
        assert_eq!(checkpoint(&h), Position::ShardEnd);
        assert!(released(&h, ReleaseReason::ShardEnded));
        assert_eq!(h.w.stats().shards_gone, 1);
        assert!(h
            .events()
            .iter()
            .any(|e| matches!(e, Event::ShardGone { shard } if shard.as_str() == "shard-1")));
    }

    #[test]
    fn a_shard_not_found_but_still_listed_is_read_again() {
        let mut h = vanishing(&["shard-1"]);
        h.run_until(20_000);
        assert!(h.holds("shard-1"));
        assert_eq!(checkpoint(&h), Position::TrimHorizon);
        assert_eq!(h.w.stats().shards_gone, 0);
        let iterators = iterators_asked(&h);
        assert!(iterators >= 3, "asked again: {iterators}");
        // Once the stream answers, it reads on.
        h.iterator_failure = None;
        h.run_until(60_000);
        assert!(h
            .log
            .iter()
            .any(|c| matches!(c, Command::GetRecords { .. })));
    }

    #[test]
    fn a_shard_whose_records_are_not_found_any_more_is_finished_once_unlisted() {
        let mut h = listing(&["shard-2"]);
        h.records_failure = Some(Failure::NotFound);
        h.run_until(10_000);
        assert!(finished_as_gone(&h), "{:?}", h.calls("shard-1"));
    }

    #[test]
    fn an_iterator_refused_for_a_shard_no_longer_listed_finishes_it() {
        let mut h = listing(&["shard-2"]);
        h.iterator_failure = Some(Failure::InvalidArgument(crate::io::ServiceError::new(
            "InvalidArgumentException",
            "not of this stream",
        )));
        h.run_until(10_000);
        assert!(finished_as_gone(&h), "{:?}", h.calls("shard-1"));
    }

    /// A listed shard that refuses its checkpoint (a lease table left over from a deleted stream
    /// of the same name): nothing is skipped, the refusal is reported once and counted, and the
    /// iterator is asked again after a backoff.
    #[test]
    fn a_checkpoint_the_stream_refuses_is_reported_and_never_skipped() {
        let mut h = listing(&["shard-1"]);
        let mut lease = unowned("shard-1");
        lease.checkpoint = Position::Record(RecordPosition::new(
            SequenceNumber::parse("49590338271490256608559692538361571095921575989136588898")
                .expect("a sequence number"),
        ));
        h.put(&lease);
        h.iterator_failure = Some(Failure::InvalidArgument(crate::io::ServiceError::new(
            "InvalidArgumentException",
            "not of this stream",
        )));
        h.run_until(60_000);
        assert!(h.holds("shard-1"));
        assert_eq!(checkpoint(&h), lease.checkpoint);
        assert_eq!(h.w.stats().shards_gone, 0);
        assert_eq!(h.w.stats().iterators_refused, 1);
        let refusals = h
            .events()
            .iter()
            .filter(|e| matches!(e, Event::IteratorRefused { shard, .. } if shard.as_str() == "shard-1"))
            .count();
        assert_eq!(refusals, 1);
        let asked = iterators_asked(&h);
        assert!(
            (3..40).contains(&asked),
            "asked again, with a backoff: {asked}"
        );
        h.iterator_failure = None;
        h.run_until(120_000);
        assert!(h
            .log
            .iter()
            .any(|c| matches!(c, Command::GetRecords { .. })));
    }

    /// GetRecords refusing its iterator as invalid gets a new one where reading stood, as after
    /// an expired iterator (the same iterator would be refused forever), and the refusal is
    /// reported once (with enhanced fan-out it is the subscription's start that is refused).
    #[test]
    fn an_iterator_refused_by_get_records_is_replaced_and_reported_once() {
        let mut h = listing(&["shard-1"]);
        h.records_failure = Some(Failure::InvalidArgument(crate::io::ServiceError::new(
            "InvalidArgumentException",
            "bad iterator",
        )));
        h.run_until(2_000);
        let before = iterators_asked(&h);
        h.run_until(20_000);
        assert!(iterators_asked(&h) > before + 1, "{}", iterators_asked(&h));
        assert_eq!(h.w.stats().iterators_refused, 1);
        assert_eq!(h.w.stats().shards_gone, 0);
    }
}
