//! Enhanced fan-out: records pushed over `SubscribeToShard`, behind the same [`ShardStream`] the
//! core drives by polling.
//!
//! The core knows only GetShardIterator and GetRecords, and keeps it that way: whether records
//! are pulled or pushed is the driver's business, so the core's lease, checkpoint and shard-end
//! logic, its invariants and the simulator's evidence hold for both. Here an "iterator" is a
//! position, `efo:SHARD:TYPE[:VALUE]`, and a "GetRecords" is the next event of that shard's
//! subscription:
//!
//! - The first call for a position subscribes from it. Each event moves the position to
//!   `AFTER_SEQUENCE_NUMBER` of its continuation sequence number, and the next call with that
//!   position takes the next event of the same subscription. A call with any other position
//!   (the core resumed somewhere else) ends the subscription and starts one from there.
//! - Kinesis ends a subscription after 5 minutes. It is renewed before that, after
//!   [`FanOutStream::renew_after`] (4 min 30 s), from the position reached, so no event is lost
//!   or repeated; a subscription that ends or fails anyway is replaced by the next call the same
//!   way. A new subscription within 5 s of the previous one is refused by Kinesis
//!   (`ResourceInUseException`): that is reported as throttling, and the core backs off.
//! - Back-pressure: a reader task per subscription holds at most two events the core has not
//!   taken (one queued, one waiting for room). Until the core asks for more (it asks only while
//!   fewer than `max_prefetched_batches` batches wait for the processor), the task does not
//!   read, and HTTP/2 flow control stops the service from sending.
//! - An event without a continuation sequence number ends the shard, with its child shards.
//! - A subscription whose shard is no longer asked for (the lease moved) is closed at the next
//!   call for any shard once it has been idle for [`FanOutStream::idle_close`].
//!
//! Pacing is the service's: a worker on fan-out runs with `min_fetch_interval` and
//! `idle_time_between_reads` at zero (the [`crate::ConsumerBuilder`] sets them), and a call
//! waits for the next event, which Kinesis sends at least every few seconds.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::primitives::DateTime;
use aws_sdk_kinesis::types::error::SubscribeToShardEventStreamError;
use aws_sdk_kinesis::types::{
    ConsumerStatus, ShardIteratorType, StartingPosition as SdkPosition, SubscribeToShardEventStream,
};
use aws_sdk_kinesis::Client;
use futures_channel::{mpsc, oneshot};
use futures_util::StreamExt;
use kcl_core::{
    Failure, FetchedRecords, HashKeyRange, SequenceNumber, ServiceError, ShardDescription,
    StartingPosition,
};

use crate::backend::ShardStream;
use crate::failure::{classify, classify_code, error_chain};
use crate::kinesis::{child_shards, user_records, KinesisStream, StreamId};
use crate::record::KinesisRecord;
use crate::runtime::Runtime;

const PREFIX: &str = "efo";

/// A stream consumed by enhanced fan-out through one registered stream consumer.
#[derive(Clone)]
pub struct FanOutStream<Rt: Runtime> {
    polling: KinesisStream,
    consumer_arn: String,
    runtime: Rt,
    subscriptions: Arc<Mutex<BTreeMap<String, Subscription>>>,
    renew_after: Duration,
    idle_close: Duration,
    opened: Arc<AtomicU64>,
}

impl<Rt: Runtime> std::fmt::Debug for FanOutStream<Rt> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FanOutStream")
            .field("stream", self.polling.stream())
            .field("consumer_arn", &self.consumer_arn)
            .finish_non_exhaustive()
    }
}

/// What a reader task hands over.
enum Delivery {
    Event(Box<aws_sdk_kinesis::types::SubscribeToShardEvent>),
    /// The service ended the subscription (its 5 minutes are up).
    Ended,
    Failed(Failure),
}

struct Subscription {
    /// The position (iterator) of the next event it delivers.
    position: String,
    events: mpsc::Receiver<Delivery>,
    started: Instant,
    last_used: Instant,
    /// Dropping it stops the reader task, which closes the connection.
    _stop: oneshot::Sender<()>,
}

