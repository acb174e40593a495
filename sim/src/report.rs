//! What a run measured: the JSON report, the summary table, and the side-by-side comparison of
//! the two policies.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::check::{Undelivered, Violation};
use crate::driven::DriverFigures;
use crate::dynamo::OperationBill;
use crate::failover::FailoverFigures;
use crate::fleet::{Counters, Sample};
use crate::kinesis::KinesisCounts;

/// What either engine measured at the end of a run (or at the end of its warm-up), from which
/// the report is made.
#[derive(Clone, Debug)]
pub struct Measures {
    /// The first violations the checkers found.
    pub violations: Vec<Violation>,
    /// Every violation, counted.
    pub violation_count: u64,
    /// Records put.
    pub records_put: u64,
    /// Records delivered, duplicates included.
    pub records_delivered: u64,
    /// Deliveries of a record delivered before.
    pub duplicate_deliveries: u64,
    /// Checkpoint requests the processors made.
    pub checkpoint_requests: u64,
    /// Their answers, by outcome.
    pub checkpoint_answers: BTreeMap<&'static str, u64>,
    /// Requests of live processes unanswered for too long: how many, and the first.
    pub checkpoints_overdue: Option<(usize, String)>,
    /// Counters.
    pub counters: Counters,
    /// Samples.
    pub timeline: Vec<Sample>,
    /// Balanced for good since (ms).
    pub balanced_since: Option<u64>,
    /// Every record older than ten seconds delivered at the last sample.
    pub caught_up: bool,
    /// Leases held per running worker.
    pub loads: Vec<usize>,
    /// Rows in the lease table.
    pub table_rows: usize,
    /// What is wrong with the table's size.
    pub table_size_violations: Vec<String>,
    /// Records never delivered.
    pub undelivered: Undelivered,
    /// DynamoDB read units.
    pub ddb_read_units: f64,
    /// DynamoDB write units.
    pub ddb_write_units: f64,
    /// DynamoDB bills by operation.
    pub ddb_by_operation: BTreeMap<String, OperationBill>,
    /// DynamoDB units of the processors' checkpoints.
    pub ddb_checkpoint_units: f64,
    /// Crashes and how long their leases took to deliver again.
    pub failover: FailoverFigures,
    /// Kinesis calls.
    pub kinesis: KinesisCounts,
    /// Driver mode's own figures.
    pub driver: Option<DriverFigures>,
}

