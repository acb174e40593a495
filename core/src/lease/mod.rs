//! Lease rows: the codec between [`Lease`] and a lease-table item in the Java KCL 2.x schema.
//!
//! Attribute names, types and sentinels are exactly the Java KCL's, so a kcl-rs worker can share
//! a table with Java 2.x workers (policy `Kcl2Compatible`). Attributes this codec does not know
//! are kept in [`Lease::extra`] and written back untouched; a malformed row is a typed
//! [`RowError`] naming the attribute, never a panic.
//!
//! Besides shard leases, the default policy keeps two kinds of rows of its own, marked with
//! `entityType` the way Java 3.5 marks its non-lease rows: one heartbeat row per worker
//! ([`WorkerRow`]) and one leader row. Rows with any other `entityType` are foreign and skipped.

mod borrowed;
mod error;
mod ids;
mod rows;
mod schema;

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::item::{AttributeValue, Item};
use crate::sequence::Position;
use crate::time::WallTime;

pub(crate) use borrowed::{Followed, LeaseRow};
pub use error::{RowError, RowErrorKind};
pub use ids::{LeaseKey, WorkerId};
pub use rows::{Assignment, LeaderRow, Row, WorkerRow};
pub(crate) use schema::schema_name;
pub use schema::{attr, ENTITY_LEADER, ENTITY_LEASE, ENTITY_WORKER, LEADER_KEY, WORKER_KEY_PREFIX};

/// A shard's 128-bit hash-key range, inclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct HashKeyRange {
    /// First hash key.
    pub start: u128,
    /// Last hash key.
    pub end: u128,
}

/// One shard lease as the lease table holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct Lease {
    /// `leaseKey`.
    pub key: LeaseKey,
    /// `leaseOwner`; `None` when unowned.
    pub owner: Option<WorkerId>,
    /// `leaseCounter`.
    pub counter: u64,
    /// `checkpoint` + `checkpointSubSequenceNumber`.
    pub checkpoint: Position,
    /// `pendingCheckpoint` + sub-sequence.
    pub pending_checkpoint: Option<Position>,
    /// `pendingCheckpointState`.
    pub pending_checkpoint_state: Option<Vec<u8>>,
    /// `ownerSwitchesSinceCheckpoint`.
    pub owner_switches_since_checkpoint: u64,
    /// `parentShardId`, sorted.
    pub parent_shard_ids: Vec<LeaseKey>,
    /// `childShardIds`, sorted.
    pub child_shard_ids: Vec<LeaseKey>,
    /// `startingHashKey` / `endingHashKey`.
    pub hash_range: Option<HashKeyRange>,
    /// `checkpointOwner`: set while a graceful handoff is in progress.
    pub checkpoint_owner: Option<WorkerId>,
    /// `throughputKBps`.
    pub throughput_kbps: Option<f64>,
    /// `startingTimestamp`: where a root lease at the `LATEST` or `AT_TIMESTAMP` sentinel
    /// starts, fixed when it was created ([`crate::sync`]). Absent on rows the Java KCL created:
    /// then the sentinel is resolved at each acquisition, as Java does.
    pub starting_timestamp: Option<WallTime>,
    /// `ownerIncarnation`: the holding process, under worker liveness ([`attr::OWNER_INCARNATION`]).
    pub owner_incarnation: Option<crate::item::Text>,
    /// Every attribute this codec does not know, preserved for write-back.
    pub extra: Item,
}

impl Lease {
    /// A new unowned lease at `checkpoint`.
    pub fn new(key: LeaseKey, checkpoint: Position) -> Self {
        Self {
            key,
            owner: None,
            counter: 0,
            checkpoint,
            pending_checkpoint: None,
            pending_checkpoint_state: None,
            owner_switches_since_checkpoint: 0,
            parent_shard_ids: Vec::new(),
            child_shard_ids: Vec::new(),
            hash_range: None,
            checkpoint_owner: None,
            throughput_kbps: None,
            starting_timestamp: None,
            owner_incarnation: None,
            extra: Item::new(),
        }
    }

    /// Whether the shard is fully processed.
    pub fn is_finished(&self) -> bool {
        self.checkpoint == Position::ShardEnd
    }

    /// Decodes a lease row.
    pub fn from_item(item: &Item) -> Result<Self, RowError> {
        LeaseRow::from_item(item).map(|row| row.to_lease(item))
    }

    /// Encodes the lease as a full row (what a create writes); unknown attributes come back.
    pub fn to_item(&self) -> Item {
        let mut item = self.extra.clone();
        let mut put = |k: &'static str, v: AttributeValue| {
            item.insert(k.into(), v);
        };
        put(attr::LEASE_KEY, AttributeValue::S(self.key.as_str().into()));
        if let Some(o) = &self.owner {
            put(attr::LEASE_OWNER, AttributeValue::S(o.as_str().into()));
        }
        put(attr::LEASE_COUNTER, AttributeValue::number(self.counter));
        let (cp, sub) = self.checkpoint.to_attribute();
        put(attr::CHECKPOINT, AttributeValue::S(cp));
        put(attr::CHECKPOINT_SUB, AttributeValue::number(sub));
        if let Some(p) = &self.pending_checkpoint {
            let (cp, sub) = p.to_attribute();
            put(attr::PENDING_CHECKPOINT, AttributeValue::S(cp));
            put(attr::PENDING_CHECKPOINT_SUB, AttributeValue::number(sub));
        }
        if let Some(state) = &self.pending_checkpoint_state {
            put(
                attr::PENDING_CHECKPOINT_STATE,
                AttributeValue::B(state.clone()),
            );
        }
        put(
            attr::OWNER_SWITCHES,
            AttributeValue::number(self.owner_switches_since_checkpoint),
        );
        if !self.parent_shard_ids.is_empty() {
            put(attr::PARENT_SHARD_IDS, key_set(&self.parent_shard_ids));
        }
        if !self.child_shard_ids.is_empty() {
            put(attr::CHILD_SHARD_IDS, key_set(&self.child_shard_ids));
        }
        if let Some(r) = self.hash_range {
            put(
                attr::STARTING_HASH_KEY,
                AttributeValue::S(r.start.to_string().into()),
            );
            put(
                attr::ENDING_HASH_KEY,
                AttributeValue::S(r.end.to_string().into()),
            );
        }
        if let Some(o) = &self.checkpoint_owner {
            put(attr::CHECKPOINT_OWNER, AttributeValue::S(o.as_str().into()));
        }
        if let Some(t) = self.throughput_kbps {
            put(
                attr::THROUGHPUT_KBPS,
                AttributeValue::N(alloc::format!("{t}").into()),
            );
        }
        if let Some(t) = self.starting_timestamp {
            put(
                attr::STARTING_TIMESTAMP,
                AttributeValue::number(t.unix_millis()),
            );
        }
        if let Some(i) = &self.owner_incarnation {
            put(
                attr::OWNER_INCARNATION,
                AttributeValue::S(i.as_str().into()),
            );
        }
        item
    }
}

