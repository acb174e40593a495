//! Scenarios: what happens to the fleet and when, the chaos nemesis, and the run that turns a
//! [`RunSpec`] into a [`Report`].
//!
//! Every run has the same shape (TigerBeetle's VOPR, FoundationDB): a warm-up in which the
//! fleet spreads the leases, the scenario's steps and, with `--faults chaos`, a fault phase, then
//! a liveness phase without faults in which the fleet must settle: every lease held, every
//! record delivered, the leases balanced. The producer stops for the last part of the run so
//! that "no record lost" can be judged at the end.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Instant as WallInstant;

use kcl_core::balance::min_moves;
use kcl_core::rng::Rng;
use kcl_core::{BalancingPolicy, Config};

use crate::check::Violation;
use crate::driven::DrivenFleet;
use crate::fleet::{Action, Fleet, FleetConfig, Service, Transport, WorkerClock};
use crate::net::TurmoilFleet;
use crate::report::{Measures, Report};

/// The scenarios.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// A fleet at rest: after the warm-up nothing should move.
    Steady,
    /// N workers, then N more join.
    ScaleUp,
    /// 2N workers, then N of them shut down gracefully.
    ScaleDown,
    /// Every worker replaced, one by one.
    RollingDeploy,
    /// Shards split and merged, then UpdateShardCount to 1.5x, while the fleet consumes.
    Reshard,
    /// Every fault, then a liveness phase.
    Chaos,
    /// Crashes one cause at a time in a calm fleet, a minute apart: a worker that does not
    /// lead, the leader, a machine without the leader, the leader's machine, over and over. The
    /// failover figures of a run tell what each mechanism costs, which chaos's overlapping
    /// faults blur.
    Failover,
    /// The stream keeps records for [`RETENTION_MS`] only. Shards split and merge as the whole
    /// fleet loses Kinesis for longer than that: records are trimmed unread, closed parents
    /// expire from the stream with unread tails, and the fleet must finish them and go on with
    /// their children from what is left.
    Retention,
}

/// The failover scenario's time between crashes: each failover is over, and the crashed
/// workers are back and given their share again, before the next crash.
pub const FAILOVER_GAP_MS: u64 = 60_000;

/// How long the failover scenario's crashed workers stay down.
pub const FAILOVER_RESTART_MS: u64 = 20_000;

/// The stream's retention period in the retention scenario, scaled down from Kinesis's 24 hours
/// so that a run of minutes sees records trimmed and closed shards expire. Longer than any run's
/// liveness tail, so a shard left unread till the end shows as records lost, not trimmed.
pub const RETENTION_MS: u64 = 90_000;

impl Scenario {
    /// Every scenario, for help texts.
    pub const ALL: [Scenario; 8] = [
        Scenario::Steady,
        Scenario::ScaleUp,
        Scenario::ScaleDown,
        Scenario::RollingDeploy,
        Scenario::Reshard,
        Scenario::Chaos,
        Scenario::Failover,
        Scenario::Retention,
    ];

    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Steady => "steady",
            Self::ScaleUp => "scale-up",
            Self::ScaleDown => "scale-down",
            Self::RollingDeploy => "rolling-deploy",
            Self::Reshard => "reshard",
            Self::Chaos => "chaos",
            Self::Failover => "failover",
            Self::Retention => "retention",
        }
    }
}

impl FromStr for Scenario {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|c| c.name()).collect();
                format!("unknown scenario {s:?}; one of: {}", names.join(", "))
            })
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The balancing policy under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// kcl-rs's coordinated policy (worker liveness: one heartbeat per worker keeps its leases).
    Default,
    /// The Java KCL 2.x lease taker.
    Kcl2,
    /// kcl-rs's coordinated policy with lease liveness: a renewal per lease every renew
    /// interval, as before worker liveness.
    Lease,
}

impl Policy {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::Kcl2 => "kcl2",
            Self::Lease => "lease",
        }
    }

    /// The workers' configuration.
    pub fn config(self) -> Config {
        let c = match self {
            Self::Default => Config::default(),
            Self::Kcl2 => Config::kcl2(),
            Self::Lease => Config::default().with_lease_liveness(),
        };
        debug_assert!(matches!(
            (self, c.policy),
            (Self::Default | Self::Lease, BalancingPolicy::Coordinated)
                | (Self::Kcl2, BalancingPolicy::Kcl2Compatible)
        ));
        c
    }
}

impl FromStr for Policy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "default" => Ok(Self::Default),
            "kcl2" => Ok(Self::Kcl2),
            "lease" => Ok(Self::Lease),
            _ => Err(format!(
                "unknown policy {s:?}; one of: default, kcl2, lease"
            )),
        }
    }
}

