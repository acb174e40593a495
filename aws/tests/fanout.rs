//! Enhanced fan-out against kinesis-local (the emulator with stream consumers and
//! SubscribeToShard): registration and reuse, records in order across renewed subscriptions,
//! a parent's end with its child shards, renewals flowing while quiet shards' subscriptions fill
//! the stream lane.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use kcl_aws::{
    Batch, Checkpointer, Driver, DriverConfig, DynamoLeaseTable, FanOutStream, Initialize,
    KinesisRecord, KinesisStream, RecordProcessor, ShardStream,
};
use kcl_core::{Config, Failure, FetchedRecords, LeaseKey, StartingPosition, WorkerId};

async fn register(client: &aws_sdk_kinesis::Client, stream: &str) -> FanOutStream<common::Tokio> {
    FanOutStream::register(
        common::Tokio,
        client,
        stream,
        "app",
        Duration::from_secs(30),
    )
    .await
    .unwrap()
}

/// The next event, retrying what the driver would retry (a subscription refused within 5 s of
/// the previous one comes back as throttling).
async fn next_event(
    stream: &FanOutStream<common::Tokio>,
    iterator: &str,
) -> FetchedRecords<KinesisRecord> {
    for _ in 0..40 {
        match stream.get_records(iterator, 10_000, None).await {
            Ok(batch) => return batch,
            Err(Failure::Throttled | Failure::Transient) => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("SubscribeToShard: {e:?}"),
        }
    }
    panic!("no event after 40 attempts");
}

/// Reads events from `iterator` until `want` records came (or the shard ended).
async fn read(
    stream: &FanOutStream<common::Tokio>,
    mut iterator: String,
    want: usize,
) -> (
    Vec<KinesisRecord>,
    Option<FetchedRecords<KinesisRecord>>,
    usize,
) {
    let mut records = Vec::new();
    let mut events = 0;
    for _ in 0..200 {
        let batch = tokio::time::timeout(Duration::from_secs(30), next_event(stream, &iterator))
            .await
            .unwrap();
        events += 1;
        records.extend(batch.records.iter().cloned());
        match &batch.next_iterator {
            None => return (records, Some(batch), events),
            Some(next) => iterator = next.to_string(),
        }
        if records.len() >= want {
            return (records, None, events);
        }
    }
    panic!("{} of {want} records after 200 events", records.len());
}

#[tokio::test]
async fn events_come_in_order_and_a_renewed_subscription_resumes_where_the_last_stopped() {
    let Some(url) = common::endpoint("KCLRS_TEST_KINESIS_FULL") else {
        return;
    };
    let client = common::kinesis(&url);
    let name = common::create_stream(&client, 1).await;
    let stream = register(&client, &name).await;
    let again = register(&client, &name).await;
    assert_eq!(
        stream.consumer_arn(),
        again.consumer_arn(),
        "an existing consumer is reused"
    );
    let shard = stream.list_shards().await.unwrap()[0].shard_id.clone();

    common::put(
        &client,
        &name,
        (0..20u8).map(|i| ("k".into(), vec![i])).collect(),
    )
    .await;
    let start = stream
        .shard_iterator(shard.as_str(), &StartingPosition::TrimHorizon)
        .await
        .unwrap();
    let (first, end, _) = read(&stream, start, 20).await;
    assert!(end.is_none());
    assert_eq!(
        first.iter().map(|r| r.data[0]).collect::<Vec<_>>(),
        (0..20).collect::<Vec<u8>>()
    );
    let opened = stream.subscriptions_opened();
    assert_eq!(opened, 1, "one subscription serves consecutive events");

    // Renew at every call from now on: each resumes after the last record delivered.
    let renewing = stream.clone().renew_after(Duration::ZERO);
    common::put(
        &client,
        &name,
        (20..30u8).map(|i| ("k".into(), vec![i])).collect(),
    )
    .await;
    let after = StartingPosition::AfterSequenceNumber(first[19].position.sequence.clone());
    let resume = renewing
        .shard_iterator(shard.as_str(), &after)
        .await
        .unwrap();
    let (second, _, events) = read(&renewing, resume, 10).await;
    assert_eq!(
        second.iter().map(|r| r.data[0]).collect::<Vec<_>>(),
        (20..30).collect::<Vec<u8>>()
    );
    assert!(renewing.subscriptions_opened() >= opened + events as u64);
}

