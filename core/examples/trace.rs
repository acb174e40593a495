//! Every command of every worker through a set of fault schedules, under both policies, printed
//! one per line with the workers' counters and the final table: the oracle of a refactor that
//! must not change behaviour (the output before and after must be byte-identical).
//! Run: `cargo run --release -p kcl-core --example trace --features testkit > trace.txt`.

use kcl_core::testkit::{harness_config, Cluster, ClusterConfig, Faults};
use kcl_core::BalancingPolicy;

fn run(policy: BalancingPolicy, seed: u64) {
    let config = harness_config(policy);
    let mut c = Cluster::new(ClusterConfig {
        workers: 4,
        shards: 12,
        config,
        seed,
        faults: Faults {
            throttle_per_mille: 20,
            ambiguous_write_per_mille: 20,
        },
        checkpoint_every: 2,
        trace: true,
        ..ClusterConfig::default()
    });
    c.put_records(300);
    c.run_until(30_000);
    c.pause(1, 15_000);
    c.stream.split("shardId-000000000003");
    c.run_until(90_000);
    c.add_worker();
    if let Some((a, b)) = c.stream.adjacent_pairs().first().cloned() {
        c.stream.merge(a.as_str(), b.as_str());
    }
    c.put_records(200);
    c.partition(2, 12_000);
    c.drift(3, 1.05);
    c.run_until(150_000);
    c.crash(3);
    c.shutdown(0);
    c.run_until(200_000);
    c.restart(3);
    c.set_faults(Faults::default());
    c.put_records(100);
    c.run_until(400_000);
    println!("== {policy:?} seed {seed}");
    for line in &c.log {
        println!("{line}");
    }
    for n in 0..c.nodes() {
        println!("stats {n}: {:?}", c.worker(n).map(|w| w.stats().clone()));
    }
    for (k, v) in c.table.items() {
        println!("row {k}: {v:?}");
    }
    println!("violations: {:?}", c.violations());
    println!("undelivered: {:?}", c.undelivered());
    println!("report: {:?}", c.report());
}

fn main() {
    for seed in 1..=4 {
        run(BalancingPolicy::Coordinated, seed);
        run(BalancingPolicy::Kcl2Compatible, seed);
    }
}
