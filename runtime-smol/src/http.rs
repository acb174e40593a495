//! An HTTP client for the AWS SDK on smol: HTTP/1.1 and, over TLS with ALPN, HTTP/2 (which
//! SubscribeToShard needs); connections are reused; response bodies stream. HTTP/2 connections
//! send keep-alive pings: one whose peer stops answering (a silent network failure) is closed
//! within the interval plus the timeout, its streams fail, and a subscription on it is renewed
//! on a new connection instead of waiting forever.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use futures_rustls::rustls::pki_types::ServerName;
use futures_rustls::rustls::ClientConfig;
use futures_rustls::TlsConnector;
use hyper::client::conn::{http1, http2};
use smol::io::{AsyncRead, AsyncWrite};
use smol::net::TcpStream;
use smol_hyper::rt::{FuturesIo, SmolTimer};

/// Idle connections kept per origin.
const IDLE_PER_ORIGIN: usize = 32;

/// HTTP/2 keep-alive: a ping after this long without a frame from the peer...
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// ...and the connection closed when the ping is not answered within this.
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// The AWS SDK's HTTP client on smol. Cheap to clone; clones share their connection pool.
#[derive(Clone, Debug, Default)]
pub struct SmolHttpClient {
    pool: Arc<Pool>,
    keep_alive: KeepAlive,
}

/// When an HTTP/2 connection pings its peer, and how long it waits for the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct KeepAlive {
    interval: Duration,
    timeout: Duration,
}

impl Default for KeepAlive {
    fn default() -> Self {
        Self {
            interval: KEEP_ALIVE_INTERVAL,
            timeout: KEEP_ALIVE_TIMEOUT,
        }
    }
}

impl SmolHttpClient {
    /// A client with an empty pool. TLS roots are the platform's, loaded on the first `https`
    /// request.
    pub fn new() -> Self {
        Self::default()
    }

    /// A client whose TLS is `config` instead: other roots (a corporate CA), client
    /// certificates, another crypto provider. Its ALPN protocols are set to `h2` and
    /// `http/1.1`, so HTTP/2 is used where the server offers it.
    pub fn with_tls(mut config: ClientConfig) -> Self {
        config.alpn_protocols = alpn();
        let pool = Pool {
            tls: OnceLock::from(Ok(Arc::new(config))),
            ..Pool::default()
        };
        Self {
            pool: Arc::new(pool),
            keep_alive: KeepAlive::default(),
        }
    }

    /// HTTP/2 keep-alive: a ping after `interval` without a frame from the server, the
    /// connection closed when it is not answered within `timeout` (default 30 s and 20 s, so a
    /// dead connection is noticed within a minute). For the connections this client opens;
    /// clones made before keep theirs.
    pub fn with_keep_alive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.keep_alive = KeepAlive { interval, timeout };
        self
    }

    /// How many connections this client (and its clones) opened, by protocol.
    pub fn connections_opened(&self) -> ConnectionsOpened {
        ConnectionsOpened {
            http1: self.pool.opened_http1.load(Ordering::Relaxed),
            http2: self.pool.opened_http2.load(Ordering::Relaxed),
        }
    }
}

/// Connections a [`SmolHttpClient`] opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectionsOpened {
    /// HTTP/1.1 connections (plain, or TLS without `h2` negotiated).
    pub http1: u64,
    /// HTTP/2 connections (TLS with `h2` negotiated by ALPN).
    pub http2: u64,
}

fn alpn() -> Vec<Vec<u8>> {
    vec![b"h2".to_vec(), b"http/1.1".to_vec()]
}

impl HttpClient for SmolHttpClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(Connector {
            pool: Arc::clone(&self.pool),
            keep_alive: self.keep_alive,
            connect_timeout: settings.connect_timeout(),
            read_timeout: settings.read_timeout(),
        })
    }
}

#[derive(Default)]
struct Pool {
    idle: Mutex<HashMap<Origin, Vec<Sender>>>,
    tls: OnceLock<Result<Arc<ClientConfig>, String>>,
    opened_http1: AtomicU64,
    opened_http2: AtomicU64,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").finish_non_exhaustive()
    }
}

