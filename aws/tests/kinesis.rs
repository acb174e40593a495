//! Polling Kinesis against kinesalite (fast) and kinesis-local (returns ChildShards): shard
//! listing, every iterator type, GetRecords to the end of a closed shard, KPL aggregates.
#![allow(clippy::unwrap_used)]

mod common;

use kcl_aws::kpl::{aggregate, UserRecordParts};
use kcl_aws::{KinesisRecord, KinesisStream, ShardStream};
use kcl_core::{Failure, StartingPosition};

/// Every record of a shard from `position` until a call returns none (or the shard ends).
async fn read_all(
    stream: &KinesisStream,
    shard: &str,
    position: StartingPosition,
) -> (Vec<KinesisRecord>, bool) {
    let mut iterator = stream.shard_iterator(shard, &position).await.unwrap();
    let mut records = Vec::new();
    loop {
        let batch = stream.get_records(&iterator, 7, None).await.unwrap();
        let empty = batch.records.is_empty();
        records.extend(batch.records);
        match batch.next_iterator {
            None => return (records, true),
            Some(_) if empty => return (records, false),
            Some(next) => iterator = next.to_string(),
        }
    }
}

#[tokio::test]
async fn every_iterator_type_and_kpl_aggregates() {
    let Some(url) = common::endpoint("KCLRS_TEST_KINESIS") else {
        return;
    };
    let client = common::kinesis(&url);
    let name = common::create_stream(&client, 2).await;
    let stream = KinesisStream::new(&client, name.as_str());

    let shards = stream.list_shards().await.unwrap();
    assert_eq!(shards.len(), 2);
    assert!(shards.iter().all(|s| !s.closed && s.parents().is_empty()));
    assert_eq!(shards[0].hash_range.start, 0);
    assert_eq!(shards[1].hash_range.end, u128::MAX);
    assert_eq!(shards[0].hash_range.end + 1, shards[1].hash_range.start);

    // One partition key, so every record lands on one shard, in order.
    let users: Vec<UserRecordParts> = (0..5)
        .map(|i| UserRecordParts {
            partition_key: format!("user-{i}"),
            explicit_hash_key: None,
            data: vec![i],
        })
        .collect();
    let mut entries: Vec<(String, Vec<u8>)> =
        (0..30u8).map(|i| ("k".to_string(), vec![i])).collect();
    entries.insert(10, ("k".to_string(), aggregate(&users)));
    common::put(&client, &name, entries).await;

    let mut per_shard = Vec::new();
    for shard in &shards {
        let (records, ended) = read_all(
            &stream,
            shard.shard_id.as_str(),
            StartingPosition::TrimHorizon,
        )
        .await;
        assert!(!ended, "an open shard has no end");
        per_shard.push(records);
    }
    let index = per_shard.iter().position(|r| !r.is_empty()).unwrap();
    let shard = shards[index].shard_id.clone();
    let records = per_shard.swap_remove(index);
    assert_eq!(records.len(), 35);
    let aggregated: Vec<&KinesisRecord> = records.iter().filter(|r| r.aggregated).collect();
    assert_eq!(aggregated.len(), 5);
    for (i, r) in aggregated.iter().enumerate() {
        assert_eq!(r.position.sequence, aggregated[0].position.sequence);
        assert_eq!(r.position.sub_sequence, i as u64);
        assert_eq!(r.partition_key, format!("user-{i}"));
        assert_eq!(r.data, vec![i as u8]);
    }
    assert!(records.windows(2).all(|w| w[0].position < w[1].position));
    assert!(records
        .iter()
        .all(|r| r.approximate_arrival_millis.is_some()));

    let at = aggregated[0].position.sequence.clone();
    // A sequence number of another shard (a checkpoint the shard cannot have written) is refused
    // as invalid, not read from somewhere else.
    let other = shards[1 - index].shard_id.clone();
    let refused = stream
        .shard_iterator(
            other.as_str(),
            &StartingPosition::AfterSequenceNumber(at.clone()),
        )
        .await;
    assert!(
        matches!(refused, Err(Failure::InvalidArgument(_))),
        "{refused:?}"
    );
    let (from_at, _) = read_all(
        &stream,
        shard.as_str(),
        StartingPosition::AtSequenceNumber(at.clone()),
    )
    .await;
    assert_eq!(from_at.len(), 25);
    assert_eq!(from_at[0].position.sub_sequence, 0);
    let (after, _) = read_all(
        &stream,
        shard.as_str(),
        StartingPosition::AfterSequenceNumber(at),
    )
    .await;
    assert_eq!(after.len(), 20);
    let (latest, _) = read_all(&stream, shard.as_str(), StartingPosition::Latest).await;
    assert!(latest.is_empty());
    let (from_epoch, _) = read_all(&stream, shard.as_str(), StartingPosition::AtTimestamp(0)).await;
    assert_eq!(from_epoch.len(), 35);
}

