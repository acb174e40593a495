//! Lease rows read where they lie: checked exactly as [`super::Lease::from_item`] checks them
//! (which builds on [`LeaseRow`]), with the attributes borrowed from the item. The leader reads
//! every row on every scan and a holder reads back the row of every renewal; neither needs an
//! owned [`super::Lease`]. The tests below hold both to the owned codec.

use alloc::string::String;
use alloc::vec::Vec;

use super::schema::{attr, known_slot, ENTITY_LEASE, LEASE_ATTRIBUTES};
use super::{key_list, HashKeyRange, Lease, LeaseKey, RowError, RowErrorKind, WorkerId};
use crate::decimal::parse_u128;
use crate::item::{AttributeValue, Item};
use crate::sequence::{Position, SequenceNumber};
use crate::time::WallTime;

/// A lease row's known attributes, found in one pass over the item (and whether it has others,
/// for [`Lease::extra`]).
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
pub(super) trait Attributes<'a> {
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
/// borrowed from the item.
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
    starting_timestamp: Option<u64>,
    pub(crate) owner_incarnation: Option<&'a str>,
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
            counter: counter(&row)?,
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
            starting_timestamp: opt_n(&row, attr::STARTING_TIMESTAMP)?,
            owner_incarnation: opt_s(&row, attr::OWNER_INCARNATION)?,
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
            starting_timestamp: self.starting_timestamp.map(WallTime::from_unix_millis),
            owner_incarnation: self.owner_incarnation.map(crate::item::Text::from),
            extra: self.extra(item),
        }
    }
}

/// What the holder of a lease follows in the row its own write returned: the attributes other
/// writers change, which are the owner and the hand-off attribute (the leader's) and attributes
/// this codec does not know (anyone's). The rest of the row is what the holder wrote itself,
/// checked when it took the lease, so it is not read again.
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

pub(super) fn opt_s<'a>(
    item: &impl Attributes<'a>,
    name: &'static str,
) -> Result<Option<&'a str>, RowError> {
    match item.get(name) {
        None => Ok(None),
        Some(AttributeValue::S(s)) => Ok(Some(s)),
        Some(v) => Err(RowError::wrong_type(name, "S", v)),
    }
}

pub(super) fn req_s<'a>(
    item: &impl Attributes<'a>,
    name: &'static str,
) -> Result<&'a str, RowError> {
    opt_s(item, name)?.ok_or(RowError::missing(name))
}

pub(super) fn opt_n<'a>(
    item: &impl Attributes<'a>,
    name: &'static str,
) -> Result<Option<u64>, RowError> {
    match item.get(name) {
        None => Ok(None),
        Some(AttributeValue::N(n)) => n
            .parse()
            .map(Some)
            .map_err(|_| RowError::invalid(name, "not an unsigned 64-bit integer")),
        Some(v) => Err(RowError::wrong_type(name, "N", v)),
    }
}

pub(super) fn req_n<'a>(item: &impl Attributes<'a>, name: &'static str) -> Result<u64, RowError> {
    opt_n(item, name)?.ok_or(RowError::missing(name))
}

/// `leaseCounter`, below Java's `Long.MAX_VALUE`: every write sets the counter at most one
/// higher, so a counter the core read can always be bumped, and what it writes stays readable
/// by Java workers. A row beyond that is malformed, not a reason to overflow.
pub(super) fn counter<'a>(item: &impl Attributes<'a>) -> Result<u64, RowError> {
    let n = req_n(item, attr::LEASE_COUNTER)?;
    if n >= i64::MAX as u64 {
        return Err(RowError::invalid(
            attr::LEASE_COUNTER,
            "at or beyond 2^63 - 1, where it could no longer be bumped",
        ));
    }
    Ok(n)
}

/// A BOOL attribute; absent is `false`.
pub(super) fn opt_bool<'a>(
    item: &impl Attributes<'a>,
    name: &'static str,
) -> Result<bool, RowError> {
    match item.get(name) {
        None => Ok(false),
        Some(AttributeValue::Bool(b)) => Ok(*b),
        Some(v) => Err(RowError::wrong_type(name, "BOOL", v)),
    }
}