/// Injected faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Faults {
    /// Only the scenario's own steps.
    None,
    /// The nemesis, during the fault phase.
    Chaos,
}

impl FromStr for Faults {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Self::None),
            "chaos" => Ok(Self::Chaos),
            _ => Err(format!("unknown faults {s:?}; one of: none, chaos")),
        }
    }
}

/// Clock drift injected by the nemesis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drift {
    /// Rates within the core's stated bound (0.95 to 1.05: any two within 1.105 < 1.11).
    Within,
    /// Rates of 0.5 and 2, and one owner at 0.2 cut off DynamoDB: beyond the bound, so the
    /// checkers must report a violation.
    Beyond,
}

impl FromStr for Drift {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "within" => Ok(Self::Within),
            "beyond" => Ok(Self::Beyond),
            _ => Err(format!("unknown drift {s:?}; one of: within, beyond")),
        }
    }
}

/// What the simulated record processors do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Processors {
    /// Checkpoint everything delivered after every third batch, and on shutdown.
    Simple,
    /// A behaviour per shard ownership, drawn by the seed: simple; checkpoints out of order
    /// from a clone; two-phase prepare and commit with application state, a commit sometimes
    /// queued behind a newer checkpoint; slow batches; a checkpoint from another task after the
    /// lease was lost.
    Mixed,
}

impl Processors {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Simple => "simple",
            Self::Mixed => "mixed",
        }
    }
}

impl FromStr for WorkerClock {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "boottime" => Ok(Self::Boottime),
            "monotonic" => Ok(Self::Monotonic),
            _ => Err(format!("unknown clock {s:?}; one of: boottime, monotonic")),
        }
    }
}

impl FromStr for Processors {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "simple" => Ok(Self::Simple),
            "mixed" => Ok(Self::Mixed),
            _ => Err(format!("unknown processors {s:?}; one of: simple, mixed")),
        }
    }
}

/// Where the simulated fleet's root shards start; `AtTimestamp` is [`AT_TIMESTAMP_MS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartAt {
    /// The oldest record: every record put is owed.
    TrimHorizon,
    /// Records put after a lease is created are owed.
    Latest,
    /// Records put at or after [`AT_TIMESTAMP_MS`] are owed.
    AtTimestamp,
}

/// The timestamp of `--initial-position at-timestamp`: 20 s into the run, within every warm-up.
pub const AT_TIMESTAMP_MS: u64 = 20_000;

impl StartAt {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::TrimHorizon => "trim-horizon",
            Self::Latest => "latest",
            Self::AtTimestamp => "at-timestamp",
        }
    }

    /// The workers' setting. The simulated wall clock starts at 0 with the run.
    pub fn initial_position(self) -> kcl_core::InitialPosition {
        match self {
            Self::TrimHorizon => kcl_core::InitialPosition::TrimHorizon,
            Self::Latest => kcl_core::InitialPosition::Latest,
            Self::AtTimestamp => kcl_core::InitialPosition::AtTimestamp(AT_TIMESTAMP_MS),
        }
    }
}

impl FromStr for StartAt {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "trim-horizon" => Ok(Self::TrimHorizon),
            "latest" => Ok(Self::Latest),
            "at-timestamp" => Ok(Self::AtTimestamp),
            _ => Err(format!(
                "unknown initial position {s:?}; one of: trim-horizon, latest, at-timestamp"
            )),
        }
    }
}

/// Which engine carries the calls between machines and services.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The discrete-event engine: fastest, for thousands of workers and seed swarms.
    Event,
    /// Machines and services as turmoil hosts, every call a datagram on turmoil's network.
    Turmoil,
    /// Every worker an unmodified `kcl_aws::Driver` with real record processors, over the
    /// simulated services, on a deterministic executor ([`crate::driven`]).
    Driver,
}

impl Mode {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Event => "event",
            Self::Turmoil => "turmoil",
            Self::Driver => "driver",
        }
    }
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "event" => Ok(Self::Event),
            "turmoil" => Ok(Self::Turmoil),
            "driver" => Ok(Self::Driver),
            _ => Err(format!(
                "unknown mode {s:?}; one of: event, turmoil, driver"
            )),
        }
    }
}