/// One run's report. Every field but `wall_seconds` is a function of the run's spec.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Report {
    /// Seed.
    pub seed: u64,
    /// The policy's name (`default`, `kcl2`, `lease`); `a->b` when the scenario's steps
    /// started workers of policy `b` in a fleet of `a`.
    pub policy: String,
    /// Scenario name.
    pub scenario: String,
    /// `event` (the discrete-event engine) or `turmoil`.
    pub mode: String,
    /// What the record processors do: `simple` or `mixed`.
    pub processors: String,
    /// Where root shards start: `trim-horizon`, `latest` or `at-timestamp`.
    pub initial_position: String,
    /// What the producer puts: `plain` records, or `kpl` (a quarter KPL aggregates).
    pub records: String,
    /// Workers (N).
    pub workers: usize,
    /// Shards at the start.
    pub shards: usize,
    /// Rows in the lease table at the end: leases, worker rows and the leader row. A row of a
    /// worker gone for longer than the leader takes to delete it is a violation.
    pub table_rows: usize,
    /// Simulated seconds.
    pub simulated_seconds: f64,
    /// Wall-clock seconds the run took (the one field that differs between two runs of a seed).
    pub wall_seconds: f64,
    /// The first violations (at most 100); empty when none.
    pub violations: Vec<Violation>,
    /// Every violation, counted.
    pub violation_count: u64,
    /// At the end: every lease held, the leases balanced within one per worker, every record
    /// delivered.
    pub converged: bool,
    /// Seconds from `measured_from_seconds` until the fleet was balanced for good.
    pub convergence_seconds: Option<f64>,
    /// `convergence_seconds` in the policy's scan intervals, rounded up.
    pub scan_rounds_to_converge: Option<f64>,
    /// When the scenario's change was over (the end of the fault phase, the new workers
    /// started, the last worker replaced, ...): convergence counts from here.
    pub measured_from_seconds: f64,
    /// When the warm-up ended and the scenario's change began.
    pub change_from_seconds: f64,
    /// Lease acquisitions since `change_from_seconds`.
    pub lease_moves: u64,
    /// The fewest moves the change requires (`None` where faults make it undefined).
    pub min_lease_moves: Option<u64>,
    /// Leases handed over gracefully during the whole run.
    pub handoffs: u64,
    /// Leases that expired under their owner during the whole run.
    pub leases_expired_under_owner: u64,
    /// Records put.
    pub records_put: u64,
    /// Records delivered, duplicates included.
    pub records_delivered: u64,
    /// Records put, still in the stream, never delivered.
    pub records_lost: u64,
    /// Records trimmed by retention before any worker delivered them (a fleet that lags past
    /// the retention period loses them to the stream, as any consumer would).
    pub records_trimmed_unread: u64,
    /// Deliveries of a record that had been delivered before.
    pub duplicate_deliveries: u64,
    /// Checkpoint requests the processors made.
    pub checkpoint_requests: u64,
    /// Their answers, by outcome (`ok` or the error).
    pub checkpoint_answers: BTreeMap<String, u64>,
    /// DynamoDB read units of the whole run.
    pub ddb_read_units: f64,
    /// DynamoDB write units of the whole run.
    pub ddb_write_units: f64,
    /// DynamoDB units (read + write) per shard per hour, from the end of the warm-up.
    pub ddb_units_per_shard_hour: f64,
    /// Of those, the processors' checkpoints: what the application spends.
    pub ddb_checkpoint_units_per_shard_hour: f64,
    /// The rest: what the library spends (leases, heartbeats, leadership, scans).
    pub ddb_library_units_per_shard_hour: f64,
    /// DynamoDB units per shard per hour from the end of the warm-up, by operation (`scan`,
    /// `get_item`, `update_item:renew`, `update_item:checkpoint`, ...).
    pub ddb_units_per_shard_hour_by_operation: BTreeMap<String, f64>,
    /// Median seconds from a worker's crash to every lease it held delivering at a new owner,
    /// over the run's crashes of workers that held leases (`None`: no such crash).
    pub failover_seconds_p50: Option<f64>,
    /// The 99th percentile of the same (nearest rank).
    pub failover_seconds_p99: Option<f64>,
    /// Crashes measured for the failover figures.
    pub failover_crashes_measured: usize,
    /// Crashes whose leases had not all delivered again by the end of the run.
    pub failover_crashes_unresolved: usize,
    /// The failover figures by cause: the fault that crashed the worker (`worker_crash`,
    /// `machine_crash`, and the failover scenario's `follower_crash`, `leader_crash`,
    /// `follower_machine_crash`, `leader_machine_crash`).
    pub failover_by_cause: BTreeMap<String, crate::failover::CauseFigures>,
    /// The failover of each crash cut at the steps of its lease that delivered last: detection,
    /// reassignment, pick-up and first delivery.
    pub failover_phases: crate::failover::Phases,
    /// DynamoDB billing by operation.
    pub ddb_by_operation: BTreeMap<String, OperationBill>,
    /// Kinesis calls.
    pub kinesis: KinesisCounts,
    /// Faults injected, by kind.
    pub faults: BTreeMap<String, u64>,
    /// Driver mode only: the downstream sink's fencing, drivers that gave up, tasks left.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver: Option<DriverFigures>,
    /// The command that replays this run.
    pub replay: String,
    /// One sample per simulated second.
    pub timeline: Vec<Sample>,
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.1}"))
}

