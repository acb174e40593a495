//! The mixed record processors (`--processors mixed`): each ownership of a shard draws a
//! behaviour from the seed when it is initialized, and every checkpoint request goes through
//! the [`CheckpointLedger`](crate::checkpoints::CheckpointLedger).
//!
//! The behaviours are the ways real applications checkpoint that a simple processor never
//! tries: a processor and its clone asking out of order, two-phase prepare and commit with
//! application state (a commit sometimes queued behind a newer checkpoint), batches slower
//! than a renewal, and a task that checkpoints after the lease was lost.

use super::*;
use kcl_core::io::CheckpointTarget;
use kcl_core::protocol::CheckpointKind;
use kcl_core::{Position, RecordPosition};

/// How one ownership's processor behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Behaviour {
    /// Checkpoints what was delivered after every third batch.
    Simple,
    /// After every third batch, checkpoints the batch's last record and, from a clone, its
    /// first: the clone's request is behind the first one's.
    CloneRace,
    /// Prepares the last record with application state after one batch and commits the
    /// prepared checkpoint after the next; every other time a newer checkpoint is asked first.
    TwoPhase,
    /// Takes 0.5 to 4 s per batch (longer than a renewal interval), checkpoints as `Simple`.
    Slow,
    /// As `Simple`, and after the lease is lost another task still asks for a checkpoint with
    /// the old token.
    AfterLoss,
}

pub(crate) const BEHAVIOURS: [Behaviour; 5] = [
    Behaviour::Simple,
    Behaviour::CloneRace,
    Behaviour::TwoPhase,
    Behaviour::Slow,
    Behaviour::AfterLoss,
];

/// One ownership's processor: what it has seen, and so what it asks (the same in event and
/// driver mode).
#[derive(Clone, Debug)]
pub(crate) struct App {
    pub(crate) behaviour: Behaviour,
    batches: u32,
    pub(crate) token: FencingToken,
    /// The last record delivered, and the first of the last batch.
    pub(crate) last: Option<RecordPosition>,
    first_of_batch: Option<RecordPosition>,
}

/// One checkpoint request.
pub(crate) enum Ask {
    Commit(CheckpointTarget),
    Prepare(CheckpointTarget, Vec<u8>),
    CommitPrepared,
}

impl App {
    /// A new ownership's processor under `token`.
    pub(crate) fn new(behaviour: Behaviour, token: FencingToken) -> Self {
        Self {
            behaviour,
            batches: 0,
            token,
            last: None,
            first_of_batch: None,
        }
    }

    /// A batch was processed: what the processor asks now.
    pub(crate) fn processed<'a>(
        &mut self,
        records: impl IntoIterator<Item = &'a RecordPosition>,
    ) -> Vec<Ask> {
        self.batches += 1;
        let mut records = records.into_iter();
        if let Some(first) = records.next() {
            self.first_of_batch = Some(first.clone());
            self.last = Some(records.last().unwrap_or(first).clone());
        }
        self.asks()
    }

    /// What the processor asks after its latest batch.
    fn asks(&self) -> Vec<Ask> {
        let n = self.batches;
        let last = || CheckpointTarget::LastDelivered;
        match self.behaviour {
            Behaviour::Simple | Behaviour::Slow | Behaviour::AfterLoss if n.is_multiple_of(3) => {
                vec![Ask::Commit(last())]
            }
            Behaviour::CloneRace if n.is_multiple_of(3) => match (&self.last, &self.first_of_batch)
            {
                (Some(l), Some(f)) => vec![
                    Ask::Commit(CheckpointTarget::At(l.clone())),
                    Ask::Commit(CheckpointTarget::At(f.clone())),
                ],
                _ => Vec::new(),
            },
            Behaviour::TwoPhase => match n % 6 {
                1 | 4 => vec![Ask::Prepare(last(), n.to_be_bytes().to_vec())],
                2 => vec![Ask::Commit(last()), Ask::CommitPrepared],
                5 => vec![Ask::CommitPrepared],
                _ => Vec::new(),
            },
            _ => Vec::new(),
        }
    }

    /// Where a commit would put the checkpoint, when the processor knows it.
    pub(crate) fn commit_to(&self, ask: &Ask) -> Option<Position> {
        match ask {
            Ask::Commit(CheckpointTarget::At(p)) => Some(Position::Record(p.clone())),
            Ask::Commit(CheckpointTarget::LastDelivered) => self.last.clone().map(Position::Record),
            _ => None,
        }
    }
}

