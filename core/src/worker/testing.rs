//! A worker on an in-memory table, for the worker's own unit tests: every request is answered at
//! once (writes by [`crate::write::apply`]), every processor call returns at once, and every
//! command is logged.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use super::Worker;
use crate::config::Config;
use crate::io::{BasicRecord, Command, FetchedRecords, Input, ProcessorCall, ShardDescription};
use crate::item::{Item, Text};
use crate::lease::{Lease, LeaseKey, WorkerId};
use crate::time::Instant;
use crate::write::{apply, LeaseWrite, WriteKind};

pub(crate) struct Harness {
    pub(crate) w: Worker<BasicRecord>,
    pub(crate) now: Instant,
    pub(crate) table: BTreeMap<String, Item>,
    pub(crate) shards: Vec<ShardDescription>,
    /// Every command issued, in order.
    pub(crate) log: Vec<Command<BasicRecord>>,
    /// Requests are logged but left unanswered (a partition).
    pub(crate) cut_off: bool,
    /// Writes of this kind land, but their answer is a timeout (the outcome is unknown).
    pub(crate) unknown_outcome: Option<WriteKind>,
    /// The next write of this kind is throttled (it does not land).
    pub(crate) throttled: Option<WriteKind>,
    /// Processor calls never return.
    pub(crate) processor_hangs: bool,
    /// Records the next GetRecords returns (then none).
    pub(crate) records: Vec<BasicRecord>,
    /// GetRecords answers the end of a closed shard (with no children).
    pub(crate) shard_closed: bool,
    /// GetShardIterator answers this failure.
    pub(crate) iterator_failure: Option<crate::io::Failure>,
    /// GetRecords answers this failure.
    pub(crate) records_failure: Option<crate::io::Failure>,
    /// Kinesis calls (listings, iterators, records) get no answer: they fail as timed out.
    pub(crate) kinesis_cut_off: bool,
}

impl Harness {
    pub(crate) fn new(config: Config, id: &str) -> Self {
        let mut h = Self {
            w: Worker::new(config, WorkerId::from(id), 7, Instant::ZERO).expect("valid"),
            now: Instant::ZERO,
            table: BTreeMap::new(),
            shards: Vec::new(),
            log: Vec::new(),
            cut_off: false,
            unknown_outcome: None,
            throttled: None,
            processor_hangs: false,
            records: Vec::new(),
            shard_closed: false,
            iterator_failure: None,
            records_failure: None,
            kinesis_cut_off: false,
        };
        h.pump();
        h
    }

    /// A lease row in the table.
    pub(crate) fn put(&mut self, lease: &Lease) {
        self.table
            .insert(String::from(lease.key.as_str()), lease.to_item());
    }

    pub(crate) fn lease(&self, key: &str) -> Option<Lease> {
        self.table.get(key).and_then(|i| Lease::from_item(i).ok())
    }

    pub(crate) fn handle(&mut self, input: Input<BasicRecord>) {
        self.w.handle(self.now, input);
        self.pump();
    }

    /// Carries out every command, answering each at once.
    pub(crate) fn pump(&mut self) {
        while let Some(command) = self.w.poll_command() {
            self.log.push(command.clone());
            if let Some(input) = self.answer(command) {
                self.w.handle(self.now, input);
            }
        }
    }

    /// Runs the worker's timers until `ms`.
    pub(crate) fn run_until(&mut self, ms: u64) {
        let end = Instant::from_millis(ms);
        loop {
            self.pump();
            match self.w.poll_timeout() {
                Some((at, _)) if at <= end => {
                    if at > self.now {
                        self.now = at;
                    }
                    self.w.handle_timeout(self.now);
                }
                _ => break,
            }
        }
        self.now = end;
    }

    fn answer(&mut self, command: Command<BasicRecord>) -> Option<Input<BasicRecord>> {
        if self.cut_off && command.request().is_some() {
            return None;
        }
        if self.processor_hangs && matches!(command, Command::Processor { .. }) {
            return None;
        }
        if self.kinesis_cut_off {
            use crate::io::Failure::Transient;
            match command {
                Command::ListShards { req } => {
                    return Some(Input::ShardsListed {
                        req,
                        result: Err(Transient),
                    })
                }
                Command::GetShardIterator { req, .. } => {
                    return Some(Input::IteratorObtained {
                        req,
                        result: Err(Transient),
                    })
                }
                Command::GetRecords { req, .. } => {
                    return Some(Input::RecordsFetched {
                        req,
                        result: Err(Transient),
                    })
                }
                _ => {}
            }
        }
        Some(match command {
            Command::ScanLeaseTable { req, .. } => Input::LeaseTableScanned {
                req,
                result: Ok(self.table.values().cloned().collect()),
            },
            Command::ReadLease { req, key, .. } => Input::LeaseRead {
                req,
                result: Ok(self.table.get(&key).cloned()),
            },
            Command::WriteLease { req, write } => Input::LeaseWritten {
                req,
                result: self.write(&write),
            },
            Command::ListShards { req } => Input::ShardsListed {
                req,
                result: Ok(crate::io::ShardListing {
                    shards: self.shards.clone(),
                    listed_at: crate::time::WallTime::from_unix_millis(self.now.as_millis()),
                }),
            },
            Command::GetShardIterator { req, .. } => Input::IteratorObtained {
                req,
                result: match &self.iterator_failure {
                    Some(f) => Err(f.clone()),
                    None => Ok(Text::new("iterator")),
                },
            },
            Command::GetRecords { req, .. } => Input::RecordsFetched {
                req,
                result: match &self.records_failure {
                    Some(f) => Err(f.clone()),
                    None => Ok(FetchedRecords {
                        records: core::mem::take(&mut self.records),
                        next_iterator: (!self.shard_closed).then(|| Text::new("iterator")),
                        millis_behind_latest: 0,
                        child_shards: Vec::new(),
                    }),
                },
            },
            Command::Processor {
                shard,
                call,
                action,
            } if awaits_return(&action) => Input::ProcessorReturned { shard, call },
            Command::Processor { .. } | Command::Event(_) => return None,
        })
    }

