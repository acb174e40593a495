//! De-aggregation of KPL aggregated records.
//!
//! The Kinesis Producer Library packs many user records into one Kinesis record: the magic
//! bytes `F3 89 9A C2`, a protobuf `AggregatedRecord`, and the MD5 digest of the protobuf bytes.
//! Each user record gets the Kinesis record's sequence number and its index as sub-sequence
//! number, so a checkpoint can point inside an aggregate. A record that only looks aggregated
//! (bad digest, bad protobuf, an index out of its table) is delivered as it is, like the Java
//! KCL does: nothing is lost, and [`Deaggregated::malformed`] says so.

use md5::{Digest, Md5};
use prost::Message;

/// The four bytes every KPL aggregated record starts with.
pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
const DIGEST_LEN: usize = 16;

/// The KPL's `AggregatedRecord` message.
#[derive(Clone, PartialEq, Message)]
pub struct AggregatedRecord {
    /// Partition keys, referred to by index.
    #[prost(string, repeated, tag = "1")]
    pub partition_key_table: Vec<String>,
    /// Explicit hash keys, referred to by index.
    #[prost(string, repeated, tag = "2")]
    pub explicit_hash_key_table: Vec<String>,
    /// The user records.
    #[prost(message, repeated, tag = "3")]
    pub records: Vec<UserRecord>,
}

/// The KPL's `Record` message: one user record inside an aggregate.
#[derive(Clone, PartialEq, Message)]
pub struct UserRecord {
    /// Index into `partition_key_table`.
    #[prost(uint64, required, tag = "1")]
    pub partition_key_index: u64,
    /// Index into `explicit_hash_key_table`.
    #[prost(uint64, optional, tag = "2")]
    pub explicit_hash_key_index: Option<u64>,
    /// The payload.
    #[prost(bytes = "vec", required, tag = "3")]
    pub data: Vec<u8>,
    /// Tags (unused by the KCL, kept for completeness of the format).
    #[prost(message, repeated, tag = "4")]
    pub tags: Vec<Tag>,
}

/// The KPL's `Tag` message.
#[derive(Clone, PartialEq, Message)]
pub struct Tag {
    /// Key.
    #[prost(string, required, tag = "1")]
    pub key: String,
    /// Value.
    #[prost(string, optional, tag = "2")]
    pub value: Option<String>,
}

/// One user record out of a Kinesis record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRecordParts {
    /// Partition key.
    pub partition_key: String,
    /// Explicit hash key, when the producer set one.
    pub explicit_hash_key: Option<String>,
    /// Payload.
    pub data: Vec<u8>,
}

/// The outcome of [`deaggregate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Deaggregated {
    /// Not an aggregate: deliver the Kinesis record as it is.
    Plain,
    /// The user records, in order (sub-sequence number = index).
    Records(Vec<UserRecordParts>),
    /// Starts with the magic bytes but is not a valid aggregate: deliver it as it is.
    Malformed(&'static str),
}

impl Deaggregated {
    /// Why a record that looked aggregated was delivered as it is.
    pub fn malformed(&self) -> Option<&'static str> {
        match self {
            Self::Malformed(why) => Some(why),
            _ => None,
        }
    }
}

impl UserRecordParts {
    /// The hash key Kinesis would route this user record by: its explicit hash key (a decimal
    /// 128-bit number), or else the MD5 digest of its partition key read as a big-endian number.
    /// `None` when the explicit hash key is not such a number.
    pub fn effective_hash_key(&self) -> Option<u128> {
        match &self.explicit_hash_key {
            Some(key) => key.trim().parse().ok(),
            None => Some(u128::from_be_bytes(
                Md5::digest(self.partition_key.as_bytes()).into(),
            )),
        }
    }
}

/// Splits a Kinesis record's payload into its user records.
pub fn deaggregate(data: &[u8]) -> Deaggregated {
    let Some(rest) = data.strip_prefix(&MAGIC) else {
        return Deaggregated::Plain;
    };
    if rest.len() < DIGEST_LEN {
        return Deaggregated::Malformed("shorter than its digest");
    }
    let (message, digest) = rest.split_at(rest.len() - DIGEST_LEN);
    if Md5::digest(message).as_slice() != digest {
        return Deaggregated::Malformed("MD5 digest does not match");
    }
    let Ok(aggregate) = AggregatedRecord::decode(message) else {
        return Deaggregated::Malformed("protobuf does not decode");
    };
    let mut out = Vec::with_capacity(aggregate.records.len());
    for record in aggregate.records {
        let Some(partition_key) = usize::try_from(record.partition_key_index)
            .ok()
            .and_then(|i| aggregate.partition_key_table.get(i))
        else {
            return Deaggregated::Malformed("partition key index out of range");
        };
        let explicit_hash_key = match record.explicit_hash_key_index {
            None => None,
            Some(i) => match usize::try_from(i)
                .ok()
                .and_then(|i| aggregate.explicit_hash_key_table.get(i))
            {
                Some(key) => Some(key.clone()),
                None => return Deaggregated::Malformed("explicit hash key index out of range"),
            },
        };
        out.push(UserRecordParts {
            partition_key: partition_key.clone(),
            explicit_hash_key,
            data: record.data,
        });
    }
    Deaggregated::Records(out)
}