/// Everything that defines a run; the same spec gives the same report.
#[derive(Clone, Debug, PartialEq)]
pub struct RunSpec {
    /// Scenario.
    pub scenario: Scenario,
    /// Workers (N).
    pub workers: usize,
    /// Shards at the start.
    pub shards: usize,
    /// Simulated duration (ms).
    pub duration_ms: u64,
    /// Seed.
    pub seed: u64,
    /// Policy.
    pub policy: Policy,
    /// The policy of the workers the scenario's steps start (a rolling deploy's replacements,
    /// a scale-up's newcomers): a switch rolled out through a running fleet. `None`: `policy`.
    pub deploy_policy: Option<Policy>,
    /// Injected faults.
    pub faults: Faults,
    /// Drift mode of the nemesis.
    pub drift: Drift,
    /// The clock the simulated drivers give their workers; `Monotonic` ignores host suspends,
    /// which the checkers must then report.
    pub clock: WorkerClock,
    /// What the record processors do.
    pub processors: Processors,
    /// Where root shards start.
    pub initial_position: StartAt,
    /// A quarter of the puts are KPL aggregates of 2 to 8 user records.
    pub kpl: bool,
    /// Records put per second over the stream; `None`: one per shard per second, at most 1,000.
    pub records_per_second: Option<f64>,
    /// Workers per simulated machine; `None`: a quarter of the fleet, at most 20, so even a
    /// small fleet spans several machines.
    pub workers_per_machine: Option<usize>,
    /// The engine.
    pub mode: Mode,
    /// Threads for the workers' steps; `None`: two from [`PARALLEL_FROM_WORKERS`] workers when
    /// the machine has two cores. Never changes the report.
    pub threads: Option<usize>,
}

/// The fleet size from which a second thread pays for its hand-offs by default.
pub const PARALLEL_FROM_WORKERS: usize = 200;

impl RunSpec {
    /// A spec with the defaults of the command line.
    pub fn new(scenario: Scenario) -> Self {
        Self {
            scenario,
            workers: 10,
            shards: 100,
            duration_ms: 10 * 60 * 1000,
            seed: 1,
            policy: Policy::Default,
            deploy_policy: None,
            faults: if scenario == Scenario::Chaos {
                Faults::Chaos
            } else {
                Faults::None
            },
            drift: Drift::Within,
            clock: WorkerClock::Boottime,
            processors: Processors::Simple,
            initial_position: StartAt::TrimHorizon,
            kpl: false,
            records_per_second: None,
            workers_per_machine: None,
            mode: Mode::Event,
            threads: None,
        }
    }

    /// The policy's name; `a->b` when the scenario's steps start workers of policy `b` in a
    /// fleet of `a`.
    pub fn policy_name(&self) -> String {
        match self.deploy_policy {
            Some(deployed) => format!("{}->{}", self.policy.name(), deployed.name()),
            None => self.policy.name().into(),
        }
    }

    /// The command that replays this run.
    pub fn replay_command(&self) -> String {
        let mut c = format!(
            "cargo run --release -p kcl-sim -- run --scenario {} --workers {} --shards {} --duration {} --seed {} --policy {} --faults {}",
            self.scenario,
            self.workers,
            self.shards,
            format_duration(self.duration_ms),
            self.seed,
            self.policy.name(),
            match self.faults {
                Faults::None => "none",
                Faults::Chaos => "chaos",
            }
        );
        if let Some(p) = self.deploy_policy {
            c.push_str(" --deploy-policy ");
            c.push_str(p.name());
        }
        if self.drift == Drift::Beyond {
            c.push_str(" --drift beyond");
        }
        if self.clock == WorkerClock::Monotonic {
            c.push_str(" --clock monotonic");
        }
        if self.processors == Processors::Mixed {
            c.push_str(" --processors mixed");
        }
        if self.initial_position != StartAt::TrimHorizon {
            c.push_str(" --initial-position ");
            c.push_str(self.initial_position.name());
        }
        if self.kpl {
            c.push_str(" --records kpl");
        }
        if let Some(r) = self.records_per_second {
            c.push_str(&format!(" --rate {r}"));
        }
        if self.mode != Mode::Event {
            c.push_str(" --mode ");
            c.push_str(self.mode.name());
        }
        if let Some(k) = self.workers_per_machine {
            c.push_str(&format!(" --workers-per-machine {k}"));
        }
        c
    }

    /// Whether the run can say anything: it needs room for a warm-up, the change and a
    /// liveness phase.
    pub fn validate(&self) -> Result<(), String> {
        if self.duration_ms < 60_000 {
            return Err(format!(
                "--duration {} is too short: a run needs at least 60s for the warm-up, the change and the liveness phase",
                format_duration(self.duration_ms)
            ));
        }
        if self.scenario == Scenario::Retention && self.duration_ms < 240_000 {
            return Err(format!(
                "--duration {} is too short for the retention scenario: it needs at least 4m (an outage longer than the {} retention period, then recovery)",
                format_duration(self.duration_ms),
                format_duration(RETENTION_MS)
            ));
        }
        if self.workers == 0 || self.shards == 0 {
            return Err("--workers and --shards must be at least 1".into());
        }
        if let Some(deployed) = self.deploy_policy {
            if (deployed == Policy::Kcl2) != (self.policy == Policy::Kcl2) {
                return Err(format!(
                    "--deploy-policy {} in a fleet of --policy {}: a fleet mixes kcl2 with nothing else (workers of the other policies judge its leases by their worker rows)",
                    deployed.name(),
                    self.policy.name()
                ));
            }
        }
        Ok(())
    }

