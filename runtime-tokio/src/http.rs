//! An HTTP client for the AWS SDK on tokio whose HTTP/2 connections send keep-alive pings:
//! hyper-util's pooled client over rustls (the platform's roots, aws-lc-rs), `h2` by ALPN.
//!
//! The SDK's default client does not let its HTTP/2 keep-alive be configured, and without pings
//! a SubscribeToShard stream whose connection died silently (a NAT or load balancer dropped the
//! flow) waits forever, and so does every new subscription multiplexed onto the same dead
//! connection. With them the connection is closed within the interval plus the timeout, its
//! streams fail, and the next subscription opens a new connection. [`crate::build`] gives this
//! client to the Kinesis client of a consumer on enhanced fan-out; everything else keeps the
//! SDK's default client.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector as TcpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::ClientConfig;

type Pooled = Client<HttpsConnector<TcpConnector>, SdkBody>;

/// The SDK's connect timeout, applied to every connection this client opens.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(3100);

/// The AWS SDK's HTTP client on tokio with HTTP/2 keep-alive. Cheap to clone; clones share their
/// connection pool.
#[derive(Clone)]
pub struct TokioHttpClient {
    tls: Option<Arc<ClientConfig>>,
    keep_alive_interval: Duration,
    keep_alive_timeout: Duration,
    pool: Arc<OnceLock<Result<Pooled, String>>>,
}

impl std::fmt::Debug for TokioHttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokioHttpClient")
            .field("keep_alive_interval", &self.keep_alive_interval)
            .field("keep_alive_timeout", &self.keep_alive_timeout)
            .finish_non_exhaustive()
    }
}

impl Default for TokioHttpClient {
    fn default() -> Self {
        Self {
            tls: None,
            keep_alive_interval: Duration::from_secs(30),
            keep_alive_timeout: Duration::from_secs(20),
            pool: Arc::default(),
        }
    }
}

impl TokioHttpClient {
    /// A client with the platform's TLS roots (loaded on the first request) and keep-alive pings
    /// after 30 s of silence, answered within 20 s.
    pub fn new() -> Self {
        Self::default()
    }

    /// A client whose TLS is `config` instead (other roots, client certificates); `h2` and
    /// `http/1.1` are offered by ALPN.
    pub fn with_tls(config: ClientConfig) -> Self {
        Self {
            tls: Some(Arc::new(config)),
            ..Self::default()
        }
    }

    /// A ping after `interval` without a frame from the server; the connection closed when it is
    /// not answered within `timeout`. Set it before the client's first request.
    pub fn with_keep_alive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.keep_alive_interval = interval;
        self.keep_alive_timeout = timeout;
        self.pool = Arc::default();
        self
    }

    fn pool(&self) -> Result<Pooled, ConnectorError> {
        self.pool
            .get_or_init(|| self.build())
            .clone()
            .map_err(|e| ConnectorError::other(e.into(), None))
    }

    fn build(&self) -> Result<Pooled, String> {
        let tls = match &self.tls {
            Some(config) => ClientConfig::clone(config),
            None => kcl_aws::tls::platform_config()?,
        };
        let mut tcp = TcpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let https = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(tcp);
        Ok(Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .http2_keep_alive_interval(self.keep_alive_interval)
            .http2_keep_alive_timeout(self.keep_alive_timeout)
            // A subscription waiting for its next event is an open stream, not idle; pinging
            // idle connections too keeps a pooled one from being handed out dead.
            .http2_keep_alive_while_idle(true)
            .build(https))
    }
}

impl HttpClient for TokioHttpClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(Connector {
            pool: self.pool(),
            read_timeout: settings.read_timeout(),
        })
    }
}

#[derive(Debug)]
struct Connector {
    pool: Result<Pooled, ConnectorError>,
    read_timeout: Option<Duration>,
}

impl HttpConnector for Connector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let pool = match &self.pool {
            Ok(pool) => pool.clone(),
            Err(e) => {
                let message = e.to_string();
                return HttpConnectorFuture::ready(Err(ConnectorError::other(
                    message.into(),
                    None,
                )));
            }
        };
        let read_timeout = self.read_timeout;
        HttpConnectorFuture::new(async move {
            let request = request
                .try_into_http1x()
                .map_err(|e| ConnectorError::other(e.into(), None))?;
            let sent = pool.request(request);
            let response = match read_timeout {
                None => sent.await,
                Some(limit) => tokio::time::timeout(limit, sent).await.map_err(|_| {
                    ConnectorError::timeout(format!("no response within {limit:?}").into())
                })?,
            }
            .map_err(|e| ConnectorError::io(e.into()))?;
            HttpResponse::try_from(response.map(SdkBody::from_body_1_x))
                .map_err(|e| ConnectorError::other(e.into(), None))
        })
    }
}
