//! Each held shard's processor in a task of its own: its calls in order, each answered, and the
//! call under way cancelled when the lease it runs under is over.
//!
//! A call is cancelled (its future dropped at its current await point, and the call answered
//! as failed, which gives the lease up) when the lease's window ends while it runs
//! ([`kcl_core::Worker::lease_window_end`]): from then on another worker may hold the lease, so
//! the call may no longer act for it. It is cancelled too when it has run for
//! [`DriverConfig::processor_call_timeout`](crate::DriverConfig::processor_call_timeout) (a hung
//! processor would otherwise keep its shard, renewed, forever), and when its lease is released
//! while it runs (lost, or given up by a shutdown that stopped waiting). The calls of a
//! cancelled ownership that are still queued are answered as failed without being made, except
//! `lease_lost`, which is made.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures_channel::mpsc::{unbounded, UnboundedReceiver, UnboundedSender};
use futures_util::future::{select, Either};
use futures_util::{FutureExt, StreamExt};
use kcl_core::{CallId, Instant, LeaseKey, ProcessorCall};

use crate::processor::{Batch, Checkpointer, Initialize, Message, RecordProcessor};
use crate::telemetry::{processor_call_name, Labels};

type Call<R> = (CallId, ProcessorCall<R>);

/// A shard's task, as the driver sees it.
struct Task<R> {
    calls: UnboundedSender<Call<R>>,
    cancels: UnboundedSender<CallId>,
    /// The call that expects an answer and has none yet (the core makes one at a time), and
    /// when it was handed over.
    busy: Option<(CallId, Instant)>,
}

/// The shards' processor tasks.
pub(crate) struct ShardTasks<R> {
    held: BTreeMap<LeaseKey, Task<R>>,
    /// How long a call may run.
    call_timeout: Duration,
}

impl<R: Send + 'static> ShardTasks<R> {
    pub(crate) fn new(call_timeout: Duration) -> Self {
        Self {
            held: BTreeMap::new(),
            call_timeout,
        }
    }

    /// Starts `shard`'s task around `processor`; returns the task to spawn.
    pub(crate) fn start<P: RecordProcessor<R>>(
        &mut self,
        shard: &LeaseKey,
        processor: P,
        driver: UnboundedSender<Message>,
        labels: Labels,
    ) -> impl core::future::Future<Output = ()> + Send + 'static {
        let (calls, mailbox) = unbounded();
        let (cancels, cancelled) = unbounded();
        self.held.insert(
            shard.clone(),
            Task {
                calls,
                cancels,
                busy: None,
            },
        );
        run_processor(shard.clone(), processor, mailbox, cancelled, driver, labels)
    }

    /// Hands `call` to `shard`'s task at `now`; false when the task has ended (it panicked).
    pub(crate) fn send(
        &mut self,
        now: Instant,
        shard: &LeaseKey,
        call: CallId,
        action: ProcessorCall<R>,
    ) -> bool {
        let Some(task) = self.held.get_mut(shard) else {
            return false;
        };
        let answered = !matches!(action, ProcessorCall::LeaseLost);
        if task.calls.unbounded_send((call, action)).is_err() {
            return false;
        }
        if answered {
            task.busy = Some((call, now));
        }
        true
    }

    /// `call` of `shard` was answered (returned or failed).
    pub(crate) fn answered(&mut self, shard: &LeaseKey, call: CallId) {
        if let Some(task) = self.held.get_mut(shard) {
            if task.busy.is_some_and(|(busy, _)| busy == call) {
                task.busy = None;
            }
        }
    }

    /// `shard`'s lease left the worker: its task finishes its queued calls and ends. A call
    /// still under way is cancelled: the lease is not this worker's to act for any more.
    pub(crate) fn released(&mut self, shard: &LeaseKey) {
        let Some(task) = self.held.remove(shard) else {
            return;
        };
        if let Some((call, _)) = task.busy {
            let _ = task.cancels.unbounded_send(call);
        }
    }

    /// When a call handed over at `started` must be cancelled: the earlier of its lease
    /// window's end and its time limit.
    fn cancel_at(&self, started: Instant, window_end: Option<Instant>) -> Instant {
        let limit = started + self.call_timeout;
        window_end.map_or(limit, |end| end.min(limit))
    }

    /// The earliest time a call under way must be cancelled; `window_end` gives a lease's
    /// ([`kcl_core::Worker::lease_window_end`]).
    pub(crate) fn next_cancel(
        &self,
        window_end: impl Fn(&str) -> Option<Instant>,
    ) -> Option<Instant> {
        self.held
            .iter()
            .filter_map(|(shard, t)| {
                let (_, started) = t.busy?;
                Some(self.cancel_at(started, window_end(shard.as_str())))
            })
            .min()
    }

    /// Cancels every call whose lease window has ended, or whose time is up, by `now`; returns
    /// how many.
    pub(crate) fn cancel_due(
        &mut self,
        window_end: impl Fn(&str) -> Option<Instant>,
        now: Instant,
    ) -> usize {
        let mut cancelled = 0;
        let timeout = self.call_timeout;
        for (shard, task) in &mut self.held {
            let Some((call, started)) = task.busy else {
                continue;
            };
            let window_over = window_end(shard.as_str()).is_none_or(|end| end <= now);
            if !window_over && started + timeout > now {
                continue;
            }
            if window_over {
                tracing::warn!(%shard, "the lease window ended while the processor ran: its call is cancelled and the lease given up");
            } else {
                tracing::warn!(%shard, ?timeout, "a processor call ran past processor_call_timeout: it is cancelled and the lease given up");
            }
            let _ = task.cancels.unbounded_send(call);
            // Answered as failed by the task; nothing more to cancel meanwhile.
            task.busy = None;
            cancelled += 1;
        }
        cancelled
    }
}

