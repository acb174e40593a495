//! The applications: real [`RecordProcessor`]s, one per shard ownership, that take simulated
//! time to process a batch, write their results to the downstream sink under their fencing
//! token, checkpoint through the [`Checkpointer`] they are handed, and under injected processor
//! failures panic or hang.
//!
//! What the checkers see of them: an ownership starting (`initialize`), every batch while its
//! `process_records` call runs (exclusivity is judged over running calls), a shard's end told,
//! and every checkpoint request from the moment it is made to its answer.

use futures_util::future::join_all;
use kcl_aws::{Batch, Checkpointer, Initialize, ProcessorFactory, RecordProcessor};
use kcl_core::{CheckpointError, CheckpointTarget, FencingToken, LeaseKey, Position};

use super::backends::Link;
use super::world::SharedWorld;
use crate::fleet::mixed::{self, Ask, Behaviour, BEHAVIOURS};
use crate::record::SimRecord;

/// The payload of an injected processor panic; the simulator's panic hook keeps it quiet.
pub(crate) const INJECTED_PANIC: &str = "kcl-sim: injected processor failure";

/// How the applications behave.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AppConfig {
    /// How long a batch takes (ms), uniform in this range.
    pub process_ms: (u64, u64),
    /// Checkpoint after every this many batches.
    pub checkpoint_every: u32,
    /// Each ownership draws one of the mixed behaviours (`--processors mixed`).
    pub mixed: bool,
}

/// How a batch fails.
enum Failure {
    /// The call panics (the driver catches it and gives the lease up).
    Panic,
    /// The call never returns (the driver cancels it after its processor call timeout).
    Hang,
}

/// Makes one process's processors.
pub(crate) struct Factory {
    pub link: Link,
    /// The process's incarnation (the checkpoint ledger's key).
    pub inc: u64,
    pub config: AppConfig,
}

impl ProcessorFactory<SimRecord> for Factory {
    type Processor = App;
    fn create(&self, shard: &LeaseKey) -> App {
        App {
            link: self.link.clone(),
            inc: self.inc,
            config: self.config,
            shard: shard.clone(),
            batches: 0,
            mixed: None,
            kept: None,
        }
    }
}

/// One shard's processor.
pub(crate) struct App {
    link: Link,
    inc: u64,
    config: AppConfig,
    shard: LeaseKey,
    batches: u32,
    /// Under mixed behaviours: the ownership's drawn behaviour and what it has seen.
    mixed: Option<mixed::App>,
    /// A clone of the checkpointer, kept by a processor that checkpoints after losing the lease.
    kept: Option<Checkpointer>,
}

/// A `process_records` call under way, as the checkers know it; ends however the call does
/// (returns, panics, is dropped with its process).
struct Processing {
    world: SharedWorld,
    node: usize,
    shard: LeaseKey,
    token: FencingToken,
}

impl Drop for Processing {
    fn drop(&mut self) {
        self.world
            .lock()
            .processing_ended(self.node, &self.shard, self.token);
    }
}

/// A checkpoint request waiting for its answer; dropped while waiting (the call was cancelled,
/// or its process died), the request is withdrawn.
struct Waiting<'a> {
    world: &'a SharedWorld,
    key: (usize, u64),
    /// 0 once answered.
    ticket: u64,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.ticket != 0 {
            self.world
                .lock()
                .checkpoints
                .withdrawn(self.key, self.ticket);
        }
    }
}

impl App {
    async fn work(&self, ms: u64) {
        let exec = &self.link.exec;
        exec.sleep_until(exec.now_ms() + ms).await;
    }

    /// A checkpoint of everything delivered, with its request and answer in the ledger.
    async fn checkpoint(&self, checkpointer: &Checkpointer) -> Result<(), CheckpointError> {
        let to = self
            .mixed
            .as_ref()
            .and_then(|m| m.commit_to(&last_delivered()));
        ask(&self.link, self.inc, checkpointer, last_delivered(), to).await
    }

    /// The mixed behaviours' requests after a batch: a clone's request from a task of its own,
    /// the others in order from this call, each queued before the first is answered.
    async fn ask_mixed(&mut self, asks: Vec<Ask>, checkpointer: &Checkpointer) {
        let Some(app) = self.mixed.as_ref() else {
            return;
        };
        let asks: Vec<(Ask, Option<Position>)> = asks
            .into_iter()
            .map(|a| {
                let to = app.commit_to(&a);
                (a, to)
            })
            .collect();
        let mut own = Vec::new();
        for (i, (a, to)) in asks.into_iter().enumerate() {
            if app.behaviour == Behaviour::CloneRace && i > 0 {
                let (link, inc, clone) = (self.link.clone(), self.inc, checkpointer.clone());
                self.link.exec.spawn(async move {
                    let _ = ask(&link, inc, &clone, a, to).await;
                });
            } else {
                own.push(ask(&self.link, self.inc, checkpointer, a, to));
            }
        }
        join_all(own).await;
    }
}

fn last_delivered() -> Ask {
    Ask::Commit(CheckpointTarget::LastDelivered)
}

