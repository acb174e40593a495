//! Test-side Kinesis helpers (on tokio): create a stream, wait for it, put numbered records.

use std::time::Duration;

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, StreamStatus};
use aws_sdk_kinesis::Client;

/// Where a numbered record went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placed {
    /// The record's number, which is also its data (in decimal).
    pub id: usize,
    /// The shard that took it.
    pub shard: String,
    /// Its sequence number.
    pub sequence: String,
}

/// Creates a stream of `shards` shards and waits until it is `ACTIVE`.
pub async fn create(client: &Client, name: &str, shards: i32) -> Result<(), String> {
    client
        .create_stream()
        .stream_name(name)
        .shard_count(shards)
        .send()
        .await
        .map_err(|e| format!("CreateStream {name}: {e:?}"))?;
    wait_active(client, name).await
}

/// Waits (up to 20 s) until the stream is `ACTIVE` again, after a create or a reshard.
pub async fn wait_active(client: &Client, name: &str) -> Result<(), String> {
    for _ in 0..400 {
        let summary = client
            .describe_stream_summary()
            .stream_name(name)
            .send()
            .await
            .map_err(|e| format!("DescribeStreamSummary {name}: {e:?}"))?;
        if summary
            .stream_description_summary()
            .map(|s| s.stream_status())
            == Some(&StreamStatus::Active)
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("stream {name} did not become ACTIVE within 20 s"))
}

/// Puts the records numbered `ids` (partition key `key-ID`, data the decimal id) with PutRecords,
/// 500 at a time, putting again the entries a call refused; says where each one went.
pub async fn put_numbered(
    client: &Client,
    name: &str,
    ids: impl Iterator<Item = usize>,
) -> Result<Vec<Placed>, String> {
    let ids: Vec<usize> = ids.collect();
    let mut placed = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        let mut pending = chunk.to_vec();
        for attempt in 0.. {
            if pending.is_empty() {
                break;
            }
            if attempt == 20 {
                return Err(format!(
                    "PutRecords kept refusing {} records",
                    pending.len()
                ));
            }
            let entries = pending
                .iter()
                .map(|id| {
                    PutRecordsRequestEntry::builder()
                        .partition_key(format!("key-{id}"))
                        .data(Blob::new(id.to_string()))
                        .build()
                        .map_err(|e| format!("PutRecordsRequestEntry: {e}"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let got = client
                .put_records()
                .stream_name(name)
                .set_records(Some(entries))
                .send()
                .await
                .map_err(|e| format!("PutRecords {name}: {e:?}"))?;
            let mut refused = Vec::new();
            for (&id, result) in pending.iter().zip(got.records()) {
                match (result.shard_id(), result.sequence_number()) {
                    (Some(shard), Some(sequence)) => placed.push(Placed {
                        id,
                        shard: shard.to_string(),
                        sequence: sequence.to_string(),
                    }),
                    _ => refused.push(id),
                }
            }
            pending = refused;
            if !pending.is_empty() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    Ok(placed)
}
