//! Shared by the integration tests: clients for the local emulators `.ci/emulators.sh` starts,
//! and a runtime for the driver's traits on tokio.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, StreamStatus};
use aws_sdk_kinesis::Client;

/// The emulator endpoint in `var`, or `None` after a loud message: the test then does nothing.
/// `.ci/test` always sets them, so CI never skips.
pub fn endpoint(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!(
                "\n*** SKIPPED: {var} is not set, so this test has no emulator to talk to. \
                 Run it through ./.ci/test, or: eval \"$(.ci/emulators.sh start)\" ***\n"
            );
            None
        }
    }
}

fn credentials() -> Credentials {
    // kinesis-local takes a 12-digit access key id as the account id.
    Credentials::new("000000000000", "local", None, None, "emulator")
}

pub fn dynamodb(url: &str) -> aws_sdk_dynamodb::Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version_latest()
        .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
        .credentials_provider(credentials())
        .endpoint_url(url)
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

pub fn kinesis(url: &str) -> Client {
    let config = aws_sdk_kinesis::Config::builder()
        .behavior_version_latest()
        .region(aws_sdk_kinesis::config::Region::new("us-east-1"))
        .credentials_provider(credentials())
        .endpoint_url(url)
        .build();
    Client::from_conf(config)
}

/// A name no other test run uses.
pub fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{nanos}", std::process::id())
}

#[derive(Clone, Debug)]
pub struct Tokio;

impl kcl_aws::Runtime for Tokio {
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }
    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send + 'static {
        tokio::time::sleep(duration)
    }
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        drop(tokio::spawn(task));
    }
}

/// A fresh stream of `shards` shards, `ACTIVE`.
pub async fn create_stream(client: &Client, shards: i32) -> String {
    let name = unique("stream");
    client
        .create_stream()
        .stream_name(&name)
        .shard_count(shards)
        .send()
        .await
        .unwrap();
    wait_active(client, &name).await;
    name
}

pub async fn wait_active(client: &Client, name: &str) {
    for _ in 0..200 {
        let summary = client
            .describe_stream_summary()
            .stream_name(name)
            .send()
            .await
            .unwrap();
        if summary
            .stream_description_summary()
            .map(|s| s.stream_status())
            == Some(&StreamStatus::Active)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("stream {name} is not ACTIVE");
}

/// Puts `entries` (partition key, data) with PutRecords, 500 at a time.
pub async fn put(client: &Client, stream: &str, entries: Vec<(String, Vec<u8>)>) {
    for chunk in entries.chunks(500) {
        let records = chunk
            .iter()
            .map(|(key, data)| {
                PutRecordsRequestEntry::builder()
                    .partition_key(key)
                    .data(Blob::new(data.clone()))
                    .build()
                    .unwrap()
            })
            .collect();
        let out = client
            .put_records()
            .stream_name(stream)
            .set_records(Some(records))
            .send()
            .await
            .unwrap();
        assert_eq!(out.failed_record_count(), Some(0));
    }
}

/// Merges two adjacent shards and waits until the stream is `ACTIVE` again.
pub async fn merge(client: &Client, stream: &str, a: &str, b: &str) {
    client
        .merge_shards()
        .stream_name(stream)
        .shard_to_merge(a)
        .adjacent_shard_to_merge(b)
        .send()
        .await
        .unwrap();
    wait_active(client, stream).await;
}

/// Lease timing short enough for a test to run in seconds (failover 3 s), shards read from the
/// oldest record (the tests put records before a worker starts); the rest is the default.
pub fn fast_config() -> kcl_core::Config {
    kcl_core::Config {
        failover_time: Duration::from_secs(3),
        safety_margin: Duration::from_millis(500),
        scan_interval: Duration::from_millis(500),
        heartbeat_interval: Duration::from_millis(500),
        leader_check_interval: Duration::from_secs(1),
        shard_sync_interval: Duration::from_secs(2),
        idle_time_between_reads: Duration::from_millis(100),
        parent_poll_interval: Duration::from_millis(500),
        initial_position: kcl_core::InitialPosition::TrimHorizon,
        ..kcl_core::Config::default()
    }
}

/// kcl-aws's test proxy (`testkit::Proxy`), compiled into these tests as well: they run without
/// the `testkit` feature.
#[path = "../../src/testkit/proxy.rs"]
mod proxy;
#[allow(unused_imports)]
pub use proxy::Proxy;
