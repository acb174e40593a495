//! The driver's service calls: the lease table and the stream, a lane each with its own bound on
//! calls in flight, each call with its retries (see [`RetryPolicy`]) and its metrics, and the
//! watch on calls refused for good.

use core::task::{Context, Poll};
use core::time::Duration;
use std::collections::VecDeque;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use kcl_core::{Command, Failure, Input, Instant, ShardListing};
use tracing::Instrument;

use crate::backend::{LeaseTable, ShardStream};
use crate::driver::DriverConfig;
use crate::refusal::{RefusalWatch, Service};
use crate::retry::RetryPolicy;
use crate::runtime::Runtime;
use crate::telemetry::Labels;

/// The calls of one driver to its two services.
pub(crate) struct Calls<T, S: ShardStream> {
    table: Arc<T>,
    stream: Arc<S>,
    table_lane: Lane<S::Record>,
    stream_lane: Lane<S::Record>,
    retry: RetryPolicy,
    drop_kpl_records_outside_shard: bool,
    /// Mixed with each request id into the jitter of its retries.
    salt: u64,
    refusals: RefusalWatch,
}

impl<T, S> Calls<T, S>
where
    T: LeaseTable,
    S: ShardStream,
    S::Record: Clone,
{
    pub(crate) fn new(table: T, stream: S, config: &DriverConfig, salt: u64) -> Self {
        Self {
            table: Arc::new(table),
            stream: Arc::new(stream),
            table_lane: Lane::new(config.max_table_calls_in_flight),
            stream_lane: Lane::new(config.max_stream_calls_in_flight),
            retry: config.retry,
            drop_kpl_records_outside_shard: config.drop_kpl_records_outside_shard,
            salt,
            refusals: RefusalWatch::default(),
        }
    }

    /// Queues a request of the core in its service's lane.
    pub(crate) fn queue(&mut self, request: Command<S::Record>) {
        if is_table_call(&request) {
            self.table_lane.queued.push_back(request);
        } else {
            self.stream_lane.queued.push_back(request);
        }
    }

    /// Starts the queued calls there is room for, the lease table's first.
    pub(crate) fn start_queued<Rt: Runtime>(&mut self, runtime: &Rt, labels: &Labels) {
        while let Some(command) = self.table_lane.next_to_start() {
            if let Some(call) = self.execute(runtime, labels, command) {
                self.table_lane.in_flight.push(call);
            }
        }
        while let Some(command) = self.stream_lane.next_to_start() {
            if let Some(call) = self.execute(runtime, labels, command) {
                self.stream_lane.in_flight.push(call);
            }
        }
    }

    /// The next answer of a call that ended, the lease table's first.
    pub(crate) fn poll_answer(&mut self, cx: &mut Context<'_>) -> Poll<Input<S::Record>> {
        if let Poll::Ready(Some(input)) = self.table_lane.in_flight.poll_next_unpin(cx) {
            return Poll::Ready(input);
        }
        if let Poll::Ready(Some(input)) = self.stream_lane.in_flight.poll_next_unpin(cx) {
            return Poll::Ready(input);
        }
        Poll::Pending
    }

    /// Looks at an answer: `Some` when its service has refused every call for `give_up_after`
    /// (see [`crate::refusal`]).
    pub(crate) fn refused_for_good(
        &mut self,
        now: Instant,
        input: &Input<S::Record>,
        give_up_after: Duration,
    ) -> Option<(Service, &'static str, Failure, Duration)> {
        self.refusals.observe(now, input, give_up_after)
    }

    /// The future that carries out one request, or `None` for commands that are not requests.
    fn execute<Rt: Runtime>(
        &self,
        runtime: &Rt,
        labels: &Labels,
        command: Command<S::Record>,
    ) -> Option<BoxFuture<'static, Input<S::Record>>> {
        let req = command.request()?;
        let runtime = runtime.clone();
        let retry = self.retry;
        let drop_outside_shard = self.drop_kpl_records_outside_shard;
        let salt = self.salt ^ req.0.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let table = Arc::clone(&self.table);
        let stream = Arc::clone(&self.stream);
        let labels = labels.clone();
        let call = async move {
            let started = runtime.now();
            let (op, input, attempts) = match command {
                Command::ScanLeaseTable { req, consistent } => {
                    let (r, n) = retry
                        .run(&runtime, true, salt, || table.scan(consistent))
                        .await;
                    ("scan", Input::LeaseTableScanned { req, result: r }, n)
                }
                Command::ReadLease {
                    req,
                    key,
                    consistent,
                } => {
                    let (r, n) = retry
                        .run(&runtime, true, salt, || table.read(&key, consistent))
                        .await;
                    ("get_item", Input::LeaseRead { req, result: r }, n)
                }
                Command::WriteLease { req, write } => {
                    let (r, n) = retry
                        .run(&runtime, false, salt, || table.write(&write))
                        .await;
                    (write_op(&write), Input::LeaseWritten { req, result: r }, n)
                }
                Command::ListShards { req } => {
                    let (r, n) = retry
                        .run(&runtime, true, salt, || stream.list_shards())
                        .await;
                    let result = r.map(|shards| ShardListing {
                        shards,
                        listed_at: kcl_core::time::wall_time(runtime.wall_clock()),
                    });
                    ("list_shards", Input::ShardsListed { req, result }, n)
                }
                Command::GetShardIterator {
                    req,
                    shard,
                    position,
                } => {
                    let (r, n) = retry
                        .run(&runtime, true, salt, || {
                            stream.shard_iterator(shard.as_str(), &position)
                        })
                        .await;
                    (
                        "get_shard_iterator",
                        Input::IteratorObtained {
                            req,
                            result: r.map(Into::into),
                        },
                        n,
                    )
                }
                Command::GetRecords {
                    req,
                    iterator,
                    limit,
                    hash_range,
                    ..
                } => {
                    let range = hash_range.filter(|_| drop_outside_shard);
                    let (r, n) = retry
                        .run(&runtime, true, salt, || {
                            stream.get_records(&iterator, limit, range)
                        })
                        .await;
                    ("get_records", Input::RecordsFetched { req, result: r }, n)
                }
                other => {
                    // `request()` said it is a request; a new kind the driver does not know yet
                    // is answered as failed so the core's bookkeeping stays whole.
                    let failed =
                        other.failed(Failure::Other("not supported by this driver".into()));
                    return failed.unwrap_or(Input::ShutdownRequested);
                }
            };
            let took = runtime.now().saturating_duration_since(started);
            record_outcome(&labels, op, &input, attempts, took);
            input
        };
        Some(
            call.instrument(tracing::debug_span!("kcl.call", req = req.0))
                .boxed(),
        )
    }
}

