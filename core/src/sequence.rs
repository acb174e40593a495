//! Kinesis sequence numbers and checkpoint positions.
//!
//! A sequence number is a decimal string of up to 129 digits; it is compared as a number of
//! arbitrary size (length after leading zeros, then digits), never truncated into an integer.
//! A [`Position`] is what a checkpoint holds: a sentinel or a sequence number with the KPL
//! sub-sequence number of a user record inside an aggregated record.

use alloc::sync::Arc;
use core::cmp::Ordering;
use core::fmt;

/// The longest sequence number Kinesis documents (`[0-9]+`, at most 129 characters).
pub const MAX_SEQUENCE_DIGITS: usize = 129;

/// Why a string is not a sequence number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SequenceNumberError {
    /// The string is empty.
    Empty,
    /// A character is not an ASCII digit.
    NotDecimal,
    /// More than [`MAX_SEQUENCE_DIGITS`] digits.
    TooLong(usize),
}

impl fmt::Display for SequenceNumberError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty sequence number"),
            Self::NotDecimal => f.write_str("sequence number is not a decimal string"),
            Self::TooLong(n) => write!(
                f,
                "sequence number has {n} digits, more than {MAX_SEQUENCE_DIGITS}"
            ),
        }
    }
}

impl core::error::Error for SequenceNumberError {}

/// A validated Kinesis sequence number, kept as the decimal string Kinesis gave.
///
/// Cloning is cheap (shared). Equality and order are numeric: `"007"` equals `"7"`.
#[derive(Clone)]
pub struct SequenceNumber(Arc<str>);

impl SequenceNumber {
    /// Parses a decimal sequence number.
    pub fn parse(s: &str) -> Result<Self, SequenceNumberError> {
        Self::check(s)?;
        Ok(Self(Arc::from(s)))
    }

    /// A string [`SequenceNumber::check`] accepted.
    pub(crate) fn checked(s: &str) -> Self {
        Self(Arc::from(s))
    }

    /// Whether `s` is a sequence number, without keeping it.
    pub(crate) fn check(s: &str) -> Result<(), SequenceNumberError> {
        if s.is_empty() {
            return Err(SequenceNumberError::Empty);
        }
        if !crate::decimal::all_digits(s.as_bytes()) {
            return Err(SequenceNumberError::NotDecimal);
        }
        if s.len() > MAX_SEQUENCE_DIGITS {
            return Err(SequenceNumberError::TooLong(s.len()));
        }
        Ok(())
    }

    /// The sequence number as Kinesis wrote it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn significant(&self) -> &str {
        let t = self.0.trim_start_matches('0');
        if t.is_empty() {
            "0"
        } else {
            t
        }
    }
}

impl PartialEq for SequenceNumber {
    fn eq(&self, other: &Self) -> bool {
        self.significant() == other.significant()
    }
}
impl Eq for SequenceNumber {}

impl Ord for SequenceNumber {
    fn cmp(&self, other: &Self) -> Ordering {
        let (a, b) = (self.significant(), other.significant());
        a.len().cmp(&b.len()).then_with(|| a.cmp(b))
    }
}
impl PartialOrd for SequenceNumber {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Debug for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Display for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for SequenceNumber {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}
#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for SequenceNumber {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <alloc::string::String as serde::Deserialize>::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The position of one user record: its sequence number and, for a record that came out of a
/// KPL aggregated record, its index inside it (0 otherwise).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct RecordPosition {
    /// The Kinesis sequence number.
    pub sequence: SequenceNumber,
    /// The sub-sequence number inside an aggregated record.
    pub sub_sequence: u64,
}

impl RecordPosition {
    /// A plain (non-aggregated) record's position.
    pub fn new(sequence: SequenceNumber) -> Self {
        Self {
            sequence,
            sub_sequence: 0,
        }
    }
}

/// What a checkpoint holds: a sentinel or a record position.
///
/// Ordered as the Java KCL orders them: `AT_TIMESTAMP < TRIM_HORIZON < LATEST < any record <
/// SHARD_END`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Position {
    /// Start at a timestamp given in the configuration (sentinel `AT_TIMESTAMP`).
    AtTimestamp,
    /// Start at the oldest record (sentinel `TRIM_HORIZON`).
    TrimHorizon,
    /// Start after the newest record (sentinel `LATEST`).
    Latest,
    /// Everything up to and including this record is processed.
    Record(RecordPosition),
    /// The shard is closed and fully processed (sentinel `SHARD_END`).
    ShardEnd,
}

impl Position {
    /// The sentinel strings of the Java KCL lease table.
    pub const TRIM_HORIZON: &'static str = "TRIM_HORIZON";
    /// See [`Position::TRIM_HORIZON`].
    pub const LATEST: &'static str = "LATEST";
    /// See [`Position::TRIM_HORIZON`].
    pub const AT_TIMESTAMP: &'static str = "AT_TIMESTAMP";
    /// See [`Position::TRIM_HORIZON`].
    pub const SHARD_END: &'static str = "SHARD_END";

