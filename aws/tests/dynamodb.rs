//! The DynamoDB lease table against dynalite: table creation, and every kind of conditional write
//! the core issues agreeing with the core's reference semantics (`kcl_core::write::apply`).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use kcl_aws::{DynamoLeaseTable, LeaseTable};
use kcl_core::lease::attr;
use kcl_core::rng::Rng;
use kcl_core::write::{apply, Condition, LeaseWrite, Update, WriteAction, WriteKind};
use kcl_core::{AttributeValue, Failure, Item};

async fn table() -> Option<DynamoLeaseTable> {
    let url = common::endpoint("KCLRS_TEST_DYNAMODB")?;
    let table = DynamoLeaseTable::new(&common::dynamodb(&url), common::unique("leases"));
    table
        .ensure_table(&common::Tokio, Duration::from_secs(30))
        .await
        .expect("the lease table is created");
    Some(table)
}

#[tokio::test]
async fn ensure_table_creates_once_and_is_idempotent() {
    let Some(table) = table().await else { return };
    table
        .ensure_table(&common::Tokio, Duration::from_secs(5))
        .await
        .expect("an existing table is fine");
    assert_eq!(table.scan(false).await, Ok(vec![]));
    assert_eq!(table.read("nothing", true).await, Ok(None));
}

/// A table of that name that is not a lease table (another application's, keyed by `id`) is
/// refused at once, saying why, rather than used: every write to it would fail, and the
/// worker would sit unregistered.
#[tokio::test]
async fn a_table_with_another_key_is_not_taken_for_a_lease_table() {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    let Some(url) = common::endpoint("KCLRS_TEST_DYNAMODB") else {
        return;
    };
    let client = common::dynamodb(&url);
    let name = common::unique("orders");
    client
        .create_table()
        .table_name(&name)
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("id")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("id")
                .attribute_type(ScalarAttributeType::N)
                .build()
                .unwrap(),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
    let e = DynamoLeaseTable::new(&client, &name)
        .ensure_table(&common::Tokio, Duration::from_secs(30))
        .await
        .expect_err("not a lease table");
    let Failure::Other(why) = &e else {
        panic!("{e:?}")
    };
    assert!(
        why.contains("not a lease table") && why.contains("id"),
        "{why}"
    );
}

#[tokio::test]
async fn a_missing_table_is_not_found() {
    let Some(url) = common::endpoint("KCLRS_TEST_DYNAMODB") else {
        return;
    };
    let table = DynamoLeaseTable::new(&common::dynamodb(&url), common::unique("absent"));
    assert_eq!(table.read("k", true).await, Err(Failure::NotFound));
    assert_eq!(table.scan(false).await, Err(Failure::NotFound));
}

/// A refusal keeps what the service said: its error code, its message and the request's id.
#[tokio::test]
async fn a_refusal_keeps_the_error_code_message_and_request_id() {
    let Some(url) = common::endpoint("KCLRS_TEST_DYNAMODB") else {
        return;
    };
    // Table names are 3 to 255 characters: DynamoDB refuses the request as invalid.
    let table = DynamoLeaseTable::new(&common::dynamodb(&url), "ab");
    let Err(Failure::Service(refusal)) = table.scan(false).await else {
        panic!("a ValidationException");
    };
    assert_eq!(refusal.code, "ValidationException");
    assert!(
        !refusal.message.is_empty() && refusal.message != "no message",
        "{refusal}"
    );
    let id = refusal
        .request_id
        .as_deref()
        .expect("dynalite sends x-amzn-RequestId");
    assert!(!id.is_empty());
    assert!(
        refusal.to_string().ends_with(&format!("(request id {id})")),
        "{refusal}"
    );
}