impl Pool {
    /// A connection to `origin` ready for a request, if one is idle. Closed ones are dropped;
    /// busy HTTP/1 ones (a body still streaming) stay for later.
    fn take(&self, origin: &Origin) -> Option<Sender> {
        let mut idle = self.idle.lock().ok()?;
        let senders = idle.get_mut(origin)?;
        senders.retain(|s| !s.is_closed());
        let ready = senders.iter().position(Sender::is_ready)?;
        Some(match &senders[ready] {
            // HTTP/2 multiplexes: the connection stays in the pool for other requests.
            Sender::Http2(s) => Sender::Http2(s.clone()),
            Sender::Http1(_) => senders.swap_remove(ready),
        })
    }

    /// Pools a connection after a request was handed to it: HTTP/1 ones up to a bound, one
    /// handle per origin for HTTP/2.
    fn put(&self, origin: Origin, sender: Sender) {
        let Ok(mut idle) = self.idle.lock() else {
            return;
        };
        let senders = idle.entry(origin).or_default();
        let keep = match sender {
            Sender::Http1(_) => senders.len() < IDLE_PER_ORIGIN,
            Sender::Http2(_) => !senders.iter().any(|s| matches!(s, Sender::Http2(_))),
        };
        if keep {
            senders.push(sender);
        }
    }

    fn tls(&self) -> Result<Arc<ClientConfig>, ConnectorError> {
        self.tls
            .get_or_init(tls_config)
            .clone()
            .map_err(|e| ConnectorError::other(e.into(), None))
    }
}

fn tls_config() -> Result<Arc<ClientConfig>, String> {
    let mut config = kcl_aws::tls::platform_config()?;
    config.alpn_protocols = alpn();
    Ok(Arc::new(config))
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Origin {
    https: bool,
    host: String,
    port: u16,
}

impl Origin {
    fn of(uri: &http::Uri) -> Result<Self, ConnectorError> {
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            other => return Err(user_error(format!("unsupported scheme {other:?} in {uri}"))),
        };
        let host = uri
            .host()
            .ok_or_else(|| user_error(format!("no host in {uri}")))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        Ok(Self { https, host, port })
    }
}

fn user_error(message: String) -> ConnectorError {
    ConnectorError::user(message.into())
}

enum Sender {
    Http1(http1::SendRequest<SdkBody>),
    Http2(http2::SendRequest<SdkBody>),
}

impl Sender {
    fn is_closed(&self) -> bool {
        match self {
            Self::Http1(s) => s.is_closed(),
            Self::Http2(s) => s.is_closed(),
        }
    }
    fn is_ready(&self) -> bool {
        match self {
            Self::Http1(s) => s.is_ready(),
            Self::Http2(s) => s.is_ready(),
        }
    }
}

#[derive(Clone, Debug)]
struct Connector {
    pool: Arc<Pool>,
    keep_alive: KeepAlive,
    connect_timeout: Option<Duration>,
    read_timeout: Option<Duration>,
}

impl HttpConnector for Connector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let this = self.clone();
        HttpConnectorFuture::new(async move { this.send(request).await })
    }
}

impl Connector {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, ConnectorError> {
        let mut request = request
            .try_into_http1x()
            .map_err(|e| ConnectorError::other(e.into(), None))?;
        let origin = Origin::of(request.uri())?;
        let host_header = request
            .uri()
            .authority()
            .map(|a| a.as_str().to_string())
            .unwrap_or_default();
        // A pooled connection the server has just closed returns the request unsent: then
        // (once) a fresh connection carries it.
        let mut fresh = false;
        loop {
            let sender = match self.pool.take(&origin) {
                Some(s) if !fresh => s,
                _ => {
                    fresh = true;
                    self.connect(&origin).await?
                }
            };
            let response = match sender {
                Sender::Http1(mut s) => {
                    // HTTP/1 wants the origin form and a Host header; hyper's conn API adds
                    // neither.
                    let uri = request.uri().clone();
                    let path = uri.path_and_query().map_or("/", |p| p.as_str());
                    *request.uri_mut() = path.parse().map_err(|e: http::uri::InvalidUri| {
                        ConnectorError::other(e.into(), None)
                    })?;
                    if !host_header.is_empty() {
                        if let Ok(value) = http::HeaderValue::from_str(&host_header) {
                            request.headers_mut().insert(http::header::HOST, value);
                        }
                    }
                    let sent = s.try_send_request(request);
                    self.pool.put(origin.clone(), Sender::Http1(s));
                    let result = self.within_read_timeout(sent).await?;
                    match result {
                        Ok(response) => response,
                        Err(mut e) => match e.take_message() {
                            Some(mut unsent) if !fresh => {
                                *unsent.uri_mut() = uri;
                                request = unsent;
                                continue;
                            }
                            _ => return Err(ConnectorError::io(e.into_error().into())),
                        },
                    }
                }
                Sender::Http2(mut s) => {
                    let sent = s.try_send_request(request);
                    self.pool.put(origin.clone(), Sender::Http2(s));
                    let result = self.within_read_timeout(sent).await?;
                    match result {
                        Ok(response) => response,
                        Err(mut e) => match e.take_message() {
                            Some(unsent) if !fresh => {
                                request = unsent;
                                continue;
                            }
                            _ => return Err(ConnectorError::io(e.into_error().into())),
                        },
                    }
                }
            };
            let (parts, body) = response.into_parts();
            let response = http::Response::from_parts(parts, SdkBody::from_body_1_x(body));
            return HttpResponse::try_from(response)
                .map_err(|e| ConnectorError::other(e.into(), None));
        }
    }

