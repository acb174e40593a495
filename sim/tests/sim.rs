//! Simulation tests: swarms of seeds through every scenario and the chaos nemesis, the
//! properties the issue names (minimal moves, bounded rounds, the drift bound), determinism,
//! and the command line. A failure names the seed and the command that replays it.
//!
//! `KCLRS_SIM_SEEDS=K` widens the swarms (16 seeds per policy by default).

mod common;

use std::process::Command;

use common::{assert_no_violation, quiet, reports};
use kcl_sim::{
    Comparison, Drift, Faults, Mode, Policy, Processors, Report, RunSpec, Scenario, StartAt,
    WorkerClock,
};

fn spec(scenario: Scenario, policy: Policy, seed: u64) -> RunSpec {
    RunSpec {
        workers: 5,
        shards: 20,
        duration_ms: 150_000,
        seed,
        policy,
        ..RunSpec::new(scenario)
    }
}

fn seeds() -> u64 {
    common::seeds(16)
}

/// The seeds whose run reports an exclusivity violation.
fn exclusivity_reported(
    seeds: std::ops::RangeInclusive<u64>,
    run: impl Fn(u64) -> Report,
) -> Vec<u64> {
    seeds
        .filter(|&seed| reports(&run(seed), "exclusivity"))
        .collect()
}

#[test]
fn chaos_swarm_keeps_every_invariant_under_both_policies() {
    for policy in [Policy::Default, Policy::Lease, Policy::Kcl2] {
        for seed in 1..=seeds() {
            let mut s = spec(Scenario::Chaos, policy, seed);
            s.duration_ms = 240_000;
            let r = quiet(&s);
            assert_no_violation(&r);
            assert!(
                r.faults.values().sum::<u64>() > 5,
                "seed {seed}: the nemesis did nothing"
            );
            assert_eq!(r.records_lost, 0);
        }
    }
}

/// Processors that checkpoint out of order from clones, prepare and commit, run slow batches
/// and checkpoint after losing the lease: no checkpoint ever moves backwards (checked on every
/// table write), and every request is answered once and truthfully. Before checkpoints were
/// judged at write time, every seed of this swarm moved a checkpoint backwards.
#[test]
fn mixed_processors_never_move_a_checkpoint_backwards() {
    let mut answers = std::collections::BTreeMap::new();
    for policy in [Policy::Default, Policy::Lease, Policy::Kcl2] {
        for seed in 1..=seeds() {
            let mut s = spec(Scenario::Chaos, policy, seed);
            s.duration_ms = 240_000;
            s.processors = Processors::Mixed;
            let r = quiet(&s);
            assert_no_violation(&r);
            assert_eq!(r.records_lost, 0, "{}", r.replay);
            for (k, v) in r.checkpoint_answers {
                *answers.entry(k).or_insert(0) += v;
            }
        }
    }
    for outcome in ["ok", "backwards", "nothing_prepared", "lease_lost"] {
        assert!(
            answers.get(outcome).is_some_and(|&n| n > 0),
            "the mix never produced {outcome}: {answers:?}"
        );
    }
}

/// A root shard started at `LATEST` or `AT_TIMESTAMP` owes every record put after its lease was
/// created (or after the timestamp), however often the lease fails over before its first
/// checkpoint. When `LATEST` was resolved again at every acquisition, as the Java KCL does, the
/// records put between a lease's creation and an acquisition were lost.
#[test]
fn no_record_put_after_a_lease_was_created_is_lost_at_any_failover() {
    for start in [StartAt::Latest, StartAt::AtTimestamp] {
        for policy in [Policy::Default, Policy::Kcl2] {
            for seed in 1..=seeds() / 2 {
                let mut s = spec(Scenario::Chaos, policy, seed);
                s.duration_ms = 240_000;
                s.processors = Processors::Mixed;
                s.initial_position = start;
                let r = quiet(&s);
                assert_no_violation(&r);
                assert_eq!(r.records_lost, 0, "{}", r.replay);
                if start == StartAt::AtTimestamp {
                    // Records put before the timestamp are not owed, and not delivered.
                    assert!(r.records_delivered < r.records_put + r.duplicate_deliveries);
                }
            }
        }
    }
}

