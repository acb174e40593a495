//! DynamoDB expressions for the core's conditional writes.
//!
//! Every attribute name goes through an `ExpressionAttributeNames` placeholder (`#a0`, ...) and
//! every value through an `ExpressionAttributeValues` placeholder (`:v0`, ...), so no lease-table
//! attribute can collide with a DynamoDB reserved word.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue as Sdk;
use kcl_core::lease::attr;
use kcl_core::write::{Condition, Update};
use kcl_core::AttributeValue;

use crate::item::to_sdk;

/// The placeholders of one request's expressions.
#[derive(Debug, Default)]
pub(crate) struct Expressions {
    names: HashMap<String, String>,
    values: HashMap<String, Sdk>,
}

impl Expressions {
    fn name(&mut self, name: &str) -> String {
        if let Some((placeholder, _)) = self.names.iter().find(|(_, n)| n.as_str() == name) {
            return placeholder.clone();
        }
        let placeholder = format!("#a{}", self.names.len());
        self.names.insert(placeholder.clone(), name.to_string());
        placeholder
    }

    fn value(&mut self, value: Sdk) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), value);
        placeholder
    }

    /// `ExpressionAttributeNames`, `None` when empty (DynamoDB rejects an empty map).
    pub(crate) fn names(&self) -> Option<HashMap<String, String>> {
        (!self.names.is_empty()).then(|| self.names.clone())
    }

    /// `ExpressionAttributeValues`, `None` when empty.
    pub(crate) fn values(&self) -> Option<HashMap<String, Sdk>> {
        (!self.values.is_empty()).then(|| self.values.clone())
    }

    /// The `ConditionExpression`, `None` for a condition that always holds.
    pub(crate) fn condition(&mut self, condition: &Condition) -> Option<String> {
        // Decided before rendering: DynamoDB rejects placeholders an expression does not use.
        if always_holds(condition) {
            return None;
        }
        match condition {
            Condition::Always => None,
            Condition::Exists => Some(format!("attribute_exists({})", self.name(attr::LEASE_KEY))),
            Condition::NotExists => Some(format!(
                "attribute_not_exists({})",
                self.name(attr::LEASE_KEY)
            )),
            Condition::Equals(name, value) => {
                let n = self.name(name);
                let v = self.value(to_sdk(value));
                Some(format!("{n} = {v}"))
            }
            Condition::Absent(name) => Some(format!("attribute_not_exists({})", self.name(name))),
            Condition::And(all) => {
                let parts: Vec<String> = all.iter().filter_map(|c| self.condition(c)).collect();
                match parts.len() {
                    0 => None,
                    1 => parts.into_iter().next(),
                    _ => Some(format!("({})", parts.join(") AND ("))),
                }
            }
            Condition::Or(any) => {
                if any.is_empty() {
                    // No alternative holds: a condition that is always false.
                    let key = self.name(attr::LEASE_KEY);
                    return Some(format!(
                        "attribute_exists({key}) AND attribute_not_exists({key})"
                    ));
                }
                let parts: Vec<String> = any.iter().filter_map(|c| self.condition(c)).collect();
                Some(format!("({})", parts.join(") OR (")))
            }
        }
    }

    /// The `UpdateExpression`, `None` when there is nothing to change (the item is still created
    /// with its key when absent, as [`kcl_core::write::apply`] does).
    pub(crate) fn update(&mut self, updates: &[Update]) -> Option<String> {
        let (mut set, mut remove, mut add, mut delete) = (vec![], vec![], vec![], vec![]);
        for update in updates {
            match update {
                Update::Set(name, value) => {
                    let n = self.name(name);
                    set.push(format!("{n} = {}", self.value(to_sdk(value))));
                }
                Update::Remove(name) => remove.push(self.name(name)),
                Update::Increment(name, delta) => {
                    let n = self.name(name);
                    let v = self.value(to_sdk(&AttributeValue::number(*delta)));
                    add.push(format!("{n} {v}"));
                }
                // DynamoDB rejects empty sets; adding or deleting nothing changes nothing.
                Update::AddToSet(_, values) | Update::DeleteFromSet(_, values)
                    if values.is_empty() => {}
                Update::AddToSet(name, values) => {
                    let n = self.name(name);
                    let v = self.value(Sdk::Ss(values.clone()));
                    add.push(format!("{n} {v}"));
                }
                Update::DeleteFromSet(name, values) => {
                    let n = self.name(name);
                    let v = self.value(Sdk::Ss(values.clone()));
                    delete.push(format!("{n} {v}"));
                }
            }
        }
        let clauses: Vec<String> = [
            ("SET", set),
            ("REMOVE", remove),
            ("ADD", add),
            ("DELETE", delete),
        ]
        .into_iter()
        .filter(|(_, parts)| !parts.is_empty())
        .map(|(verb, parts)| format!("{verb} {}", parts.join(", ")))
        .collect();
        (!clauses.is_empty()).then(|| clauses.join(" "))
    }
}

/// Whether a condition holds whatever the item.
fn always_holds(condition: &Condition) -> bool {
    match condition {
        Condition::Always => true,
        Condition::And(all) => all.iter().all(always_holds),
        Condition::Or(any) => any.iter().any(always_holds),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_use_placeholders_and_share_names() {
        let mut e = Expressions::default();
        let c = Condition::And(vec![
            Condition::Exists,
            Condition::eq_num(attr::LEASE_COUNTER, 4),
            Condition::Or(vec![
                Condition::Absent(attr::LEASE_OWNER),
                Condition::eq_str(attr::LEASE_OWNER, "w1"),
            ]),
        ]);
        assert_eq!(
            e.condition(&c).as_deref(),
            Some("(attribute_exists(#a0)) AND (#a1 = :v0) AND ((attribute_not_exists(#a2)) OR (#a2 = :v1))")
        );
        let names = e.names().expect("names");
        assert_eq!(names["#a2"], attr::LEASE_OWNER);
        assert_eq!(e.values().expect("values")[":v0"], Sdk::N("4".into()));
    }

    #[test]
    fn always_and_trivial_conditions_need_no_expression() {
        let mut e = Expressions::default();
        assert_eq!(e.condition(&Condition::Always), None);
        assert_eq!(e.condition(&Condition::And(vec![])), None);
        assert_eq!(
            e.condition(&Condition::Or(vec![Condition::Exists, Condition::Always])),
            None
        );
        assert!(e.condition(&Condition::Or(vec![])).is_some());
        // Nothing is registered for parts that vanish.
        let mut e = Expressions::default();
        let c = Condition::Or(vec![
            Condition::eq_num(attr::LEASE_COUNTER, 1),
            Condition::Always,
        ]);
        assert_eq!(e.condition(&c), None);
        assert_eq!((e.names(), e.values()), (None, None));
    }

    #[test]
    fn updates_group_by_clause() {
        let mut e = Expressions::default();
        let u = e.update(&[
            Update::Set(attr::LEASE_OWNER, AttributeValue::S("w".into())),
            Update::Increment(attr::LEASE_COUNTER, 1),
            Update::Remove(attr::PENDING_CHECKPOINT),
            Update::AddToSet(attr::CHILD_SHARD_IDS, vec!["c".into()]),
            Update::DeleteFromSet(attr::PARENT_SHARD_IDS, vec![]),
        ]);
        assert_eq!(
            u.as_deref(),
            Some("SET #a0 = :v0 REMOVE #a2 ADD #a1 :v1, #a3 :v2")
        );
        assert_eq!(Expressions::default().update(&[]), None);
    }
}
