//! Building a worker from an SDK configuration: what kcl-tokio and kcl-smol share.

use core::time::Duration;

use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_types::SdkConfig;
use kcl_core::{Failure, WorkerId};

use crate::failure::{classify_code, error_chain, request_id};
use aws_smithy_runtime_api::http::Response;

use crate::driver::{Driver, DriverConfig};
use crate::dynamo::{DynamoLeaseTable, TableOptions};
use crate::fanout::FanOutStream;
use crate::kinesis::{KinesisStream, StreamId};
use crate::processor::ProcessorFactory;
use crate::record::KinesisRecord;
use crate::retrieval::Retrieval;
use crate::runtime::Runtime;

/// A worker consuming one stream, its leases in one table.
pub type Consumer<Rt, F> = Driver<Rt, DynamoLeaseTable, Retrieval<Rt>, F>;

/// Why a consumer could not be built. [`ConsumerBuilder::build`] checks the region, the
/// credentials and the stream before it touches the lease table, so a misconfiguration fails
/// here, within seconds, instead of leaving an idle worker. `Display` says what failed;
/// [`source`](std::error::Error::source) gives the cause where there is one
/// ([`error_chain`](crate::error_chain) prints both on one line).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum BuildError {
    /// The configuration cannot work.
    Config(kcl_core::ConfigError),
    /// No AWS region is configured (set `AWS_REGION`, or a region in the profile).
    NoRegion,
    /// No credentials could be found or used; the SDK's explanation.
    NoCredentials(String),
    /// The stream does not exist (in this region and account).
    StreamNotFound {
        /// The stream's name or ARN, as given.
        stream: String,
    },
    /// A call was refused for lack of permission.
    AccessDenied {
        /// `kinesis` or `dynamodb`.
        service: &'static str,
        /// The API action refused (grant it to the consumer's role).
        action: &'static str,
        /// The service's message.
        message: String,
        /// The request's id, for AWS support.
        request_id: Option<String>,
    },
    /// The stream could not be checked for another reason.
    Stream(Failure),
    /// The lease table is absent and may not be created ([`TableOptions::create_if_absent`]).
    LeaseTableNotFound {
        /// Its name.
        table: String,
    },
    /// The lease table could not be created, did not become `ACTIVE`, or has another key than
    /// a lease table's (another application's table of that name).
    LeaseTable(Failure),
    /// The enhanced fan-out consumer could not be registered or did not become `ACTIVE`.
    FanOut(Failure),
}

impl core::fmt::Display for BuildError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Config(_) => f.write_str("invalid configuration"),
            Self::NoRegion => f.write_str(
                "no AWS region configured: set AWS_REGION (or a region in the AWS profile)",
            ),
            Self::NoCredentials(why) => write!(f, "no usable AWS credentials: {why}"),
            Self::StreamNotFound { stream } => write!(
                f,
                "Kinesis stream {stream:?} not found in this region and account"
            ),
            Self::AccessDenied {
                service,
                action,
                message,
                request_id,
            } => {
                write!(f, "{service}:{action} was denied: {message}")?;
                match request_id {
                    Some(id) => write!(f, " (request id {id})"),
                    None => Ok(()),
                }
            }
            Self::Stream(_) => f.write_str("the Kinesis stream could not be checked"),
            Self::LeaseTableNotFound { table } => write!(
                f,
                "lease table {table:?} not found, and creating it is turned off"
            ),
            Self::LeaseTable(_) => {
                f.write_str("the lease table could not be created, did not become ACTIVE, or is not a lease table")
            }
            Self::FanOut(_) => f.write_str(
                "the enhanced fan-out consumer could not be registered or did not become ACTIVE",
            ),
        }
    }
}

impl std::error::Error for BuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Config(e) => Some(e),
            Self::Stream(e) | Self::LeaseTable(e) | Self::FanOut(e) => Some(e),
            _ => None,
        }
    }
}

/// Builds a [`Consumer`]. The defaults are the Java KCL's where they are sensible: the lease
/// table is named after the application, created on demand (`PAY_PER_REQUEST`) when absent;
/// failover time 10 s; shards without a checkpoint start at `LATEST`; see
/// [`kcl_core::Config`] for the rest.
#[derive(Clone, Debug)]
pub struct ConsumerBuilder {
    stream: StreamId,
    application: String,
    table: String,
    worker_id: Option<WorkerId>,
    config: DriverConfig,
    shortcuts: Shortcuts,
    dynamodb_endpoint: Option<String>,
    kinesis_endpoint: Option<String>,
    seed: Option<u64>,
    table_timeout: Duration,
    table_options: TableOptions,
    fan_out: Option<String>,
    fan_out_http: Option<aws_smithy_runtime_api::client::http::SharedHttpClient>,
}

