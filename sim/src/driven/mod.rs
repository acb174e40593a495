//! Driver mode: every worker is an unmodified [`kcl_aws::Driver`], the code kcl-tokio and
//! kcl-smol run, with real [`kcl_aws::RecordProcessor`]s, over simulated DynamoDB and Kinesis,
//! on a deterministic executor with simulated time.
//!
//! What it covers that event mode does not: the driver's command execution and its two lanes,
//! call timeouts and retries with their backoff, one task per processor and the checkpointer
//! channel, panics caught in processor calls, graceful shutdown through the shutdown handle,
//! and what the driver reports when it gives up. Processes die as processes do: a crash drops
//! every task of the process at once, wherever it was.
//!
//! The pieces: [`exec`] (the executor), [`runtime`] (the `Runtime` a process runs on: the
//! executor and its host's clocks), [`world`] (the services, the network, the sink and the
//! checkers, shared), [`backends`] (`LeaseTable` and `ShardStream` over the world), [`apps`]
//! (the processors). This module runs the fleet: processes started, crashed, restarted, shut
//! down, the producer, the samples and the scenario's actions.

pub(crate) mod apps;
pub(crate) mod backends;
pub mod exec;
pub(crate) mod runtime;
pub(crate) mod world;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use kcl_aws::{Driver, DriverConfig, ShutdownHandle, StatusHandle};
use kcl_core::rng::Rng;
use kcl_core::testkit::DriftClock;
use kcl_core::{LeaseKey, WorkerId};

use crate::dynamo::Dynamo;
use crate::fleet::{
    choose_crash, incarnation_id, machine_name, produce_tick, table_size_violations, Action,
    Counters, CrashChoice, FleetConfig, NodeClock, NodeId, Service, Settling, PRODUCE_EVERY_MS,
};
use crate::kinesis::Kinesis;
use crate::report::Measures;

use apps::{AppConfig, Factory, INJECTED_PANIC};
use backends::{Link, SimStream, SimTable};
use exec::{Executor, Group};
use runtime::{HostClock, SimRuntime};
use world::{Links, ServiceFaults, SharedWorld, World};

/// The drivers' processor call timeout: hung processors are cancelled after it. Shorter than
/// the 5-minute default so that a hang late in the fault phase is over before the liveness
/// phase ends; every other setting is the production default.
pub const PROCESSOR_CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// What driver mode measures beyond event mode's report.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DriverFigures {
    /// Writes the downstream sink accepted.
    pub sink_writes_accepted: u64,
    /// Writes the sink refused for a fencing token lower than one it had seen: a sink unaware
    /// of tokens would have taken these from owners that had lost their lease (and the
    /// accepted stale writes below as well).
    pub sink_writes_refused_stale: u64,
    /// Writes the sink accepted although the lease table had already given the shard to a
    /// newer ownership (or to nobody): the sink had not yet seen the newer token. Under the
    /// default policy only a process frozen during its call can make one, and from any other
    /// it is a violation; under kcl2-compatible an owner whose lease was stolen goes on
    /// processing until its next renewal fails, and these are its writes.
    pub sink_writes_accepted_stale: u64,
    /// Of those, the writes of processes frozen during their call (a pause or a host suspend:
    /// nothing stops a frozen process, and a sink protects itself only by refusing tokens
    /// lower than one it saw).
    pub sink_writes_accepted_stale_while_frozen: u64,
    /// Processes that ended with an error from `Driver::run` (each is also a violation; only a
    /// test that misconfigures the fleet on purpose expects them, see [`DrivenFleet::refuse`]).
    pub drivers_gave_up: u64,
    /// Answers a service held (the slow-answers fault) for at least the drivers' call timeout:
    /// calls that timed out although the service did what they asked.
    pub answers_held_past_call_timeout: u64,
    /// Tasks alive at the end (drivers, calls, processors).
    pub tasks_at_end: usize,
    /// Batches whose processor hung (under injected processor failures; the driver cancels
    /// them after [`PROCESSOR_CALL_TIMEOUT`] and gives their leases up).
    pub processor_hangs: u64,
    /// Times a new ownership's call started while an older ownership's call was under way in
    /// a process frozen meanwhile (paused, host suspended), which nothing can stop: the sink's
    /// fencing is what keeps such a call's writes out.
    pub overlaps_while_frozen: u64,
}

