//! Conversions between the core's [`Item`] and the SDK's attribute values.
//!
//! The core defines its own item type so that no SDK type crosses into it; these are the only
//! places the two meet.

use std::collections::HashMap;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue as Sdk;
use kcl_core::item::attribute_name;
use kcl_core::{AttributeValue, Item};

/// The SDK value of a core value.
pub(crate) fn to_sdk(value: &AttributeValue) -> Sdk {
    match value {
        AttributeValue::S(s) => Sdk::S(s.to_string()),
        AttributeValue::N(n) => Sdk::N(n.to_string()),
        AttributeValue::B(b) => Sdk::B(Blob::new(b.clone())),
        AttributeValue::Ss(v) => Sdk::Ss(v.clone()),
        AttributeValue::Ns(v) => Sdk::Ns(v.clone()),
        AttributeValue::Bs(v) => Sdk::Bs(v.iter().map(|b| Blob::new(b.clone())).collect()),
        AttributeValue::Bool(b) => Sdk::Bool(*b),
        AttributeValue::Null => Sdk::Null(true),
        AttributeValue::L(v) => Sdk::L(v.iter().map(to_sdk).collect()),
        AttributeValue::M(m) => Sdk::M(m.iter().map(|(k, v)| (k.clone(), to_sdk(v))).collect()),
    }
}

/// The SDK item of a core item.
pub(crate) fn item_to_sdk(item: &Item) -> HashMap<String, Sdk> {
    item.iter()
        .map(|(k, v)| (k.to_string(), to_sdk(v)))
        .collect()
}

/// The core value of an SDK value; `None` for a type this SDK version does not know (such an
/// attribute is left out of the core's view; the core only ever updates the attributes it
/// names, so DynamoDB keeps it).
pub(crate) fn from_sdk(value: &Sdk) -> Option<AttributeValue> {
    Some(match value {
        Sdk::S(s) => AttributeValue::S(s.as_str().into()),
        Sdk::N(n) => AttributeValue::N(n.as_str().into()),
        Sdk::B(b) => AttributeValue::B(b.as_ref().to_vec()),
        Sdk::Ss(v) => AttributeValue::string_set(v.iter().cloned()),
        Sdk::Ns(v) => AttributeValue::Ns(v.clone()),
        Sdk::Bs(v) => AttributeValue::Bs(v.iter().map(|b| b.as_ref().to_vec()).collect()),
        Sdk::Bool(b) => AttributeValue::Bool(*b),
        Sdk::Null(_) => AttributeValue::Null,
        Sdk::L(v) => AttributeValue::L(v.iter().filter_map(from_sdk).collect()),
        Sdk::M(m) => AttributeValue::M(
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), from_sdk(v)?)))
                .collect(),
        ),
        _ => return None,
    })
}

/// The core item of an SDK item.
pub(crate) fn item_from_sdk(item: &HashMap<String, Sdk>) -> Item {
    item.iter()
        .filter_map(|(k, v)| match from_sdk(v) {
            Some(v) => Some((attribute_name(k), v)),
            None => {
                tracing::warn!(attribute = %k, "lease row attribute of a type this SDK does not know; left as it is");
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn every_type_round_trips() {
        let mut map = BTreeMap::new();
        map.insert("n".to_string(), AttributeValue::number(3));
        let values = [
            AttributeValue::S("s".into()),
            AttributeValue::N("12".into()),
            AttributeValue::B(vec![0, 1, 255]),
            AttributeValue::string_set(["b".to_string(), "a".to_string()]),
            AttributeValue::Ns(vec!["1".into(), "2".into()]),
            AttributeValue::Bs(vec![vec![1], vec![2, 3]]),
            AttributeValue::Bool(true),
            AttributeValue::Null,
            AttributeValue::L(vec![AttributeValue::S("x".into()), AttributeValue::Null]),
            AttributeValue::M(map),
        ];
        for v in values {
            assert_eq!(from_sdk(&to_sdk(&v)), Some(v));
        }
    }

    #[test]
    fn string_sets_come_back_sorted() {
        let sdk = Sdk::Ss(vec!["shard-2".into(), "shard-1".into()]);
        assert_eq!(
            from_sdk(&sdk),
            Some(AttributeValue::Ss(vec!["shard-1".into(), "shard-2".into()]))
        );
    }
}