    /// The phases of this run.
    pub fn phases(&self) -> Phases {
        let d = self.duration_ms;
        // Long enough for either policy to spread the leases first (the Java taker needs about
        // three of its 20-second rounds), the same for both so that `compare` is fair.
        let warmup = (d / 4).clamp(60_000, 120_000).min(d / 2);
        let tail = (d / 6).clamp(10_000.min(d / 4), 60_000);
        let fault_end = warmup + (d.saturating_sub(warmup + tail)) / 2;
        Phases {
            warmup,
            fault_end,
            stop_producing: d - tail,
        }
    }
}

/// When the phases of a run begin and end (ms).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Phases {
    /// End of the warm-up: the scenario starts.
    pub warmup: u64,
    /// End of the fault phase (with `--faults chaos`, and for the chaos scenario).
    pub fault_end: u64,
    /// The producer stops here, so that every record can be judged delivered or lost.
    pub stop_producing: u64,
}

/// Parses `90s`, `10m`, `1h`, `1500ms` or plain seconds.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("bad duration {s:?}: expected e.g. 90s, 10m, 1h"))?;
    let ms = match unit {
        "ms" => n,
        "s" => n * 1e3,
        "m" | "min" => n * 60e3,
        "h" => n * 3600e3,
        _ => return Err(format!("bad duration unit in {s:?}: ms, s, m or h")),
    };
    if !(1000.0..1e12).contains(&ms) {
        return Err(format!("duration {s:?} out of range (at least 1s)"));
    }
    Ok(ms as u64)
}

