//! The [`Worker`]: one KCL worker's decisions, as a sans-IO state machine.

mod ctx;
mod election;
mod heads_up;
mod held;
mod in_flight;
mod inbox;
mod kinesis_reach;
mod leader;
mod registration;
mod shard_sync;
mod shutdown;
mod stats;
mod table_view;
mod taking;
#[cfg(test)]
mod testing;
mod timers;
mod vanished;

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::time::Duration;

use crate::config::{BalancingPolicy, Config, ConfigError};
use crate::io::{Command, FencingToken, Input, ProcessorCall, Record, RequestId, TimerReason};
use crate::lease::{Lease, LeaseKey, WorkerId};
use crate::observe::Observer;
use crate::protocol::CheckpointKind;
use crate::time::Instant;

use election::Election;
use held::{CheckpointAsk, HeldLease};
use inbox::Inbox;
use kinesis_reach::KinesisReach;
use leader::Planning;
use shard_sync::ShardSync;
use shutdown::Shutdown;
use table_view::TableView;
use taking::Taking;
use timers::{Due, LeaseTimer, TimerKey};
use vanished::Vanishing;

pub(crate) use ctx::{Ctx, Outstanding, Pending, Phase, WriteOp};
pub use stats::{LeaseView, Stats};

/// One KCL worker's brain: leases, heartbeats, balancing, handoff, checkpoints and the shard
/// lifecycle, decided from inputs and a clock value it is given.
///
/// # Drain order
///
/// After [`Worker::new`] and after every [`Worker::handle`] or [`Worker::handle_timeout`]:
/// 1. call [`Worker::poll_command`] until it returns `None`, carrying out each command (a command
///    may be acted on at once; its result comes back later through `handle`);
/// 2. call [`Worker::poll_timeout`] and wake the worker with `handle_timeout` at that instant, or
///    earlier with `handle` when a result arrives.
///
/// `now` must never go backwards (a smaller value is treated as the last one seen). Calling
/// `handle_timeout` early or twice is harmless. `poll_timeout` returns `None` only once the
/// worker has stopped.
///
/// The methods, in the order a driver meets them: getters ([`Worker::id`], [`Worker::stats`],
/// [`Worker::leases`], ...); the inputs ([`Worker::handle`], [`Worker::handle_timeout`]); the
/// outputs ([`Worker::poll_command`], [`Worker::poll_timeout`]).
///
/// # Safety of delivery
///
/// The worker hands records to a processor only while `now` is inside the delivery window of the
/// lease. With [`crate::config::Liveness::Worker`] (the default) no lease is renewed: the window
/// ends `failover_time - safety_margin` after the worker *sent* its last heartbeat that landed,
/// and the leader moves a lease only after fencing the worker whose heartbeat it saw stand still
/// for `failover_time` on its own clock. With [`crate::config::Liveness::Lease`] (and
/// `Kcl2Compatible`) the window runs from the sending of the lease's last own write that landed,
/// and another worker takes a lease only after seeing its counter unchanged for `failover_time`;
/// every take is conditional on that counter. Either way two workers never deliver the same
/// shard at the same true instant while their clock rates differ by less than
/// [`Config::tolerated_clock_rate_ratio`] (1.11 with the defaults). Each batch carries a
/// [`FencingToken`] for sinks that must also survive a process paused *after* the decision.
///
/// The writes behind this, with their conditions, are the protocol: [`crate::protocol`].
///
/// # Balancing
///
/// With [`BalancingPolicy::Coordinated`] one worker at a time is leader, elected through a
/// fenced leader row with the same counter-based expiry as shard leases. Only the leader plans
/// ([`crate::balance::plan`]); it and the standby its row names scan the table; every worker
/// writes a heartbeat row whose returned item carries the leases assigned to it, so scans cost
/// two reads of the table per `scan_interval` and `standby_scan_interval` whatever the fleet
/// size, instead of one per worker per taker interval as in the Java KCL 2.x. The workers that
/// will receive a silent worker's leases are told when its fence is due (a heads-up, rule 7 of
/// *Worker liveness* in [`crate::protocol`]) and heartbeat every `handoff_poll_interval` around
/// then. With [`BalancingPolicy::Kcl2Compatible`] every worker runs the Java 2.x
/// taker ([`crate::taker`]).
pub struct Worker<R> {
    ctx: Ctx<R>,
    /// Held leases, boxed: a `HeldLease` is large and B-tree nodes are often half empty.
    held: BTreeMap<LeaseKey, alloc::boxed::Box<HeldLease<R>>>,
    /// When this worker first saw each worker row's and the leader row's counter.
    observer: Observer,
    /// The timers firing at a wake-up, kept allocated between wake-ups.
    due: Vec<Due>,
    view: TableView,
    taking: Taking,
    election: Election,
    planning: Planning,
    inbox: Inbox,
    sync: ShardSync,
    shutdown: Shutdown,
    vanishing: Vanishing,
    kinesis: KinesisReach,
}