impl Report {
    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// A readable summary.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "kcl-sim {} | policy {} | {} workers, {} shards | seed {} | {:.0} s simulated in {:.1} s",
            self.scenario,
            self.policy,
            self.workers,
            self.shards,
            self.seed,
            self.simulated_seconds,
            self.wall_seconds
        );
        let rows: Vec<(&str, String)> = vec![
            (
                "violations",
                if self.violation_count == 0 {
                    "none".into()
                } else {
                    self.violation_count.to_string()
                },
            ),
            ("converged", self.converged.to_string()),
            (
                "convergence",
                format!(
                    "{} s after t = {:.0} s ({} scan rounds)",
                    opt(self.convergence_seconds),
                    self.measured_from_seconds,
                    opt(self.scan_rounds_to_converge)
                ),
            ),
            (
                "lease moves",
                format!(
                    "{} (minimum {})",
                    self.lease_moves,
                    self.min_lease_moves
                        .map_or_else(|| "undefined".into(), |m| m.to_string())
                ),
            ),
            (
                "handoffs / expired",
                format!("{} / {}", self.handoffs, self.leases_expired_under_owner),
            ),
            (
                "records",
                format!(
                    "{} put, {} delivered, {} lost, {} duplicates, {} trimmed unread",
                    self.records_put,
                    self.records_delivered,
                    self.records_lost,
                    self.duplicate_deliveries,
                    self.records_trimmed_unread
                ),
            ),
            (
                "checkpoints",
                format!(
                    "{} asked; {}",
                    self.checkpoint_requests,
                    self.checkpoint_answers
                        .iter()
                        .map(|(k, v)| format!("{k} {v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
            (
                "DynamoDB",
                format!(
                    "{:.0} read + {:.0} write units; {:.1} units per shard-hour ({:.1} library, {:.1} checkpoints)",
                    self.ddb_read_units,
                    self.ddb_write_units,
                    self.ddb_units_per_shard_hour,
                    self.ddb_library_units_per_shard_hour,
                    self.ddb_checkpoint_units_per_shard_hour
                ),
            ),
            (
                "failover",
                match (self.failover_seconds_p50, self.failover_seconds_p99) {
                    (Some(p50), Some(p99)) => format!(
                        "p50 {p50:.1} s, p99 {p99:.1} s over {} crashes ({} unresolved at the end)",
                        self.failover_crashes_measured, self.failover_crashes_unresolved
                    ),
                    _ => "no crash of a worker holding leases".into(),
                },
            ),
            (
                "failover by cause",
                if self.failover_by_cause.is_empty() {
                    "-".into()
                } else {
                    self.failover_by_cause
                        .iter()
                        .map(|(cause, f)| {
                            format!(
                                "{cause} p50 {:.1} s, p99 {:.1} s, max {:.1} s ({})",
                                f.p50_seconds, f.p99_seconds, f.max_seconds, f.crashes
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("; ")
                },
            ),
            ("failover steps", self.failover_phases.summary()),
            (
                "faults",
                if self.faults.is_empty() {
                    "none".into()
                } else {
                    self.faults
                        .iter()
                        .map(|(k, v)| format!("{k} {v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            ),
        ];
        for (k, v) in rows {
            let _ = writeln!(s, "  {k:<20} {v}");
        }
        for v in self.violations.iter().take(10) {
            let _ = writeln!(
                s,
                "  VIOLATION at {:.3} s: {}",
                v.at_ms as f64 / 1000.0,
                v.what
            );
        }
        if self.violation_count > 0 {
            let _ = writeln!(s, "  replay: {}", self.replay);
        }
        s
    }
}

/// The same seed under both policies.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Comparison {
    /// kcl-rs's coordinated policy.
    pub default: Report,
    /// The Java KCL 2.x taker.
    pub kcl2: Report,
    /// default ÷ kcl2 for convergence time, lease moves and DynamoDB units per shard-hour:
    /// below 1 means the default policy did better.
    pub ratios: Ratios,
}

/// default ÷ kcl2.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Ratios {
    /// Convergence time. When kcl2 never converged, its time is taken as the whole measured
    /// window, so the ratio is an upper bound.
    pub convergence_seconds: Option<f64>,
    /// Whether kcl2 converged within the run.
    pub kcl2_converged: bool,
    /// Lease moves.
    pub lease_moves: Option<f64>,
    /// DynamoDB units per shard-hour.
    pub ddb_units_per_shard_hour: Option<f64>,
    /// What the library spends of them.
    pub ddb_library_units_per_shard_hour: Option<f64>,
    /// What the processors' checkpoints spend.
    pub ddb_checkpoint_units_per_shard_hour: Option<f64>,
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| a / b)
}

impl Comparison {
    /// Puts two reports side by side.
    pub fn new(default: Report, kcl2: Report) -> Self {
        let kcl2_time = kcl2
            .convergence_seconds
            .unwrap_or(kcl2.simulated_seconds - kcl2.measured_from_seconds);
        let ratios = Ratios {
            convergence_seconds: default
                .convergence_seconds
                .and_then(|d| ratio(d.max(0.001), kcl2_time)),
            kcl2_converged: kcl2.converged,
            lease_moves: ratio(default.lease_moves as f64, kcl2.lease_moves as f64),
            ddb_units_per_shard_hour: ratio(
                default.ddb_units_per_shard_hour,
                kcl2.ddb_units_per_shard_hour,
            ),
            ddb_library_units_per_shard_hour: ratio(
                default.ddb_library_units_per_shard_hour,
                kcl2.ddb_library_units_per_shard_hour,
            ),
            ddb_checkpoint_units_per_shard_hour: ratio(
                default.ddb_checkpoint_units_per_shard_hour,
                kcl2.ddb_checkpoint_units_per_shard_hour,
            ),
        };
        Self {
            default,
            kcl2,
            ratios,
        }
    }

    /// The comparison as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// A side-by-side table.
    pub fn summary(&self) -> String {
        let (d, k) = (&self.default, &self.kcl2);
        let mut s = String::new();
        let _ = writeln!(
            s,
            "kcl-sim compare {} | {} workers, {} shards | seed {} | {:.0} s simulated",
            d.scenario, d.workers, d.shards, d.seed, d.simulated_seconds
        );
        let _ = writeln!(
            s,
            "  {:<28} {:>14} {:>14} {:>10}",
            "", d.policy, "kcl2", "ratio"
        );
        let r = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{v:.3}"));
        let rows: Vec<(&str, String, String, String)> = vec![
            (
                "violations",
                d.violation_count.to_string(),
                k.violation_count.to_string(),
                String::new(),
            ),
            (
                "converged",
                d.converged.to_string(),
                k.converged.to_string(),
                String::new(),
            ),
            (
                "convergence (s)",
                opt(d.convergence_seconds),
                opt(k.convergence_seconds),
                r(self.ratios.convergence_seconds),
            ),
            (
                "lease moves",
                d.lease_moves.to_string(),
                k.lease_moves.to_string(),
                r(self.ratios.lease_moves),
            ),
            (
                "minimum moves",
                d.min_lease_moves.map_or("-".into(), |m| m.to_string()),
                k.min_lease_moves.map_or("-".into(), |m| m.to_string()),
                String::new(),
            ),
            (
                "DynamoDB units / shard-hour",
                format!("{:.1}", d.ddb_units_per_shard_hour),
                format!("{:.1}", k.ddb_units_per_shard_hour),
                r(self.ratios.ddb_units_per_shard_hour),
            ),
            (
                "  of which library",
                format!("{:.1}", d.ddb_library_units_per_shard_hour),
                format!("{:.1}", k.ddb_library_units_per_shard_hour),
                r(self.ratios.ddb_library_units_per_shard_hour),
            ),
            (
                "  of which checkpoints",
                format!("{:.1}", d.ddb_checkpoint_units_per_shard_hour),
                format!("{:.1}", k.ddb_checkpoint_units_per_shard_hour),
                r(self.ratios.ddb_checkpoint_units_per_shard_hour),
            ),
            (
                "records lost",
                d.records_lost.to_string(),
                k.records_lost.to_string(),
                String::new(),
            ),
        ];
        for (name, a, b, c) in rows {
            let _ = writeln!(s, "  {name:<28} {a:>14} {b:>14} {c:>10}");
        }
        if !self.ratios.kcl2_converged {
            let _ = writeln!(
                s,
                "  kcl2 did not converge within the run: its convergence time is taken as the whole window (the ratio is an upper bound)"
            );
        }
        s
    }
}
