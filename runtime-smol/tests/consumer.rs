//! kcl-smol end to end against dynalite and kinesalite, with no tokio runtime in the process:
//! the SDK on the smol HTTP client (a tokio call would panic "no reactor running"), credentials and
//! per-service endpoints from the environment, every record processed, a graceful shutdown.
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

#[test]
fn a_consumer_on_smol_processes_a_stream() {
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
    smol::block_on(async {
        let sdk = kcl_smol::load_sdk_config().await;
        let client = aws_sdk_kinesis::Client::new(&sdk);
        let stream = format!("smol-{}", std::process::id());
        client
            .create_stream()
            .stream_name(&stream)
            .shard_count(2)
            .send()
            .await
            .unwrap();
        smol::Timer::after(Duration::from_millis(200)).await;
        // Sequential calls on one client: the pool reuses the connection.
        for i in 0..100u8 {
            client
                .put_record()
                .stream_name(&stream)
                .partition_key(format!("k{i}"))
                .data(Blob::new(vec![i]))
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
        let consumer = kcl_smol::build(builder, factory).await.unwrap();
        let handle = consumer.shutdown_handle();
        let run = smol::spawn(consumer.run());
        for _ in 0..300 {
            if *count.lock().unwrap() >= 100 {
                break;
            }
            smol::Timer::after(Duration::from_millis(100)).await;
        }
        assert_eq!(*count.lock().unwrap(), 100);
        handle.shutdown();
        let stats = smol::future::or(async { Some(run.await) }, async {
            smol::Timer::after(Duration::from_secs(30)).await;
            None
        })
        .await
        .expect("the consumer stops within 30 s");
        assert_eq!(stats.records_delivered, 100);
        assert!(stats.checkpoints >= 2);
    });
}