    /// Waits for the response head for at most the read timeout.
    async fn within_read_timeout<T>(
        &self,
        f: impl Future<Output = T>,
    ) -> Result<T, ConnectorError> {
        match self.read_timeout {
            None => Ok(f.await),
            Some(limit) => within(limit, f).await.ok_or_else(|| {
                ConnectorError::timeout(format!("no response within {limit:?}").into())
            }),
        }
    }

    async fn connect(&self, origin: &Origin) -> Result<Sender, ConnectorError> {
        let connecting = TcpStream::connect((origin.host.as_str(), origin.port));
        let tcp = match self.connect_timeout {
            None => connecting.await,
            Some(limit) => within(limit, connecting).await.ok_or_else(|| {
                ConnectorError::timeout(
                    format!(
                        "no connection to {}:{} within {limit:?}",
                        origin.host, origin.port
                    )
                    .into(),
                )
            })?,
        }
        .map_err(|e| ConnectorError::io(e.into()))?;
        let _ = tcp.set_nodelay(true);
        if !origin.https {
            return self.handshake(tcp, false).await;
        }
        let name = ServerName::try_from(origin.host.clone())
            .map_err(|e| user_error(format!("{}: {e}", origin.host)))?;
        let tls = TlsConnector::from(self.pool.tls()?)
            .connect(name, tcp)
            .await
            .map_err(|e| ConnectorError::io(e.into()))?;
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        self.handshake(tls, h2).await
    }

    async fn handshake<IO>(&self, io: IO, h2: bool) -> Result<Sender, ConnectorError>
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let sender = handshake(io, h2, self.keep_alive).await?;
        let counter = match sender {
            Sender::Http1(_) => &self.pool.opened_http1,
            Sender::Http2(_) => &self.pool.opened_http2,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Ok(sender)
    }
}

async fn handshake<IO>(io: IO, h2: bool, keep_alive: KeepAlive) -> Result<Sender, ConnectorError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = FuturesIo::new(io);
    if h2 {
        let (sender, connection) = http2::Builder::new(Spawn)
            .timer(SmolTimer::new())
            .keep_alive_interval(keep_alive.interval)
            .keep_alive_timeout(keep_alive.timeout)
            // A subscription waiting for its next event is an open stream, not idle; pinging
            // idle connections too keeps a pooled one from being handed out dead.
            .keep_alive_while_idle(true)
            .handshake(io)
            .await
            .map_err(|e| ConnectorError::io(e.into()))?;
        smol::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "HTTP/2 connection ended");
            }
        })
        .detach();
        Ok(Sender::Http2(sender))
    } else {
        let (sender, connection) = http1::handshake(io)
            .await
            .map_err(|e| ConnectorError::io(e.into()))?;
        smol::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "HTTP/1 connection ended");
            }
        })
        .detach();
        Ok(Sender::Http1(sender))
    }
}

/// `f`'s output, or `None` when `limit` passes first.
async fn within<T>(limit: Duration, f: impl Future<Output = T>) -> Option<T> {
    smol::future::or(async { Some(f.await) }, async {
        smol::Timer::after(limit).await;
        None
    })
    .await
}

/// hyper's executor for HTTP/2 connection tasks: smol's global executor.
#[derive(Clone, Copy, Debug)]
struct Spawn;

impl<F> hyper::rt::Executor<F> for Spawn
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        smol::spawn(future).detach();
    }
}
