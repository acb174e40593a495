//! What a running driver tells the outside: metrics through the `metrics` facade, logs through
//! `tracing`, and a [`Status`] snapshot for health probes ([`StatusHandle`]).
//!
//! Every metric carries the labels `consumer` and `stream` (see [`crate::Driver::named`]; a
//! [`crate::ConsumerBuilder`] sets them to the application and the stream), so two consumers in
//! one process keep apart. Per-shard series add `shard`; the other labels are bounded sets (an
//! operation, an outcome, a release reason, a processor call). The names and what they mean are
//! listed in docs/observability.md.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kcl_core::{CallId, Event, Failure, Input, LeaseKey, ProcessorCall, ReleaseReason};
use metrics::Label;

use crate::refusal::Service;

/// What a shard this worker holds is doing, as the driver sees its processor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShardPhase {
    /// Held; its processor is not started yet (its parents are not finished, or nothing was
    /// read yet).
    Acquired,
    /// Its processor's `initialize` was called.
    Initializing,
    /// Records are being delivered.
    Processing,
    /// The shard ended; its processor was told.
    Ending,
    /// The lease is being given up (lost, handed over, shutdown); its processor was told.
    Leaving,
}

/// One held shard in a [`Status`].
#[derive(Clone, Debug, PartialEq)]
pub struct ShardStatus {
    /// What it is doing.
    pub phase: ShardPhase,
    /// `MillisBehindLatest` of its last delivered batch.
    pub millis_behind_latest: Option<u64>,
    /// When records were last handed to its processor.
    pub last_delivery: Option<Instant>,
    /// When the processor call under way started (`None`: the processor is idle, or only told
    /// its lease is lost). A call that has run for long is a hung processor.
    pub call_started: Option<Instant>,
}

/// A snapshot of a running worker, for health and readiness probes.
#[derive(Clone, Debug, PartialEq)]
pub struct Status {
    /// The worker's id in the lease table.
    pub worker_id: String,
    /// The `consumer` label (the application).
    pub consumer: String,
    /// The `stream` label.
    pub stream: String,
    /// Whether this worker is the elected leader (Coordinated).
    pub leader: bool,
    /// The shards it holds.
    pub shards: BTreeMap<LeaseKey, ShardStatus>,
    /// When the lease table last answered a call (a refused condition is an answer).
    pub last_table_answer: Option<Instant>,
    /// When the stream last answered a call. A worker that is neither the leader nor holding a
    /// lease makes no stream calls, so this may stay old on an idle worker.
    pub last_stream_answer: Option<Instant>,
    /// When the driver started running.
    pub started: Instant,
    /// The driver has stopped (shut down, or ended with an error).
    pub stopped: bool,
}

impl Status {
    /// Whether the worker is alive by its lease table: running, and the table answered within
    /// `within` of `now` (or the worker started less than `within` ago). A worker the table does
    /// not answer cannot keep its leases; this is the check for a liveness probe. `within` of
    /// about three failover times leaves room for throttling.
    pub fn is_live(&self, now: Instant, within: Duration) -> bool {
        let last = self.last_table_answer.unwrap_or(self.started);
        !self.stopped && now.saturating_duration_since(last) <= within
    }
}

/// Reads a running driver's [`Status`] from any task or thread. Cheap to clone.
#[derive(Clone, Debug)]
pub struct StatusHandle(Arc<Mutex<Status>>);

impl StatusHandle {
    /// The status now.
    pub fn snapshot(&self) -> Status {
        lock(&self.0).clone()
    }
}

/// A poisoned lock only means a panic elsewhere while the status was updated: what it holds is
/// still the best knowledge there is.
fn lock(status: &Mutex<Status>) -> MutexGuard<'_, Status> {
    status
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The labels every metric of one driver carries.
#[derive(Clone, Debug)]
pub(crate) struct Labels(Arc<[Label]>);

impl Labels {
    fn new(consumer: &str, stream: &str) -> Self {
        Self(
            vec![
                Label::new("consumer", consumer.to_string()),
                Label::new("stream", stream.to_string()),
            ]
            .into(),
        )
    }