impl<Rt: Runtime> FanOutStream<Rt> {
    /// Registers the stream consumer `consumer_name` on the stream, or reuses it if it exists,
    /// and waits (up to `timeout`) until it is `ACTIVE`. `client` is used as
    /// [`KinesisStream::new`] uses it (its retries off); ListShards stays a polling call.
    pub async fn register(
        runtime: Rt,
        client: &Client,
        stream: impl Into<StreamId>,
        consumer_name: &str,
        timeout: Duration,
    ) -> Result<Self, Failure> {
        let polling = KinesisStream::new(client, stream);
        let client = polling.client().clone();
        let stream_arn = match polling.stream() {
            StreamId::Arn(arn) => arn.clone(),
            StreamId::Name(name) => {
                let summary = client
                    .describe_stream_summary()
                    .stream_name(name)
                    .send()
                    .await
                    .map_err(|e| classify(&e))?;
                summary
                    .stream_description_summary()
                    .map(|s| s.stream_arn().to_string())
                    .ok_or_else(|| Failure::Other(format!("no description of stream {name}")))?
            }
        };
        let deadline = runtime.now() + timeout;
        loop {
            let described = client
                .describe_stream_consumer()
                .stream_arn(&stream_arn)
                .consumer_name(consumer_name)
                .send()
                .await;
            match described {
                Ok(got) => {
                    if let Some(c) = got.consumer_description() {
                        if *c.consumer_status() == ConsumerStatus::Active {
                            tracing::info!(consumer = c.consumer_arn(), "stream consumer ready");
                            return Ok(Self::new(runtime, polling, c.consumer_arn()));
                        }
                    }
                }
                Err(e) if classify(&e) == Failure::NotFound => {
                    let registered = client
                        .register_stream_consumer()
                        .stream_arn(&stream_arn)
                        .consumer_name(consumer_name)
                        .send()
                        .await;
                    match registered {
                        Ok(_) => tracing::info!(consumer_name, "stream consumer registered"),
                        // Another worker registered it first: describe it again.
                        Err(e)
                            if e.as_service_error().and_then(|s| s.code())
                                == Some("ResourceInUseException") => {}
                        Err(e) => return Err(classify(&e)),
                    }
                }
                Err(e) => match classify(&e) {
                    Failure::Throttled | Failure::Transient => {}
                    other => return Err(other),
                },
            }
            if runtime.now() >= deadline {
                return Err(Failure::Other(format!(
                    "stream consumer {consumer_name} not ACTIVE within {timeout:?}"
                )));
            }
            runtime.sleep(Duration::from_millis(500)).await;
        }
    }

    /// Consumes through the already registered consumer `consumer_arn`.
    pub fn new(runtime: Rt, polling: KinesisStream, consumer_arn: &str) -> Self {
        Self {
            polling,
            consumer_arn: consumer_arn.to_string(),
            runtime,
            subscriptions: Arc::default(),
            renew_after: Duration::from_secs(270),
            idle_close: Duration::from_secs(60),
            opened: Arc::default(),
        }
    }

    /// The consumer's ARN.
    pub fn consumer_arn(&self) -> &str {
        &self.consumer_arn
    }

    /// Renews a subscription once it is this old (default 4 min 30 s; Kinesis ends them at 5).
    pub fn renew_after(mut self, age: Duration) -> Self {
        self.renew_after = age;
        self
    }

    /// Closes a subscription no call has asked for in this long (default 60 s).
    pub fn idle_close(mut self, idle: Duration) -> Self {
        self.idle_close = idle;
        self
    }