#[test]
fn every_scenario_runs_clean_and_settles() {
    // The retention scenario trims records unread on purpose: its own test below.
    for scenario in Scenario::ALL
        .into_iter()
        .filter(|s| *s != Scenario::Retention)
    {
        for policy in [Policy::Default, Policy::Kcl2] {
            let mut s = spec(scenario, policy, 7);
            // The Java taker needs a few 20-second rounds to settle after a change.
            s.duration_ms = 300_000;
            let r = quiet(&s);
            assert_no_violation(&r);
            assert_eq!(r.records_lost, 0, "{}", r.replay);
            assert!(r.records_put > 0 && r.records_delivered >= r.records_put);
            if policy == Policy::Default {
                assert!(r.converged, "{} did not converge: {}", scenario, r.replay);
            }
        }
    }
}

/// Records trimmed unread and parents expired with unread tails: every parent is finished, every
/// child consumed after it, and nothing the stream still holds is lost.
#[test]
fn a_fleet_that_lags_past_the_retention_finishes_expired_parents_and_goes_on() {
    for policy in [Policy::Default, Policy::Kcl2] {
        for seed in 1..=3 {
            let mut s = spec(Scenario::Retention, policy, seed);
            s.duration_ms = 300_000;
            s.processors = Processors::Mixed;
            let r = quiet(&s);
            assert_no_violation(&r);
            assert_eq!(r.records_lost, 0, "{}", r.replay);
            assert!(r.records_trimmed_unread > 0, "{}", r.replay);
            assert!(r.kinesis.shards_expired > 0, "{}", r.replay);
            assert!(r.converged, "{}", r.replay);
        }
    }
}

/// A write a crashed process sent lands after its machine restarted the worker under a fresh
/// id: the checkers must judge it as the old process's (seed 517 of the at-timestamp swarm once
/// reported the new process moving a checkpoint it did not own).
#[test]
fn a_write_that_lands_after_its_sender_restarted_is_the_old_processs() {
    let mut s = spec(Scenario::Chaos, Policy::Default, 517);
    s.duration_ms = 240_000;
    s.processors = Processors::Mixed;
    s.initial_position = StartAt::AtTimestamp;
    s.kpl = true;
    let r = quiet(&s);
    assert_no_violation(&r);
}

/// KPL aggregates, handed out as user records with sub-sequence numbers: checkpoints inside an
/// aggregate resume inside it, with no gap in any ownership and nothing lost.
#[test]
fn kpl_aggregates_resume_inside_the_aggregate() {
    for policy in [Policy::Default, Policy::Kcl2] {
        for seed in 1..=3 {
            let mut s = spec(Scenario::Chaos, policy, seed);
            s.processors = Processors::Mixed;
            s.kpl = true;
            let r = quiet(&s);
            assert_no_violation(&r);
            assert_eq!(r.records_lost, 0, "{}", r.replay);
            assert!(
                r.records_put > r.kinesis.records_put,
                "aggregates hold several user records: {}",
                r.replay
            );
        }
    }
}

#[test]
fn resharding_creates_children_that_are_consumed_after_their_parents() {
    let r = quiet(&spec(Scenario::Reshard, Policy::Default, 3));
    assert_no_violation(&r);
    assert!(r.faults.get("reshard").copied().unwrap_or(0) >= 2);
    assert!(r.kinesis.list_shards > 0);
}

#[test]
fn scale_up_moves_the_minimum_within_three_scan_rounds() {
    for seed in 1..=4 {
        let mut s = spec(Scenario::ScaleUp, Policy::Default, seed);
        s.workers = 10;
        s.shards = 100;
        let r = quiet(&s);
        assert_no_violation(&r);
        let min = r.min_lease_moves.unwrap_or_default();
        assert!(min > 0);
        assert!(
            r.lease_moves as f64 <= 1.05 * min as f64,
            "seed {seed}: {} moves for a minimum of {min}",
            r.lease_moves
        );
        assert!(
            r.scan_rounds_to_converge.is_some_and(|n| n <= 3.0),
            "seed {seed}: {:?} scan rounds",
            r.scan_rounds_to_converge
        );
    }
}

