//! Many workers, one table, one stream, one seeded schedule, and the checkers.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::{DriftClock, MemStream, MemTable, ProcessorOutcome};
use crate::config::{BalancingPolicy, Config, InitialPosition};
use crate::io::{
    CallId, Command, Event, Failure, FencingToken, FetchedRecords, Input, ProcessorCall, Record,
    ReleaseReason,
};
use crate::lease::{Lease, LeaseKey, WorkerId};
use crate::rng::Rng;
use crate::sequence::{Position, RecordPosition};
use crate::time::Instant;
use crate::worker::Worker;

/// A worker's index in the cluster.
pub type NodeId = usize;

/// The record type the cluster feeds its workers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestRecord {
    /// Position.
    pub position: RecordPosition,
    /// Stream-wide id.
    pub id: u64,
}

impl Record for TestRecord {
    fn position(&self) -> &RecordPosition {
        &self.position
    }
    fn size_bytes(&self) -> usize {
        100
    }
}

/// Service faults, in per mille of calls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Calls throttled.
    pub throttle_per_mille: u64,
    /// Table writes that land but whose answer is lost (the driver reports a timeout).
    pub ambiguous_write_per_mille: u64,
}

/// The worker configuration the harness's checks are written for: `policy`'s defaults, with every
/// shard read from `TRIM_HORIZON`, because the checker owes every record put (with the default,
/// `LATEST`, a record put before a lease was created is never owed).
pub fn harness_config(policy: BalancingPolicy) -> Config {
    let defaults = match policy {
        BalancingPolicy::Coordinated => Config::default(),
        BalancingPolicy::Kcl2Compatible => Config::kcl2(),
    };
    Config {
        initial_position: InitialPosition::TrimHorizon,
        ..defaults
    }
}

/// How to build a cluster.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// Workers at the start.
    pub workers: usize,
    /// Shards at the start.
    pub shards: usize,
    /// Every worker's configuration.
    pub config: Config,
    /// The one seed of the whole run.
    pub seed: u64,
    /// One-way latency to the services, uniform in this range (ms).
    pub latency_ms: (u64, u64),
    /// How long a processor takes per call (ms).
    pub process_ms: (u64, u64),
    /// A processor checkpoints after every this many batches (0: only on shutdown requests).
    pub checkpoint_every: u32,
    /// Service faults.
    pub faults: Faults,
    /// How long a partitioned node's driver waits before reporting a call failed (ms).
    pub driver_timeout_ms: u64,
    /// Keep a line per command and per lease-table write in [`Cluster::log`] (for replaying a
    /// failing seed, and as the oracle of a refactor: see `examples/trace.rs`).
    pub trace: bool,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            workers: 3,
            shards: 8,
            config: harness_config(BalancingPolicy::Coordinated),
            seed: 1,
            latency_ms: (2, 10),
            process_ms: (1, 20),
            checkpoint_every: 1,
            faults: Faults::default(),
            driver_timeout_ms: 2_000,
            trace: false,
        }
    }
}

/// An invariant broken, with when and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// True time (ms).
    pub at_ms: u64,
    /// What.
    pub what: String,
}

/// What a run did, for assertions and reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Leases acquired by any worker since the last [`Cluster::mark`].
    pub acquisitions: u64,
    /// Handoffs completed since the mark.
    pub handoffs: u64,
    /// Leases lost since the mark.
    pub losses: u64,
    /// Records delivered (with duplicates).
    pub deliveries: u64,
    /// Deliveries of a record already delivered.
    pub duplicates: u64,
}

#[derive(Debug)]
enum Ev {
    Wake {
        node: NodeId,
        inc: u64,
        due: u64,
    },
    Arrive {
        node: NodeId,
        inc: u64,
        cmd: Command<TestRecord>,
        lost_answer: bool,
    },
    Result {
        node: NodeId,
        inc: u64,
        input: Input<TestRecord>,
    },
    ProcDone {
        node: NodeId,
        inc: u64,
        shard: LeaseKey,
        call: CallId,
        outcome: ProcessorOutcome,
        token: FencingToken,
    },
}

