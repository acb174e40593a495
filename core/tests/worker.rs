//! One worker against the in-memory table and stream, answered at once: the edges of its
//! request, processor and checkpoint handling.

use kcl_core::testkit::{MemStream, MemTable, TestRecord};
use kcl_core::{
    AttributeValue, CallId, CheckpointError, CheckpointTarget, Command, Config, Event,
    FencingToken, FetchedRecords, Input, Instant, Item, LeaseKey, Position, ProcessorCall,
    RecordPosition, RequestId, Worker, WorkerId,
};

/// A worker whose every service call is answered at once; processor calls are recorded.
struct Solo {
    w: Worker<TestRecord>,
    table: MemTable,
    stream: MemStream,
    now: u64,
    calls: Vec<(LeaseKey, CallId, ProcessorCall<TestRecord>)>,
    events: Vec<Event>,
    shard_ended_calls: usize,
    /// When each GetRecords was sent.
    fetches: Vec<u64>,
    /// Answer every GetRecords with `MillisBehindLatest` 0, as kinesalite does for open shards.
    report_caught_up: bool,
}

impl Solo {
    fn new(shards: usize, records: usize) -> Self {
        Self::with_config(Config::kcl2(), shards, records)
    }

    fn with_config(config: Config, shards: usize, records: usize) -> Self {
        let w = Worker::new(config, WorkerId::from("solo"), 1, Instant::ZERO)
            .unwrap_or_else(|e| panic!("{e}"));
        let mut stream = MemStream::new(shards);
        for i in 0..records {
            stream.put(i as u128);
        }
        let mut s = Self {
            w,
            table: MemTable::default(),
            stream,
            now: 0,
            calls: Vec::new(),
            events: Vec::new(),
            shard_ended_calls: 0,
            fetches: Vec::new(),
            report_caught_up: false,
        };
        s.pump();
        s
    }

    fn t(&self) -> Instant {
        Instant::from_millis(self.now)
    }

    /// Carries out commands until the worker is quiet.
    fn pump(&mut self) {
        loop {
            let mut inputs = Vec::new();
            while let Some(c) = self.w.poll_command() {
                match c {
                    Command::ScanLeaseTable { req, .. } => inputs.push(Input::LeaseTableScanned {
                        req,
                        result: Ok(self.table.scan()),
                    }),
                    Command::ReadLease { req, key, .. } => inputs.push(Input::LeaseRead {
                        req,
                        result: Ok(self.table.read(&key)),
                    }),
                    Command::WriteLease { req, write } => inputs.push(Input::LeaseWritten {
                        req,
                        result: self.table.write(&write),
                    }),
                    Command::ListShards { req } => inputs.push(Input::ShardsListed {
                        req,
                        result: Ok(self.stream.listing(self.now)),
                    }),
                    Command::GetShardIterator {
                        req,
                        shard,
                        position,
                    } => inputs.push(Input::IteratorObtained {
                        req,
                        result: self.stream.iterator(shard.as_str(), &position, self.now),
                    }),
                    Command::GetRecords {
                        req,
                        iterator,
                        limit,
                        ..
                    } => {
                        self.fetches.push(self.now);
                        let caught_up = self.report_caught_up;
                        let result = self.stream.get(&iterator, limit as usize, self.now).map(
                            |(records, next_iterator, millis_behind_latest, child_shards)| {
                                FetchedRecords {
                                    records: records
                                        .into_iter()
                                        .map(|r| TestRecord {
                                            position: r.position,
                                            id: r.id,
                                        })
                                        .collect(),
                                    next_iterator,
                                    millis_behind_latest: if caught_up {
                                        0
                                    } else {
                                        millis_behind_latest
                                    },
                                    child_shards,
                                }
                            },
                        );
                        inputs.push(Input::RecordsFetched { req, result });
                    }
                    Command::Processor {
                        shard,
                        call,
                        action,
                    } => {
                        self.shard_ended_calls +=
                            usize::from(matches!(action, ProcessorCall::ShardEnded { .. }));
                        self.calls.push((shard, call, action));
                    }
                    Command::Event(e) => self.events.push(e),
                    _ => {}
                }
            }
            if inputs.is_empty() {
                return;
            }
            for i in inputs {
                let t = self.t();
                self.w.handle(t, i);
            }
        }
    }

    /// Advances time through every timer up to `ms` later, answering as it goes.
    fn advance(&mut self, ms: u64) {
        let end = self.now + ms;
        while let Some((at, _)) = self.w.poll_timeout() {
            if at.as_millis() > end {
                break;
            }
            self.now = self.now.max(at.as_millis());
            let t = self.t();
            self.w.handle_timeout(t);
            self.pump();
        }
        self.now = end;
    }

