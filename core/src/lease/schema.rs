//! The lease table's schema: attribute names, row kinds, and the names [`super::Lease`] models.

/// Attribute names of the lease table.
pub mod attr {
    /// Hash key: the shard id (or one of our own row keys).
    pub const LEASE_KEY: &str = "leaseKey";
    /// The owning worker id; absent when unowned.
    pub const LEASE_OWNER: &str = "leaseOwner";
    /// The fencing counter, bumped by every write that matters.
    pub const LEASE_COUNTER: &str = "leaseCounter";
    /// Checkpoint sequence number or sentinel.
    pub const CHECKPOINT: &str = "checkpoint";
    /// Sub-sequence number of the checkpoint.
    pub const CHECKPOINT_SUB: &str = "checkpointSubSequenceNumber";
    /// Prepared (two-phase) checkpoint.
    pub const PENDING_CHECKPOINT: &str = "pendingCheckpoint";
    /// Sub-sequence of the prepared checkpoint.
    pub const PENDING_CHECKPOINT_SUB: &str = "pendingCheckpointSubSequenceNumber";
    /// Application bytes saved with a prepared checkpoint.
    pub const PENDING_CHECKPOINT_STATE: &str = "pendingCheckpointState";
    /// Ownership changes since the last checkpoint.
    pub const OWNER_SWITCHES: &str = "ownerSwitchesSinceCheckpoint";
    /// Parent shard ids (SS; singular name as in Java).
    pub const PARENT_SHARD_IDS: &str = "parentShardId";
    /// Child shard ids (SS), written at shard end.
    pub const CHILD_SHARD_IDS: &str = "childShardIds";
    /// Decimal start of the shard's hash-key range.
    pub const STARTING_HASH_KEY: &str = "startingHashKey";
    /// Decimal end of the shard's hash-key range.
    pub const ENDING_HASH_KEY: &str = "endingHashKey";
    /// During a graceful handoff: the old owner still finishing (the new one is `leaseOwner`).
    pub const CHECKPOINT_OWNER: &str = "checkpointOwner";
    /// Per-lease throughput in KB/s, written with renewals.
    pub const THROUGHPUT_KBPS: &str = "throughputKBps";
    /// Where a root lease at `LATEST` / `AT_TIMESTAMP` starts: ms since the Unix epoch (N).
    pub const STARTING_TIMESTAMP: &str = "startingTimestamp";
    /// The process holding the lease under worker liveness (`Coordinated` with
    /// [`Liveness::Worker`](crate::config::Liveness::Worker)): the holder's `incarnation`, set by
    /// its acquire. Such a lease lives while that process's worker row does; an assignment,
    /// release or shard end removes it.
    pub const OWNER_INCARNATION: &str = "ownerIncarnation";
    /// Row kind; absent or `LEASE` for shard leases.
    pub const ENTITY_TYPE: &str = "entityType";
    /// Worker rows: the worker's declared lease capacity.
    pub const MAX_LEASES: &str = "maxLeases";
    /// Worker rows: set while the worker shuts down.
    pub const LEAVING: &str = "leaving";
    /// Worker rows: every Kinesis call of the worker has gone unanswered for
    /// [`crate::Config::read_stall_time`]; the leader moves its leases to workers that can read
    /// (BOOL).
    pub const READS_STALLED: &str = "readsStalled";
    /// Worker rows: leases the leader assigned or handed to this worker (SS).
    pub const ASSIGNED_LEASES: &str = "assignedLeases";
    /// Worker rows: the process heartbeating the row (S), so that a second process with the
    /// same worker id is refused.
    pub const INCARNATION: &str = "incarnation";
    /// The leader row, under worker liveness: what the leader's own worker row showed an
    /// observer (its counter mixed with its incarnation, `WorkerRow::liveness`) after the last
    /// heartbeat the leader had landed when it wrote the leader row (N).
    pub const LEADER_HEARTBEAT: &str = "leaderHeartbeat";
    /// The leader row: the follower the leader names to watch the table beside it, so that it
    /// can take over with a view of every worker row (S).
    pub const STANDBY: &str = "standby";
    /// Worker rows: the host, rack or zone the worker fails with ([`crate::Config::failure_domain`]), so
    /// that the leader names a standby outside its own (S).
    pub const FAILURE_DOMAIN: &str = "failureDomain";
}