    /// How many subscriptions were opened so far.
    pub fn subscriptions_opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    fn table(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Subscription>> {
        self.subscriptions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The subscription serving `position` of `shard`, if it may go on; others are dropped.
    fn take(&self, shard: &str, position: &str) -> Option<Subscription> {
        let now = self.runtime.now();
        let mut table = self.table();
        table.retain(|s, sub| s == shard || now.duration_since(sub.last_used) < self.idle_close);
        let sub = table.remove(shard)?;
        (sub.position == position && now.duration_since(sub.started) < self.renew_after)
            .then_some(sub)
    }

    async fn subscribe(&self, shard: &str, position: &str) -> Result<Subscription, Failure> {
        let start = parse_position(position)?.1;
        let got = self
            .polling
            .client()
            .subscribe_to_shard()
            .consumer_arn(&self.consumer_arn)
            .shard_id(shard)
            .starting_position(start)
            .send()
            .await
            .map_err(|e| match e.as_service_error().and_then(|s| s.code()) {
                Some("ResourceInUseException") => Failure::Throttled,
                _ => classify(&e),
            })?;
        self.opened.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("kcl_fan_out_subscriptions_total").increment(1);
        let mut receiver = got.event_stream;
        // One event queued at most: the task waits for room before reading past the next.
        let (mut tx, events) = mpsc::channel(0);
        let (stop, mut stopped) = oneshot::channel::<()>();
        self.runtime.spawn(async move {
            loop {
                let recv = core::pin::pin!(receiver.recv());
                let delivery = match futures_util::future::select(recv, &mut stopped).await {
                    futures_util::future::Either::Right(_) => return,
                    futures_util::future::Either::Left((got, _)) => match got {
                        Ok(Some(SubscribeToShardEventStream::SubscribeToShardEvent(event))) => {
                            Delivery::Event(Box::new(event))
                        }
                        Ok(Some(other)) => {
                            tracing::debug!(?other, "unknown SubscribeToShard event skipped");
                            continue;
                        }
                        Ok(None) => Delivery::Ended,
                        Err(e) => Delivery::Failed(classify_event_error(&e)),
                    },
                };
                let last = !matches!(delivery, Delivery::Event(_));
                // Waits for room: the consumer's pace is the reader's.
                let ready = futures_util::future::poll_fn(|cx| tx.poll_ready(cx)).await;
                if ready.and_then(|()| tx.start_send(delivery)).is_err() || last {
                    return;
                }
            }
        });
        let now = self.runtime.now();
        Ok(Subscription {
            position: position.to_string(),
            events,
            started: now,
            last_used: now,
            _stop: stop,
        })
    }
}

fn classify_event_error<R: std::fmt::Debug>(
    e: &SdkError<SubscribeToShardEventStreamError, R>,
) -> Failure {
    use SubscribeToShardEventStreamError as E;
    match e {
        // By variant: an exception inside the event stream may carry no error code.
        SdkError::ServiceError(s) => match s.err() {
            // A second subscription to the shard (within 5 s of the last, or while it lasts).
            E::ResourceInUseException(_) => Failure::Throttled,
            E::ResourceNotFoundException(_) => Failure::NotFound,
            E::KmsThrottlingException(_) | E::InternalFailureException(_) => Failure::Transient,
            E::KmsDisabledException(_)
            | E::KmsInvalidStateException(_)
            | E::KmsAccessDeniedException(_)
            | E::KmsNotFoundException(_)
            | E::KmsOptInRequired(_) => Failure::AccessDenied(ServiceError::new(
                s.err().code().unwrap_or("KMSException"),
                &error_chain(s.err()),
            )),
            other => classify_code(other.code(), 400, other.message(), None),
        },
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            Failure::Transient
        }
        other => Failure::Other(error_chain(other)),
    }
}

/// The iterator standing for `position` of `shard`.
fn encode_position(shard: &str, position: &StartingPosition) -> String {
    match position {
        StartingPosition::TrimHorizon => format!("{PREFIX}:{shard}:TRIM_HORIZON"),
        StartingPosition::Latest => format!("{PREFIX}:{shard}:LATEST"),
        StartingPosition::AtTimestamp(ms) => format!("{PREFIX}:{shard}:AT_TIMESTAMP:{ms}"),
        StartingPosition::AtSequenceNumber(s) => {
            format!("{PREFIX}:{shard}:AT_SEQUENCE_NUMBER:{}", s.as_str())
        }
        StartingPosition::AfterSequenceNumber(s) => {
            format!("{PREFIX}:{shard}:AFTER_SEQUENCE_NUMBER:{}", s.as_str())
        }
    }
}

/// The shard and the SDK starting position an iterator of [`encode_position`] stands for.
fn parse_position(iterator: &str) -> Result<(&str, SdkPosition), Failure> {
    let bad = || Failure::Other(format!("{iterator:?} is not a fan-out position"));
    let mut parts = iterator.splitn(4, ':');
    if parts.next() != Some(PREFIX) {
        return Err(bad());
    }
    let shard = parts.next().filter(|s| !s.is_empty()).ok_or_else(bad)?;
    let kind = parts.next().ok_or_else(bad)?;
    let value = parts.next();
    let builder = SdkPosition::builder();
    let builder = match (kind, value) {
        ("TRIM_HORIZON", None) => builder.r#type(ShardIteratorType::TrimHorizon),
        ("LATEST", None) => builder.r#type(ShardIteratorType::Latest),
        ("AT_TIMESTAMP", Some(ms)) => {
            let ms: i64 = ms.parse().map_err(|_| bad())?;
            builder
                .r#type(ShardIteratorType::AtTimestamp)
                .timestamp(DateTime::from_millis(ms))
        }
        ("AT_SEQUENCE_NUMBER", Some(s)) => {
            SequenceNumber::parse(s).map_err(|_| bad())?;
            builder
                .r#type(ShardIteratorType::AtSequenceNumber)
                .sequence_number(s)
        }
        ("AFTER_SEQUENCE_NUMBER", Some(s)) => {
            SequenceNumber::parse(s).map_err(|_| bad())?;
            builder
                .r#type(ShardIteratorType::AfterSequenceNumber)
                .sequence_number(s)
        }
        _ => return Err(bad()),
    };
    Ok((shard, builder.build().map_err(|_| bad())?))
}

/// Puts a subscription back when the call using it is cancelled (the driver's timeout) or done.
struct Borrowed<'a, Rt: Runtime> {
    stream: &'a FanOutStream<Rt>,
    shard: &'a str,
    sub: Option<Subscription>,
}

