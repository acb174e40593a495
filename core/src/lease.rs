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

use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use crate::decimal::parse_u128;
use crate::item::{AttributeValue, Item, Text};
use crate::sequence::{Position, SequenceNumber, SequenceNumberError};

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
    /// Row kind; absent or `LEASE` for shard leases.
    pub const ENTITY_TYPE: &str = "entityType";
    /// Worker rows: the worker's declared lease capacity.
    pub const MAX_LEASES: &str = "maxLeases";
    /// Worker rows: set while the worker shuts down.
    pub const LEAVING: &str = "leaving";
    /// Worker rows: leases the leader assigned or handed to this worker (SS).
    pub const ASSIGNED_LEASES: &str = "assignedLeases";
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

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        // In line up to 23 bytes (shard ids and worker ids are 12 to 20): a key in a map's
        // node is compared where it lies, and a copy copies bytes instead of counting a
        // reference that both of the simulator's threads touch. `Text` orders and hashes as
        // its string does, so maps of keys can be searched with `&str` too.
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(Text);

        impl $name {
            /// Wraps a string.
            pub fn new(s: &str) -> Self {
                Self(Text::new(s))
            }
            /// The string.
            pub fn as_str(&self) -> &str {
                self.0.as_str()
            }
        }
        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self::new(s)
            }
        }
        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(Text::from(s))
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl core::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
        #[cfg(feature = "serde")]
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
        #[cfg(feature = "serde")]
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                Ok(Self::from(<String as serde::Deserialize>::deserialize(d)?))
            }
        }
    };
}

string_id!(
    /// A lease key: the shard id in single-stream mode. Cheap to clone.
    LeaseKey
);
string_id!(
    /// A worker's identity in the lease table. Cheap to clone.
    WorkerId
);

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
        item
    }
}

/// The attributes [`Lease`] models (everything else goes to [`Lease::extra`]).
const LEASE_ATTRIBUTES: [&str; 15] = [
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
];

/// The attributes only the default policy's own rows (worker and leader rows) have.
const ROW_ATTRIBUTES: [&str; 4] = [
    attr::ENTITY_TYPE,
    attr::MAX_LEASES,
    attr::LEAVING,
    attr::ASSIGNED_LEASES,
];

/// The schema's static name for `name`, if it is one of [`attr`].
pub(crate) fn schema_name(name: &str) -> Option<&'static str> {
    LEASE_ATTRIBUTES
        .iter()
        .chain(&ROW_ATTRIBUTES)
        .copied()
        .find(|known| *known == name)
}

/// Where `name` sits in [`LEASE_ATTRIBUTES`]. A match: it compiles to a switch on the length
/// (the names' lengths nearly all differ) and a comparison or two, where a search of the list
/// compared a dozen names for each attribute of each row the leader scans.
fn known_slot(name: &str) -> Option<usize> {
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
        _ => return None,
    })
}

/// A lease row's known attributes, found in one pass over the item: the leader decodes every
/// row of the table on every scan, and a tree search per attribute (plus a search of the known
/// names per attribute for [`Lease::extra`]) was most of that.
struct LeaseFields<'a> {
    slots: [Option<&'a AttributeValue>; LEASE_ATTRIBUTES.len()],
    unknown: bool,
}

impl<'a> LeaseFields<'a> {
    fn of(item: &'a Item) -> Self {
        let mut row = Self {
            slots: [None; LEASE_ATTRIBUTES.len()],
            unknown: false,
        };
        for (name, value) in item {
            match known_slot(name) {
                Some(i) => row.slots[i] = Some(value),
                None => row.unknown = true,
            }
        }
        row
    }
}

/// Where the row decoders read attributes from: a whole item, or a lease's slots.
trait Attributes<'a> {
    fn get(&self, name: &'static str) -> Option<&'a AttributeValue>;
}

impl<'a> Attributes<'a> for &'a Item {
    fn get(&self, name: &'static str) -> Option<&'a AttributeValue> {
        Item::get(self, name)
    }
}

