//! kcl-core: the pure, IO-free decision logic of a Kinesis Client Library.
//!
//! A [`Worker`] decides everything a KCL worker does (which shard leases to take, renew, hand
//! over or give up, when to fetch records and deliver them to the record processor, where to
//! checkpoint, when a child shard may start) from [`Input`]s and a clock value it is given, and
//! says what to do as [`Command`]s. It never reads a clock, sleeps, spawns, draws a random seed
//! of its own or touches the network, so the same inputs and seed give the same commands, byte
//! for byte, on a server, in the simulator, or on a device without an OS.
//!
//! The whole lease protocol, every write and its condition, is on one page: [`protocol`]. The
//! architecture and the invariants the project checks are in the repository's
//! `docs/design.md`.
//!
//! # The contract
//!
//! A driver owns the worker and the IO. It gives every process a seed of its own, or, to keep
//! the worker's choices reproducible under a fixed seed, builds it with
//! [`Worker::with_incarnation`] from fresh entropy: the incarnation is what tells two processes
//! with one worker id apart. Then it:
//! 1. after [`Worker::new`] and after every [`Worker::handle`] or [`Worker::handle_timeout`],
//!    drains [`Worker::poll_command`] until it returns `None`, carrying out each command:
//!    requests go to DynamoDB or Kinesis and come back as the input that names the same
//!    [`RequestId`] (a failure too, classified as a [`Failure`]); processor calls go to the
//!    shard's record processor, which answers with [`Input::ProcessorReturned`] (or
//!    [`Input::ProcessorFailed`]) and may ask for checkpoints meanwhile; events need nothing;
//! 2. feeds each answer with [`Worker::handle`] when it arrives, in any order;
//! 3. otherwise waits until [`Worker::poll_timeout`] and calls [`Worker::handle_timeout`].
//!
//! Time is an [`Instant`] on the driver's monotonic clock; it must not go backwards (a smaller
//! value counts as the last one), and it must count the time the host was suspended: a clock
//! that stood still through a VM or laptop suspend would keep a resumed owner's delivery window
//! open for leases others took meanwhile. `std::time::Instant` stops during a suspend on Linux;
//! add what [`time::Suspension`] measures from `CLOCK_MONOTONIC` and `CLOCK_BOOTTIME` (kcl-aws
//! does). An answer that is late, duplicated, of the wrong kind or for a
//! lease no longer held is counted in [`Stats`] and ignored; a request the driver gives up on
//! may be answered as failed, and one never answered times out inside the worker. Nothing the
//! driver does out of order can make the worker deliver a shard it does not hold.
//!
//! # A complete driver
//!
//! The test kit's in-memory lease table and stream stand in for DynamoDB and Kinesis here; a
//! real driver (kcl-aws's) makes the same calls over the network.
//!
//! ```
//! use kcl_core::testkit::{MemStream, MemTable, TestRecord};
//! use kcl_core::{Command, Config, FetchedRecords, Input, Instant, ProcessorCall, Worker, WorkerId};
//!
//! let mut table = MemTable::default();
//! let mut stream = MemStream::new(2);
//! for i in 0..10u128 {
//!     stream.put(i << 123); // spread over both shards' hash ranges
//! }
//! let mut worker = Worker::<TestRecord>::new(Config::default(), WorkerId::from("w1"), 7, Instant::ZERO)
//!     .expect("the default configuration is valid");
//! let (mut now, mut processed, mut answers) = (Instant::ZERO, 0, Vec::new());
//! while now < Instant::from_millis(30_000) {
//!     // 1. Drain the commands, carrying each out.
//!     while let Some(command) = worker.poll_command() {
//!         let ms = now.as_millis();
//!         answers.push(match command {
//!             Command::ScanLeaseTable { req, .. } => Input::LeaseTableScanned { req, result: Ok(table.scan()) },
//!             Command::ReadLease { req, key, .. } => Input::LeaseRead { req, result: Ok(table.read(&key)) },
//!             Command::WriteLease { req, write } => Input::LeaseWritten { req, result: table.write(&write) },
//!             Command::ListShards { req } => Input::ShardsListed { req, result: Ok(stream.listing(ms)) },
//!             Command::GetShardIterator { req, shard, position } => Input::IteratorObtained {
//!                 req,
//!                 result: stream.iterator(shard.as_str(), &position, ms),
//!             },
//!             Command::GetRecords { req, iterator, limit, .. } => Input::RecordsFetched {
//!                 req,
//!                 result: stream.get(&iterator, limit as usize, ms).map(|(records, next_iterator, behind, children)| {
//!                     FetchedRecords {
//!                         records: records.into_iter().map(|r| TestRecord { position: r.position, id: r.id }).collect(),
//!                         next_iterator,
//!                         millis_behind_latest: behind,
//!                         child_shards: children,
//!                     }
//!                 }),
//!             },
//!             // The record processor: count the records, then return from every call.
//!             Command::Processor { shard, call, action } => match action {
//!                 ProcessorCall::LeaseLost | ProcessorCall::CheckpointDone { .. } => continue,
//!                 ProcessorCall::ProcessRecords { records, .. } => {
//!                     processed += records.len();
//!                     Input::ProcessorReturned { shard, call }
//!                 }
//!                 _ => Input::ProcessorReturned { shard, call },
//!             },
//!             _ => continue, // events: log them, count them
//!         });
//!     }
//!     // 2. Feed the answers (a real driver feeds each as it arrives) ...
//!     if !answers.is_empty() {
//!         for answer in answers.drain(..) {
//!             worker.handle(now, answer);
//!         }
//!         continue;
//!     }
//!     // 3. ... and with nothing in flight, sleep until the worker's next deadline.
//!     let (wake_at, _why) = worker.poll_timeout().expect("a running worker always has one");
//!     now = wake_at;
//!     worker.handle_timeout(now);
//! }
//! assert_eq!(processed, 10);
//! assert_eq!(worker.held_leases().count(), 2);
//! ```
//!
//! # Modules
//! - [`protocol`]: every lease-table operation, its condition and update, the handoff and the
//!   election; [`write`](mod@write): conditional writes as data, with the reference semantics
//!   [`write::apply`];
//! - [`lease`]: the lease-table row codec (Java KCL 2.x schema) and row kinds;
//! - [`balance`]: the default policy's planner; [`taker`]: the Java 2.x lease taker;
//! - [`sync`]: which leases shard sync creates; [`observe`]: expiry on the observer's clock;
//! - [`sequence`]: sequence numbers of any length and checkpoint positions;
//! - `testkit` (feature): an in-memory table, a stream model and a multi-worker cluster with
//!   invariant checkers.