impl Fleet {
    pub(super) fn mixed_processor(
        &mut self,
        node: NodeId,
        inc: u64,
        shard: LeaseKey,
        call: CallId,
        action: ProcessorCall<SimRecord>,
    ) {
        let (lo, hi) = self.cfg.process_ms;
        let mut delay = self.rng.between(lo, hi);
        let mut asks = Vec::new();
        let mut token = FencingToken(0);
        let returned = match action {
            ProcessorCall::CheckpointDone { ticket, result } => {
                return self.checkpoint_answered(node, inc, ticket, &result)
            }
            ProcessorCall::LeaseLost => return self.lease_lost(node, inc, shard, call),
            ProcessorCall::Initialize { token: t, .. } => {
                let behaviour = BEHAVIOURS[self.rng.index(BEHAVIOURS.len())];
                self.nodes[node]
                    .apps
                    .insert(shard.clone(), App::new(behaviour, t));
                Input::ProcessorReturned {
                    shard: shard.clone(),
                    call,
                }
            }
            ProcessorCall::ProcessRecords {
                records, token: t, ..
            } => {
                token = t;
                if self.rng.below(1000) < self.processor_failure_per_mille {
                    Input::ProcessorFailed {
                        shard: shard.clone(),
                        call,
                    }
                } else {
                    let app = self.nodes[node]
                        .apps
                        .entry(shard.clone())
                        .or_insert_with(|| App::new(Behaviour::Simple, t));
                    asks = app.processed(records.iter().map(|r| &r.position));
                    if app.behaviour == Behaviour::Slow {
                        delay = self.rng.between(500, 4_000);
                    }
                    Input::ProcessorReturned {
                        shard: shard.clone(),
                        call,
                    }
                }
            }
            ProcessorCall::ShutdownRequested { token: t } => {
                token = t;
                asks.push(Ask::Commit(CheckpointTarget::LastDelivered));
                Input::ProcessorReturned {
                    shard: shard.clone(),
                    call,
                }
            }
            ProcessorCall::ShardEnded { .. } => Input::ProcessorReturned {
                shard: shard.clone(),
                call,
            },
            _ => return,
        };
        let mut inputs = self.checkpoint_inputs(node, inc, &shard, call, token, asks);
        inputs.push(returned);
        self.schedule(self.now + delay, Ev::ProcInputs { node, inc, inputs });
    }

    /// The requests as the worker's inputs, each entered in the ledger. Tickets are the call's
    /// number times four plus the request's place: unique within an incarnation.
    fn checkpoint_inputs(
        &mut self,
        node: NodeId,
        inc: u64,
        shard: &LeaseKey,
        call: CallId,
        token: FencingToken,
        asks: Vec<Ask>,
    ) -> Vec<Input<SimRecord>> {
        let mut inputs = Vec::with_capacity(asks.len() + 1);
        for (k, ask) in (0u64..).zip(asks) {
            let ticket = call.0 * 4 + k;
            let commit_to = self.nodes[node]
                .apps
                .get(shard)
                .and_then(|app| app.commit_to(&ask));
            self.checkpoints
                .asked(self.now, (node, inc), ticket, shard, commit_to);
            inputs.push(match ask {
                Ask::CommitPrepared => Input::CommitPreparedCheckpoint {
                    shard: shard.clone(),
                    ticket,
                    token,
                },
                Ask::Commit(target) => {
                    checkpoint(shard, ticket, token, target, CheckpointKind::Commit)
                }
                Ask::Prepare(target, state) => checkpoint(
                    shard,
                    ticket,
                    token,
                    target,
                    CheckpointKind::Prepare { state: Some(state) },
                ),
            });
        }
        inputs
    }

    /// The lease was lost; a processor that checkpoints from another task asks once more, a
    /// little later, with the token of the ownership that ended.
    fn lease_lost(&mut self, node: NodeId, inc: u64, shard: LeaseKey, call: CallId) {
        let Some(app) = self.nodes[node].apps.remove(&shard) else {
            return;
        };
        if app.behaviour != Behaviour::AfterLoss {
            return;
        }
        let Some(last) = app.last else {
            return;
        };
        let asks = vec![Ask::Commit(CheckpointTarget::At(last))];
        let inputs = self.checkpoint_inputs(node, inc, &shard, call, app.token, asks);
        let later = self.now + self.rng.between(1, 2_000);
        self.schedule(later, Ev::ProcInputs { node, inc, inputs });
    }
}

fn checkpoint(
    shard: &LeaseKey,
    ticket: u64,
    token: FencingToken,
    target: CheckpointTarget,
    kind: CheckpointKind,
) -> Input<SimRecord> {
    let (prepare, state) = match kind {
        CheckpointKind::Commit => (false, None),
        CheckpointKind::Prepare { state } => (true, state),
    };
    Input::CheckpointRequested {
        shard: shard.clone(),
        ticket,
        token,
        target,
        prepare,
        state,
    }
}
