//! Arbitrary results, in any order, late, duplicated or of the wrong kind, records, processors
//! that return or fail at any time and checkpoint requests of every kind (with tokens right or
//! wrong) never make a worker panic or stop asking to be woken, and every checkpoint request is
//! answered at most once.
#![no_main]

use std::collections::BTreeSet;

use kcl_core::io::{CallId, CheckpointTarget, FetchedRecords, ProcessorCall};
use kcl_core::testkit::TestRecord;
use kcl_core::{
    AttributeValue, Command, Config, Failure, FencingToken, InitialPosition, Input, Instant, Item,
    LeaseKey, RecordPosition, RequestId, SequenceNumber, ServiceError, Worker, WorkerId,
};
use libfuzzer_sys::fuzz_target;

fn failure(b: u8) -> Failure {
    match b % 9 {
        0 => Failure::ConditionFailed,
        1 => Failure::Throttled,
        2 => Failure::ExpiredIterator,
        3 => Failure::NotFound,
        4 => Failure::Transient,
        5 => Failure::InvalidArgument(ServiceError::new("InvalidArgumentException", "x")),
        6 => Failure::AccessDenied(ServiceError::new("AccessDeniedException", "x")),
        7 => Failure::Service(ServiceError::new("ValidationException", "x")),
        _ => Failure::Other("x".into()),
    }
}

fn lease_item(b: u8, me: &str) -> Item {
    let mut i = Item::new();
    i.insert(
        "leaseKey".into(),
        AttributeValue::S(format!("shard-{}", b % 4).into()),
    );
    if b & 0x10 != 0 {
        i.insert("leaseOwner".into(), AttributeValue::S(me.into()));
    }
    i.insert(
        "leaseCounter".into(),
        AttributeValue::N(format!("{}", b % 7).into()),
    );
    i.insert(
        "checkpoint".into(),
        AttributeValue::S(if b & 0x20 != 0 {
            "SHARD_END".into()
        } else {
            "TRIM_HORIZON".into()
        }),
    );
    if b & 0x40 != 0 {
        i.insert("checkpoint".into(), AttributeValue::N("garbage".into()));
    }
    i
}

fn position(n: u64) -> RecordPosition {
    RecordPosition::new(SequenceNumber::parse(&format!("{}", n + 1)).expect("digits"))
}

