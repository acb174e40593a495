//! The worker's inputs and commands: everything that crosses the IO boundary.

use alloc::string::String;
use alloc::vec::Vec;

use crate::item::{Item, Text};
use crate::lease::{HashKeyRange, LeaseKey, RowError, WorkerId};
use crate::sequence::{Position, RecordPosition, SequenceNumber};
use crate::time::WallTime;
use crate::write::LeaseWrite;

/// Correlates a command with its result. Issued from a per-worker counter, so it is readable in
/// logs and reproducible.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct RequestId(pub u64);

/// Correlates a processor call with its return.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct CallId(pub u64);

/// The fencing token of one ownership of a lease: the lease counter right after this worker
/// acquired it. It grows with every change of owner, so a sink that remembers the highest token
/// it accepted per shard can refuse writes from an owner that was paused past its lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct FencingToken(pub u64);

/// A service's refusal as the service gave it: its error code, its message, and the id of the
/// request (what AWS support asks for).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ServiceError {
    /// The error code (`AccessDeniedException`, `ValidationException`, ...).
    pub code: String,
    /// The service's message.
    pub message: String,
    /// The request's id (`x-amzn-RequestId`), when the answer carried one.
    pub request_id: Option<String>,
}

impl ServiceError {
    /// A refusal without a request id.
    pub fn new(code: &str, message: &str) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            request_id: None,
        }
    }
}

impl core::fmt::Display for ServiceError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)?;
        match &self.request_id {
            Some(id) => write!(f, " (request id {id})"),
            None => Ok(()),
        }
    }
}

/// Why a request failed, as the driver classifies the service's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum Failure {
    /// A conditional write's condition did not hold: a lost race, not an error.
    ConditionFailed,
    /// Throttled (DynamoDB ProvisionedThroughputExceeded / ThrottlingException /
    /// RequestLimitExceeded, Kinesis ProvisionedThroughputExceeded / LimitExceeded).
    Throttled,
    /// The shard iterator is older than five minutes.
    ExpiredIterator,
    /// The table, stream or shard does not exist.
    NotFound,
    /// A timeout, 5xx or connection failure: the outcome of a write is unknown.
    Transient,
    /// The request was refused as invalid (Kinesis `InvalidArgumentException`): for
    /// GetShardIterator, a starting sequence number that is not of this shard; for GetRecords,
    /// an iterator the stream does not accept.
    InvalidArgument(ServiceError),
    /// The caller is not allowed (`AccessDeniedException`, or credentials the service does not
    /// accept): retried slowly, like [`Service`](Self::Service); a driver may give up once every
    /// call is refused for long.
    AccessDenied(ServiceError),
    /// Any other refusal by the service (a validation error, a KMS key disabled): retried
    /// slowly, never trusted.
    Service(ServiceError),
    /// A failure on this side (an answer that does not parse, a request that cannot be built):
    /// retried slowly, never trusted.
    Other(String),
}

impl core::fmt::Display for Failure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::ConditionFailed => f.write_str("the write's condition did not hold"),
            Self::Throttled => f.write_str("throttled"),
            Self::ExpiredIterator => f.write_str("the shard iterator expired"),
            Self::NotFound => f.write_str("not found"),
            Self::Transient => f.write_str(
                "no answer (a timeout, 5xx or connection failure): the outcome is unknown",
            ),
            Self::InvalidArgument(why) => write!(f, "refused as invalid: {why}"),
            Self::AccessDenied(why) => write!(f, "access denied: {why}"),
            Self::Service(why) => write!(f, "refused: {why}"),
            Self::Other(why) => f.write_str(why),
        }
    }
}

impl core::error::Error for Failure {}

/// One shard as ListShards describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ShardDescription {
    /// Shard id.
    pub shard_id: LeaseKey,
    /// `ParentShardId`.
    pub parent: Option<LeaseKey>,
    /// `AdjacentParentShardId` (merges).
    pub adjacent_parent: Option<LeaseKey>,
    /// Hash-key range.
    pub hash_range: HashKeyRange,
    /// Whether the shard is closed (has an ending sequence number).
    pub closed: bool,
}

/// ListShards' answer: every shard, and the wall-clock time at which the listing was answered.
/// A lease created from it at `LATEST` starts at that time ([`crate::sync`]), whoever acquires it
/// and however late.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ShardListing {
    /// Every shard, open or closed, all pages.
    pub shards: Vec<ShardDescription>,
    /// The caller's wall clock when the answer came (`std::time::SystemTime::now()`, converted
    /// with [`crate::time::wall_time`]).
    pub listed_at: WallTime,
}

