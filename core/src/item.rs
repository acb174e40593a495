//! A DynamoDB-shaped item, defined in the core so that no SDK type crosses into it.

use alloc::borrow::Cow;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

/// One attribute value, as DynamoDB types them.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum AttributeValue {
    /// `S`: a string.
    S(String),
    /// `N`: a number, kept as DynamoDB's decimal string.
    N(String),
    /// `B`: binary.
    B(Vec<u8>),
    /// `SS`: a string set (kept sorted, without duplicates, by the codec).
    Ss(Vec<String>),
    /// `NS`: a number set.
    Ns(Vec<String>),
    /// `BS`: a binary set.
    Bs(Vec<Vec<u8>>),
    /// `BOOL`.
    Bool(bool),
    /// `NULL`.
    Null,
    /// `L`: a list.
    L(Vec<AttributeValue>),
    /// `M`: a map.
    M(BTreeMap<String, AttributeValue>),
}

impl AttributeValue {
    /// A number attribute from an unsigned integer.
    pub fn number(n: u64) -> Self {
        Self::N(crate::decimal::format_u64(n))
    }

    /// A string set from any strings, sorted and de-duplicated as DynamoDB treats sets.
    pub fn string_set<I: IntoIterator<Item = String>>(items: I) -> Self {
        let mut v: Vec<String> = items.into_iter().collect();
        v.sort_unstable();
        v.dedup();
        Self::Ss(v)
    }

    /// DynamoDB's name for this value's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::S(_) => "S",
            Self::N(_) => "N",
            Self::B(_) => "B",
            Self::Ss(_) => "SS",
            Self::Ns(_) => "NS",
            Self::Bs(_) => "BS",
            Self::Bool(_) => "BOOL",
            Self::Null => "NULL",
            Self::L(_) => "L",
            Self::M(_) => "M",
        }
    }

    /// An approximation of the value's stored size in bytes, as DynamoDB bills it.
    pub fn billed_size(&self) -> usize {
        match self {
            Self::S(s) | Self::N(s) => s.len(),
            Self::B(b) => b.len(),
            Self::Ss(v) | Self::Ns(v) => v.iter().map(String::len).sum(),
            Self::Bs(v) => v.iter().map(Vec::len).sum(),
            Self::Bool(_) | Self::Null => 1,
            Self::L(v) => 3 + v.iter().map(|x| 1 + x.billed_size()).sum::<usize>(),
            Self::M(m) => {
                3 + m
                    .iter()
                    .map(|(k, x)| 1 + k.len() + x.billed_size())
                    .sum::<usize>()
            }
        }
    }
}

/// An attribute's name. The names the lease table schema defines are `&'static str`s, so a row
/// built or decoded by the core (or by a backend that recognises them, see [`attribute_name`])
/// copies and frees no names: cloning a row is a copy per value only.
pub type AttributeName = Cow<'static, str>;

/// An item: attribute name to value, in name order.
pub type Item = BTreeMap<AttributeName, AttributeValue>;

/// The name for an attribute read from outside: the schema's static name when it is one, an
/// owned copy otherwise.
pub fn attribute_name(name: &str) -> AttributeName {
    match crate::lease::schema_name(name) {
        Some(known) => Cow::Borrowed(known),
        None => Cow::Owned(name.into()),
    }
}

/// The billed size of an item in bytes (names plus values).
pub fn item_size(item: &Item) -> usize {
    item.iter().map(|(k, v)| k.len() + v.billed_size()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_shared_and_others_owned() {
        assert!(matches!(attribute_name("leaseKey"), Cow::Borrowed("leaseKey")));
        assert!(matches!(
            attribute_name("assignedLeases"),
            Cow::Borrowed("assignedLeases")
        ));
        let other = attribute_name("someJavaFutureAttribute");
        assert!(matches!(other, Cow::Owned(_)));
        assert_eq!(other, "someJavaFutureAttribute");
    }
}