impl<Rt: Runtime> Drop for Borrowed<'_, Rt> {
    fn drop(&mut self) {
        if let Some(mut sub) = self.sub.take() {
            sub.last_used = self.stream.runtime.now();
            self.stream.table().insert(self.shard.to_string(), sub);
        }
    }
}

impl<Rt: Runtime> ShardStream for FanOutStream<Rt> {
    type Record = KinesisRecord;

    async fn list_shards(&self) -> Result<Vec<ShardDescription>, Failure> {
        self.polling.list_shards().await
    }

    async fn shard_iterator(
        &self,
        shard: &str,
        position: &StartingPosition,
    ) -> Result<String, Failure> {
        Ok(encode_position(shard, position))
    }

    /// The next event of the shard's subscription at `iterator` (`limit` does not apply: the
    /// service sizes events).
    async fn get_records(
        &self,
        iterator: &str,
        _limit: u32,
        shard_range: Option<HashKeyRange>,
    ) -> Result<FetchedRecords<KinesisRecord>, Failure> {
        let (shard, _) = parse_position(iterator)?;
        let mut borrowed = Borrowed {
            stream: self,
            shard,
            sub: self.take(shard, iterator),
        };
        loop {
            if borrowed.sub.is_none() {
                borrowed.sub = Some(self.subscribe(shard, iterator).await?);
            }
            let delivery = match borrowed.sub.as_mut() {
                Some(sub) => sub.events.next().await.unwrap_or(Delivery::Ended),
                None => Delivery::Ended,
            };
            let event = match delivery {
                Delivery::Event(event) => event,
                Delivery::Ended => {
                    tracing::debug!(shard, "subscription ended; subscribing again");
                    borrowed.sub = None;
                    continue;
                }
                Delivery::Failed(failure) => {
                    borrowed.sub = None;
                    return Err(failure);
                }
            };
            let fetched = match fetched(shard, *event, shard_range) {
                Ok(fetched) => fetched,
                Err(failure) => {
                    // Not past the event: the next call subscribes here again and sees it again.
                    borrowed.sub = None;
                    return Err(failure);
                }
            };
            match &fetched.next_iterator {
                Some(next) => {
                    if let Some(sub) = borrowed.sub.as_mut() {
                        sub.position = next.to_string();
                    }
                }
                None => borrowed.sub = None,
            }
            return Ok(fetched);
        }
    }
}