    /// A record position.
    pub fn record(sequence: SequenceNumber, sub_sequence: u64) -> Self {
        Self::Record(RecordPosition {
            sequence,
            sub_sequence,
        })
    }

    /// Parses the `checkpoint` attribute and its sub-sequence number.
    pub fn parse(checkpoint: &str, sub_sequence: u64) -> Result<Self, SequenceNumberError> {
        Ok(match Self::check(checkpoint)? {
            Some(sentinel) => sentinel,
            None => Self::record(SequenceNumber::checked(checkpoint), sub_sequence),
        })
    }

    /// Checks the `checkpoint` attribute without building a position: the sentinel it names,
    /// or `None` for a sequence number.
    pub(crate) fn check(checkpoint: &str) -> Result<Option<Self>, SequenceNumberError> {
        Ok(Some(match checkpoint {
            Self::TRIM_HORIZON => Self::TrimHorizon,
            Self::LATEST => Self::Latest,
            Self::AT_TIMESTAMP => Self::AtTimestamp,
            Self::SHARD_END => Self::ShardEnd,
            s => return SequenceNumber::check(s).map(|()| None),
        }))
    }

    /// The `checkpoint` attribute's string and the sub-sequence number to store beside it.
    /// A record's string is the sequence number's own, shared.
    pub fn to_attribute(&self) -> (crate::item::Text, u64) {
        use crate::item::Text;
        match self {
            Self::TrimHorizon => (Text::new_static(Self::TRIM_HORIZON), 0),
            Self::Latest => (Text::new_static(Self::LATEST), 0),
            Self::AtTimestamp => (Text::new_static(Self::AT_TIMESTAMP), 0),
            Self::ShardEnd => (Text::new_static(Self::SHARD_END), 0),
            Self::Record(r) => (Text::from(r.sequence.0.clone()), r.sub_sequence),
        }
    }

    /// Whether this is one of the initial-position sentinels (nothing processed yet).
    pub fn is_initial(&self) -> bool {
        matches!(self, Self::TrimHorizon | Self::Latest | Self::AtTimestamp)
    }

    fn rank(&self) -> u8 {
        match self {
            Self::AtTimestamp => 0,
            Self::TrimHorizon => 1,
            Self::Latest => 2,
            Self::Record(_) => 3,
            Self::ShardEnd => 4,
        }
    }
}

impl Ord for Position {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Self::Record(a), Self::Record(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}
impl PartialOrd for Position {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use proptest::prelude::*;

    fn seq(s: &str) -> SequenceNumber {
        SequenceNumber::parse(s).expect("valid")
    }

    #[test]
    fn compares_numerically_beyond_u128() {
        let a = seq("49590338271490256608559692538361571095921575989136588898");
        let b = seq("49590338271490256608559692538361571095921575989136588899");
        assert!(a < b);
        assert!(seq("9") < seq("10"));
        assert_eq!(seq("0007"), seq("7"));
        assert_eq!(seq("0"), seq("000"));
        let long = "9".repeat(129);
        assert!(seq(&long) > seq(&"9".repeat(128)));
    }

    #[test]
    fn rejects_bad_strings() {
        assert_eq!(SequenceNumber::parse(""), Err(SequenceNumberError::Empty));
        assert_eq!(
            SequenceNumber::parse("12a"),
            Err(SequenceNumberError::NotDecimal)
        );
        assert_eq!(
            SequenceNumber::parse("-1"),
            Err(SequenceNumberError::NotDecimal)
        );
        assert_eq!(
            SequenceNumber::parse(&"1".repeat(130)),
            Err(SequenceNumberError::TooLong(130))
        );
    }

    #[test]
    fn sentinels_order_like_java() {
        let r = Position::record(seq("1"), 0);
        let order = [
            Position::AtTimestamp,
            Position::TrimHorizon,
            Position::Latest,
            r,
            Position::ShardEnd,
        ];
        for w in order.windows(2) {
            assert!(w[0] < w[1], "{:?} < {:?}", w[0], w[1]);
        }
        assert!(Position::record(seq("5"), 1) > Position::record(seq("5"), 0));
        assert!(Position::record(seq("5"), 9) < Position::record(seq("6"), 0));
    }

    #[test]
    fn attribute_round_trip() {
        for p in [
            Position::TrimHorizon,
            Position::Latest,
            Position::AtTimestamp,
            Position::ShardEnd,
            Position::record(seq("42"), 3),
        ] {
            let (s, sub) = p.to_attribute();
            assert_eq!(Position::parse(&s, sub), Ok(p));
        }
    }

    proptest! {
        #[test]
        fn order_matches_big_integer_order(a in "[0-9]{1,60}", b in "[0-9]{1,60}") {
            let (x, y) = (seq(&a), seq(&b));
            // Compare against a reference: pad both to the same width and compare as text.
            let w = a.len().max(b.len());
            let pa = format!("{a:0>w$}");
            let pb = format!("{b:0>w$}");
            prop_assert_eq!(x.cmp(&y), pa.cmp(&pb));
        }
    }
}
