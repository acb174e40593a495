//! The services' side of a call: a command applied to the DynamoDB and Kinesis models, with the
//! injected throttling and errors, and the answer it makes.

use super::*;
use kcl_core::write::WriteKind;
use kcl_core::{ShardListing, WallTime};

/// What a service made of a call.
pub(super) enum Served {
    Reply(Input<SimRecord>),
    /// A scan (consistent or not): its pages follow.
    Scan(RequestId, bool),
    Nothing,
}

pub(super) fn transient<T>() -> Result<T, Failure> {
    Err(Failure::Transient)
}

pub(super) fn service_of(cmd: &Command<SimRecord>) -> Service {
    match cmd {
        Command::ListShards { .. }
        | Command::GetShardIterator { .. }
        | Command::GetRecords { .. } => Service::Kinesis,
        _ => Service::Dynamo,
    }
}

impl Fleet {
    /// A call arrives at its service: injected throttling and errors, then the model.
    /// `inc` is the sending process's incarnation: a write it sent may land after it crashed and
    /// its machine restarted the worker under a fresh id, and is still its own.
    pub(super) fn serve_command(
        &mut self,
        node: NodeId,
        inc: u64,
        cmd: Command<SimRecord>,
    ) -> Served {
        let service = service_of(&cmd);
        let faults = self.service_faults[service as usize];
        if self.rng.below(1000) < faults.throttle_per_mille {
            return cmd
                .failed(Failure::Throttled)
                .map_or(Served::Nothing, Served::Reply);
        }
        let error = self.rng.below(1000) < faults.error_per_mille;
        let now = self.now;
        let input = match cmd {
            Command::ScanLeaseTable { req, consistent } if !error => {
                return Served::Scan(req, consistent)
            }
            Command::ScanLeaseTable { req, .. } => Input::LeaseTableScanned {
                req,
                result: transient(),
            },
            Command::ReadLease {
                req,
                key,
                consistent,
            } => Input::LeaseRead {
                req,
                result: if error {
                    transient()
                } else {
                    Ok(self.dynamo.get(now, &key, consistent, &mut self.rng))
                },
            },
            Command::WriteLease { req, write } => {
                // A 5xx on a write leaves its outcome unknown: half of them landed.
                let lands = !error || self.rng.below(2) == 0;
                let result = if lands {
                    self.table_write(node, inc, &write)
                } else {
                    transient()
                };
                Input::LeaseWritten {
                    req,
                    result: if error { transient() } else { result },
                }
            }
            Command::ListShards { req } => Input::ShardsListed {
                req,
                result: if error {
                    transient()
                } else {
                    Ok(ShardListing {
                        shards: self.kinesis.list_shards(),
                        listed_at: self.wall_clock(node),
                    })
                },
            },
            Command::GetShardIterator {
                req,
                shard,
                position,
            } => Input::IteratorObtained {
                req,
                result: if error {
                    transient()
                } else {
                    self.kinesis
                        .get_shard_iterator(now, shard.as_str(), &position)
                },
            },
            Command::GetRecords {
                req,
                iterator,
                limit,
                ..
            } => Input::RecordsFetched {
                req,
                result: if error {
                    transient()
                } else {
                    self.kinesis
                        .get_records(now, &iterator, limit as usize)
                        .map(|o| FetchedRecords {
                            records: o.records,
                            next_iterator: o.next_iterator,
                            millis_behind_latest: o.millis_behind_latest,
                            child_shards: o.child_shards,
                        })
                },
            },
            _ => return Served::Nothing,
        };
        Served::Reply(input)
    }

    pub(super) fn table_write(
        &mut self,
        node: NodeId,
        inc: u64,
        write: &kcl_core::write::LeaseWrite,
    ) -> Result<Option<Item>, Failure> {
        let check = touches_checkpoint(write);
        // Rows are shared: keeping the one before the write costs a reference count.
        let before = if check {
            self.dynamo.peek(&write.key).cloned()
        } else {
            None
        };
        let result = self.dynamo.write(self.now, write);
        if result.is_ok() {
            self.checker
                .failover
                .written(self.now, write.kind, &write.key);
        }
        if write.kind == WriteKind::Create && result.is_ok() {
            let position = self.cfg.worker.initial_position;
            self.checker
                .lease_created(write, &self.kinesis, position, self.now);
        }
        if check && result.is_ok() {
            let writer = incarnation_id(node, inc);
            let after = self.dynamo.peek(&write.key);
            self.checker
                .table_write(self.now, &writer, write, before.as_ref(), after);
        }
        result
    }

    /// `node`'s wall clock: the true time off by a fixed error of up to ±400 ms per node, as
    /// NTP-disciplined hosts are (less than `sync::LATEST_CLOCK_TOLERANCE`). Drawn from the
    /// node's index, not the run's random stream, so it changes no other draw.
    fn wall_clock(&self, node: NodeId) -> WallTime {
        let error = (node as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54; // 0..1024
        let error = error * 801 / 1024; // 0..=800
        WallTime::from_unix_millis((self.now + error).saturating_sub(400))
    }

    pub(super) fn scan_page(
        &mut self,
        node: NodeId,
        inc: u64,
        sent: u64,
        req: RequestId,
        consistent: bool,
        after: Option<String>,
        mut items: Vec<Item>,
    ) {
        if self.partitioned(node, Service::Dynamo) {
            let failed =
                Command::<SimRecord>::ScanLeaseTable { req, consistent }.failed(Failure::Transient);
            return self.lost(node, inc, sent, failed);
        }
        let faults = self.service_faults[Service::Dynamo as usize];
        if self.rng.below(1000) < faults.throttle_per_mille {
            let input = Input::LeaseTableScanned {
                req,
                result: Err(Failure::Throttled),
            };
            return self.reply(node, inc, sent, Service::Dynamo, input);
        }
        let (page, next) =
            self.dynamo
                .scan_page(self.now, after.as_deref(), consistent, &mut self.rng);
        items.extend(page);
        match next {
            Some(key) => {
                // The driver asks for the next page when this one arrives.
                let machine = self.nodes[node].machine;
                let rtt = self.latency(machine) + self.latency(machine);
                self.schedule(
                    self.now + rtt,
                    Ev::ScanPage {
                        node,
                        inc,
                        sent,
                        req,
                        consistent,
                        after: Some(key),
                        items,
                    },
                );
            }
            None => {
                let input = Input::LeaseTableScanned {
                    req,
                    result: Ok(items),
                };
                self.reply(node, inc, sent, Service::Dynamo, input);
            }
        }
    }

    // ---- the simulated record processors ---------------------------------------------------
}