struct Node {
    id: WorkerId,
    worker: Option<Worker<TestRecord>>,
    inc: u64,
    paused_until: u64,
    partitioned_until: u64,
    clock: DriftClock,
    wake_at: Option<u64>,
    batches: BTreeMap<LeaseKey, u32>,
}

/// The cluster.
pub struct Cluster {
    cfg: ClusterConfig,
    rng: Rng,
    now: u64,
    seq: u64,
    queue: BTreeMap<(u64, u64), Ev>,
    nodes: Vec<Node>,
    /// The lease table.
    pub table: MemTable,
    /// The stream.
    pub stream: MemStream,
    violations: Vec<Violation>,
    delivered: BTreeMap<u64, Vec<(NodeId, FencingToken)>>,
    init_checkpoint: BTreeMap<(LeaseKey, FencingToken), Position>,
    finished: BTreeSet<LeaseKey>,
    report: Report,
    next_worker: usize,
    /// With `trace`: one line per command a worker issued and per lease-table write, in order.
    pub log: Vec<String>,
}

impl Cluster {
    /// A cluster with its lease table empty: the workers create the leases by shard sync.
    pub fn new(cfg: ClusterConfig) -> Self {
        let mut c = Self {
            rng: Rng::new(cfg.seed),
            now: 0,
            seq: 0,
            queue: BTreeMap::new(),
            nodes: Vec::new(),
            table: MemTable::default(),
            stream: MemStream::new(cfg.shards),
            violations: Vec::new(),
            delivered: BTreeMap::new(),
            init_checkpoint: BTreeMap::new(),
            finished: BTreeSet::new(),
            report: Report::default(),
            next_worker: 0,
            log: Vec::new(),
            cfg,
        };
        for _ in 0..c.cfg.workers {
            c.add_worker();
        }
        c
    }

    /// True time now (ms).
    pub fn now_ms(&self) -> u64 {
        self.now
    }

    /// Broken invariants so far.
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// Counters since the last mark.
    pub fn report(&self) -> &Report {
        &self.report
    }

    /// Restarts the move counters (after the initial spread, say).
    pub fn mark(&mut self) {
        self.report.acquisitions = 0;
        self.report.handoffs = 0;
        self.report.losses = 0;
    }

    /// The worker of a node, when it runs.
    pub fn worker(&self, node: NodeId) -> Option<&Worker<TestRecord>> {
        self.nodes.get(node).and_then(|n| n.worker.as_ref())
    }

    /// Number of nodes ever added.
    pub fn nodes(&self) -> usize {
        self.nodes.len()
    }

    fn schedule(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.insert((at, self.seq), ev);
    }

    fn latency(&mut self) -> u64 {
        let (lo, hi) = self.cfg.latency_ms;
        self.rng.between(lo, hi)
    }

    /// Starts a new worker; returns its node.
    pub fn add_worker(&mut self) -> NodeId {
        let node = self.nodes.len();
        let id = WorkerId::from(format!("worker-{:04}", self.next_worker));
        self.next_worker += 1;
        self.nodes.push(Node {
            id,
            worker: None,
            inc: 0,
            paused_until: 0,
            partitioned_until: 0,
            clock: DriftClock::new(1_000_000, self.now),
            wake_at: None,
            batches: BTreeMap::new(),
        });
        self.restart(node);
        node
    }

    /// Starts a second process with the worker id of `node` (a misconfigured deployment);
    /// returns its node.
    pub fn add_twin(&mut self, node: NodeId) -> NodeId {
        let twin = self.add_worker();
        let id = self.nodes[node].id.clone();
        self.nodes[twin].id = id;
        self.restart(twin);
        twin
    }

    /// Crashes a node: its worker and processors vanish, answers to it are dropped.
    pub fn crash(&mut self, node: NodeId) {
        if let Some(n) = self.nodes.get_mut(node) {
            n.worker = None;
            n.inc += 1;
            n.wake_at = None;
            n.batches.clear();
        }
    }

    /// Starts (or restarts, with state lost) a node's worker.
    pub fn restart(&mut self, node: NodeId) {
        let seed = self.rng.next_u64();
        let now = self.now;
        let Some(n) = self.nodes.get_mut(node) else {
            return;
        };
        n.inc += 1;
        n.batches.clear();
        let local = n.clock.local(now);
        n.worker = Worker::new(self.cfg.config.clone(), n.id.clone(), seed, local).ok();
        n.wake_at = None;
        self.after_handle(node);
    }