/// Lease keys from a string set, sorted and without duplicates.
fn key_list(set: &[String]) -> Vec<LeaseKey> {
    let mut keys: Vec<LeaseKey> = set.iter().map(|s| LeaseKey::new(s)).collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// A string set of lease keys.
pub fn key_set(keys: &[LeaseKey]) -> AttributeValue {
    AttributeValue::string_set(keys.iter().map(|k| String::from(k.as_str())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sequence::SequenceNumber;
    use alloc::vec;

    fn java_row() -> Item {
        let mut i = Item::new();
        let s = |v: &str| AttributeValue::S(v.into());
        i.insert("leaseKey".into(), s("shardId-000000000001"));
        i.insert("leaseOwner".into(), s("worker-a"));
        i.insert("leaseCounter".into(), AttributeValue::N("17".into()));
        i.insert(
            "checkpoint".into(),
            s("49590338271490256608559692538361571095921575989136588898"),
        );
        i.insert(
            "checkpointSubSequenceNumber".into(),
            AttributeValue::N("2".into()),
        );
        i.insert(
            "ownerSwitchesSinceCheckpoint".into(),
            AttributeValue::N("1".into()),
        );
        i.insert(
            "parentShardId".into(),
            AttributeValue::Ss(vec!["shardId-000000000000".into()]),
        );
        i.insert("startingHashKey".into(), s("0"));
        i.insert(
            "endingHashKey".into(),
            s("340282366920938463463374607431768211455"),
        );
        i.insert("someJavaFutureAttribute".into(), AttributeValue::Bool(true));
        i
    }

    #[test]
    fn decodes_a_java_row_and_round_trips() {
        let row = java_row();
        let lease = Lease::from_item(&row).expect("valid");
        assert_eq!(lease.owner.as_ref().map(WorkerId::as_str), Some("worker-a"));
        assert_eq!(lease.counter, 17);
        let seq = SequenceNumber::parse("49590338271490256608559692538361571095921575989136588898")
            .expect("seq");
        assert_eq!(lease.checkpoint, Position::record(seq, 2));
        assert_eq!(lease.hash_range.map(|r| r.end), Some(u128::MAX));
        assert_eq!(lease.extra.len(), 1);
        assert_eq!(lease.to_item(), row);
        assert_eq!(
            Row::from_item(&row),
            Ok(Row::Lease(alloc::boxed::Box::new(lease)))
        );
    }

    #[test]
    fn malformed_rows_name_the_attribute() {
        let mut row = java_row();
        row.insert("leaseCounter".into(), AttributeValue::S("17".into()));
        assert_eq!(
            Lease::from_item(&row).map_err(|e| (e.attribute, e.kind)),
            Err((
                "leaseCounter",
                RowErrorKind::WrongType {
                    expected: "N",
                    found: "S"
                }
            ))
        );
        let mut row = java_row();
        row.remove("leaseCounter");
        assert_eq!(
            Lease::from_item(&row).map_err(|e| e.attribute),
            Err("leaseCounter")
        );
        let mut row = java_row();
        row.insert("checkpoint".into(), AttributeValue::S("12x".into()));
        assert_eq!(
            Lease::from_item(&row).map_err(|e| e.attribute),
            Err("checkpoint")
        );
        let mut row = java_row();
        row.insert(
            "endingHashKey".into(),
            AttributeValue::S("340282366920938463463374607431768211456".into()),
        );
        assert_eq!(
            Lease::from_item(&row).map_err(|e| e.attribute),
            Err("endingHashKey")
        );
        let mut row = java_row();
        row.insert("leaseCounter".into(), AttributeValue::N("-1".into()));
        assert!(Lease::from_item(&row).is_err());
    }

    #[test]
    fn entity_types_are_told_apart() {
        let mut w = Item::new();
        w.insert(
            "leaseKey".into(),
            AttributeValue::S("kcl-rs:worker:w1".into()),
        );
        w.insert("entityType".into(), AttributeValue::S(ENTITY_WORKER.into()));
        w.insert("leaseCounter".into(), AttributeValue::number(3));
        match Row::from_item(&w) {
            Ok(Row::Worker(r)) => {
                assert_eq!(r.worker.as_str(), "w1");
                assert_eq!(r.max_leases, u64::MAX);
            }
            other => panic!("{other:?}"),
        }
        w.insert(
            "entityType".into(),
            AttributeValue::S("WORKER_METRIC_STATS".into()),
        );
        assert!(matches!(Row::from_item(&w), Ok(Row::Foreign { .. })));
    }
}