impl<'a> Attributes<'a> for LeaseFields<'a> {
    fn get(&self, name: &'static str) -> Option<&'a AttributeValue> {
        known_slot(name).and_then(|i| self.slots[i])
    }
}

/// A checkpoint attribute that passed [`Position::check`], borrowed from its row.
#[derive(Clone, Debug)]
pub(crate) struct PositionRef<'a> {
    checkpoint: &'a str,
    sub_sequence: u64,
    /// The sentinel it names; `None` for a sequence number.
    sentinel: Option<Position>,
}

impl PositionRef<'_> {
    pub(crate) fn to_position(&self) -> Position {
        match &self.sentinel {
            Some(sentinel) => sentinel.clone(),
            None => Position::record(SequenceNumber::checked(self.checkpoint), self.sub_sequence),
        }
    }

    pub(crate) fn is_shard_end(&self) -> bool {
        self.sentinel == Some(Position::ShardEnd)
    }

    /// One of the initial-position sentinels: nothing processed yet.
    pub(crate) fn is_initial(&self) -> bool {
        self.sentinel.as_ref().is_some_and(Position::is_initial)
    }
}

/// A lease row checked as [`Lease::from_item`] checks it (which builds on this), its attributes
/// borrowed from the item rather than copied. The leader reads every row of the table on every
/// scan and a holder reads its row back after every renewal; neither needs an owned [`Lease`],
/// and copying one out was most of the cost of both.
#[derive(Debug)]
pub(crate) struct LeaseRow<'a> {
    pub(crate) key: &'a str,
    pub(crate) owner: Option<&'a str>,
    pub(crate) counter: u64,
    pub(crate) checkpoint: PositionRef<'a>,
    pending_checkpoint: Option<PositionRef<'a>>,
    pending_checkpoint_state: Option<&'a [u8]>,
    owner_switches_since_checkpoint: u64,
    parent_shard_ids: &'a [String],
    child_shard_ids: &'a [String],
    hash_range: Option<HashKeyRange>,
    pub(crate) checkpoint_owner: Option<&'a str>,
    pub(crate) throughput_kbps: Option<f64>,
    /// Whether the row has attributes the lease does not model.
    unknown: bool,
}