    /// These labels and `extra`.
    pub(crate) fn with(&self, extra: &[(&'static str, String)]) -> Vec<Label> {
        let mut labels = self.0.to_vec();
        labels.extend(extra.iter().map(|(k, v)| Label::new(*k, v.clone())));
        labels
    }

    fn shard(&self, shard: &LeaseKey) -> Vec<Label> {
        self.with(&[("shard", shard.to_string())])
    }
}

/// The least gap between two updates of the per-shard age gauges.
const GAUGE_PERIOD: Duration = Duration::from_secs(1);

/// The driver's reporting: metrics, logs and the status.
pub(crate) struct Telemetry {
    labels: Labels,
    status: Arc<Mutex<Status>>,
    gauges_updated: Option<Instant>,
    /// Per held shard, the processor calls sent and not yet returned, oldest first: the
    /// processor runs them one after another, so the oldest is under way.
    outstanding: BTreeMap<LeaseKey, VecDeque<CallId>>,
}

impl Telemetry {
    pub(crate) fn new(worker_id: &str, started: Instant) -> Self {
        Self {
            labels: Labels::new("", ""),
            status: Arc::new(Mutex::new(Status {
                worker_id: worker_id.to_string(),
                consumer: String::new(),
                stream: String::new(),
                leader: false,
                shards: BTreeMap::new(),
                last_table_answer: None,
                last_stream_answer: None,
                started,
                stopped: false,
            })),
            gauges_updated: None,
            outstanding: BTreeMap::new(),
        }
    }

    pub(crate) fn name(&mut self, consumer: &str, stream: &str) {
        self.labels = Labels::new(consumer, stream);
        let mut status = lock(&self.status);
        status.consumer = consumer.to_string();
        status.stream = stream.to_string();
    }

    pub(crate) fn labels(&self) -> &Labels {
        &self.labels
    }

    pub(crate) fn handle(&self) -> StatusHandle {
        StatusHandle(Arc::clone(&self.status))
    }

    pub(crate) fn started(&self, now: Instant) {
        lock(&self.status).started = now;
    }

    pub(crate) fn stopped(&self) {
        lock(&self.status).stopped = true;
    }

    /// A service answered: the status's last answer, when it is one (not a throttle, a timeout
    /// or a transport failure).
    pub(crate) fn on_answer<R>(&self, now: Instant, input: &Input<R>) {
        let Some((service, _, failure)) = crate::refusal::answer(input) else {
            return;
        };
        let answered = matches!(
            failure,
            None | Some(
                Failure::ConditionFailed | Failure::ExpiredIterator | Failure::InvalidArgument(_)
            )
        );
        if answered {
            let mut status = lock(&self.status);
            match service {
                Service::DynamoDb => status.last_table_answer = Some(now),
                Service::Kinesis => status.last_stream_answer = Some(now),
            }
        }
    }

    pub(crate) fn on_event(&mut self, now: Instant, event: &Event) {
        let l = &self.labels;
        match event {
            Event::LeaseAcquired { shard, token } => {
                tracing::info!(%shard, token = token.0, "lease acquired");
                metrics::counter!("kcl_leases_acquired_total", l.with(&[])).increment(1);
                lock(&self.status).shards.insert(
                    shard.clone(),
                    ShardStatus {
                        phase: ShardPhase::Acquired,
                        millis_behind_latest: None,
                        last_delivery: None,
                        call_started: None,
                    },
                );
            }
            Event::LeaseReleased { shard, reason } => {
                tracing::info!(%shard, ?reason, "lease released");
                let reason = release_reason(*reason);
                metrics::counter!(
                    "kcl_leases_released_total",
                    l.with(&[("reason", reason.into())])
                )
                .increment(1);
                // A series cannot be removed through the facade: zero, not stale.
                metrics::gauge!("kcl_millis_behind_latest", l.shard(shard)).set(0.0);
                metrics::gauge!("kcl_seconds_since_last_delivery", l.shard(shard)).set(0.0);
                metrics::gauge!("kcl_processor_call_running_seconds", l.shard(shard)).set(0.0);
                lock(&self.status).shards.remove(shard);
                self.outstanding.remove(shard);
            }
            Event::BecameLeader => {
                tracing::info!("became leader");
                lock(&self.status).leader = true;
            }
            Event::LeadershipLost => {
                tracing::info!("leadership lost");
                lock(&self.status).leader = false;
            }
            Event::MalformedRow { key, error } => {
                tracing::warn!(?key, ?error, "malformed lease row skipped");
                metrics::counter!("kcl_malformed_rows_total", l.with(&[])).increment(1);
            }
            Event::ShardGone { shard } => {
                tracing::warn!(
                    %shard,
                    "shard no longer listed by the stream (trimmed past retention or deleted): finished"
                );
                metrics::counter!("kcl_shards_gone_total", l.with(&[])).increment(1);
            }
            Event::IteratorRefused {
                shard,
                position,
                reason,
            } => {
                tracing::error!(
                    %shard,
                    ?position,
                    reason,
                    "the stream refuses to read this shard from its checkpoint (a lease table of a deleted stream of the same name?): nothing is skipped, retrying until the checkpoint is corrected"
                );
                metrics::counter!("kcl_iterators_refused_total", l.with(&[])).increment(1);
            }
            Event::DuplicateWorkerId { worker } => tracing::error!(
                %worker,
                "another live process has this worker id: stopping (worker ids must be unique per process)"
            ),
            Event::ReadsStalled => {
                tracing::warn!(
                    "every Kinesis call of this worker has gone unanswered for the stall time (a route, endpoint or DNS fault on this host?): the leader moves its leases to workers that can read"
                );
                metrics::counter!("kcl_reads_stalls_total", l.with(&[])).increment(1);
                metrics::gauge!("kcl_reads_stalled", l.with(&[])).set(1.0);
            }
            Event::ReadsResumed => {
                tracing::info!("Kinesis answers this worker again");
                metrics::gauge!("kcl_reads_stalled", l.with(&[])).set(0.0);
            }
            Event::Stopped => {
                tracing::info!("worker stopped");
                metrics::gauge!("kcl_reads_stalled", l.with(&[])).set(0.0);
            }
            other => tracing::debug!(?other, "event"),
        }
        let owned = lock(&self.status).shards.len();
        metrics::gauge!("kcl_owned_leases", l.with(&[])).set(owned as f64);
        self.update_gauges(now, true);
    }

    /// Call `id` handed to `shard`'s processor.
    pub(crate) fn on_processor_call<R: kcl_core::Record>(
        &mut self,
        now: Instant,
        shard: &LeaseKey,
        id: CallId,
        call: &ProcessorCall<R>,
    ) {
        let l = &self.labels;
        let (phase, lag) = match call {
            ProcessorCall::Initialize { .. } => (ShardPhase::Initializing, None),
            ProcessorCall::ProcessRecords {
                records,
                millis_behind_latest,
                ..
            } => {
                let bytes: usize = records.iter().map(kcl_core::Record::size_bytes).sum();
                metrics::counter!("kcl_records_delivered_total", l.with(&[]))
                    .increment(records.len() as u64);
                metrics::counter!("kcl_bytes_delivered_total", l.with(&[])).increment(bytes as u64);
                metrics::gauge!("kcl_millis_behind_latest", l.shard(shard))
                    .set(*millis_behind_latest as f64);
                (ShardPhase::Processing, Some(*millis_behind_latest))
            }
            ProcessorCall::ShardEnded { .. } => (ShardPhase::Ending, None),
            ProcessorCall::LeaseLost | ProcessorCall::ShutdownRequested { .. } => {
                (ShardPhase::Leaving, None)
            }
            _ => return,
        };
        let mut status = lock(&self.status);
        let Some(s) = status.shards.get_mut(shard) else {
            return;
        };
        s.phase = phase;
        if lag.is_some() {
            s.millis_behind_latest = lag;
            s.last_delivery = Some(now);
        }
        // A processor told its lease is lost does not answer: nothing to wait for.
        if !matches!(call, ProcessorCall::LeaseLost) {
            let queue = self.outstanding.entry(shard.clone()).or_default();
            if queue.is_empty() {
                s.call_started = Some(now);
            }
            queue.push_back(id);
        }
    }

    /// `shard`'s processor returned from call `id` (or failed in it); the next call it has, if
    /// any, starts now.
    pub(crate) fn on_processor_returned(&mut self, now: Instant, shard: &LeaseKey, id: CallId) {
        let Some(queue) = self.outstanding.get_mut(shard) else {
            return;
        };
        queue.retain(|c| *c != id);
        let next = (!queue.is_empty()).then_some(now);
        if let Some(s) = lock(&self.status).shards.get_mut(shard) {
            s.call_started = next;
        }
    }

    /// Refreshes the per-shard age gauges (`kcl_seconds_since_last_delivery`,
    /// `kcl_processor_call_running_seconds`), at most once per second unless `force`d. The
    /// driver wakes at least every renewal interval, so they are never staler than that.
    pub(crate) fn update_gauges(&mut self, now: Instant, force: bool) {
        if !force
            && self
                .gauges_updated
                .is_some_and(|at| now.saturating_duration_since(at) < GAUGE_PERIOD)
        {
            return;
        }
        self.gauges_updated = Some(now);
        let status = lock(&self.status);
        for (shard, s) in &status.shards {
            let age = |at: Option<Instant>| {
                at.map_or(0.0, |at| now.saturating_duration_since(at).as_secs_f64())
            };
            metrics::gauge!("kcl_seconds_since_last_delivery", self.labels.shard(shard))
                .set(age(s.last_delivery));
            metrics::gauge!(
                "kcl_processor_call_running_seconds",
                self.labels.shard(shard)
            )
            .set(age(s.call_started));
        }
    }
}

/// The `reason` label of `kcl_leases_released_total`.
pub(crate) fn release_reason(reason: ReleaseReason) -> &'static str {
    match reason {
        ReleaseReason::Lost => "lost",
        ReleaseReason::HandedOver => "handed_over",
        ReleaseReason::ShardEnded => "shard_ended",
        ReleaseReason::Shutdown => "shutdown",
        ReleaseReason::ProcessorFailed => "processor_failed",
    }
}

/// The `call` label of `kcl_processor_call_seconds`.
pub(crate) fn processor_call_name<R>(call: &ProcessorCall<R>) -> &'static str {
    match call {
        ProcessorCall::Initialize { .. } => "initialize",
        ProcessorCall::ProcessRecords { .. } => "process_records",
        ProcessorCall::ShardEnded { .. } => "shard_ended",
        ProcessorCall::LeaseLost => "lease_lost",
        ProcessorCall::ShutdownRequested { .. } => "shutdown_requested",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kcl_core::{BasicRecord, FencingToken, RequestId};

    fn scanned(result: Result<Vec<kcl_core::Item>, Failure>) -> Input<BasicRecord> {
        Input::LeaseTableScanned {
            req: RequestId(1),
            result,
        }
    }

    #[test]
    fn an_answer_is_a_success_or_a_refusal_not_a_throttle_or_a_timeout() {
        let start = Instant::now();
        let t = Telemetry::new("w", start);
        let later = start + Duration::from_secs(5);
        t.on_answer(later, &scanned(Err(Failure::Throttled)));
        t.on_answer(later, &scanned(Err(Failure::Transient)));
        assert_eq!(t.handle().snapshot().last_table_answer, None);
        t.on_answer(later, &scanned(Err(Failure::ConditionFailed)));
        assert_eq!(t.handle().snapshot().last_table_answer, Some(later));
        assert_eq!(t.handle().snapshot().last_stream_answer, None);
    }

    #[test]
    fn a_worker_is_live_while_running_and_its_table_answers() {
        let start = Instant::now();
        let t = Telemetry::new("w", start);
        let within = Duration::from_secs(30);
        let s = t.handle();
        assert!(
            s.snapshot()
                .is_live(start + Duration::from_secs(10), within),
            "just started"
        );
        assert!(
            !s.snapshot()
                .is_live(start + Duration::from_secs(31), within),
            "never answered"
        );
        t.on_answer(start + Duration::from_secs(20), &scanned(Ok(Vec::new())));
        assert!(s
            .snapshot()
            .is_live(start + Duration::from_secs(45), within));
        t.stopped();
        assert!(
            !s.snapshot()
                .is_live(start + Duration::from_secs(45), within),
            "stopped"
        );
    }

    #[test]
    fn held_shards_follow_their_processor_calls() {
        let start = Instant::now();
        let mut t = Telemetry::new("w", start);
        let shard = LeaseKey::new("shardId-1");
        let at = |s: u64| start + Duration::from_secs(s);
        t.on_event(
            at(1),
            &Event::LeaseAcquired {
                shard: shard.clone(),
                token: FencingToken(1),
            },
        );
        let phase = |t: &Telemetry| t.handle().snapshot().shards.get(&shard).map(|s| s.phase);
        assert_eq!(phase(&t), Some(ShardPhase::Acquired));
        let records = ProcessorCall::<BasicRecord>::ProcessRecords {
            records: Vec::new(),
            millis_behind_latest: 7,
            token: FencingToken(1),
        };
        t.on_processor_call(at(2), &shard, CallId(1), &records);
        t.on_processor_call(at(3), &shard, CallId(2), &records);
        let s = t.handle().snapshot().shards[&shard].clone();
        assert_eq!(s.phase, ShardPhase::Processing);
        assert_eq!(s.millis_behind_latest, Some(7));
        assert_eq!(s.last_delivery, Some(at(3)));
        assert_eq!(s.call_started, Some(at(2)), "the first call is under way");
        t.on_processor_returned(at(6), &shard, CallId(1));
        let started = |t: &Telemetry| t.handle().snapshot().shards[&shard].call_started;
        assert_eq!(
            started(&t),
            Some(at(6)),
            "the second starts when the first returns"
        );
        t.on_processor_returned(at(7), &shard, CallId(2));
        assert_eq!(started(&t), None);
        t.on_processor_call(
            at(8),
            &shard,
            CallId(3),
            &ProcessorCall::<BasicRecord>::LeaseLost,
        );
        assert_eq!(started(&t), None, "no answer is awaited after LeaseLost");
        t.on_event(at(4), &Event::BecameLeader);
        assert!(t.handle().snapshot().leader);
        t.on_event(
            at(5),
            &Event::LeaseReleased {
                shard: shard.clone(),
                reason: ReleaseReason::Lost,
            },
        );
        assert_eq!(phase(&t), None);
    }
}
