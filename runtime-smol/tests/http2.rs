//! kcl-smol's HTTP/2 path: enhanced fan-out (RegisterStreamConsumer, SubscribeToShard's event
//! stream) over TLS with `h2` negotiated by ALPN, against kinesis-local's TLS port, under
//! `smol::block_on` with no tokio runtime. kinesis-local's certificate is self-signed and names
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