impl<'a> LeaseRow<'a> {
    pub(crate) fn from_item(item: &'a Item) -> Result<Self, RowError> {
        let row = LeaseFields::of(item);
        let key = req_s(&row, attr::LEASE_KEY)?;
        let (checkpoint, pending_checkpoint) = (
            position(&row, attr::CHECKPOINT, attr::CHECKPOINT_SUB)?
                .ok_or(RowError::missing(attr::CHECKPOINT))?,
            position(&row, attr::PENDING_CHECKPOINT, attr::PENDING_CHECKPOINT_SUB)?,
        );
        let hash_range = match (
            opt_s(&row, attr::STARTING_HASH_KEY)?,
            opt_s(&row, attr::ENDING_HASH_KEY)?,
        ) {
            (Some(s), Some(e)) => Some(HashKeyRange {
                start: parse_u128(s).ok_or(RowError::invalid(
                    attr::STARTING_HASH_KEY,
                    "not a 128-bit decimal",
                ))?,
                end: parse_u128(e).ok_or(RowError::invalid(
                    attr::ENDING_HASH_KEY,
                    "not a 128-bit decimal",
                ))?,
            }),
            (None, None) => None,
            (Some(_), None) => return Err(RowError::missing(attr::ENDING_HASH_KEY)),
            (None, Some(_)) => return Err(RowError::missing(attr::STARTING_HASH_KEY)),
        };
        let throughput_kbps = match row.get(attr::THROUGHPUT_KBPS) {
            None => None,
            Some(AttributeValue::N(n)) => Some(
                n.parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && *v >= 0.0)
                    .ok_or(RowError::invalid(
                        attr::THROUGHPUT_KBPS,
                        "not a non-negative number",
                    ))?,
            ),
            Some(v) => return Err(RowError::wrong_type(attr::THROUGHPUT_KBPS, "N", v)),
        };
        Ok(Self {
            key,
            owner: opt_s(&row, attr::LEASE_OWNER)?,
            counter: req_n(&row, attr::LEASE_COUNTER)?,
            checkpoint,
            pending_checkpoint,
            pending_checkpoint_state: match row.get(attr::PENDING_CHECKPOINT_STATE) {
                None => None,
                Some(AttributeValue::B(b)) => Some(b),
                Some(v) => {
                    return Err(RowError::wrong_type(attr::PENDING_CHECKPOINT_STATE, "B", v))
                }
            },
            owner_switches_since_checkpoint: opt_n(&row, attr::OWNER_SWITCHES)?.unwrap_or(0),
            parent_shard_ids: opt_ss(&row, attr::PARENT_SHARD_IDS)?,
            child_shard_ids: opt_ss(&row, attr::CHILD_SHARD_IDS)?,
            hash_range,
            checkpoint_owner: opt_s(&row, attr::CHECKPOINT_OWNER)?,
            throughput_kbps,
            unknown: row.unknown,
        })
    }

    /// A lease row, or `None` when the item is a row of another kind (see [`Row::from_item`]).
    pub(crate) fn of_row(item: &'a Item) -> Result<Option<Self>, RowError> {
        match opt_s(&item, attr::ENTITY_TYPE)? {
            None | Some(ENTITY_LEASE) => Self::from_item(item).map(Some),
            Some(_) => Ok(None),
        }
    }

    /// `parentShardId`, sorted.
    pub(crate) fn parents(&self) -> Vec<LeaseKey> {
        key_list(self.parent_shard_ids)
    }

    /// `childShardIds`, sorted.
    pub(crate) fn children(&self) -> Vec<LeaseKey> {
        key_list(self.child_shard_ids)
    }

    /// The attributes the lease does not model, kept so that writes give them back; `item` is
    /// the row this was read from.
    pub(crate) fn extra(&self, item: &Item) -> Item {
        unknown_attributes(item, self.unknown)
    }

    /// The owned lease; `item` is the row this was read from.
    pub(crate) fn to_lease(&self, item: &Item) -> Lease {
        Lease {
            key: LeaseKey::from(self.key),
            owner: self.owner.map(WorkerId::from),
            counter: self.counter,
            checkpoint: self.checkpoint.to_position(),
            pending_checkpoint: self
                .pending_checkpoint
                .as_ref()
                .map(PositionRef::to_position),
            pending_checkpoint_state: self.pending_checkpoint_state.map(<[u8]>::to_vec),
            owner_switches_since_checkpoint: self.owner_switches_since_checkpoint,
            parent_shard_ids: self.parents(),
            child_shard_ids: self.children(),
            hash_range: self.hash_range,
            checkpoint_owner: self.checkpoint_owner.map(WorkerId::from),
            throughput_kbps: self.throughput_kbps,
            extra: self.extra(item),
        }
    }
}

/// What the holder of a lease follows in the row its own write returned: the attributes other
/// writers change, which are the owner and the hand-off attribute (the leader's) and attributes
/// this codec does not know (anyone's). The rest of the row is what the holder wrote itself, and
/// was checked when it took the lease; reading it back after every renewal was most of a
/// renewal's cost.
pub(crate) struct Followed<'a> {
    pub(crate) owner: Option<&'a str>,
    pub(crate) checkpoint_owner: Option<&'a str>,
    unknown: bool,
}

impl<'a> Followed<'a> {
    pub(crate) fn from_item(item: &'a Item) -> Result<Self, RowError> {
        let row = LeaseFields::of(item);
        Ok(Self {
            owner: opt_s(&row, attr::LEASE_OWNER)?,
            checkpoint_owner: opt_s(&row, attr::CHECKPOINT_OWNER)?,
            unknown: row.unknown,
        })
    }

