//! The administrative operations against dynalite (and kinesis-local for fan-out consumers):
//! listing decodes every row, a release fences the holder out, a checkpoint reset is refused on a
//! held lease and lands on a free one, a prune deletes only workers whose heartbeat stood still.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use kcl_aws::admin::{self, AdminError, TableAdmin};
use kcl_aws::{DynamoLeaseTable, LeaseTable, StreamId};
use kcl_core::protocol::LeaseOp;
use kcl_core::{Failure, Lease, LeaseKey, Position, WorkerId};

async fn table() -> Option<DynamoLeaseTable> {
    let url = common::endpoint("KCLRS_TEST_DYNAMODB")?;
    let table = DynamoLeaseTable::new(&common::dynamodb(&url), common::unique("admin"));
    table
        .ensure_table(&common::Tokio, Duration::from_secs(30))
        .await
        .unwrap();
    Some(table)
}

async fn write(table: &DynamoLeaseTable, op: LeaseOp) -> Result<(), Failure> {
    table.write(&op.to_write()).await.map(|_| ())
}

async fn create(table: &DynamoLeaseTable, lease: Lease) {
    let op = LeaseOp::Create {
        lease: Box::new(lease),
    };
    write(table, op).await.unwrap();
}

/// A lease acquired under worker liveness by `worker`'s process (as [`heartbeat`] names it).
fn acquired_by(key: &str, worker: &str, counter: u64) -> Lease {
    let mut lease = Lease::new(LeaseKey::from(key), Position::TrimHorizon);
    lease.owner = Some(WorkerId::from(worker));
    lease.owner_incarnation = Some(format!("{worker}-process").as_str().into());
    lease.counter = counter;
    lease
}

fn heartbeat(worker: &str) -> LeaseOp {
    LeaseOp::Heartbeat {
        failure_domain: None,
        worker: WorkerId::from(worker),
        incarnation: format!("{worker}-process").as_str().into(),
        takeover: None,
        registered: false,
        previous: None,
        max_leases: 100,
        leaving: false,
        reads_stalled: false,
        acked: Vec::new(),
    }
}

#[tokio::test]
async fn release_fences_the_holder_and_a_checkpoint_moves_only_on_a_free_lease() {
    let Some(table) = table().await else {
        return;
    };
    let mut held = Lease::new(LeaseKey::from("shardId-1"), Position::TrimHorizon);
    held.owner = Some(WorkerId::from("w1"));
    held.counter = 5;
    held.parent_shard_ids = vec![LeaseKey::from("shardId-0")];
    create(&table, held).await;
    write(&table, heartbeat("w1")).await.unwrap();
    let admin = TableAdmin::new(table.clone());

    let snapshot = admin.snapshot().await.unwrap();
    let lease = &snapshot.leases[&LeaseKey::from("shardId-1")];
    assert_eq!(
        (lease.owner.as_ref().map(|w| w.as_str()), lease.counter),
        (Some("w1"), 5)
    );
    assert_eq!(lease.parent_shard_ids, [LeaseKey::from("shardId-0")]);
    assert!(snapshot.workers.contains_key(&WorkerId::from("w1")));
    assert!(snapshot.malformed.is_empty());

    let at = admin::parse_checkpoint("49590338271490256608559692538361571095921575989136588898")
        .unwrap();
    assert_eq!(
        admin.set_checkpoint("shardId-1", at.clone()).await,
        Err(AdminError::Held {
            shard: "shardId-1".into(),
            owner: "w1".into()
        })
    );
    let released = admin.release("shardId-1").await.unwrap();
    assert_eq!((released.owner, released.counter), (None, 6));
    // The holder's renewal at the counter it knew no longer lands.
    let renew = LeaseOp::Renew {
        shard: LeaseKey::from("shardId-1"),
        counter: 5,
        holder: WorkerId::from("w1"),
        throughput_kbps: 0.0,
    };
    assert_eq!(write(&table, renew).await, Err(Failure::ConditionFailed));
    let moved = admin.set_checkpoint("shardId-1", at.clone()).await.unwrap();
    assert_eq!((moved.checkpoint, moved.counter), (at, 7));

    assert_eq!(
        admin.release("shardId-9").await,
        Err(AdminError::NoSuchLease {
            shard: "shardId-9".into()
        })
    );

    // A lease acquired under worker liveness: evicted, and its holder, which renews nothing, is
    // told by a note in its row (it reads the lease back and drops it).
    create(&table, acquired_by("shardId-2", "w1", 3)).await;
    let released = admin.release("shardId-2").await.unwrap();
    assert_eq!(
        (released.owner, released.owner_incarnation, released.counter),
        (None, None, 4)
    );
    let row = admin.snapshot().await.unwrap().workers[&WorkerId::from("w1")].clone();
    let notes: Vec<&str> = row.assigned.iter().map(|a| a.note.as_str()).collect();
    assert_eq!(notes, ["shardId-2@h4"]);
    // A holder whose row is gone is gone: the eviction alone is the release.
    create(&table, acquired_by("shardId-3", "gone", 0)).await;
    let released = admin.release("shardId-3").await.unwrap();
    assert_eq!(released.owner, None);
    assert!(!admin
        .snapshot()
        .await
        .unwrap()
        .workers
        .contains_key(&WorkerId::from("gone")));
}

#[tokio::test]
async fn a_prune_deletes_only_workers_whose_heartbeat_stood_still() {
    let Some(table) = table().await else {
        return;
    };
    write(&table, heartbeat("gone")).await.unwrap();
    write(&table, heartbeat("alive")).await.unwrap();
    let beating = {
        let table = table.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let _ = write(&table, heartbeat("alive")).await;
            }
        })
    };
    let admin = TableAdmin::new(table.clone());
    let pruned = admin
        .prune_workers(&common::Tokio, Duration::from_millis(800))
        .await
        .unwrap();
    beating.abort();
    assert_eq!(pruned, [WorkerId::from("gone")]);
    let workers = admin.snapshot().await.unwrap().workers;
    assert_eq!(
        workers.keys().collect::<Vec<_>>(),
        [&WorkerId::from("alive")]
    );
}

#[tokio::test]
async fn a_fan_out_consumer_is_deregistered() {
    let Some(url) = common::endpoint("KCLRS_TEST_KINESIS_FULL") else {
        return;
    };
    let client = common::kinesis(&url);
    let name = common::create_stream(&client, 1).await;
    let arn = client
        .describe_stream_summary()
        .stream_name(&name)
        .send()
        .await
        .unwrap()
        .stream_description_summary
        .unwrap()
        .stream_arn;
    client
        .register_stream_consumer()
        .stream_arn(&arn)
        .consumer_name("billing")
        .send()
        .await
        .unwrap();
    let stream = StreamId::from(name.as_str());
    admin::deregister_consumer(&client, &stream, "billing")
        .await
        .unwrap();
    // Deregistration may take a moment; the consumer is gone or going.
    let listed = client
        .list_stream_consumers()
        .stream_arn(&arn)
        .send()
        .await
        .unwrap();
    assert!(
        listed
            .consumers()
            .iter()
            .all(|c| c.consumer_name() != "billing"
                || c.consumer_status() == &aws_sdk_kinesis::types::ConsumerStatus::Deleting),
        "{listed:?}"
    );
    let missing = admin::deregister_consumer(&client, &StreamId::from("no-such-stream"), "x").await;
    assert_eq!(missing, Err(AdminError::Stream(Failure::NotFound)));
}
