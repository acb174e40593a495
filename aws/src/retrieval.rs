//! How a consumer gets records: polling GetRecords, or enhanced fan-out, chosen when it is built.

use kcl_core::{Failure, FetchedRecords, HashKeyRange, ShardDescription, StartingPosition};

use crate::backend::ShardStream;
use crate::fanout::FanOutStream;
use crate::kinesis::KinesisStream;
use crate::record::KinesisRecord;
use crate::runtime::Runtime;

/// The stream a [`crate::Consumer`] reads, in the mode its builder chose.
#[derive(Debug)]
pub enum Retrieval<Rt: Runtime> {
    /// GetRecords, paced by the core (shared 2 MB/s and 5 calls/s per shard).
    Polling(KinesisStream),
    /// SubscribeToShard through a registered consumer (its own 2 MB/s per shard, pushed).
    FanOut(FanOutStream<Rt>),
}

impl<Rt: Runtime> ShardStream for Retrieval<Rt> {
    type Record = KinesisRecord;

    async fn list_shards(&self) -> Result<Vec<ShardDescription>, Failure> {
        match self {
            Self::Polling(s) => s.list_shards().await,
            Self::FanOut(s) => s.list_shards().await,
        }
    }

    async fn shard_iterator(
        &self,
        shard: &str,
        position: &StartingPosition,
    ) -> Result<String, Failure> {
        match self {
            Self::Polling(s) => s.shard_iterator(shard, position).await,
            Self::FanOut(s) => s.shard_iterator(shard, position).await,
        }
    }

    async fn get_records(
        &self,
        iterator: &str,
        limit: u32,
        shard_range: Option<HashKeyRange>,
    ) -> Result<FetchedRecords<KinesisRecord>, Failure> {
        match self {
            Self::Polling(s) => s.get_records(iterator, limit, shard_range).await,
            Self::FanOut(s) => s.get_records(iterator, limit, shard_range).await,
        }
    }
}
