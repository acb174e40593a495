//! kcl-smol's HTTP/2 path: enhanced fan-out (RegisterStreamConsumer, SubscribeToShard's event
//! stream) over TLS with `h2` negotiated by ALPN, against kinesis-local's TLS port, under
//! `smol::block_on` with no tokio runtime; keep-alive pings renewing a subscription whose
//! connection died silently. kinesis-local's certificate is self-signed and names
//! no host, so the test pins it (a verifier that accepts exactly that certificate, signatures
//! still checked): [`SmolHttpClient::with_tls`] is how an application brings its own TLS.

use std::time::Duration;

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use kcl_aws::{FanOutStream, ShardStream};
use kcl_core::{Failure, StartingPosition};
use kcl_smol::{SmolHttpClient, SmolRuntime};

fn pinned_tls(pem_path: &str) -> kcl_smol::rustls::ClientConfig {
    kcl_aws::testkit::pinned_tls(pem_path).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn fan_out_runs_over_http2_on_the_smol_client() {
    if !kcl_aws::testkit::emulator_environment() {
        return;
    }
    let (url, pem) = kcl_aws::testkit::kinesis_tls_endpoint();
    smol::block_on(async {
        let http = SmolHttpClient::with_tls(pinned_tls(&pem));
        let sdk = kcl_smol::load_sdk_config().await;
        let config = aws_sdk_kinesis::config::Builder::from(&sdk)
            .endpoint_url(&url)
            .http_client(http.clone())
            .build();
        let client = aws_sdk_kinesis::Client::from_conf(config);
        let name = format!("h2-{}", std::process::id());
        client
            .create_stream()
            .stream_name(&name)
            .shard_count(1)
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateStream over TLS: {e:?}"));
        smol::Timer::after(Duration::from_millis(300)).await;
        let entries = (0..10u8)
            .map(|i| {
                PutRecordsRequestEntry::builder()
                    .partition_key("k")
                    .data(Blob::new(vec![i]))
                    .build()
                    .unwrap_or_else(|e| panic!("{e}"))
            })
            .collect();
        client
            .put_records()
            .stream_name(&name)
            .set_records(Some(entries))
            .send()
            .await
            .unwrap_or_else(|e| panic!("PutRecords over TLS: {e:?}"));

        let stream = FanOutStream::register(
            SmolRuntime,
            &client,
            name.as_str(),
            "h2",
            Duration::from_secs(30),
        )
        .await
        .unwrap_or_else(|e| panic!("RegisterStreamConsumer over TLS: {e:?}"));
        let shard = stream
            .list_shards()
            .await
            .unwrap_or_else(|e| panic!("{e:?}"))[0]
            .shard_id
            .clone();
        let mut iterator = stream
            .shard_iterator(shard.as_str(), &StartingPosition::TrimHorizon)
            .await
            .unwrap_or_else(|e| panic!("{e:?}"));
        let mut data = Vec::new();
        for _ in 0..100 {
            if data.len() >= 10 {
                break;
            }
            match stream.get_records(&iterator, 10_000, None).await {
                Ok(batch) => {
                    data.extend(batch.records.iter().map(|r| r.data[0]));
                    iterator = batch
                        .next_iterator
                        .unwrap_or_else(|| panic!("an open shard ended"))
                        .to_string();
                }
                Err(Failure::Throttled | Failure::Transient) => {
                    smol::Timer::after(Duration::from_millis(500)).await;
                }
                Err(e) => panic!("SubscribeToShard over HTTP/2: {e:?}"),
            }
        }
        assert_eq!(data, (0..10).collect::<Vec<u8>>());
        let opened = http.connections_opened();
        assert!(opened.http2 >= 1, "no HTTP/2 connection: {opened:?}");
        assert_eq!(
            opened.http1, 0,
            "every connection negotiated h2: {opened:?}"
        );
        assert_eq!(stream.subscriptions_opened(), 1);
    });
}

/// A subscription whose connection dies silently is renewed on a new connection: HTTP/2
/// keep-alive pings go unanswered, the connection is closed, its stream fails, and the next call
/// subscribes again. (Without pings, every later call waited on the dead connection.)
#[test]
fn a_subscription_on_a_connection_that_died_silently_is_renewed() {
    if !kcl_aws::testkit::emulator_environment() {
        return;
    }
    let (url, pem) = kcl_aws::testkit::kinesis_tls_endpoint();
    let proxy = kcl_aws::testkit::Proxy::start(url.trim_start_matches("https://"))
        .unwrap_or_else(|e| panic!("{e}"));
    smol::block_on(async {
        let sdk = kcl_smol::load_sdk_config().await;
        let kinesis = |endpoint: &str, http: SmolHttpClient| {
            aws_sdk_kinesis::Client::from_conf(
                aws_sdk_kinesis::config::Builder::from(&sdk)
                    .endpoint_url(endpoint)
                    .http_client(http)
                    .build(),
            )
        };
        let direct = kinesis(&url, SmolHttpClient::with_tls(pinned_tls(&pem)));
        let through = SmolHttpClient::with_tls(pinned_tls(&pem))
            .with_keep_alive(Duration::from_secs(1), Duration::from_secs(1));
        let through = kinesis(&format!("https://127.0.0.1:{}", proxy.port()), through);
        let name = format!("h2-dead-{}", std::process::id());
        let outcome = kcl_aws::testkit::fan_out_survives_a_silently_dead_connection(
            SmolRuntime,
            &direct,
            &through,
            &proxy,
            &name,
        )
        .await;
        assert_eq!(outcome, Ok(()));
    });
}