impl ConsumerBuilder {
    /// Consumes `stream` (a name, or an ARN) as application `application`, whose lease table
    /// has the application's name (as in the Java KCL).
    pub fn new(stream: &str, application: &str) -> Self {
        Self {
            stream: StreamId::from(stream),
            application: application.to_string(),
            table: application.to_string(),
            worker_id: None,
            config: DriverConfig::default(),
            shortcuts: Shortcuts::default(),
            dynamodb_endpoint: None,
            kinesis_endpoint: None,
            seed: None,
            table_timeout: Duration::from_secs(300),
            table_options: TableOptions::default(),
            fan_out: None,
            fan_out_http: None,
        }
    }

    /// Another lease table name.
    pub fn lease_table(mut self, table: &str) -> Self {
        self.table = table.to_string();
        self
    }

    /// How the lease table is made when absent: never (least privilege), with provisioned
    /// capacity, with tags (see [`TableOptions`]).
    pub fn lease_table_options(mut self, options: TableOptions) -> Self {
        self.table_options = options;
        self
    }

    /// The worker's identity in the lease table (default: host name, process id and start time).
    pub fn worker_id(mut self, id: &str) -> Self {
        self.worker_id = Some(WorkerId::from(id));
        self
    }

    /// The driver's and the worker's settings. The shortcuts below ([`Self::initial_position`],
    /// [`Self::failover_time`], [`Self::max_leases_per_worker`], [`Self::failure_domain`])
    /// override them, called before or after this.
    pub fn config(mut self, config: DriverConfig) -> Self {
        self.config = config;
        self
    }

    /// Where shards without a checkpoint start (Java KCL: `initialPositionInStream`): fixed
    /// when a root shard's lease is created, so every owner until the first checkpoint reads
    /// from the same place. Children of a consumed shard always start at `TRIM_HORIZON`.
    pub fn initial_position(mut self, position: kcl_core::InitialPosition) -> Self {
        self.shortcuts.initial_position = Some(position);
        self
    }

    /// How long a lease may go unrenewed before others take it (Java KCL:
    /// `failoverTimeMillis`); see [`kcl_core::Config::failover_time`].
    pub fn failover_time(mut self, failover: Duration) -> Self {
        self.shortcuts.failover_time = Some(failover);
        self
    }

    /// The most leases this worker holds (Java KCL: `maxLeasesForWorker`).
    pub fn max_leases_per_worker(mut self, max: u64) -> Self {
        self.shortcuts.max_leases_per_worker = Some(max);
        self
    }

    /// The host, rack or availability zone this worker fails with (default: the host name);
    /// the leader names a standby outside its own. See [`kcl_core::Config::failure_domain`].
    pub fn failure_domain(mut self, domain: &str) -> Self {
        self.shortcuts.failure_domain = Some(domain.to_string());
        self
    }

    /// The settings the driver will run with: [`Self::config`]'s, the shortcuts over them, the
    /// host name as failure domain unless one is set, and no waits between reads with enhanced
    /// fan-out (each read waits for the shard's next event).
    pub fn driver_config(&self) -> DriverConfig {
        let mut config = self.config.clone();
        self.shortcuts.apply(&mut config.worker);
        if config.worker.failure_domain.is_none() {
            config.worker.failure_domain = host_name();
        }
        if self.fan_out.is_some() {
            config.worker.min_fetch_interval = Duration::ZERO;
            config.worker.idle_time_between_reads = Duration::ZERO;
        }
        config
    }

    /// A DynamoDB endpoint other than AWS's (a local emulator).
    pub fn dynamodb_endpoint(mut self, url: &str) -> Self {
        self.dynamodb_endpoint = Some(url.to_string());
        self
    }

    /// A Kinesis endpoint other than AWS's (a local emulator).
    pub fn kinesis_endpoint(mut self, url: &str) -> Self {
        self.kinesis_endpoint = Some(url.to_string());
        self
    }

