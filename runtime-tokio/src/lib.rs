//! kcl-tokio: kcl-rs on tokio.
//!
//! ```no_run
//! # async fn example(factory: impl kcl_aws::ProcessorFactory<kcl_aws::KinesisRecord>) -> Result<(), kcl_aws::BuildError> {
//! let consumer = kcl_tokio::build(kcl_aws::ConsumerBuilder::new("my-stream", "my-app"), factory).await?;
//! let stats = kcl_tokio::run_until_signal(consumer).await; // Ctrl-C or SIGTERM: hand leases over, return
//! # let _ = stats; Ok(()) }
//! ```
//!
//! Credentials and region come from aws-config's default chain (environment, shared profile
//! files, SSO, web identity, container and instance metadata); `AWS_ENDPOINT_URL_DYNAMODB` and
//! `AWS_ENDPOINT_URL_KINESIS` point the clients at local emulators. Timers and the clock are
//! tokio's, so `tokio::time::pause` drives a worker in tests.

mod http;

use std::future::Future;
use std::time::{Duration, Instant};

pub use http::TokioHttpClient;
/// The rustls of [`TokioHttpClient::with_tls`].
pub use rustls;

use kcl_aws::{
    BuildError, Consumer, ConsumerBuilder, KinesisRecord, ProcessorFactory, RunError, Runtime,
};
use kcl_core::Stats;

/// The README's quick start (and any other Rust block in it), compiled by `cargo test --doc`.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

/// The driver's [`Runtime`] on tokio (must be used inside a tokio runtime).
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioRuntime;

impl Runtime for TokioRuntime {
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }
    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send + 'static {
        tokio::time::sleep(duration)
    }
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        drop(tokio::spawn(task));
    }
}

/// Loads the AWS configuration (aws-config's default chain) and builds the consumer: creates the
/// lease table if it is absent. With enhanced fan-out, the Kinesis client runs on a
/// [`TokioHttpClient`] (HTTP/2 keep-alive pings); for another client, call
/// [`ConsumerBuilder::build`] with [`ConsumerBuilder::fan_out_http_client`] yourself.
pub async fn build<F>(
    builder: ConsumerBuilder,
    factory: F,
) -> Result<Consumer<TokioRuntime, F>, BuildError>
where
    F: ProcessorFactory<KinesisRecord>,
{
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    builder
        .fan_out_http_client(TokioHttpClient::new())
        .build(TokioRuntime, &sdk, factory)
        .await
}

/// Runs the consumer until Ctrl-C or SIGTERM, then shuts it down gracefully: processors get
/// `shutdown_requested` (and checkpoint), leases are released for the rest of the fleet. A
/// stream or lease table that refuses every call for long ends it with a [`RunError`] (see
/// [`kcl_aws::Driver::run`]).
pub async fn run_until_signal<F>(consumer: Consumer<TokioRuntime, F>) -> Result<Stats, RunError>
where
    F: ProcessorFactory<KinesisRecord>,
{
    let handle = consumer.shutdown_handle();
    let signal = tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("signal received: shutting down");
        handle.shutdown();
    });
    let stats = consumer.run().await;
    signal.abort();
    stats
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_clock_is_tokios_so_paused_time_moves_it() {
        let start = TokioRuntime.now();
        TokioRuntime.sleep(Duration::from_secs(3600)).await;
        assert_eq!(TokioRuntime.now() - start, Duration::from_secs(3600));
    }
}
