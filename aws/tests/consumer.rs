//! `ConsumerBuilder::build` fails within seconds, with an error naming what is wrong, when the
//! region, the credentials or the stream are wrong: a worker must never start idle. Against
//! kinesalite and dynalite.
#![allow(clippy::unwrap_used)]

mod common;

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use aws_sdk_kinesis::config::{BehaviorVersion, Region};
use aws_types::SdkConfig;
use kcl_aws::{
    Batch, BuildError, Checkpointer, ConsumerBuilder, Initialize, KinesisRecord, LeaseKey,
    RecordProcessor,
};

struct Ignore;

impl RecordProcessor<KinesisRecord> for Ignore {
    async fn initialize(&mut self, _: &Initialize) {}
    async fn process_records(&mut self, _: Batch<KinesisRecord>, _: &Checkpointer) {}
}

/// An SDK configuration with the region and credentials given (the emulators take any).
fn sdk(region: Option<&str>, credentials: bool) -> SdkConfig {
    let mut b = SdkConfig::builder().behavior_version(BehaviorVersion::latest());
    if let Some(r) = region {
        b = b.region(Region::new(r.to_string()));
    }
    if credentials {
        b = b.credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "000000000000",
            "local",
            None,
            None,
            "emulator",
        )));
    }
    b.build()
}

/// Builds a consumer of `stream` against the emulators: `None` when they are absent (the test
/// is skipped), else the build's error if any.
async fn build(stream: &str, table: &str, sdk: &SdkConfig) -> Option<Option<BuildError>> {
    let (Some(kinesis), Some(dynamodb)) = (
        common::endpoint("KCL_TEST_KINESIS"),
        common::endpoint("KCL_TEST_DYNAMODB"),
    ) else {
        return None;
    };
    let built = ConsumerBuilder::new(stream, table)
        .kinesis_endpoint(&kinesis)
        .dynamodb_endpoint(&dynamodb)
        .build(common::Tokio, sdk, |_: &LeaseKey| Ignore)
        .await;
    Some(built.err())
}

#[tokio::test]
async fn a_stream_that_does_not_exist_fails_the_build_and_creates_no_table() {
    let Some(url) = common::endpoint("KCL_TEST_DYNAMODB") else {
        return;
    };
    let (stream, table) = (common::unique("absent"), common::unique("app"));
    let error = build(&stream, &table, &sdk(Some("us-east-1"), true))
        .await
        .flatten()
        .expect("the build fails");
    assert_eq!(
        error,
        BuildError::StreamNotFound {
            stream: stream.clone()
        }
    );
    assert!(error.to_string().contains(&stream), "{error}");
    let described = common::dynamodb(&url)
        .describe_table()
        .table_name(&table)
        .send()
        .await;
    assert!(
        described.is_err(),
        "no lease table for a stream that is not there"
    );
}

#[tokio::test]
async fn no_region_fails_the_build_at_once() {
    let Some(error) = build("any", "any", &sdk(None, true)).await else {
        return;
    };
    let error = error.expect("the build fails");
    assert_eq!(error, BuildError::NoRegion);
    assert!(error.to_string().contains("AWS_REGION"), "{error}");
}

#[tokio::test]
async fn no_credentials_fail_the_build() {
    let Some(error) = build("any", "any", &sdk(Some("us-east-1"), false)).await else {
        return;
    };
    let error = error.expect("the build fails");
    assert!(matches!(error, BuildError::NoCredentials(_)), "{error:?}");
}

#[tokio::test]
async fn an_existing_stream_builds() {
    let Some(url) = common::endpoint("KCL_TEST_KINESIS") else {
        return;
    };
    let stream = common::create_stream(&common::kinesis(&url), 1).await;
    let built = build(
        &stream,
        &common::unique("app"),
        &sdk(Some("us-east-1"), true),
    )
    .await;
    assert_eq!(built, Some(None));
}
