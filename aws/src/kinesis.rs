//! A Kinesis data stream read by polling (ListShards, GetShardIterator, GetRecords).

use aws_sdk_kinesis::config::retry::RetryConfig;
use aws_sdk_kinesis::primitives::DateTime;
use aws_sdk_kinesis::types::{HashKeyRange as SdkRange, ShardIteratorType};
use aws_sdk_kinesis::Client;
use kcl_core::{
    ChildShard, Failure, FetchedRecords, HashKeyRange, LeaseKey, RecordPosition, SequenceNumber,
    ShardDescription, StartingPosition,
};

use crate::backend::ShardStream;
use crate::failure::classify;
use crate::kpl::{deaggregate, Deaggregated};
use crate::record::KinesisRecord;

/// Which stream: by name, or by ARN (for a stream in another account).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamId {
    /// `StreamName`.
    Name(String),
    /// `StreamARN`.
    Arn(String),
}

impl From<&str> for StreamId {
    /// A string starting with `arn:` is an ARN, anything else a name.
    fn from(s: &str) -> Self {
        if s.starts_with("arn:") {
            Self::Arn(s.into())
        } else {
            Self::Name(s.into())
        }
    }
}

/// A Kinesis data stream on the AWS SDK.
#[derive(Clone, Debug)]
pub struct KinesisStream {
    client: Client,
    stream: StreamId,
}

impl KinesisStream {
    /// The stream through a client built from `client`'s configuration with the SDK's retries
    /// off: the driver retries (and counts) throttles itself, and the core paces GetRecords.
    pub fn new(client: &Client, stream: impl Into<StreamId>) -> Self {
        let config = client
            .config()
            .to_builder()
            .retry_config(RetryConfig::disabled())
            .build();
        Self {
            client: Client::from_conf(config),
            stream: stream.into(),
        }
    }

    /// The stream.
    pub fn stream(&self) -> &StreamId {
        &self.stream
    }

    /// Its client (retries off).
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    fn name(&self) -> Option<String> {
        self.stream.name()
    }

    fn arn(&self) -> Option<String> {
        self.stream.arn()
    }
}

impl StreamId {
    /// The name, unless this is an ARN.
    pub(crate) fn name(&self) -> Option<String> {
        match self {
            Self::Name(n) => Some(n.clone()),
            Self::Arn(_) => None,
        }
    }

    /// The ARN, unless this is a name.
    pub(crate) fn arn(&self) -> Option<String> {
        match self {
            Self::Arn(a) => Some(a.clone()),
            Self::Name(_) => None,
        }
    }
}

impl core::fmt::Display for StreamId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Name(s) | Self::Arn(s) => f.write_str(s),
        }
    }
}

fn hash_range(range: &SdkRange) -> Result<HashKeyRange, Failure> {
    let parse = |s: &str| {
        s.parse::<u128>()
            .map_err(|_| Failure::Other(format!("hash key {s:?} is not a 128-bit number")))
    };
    Ok(HashKeyRange {
        start: parse(range.starting_hash_key())?,
        end: parse(range.ending_hash_key())?,
    })
}

fn sequence(s: &str) -> Result<SequenceNumber, Failure> {
    SequenceNumber::parse(s)
        .map_err(|e| Failure::Other(format!("sequence number {s:?} from Kinesis: {e:?}")))
}

/// The user records of one Kinesis record (several when it is a KPL aggregate). With `shard_range`,
/// an aggregate's user records whose effective hash key falls outside it are dropped, as the
/// Java KCL drops them: a producer with a stale shard map packed them with another shard's, and
/// the shard that owns their key is read by whoever holds its lease (counted in
/// `kcl_kpl_records_dropped_total`, and logged).
pub(crate) fn user_records(
    record: aws_sdk_kinesis::types::Record,
    shard_range: Option<HashKeyRange>,
    out: &mut Vec<KinesisRecord>,
) -> Result<(), Failure> {
    let seq = sequence(record.sequence_number())?;
    let arrival = record
        .approximate_arrival_timestamp()
        .and_then(|t| t.to_millis().ok());
    let data = record.data.into_inner();
    match deaggregate(&data) {
        Deaggregated::Records(users) => {
            let mut dropped = 0u64;
            for (i, user) in users.into_iter().enumerate() {
                let outside = |range: HashKeyRange| {
                    user.effective_hash_key()
                        .is_some_and(|key| key < range.start || key > range.end)
                };
                if shard_range.is_some_and(outside) {
                    dropped += 1;
                    continue;
                }
                out.push(KinesisRecord {
                    position: RecordPosition {
                        sequence: seq.clone(),
                        sub_sequence: i as u64,
                    },
                    partition_key: user.partition_key,
                    explicit_hash_key: user.explicit_hash_key,
                    data: user.data,
                    approximate_arrival_millis: arrival,
                    aggregated: true,
                });
            }
            if dropped > 0 {
                tracing::warn!(
                    sequence = %seq,
                    dropped,
                    "KPL user records whose hash key is outside the shard's range dropped \
                     (DriverConfig::drop_kpl_records_outside_shard)"
                );
                metrics::counter!("kcl_kpl_records_dropped_total").increment(dropped);
            }
        }
        plain => {
            if let Some(why) = plain.malformed() {
                tracing::warn!(sequence = %seq, why, "record starts like a KPL aggregate but is not one; delivered as it is");
                metrics::counter!("kcl_malformed_aggregates_total").increment(1);
            }
            out.push(KinesisRecord {
                position: RecordPosition::new(seq),
                partition_key: record.partition_key.unwrap_or_default(),
                explicit_hash_key: None,
                data,
                approximate_arrival_millis: arrival,
                aggregated: false,
            });
        }
    }
    Ok(())
}

