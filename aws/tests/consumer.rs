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
    RecordProcessor, TableOptions,
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
    build_with(stream, table, sdk, |b| b).await
}

/// As [`build`], the builder changed by `change` first.
async fn build_with(
    stream: &str,
    table: &str,
    sdk: &SdkConfig,
    change: impl FnOnce(ConsumerBuilder) -> ConsumerBuilder,
) -> Option<Option<BuildError>> {
    let (Some(kinesis), Some(dynamodb)) = (
        common::endpoint("KCLRS_TEST_KINESIS"),
        common::endpoint("KCLRS_TEST_DYNAMODB"),
    ) else {
        return None;
    };
    let built = change(ConsumerBuilder::new(stream, table))
        .kinesis_endpoint(&kinesis)
        .dynamodb_endpoint(&dynamodb)
        .build(common::Tokio, sdk, |_: &LeaseKey| Ignore)
        .await;
    Some(built.err())
}

#[tokio::test]
async fn a_stream_that_does_not_exist_fails_the_build_and_creates_no_table() {
    let Some(url) = common::endpoint("KCLRS_TEST_DYNAMODB") else {
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
    let Some(url) = common::endpoint("KCLRS_TEST_KINESIS") else {
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

#[tokio::test]
async fn an_absent_table_is_an_error_when_creating_it_is_turned_off() {
    let Some(url) = common::endpoint("KCLRS_TEST_KINESIS") else {
        return;
    };
    let stream = common::create_stream(&common::kinesis(&url), 1).await;
    let table = common::unique("never-created");
    let mut options = TableOptions::default();
    options.create_if_absent = false;
    let error = build_with(&stream, &table, &sdk(Some("us-east-1"), true), |b| {
        b.lease_table_options(options)
    })
    .await
    .flatten()
    .expect("the build fails");
    assert_eq!(error, BuildError::LeaseTableNotFound { table });
}

#[tokio::test]
async fn a_created_table_has_the_capacity_and_tags_asked_for() {
    let (Some(kinesis), Some(dynamodb)) = (
        common::endpoint("KCLRS_TEST_KINESIS"),
        common::endpoint("KCLRS_TEST_DYNAMODB"),
    ) else {
        return;
    };
    let stream = common::create_stream(&common::kinesis(&kinesis), 1).await;
    let table = common::unique("tagged");
    let mut options = TableOptions::default();
    options.provisioned = Some((5, 7));
    options.tags = vec![("team".into(), "billing".into())];
    let built = build_with(&stream, &table, &sdk(Some("us-east-1"), true), |b| {
        b.lease_table_options(options)
    })
    .await;
    assert_eq!(built, Some(None));
    let client = common::dynamodb(&dynamodb);
    let described = client
        .describe_table()
        .table_name(&table)
        .send()
        .await
        .unwrap();
    let t = described.table().unwrap();
    let capacity = t.provisioned_throughput().unwrap();
    assert_eq!(
        (
            capacity.read_capacity_units(),
            capacity.write_capacity_units()
        ),
        (Some(5), Some(7))
    );
    let tags = client
        .list_tags_of_resource()
        .resource_arn(t.table_arn().unwrap())
        .send()
        .await
        .unwrap();
    let tags: Vec<(&str, &str)> = tags.tags().iter().map(|t| (t.key(), t.value())).collect();
    assert_eq!(tags, [("team", "billing")]);
}