impl<R: Record + Clone> Worker<R> {
    /// A worker that starts acting at `now`. `seed` drives its only randomness (jitter, shuffles)
    /// and names its process in the lease table too (the incarnation its heartbeats carry): two
    /// processes built with one id and one seed would pass for one, so each process needs a seed
    /// of its own. A driver that wants reproducible choices uses [`Worker::with_incarnation`].
    pub fn new(config: Config, id: WorkerId, seed: u64, now: Instant) -> Result<Self, ConfigError> {
        Self::with_incarnation(config, id, seed, seed, now)
    }

    /// As [`Worker::new`], with the incarnations drawn from `incarnation_seed` too (the first,
    /// and those drawn when it registers again): `seed` keeps the worker's choices
    /// reproducible, and `incarnation_seed` must differ between any two processes (drivers take
    /// fresh entropy), so that a second process started with a live worker's id stops
    /// ([`Event::DuplicateWorkerId`](crate::Event::DuplicateWorkerId)) and a restarted one
    /// registers as new.
    pub fn with_incarnation(
        config: Config,
        id: WorkerId,
        seed: u64,
        incarnation_seed: u64,
        now: Instant,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let mut w = Self {
            ctx: Ctx::new(config, id, seed, now),
            held: BTreeMap::new(),
            observer: Observer::default(),
            due: Vec::new(),
            view: TableView::default(),
            taking: Taking::default(),
            election: Election::default(),
            planning: Planning::default(),
            inbox: Inbox::new(
                registration::incarnation(incarnation_seed),
                incarnation_seed ^ seed,
            ),
            sync: ShardSync::default(),
            shutdown: Shutdown::default(),
            vanishing: Vanishing::default(),
            kinesis: KinesisReach::default(),
        };
        w.start();
        Ok(w)
    }

    /// This worker's id.
    pub fn id(&self) -> &WorkerId {
        &self.ctx.id
    }

    /// Its configuration.
    pub fn config(&self) -> &Config {
        &self.ctx.config
    }

    /// What it did so far.
    pub fn stats(&self) -> &Stats {
        &self.ctx.stats
    }

    /// Whether it has stopped (after a shutdown).
    pub fn is_stopped(&self) -> bool {
        self.ctx.phase == Phase::Stopped
    }

    /// Whether it acts as leader at `now` (Coordinated only).
    pub fn is_leader(&self, now: Instant) -> bool {
        self.election.is_leader(&self.ctx.config, now)
    }

    /// Requests sent and not yet answered.
    pub fn pending_requests(&self) -> usize {
        self.ctx.pending_requests()
    }

    /// The leases it holds, in key order.
    pub fn leases(&self) -> impl Iterator<Item = LeaseView<'_>> + '_ {
        let now = self.ctx.now;
        self.held
            .values()
            .map(move |h| h.view(&self.ctx.config, now))
    }

