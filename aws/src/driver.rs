//! The async driver of one [`kcl_core::Worker`]: carries its commands to the backends and the
//! record processors, feeds every result back with its request id, and sleeps until the worker's
//! next timeout.
//!
//! One task runs the worker and the service calls, each with its own retries and timeout, in two
//! lanes with bounds of their own ([`DriverConfig::max_table_calls_in_flight`],
//! [`DriverConfig::max_stream_calls_in_flight`]): a lease renewal never waits behind stream
//! reads, which with enhanced fan-out each wait for their shard's next event. Each shard's
//! processor runs in a task of its own, so a slow processor never holds the worker up: leases keep
//! being renewed while it works.

use core::future::poll_fn;

use core::task::Poll;
use core::time::Duration;
use std::collections::BTreeMap;

use futures_channel::mpsc::{unbounded, UnboundedReceiver, UnboundedSender};
use futures_channel::oneshot;
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use kcl_core::{
    CallId, CheckpointError, Command, Config, ConfigError, Event, Input, Instant, LeaseKey,
    ProcessorCall, Stats, Worker, WorkerId,
};
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::backend::{LeaseTable, ShardStream};
use crate::calls::Calls;
use crate::clock::WorkerClock;
use crate::processor::{CheckpointRequest, Message, ProcessorFactory};
use crate::refusal::RunError;
use crate::retry::RetryPolicy;
use crate::runtime::Runtime;
use crate::shard_task::ShardTasks;
use crate::telemetry::{StatusHandle, Telemetry};

/// The driver's settings: the core's [`Config`] and how calls are made. Deserializes with serde;
/// absent fields take their defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DriverConfig {
    /// The worker's configuration (lease timing, balancing, fetching).
    pub worker: Config,
    /// Lease table calls in flight at once; more wait in order. Table calls have their own
    /// bound so that renewals never wait behind stream reads.
    pub max_table_calls_in_flight: usize,
    /// Stream calls in flight at once; more wait in order. With enhanced fan-out every held
    /// shard keeps a call waiting for its next event, so this must exceed the leases a worker
    /// holds, or the shards past it wait for another's event.
    pub max_stream_calls_in_flight: usize,
    /// Retries and timeouts of each call.
    pub retry: RetryPolicy,
    /// How long the stream or the lease table may refuse every call (NotFound, AccessDenied:
    /// deleted, or a permission revoked), or the stream refuse every read access (a permission,
    /// or its KMS key), before [`Driver::run`] ends with a [`RunError`]. Timeouts and throttles
    /// never count. Default 2 minutes.
    pub give_up_after: Duration,
    /// Drop the user records of a KPL aggregate whose hash key falls outside the shard's range,
    /// as the Java KCL does (default `true`). A producer whose shard map was stale put them
    /// there, and they are in no other shard: dropping loses them (counted in
    /// `kcl_kpl_records_dropped_total`); `false` delivers them to this shard's processor.
    pub drop_kpl_records_outside_shard: bool,
    /// How long one processor call may run before it is cancelled and its lease given up
    /// (default 5 minutes). Without it a hung processor keeps its shard, renewed, forever (as in
    /// the Java KCL); set it above the longest a batch may legitimately take.
    pub processor_call_timeout: Duration,
}

impl Default for DriverConfig {
    fn default() -> Self {
        Self {
            worker: Config::default(),
            max_table_calls_in_flight: 64,
            max_stream_calls_in_flight: 1024,
            retry: RetryPolicy::default(),
            give_up_after: Duration::from_secs(120),
            drop_kpl_records_outside_shard: true,
            processor_call_timeout: Duration::from_secs(300),
        }
    }
}

impl DriverConfig {
    /// Checks for values that cannot work: the worker's ([`Config::validate`]), no call ever in
    /// flight, no attempt per call.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.worker.validate()?;
        if self.max_table_calls_in_flight == 0 || self.max_stream_calls_in_flight == 0 {
            return Err(ConfigError("calls in flight must be at least 1 per lane"));
        }
        if self.retry.attempts == 0 {
            return Err(ConfigError(
                "retry.attempts (call_attempts) must be positive",
            ));
        }
        if self.processor_call_timeout.is_zero() {
            return Err(ConfigError("processor_call_timeout must be positive"));
        }
        if self.retry.call_timeout.is_zero() {
            return Err(ConfigError(
                "retry.call_timeout (call_timeout) must be positive",
            ));
        }
        Ok(())
    }
}

