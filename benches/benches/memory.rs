//! Core memory per lease, measured with a counting allocator (not estimated):
//! - a leader that has scanned a table of 10,000 leases and 1,000 worker rows and planned;
//! - a follower holding 1,000 leases, each with an initialized processor, a shard iterator and
//!   a GetRecords call in flight.
//!
//! Run: `cargo bench -p kcl-benches --bench memory`. Target: under 512 bytes per lease.
#![allow(missing_docs)]

use kcl_core::lease::LEADER_KEY;
use kcl_core::testkit::TestRecord;
use kcl_core::write::WriteKind;
use kcl_core::{
    AttributeValue, Command, Config, Failure, Input, Instant, Item, Lease, LeaseKey, Position,
    ProcessorCall, Worker, WorkerId,
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
        AttributeValue::S(format!("kcl-rs:worker:worker-{i:05}").into()),
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
            Command::ScanLeaseTable { req, .. } => Some(Input::LeaseTableScanned {
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

    // A follower (default policy) that is assigned 1,000 leases through its heartbeat row,
    // acquires them, initializes every processor and has a GetRecords call in flight on each:
    // the steady state of a worker consuming its shards. The leases table view belongs to the
    // leader, so what is live here is what holding a lease costs.
    let n = 1_000usize;
    let region = Region::new(GLOBAL);
    let mut w = Worker::<TestRecord>::new(
        Config::default(),
        WorkerId::from("holder"),
        1,
        Instant::ZERO,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // Notes as the leader writes them: each assignment left the counter at 1.
    let mut assignments: Vec<String> = (0..n).map(|i| format!("shardId-{i:012}@1")).collect();
    let (mut acquired, mut fetching) = (0, 0);
    // Kinesis shard iterators are opaque strings of roughly this length.
    let iterator = "AAAAAAAAAAF".repeat(20);
    let mut answer = |c: Command<TestRecord>| -> Option<Input<TestRecord>> {
        match c {
            Command::ReadLease { req, key, .. } if key == LEADER_KEY => {
                let mut it = Item::new();
                it.insert("leaseKey".into(), AttributeValue::S(key.into()));
                it.insert(
                    "entityType".into(),
                    AttributeValue::S("KCL_RS_LEADER".into()),
                );
                it.insert("leaseOwner".into(), AttributeValue::S("leader".into()));
                it.insert("leaseCounter".into(), AttributeValue::number(1));
                Some(Input::LeaseRead {
                    req,
                    result: Ok(Some(it)),
                })
            }
            Command::WriteLease { req, write } => match write.kind {
                WriteKind::WorkerHeartbeat => {
                    let mut it = worker_item(0);
                    it.insert(
                        "leaseKey".into(),
                        AttributeValue::S("kcl-rs:worker:holder".into()),
                    );
                    if !assignments.is_empty() {
                        it.insert(
                            "assignedLeases".into(),
                            AttributeValue::Ss(core::mem::take(&mut assignments)),
                        );
                    }
                    Some(Input::LeaseWritten {
                        req,
                        result: Ok(Some(it)),
                    })
                }
                WriteKind::Acquire => {
                    let i = write
                        .key
                        .trim_start_matches("shardId-")
                        .parse::<usize>()
                        .ok()?;
                    let mut item = lease_item(i, Some("holder"));
                    item.insert("leaseCounter".into(), AttributeValue::number(2));
                    acquired += 1;
                    Some(Input::LeaseWritten {
                        req,
                        result: Ok(Some(item)),
                    })
                }
                _ => Some(Input::LeaseWritten {
                    req,
                    result: Err(Failure::ConditionFailed),
                }),
            },
            Command::Processor {
                shard,
                call,
                action: ProcessorCall::Initialize { .. },
            } => Some(Input::ProcessorReturned { shard, call }),
            Command::GetShardIterator { req, .. } => Some(Input::IteratorObtained {
                req,
                result: Ok(iterator.as_str().into()),
            }),
            Command::GetRecords { .. } => {
                fetching += 1;
                None
            }
            _ => None,
        }
    };
    // Until the second heartbeat, which acknowledges the assignments.
    let mut t = 0;
    while t < 2_500 {
        drain(&mut w, t, &mut answer);
        match w.poll_timeout() {
            Some((at, _)) if at.as_millis() < 2_500 => {
                t = at.as_millis().max(t);
                w.handle_timeout(at);
            }
            _ => break,
        }
    }
    drain(&mut w, t, &mut answer);
    let held = w.leases().count();
    let bytes = live_bytes(&region);
    assert_eq!(
        (acquired, held),
        (n, n),
        "every assigned lease must have been acquired and held"
    );
    assert_eq!(
        fetching, n,
        "every consumer must have a GetRecords call in flight"
    );
    println!(
        "follower holding {held} running leases: {bytes} bytes of core memory, {} bytes per held lease",
        bytes / held.max(1) as i64
    );
}
