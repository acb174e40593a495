//! The driver end to end on tokio, against dynalite and kinesalite: two workers share a stream,
//! every record is processed, checkpoints land in the table, a panicking processor loses its lease
//! cleanly and its records come again, a deleted stream ends the run, a second process with a
//! live worker's id stops, KPL user records outside their shard are dropped.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_kinesis::primitives::Blob;
use kcl_aws::kpl::{aggregate, UserRecordParts};
use kcl_aws::{
    Batch, Checkpointer, Driver, DriverConfig, DynamoLeaseTable, Initialize, KinesisRecord,
    KinesisStream, LeaseTable, RecordProcessor,
};
use kcl_core::lease::attr;
use kcl_core::{AttributeValue, LeaseKey, WorkerId};

/// Short lease timing so the test runs in seconds.
fn config() -> DriverConfig {
    DriverConfig {
        worker: common::fast_config(),
        ..DriverConfig::default()
    }
}

type Seen = Arc<Mutex<Vec<(String, KinesisRecord)>>>;

struct Collect {
    seen: Seen,
    /// Panics on its first batch while this is set (and clears it).
    panic_once: Arc<AtomicBool>,
}

impl RecordProcessor<KinesisRecord> for Collect {
    async fn initialize(&mut self, _init: &Initialize) {}

    async fn process_records(&mut self, batch: Batch<KinesisRecord>, checkpointer: &Checkpointer) {
        if !batch.records.is_empty() && self.panic_once.swap(false, Ordering::SeqCst) {
            panic!("processor bug on {}", batch.shard);
        }
        let shard = batch.shard.to_string();
        self.seen
            .lock()
            .unwrap()
            .extend(batch.records.into_iter().map(|r| (shard.clone(), r)));
        checkpointer.checkpoint().await.unwrap();
    }
}

/// A factory of processors that collect into `seen` and never panic.
fn collecting(seen: &Seen) -> impl Fn(&LeaseKey) -> Collect + Send + Sync + 'static {
    let seen = seen.clone();
    move |_: &LeaseKey| Collect {
        seen: seen.clone(),
        panic_once: Arc::new(AtomicBool::new(false)),
    }
}

async fn setup(
    shards: i32,
    records: usize,
) -> Option<(aws_sdk_kinesis::Client, String, DynamoLeaseTable)> {
    let kinesis_url = common::endpoint("KCLRS_TEST_KINESIS")?;
    let dynamo_url = common::endpoint("KCLRS_TEST_DYNAMODB")?;
    let kinesis = common::kinesis(&kinesis_url);
    let name = common::create_stream(&kinesis, shards).await;
    let entries = (0..records)
        .map(|i| (format!("key-{i}"), i.to_string().into_bytes()))
        .collect();
    common::put(&kinesis, &name, entries).await;
    let table = DynamoLeaseTable::new(&common::dynamodb(&dynamo_url), format!("{name}-leases"));
    table
        .ensure_table(&common::Tokio, Duration::from_secs(30))
        .await
        .unwrap();
    Some((kinesis, name, table))
}

