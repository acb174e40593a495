//! Any item must decode to a row or a typed error, never a panic; a decoded lease must survive
//! encode/decode unchanged.
#![no_main]

use kcl_core::{AttributeValue, Item, Lease, Row};
use libfuzzer_sys::fuzz_target;

const NAMES: &[&str] = &[
    "leaseKey",
    "leaseOwner",
    "leaseCounter",
    "checkpoint",
    "checkpointSubSequenceNumber",
    "pendingCheckpoint",
    "pendingCheckpointSubSequenceNumber",
    "pendingCheckpointState",
    "ownerSwitchesSinceCheckpoint",
    "parentShardId",
    "childShardIds",
    "startingHashKey",
    "endingHashKey",
    "checkpointOwner",
    "throughputKBps",
    "entityType",
    "x",
];

fn value(kind: u8, text: &str, bytes: &[u8]) -> AttributeValue {
    match kind % 6 {
        0 => AttributeValue::S(text.into()),
        1 => AttributeValue::N(text.into()),
        2 => AttributeValue::B(bytes.to_vec()),
        3 => AttributeValue::Ss(text.split(',').map(String::from).collect()),
        4 => AttributeValue::Bool(bytes.first().is_some_and(|b| b & 1 == 1)),
        _ => AttributeValue::Null,
    }
}

fuzz_target!(|data: &[u8]| {
    let mut item = Item::new();
    for chunk in data.split(|b| *b == 0xff) {
        let [name, kind, rest @ ..] = chunk else {
            continue;
        };
        let text = String::from_utf8_lossy(rest);
        item.insert(
            NAMES[usize::from(*name) % NAMES.len()].into(),
            value(*kind, &text, rest),
        );
    }
    let _ = Row::from_item(&item);
    if let Ok(lease) = Lease::from_item(&item) {
        let again = Lease::from_item(&lease.to_item()).expect("an encoded lease decodes");
        assert_eq!(again, lease);
    }
});
