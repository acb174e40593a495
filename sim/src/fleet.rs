//! The fleet: machines holding many workers, the services they call, the simulated record
//! processors, a producer, one seeded schedule of events, and the checkers watching every step.
//!
//! Time is true simulated time in milliseconds. Every worker sees it through its own clock (a
//! rate and an origin), so drift is real to the worker and judged in true time by the checkers.
//! A request travels to its service (latency, plus any injected delay), is applied there at its
//! arrival, and its answer travels back; a partition between a machine and a service loses the
//! request or the answer, and the driver reports the call failed after its timeout.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use kcl_core::io::{CallId, Event, FetchedRecords, ProcessorCall, ReleaseReason};
use kcl_core::rng::Rng;
use kcl_core::testkit::{DriftClock, ProcessorOutcome};
use kcl_core::{
    Command, Config, Failure, FencingToken, Input, Instant, Item, Lease, LeaseKey, RequestId, Row,
    Worker, WorkerId,
};

use crate::check::{touches_checkpoint, Checker};
use crate::dynamo::{Consistency, Dynamo};
use crate::kinesis::{Kinesis, KinesisLimits};
use crate::record::SimRecord;

/// A worker's index in the fleet (never reused).
pub type NodeId = usize;

/// The two services.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Service {
    /// The lease table.
    Dynamo,
    /// The stream.
    Kinesis,
}

/// How to build a fleet.
#[derive(Clone, Debug)]
pub struct FleetConfig {
    /// The one seed of the run.
    pub seed: u64,
    /// Shards at the start.
    pub shards: usize,
    /// Workers per simulated machine.
    pub workers_per_machine: usize,
    /// Every worker's configuration.
    pub worker: Config,
    /// One-way latency between a machine and a service, uniform in this range (ms).
    pub latency_ms: (u64, u64),
    /// How long a processor takes per call (ms).
    pub process_ms: (u64, u64),
    /// A processor checkpoints after every this many batches.
    pub checkpoint_every: u32,
    /// Records put per second, over the whole stream.
    pub records_per_second: f64,
    /// Payload bytes per record.
    pub record_bytes: u32,
    /// How long the driver waits for a lost call before reporting it failed (ms).
    pub driver_timeout_ms: u64,
    /// Eventually consistent reads.
    pub consistency: Consistency,
    /// Kinesis limits.
    pub kinesis: KinesisLimits,
    /// Sample the fleet (balance, liveness, the timeline) this often (ms).
    pub sample_every_ms: u64,
    /// How calls travel between machines and services.
    pub transport: Transport,
}

/// How calls travel between machines and services.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// As events on the fleet's own queue, with modelled latency, delay and partitions.
    Modelled,
    /// Through a real (simulated) network that someone else runs, turmoil's: the fleet puts
    /// calls in per-machine outboxes ([`Fleet::take_outbox`]), services take them up with
    /// [`Fleet::serve`], answers come back with [`Fleet::answer_arrived`], and network faults
    /// become [`NetOp`]s for the network's owner to apply.
    Network,
}

/// A network fault for the owner of the network to apply (turmoil mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetOp {
    /// Cut (`on`) or repair a machine's link to a service.
    Partition {
        /// Machine.
        machine: usize,
        /// Service.
        service: Service,
        /// Cut when true, repaired when false.
        on: bool,
    },
    /// Set the extra latency of a machine's links (0: back to normal).
    Delay {
        /// Machine.
        machine: usize,
        /// Added latency (ms).
        extra_ms: u64,
    },
    /// The machine went down.
    Crash(usize),
    /// The machine came back.
    Restart(usize),
}

/// A call in flight over the network.
struct Envelope {
    node: NodeId,
    inc: u64,
    cmd: Option<Command<SimRecord>>,
    reply: Option<Input<SimRecord>>,
    /// What the driver reports if no answer comes back in time.
    failed: Option<Input<SimRecord>>,
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            shards: 16,
            workers_per_machine: 20,
            worker: Config::default(),
            latency_ms: (2, 10),
            process_ms: (1, 20),
            checkpoint_every: 3,
            records_per_second: 16.0,
            record_bytes: 200,
            driver_timeout_ms: 2_000,
            consistency: Consistency::default(),
            kinesis: KinesisLimits::default(),
            sample_every_ms: 1_000,
            transport: Transport::Modelled,
        }
    }
}

