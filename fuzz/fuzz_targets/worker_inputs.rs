//! Arbitrary results, in any order, late, duplicated or of the wrong kind, never make a worker
//! panic or stop asking to be woken.
#![no_main]

use kcl_core::testkit::TestRecord;
use kcl_core::{
    AttributeValue, Command, Config, Failure, Input, Instant, Item, RequestId, Worker, WorkerId,
};
use libfuzzer_sys::fuzz_target;

fn failure(b: u8) -> Failure {
    match b % 6 {
        0 => Failure::ConditionFailed,
        1 => Failure::Throttled,
        2 => Failure::ExpiredIterator,
        3 => Failure::NotFound,
        4 => Failure::Transient,
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

fuzz_target!(|data: &[u8]| {
    for policy_config in [Config::default(), Config::kcl2()] {
        let me = "fuzz-worker";
        let Ok(mut w) =
            Worker::<TestRecord>::new(policy_config, WorkerId::from(me), 1, Instant::ZERO)
        else {
            return;
        };
        let mut now = 0u64;
        let mut pending: Vec<(RequestId, u8)> = Vec::new();
        for chunk in data.chunks(3) {
            while let Some(c) = w.poll_command() {
                let kind = match &c {
                    Command::ScanLeaseTable { req } => Some((*req, 0)),
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
            match op % 5 {
                0 => w.handle_timeout(t),
                1 | 2 if !pending.is_empty() => {
                    let (req, kind) = pending.remove(usize::from(a) % pending.len());
                    let ok = op % 5 == 1;
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
                            result: Err(failure(b)),
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