    /// The seed of the worker's choices, jitter and tie-breaks (default: from the worker id and
    /// the clock). Give each worker a seed of its own: workers sharing one jitter alike. Keeping
    /// a worker's seed across restarts is safe: the process's incarnation, which tells it apart
    /// from another process with its id, is drawn apart ([`crate::Runtime::entropy`]).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// The HTTP client of the Kinesis client when consuming by enhanced fan-out, instead of the
    /// one in the SDK configuration: one whose HTTP/2 connections send keep-alive pings, so a
    /// subscription whose connection died silently is renewed (kcl-tokio's `build` sets its
    /// `TokioHttpClient`; kcl-smol's client pings already).
    pub fn fan_out_http_client(
        mut self,
        client: impl aws_smithy_runtime_api::client::http::HttpClient + 'static,
    ) -> Self {
        self.fan_out_http = Some(aws_smithy_runtime_api::client::http::SharedHttpClient::new(
            client,
        ));
        self
    }

    /// Reads by enhanced fan-out (SubscribeToShard) through the stream consumer `consumer_name`
    /// (the Java KCL uses the application name), registered if it does not exist yet. The
    /// service then pushes records at up to 2 MB/s per shard to this application alone, and
    /// paces them: `min_fetch_interval` and `idle_time_between_reads` are set to zero.
    pub fn enhanced_fan_out(mut self, consumer_name: &str) -> Self {
        self.fan_out = Some(consumer_name.to_string());
        self
    }

    /// Builds the clients from `sdk`, creates the lease table if needed, and returns the worker,
    /// ready to [`Driver::run`].
    pub async fn build<Rt, F>(
        self,
        runtime: Rt,
        sdk: &SdkConfig,
        factory: F,
    ) -> Result<Consumer<Rt, F>, BuildError>
    where
        Rt: Runtime,
        F: ProcessorFactory<KinesisRecord>,
    {
        let config = self.driver_config();
        config.validate().map_err(BuildError::Config)?;
        if sdk.region().is_none() {
            return Err(BuildError::NoRegion);
        }
        let mut dynamodb = aws_sdk_dynamodb::config::Builder::from(sdk);
        if let Some(url) = &self.dynamodb_endpoint {
            dynamodb = dynamodb.endpoint_url(url);
        }
        let mut kinesis = aws_sdk_kinesis::config::Builder::from(sdk);
        if let Some(url) = &self.kinesis_endpoint {
            kinesis = kinesis.endpoint_url(url);
        }
        if let (Some(_), Some(http)) = (&self.fan_out, &self.fan_out_http) {
            kinesis = kinesis.http_client(http.clone());
        }
        let kinesis = aws_sdk_kinesis::Client::from_conf(kinesis.build());
        // The stream first: a wrong name must not leave a lease table behind.
        check_stream(&kinesis, &self.stream).await?;
        let table = DynamoLeaseTable::new(
            &aws_sdk_dynamodb::Client::from_conf(dynamodb.build()),
            self.table,
        );
        match table
            .ensure_table_with(&runtime, self.table_timeout, &self.table_options)
            .await
        {
            Ok(()) => {}
            Err(Failure::NotFound) if !self.table_options.create_if_absent => {
                return Err(BuildError::LeaseTableNotFound {
                    table: table.table_name().to_string(),
                })
            }
            Err(e) => return Err(BuildError::LeaseTable(e)),
        }
        let label = self.stream.to_string();
        let stream = match &self.fan_out {
            None => Retrieval::Polling(KinesisStream::new(&kinesis, self.stream)),
            Some(name) => Retrieval::FanOut(
                FanOutStream::register(
                    runtime.clone(),
                    &kinesis,
                    self.stream,
                    name,
                    self.table_timeout,
                )
                .await
                .map_err(BuildError::FanOut)?,
            ),
        };
        let id = self.worker_id.unwrap_or_else(default_worker_id);
        let seed = self.seed.unwrap_or_else(|| seed_from(&id));
        Driver::new(runtime, table, stream, factory, id, config, seed)
            .map(|driver| driver.named(&self.application, &label))
            .map_err(BuildError::Config)
    }
}

/// Lists one shard of the stream: the cheapest call that proves the region, the credentials,
/// the stream and the permission the consumer needs anyway (`kinesis:ListShards`).
async fn check_stream(
    client: &aws_sdk_kinesis::Client,
    stream: &StreamId,
) -> Result<(), BuildError> {
    let result = client
        .list_shards()
        .set_stream_name(stream.name())
        .set_stream_arn(stream.arn())
        .max_results(1)
        .send()
        .await;
    match result {
        Ok(_) => Ok(()),
        Err(e) => Err(stream_error(stream, &e)),
    }
}

