//! Core memory per lease, measured with a counting allocator (not estimated):
//! - a leader that has scanned a table of 10,000 leases and 1,000 worker rows and planned;
//! - a worker holding 1,000 leases.
//!
//! Run: `cargo bench -p kcl-benches --bench memory`. Target: under 512 bytes per lease.
#![allow(missing_docs)]

use kcl_core::testkit::TestRecord;
use kcl_core::{
    AttributeValue, Command, Config, Input, Instant, Item, Lease, LeaseKey, Position, Worker,
    WorkerId,
};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn lease_item(i: usize, owner: Option<&str>) -> Item {
    let mut l = Lease::new(
        LeaseKey::from(format!("shardId-{i:012}")),
        Position::TrimHorizon,
    );
    l.owner = owner.map(WorkerId::from);
    l.counter = 1;
    l.to_item()
}

fn worker_item(i: usize) -> Item {
    let mut it = Item::new();
    it.insert(
        "leaseKey".into(),
        AttributeValue::S(format!("kcl-rs:worker:worker-{i:05}")),
    );
    it.insert(
        "entityType".into(),
        AttributeValue::S("KCL_RS_WORKER".into()),
    );
    it.insert("leaseCounter".into(), AttributeValue::number(1));
    it
}

/// Answers requests with `answer` until the worker has nothing more to say; other commands are
/// dropped.
fn drain(
    w: &mut Worker<TestRecord>,
    t: u64,
    answer: &mut dyn FnMut(Command<TestRecord>) -> Option<Input<TestRecord>>,
) {
    loop {
        let mut inputs = Vec::new();
        while let Some(c) = w.poll_command() {
            inputs.extend(answer(c));
        }
        if inputs.is_empty() {
            return;
        }
        for i in inputs {
            w.handle(Instant::from_millis(t), i);
        }
    }
}

fn live_bytes(r: &Region<'_, System>) -> i64 {
    let s = r.change();
    s.bytes_allocated as i64 - s.bytes_deallocated as i64 + s.bytes_reallocated as i64
}

fn main() {
    // A leader scanning 10,000 leases held by 1,000 other workers.
    let (leases, workers) = (10_000usize, 1_000usize);
    let region = Region::new(GLOBAL);
    let mut w = Worker::<TestRecord>::new(
        Config::default(),
        WorkerId::from("leader"),
        1,
        Instant::ZERO,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut items: Vec<Item> = (0..leases)
        .map(|i| lease_item(i, Some(&format!("worker-{:05}", i % workers))))
        .collect();
    items.extend((0..workers).map(worker_item));
    // Drive the worker until it is leader and has scanned: the leader row is absent, every write
    // succeeds, the scan returns the table.
    let mut t = 0;
    while w.stats().scans == 0 && t < 60_000 {
        drain(&mut w, t, &mut |c| match c {
            Command::ReadLease { req, .. } => Some(Input::LeaseRead {
                req,
                result: Ok(None),
            }),
            Command::WriteLease { req, .. } => Some(Input::LeaseWritten {
                req,
                result: Ok(None),
            }),
            Command::ScanLeaseTable { req } => Some(Input::LeaseTableScanned {
                req,
                result: Ok(core::mem::take(&mut items)),
            }),
            _ => None,
        });
        match w.poll_timeout() {
            Some((at, _)) => {
                t = at.as_millis().max(t);
                w.handle_timeout(at);
            }
            None => break,
        }
    }
    // The scanned items were consumed and freed: what is still live belongs to the worker.
    let leader = live_bytes(&region);
    assert_eq!(
        w.stats().scans,
        1,
        "the worker must have become leader and scanned"
    );
    println!("leader after scanning {leases} leases and {workers} workers: {} bytes of core memory, {} bytes per lease", leader, leader / leases as i64);
    drop(w);

    // A Kcl2Compatible worker that takes and holds 1,000 leases.
    let n = 1_000usize;
    let region = Region::new(GLOBAL);
    let mut w =
        Worker::<TestRecord>::new(Config::kcl2(), WorkerId::from("holder"), 1, Instant::ZERO)
            .unwrap_or_else(|e| panic!("{e}"));
    let mut table: Vec<Item> = (0..n).map(|i| lease_item(i, None)).collect();
    // The scan (due at once) shows 1,000 unowned leases; every take succeeds and returns the row.
    w.handle_timeout(Instant::ZERO);
    let mut taken = 0;
    drain(&mut w, 1, &mut |c| match c {
        Command::ScanLeaseTable { req } => Some(Input::LeaseTableScanned {
            req,
            result: Ok(core::mem::take(&mut table)),
        }),
        Command::WriteLease { req, write } if write.kind == kcl_core::write::WriteKind::Take => {
            let i = write
                .key
                .trim_start_matches("shardId-")
                .parse::<usize>()
                .ok()?;
            let mut item = lease_item(i, Some("holder"));
            item.insert("leaseCounter".into(), AttributeValue::number(2));
            taken += 1;
            Some(Input::LeaseWritten {
                req,
                result: Ok(Some(item)),
            })
        }
        _ => None,
    });
    let held = w.leases().count();
    let bytes = live_bytes(&region);
    assert_eq!(
        (taken, held),
        (n, n),
        "every lease must have been taken and held"
    );
    println!(
        "worker holding {held} leases: {bytes} bytes of core memory, {} bytes per held lease",
        bytes / held.max(1) as i64
    );
}
