//! kcl-smol end to end against the emulators with no tokio runtime in the process: the SDK on
//! the smol HTTP client (a tokio call would panic "no reactor running"), credentials and endpoints
//! from the environment, one consumer processing a stream by polling and one by enhanced fan-out
//! (SubscribeToShard on kinesis-local, over the smol client), each shut down gracefully.

#[test]
fn a_consumer_on_smol_processes_a_stream() {
    if !kcl_aws::testkit::emulator_environment() {
        return;
    }
    smol::block_on(async {
        let sdk = kcl_smol::load_sdk_config().await;
        let polling = kcl_aws::testkit::consume_a_stream(kcl_smol::SmolRuntime, &sdk, "smol").await;
        assert_eq!(polling, Ok(()), "by polling");
        let fan_out =
            kcl_aws::testkit::consume_a_stream_by_fan_out(kcl_smol::SmolRuntime, &sdk, "smol-efo")
                .await;
        assert_eq!(fan_out, Ok(()), "by enhanced fan-out");
    });
}