impl ShardDescription {
    /// The shard's parents, sorted.
    pub fn parents(&self) -> Vec<LeaseKey> {
        let mut v: Vec<LeaseKey> = self
            .parent
            .iter()
            .chain(self.adjacent_parent.iter())
            .cloned()
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// A child shard reported at the end of a closed shard.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ChildShard {
    /// Shard id.
    pub shard_id: LeaseKey,
    /// All of its parents.
    pub parents: Vec<LeaseKey>,
    /// Hash-key range.
    pub hash_range: Option<HashKeyRange>,
}

/// Where a shard iterator starts.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum StartingPosition {
    /// `TRIM_HORIZON`.
    TrimHorizon,
    /// `LATEST`.
    Latest,
    /// `AT_TIMESTAMP` (milliseconds since the Unix epoch).
    AtTimestamp(u64),
    /// `AT_SEQUENCE_NUMBER`.
    AtSequenceNumber(SequenceNumber),
    /// `AFTER_SEQUENCE_NUMBER`.
    AfterSequenceNumber(SequenceNumber),
}

/// What the core needs to know of a record; the payload stays the driver's business.
pub trait Record {
    /// The record's position (sequence number, and sub-sequence inside a KPL aggregate).
    fn position(&self) -> &RecordPosition;
    /// Payload size in bytes, for throughput accounting.
    fn size_bytes(&self) -> usize;
}

/// A plain record, for drivers with nothing better and for tests.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct BasicRecord {
    /// Position.
    pub position: RecordPosition,
    /// Partition key.
    pub partition_key: String,
    /// Payload.
    pub data: Vec<u8>,
}

impl Record for BasicRecord {
    fn position(&self) -> &RecordPosition {
        &self.position
    }
    fn size_bytes(&self) -> usize {
        self.data.len() + self.partition_key.len()
    }
}

/// A GetRecords result.
#[derive(Clone, Debug, PartialEq)]
pub struct FetchedRecords<R> {
    /// The records, in order.
    pub records: Vec<R>,
    /// The next iterator; `None` at the end of a closed shard.
    pub next_iterator: Option<Text>,
    /// `MillisBehindLatest`.
    pub millis_behind_latest: u64,
    /// At the end of a closed shard: its children.
    pub child_shards: Vec<ChildShard>,
}

/// What a checkpoint request asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum CheckpointTarget {
    /// Everything delivered so far.
    LastDelivered,
    /// Up to and including this record.
    At(RecordPosition),
}

/// An input to [`crate::Worker::handle`]: a result of a command, or something the processor or
/// the application did.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Input<R> {
    /// The whole lease table, all pages, as items.
    LeaseTableScanned {
        /// The request.
        req: RequestId,
        /// Every item, or why the scan failed.
        result: Result<Vec<Item>, Failure>,
    },
    /// A consistent read of one row.
    LeaseRead {
        /// The request.
        req: RequestId,
        /// The item (`None` when absent), or why the read failed.
        result: Result<Option<Item>, Failure>,
    },
    /// A conditional write's outcome.
    LeaseWritten {
        /// The request.
        req: RequestId,
        /// The item after the write when it was asked for, or why the write did not happen.
        result: Result<Option<Item>, Failure>,
    },
    /// ListShards, all pages.
    ShardsListed {
        /// The request.
        req: RequestId,
        /// The shards and when they were listed, or why listing failed.
        result: Result<ShardListing, Failure>,
    },
    /// GetShardIterator.
    IteratorObtained {
        /// The request.
        req: RequestId,
        /// The iterator, or why it could not be had.
        result: Result<Text, Failure>,
    },
    /// GetRecords.
    RecordsFetched {
        /// The request.
        req: RequestId,
        /// The batch, or why the call failed.
        result: Result<FetchedRecords<R>, Failure>,
    },
    /// The processor returned from a call (initialize, process records, shard ended, shutdown
    /// requested).
    ProcessorReturned {
        /// The shard.
        shard: LeaseKey,
        /// The call it returned from.
        call: CallId,
    },
    /// The processor failed (panicked) in a call: the lease is given up, nothing past what it
    /// acknowledged is checkpointed.
    ProcessorFailed {
        /// The shard.
        shard: LeaseKey,
        /// The call it failed in.
        call: CallId,
    },
    /// The processor asks for a checkpoint (or, with `prepare`, a two-phase prepare).
    CheckpointRequested {
        /// The shard.
        shard: LeaseKey,
        /// Echoed in the answer.
        ticket: u64,
        /// The token of the batch the processor is acting on.
        token: FencingToken,
        /// What to checkpoint.
        target: CheckpointTarget,
        /// Only prepare (write `pendingCheckpoint`), do not commit.
        prepare: bool,
        /// Application bytes stored with a prepared checkpoint.
        state: Option<Vec<u8>>,
    },
    /// Commit the prepared checkpoint of a shard.
    CommitPreparedCheckpoint {
        /// The shard.
        shard: LeaseKey,
        /// Echoed in the answer.
        ticket: u64,
        /// The token of the batch the processor is acting on.
        token: FencingToken,
    },
    /// The application asks the worker to shut down: processors checkpoint, leases are handed on.
    ShutdownRequested,
}