/// Packs user records the way the KPL does (for tests and for producers written in Rust).
pub fn aggregate(records: &[UserRecordParts]) -> Vec<u8> {
    let mut keys: Vec<String> = Vec::new();
    let mut hash_keys: Vec<String> = Vec::new();
    let index_of = |table: &mut Vec<String>, key: &str| -> u64 {
        let i = table.iter().position(|k| k == key).unwrap_or_else(|| {
            table.push(key.to_string());
            table.len() - 1
        });
        i as u64
    };
    let mut message = AggregatedRecord::default();
    for r in records {
        let partition_key_index = index_of(&mut keys, &r.partition_key);
        let explicit_hash_key_index = r
            .explicit_hash_key
            .as_deref()
            .map(|k| index_of(&mut hash_keys, k));
        message.records.push(UserRecord {
            partition_key_index,
            explicit_hash_key_index,
            data: r.data.clone(),
            tags: Vec::new(),
        });
    }
    message.partition_key_table = keys;
    message.explicit_hash_key_table = hash_keys;
    let body = message.encode_to_vec();
    let mut out = Vec::with_capacity(MAGIC.len() + body.len() + DIGEST_LEN);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&body);
    out.extend_from_slice(&Md5::digest(&body));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn user(key: &str, hash: Option<&str>, data: &[u8]) -> UserRecordParts {
        UserRecordParts {
            partition_key: key.into(),
            explicit_hash_key: hash.map(Into::into),
            data: data.to_vec(),
        }
    }

    #[test]
    fn plain_records_are_left_alone() {
        assert_eq!(deaggregate(b"hello"), Deaggregated::Plain);
        assert_eq!(deaggregate(&[]), Deaggregated::Plain);
    }

    #[test]
    fn aggregates_round_trip_with_shared_keys() {
        let records = vec![
            user("a", None, b"1"),
            user("b", Some("170141183460469231731687303715884105728"), b""),
            user("a", None, b"333"),
        ];
        let packed = aggregate(&records);
        assert!(packed.starts_with(&MAGIC));
        assert_eq!(deaggregate(&packed), Deaggregated::Records(records));
    }

    #[test]
    fn corrupt_aggregates_are_delivered_whole() {
        let mut packed = aggregate(&[user("a", None, b"payload")]);
        let last = packed.len() - 1;
        packed[last] ^= 1;
        assert_eq!(
            deaggregate(&packed).malformed(),
            Some("MD5 digest does not match")
        );
        assert_eq!(
            deaggregate(&MAGIC).malformed(),
            Some("shorter than its digest")
        );
        // A valid digest over bytes that are not the protobuf.
        let mut bogus = MAGIC.to_vec();
        bogus.extend_from_slice(&[0xFF; 3]);
        bogus.extend_from_slice(&Md5::digest([0xFF; 3]));
        assert_eq!(
            deaggregate(&bogus).malformed(),
            Some("protobuf does not decode")
        );
        // An index past the key table.
        let body = AggregatedRecord {
            partition_key_table: vec![],
            explicit_hash_key_table: vec![],
            records: vec![UserRecord {
                partition_key_index: 3,
                explicit_hash_key_index: None,
                data: vec![],
                tags: vec![],
            }],
        }
        .encode_to_vec();
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&body);
        out.extend_from_slice(&Md5::digest(&body));
        assert_eq!(
            deaggregate(&out).malformed(),
            Some("partition key index out of range")
        );
    }

    /// Kinesis's documented routing: MD5 of the partition key as an unsigned 128-bit integer.
    /// The digest of "a" is 0cc175b9c0f1b6a831c399e269772661.
    #[test]
    fn the_effective_hash_key_is_the_explicit_one_or_the_md5_of_the_partition_key() {
        assert_eq!(
            user("a", None, b"").effective_hash_key(),
            Some(0x0cc1_75b9_c0f1_b6a8_31c3_99e2_6977_2661)
        );
        assert_eq!(
            user("a", Some("170141183460469231731687303715884105728"), b"").effective_hash_key(),
            Some(1 << 127)
        );
        assert_eq!(
            user("a", Some("not a number"), b"").effective_hash_key(),
            None
        );
        assert_eq!(
            user("a", Some("340282366920938463463374607431768211456"), b"").effective_hash_key(),
            None,
            "2^128 is past the hash key space"
        );
    }

    proptest! {
        #[test]
        fn any_user_records_round_trip(
            records in prop::collection::vec(
                ("[a-z]{1,4}", prop::option::of("[0-9]{1,38}"), prop::collection::vec(any::<u8>(), 0..64)),
                1..20,
            )
        ) {
            let records: Vec<UserRecordParts> = records
                .into_iter()
                .map(|(k, h, d)| UserRecordParts { partition_key: k, explicit_hash_key: h, data: d })
                .collect();
            prop_assert_eq!(deaggregate(&aggregate(&records)), Deaggregated::Records(records));
        }

        #[test]
        fn arbitrary_bytes_never_panic(tail in prop::collection::vec(any::<u8>(), 0..256)) {
            let mut data = MAGIC.to_vec();
            data.extend_from_slice(&tail);
            let _ = deaggregate(&data);
        }
    }
}
