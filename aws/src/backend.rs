//! The two services a worker talks to, as traits: the lease table and the stream.
//!
//! Each method makes one attempt and classifies its outcome as a [`Failure`]; retrying is the
//! driver's business, because only it knows whether an attempt may be repeated (a conditional
//! write whose answer was lost may not be: its outcome must reach the core as
//! [`Failure::Transient`]).

use std::future::Future;

use kcl_core::write::LeaseWrite;
use kcl_core::{
    Failure, FetchedRecords, HashKeyRange, Item, Record, ShardDescription, StartingPosition,
};

/// The DynamoDB lease table (or anything with its semantics: [`kcl_core::write::apply`]).
pub trait LeaseTable: Send + Sync + 'static {
    /// Every item of the table, all pages, eventually consistent or (`consistent`) not.
    fn scan(&self, consistent: bool) -> impl Future<Output = Result<Vec<Item>, Failure>> + Send;
    /// One item by `leaseKey`, with a consistent read or (`consistent == false`) an eventually
    /// consistent one.
    fn read(
        &self,
        key: &str,
        consistent: bool,
    ) -> impl Future<Output = Result<Option<Item>, Failure>> + Send;
    /// A conditional write; the item after it when `write.return_item` asks for it.
    fn write(
        &self,
        write: &LeaseWrite,
    ) -> impl Future<Output = Result<Option<Item>, Failure>> + Send;
}

/// A Kinesis data stream read by polling.
pub trait ShardStream: Send + Sync + 'static {
    /// The records it yields.
    type Record: Record + Send + Sync + 'static;
    /// Every shard, all pages.
    fn list_shards(&self) -> impl Future<Output = Result<Vec<ShardDescription>, Failure>> + Send;
    /// A shard iterator.
    fn shard_iterator(
        &self,
        shard: &str,
        position: &StartingPosition,
    ) -> impl Future<Output = Result<String, Failure>> + Send;
    /// One GetRecords call. With `shard_range`, KPL user records whose hash key falls outside it
    /// are dropped (see [`kcl_core::Command::GetRecords`]).
    fn get_records(
        &self,
        iterator: &str,
        limit: u32,
        shard_range: Option<HashKeyRange>,
    ) -> impl Future<Output = Result<FetchedRecords<Self::Record>, Failure>> + Send;
}
