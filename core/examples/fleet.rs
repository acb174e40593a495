//! The main job until the simulator exists: a fleet of kcl-core workers on the in-memory table
//! and stream, through a scale-up, a crash, a process pause and a split, with every invariant
//! checked. Run: `cargo run --release -p kcl-core --example fleet --features testkit [SEED]`.

use kcl_core::testkit::{harness_config, Cluster, ClusterConfig};
use kcl_core::BalancingPolicy;

fn main() {
    let seed: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(42);
    println!("SEED={seed}");
    for policy in [
        BalancingPolicy::Coordinated,
        BalancingPolicy::Kcl2Compatible,
    ] {
        let config = harness_config(policy);
        let mut c = Cluster::new(ClusterConfig {
            workers: 10,
            shards: 100,
            config,
            seed,
            ..ClusterConfig::default()
        });
        c.put_records(5_000);
        c.run_until(120_000);
        let before: Vec<usize> = c.loads().into_iter().map(|(_, l)| l).collect();
        c.mark();
        for _ in 0..10 {
            c.add_worker();
        }
        let start = c.now_ms();
        let mut converged = None;
        for step in 1..=120u64 {
            c.run_until(start + step * 1_000);
            if converged.is_none() && c.balanced_within(1) {
                converged = Some(step);
            }
        }
        let moves = c.report().clone();
        let mut expected = before.clone();
        expected.extend(core::iter::repeat_n(0, 10));
        c.crash(0);
        c.pause(3, 15_000);
        let open = c.stream.open_shards();
        if let Some(s) = open.first() {
            c.stream.split(s.as_str());
        }
        c.put_records(5_000);
        c.run_until(start + 600_000);
        let loads: Vec<usize> = c.loads().into_iter().map(|(_, l)| l).collect();
        let units = c.table.counts;
        let hours = c.now_ms() as f64 / 3_600_000.0;
        let shard_hours = hours * 100.0;
        println!(
            "{policy:?}: scale-up 10 -> 20 workers on 100 shards balanced after {} with {} lease moves (minimum {}); after crash, pause and split: loads min {} max {}, violations {}, undelivered {}; DynamoDB {:.1} read + {:.1} write units per shard-hour",
            converged.map_or("more than 120 s".into(), |s| format!("{s} s")),
            moves.acquisitions,
            kcl_core::balance::min_moves(&expected),
            loads.iter().min().unwrap_or(&0),
            loads.iter().max().unwrap_or(&0),
            c.violations().len(),
            c.undelivered().len(),
            units.read_half_units as f64 / 2.0 / shard_hours,
            units.write_units as f64 / shard_hours,
        );
        if !c.violations().is_empty() {
            println!("first violation: {:?}\nreplay: cargo run --release -p kcl-core --example fleet --features testkit {seed}", c.violations()[0]);
            std::process::exit(1);
        }
    }
}