/// Something done to the fleet at a time: a scenario step or an injected fault. Targets chosen
/// "at random" are drawn from the fleet's seeded generator when the action runs.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Start this many new workers.
    AddWorkers(usize),
    /// Ask a worker to shut down gracefully (it hands its leases over).
    Shutdown(NodeId),
    /// Replace a worker: shut it down gracefully and start a new one.
    Replace(NodeId),
    /// Crash a random worker; it restarts (state lost) after this many ms.
    CrashWorker {
        /// Downtime.
        restart_after_ms: u64,
    },
    /// Crash a random machine with all its workers; it restarts after this many ms.
    CrashMachine {
        /// Downtime.
        restart_after_ms: u64,
    },
    /// Cut a random machine off a service.
    Partition {
        /// Which service.
        service: Service,
        /// For how long.
        ms: u64,
    },
    /// Delay every message of a random machine by up to `extra_ms` more.
    Delay {
        /// Added latency, each way.
        extra_ms: u64,
        /// For how long.
        ms: u64,
    },
    /// Stop a random worker's process (a stop-the-world pause).
    Pause {
        /// For how long.
        ms: u64,
    },
    /// Set a random worker's clock rate.
    Drift {
        /// Local seconds per true second.
        rate: f64,
    },
    /// Set a random worker's clock rate and cut its machine off DynamoDB (not Kinesis): with a
    /// rate far below the core's bound the worker keeps delivering long after others may take
    /// its leases, which the checkers must report.
    DriftAndIsolate {
        /// Local seconds per true second.
        rate: f64,
        /// How long the machine cannot reach DynamoDB.
        ms: u64,
    },
    /// Make a service throttle and fail calls, in per mille, until changed.
    ServiceFaults {
        /// Which service.
        service: Service,
        /// Calls throttled.
        throttle_per_mille: u64,
        /// Calls failing with a 5xx (a write may have landed all the same).
        error_per_mille: u64,
    },
    /// Make processors fail (panic) on this per mille of batches, until changed.
    ProcessorFailures(u64),
    /// Split a random open shard.
    Split,
    /// Merge a random pair of adjacent open shards.
    Merge,
    /// UpdateShardCount to the open shard count times `per_mille` / 1000 (kept between half and
    /// double, as Kinesis allows).
    UpdateShardCount {
        /// The target as a share of the open shards, in per mille.
        per_mille: u64,
    },
    /// Stop putting records (so the liveness phase can check that everything was delivered).
    StopProducing,
    /// Clear every injected fault: services healthy, no delays, clocks true, processors healthy.
    Calm,
}

impl Action {
    /// The fault kind this action counts as in reports, if it is a fault.
    pub fn fault_kind(&self) -> Option<&'static str> {
        Some(match self {
            Self::CrashWorker { .. } => "worker_crash",
            Self::CrashMachine { .. } => "machine_crash",
            Self::Partition {
                service: Service::Dynamo,
                ..
            } => "partition_dynamodb",
            Self::Partition {
                service: Service::Kinesis,
                ..
            } => "partition_kinesis",
            Self::Delay { .. } => "message_delay",
            Self::Pause { .. } => "process_pause",
            Self::Drift { .. } => "clock_drift",
            Self::DriftAndIsolate { .. } => "clock_drift_beyond_bound",
            Self::ServiceFaults {
                service: Service::Dynamo,
                ..
            } => "dynamodb_errors",
            Self::ServiceFaults {
                service: Service::Kinesis,
                ..
            } => "kinesis_errors",
            Self::ProcessorFailures(_) => "processor_failures",
            Self::Split | Self::Merge | Self::UpdateShardCount { .. } => "reshard",
            _ => return None,
        })
    }
}

#[derive(Debug)]
enum Ev {
    Wake {
        node: NodeId,
        inc: u64,
        due: u64,
    },
    AtService {
        node: NodeId,
        inc: u64,
        sent: u64,
        cmd: Command<SimRecord>,
    },
    ScanPage {
        node: NodeId,
        inc: u64,
        sent: u64,
        req: RequestId,
        after: Option<String>,
        items: Vec<Item>,
    },
    Answer {
        node: NodeId,
        inc: u64,
        sent: u64,
        service: Service,
        input: Input<SimRecord>,
    },
    Deliver {
        node: NodeId,
        inc: u64,
        input: Input<SimRecord>,
    },
    ProcDone {
        node: NodeId,
        inc: u64,
        shard: LeaseKey,
        call: CallId,
        token: FencingToken,
        outcome: ProcessorOutcome,
    },
    Restart(NodeId),
    RestartMachine(usize),
    DriverTimeout(u64),
    Net(NetOp),
    Produce,
    Sample,
    Act(Action),
}

/// What a service made of a call.
enum Served {
    Reply(Input<SimRecord>),
    /// A scan: its pages follow.
    Scan(RequestId),
    Nothing,
}

/// A queue entry: the event itself waits in a slab, so the heap moves 24 bytes, not an event.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Scheduled {
    at: u64,
    seq: u64,
    slot: u32,
}

/// Events by slot, with the free slots for reuse.
#[derive(Default)]
struct Slab {
    events: Vec<Option<Ev>>,
    free: Vec<u32>,
}

impl Slab {
    fn insert(&mut self, ev: Ev) -> u32 {
        match self.free.pop() {
            Some(slot) => {
                self.events[slot as usize] = Some(ev);
                slot
            }
            None => {
                self.events.push(Some(ev));
                (self.events.len() - 1) as u32
            }
        }
    }

    fn take(&mut self, slot: u32) -> Option<Ev> {
        let ev = self.events.get_mut(slot as usize)?.take();
        self.free.push(slot);
        ev
    }
}

struct Node {
    id: WorkerId,
    machine: usize,
    worker: Option<Worker<SimRecord>>,
    inc: u64,
    paused_until: u64,
    clock: DriftClock,
    wake_at: Option<u64>,
    batches: BTreeMap<LeaseKey, u32>,
    /// Shut down for good (scale-down, replaced): never restarted.
    retired: bool,
}

#[derive(Clone, Debug, Default)]
struct Machine {
    up: bool,
    partitioned_until: [u64; 2],
    delay_until: u64,
    extra_delay_ms: u64,
}

#[derive(Clone, Copy, Debug, Default)]
struct ServiceFaults {
    throttle_per_mille: u64,
    error_per_mille: u64,
}