    /// As [`LeaseRow::extra`].
    pub(crate) fn extra(&self, item: &Item) -> Item {
        unknown_attributes(item, self.unknown)
    }
}

/// The attributes of `item` a lease does not model (`any`: whether there are some).
fn unknown_attributes(item: &Item, any: bool) -> Item {
    if !any {
        return Item::new();
    }
    item.iter()
        .filter(|(k, _)| known_slot(k).is_none())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
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

/// A worker's heartbeat row (default policy only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerRow {
    /// The worker.
    pub worker: WorkerId,
    /// Heartbeat counter; liveness is judged by its changes on the observer's clock.
    pub counter: u64,
    /// The most leases the worker will hold.
    pub max_leases: u64,
    /// The worker is shutting down and should receive no leases.
    pub leaving: bool,
    /// Leases assigned or handed over to the worker, not yet acknowledged.
    pub assigned: Vec<LeaseKey>,
}

impl WorkerRow {
    /// The row key of a worker.
    pub fn key(worker: &WorkerId) -> String {
        let mut key = String::with_capacity(WORKER_KEY_PREFIX.len() + worker.as_str().len());
        key.push_str(WORKER_KEY_PREFIX);
        key.push_str(worker.as_str());
        key
    }
}

/// The leader row (default policy only): a lease on leadership.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderRow {
    /// The leader; `None` after a leader stepped down.
    pub owner: Option<WorkerId>,
    /// Fencing counter, bumped by every renewal.
    pub counter: u64,
}

/// Any row of the lease table, decoded.
#[derive(Clone, Debug, PartialEq)]
pub enum Row {
    /// A shard lease.
    Lease(alloc::boxed::Box<Lease>),
    /// A worker heartbeat row.
    Worker(WorkerRow),
    /// The leader row.
    Leader(LeaderRow),
    /// A row of another kind (Java 3.x metrics, migration state, ...): left alone.
    Foreign {
        /// Its key.
        key: String,
        /// Its `entityType`.
        entity_type: String,
    },
}

impl Row {
    /// Decodes any row of the table.
    pub fn from_item(item: &Item) -> Result<Self, RowError> {
        match opt_s(&item, attr::ENTITY_TYPE)? {
            None | Some(ENTITY_LEASE) => {
                Lease::from_item(item).map(|l| Self::Lease(alloc::boxed::Box::new(l)))
            }
            Some(ENTITY_WORKER) => {
                let key = req_s(&item, attr::LEASE_KEY)?;
                let worker = key
                    .strip_prefix(WORKER_KEY_PREFIX)
                    .ok_or(RowError::invalid(
                        attr::LEASE_KEY,
                        "worker row key lacks its prefix",
                    ))?;
                Ok(Row::Worker(WorkerRow {
                    worker: WorkerId::from(worker),
                    counter: req_n(&item, attr::LEASE_COUNTER)?,
                    max_leases: opt_n(&item, attr::MAX_LEASES)?.unwrap_or(u64::MAX),
                    leaving: match item.get(attr::LEAVING) {
                        None => false,
                        Some(AttributeValue::Bool(b)) => *b,
                        Some(v) => return Err(RowError::wrong_type(attr::LEAVING, "BOOL", v)),
                    },
                    assigned: key_list(opt_ss(&item, attr::ASSIGNED_LEASES)?),
                }))
            }
            Some(ENTITY_LEADER) => Ok(Row::Leader(LeaderRow {
                owner: opt_s(&item, attr::LEASE_OWNER)?.map(WorkerId::from),
                counter: req_n(&item, attr::LEASE_COUNTER)?,
            })),
            Some(other) => Ok(Row::Foreign {
                key: req_s(&item, attr::LEASE_KEY)?.into(),
                entity_type: other.into(),
            }),
        }
    }
}