/// Records `from..from + count` of a shard.
fn records(from: u64, count: u8) -> Vec<TestRecord> {
    (from..from + u64::from(count % 4))
        .map(|n| TestRecord {
            position: position(n),
            id: n,
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    // Both policies, both liveness settings, and both a root's `LATEST` (the default) and
    // `TRIM_HORIZON`.
    let trim_horizon = Config {
        initial_position: InitialPosition::TrimHorizon,
        ..Config::kcl2()
    };
    let lease_liveness = Config::default().with_lease_liveness();
    for policy_config in [Config::default(), lease_liveness, trim_horizon] {
        let me = "fuzz-worker";
        let Ok(mut w) =
            Worker::<TestRecord>::new(policy_config, WorkerId::from(me), 1, Instant::ZERO)
        else {
            return;
        };
        let mut now = 0u64;
        let mut pending: Vec<(RequestId, u8)> = Vec::new();
        // Processor calls not returned yet, the shards' tokens, answered tickets.
        let mut calls: Vec<(LeaseKey, CallId)> = Vec::new();
        let mut tokens: Vec<(LeaseKey, FencingToken)> = Vec::new();
        let mut answered: BTreeSet<u64> = BTreeSet::new();
        let mut next_record = 0u64;
        let mut ticket = 0u64;
        for chunk in data.chunks(3) {
            while let Some(c) = w.poll_command() {
                if let Command::Processor {
                    shard,
                    call,
                    action,
                } = &c
                {
                    match action {
                        ProcessorCall::CheckpointDone { ticket, .. } => {
                            assert!(answered.insert(*ticket), "ticket {ticket} answered twice");
                        }
                        ProcessorCall::Initialize { token, .. }
                        | ProcessorCall::ProcessRecords { token, .. } => {
                            tokens.push((shard.clone(), *token));
                            calls.push((shard.clone(), *call));
                        }
                        ProcessorCall::ShardEnded { .. }
                        | ProcessorCall::ShutdownRequested { .. } => {
                            calls.push((shard.clone(), *call));
                        }
                        _ => {}
                    }
                }
                let kind = match &c {
                    Command::ScanLeaseTable { req, .. } => Some((*req, 0)),
                    Command::ReadLease { req, .. } => Some((*req, 1)),
                    Command::WriteLease { req, .. } => Some((*req, 2)),
                    Command::ListShards { req } => Some((*req, 3)),
                    Command::GetShardIterator { req, .. } => Some((*req, 4)),
                    Command::GetRecords { req, .. } => Some((*req, 5)),
                    _ => None,
                };
                pending.extend(kind);
            }
            assert!(
                w.is_stopped() || w.poll_timeout().is_some(),
                "a running worker always has a deadline"
            );
            let [op, a, b] = *chunk else { break };
            now += u64::from(a) * 37;
            let t = Instant::from_millis(now);
            match op % 8 {
                0 => w.handle_timeout(t),
                5 if !calls.is_empty() => {
                    let (shard, call) = calls.remove(usize::from(a) % calls.len());
                    w.handle(
                        t,
                        if b % 16 == 0 {
                            Input::ProcessorFailed { shard, call }
                        } else {
                            Input::ProcessorReturned { shard, call }
                        },
                    );
                }
                6 | 7 if !tokens.is_empty() => {
                    let (shard, token) = tokens[usize::from(a) % tokens.len()].clone();
                    let token = if b % 8 == 0 {
                        FencingToken(token.0 + 1)
                    } else {
                        token
                    };
                    ticket += 1;
                    let target = match b % 3 {
                        0 => CheckpointTarget::LastDelivered,
                        _ => CheckpointTarget::At(position(u64::from(b) % (next_record + 1))),
                    };
                    w.handle(
                        t,
                        if op % 8 == 7 && b % 2 == 0 {
                            Input::CommitPreparedCheckpoint {
                                shard,
                                ticket,
                                token,
                            }
                        } else {
                            Input::CheckpointRequested {
                                shard,
                                ticket,
                                token,
                                target,
                                prepare: op % 8 == 7,
                                state: (b % 4 == 1).then(|| vec![b]),
                            }
                        },
                    );
                }
                1 | 2 if !pending.is_empty() => {
                    let (req, kind) = pending.remove(usize::from(a) % pending.len());
                    let ok = op % 8 == 1;
                    let input = match kind {
                        0 => Input::LeaseTableScanned {
                            req,
                            result: if ok {
                                Ok((0..b % 5)
                                    .map(|i| lease_item(b.wrapping_add(i), me))
                                    .collect())
                            } else {
                                Err(failure(b))
                            },
                        },
                        1 => Input::LeaseRead {
                            req,
                            result: if ok {
                                Ok((b & 1 == 0).then(|| lease_item(b, me)))
                            } else {
                                Err(failure(b))
                            },
                        },
                        2 => Input::LeaseWritten {
                            req,
                            result: if ok {
                                Ok((b & 1 == 0).then(|| lease_item(b, me)))
                            } else {
                                Err(failure(b))
                            },
                        },
                        3 => Input::ShardsListed {
                            req,
                            result: Err(failure(b)),
                        },
                        4 => Input::IteratorObtained {
                            req,
                            result: if ok { Ok("it".into()) } else { Err(failure(b)) },
                        },
                        _ => Input::RecordsFetched {
                            req,
                            result: if ok {
                                let batch = records(next_record, b);
                                next_record += batch.len() as u64;
                                Ok(FetchedRecords {
                                    records: batch,
                                    next_iterator: (b % 32 != 31).then(|| "it".into()),
                                    millis_behind_latest: u64::from(b),
                                    child_shards: Vec::new(),
                                })
                            } else {
                                Err(failure(b))
                            },
                        },
                    };
                    w.handle(t, input);
                }
                3 => w.handle(
                    t,
                    Input::LeaseWritten {
                        req: RequestId(u64::from(a) << 8 | u64::from(b)),
                        result: Err(failure(b)),
                    },
                ),
                _ => {
                    if b == 0 {
                        w.handle(t, Input::ShutdownRequested);
                    } else {
                        w.handle_timeout(t);
                    }
                }
            }
        }
    }
});