struct Process {
    id: WorkerId,
    machine: usize,
    inc: u64,
    group: Group,
    clock: HostClock,
    status: Option<StatusHandle>,
    shutdown: Option<ShutdownHandle>,
    /// Its process runs (not crashed, not yet restarted).
    alive: bool,
    /// Shut down for good (scale-down, replaced): never restarted.
    retired: bool,
}

#[derive(Debug)]
enum Ev {
    Act(Action),
    Restart(NodeId),
    RestartMachine(usize),
    Produce,
    Sample,
}

/// A process's driver that ended with an error.
#[derive(Clone, Debug)]
pub struct Ending {
    /// The worker.
    pub node: NodeId,
    /// Its process (incarnation).
    pub inc: u64,
    /// When (true ms).
    pub at_ms: u64,
    /// The error `Driver::run` returned, with its sources.
    pub error: String,
}

/// The drivers that ended with an error, in order.
type Endings = Arc<Mutex<Vec<Ending>>>;

/// The fleet of drivers and everything around it.
pub struct DrivenFleet {
    cfg: FleetConfig,
    exec: Executor,
    world: SharedWorld,
    rng: Rng,
    base: std::time::Instant,
    processes: Vec<Process>,
    machines_up: Vec<bool>,
    events: BTreeMap<(u64, u64), Ev>,
    next_event: u64,
    next_group: u64,
    producing: bool,
    produce_carry: f64,
    settling: Settling,
    departed: BTreeMap<WorkerId, u64>,
    leader: Option<NodeId>,
    leader_since: u64,
    faults: BTreeMap<String, u64>,
    endings: Endings,
    reported_endings: usize,
    gave_up: u64,
}

/// Keeps injected processor panics off stderr (the driver catches and counts them); every
/// other panic reaches the default hook.
fn quiet_injected_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<&str>() != Some(&INJECTED_PANIC) {
                default(info);
            }
        }));
    });
}

impl DrivenFleet {
    /// A fleet of `workers` drivers on an empty lease table.
    pub fn new(cfg: FleetConfig, workers: usize) -> Self {
        quiet_injected_panics();
        let exec = Executor::new();
        let mut world = World::new(
            cfg.seed ^ 0x7772_6c64,
            Dynamo::new(cfg.consistency.clone()),
            Kinesis::new(cfg.shards, cfg.kinesis.clone()),
            cfg.latency_ms,
            cfg.worker.initial_position,
        );
        world.call_timeout_ms = kcl_aws::RetryPolicy::default().call_timeout.as_millis() as u64;
        world.stale_writes_are_violations =
            cfg.worker.policy == kcl_core::BalancingPolicy::Coordinated;
        let mut f = Self {
            rng: Rng::new(cfg.seed),
            world: SharedWorld::new(world, exec.handle()),
            exec,
            base: std::time::Instant::now(),
            processes: Vec::new(),
            machines_up: Vec::new(),
            events: BTreeMap::new(),
            next_event: 0,
            next_group: 0,
            producing: true,
            produce_carry: 0.0,
            settling: Settling::default(),
            departed: BTreeMap::new(),
            leader: None,
            leader_since: 0,
            faults: BTreeMap::new(),
            endings: Endings::default(),
            reported_endings: 0,
            gave_up: 0,
            cfg,
        };
        for _ in 0..workers {
            f.add_worker();
        }
        f.schedule(0, Ev::Produce);
        f.schedule(f.cfg.sample_every_ms, Ev::Sample);
        f
    }

    fn schedule(&mut self, at: u64, ev: Ev) {
        self.events.insert((at, self.next_event), ev);
        self.next_event += 1;
    }