/// Asks a running [`Driver`] to shut down gracefully: processors are asked to checkpoint, leases
/// are handed on, then [`Driver::run`] returns. Cheap to clone; usable from any task or thread.
#[derive(Clone, Debug)]
pub struct ShutdownHandle(UnboundedSender<Message>);

impl ShutdownHandle {
    /// Starts the shutdown (idempotent).
    pub fn shutdown(&self) {
        // A driver that has already stopped has nothing left to shut down.
        let _ = self.0.unbounded_send(Message::Shutdown);
    }
}

/// Runs one worker against a lease table and a stream.
pub struct Driver<Rt, T, S, F>
where
    S: ShardStream,
{
    runtime: Rt,
    calls: Calls<T, S>,
    factory: F,
    config: DriverConfig,
    worker: Worker<S::Record>,
    clock: WorkerClock,
    /// The driver's own channel: its processors' tasks and shutdown handles send, its loop
    /// receives. It keeps a sender, so the channel never closes.
    mail: Mailbox,
    tasks: ShardTasks<S::Record>,
    checkpoints: Tickets,
    telemetry: Telemetry,
}

impl<Rt, T, S, F> Driver<Rt, T, S, F>
where
    Rt: Runtime,
    T: LeaseTable,
    S: ShardStream,
    S::Record: Clone,
    F: ProcessorFactory<S::Record>,
{
    /// A driver for worker `id`. `seed` makes its choices (jitter, tie-breaks) reproducible; give
    /// each worker of a fleet a different one. The process's incarnation (what tells it apart
    /// in the lease table from another process with its id) is drawn apart, from
    /// [`Runtime::entropy`], so a fixed seed never makes two processes pass for one.
    pub fn new(
        runtime: Rt,
        table: T,
        stream: S,
        factory: F,
        id: WorkerId,
        config: DriverConfig,
        seed: u64,
    ) -> Result<Self, ConfigError> {
        let origin = runtime.now();
        let id_text = id.to_string();
        let incarnation_seed = seed ^ runtime.entropy();
        let worker = Worker::with_incarnation(
            config.worker.clone(),
            id,
            seed,
            incarnation_seed,
            Instant::ZERO,
        )?;
        let call_timeout = config.processor_call_timeout;
        let (outbox, inbox) = unbounded();
        Ok(Self {
            runtime,
            calls: Calls::new(table, stream, &config, seed),
            factory,
            config,
            worker,
            clock: WorkerClock::new(origin),
            mail: Mailbox { inbox, outbox },
            tasks: ShardTasks::new(call_timeout),
            checkpoints: Tickets::default(),
            telemetry: Telemetry::new(&id_text, origin),
        })
    }

    /// A handle that shuts this driver down.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.mail.outbox.clone())
    }

    /// Names this worker's consumer and stream: the `consumer` and `stream` labels of every
    /// metric it records, and the names in its [`Status`](crate::Status). A
    /// [`ConsumerBuilder`](crate::ConsumerBuilder) sets them to the application and the stream.
    pub fn named(mut self, consumer: &str, stream: &str) -> Self {
        self.telemetry.name(consumer, stream);
        self
    }

    /// A handle that reads this driver's [`Status`](crate::Status) while it runs (and after).
    pub fn status_handle(&self) -> StatusHandle {
        self.telemetry.handle()
    }

    /// Runs the worker until it has shut down (see [`ShutdownHandle`]); returns its counters.
    /// Ends with a [`RunError`] instead, at once and without releasing anything (its leases
    /// expire), when the stream or the lease table has refused every call, or the stream every
    /// read, for [`DriverConfig::give_up_after`].
    pub async fn run(mut self) -> Result<Stats, RunError> {
        let span = tracing::info_span!("kcl.worker", worker = %self.worker.id());
        async move {
            self.telemetry.started(self.runtime.now());
            let outcome = self.run_loop().await;
            self.telemetry.stopped();
            outcome
        }
        .instrument(span)
        .await
    }

    async fn run_loop(&mut self) -> Result<Stats, RunError> {
        let mut timer: Option<(Instant, BoxFuture<'static, ()>)> = None;
        loop {
            self.drain_commands();
            if self.worker.is_stopped() {
                break;
            }
            let deadline = earliest(
                self.worker.poll_timeout().map(|(at, _)| at),
                self.tasks
                    .next_cancel(|shard| self.worker.lease_window_end(shard)),
            );
            if timer.as_ref().map(|(at, _)| *at) != deadline {
                timer = deadline.map(|at| {
                    let wait = self.until(at);
                    (at, self.runtime.sleep(wait).boxed())
                });
            }
            let calls = &mut self.calls;
            let inbox = &mut self.mail.inbox;
            let wake = poll_fn(|cx| {
                if let Poll::Ready(input) = calls.poll_answer(cx) {
                    return Poll::Ready(Wake::Result(input));
                }
                if let Poll::Ready(message) = inbox.poll_next_unpin(cx) {
                    return Poll::Ready(Wake::Message(message));
                }
                match &mut timer {
                    Some((_, sleep)) => sleep.as_mut().poll(cx).map(|()| Wake::Timer),
                    None => Poll::Pending,
                }
            })
            .await;
            let now = self.now();
            let worker = &self.worker;
            self.tasks
                .cancel_due(|shard| worker.lease_window_end(shard), now);
            self.telemetry.update_gauges(self.runtime.now(), false);
            match wake {
                Wake::Result(input) => {
                    self.telemetry.on_answer(self.runtime.now(), &input);
                    let give_up = self.config.give_up_after;
                    if let Some((service, op, failure, refused_for)) =
                        self.calls.refused_for_good(now, &input, give_up)
                    {
                        let error = RunError {
                            service,
                            op,
                            failure,
                            refused_for,
                            stats: self.worker.stats().clone(),
                        };
                        tracing::error!(error = %crate::error_chain(&error), "giving up");
                        return Err(error);
                    }
                    self.worker.handle(now, input)
                }
                // The driver holds a sender itself, so the inbox never closes.
                Wake::Message(None) => {}
                Wake::Message(Some(message)) => self.on_message(now, message),
                Wake::Timer => {
                    timer = None;
                    if self.worker.poll_timeout().is_some_and(|(at, _)| at <= now) {
                        self.worker.handle_timeout(now);
                    }
                }
            }
        }
        Ok(self.worker.stats().clone())
    }

    /// The worker's clock: the runtime's, plus the time the host was suspended.
    fn now(&self) -> Instant {
        self.clock
            .at(self.runtime.now(), self.runtime.suspend_clocks())
    }

    fn until(&self, at: Instant) -> Duration {
        at.saturating_since(self.now())
    }

    fn drain_commands(&mut self) {
        while let Some(command) = self.worker.poll_command() {
            match command {
                Command::Processor {
                    shard,
                    call,
                    action,
                } => self.call_processor(shard, call, action),
                Command::Event(event) => self.on_event(event),
                request => self.calls.queue(request),
            }
        }
        self.calls
            .start_queued(&self.runtime, self.telemetry.labels());
    }

    fn on_message(&mut self, now: Instant, message: Message) {
        let input = match message {
            Message::Returned { shard, call } => {
                self.telemetry
                    .on_processor_returned(self.runtime.now(), &shard, call);
                self.tasks.answered(&shard, call);
                Input::ProcessorReturned { shard, call }
            }
            Message::Failed { shard, call } => {
                self.telemetry
                    .on_processor_returned(self.runtime.now(), &shard, call);
                self.tasks.answered(&shard, call);
                Input::ProcessorFailed { shard, call }
            }
            Message::Shutdown => Input::ShutdownRequested,
            Message::Checkpoint {
                shard,
                token,
                request,
                reply,
            } => {
                let ticket = self.checkpoints.issue(PendingCheckpoint {
                    shard: shard.clone(),
                    reply,
                    asked: self.runtime.now(),
                });
                match request {
                    CheckpointRequest::Checkpoint {
                        target,
                        prepare,
                        state,
                    } => Input::CheckpointRequested {
                        shard,
                        ticket,
                        token,
                        target,
                        prepare,
                        state,
                    },
                    CheckpointRequest::CommitPrepared => Input::CommitPreparedCheckpoint {
                        shard,
                        ticket,
                        token,
                    },
                }
            }
        };
        self.worker.handle(now, input);
    }

    fn on_event(&mut self, event: Event) {
        self.telemetry.on_event(self.runtime.now(), &event);
        if let Event::LeaseReleased { shard, .. } = event {
            // Its processor finishes the calls it has (the last is LeaseLost, ShardEnded or
            // ShutdownRequested) and stops; a call still under way is cancelled.
            self.tasks.released(&shard);
            for pending in self.checkpoints.take_of(&shard) {
                self.answer_checkpoint(pending, Err(CheckpointError::LeaseLost));
            }
        }
    }

    /// Answers a processor's checkpoint request, timing it (`kcl_checkpoint_seconds{outcome}`).
    fn answer_checkpoint(&self, pending: PendingCheckpoint, result: Result<(), CheckpointError>) {
        let outcome = match &result {
            Ok(()) => "ok",
            Err(CheckpointError::LeaseLost) => "lease_lost",
            Err(CheckpointError::Backwards) => "backwards",
            Err(CheckpointError::OutcomeUnknown) => "outcome_unknown",
            Err(CheckpointError::Throttled) => "throttled",
            Err(_) => "refused",
        };
        let took = self.runtime.now().saturating_duration_since(pending.asked);
        let labels = self.telemetry.labels().with(&[("outcome", outcome.into())]);
        metrics::histogram!("kcl_checkpoint_seconds", labels).record(took.as_secs_f64());
        // The processor may have stopped waiting; nothing to do then.
        let _ = pending.reply.send(result);
    }

    fn call_processor(&mut self, shard: LeaseKey, call: CallId, action: ProcessorCall<S::Record>) {
        match action {
            ProcessorCall::CheckpointDone { ticket, result } => {
                if let Some(pending) = self.checkpoints.take(ticket) {
                    self.answer_checkpoint(pending, result);
                }
                return;
            }
            ProcessorCall::Initialize { .. } => {
                let processor = self.factory.create(&shard);
                let task = self.tasks.start(
                    &shard,
                    processor,
                    self.mail.outbox.clone(),
                    self.telemetry.labels().clone(),
                );
                self.runtime
                    .spawn(task.instrument(tracing::info_span!("kcl.shard", %shard)));
            }
            _ => {}
        }
        self.telemetry
            .on_processor_call(self.runtime.now(), &shard, call, &action);
        let lease_lost = matches!(action, ProcessorCall::LeaseLost);
        let now = self.now();
        let delivered = self.tasks.send(now, &shard, call, action);
        if !delivered && !lease_lost {
            // Its task ended (it panicked earlier): the call cannot complete.
            let now = self.now();
            self.worker
                .handle(now, Input::ProcessorFailed { shard, call });
        }
    }
}