#[tokio::test]
async fn a_dead_endpoint_is_transient_and_not_retried() {
    // Nothing listens on port 9 of localhost: the connection is refused at once.
    let table = DynamoLeaseTable::new(&common::dynamodb("http://127.0.0.1:9"), "t");
    let started = std::time::Instant::now();
    assert_eq!(table.read("k", true).await, Err(Failure::Transient));
    // The SDK's own retries (with their backoff) are off.
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn scans_follow_every_page() {
    let Some(table) = table().await else { return };
    // 1 MB pages: 300 items of 8 KB need at least three.
    let blob = AttributeValue::B(vec![7; 8 * 1024]);
    for i in 0..300 {
        let item = Item::from([("blob", blob.clone())]);
        let write = LeaseWrite {
            key: format!("shard-{i:04}"),
            action: WriteAction::Put(item),
            condition: Condition::NotExists,
            return_item: false,
            kind: WriteKind::Create,
        };
        table.write(&write).await.unwrap();
    }
    let mut keys: Vec<String> = table
        .scan(true)
        .await
        .unwrap()
        .iter()
        .map(|i| match i.get(attr::LEASE_KEY) {
            Some(AttributeValue::S(k)) => k.to_string(),
            other => panic!("leaseKey {other:?}"),
        })
        .collect();
    keys.sort();
    assert_eq!(keys.len(), 300);
    assert_eq!(keys[299], "shard-0299");
}

const KEYS: [&str; 3] = [
    "shardId-000000000000",
    "shardId-000000000001",
    "kcl-rs:leader",
];
const OWNERS: [&str; 3] = ["w1", "w2", "w3"];

fn random_value(rng: &mut Rng, name: &'static str) -> AttributeValue {
    match name {
        attr::LEASE_COUNTER | attr::CHECKPOINT_SUB | attr::OWNER_SWITCHES => {
            AttributeValue::number(rng.below(4))
        }
        attr::PARENT_SHARD_IDS | attr::CHILD_SHARD_IDS => AttributeValue::string_set(
            (0..1 + rng.below(2)).map(|i| format!("shardId-{:012}", rng.below(4) + i)),
        ),
        attr::PENDING_CHECKPOINT_STATE => AttributeValue::B(vec![rng.below(256) as u8; 3]),
        _ => AttributeValue::S(OWNERS[rng.index(OWNERS.len())].into()),
    }
}

const NAMES: [&str; 6] = [
    attr::LEASE_OWNER,
    attr::LEASE_COUNTER,
    attr::CHECKPOINT,
    attr::CHECKPOINT_OWNER,
    attr::CHILD_SHARD_IDS,
    attr::PENDING_CHECKPOINT_STATE,
];

fn random_condition(rng: &mut Rng, depth: u32) -> Condition {
    let name = NAMES[rng.index(NAMES.len())];
    match rng.below(if depth == 0 { 7 } else { 5 }) {
        0 => Condition::Always,
        1 => Condition::Exists,
        2 => Condition::NotExists,
        3 => Condition::Equals(name, random_value(rng, name)),
        4 => Condition::Absent(name),
        5 => Condition::And(
            (0..rng.below(3))
                .map(|_| random_condition(rng, depth + 1))
                .collect(),
        ),
        _ => Condition::Or(
            (0..1 + rng.below(2))
                .map(|_| random_condition(rng, depth + 1))
                .collect(),
        ),
    }
}

fn random_write(rng: &mut Rng) -> LeaseWrite {
    let key = KEYS[rng.index(KEYS.len())].to_string();
    let action = match rng.below(6) {
        0 => {
            let mut item = Item::new();
            for name in NAMES {
                if rng.below(2) == 0 {
                    item.insert(name.into(), random_value(rng, name));
                }
            }
            WriteAction::Put(item)
        }
        1 => WriteAction::Delete,
        _ => WriteAction::Update(
            (0..1 + rng.below(3))
                .map(|_| {
                    let name = NAMES[rng.index(NAMES.len())];
                    match rng.below(5) {
                        0 => Update::Remove(name),
                        1 => Update::Increment(attr::LEASE_COUNTER, 1 + rng.below(2)),
                        2 => Update::AddToSet(
                            attr::CHILD_SHARD_IDS,
                            vec![format!("c{}", rng.below(3))],
                        ),
                        3 => Update::DeleteFromSet(
                            attr::CHILD_SHARD_IDS,
                            vec![format!("c{}", rng.below(3))],
                        ),
                        _ => Update::Set(name, random_value(rng, name)),
                    }
                })
                // One action per attribute, as DynamoDB requires of an update expression.
                .fold(Vec::<Update>::new(), |mut all, u| {
                    let name = |u: &Update| match u {
                        Update::Set(n, _)
                        | Update::Remove(n)
                        | Update::Increment(n, _)
                        | Update::AddToSet(n, _)
                        | Update::DeleteFromSet(n, _) => *n,
                    };
                    if !all.iter().any(|x| name(x) == name(&u)) {
                        all.push(u);
                    }
                    all
                }),
        ),
    };
    LeaseWrite {
        key,
        action,
        condition: random_condition(rng, 0),
        return_item: rng.below(2) == 0,
        kind: WriteKind::Renew,
    }
}

#[tokio::test]
async fn dynamodb_agrees_with_the_reference_semantics() {
    let Some(table) = table().await else { return };
    let seed = std::env::var("KCLRS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let mut rng = Rng::new(seed);
    let mut model: BTreeMap<String, Item> = BTreeMap::new();
    let (mut held, mut failed) = (0, 0);
    for step in 0..400 {
        let write = random_write(&mut rng);
        let expected = apply(model.get(&write.key), &write);
        let got = table.write(&write).await;
        let context = format!("step {step} (KCLRS_SEED={seed}): {write:?}");
        match expected {
            Err(_) => {
                failed += 1;
                assert_eq!(got, Err(Failure::ConditionFailed), "{context}");
            }
            Ok(after) => {
                held += 1;
                let got = got.unwrap_or_else(|e| panic!("{context}: {e:?}"));
                if write.return_item {
                    assert_eq!(got, after, "{context}");
                } else {
                    assert_eq!(got, None, "{context}");
                }
                match after {
                    Some(item) => model.insert(write.key.clone(), item),
                    None => model.remove(&write.key),
                };
            }
        }
        assert_eq!(
            table.read(&write.key, true).await.unwrap(),
            model.get(&write.key).cloned(),
            "{context}"
        );
    }
    // Both outcomes were exercised, many times.
    assert!(held > 50 && failed > 50, "held {held}, failed {failed}");
    let mut scanned = table.scan(false).await.unwrap();
    scanned.sort_by(|a, b| {
        format!("{:?}", a.get(attr::LEASE_KEY)).cmp(&format!("{:?}", b.get(attr::LEASE_KEY)))
    });
    let mut expected: Vec<Item> = model.into_values().collect();
    expected.sort_by(|a, b| {
        format!("{:?}", a.get(attr::LEASE_KEY)).cmp(&format!("{:?}", b.get(attr::LEASE_KEY)))
    });
    assert_eq!(scanned, expected);
}

/// Point-in-time recovery and deletion protection, on moto (dynalite models neither): a table
/// created with both has both, and refuses to be deleted.
#[tokio::test]
async fn a_created_table_has_point_in_time_recovery_and_deletion_protection_when_asked() {
    let Some(url) = common::endpoint("KCLRS_TEST_DYNAMODB_FULL") else {
        return;
    };
    let client = common::dynamodb(&url);
    let name = common::unique("protected");
    let table = DynamoLeaseTable::new(&client, &name);
    let mut options = kcl_aws::TableOptions::default();
    options.point_in_time_recovery = true;
    options.deletion_protection = true;
    table
        .ensure_table_with(&common::Tokio, Duration::from_secs(30), &options)
        .await
        .unwrap();
    let described = client
        .describe_table()
        .table_name(&name)
        .send()
        .await
        .unwrap();
    assert_eq!(
        described
            .table()
            .and_then(|t| t.deletion_protection_enabled()),
        Some(true)
    );
    let backups = client
        .describe_continuous_backups()
        .table_name(&name)
        .send()
        .await
        .unwrap();
    let pitr = backups
        .continuous_backups_description()
        .and_then(|d| d.point_in_time_recovery_description())
        .and_then(|p| p.point_in_time_recovery_status());
    assert_eq!(
        pitr,
        Some(&aws_sdk_dynamodb::types::PointInTimeRecoveryStatus::Enabled)
    );
    assert!(client
        .delete_table()
        .table_name(&name)
        .send()
        .await
        .is_err());

    // Without the options, neither is turned on.
    let plain = common::unique("plain");
    DynamoLeaseTable::new(&client, &plain)
        .ensure_table(&common::Tokio, Duration::from_secs(30))
        .await
        .unwrap();
    let described = client
        .describe_table()
        .table_name(&plain)
        .send()
        .await
        .unwrap();
    assert_ne!(
        described
            .table()
            .and_then(|t| t.deletion_protection_enabled()),
        Some(true)
    );
}
