//! What a running consumer reports, against dynalite and kinesalite: every metric carries its
//! consumer's labels (two consumers in one process keep apart), calls, processor calls and
//! checkpoints are timed, released leases say why, and the status snapshot shows the held
//! shards, the leader and the last answers; a hung processor shows in the status and a gauge.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::future::pending;
use std::time::{Duration, Instant};

use kcl_aws::{
    Batch, Checkpointer, Driver, DriverConfig, DynamoLeaseTable, Initialize, KinesisRecord,
    KinesisStream, RecordProcessor, ShardPhase,
};
use kcl_core::{Config, LeaseKey, WorkerId};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

fn config() -> DriverConfig {
    let worker = Config {
        shutdown_timeout: Duration::from_secs(1),
        ..common::fast_config()
    };
    DriverConfig {
        worker,
        ..DriverConfig::default()
    }
}

/// Checkpoints every batch; hangs forever on its first batch when `hang` is set.
struct Checkpointing {
    hang: bool,
}

impl RecordProcessor<KinesisRecord> for Checkpointing {
    async fn initialize(&mut self, _: &Initialize) {}

    async fn process_records(&mut self, batch: Batch<KinesisRecord>, checkpointer: &Checkpointer) {
        if self.hang && !batch.records.is_empty() {
            pending::<()>().await;
        }
        checkpointer.checkpoint().await.unwrap();
    }
}

type Series = BTreeMap<(String, Vec<(String, String)>), DebugValue>;

/// Every series: (name, sorted labels) to its value.
fn series(snapshotter: &Snapshotter) -> Series {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let mut labels: Vec<(String, String)> = key
                .key()
                .labels()
                .map(|l| (l.key().to_string(), l.value().to_string()))
                .collect();
            labels.sort();
            ((key.key().name().to_string(), labels), value)
        })
        .collect()
}

/// Adds a snapshot to what was seen before. A snapshot of the debugging recorder consumes
/// what it reads: histograms are drained and counters reset, so both accumulate; a gauge not
/// set since the last snapshot reads 0, so a 0 keeps the value seen before.
fn accumulate(seen: &mut Series, snapshot: Series) {
    for (key, value) in snapshot {
        match (seen.get_mut(&key), value) {
            (Some(DebugValue::Histogram(old)), DebugValue::Histogram(new)) => old.extend(new),
            (Some(DebugValue::Counter(old)), DebugValue::Counter(new)) => *old += new,
            (Some(DebugValue::Gauge(_)), DebugValue::Gauge(new)) if new.into_inner() == 0.0 => {}
            (_, value) => {
                seen.insert(key, value);
            }
        }
    }
}

/// Whether `consumer` has timed a returned `process_records` call and an acknowledged
/// checkpoint: a shard shows `Processing` as soon as its batch is handed over, before either.
fn processed(seen: &Series, consumer: &str) -> bool {
    let timed = |name: &str, label: (&str, &str)| {
        find(seen, name, &[("consumer", consumer), label])
            .iter()
            .any(|v| matches!(v, DebugValue::Histogram(xs) if !xs.is_empty()))
    };
    timed("kcl_processor_call_seconds", ("call", "process_records"))
        && timed("kcl_checkpoint_seconds", ("outcome", "ok"))
}

/// The series named `name` whose labels include every one of `with`.
fn find<'a>(all: &'a Series, name: &str, with: &[(&str, &str)]) -> Vec<&'a DebugValue> {
    all.iter()
        .filter(|((n, labels), _)| {
            n == name
                && with
                    .iter()
                    .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|(_, v)| v)
        .collect()
}

async fn stream_and_tables(
    records: usize,
) -> Option<(aws_sdk_kinesis::Client, String, aws_sdk_dynamodb::Client)> {
    let kinesis = common::kinesis(&common::endpoint("KCLRS_TEST_KINESIS")?);
    let dynamodb = common::dynamodb(&common::endpoint("KCLRS_TEST_DYNAMODB")?);
    let name = common::create_stream(&kinesis, 2).await;
    let entries = (0..records)
        .map(|i| (format!("key-{i}"), i.to_string().into_bytes()))
        .collect();
    common::put(&kinesis, &name, entries).await;
    Some((kinesis, name, dynamodb))
}

async fn driver(
    kinesis: &aws_sdk_kinesis::Client,
    dynamodb: &aws_sdk_dynamodb::Client,
    stream: &str,
    consumer: &str,
    hang: bool,
) -> Driver<
    common::Tokio,
    DynamoLeaseTable,
    KinesisStream,
    impl kcl_aws::ProcessorFactory<KinesisRecord>,
> {
    let table = DynamoLeaseTable::new(dynamodb, format!("{stream}-{consumer}"));
    table
        .ensure_table(&common::Tokio, Duration::from_secs(30))
        .await
        .unwrap();
    Driver::new(
        common::Tokio,
        table,
        KinesisStream::new(kinesis, stream),
        move |_: &LeaseKey| Checkpointing { hang },
        WorkerId::from(consumer),
        config(),
        3,
    )
    .unwrap()
    .named(consumer, stream)
}