/// One sample of the fleet, for the timeline and the plot.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Sample {
    /// Simulated seconds.
    pub t: f64,
    /// Running workers.
    pub workers: usize,
    /// Fewest leases on a running worker.
    pub min: usize,
    /// Most leases on a running worker.
    pub max: usize,
    /// Unfinished leases no running worker holds.
    pub unheld: usize,
    /// Lease acquisitions so far.
    pub moves: u64,
}

/// Counters of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Lease acquisitions (every change of owner, and every first assignment).
    pub acquisitions: u64,
    /// Leases handed over gracefully.
    pub handoffs: u64,
    /// Leases lost (expired under the owner).
    pub losses: u64,
    /// Faults injected, by kind.
    pub faults: BTreeMap<String, u64>,
}

/// The fleet and everything around it.
pub struct Fleet {
    cfg: FleetConfig,
    rng: Rng,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<Scheduled>>,
    slab: Slab,
    nodes: Vec<Node>,
    machines: Vec<Machine>,
    service_faults: [ServiceFaults; 2],
    processor_failure_per_mille: u64,
    producing: bool,
    produce_carry: f64,
    /// The lease table.
    pub dynamo: Dynamo,
    /// The stream.
    pub kinesis: Kinesis,
    /// The checkers.
    pub checker: Checker,
    /// Counters.
    pub counters: Counters,
    /// One sample per `sample_every_ms`.
    pub timeline: Vec<Sample>,
    /// The first time the fleet was balanced and has stayed so since (ms).
    pub balanced_since: Option<u64>,
    /// Whether every record older than ten seconds had been delivered at the last sample.
    pub caught_up: bool,
    envelopes: BTreeMap<u64, Envelope>,
    next_envelope: u64,
    outbox: Vec<Vec<(u64, Service)>>,
    net_ops: Vec<NetOp>,
}

fn transient<T>() -> Result<T, Failure> {
    Err(Failure::Transient)
}

fn service_of(cmd: &Command<SimRecord>) -> Service {
    match cmd {
        Command::ListShards { .. }
        | Command::GetShardIterator { .. }
        | Command::GetRecords { .. } => Service::Kinesis,
        _ => Service::Dynamo,
    }
}

impl Fleet {
    /// A fleet with an empty lease table and `workers` workers: they create the leases by
    /// shard sync.
    pub fn new(cfg: FleetConfig, workers: usize) -> Self {
        let mut f = Self {
            rng: Rng::new(cfg.seed),
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            slab: Slab::default(),
            nodes: Vec::new(),
            machines: Vec::new(),
            service_faults: [ServiceFaults::default(); 2],
            processor_failure_per_mille: 0,
            producing: true,
            produce_carry: 0.0,
            dynamo: Dynamo::new(cfg.consistency.clone()),
            kinesis: Kinesis::new(cfg.shards, cfg.kinesis.clone()),
            checker: Checker::default(),
            counters: Counters::default(),
            timeline: Vec::new(),
            balanced_since: None,
            caught_up: false,
            envelopes: BTreeMap::new(),
            next_envelope: 0,
            outbox: Vec::new(),
            net_ops: Vec::new(),
            cfg,
        };
        for _ in 0..workers {
            f.add_worker();
        }
        f.schedule(0, Ev::Produce);
        f.schedule(f.cfg.sample_every_ms, Ev::Sample);
        f
    }

    /// True time now (ms).
    pub fn now_ms(&self) -> u64 {
        self.now
    }

    /// Nodes ever started.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// The worker of a node, while it runs.
    pub fn worker(&self, node: NodeId) -> Option<&Worker<SimRecord>> {
        self.nodes.get(node).and_then(|n| n.worker.as_ref())
    }