    /// Returns from every pending processor call except checkpoint answers.
    fn return_all(&mut self) {
        let calls: Vec<_> = self.calls.drain(..).collect();
        for (shard, call, action) in calls {
            if !matches!(
                action,
                ProcessorCall::CheckpointDone { .. } | ProcessorCall::LeaseLost
            ) {
                let t = self.t();
                self.w.handle(t, Input::ProcessorReturned { shard, call });
            }
        }
        self.pump();
    }

    fn input(&mut self, i: Input<TestRecord>) {
        let t = self.t();
        self.w.handle(t, i);
        self.pump();
    }

    /// The last batch delivered: its shard, call, token and last position.
    fn last_batch(&self) -> Option<(LeaseKey, CallId, FencingToken, RecordPosition)> {
        self.calls.iter().rev().find_map(|(s, c, a)| match a {
            ProcessorCall::ProcessRecords { records, token, .. } => records
                .last()
                .map(|r| (s.clone(), *c, *token, r.position.clone())),
            _ => None,
        })
    }

    fn checkpoint_answers(&self) -> Vec<(u64, Result<(), CheckpointError>)> {
        self.calls
            .iter()
            .filter_map(|(_, _, a)| match a {
                ProcessorCall::CheckpointDone { ticket, result } => Some((*ticket, result.clone())),
                _ => None,
            })
            .collect()
    }

    /// Runs until a batch is being processed; returns it.
    fn until_batch(&mut self) -> (LeaseKey, CallId, FencingToken, RecordPosition) {
        for _ in 0..100 {
            if let Some(b) = self.last_batch() {
                return b;
            }
            self.return_all();
            self.advance(500);
        }
        panic!("no batch delivered; calls {:?}", self.calls);
    }
}

fn row(item: Option<&Item>, attr: &str) -> Option<AttributeValue> {
    item.and_then(|i| i.get(attr)).cloned()
}

#[test]
fn unknown_duplicate_and_wrong_kind_results_are_counted_and_ignored() {
    let mut s = Solo::new(1, 0);
    s.input(Input::LeaseWritten {
        req: RequestId(999_999),
        result: Ok(None),
    });
    assert_eq!(s.w.stats().stale_results, 1);
    assert!(
        s.w.poll_command().is_none(),
        "an unknown result causes nothing"
    );
    // The worker's first scan is answered with the wrong kind: counted, and treated as failed
    // so the next scan still happens.
    s.w.handle_timeout(Instant::ZERO);
    let req = match s.w.poll_command() {
        Some(Command::ScanLeaseTable { req, .. }) => req,
        other => panic!("expected a scan, got {other:?}"),
    };
    s.input(Input::LeaseRead {
        req,
        result: Ok(None),
    });
    assert_eq!(s.w.stats().stale_results, 2);
    // The same answer again is a duplicate.
    s.input(Input::LeaseRead {
        req,
        result: Ok(None),
    });
    assert_eq!(s.w.stats().stale_results, 3);
    // Two more scan rounds: one creates the lease by shard sync, the next takes it.
    s.advance(50_000);
    assert!(s.w.stats().scans >= 2, "scanning went on");
    assert_eq!(s.w.leases().count(), 1, "and the lease was taken");
}

