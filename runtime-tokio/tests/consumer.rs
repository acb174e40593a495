//! kcl-tokio end to end against dynalite and kinesalite: aws-config's chain (credentials and
//! per-service endpoints from the environment), a consumer that processes every record, and a
//! graceful shutdown that leaves every lease unowned with its final checkpoint.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_kinesis::primitives::Blob;
use kcl_aws::{
    Batch, Checkpointer, ConsumerBuilder, DriverConfig, Initialize, KinesisRecord, LeaseKey,
    RecordProcessor,
};

struct Count(Arc<Mutex<usize>>);

impl RecordProcessor<KinesisRecord> for Count {
    async fn initialize(&mut self, _init: &Initialize) {}
    async fn process_records(&mut self, batch: Batch<KinesisRecord>, checkpointer: &Checkpointer) {
        *self.0.lock().unwrap() += batch.records.len();
        checkpointer.checkpoint().await.unwrap();
    }
}

#[tokio::test]
async fn a_consumer_built_from_the_environment_processes_a_stream() {
    let (Ok(dynamodb), Ok(kinesis)) = (
        std::env::var("KCL_TEST_DYNAMODB"),
        std::env::var("KCL_TEST_KINESIS"),
    ) else {
        eprintln!(
            "\n*** SKIPPED: KCL_TEST_DYNAMODB / KCL_TEST_KINESIS are not set; run ./.ci/test ***\n"
        );
        return;
    };
    // The only test in this binary, so changing the environment races with nothing.
    for (k, v) in [
        ("AWS_ACCESS_KEY_ID", "000000000000"),
        ("AWS_SECRET_ACCESS_KEY", "local"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL_DYNAMODB", dynamodb.as_str()),
        ("AWS_ENDPOINT_URL_KINESIS", kinesis.as_str()),
    ] {
        std::env::set_var(k, v);
    }
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let client = aws_sdk_kinesis::Client::new(&sdk);
    let stream = format!("tokio-{}", std::process::id());
    client
        .create_stream()
        .stream_name(&stream)
        .shard_count(2)
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 0..100 {
        client
            .put_record()
            .stream_name(&stream)
            .partition_key(format!("k{i}"))
            .data(Blob::new(vec![i as u8]))
            .send()
            .await
            .unwrap();
    }

    let mut config = DriverConfig::default();
    config.worker.idle_time_between_reads = Duration::from_millis(100);
    let count = Arc::new(Mutex::new(0));
    let factory = {
        let count = count.clone();
        move |_: &LeaseKey| Count(count.clone())
    };
    let builder = ConsumerBuilder::new(&stream, &format!("{stream}-app")).config(config);
    let consumer = kcl_tokio::build(builder, factory).await.unwrap();
    let handle = consumer.shutdown_handle();
    let run = tokio::spawn(consumer.run());
    for _ in 0..300 {
        if *count.lock().unwrap() >= 100 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(*count.lock().unwrap(), 100);
    handle.shutdown();
    let stats = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stats.records_delivered, 100);
    assert!(stats.checkpoints >= 2);
}