#[test]
fn a_balanced_fleet_moves_nothing_more() {
    for policy in [Policy::Default, Policy::Kcl2] {
        let mut s = spec(Scenario::Steady, policy, 5);
        // The Java taker lets the first scanner take many leases and then steals one per
        // 20-second round: it needs a while to balance 20 leases from an empty table.
        s.duration_ms = 300_000;
        let r = quiet(&s);
        assert_no_violation(&r);
        if policy == Policy::Default {
            assert_eq!(r.lease_moves, 0, "{}", r.replay);
            assert_eq!(r.duplicate_deliveries, 0);
        }
        let balanced = r
            .timeline
            .iter()
            .position(|x| x.unheld == 0 && x.max - x.min <= 1)
            .unwrap_or_else(|| panic!("never balanced: {}", r.replay));
        let moves = r.timeline[balanced].moves;
        assert!(
            r.timeline[balanced..].iter().all(|x| x.moves == moves),
            "{} moved leases after it was balanced: {}",
            policy.name(),
            r.replay
        );
    }
}

/// The busiest owner runs at a fifth of true speed, cut off DynamoDB: the checkers must see it
/// deliver after others took its leases. The rest of the nemesis may crash that very worker
/// first, or cut it off Kinesis (then there is nothing to see), so most seeds, not all, must
/// report it: two thirds of twelve.
#[test]
fn drift_beyond_the_bound_is_reported() {
    for policy in [Policy::Default, Policy::Lease] {
        let seeds = 1..=12;
        let caught = exclusivity_reported(seeds.clone(), |seed| {
            quiet(&RunSpec {
                drift: Drift::Beyond,
                faults: Faults::Chaos,
                ..spec(Scenario::Chaos, policy, seed)
            })
        });
        assert!(
            caught.len() >= 8,
            "{policy:?}: a clock at a fifth of true speed was noticed only in seeds {caught:?} of {seeds:?}"
        );
    }
}

/// As the fault phase of every chaos run begins, the busiest owner's host is suspended for three
/// lease durations. A driver that gives its worker the bare monotonic clock (stopped meanwhile) wakes
/// with its window open for leases others took: the checkers must see it. Counting the
/// suspension, as kcl-aws does, closes the window: the same seeds are clean.
#[test]
fn a_host_suspend_is_reported_unless_the_driver_counts_it() {
    let seeds = 1..=6;
    let run = |clock, seed| {
        quiet(&RunSpec {
            clock,
            ..spec(Scenario::Chaos, Policy::Default, seed)
        })
    };
    let caught = exclusivity_reported(seeds.clone(), |seed| run(WorkerClock::Monotonic, seed));
    assert!(
        caught.len() >= 4,
        "a suspended owner with a stopped clock was noticed only in seeds {caught:?} of {seeds:?}"
    );
    for seed in caught {
        assert_no_violation(&run(WorkerClock::Boottime, seed));
    }
}

#[test]
fn same_seed_same_report_byte_for_byte() {
    let s = spec(Scenario::Chaos, Policy::Default, 11);
    let json = |mut r: Report| {
        r.wall_seconds = 0.0;
        r.to_json()
    };
    let a = json(quiet(&s));
    assert_eq!(a, json(quiet(&s)));
    assert_ne!(
        a,
        json(quiet(&RunSpec { seed: 12, ..s })),
        "the seed must matter"
    );
}

#[test]
fn a_second_thread_changes_nothing_in_the_report() {
    // Big enough that most instants have several workers stepping at once.
    let s = RunSpec {
        workers: 120,
        shards: 480,
        duration_ms: 90_000,
        ..spec(Scenario::Chaos, Policy::Default, 5)
    };
    let one = quiet(&RunSpec {
        threads: Some(1),
        ..s
    });
    let two = quiet(&RunSpec {
        threads: Some(2),
        ..s
    });
    assert_no_violation(&one);
    assert_eq!(RunSpecless(&one).json(), RunSpecless(&two).json());
}

