//! kcl-core: the pure, IO-free decision logic of a Kinesis Client Library.
//!
//! A [`Worker`] decides everything a KCL worker does (which shard leases to take, renew, hand
//! over or give up, when to fetch records and deliver them to the record processor, where to
//! checkpoint, when a child shard may start) from [`Input`]s and a clock value it is given, and
//! says what to do as [`Command`]s. It never reads a clock, sleeps, spawns, allocates a random
//! seed or touches the network, so the same inputs and seed give the same commands, byte for
//! byte, on a server, in the simulator, or on a device without an OS.
//!
//! ```
//! use kcl_core::{BasicRecord, Command, Config, Input, Instant, Worker, WorkerId};
//!
//! let mut worker = Worker::<BasicRecord>::new(Config::default(), WorkerId::from("w1"), 7, Instant::ZERO).unwrap();
//! // Drain: carry out every command, then sleep until the timeout.
//! while let Some(command) = worker.poll_command() {
//!     match command {
//!         Command::WriteLease { req, write } => { /* perform it, later: */
//!             worker.handle(Instant::from_millis(5), Input::LeaseWritten { req, result: Ok(None) });
//!         }
//!         _ => {}
//!     }
//! }
//! let (wake_at, _why) = worker.poll_timeout().unwrap();
//! worker.handle_timeout(wake_at);
//! ```
//!
//! Modules:
//! - [`lease`]: the lease-table row codec (Java KCL 2.x schema) and row kinds;
//! - [`write`]: conditional writes as data, with the reference semantics [`write::apply`];
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

pub use config::{BalancingPolicy, Config, ConfigError, InitialPosition};
pub use io::{
    BasicRecord, CallId, CheckpointError, CheckpointTarget, ChildShard, Command, Event, Failure,
    FencingToken, FetchedRecords, Input, ProcessorCall, Record, ReleaseReason, RequestId,
    ShardDescription, StartingPosition, TimerReason,
};
pub use item::{AttributeValue, Item};
pub use lease::{HashKeyRange, Lease, LeaseKey, Row, RowError, WorkerId};
pub use sequence::{Position, RecordPosition, SequenceNumber};
pub use text::Text;
pub use time::Instant;
pub use worker::{LeaseView, Stats, Worker};