/// kinesis-local never sends the last event of a closed shard (no continuation, child shards):
/// its subscriptions to a closed parent stay open with empty events. What it can show is that
/// a closed parent's records come by fan-out; the end itself is unit-tested (`fanout::fetched`).
#[tokio::test]
async fn a_closed_parent_delivers_its_records_by_fan_out() {
    let Some(url) = common::endpoint("KCLRS_TEST_KINESIS_FULL") else {
        return;
    };
    let client = common::kinesis(&url);
    let name = common::create_stream(&client, 2).await;
    let stream = register(&client, &name).await;
    let shards = stream.list_shards().await.unwrap();
    let (a, b) = (shards[0].shard_id.clone(), shards[1].shard_id.clone());
    let entries: Vec<(String, Vec<u8>)> = (0..6u8).map(|i| (format!("k{i}"), vec![i])).collect();
    common::put(&client, &name, entries).await;
    common::merge(&client, &name, a.as_str(), b.as_str()).await;
    let mut data = Vec::new();
    for parent in [&a, &b] {
        let polled = KinesisStream::new(&client, name.as_str());
        let start = polled
            .shard_iterator(parent.as_str(), &StartingPosition::TrimHorizon)
            .await
            .unwrap();
        let expected = polled
            .get_records(&start, 100, None)
            .await
            .unwrap()
            .records
            .len();
        let start = stream
            .shard_iterator(parent.as_str(), &StartingPosition::TrimHorizon)
            .await
            .unwrap();
        let (got, _, _) = read(&stream, start, expected).await;
        data.extend(got.into_iter().map(|r| r.data[0]));
    }
    data.sort_unstable();
    assert_eq!(data, (0..6).collect::<Vec<u8>>());
}

#[tokio::test]
async fn a_missing_stream_fails_registration_with_a_typed_error() {
    let Some(url) = common::endpoint("KCLRS_TEST_KINESIS_FULL") else {
        return;
    };
    let client = common::kinesis(&url);
    let got = FanOutStream::register(
        common::Tokio,
        &client,
        common::unique("missing").as_str(),
        "app",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(got.err(), Some(Failure::NotFound));
}

struct Idle;

impl RecordProcessor<KinesisRecord> for Idle {
    async fn initialize(&mut self, _: &Initialize) {}
    async fn process_records(&mut self, _: Batch<KinesisRecord>, _: &Checkpointer) {}
}

/// More shards than stream calls may be in flight, and the stream goes quiet (a proxy stops
/// forwarding): every stream slot holds a subscription waiting for an event that does not come,
/// and the lease table's calls, in a lane of their own, still renew every lease. (In one lane
/// shared with the reads, the renewals queued behind them and every lease expired.)
#[tokio::test]
async fn renewals_flow_while_quiet_fan_out_shards_fill_the_stream_lane() {
    const SHARDS: usize = 70;
    let Some(url) = common::endpoint("KCLRS_TEST_KINESIS_FULL") else {
        return;
    };
    let Some(dynamo_url) = common::endpoint("KCLRS_TEST_DYNAMODB") else {
        return;
    };
    let proxy = common::Proxy::start(url.trim_start_matches("http://")).unwrap();
    let client = common::kinesis(&format!("http://127.0.0.1:{}", proxy.port()));
    let name = common::create_stream(&client, SHARDS as i32).await;
    let stream = register(&client, &name).await;
    let table = DynamoLeaseTable::new(&common::dynamodb(&dynamo_url), format!("{name}-leases"));
    table
        .ensure_table(&common::Tokio, Duration::from_secs(30))
        .await
        .unwrap();
    let mut config = DriverConfig {
        worker: Config {
            min_fetch_interval: Duration::ZERO,
            idle_time_between_reads: Duration::ZERO,
            ..common::fast_config()
        },
        max_stream_calls_in_flight: 64,
        ..DriverConfig::default()
    };
    // Longer than the quiet spell: a waiting read holds its slot throughout.
    config.retry.call_timeout = Duration::from_secs(30);
    let driver = Driver::new(
        common::Tokio,
        table,
        stream,
        |_: &LeaseKey| Idle,
        WorkerId::from("solo"),
        config,
        5,
    )
    .unwrap();
    let status = driver.status_handle();
    let shutdown = driver.shutdown_handle();
    let run = tokio::spawn(driver.run());
    let held = || status.snapshot().shards.len();
    let started = std::time::Instant::now();
    while held() < SHARDS {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{} of {SHARDS} leases held",
            held()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    proxy.pause(true);
    // Three failover times with the stream quiet: every lease is renewed throughout.
    let quiet = std::time::Instant::now();
    while quiet.elapsed() < Duration::from_secs(9) {
        assert_eq!(
            held(),
            SHARDS,
            "a lease was lost after {:?}",
            quiet.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    proxy.pause(false);
    shutdown.shutdown();
    let stats = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(stats.leases_lost, 0, "{stats:?}");
}