#[test]
fn compare_reports_both_policies_and_their_ratios() {
    let s = spec(Scenario::ScaleUp, Policy::Default, 2);
    let c = Comparison::new(
        quiet(&s),
        quiet(&RunSpec {
            policy: Policy::Kcl2,
            ..s
        }),
    );
    let v: serde_json::Value = serde_json::from_str(&c.to_json()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v["default"]["policy"], "default");
    assert_eq!(v["kcl2"]["policy"], "kcl2");
    let ratio = v["ratios"]["convergence_seconds"]
        .as_f64()
        .unwrap_or(f64::NAN);
    assert!(
        ratio < 1.0,
        "the default policy must converge faster: {ratio}"
    );
    for key in [
        "seed",
        "policy",
        "scenario",
        "workers",
        "shards",
        "simulated_seconds",
        "wall_seconds",
        "violations",
        "converged",
        "convergence_seconds",
        "lease_moves",
        "min_lease_moves",
        "records_put",
        "records_delivered",
        "records_lost",
        "duplicate_deliveries",
        "ddb_read_units",
        "ddb_write_units",
        "ddb_units_per_shard_hour",
        "ddb_library_units_per_shard_hour",
        "ddb_checkpoint_units_per_shard_hour",
        "ddb_units_per_shard_hour_by_operation",
        "failover_seconds_p50",
        "failover_seconds_p99",
        "faults",
    ] {
        assert!(v["default"].get(key).is_some(), "report lacks {key}");
    }
}

