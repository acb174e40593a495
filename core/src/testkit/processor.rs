//! How a simulated record processor ends a call, shared by the core's cluster and kcl-sim.

use alloc::vec::Vec;

use crate::io::{CallId, CheckpointTarget, FencingToken, Input};
use crate::lease::LeaseKey;

/// How a simulated record processor ends a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcessorOutcome {
    /// It returns.
    Returned,
    /// It checkpoints everything delivered so far, then returns.
    Checkpoint,
    /// It fails (panics).
    Failed,
}

impl ProcessorOutcome {
    /// What the application tells the worker, in order, when the call ends.
    pub fn inputs<R>(self, shard: LeaseKey, call: CallId, token: FencingToken) -> Vec<Input<R>> {
        match self {
            Self::Failed => alloc::vec![Input::ProcessorFailed { shard, call }],
            Self::Returned => alloc::vec![Input::ProcessorReturned { shard, call }],
            Self::Checkpoint => alloc::vec![
                Input::CheckpointRequested {
                    shard: shard.clone(),
                    ticket: call.0,
                    token,
                    target: CheckpointTarget::LastDelivered,
                    prepare: false,
                    state: None,
                },
                Input::ProcessorReturned { shard, call },
            ],
        }
    }
}
