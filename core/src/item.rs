//! A DynamoDB-shaped item, defined in the core so that no SDK type crosses into it.

use alloc::borrow::Cow;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;

pub use crate::text::Text;

/// One attribute value, as DynamoDB types them.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum AttributeValue {
    /// `S`: a string.
    S(Text),
    /// `N`: a number, kept as DynamoDB's decimal string.
    N(Text),
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
        let mut digits = [0u8; 20];
        Self::N(Text::new(crate::decimal::u64_digits(n, &mut digits)))
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

/// `a.cmp(b)`, byte by byte (attribute names are short and mostly differ early); the same order
/// as `str`'s, which the tests check.
fn compare_names(a: &str, b: &str) -> core::cmp::Ordering {
    for (x, y) in a.bytes().zip(b.bytes()) {
        if x != y {
            return x.cmp(&y);
        }
    }
    a.len().cmp(&b.len())
}

/// An attribute's name. The names the lease table schema defines are `&'static str`s, so a row
/// built or decoded by the core (or by a backend that recognises them, see [`attribute_name`])
/// copies and frees no names: cloning a row is a copy per value only.
pub type AttributeName = Cow<'static, str>;

/// An item: attribute names to values, in name order, with the map operations the codecs and
/// the reference write semantics use.
///
/// A sorted vector rather than a tree: a lease row has about a dozen attributes, so a lookup is
/// a binary search in one block of memory. The vector is shared between copies and copied on
/// the first change (`Arc::make_mut`): a copy handed on unchanged (a row in a scan page, a
/// write's returned row) is a reference count, not an allocation per owned value. An empty item
/// (a decoded lease's unknown attributes, nearly always) allocates nothing.
#[derive(Clone, Default)]
pub struct Item(Option<Arc<Vec<(AttributeName, AttributeValue)>>>);

impl PartialEq for Item {
    fn eq(&self, other: &Self) -> bool {
        self.attributes() == other.attributes()
    }
}

impl Item {
    /// An empty item.
    pub fn new() -> Self {
        Self(None)
    }

    fn attributes(&self) -> &[(AttributeName, AttributeValue)] {
        self.0.as_deref().map_or(&[], Vec::as_slice)
    }

    fn attributes_mut(&mut self) -> &mut Vec<(AttributeName, AttributeValue)> {
        Arc::make_mut(self.0.get_or_insert_with(Arc::default))
    }

    fn position(&self, name: &str) -> Result<usize, usize> {
        let attributes = self.attributes();
        // The schema's names are `&'static str`s, in the items the core builds and decodes and
        // in the names it looks up: the very same string is found without comparing bytes. Any
        // other name is found by the search, which compares as `str` does.
        let same =
            |k: &AttributeName| core::ptr::eq(k.as_ptr(), name.as_ptr()) && k.len() == name.len();
        if let Some(i) = attributes.iter().position(|(k, _)| same(k)) {
            return Ok(i);
        }
        attributes.binary_search_by(|(k, _)| compare_names(k, name))
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&AttributeValue> {
        self.position(name).ok().map(|i| &self.attributes()[i].1)
    }

    /// The value of `name`, to change in place.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut AttributeValue> {
        let i = self.position(name).ok()?;
        self.attributes_mut().get_mut(i).map(|(_, v)| v)
    }

    /// Whether `name` is set.
    pub fn contains_key(&self, name: &str) -> bool {
        self.position(name).is_ok()
    }

    /// Sets `name`, returning the value it replaces.
    pub fn insert(&mut self, name: AttributeName, value: AttributeValue) -> Option<AttributeValue> {
        match self.position(&name) {
            Ok(i) => {
                let slot = &mut self.attributes_mut()[i].1;
                Some(core::mem::replace(slot, value))
            }
            Err(i) => {
                self.attributes_mut().insert(i, (name, value));
                None
            }
        }
    }

    /// Removes `name`, returning its value.
    pub fn remove(&mut self, name: &str) -> Option<AttributeValue> {
        let i = self.position(name).ok()?;
        Some(self.attributes_mut().remove(i).1)
    }

    /// The attributes in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&AttributeName, &AttributeValue)> {
        self.into_iter()
    }

    /// The names in order.
    pub fn keys(&self) -> impl Iterator<Item = &AttributeName> {
        self.attributes().iter().map(|(k, _)| k)
    }

    /// The number of attributes.
    pub fn len(&self) -> usize {
        self.attributes().len()
    }

    /// Whether the item has no attributes.
    pub fn is_empty(&self) -> bool {
        self.attributes().is_empty()
    }
}