    /// Stops a node's process for `ms` (a stop-the-world pause): nothing it does happens until then.
    pub fn pause(&mut self, node: NodeId, ms: u64) {
        let until = self.now + ms;
        if let Some(n) = self.nodes.get_mut(node) {
            n.paused_until = n.paused_until.max(until);
        }
    }

    /// Cuts a node off the services for `ms`: its calls fail after the driver timeout (writes
    /// sometimes land all the same).
    pub fn partition(&mut self, node: NodeId, ms: u64) {
        let until = self.now + ms;
        if let Some(n) = self.nodes.get_mut(node) {
            n.partitioned_until = n.partitioned_until.max(until);
        }
    }

    /// Changes the service faults from now on (to end a fault phase, say).
    pub fn set_faults(&mut self, faults: Faults) {
        self.cfg.faults = faults;
    }

    /// Sets a node's clock rate (1.0 is true time).
    pub fn drift(&mut self, node: NodeId, rate: f64) {
        let now = self.now;
        if let Some(n) = self.nodes.get_mut(node) {
            n.clock.set_rate(now, rate);
        }
    }

    /// Asks a node's worker to shut down gracefully.
    pub fn shutdown(&mut self, node: NodeId) {
        self.with_worker(node, |w, now| w.handle(now, Input::ShutdownRequested));
    }

    /// Puts `n` records with random partition-key hashes.
    pub fn put_records(&mut self, n: usize) {
        for _ in 0..n {
            let hash = (u128::from(self.rng.next_u64()) << 64) | u128::from(self.rng.next_u64());
            self.stream.put(hash);
        }
    }

    /// Runs until true time `t_ms`.
    pub fn run_until(&mut self, t_ms: u64) {
        let mut same_instant = 0u64;
        while let Some((&(at, seq), _)) = self.queue.first_key_value() {
            if at > t_ms {
                break;
            }
            let Some(ev) = self.queue.remove(&(at, seq)) else {
                break;
            };
            same_instant = if at == self.now { same_instant + 1 } else { 0 };
            if same_instant > 200_000 {
                // Time stands still: a worker keeps asking to be woken now. Report, do not hang.
                self.violation(format!("livelock: more than 200000 events at {at} ms"));
                self.queue.clear();
                break;
            }
            self.now = at;
            self.dispatch(at, ev);
        }
        self.now = self.now.max(t_ms);
    }

    fn node_event_ok(&self, node: NodeId, inc: u64, at: u64) -> Option<bool> {
        let n = self.nodes.get(node)?;
        if n.inc != inc || n.worker.is_none() {
            return Some(false);
        }
        if at < n.paused_until {
            // Queued until the pause ends; the event keeps its place relative to others.
            return None;
        }
        Some(true)
    }

    fn dispatch(&mut self, at: u64, ev: Ev) {
        let (node, inc) = match &ev {
            Ev::Wake { node, inc, .. }
            | Ev::Arrive { node, inc, .. }
            | Ev::Result { node, inc, .. }
            | Ev::ProcDone { node, inc, .. } => (*node, *inc),
        };
        // Arrivals at the services happen whatever the node is doing.
        if let Ev::Arrive {
            node,
            inc,
            cmd,
            lost_answer,
        } = ev
        {
            return self.arrive(node, inc, cmd, lost_answer);
        }
        match self.node_event_ok(node, inc, at) {
            Some(true) => {}
            Some(false) => return,
            None => {
                let until = self.nodes[node].paused_until;
                return self.schedule(until, ev);
            }
        }
        match ev {
            Ev::Wake { node, due, .. } => {
                if self.nodes[node].wake_at != Some(due) {
                    return;
                }
                self.nodes[node].wake_at = None;
                self.with_worker(node, |w, now| w.handle_timeout(now));
            }
            Ev::Result { node, input, .. } => self.with_worker(node, |w, now| w.handle(now, input)),
            Ev::ProcDone {
                node,
                shard,
                call,
                outcome,
                token,
                ..
            } => {
                for input in outcome.inputs(shard, call, token) {
                    self.with_worker(node, |w, now| w.handle(now, input));
                }
            }
            Ev::Arrive { .. } => {}
        }
    }