#[tokio::test]
async fn a_split_parent_ends_and_lists_its_children() {
    let Some(url) = common::endpoint("KCLRS_TEST_KINESIS") else {
        return;
    };
    let client = common::kinesis(&url);
    let name = common::create_stream(&client, 1).await;
    let stream = KinesisStream::new(&client, name.as_str());
    common::put(
        &client,
        &name,
        (0..10u8).map(|i| (format!("k{i}"), vec![i])).collect(),
    )
    .await;
    let parent = stream.list_shards().await.unwrap().remove(0);
    client
        .split_shard()
        .stream_name(&name)
        .shard_to_split(parent.shard_id.as_str())
        .new_starting_hash_key((u128::MAX / 2 + 1).to_string())
        .send()
        .await
        .unwrap();
    common::wait_active(&client, &name).await;
    let shards = stream.list_shards().await.unwrap();
    assert_eq!(shards.len(), 3);
    assert!(shards[0].closed);
    let children: Vec<_> = shards
        .iter()
        .filter(|s| s.parent.as_ref() == Some(&parent.shard_id))
        .collect();
    assert_eq!(children.len(), 2);
    assert_eq!(children[0].hash_range.end + 1, children[1].hash_range.start);
    let (records, ended) = read_all(
        &stream,
        parent.shard_id.as_str(),
        StartingPosition::TrimHorizon,
    )
    .await;
    assert_eq!(records.len(), 10);
    assert!(ended, "the closed parent ends with no next iterator");
}

#[tokio::test]
async fn child_shards_are_reported_at_the_end_of_a_merged_parent() {
    let Some(url) = common::endpoint("KCLRS_TEST_KINESIS_FULL") else {
        return;
    };
    let client = common::kinesis(&url);
    let name = common::create_stream(&client, 2).await;
    let stream = KinesisStream::new(&client, name.as_str());
    let shards = stream.list_shards().await.unwrap();
    let (a, b) = (shards[0].shard_id.clone(), shards[1].shard_id.clone());
    common::merge(&client, &name, a.as_str(), b.as_str()).await;
    let shards = stream.list_shards().await.unwrap();
    let child = shards.iter().find(|s| !s.closed).unwrap();
    assert_eq!(child.parents(), vec![a.clone(), b.clone()]);
    let mut iterator = stream
        .shard_iterator(a.as_str(), &StartingPosition::TrimHorizon)
        .await
        .unwrap();
    let end = loop {
        let batch = stream.get_records(&iterator, 100, None).await.unwrap();
        match batch.next_iterator {
            Some(next) => iterator = next.to_string(),
            None => break batch,
        }
    };
    assert_eq!(end.child_shards.len(), 1);
    assert_eq!(end.child_shards[0].shard_id, child.shard_id);
    assert_eq!(end.child_shards[0].parents, vec![a, b]);
}

#[tokio::test]
async fn missing_streams_and_bad_iterators_are_typed() {
    let Some(url) = common::endpoint("KCLRS_TEST_KINESIS") else {
        return;
    };
    let client = common::kinesis(&url);
    let stream = KinesisStream::new(&client, common::unique("absent").as_str());
    assert_eq!(stream.list_shards().await, Err(Failure::NotFound));
    assert!(matches!(
        stream
            .shard_iterator("shardId-000000000000", &StartingPosition::TrimHorizon)
            .await,
        Err(Failure::NotFound)
    ));
    let got = stream.get_records("not-an-iterator", 10, None).await;
    assert!(matches!(got, Err(Failure::InvalidArgument(_))), "{got:?}");
}
