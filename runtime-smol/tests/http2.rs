//! kcl-smol's HTTP/2 path: enhanced fan-out (RegisterStreamConsumer, SubscribeToShard's event
//! stream) over TLS with `h2` negotiated by ALPN, against kinesis-local's TLS port, under
//! `smol::block_on` with no tokio runtime; keep-alive pings renewing a subscription whose
//! connection died silently. kinesis-local's certificate is self-signed and names
//! no host, so the test pins it (a verifier that accepts exactly that certificate, signatures
//! still checked): [`SmolHttpClient::with_tls`] is how an application brings its own TLS.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use kcl_aws::{FanOutStream, ShardStream};
use kcl_core::{Failure, StartingPosition};
use kcl_smol::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use kcl_smol::rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use kcl_smol::rustls::pki_types::pem::PemObject;
use kcl_smol::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use kcl_smol::rustls::{self, ClientConfig, DigitallySignedStruct, SignatureScheme};
use kcl_smol::{SmolHttpClient, SmolRuntime};

/// Accepts exactly one certificate, whatever name it carries.
#[derive(Debug)]
struct Pinned {
    certificate: CertificateDer<'static>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.certificate.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn pinned_tls(pem_path: &str) -> ClientConfig {
    let certificate =
        CertificateDer::from_pem_file(pem_path).unwrap_or_else(|e| panic!("{pem_path}: {e:?}"));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|e| panic!("{e}"))
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned {
            certificate,
            provider,
        }))
        .with_no_client_auth()
}