    fn with_worker(&mut self, node: NodeId, f: impl FnOnce(&mut Worker<TestRecord>, Instant)) {
        let now = self.now;
        let Some(n) = self.nodes.get_mut(node) else {
            return;
        };
        let local = n.clock.local(now);
        let Some(w) = n.worker.as_mut() else { return };
        f(w, local);
        self.after_handle(node);
    }

    fn after_handle(&mut self, node: NodeId) {
        while let Some(cmd) = self
            .nodes
            .get_mut(node)
            .and_then(|n| n.worker.as_mut())
            .and_then(Worker::poll_command)
        {
            self.command(node, cmd);
        }
        let Some(n) = self.nodes.get(node) else {
            return;
        };
        let Some(w) = n.worker.as_ref() else { return };
        if let Some((at, _)) = w.poll_timeout() {
            let t = n.clock.true_time(at).max(self.now);
            if n.wake_at != Some(t) {
                let inc = n.inc;
                self.nodes[node].wake_at = Some(t);
                self.schedule(t, Ev::Wake { node, inc, due: t });
            }
        }
    }

    fn command(&mut self, node: NodeId, cmd: Command<TestRecord>) {
        let inc = self.nodes[node].inc;
        if self.cfg.trace {
            self.log.push(format!("t={} node={node} {cmd:?}", self.now));
        }
        match cmd {
            Command::Processor {
                shard,
                call,
                action,
            } => self.processor(node, inc, shard, call, action),
            Command::Event(e) => match e {
                Event::LeaseAcquired { .. } => self.report.acquisitions += 1,
                Event::LeaseReleased {
                    reason: ReleaseReason::HandedOver,
                    ..
                } => self.report.handoffs += 1,
                Event::LeaseReleased {
                    reason: ReleaseReason::Lost,
                    ..
                } => self.report.losses += 1,
                _ => {}
            },
            cmd => {
                let l = self.latency();
                let partitioned = self.now < self.nodes[node].partitioned_until;
                if partitioned {
                    // The request may or may not reach the service; the answer never comes back.
                    let reaches = self.rng.below(2) == 0;
                    if reaches {
                        self.schedule(
                            self.now + l,
                            Ev::Arrive {
                                node,
                                inc,
                                cmd: cmd.clone(),
                                lost_answer: true,
                            },
                        );
                    }
                    let failed = cmd.failed(Failure::Transient);
                    let t = self.now + self.cfg.driver_timeout_ms;
                    if let Some(input) = failed {
                        self.schedule(t, Ev::Result { node, inc, input });
                    }
                } else {
                    self.schedule(
                        self.now + l,
                        Ev::Arrive {
                            node,
                            inc,
                            cmd,
                            lost_answer: false,
                        },
                    );
                }
            }
        }
    }

    fn processor(
        &mut self,
        node: NodeId,
        inc: u64,
        shard: LeaseKey,
        call: CallId,
        action: ProcessorCall<TestRecord>,
    ) {
        let (lo, hi) = self.cfg.process_ms;
        let delay = self.rng.between(lo, hi);
        let (token, outcome) = match action {
            ProcessorCall::Initialize {
                checkpoint, token, ..
            } => {
                self.init_checkpoint
                    .insert((shard.clone(), token), checkpoint);
                (token, ProcessorOutcome::Returned)
            }
            ProcessorCall::ProcessRecords { records, token, .. } => {
                self.check_delivery(node, &shard, token, &records);
                let every = self.cfg.checkpoint_every;
                let n = self.nodes[node].batches.entry(shard.clone()).or_insert(0);
                *n += 1;
                if every > 0 && (*n).is_multiple_of(every) {
                    (token, ProcessorOutcome::Checkpoint)
                } else {
                    (token, ProcessorOutcome::Returned)
                }
            }
            ProcessorCall::ShardEnded { token } => (token, ProcessorOutcome::Returned),
            ProcessorCall::ShutdownRequested { token } => (token, ProcessorOutcome::Checkpoint),
            ProcessorCall::LeaseLost | ProcessorCall::CheckpointDone { .. } => return,
        };
        self.schedule(
            self.now + delay,
            Ev::ProcDone {
                node,
                inc,
                shard,
                call,
                outcome,
                token,
            },
        );
    }

