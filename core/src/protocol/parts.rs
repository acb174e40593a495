//! The pieces the protocol's writes are built of: the holder's and the leader's conditions, the
//! counter bump and a committed checkpoint.

use alloc::vec::Vec;

use crate::item::AttributeValue;
use crate::lease::{attr, WorkerId};
use crate::write::{Condition, Update};

pub(super) fn string(v: &str) -> AttributeValue {
    AttributeValue::S(v.into())
}

/// The leader row's `standby`: set to the follower named, or removed.
pub(super) fn set_standby(standby: Option<&WorkerId>) -> Update {
    match standby {
        Some(s) => Update::Set(attr::STANDBY, string(s.as_str())),
        None => Update::Remove(attr::STANDBY),
    }
}

/// `leaseCounter = counter + 1`.
pub(super) fn bump(counter: u64) -> Update {
    Update::Set(attr::LEASE_COUNTER, AttributeValue::number(counter + 1))
}

/// The condition of every write of a holder on its lease: the counter its last write left, and
/// the holder as owner or as the old owner finishing a handoff.
pub(super) fn held_by(counter: u64, holder: &WorkerId) -> Condition {
    Condition::And(alloc::vec![
        Condition::eq_num(attr::LEASE_COUNTER, counter),
        Condition::Or(alloc::vec![
            Condition::eq_str(attr::LEASE_OWNER, holder.as_str()),
            Condition::eq_str(attr::CHECKPOINT_OWNER, holder.as_str()),
        ]),
    ])
}

/// The condition of a release: the counter `c` and `holder` as `leaseOwner` (not only as
/// `checkpointOwner`: during a handoff the lease is the receiver's to keep).
pub(super) fn owned_by(counter: u64, holder: &WorkerId) -> Condition {
    Condition::And(alloc::vec![
        Condition::eq_num(attr::LEASE_COUNTER, counter),
        Condition::eq_str(attr::LEASE_OWNER, holder.as_str()),
    ])
}

/// The condition of the leader's writes on the leader row.
pub(super) fn leads(counter: u64, leader: &WorkerId) -> Condition {
    Condition::And(alloc::vec![
        Condition::eq_num(attr::LEASE_COUNTER, counter),
        Condition::eq_str(attr::LEASE_OWNER, leader.as_str()),
    ])
}

/// A committed checkpoint: the position, a fresh count of owner switches, no pending checkpoint.
pub(super) fn set_checkpoint(updates: &mut Vec<Update>, checkpoint: crate::item::Text, sub: u64) {
    updates.push(Update::Set(attr::CHECKPOINT, AttributeValue::S(checkpoint)));
    updates.push(Update::Set(
        attr::CHECKPOINT_SUB,
        AttributeValue::number(sub),
    ));
    updates.push(Update::Set(attr::OWNER_SWITCHES, AttributeValue::number(0)));
    updates.push(Update::Remove(attr::PENDING_CHECKPOINT));
    updates.push(Update::Remove(attr::PENDING_CHECKPOINT_SUB));
    updates.push(Update::Remove(attr::PENDING_CHECKPOINT_STATE));
}