/// Formats milliseconds as the shortest exact `parse_duration` input.
pub fn format_duration(ms: u64) -> String {
    if ms.is_multiple_of(3_600_000) {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// The fleet configuration of a spec.
pub fn fleet_config(spec: &RunSpec) -> FleetConfig {
    let start_at = spec.initial_position.initial_position();
    let mut worker = spec.policy.config();
    worker.initial_position = start_at;
    let deployed = spec.deploy_policy.map(|p| {
        let mut worker = p.config();
        worker.initial_position = start_at;
        crate::fleet::Deployed {
            from_node: initial_workers(spec),
            worker,
        }
    });
    let mut kinesis = crate::kinesis::KinesisLimits::default();
    if spec.scenario == Scenario::Retention {
        kinesis.retention_ms = RETENTION_MS;
    }
    FleetConfig {
        kinesis,
        seed: spec.seed,
        shards: spec.shards,
        deployed,
        workers_per_machine: spec
            .workers_per_machine
            .unwrap_or_else(|| spec.workers.div_ceil(4).clamp(1, 20)),
        worker,
        records_per_second: spec
            .records_per_second
            .unwrap_or_else(|| spec.shards.min(1000) as f64),
        worker_clock: spec.clock,
        transport: match spec.mode {
            Mode::Event | Mode::Driver => Transport::Modelled,
            Mode::Turmoil => Transport::Network,
        },
        processors: spec.processors,
        kpl: spec.kpl,
        threads: spec.threads.unwrap_or_else(|| {
            let cores = std::thread::available_parallelism().map_or(1, usize::from);
            if spec.workers >= PARALLEL_FROM_WORKERS && cores > 1 {
                2
            } else {
                1
            }
        }),
        ..FleetConfig::default()
    }
}

/// Schedules the scenario's steps; returns when the scenario's own change is over (the time
/// convergence is measured from) and how many workers it starts with.
fn scenario_steps(spec: &RunSpec, phases: &Phases, fleet: &mut impl Schedule) -> u64 {
    let n = spec.workers;
    let w = phases.warmup;
    match spec.scenario {
        Scenario::Steady | Scenario::Chaos => w,
        Scenario::Failover => {
            let causes = [(false, false), (true, false), (false, true), (true, true)];
            let mut t = w;
            for (leader, machine) in causes.into_iter().cycle() {
                if t >= phases.fault_end {
                    break;
                }
                fleet.at(
                    t,
                    Action::CrashChosen {
                        leader,
                        machine,
                        restart_after_ms: FAILOVER_RESTART_MS,
                    },
                );
                t += FAILOVER_GAP_MS;
            }
            phases.fault_end
        }
        Scenario::ScaleUp => {
            fleet.at(w, Action::AddWorkers(n));
            w
        }
        Scenario::ScaleDown => {
            for node in n..2 * n {
                fleet.at(w, Action::Shutdown(node));
            }
            w
        }
        Scenario::RollingDeploy => {
            let window = phases.stop_producing.saturating_sub(w) / 2;
            let every = (window / n.max(1) as u64).max(1_000);
            for node in 0..n {
                fleet.at(w + every * node as u64, Action::Replace(node));
            }
            w + every * n.saturating_sub(1) as u64
        }
        Scenario::Reshard => {
            let changes = (spec.shards / 8).max(1);
            let mut t = w;
            for i in 0..changes {
                fleet.at(
                    t,
                    if i % 2 == 0 {
                        Action::Split
                    } else {
                        Action::Merge
                    },
                );
                t += 1_000;
            }
            // Then a uniform rescale to one and a half times the open shards.
            fleet.at(t, Action::UpdateShardCount { per_mille: 1500 });
            t
        }
        Scenario::Retention => {
            // Shards split and merge as Kinesis becomes unreachable for every worker, for longer
            // than the retention period: the parents' unread tails and the children's first
            // records are trimmed, and the parents expire before anyone reads their end.
            let outage = RETENTION_MS + 20_000;
            fleet.at(
                w,
                Action::PartitionAll {
                    service: Service::Kinesis,
                    ms: outage,
                },
            );
            for i in 0..(spec.shards / 8).max(1) {
                let t = w + 100 * i as u64;
                fleet.at(
                    t,
                    if i % 2 == 0 {
                        Action::Split
                    } else {
                        Action::Merge
                    },
                );
            }
            w + outage
        }
    }
}

fn initial_workers(spec: &RunSpec) -> usize {
    match spec.scenario {
        Scenario::ScaleDown => 2 * spec.workers,
        _ => spec.workers,
    }
}

/// The nemesis: faults at random times in `[from, to)`, drawn from its own seeded generator.
fn chaos(spec: &RunSpec, from: u64, to: u64, fleet: &mut impl Schedule) {
    let mut rng = Rng::new(spec.seed ^ 0x6b63_6c2d_6e65_6d65);
    let d = spec.policy.config().failover_time.as_millis() as u64;
    // Each worker meets a fault about every five minutes; small fleets at least every 5 s.
    let mean_gap = (300_000 / spec.workers.max(1) as u64).clamp(50, 5_000);
    if spec.drift == Drift::Beyond {
        // A clock at a fifth of true speed on an owner that cannot renew: its window outlives
        // its lease by far.
        fleet.at(
            from + 1_000,
            Action::DriftAndIsolate {
                rate: 0.2,
                ms: 30_000.min(to.saturating_sub(from + 1_000)),
            },
        );
    }
    if spec.drift == Drift::Within {
        // The busiest owner's host (often the leader) sleeps for three lease durations with its
        // monotonic clock stopped: unless its driver counts the suspension, it wakes with its
        // window open for leases others took meanwhile. (Beyond the drift bound, the drifting
        // owner is the one to watch.)
        fleet.at(
            from + 1_000,
            Action::Suspend {
                ms: (3 * d).min(to.saturating_sub(from + 1_000)),
                busiest: true,
            },
        );
    }
    let mut t = from;
    loop {
        t += rng.between(mean_gap / 2, mean_gap * 3 / 2);
        if t >= to {
            break;
        }
        let span = |rng: &mut Rng, lo: u64, hi: u64| rng.between(lo, hi).min(to - t);
        let action = match rng.below(115) {
            // Everything that was down is back before the liveness phase starts.
            0..=19 => Action::CrashWorker {
                restart_after_ms: span(&mut rng, 1_000, 30_000),
            },
            20..=24 => Action::CrashMachine {
                restart_after_ms: span(&mut rng, 5_000, 60_000),
            },
            25..=34 => Action::Partition {
                service: Service::Dynamo,
                ms: span(&mut rng, 1_000, 30_000),
            },
            35..=44 => Action::Partition {
                service: Service::Kinesis,
                ms: span(&mut rng, 1_000, 30_000),
            },
            45..=54 => Action::Delay {
                extra_ms: rng.between(100, 1_500),
                ms: span(&mut rng, 5_000, 60_000),
            },
            // The classic lease killer: a stop-the-world longer than the lease duration, or a
            // host suspend of as long, during which the monotonic clock stands still too.
            55..=59 => Action::Pause {
                ms: rng.between(d + 1, d * 5 / 2),
            },
            60..=64 => Action::Suspend {
                ms: rng.between(d + 1, d * 5 / 2),
                busiest: false,
            },
            65..=74 => Action::Drift {
                rate: match spec.drift {
                    Drift::Within => 0.95 + rng.below(101) as f64 / 1000.0,
                    Drift::Beyond => {
                        if rng.below(2) == 0 {
                            0.5
                        } else {
                            2.0
                        }
                    }
                },
            },
            75..=94 => {
                let service = if rng.below(2) == 0 {
                    Service::Dynamo
                } else {
                    Service::Kinesis
                };
                let end = t + span(&mut rng, 5_000, 30_000);
                fleet.at(
                    end,
                    Action::ServiceFaults {
                        service,
                        throttle_per_mille: 0,
                        error_per_mille: 0,
                    },
                );
                Action::ServiceFaults {
                    service,
                    throttle_per_mille: rng.between(50, 300),
                    error_per_mille: rng.between(10, 100),
                }
            }
            95..=104 => {
                fleet.at(
                    t + span(&mut rng, 5_000, 30_000),
                    Action::ProcessorFailures(0),
                );
                Action::ProcessorFailures(rng.between(5, 50))
            }
            105..=109 => Action::Split,
            _ => Action::Merge,
        };
        fleet.at(t, action);
    }
    if spec.mode == Mode::Driver {
        driver_faults(spec, from, to, fleet);
    }
    fleet.at(to, Action::Calm);
}

/// Driver mode's own faults, drawn apart so that the other modes' schedules stay as they are:
/// about once a minute, for 10 to 40 s, a share of one service's answers (DynamoDB two times in
/// three) is held 5 to 20 s, across the driver's 10 s call timeout; and once, for 30 s to 2
/// minutes, reads wait for their shard's next record as fan-out subscriptions do.
fn driver_faults(spec: &RunSpec, from: u64, to: u64, fleet: &mut impl Schedule) {
    if to <= from {
        return;
    }
    let mut rng = Rng::new(spec.seed ^ 0x736c_6f77_616e_7377);
    for _ in 0..((to - from) / 60_000).max(1) {
        let t = rng.between(from, to - 1);
        let service = if rng.below(3) == 0 {
            Service::Kinesis
        } else {
            Service::Dynamo
        };
        let end = (t + rng.between(10_000, 40_000)).min(to);
        fleet.at(
            t,
            Action::SlowAnswers {
                service,
                per_mille: rng.between(20, 200),
                hold_ms: (5_000, 20_000),
            },
        );
        fleet.at(
            end,
            Action::SlowAnswers {
                service,
                per_mille: 0,
                hold_ms: (0, 0),
            },
        );
    }
    let on = rng.between(from, from + (to - from) / 2);
    fleet.at(on, Action::BlockingReads(true));
    let off = (on + rng.between(30_000, 120_000)).min(to);
    fleet.at(off, Action::BlockingReads(false));
}

/// DynamoDB units billed so far.
#[derive(Clone, Debug)]
pub struct DdbUnits {
    /// Every unit, read and write.
    pub total: f64,
    /// The processors' checkpoints'.
    pub checkpoints: f64,
    /// By operation (the names of [`crate::dynamo::Dynamo::bills`]), read and write together.
    pub by_operation: BTreeMap<String, f64>,
}

impl DdbUnits {
    /// What `dynamo` billed so far.
    pub fn of(dynamo: &crate::dynamo::Dynamo) -> Self {
        Self {
            total: dynamo.read_units() + dynamo.write_units(),
            checkpoints: dynamo.checkpoint_units(),
            by_operation: units_by_operation(&dynamo.bills()),
        }
    }
}

fn units_by_operation(
    bills: &BTreeMap<String, crate::dynamo::OperationBill>,
) -> BTreeMap<String, f64> {
    bills
        .iter()
        .map(|(op, bill)| (op.clone(), bill.read_units + bill.write_units))
        .collect()
}

/// The fleet in the engine that runs it.
enum Engine {
    Event(Box<Fleet>),
    Turmoil(Box<TurmoilFleet>),
    Driver(Box<DrivenFleet>),
}

impl Engine {
    fn run_until(&mut self, t: u64, progress: &mut dyn FnMut(u64)) -> Result<(), String> {
        match self {
            Self::Event(f) => {
                f.run_until(t, progress);
                Ok(())
            }
            Self::Turmoil(n) => n.run_until(t, progress),
            Self::Driver(f) => {
                f.run_until(t, progress);
                Ok(())
            }
        }
    }

    /// DynamoDB units so far, leases held per running worker, unfinished leases unheld at the
    /// last sample, and lease acquisitions so far.
    fn progress(&self) -> (DdbUnits, Vec<usize>, usize, u64) {
        let of_fleet = |f: &Fleet| {
            (
                DdbUnits::of(&f.dynamo),
                f.loads(),
                f.settling.timeline.last().map_or(0, |s| s.unheld),
                f.counters.acquisitions,
            )
        };
        match self {
            Self::Event(f) => of_fleet(f),
            Self::Turmoil(n) => of_fleet(&n.fleet()),
            Self::Driver(f) => f.progress(),
        }
    }

    fn measures(&self, overdue_before: u64) -> Measures {
        match self {
            Self::Event(f) => f.measures(overdue_before),
            Self::Turmoil(n) => n.fleet().measures(overdue_before),
            Self::Driver(f) => f.measures(overdue_before),
        }
    }
}

/// Where a scenario's steps and the nemesis' faults are scheduled: either engine's fleet.
pub trait Schedule {
    /// Runs `action` at true time `at_ms`.
    fn at(&mut self, at_ms: u64, action: Action);
}

impl Schedule for Fleet {
    fn at(&mut self, at_ms: u64, action: Action) {
        Fleet::at(self, at_ms, action);
    }
}

impl Schedule for DrivenFleet {
    fn at(&mut self, at_ms: u64, action: Action) {
        DrivenFleet::at(self, at_ms, action);
    }
}

/// Schedules the scenario's steps, the nemesis and the producer's stop on `fleet`; returns when
/// the change is over (convergence counts from there).
fn schedule(spec: &RunSpec, phases: &Phases, fleet: &mut impl Schedule) -> u64 {
    let mut trigger = scenario_steps(spec, phases, fleet);
    if spec.faults == Faults::Chaos || spec.scenario == Scenario::Chaos {
        chaos(spec, phases.warmup, phases.fault_end, fleet);
        trigger = trigger.max(phases.fault_end);
    }
    fleet.at(phases.stop_producing, Action::StopProducing);
    trigger
}

/// Runs a spec; `progress` gets the simulated time reached now and then.
pub fn run(spec: &RunSpec, progress: &mut dyn FnMut(u64)) -> Report {
    let started = WallInstant::now();
    let phases = spec.phases();
    let config = fleet_config(spec);
    let latency = config.latency_ms;
    let (mut engine, trigger) = match spec.mode {
        Mode::Event | Mode::Turmoil => {
            let mut fleet = Fleet::new(config, initial_workers(spec));
            let trigger = schedule(spec, &phases, &mut fleet);
            let engine = if spec.mode == Mode::Event {
                Engine::Event(Box::new(fleet))
            } else {
                Engine::Turmoil(Box::new(TurmoilFleet::new(
                    fleet,
                    spec.seed,
                    latency,
                    spec.duration_ms,
                )))
            };
            (engine, trigger)
        }
        Mode::Driver => {
            let mut fleet = DrivenFleet::new(config, initial_workers(spec));
            let trigger = schedule(spec, &phases, &mut fleet);
            (Engine::Driver(Box::new(fleet)), trigger)
        }
    };

    let mut failure = engine
        .run_until(phases.warmup.saturating_sub(1), progress)
        .err();
    let (units_at_warmup, loads_at_warmup, unheld_at_warmup, moves_before) = engine.progress();
    let min_lease_moves = minimum_moves(spec, &loads_at_warmup, unheld_at_warmup);
    if failure.is_none() {
        failure = engine.run_until(spec.duration_ms, progress).err();
    }
    let end = spec.duration_ms;
    // Every request is answered while the lease is held, or when it is lost (at most a
    // failover time later); only an incarnation that is gone takes its requests with it.
    let failover = spec.policy.config().failover_time.as_millis() as u64;
    let m = engine.measures(end.saturating_sub(3 * failover));
    let records_lost = m.undelivered.lost;
    let mut violations: Vec<Violation> = m.violations;
    let mut violation_count = m.violation_count;
    let unheld = m.timeline.last().map_or(0, |s| s.unheld);
    let mut add = |what: String| {
        violation_count += 1;
        violations.push(Violation { at_ms: end, what });
    };
    if let Some(e) = &failure {
        add(format!("the simulation itself failed: {e}"));
    }
    if records_lost > 0 {
        add(format!(
            "no loss: {records_lost} records put were never delivered"
        ));
    }
    for wrong in m.table_size_violations {
        add(wrong);
    }
    if let Some((n, first)) = m.checkpoints_overdue {
        add(format!(
            "checkpoints: {n} requests unanswered for more than {} s (first: {first})",
            3 * failover / 1000
        ));
    }
    if unheld > 0 || !m.caught_up {
        add(format!(
            "liveness: after the faults stopped, {unheld} unfinished leases unheld and caught up = {}",
            m.caught_up
        ));
    }
    let converged = m.balanced_since.is_some() && m.caught_up && unheld == 0;
    let convergence_seconds = m
        .balanced_since
        .filter(|_| converged)
        .map(|t| t.saturating_sub(trigger) as f64 / 1000.0);
    let scan_interval = spec.policy.config().scan_interval.as_secs_f64();
    let hours = (end - phases.warmup) as f64 / 3_600_000.0;
    let units = m.ddb_read_units + m.ddb_write_units - units_at_warmup.total;
    let checkpoint_units = m.ddb_checkpoint_units - units_at_warmup.checkpoints;
    let shard_hours = spec.shards as f64 * hours.max(1e-9);
    Report {
        seed: spec.seed,
        policy: spec.policy_name(),
        scenario: spec.scenario.name().into(),
        mode: spec.mode.name().into(),
        processors: spec.processors.name().into(),
        initial_position: spec.initial_position.name().into(),
        records: if spec.kpl { "kpl" } else { "plain" }.into(),
        workers: spec.workers,
        shards: spec.shards,
        table_rows: m.table_rows,
        simulated_seconds: end as f64 / 1000.0,
        wall_seconds: started.elapsed().as_secs_f64(),
        violations,
        violation_count,
        converged,
        convergence_seconds,
        scan_rounds_to_converge: convergence_seconds.map(|s| (s / scan_interval).ceil()),
        measured_from_seconds: trigger as f64 / 1000.0,
        change_from_seconds: phases.warmup as f64 / 1000.0,
        lease_moves: m.counters.acquisitions - moves_before,
        min_lease_moves,
        handoffs: m.counters.handoffs,
        leases_expired_under_owner: m.counters.losses,
        records_put: m.records_put,
        records_delivered: m.records_delivered,
        records_lost,
        records_trimmed_unread: m.undelivered.trimmed_unread,
        duplicate_deliveries: m.duplicate_deliveries,
        checkpoint_requests: m.checkpoint_requests,
        checkpoint_answers: m
            .checkpoint_answers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), *v))
            .collect(),
        ddb_read_units: m.ddb_read_units,
        ddb_write_units: m.ddb_write_units,
        ddb_units_per_shard_hour: units / shard_hours,
        ddb_units_per_shard_hour_by_operation: units_by_operation(&m.ddb_by_operation)
            .into_iter()
            .map(|(op, end)| {
                let before = units_at_warmup
                    .by_operation
                    .get(&op)
                    .copied()
                    .unwrap_or(0.0);
                (op, (end - before) / shard_hours)
            })
            .filter(|(_, units)| *units > 0.0)
            .collect(),
        ddb_checkpoint_units_per_shard_hour: checkpoint_units / shard_hours,
        ddb_library_units_per_shard_hour: (units - checkpoint_units) / shard_hours,
        failover_seconds_p50: m.failover.p50_seconds,
        failover_seconds_p99: m.failover.p99_seconds,
        failover_crashes_measured: m.failover.crashes_measured,
        failover_crashes_unresolved: m.failover.crashes_unresolved,
        failover_by_cause: m.failover.by_cause.clone(),
        failover_phases: m.failover.phases.clone(),
        ddb_by_operation: m.ddb_by_operation,
        kinesis: m.kinesis,
        faults: m.counters.faults,
        driver: m.driver,
        replay: spec.replay_command(),
        timeline: m.timeline,
    }
}

