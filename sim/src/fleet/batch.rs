//! The engine's step: every event due at one instant, as one batch in three phases.
//!
//! 1. **Services.** Calls arriving at DynamoDB and Kinesis are applied, in queue order.
//! 2. **Workers.** Every worker with an input or a due timer takes one step: `handle` or
//!    `handle_timeout`, then its commands and next deadline are drained. A step reads and writes
//!    only its own worker, so the steps of distinct workers are independent of each other and
//!    of phase 1, and run on a second thread beside it when the fleet has one ([`Pool`]). The
//!    helper starts on each step as soon as it is gathered, before phase 1 begins.
//! 3. **Effects,** in queue order: each step's commands are carried out (the random latency,
//!    the processors and the checkers see them here), its wake-up is scheduled, and events that
//!    had to wait (a paused process, a lost answer) are put back on the queue. A step's effects
//!    need only that step to have run, so with a helper they begin with the first step's while
//!    the helper still runs later ones. The one effect that looks at other workers, the
//!    exclusivity check of a delivery, first takes back the steps of the workers it will look
//!    at: every worker it sees has taken its step of the batch, as without a helper.
//!
//! A second event for a worker that already steps in the batch waits for the next batch at the
//! same instant, so a worker sees its inputs one at a time and in order. Events that reach into
//! the fleet itself (faults, the producer, samples, restarts) run alone, between batches. Which
//! thread ran a step never shows: the order of every random draw, command and check is fixed by
//! the queue, so a seed gives the same report with one thread or two.

use super::pool::Pool;
use super::*;

/// A worker's part of a batch: the worker itself (out of its node while it steps), what it
/// handles, and what came out.
pub(super) struct Step {
    node: NodeId,
    local: Instant,
    worker: Box<Worker<SimRecord>>,
    work: Work,
    commands: Vec<Command<SimRecord>>,
    deadline: Option<Instant>,
}

enum Work {
    Timeout,
    Input(Input<SimRecord>),
    /// A processor call ended: what the application tells the worker, in order.
    Inputs(Vec<Input<SimRecord>>),
}

impl Step {
    /// The pure part: one worker's step, on whichever thread.
    pub(super) fn run(&mut self) {
        let w = &mut self.worker;
        match core::mem::replace(&mut self.work, Work::Timeout) {
            Work::Timeout => w.handle_timeout(self.local),
            Work::Input(input) => w.handle(self.local, input),
            Work::Inputs(inputs) => {
                for input in inputs {
                    w.handle(self.local, input);
                }
            }
        }
        self.deadline = drain(w, &mut self.commands);
    }
}

/// A worker's commands, in the order decided, into `commands`; then its next deadline.
pub(super) fn drain(
    worker: &mut Worker<SimRecord>,
    commands: &mut Vec<Command<SimRecord>>,
) -> Option<Instant> {
    while let Some(cmd) = worker.poll_command() {
        commands.push(cmd);
    }
    worker.poll_timeout().map(|(at, _)| at)
}

/// What phase 3 does for one event of the batch, in queue order.
enum Effect {
    /// The effects of `steps[i]`.
    Step(usize),
    /// An event that waits: back on the queue.
    Later(u64, Ev),
}

/// A step's commands and next deadline, for phase 3.
type Outcome = (NodeId, Vec<Command<SimRecord>>, Option<Instant>);

/// Command lists kept for reuse.
const SPARE_COMMAND_LISTS: usize = 256;

/// One instant's batch, as it is gathered.
#[derive(Default)]
pub(super) struct Batch {
    services: Vec<Ev>,
    /// Without a pool: the steps, by number (taken out as their effects begin).
    steps: Vec<Option<Step>>,
    /// Steps gathered so far (those handed to the pool as they were gathered included).
    stepped: usize,
    effects: Vec<Effect>,
    /// Steps taken back ahead of their turn in phase 3, by number.
    early: Vec<Option<Outcome>>,
    /// Emptied command lists of earlier steps, still allocated.
    spare_commands: Vec<Vec<Command<SimRecord>>>,
}

impl Batch {
    pub(super) fn is_empty(&self) -> bool {
        self.services.is_empty() && self.effects.is_empty()
    }
}

/// Whether a worker event steps now.
enum Readiness {
    Step,
    /// A dead incarnation's event.
    Drop,
    /// Waits: for the end of a pause, or for the next batch when the worker already steps.
    Wait(u64),
}

impl Fleet {
    /// Whether an event belongs in a batch; the others run alone.
    pub(super) fn batched(ev: &Ev) -> bool {
        matches!(
            ev,
            Ev::Wake { .. }
                | Ev::AtService { .. }
                | Ev::ScanPage { .. }
                | Ev::Answer { .. }
                | Ev::Deliver { .. }
                | Ev::ProcDone { .. }
                | Ev::ProcInputs { .. }
        )
    }