/// What a failed check of the stream means for the user.
fn stream_error<E>(stream: &StreamId, error: &SdkError<E, Response>) -> BuildError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match error {
        SdkError::ServiceError(service) => {
            let e = service.err();
            let message = e.message().unwrap_or("no message").to_string();
            let request_id = request_id(service.raw());
            match e.code().unwrap_or_default() {
                "ResourceNotFoundException" => BuildError::StreamNotFound {
                    stream: stream.to_string(),
                },
                "AccessDeniedException" => BuildError::AccessDenied {
                    service: "kinesis",
                    action: "ListShards",
                    message,
                    request_id: request_id.map(str::to_string),
                },
                code => match classify_code(Some(code), 400, Some(&message), request_id) {
                    // Credentials the service does not accept (unknown, expired, bad signature).
                    Failure::AccessDenied(why) => BuildError::NoCredentials(why.to_string()),
                    other => BuildError::Stream(other),
                },
            }
        }
        other => {
            let why = error_chain(other);
            // The SDK resolves credentials before it sends anything: a failure there is no
            // network failure.
            if why.contains("credentials") || why.contains("identity") {
                BuildError::NoCredentials(why)
            } else {
                BuildError::Stream(Failure::Other(why))
            }
        }
    }
}

/// This machine's name (`HOSTNAME`, else `/etc/hostname`): the failure domain a worker names
/// unless its configuration says otherwise, and the start of its default id.
fn host_name() -> Option<String> {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

/// `host:pid:start-millis`: unique per process, and readable in the lease table.
fn default_worker_id() -> WorkerId {
    let host = host_name().unwrap_or_else(|| "worker".into());
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    WorkerId::from(format!("{host}:{}:{millis}", std::process::id()).as_str())
}

/// The settings the builder's shortcuts set, kept apart so that a whole configuration given
/// after them does not undo them.
#[derive(Clone, Debug, Default)]
struct Shortcuts {
    initial_position: Option<kcl_core::InitialPosition>,
    failover_time: Option<Duration>,
    max_leases_per_worker: Option<u64>,
    failure_domain: Option<String>,
}

impl Shortcuts {
    fn apply(&self, worker: &mut kcl_core::Config) {
        if let Some(position) = self.initial_position {
            worker.initial_position = position;
        }
        if let Some(failover) = self.failover_time {
            worker.failover_time = failover;
        }
        if let Some(max) = self.max_leases_per_worker {
            worker.max_leases_per_worker = max;
        }
        if let Some(domain) = &self.failure_domain {
            worker.failure_domain = Some(domain.clone());
        }
    }
}

fn seed_from(id: &WorkerId) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    // FNV-1a over the id, mixed with the clock: distinct workers get distinct seeds.
    id.as_str().bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    }) ^ u64::from(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shortcuts hold whatever the order of the calls: settings loaded after them (a file,
    /// the environment) do not undo them, which for the initial position would skip a backlog
    /// for good.
    #[test]
    fn the_shortcuts_set_the_workers_configuration() {
        let shortcuts = |b: ConsumerBuilder| {
            b.initial_position(kcl_core::InitialPosition::TrimHorizon)
                .failover_time(Duration::from_secs(20))
                .max_leases_per_worker(7)
                .failure_domain("eu-west-1b")
        };
        let before =
            shortcuts(ConsumerBuilder::new("orders", "billing")).config(DriverConfig::default());
        let after =
            shortcuts(ConsumerBuilder::new("orders", "billing").config(DriverConfig::default()));
        for b in [before, after] {
            let config = b.driver_config();
            let w = &config.worker;
            assert_eq!(w.failure_domain.as_deref(), Some("eu-west-1b"));
            assert_eq!(w.initial_position, kcl_core::InitialPosition::TrimHorizon);
            assert_eq!(w.failover_time, Duration::from_secs(20));
            assert_eq!(w.max_leases_per_worker, 7);
            assert_eq!(w.validate(), Ok(()));
        }
    }

    #[test]
    fn a_build_error_says_what_failed_and_its_source_why() {
        let e = BuildError::LeaseTable(Failure::Other("AccessDeniedException: no".into()));
        assert_eq!(
            error_chain(&e),
            "the lease table could not be created, did not become ACTIVE, or is not a lease table: AccessDeniedException: no"
        );
        let missing = BuildError::StreamNotFound {
            stream: "orders".into(),
        };
        assert!(std::error::Error::source(&missing).is_none());
        assert!(missing.to_string().contains("\"orders\""));
        let config = BuildError::Config(kcl_core::ConfigError(
            "failover_time must exceed the margin",
        ));
        assert!(error_chain(&config).ends_with(": failover_time must exceed the margin"));
    }
}