/// The children a closed shard's last GetRecords or SubscribeToShard event names.
pub(crate) fn child_shards(
    children: Vec<aws_sdk_kinesis::types::ChildShard>,
) -> Result<Vec<ChildShard>, Failure> {
    let mut out = Vec::with_capacity(children.len());
    for child in children {
        let mut parents: Vec<LeaseKey> = child
            .parent_shards()
            .iter()
            .map(|p| LeaseKey::new(p))
            .collect();
        parents.sort_unstable();
        out.push(ChildShard {
            shard_id: LeaseKey::new(child.shard_id()),
            parents,
            hash_range: child.hash_key_range().map(hash_range).transpose()?,
        });
    }
    Ok(out)
}

impl ShardStream for KinesisStream {
    type Record = KinesisRecord;

    async fn list_shards(&self) -> Result<Vec<ShardDescription>, Failure> {
        let mut shards = Vec::new();
        let mut token: Option<String> = None;
        loop {
            // With a NextToken the stream must not be named again.
            let request = self.client.list_shards();
            let request = match token.take() {
                Some(t) => request.next_token(t),
                None => request
                    .set_stream_name(self.name())
                    .set_stream_arn(self.arn()),
            };
            let page = request.send().await.map_err(|e| classify(&e))?;
            for shard in page.shards() {
                let range = shard.hash_key_range().map(hash_range).transpose()?;
                shards.push(ShardDescription {
                    shard_id: LeaseKey::new(shard.shard_id()),
                    parent: shard.parent_shard_id().map(LeaseKey::new),
                    adjacent_parent: shard.adjacent_parent_shard_id().map(LeaseKey::new),
                    hash_range: range.unwrap_or(HashKeyRange {
                        start: 0,
                        end: u128::MAX,
                    }),
                    closed: shard
                        .sequence_number_range()
                        .is_some_and(|r| r.ending_sequence_number().is_some()),
                });
            }
            match page.next_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => return Ok(shards),
            }
        }
    }

    async fn shard_iterator(
        &self,
        shard: &str,
        position: &StartingPosition,
    ) -> Result<String, Failure> {
        let request = self
            .client
            .get_shard_iterator()
            .set_stream_name(self.name())
            .set_stream_arn(self.arn())
            .shard_id(shard);
        let request = match position {
            StartingPosition::TrimHorizon => {
                request.shard_iterator_type(ShardIteratorType::TrimHorizon)
            }
            StartingPosition::Latest => request.shard_iterator_type(ShardIteratorType::Latest),
            StartingPosition::AtTimestamp(ms) => request
                .shard_iterator_type(ShardIteratorType::AtTimestamp)
                .timestamp(DateTime::from_millis(
                    i64::try_from(*ms).unwrap_or(i64::MAX),
                )),
            StartingPosition::AtSequenceNumber(s) => request
                .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
                .starting_sequence_number(s.as_str()),
            StartingPosition::AfterSequenceNumber(s) => request
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .starting_sequence_number(s.as_str()),
        };
        let got = request.send().await.map_err(|e| classify(&e))?;
        got.shard_iterator.ok_or_else(|| {
            Failure::Other(format!("GetShardIterator for {shard} returned no iterator"))
        })
    }

    async fn get_records(
        &self,
        iterator: &str,
        limit: u32,
        shard_range: Option<HashKeyRange>,
    ) -> Result<FetchedRecords<KinesisRecord>, Failure> {
        let got = self
            .client
            .get_records()
            .shard_iterator(iterator)
            .limit(i32::try_from(limit.clamp(1, 10_000)).unwrap_or(10_000))
            .send()
            .await
            .map_err(|e| classify(&e))?;
        let mut records = Vec::with_capacity(got.records.len());
        for record in got.records {
            user_records(record, shard_range, &mut records)?;
        }
        Ok(FetchedRecords {
            records,
            next_iterator: got
                .next_shard_iterator
                .filter(|i| !i.is_empty())
                .map(Into::into),
            millis_behind_latest: got
                .millis_behind_latest
                .and_then(|m| u64::try_from(m).ok())
                .unwrap_or(0),
            child_shards: child_shards(got.child_shards.unwrap_or_default())?,
        })
    }
}