    /// The rows of the leases this worker holds, in key order: [`Worker::leases`] without the
    /// delivery windows, which take a look at more of each lease's state.
    pub fn held_leases(&self) -> impl Iterator<Item = &Lease> + '_ {
        self.held.values().map(|h| &h.lease)
    }

    /// Until when (on its own clock) the worker may deliver records of `shard`; `None` when it
    /// may not. Checkers convert this to true time to judge exclusivity, which also covers a
    /// worker that is paused: a paused worker's window keeps its end.
    pub fn delivery_deadline(&self, shard: &str) -> Option<Instant> {
        self.held
            .get(shard)
            .and_then(|h| h.deliver_until(&self.ctx.config, self.ctx.now))
    }

    /// The end of `shard`'s lease window on this worker's clock: the sending of its last
    /// successful renewal (under worker liveness, of the worker's last heartbeat that landed)
    /// plus [`Config::delivery_window`]. From then on another worker may hold
    /// the lease, so nothing may be done for it any more: a driver cancels a processor call of
    /// the shard still running then. The end may lie in the past (a renewal of unknown outcome
    /// is being verified; the lease is not given up until that is known). `None` when the
    /// worker does not hold the lease.
    pub fn lease_window_end(&self, shard: &str) -> Option<Instant> {
        self.held
            .get(shard)
            .filter(|h| !h.is_gone())
            .map(|h| h.window_end(&self.ctx.config))
    }

    /// Feeds one input observed at `now`.
    pub fn handle(&mut self, now: Instant, input: Input<R>) {
        self.advance(now);
        // Every checkpoint request is answered, even one made after the worker stopped (it
        // holds nothing then, so `checkpoint_requested` answers ShuttingDown).
        let checkpoint_request = matches!(
            input,
            Input::CheckpointRequested { .. } | Input::CommitPreparedCheckpoint { .. }
        );
        if self.ctx.phase == Phase::Stopped && !checkpoint_request {
            self.ctx.stats.stale_results += 1;
            return;
        }
        match input {
            Input::ShutdownRequested => self.shutdown(),
            Input::ProcessorReturned { shard, call } => {
                self.with_held(&shard, |h, ctx| h.processor_returned(ctx, call, false))
            }
            Input::ProcessorFailed { shard, call } => {
                self.with_held(&shard, |h, ctx| h.processor_returned(ctx, call, true))
            }
            Input::CheckpointRequested {
                shard,
                ticket,
                token,
                target,
                prepare,
                state,
            } => {
                let kind = if prepare {
                    CheckpointKind::Prepare { state }
                } else {
                    CheckpointKind::Commit
                };
                self.checkpoint_requested(
                    shard,
                    ticket,
                    token,
                    CheckpointAsk::Move { target, kind },
                )
            }
            Input::CommitPreparedCheckpoint {
                shard,
                ticket,
                token,
            } => self.checkpoint_requested(shard, ticket, token, CheckpointAsk::CommitPrepared),
            Input::LeaseTableScanned { req, result } => match self.take_pending(req) {
                Some(Pending::Scan) => self.scanned(result),
                other => self.unexpected(req, other),
            },
            Input::ShardsListed { req, result } => match self.take_pending(req) {
                Some(Pending::ListShards) => {
                    self.kinesis_answered(&result);
                    self.shards_listed(result)
                }
                Some(Pending::ListGone) => {
                    self.kinesis_answered(&result);
                    self.gone_listed(result)
                }
                Some(Pending::ProbeKinesis) => self.probe_answered(&result),
                other => self.unexpected(req, other),
            },
            Input::LeaseRead { req, result } => match self.take_pending(req) {
                Some(Pending::ReadParent { shard, token }) => {
                    self.with_token(&shard, token, |h, ctx| h.parent_read(ctx, result));
                }
                Some(Pending::ReadOwn {
                    shard,
                    token,
                    expect_counter,
                }) => {
                    self.with_token(&shard, token, |h, ctx| {
                        h.verified(ctx, expect_counter, result)
                    });
                }
                Some(Pending::ReadLeader) => self.leader_read(result),
                Some(Pending::ReadWorkerRow) => self.worker_row_read(result),
                Some(Pending::ConfirmSilent { worker, liveness }) => {
                    self.silence_read(worker, liveness, result)
                }
                Some(Pending::ReadAcquire { shard }) => self.acquire_read(req, shard, result),
                other => self.unexpected(req, other),
            },
            Input::LeaseWritten { req, result } => match self.take_pending(req) {
                Some(Pending::OwnWrite { shard, token }) => self.own_written(shard, token, result),
                Some(Pending::Write { key, op, sent }) => self.written(req, key, op, sent, result),
                other => self.unexpected(req, other),
            },
            Input::IteratorObtained { req, result } => match self.take_pending(req) {
                Some(Pending::Iterator { shard, token }) => {
                    if let Err(f) = &result {
                        // An iterator obtained says nothing of Kinesis (fan-out makes it up).
                        self.kinesis_answered::<()>(&Err(f.clone()));
                        self.read_failed(&shard, f);
                    }
                    self.with_token(&shard, token, |h, ctx| h.iterator_obtained(ctx, result))
                }
                other => self.unexpected(req, other),
            },
            Input::RecordsFetched { req, result } => match self.take_pending(req) {
                Some(Pending::Fetch { shard, token }) => {
                    self.kinesis_answered(&result);
                    if let Err(f) = &result {
                        self.read_failed(&shard, f);
                    }
                    self.with_token(&shard, token, |h, ctx| h.records_fetched(ctx, result))
                }
                other => self.unexpected(req, other),
            },
        }
        self.after_input();
    }

    /// Wakes the worker at `now`: runs every timer that is due. Harmless when nothing is.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
        if self.ctx.phase == Phase::Stopped {
            return;
        }
        let mut due = core::mem::take(&mut self.due);
        self.ctx.timers.pop_due(now, &mut due);
        for key in due.drain(..) {
            self.timer(key);
        }
        self.due = due;
        self.after_input();
    }

    /// The next command for the driver, in the order they were decided.
    #[must_use]
    pub fn poll_command(&mut self) -> Option<Command<R>> {
        self.ctx.next_command()
    }

    /// When to call [`Worker::handle_timeout`] next, and why; `None` once stopped.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<(Instant, TimerReason)> {
        if self.ctx.phase == Phase::Stopped {
            return None;
        }
        self.ctx.timers.next()
    }

    fn advance(&mut self, now: Instant) {
        if now > self.ctx.now {
            self.ctx.now = now;
        }
    }

    fn take_pending(&mut self, req: RequestId) -> Option<Pending> {
        self.ctx.answered(req)
    }

    /// A result for a request that is unknown (late, duplicate) or of another kind.
    fn unexpected(&mut self, req: RequestId, pending: Option<Pending>) {
        self.ctx.stats.stale_results += 1;
        if let Some(p) = pending {
            // The request was real but the answer has the wrong shape: treat it as failed so
            // whatever waits on it moves on.
            self.request_failed(req, p);
        }
    }

    fn with_held(&mut self, shard: &LeaseKey, f: impl FnOnce(&mut HeldLease<R>, &mut Ctx<R>)) {
        if !self.touch(shard, f) {
            self.ctx.stats.stale_processor_inputs += 1;
        }
    }

    fn with_token(
        &mut self,
        shard: &LeaseKey,
        token: FencingToken,
        f: impl FnOnce(&mut HeldLease<R>, &mut Ctx<R>),
    ) {
        let mut current = false;
        self.touch(shard, |h, ctx| {
            current = h.token == token;
            if current {
                f(h, ctx);
            }
        });
        if !current {
            self.ctx.stats.stale_results += 1;
        }
    }

    /// Drives a held lease after anything touched it, and forgets it once it is gone.
    pub(crate) fn settle(&mut self, shard: &LeaseKey) {
        self.touch(shard, |_, _| {});
    }

    /// [`Self::touch`] on every held lease, in key order.
    fn touch_all(&mut self, mut f: impl FnMut(&mut HeldLease<R>, &mut Ctx<R>)) {
        let keys: Vec<LeaseKey> = self.held.keys().cloned().collect();
        for k in &keys {
            self.touch(k, &mut f);
        }
    }

    /// Runs `f` on a held lease, then drives it and forgets it once it is gone (one search of
    /// the held leases for all three); false when the lease is not held.
    fn touch(&mut self, shard: &LeaseKey, f: impl FnOnce(&mut HeldLease<R>, &mut Ctx<R>)) -> bool {
        let Some(h) = self.held.get_mut(shard) else {
            return false;
        };
        f(h, &mut self.ctx);
        h.step(&mut self.ctx);
        if h.is_gone() {
            if let Some(h) = self.held.remove(shard) {
                h.forget_timers(&mut self.ctx);
            }
        }
        true
    }

    fn checkpoint_requested(
        &mut self,
        shard: LeaseKey,
        ticket: u64,
        token: FencingToken,
        ask: CheckpointAsk,
    ) {
        match self.held.get_mut(&shard) {
            Some(h) if h.token == token => {
                h.checkpoint_requested(&mut self.ctx, ticket, ask);
                self.settle(&shard);
            }
            _ => {
                self.ctx.stats.stale_processor_inputs += 1;
                let error = if self.ctx.phase == Phase::Running {
                    crate::io::CheckpointError::LeaseLost
                } else {
                    crate::io::CheckpointError::ShuttingDown
                };
                self.ctx.call(
                    &shard,
                    ProcessorCall::CheckpointDone {
                        ticket,
                        result: Err(error),
                    },
                );
            }
        }
    }

    fn timer(&mut self, due: Due) {
        match due {
            Due::Worker(TimerKey::Requests) => {
                let now = self.ctx.now;
                while let Some((req, deadline)) = self.ctx.oldest_request() {
                    if deadline > now {
                        self.ctx.timers.set(TimerKey::Requests, deadline);
                        break;
                    }
                    if let Some(p) = self.ctx.answered(req) {
                        self.ctx.stats.request_timeouts += 1;
                        self.request_failed(req, p);
                    }
                }
            }
            Due::Worker(TimerKey::Renew) => {
                // Under worker liveness renewals carry only the throughput, for weighting.
                if !self.ctx.config.worker_liveness() || self.ctx.config.throughput_weighting {
                    self.touch_all(|h, _| h.renew_due());
                }
                // Under worker liveness the leader row is renewed after each heartbeat that
                // lands, naming it.
                if !self.ctx.config.worker_liveness() {
                    self.renew_leadership();
                }
                let at = self.ctx.now + self.ctx.config.renew_interval();
                self.ctx.timers.set(TimerKey::Renew, at);
            }
            Due::Lease(LeaseTimer::HandoffPoll, k) => self.acquire_poll(k),
            Due::Lease(kind, k) => {
                self.touch(&k, |h, ctx| match kind {
                    LeaseTimer::HandoffTimeout => h.handoff_timed_out(ctx),
                    LeaseTimer::Parents => h.read_parents(ctx),
                    _ => {}
                });
            }
            Due::Worker(TimerKey::Scan) => self.scan_timer(),
            Due::Worker(TimerKey::Heartbeat) => self.heartbeat_timer(),
            Due::Worker(TimerKey::LeaderCheck) => self.leader_check_timer(),
            Due::Worker(TimerKey::ShardSync) => self.sync_timer(),
            Due::Worker(TimerKey::Shutdown) => self.shutdown_timed_out(),
            Due::Worker(TimerKey::Fence) => self.fence_timer(),
        }
    }

    /// A request failed without an answer (timeout or malformed answer): unknown outcome.
    fn request_failed(&mut self, req: RequestId, p: Pending) {
        use crate::io::Failure;
        if p.asks_kinesis() {
            self.kinesis_answered::<()>(&Err(Failure::Transient));
        }
        match p {
            Pending::Scan => self.scanned(Err(Failure::Transient)),
            Pending::ListShards => self.shards_listed(Err(Failure::Transient)),
            Pending::ListGone => self.gone_listed(Err(Failure::Transient)),
            Pending::ProbeKinesis => self.probe_answered::<()>(&Err(Failure::Transient)),
            Pending::ReadParent { shard, token } => self.with_token(&shard, token, |h, ctx| {
                h.parent_read(ctx, Err(Failure::Transient))
            }),
            Pending::ReadOwn {
                shard,
                token,
                expect_counter,
            } => self.with_token(&shard, token, |h, ctx| {
                h.verified(ctx, expect_counter, Err(Failure::Transient))
            }),
            Pending::ReadLeader => self.leader_read(Err(Failure::Transient)),
            Pending::ReadWorkerRow => self.worker_row_read(Err(Failure::Transient)),
            Pending::ConfirmSilent { worker, liveness } => {
                self.silence_read(worker, liveness, Err(Failure::Transient))
            }
            Pending::ReadAcquire { shard } => {
                self.acquire_read(req, shard, Err(Failure::Transient))
            }
            Pending::OwnWrite { shard, token } => {
                self.own_written(shard, token, Err(Failure::Transient))
            }
            Pending::Write { key, op, sent } => {
                self.written(req, key, op, sent, Err(Failure::Transient))
            }
            Pending::Iterator { shard, token } => self.with_token(&shard, token, |h, ctx| {
                h.iterator_obtained(ctx, Err(Failure::Transient))
            }),
            Pending::Fetch { shard, token } => self.with_token(&shard, token, |h, ctx| {
                h.records_fetched(ctx, Err(Failure::Transient))
            }),
        }
    }

    fn own_written(
        &mut self,
        shard: LeaseKey,
        token: FencingToken,
        result: Result<Option<crate::item::Item>, crate::io::Failure>,
    ) {
        self.count_write_failure(&result);
        self.with_token(&shard, token, |h, ctx| h.written(ctx, result));
    }

    /// The answer to a write that is not a held lease's own, to the role that made it.
    fn written(
        &mut self,
        req: RequestId,
        key: LeaseKey,
        op: WriteOp,
        sent: Instant,
        result: Result<Option<crate::item::Item>, crate::io::Failure>,
    ) {
        self.count_write_failure(&result);
        match op {
            WriteOp::Take { steal } => self.taken(key, steal, sent, result),
            WriteOp::Acquire => self.acquired(req, key, sent, result),
            WriteOp::Create { child_of } => self.created(key, child_of, result),
            WriteOp::Delete => self.deleted(key, result),
            WriteOp::Assign { to, counter_after } => self.assigned(key, to, counter_after, result),
            WriteOp::InitiateHandoff {
                tell_from,
                to,
                counter,
            } => self.handoff_initiated(key, tell_from, to, counter, result),
            WriteOp::Notify {
                worker,
                shard,
                counter,
                handoff,
            } => self.notified(worker, shard, counter, handoff, result),
            // A hint: lost, its receiver reads the assignment at its next heartbeat as before.
            WriteOp::HeadsUp => {}
            WriteOp::DeleteDeadWorkerRow { worker } => self.dead_worker_row_deleted(worker, result),
            WriteOp::Heartbeat { acked, incarnation } if incarnation == self.inbox.incarnation => {
                self.heartbeat_written(acked, sent, result)
            }
            WriteOp::Heartbeat { .. } => self.ctx.stats.stale_results += 1,
            WriteOp::FenceWorker {
                worker,
                incarnation,
            } => self.fenced(worker, incarnation, result),
            WriteOp::LeaderClaim {
                counter_after,
                predecessor,
            } => self.claimed(counter_after, predecessor, sent, result),
            WriteOp::LeaderRenew { counter_after } => {
                self.leader_renewed(counter_after, sent, result)
            }
            // Sent at the start of a shutdown, not part of its cleanup; the worker has stepped
            // down already.
            WriteOp::LeaderRelease => {}
            WriteOp::WorkerRowDelete => self.cleaned_up(),
        }
    }

    /// Starts holding a lease from the row a take or acquire returned.
    fn adopt(&mut self, item: crate::item::Item, sent: Instant, steal: bool) {
        match Lease::from_item(&item) {
            Ok(lease) => {
                let key = lease.key.clone();
                if self.held.contains_key(&key) || self.ctx.phase != Phase::Running {
                    return;
                }
                let h = alloc::boxed::Box::new(HeldLease::new(&mut self.ctx, lease, sent, steal));
                self.held.insert(key.clone(), h);
                // A row already handed on (read back under worker liveness) is left at once.
                self.touch(&key, |h, ctx| h.notice_handoff(ctx));
            }
            Err(error) => self.ctx.malformed(&item, error),
        }
    }

    /// Arms the worker's first timers.
    fn start(&mut self) {
        let now = self.ctx.now;
        let renew = self.ctx.config.renew_interval();
        self.ctx.timers.set(TimerKey::Renew, now + renew);
        self.ctx.timers.set(
            TimerKey::ShardSync,
            now + self.ctx.config.shard_sync_interval,
        );
        match self.policy() {
            BalancingPolicy::Kcl2Compatible => {
                self.sync.due = true;
                self.ctx.timers.set(TimerKey::Scan, now);
            }
            BalancingPolicy::Coordinated => {
                self.ctx.timers.set(TimerKey::Heartbeat, now);
                // A little jitter so a fleet started at once does not race for leadership in step.
                let spread = self.ctx.config.leader_check_interval.as_millis() as u64 / 10;
                let j = self.ctx.rng.below(spread + 1);
                self.ctx
                    .timers
                    .set(TimerKey::LeaderCheck, now + Duration::from_millis(j));
            }
        }
    }

    fn count_write_failure(
        &mut self,
        result: &Result<Option<crate::item::Item>, crate::io::Failure>,
    ) {
        match result {
            Err(crate::io::Failure::ConditionFailed) => self.ctx.stats.condition_failures += 1,
            Err(crate::io::Failure::Throttled) => self.ctx.stats.throttled += 1,
            _ => {}
        }
    }

    pub(crate) fn policy(&self) -> BalancingPolicy {
        self.ctx.config.policy
    }
}