    fn arrive(&mut self, node: NodeId, inc: u64, cmd: Command<TestRecord>, lost_answer: bool) {
        let throttled = self.rng.below(1000) < self.cfg.faults.throttle_per_mille;
        let now = self.now;
        let input = if throttled {
            cmd.failed(Failure::Throttled)
        } else {
            match cmd {
                Command::ScanLeaseTable { req, .. } => Some(Input::LeaseTableScanned {
                    req,
                    result: Ok(self.table.scan()),
                }),
                Command::ReadLease { req, key, .. } => Some(Input::LeaseRead {
                    req,
                    result: Ok(self.table.read(&key)),
                }),
                Command::WriteLease { req, write } => {
                    let writer = self.nodes.get(node).map(|n| n.id.clone());
                    let before = self
                        .table
                        .peek(&write.key)
                        .and_then(|i| Lease::from_item(i).ok());
                    let result = self.table.write(&write);
                    if self.cfg.trace {
                        self.log.push(format!(
                            "t={} {:?} {:?} {} -> {:?} {:?}",
                            self.now,
                            writer,
                            write.kind,
                            write.key,
                            result.as_ref().map(|_| ()),
                            write.action
                        ));
                    }
                    if result.is_ok() {
                        let after = self
                            .table
                            .peek(&write.key)
                            .and_then(|i| Lease::from_item(i).ok());
                        self.check_write(writer.as_ref(), before.as_ref(), after.as_ref());
                    }
                    let ambiguous =
                        self.rng.below(1000) < self.cfg.faults.ambiguous_write_per_mille;
                    if ambiguous && result.is_ok() {
                        Some(Input::LeaseWritten {
                            req,
                            result: Err(Failure::Transient),
                        })
                    } else {
                        Some(Input::LeaseWritten { req, result })
                    }
                }
                Command::ListShards { req } => Some(Input::ShardsListed {
                    req,
                    result: Ok(self.stream.listing(now)),
                }),
                Command::GetShardIterator {
                    req,
                    shard,
                    position,
                } => Some(Input::IteratorObtained {
                    req,
                    result: self.stream.iterator(shard.as_str(), &position, now),
                }),
                Command::GetRecords {
                    req,
                    iterator,
                    limit,
                    ..
                } => {
                    let result = self.stream.get(&iterator, limit as usize, now).map(
                        |(records, next_iterator, millis_behind_latest, child_shards)| {
                            FetchedRecords {
                                records: records
                                    .into_iter()
                                    .map(|r| TestRecord {
                                        position: r.position,
                                        id: r.id,
                                    })
                                    .collect(),
                                next_iterator,
                                millis_behind_latest,
                                child_shards,
                            }
                        },
                    );
                    Some(Input::RecordsFetched { req, result })
                }
                _ => None,
            }
        };
        if lost_answer {
            return;
        }
        if let Some(input) = input {
            let l = self.latency();
            self.schedule(self.now + l, Ev::Result { node, inc, input });
        }
    }

    // ---- checkers ------------------------------------------------------------------------

    fn violation(&mut self, what: String) {
        self.violations.push(Violation {
            at_ms: self.now,
            what,
        });
    }