/// Why a checkpoint was refused. Every error but [`OutcomeUnknown`](Self::OutcomeUnknown) means
/// the checkpoint was not written.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum CheckpointError {
    /// This worker does not hold the lease (any more), or the token is of an older ownership.
    LeaseLost,
    /// The target is before the current checkpoint.
    Backwards,
    /// The target is beyond the last record delivered.
    BeyondDelivered,
    /// The worker is shutting down and the lease is already being released.
    ShuttingDown,
    /// There is no prepared checkpoint to commit.
    NothingPrepared,
    /// The table throttled the write, which did not land; try again.
    Throttled,
    /// The lease was lost while the write's outcome was unknown (its answer was a timeout or a
    /// 5xx, and no read could settle it): the checkpoint may have landed. While the lease is
    /// held, a write of unknown outcome is sent again or verified, never answered this way.
    OutcomeUnknown,
}

impl core::fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::LeaseLost => "the lease is not held (any more) by this ownership",
            Self::Backwards => "the position is before the current checkpoint",
            Self::BeyondDelivered => "the position is beyond the last record delivered",
            Self::ShuttingDown => "the worker is shutting down and the lease is being released",
            Self::NothingPrepared => "there is no prepared checkpoint to commit",
            Self::Throttled => "the lease table throttled the write, which did not land",
            Self::OutcomeUnknown => {
                "the lease was lost while the write's outcome was unknown: it may have landed"
            }
        })
    }
}

impl core::error::Error for CheckpointError {}

/// A call the driver makes on the record processor of a shard.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum ProcessorCall<R> {
    /// Start processing a shard. Return with [`Input::ProcessorReturned`].
    Initialize {
        /// Where processing resumes.
        checkpoint: Position,
        /// A prepared checkpoint left by a previous owner.
        pending_checkpoint: Option<Position>,
        /// Its application bytes.
        pending_state: Option<Vec<u8>>,
        /// The ownership's fencing token.
        token: FencingToken,
    },
    /// Process a batch. Return with [`Input::ProcessorReturned`].
    ProcessRecords {
        /// The records, in order.
        records: Vec<R>,
        /// `MillisBehindLatest` of the fetch.
        millis_behind_latest: u64,
        /// The ownership's fencing token; hand it to sinks that fence.
        token: FencingToken,
    },
    /// The shard is finished: every record was processed. The library checkpoints `SHARD_END`
    /// after this call returns. Return with [`Input::ProcessorReturned`].
    ShardEnded {
        /// The ownership's fencing token.
        token: FencingToken,
    },
    /// The lease is about to move (handoff or shutdown): checkpoint now if needed, then return
    /// with [`Input::ProcessorReturned`].
    ShutdownRequested {
        /// The ownership's fencing token.
        token: FencingToken,
    },
    /// The lease is gone; stop and do not checkpoint. Needs no return.
    LeaseLost,
    /// The answer to a checkpoint request.
    CheckpointDone {
        /// The request's ticket.
        ticket: u64,
        /// The outcome.
        result: Result<(), CheckpointError>,
    },
}

