//! The fleet: machines holding many workers, the services they call, the simulated record
//! processors, a producer, one seeded schedule of events, and the checkers watching every step.
//!
//! Time is true simulated time in milliseconds. Every worker sees it through its own clock (a
//! rate and an origin), so drift is real to the worker and judged in true time by the checkers.
//! A request travels to its service (latency, plus any injected delay), is applied there at its
//! arrival, and its answer travels back; a partition between a machine and a service loses the
//! request or the answer, and the driver reports the call failed after its timeout.
//!
//! The events wait in a ring of millisecond buckets ([`queue`]); each millisecond's run as a
//! batch ([`batch`]), whose worker steps may run on a second thread ([`pool`]).

use std::collections::{BTreeMap, BTreeSet};

use kcl_core::io::{CallId, Event, FetchedRecords, ProcessorCall, ReleaseReason};
use kcl_core::lease::{LEADER_KEY, WORKER_KEY_PREFIX};
use kcl_core::rng::Rng;
use kcl_core::testkit::{DriftClock, ProcessorOutcome};
use kcl_core::{
    Command, Config, Failure, FencingToken, Input, Instant, Item, LeaseKey, RequestId, Worker,
    WorkerId,
};

use crate::check::{touches_checkpoint, Checker};
use crate::checkpoints::CheckpointLedger;
use crate::dynamo::{Consistency, Dynamo};
use crate::kinesis::{Kinesis, KinesisLimits};
use crate::record::SimRecord;
use crate::report::Measures;
use crate::scenario::Processors;

mod batch;
mod clock;
mod faults;
pub(crate) mod mixed;
mod pool;
mod processors;
mod queue;
mod services;
mod transport;

use batch::{Batch, Step};
pub(crate) use clock::NodeClock;
pub use clock::WorkerClock;
pub use faults::Action;
pub(crate) use faults::{choose_crash, incarnation_id, machine_name, CrashChoice};
use pool::Pool;
pub(crate) use processors::{produce_tick, PRODUCE_EVERY_MS};
use queue::Queue;
use services::{service_of, Served};
use transport::Envelope;
pub use transport::{NetOp, Transport};

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
    /// Every worker's configuration, except those [`FleetConfig::deployed`] names.
    pub worker: Config,
    /// A configuration rolled out by the scenario's steps: the workers they start (a rolling
    /// deploy's replacements, a scale-up's newcomers) run it, so one fleet runs two settings at
    /// once. `None`: every worker runs `worker`.
    pub deployed: Option<Deployed>,
    /// One-way latency between a machine and a service, uniform in this range (ms).
    pub latency_ms: (u64, u64),
    /// How long a processor takes per call (ms).
    pub process_ms: (u64, u64),
    /// A processor checkpoints after every this many batches.
    pub checkpoint_every: u32,
    /// What the processors do besides.
    pub processors: Processors,
    /// A quarter of the puts are KPL aggregates of 2 to 8 user records.
    pub kpl: bool,
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
    /// The clock the simulated drivers give their workers.
    pub worker_clock: WorkerClock,
    /// Threads for the workers' steps: 1, or more to run them on a second thread beside the
    /// services (modelled transport only; there is one helper). The report is the same either
    /// way.
    pub threads: usize,
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            shards: 16,
            workers_per_machine: 20,
            worker: Config::default(),
            deployed: None,
            latency_ms: (2, 10),
            process_ms: (1, 20),
            checkpoint_every: 3,
            worker_clock: WorkerClock::Boottime,
            processors: Processors::Simple,
            kpl: false,
            records_per_second: 16.0,
            record_bytes: 200,
            driver_timeout_ms: 2_000,
            consistency: Consistency::default(),
            kinesis: KinesisLimits::default(),
            sample_every_ms: 1_000,
            transport: Transport::Modelled,
            threads: 1,
        }
    }
}

/// A second configuration for the workers started from one node on.
#[derive(Clone, Debug)]
pub struct Deployed {
    /// The first node (in start order) that runs `worker`: the fleet's size at the start.
    pub from_node: NodeId,
    /// Their configuration.
    pub worker: Config,
}

