//! The record a processor receives.

use kcl_core::{Record, RecordPosition};

/// One user record: a Kinesis record, or one user record out of a KPL aggregate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KinesisRecord {
    /// Sequence number, and the index inside a KPL aggregate (0 for plain records).
    pub position: RecordPosition,
    /// Partition key.
    pub partition_key: String,
    /// The KPL's explicit hash key, when the producer set one.
    pub explicit_hash_key: Option<String>,
    /// Payload.
    pub data: Vec<u8>,
    /// `ApproximateArrivalTimestamp`, milliseconds since the Unix epoch.
    pub approximate_arrival_millis: Option<i64>,
    /// Whether it came out of a KPL aggregate.
    pub aggregated: bool,
}

impl Record for KinesisRecord {
    fn position(&self) -> &RecordPosition {
        &self.position
    }
    fn size_bytes(&self) -> usize {
        self.data.len() + self.partition_key.len()
    }
}