/// One shard's processor: its calls in order, each answered; a panic ends it, a cancelled call
/// ends the ownership (see the module's documentation).
async fn run_processor<R, P>(
    shard: LeaseKey,
    mut processor: P,
    mut calls: UnboundedReceiver<Call<R>>,
    mut cancels: UnboundedReceiver<CallId>,
    driver: UnboundedSender<Message>,
    labels: Labels,
) where
    R: Send + 'static,
    P: RecordProcessor<R>,
{
    let mut cancelled = false;
    while let Some((call, action)) = calls.next().await {
        let name = processor_call_name(&action);
        if cancelled && !matches!(action, ProcessorCall::LeaseLost) {
            let failed = Message::Failed {
                shard: shard.clone(),
                call,
            };
            if driver.unbounded_send(failed).is_err() {
                return;
            }
            continue;
        }
        let started = std::time::Instant::now();
        let outcome = {
            let invoke =
                AssertUnwindSafe(invoke(&shard, &mut processor, action, &driver)).catch_unwind();
            futures_util::pin_mut!(invoke);
            loop {
                // The cancellation is polled first: a call cancelled while its task waited to
                // run is never resumed.
                match select(cancels.next(), invoke.as_mut()).await {
                    Either::Left((Some(id), _)) if id == call => break None,
                    // For a call answered meanwhile.
                    Either::Left((Some(_), _)) => {}
                    Either::Left((None, _)) => break Some(invoke.as_mut().await),
                    Either::Right((outcome, _)) => break Some(outcome),
                }
            }
        };
        metrics::histogram!(
            "kcl_processor_call_seconds",
            labels.with(&[("call", name.into())])
        )
        .record(started.elapsed().as_secs_f64());
        let message = match outcome {
            None => {
                cancelled = true;
                metrics::counter!("kcl_processor_calls_cancelled_total", labels.with(&[]))
                    .increment(1);
                Message::Failed {
                    shard: shard.clone(),
                    call,
                }
            }
            Some(Ok(false)) => continue,
            Some(Ok(true)) => Message::Returned {
                shard: shard.clone(),
                call,
            },
            Some(Err(panic)) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::error!(%shard, panic = what, "record processor panicked; its lease is given up");
                metrics::counter!("kcl_processor_failures_total", labels.with(&[])).increment(1);
                let _ = driver.unbounded_send(Message::Failed { shard, call });
                return;
            }
        };
        if driver.unbounded_send(message).is_err() {
            return;
        }
    }
}

/// Makes one call; whether the driver expects a return for it.
async fn invoke<R, P: RecordProcessor<R>>(
    shard: &LeaseKey,
    processor: &mut P,
    action: ProcessorCall<R>,
    driver: &UnboundedSender<Message>,
) -> bool {
    let checkpointer = |token| Checkpointer::new(shard.clone(), token, driver.clone());
    match action {
        ProcessorCall::Initialize {
            checkpoint,
            pending_checkpoint,
            pending_state,
            token,
        } => {
            let init = Initialize {
                shard: shard.clone(),
                checkpoint,
                pending_checkpoint,
                pending_state,
                token,
            };
            processor.initialize(&init).await;
        }
        ProcessorCall::ProcessRecords {
            records,
            millis_behind_latest,
            token,
        } => {
            let batch = Batch {
                shard: shard.clone(),
                records,
                millis_behind_latest,
                token,
            };
            processor.process_records(batch, &checkpointer(token)).await;
        }
        ProcessorCall::ShardEnded { token } => processor.shard_ended(&checkpointer(token)).await,
        ProcessorCall::ShutdownRequested { token } => {
            processor.shutdown_requested(&checkpointer(token)).await;
        }
        ProcessorCall::LeaseLost => {
            processor.lease_lost().await;
            return false;
        }
        // Answered by the driver itself; never sent here.
        _ => return false,
    }
    true
}
