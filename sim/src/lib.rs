//! kcl-sim: a deterministic simulator of a fleet of kcl-core workers on a simulated DynamoDB
//! and a simulated Kinesis, with fault injection and invariant checkers outside the workers.
//!
//! One seed reproduces a run. A run is a warm-up, the scenario's change (workers joining or
//! leaving, a rolling deploy, resharding) and, with chaos, a fault phase, then a liveness
//! phase in which the fleet must settle. The checkers watch every step: exclusivity (judged on
//! each worker's own delivery deadline converted to true time), checkpoints monotonic and
//! written only by the owner, no loss, duplicates only across ownerships and after the
//! checkpoint, parent before child, and liveness at the end. A violation carries the command
//! that replays it.
//!
//! The engine is discrete-event: workers, services, processors and the nemesis are events on
//! one queue, by true millisecond and then in the order they were scheduled, so thousands of
//! workers cost what their work costs, not what a tick of thousands of hosts costs. The events
//! of one millisecond run as a batch (services, then every worker's step, then the effects in
//! queue order; see `fleet::batch`), which lets the workers' steps run on a second thread
//! without changing any report. Machines group workers: crashes and
//! partitions apply per machine, pauses, drift and crashes per worker.
//!
//! Modules: [`kinesis`] and [`dynamo`] are the service models, [`fleet`] the engine,
//! [`check`] the checkers, [`scenario`] the scenarios, nemesis and run, [`report`] and
//! [`plot`] what a run tells. The `kcl-sim` binary is the command line (`kcl-sim --help`).

pub mod check;
pub mod checkpoints;
pub mod driven;
pub mod dynamo;
pub mod failover;
pub mod fleet;
pub mod hash;
pub mod kinesis;
pub mod net;
pub mod plot;
pub mod record;
pub mod report;
pub mod scenario;

pub use fleet::WorkerClock;
pub use report::{Comparison, Report};
pub use scenario::{run, Drift, Faults, Mode, Policy, Processors, RunSpec, Scenario, StartAt};