impl fmt::Debug for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: Into<AttributeName>> FromIterator<(K, AttributeValue)> for Item {
    /// As a map collects: a later value for a name replaces an earlier one.
    fn from_iter<I: IntoIterator<Item = (K, AttributeValue)>>(iter: I) -> Self {
        let mut item = Self::new();
        item.extend(iter);
        item
    }
}

impl<K: Into<AttributeName>> Extend<(K, AttributeValue)> for Item {
    fn extend<I: IntoIterator<Item = (K, AttributeValue)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k.into(), v);
        }
    }
}

impl<K: Into<AttributeName>, const N: usize> From<[(K, AttributeValue); N]> for Item {
    fn from(pairs: [(K, AttributeValue); N]) -> Self {
        pairs.into_iter().collect()
    }
}

impl IntoIterator for Item {
    type Item = (AttributeName, AttributeValue);
    type IntoIter = alloc::vec::IntoIter<(AttributeName, AttributeValue)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0
            .map(Arc::unwrap_or_clone)
            .unwrap_or_default()
            .into_iter()
    }
}

impl<'a> IntoIterator for &'a Item {
    type Item = (&'a AttributeName, &'a AttributeValue);
    type IntoIter = core::iter::Map<
        core::slice::Iter<'a, (AttributeName, AttributeValue)>,
        fn(&'a (AttributeName, AttributeValue)) -> (&'a AttributeName, &'a AttributeValue),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.attributes().iter().map(|(k, v)| (k, v))
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for Item {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for Item {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = <BTreeMap<String, AttributeValue> as serde::Deserialize>::deserialize(d)?;
        Ok(map
            .into_iter()
            .map(|(k, v)| (attribute_name(&k), v))
            .collect())
    }
}

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
    fn names_compare_as_strings_do() {
        let names = [
            "",
            "a",
            "ab",
            "b",
            "checkpoint",
            "checkpointOwner",
            "leaseKey",
            "lease",
            "é",
            "z",
        ];
        for a in names {
            for b in names {
                assert_eq!(compare_names(a, b), a.cmp(b), "{a} {b}");
            }
        }
    }

    #[test]
    fn schema_names_are_shared_and_others_owned() {
        assert!(matches!(
            attribute_name("leaseKey"),
            Cow::Borrowed("leaseKey")
        ));
        assert!(matches!(
            attribute_name("assignedLeases"),
            Cow::Borrowed("assignedLeases")
        ));
        let other = attribute_name("someJavaFutureAttribute");
        assert!(matches!(other, Cow::Owned(_)));
        assert_eq!(other, "someJavaFutureAttribute");
    }

    #[test]
    fn an_item_behaves_as_a_map_in_name_order() {
        let n = AttributeValue::number;
        let mut item: Item = [("b", n(2)), ("a", n(1)), ("b", n(3))].into();
        assert_eq!(item.len(), 2, "a later value replaces an earlier one");
        assert_eq!(item.get("b"), Some(&n(3)));
        assert_eq!(item.insert("c".into(), n(4)), None);
        assert_eq!(item.insert("a".into(), n(5)), Some(n(1)));
        let names: Vec<&str> = item.keys().map(|k| k.as_ref()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(item.remove("b"), Some(n(3)));
        assert_eq!(item.remove("b"), None);
        assert!(!item.contains_key("b"));
        if let Some(v) = item.get_mut("c") {
            *v = n(6);
        }
        assert_eq!(alloc::format!("{item:?}"), r#"{"a": N("5"), "c": N("6")}"#);
        let again: Item = item.clone().into_iter().collect();
        assert_eq!(again, item);
    }

    #[test]
    fn a_copy_changes_alone() {
        let n = AttributeValue::number;
        let original: Item = [("a", n(1)), ("b", n(2))].into();
        let mut copy = original.clone();
        copy.insert("a".into(), n(3));
        copy.remove("b");
        if let Some(v) = copy.get_mut("a") {
            *v = n(4);
        }
        assert_eq!(original, [("a", n(1)), ("b", n(2))].into());
        assert_eq!(copy, [("a", n(4))].into());
        let names: Vec<AttributeName> = original.clone().into_iter().map(|(k, _)| k).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(original.len(), 2);
    }
}