    /// Workers that run and are not stopping, by node.
    fn running_workers(&self) -> impl Iterator<Item = (NodeId, &Worker<SimRecord>)> + '_ {
        self.nodes.iter().enumerate().filter_map(|(i, n)| {
            n.worker
                .as_ref()
                .filter(|w| !n.retired && !w.is_stopped())
                .map(|w| (i, w))
        })
    }

    /// Nodes whose worker runs and is not stopping.
    pub fn running(&self) -> Vec<NodeId> {
        self.running_workers().map(|(i, _)| i).collect()
    }

    /// Unfinished leases held, per running worker.
    pub fn loads(&self) -> Vec<usize> {
        self.running_workers()
            .map(|(_, w)| w.leases().filter(|l| !l.lease.is_finished()).count())
            .collect()
    }

    fn schedule(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        let slot = self.slab.insert(ev);
        self.queue.push(Reverse(Scheduled {
            at,
            seq: self.seq,
            slot,
        }));
    }

    /// Runs `action` at true time `at_ms`.
    pub fn at(&mut self, at_ms: u64, action: Action) {
        self.schedule(at_ms, Ev::Act(action));
    }

    fn latency(&mut self, machine: usize) -> u64 {
        let (lo, hi) = self.cfg.latency_ms;
        let m = &self.machines[machine];
        let extra = if self.now < m.delay_until {
            m.extra_delay_ms
        } else {
            0
        };
        self.rng.between(lo, hi) + self.rng.below(extra + 1)
    }

    /// Starts a new worker on a machine with room; returns its node.
    pub fn add_worker(&mut self) -> NodeId {
        let node = self.nodes.len();
        let per = self.cfg.workers_per_machine.max(1);
        let machine = node / per;
        while self.machines.len() <= machine {
            self.machines.push(Machine {
                up: true,
                ..Machine::default()
            });
            self.outbox.push(Vec::new());
        }
        self.nodes.push(Node {
            id: WorkerId::from(format!("worker-{node:05}")),
            machine,
            worker: None,
            inc: 0,
            paused_until: 0,
            clock: DriftClock::new(1_000_000 + self.rng.below(1_000_000), self.now),
            wake_at: None,
            batches: BTreeMap::new(),
            retired: false,
        });
        self.start(node);
        node
    }

    fn start(&mut self, node: NodeId) {
        let seed = self.rng.next_u64();
        let now = self.now;
        let config = self.cfg.worker.clone();
        let n = &mut self.nodes[node];
        n.inc += 1;
        n.batches.clear();
        n.wake_at = None;
        let local = n.clock.local(now);
        n.worker = Worker::new(config, n.id.clone(), seed, local).ok();
        self.after_handle(node);
    }

    fn crash(&mut self, node: NodeId) {
        let n = &mut self.nodes[node];
        n.worker = None;
        n.inc += 1;
        n.wake_at = None;
        n.batches.clear();
    }

    fn random_running(&mut self) -> Option<NodeId> {
        let count = self.running_workers().count();
        if count == 0 {
            return None;
        }
        let pick = self.rng.index(count);
        self.running_workers().nth(pick).map(|(i, _)| i)
    }

    /// Runs until true time `until_ms`, calling `progress` now and then with the time reached.
    pub fn run_until(&mut self, until_ms: u64, progress: &mut dyn FnMut(u64)) {
        let mut steps = 0u64;
        while let Some(Reverse(next)) = self.queue.peek() {
            if next.at > until_ms {
                break;
            }
            let Some(Reverse(Scheduled { at, slot, .. })) = self.queue.pop() else {
                break;
            };
            let Some(ev) = self.slab.take(slot) else {
                continue;
            };
            self.now = at;
            self.dispatch(ev);
            steps += 1;
            if steps.is_multiple_of(65_536) {
                progress(self.now);
            }
        }
        self.now = self.now.max(until_ms);
        progress(self.now);
    }

    fn node_live(&self, node: NodeId, inc: u64) -> bool {
        self.nodes
            .get(node)
            .is_some_and(|n| n.inc == inc && n.worker.is_some())
    }

    fn dispatch(&mut self, ev: Ev) {
        // Events at a worker wait while its process is paused; services never pause.
        let target = match &ev {
            Ev::Wake { node, inc, .. }
            | Ev::Deliver { node, inc, .. }
            | Ev::ProcDone { node, inc, .. } => Some((*node, *inc)),
            _ => None,
        };
        if let Some((node, inc)) = target {
            if !self.node_live(node, inc) {
                return;
            }
            let until = self.nodes[node].paused_until;
            if self.now < until {
                return self.schedule(until, ev);
            }
        }
        match ev {
            Ev::Wake { node, due, .. } => {
                if self.nodes[node].wake_at == Some(due) {
                    self.nodes[node].wake_at = None;
                    self.with_worker(node, |w, now| w.handle_timeout(now));
                }
            }
            Ev::Deliver { node, input, .. } => {
                self.with_worker(node, |w, now| w.handle(now, input))
            }
            Ev::ProcDone {
                node,
                shard,
                call,
                token,
                outcome,
                ..
            } => self.processor_done(node, shard, call, token, outcome),
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
            Ev::Answer {
                node,
                inc,
                sent,
                service,
                input,
            } => self.answer(node, inc, sent, service, input),
            Ev::Restart(node) => {
                if !self.nodes[node].retired && self.nodes[node].worker.is_none() {
                    let m = self.nodes[node].machine;
                    if self.machines[m].up {
                        self.start(node);
                    }
                }
            }
            Ev::RestartMachine(m) => {
                self.machines[m].up = true;
                let nodes: Vec<NodeId> = (0..self.nodes.len())
                    .filter(|&i| self.nodes[i].machine == m && !self.nodes[i].retired)
                    .collect();
                for node in nodes {
                    if self.nodes[node].worker.is_none() {
                        self.start(node);
                    }
                }
            }
            Ev::DriverTimeout(envelope) => self.driver_timeout(envelope),
            Ev::Net(op) => self.net_ops.push(op),
            Ev::Produce => self.produce(),
            Ev::Sample => self.sample(),
            Ev::Act(action) => self.act(action),
        }
    }

    fn with_worker(&mut self, node: NodeId, f: impl FnOnce(&mut Worker<SimRecord>, Instant)) {
        let now = self.now;
        let n = &mut self.nodes[node];
        let local = n.clock.local(now);
        let Some(w) = n.worker.as_mut() else { return };
        f(w, local);
        self.after_handle(node);
    }

    fn after_handle(&mut self, node: NodeId) {
        while let Some(cmd) = self.nodes[node]
            .worker
            .as_mut()
            .and_then(Worker::poll_command)
        {
            self.command(node, cmd);
        }
        let n = &self.nodes[node];
        let Some(at) = n
            .worker
            .as_ref()
            .and_then(Worker::poll_timeout)
            .map(|(at, _)| n.clock.true_time(at).max(self.now))
        else {
            return;
        };
        if n.wake_at != Some(at) {
            let inc = n.inc;
            self.nodes[node].wake_at = Some(at);
            self.schedule(at, Ev::Wake { node, inc, due: at });
        }
    }

    fn command(&mut self, node: NodeId, cmd: Command<SimRecord>) {
        let inc = self.nodes[node].inc;
        match cmd {
            Command::Processor {
                shard,
                call,
                action,
            } => self.processor(node, inc, shard, call, action),
            Command::Event(e) => self.event(e),
            cmd if self.cfg.transport == Transport::Network => self.enqueue(node, inc, cmd),
            cmd => {
                let machine = self.nodes[node].machine;
                let l = self.latency(machine);
                let sent = self.now;
                self.schedule(
                    sent + l,
                    Ev::AtService {
                        node,
                        inc,
                        sent,
                        cmd,
                    },
                );
            }
        }
    }

    // ---- the network transport (turmoil mode) -------------------------------------------------

    fn enqueue(&mut self, node: NodeId, inc: u64, cmd: Command<SimRecord>) {
        self.next_envelope += 1;
        let id = self.next_envelope;
        let service = service_of(&cmd);
        let failed = cmd.failed(Failure::Transient);
        self.envelopes.insert(
            id,
            Envelope {
                node,
                inc,
                cmd: Some(cmd),
                reply: None,
                failed,
            },
        );
        self.outbox[self.nodes[node].machine].push((id, service));
        self.schedule(self.now + self.cfg.driver_timeout_ms, Ev::DriverTimeout(id));
    }

    /// Number of machines so far.
    pub fn machine_count(&self) -> usize {
        self.machines.len()
    }

    /// Calls a machine has to send, with the service each goes to.
    pub fn take_outbox(&mut self, machine: usize) -> Vec<(u64, Service)> {
        self.outbox
            .get_mut(machine)
            .map(core::mem::take)
            .unwrap_or_default()
    }

    /// A call reached its service: the service applies it. Returns whether an answer is ready
    /// to travel back (a call the driver already gave up on has none).
    pub fn serve(&mut self, envelope: u64) -> bool {
        let Some((node, cmd)) = self
            .envelopes
            .get_mut(&envelope)
            .and_then(|e| Some((e.node, e.cmd.take()?)))
        else {
            return false;
        };
        let reply = match self.serve_command(node, cmd) {
            Served::Reply(input) => Some(input),
            Served::Scan(req) => {
                // Over the network the pages of a scan travel as one answer; each page is
                // still read (and billed, and possibly stale) on its own.
                let mut items = Vec::new();
                let mut after: Option<String> = None;
                loop {
                    let (page, next) =
                        self.dynamo
                            .scan_page(self.now, after.as_deref(), &mut self.rng);
                    items.extend(page);
                    match next {
                        Some(k) => after = Some(k),
                        None => break,
                    }
                }
                Some(Input::LeaseTableScanned {
                    req,
                    result: Ok(items),
                })
            }
            Served::Nothing => None,
        };
        match (self.envelopes.get_mut(&envelope), reply) {
            (Some(e), Some(r)) => {
                e.reply = Some(r);
                true
            }
            _ => false,
        }
    }

    /// The answer to a call reached its machine: the driver hands it to the worker.
    pub fn answer_arrived(&mut self, envelope: u64) {
        let Some(e) = self.envelopes.remove(&envelope) else {
            return;
        };
        match e.reply {
            Some(input) => self.schedule(
                self.now,
                Ev::Deliver {
                    node: e.node,
                    inc: e.inc,
                    input,
                },
            ),
            // Not served yet: a duplicate or early datagram cannot happen, keep waiting.
            None => {
                self.envelopes.insert(envelope, e);
            }
        }
    }

    /// Network faults to apply since the last call.
    pub fn take_net_ops(&mut self) -> Vec<NetOp> {
        core::mem::take(&mut self.net_ops)
    }

    fn driver_timeout(&mut self, envelope: u64) {
        if let Some(e) = self.envelopes.remove(&envelope) {
            if let Some(input) = e.failed {
                self.schedule(
                    self.now,
                    Ev::Deliver {
                        node: e.node,
                        inc: e.inc,
                        input,
                    },
                );
            }
        }
    }

    fn network(&self) -> bool {
        self.cfg.transport == Transport::Network
    }

    /// A network fault now, and its end after `ms` (turmoil mode).
    fn net_fault(&mut self, op: NetOp, undo: NetOp, ms: u64) {
        self.net_ops.push(op);
        self.schedule(self.now + ms, Ev::Net(undo));
    }

    fn event(&mut self, e: Event) {
        match e {
            Event::LeaseAcquired { .. } => self.counters.acquisitions += 1,
            Event::LeaseReleased {
                reason: ReleaseReason::HandedOver,
                ..
            } => self.counters.handoffs += 1,
            Event::LeaseReleased {
                reason: ReleaseReason::Lost,
                ..
            } => self.counters.losses += 1,
            _ => {}
        }
    }

    fn partitioned(&self, node: NodeId, service: Service) -> bool {
        let m = &self.machines[self.nodes[node].machine];
        !m.up || self.now < m.partitioned_until[service as usize]
    }

    /// A call the driver never hears back from: reported failed after the driver's timeout.
    fn lost(&mut self, node: NodeId, inc: u64, sent: u64, failed: Option<Input<SimRecord>>) {
        if let Some(input) = failed {
            let at = (sent + self.cfg.driver_timeout_ms).max(self.now);
            self.schedule(at, Ev::Deliver { node, inc, input });
        }
    }

    fn reply(
        &mut self,
        node: NodeId,
        inc: u64,
        sent: u64,
        service: Service,
        input: Input<SimRecord>,
    ) {
        let l = self.latency(self.nodes[node].machine);
        self.schedule(
            self.now + l,
            Ev::Answer {
                node,
                inc,
                sent,
                service,
                input,
            },
        );
    }

    fn answer(
        &mut self,
        node: NodeId,
        inc: u64,
        sent: u64,
        service: Service,
        input: Input<SimRecord>,
    ) {
        if self.partitioned(node, service) {
            let failed = input.failed(Failure::Transient);
            return self.lost(node, inc, sent, failed);
        }
        // Straight to the worker (or to the end of its pause), without a trip through the queue.
        self.dispatch(Ev::Deliver { node, inc, input });
    }

    fn at_service(&mut self, node: NodeId, inc: u64, sent: u64, cmd: Command<SimRecord>) {
        let service = service_of(&cmd);
        if self.partitioned(node, service) {
            let failed = cmd.failed(Failure::Transient);
            return self.lost(node, inc, sent, failed);
        }
        match self.serve_command(node, cmd) {
            Served::Reply(input) => self.reply(node, inc, sent, service, input),
            Served::Scan(req) => self.scan_page(node, inc, sent, req, None, Vec::new()),
            Served::Nothing => {}
        }
    }

    /// A call arrives at its service: injected throttling and errors, then the model.
    fn serve_command(&mut self, node: NodeId, cmd: Command<SimRecord>) -> Served {
        let service = service_of(&cmd);
        let faults = self.service_faults[service as usize];
        if self.rng.below(1000) < faults.throttle_per_mille {
            return cmd
                .failed(Failure::Throttled)
                .map_or(Served::Nothing, Served::Reply);
        }
        let error = self.rng.below(1000) < faults.error_per_mille;
        let now = self.now;
        let input = match cmd {
            Command::ScanLeaseTable { req } if !error => return Served::Scan(req),
            Command::ScanLeaseTable { req } => Input::LeaseTableScanned {
                req,
                result: transient(),
            },
            Command::ReadLease { req, key } => Input::LeaseRead {
                req,
                result: if error {
                    transient()
                } else {
                    Ok(self.dynamo.get(now, &key, true, &mut self.rng))
                },
            },
            Command::WriteLease { req, write } => {
                // A 5xx on a write leaves its outcome unknown: half of them landed.
                let lands = !error || self.rng.below(2) == 0;
                let result = if lands {
                    self.table_write(node, &write)
                } else {
                    transient()
                };
                Input::LeaseWritten {
                    req,
                    result: if error { transient() } else { result },
                }
            }
            Command::ListShards { req } => Input::ShardsListed {
                req,
                result: if error {
                    transient()
                } else {
                    Ok(self.kinesis.list_shards())
                },
            },
            Command::GetShardIterator {
                req,
                shard,
                position,
            } => Input::IteratorObtained {
                req,
                result: if error {
                    transient()
                } else {
                    self.kinesis
                        .get_shard_iterator(now, shard.as_str(), &position)
                },
            },
            Command::GetRecords {
                req,
                iterator,
                limit,
                ..
            } => Input::RecordsFetched {
                req,
                result: if error {
                    transient()
                } else {
                    self.kinesis
                        .get_records(now, &iterator, limit as usize)
                        .map(|o| FetchedRecords {
                            records: o.records,
                            next_iterator: o.next_iterator,
                            millis_behind_latest: o.millis_behind_latest,
                            child_shards: o.child_shards,
                        })
                },
            },
            _ => return Served::Nothing,
        };
        Served::Reply(input)
    }

    fn table_write(
        &mut self,
        node: NodeId,
        write: &kcl_core::write::LeaseWrite,
    ) -> Result<Option<Item>, Failure> {
        let check = touches_checkpoint(write);
        let decode = |item: Option<&Item>| match item.map(Row::from_item) {
            Some(Ok(Row::Lease(l))) => Some(*l),
            _ => None,
        };
        let before: Option<Lease> = if check {
            decode(self.dynamo.peek(&write.key))
        } else {
            None
        };
        let result = self.dynamo.write(self.now, write);
        if check && result.is_ok() {
            let after = decode(self.dynamo.peek(&write.key));
            let writer = self.nodes[node].id.clone();
            self.checker
                .table_write(self.now, &writer, write, before.as_ref(), after.as_ref());
        }
        result
    }

    fn scan_page(
        &mut self,
        node: NodeId,
        inc: u64,
        sent: u64,
        req: RequestId,
        after: Option<String>,
        mut items: Vec<Item>,
    ) {
        if self.partitioned(node, Service::Dynamo) {
            let failed = Command::<SimRecord>::ScanLeaseTable { req }.failed(Failure::Transient);
            return self.lost(node, inc, sent, failed);
        }
        let faults = self.service_faults[Service::Dynamo as usize];
        if self.rng.below(1000) < faults.throttle_per_mille {
            let input = Input::LeaseTableScanned {
                req,
                result: Err(Failure::Throttled),
            };
            return self.reply(node, inc, sent, Service::Dynamo, input);
        }
        let (page, next) = self
            .dynamo
            .scan_page(self.now, after.as_deref(), &mut self.rng);
        items.extend(page);
        match next {
            Some(key) => {
                // The driver asks for the next page when this one arrives.
                let machine = self.nodes[node].machine;
                let rtt = self.latency(machine) + self.latency(machine);
                self.schedule(
                    self.now + rtt,
                    Ev::ScanPage {
                        node,
                        inc,
                        sent,
                        req,
                        after: Some(key),
                        items,
                    },
                );
            }
            None => {
                let input = Input::LeaseTableScanned {
                    req,
                    result: Ok(items),
                };
                self.reply(node, inc, sent, Service::Dynamo, input);
            }
        }
    }

    // ---- the simulated record processors ---------------------------------------------------

    fn processor(
        &mut self,
        node: NodeId,
        inc: u64,
        shard: LeaseKey,
        call: CallId,
        action: ProcessorCall<SimRecord>,
    ) {
        let (lo, hi) = self.cfg.process_ms;
        let delay = self.rng.between(lo, hi);
        let (token, outcome) = match action {
            ProcessorCall::Initialize {
                checkpoint, token, ..
            } => {
                self.checker.initialized(&shard, token, checkpoint);
                (token, ProcessorOutcome::Returned)
            }
            ProcessorCall::ProcessRecords { records, token, .. } => {
                self.check_exclusive(node, &shard, &records);
                let parents: Vec<LeaseKey> = match self.kinesis.shard_index(shard.as_str()) {
                    Some(i) => self
                        .kinesis
                        .parents(i)
                        .iter()
                        .filter_map(|&p| self.kinesis.shard_id(p).cloned())
                        .collect(),
                    None => Vec::new(),
                };
                self.checker
                    .delivered(self.now, node, &shard, &parents, token, &records);
                if self.rng.below(1000) < self.processor_failure_per_mille {
                    (token, ProcessorOutcome::Failed)
                } else {
                    let every = self.cfg.checkpoint_every.max(1);
                    let n = self.nodes[node].batches.entry(shard.clone()).or_insert(0);
                    *n += 1;
                    if n.is_multiple_of(every) {
                        (token, ProcessorOutcome::Checkpoint)
                    } else {
                        (token, ProcessorOutcome::Returned)
                    }
                }
            }
            ProcessorCall::ShardEnded { token } => (token, ProcessorOutcome::Returned),
            ProcessorCall::ShutdownRequested { token } => (token, ProcessorOutcome::Checkpoint),
            // Lease lost, checkpoint done: nothing to answer.
            _ => return,
        };
        self.schedule(
            self.now + delay,
            Ev::ProcDone {
                node,
                inc,
                shard,
                call,
                token,
                outcome,
            },
        );
    }

    fn processor_done(
        &mut self,
        node: NodeId,
        shard: LeaseKey,
        call: CallId,
        token: FencingToken,
        outcome: ProcessorOutcome,
    ) {
        for input in outcome.inputs(shard, call, token) {
            self.with_worker(node, |w, now| w.handle(now, input));
        }
    }

    /// Invariant 1: at this true instant no other worker may deliver this shard.
    fn check_exclusive(&mut self, node: NodeId, shard: &LeaseKey, records: &[SimRecord]) {
        let Some(index) = records.first().map(|r| r.shard as usize) else {
            return;
        };
        let others: Vec<NodeId> = self
            .checker
            .deliverers(index)
            .iter()
            .copied()
            .filter(|&n| n != node)
            .collect();
        for other in others {
            let n = &self.nodes[other];
            let until = n
                .worker
                .as_ref()
                .and_then(|w| w.delivery_deadline(shard.as_str()))
                .map(|local| n.clock.true_time(local));
            match until {
                Some(t) if t > self.now => {
                    let what = format!(
                        "exclusivity: {} delivers {shard} while {} may deliver it until {t} ms",
                        self.nodes[node].id, n.id
                    );
                    self.checker.violation(self.now, what);
                }
                _ => self.checker.forget_deliverer(index, other),
            }
        }
    }

    // ---- producer, sampling, actions -----------------------------------------------------------

    fn produce(&mut self) {
        const TICK_MS: u64 = 100;
        if self.producing {
            self.produce_carry += self.cfg.records_per_second * TICK_MS as f64 / 1000.0;
            while self.produce_carry >= 1.0 {
                self.produce_carry -= 1.0;
                let key = format!("pk-{}", self.rng.next_u64());
                let (shard, index) = self.kinesis.put(self.now, &key, self.cfg.record_bytes);
                self.checker.put(shard, index);
            }
        }
        self.schedule(self.now + TICK_MS, Ev::Produce);
    }

    fn sample(&mut self) {
        let now = self.now;
        self.kinesis.trim(now);
        self.dynamo.settle(now);
        // Membership only, never iterated: a hash set cannot leak its order into the run.
        let mut held = std::collections::HashSet::with_capacity(self.checker.unfinished().len());
        let (mut workers, mut min, mut max) = (0, usize::MAX, 0);
        for (_, w) in self.running_workers() {
            let mut n = 0;
            for l in w.leases().filter(|l| !l.lease.is_finished()) {
                n += 1;
                held.insert(l.lease.key.clone());
            }
            workers += 1;
            min = min.min(n);
            max = max.max(n);
        }
        let min = if workers == 0 { 0 } else { min };
        let unheld = self
            .checker
            .unfinished()
            .iter()
            .filter(|k| !held.contains(*k))
            .count();
        let balanced = unheld == 0 && max - min <= 1 && workers > 0;
        if balanced {
            self.balanced_since.get_or_insert(now);
        } else {
            self.balanced_since = None;
        }
        let horizon = now.saturating_sub(10_000);
        let mut caught_up = true;
        for s in 0..self.kinesis.shard_count() {
            let k = &self.kinesis;
            if self.checker.behind(s, horizon, |i| k.arrival_ms(s, i)) {
                caught_up = false;
            }
        }
        self.caught_up = caught_up;
        self.timeline.push(Sample {
            t: now as f64 / 1000.0,
            workers,
            min,
            max,
            unheld,
            moves: self.counters.acquisitions,
        });
        self.schedule(now + self.cfg.sample_every_ms, Ev::Sample);
    }

    fn act(&mut self, action: Action) {
        if let Some(kind) = action.fault_kind() {
            *self.counters.faults.entry(kind.to_owned()).or_default() += 1;
        }
        match action {
            Action::AddWorkers(n) => {
                for _ in 0..n {
                    self.add_worker();
                }
            }
            Action::Shutdown(node) => {
                if let Some(n) = self.nodes.get_mut(node) {
                    n.retired = true;
                }
                self.with_worker(node, |w, now| w.handle(now, Input::ShutdownRequested));
            }
            Action::Replace(node) => {
                self.act(Action::Shutdown(node));
                self.add_worker();
            }
            Action::CrashWorker { restart_after_ms } => {
                if let Some(node) = self.random_running() {
                    self.crash(node);
                    self.schedule(self.now + restart_after_ms, Ev::Restart(node));
                }
            }
            Action::CrashMachine { restart_after_ms } => {
                if let Some(node) = self.random_running() {
                    let m = self.nodes[node].machine;
                    if self.network() {
                        self.net_fault(NetOp::Crash(m), NetOp::Restart(m), restart_after_ms);
                    }
                    self.machines[m].up = false;
                    for i in 0..self.nodes.len() {
                        if self.nodes[i].machine == m {
                            self.crash(i);
                        }
                    }
                    self.schedule(self.now + restart_after_ms, Ev::RestartMachine(m));
                }
            }
            Action::Partition { service, ms } => {
                if let Some(node) = self.random_running() {
                    self.partition(self.nodes[node].machine, service, ms);
                }
            }
            Action::Delay { extra_ms, ms } => {
                if let Some(node) = self.random_running() {
                    let machine = self.nodes[node].machine;
                    if self.network() {
                        let op = NetOp::Delay { machine, extra_ms };
                        let undo = NetOp::Delay {
                            machine,
                            extra_ms: 0,
                        };
                        self.net_fault(op, undo, ms);
                    }
                    let m = &mut self.machines[machine];
                    m.delay_until = self.now + ms;
                    m.extra_delay_ms = extra_ms;
                }
            }
            Action::Pause { ms } => {
                if let Some(node) = self.random_running() {
                    let n = &mut self.nodes[node];
                    n.paused_until = n.paused_until.max(self.now + ms);
                }
            }
            Action::Drift { rate } => {
                if let Some(node) = self.random_running() {
                    self.set_rate(node, rate);
                }
            }
            Action::DriftAndIsolate { rate, ms } => {
                if let Some(node) = self.random_running() {
                    self.set_rate(node, rate);
                    self.partition(self.nodes[node].machine, Service::Dynamo, ms);
                }
            }
            Action::ServiceFaults {
                service,
                throttle_per_mille,
                error_per_mille,
            } => {
                self.service_faults[service as usize] = ServiceFaults {
                    throttle_per_mille,
                    error_per_mille,
                };
            }
            Action::ProcessorFailures(per_mille) => self.processor_failure_per_mille = per_mille,
            Action::Split => {
                let open = self.kinesis.open_shards().to_vec();
                if !open.is_empty() {
                    let s = open[self.rng.index(open.len())];
                    let _ = self.kinesis.split(s);
                }
            }
            Action::Merge => {
                let open = self.kinesis.open_shards().to_vec();
                if open.len() >= 2 {
                    let i = self.rng.index(open.len() - 1);
                    let _ = self.kinesis.merge(open[i], open[i + 1]);
                }
            }
            Action::UpdateShardCount { per_mille } => {
                let open = self.kinesis.open_shards().len();
                let target = (open as u64 * per_mille / 1000) as usize;
                let _ = self
                    .kinesis
                    .update_shard_count(target.clamp(open.div_ceil(2), open * 2));
            }
            Action::StopProducing => self.producing = false,
            Action::Calm => {
                self.service_faults = [ServiceFaults::default(); 2];
                self.processor_failure_per_mille = 0;
                for m in &mut self.machines {
                    m.delay_until = 0;
                    m.partitioned_until = [0; 2];
                }
                for node in 0..self.nodes.len() {
                    if self.nodes[node].clock.rate() != 1.0 {
                        self.set_rate(node, 1.0);
                    }
                }
            }
        }
    }

    fn partition(&mut self, machine: usize, service: Service, ms: u64) {
        if self.network() {
            let op = |on| NetOp::Partition {
                machine,
                service,
                on,
            };
            self.net_fault(op(true), op(false), ms);
        } else {
            let until = &mut self.machines[machine].partitioned_until[service as usize];
            *until = (*until).max(self.now + ms);
        }
    }

    fn set_rate(&mut self, node: NodeId, rate: f64) {
        let now = self.now;
        let n = &mut self.nodes[node];
        n.clock.set_rate(now, rate);
        // The worker's next wake-up moves with its clock.
        n.wake_at = None;
        if n.worker.is_some() {
            self.after_handle(node);
        }
    }

    /// Records never delivered, and the violations that says about a run that caught up.
    pub fn records_lost(&self) -> u64 {
        self.checker.undelivered()
    }
}