/// Waits until `count` distinct records were seen, for at most a minute.
async fn wait_for(seen: &Seen, count: usize) {
    for _ in 0..600 {
        let distinct: BTreeSet<String> = seen
            .lock()
            .unwrap()
            .iter()
            .map(|(_, r)| String::from_utf8_lossy(&r.data).into_owned())
            .collect();
        if distinct.len() >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("only {} records were processed", seen.lock().unwrap().len());
}

/// The lease rows (not worker or leader rows), by shard.
async fn lease_rows(table: &DynamoLeaseTable) -> BTreeMap<String, kcl_core::Item> {
    table
        .scan(true)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|item| match item.get(attr::LEASE_KEY) {
            Some(AttributeValue::S(k)) if k.starts_with("shardId-") => Some((k.to_string(), item)),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn two_workers_process_every_record_and_checkpoint_it() {
    let Some((kinesis, name, table)) = setup(4, 400).await else {
        return;
    };
    let seen: Seen = Arc::default();
    let mut runs = Vec::new();
    let mut handles = Vec::new();
    for w in 0..2u64 {
        let factory = collecting(&seen);
        let driver = Driver::new(
            common::Tokio,
            table.clone(),
            KinesisStream::new(&kinesis, name.as_str()),
            factory,
            WorkerId::from(format!("worker-{w}").as_str()),
            config(),
            w,
        )
        .unwrap();
        handles.push(driver.shutdown_handle());
        runs.push(tokio::spawn(driver.run()));
    }
    wait_for(&seen, 400).await;
    for h in &handles {
        h.shutdown();
    }
    let mut delivered = 0;
    for run in runs {
        let stats = tokio::time::timeout(Duration::from_secs(30), run)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(stats.request_timeouts, 0);
        // The leader spreads the four leases over both workers at once.
        assert!(stats.leases_acquired >= 1, "{stats:?}");
        delivered += stats.records_delivered;
    }
    assert!(delivered >= 400);

    // Every shard's checkpoint is its last record, and nobody owns a lease after a shutdown.
    let rows = lease_rows(&table).await;
    let seen = seen.lock().unwrap();
    assert_eq!(rows.len(), 4);
    for (shard, row) in &rows {
        let last = seen
            .iter()
            .filter(|(s, _)| s == shard)
            .map(|(_, r)| r.position.sequence.clone())
            .max();
        let checkpoint = match row.get(attr::CHECKPOINT) {
            Some(AttributeValue::S(c)) => c.to_string(),
            other => panic!("{shard}: checkpoint {other:?}"),
        };
        match last {
            Some(last) => assert_eq!(checkpoint, last.as_str(), "{shard}"),
            None => assert_eq!(checkpoint, "TRIM_HORIZON", "{shard}"),
        }
        assert!(
            row.get(attr::LEASE_OWNER).is_none(),
            "{shard} still owned: {row:?}"
        );
    }
}

#[tokio::test]
async fn a_panicking_processor_loses_its_lease_and_its_records_come_again() {
    let Some((kinesis, name, table)) = setup(1, 50).await else {
        return;
    };
    let seen: Seen = Arc::default();
    let panic_once = Arc::new(AtomicBool::new(true));
    let factory = {
        let (seen, panic_once) = (seen.clone(), panic_once.clone());
        move |_: &LeaseKey| Collect {
            seen: seen.clone(),
            panic_once: panic_once.clone(),
        }
    };
    let driver = Driver::new(
        common::Tokio,
        table.clone(),
        KinesisStream::new(&kinesis, name.as_str()),
        factory,
        WorkerId::from("solo"),
        config(),
        7,
    )
    .unwrap();
    let handle = driver.shutdown_handle();
    let run = tokio::spawn(driver.run());
    wait_for(&seen, 50).await;
    assert!(
        !panic_once.load(Ordering::SeqCst),
        "the processor did panic"
    );
    handle.shutdown();
    let stats = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        stats.leases_acquired >= 2,
        "the lease was taken again: {stats:?}"
    );
    let seen = seen.lock().unwrap();
    // The batch the processor panicked on was not checkpointed, so all 50 came again in order.
    let sequences: Vec<_> = seen.iter().map(|(_, r)| r.position.clone()).collect();
    assert_eq!(sequences.len(), 50);
    assert!(sequences.windows(2).all(|w| w[0] < w[1]));
}

/// A stream deleted under a running worker: every Kinesis call is refused from then on, and the
/// worker ends with an error naming Kinesis and NotFound once `give_up_after` passed, instead
/// of idling.
#[tokio::test]
async fn a_stream_deleted_under_a_running_worker_ends_it_with_an_error() {
    let Some((kinesis, name, table)) = setup(1, 10).await else {
        return;
    };
    let seen: Seen = Arc::default();
    let factory = collecting(&seen);
    let mut config = config();
    config.give_up_after = Duration::from_secs(2);
    let driver = Driver::new(
        common::Tokio,
        table,
        KinesisStream::new(&kinesis, name.as_str()),
        factory,
        WorkerId::from("solo"),
        config,
        7,
    )
    .unwrap();
    let run = tokio::spawn(driver.run());
    wait_for(&seen, 10).await;
    kinesis
        .delete_stream()
        .stream_name(&name)
        .send()
        .await
        .unwrap();
    // A bound on the wait only, so a regression fails instead of hanging.
    let ended = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the worker gave up")
        .unwrap();
    let error = ended.expect_err("an error, not a clean stop");
    assert_eq!(error.service, kcl_aws::Service::Kinesis);
    assert_eq!(error.failure, kcl_core::Failure::NotFound);
    assert!(error.refused_for >= Duration::from_secs(2));
    assert!(error.to_string().contains("Kinesis"), "{error}");
    assert_eq!(error.stats.records_delivered, 10);
}

/// Two processes given the same worker id and the same seed (a fixed `ConsumerBuilder::seed`,
/// say, and an id from a config file): the second is a duplicate and stops before it does
/// anything, while the first goes on. The seed makes a worker's choices reproducible; it must
/// not make two processes one.
#[tokio::test]
async fn a_second_process_with_the_same_id_and_seed_stops_as_a_duplicate() {
    let Some((kinesis, name, table)) = setup(2, 20).await else {
        return;
    };
    let seen: Seen = Arc::default();
    let start = || {
        Driver::new(
            common::Tokio,
            table.clone(),
            KinesisStream::new(&kinesis, name.as_str()),
            collecting(&seen),
            WorkerId::from("twin"),
            config(),
            7,
        )
        .unwrap()
    };
    let first = start();
    let first_handle = first.shutdown_handle();
    let first_run = tokio::spawn(first.run());
    wait_for(&seen, 20).await;
    // A bound on the wait only, so a regression fails instead of hanging.
    let second = tokio::time::timeout(Duration::from_secs(60), start().run())
        .await
        .expect("the second process stopped")
        .unwrap();
    assert_eq!(second.duplicate_worker_id, 1, "{second:?}");
    assert_eq!(second.leases_acquired, 0, "{second:?}");
    assert!(!first_run.is_finished(), "the first goes on");
    first_handle.shutdown();
    let first = tokio::time::timeout(Duration::from_secs(30), first_run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.duplicate_worker_id, 0, "{first:?}");
}

/// A KPL aggregate put into the lower half of the key space holding a user record whose hash key
/// is in the upper half (a producer with a stale shard map): dropped by default, as the Java KCL
/// does, and delivered with `drop_kpl_records_outside_shard` off. The shard's range comes from
/// its lease row.
#[tokio::test]
async fn kpl_user_records_outside_their_shard_are_dropped_unless_asked_not_to() {
    let Some((kinesis, name, _)) = setup(2, 0).await else {
        return;
    };
    let upper_half = (1u128 << 127) + 5;
    let users = [("inside", "5"), ("outside", &upper_half.to_string()[..])].map(|(data, hash)| {
        UserRecordParts {
            partition_key: data.into(),
            explicit_hash_key: Some(hash.into()),
            data: data.as_bytes().to_vec(),
        }
    });
    // The aggregate, then a plain marker, both routed to the lower shard.
    for data in [aggregate(&users), b"marker".to_vec()] {
        kinesis
            .put_record()
            .stream_name(&name)
            .partition_key("p")
            .explicit_hash_key("0")
            .data(Blob::new(data))
            .send()
            .await
            .unwrap();
    }
    let dynamo_url = common::endpoint("KCLRS_TEST_DYNAMODB").unwrap();
    for drop in [true, false] {
        let table = DynamoLeaseTable::new(
            &common::dynamodb(&dynamo_url),
            format!("{name}-leases-{drop}"),
        );
        table
            .ensure_table(&common::Tokio, Duration::from_secs(30))
            .await
            .unwrap();
        let seen: Seen = Arc::default();
        let factory = collecting(&seen);
        let mut config = config();
        config.drop_kpl_records_outside_shard = drop;
        let driver = Driver::new(
            common::Tokio,
            table,
            KinesisStream::new(&kinesis, name.as_str()),
            factory,
            WorkerId::from("solo"),
            config,
            11,
        )
        .unwrap();
        let shutdown = driver.shutdown_handle();
        let run = tokio::spawn(driver.run());
        // The marker comes after the aggregate on its shard: once it is seen, so is the rest.
        let expected = if drop { 2 } else { 3 };
        wait_for(&seen, expected).await;
        shutdown.shutdown();
        tokio::time::timeout(Duration::from_secs(30), run)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let seen: BTreeSet<String> = seen
            .lock()
            .unwrap()
            .iter()
            .map(|(_, r)| String::from_utf8_lossy(&r.data).into_owned())
            .collect();
        let mut want = BTreeSet::from(["inside".to_string(), "marker".to_string()]);
        if !drop {
            want.insert("outside".to_string());
        }
        assert_eq!(seen, want, "drop_kpl_records_outside_shard = {drop}");
    }
}
