//! The `kcl-sim` command line: `run`, `swarm` and `compare`.

use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

// The simulator allocates and frees millions of small items (rows, records, requests) per
// simulated minute; mimalloc runs the headline scenario markedly faster than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use kcl_sim::scenario::{format_duration, parse_duration};
use kcl_sim::{plot, run, Comparison, Policy, Report, RunSpec, Scenario};

const HELP: &str = "\
kcl-sim: a fleet of kcl-core workers on simulated DynamoDB and Kinesis, with faults and checkers

USAGE:
  kcl-sim run     --scenario NAME [OPTIONS]   one run, a summary, optional JSON and SVG
  kcl-sim swarm   --scenario NAME --seeds K [OPTIONS]
                                              K seeds from --seed on; exits 1 on any violation
  kcl-sim compare --scenario NAME [OPTIONS]   the same seed under default and kcl2, side by side

OPTIONS:
  --scenario NAME            steady | scale-up | scale-down | rolling-deploy | reshard | chaos
                             | failover | retention
  --workers N                workers (scale-up: N -> 2N; scale-down: 2N -> N)   [10]
  --shards M                 shards at the start                                 [100]
  --duration D               simulated time: 90s, 10m, 1h                        [10m]
  --seed S                   the seed (swarm: the first seed)                    [1]
  --policy default|kcl2|lease
                             balancing policy (run, swarm; compare: the side set
                             against kcl2); lease: the default policy with a
                             renewal per lease instead of one heartbeat per worker [default]
  --deploy-policy default|kcl2|lease
                             the policy of the workers a scenario step starts (a rolling
                             deploy's replacements, scale-up's newcomers): a setting rolled
                             out through a running fleet; kcl2 mixes with nothing [--policy]
  --faults none|chaos        the nemesis during the fault phase      [chaos for chaos, else none]
  --drift within|beyond      nemesis clock drift; beyond must produce a violation [within]
  --clock boottime|monotonic the clock the drivers give their workers: boottime counts host
                             suspends (as kcl-aws does on Linux); monotonic ignores them, and
                             the suspend fault must then produce a violation    [boottime]
  --processors simple|mixed  simple: checkpoint every third batch; mixed: per shard, also
                             checkpoints out of order from clones, two-phase prepare and
                             commit, slow batches, checkpoints after the lease was lost [simple]
  --initial-position trim-horizon|latest|at-timestamp
                             where root shards start (at-timestamp: 20 s into the run); records
                             put after a lease was created (or after the timestamp) are owed
                                                                         [trim-horizon]
  --records plain|kpl        kpl: a quarter of the puts are KPL aggregates of 2 to 8 user
                             records, delivered with sub-sequence numbers          [plain]
  --rate R                   records put per second over the stream   [one per shard, at most 1000]
  --workers-per-machine K    workers sharing a simulated machine   [a quarter of the fleet, at most 20]
  --threads 1|2              threads for the workers' steps; the report is the same either way
                             [2 from 200 workers when the machine has two cores, else 1]
  --mode event|turmoil|driver
                             event: the discrete-event engine; turmoil: machines and services
                             as turmoil hosts, every call a datagram; driver: every worker an
                             unmodified kcl-aws Driver with real record processors [event]
  --json PATH                write the report (compare: {default, kcl2, ratios})
  --plot PATH                write an SVG of leases per worker and moves over time
  --quiet                    no progress bar; swarm: only failing seeds and the summary
";