#[test]
fn checkpoints_are_validated_and_two_phase() {
    let mut s = Solo::new(1, 50);
    let (shard, _, token, last) = s.until_batch();
    let before = RecordPosition {
        sequence: last.sequence.clone(),
        sub_sequence: 0,
    };
    let beyond = RecordPosition {
        sequence: last.sequence.clone(),
        sub_sequence: 1,
    };
    let ask = |ticket, target, prepare| Input::CheckpointRequested {
        shard: shard.clone(),
        ticket,
        token,
        target,
        prepare,
        state: None,
    };
    s.input(ask(1, CheckpointTarget::At(beyond), false));
    s.input(ask(2, CheckpointTarget::LastDelivered, false));
    s.input(Input::CheckpointRequested {
        shard: shard.clone(),
        ticket: 3,
        token: FencingToken(token.0 + 100),
        target: CheckpointTarget::LastDelivered,
        prepare: false,
        state: None,
    });
    s.input(Input::CommitPreparedCheckpoint {
        shard: shard.clone(),
        ticket: 4,
        token,
    });
    let answers = s.checkpoint_answers();
    assert!(
        answers.contains(&(1, Err(CheckpointError::BeyondDelivered))),
        "{answers:?}"
    );
    assert!(answers.contains(&(2, Ok(()))), "{answers:?}");
    assert!(
        answers.contains(&(3, Err(CheckpointError::LeaseLost))),
        "{answers:?}"
    );
    assert!(
        answers.contains(&(4, Err(CheckpointError::NothingPrepared))),
        "{answers:?}"
    );
    let item = s.table.peek(shard.as_str()).cloned();
    assert_eq!(
        row(item.as_ref(), "checkpoint"),
        Some(AttributeValue::S(last.sequence.as_str().into()))
    );
    // Behind the checkpoint: refused. The same checkpoint again: a no-op success.
    let older = s
        .stream
        .all_records()
        .next()
        .map(|(_, r)| r.position.clone())
        .unwrap_or(before);
    s.input(ask(5, CheckpointTarget::At(older), false));
    s.input(ask(6, CheckpointTarget::At(last), false));
    let answers = s.checkpoint_answers();
    for expected in [(5, Err(CheckpointError::Backwards)), (6, Ok(()))] {
        assert!(answers.contains(&expected), "{expected:?} in {answers:?}");
    }
    // Two-phase: prepare with state, then commit.
    for i in 0..10 {
        s.stream.put(i);
    }
    s.return_all();
    let (_, _, _, last2) = s.until_batch();
    s.input(Input::CheckpointRequested {
        shard: shard.clone(),
        ticket: 7,
        token,
        target: CheckpointTarget::At(last2.clone()),
        prepare: true,
        state: Some(b"app".to_vec()),
    });
    let prepared = s.table.peek(shard.as_str()).cloned();
    assert_eq!(
        row(prepared.as_ref(), "pendingCheckpoint"),
        Some(AttributeValue::S(last2.sequence.as_str().into()))
    );
    assert_eq!(
        row(prepared.as_ref(), "pendingCheckpointState"),
        Some(AttributeValue::B(b"app".to_vec()))
    );
    s.input(Input::CommitPreparedCheckpoint {
        shard: shard.clone(),
        ticket: 8,
        token,
    });
    let committed = s.table.peek(shard.as_str()).cloned();
    assert_eq!(
        row(committed.as_ref(), "checkpoint"),
        Some(AttributeValue::S(last2.sequence.as_str().into()))
    );
    assert_eq!(row(committed.as_ref(), "pendingCheckpoint"), None);
    assert_eq!(row(committed.as_ref(), "pendingCheckpointState"), None);
    let answers = s.checkpoint_answers();
    for expected in [(7, Ok(())), (8, Ok(()))] {
        assert!(answers.contains(&expected), "{expected:?} in {answers:?}");
    }
}

#[test]
fn malformed_rows_are_reported_and_left_alone() {
    let mut s = Solo::new(1, 0);
    let mut bad = Item::new();
    bad.insert("leaseKey".into(), AttributeValue::S("shardId-bad".into()));
    bad.insert(
        "leaseCounter".into(),
        AttributeValue::S("not a number".into()),
    );
    bad.insert(
        "checkpoint".into(),
        AttributeValue::S("TRIM_HORIZON".into()),
    );
    s.table.insert("shardId-bad", bad.clone());
    s.advance(30_000);
    assert!(s.w.stats().malformed_rows >= 1);
    assert!(s.events.iter().any(|e| matches!(e, Event::MalformedRow { key: Some(k), error } if k == "shardId-bad" && error.attribute == "leaseCounter")));
    assert_eq!(
        s.table.peek("shardId-bad"),
        Some(&bad),
        "a malformed row is never rewritten"
    );
}

#[test]
fn unknown_attributes_survive_takes_renewals_and_checkpoints() {
    let mut s = Solo::new(1, 20);
    s.advance(1_000);
    let key = s.stream.open_shards()[0].clone();
    let mut item = s.table.peek(key.as_str()).cloned().unwrap_or_default();
    item.insert("javaFutureAttribute".into(), AttributeValue::N("42".into()));
    s.table.insert(key.as_str(), item);
    let (shard, _, token, _) = s.until_batch();
    s.input(Input::CheckpointRequested {
        shard,
        ticket: 1,
        token,
        target: CheckpointTarget::LastDelivered,
        prepare: false,
        state: None,
    });
    s.return_all();
    s.advance(20_000);
    let after = s.table.peek(key.as_str());
    assert_eq!(
        row(after, "javaFutureAttribute"),
        Some(AttributeValue::N("42".into()))
    );
    assert!(s.w.stats().renewals > 0 && s.w.stats().checkpoints > 0);
}