/// What an event of `shard`'s subscription means to the core: its records, the position after
/// it, or (no continuation sequence number) the shard's end with its children.
fn fetched(
    shard: &str,
    event: aws_sdk_kinesis::types::SubscribeToShardEvent,
    shard_range: Option<HashKeyRange>,
) -> Result<FetchedRecords<KinesisRecord>, Failure> {
    let mut records = Vec::with_capacity(event.records.len());
    for record in event.records {
        user_records(record, shard_range, &mut records)?;
    }
    // The SDK turns an absent continuation (the last event of a closed shard) into "".
    let next_iterator = if event.continuation_sequence_number.is_empty() {
        None
    } else {
        let after = SequenceNumber::parse(&event.continuation_sequence_number)
            .map_err(|e| Failure::Other(format!("continuation sequence number: {e:?}")))?;
        Some(encode_position(shard, &StartingPosition::AfterSequenceNumber(after)).into())
    };
    Ok(FetchedRecords {
        records,
        next_iterator,
        millis_behind_latest: u64::try_from(event.millis_behind_latest).unwrap_or(0),
        child_shards: child_shards(event.child_shards.unwrap_or_default())?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_through_iterators() {
        let seq = SequenceNumber::parse("49590338271490256608559692538361571095921575989136588898")
            .unwrap_or_else(|e| panic!("{e:?}"));
        for position in [
            StartingPosition::TrimHorizon,
            StartingPosition::Latest,
            StartingPosition::AtTimestamp(1_700_000_000_000),
            StartingPosition::AtSequenceNumber(seq.clone()),
            StartingPosition::AfterSequenceNumber(seq),
        ] {
            let it = encode_position("shardId-000000000007", &position);
            let (shard, sdk) = parse_position(&it).unwrap_or_else(|e| panic!("{it}: {e:?}"));
            assert_eq!(shard, "shardId-000000000007");
            assert_eq!(
                sdk.r#type().as_str(),
                it.split(':').nth(2).unwrap_or_default()
            );
            if let StartingPosition::AtSequenceNumber(s)
            | StartingPosition::AfterSequenceNumber(s) = &position
            {
                assert_eq!(sdk.sequence_number(), Some(s.as_str()));
            }
        }
    }

    #[test]
    fn foreign_iterators_are_refused() {
        for it in [
            "AAAAAAAAAAF7",
            "efo::TRIM_HORIZON",
            "efo:shardId-1:SOMEWHERE",
            "efo:shardId-1:AT_SEQUENCE_NUMBER",
            "efo:shardId-1:AT_SEQUENCE_NUMBER:12x",
            "efo:shardId-1:AT_TIMESTAMP:soon",
            "efo:shardId-1:LATEST:5",
        ] {
            assert!(parse_position(it).is_err(), "{it}");
        }
    }

    fn record(sequence: &str, data: u8) -> aws_sdk_kinesis::types::Record {
        aws_sdk_kinesis::types::Record::builder()
            .sequence_number(sequence)
            .partition_key("k")
            .data(aws_sdk_kinesis::primitives::Blob::new(vec![data]))
            .build()
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn an_event_moves_the_position_after_its_continuation() {
        let event = aws_sdk_kinesis::types::SubscribeToShardEvent::builder()
            .records(record("101", 1))
            .records(record("102", 2))
            .continuation_sequence_number("102")
            .millis_behind_latest(1500)
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let got = fetched("shardId-1", event, None).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(got.records.len(), 2);
        assert_eq!(got.records[1].data, vec![2]);
        assert_eq!(
            got.next_iterator.as_deref(),
            Some("efo:shardId-1:AFTER_SEQUENCE_NUMBER:102")
        );
        assert_eq!(got.millis_behind_latest, 1500);
        assert!(got.child_shards.is_empty());
    }

    #[test]
    fn an_event_without_continuation_ends_the_shard_with_its_children() {
        let child = aws_sdk_kinesis::types::ChildShard::builder()
            .shard_id("shardId-3")
            .parent_shards("shardId-2")
            .parent_shards("shardId-1")
            .hash_key_range(
                aws_sdk_kinesis::types::HashKeyRange::builder()
                    .starting_hash_key("0")
                    .ending_hash_key("340282366920938463463374607431768211455")
                    .build()
                    .unwrap_or_else(|e| panic!("{e}")),
            )
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let event = aws_sdk_kinesis::types::SubscribeToShardEvent::builder()
            .set_records(Some(Vec::new()))
            .continuation_sequence_number("")
            .millis_behind_latest(0)
            .child_shards(child)
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let got = fetched("shardId-1", event, None).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(got.next_iterator, None);
        assert_eq!(got.child_shards.len(), 1);
        assert_eq!(got.child_shards[0].shard_id.as_str(), "shardId-3");
        let parents: Vec<&str> = got.child_shards[0]
            .parents
            .iter()
            .map(|p| p.as_str())
            .collect();
        assert_eq!(parents, ["shardId-1", "shardId-2"]);
    }

    #[test]
    fn a_malformed_continuation_is_a_typed_failure() {
        let event = aws_sdk_kinesis::types::SubscribeToShardEvent::builder()
            .set_records(Some(Vec::new()))
            .continuation_sequence_number("next-please")
            .millis_behind_latest(0)
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            fetched("shardId-1", event, None),
            Err(Failure::Other(_))
        ));
    }
}