#[test]
fn fan_out_runs_over_http2_on_the_smol_client() {
    if !kcl_aws::testkit::emulator_environment() {
        return;
    }
    let (Ok(url), Ok(pem)) = (
        std::env::var("KCLRS_TEST_KINESIS_TLS"),
        std::env::var("KCLRS_TEST_KINESIS_TLS_CERT"),
    ) else {
        panic!("the emulators run, but KCLRS_TEST_KINESIS_TLS(_CERT) are not set: .ci/emulators.sh is stale");
    };
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

/// A TCP proxy in front of `upstream` whose `cut` kills every connection open at that moment
/// the way a middlebox that dropped the flow does: the server's side is closed, so the server ends
/// what it served on it, while the client's side stays open and silent (no FIN, no RST: bytes
/// sent are never answered). New connections pass.
struct Proxy {
    port: u16,
    open: Arc<std::sync::Mutex<Vec<Connection>>>,
}

/// Both sockets of a proxied connection, and whether it was cut. The client's socket is kept
/// here so a cut connection is never closed on the client's side.
struct Connection {
    _client: smol::net::TcpStream,
    server: smol::net::TcpStream,
    dead: Arc<std::sync::atomic::AtomicBool>,
}

impl Proxy {
    async fn start(upstream: std::net::SocketAddr) -> Self {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = smol::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("{e}"))
            .port();
        let open: Arc<std::sync::Mutex<Vec<Connection>>> = Arc::default();
        let connections = Arc::clone(&open);
        smol::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = smol::net::TcpStream::connect(upstream).await else {
                    continue;
                };
                let dead = Arc::new(AtomicBool::new(false));
                if let Ok(mut all) = connections.lock() {
                    all.push(Connection {
                        _client: client.clone(),
                        server: server.clone(),
                        dead: Arc::clone(&dead),
                    });
                }
                for (mut from, mut to) in [(client.clone(), server.clone()), (server, client)] {
                    let dead = Arc::clone(&dead);
                    smol::spawn(async move {
                        use smol::io::{AsyncReadExt, AsyncWriteExt};
                        let mut buf = vec![0u8; 16 * 1024];
                        while let Ok(n) = from.read(&mut buf).await {
                            if n == 0 || dead.load(Ordering::SeqCst) {
                                return;
                            }
                            if to.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    })
                    .detach();
                }
            }
        })
        .detach();
        Self { port, open }
    }

    /// Kills every connection open now (see [`Proxy`]).
    fn cut(&self) {
        if let Ok(all) = self.open.lock() {
            for c in all.iter() {
                c.dead.store(true, std::sync::atomic::Ordering::SeqCst);
                let _ = c.server.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

/// A subscription whose connection dies silently is renewed on a new connection: HTTP/2
/// keep-alive pings go unanswered, the connection is closed, its stream fails, and the next call
/// subscribes again. (Without pings, every later call waited on the dead connection.)
#[test]
fn a_subscription_on_a_connection_that_died_silently_is_renewed() {
    if !kcl_aws::testkit::emulator_environment() {
        return;
    }
    let (Ok(url), Ok(pem)) = (
        std::env::var("KCLRS_TEST_KINESIS_TLS"),
        std::env::var("KCLRS_TEST_KINESIS_TLS_CERT"),
    ) else {
        panic!("the emulators run, but KCLRS_TEST_KINESIS_TLS(_CERT) are not set: .ci/emulators.sh is stale");
    };
    let upstream: std::net::SocketAddr = url
        .trim_start_matches("https://")
        .parse()
        .unwrap_or_else(|e| panic!("{url}: {e}"));
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
        // The producer talks to the emulator directly; the consumer through the proxy.
        let direct = kinesis(&url, SmolHttpClient::with_tls(pinned_tls(&pem)));
        let proxy = Proxy::start(upstream).await;
        let through = SmolHttpClient::with_tls(pinned_tls(&pem))
            .with_keep_alive(Duration::from_secs(1), Duration::from_secs(1));
        let client = kinesis(&format!("https://127.0.0.1:{}", proxy.port), through);
        let name = format!("h2-dead-{}", std::process::id());
        direct
            .create_stream()
            .stream_name(&name)
            .shard_count(1)
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateStream: {e:?}"));
        smol::Timer::after(Duration::from_millis(300)).await;
        let put = |byte: u8| {
            direct
                .put_record()
                .stream_name(&name)
                .partition_key("k")
                .data(Blob::new(vec![byte]))
                .send()
        };
        put(1).await.unwrap_or_else(|e| panic!("PutRecord: {e:?}"));
        let stream = FanOutStream::register(
            SmolRuntime,
            &client,
            name.as_str(),
            "h2",
            Duration::from_secs(30),
        )
        .await
        .unwrap_or_else(|e| panic!("RegisterStreamConsumer: {e:?}"));
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
        // Reads as the driver does: each call bounded (its call timeout), failures retried.
        let mut seen = Vec::new();
        let read_until = async |want: u8, seen: &mut Vec<u8>, iterator: &mut String| {
            let started = std::time::Instant::now();
            while !seen.contains(&want) {
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "record {want} not read within 60 s: the subscription stayed on a dead connection"
                );
                let call = stream.get_records(iterator, 10_000, None);
                let bounded = smol::future::or(async { Some(call.await) }, async {
                    smol::Timer::after(Duration::from_secs(3)).await;
                    None
                });
                match bounded.await {
                    Some(Ok(batch)) => {
                        seen.extend(batch.records.iter().map(|r| r.data[0]));
                        if let Some(next) = batch.next_iterator {
                            *iterator = next.to_string();
                        }
                    }
                    Some(Err(Failure::Throttled | Failure::Transient)) | None => {
                        smol::Timer::after(Duration::from_millis(200)).await;
                    }
                    Some(Err(e)) => panic!("SubscribeToShard: {e:?}"),
                }
            }
        };
        read_until(1, &mut seen, &mut iterator).await;
        proxy.cut();
        put(2).await.unwrap_or_else(|e| panic!("PutRecord: {e:?}"));
        read_until(2, &mut seen, &mut iterator).await;
        assert_eq!(seen, [1, 2]);
        assert!(
            stream.subscriptions_opened() >= 2,
            "renewed on a new connection"
        );
    });
}
