//! [`RowError`]: what is wrong with a row that does not decode.

use core::fmt;

use crate::item::AttributeValue;
use crate::sequence::SequenceNumberError;

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
    pub(super) fn missing(attribute: &'static str) -> Self {
        Self {
            attribute,
            kind: RowErrorKind::Missing,
        }
    }
    pub(super) fn invalid(attribute: &'static str, why: &'static str) -> Self {
        Self {
            attribute,
            kind: RowErrorKind::Invalid(why),
        }
    }
    pub(super) fn wrong_type(
        attribute: &'static str,
        expected: &'static str,
        found: &AttributeValue,
    ) -> Self {
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

impl core::error::Error for RowError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match &self.kind {
            RowErrorKind::BadSequence(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_checkpoint_names_the_attribute_and_keeps_the_parse_error_as_source() {
        let e = RowError {
            attribute: "checkpoint",
            kind: RowErrorKind::BadSequence(SequenceNumberError::NotDecimal),
        };
        assert_eq!(
            alloc::string::ToString::to_string(&e),
            "attribute checkpoint: sequence number is not a decimal string"
        );
        assert!(core::error::Error::source(&e).is_some());
        assert!(core::error::Error::source(&RowError::missing("leaseKey")).is_none());
    }
}