    /// Runs `action` at true time `at_ms`.
    pub fn at(&mut self, at_ms: u64, action: Action) {
        self.schedule(at_ms, Ev::Act(action));
    }

    /// True time now (ms).
    pub fn now_ms(&self) -> u64 {
        self.exec.now_ms()
    }

    /// Runs until true time `until_ms`, calling `progress` now and then with the time reached.
    pub fn run_until(&mut self, until_ms: u64, progress: &mut dyn FnMut(u64)) {
        let mut last_progress = self.now_ms();
        loop {
            let next = self.events.first_key_value().map(|(&(at, _), _)| at);
            let Some(at) = next.filter(|&at| at <= until_ms) else {
                self.exec.run_until(until_ms);
                self.collect_endings();
                progress(until_ms);
                return;
            };
            self.exec.run_until(at);
            self.collect_endings();
            if let Some((_, ev)) = self.events.pop_first() {
                self.dispatch(ev);
            }
            if at >= last_progress + 10_000 {
                last_progress = at;
                progress(at);
            }
        }
    }

    fn dispatch(&mut self, ev: Ev) {
        match ev {
            Ev::Act(action) => self.act(action),
            Ev::Restart(node) => {
                let p = &self.processes[node];
                if !p.retired && !p.alive && self.machines_up[p.machine] {
                    self.start(node);
                }
            }
            Ev::RestartMachine(m) => {
                self.machines_up[m] = true;
                for node in 0..self.processes.len() {
                    let p = &self.processes[node];
                    if p.machine == m && !p.retired && !p.alive {
                        self.start(node);
                    }
                }
            }
            Ev::Produce => self.produce(),
            Ev::Sample => self.sample(),
        }
    }

    /// Drivers that ended since the last look: an error is a driver giving up.
    fn collect_endings(&mut self) {
        let endings = self.endings.lock().unwrap_or_else(|e| e.into_inner());
        if endings.len() == self.reported_endings {
            return;
        }
        let new: Vec<Ending> = endings[self.reported_endings..].to_vec();
        self.reported_endings = endings.len();
        drop(endings);
        let now = self.now_ms();
        for ending in new {
            self.gave_up += 1;
            let id = incarnation_id(ending.node, ending.inc);
            let error = ending.error;
            self.world
                .lock()
                .checker
                .violation(now, format!("{id}'s driver gave up: {error}"));
        }
    }