/// What is wrong with a row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RowErrorKind {
    /// A required attribute is missing.
    Missing,
    /// The attribute has another DynamoDB type.
    WrongType {
        /// The type the schema requires.
        expected: &'static str,
        /// The type found.
        found: &'static str,
    },
    /// The value does not parse.
    Invalid(&'static str),
    /// The checkpoint is not a sequence number or sentinel.
    BadSequence(SequenceNumberError),
}

/// A malformed lease-table row: which attribute, and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowError {
    /// The attribute at fault.
    pub attribute: &'static str,
    /// What is wrong.
    pub kind: RowErrorKind,
}

impl RowError {
    fn missing(attribute: &'static str) -> Self {
        Self {
            attribute,
            kind: RowErrorKind::Missing,
        }
    }
    fn invalid(attribute: &'static str, why: &'static str) -> Self {
        Self {
            attribute,
            kind: RowErrorKind::Invalid(why),
        }
    }
    fn wrong_type(attribute: &'static str, expected: &'static str, found: &AttributeValue) -> Self {
        Self {
            attribute,
            kind: RowErrorKind::WrongType {
                expected,
                found: found.type_name(),
            },
        }
    }
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            RowErrorKind::Missing => write!(f, "attribute {} is missing", self.attribute),
            RowErrorKind::WrongType { expected, found } => {
                write!(
                    f,
                    "attribute {} has type {found}, expected {expected}",
                    self.attribute
                )
            }
            RowErrorKind::Invalid(why) => {
                write!(f, "attribute {} is invalid: {why}", self.attribute)
            }
            RowErrorKind::BadSequence(e) => write!(f, "attribute {}: {e}", self.attribute),
        }
    }
}

fn opt_s<'a>(item: &impl Attributes<'a>, name: &'static str) -> Result<Option<&'a str>, RowError> {
    match item.get(name) {
        None => Ok(None),
        Some(AttributeValue::S(s)) => Ok(Some(s)),
        Some(v) => Err(RowError::wrong_type(name, "S", v)),
    }
}

fn req_s<'a>(item: &impl Attributes<'a>, name: &'static str) -> Result<&'a str, RowError> {
    opt_s(item, name)?.ok_or(RowError::missing(name))
}

fn opt_n<'a>(item: &impl Attributes<'a>, name: &'static str) -> Result<Option<u64>, RowError> {
    match item.get(name) {
        None => Ok(None),
        Some(AttributeValue::N(n)) => n
            .parse()
            .map(Some)
            .map_err(|_| RowError::invalid(name, "not an unsigned 64-bit integer")),
        Some(v) => Err(RowError::wrong_type(name, "N", v)),
    }
}

fn req_n<'a>(item: &impl Attributes<'a>, name: &'static str) -> Result<u64, RowError> {
    opt_n(item, name)?.ok_or(RowError::missing(name))
}

fn opt_ss<'a>(item: &impl Attributes<'a>, name: &'static str) -> Result<&'a [String], RowError> {
    match item.get(name) {
        None => Ok(&[]),
        Some(AttributeValue::Ss(v)) => Ok(v),
        Some(v) => Err(RowError::wrong_type(name, "SS", v)),
    }
}

fn position<'a>(
    item: &impl Attributes<'a>,
    name: &'static str,
    sub_name: &'static str,
) -> Result<Option<PositionRef<'a>>, RowError> {
    let Some(checkpoint) = opt_s(item, name)? else {
        return Ok(None);
    };
    let sub_sequence = opt_n(item, sub_name)?.unwrap_or(0);
    let sentinel = Position::check(checkpoint).map_err(|e| RowError {
        attribute: name,
        kind: RowErrorKind::BadSequence(e),
    })?;
    Ok(Some(PositionRef {
        checkpoint,
        sub_sequence,
        sentinel,
    }))
}

/// The leases of a table view by key, for code that needs ordered lookups.
pub type LeaseMap = BTreeMap<LeaseKey, Lease>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sequence::SequenceNumber;
    use alloc::vec;

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