struct Args {
    command: String,
    spec: RunSpec,
    seeds: u64,
    json: Option<String>,
    plot: Option<String>,
    quiet: bool,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let command = args.first().cloned().ok_or("missing command")?;
    if !matches!(command.as_str(), "run" | "swarm" | "compare") {
        return Err(format!("unknown command {command:?}"));
    }
    let mut opts: Vec<(String, String)> = Vec::new();
    let mut quiet = false;
    let mut it = args[1..].iter();
    while let Some(flag) = it.next() {
        if flag == "--quiet" {
            quiet = true;
            continue;
        }
        let (name, value) = match flag.split_once('=') {
            Some((n, v)) => (n.to_owned(), v.to_owned()),
            None => (
                flag.clone(),
                it.next().cloned().ok_or(format!("{flag} needs a value"))?,
            ),
        };
        opts.push((name, value));
    }
    let scenario: Scenario = opts
        .iter()
        .find(|(n, _)| n == "--scenario")
        .ok_or("--scenario is required")?
        .1
        .parse()?;
    let mut spec = RunSpec::new(scenario);
    let (mut seeds, mut json, mut plot_path) = (1, None, None);
    let num = |n: &str, v: &str| -> Result<u64, String> {
        v.parse()
            .map_err(|_| format!("{n} takes a whole number, not {v:?}"))
    };
    for (name, value) in &opts {
        match name.as_str() {
            "--scenario" => {}
            "--workers" => spec.workers = num(name, value)?.max(1) as usize,
            "--shards" => spec.shards = num(name, value)?.max(1) as usize,
            "--duration" => spec.duration_ms = parse_duration(value)?,
            "--seed" => spec.seed = num(name, value)?,
            "--seeds" => seeds = num(name, value)?.max(1),
            "--policy" => spec.policy = value.parse()?,
            "--deploy-policy" => spec.deploy_policy = Some(value.parse()?),
            "--faults" => spec.faults = value.parse()?,
            "--drift" => spec.drift = value.parse()?,
            "--clock" => spec.clock = value.parse()?,
            "--processors" => spec.processors = value.parse()?,
            "--mode" => spec.mode = value.parse()?,
            "--initial-position" => spec.initial_position = value.parse()?,
            "--records" => {
                spec.kpl = match value.as_str() {
                    "plain" => false,
                    "kpl" => true,
                    _ => return Err(format!("unknown records {value:?}; one of: plain, kpl")),
                }
            }
            "--rate" => {
                let r: f64 = value
                    .parse()
                    .map_err(|_| format!("--rate takes a number, not {value:?}"))?;
                if !(r >= 0.0 && r.is_finite()) {
                    return Err(format!("--rate must be a finite number >= 0, not {value}"));
                }
                spec.records_per_second = Some(r);
            }
            "--threads" => spec.threads = Some(num(name, value)?.clamp(1, 2) as usize),
            "--workers-per-machine" => {
                spec.workers_per_machine = Some(num(name, value)?.max(1) as usize)
            }
            "--json" => json = Some(value.clone()),
            "--plot" => plot_path = Some(value.clone()),
            _ => return Err(format!("unknown option {name}")),
        }
    }
    spec.validate()?;
    Ok(Args {
        command,
        spec,
        seeds,
        json,
        plot: plot_path,
        quiet,
    })
}

/// A progress bar on stderr: redrawn in place on a terminal, a line per 10% otherwise.
struct Progress {
    label: String,
    total_ms: u64,
    started: Instant,
    last_draw: Instant,
    last_decile: u64,
    tty: bool,
    quiet: bool,
}

impl Progress {
    fn new(label: String, total_ms: u64, quiet: bool) -> Self {
        Self {
            label,
            total_ms,
            started: Instant::now(),
            last_draw: Instant::now(),
            last_decile: 0,
            tty: std::io::stderr().is_terminal(),
            quiet,
        }
    }

    fn update(&mut self, now_ms: u64) {
        if self.quiet {
            return;
        }
        let frac = (now_ms as f64 / self.total_ms.max(1) as f64).min(1.0);
        let wall = self.started.elapsed().as_secs_f64();
        if self.tty {
            if self.last_draw.elapsed() < Duration::from_millis(200) && frac < 1.0 {
                return;
            }
            self.last_draw = Instant::now();
            let filled = (frac * 30.0) as usize;
            eprint!(
                "\r{} [{}{}] {:>3.0}% {} of {} simulated, {wall:.0} s wall ",
                self.label,
                "#".repeat(filled),
                " ".repeat(30 - filled),
                frac * 100.0,
                format_duration(now_ms / 1000 * 1000),
                format_duration(self.total_ms)
            );
            if frac >= 1.0 {
                eprintln!();
            }
        } else {
            let decile = (frac * 10.0) as u64;
            if decile > self.last_decile {
                self.last_decile = decile;
                eprintln!("{} {:>3}% ({wall:.0} s wall)", self.label, decile * 10);
            }
        }
    }
}

