//! [`Text`]: the core's immutable string, for attribute values, keys, ids and shard iterators.

use alloc::string::String;
use core::borrow::Borrow;
use core::fmt;
use core::ops::Deref;

/// An immutable string that is cheap to clone: up to 23 bytes are held in line, longer strings
/// are shared. It compares, orders and hashes as the `str` it holds, so maps keyed by `Text`
/// (or by types that wrap it) can be searched with a `&str`.
///
/// The representation is [`smol_str`]'s, kept private: a change of that crate is not a change
/// of this one's API.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Text(smol_str::SmolStr);

impl Text {
    /// A copy of `s`.
    pub fn new(s: &str) -> Self {
        Self(smol_str::SmolStr::new(s))
    }

    /// `s`, without copying it.
    pub fn new_static(s: &'static str) -> Self {
        Self(smol_str::SmolStr::new_static(s))
    }

    /// The string.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        self.0.as_str()
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        self.0.as_str()
    }
}

impl Borrow<str> for Text {
    fn borrow(&self) -> &str {
        self.0.as_str()
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

impl From<String> for Text {
    fn from(s: String) -> Self {
        Self(smol_str::SmolStr::from(s))
    }
}

impl From<&String> for Text {
    fn from(s: &String) -> Self {
        Self::new(s)
    }
}

impl From<alloc::sync::Arc<str>> for Text {
    /// Shares the string (or copies it, when it fits in line).
    fn from(s: alloc::sync::Arc<str>) -> Self {
        Self(smol_str::SmolStr::from(s))
    }
}

impl From<Text> for String {
    fn from(t: Text) -> Self {
        String::from(t.as_str())
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for Text {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self::from(<String as serde::Deserialize>::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeSet;

    #[test]
    fn a_text_behaves_as_its_string() {
        let short = Text::new("shardId-000000000001");
        let long = Text::from(String::from("a string longer than twenty-three bytes"));
        assert_eq!(short, "shardId-000000000001");
        assert_eq!(&*long, "a string longer than twenty-three bytes");
        assert_eq!(long.clone(), long);
        assert_eq!(
            alloc::format!("{short:?} {long}"),
            "\"shardId-000000000001\" a string longer than twenty-three bytes"
        );
        assert!(Text::new("a") < Text::new("b") && Text::new("ab") > Text::new("a"));
        let set: BTreeSet<Text> = [Text::new("x"), Text::new("y")].into();
        assert!(set.contains("y"), "found by &str");
        assert_eq!(String::from(short), "shardId-000000000001");
        assert_eq!(Text::default().as_str(), "");
    }
}
