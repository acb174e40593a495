//! kcl-aws: the runtime-agnostic async driver of a [`kcl_core::Worker`] and its backends on the
//! AWS SDK.
//!
//! - [`backend`]: the lease table and the stream as traits, one attempt per call, every outcome
//!   classified as a [`kcl_core::Failure`];
//! - [`DynamoLeaseTable`]: the lease table on DynamoDB (Java KCL 2.x layout), every core write as
//!   a conditional `PutItem` / `UpdateItem` / `DeleteItem`;
//! - [`KinesisStream`]: polling consumption through ListShards / GetShardIterator / GetRecords,
//!   KPL aggregates split into user records ([`kpl`]);
//! - [`FanOutStream`]: enhanced fan-out, SubscribeToShard events behind the same stream trait;
//! - [`Runtime`]: what the driver needs of tokio or smol.
//! - [`Settings`]: a [`DriverConfig`] from a TOML or JSON file and `KCL_*` variables;
//! - [`Status`] / [`StatusHandle`]: a running worker's state for health probes; metrics through
//!   the `metrics` facade, labelled by consumer and stream.
//!
//! Everything that touches the AWS SDK (the two backends, [`ConsumerBuilder`], [`admin`]) is behind
//! the default feature `sdk`; without it the crate is the driver alone, for backends of your own
//! (the simulator runs the driver that way, over simulated services).
//!
//! Both backends build their SDK client with the SDK's own retries turned off: a conditional
//! write repeated by the SDK after its answer was lost fails its own condition and would look
//! like a lost race, so retrying is left to the driver, which knows what may be repeated.

#[cfg(feature = "sdk")]
pub mod admin;
pub mod backend;
mod calls;
mod clock;
#[cfg(feature = "sdk")]
mod consumer;
mod driver;
#[cfg(feature = "sdk")]
mod dynamo;
#[cfg(feature = "sdk")]
mod expression;
mod failure;
#[cfg(feature = "sdk")]
mod fanout;
#[cfg(feature = "sdk")]
mod item;
#[cfg(feature = "sdk")]
mod kinesis;
pub mod kpl;
mod processor;
mod record;
mod refusal;
#[cfg(feature = "sdk")]
mod retrieval;
mod retry;
mod runtime;
mod settings;
mod shard_task;
mod telemetry;
#[cfg(all(feature = "testkit", feature = "sdk"))]
pub mod testkit;
#[cfg(feature = "tls")]
pub mod tls;

pub use backend::{LeaseTable, ShardStream};
#[cfg(feature = "sdk")]
pub use consumer::{BuildError, Consumer, ConsumerBuilder};
pub use driver::{Driver, DriverConfig, ShutdownHandle};
#[cfg(feature = "sdk")]
pub use dynamo::{DynamoLeaseTable, TableOptions};
pub use failure::error_chain;
#[cfg(feature = "sdk")]
pub use fanout::FanOutStream;
#[cfg(feature = "sdk")]
pub use kinesis::{KinesisStream, StreamId};
pub use processor::{Batch, Checkpointer, Initialize, ProcessorFactory, RecordProcessor};
pub use record::KinesisRecord;
pub use refusal::{RunError, Service};
#[cfg(feature = "sdk")]
pub use retrieval::Retrieval;
pub use retry::RetryPolicy;
pub use runtime::Runtime;
pub use settings::{Origin, Settings, SettingsError, ENV_PREFIX};
pub use telemetry::{ShardPhase, ShardStatus, Status, StatusHandle};

/// The core types a processor meets, so applications need not depend on kcl-core themselves.
pub use kcl_core::{
    BalancingPolicy, CheckpointError, CheckpointTarget, Config, FencingToken, InitialPosition,
    LeaseKey, Position, RecordPosition, SequenceNumber, Stats, WorkerId,
};
