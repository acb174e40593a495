//! A deterministic multi-worker harness: an in-memory lease table that honours conditional
//! writes ([`MemTable`]), a Kinesis stream model with resharding ([`MemStream`]), and a
//! [`Cluster`] that runs many [`crate::Worker`]s against them through latency, throttling,
//! crashes, pauses, partitions and clock drift while checking the invariants of docs/design.md
//! on every step. quinn's `Pair`, grown to a fleet. The simulator (kcl-sim) has models of its
//! own, with billing, staleness and limits; it shares the drifting clock and the processor
//! outcomes.

mod clock;
mod cluster;
mod processor;
mod stream;
mod table;

pub use clock::DriftClock;
pub use cluster::{
    harness_config, Cluster, ClusterConfig, Faults, NodeId, Report, TestRecord, Violation,
};
pub use processor::ProcessorOutcome;
pub use stream::{Fetched, MemStream, StreamRecord};
pub use table::{MemTable, TableCounts};
