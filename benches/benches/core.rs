//! Criterion benchmarks of kcl-core: planning one view of the lease table (10,000 leases, 1,000
//! workers), and the lease-row codec.
#![allow(missing_docs)]

use core::hint::black_box;
use criterion::{criterion_group, criterion_main, Criterion};
use kcl_core::balance::{plan, PlanLease, PlanWorker};
use kcl_core::{Lease, LeaseKey, Position, SequenceNumber, WorkerId};

fn view(leases: usize, workers: usize) -> (Vec<PlanLease>, Vec<PlanWorker>) {
    // Half the fleet holds everything (a scale-up from 500 to 1,000 workers), a few leases orphaned.
    let ws: Vec<PlanWorker> = (0..workers)
        .map(|i| PlanWorker {
            id: WorkerId::from(format!("worker-{i:05}")),
            max_leases: u64::MAX,
            leaving: false,
            reads_stalled: false,
            pick_up_ms: (i as u64 * 37) % 3_300,
        })
        .collect();
    let ls = (0..leases)
        .map(|i| PlanLease {
            key: LeaseKey::from(format!("shardId-{i:012}")),
            holder: (i % 50 != 0).then(|| ws[i % (workers / 2)].id.clone()),
            counter: i as u64,
            weight: 1.0,
            in_handoff: false,
        })
        .collect();
    (ls, ws)
}

fn planning(c: &mut Criterion) {
    let (leases, workers) = view(10_000, 1_000);
    c.bench_function("plan 10k leases / 1k workers", |b| {
        b.iter(|| plan(black_box(&leases), black_box(&workers), usize::MAX, false))
    });
    c.bench_function("plan 10k leases / 1k workers, weighted", |b| {
        b.iter(|| plan(black_box(&leases), black_box(&workers), 1_000, true))
    });
}

fn codec(c: &mut Criterion) {
    let mut lease = Lease::new(
        LeaseKey::from("shardId-000000000042"),
        Position::record(
            SequenceNumber::parse("49590338271490256608559692538361571095921575989136588898")
                .unwrap_or_else(|e| panic!("{e}")),
            3,
        ),
    );
    lease.owner = Some(WorkerId::from("worker-00001"));
    lease.counter = 1234;
    lease.parent_shard_ids = vec![LeaseKey::from("shardId-000000000007")];
    let item = lease.to_item();
    c.bench_function("lease row decode", |b| {
        b.iter(|| Lease::from_item(black_box(&item)))
    });
    c.bench_function("lease row encode", |b| {
        b.iter(|| black_box(&lease).to_item())
    });
}

criterion_group!(benches, planning, codec);
criterion_main!(benches);