/// Calls to one service: those under way, and those waiting for room, in order.
struct Lane<R> {
    in_flight: FuturesUnordered<BoxFuture<'static, Input<R>>>,
    queued: VecDeque<Command<R>>,
    limit: usize,
}

impl<R> Lane<R> {
    fn new(limit: usize) -> Self {
        Self {
            in_flight: FuturesUnordered::new(),
            queued: VecDeque::new(),
            limit: limit.max(1),
        }
    }

    /// The next queued call, if there is room for it.
    fn next_to_start(&mut self) -> Option<Command<R>> {
        if self.in_flight.len() < self.limit {
            self.queued.pop_front()
        } else {
            None
        }
    }
}

/// Whether a request goes to the lease table (else to the stream).
fn is_table_call<R>(command: &Command<R>) -> bool {
    matches!(
        command,
        Command::ScanLeaseTable { .. } | Command::ReadLease { .. } | Command::WriteLease { .. }
    )
}

fn write_op(write: &kcl_core::write::LeaseWrite) -> &'static str {
    match write.action {
        kcl_core::write::WriteAction::Put(_) => "put_item",
        kcl_core::write::WriteAction::Update(_) => "update_item",
        kcl_core::write::WriteAction::Delete => "delete_item",
    }
}

/// Counts and times one call (all its attempts): `kcl_calls_total{op,outcome}`,
/// `kcl_call_retries_total{op}`, `kcl_call_seconds{op}`.
fn record_outcome<R>(
    labels: &Labels,
    op: &'static str,
    input: &Input<R>,
    attempts: u32,
    took: Duration,
) {
    let failure = crate::refusal::answer(input).and_then(|(_, _, failure)| failure);
    let outcome = match failure {
        None => "ok",
        Some(Failure::ConditionFailed) => "condition_failed",
        Some(Failure::Throttled) => "throttled",
        Some(Failure::ExpiredIterator) => "expired_iterator",
        Some(Failure::NotFound) => "not_found",
        Some(Failure::Transient) => "transient",
        Some(Failure::InvalidArgument(why)) => {
            tracing::warn!(op, %why, "call refused as invalid");
            "invalid_argument"
        }
        Some(failure) => {
            tracing::warn!(op, %failure, "call failed");
            match failure {
                Failure::AccessDenied(_) => "access_denied",
                Failure::Service(_) => "refused",
                _ => "other",
            }
        }
    };
    if attempts > 1 {
        metrics::counter!("kcl_call_retries_total", labels.with(&[("op", op.into())]))
            .increment(u64::from(attempts - 1));
    }
    let with_outcome = labels.with(&[("op", op.into()), ("outcome", outcome.into())]);
    metrics::counter!("kcl_calls_total", with_outcome).increment(1);
    metrics::histogram!("kcl_call_seconds", labels.with(&[("op", op.into())]))
        .record(took.as_secs_f64());
    tracing::debug!(op, outcome, attempts, "call");
}
