//! Conditional writes as data: the core decides every condition; drivers only carry them out.
//!
//! A [`LeaseWrite`] maps one to one onto a DynamoDB `PutItem` / `UpdateItem` / `DeleteItem` with a
//! `ConditionExpression`; the worker builds every one it issues from a
//! [`LeaseOp`](crate::protocol::LeaseOp), the protocol's operations. [`apply`] is the reference
//! semantics of that mapping: the in-memory table of the test kit and the simulator evaluate
//! writes with it, and the AWS backend's integration tests check DynamoDB agrees. (Not serde types: attribute names are `&'static str`.)

use alloc::string::String;
use alloc::vec::Vec;

use crate::item::{AttributeValue, Item};
use crate::lease::attr;

/// A condition on the current item, evaluated atomically with the write.
#[derive(Clone, Debug, PartialEq)]
pub enum Condition {
    /// Always true.
    Always,
    /// The item exists (`attribute_exists(leaseKey)`).
    Exists,
    /// The item does not exist (`attribute_not_exists(leaseKey)`).
    NotExists,
    /// The attribute exists and equals the value.
    Equals(&'static str, AttributeValue),
    /// The attribute is absent (`attribute_not_exists(name)`).
    Absent(&'static str),
    /// All hold.
    And(Vec<Condition>),
    /// At least one holds.
    Or(Vec<Condition>),
}

impl Condition {
    /// `name = value` for a string attribute.
    pub fn eq_str(name: &'static str, value: &str) -> Self {
        Self::Equals(name, AttributeValue::S(value.into()))
    }

    /// `name = value` for a number attribute.
    pub fn eq_num(name: &'static str, value: u64) -> Self {
        Self::Equals(name, AttributeValue::number(value))
    }

    /// Evaluates the condition against the current item (`None` when absent).
    pub fn holds(&self, item: Option<&Item>) -> bool {
        match self {
            Self::Always => true,
            Self::Exists => item.is_some(),
            Self::NotExists => item.is_none(),
            Self::Equals(name, value) => item
                .and_then(|i| i.get(name))
                .is_some_and(|v| values_equal(v, value)),
            Self::Absent(name) => item.is_none_or(|i| !i.contains_key(name)),
            Self::And(all) => all.iter().all(|c| c.holds(item)),
            Self::Or(any) => any.iter().any(|c| c.holds(item)),
        }
    }
}

/// DynamoDB compares numbers numerically: "010" equals "10".
fn values_equal(a: &AttributeValue, b: &AttributeValue) -> bool {
    match (a, b) {
        (AttributeValue::N(x), AttributeValue::N(y)) => {
            match (x.parse::<u64>(), y.parse::<u64>()) {
                (Ok(p), Ok(q)) => p == q,
                _ => x == y,
            }
        }
        _ => a == b,
    }
}

/// One action of an update.
#[derive(Clone, Debug, PartialEq)]
pub enum Update {
    /// `SET name = value`.
    Set(&'static str, AttributeValue),
    /// `REMOVE name`.
    Remove(&'static str),
    /// `ADD name delta` on a number (absent counts as 0).
    Increment(&'static str, u64),
    /// `ADD name {values}` on a string set.
    AddToSet(&'static str, Vec<String>),
    /// `DELETE name {values}` on a string set (the attribute disappears when empty).
    DeleteFromSet(&'static str, Vec<String>),
}

/// What a write does to the item.
#[derive(Clone, Debug, PartialEq)]
pub enum WriteAction {
    /// `PutItem` of the whole item.
    Put(Item),
    /// `UpdateItem` with these actions (creates the item if absent and the condition allows).
    Update(Vec<Update>),
    /// `DeleteItem`.
    Delete,
}

/// Why the core issues a write: names the operation for metrics, logs and the simulator's
/// billing, and never changes its semantics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum WriteKind {
    /// Create a lease row if absent.
    Create,
    /// Renew a held lease (bump the counter).
    Renew,
    /// Take an unowned or expired lease (or steal one, in the KCL 2.x policy).
    Take,
    /// The leader assigns an unowned or expired lease to a worker.
    Assign,
    /// The leader asks an owner to hand a lease over.
    InitiateHandoff,
    /// The old owner completes a handoff.
    CompleteHandoff,
    /// The new owner acquires a lease assigned or handed over to it.
    Acquire,
    /// Move a checkpoint (or prepare one).
    Checkpoint,
    /// Give a lease up (owner removed).
    Release,
    /// Delete a finished lease.
    Delete,
    /// Write a worker's heartbeat row.
    WorkerHeartbeat,
    /// Tell a worker about a lease assigned to it.
    Notify,
    /// Tell a worker that a lease may soon be assigned to it.
    HeadsUp,
    /// Create, renew or take the leader row.
    Leader,
    /// Fence a worker judged dead, so that none of its heartbeats lands again (worker liveness).
    Fence,
}

/// A conditional write of one item of the lease table.
#[derive(Clone, Debug, PartialEq)]
pub struct LeaseWrite {
    /// The item's `leaseKey`.
    pub key: String,
    /// What the write does.
    pub action: WriteAction,
    /// The condition that must hold for the write to happen.
    pub condition: Condition,
    /// Whether the result must carry the item as it is after the write (`ReturnValues=ALL_NEW`);
    /// it costs no extra read units.
    pub return_item: bool,
    /// Why the write is issued.
    pub kind: WriteKind,
}

/// The condition did not hold; nothing was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConditionFailed;

/// Applies a write to the current item, as DynamoDB would: the result is the item after the
/// write (`None` when it was deleted or never existed).
pub fn apply(current: Option<&Item>, write: &LeaseWrite) -> Result<Option<Item>, ConditionFailed> {
    if !write.condition.holds(current) {
        return Err(ConditionFailed);
    }
    Ok(match &write.action {
        WriteAction::Put(item) => {
            let mut item = item.clone();
            set_key(&mut item, &write.key);
            Some(item)
        }
        WriteAction::Delete => None,
        WriteAction::Update(updates) => {
            let mut item = current.cloned().unwrap_or_default();
            set_key(&mut item, &write.key);
            for u in updates {
                apply_update(&mut item, u);
            }
            Some(item)
        }
    })
}

/// The key attribute, as the write's key; an item that has it already is left as it is.
fn set_key(item: &mut Item, key: &str) {
    if !matches!(item.get(attr::LEASE_KEY), Some(AttributeValue::S(k)) if **k == *key) {
        item.insert(attr::LEASE_KEY.into(), AttributeValue::S(key.into()));
    }
}

fn apply_update(item: &mut Item, update: &Update) {
    match update {
        Update::Set(name, value) => {
            item.insert((*name).into(), value.clone());
        }
        Update::Remove(name) => {
            item.remove(name);
        }
        Update::Increment(name, delta) => {
            let old = match item.get(name) {
                Some(AttributeValue::N(n)) => n.parse::<u64>().unwrap_or(0),
                _ => 0,
            };
            item.insert(
                (*name).into(),
                AttributeValue::number(old.saturating_add(*delta)),
            );
        }
        Update::AddToSet(name, values) => {
            let mut set = match item.remove(name) {
                Some(AttributeValue::Ss(v)) => v,
                _ => Vec::new(),
            };
            set.extend(values.iter().cloned());
            item.insert((*name).into(), AttributeValue::string_set(set));
        }
        Update::DeleteFromSet(name, values) => {
            if let Some(AttributeValue::Ss(set)) = item.get_mut(name) {
                set.retain(|v| !values.contains(v));
                if set.is_empty() {
                    item.remove(name);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn write(action: WriteAction, condition: Condition) -> LeaseWrite {
        LeaseWrite {
            key: "k".into(),
            action,
            condition,
            return_item: false,
            kind: WriteKind::Renew,
        }
    }

    #[test]
    fn update_conditional_on_counter() {
        let mut item = Item::new();
        item.insert(attr::LEASE_COUNTER.into(), AttributeValue::number(4));
        let w = write(
            WriteAction::Update(vec![Update::Set(
                attr::LEASE_COUNTER,
                AttributeValue::number(5),
            )]),
            Condition::eq_num(attr::LEASE_COUNTER, 4),
        );
        let after = apply(Some(&item), &w).expect("holds").expect("exists");
        assert_eq!(
            after.get(attr::LEASE_COUNTER),
            Some(&AttributeValue::number(5))
        );
        assert_eq!(apply(Some(&after), &w), Err(ConditionFailed));
        // Numbers compare numerically.
        item.insert(attr::LEASE_COUNTER.into(), AttributeValue::N("04".into()));
        assert!(apply(Some(&item), &w).is_ok());
    }

    #[test]
    fn create_if_absent_and_sets() {
        let put = write(WriteAction::Put(Item::new()), Condition::NotExists);
        let created = apply(None, &put).expect("absent").expect("created");
        assert_eq!(apply(Some(&created), &put), Err(ConditionFailed));
        let add = write(
            WriteAction::Update(vec![Update::AddToSet(
                "s",
                vec!["b".into(), "a".into(), "b".into()],
            )]),
            Condition::Exists,
        );
        let with = apply(Some(&created), &add).expect("ok").expect("item");
        assert_eq!(
            with.get("s"),
            Some(&AttributeValue::Ss(vec!["a".into(), "b".into()]))
        );
        let del = write(
            WriteAction::Update(vec![Update::DeleteFromSet(
                "s",
                vec!["a".into(), "b".into()],
            )]),
            Condition::Exists,
        );
        let without = apply(Some(&with), &del).expect("ok").expect("item");
        assert!(!without.contains_key("s"));
        assert_eq!(apply(None, &add), Err(ConditionFailed));
        let gone = apply(
            Some(&without),
            &write(WriteAction::Delete, Condition::Exists),
        )
        .expect("ok");
        assert_eq!(gone, None);
    }

    #[test]
    fn or_and_absent() {
        let mut item = Item::new();
        item.insert("owner".into(), AttributeValue::S("a".into()));
        let c = Condition::Or(vec![
            Condition::eq_str("owner", "b"),
            Condition::Absent("owner"),
        ]);
        assert!(!c.holds(Some(&item)));
        assert!(c.holds(None));
        assert!(Condition::Or(vec![
            Condition::eq_str("owner", "a"),
            Condition::Absent("x")
        ])
        .holds(Some(&item)));
        assert!(Condition::And(vec![]).holds(None));
    }
}