    /// The drivers that ended with an error so far (each is also a violation).
    pub fn endings(&self) -> Vec<Ending> {
        self.endings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// From now on every call from the machines of `nodes` to `service` is refused with
    /// `failure`: the misconfigurations a worker must report instead of idling (a deleted
    /// stream answers NotFound, a revoked permission AccessDenied).
    pub fn refuse(
        &mut self,
        nodes: impl IntoIterator<Item = NodeId>,
        service: Service,
        failure: kcl_core::Failure,
    ) {
        let mut w = self.world.lock();
        for node in nodes {
            let machine = self.processes[node].machine;
            w.refusals
                .insert((machine, service as usize), failure.clone());
        }
    }

    /// Workers whose process runs now.
    pub fn alive(&self) -> Vec<NodeId> {
        (0..self.processes.len())
            .filter(|&i| self.processes[i].alive)
            .collect()
    }

    /// Starts a new worker process on a machine with room; returns its node.
    pub fn add_worker(&mut self) -> NodeId {
        let node = self.processes.len();
        let machine = node / self.cfg.workers_per_machine.max(1);
        while self.machines_up.len() <= machine {
            self.machines_up.push(true);
            self.world.lock().links.push(Links::default());
        }
        let now = self.now_ms();
        let clock = NodeClock::new(
            DriftClock::new(1_000_000 + self.rng.below(1_000_000), now),
            self.cfg.worker_clock,
        );
        self.processes.push(Process {
            id: incarnation_id(node, 1),
            machine,
            inc: 0,
            group: Group(0),
            clock: HostClock::new(clock),
            status: None,
            shutdown: None,
            alive: false,
            retired: false,
        });
        self.start(node);
        node
    }

    /// Starts `node`'s next process: a fresh id, a fresh driver.
    fn start(&mut self, node: NodeId) {
        let seed = self.rng.next_u64();
        let group = Group(self.next_group);
        self.next_group += 1;
        let handle = self.exec.handle();
        let p = &mut self.processes[node];
        p.inc += 1;
        p.id = incarnation_id(node, p.inc);
        p.group = group;
        p.alive = true;
        let link = Link {
            world: self.world.clone(),
            exec: handle.clone(),
            node,
            machine: p.machine,
            worker: p.id.clone(),
        };
        let runtime = SimRuntime::new(
            handle,
            p.clock.clone(),
            self.cfg.worker_clock,
            self.base,
            wall_clock_error(node),
        );
        let factory = Factory {
            link: link.clone(),
            inc: p.inc,
            config: AppConfig {
                process_ms: self.cfg.process_ms,
                checkpoint_every: self.cfg.checkpoint_every,
                mixed: self.cfg.processors == crate::scenario::Processors::Mixed,
            },
        };
        let config = DriverConfig {
            worker: kcl_core::Config {
                failure_domain: Some(machine_name(p.machine)),
                ..self.cfg.worker_of(node).clone()
            },
            processor_call_timeout: PROCESSOR_CALL_TIMEOUT,
            ..DriverConfig::default()
        };
        let driver = match Driver::new(
            runtime,
            SimTable(link.clone()),
            SimStream(link),
            factory,
            p.id.clone(),
            config,
            seed,
        ) {
            Ok(driver) => driver,
            Err(e) => {
                let what = format!("{}'s driver refused its configuration: {e}", p.id);
                p.alive = false;
                let now = self.exec.now_ms();
                self.world.lock().checker.violation(now, what);
                return;
            }
        };
        p.status = Some(driver.status_handle());
        p.shutdown = Some(driver.shutdown_handle());
        let (endings, inc, clock) = (self.endings.clone(), p.inc, self.exec.handle());
        self.exec.spawn(group, async move {
            if let Err(e) = driver.run().await {
                let ending = Ending {
                    node,
                    inc,
                    at_ms: clock.now_ms(),
                    error: kcl_aws::error_chain(&e),
                };
                endings
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(ending);
            }
        });
    }

    /// The process dies: every task of it dropped wherever it was.
    fn crash(&mut self, node: NodeId, cause: &'static str) {
        let now = self.now_ms();
        let held = self.held(node);
        let p = &mut self.processes[node];
        if !p.alive {
            return;
        }
        p.alive = false;
        p.status = None;
        p.shutdown = None;
        self.departed.insert(p.id.clone(), now);
        let row = kcl_core::lease::WorkerRow::key(&p.id);
        let (group, inc) = (p.group, p.inc);
        self.exec.kill(group);
        let mut w = self.world.lock();
        w.checkpoints.forget(node, inc);
        w.checker.failover.crashed(now, cause, row, held);
    }

    /// Running processes that have not been asked to stop, by node.
    fn running(&self) -> impl Iterator<Item = NodeId> + '_ {
        (0..self.processes.len()).filter(|&i| {
            let p = &self.processes[i];
            p.alive && !p.retired && p.status.as_ref().is_some_and(|s| !s.snapshot().stopped)
        })
    }

    fn crash_machine(&mut self, m: usize, restart_after_ms: u64, cause: &'static str) {
        self.machines_up[m] = false;
        for i in 0..self.processes.len() {
            if self.processes[i].machine == m {
                self.crash(i, cause);
            }
        }
        let now = self.now_ms();
        self.schedule(now + restart_after_ms, Ev::RestartMachine(m));
    }