/// `entityType` of a worker heartbeat row.
pub const ENTITY_WORKER: &str = "KCL_RS_WORKER";
/// `entityType` of the leader row.
pub const ENTITY_LEADER: &str = "KCL_RS_LEADER";
/// `entityType` Java writes on shard leases (rows without it are leases too).
pub const ENTITY_LEASE: &str = "LEASE";
/// `leaseKey` of the leader row.
pub const LEADER_KEY: &str = "kcl-rs:leader";
/// Prefix of worker rows' `leaseKey`.
pub const WORKER_KEY_PREFIX: &str = "kcl-rs:worker:";

/// The attributes [`Lease`] models (everything else goes to [`Lease::extra`]).
pub(super) const LEASE_ATTRIBUTES: [&str; 17] = [
    attr::LEASE_KEY,
    attr::LEASE_OWNER,
    attr::LEASE_COUNTER,
    attr::CHECKPOINT,
    attr::CHECKPOINT_SUB,
    attr::PENDING_CHECKPOINT,
    attr::PENDING_CHECKPOINT_SUB,
    attr::PENDING_CHECKPOINT_STATE,
    attr::OWNER_SWITCHES,
    attr::PARENT_SHARD_IDS,
    attr::CHILD_SHARD_IDS,
    attr::STARTING_HASH_KEY,
    attr::ENDING_HASH_KEY,
    attr::CHECKPOINT_OWNER,
    attr::THROUGHPUT_KBPS,
    attr::STARTING_TIMESTAMP,
    attr::OWNER_INCARNATION,
];

/// The attributes only the default policy's own rows (worker and leader rows) have.
pub(super) const ROW_ATTRIBUTES: [&str; 5] = [
    attr::ENTITY_TYPE,
    attr::MAX_LEASES,
    attr::LEAVING,
    attr::ASSIGNED_LEASES,
    attr::INCARNATION,
];

/// The schema's static name for `name`, if it is one of [`attr`].
pub(crate) fn schema_name(name: &str) -> Option<&'static str> {
    LEASE_ATTRIBUTES
        .iter()
        .chain(&ROW_ATTRIBUTES)
        .copied()
        .find(|known| *known == name)
}

/// Where `name` sits in [`LEASE_ATTRIBUTES`] (one match on the name).
pub(super) fn known_slot(name: &str) -> Option<usize> {
    Some(match name {
        attr::LEASE_KEY => 0,
        attr::LEASE_OWNER => 1,
        attr::LEASE_COUNTER => 2,
        attr::CHECKPOINT => 3,
        attr::CHECKPOINT_SUB => 4,
        attr::PENDING_CHECKPOINT => 5,
        attr::PENDING_CHECKPOINT_SUB => 6,
        attr::PENDING_CHECKPOINT_STATE => 7,
        attr::OWNER_SWITCHES => 8,
        attr::PARENT_SHARD_IDS => 9,
        attr::CHILD_SHARD_IDS => 10,
        attr::STARTING_HASH_KEY => 11,
        attr::ENDING_HASH_KEY => 12,
        attr::CHECKPOINT_OWNER => 13,
        attr::THROUGHPUT_KBPS => 14,
        attr::STARTING_TIMESTAMP => 15,
        attr::OWNER_INCARNATION => 16,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;

    #[test]
    fn every_modelled_attribute_has_its_own_slot() {
        for (i, name) in LEASE_ATTRIBUTES.iter().enumerate() {
            assert_eq!(known_slot(name), Some(i), "{name}");
            // A copy of the name, not the schema's own string, is found too.
            assert_eq!(known_slot(&String::from(*name)), Some(i), "{name}");
        }
        for other in ROW_ATTRIBUTES
            .iter()
            .chain(&["", "leasekey", "someJavaAttribute"])
        {
            assert_eq!(known_slot(other), None, "{other}");
        }
    }
}