#[test]
fn the_command_line_writes_json_and_svg_and_fails_on_violations() {
    let dir = std::env::temp_dir().join(format!("kcl-sim-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let json = dir.join("r.json");
    let svg = dir.join("r.svg");
    let bin = env!("CARGO_BIN_EXE_kcl-sim");
    let out = Command::new(bin)
        .args([
            "run",
            "--scenario",
            "scale-up",
            "--workers",
            "4",
            "--shards",
            "16",
        ])
        .args(["--duration", "90s", "--seed", "3", "--quiet", "--json"])
        .arg(&json)
        .arg("--plot")
        .arg(&svg)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).unwrap_or_else(|e| panic!("{e}")))
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report["scenario"], "scale-up");
    let plot = std::fs::read_to_string(&svg).unwrap_or_else(|e| panic!("{e}"));
    assert!(plot.starts_with("<svg") && plot.contains("lease moves"));

    // A run with a violation exits 1 and prints the replay command (a seed whose drift the
    // checkers see: not every seed's is, see `drift_beyond_the_bound_is_reported`).
    let out = Command::new(bin)
        .args([
            "run",
            "--scenario",
            "chaos",
            "--workers",
            "5",
            "--shards",
            "20",
        ])
        .args([
            "--duration",
            "150s",
            "--drift",
            "beyond",
            "--seed",
            "2",
            "--quiet",
        ])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("replay: cargo run --release -p kcl-sim -- run --scenario chaos"),
        "{stdout}"
    );

    // Bad input is a usage error, not a panic.
    let out = Command::new(bin)
        .args(["run", "--scenario", "nope"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown scenario"));
    let out = Command::new(bin)
        .args(["run", "--scenario", "steady", "--duration", "5s"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("too short"));
    let _ = std::fs::remove_dir_all(&dir);
}

fn turmoil(spec: RunSpec) -> RunSpec {
    RunSpec {
        mode: Mode::Turmoil,
        ..spec
    }
}

#[test]
fn turmoil_mode_keeps_every_invariant_through_chaos() {
    let seeds = std::env::var("KCLRS_SIM_TURMOIL_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3u64);
    for policy in [Policy::Default, Policy::Kcl2] {
        for seed in 1..=seeds {
            let r = quiet(&turmoil(spec(Scenario::Chaos, policy, seed)));
            assert_eq!(r.mode, "turmoil");
            assert_no_violation(&r);
            assert!(r.faults.values().sum::<u64>() > 2);
        }
    }
}

#[test]
fn turmoil_mode_scales_up_with_the_minimum_moves_and_reproduces() {
    let s = turmoil(spec(Scenario::ScaleUp, Policy::Default, 4));
    let r = quiet(&s);
    assert_no_violation(&r);
    assert_eq!(Some(r.lease_moves), r.min_lease_moves, "{}", r.replay);
    let again = quiet(&s);
    assert_eq!(
        RunSpecless(&r).json(),
        RunSpecless(&again).json(),
        "same seed, same turmoil run"
    );
}

#[test]
fn turmoil_partitions_cut_real_links() {
    // A slow-clocked owner cut off DynamoDB by a turmoil partition keeps delivering after its
    // lease moved: only a partition that really drops datagrams produces this. (The rest of the
    // nemesis may pause or crash that owner first, so one seed of three must show it.)
    let caught = (1..=3).any(|seed| {
        let s = RunSpec {
            drift: Drift::Beyond,
            ..turmoil(spec(Scenario::Chaos, Policy::Default, seed))
        };
        reports(&quiet(&s), "exclusivity")
    });
    assert!(
        caught,
        "no seed of 1..=3 showed the isolated owner delivering late"
    );
}

/// A report without its wall time, for byte-for-byte comparisons.
struct RunSpecless<'a>(&'a Report);

impl RunSpecless<'_> {
    fn json(&self) -> String {
        let mut r = self.0.clone();
        r.wall_seconds = 0.0;
        r.to_json()
    }
}

/// Crashed workers restart with fresh ids, so each crash leaves a row nobody heartbeats: the
/// leader deletes it after `worker_row_retention`, and the end-of-run table check holds the
/// table to the leases, the live workers and the leader row. With a retention longer than the
/// run, the check must report the rows left behind.
#[test]
fn rows_of_crashed_workers_are_deleted_and_the_table_check_sees_those_that_are_not() {
    use kcl_sim::fleet::{Action, Fleet, FleetConfig};
    let violations = |retention_s: u64| {
        let mut cfg = FleetConfig {
            shards: 8,
            ..FleetConfig::default()
        };
        cfg.worker.worker_row_retention = std::time::Duration::from_secs(retention_s);
        let mut fleet = Fleet::new(cfg, 4);
        for at in [30_000, 40_000, 50_000] {
            fleet.at(
                at,
                Action::CrashWorker {
                    restart_after_ms: 2_000,
                },
            );
        }
        fleet.run_until(200_000, &mut |_| {});
        // Judged by the default retention, whatever the fleet was configured with.
        let grace = std::time::Duration::from_secs(60 + 10 + 4);
        (
            fleet.table_rows(),
            fleet.table_size_violations_within(grace),
        )
    };
    let (rows, wrong) = violations(60);
    assert!(wrong.is_empty(), "{wrong:?}");
    assert_eq!(rows, 8 + 4 + 1, "leases, live workers, the leader row");
    let (rows, wrong) = violations(3_600);
    assert_eq!(rows, 8 + 4 + 1 + 3, "three rows of crashed workers stay");
    assert_eq!(wrong.len(), 3, "{wrong:?}");
}

/// The DynamoDB cost splits into what the library spends and what the processors' checkpoints
/// spend, and crashes have a failover time.
#[test]
fn the_report_splits_the_cost_and_times_failovers() {
    let r = quiet(&RunSpec {
        workers: 10,
        shards: 40,
        duration_ms: 600_000,
        ..spec(Scenario::Chaos, Policy::Default, 1)
    });
    let sum = r.ddb_library_units_per_shard_hour + r.ddb_checkpoint_units_per_shard_hour;
    assert!(
        (sum - r.ddb_units_per_shard_hour).abs() < 1e-6,
        "{}",
        r.replay
    );
    assert!(r.ddb_checkpoint_units_per_shard_hour > 0.0, "{}", r.replay);
    let by_operation: f64 = r.ddb_units_per_shard_hour_by_operation.values().sum();
    assert!(
        (by_operation - r.ddb_units_per_shard_hour).abs() < 1e-6,
        "{}",
        r.replay
    );
    let checkpoints = r.ddb_units_per_shard_hour_by_operation["update_item:checkpoint"];
    assert!((checkpoints - r.ddb_checkpoint_units_per_shard_hour).abs() < 1e-6);
    assert!(r.failover_crashes_measured > 0, "{}", r.replay);
    let (p50, p99) = (r.failover_seconds_p50, r.failover_seconds_p99);
    assert!(
        p50.is_some_and(|p50| p99.is_some_and(|p99| p50 <= p99)),
        "{}",
        r.replay
    );
}

/// Worker liveness renews no lease: in steady state the library's writes are heartbeats, one per
/// worker, and it costs a fraction of the per-lease renewals (the same run under the default
/// policy). The measured figures are in the README's cost table.
#[test]
fn worker_liveness_renews_no_lease() {
    let run = |policy| {
        quiet(&RunSpec {
            workers: 10,
            shards: 100,
            duration_ms: 600_000,
            ..spec(Scenario::Steady, policy, 77)
        })
    };
    let (lease, worker) = (run(Policy::Lease), run(Policy::Default));
    assert_no_violation(&worker);
    let ops = &worker.ddb_units_per_shard_hour_by_operation;
    assert!(!ops.contains_key("update_item:renew"), "{ops:?}");
    assert!(ops["update_item:workerheartbeat"] > 0.0, "{ops:?}");
    assert!(
        worker.ddb_library_units_per_shard_hour * 3.0 < lease.ddb_library_units_per_shard_hour,
        "{} against {}",
        worker.ddb_library_units_per_shard_hour,
        lease.ddb_library_units_per_shard_hour
    );
}

/// Worker liveness: a leader that gave its incarnation up (fenced, or its window closed) goes on
/// planning, but takes no lease until a heartbeat of its new incarnation landed. It once
/// assigned orphans to itself and acquired them with no window to deliver in: three leases of
/// this seed stayed with a live incarnation that held none of them.
#[test]
fn a_leader_between_incarnations_takes_no_lease() {
    let r = quiet(&RunSpec {
        workers: 6,
        shards: 24,
        duration_ms: 360_000,
        faults: Faults::Chaos,
        processors: Processors::Mixed,
        ..spec(Scenario::Reshard, Policy::Default, 39)
    });
    assert_no_violation(&r);
    assert_eq!(r.records_lost, 0, "{}", r.replay);
}

/// A liveness setting rolled out through a running fleet, both ways, with the nemesis: for a
/// while leases renewed lease by lease and leases kept by their holder's heartbeat share one
/// table, and every leader judges each lease by the rule its row asks for.
#[test]
fn a_liveness_switch_rolls_through_a_running_fleet() {
    for (from, to) in [
        (Policy::Lease, Policy::Default),
        (Policy::Default, Policy::Lease),
    ] {
        for seed in 1..=seeds() {
            let r = quiet(&RunSpec {
                workers: 6,
                shards: 24,
                duration_ms: 240_000,
                faults: Faults::Chaos,
                processors: Processors::Mixed,
                deploy_policy: Some(to),
                ..spec(Scenario::RollingDeploy, from, seed)
            });
            assert_eq!(r.policy, format!("{}->{}", from.name(), to.name()));
            assert_no_violation(&r);
            assert_eq!(r.records_lost, 0, "{}", r.replay);
            assert!(r.converged, "did not converge: {}", r.replay);
        }
    }
}

/// One crash in a calm fleet: its leases deliver again at new owners no sooner than the
/// failover time allows (exclusivity) and are all measured.
#[test]
fn a_lone_crash_fails_over_after_the_failover_time() {
    for policy in [Policy::Default, Policy::Lease] {
        a_lone_crash_fails_over_with(policy);
    }
}

fn a_lone_crash_fails_over_with(policy: Policy) {
    use kcl_sim::fleet::{Action, Fleet};
    let s = spec(Scenario::Steady, policy, 5);
    let failover = policy.config().failover_time.as_secs_f64();
    let mut fleet = Fleet::new(kcl_sim::scenario::fleet_config(&s), 4);
    fleet.at(
        60_000,
        Action::CrashWorker {
            restart_after_ms: 300_000,
        },
    );
    fleet.run_until(180_000, &mut |_| {});
    let m = fleet.measures(0);
    assert_eq!(m.violation_count, 0, "{:?}", m.violations.first());
    assert_eq!(
        (m.failover.crashes_measured, m.failover.crashes_unresolved),
        (1, 0)
    );
    let seconds = m.failover.p50_seconds.unwrap_or_default();
    println!("{policy:?}: a lone crash failed over in {seconds} s");
    assert!(
        seconds >= failover * 0.95,
        "{policy:?}: failed over in {seconds} s"
    );
}

/// The failover scenario crashes each cause in turn in a calm fleet (a worker that does not
/// lead, the leader, a machine without the leader, the leader's machine): every crash's leases
/// deliver again and no invariant breaks, in the event and driver modes, and under the Java
/// model too (it has no leader: its "leader" crashes take a random worker).
#[test]
fn the_failover_scenario_crashes_each_cause_and_every_lease_delivers_again() {
    let runs = [
        (Policy::Default, Mode::Event),
        (Policy::Lease, Mode::Event),
        (Policy::Kcl2, Mode::Event),
        (Policy::Default, Mode::Driver),
    ];
    for (policy, mode) in runs {
        for seed in 1..=3 {
            let s = RunSpec {
                workers: 8,
                shards: 32,
                duration_ms: 600_000,
                workers_per_machine: Some(2),
                mode,
                ..spec(Scenario::Failover, policy, seed)
            };
            let r = quiet(&s);
            assert_no_violation(&r);
            for cause in [
                "follower_crash",
                "leader_crash",
                "follower_machine_crash",
                "leader_machine_crash",
            ] {
                assert_eq!(r.faults.get(cause), Some(&1), "{cause}: {}", r.replay);
            }
            assert_eq!(r.failover_crashes_unresolved, 0, "{}", r.replay);
            // One worker, one, two and two (a machine holds two workers here).
            assert_eq!(r.failover_crashes_measured, 6, "{}", r.replay);
            assert_eq!(r.records_lost, 0, "{}", r.replay);
            // In a calm fleet a new owner picks an assignment up with its next heartbeat; the
            // Java model's takers take, which is assignment and acquire at once.
            let pick_up = r.failover_phases.pick_up.expect("measured crashes");
            let bound = match policy {
                Policy::Kcl2 => 0.0,
                _ => policy.config().heartbeat_interval.as_secs_f64() + 0.5,
            };
            assert!(
                pick_up.p99_seconds <= bound,
                "pick-up p99 {} s > {bound} s: {}",
                pick_up.p99_seconds,
                r.replay
            );
        }
    }
}

/// One machine of four cut off from Kinesis, not from DynamoDB, for two minutes: its worker's
/// heartbeat says its reads stalled, and the leader hands its leases to the workers that read
/// (without this, its shards would wait out the whole partition); once Kinesis answers again,
/// the balance gives it leases back. Every seed, no invariant breaks.
#[test]
fn a_worker_cut_off_from_kinesis_hands_its_leases_to_workers_that_read() {
    use kcl_sim::fleet::{Action, Fleet, Service};
    for seed in 1..=4 {
        let s = RunSpec {
            workers_per_machine: Some(1),
            ..spec(Scenario::Steady, Policy::Default, seed)
        };
        let mut fleet = Fleet::new(kcl_sim::scenario::fleet_config(&s), 4);
        fleet.at(
            60_000,
            Action::Partition {
                service: Service::Kinesis,
                ms: 120_000,
            },
        );
        let replay = format!(
            "seed {seed} (replay: cargo test -p kcl-sim --test sim a_worker_cut_off_from_kinesis)"
        );
        let held = |fleet: &Fleet, node| {
            fleet
                .worker(node)
                .map_or(0, |w| w.leases().filter(|l| !l.lease.is_finished()).count())
        };
        fleet.run_until(100_000, &mut |_| {});
        let stalled: Vec<usize> = fleet
            .running()
            .into_iter()
            .filter(|&n| fleet.worker(n).is_some_and(|w| w.stats().reads_stalls > 0))
            .collect();
        assert_eq!(stalled.len(), 1, "{replay}: {stalled:?}");
        let cut_off = stalled[0];
        assert_eq!(
            held(&fleet, cut_off),
            0,
            "{replay}: 40 s into the partition"
        );
        fleet.run_until(300_000, &mut |_| {});
        assert!(held(&fleet, cut_off) > 0, "{replay}: leases came back");
        let m = fleet.measures(0);
        assert_eq!(m.violation_count, 0, "{replay}: {:?}", m.violations.first());
    }
}
