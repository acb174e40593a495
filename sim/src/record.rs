//! The record the simulated stream hands to workers.

use kcl_core::io::Record;
use kcl_core::RecordPosition;

/// A user record: its position, and where it sits in the simulated stream (for the checkers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimRecord {
    /// Sequence number, and the sub-sequence number inside a KPL aggregate (0 otherwise).
    pub position: RecordPosition,
    /// The shard, by index in the stream.
    pub shard: u32,
    /// The user record's index within its shard, trimmed records included.
    pub index: u64,
    /// Payload size in bytes (an aggregate's size shared among its user records).
    pub size: u32,
}

impl Record for SimRecord {
    fn position(&self) -> &RecordPosition {
        &self.position
    }

    fn size_bytes(&self) -> usize {
        self.size as usize
    }
}