/// One checkpoint request through `checkpointer`, with its request and answer in the ledger
/// (`to`: where a commit would put the checkpoint, when the processor knows it).
async fn ask(
    link: &Link,
    inc: u64,
    checkpointer: &Checkpointer,
    ask: Ask,
    to: Option<Position>,
) -> Result<(), CheckpointError> {
    let node = link.node;
    let shard = checkpointer.shard();
    let ticket = {
        let mut w = link.world.lock();
        let ticket = w.ticket();
        let now = w.now;
        w.checkpoints.asked(now, (node, inc), ticket, shard, to);
        ticket
    };
    let mut waiting = Waiting {
        world: &link.world,
        key: (node, inc),
        ticket,
    };
    let result = match ask {
        Ask::Commit(CheckpointTarget::LastDelivered) => checkpointer.checkpoint().await,
        Ask::Commit(CheckpointTarget::At(p)) => checkpointer.checkpoint_at(p).await,
        Ask::Prepare(target, state) => checkpointer.prepare(target, Some(state)).await,
        Ask::CommitPrepared => checkpointer.commit_prepared().await,
    };
    waiting.ticket = 0;
    let mut w = link.world.lock();
    let now = w.now;
    let in_table = w.table_checkpoint(shard);
    let wrong = w
        .checkpoints
        .answered((node, inc), ticket, &result, |_| in_table);
    if let Some(what) = wrong {
        w.checker.violation(now, what);
    }
    result
}

impl RecordProcessor<SimRecord> for App {
    async fn initialize(&mut self, init: &Initialize) {
        let mut w = self.link.world.lock();
        if self.config.mixed {
            let behaviour = BEHAVIOURS[w.rng.index(BEHAVIOURS.len())];
            self.mixed = Some(mixed::App::new(behaviour, init.token));
        }
        w.checker.initialized(
            &self.link.worker,
            &init.shard,
            init.token,
            init.checkpoint.clone(),
        );
    }

    async fn process_records(&mut self, batch: Batch<SimRecord>, checkpointer: &Checkpointer) {
        let (ms, fail) = {
            let mut w = self.link.world.lock();
            w.processing_started(
                self.link.node,
                &self.link.worker,
                &batch.shard,
                batch.token,
                &batch.records,
            );
            let (lo, hi) = match &self.mixed {
                Some(app) if app.behaviour == Behaviour::Slow => (500, 4_000),
                _ => self.config.process_ms,
            };
            let ms = w.rng.between(lo, hi);
            // A failing batch panics or, as often, hangs until the driver cancels it.
            let fail = (w.rng.below(1000) < w.processor_failure_per_mille).then(|| {
                if w.rng.below(2) == 0 {
                    Failure::Panic
                } else {
                    w.processor_hangs += 1;
                    Failure::Hang
                }
            });
            (ms, fail)
        };
        let _processing = Processing {
            world: self.link.world.clone(),
            node: self.link.node,
            shard: batch.shard.clone(),
            token: batch.token,
        };
        self.work(ms).await;
        match fail {
            Some(Failure::Panic) => std::panic::panic_any(INJECTED_PANIC),
            Some(Failure::Hang) => std::future::pending::<()>().await,
            None => {}
        }
        if !batch.records.is_empty() {
            self.link.world.lock().sink_write(
                self.link.node,
                &self.link.worker,
                &batch.shard,
                batch.token,
            );
        }
        if let Some(app) = &mut self.mixed {
            let asks = app.processed(batch.records.iter().map(|r| &r.position));
            if app.behaviour == Behaviour::AfterLoss {
                self.kept = Some(checkpointer.clone());
            }
            self.ask_mixed(asks, checkpointer).await;
            return;
        }
        self.batches += 1;
        if self
            .batches
            .is_multiple_of(self.config.checkpoint_every.max(1))
        {
            let _ = self.checkpoint(checkpointer).await;
        }
    }

    /// A processor that checkpoints from another task asks once more, a little later, with the
    /// checkpointer of the ownership that ended.
    async fn lease_lost(&mut self) {
        let Some(app) = self.mixed.take() else {
            return;
        };
        let (Some(last), Some(checkpointer)) = (app.last, self.kept.take()) else {
            return;
        };
        let later = self.link.world.lock().rng.between(1, 2_000);
        let (link, inc) = (self.link.clone(), self.inc);
        self.link.exec.spawn(async move {
            link.exec.sleep_until(link.exec.now_ms() + later).await;
            let to = Some(Position::Record(last.clone()));
            let at = Ask::Commit(CheckpointTarget::At(last));
            let _ = ask(&link, inc, &checkpointer, at, to).await;
        });
    }

    async fn shard_ended(&mut self, _checkpointer: &Checkpointer) {
        self.link
            .world
            .lock()
            .checker
            .shard_ended_told(&self.link.worker, &self.shard);
    }

    async fn shutdown_requested(&mut self, checkpointer: &Checkpointer) {
        let _ = self.checkpoint(checkpointer).await;
    }
}