    /// Applies `write` to the table and answers it as the table would.
    pub(crate) fn write(&mut self, write: &LeaseWrite) -> Result<Option<Item>, crate::io::Failure> {
        if self.throttled == Some(write.kind) {
            self.throttled = None;
            return Err(crate::io::Failure::Throttled);
        }
        let after = apply(self.table.get(&write.key), write)
            .map_err(|_| crate::io::Failure::ConditionFailed)?;
        match &after {
            Some(item) => self.table.insert(write.key.clone(), item.clone()),
            None => self.table.remove(&write.key),
        };
        if self.unknown_outcome == Some(write.kind) {
            self.unknown_outcome = None;
            return Err(crate::io::Failure::Transient);
        }
        Ok(if write.return_item { after } else { None })
    }

    /// The events so far, in order.
    pub(crate) fn events(&self) -> Vec<&crate::io::Event> {
        self.log
            .iter()
            .filter_map(|c| match c {
                Command::Event(e) => Some(e),
                _ => None,
            })
            .collect()
    }

    /// The row `op` leaves in the table, written as another worker would.
    pub(crate) fn apply(&mut self, op: &crate::protocol::LeaseOp) {
        let write = op.to_write();
        if let Ok(after) = apply(self.table.get(&write.key), &write) {
            match after {
                Some(item) => self.table.insert(write.key.clone(), item),
                None => self.table.remove(&write.key),
            };
        }
    }

    /// The writes of one kind issued so far, in order.
    pub(crate) fn writes(&self, kind: WriteKind) -> Vec<&LeaseWrite> {
        self.log
            .iter()
            .filter_map(|c| match c {
                Command::WriteLease { write, .. } if write.kind == kind => Some(write),
                _ => None,
            })
            .collect()
    }

    /// The processor calls issued so far for `shard`, in order.
    pub(crate) fn calls(&self, shard: &str) -> Vec<&ProcessorCall<BasicRecord>> {
        self.log
            .iter()
            .filter_map(|c| match c {
                Command::Processor {
                    shard: s, action, ..
                } if s.as_str() == shard => Some(action),
                _ => None,
            })
            .collect()
    }

    /// The last call of the processor of `shard` that has not returned (with `processor_hangs`).
    pub(crate) fn call_in_flight(&self, shard: &str) -> Option<crate::io::CallId> {
        self.log.iter().rev().find_map(|c| match c {
            Command::Processor {
                shard: s,
                call,
                action,
            } if s.as_str() == shard && awaits_return(action) => Some(*call),
            _ => None,
        })
    }

    /// The answers to checkpoint requests so far, in order.
    pub(crate) fn checkpoint_answers(&self) -> Vec<(u64, Result<(), crate::io::CheckpointError>)> {
        self.log
            .iter()
            .filter_map(|c| match c {
                Command::Processor {
                    action: ProcessorCall::CheckpointDone { ticket, result },
                    ..
                } => Some((*ticket, result.clone())),
                _ => None,
            })
            .collect()
    }

    pub(crate) fn holds(&self, key: &str) -> bool {
        self.w.held_leases().any(|l| l.key.as_str() == key)
    }
}

/// Whether the driver answers `action` with the processor's return.
fn awaits_return(action: &ProcessorCall<BasicRecord>) -> bool {
    matches!(
        action,
        ProcessorCall::Initialize { .. }
            | ProcessorCall::ProcessRecords { .. }
            | ProcessorCall::ShardEnded { .. }
            | ProcessorCall::ShutdownRequested { .. }
    )
}

/// A record at sequence number `n`.
pub(crate) fn record(n: u64) -> BasicRecord {
    BasicRecord {
        position: at(n),
        partition_key: String::from("k"),
        data: alloc::vec![0; 10],
    }
}

/// The position of the record at sequence number `n`.
pub(crate) fn at(n: u64) -> crate::sequence::RecordPosition {
    crate::sequence::RecordPosition::new(
        crate::sequence::SequenceNumber::parse(&alloc::format!("{n}")).expect("digits"),
    )
}

/// An unowned lease at `TRIM_HORIZON`.
pub(crate) fn unowned(key: &str) -> Lease {
    Lease::new(LeaseKey::from(key), crate::sequence::Position::TrimHorizon)
}

/// A lease owned by `owner` at `counter`.
pub(crate) fn owned(key: &str, owner: &str, counter: u64) -> Lease {
    let mut lease = unowned(key);
    lease.owner = Some(WorkerId::from(owner));
    lease.counter = counter;
    lease
}
