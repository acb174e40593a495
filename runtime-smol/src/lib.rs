//! kcl-smol: kcl-rs on smol, with no tokio runtime anywhere.
//!
//! ```no_run
//! # async fn example(factory: impl kcl_aws::ProcessorFactory<kcl_aws::KinesisRecord>) -> Result<(), kcl_aws::BuildError> {
//! let consumer = kcl_smol::build(kcl_aws::ConsumerBuilder::new("my-stream", "my-app"), factory).await?;
//! let stats = kcl_smol::run_until_signal(consumer).await; // SIGINT or SIGTERM: hand leases over, return
//! # let _ = stats; Ok(()) }
//! ```
//!
//! The AWS SDK runs on [`SmolHttpClient`] (HTTP/1.1, and HTTP/2 over TLS by ALPN, rustls with the
//! platform's roots, pooled connections, streaming bodies) and [`SmolSleep`]. aws-config is used
//! without its tokio parts for credentials and region: environment variables, the shared
//! profile files (`~/.aws/credentials`, `~/.aws/config`, `AWS_PROFILE`), and
//! `AWS_ENDPOINT_URL_DYNAMODB` / `AWS_ENDPOINT_URL_KINESIS` for local emulators. The `tokio` crate
//! stays in the dependency graph only for its sync primitives (through aws-smithy-async).

mod http;

use std::future::Future;
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_smithy_async::rt::sleep::{AsyncSleep, SharedAsyncSleep, Sleep};
use kcl_aws::{
    BuildError, Consumer, ConsumerBuilder, KinesisRecord, ProcessorFactory, RunError, Runtime,
};
use kcl_core::Stats;

/// The TLS library [`SmolHttpClient::with_tls`] takes a configuration of.
pub use futures_rustls::rustls;
pub use http::{ConnectionsOpened, SmolHttpClient};

/// The driver's [`Runtime`] on smol's global executor and timers.
#[derive(Clone, Copy, Debug, Default)]
pub struct SmolRuntime;

impl Runtime for SmolRuntime {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send + 'static {
        // Not `async fn`: the future must not borrow `self`.
        let timer = smol::Timer::after(duration);
        async move {
            timer.await;
        }
    }
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        smol::spawn(task).detach();
    }
}

/// The SDK's sleep (retries, timeouts, credential refresh) on smol timers.
#[derive(Clone, Copy, Debug, Default)]
pub struct SmolSleep;

impl AsyncSleep for SmolSleep {
    fn sleep(&self, duration: Duration) -> Sleep {
        Sleep::new(async move {
            smol::Timer::after(duration).await;
        })
    }
}

/// The AWS configuration from the environment and the shared profile files, with the SDK on
/// smol.
pub async fn load_sdk_config() -> SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(SmolHttpClient::new())
        .sleep_impl(SharedAsyncSleep::new(SmolSleep))
        .load()
        .await
}

/// Loads the AWS configuration and builds the consumer: creates the lease table if it is absent.
pub async fn build<F>(
    builder: ConsumerBuilder,
    factory: F,
) -> Result<Consumer<SmolRuntime, F>, BuildError>
where
    F: ProcessorFactory<KinesisRecord>,
{
    let sdk = load_sdk_config().await;
    builder.build(SmolRuntime, &sdk, factory).await
}

/// Runs the consumer until SIGINT or SIGTERM, then shuts it down gracefully: processors get
/// `shutdown_requested` (and checkpoint), leases are released for the rest of the fleet. A
/// stream or lease table that refuses every call for long ends it with a [`RunError`] (see
/// [`kcl_aws::Driver::run`]).
pub async fn run_until_signal<F>(consumer: Consumer<SmolRuntime, F>) -> Result<Stats, RunError>
where
    F: ProcessorFactory<KinesisRecord>,
{
    use smol::stream::StreamExt;
    let handle = consumer.shutdown_handle();
    match async_signal::Signals::new([async_signal::Signal::Int, async_signal::Signal::Term]) {
        Ok(mut signals) => {
            smol::spawn(async move {
                if signals.next().await.is_some() {
                    tracing::info!("signal received: shutting down");
                    handle.shutdown();
                }
            })
            .detach();
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for signals; shut down through a ShutdownHandle")
        }
    }
    consumer.run().await
}
