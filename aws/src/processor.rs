//! The application's side: a record processor per shard, and the checkpointer it is handed.

use core::future::Future;

use futures_channel::mpsc::UnboundedSender;
use futures_channel::oneshot;
use kcl_core::{
    CheckpointError, CheckpointTarget, FencingToken, LeaseKey, Position, RecordPosition,
};

/// How a shard's processing starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Initialize {
    /// The shard.
    pub shard: LeaseKey,
    /// Where processing resumes: everything up to here was processed by earlier owners.
    pub checkpoint: Position,
    /// A checkpoint an earlier owner prepared but did not commit (two-phase checkpoints).
    pub pending_checkpoint: Option<Position>,
    /// Its application bytes.
    pub pending_state: Option<Vec<u8>>,
    /// This ownership's fencing token: it grows with every change of owner, so a sink that
    /// remembers the highest token per shard can refuse writes of an owner that lost its lease.
    pub token: FencingToken,
}

/// One batch of records of a shard, in order.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch<R> {
    /// The shard.
    pub shard: LeaseKey,
    /// The records.
    pub records: Vec<R>,
    /// How far behind the newest record of the shard this batch is.
    pub millis_behind_latest: u64,
    /// The ownership's fencing token (see [`Initialize::token`]).
    pub token: FencingToken,
}

/// The processor of one shard. One instance per ownership of a shard: it is created when the
/// worker starts processing the shard and dropped when the lease leaves the worker. Calls come one
/// at a time, in order. A panic in any call gives the lease up cleanly: nothing past what the
/// processor checkpointed is recorded, and another owner (or this worker, later) resumes there.
///
/// A call still running when its lease's window ends (the worker could not renew the lease in
/// time, so another worker may hold it now), or when the lease is found lost, is cancelled: its
/// future is dropped at the await point it is waiting at, the lease is given up, and the
/// processor is then told [`lease_lost`](Self::lease_lost). Write calls so that stopping at any
/// await is safe (what was not checkpointed is delivered again to the next owner anyway), and pass
/// the batch's fencing token to your sink so that it can refuse a lost owner's writes; code that
/// blocks without awaiting cannot be stopped.
pub trait RecordProcessor<R>: Send + 'static {
    /// Processing of a shard starts.
    fn initialize(&mut self, init: &Initialize) -> impl Future<Output = ()> + Send;

    /// Process a batch. Checkpoint through `checkpointer` when the records are safely handled;
    /// records after the last checkpoint may be delivered again to the next owner.
    fn process_records(
        &mut self,
        batch: Batch<R>,
        checkpointer: &Checkpointer,
    ) -> impl Future<Output = ()> + Send;

    /// The lease was lost (another worker holds it now, or it expired): stop, and do not
    /// checkpoint; the next owner resumes from the last checkpoint.
    fn lease_lost(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// Every record of the (closed) shard was processed. The library checkpoints `SHARD_END`
    /// after this returns, so the children may start.
    fn shard_ended(&mut self, checkpointer: &Checkpointer) -> impl Future<Output = ()> + Send {
        let _ = checkpointer;
        async {}
    }

    /// The lease is about to move to another worker, or this worker shuts down. The default
    /// checkpoints everything delivered (every batch has returned by now, so it was processed).
    fn shutdown_requested(
        &mut self,
        checkpointer: &Checkpointer,
    ) -> impl Future<Output = ()> + Send {
        async move {
            if let Err(e) = checkpointer.checkpoint().await {
                tracing::warn!(shard = %checkpointer.shard(), error = ?e, "final checkpoint refused");
            }
        }
    }
}

/// Makes the processor of each shard a worker starts processing.
pub trait ProcessorFactory<R>: Send + Sync + 'static {
    /// The processors it makes.
    type Processor: RecordProcessor<R>;
    /// A processor for `shard`.
    fn create(&self, shard: &LeaseKey) -> Self::Processor;
}

impl<R, P, F> ProcessorFactory<R> for F
where
    F: Fn(&LeaseKey) -> P + Send + Sync + 'static,
    P: RecordProcessor<R>,
{
    type Processor = P;
    fn create(&self, shard: &LeaseKey) -> P {
        self(shard)
    }
}

