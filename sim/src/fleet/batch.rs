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
//!    had to wait (a paused process, a lost answer) are put back on the queue.
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
    /// Its place in the batch.
    index: usize,
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

/// A step's commands and next deadline, kept for phase 3.
type Outcome = Option<(NodeId, Vec<Command<SimRecord>>, Option<Instant>)>;

/// Command lists kept for reuse.
const SPARE_COMMAND_LISTS: usize = 256;

/// One instant's batch, as it is gathered.
#[derive(Default)]
pub(super) struct Batch {
    services: Vec<Ev>,
    steps: Vec<Step>,
    /// Steps gathered so far (those handed to the pool as they were gathered included).
    stepped: usize,
    effects: Vec<Effect>,
    outcomes: Vec<Outcome>,
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
            | Ev::ProcDone { node, inc, .. } => (*node, *inc),
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
            _ => return,
        };
        let n = &mut self.nodes[node];
        let Some(worker) = n.worker.take() else {
            return;
        };
        n.stepping = true;
        let index = batch.stepped;
        batch.stepped += 1;
        batch.effects.push(Effect::Step(index));
        let step = Step {
            index,
            node,
            local: n.clock.local(self.now),
            worker,
            work,
            commands: batch.spare_commands.pop().unwrap_or_default(),
            deadline: None,
        };
        match pool {
            Some(pool) => pool.submit(step),
            None => batch.steps.push(step),
        }
    }

    fn readiness(&self, node: NodeId, inc: u64) -> Readiness {
        let n = &self.nodes[node];
        if n.stepping {
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
        let mut steps = core::mem::take(&mut batch.steps);
        batch.stepped = 0;
        match pool {
            Some(pool) => {
                pool.run(&mut steps, Step::run, || self.serve_all(&mut services));
                steps.sort_unstable_by_key(|s| s.index);
            }
            None => {
                self.serve_all(&mut services);
                steps.iter_mut().for_each(Step::run);
            }
        }
        batch.services = services;
        // Every worker is back in its node before any effect: the checkers may look at any.
        let mut outcomes = core::mem::take(&mut batch.outcomes);
        for step in steps.drain(..) {
            let n = &mut self.nodes[step.node];
            n.worker = Some(step.worker);
            n.stepping = false;
            outcomes.push(Some((step.node, step.commands, step.deadline)));
        }
        batch.steps = steps;
        let mut effects = core::mem::take(&mut batch.effects);
        for effect in effects.drain(..) {
            match effect {
                Effect::Step(i) => {
                    if let Some((node, mut commands, deadline)) = outcomes[i].take() {
                        for cmd in commands.drain(..) {
                            self.command(node, cmd);
                        }
                        if batch.spare_commands.len() < SPARE_COMMAND_LISTS {
                            batch.spare_commands.push(commands);
                        }
                        self.arm_wake(node, deadline);
                    }
                }
                Effect::Later(at, ev) => self.schedule(at, ev),
            }
        }
        outcomes.clear();
        batch.effects = effects;
        batch.outcomes = outcomes;
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
                    after,
                    items,
                } => self.scan_page(node, inc, sent, req, after, items),
                _ => {}
            }
        }
    }
}
