//! The two identities of the lease table: [`LeaseKey`] (a shard) and [`WorkerId`].

use alloc::string::String;
use core::fmt;

use crate::text::Text;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        // `Text` orders and hashes as its string does, so maps of keys can be searched with a
        // `&str` (see the `Borrow` impl).
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
