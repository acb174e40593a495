//! Shared by the runtimes' integration tests (feature `testkit`): one scenario, written once,
//! that a runtime passes by consuming a stream on the local emulators `.ci/emulators.sh` starts.

use core::time::Duration;
use std::sync::{Arc, Mutex};

use aws_sdk_kinesis::primitives::Blob;
use aws_types::SdkConfig;
use futures_channel::oneshot;
use kcl_core::{InitialPosition, LeaseKey};

use crate::consumer::ConsumerBuilder;
use crate::driver::DriverConfig;
use crate::processor::{Batch, Checkpointer, Initialize, RecordProcessor};
use crate::record::KinesisRecord;
use crate::runtime::Runtime;

mod proxy;
mod tls;

pub use proxy::Proxy;
pub use tls::pinned_tls;

/// Points aws-config's chain at the emulators (`AWS_ENDPOINT_URL_DYNAMODB` / `_KINESIS`, static
/// credentials, a region) from `KCLRS_TEST_DYNAMODB` and `KCLRS_TEST_KINESIS`. Without them, says
/// loudly that the test is skipped and returns `false`. Changes the process environment: call it
/// from the only test of a test binary.
pub fn emulator_environment() -> bool {
    let (Ok(dynamodb), Ok(kinesis)) = (
        std::env::var("KCLRS_TEST_DYNAMODB"),
        std::env::var("KCLRS_TEST_KINESIS"),
    ) else {
        eprintln!(
            "\n*** SKIPPED: KCLRS_TEST_DYNAMODB / KCLRS_TEST_KINESIS are not set, so there is no \
             emulator to talk to. Run ./.ci/test, or: eval \"$(.ci/emulators.sh start)\" ***\n"
        );
        return false;
    };
    for (k, v) in [
        ("AWS_ACCESS_KEY_ID", "000000000000"),
        ("AWS_SECRET_ACCESS_KEY", "local"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL_DYNAMODB", dynamodb.as_str()),
        ("AWS_ENDPOINT_URL_KINESIS", kinesis.as_str()),
    ] {
        std::env::set_var(k, v);
    }
    true
}

struct Count(Arc<Mutex<usize>>);

impl RecordProcessor<KinesisRecord> for Count {
    async fn initialize(&mut self, _init: &Initialize) {}
    async fn process_records(&mut self, batch: Batch<KinesisRecord>, checkpointer: &Checkpointer) {
        if let Ok(mut n) = self.0.lock() {
            *n += batch.records.len();
        }
        if let Err(e) = checkpointer.checkpoint().await {
            tracing::error!(error = ?e, "checkpoint refused");
        }
    }
}

/// Creates a 2-shard stream, puts 100 records, consumes them with one worker built from `sdk`
/// on `runtime` by polling (kinesalite), shuts it down gracefully; `Err` says what went wrong.
pub async fn consume_a_stream<Rt: Runtime>(
    runtime: Rt,
    sdk: &SdkConfig,
    name: &str,
) -> Result<(), String> {
    consume(runtime, sdk, name, None).await
}

/// The same by enhanced fan-out, on kinesis-local (`KCLRS_TEST_KINESIS_FULL`): the worker
/// registers a stream consumer and reads through SubscribeToShard.
pub async fn consume_a_stream_by_fan_out<Rt: Runtime>(
    runtime: Rt,
    sdk: &SdkConfig,
    name: &str,
) -> Result<(), String> {
    let url = std::env::var("KCLRS_TEST_KINESIS_FULL")
        .map_err(|_| "KCLRS_TEST_KINESIS_FULL (kinesis-local) is not set".to_string())?;
    consume(runtime, sdk, name, Some(&url)).await
}

/// `fan_out`: kinesis-local's URL, to read by enhanced fan-out from there.
async fn consume<Rt: Runtime>(
    runtime: Rt,
    sdk: &SdkConfig,
    name: &str,
    fan_out: Option<&str>,
) -> Result<(), String> {
    let mut kinesis = aws_sdk_kinesis::config::Builder::from(sdk);
    if let Some(url) = fan_out {
        kinesis = kinesis.endpoint_url(url);
    }
    let client = aws_sdk_kinesis::Client::from_conf(kinesis.build());
    let stream = format!("{name}-{}", std::process::id());
    client
        .create_stream()
        .stream_name(&stream)
        .shard_count(2)
        .send()
        .await
        .map_err(|e| format!("CreateStream: {e:?}"))?;
    runtime.sleep(Duration::from_millis(200)).await;
    // Sequential calls on one client: an HTTP client with a pool reuses its connection.
    for i in 0..100u8 {
        client
            .put_record()
            .stream_name(&stream)
            .partition_key(format!("k{i}"))
            .data(Blob::new(vec![i]))
            .send()
            .await
            .map_err(|e| format!("PutRecord: {e:?}"))?;
    }
    let mut config = DriverConfig::default();
    config.worker.idle_time_between_reads = Duration::from_millis(100);
    let count = Arc::new(Mutex::new(0));
    let factory = {
        let count = Arc::clone(&count);
        move |_: &LeaseKey| Count(Arc::clone(&count))
    };
    // The records were put before the consumer starts: read them from the oldest.
    let mut builder = ConsumerBuilder::new(&stream, &format!("{stream}-app"))
        .config(config)
        .initial_position(InitialPosition::TrimHorizon);
    if let Some(url) = fan_out {
        builder = builder.kinesis_endpoint(url).enhanced_fan_out("testkit");
    }
    let consumer = builder
        .build(runtime.clone(), sdk, factory)
        .await
        .map_err(|e| e.to_string())?;
    let handle = consumer.shutdown_handle();
    let (stats_tx, stats) = oneshot::channel();
    runtime.spawn(async move {
        let _ = stats_tx.send(consumer.run().await);
    });
    let processed = || count.lock().map(|n| *n).unwrap_or(0);
    for _ in 0..300 {
        if processed() >= 100 {
            break;
        }
        runtime.sleep(Duration::from_millis(100)).await;
    }
    if processed() != 100 {
        return Err(format!("{} of 100 records processed", processed()));
    }
    handle.shutdown();
    let deadline = core::pin::pin!(runtime.sleep(Duration::from_secs(30)));
    let stopped = futures_util::future::select(stats, deadline).await;
    let futures_util::future::Either::Left((Ok(run), _)) = stopped else {
        return Err("the consumer did not stop within 30 s of its shutdown".into());
    };
    let stats = run.map_err(|e| crate::error_chain(&e))?;
    if stats.records_delivered != 100 || stats.checkpoints < 2 {
        return Err(format!("unexpected counters after shutdown: {stats:?}"));
    }
    Ok(())
}

/// kinesis-local's TLS endpoint and the PEM file of its certificate, once
/// [`emulator_environment`] said the emulators run.
pub fn kinesis_tls_endpoint() -> (String, String) {
    match (
        std::env::var("KCLRS_TEST_KINESIS_TLS"),
        std::env::var("KCLRS_TEST_KINESIS_TLS_CERT"),
    ) {
        (Ok(url), Ok(pem)) => (url, pem),
        _ => panic!(
            "the emulators run, but KCLRS_TEST_KINESIS_TLS(_CERT) are not set: .ci/emulators.sh is stale"
        ),
    }
}

/// The keep-alive scenario both runtimes pass: a fan-out subscription read through `proxy`
/// (`through_proxy`: a Kinesis client on the runtime's HTTP client, with short keep-alive
/// pings), the proxy cuts the connection silently ([`Proxy::cut`]), a record is put
/// (`direct`: a client that bypasses the proxy) and must arrive within 60 s. Each read is
/// bounded, failures retried, as the driver does.
pub async fn fan_out_survives_a_silently_dead_connection<Rt: Runtime>(
    runtime: Rt,
    direct: &aws_sdk_kinesis::Client,
    through_proxy: &aws_sdk_kinesis::Client,
    proxy: &Proxy,
    name: &str,
) -> Result<(), String> {
    use crate::backend::ShardStream;
    use crate::fanout::FanOutStream;
    use kcl_core::{Failure, StartingPosition};
    direct
        .create_stream()
        .stream_name(name)
        .shard_count(1)
        .send()
        .await
        .map_err(|e| format!("CreateStream: {e:?}"))?;
    runtime.sleep(Duration::from_millis(300)).await;
    let put = |byte: u8| {
        direct
            .put_record()
            .stream_name(name)
            .partition_key("k")
            .data(Blob::new(vec![byte]))
            .send()
    };
    put(1).await.map_err(|e| format!("PutRecord: {e:?}"))?;
    let stream = FanOutStream::register(
        runtime.clone(),
        through_proxy,
        name,
        "keep-alive",
        Duration::from_secs(30),
    )
    .await
    .map_err(|e| format!("RegisterStreamConsumer: {e:?}"))?;
    let listed = stream.list_shards().await.map_err(|e| format!("{e:?}"))?;
    let shard = listed.first().ok_or("no shard")?.shard_id.clone();
    let mut iterator = stream
        .shard_iterator(shard.as_str(), &StartingPosition::TrimHorizon)
        .await
        .map_err(|e| format!("{e:?}"))?;
    let mut seen = Vec::new();
    for want in [1u8, 2] {
        if want == 2 {
            proxy.cut();
            put(2).await.map_err(|e| format!("PutRecord: {e:?}"))?;
        }
        let started = runtime.now();
        while !seen.contains(&want) {
            if runtime.now().duration_since(started) > Duration::from_secs(60) {
                return Err(format!(
                    "record {want} not read within 60 s: the subscription stayed on a dead connection"
                ));
            }
            let outcome = {
                let call = Box::pin(stream.get_records(&iterator, 10_000, None));
                let deadline = Box::pin(runtime.sleep(Duration::from_secs(3)));
                match futures_util::future::select(call, deadline).await {
                    futures_util::future::Either::Left((result, _)) => Some(result),
                    futures_util::future::Either::Right(_) => None,
                }
            };
            match outcome {
                Some(Ok(batch)) => {
                    seen.extend(batch.records.iter().filter_map(|r| r.data.first().copied()));
                    if let Some(next) = batch.next_iterator {
                        iterator = next.to_string();
                    }
                }
                Some(Err(Failure::Throttled | Failure::Transient)) | None => {
                    runtime.sleep(Duration::from_millis(200)).await;
                }
                Some(Err(e)) => return Err(format!("SubscribeToShard: {e:?}")),
            }
        }
    }
    if seen != [1, 2] {
        return Err(format!("read {seen:?}, not [1, 2]"));
    }
    if stream.subscriptions_opened() < 2 {
        return Err("the subscription was not renewed".into());
    }
    Ok(())
}