fn run_one(spec: &RunSpec, quiet: bool) -> Report {
    let label = format!(
        "{} {} seed {}",
        spec.scenario,
        spec.policy_name(),
        spec.seed
    );
    let mut progress = Progress::new(label, spec.duration_ms, quiet);
    run(spec, &mut |t| progress.update(t))
}

fn write(path: &str, contents: &str) -> Result<(), String> {
    std::fs::write(path, contents).map_err(|e| format!("cannot write {path}: {e}"))
}

fn main_inner(args: Args) -> Result<bool, String> {
    match args.command.as_str() {
        "run" => {
            let report = run_one(&args.spec, args.quiet);
            print!("{}", report.summary());
            if let Some(p) = &args.json {
                write(p, &report.to_json())?;
            }
            if let Some(p) = &args.plot {
                write(p, &plot::svg(&report))?;
            }
            Ok(report.violation_count == 0)
        }
        "swarm" => {
            let mut failing = Vec::new();
            let mut reports = Vec::new();
            // With --quiet only the failing seeds and the summary are printed.
            if !args.quiet {
                println!(
                    "{:>8} {:>10} {:>9} {:>12} {:>8} {:>7} {:>8}",
                    "seed", "violations", "converged", "convergence", "moves", "lost", "wall s"
                );
            }
            for seed in args.spec.seed..args.spec.seed + args.seeds {
                let spec = RunSpec {
                    seed,
                    ..args.spec.clone()
                };
                let r = run_one(&spec, true);
                if !args.quiet {
                    println!(
                        "{:>8} {:>10} {:>9} {:>12} {:>8} {:>7} {:>8.1}",
                        seed,
                        r.violation_count,
                        r.converged,
                        r.convergence_seconds
                            .map_or("-".into(), |c| format!("{c:.1} s")),
                        r.lease_moves,
                        r.records_lost,
                        r.wall_seconds
                    );
                }
                if r.violation_count > 0 {
                    failing.push(r.clone());
                }
                reports.push(r);
            }
            let converged = reports.iter().filter(|r| r.converged).count();
            println!(
                "swarm {} {}: {} seeds, {} with violations, {} converged",
                args.spec.scenario,
                args.spec.policy_name(),
                reports.len(),
                failing.len(),
                converged
            );
            for r in &failing {
                println!(
                    "FAILED seed {}: {}",
                    r.seed,
                    r.violations.first().map_or("", |v| v.what.as_str())
                );
                println!("  replay: {}", r.replay);
            }
            if let Some(p) = &args.json {
                let json = serde_json::to_string_pretty(&reports).map_err(|e| e.to_string())?;
                write(p, &json)?;
            }
            Ok(failing.is_empty())
        }
        _ => {
            let ours = match args.spec.policy {
                Policy::Kcl2 => Policy::Default,
                p => p,
            };
            let default = run_one(
                &RunSpec {
                    policy: ours,
                    ..args.spec.clone()
                },
                args.quiet,
            );
            let kcl2 = run_one(
                &RunSpec {
                    policy: Policy::Kcl2,
                    deploy_policy: None,
                    ..args.spec.clone()
                },
                args.quiet,
            );
            let c = Comparison::new(default, kcl2);
            print!("{}", c.summary());
            if let Some(p) = &args.json {
                write(p, &c.to_json())?;
            }
            if let Some(p) = &args.plot {
                write(p, &plot::svg(&c.default))?;
                let kcl2_path = match p.strip_suffix(".svg") {
                    Some(stem) => format!("{stem}.kcl2.svg"),
                    None => format!("{p}.kcl2.svg"),
                };
                write(&kcl2_path, &plot::svg(&c.kcl2))?;
            }
            Ok(c.default.violation_count == 0 && c.kcl2.violation_count == 0)
        }
    }
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.is_empty()
        || argv
            .iter()
            .any(|a| a == "--help" || a == "-h" || a == "help")
    {
        print!("{HELP}");
        return ExitCode::SUCCESS;
    }
    let args = match parse(&argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("kcl-sim: {e}\n\n{HELP}");
            return ExitCode::from(2);
        }
    };
    match main_inner(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("kcl-sim: {e}");
            ExitCode::from(2)
        }
    }
}
