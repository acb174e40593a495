//! kcl-tokio end to end against the emulators: aws-config's chain (credentials and per-service
//! endpoints from the environment), one consumer processing a stream by polling and one by
//! enhanced fan-out (SubscribeToShard on kinesis-local), each shut down gracefully.

#[tokio::test]
async fn a_consumer_built_from_the_environment_processes_a_stream() {
    if !kcl_aws::testkit::emulator_environment() {
        return;
    }
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let polling = kcl_aws::testkit::consume_a_stream(kcl_tokio::TokioRuntime, &sdk, "tokio").await;
    assert_eq!(polling, Ok(()), "by polling");
    let fan_out =
        kcl_aws::testkit::consume_a_stream_by_fan_out(kcl_tokio::TokioRuntime, &sdk, "tokio-efo")
            .await;
    assert_eq!(fan_out, Ok(()), "by enhanced fan-out");
}