    /// The leader, or a random running process that does not lead (on another machine than the
    /// leader's when `machine`).
    fn chosen(&mut self, leader: bool, machine: bool) -> Option<NodeId> {
        let running: Vec<NodeId> = self.running().collect();
        let lead = running.iter().copied().find(|&i| {
            self.processes[i]
                .status
                .as_ref()
                .is_some_and(|s| s.snapshot().leader)
        });
        let processes = &self.processes;
        choose_crash(
            &running,
            lead,
            |i| processes[i].machine,
            CrashChoice { leader, machine },
            &mut self.rng,
        )
    }

    fn random_running(&mut self) -> Option<NodeId> {
        let running: Vec<NodeId> = self.running().collect();
        if running.is_empty() {
            return None;
        }
        Some(running[self.rng.index(running.len())])
    }

    /// The process holding the most leases (the first on a tie).
    fn busiest(&self) -> Option<NodeId> {
        self.running()
            .map(|i| (self.held(i).len(), core::cmp::Reverse(i)))
            .max()
            .map(|(_, core::cmp::Reverse(i))| i)
    }

    /// The leases `node` holds, by its own account.
    fn held(&self, node: NodeId) -> Vec<LeaseKey> {
        self.processes[node]
            .status
            .as_ref()
            .map(|s| s.snapshot().shards.into_keys().collect())
            .unwrap_or_default()
    }

    fn partition(&mut self, machine: usize, service: Service, ms: u64) {
        let now = self.now_ms();
        let mut w = self.world.lock();
        if let Some(links) = w.links.get_mut(machine) {
            let until = &mut links.partitioned_until[service as usize];
            *until = (*until).max(now + ms);
        }
    }

