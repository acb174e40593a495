//! kcl-tokio's fan-out HTTP client (`TokioHttpClient`) over TLS with `h2`, against
//! kinesis-local's TLS port through a proxy that kills the connection silently: keep-alive
//! pings notice, and the subscription is renewed on a new connection.

use std::time::Duration;

use kcl_tokio::{TokioHttpClient, TokioRuntime};

#[tokio::test]
async fn a_subscription_on_a_connection_that_died_silently_is_renewed() {
    if !kcl_aws::testkit::emulator_environment() {
        return;
    }
    let (url, pem) = kcl_aws::testkit::kinesis_tls_endpoint();
    let pinned = || kcl_aws::testkit::pinned_tls(&pem).unwrap_or_else(|e| panic!("{e}"));
    let proxy = kcl_aws::testkit::Proxy::start(url.trim_start_matches("https://"))
        .unwrap_or_else(|e| panic!("{e}"));
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let kinesis = |endpoint: &str, http: TokioHttpClient| {
        aws_sdk_kinesis::Client::from_conf(
            aws_sdk_kinesis::config::Builder::from(&sdk)
                .endpoint_url(endpoint)
                .http_client(http)
                .build(),
        )
    };
    let direct = kinesis(&url, TokioHttpClient::with_tls(pinned()));
    let through = TokioHttpClient::with_tls(pinned())
        .with_keep_alive(Duration::from_secs(1), Duration::from_secs(1));
    let through = kinesis(&format!("https://127.0.0.1:{}", proxy.port()), through);
    let name = format!("tokio-h2-dead-{}", std::process::id());
    let outcome = kcl_aws::testkit::fan_out_survives_a_silently_dead_connection(
        TokioRuntime,
        &direct,
        &through,
        &proxy,
        &name,
    )
    .await;
    assert_eq!(outcome, Ok(()));
}