/// A processor's request to the driver.
#[derive(Debug)]
pub(crate) enum CheckpointRequest {
    Checkpoint {
        target: CheckpointTarget,
        prepare: bool,
        state: Option<Vec<u8>>,
    },
    CommitPrepared,
}

/// What a processor or the application tells the driver.
#[derive(Debug)]
pub(crate) enum Message {
    Checkpoint {
        shard: LeaseKey,
        token: FencingToken,
        request: CheckpointRequest,
        reply: oneshot::Sender<Result<(), CheckpointError>>,
    },
    /// A processor call returned.
    Returned {
        shard: LeaseKey,
        call: kcl_core::CallId,
    },
    /// A processor call panicked.
    Failed {
        shard: LeaseKey,
        call: kcl_core::CallId,
    },
    /// The application asks the worker to stop.
    Shutdown,
}

/// Records progress of one shard in the lease table. Valid for the ownership (fencing token) it
/// was handed with; after the lease moves every call answers [`CheckpointError::LeaseLost`].
///
/// Clones may be used from other tasks. Requests are written one at a time, in the order they
/// reach the worker, and the checkpoint never moves backwards: each position is judged when its
/// turn to be written comes, so a request behind a newer one that landed first is answered
/// [`CheckpointError::Backwards`], and [`commit_prepared`](Self::commit_prepared) commits what is
/// prepared at that moment. A write whose answer was lost (a timeout, a 5xx) is sent again or
/// verified until its outcome is known; only if the lease is lost meanwhile is the answer
/// [`CheckpointError::OutcomeUnknown`] (it may have landed). Every other error means nothing
/// was written.
#[derive(Clone, Debug)]
pub struct Checkpointer {
    shard: LeaseKey,
    token: FencingToken,
    driver: UnboundedSender<Message>,
}

impl Checkpointer {
    pub(crate) fn new(
        shard: LeaseKey,
        token: FencingToken,
        driver: UnboundedSender<Message>,
    ) -> Self {
        Self {
            shard,
            token,
            driver,
        }
    }

    /// The shard.
    pub fn shard(&self) -> &LeaseKey {
        &self.shard
    }

    /// The ownership's fencing token.
    pub fn token(&self) -> FencingToken {
        self.token
    }

    /// Checkpoints every record delivered so far.
    pub async fn checkpoint(&self) -> Result<(), CheckpointError> {
        self.send(CheckpointRequest::Checkpoint {
            target: CheckpointTarget::LastDelivered,
            prepare: false,
            state: None,
        })
        .await
    }

    /// Checkpoints up to and including the record at `position` (it must have been delivered).
    pub async fn checkpoint_at(&self, position: RecordPosition) -> Result<(), CheckpointError> {
        self.send(CheckpointRequest::Checkpoint {
            target: CheckpointTarget::At(position),
            prepare: false,
            state: None,
        })
        .await
    }

    /// Two-phase checkpoint, first phase: records `target` (and `state`) as pending without
    /// moving the checkpoint. A later owner sees it in [`Initialize::pending_checkpoint`].
    pub async fn prepare(
        &self,
        target: CheckpointTarget,
        state: Option<Vec<u8>>,
    ) -> Result<(), CheckpointError> {
        self.send(CheckpointRequest::Checkpoint {
            target,
            prepare: true,
            state,
        })
        .await
    }

    /// Two-phase checkpoint, second phase: moves the checkpoint to the prepared position.
    pub async fn commit_prepared(&self) -> Result<(), CheckpointError> {
        self.send(CheckpointRequest::CommitPrepared).await
    }

    async fn send(&self, request: CheckpointRequest) -> Result<(), CheckpointError> {
        let (reply, answer) = oneshot::channel();
        let message = Message::Checkpoint {
            shard: self.shard.clone(),
            token: self.token,
            request,
            reply,
        };
        if self.driver.unbounded_send(message).is_err() {
            return Err(CheckpointError::ShuttingDown);
        }
        answer.await.unwrap_or(Err(CheckpointError::ShuttingDown))
    }
}