#[test]
fn a_failing_processor_gives_the_lease_up_without_checkpointing() {
    let mut s = Solo::new(1, 50);
    let (shard, call, _, _) = s.until_batch();
    let before = s.table.peek(shard.as_str()).cloned();
    s.input(Input::ProcessorFailed {
        shard: shard.clone(),
        call,
    });
    let after = s.table.peek(shard.as_str()).cloned();
    assert_eq!(row(after.as_ref(), "leaseOwner"), None, "released");
    assert_eq!(
        row(after.as_ref(), "checkpoint"),
        row(before.as_ref(), "checkpoint"),
        "nothing checkpointed past what was acknowledged"
    );
    assert!(s.events.iter().any(|e| matches!(
        e,
        Event::LeaseReleased {
            reason: kcl_core::ReleaseReason::ProcessorFailed,
            ..
        }
    )));
    assert_eq!(s.w.leases().count(), 0);
}

#[test]
fn the_library_writes_shard_end_and_children_start_after_it() {
    let mut s = Solo::new(1, 30);
    let (shard, _, _, _) = s.until_batch();
    let (a, b) = s
        .stream
        .split(shard.as_str())
        .unwrap_or_else(|| panic!("split"));
    for _ in 0..40 {
        s.return_all();
        s.advance(1_000);
    }
    let parent = s.table.peek(shard.as_str()).cloned();
    assert_eq!(
        row(parent.as_ref(), "checkpoint"),
        Some(AttributeValue::S(Position::SHARD_END.into())),
        "{parent:?}"
    );
    for child in [a, b] {
        let c = s.table.peek(child.as_str()).cloned();
        assert!(c.is_some(), "child {child} has a lease");
        assert_eq!(
            row(c.as_ref(), "parentShardId"),
            Some(AttributeValue::Ss(vec![shard.as_str().into()]))
        );
    }
    assert_eq!(
        s.shard_ended_calls, 1,
        "the processor was told the shard ended, once"
    );
}

/// Requests without an answer fail after `request_timeout`, each exactly then; an answered
/// request never times out, and an answer after the timeout is stale.
#[test]
fn unanswered_requests_time_out_and_answered_ones_do_not() {
    let config = Config::default();
    let timeout = config.request_timeout.as_millis() as u64;
    let mut w = Worker::<TestRecord>::new(config, WorkerId::from("w"), 1, Instant::ZERO)
        .unwrap_or_else(|e| panic!("{e}"));
    // (request, sent at); the first request is answered at once, nothing else ever is.
    let mut sent: Vec<(RequestId, u64)> = Vec::new();
    let mut now = 0;
    w.handle_timeout(Instant::ZERO);
    while now <= 3 * timeout {
        while let Some(c) = w.poll_command() {
            let (Command::ReadLease { req, .. }
            | Command::WriteLease { req, .. }
            | Command::ListShards { req }
            | Command::ScanLeaseTable { req, .. }) = c
            else {
                continue;
            };
            if sent.is_empty() {
                w.handle(
                    Instant::from_millis(now),
                    Input::LeaseWritten {
                        req,
                        result: Err(kcl_core::Failure::Throttled),
                    },
                );
            }
            sent.push((req, now));
        }
        let expected = sent[1..]
            .iter()
            .filter(|&&(_, at)| at + timeout <= now)
            .count() as u64;
        assert_eq!(w.stats().request_timeouts, expected, "at {now} ms");
        match w.poll_timeout() {
            Some((at, _)) => {
                now = at.as_millis().max(now);
                w.handle_timeout(at);
            }
            None => break,
        }
    }
    // Until a heartbeat lands the worker sends nothing else (it might share its id with a
    // live process), so only heartbeats time out, one per request timeout.
    assert!(
        w.stats().request_timeouts >= 2,
        "heartbeats kept timing out"
    );
    // A late answer to a timed-out request is counted as stale and changes nothing.
    let stale = w.stats().stale_results;
    w.handle(
        Instant::from_millis(now),
        Input::LeaseWritten {
            req: sent[1].0,
            result: Ok(None),
        },
    );
    assert_eq!(w.stats().stale_results, stale + 1);
}

#[test]
fn a_full_batch_is_read_on_at_the_pace_limit_even_when_reported_caught_up() {
    let config = Config {
        max_records: 10,
        ..Config::kcl2()
    };
    let (pace, idle) = (
        config.min_fetch_interval.as_millis() as u64,
        config.idle_time_between_reads.as_millis() as u64,
    );
    assert!(pace < idle);
    // 35 records on one shard: three full batches, one of 5, then empty ones.
    let mut s = Solo::with_config(config, 1, 35);
    s.report_caught_up = true;
    for _ in 0..1000 {
        s.return_all();
        s.advance(50);
    }
    let gaps: Vec<u64> = s.fetches.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.len() >= 5, "fetches at {:?}", s.fetches);
    assert_eq!(gaps[..3], [pace, pace, pace], "fetches at {:?}", s.fetches);
    assert!(
        gaps[3..].iter().all(|g| *g >= idle),
        "fetches at {:?}",
        s.fetches
    );
}
