//! Scenario steps and injected faults: workers added, shut down, replaced, crashed with their
//! machine, partitions, delays, pauses, clock drift, service errors, resharding.

use super::*;

/// Which worker [`Action::CrashChosen`] crashes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CrashChoice {
    /// The leader (when there is one; else as `false`).
    pub leader: bool,
    /// Its machine: every worker on it crashes. Without `leader`, a machine the leader is not on.
    pub machine: bool,
}

/// The worker a [`Action::CrashChosen`] crashes, among the `running` ones (in node order): the
/// leader when asked for and there is one, else a random worker that is not the leader (and,
/// for a machine crash, not on the leader's machine). Both fleets choose here, with the same
/// draws from their generator.
pub(crate) fn choose_crash(
    running: &[NodeId],
    lead: Option<NodeId>,
    machine_of: impl Fn(NodeId) -> usize,
    choice: CrashChoice,
    rng: &mut Rng,
) -> Option<NodeId> {
    if choice.leader && lead.is_some() {
        return lead;
    }
    let lead_machine = lead.map(&machine_of);
    let others: Vec<NodeId> = running
        .iter()
        .copied()
        .filter(|&i| Some(i) != lead && !(choice.machine && Some(machine_of(i)) == lead_machine))
        .collect();
    (!others.is_empty()).then(|| others[rng.index(others.len())])
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
    /// Crash the leader, or a random worker that does not lead, alone or with its machine (for
    /// a worker that does not lead, a machine that does not host the leader); the crashed workers
    /// restart after this many ms. The failover scenario's crashes, one cause at a time.
    CrashChosen {
        /// The leader (a random worker when none leads, as under the Java policy), else a worker
        /// that does not lead.
        leader: bool,
        /// With every worker of its machine.
        machine: bool,
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
    /// Cut every machine off a service (an outage, or a misconfiguration everyone shares).
    PartitionAll {
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
    /// Suspend a worker's host: its process stops and its monotonic clock stands still.
    Suspend {
        /// For how long.
        ms: u64,
        /// The busiest owner (a worker without leases has no window to outlive them), or a
        /// random worker.
        busiest: bool,
    },
    /// Set a random worker's clock rate.
    Drift {
        /// Local seconds per true second.
        rate: f64,
    },
    /// Set the busiest worker's clock rate and cut its machine off DynamoDB (not Kinesis): with a
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
    /// Driver mode: hold this per mille of `service`'s answers at the service for `hold_ms`
    /// (uniform in the range) before they travel back, until changed. Held past the driver's
    /// call timeout, the call fails as timed out although the service did what it asked (a
    /// write landed). The event mode's workers time no calls; only driver mode schedules it.
    SlowAnswers {
        /// Which service.
        service: Service,
        /// Answers held.
        per_mille: u64,
        /// For how long each (ms).
        hold_ms: (u64, u64),
    },
    /// Driver mode: reads wait at the service for their shard's next record (up to 5 s) instead
    /// of answering empty, as fan-out subscriptions do, until changed. Only driver mode
    /// schedules it (the event mode's reads take no time in flight that matters).
    BlockingReads(bool),
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
            Self::CrashChosen {
                leader, machine, ..
            } => match (leader, machine) {
                (false, false) => "follower_crash",
                (true, false) => "leader_crash",
                (false, true) => "follower_machine_crash",
                (true, true) => "leader_machine_crash",
            },
            Self::Partition {
                service: Service::Dynamo,
                ..
            } => "partition_dynamodb",
            Self::Partition {
                service: Service::Kinesis,
                ..
            } => "partition_kinesis",
            Self::PartitionAll {
                service: Service::Dynamo,
                ..
            } => "outage_dynamodb",
            Self::PartitionAll {
                service: Service::Kinesis,
                ..
            } => "outage_kinesis",
            Self::Delay { .. } => "message_delay",
            Self::BlockingReads(true) => "blocking_reads",
            Self::SlowAnswers {
                service: Service::Dynamo,
                per_mille: 1..,
                ..
            } => "slow_answers_dynamodb",
            Self::SlowAnswers {
                service: Service::Kinesis,
                per_mille: 1..,
                ..
            } => "slow_answers_kinesis",
            Self::Pause { .. } => "process_pause",
            Self::Suspend { .. } => "host_suspend",
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

/// The worker id of `node`'s process `inc` (its incarnation number while it runs; a crash
/// counts one too). A restarted process has a fresh id, as production's default ids
/// (`host:pid:start`) are: the row of the one before is left to the leader to delete.
/// A simulated machine as its workers name their failure domain.
pub(crate) fn machine_name(machine: usize) -> String {
    format!("machine-{machine}")
}

pub(crate) fn incarnation_id(node: NodeId, inc: u64) -> WorkerId {
    if inc <= 1 {
        WorkerId::from(format!("worker-{node:05}"))
    } else {
        WorkerId::from(format!("worker-{node:05}.{}", inc - 1))
    }
}

impl Fleet {
    pub(super) fn act(&mut self, action: Action) {
        let kind = action.fault_kind();
        if let Some(kind) = kind {
            *self.counters.faults.entry(kind.to_owned()).or_default() += 1;
        }
        let cause = kind.unwrap_or("crash");
        match action {
            Action::AddWorkers(n) => {
                for _ in 0..n {
                    self.add_worker();
                }
            }
            Action::Shutdown(node) => {
                if let Some(n) = self.nodes.get_mut(node) {
                    n.retired = true;
                    self.departed.insert(n.id.clone(), self.now);
                }
                self.with_worker(node, |w, now| w.handle(now, Input::ShutdownRequested));
            }
            Action::Replace(node) => {
                self.act(Action::Shutdown(node));
                self.add_worker();
            }
            Action::CrashWorker { restart_after_ms } => {
                if let Some(node) = self.random_running() {
                    self.crash(node, cause);
                    self.schedule(self.now + restart_after_ms, Ev::Restart(node));
                }
            }
            Action::CrashChosen {
                leader,
                machine,
                restart_after_ms,
            } => {
                if let Some(node) = self.chosen(leader, machine) {
                    if machine {
                        self.crash_machine(self.nodes[node].machine, restart_after_ms, cause);
                    } else {
                        self.crash(node, cause);
                        self.schedule(self.now + restart_after_ms, Ev::Restart(node));
                    }
                }
            }
            Action::CrashMachine { restart_after_ms } => {
                if let Some(node) = self.random_running() {
                    self.crash_machine(self.nodes[node].machine, restart_after_ms, cause);
                }
            }
            Action::Partition { service, ms } => {
                if let Some(node) = self.random_running() {
                    self.partition(self.nodes[node].machine, service, ms);
                }
                self.table_faulted_for(service, ms);
            }
            Action::PartitionAll { service, ms } => {
                for machine in 0..self.machines.len() {
                    self.partition(machine, service, ms);
                }
                self.table_faulted_for(service, ms);
            }
            Action::Delay { extra_ms, ms } => {
                self.table_faulted_for(Service::Dynamo, ms);
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
            Action::Suspend { ms, busiest } => {
                let node = if busiest {
                    self.busiest()
                } else {
                    self.random_running()
                };
                if let Some(node) = node {
                    let now = self.now;
                    let n = &mut self.nodes[node];
                    n.paused_until = n.paused_until.max(now + ms);
                    n.clock.suspend(now, ms);
                }
            }
            Action::Drift { rate } => {
                if let Some(node) = self.random_running() {
                    self.set_rate(node, rate);
                }
            }
            Action::DriftAndIsolate { rate, ms } => {
                if let Some(node) = self.busiest() {
                    self.set_rate(node, rate);
                    self.partition(self.nodes[node].machine, Service::Dynamo, ms);
                }
                self.table_faulted_for(Service::Dynamo, ms);
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
                // Set, or cleared: either way the faults run at least until now.
                self.table_faulted_for(service, 0);
            }
            Action::ProcessorFailures(per_mille) => self.processor_failure_per_mille = per_mille,
            Action::Split => self.kinesis.split_random(&mut self.rng),
            Action::Merge => self.kinesis.merge_random(&mut self.rng),
            Action::UpdateShardCount { per_mille } => self.kinesis.rescale(per_mille),
            // Driver mode's faults: the event mode's workers neither time calls nor keep them in
            // flight by lanes, so there is nothing for these to act on.
            Action::SlowAnswers { .. } | Action::BlockingReads(_) => {}
            Action::StopProducing => self.producing = false,
            Action::Calm => {
                self.table_faulted_for(Service::Dynamo, 0);
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

    pub(super) fn crash(&mut self, node: NodeId, cause: &'static str) {
        if let Some(worker) = &self.nodes[node].worker {
            let held = worker.held_leases().map(|l| l.key.clone());
            let row = kcl_core::lease::WorkerRow::key(&self.nodes[node].id);
            self.checker
                .failover
                .crashed(self.now, cause, row, held.collect::<Vec<_>>());
        }
        let n = &mut self.nodes[node];
        if n.worker.is_some() {
            self.departed.insert(n.id.clone(), self.now);
        }
        n.worker = None;
        self.checkpoints.forget(node, n.inc);
        n.inc += 1;
        n.wake_at = None;
        n.batches.clear();
        n.apps.clear();
    }

    fn crash_machine(&mut self, m: usize, restart_after_ms: u64, cause: &'static str) {
        if self.network() {
            self.net_fault(NetOp::Crash(m), NetOp::Restart(m), restart_after_ms);
        }
        self.machines[m].up = false;
        for i in 0..self.nodes.len() {
            if self.nodes[i].machine == m {
                self.crash(i, cause);
            }
        }
        self.schedule(self.now + restart_after_ms, Ev::RestartMachine(m));
    }

    /// The running worker that leads (on its own clock), if any.
    fn leader(&mut self) -> Option<NodeId> {
        let now = self.now;
        let running: Vec<NodeId> = self.running_workers().map(|(i, _)| i).collect();
        running.into_iter().find(|&i| {
            let local = self.nodes[i].clock.local(now);
            self.nodes[i]
                .worker
                .as_ref()
                .is_some_and(|w| w.is_leader(local))
        })
    }

    /// The leader, or a random running worker that does not lead (on another machine than the
    /// leader's when `machine`).
    fn chosen(&mut self, leader: bool, machine: bool) -> Option<NodeId> {
        let running: Vec<NodeId> = self.running_workers().map(|(i, _)| i).collect();
        let lead = self.leader();
        let nodes = &self.nodes;
        choose_crash(
            &running,
            lead,
            |i| nodes[i].machine,
            CrashChoice { leader, machine },
            &mut self.rng,
        )
    }

    pub(super) fn random_running(&mut self) -> Option<NodeId> {
        let count = self.running_workers().count();
        if count == 0 {
            return None;
        }
        let pick = self.rng.index(count);
        self.running_workers().nth(pick).map(|(i, _)| i)
    }

    /// The worker holding the most leases (the first on a tie): one without leases would have
    /// nothing to deliver past its leases' end.
    fn busiest(&self) -> Option<NodeId> {
        self.running_workers()
            .map(|(i, w)| (w.leases().count(), core::cmp::Reverse(i)))
            .max()
            .map(|(_, core::cmp::Reverse(i))| i)
    }

    pub(super) fn set_rate(&mut self, node: NodeId, rate: f64) {
        let now = self.now;
        let n = &mut self.nodes[node];
        n.clock.set_rate(now, rate);
        // The worker's next wake-up moves with its clock.
        n.wake_at = None;
        if n.worker.is_some() {
            self.after_handle(node);
        }
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
            id: incarnation_id(node, 1),
            machine,
            worker: None,
            stepping: None,
            inc: 0,
            paused_until: 0,
            clock: NodeClock::new(
                DriftClock::new(1_000_000 + self.rng.below(1_000_000), self.now),
                self.cfg.worker_clock,
            ),
            wake_at: None,
            batches: BTreeMap::new(),
            apps: BTreeMap::new(),
            retired: false,
        });
        self.start(node);
        node
    }

    pub(super) fn start(&mut self, node: NodeId) {
        let seed = self.rng.next_u64();
        let now = self.now;
        let mut config = self.cfg.worker_of(node).clone();
        config.failure_domain = Some(machine_name(self.nodes[node].machine));
        let n = &mut self.nodes[node];
        self.checkpoints.forget(node, n.inc);
        n.inc += 1;
        n.id = incarnation_id(node, n.inc);
        n.batches.clear();
        n.apps.clear();
        n.wake_at = None;
        let local = n.clock.local(now);
        n.worker = Worker::new(config, n.id.clone(), seed, local)
            .ok()
            .map(Box::new);
        self.after_handle(node);
    }

    /// A fault of `service` lasting `ms` from now: when it is DynamoDB's, the table-size check
    /// counts from its end (see [`Fleet::table_size_violations`]).
    fn table_faulted_for(&mut self, service: Service, ms: u64) {
        if service == Service::Dynamo {
            self.table_calm_since = self.table_calm_since.max(self.now + ms);
        }
    }
}