    /// Adds an event due now to the batch. With a pool, a step is handed to it at once, so
    /// the helper starts stepping workers while this thread still gathers.
    pub(super) fn gather(&mut self, batch: &mut Batch, ev: Ev, pool: Option<&Pool<Step>>) {
        let (node, inc) = match &ev {
            Ev::AtService { .. } | Ev::ScanPage { .. } => return batch.services.push(ev),
            Ev::Answer { node, inc, .. }
            | Ev::Wake { node, inc, .. }
            | Ev::Deliver { node, inc, .. }
            | Ev::ProcDone { node, inc, .. }
            | Ev::ProcInputs { node, inc, .. } => (*node, *inc),
            _ => return,
        };
        // An answer the partition cut off never arrives: the driver reports the call failed.
        let ev = match ev {
            Ev::Answer {
                sent,
                service,
                input,
                ..
            } if self.partitioned(node, service) => {
                let failed = input.failed(Failure::Transient);
                if let Some((at, ev)) = self.timed_out(node, inc, sent, failed) {
                    batch.effects.push(Effect::Later(at, ev));
                }
                return;
            }
            ev => ev,
        };
        match self.readiness(node, inc) {
            Readiness::Step => {}
            Readiness::Drop => return,
            Readiness::Wait(at) => {
                // An answer that got through waits as delivered: it crossed the network already.
                let ev = match ev {
                    Ev::Answer {
                        node, inc, input, ..
                    } => Ev::Deliver { node, inc, input },
                    ev => ev,
                };
                return batch.effects.push(Effect::Later(at, ev));
            }
        }
        let work = match ev {
            Ev::Wake { due, .. } => {
                if self.nodes[node].wake_at != Some(due) {
                    return;
                }
                self.nodes[node].wake_at = None;
                Work::Timeout
            }
            Ev::Deliver { input, .. } | Ev::Answer { input, .. } => Work::Input(input),
            Ev::ProcDone {
                shard,
                call,
                token,
                outcome,
                ..
            } => Work::Inputs(outcome.inputs(shard, call, token)),
            Ev::ProcInputs { inputs, .. } => Work::Inputs(inputs),
            _ => return,
        };
        let n = &mut self.nodes[node];
        let Some(worker) = n.worker.take() else {
            return;
        };
        let index = batch.stepped;
        n.stepping = Some(index);
        batch.stepped += 1;
        batch.effects.push(Effect::Step(index));
        let step = Step {
            node,
            local: n.clock.local(self.now),
            worker,
            work,
            commands: batch.spare_commands.pop().unwrap_or_default(),
            deadline: None,
        };
        match pool {
            Some(pool) => pool.submit(index, step),
            None => batch.steps.push(Some(step)),
        }
    }

    fn readiness(&self, node: NodeId, inc: u64) -> Readiness {
        let n = &self.nodes[node];
        if n.stepping.is_some() {
            Readiness::Wait(self.now)
        } else if !self.node_live(node, inc) {
            Readiness::Drop
        } else if self.now < n.paused_until {
            Readiness::Wait(n.paused_until)
        } else {
            Readiness::Step
        }
    }

    /// Runs a gathered batch through its three phases.
    pub(super) fn run_batch(&mut self, batch: &mut Batch, pool: Option<&Pool<Step>>) {
        // The batch's vectors go back into it emptied: their capacity serves the next batch.
        let mut services = core::mem::take(&mut batch.services);
        self.serve_all(&mut services);
        batch.services = services;
        if pool.is_none() {
            batch.steps.iter_mut().flatten().for_each(Step::run);
        }
        batch.early.clear();
        batch.early.resize_with(batch.stepped, || None);
        batch.stepped = 0;
        let mut effects = core::mem::take(&mut batch.effects);
        for effect in effects.drain(..) {
            match effect {
                Effect::Step(i) => {
                    let (node, mut commands, deadline) = match batch.early[i].take() {
                        Some(outcome) => outcome,
                        None => self.take_step(&mut batch.steps, i, pool),
                    };
                    self.take_deliverers(batch, &commands, pool);
                    for cmd in commands.drain(..) {
                        self.command(node, cmd);
                    }
                    if batch.spare_commands.len() < SPARE_COMMAND_LISTS {
                        batch.spare_commands.push(commands);
                    }
                    self.arm_wake(node, deadline);
                }
                Effect::Later(at, ev) => self.schedule(at, ev),
            }
        }
        batch.effects = effects;
        batch.steps.clear();
    }

    /// Step `i`, run, with its worker back in its node.
    fn take_step(
        &mut self,
        steps: &mut [Option<Step>],
        i: usize,
        pool: Option<&Pool<Step>>,
    ) -> Outcome {
        let step = match pool {
            Some(pool) => pool.take(i, Step::run),
            // Every step is taken once: a second take is a bug in this file.
            None => steps[i]
                .take()
                .unwrap_or_else(|| unreachable!("step {i} taken twice")),
        };
        let n = &mut self.nodes[step.node];
        n.worker = Some(step.worker);
        n.stepping = None;
        (step.node, step.commands, step.deadline)
    }

    /// Before a delivery's exclusivity check ([`Fleet::check_exclusive`]) looks at the shard's
    /// other recent deliverers, takes back the steps of those that step in this batch.
    fn take_deliverers(
        &mut self,
        batch: &mut Batch,
        commands: &[Command<SimRecord>],
        pool: Option<&Pool<Step>>,
    ) {
        for cmd in commands {
            let Command::Processor {
                action: ProcessorCall::ProcessRecords { records, .. },
                ..
            } = cmd
            else {
                continue;
            };
            let Some(shard) = records.first().map(|r| r.shard as usize) else {
                continue;
            };
            while let Some(j) = self
                .checker
                .deliverers(shard)
                .iter()
                .find_map(|&other| self.nodes[other].stepping)
            {
                let outcome = self.take_step(&mut batch.steps, j, pool);
                batch.early[j] = Some(outcome);
            }
        }
    }

    fn serve_all(&mut self, services: &mut Vec<Ev>) {
        for ev in services.drain(..) {
            match ev {
                Ev::AtService {
                    node,
                    inc,
                    sent,
                    cmd,
                } => self.at_service(node, inc, sent, cmd),
                Ev::ScanPage {
                    node,
                    inc,
                    sent,
                    req,
                    consistent,
                    after,
                    items,
                } => self.scan_page(node, inc, sent, req, consistent, after, items),
                _ => {}
            }
        }
    }
}