    fn act(&mut self, action: Action) {
        let kind = action.fault_kind();
        if let Some(kind) = kind {
            *self.faults.entry(kind.to_owned()).or_default() += 1;
        }
        let cause = kind.unwrap_or("crash");
        let now = self.now_ms();
        match action {
            Action::AddWorkers(n) => {
                for _ in 0..n {
                    self.add_worker();
                }
            }
            Action::Shutdown(node) => {
                if let Some(p) = self.processes.get_mut(node) {
                    if p.alive && !p.retired {
                        p.retired = true;
                        self.departed.insert(p.id.clone(), now);
                        if let Some(h) = &p.shutdown {
                            h.shutdown();
                        }
                    }
                }
            }
            Action::Replace(node) => {
                self.act(Action::Shutdown(node));
                self.add_worker();
            }
            Action::CrashWorker { restart_after_ms } => {
                if let Some(node) = self.random_running() {
                    self.crash(node, cause);
                    self.schedule(now + restart_after_ms, Ev::Restart(node));
                }
            }
            Action::CrashChosen {
                leader,
                machine,
                restart_after_ms,
            } => {
                if let Some(node) = self.chosen(leader, machine) {
                    if machine {
                        self.crash_machine(self.processes[node].machine, restart_after_ms, cause);
                    } else {
                        self.crash(node, cause);
                        self.schedule(now + restart_after_ms, Ev::Restart(node));
                    }
                }
            }
            Action::CrashMachine { restart_after_ms } => {
                if let Some(node) = self.random_running() {
                    self.crash_machine(self.processes[node].machine, restart_after_ms, cause);
                }
            }
            Action::Partition { service, ms } => {
                if let Some(node) = self.random_running() {
                    self.partition(self.processes[node].machine, service, ms);
                }
            }
            Action::PartitionAll { service, ms } => {
                for machine in 0..self.machines_up.len() {
                    self.partition(machine, service, ms);
                }
            }
            Action::Delay { extra_ms, ms } => {
                if let Some(node) = self.random_running() {
                    let machine = self.processes[node].machine;
                    let mut w = self.world.lock();
                    let links = &mut w.links[machine];
                    links.delay_until = now + ms;
                    links.extra_delay_ms = extra_ms;
                }
            }
            Action::Pause { ms } => {
                if let Some(node) = self.random_running() {
                    self.exec.pause(self.processes[node].group, now + ms);
                    self.world.lock().frozen(node, ms);
                }
            }
            Action::Suspend { ms, busiest } => {
                let node = if busiest {
                    self.busiest()
                } else {
                    self.random_running()
                };
                if let Some(node) = node {
                    let p = &self.processes[node];
                    p.clock.lock().clock.suspend(now, ms);
                    self.exec.pause(p.group, now + ms);
                    self.world.lock().frozen(node, ms);
                }
            }
            Action::Drift { rate } => {
                if let Some(node) = self.random_running() {
                    self.processes[node].clock.lock().clock.set_rate(now, rate);
                }
            }
            Action::DriftAndIsolate { rate, ms } => {
                if let Some(node) = self.busiest() {
                    self.processes[node].clock.lock().clock.set_rate(now, rate);
                    self.partition(self.processes[node].machine, Service::Dynamo, ms);
                }
            }
            Action::ServiceFaults {
                service,
                throttle_per_mille,
                error_per_mille,
            } => {
                let faults = &mut self.world.lock().service_faults[service as usize];
                faults.throttle_per_mille = throttle_per_mille;
                faults.error_per_mille = error_per_mille;
            }
            Action::BlockingReads(on) => self.world.lock().blocking_reads = on,
            Action::SlowAnswers {
                service,
                per_mille,
                hold_ms,
            } => {
                let faults = &mut self.world.lock().service_faults[service as usize];
                faults.slow_per_mille = per_mille;
                faults.slow_hold_ms = hold_ms;
            }
            Action::ProcessorFailures(per_mille) => {
                self.world.lock().processor_failure_per_mille = per_mille;
            }
            Action::Split => self.world.lock().kinesis.split_random(&mut self.rng),
            Action::Merge => self.world.lock().kinesis.merge_random(&mut self.rng),
            Action::UpdateShardCount { per_mille } => self.world.lock().kinesis.rescale(per_mille),
            Action::StopProducing => self.producing = false,
            Action::Calm => {
                {
                    let mut w = self.world.lock();
                    w.service_faults = [ServiceFaults::default(); 2];
                    w.blocking_reads = false;
                    w.processor_failure_per_mille = 0;
                    for links in &mut w.links {
                        *links = Links::default();
                    }
                }
                for p in &self.processes {
                    let clock = &mut p.clock.lock().clock;
                    if clock.rate() != 1.0 {
                        clock.set_rate(now, 1.0);
                    }
                }
            }
        }
    }

    fn produce(&mut self) {
        let now = self.now_ms();
        if self.producing {
            let mut w = self.world.lock();
            let World {
                kinesis, checker, ..
            } = &mut *w;
            produce_tick(
                &mut self.rng,
                &mut self.produce_carry,
                &self.cfg,
                now,
                kinesis,
                checker,
            );
        }
        self.schedule(now + PRODUCE_EVERY_MS, Ev::Produce);
    }

    fn sample(&mut self) {
        let now = self.now_ms();
        let running: Vec<NodeId> = self.running().collect();
        let mut held: BTreeSet<LeaseKey> = BTreeSet::new();
        let mut loads = Vec::new();
        let mut leader = None;
        for &node in &running {
            let Some(status) = self.processes[node].status.as_ref().map(|s| s.snapshot()) else {
                continue;
            };
            if status.leader && leader.is_none() {
                leader = Some(node);
            }
            loads.push(status.shards.len());
            held.extend(status.shards.into_keys());
        }
        if leader.is_some() && leader != self.leader {
            self.leader_since = now;
        }
        self.leader = leader;
        let mut w = self.world.lock();
        for shard in w.kinesis.trim(now) {
            w.checker.shard_expired(shard);
        }
        let unheld = w
            .checker
            .unfinished()
            .iter()
            .filter(|k| !held.contains(*k))
            .count();
        let world = &mut *w;
        let moves = world.acquisitions;
        self.settling.sample(
            now,
            &loads,
            unheld,
            moves,
            &mut world.checker,
            &world.kinesis,
        );
        drop(w);
        self.schedule(now + self.cfg.sample_every_ms, Ev::Sample);
    }

