//! A smoke run of both policies through the cluster harness.
use kcl_core::testkit::{harness_config, Cluster, ClusterConfig};
use kcl_core::BalancingPolicy;

fn run(policy: BalancingPolicy) {
    let config = harness_config(policy);
    let mut c = Cluster::new(ClusterConfig {
        workers: 3,
        shards: 8,
        config,
        seed: 5,
        ..ClusterConfig::default()
    });
    c.put_records(500);
    c.run_until(120_000);
    c.put_records(500);
    c.run_until(240_000);
    eprintln!(
        "{:?} loads {:?} unheld {:?} report {:?}",
        policy,
        c.loads(),
        c.unheld_leases(),
        c.report()
    );
    for w in 0..c.nodes() {
        eprintln!("{:?}", c.worker(w).map(|w| w.stats().clone()));
    }
    assert!(
        c.violations().is_empty(),
        "{:?}",
        &c.violations()[..c.violations().len().min(5)]
    );
    assert!(
        c.undelivered().is_empty(),
        "undelivered {}",
        c.undelivered().len()
    );
    assert!(c.balanced_within(1));
}

#[test]
fn coordinated_smoke() {
    run(BalancingPolicy::Coordinated);
}

#[test]
fn kcl2_smoke() {
    run(BalancingPolicy::Kcl2Compatible);
}

/// A second process started with a live worker's id (`Coordinated`): it must not deliver
/// anything, and it must stop, saying why, while the first goes on.
#[test]
fn a_second_process_with_a_live_worker_id_stops_and_delivers_nothing() {
    for seed in 1..=4 {
        let mut c = Cluster::new(ClusterConfig {
            workers: 3,
            shards: 8,
            config: harness_config(BalancingPolicy::Coordinated),
            seed,
            ..ClusterConfig::default()
        });
        c.put_records(300);
        c.run_until(60_000);
        let twin = c.add_twin(1);
        c.put_records(300);
        c.run_until(80_000);
        // Leases move: some are assigned to the shared id.
        c.crash(2);
        c.run_until(120_000);
        c.restart(2);
        c.put_records(300);
        c.run_until(240_000);
        assert!(
            c.violations().is_empty(),
            "seed {seed}: {:?}",
            &c.violations()[..c.violations().len().min(3)]
        );
        let twin = c.worker(twin).expect("the twin's worker");
        assert_eq!(twin.stats().duplicate_worker_id, 1, "seed {seed}");
        assert!(twin.is_stopped(), "seed {seed}");
        assert_eq!(twin.stats().leases_acquired, 0, "seed {seed}");
        let first = c.worker(1).expect("the first process");
        assert!(!first.is_stopped() && first.stats().duplicate_worker_id == 0);
        assert!(c.undelivered().is_empty(), "seed {seed}");
    }
}