/// Something worth a log line or a metric; needs no action.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// This worker now holds the lease.
    LeaseAcquired {
        /// Shard.
        shard: LeaseKey,
        /// Its token.
        token: FencingToken,
    },
    /// This worker no longer holds the lease.
    LeaseReleased {
        /// Shard.
        shard: LeaseKey,
        /// Why.
        reason: ReleaseReason,
    },
    /// This worker became the leader (Coordinated).
    BecameLeader,
    /// This worker stopped being the leader.
    LeadershipLost,
    /// A row of the table could not be decoded; it is skipped and left as it is.
    MalformedRow {
        /// Its key, when readable.
        key: Option<String>,
        /// What is wrong.
        error: RowError,
    },
    /// The stream no longer lists a held shard (trimmed past retention, or deleted): it is
    /// finished as if its end had been read. Records it had that were never read are lost.
    ShardGone {
        /// Shard.
        shard: LeaseKey,
    },
    /// The stream refused to start reading a held shard where its lease says
    /// (`InvalidArgumentException` from GetShardIterator, or with enhanced fan-out from the
    /// subscription) although it still lists the shard: the
    /// checkpoint is not of this shard, typically a lease table left over from a deleted stream
    /// of the same name. Nothing is skipped: the shard stays held and the iterator is asked
    /// again after a backoff until the checkpoint is corrected or the shard is gone. Reported
    /// once per run of refusals.
    IteratorRefused {
        /// Shard.
        shard: LeaseKey,
        /// The position refused.
        position: StartingPosition,
        /// The service's message.
        reason: String,
    },
    /// Another live process has this worker's id (`Coordinated`): this one stops at once
    /// (followed by [`Event::Stopped`]) without delivering or writing anything more. A
    /// deployment error: worker ids must be unique per process.
    DuplicateWorkerId {
        /// The id.
        worker: WorkerId,
    },
    /// Every Kinesis call of this worker has gone unanswered (timeouts, connection failures,
    /// 5xx) for [`crate::Config::read_stall_time`] (`Coordinated`): its heartbeat says so, and
    /// the leader moves its leases to workers that can read while the stalled ones are a minority
    /// of the holders. A route, endpoint or DNS fault on this host, or Kinesis failing. Followed
    /// by [`Event::ReadsResumed`] once a call is answered again.
    ReadsStalled,
    /// Kinesis answers this worker again after [`Event::ReadsStalled`].
    ReadsResumed,
    /// The worker has stopped: every lease is released, no more commands will come.
    Stopped,
}

/// Why a lease left this worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum ReleaseReason {
    /// Renewal failed or the delivery window passed.
    Lost,
    /// Handed over gracefully.
    HandedOver,
    /// The shard is finished.
    ShardEnded,
    /// The worker shut down.
    Shutdown,
    /// The processor failed.
    ProcessorFailed,
}

/// A command for the driver.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Command<R> {
    /// Scan the whole lease table; answer with [`Input::LeaseTableScanned`].
    ScanLeaseTable {
        /// The request.
        req: RequestId,
        /// A consistent scan (DynamoDB `ConsistentRead`, twice the read units); `false`, nearly
        /// always, allows an eventually consistent one, which may miss a row written in the
        /// last moments (a leader asks for a consistent one when a scan shows new workers, see
        /// [`crate::protocol`]).
        consistent: bool,
    },
    /// Read one row; answer with [`Input::LeaseRead`].
    ReadLease {
        /// The request.
        req: RequestId,
        /// Its `leaseKey`.
        key: String,
        /// A consistent read (DynamoDB `ConsistentRead`); `false` allows an eventually
        /// consistent one, at half the read units: a row from before the latest write may come
        /// back (only the followers' reads of the leader row ask for that: what they do with the
        /// row is conditional on its counter, see [`crate::protocol`]).
        consistent: bool,
    },
    /// Perform a conditional write; answer with [`Input::LeaseWritten`].
    WriteLease {
        /// The request.
        req: RequestId,
        /// The write.
        write: LeaseWrite,
    },
    /// ListShards (all pages); answer with [`Input::ShardsListed`].
    ListShards {
        /// The request.
        req: RequestId,
    },
    /// GetShardIterator; answer with [`Input::IteratorObtained`].
    GetShardIterator {
        /// The request.
        req: RequestId,
        /// The shard.
        shard: LeaseKey,
        /// Where.
        position: StartingPosition,
    },
    /// GetRecords; answer with [`Input::RecordsFetched`].
    GetRecords {
        /// The request.
        req: RequestId,
        /// The shard.
        shard: LeaseKey,
        /// The iterator. A [`Text`]: asking again with the same iterator (after a throttled
        /// call) copies no string; AWS's iterators are a few hundred bytes.
        iterator: Text,
        /// At most this many records.
        limit: u32,
        /// The shard's hash key range as its lease row records it (`hashKeyRangeForLease`;
        /// `None` when the row has none). A KPL user record whose effective hash key falls
        /// outside it belongs to another shard: the Java KCL drops it, and so may a driver.
        hash_range: Option<HashKeyRange>,
    },
    /// Call the shard's record processor.
    Processor {
        /// The shard.
        shard: LeaseKey,
        /// Correlates the return.
        call: CallId,
        /// What to call.
        action: ProcessorCall<R>,
    },
    /// Something happened.
    Event(Event),
}