#![no_std]
#![forbid(unsafe_code)]
// The core must build without std: name everything from `core` or `alloc` so it stays honest.
#![warn(clippy::std_instead_of_core, clippy::alloc_instead_of_core)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod balance;
pub mod config;
mod decimal;
mod hash;
pub mod io;
pub mod item;
pub mod lease;
pub mod observe;
pub mod protocol;
pub mod rng;
pub mod sequence;
pub mod sync;
pub mod taker;
mod text;
pub mod time;
mod worker;
pub mod write;

#[cfg(feature = "testkit")]
pub mod testkit;

pub use config::{BalancingPolicy, Config, ConfigError, InitialPosition, Liveness};
pub use io::{
    BasicRecord, CallId, CheckpointError, CheckpointTarget, ChildShard, Command, Event, Failure,
    FencingToken, FetchedRecords, Input, ProcessorCall, Record, ReleaseReason, RequestId,
    ServiceError, ShardDescription, ShardListing, StartingPosition, TimerReason,
};
pub use item::{AttributeValue, Item};
pub use lease::{HashKeyRange, Lease, LeaseKey, Row, RowError, WorkerId};
pub use sequence::{Position, RecordPosition, SequenceNumber};
pub use text::Text;
pub use time::{Instant, WallTime};
pub use worker::{LeaseView, Stats, Worker};