struct Mailbox {
    inbox: UnboundedReceiver<Message>,
    outbox: UnboundedSender<Message>,
}

/// The processors' checkpoint requests on their way through the core, by the ticket the core
/// answers with.
#[derive(Default)]
struct Tickets {
    pending: BTreeMap<u64, PendingCheckpoint>,
    next: u64,
}

impl Tickets {
    /// Files `pending` under a ticket no other request had.
    fn issue(&mut self, pending: PendingCheckpoint) -> u64 {
        let ticket = self.next;
        self.next += 1;
        self.pending.insert(ticket, pending);
        ticket
    }

    fn take(&mut self, ticket: u64) -> Option<PendingCheckpoint> {
        self.pending.remove(&ticket)
    }

    /// Every request of `shard`, in ticket order.
    fn take_of(&mut self, shard: &LeaseKey) -> Vec<PendingCheckpoint> {
        let tickets: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, pending)| pending.shard == *shard)
            .map(|(t, _)| *t)
            .collect();
        tickets
            .into_iter()
            .filter_map(|t| self.pending.remove(&t))
            .collect()
    }
}

/// A processor's checkpoint request on its way through the core.
struct PendingCheckpoint {
    shard: LeaseKey,
    reply: oneshot::Sender<Result<(), CheckpointError>>,
    /// When the driver received it.
    asked: std::time::Instant,
}

enum Wake<R> {
    Result(Input<R>),
    Message(Option<Message>),
    Timer,
}

/// The earlier of two optional instants.
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