#[tokio::test]
async fn two_consumers_in_one_process_report_apart_and_their_status_shows_their_shards() {
    let Some((kinesis, stream, dynamodb)) = stream_and_tables(40).await else {
        return;
    };
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);

    let billing = driver(&kinesis, &dynamodb, &stream, "billing", false).await;
    let audit = driver(&kinesis, &dynamodb, &stream, "audit", false).await;
    let status = [billing.status_handle(), audit.status_handle()];
    let shutdown = [billing.shutdown_handle(), audit.shutdown_handle()];
    let runs = [tokio::spawn(billing.run()), tokio::spawn(audit.run())];

    // Both hold both shards, are leaders of their own tables, and their tables answer.
    let started = Instant::now();
    let mut during = Series::new();
    loop {
        accumulate(&mut during, series(&snapshotter));
        let done = status.iter().all(|s| {
            let s = s.snapshot();
            s.shards.len() == 2
                && s.shards
                    .values()
                    .all(|shard| shard.phase == ShardPhase::Processing)
        }) && ["billing", "audit"].iter().all(|c| processed(&during, c));
        if done {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{:?}",
            status[0].snapshot()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (handle, consumer) in status.iter().zip(["billing", "audit"]) {
        let s = handle.snapshot();
        assert_eq!(
            (s.consumer.as_str(), s.stream.as_str()),
            (consumer, stream.as_str())
        );
        assert!(s.leader, "{s:?}");
        assert!(s.is_live(Instant::now(), Duration::from_secs(10)), "{s:?}");
        assert!(s.last_stream_answer.is_some(), "{s:?}");
        assert!(
            s.shards.values().all(|shard| shard.last_delivery.is_some()),
            "{s:?}"
        );
    }
    accumulate(&mut during, series(&snapshotter));
    for consumer in ["billing", "audit"] {
        let me = [("consumer", consumer), ("stream", stream.as_str())];
        assert_eq!(
            find(&during, "kcl_owned_leases", &me),
            [&DebugValue::Gauge(2.0.into())],
            "{consumer}"
        );
        assert_eq!(
            find(&during, "kcl_millis_behind_latest", &me).len(),
            2,
            "{consumer}"
        );
        assert_eq!(
            find(&during, "kcl_seconds_since_last_delivery", &me).len(),
            2,
            "{consumer}"
        );
        for op in ["get_records", "get_shard_iterator", "list_shards", "scan"] {
            let with_op = [me[0], me[1], ("op", op)];
            let timed = find(&during, "kcl_call_seconds", &with_op);
            assert!(
                matches!(timed[..], [DebugValue::Histogram(ref xs)] if !xs.is_empty()),
                "{consumer} {op}: {timed:?}"
            );
        }
        for call in ["initialize", "process_records"] {
            let with_call = [me[0], me[1], ("call", call)];
            let timed = find(&during, "kcl_processor_call_seconds", &with_call);
            assert!(
                matches!(timed[..], [DebugValue::Histogram(ref xs)] if !xs.is_empty()),
                "{consumer} {call}: {timed:?}"
            );
        }
        let checkpoints = find(
            &during,
            "kcl_checkpoint_seconds",
            &[me[0], ("outcome", "ok")],
        );
        assert!(
            matches!(checkpoints[..], [DebugValue::Histogram(ref xs)] if !xs.is_empty()),
            "{consumer}: {checkpoints:?}"
        );
    }

    for h in &shutdown {
        h.shutdown();
    }
    for run in runs {
        tokio::time::timeout(Duration::from_secs(30), run)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
    let mut after = during;
    accumulate(&mut after, series(&snapshotter));
    for (handle, consumer) in status.iter().zip(["billing", "audit"]) {
        let released = find(
            &after,
            "kcl_leases_released_total",
            &[("consumer", consumer), ("reason", "shutdown")],
        );
        assert_eq!(released, [&DebugValue::Counter(2)], "{consumer}");
        let s = handle.snapshot();
        assert!(s.stopped && s.shards.is_empty(), "{s:?}");
        assert!(!s.is_live(Instant::now(), Duration::from_secs(10)));
    }
}

#[tokio::test]
async fn a_hung_processor_shows_in_the_status_and_a_gauge() {
    let Some((kinesis, stream, dynamodb)) = stream_and_tables(10).await else {
        return;
    };
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let consumer = driver(&kinesis, &dynamodb, &stream, "hung", true).await;
    let status = consumer.status_handle();
    let run = tokio::spawn(consumer.run());
    let started = Instant::now();
    let hung_for = loop {
        let s = status.snapshot();
        let oldest = s
            .shards
            .values()
            .filter_map(|shard| shard.call_started)
            .min();
        if let Some(since) = oldest.filter(|since| since.elapsed() >= Duration::from_secs(2)) {
            break since.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{s:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // The gauges are refreshed at least once a second while the worker renews its leases.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let all = series(&snapshotter);
    let running = find(
        &all,
        "kcl_processor_call_running_seconds",
        &[("consumer", "hung")],
    );
    let longest = running
        .iter()
        .filter_map(|v| match v {
            DebugValue::Gauge(x) => Some(x.into_inner()),
            _ => None,
        })
        .fold(0.0, f64::max);
    assert!(
        longest >= hung_for.as_secs_f64(),
        "{longest} < {hung_for:?}: {running:?}"
    );
    run.abort();
}