/// The fewest lease moves the scenario's own change requires, when the scenario defines one.
fn minimum_moves(spec: &RunSpec, loads: &[usize], unheld: usize) -> Option<u64> {
    let n = spec.workers;
    let m = match spec.scenario {
        Scenario::Steady => unheld,
        Scenario::ScaleUp => {
            let mut all = loads.to_vec();
            all.extend(std::iter::repeat_n(0, n));
            min_moves(&all) + unheld
        }
        Scenario::ScaleDown => {
            // The leaving half's leases all move; the staying half keeps what fits its share.
            let (stay, leave) = loads.split_at(loads.len().min(n));
            let total: usize = loads.iter().sum::<usize>() + unheld;
            let share = total.div_ceil(n.max(1));
            leave.iter().sum::<usize>()
                + unheld
                + stay.iter().map(|&l| l.saturating_sub(share)).sum::<usize>()
        }
        Scenario::RollingDeploy => loads.iter().sum::<usize>() + unheld,
        Scenario::Reshard | Scenario::Chaos | Scenario::Failover | Scenario::Retention => {
            return None
        }
    };
    if spec.faults == Faults::Chaos {
        return None;
    }
    Some(m as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print_back() {
        for (s, ms) in [
            ("90s", 90_000),
            ("10m", 600_000),
            ("1h", 3_600_000),
            ("1500ms", 1_500),
            ("30", 30_000),
        ] {
            assert_eq!(parse_duration(s), Ok(ms), "{s}");
            assert_eq!(parse_duration(&format_duration(ms)), Ok(ms));
        }
        assert!(parse_duration("10x").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn phases_leave_a_liveness_tail() {
        for d in [10_000, 60_000, 600_000, 3_600_000] {
            let mut s = RunSpec::new(Scenario::Chaos);
            s.duration_ms = d;
            let p = s.phases();
            assert!(
                p.warmup < p.fault_end && p.fault_end < p.stop_producing && p.stop_producing < d,
                "{p:?}"
            );
        }
    }
}