    /// Invariant 1: no other worker may deliver this shard at this true instant.
    fn check_delivery(
        &mut self,
        node: NodeId,
        shard: &LeaseKey,
        token: FencingToken,
        records: &[TestRecord],
    ) {
        let now = self.now;
        let mut others = Vec::new();
        for (i, n) in self.nodes.iter().enumerate() {
            if i == node {
                continue;
            }
            if let Some(until) = n
                .worker
                .as_ref()
                .and_then(|w| w.delivery_deadline(shard.as_str()))
            {
                let t = n.clock.true_time(until);
                if t > now {
                    others.push((n.id.clone(), t));
                }
            }
        }
        for (other, t) in others {
            self.violation(format!(
                "exclusivity: {} delivers {shard} while {other} may until {t}",
                self.nodes[node].id
            ));
        }
        // Invariant 4: every parent finished before a child's records are delivered.
        for p in self.stream.parents(shard.as_str()) {
            if !self.finished.contains(&p) {
                self.violation(format!(
                    "parent before child: {shard} delivered before parent {p} reached SHARD_END"
                ));
            }
        }
        // Invariant 3: duplicates only across ownerships, and only after the checkpoint.
        let floor = self.init_checkpoint.get(&(shard.clone(), token)).cloned();
        for r in records {
            self.report.deliveries += 1;
            let seen = self.delivered.entry(r.id).or_default();
            if !seen.is_empty() {
                self.report.duplicates += 1;
                if seen.iter().any(|&(n, t)| n == node && t == token) {
                    self.violations.push(Violation {
                        at_ms: now,
                        what: format!("duplicate within one ownership: record {} of {shard}", r.id),
                    });
                }
                if let Some(Position::Record(cp)) = &floor {
                    if &r.position <= cp {
                        self.violations.push(Violation {
                            at_ms: now,
                            what: format!(
                                "redelivered record {} at or before the checkpoint of {shard}",
                                r.id
                            ),
                        });
                    }
                }
            }
            seen.push((node, token));
        }
    }

    /// Invariant 2: checkpoints never move backwards and only the owner moves them.
    fn check_write(
        &mut self,
        writer: Option<&WorkerId>,
        before: Option<&Lease>,
        after: Option<&Lease>,
    ) {
        let (Some(b), Some(a)) = (before, after) else {
            if let Some(a) = after {
                if a.is_finished() {
                    self.finished.insert(a.key.clone());
                }
            }
            return;
        };
        if a.checkpoint != b.checkpoint {
            if a.checkpoint < b.checkpoint {
                self.violation(format!(
                    "checkpoint of {} moved backwards: {:?} -> {:?}",
                    a.key, b.checkpoint, a.checkpoint
                ));
            }
            let owner_ok = writer.is_some_and(|w| {
                b.owner.as_ref() == Some(w) || b.checkpoint_owner.as_ref() == Some(w)
            });
            if !owner_ok {
                self.violation(format!(
                    "checkpoint of {} moved by {:?}, not its owner {:?}",
                    a.key, writer, b.owner
                ));
            }
        }
        if a.is_finished() {
            self.finished.insert(a.key.clone());
        }
    }

    /// Invariant 3 at the end: records never delivered.
    pub fn undelivered(&self) -> Vec<u64> {
        self.stream
            .all_records()
            .map(|(_, r)| r.id)
            .filter(|id| !self.delivered.contains_key(id))
            .collect()
    }

    /// Leases held per running worker, by node.
    pub fn loads(&self) -> Vec<(NodeId, usize)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| {
                n.worker
                    .as_ref()
                    .filter(|w| !w.is_stopped())
                    .map(|w| (i, w.leases().filter(|l| !l.lease.is_finished()).count()))
            })
            .collect()
    }

    /// Unfinished leases in the table that no running worker holds.
    pub fn unheld_leases(&self) -> Vec<String> {
        let held: BTreeSet<String> = self
            .nodes
            .iter()
            .filter_map(|n| n.worker.as_ref())
            .flat_map(|w| w.leases().map(|l| String::from(l.lease.key.as_str())))
            .collect();
        self.table
            .items()
            .filter_map(|(k, i)| {
                Lease::from_item(i)
                    .ok()
                    .filter(|l| !l.is_finished())
                    .map(|_| k.clone())
            })
            .filter(|k| !held.contains(k))
            .collect()
    }

    /// Whether every unfinished lease is held and the spread of loads is at most `spread`.
    pub fn balanced_within(&self, spread: usize) -> bool {
        let loads: Vec<usize> = self.loads().into_iter().map(|(_, l)| l).collect();
        let (mn, mx) = (
            loads.iter().min().copied().unwrap_or(0),
            loads.iter().max().copied().unwrap_or(0),
        );
        self.unheld_leases().is_empty() && mx - mn <= spread
    }
}