    /// Unfinished leases held, per running process (by its own account).
    pub fn loads(&self) -> Vec<usize> {
        self.running().map(|i| self.held(i).len()).collect()
    }

    /// DynamoDB units so far, leases held per running process, unfinished leases unheld at
    /// the last sample, and lease acquisitions so far.
    pub fn progress(&self) -> (crate::scenario::DdbUnits, Vec<usize>, usize, u64) {
        let (units, moves) = {
            let w = self.world.lock();
            (crate::scenario::DdbUnits::of(&w.dynamo), w.acquisitions)
        };
        let unheld = self.settling.timeline.last().map_or(0, |s| s.unheld);
        (units, self.loads(), unheld, moves)
    }

    /// What the run measured, for the report; checkpoint requests asked before
    /// `overdue_before` and still unanswered are overdue.
    pub fn measures(&self, overdue_before: u64) -> Measures {
        let w = self.world.lock();
        let now = self.now_ms();
        let c = &self.cfg.worker;
        let running: Vec<WorkerId> = self
            .running()
            .map(|i| self.processes[i].id.clone())
            .collect();
        let running: BTreeSet<&str> = running.iter().map(WorkerId::as_str).collect();
        let table_size = table_size_violations(
            &w.dynamo,
            &w.kinesis,
            &running,
            &self.departed,
            self.leader_since,
            now,
            c.worker_row_retention + c.failover_time + c.scan_interval * 2,
        );
        let k = &w.kinesis;
        let undelivered = w
            .checker
            .undelivered(|shard, ms| k.records_before(shard, ms), |s| k.trimmed_in(s));
        Measures {
            violations: w.checker.violations().to_vec(),
            violation_count: w.checker.violation_count(),
            records_put: w.checker.records_put,
            records_delivered: w.checker.records_delivered,
            duplicate_deliveries: w.checker.duplicate_deliveries,
            checkpoint_requests: w.checkpoints.asked,
            checkpoint_answers: w.checkpoints.answers.clone(),
            checkpoints_overdue: w.checkpoints.overdue(overdue_before),
            counters: Counters {
                acquisitions: w.acquisitions,
                handoffs: w.releases,
                losses: w.takes_from_owner,
                faults: self.faults.clone(),
            },
            timeline: self.settling.timeline.clone(),
            balanced_since: self.settling.balanced_since,
            caught_up: self.settling.caught_up,
            loads: self.loads(),
            table_rows: w.dynamo.len(),
            table_size_violations: table_size,
            undelivered,
            ddb_read_units: w.dynamo.read_units(),
            ddb_write_units: w.dynamo.write_units(),
            ddb_by_operation: w.dynamo.bills(),
            ddb_checkpoint_units: w.dynamo.checkpoint_units(),
            failover: w.checker.failover.figures(|k| w.checker.is_finished(k)),
            kinesis: w.kinesis.counts.clone(),
            driver: Some(DriverFigures {
                sink_writes_accepted: w.sink.accepted,
                sink_writes_refused_stale: w.sink.refused_stale,
                sink_writes_accepted_stale: w.sink.accepted_stale,
                sink_writes_accepted_stale_while_frozen: w.sink.accepted_stale_while_frozen,
                drivers_gave_up: self.gave_up,
                answers_held_past_call_timeout: w.answers_held_past_call_timeout,
                tasks_at_end: self.exec.tasks(),
                processor_hangs: w.processor_hangs,
                overlaps_while_frozen: w.overlaps_while_frozen,
            }),
        }
    }
}

/// `node`'s wall clock error: up to ±400 ms, as NTP-disciplined hosts are, drawn from the node's
/// index (event mode's formula).
fn wall_clock_error(node: NodeId) -> u64 {
    let error = (node as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54;
    error * 801 / 1024
}