impl<R> Command<R> {
    /// The request this command makes, if it is one (processor calls and events are not).
    pub fn request(&self) -> Option<RequestId> {
        match self {
            Self::ScanLeaseTable { req, .. }
            | Self::ReadLease { req, .. }
            | Self::WriteLease { req, .. }
            | Self::ListShards { req }
            | Self::GetShardIterator { req, .. }
            | Self::GetRecords { req, .. } => Some(*req),
            Self::Processor { .. } | Self::Event(_) => None,
        }
    }

    /// The input that reports this request failed with `failure` (a driver's timeout, a
    /// throttled or refused call); `None` for commands that are not requests.
    pub fn failed(&self, failure: Failure) -> Option<Input<R>> {
        let req = self.request()?;
        Some(match self {
            Self::ScanLeaseTable { .. } => Input::LeaseTableScanned {
                req,
                result: Err(failure),
            },
            Self::ReadLease { .. } => Input::LeaseRead {
                req,
                result: Err(failure),
            },
            Self::WriteLease { .. } => Input::LeaseWritten {
                req,
                result: Err(failure),
            },
            Self::ListShards { .. } => Input::ShardsListed {
                req,
                result: Err(failure),
            },
            Self::GetShardIterator { .. } => Input::IteratorObtained {
                req,
                result: Err(failure),
            },
            Self::GetRecords { .. } => Input::RecordsFetched {
                req,
                result: Err(failure),
            },
            Self::Processor { .. } | Self::Event(_) => return None,
        })
    }
}

impl<R> Input<R> {
    /// The same result for the same request, failed with `failure` instead (an answer lost on
    /// its way back becomes the driver's timeout); `None` for inputs that are not results.
    pub fn failed(&self, failure: Failure) -> Option<Input<R>> {
        Some(match self {
            Self::LeaseTableScanned { req, .. } => Self::LeaseTableScanned {
                req: *req,
                result: Err(failure),
            },
            Self::LeaseRead { req, .. } => Self::LeaseRead {
                req: *req,
                result: Err(failure),
            },
            Self::LeaseWritten { req, .. } => Self::LeaseWritten {
                req: *req,
                result: Err(failure),
            },
            Self::ShardsListed { req, .. } => Self::ShardsListed {
                req: *req,
                result: Err(failure),
            },
            Self::IteratorObtained { req, .. } => Self::IteratorObtained {
                req: *req,
                result: Err(failure),
            },
            Self::RecordsFetched { req, .. } => Self::RecordsFetched {
                req: *req,
                result: Err(failure),
            },
            _ => return None,
        })
    }
}

/// Why [`crate::Worker::poll_timeout`] wants to be woken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum TimerReason {
    /// Renew held leases.
    RenewLeases,
    /// Scan the lease table (taker run or leader plan).
    ScanLeaseTable,
    /// Write the worker's heartbeat row.
    Heartbeat,
    /// Read the leader row.
    LeaderCheck,
    /// List shards and create missing leases.
    ShardSync,
    /// A lease's delivery window ends.
    DeliveryWindow,
    /// Fetch records (pacing or backoff).
    Fetch,
    /// Retry a lease write after throttling.
    Retry,
    /// Re-read a blocked child's parents.
    ParentPoll,
    /// Look whether a handoff to this worker completed.
    HandoffPoll,
    /// Give up a handoff that takes too long.
    HandoffTimeout,
    /// Forget a request without a result.
    RequestTimeout,
    /// Give up waiting for processors at shutdown.
    ShutdownTimeout,
    /// The leader scans to fence a worker whose heartbeat may have stood still for the failover
    /// time (worker liveness), and plans from that scan.
    FenceWorkers,
}