pub(super) fn opt_ss<'a>(
    item: &impl Attributes<'a>,
    name: &'static str,
) -> Result<&'a [String], RowError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::WorkerId;
    use proptest::prelude::*;

    fn name() -> impl Strategy<Value = String> {
        "[a-z0-9-]{1,12}"
    }

    fn position() -> impl Strategy<Value = Position> {
        prop_oneof![
            Just(Position::TrimHorizon),
            Just(Position::Latest),
            Just(Position::AtTimestamp),
            Just(Position::ShardEnd),
            ("[1-9][0-9]{0,55}", 0u64..5).prop_map(|(s, sub)| Position::record(
                SequenceNumber::parse(&s).expect("digits"),
                sub
            )),
        ]
    }

    fn keys() -> impl Strategy<Value = Vec<LeaseKey>> {
        proptest::collection::vec(name(), 0..3).prop_map(|v| {
            let mut keys: Vec<LeaseKey> = v.iter().map(|s| LeaseKey::from(s.as_str())).collect();
            keys.sort_unstable();
            keys.dedup();
            keys
        })
    }

    prop_compose! {
        fn lease()(
            key in name(),
            owner in proptest::option::of(name()),
            counter in 0..i64::MAX as u64,
            checkpoint in position(),
            pending in proptest::option::of(position()),
            state in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..4)),
            switches: u64,
            parents in keys(),
            children in keys(),
            range in proptest::option::of((any::<u128>(), any::<u128>())),
            checkpoint_owner in proptest::option::of(name()),
            throughput in proptest::option::of(0.0f64..1e9),
            starting in proptest::option::of(any::<u64>()),
            incarnation in proptest::option::of("[0-9a-f]{16}"),
            extra in proptest::collection::btree_map("x[a-zA-Z]{0,6}", any::<bool>(), 0..3),
        ) -> Lease {
            let mut l = Lease::new(LeaseKey::from(key.as_str()), checkpoint);
            l.owner = owner.map(|o| WorkerId::from(o.as_str()));
            l.counter = counter;
            l.pending_checkpoint = pending;
            l.pending_checkpoint_state = state;
            l.owner_switches_since_checkpoint = switches;
            l.parent_shard_ids = parents;
            l.child_shard_ids = children;
            l.hash_range = range.map(|(a, b)| HashKeyRange { start: a.min(b), end: a.max(b) });
            l.checkpoint_owner = checkpoint_owner.map(|o| WorkerId::from(o.as_str()));
            l.throughput_kbps = throughput;
            l.starting_timestamp = starting.map(WallTime::from_unix_millis);
            l.owner_incarnation = incarnation.map(|i| crate::item::Text::from(i.as_str()));
            l.extra = extra
                .into_iter()
                .map(|(k, v)| (crate::item::attribute_name(&k), AttributeValue::Bool(v)))
                .collect();
            l
        }
    }

    /// A value of every type but the one the schema wants, for any attribute.
    fn wrong() -> impl Strategy<Value = AttributeValue> {
        prop_oneof![
            Just(AttributeValue::Bool(true)),
            Just(AttributeValue::N("x1".into())),
            Just(AttributeValue::S("not a number".into())),
            Just(AttributeValue::Ss(alloc::vec!["a".into()])),
            Just(AttributeValue::B(alloc::vec![1])),
        ]
    }

    proptest! {
        /// The owned codec round-trips every lease, unknown attributes included.
        #[test]
        fn a_lease_round_trips(l in lease()) {
            prop_assert_eq!(Lease::from_item(&l.to_item()), Ok(l));
        }

        /// A counter that could not be bumped is refused by every decoder.
        #[test]
        fn a_counter_from_2_pow_63_minus_1_is_malformed(mut l in lease(), c in i64::MAX as u64..) {
            l.counter = c;
            let item = l.to_item();
            let refused = |r: Result<(), RowError>| {
                r.is_err_and(|e| e.attribute == attr::LEASE_COUNTER)
            };
            prop_assert!(refused(Lease::from_item(&item).map(drop)));
            prop_assert!(refused(LeaseRow::from_item(&item).map(drop)));
            prop_assert!(refused(crate::lease::Row::from_item(&item).map(drop)));
        }

        /// The borrowed decoders read what the owned codec reads, from rows valid or not: a
        /// lease row, with one attribute (modelled or not) replaced by a value of any type.
        #[test]
        fn the_borrowed_decoders_agree_with_the_owned_codec(
            l in lease(),
            replaced in proptest::option::of((0usize..LEASE_ATTRIBUTES.len() + 1, wrong())),
        ) {
            let mut item = l.to_item();
            if let Some((i, value)) = replaced {
                let name = LEASE_ATTRIBUTES.get(i).copied().unwrap_or("xUnknown");
                item.insert(name.into(), value);
            }
            let owned = Lease::from_item(&item);
            let row = LeaseRow::from_item(&item);
            prop_assert_eq!(row.is_ok(), owned.is_ok());
            if let (Ok(row), Ok(owned)) = (&row, &owned) {
                prop_assert_eq!(row.key, owned.key.as_str());
                prop_assert_eq!(row.owner, owned.owner.as_ref().map(WorkerId::as_str));
                prop_assert_eq!(row.checkpoint_owner, owned.checkpoint_owner.as_ref().map(WorkerId::as_str));
                prop_assert_eq!(row.counter, owned.counter);
                prop_assert_eq!(row.checkpoint.to_position(), owned.checkpoint.clone());
                prop_assert_eq!(row.checkpoint.is_shard_end(), owned.is_finished());
                prop_assert_eq!(row.checkpoint.is_initial(), owned.checkpoint.is_initial());
                prop_assert_eq!(row.throughput_kbps, owned.throughput_kbps);
                prop_assert_eq!(row.owner_incarnation, owned.owner_incarnation.as_ref().map(crate::item::Text::as_str));
                prop_assert_eq!(row.parents(), owned.parent_shard_ids.clone());
                prop_assert_eq!(row.children(), owned.child_shard_ids.clone());
                prop_assert_eq!(row.extra(&item), owned.extra.clone());
                prop_assert_eq!(LeaseRow::of_row(&item).map(|r| r.is_some()), Ok(true));
            }
            // What a holder follows decodes wherever the whole row does, and agrees with it.
            if let Ok(owned) = &owned {
                let followed = Followed::from_item(&item);
                prop_assert!(followed.is_ok());
                if let Ok(f) = followed {
                    prop_assert_eq!(f.owner, owned.owner.as_ref().map(WorkerId::as_str));
                    prop_assert_eq!(f.checkpoint_owner, owned.checkpoint_owner.as_ref().map(WorkerId::as_str));
                    prop_assert_eq!(f.extra(&item), owned.extra.clone());
                }
            }
        }
    }
}