impl FleetConfig {
    /// The configuration `node` runs, in every one of its processes.
    pub fn worker_of(&self, node: NodeId) -> &Config {
        match &self.deployed {
            Some(d) if node >= d.from_node => &d.worker,
            _ => &self.worker,
        }
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
        consistent: bool,
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
    /// What a mixed processor tells its worker, in order.
    ProcInputs {
        node: NodeId,
        inc: u64,
        inputs: Vec<Input<SimRecord>>,
    },
    Restart(NodeId),
    RestartMachine(usize),
    DriverTimeout(u64),
    Net(NetOp),
    Produce,
    Sample,
    Act(Action),
}

struct Node {
    id: WorkerId,
    machine: usize,
    /// Boxed: a batch takes it out of the node while it steps.
    worker: Option<Box<Worker<SimRecord>>>,
    /// Its step's number in the batch being run, until the step is taken back (its worker
    /// is out of the node meanwhile).
    stepping: Option<usize>,
    inc: u64,
    paused_until: u64,
    clock: NodeClock,
    wake_at: Option<u64>,
    batches: BTreeMap<LeaseKey, u32>,
    /// The mixed processors of this incarnation, by shard.
    apps: BTreeMap<LeaseKey, mixed::App>,
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

/// What the samples follow of a fleet settling; both engines keep it the same way.
#[derive(Clone, Debug, Default)]
pub(crate) struct Settling {
    /// One sample per `sample_every_ms`.
    pub timeline: Vec<Sample>,
    /// The first time the fleet was balanced and has stayed so since (ms).
    pub balanced_since: Option<u64>,
    /// Whether every record older than ten seconds had been delivered at the last sample.
    pub caught_up: bool,
}

impl Settling {
    /// A sample at `now`: `loads` the leases each running worker holds, `unheld` the
    /// unfinished leases none holds, `moves` the acquisitions so far. Balanced is every lease
    /// held and loads within one of each other; caught up advances the checker's prefixes.
    pub(crate) fn sample(
        &mut self,
        now: u64,
        loads: &[usize],
        unheld: usize,
        moves: u64,
        checker: &mut Checker,
        kinesis: &Kinesis,
    ) {
        let workers = loads.len();
        let min = loads.iter().copied().min().unwrap_or(0);
        let max = loads.iter().copied().max().unwrap_or(0);
        if unheld == 0 && max - min <= 1 && workers > 0 {
            self.balanced_since.get_or_insert(now);
        } else {
            self.balanced_since = None;
        }
        self.caught_up = crate::check::caught_up(checker, kinesis, now.saturating_sub(10_000));
        self.timeline.push(Sample {
            t: now as f64 / 1000.0,
            workers,
            min,
            max,
            unheld,
            moves,
        });
    }
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
    queue: Queue<Ev>,
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
    /// Every checkpoint request until its answer.
    pub checkpoints: CheckpointLedger,
    /// Counters.
    pub counters: Counters,
    /// The samples, and whether the fleet settled.
    pub(crate) settling: Settling,
    /// When each worker id stopped (crashed, or was asked to shut down), for the table-size
    /// check.
    departed: BTreeMap<WorkerId, u64>,
    /// When a worker last became leader: a leader judges a row dead by its own observations,
    /// which begin when it takes office.
    leader_since: u64,
    /// When the last fault that could keep the leader from scanning the table ended (DynamoDB
    /// throttling and errors, partitions, message delays, and the calm that ends every fault):
    /// a leader that cannot scan cannot see a row stand still.
    table_calm_since: u64,
    envelopes: BTreeMap<u64, Envelope>,
    next_envelope: u64,
    outbox: Vec<Vec<(u64, Service)>>,
    net_ops: Vec<NetOp>,
}

impl Fleet {
    /// A fleet with an empty lease table and `workers` workers: they create the leases by
    /// shard sync.
    pub fn new(cfg: FleetConfig, workers: usize) -> Self {
        let mut f = Self {
            rng: Rng::new(cfg.seed),
            now: 0,
            queue: Queue::new(),
            nodes: Vec::new(),
            machines: Vec::new(),
            service_faults: [ServiceFaults::default(); 2],
            processor_failure_per_mille: 0,
            producing: true,
            produce_carry: 0.0,
            dynamo: Dynamo::new(cfg.consistency.clone()),
            kinesis: Kinesis::new(cfg.shards, cfg.kinesis.clone()),
            checker: Checker::default(),
            checkpoints: CheckpointLedger::default(),
            counters: Counters::default(),
            settling: Settling::default(),
            departed: BTreeMap::new(),
            leader_since: 0,
            table_calm_since: 0,
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
        self.nodes.get(node).and_then(|n| n.worker.as_deref())
    }

    /// Workers that run and are not stopping, by node.
    fn running_workers(&self) -> impl Iterator<Item = (NodeId, &Worker<SimRecord>)> + '_ {
        self.nodes.iter().enumerate().filter_map(|(i, n)| {
            n.worker
                .as_deref()
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
        self.queue.push(at, ev);
    }

    /// Runs `action` at true time `at_ms`.
    pub fn at(&mut self, at_ms: u64, action: Action) {
        self.schedule(at_ms, Ev::Act(action));
    }

    /// Runs until true time `until_ms`, calling `progress` now and then with the time reached.
    pub fn run_until(&mut self, until_ms: u64, progress: &mut dyn FnMut(u64)) {
        if self.cfg.threads > 1 && !self.network() {
            let pool = Pool::new();
            std::thread::scope(|s| {
                s.spawn(|| pool.help(Step::run));
                // Stopped however this thread leaves, or a panic here would wait for the helper
                // forever.
                let _stop = pool.stopper();
                self.run_batches(until_ms, progress, Some(&pool));
            });
        } else {
            self.run_batches(until_ms, progress, None);
        }
        self.now = self.now.max(until_ms);
        progress(self.now);
    }

    /// The event loop: the events due at one instant, gathered into batches (see [`batch`]);
    /// an event that is not batched runs alone, after the batch gathered before it.
    fn run_batches(
        &mut self,
        until_ms: u64,
        progress: &mut dyn FnMut(u64),
        pool: Option<&Pool<Step>>,
    ) {
        let mut count = 0u64;
        let mut batch = Batch::default();
        let mut events = Vec::new();
        while let Some(at) = self.queue.take_next(until_ms, &mut events) {
            self.now = at;
            for ev in events.drain(..) {
                if Self::batched(&ev) {
                    self.gather(&mut batch, ev, pool);
                } else {
                    if !batch.is_empty() {
                        self.run_batch(&mut batch, pool);
                    }
                    self.dispatch(ev);
                }
                count += 1;
                if count.is_multiple_of(65_536) {
                    progress(self.now);
                }
            }
            if !batch.is_empty() {
                self.run_batch(&mut batch, pool);
            }
        }
        self.queue.recycle(events);
    }

    fn node_live(&self, node: NodeId, inc: u64) -> bool {
        self.nodes
            .get(node)
            .is_some_and(|n| n.inc == inc && n.worker.is_some())
    }

    /// An event that runs alone (see [`Fleet::batched`]).
    fn dispatch(&mut self, ev: Ev) {
        match ev {
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
            batched => {
                let mut batch = Batch::default();
                self.gather(&mut batch, batched, None);
                self.run_batch(&mut batch, None);
            }
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

    /// Carries out what a worker decided outside a batch (started, told to shut down), as a
    /// batch's third phase does for a step.
    fn after_handle(&mut self, node: NodeId) {
        let mut commands = Vec::new();
        let Some(deadline) = self.nodes[node]
            .worker
            .as_mut()
            .map(|w| batch::drain(w, &mut commands))
        else {
            return;
        };
        for cmd in commands {
            self.command(node, cmd);
        }
        self.arm_wake(node, deadline);
    }

    /// Schedules a worker's wake-up at its next deadline (on its own clock), unless one is
    /// already due then.
    fn arm_wake(&mut self, node: NodeId, deadline: Option<Instant>) {
        let n = &self.nodes[node];
        let Some(at) = deadline.map(|at| n.clock.true_time(at).max(self.now)) else {
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
            Event::BecameLeader => self.leader_since = self.now,
            _ => {}
        }
    }

    fn sample(&mut self) {
        let now = self.now;
        for shard in self.kinesis.trim(now) {
            self.checker.shard_expired(shard);
        }
        // Membership only, never iterated: a hash set cannot leak its order into the run.
        let mut held: std::collections::HashSet<&str, crate::hash::FastHash> =
            std::collections::HashSet::with_capacity_and_hasher(
                self.checker.unfinished().len(),
                Default::default(),
            );
        let mut loads = Vec::new();
        for (_, w) in self.running_workers() {
            let mut n = 0;
            for lease in w.held_leases().filter(|l| !l.is_finished()) {
                n += 1;
                held.insert(lease.key.as_str());
            }
            loads.push(n);
        }
        let unheld = self
            .checker
            .unfinished()
            .iter()
            .filter(|k| !held.contains(k.as_str()))
            .count();
        self.settling.sample(
            now,
            &loads,
            unheld,
            self.counters.acquisitions,
            &mut self.checker,
            &self.kinesis,
        );
        self.schedule(now + self.cfg.sample_every_ms, Ev::Sample);
    }

    /// Rows in the lease table.
    pub fn table_rows(&self) -> usize {
        self.dynamo.len()
    }

    /// What is wrong with the table's size at the end of a run: a lease row of no shard, or a
    /// worker row of a worker gone for longer than the leader takes to delete it: from the latest
    /// of the departure, the current leader's election and the end of the last fault that could
    /// keep it from scanning, a scan to see the last heartbeat, the
    /// failover time to the fence, a scan to see the fenced row (from which the retention runs),
    /// `worker_row_retention`, and a scan to delete it; the scans' reads and the writes take
    /// their latency (up to seconds under the nemesis's message delays), which the third scan
    /// covers.
    pub fn table_size_violations(&self) -> Vec<String> {
        let c = &self.cfg.worker;
        self.table_size_violations_within(
            c.worker_row_retention + c.failover_time + c.scan_interval * 3,
        )
    }

    /// [`Self::table_size_violations`], with the time a gone worker's row may stay.
    pub fn table_size_violations_within(&self, grace: core::time::Duration) -> Vec<String> {
        let running: BTreeSet<&str> = self
            .running_workers()
            .map(|(i, _)| self.nodes[i].id.as_str())
            .collect();
        table_size_violations(
            &self.dynamo,
            &self.kinesis,
            &running,
            &self.departed,
            self.leader_since.max(self.table_calm_since),
            self.now,
            grace,
        )
    }

    /// Records owed and never delivered: lost, or trimmed by retention before any worker read
    /// them.
    pub fn undelivered(&self) -> crate::check::Undelivered {
        let k = &self.kinesis;
        self.checker.undelivered(
            |shard, ms| k.records_before(shard, ms),
            |shard| k.trimmed_in(shard),
        )
    }
}

/// What is wrong with the table's size at `now`: a lease row of no shard, or the row of a worker
/// (not `running`) gone for longer than `grace` from the later of its departure and `observed`,
/// when the current leader could first observe the table (its election, or the end of the last
/// fault that kept it from scanning).
pub(crate) fn table_size_violations(
    dynamo: &Dynamo,
    kinesis: &Kinesis,
    running: &BTreeSet<&str>,
    departed: &BTreeMap<WorkerId, u64>,
    observed: u64,
    now: u64,
    grace: core::time::Duration,
) -> Vec<String> {
    let grace = grace.as_millis();
    let mut wrong = Vec::new();
    for (key, _) in dynamo.items() {
        if let Some(id) = key.strip_prefix(WORKER_KEY_PREFIX) {
            let gone_for = departed
                .get(id)
                .map(|&t| u128::from(now.saturating_sub(t.max(observed))));
            match gone_for {
                _ if running.contains(id) => {}
                Some(ms) if ms <= grace => {}
                Some(ms) => wrong.push(format!(
                    "table size: the row of {id}, gone for {} s since the current leader could observe it, was not deleted",
                    ms / 1000
                )),
                None => wrong.push(format!("table size: a row of unknown worker {id}")),
            }
        } else if key != LEADER_KEY && kinesis.shard_index(key).is_none() {
            wrong.push(format!("table size: a lease row {key} of no shard"));
        }
    }
    wrong
}

impl Fleet {
    /// What the run measured, for the report; checkpoint requests asked before
    /// `overdue_before` and still unanswered are overdue.
    pub fn measures(&self, overdue_before: u64) -> Measures {
        let undelivered = self.undelivered();
        Measures {
            violations: self.checker.violations().to_vec(),
            violation_count: self.checker.violation_count(),
            records_put: self.checker.records_put,
            records_delivered: self.checker.records_delivered,
            duplicate_deliveries: self.checker.duplicate_deliveries,
            checkpoint_requests: self.checkpoints.asked,
            checkpoint_answers: self.checkpoints.answers.clone(),
            checkpoints_overdue: self.checkpoints.overdue(overdue_before),
            counters: self.counters.clone(),
            timeline: self.settling.timeline.clone(),
            balanced_since: self.settling.balanced_since,
            caught_up: self.settling.caught_up,
            loads: self.loads(),
            table_rows: self.table_rows(),
            table_size_violations: self.table_size_violations(),
            undelivered,
            ddb_read_units: self.dynamo.read_units(),
            ddb_write_units: self.dynamo.write_units(),
            ddb_by_operation: self.dynamo.bills(),
            ddb_checkpoint_units: self.dynamo.checkpoint_units(),
            failover: self
                .checker
                .failover
                .figures(|k| self.checker.is_finished(k)),
            kinesis: self.kinesis.counts.clone(),
            driver: None,
        }
    }
}
