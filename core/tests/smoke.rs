//! A smoke run of both policies through the cluster harness.
use kcl_core::testkit::{Cluster, ClusterConfig};
use kcl_core::{BalancingPolicy, Config};

fn run(policy: BalancingPolicy) {
    let config = match policy {
        BalancingPolicy::Coordinated => Config::default(),
        BalancingPolicy::Kcl2Compatible => Config::kcl2(),
    };
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
