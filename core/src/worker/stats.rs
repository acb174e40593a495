//! What a worker tells of itself: its counters, and what a checker may read of a held lease.

use crate::io::FencingToken;
use crate::lease::Lease;
use crate::time::Instant;

/// Counters of what a worker did and saw; plain data, compared whole by determinism tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Stats {
    /// Results with an unknown, late or duplicate request id, or of the wrong kind: ignored.
    pub stale_results: u64,
    /// Processor returns or checkpoint requests for calls or tokens that are not current.
    pub stale_processor_inputs: u64,
    /// Rows that failed to decode (skipped, left as they are).
    pub malformed_rows: u64,
    /// Lease-table scans completed.
    pub scans: u64,
    /// Leases this worker came to hold.
    pub leases_acquired: u64,
    /// Of those, taken live from another worker (Kcl2Compatible steals).
    pub leases_stolen: u64,
    /// Leases lost (renewal refused or delivery window passed).
    pub leases_lost: u64,
    /// Leases handed over to another worker.
    pub handoffs_completed: u64,
    /// Handoffs this worker started as leader.
    pub handoffs_initiated: u64,
    /// Unowned or expired leases this worker assigned as leader.
    pub assignments: u64,
    /// Assignments not acquired whose note this worker, as leader, wrote again: the new
    /// owner's row named none (worker liveness).
    pub orphaned_assignments_noted: u64,
    /// Successful renewals.
    pub renewals: u64,
    /// Checkpoints written.
    pub checkpoints: u64,
    /// Calls throttled by either service.
    pub throttled: u64,
    /// Writes that lost a conditional race.
    pub condition_failures: u64,
    /// Requests forgotten after `request_timeout`.
    pub request_timeouts: u64,
    /// Batches delivered to processors.
    pub batches_delivered: u64,
    /// Records delivered to processors.
    pub records_delivered: u64,
    /// Expired shard iterators.
    pub expired_iterators: u64,
    /// Leases created by shard sync or at shard end.
    pub leases_created: u64,
    /// Finished leases deleted.
    pub leases_deleted: u64,
    /// Rows of dead workers deleted (by the leader).
    pub worker_rows_deleted: u64,
    /// Held shards finished because the stream no longer lists them.
    pub shards_gone: u64,
    /// Runs of refusals of a held, listed shard's starting position ([`crate::Event::IteratorRefused`]).
    pub iterators_refused: u64,
    /// Times every Kinesis call of this worker had gone unanswered for the stall time
    /// ([`crate::Event::ReadsStalled`]).
    pub reads_stalls: u64,
    /// Listings sent to learn whether Kinesis answers again while the reads are stalled.
    pub kinesis_probes: u64,
    /// Times this worker became leader.
    pub leaderships: u64,
    /// 1 when this worker stopped because another live process has its id (`Coordinated`).
    pub duplicate_worker_id: u64,
    /// Worker liveness: times this process gave up its incarnation with every lease it held (its
    /// heartbeats stopped landing for a delivery window, or it was fenced).
    pub incarnations_given_up: u64,
    /// Worker liveness: fences this worker wrote as leader that landed.
    pub workers_fenced: u64,
}

/// What a checker may read of one held lease.
#[derive(Clone, Debug, PartialEq)]
pub struct LeaseView<'a> {
    /// The lease as this worker last wrote or read it.
    pub lease: &'a Lease,
    /// The ownership's fencing token.
    pub token: FencingToken,
    /// Until when (on this worker's clock) it may deliver records; `None` while it may not.
    pub deliver_until: Option<Instant>,
}
