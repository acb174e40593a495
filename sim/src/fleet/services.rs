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
        let error = match self.injected_fault(service) {
            Some(Failure::Throttled) => {
                return cmd
                    .failed(Failure::Throttled)
                    .map_or(Served::Nothing, Served::Reply)
            }
            fault => fault.is_some(),
        };
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
        let (page, next) = match self.serve_scan_page(consistent, after.as_deref()) {
            Ok(served) => served,
            Err(failure) => {
                let input = Input::LeaseTableScanned {
                    req,
                    result: Err(failure),
                };
                return self.reply(node, inc, sent, Service::Dynamo, input);
            }
        };
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

    /// One page of a scan after `after` (`None`: the first), or its injected fault. The first
    /// page is the scan's call, whose faults [`Self::serve_command`] drew; each later page is a
    /// request of its own (as the SDK's paginator makes them), throttled and failed on its own.
    fn serve_scan_page(
        &mut self,
        consistent: bool,
        after: Option<&str>,
    ) -> Result<(Vec<Item>, Option<String>), Failure> {
        if after.is_some() {
            if let Some(fault) = self.injected_fault(Service::Dynamo) {
                return Err(fault);
            }
        }
        Ok(self
            .dynamo
            .scan_page(self.now, after, consistent, &mut self.rng))
    }

    /// The fault injected into one call to `service`, drawn in this order: throttled, failed
    /// (a 5xx: `Transient`), or none.
    fn injected_fault(&mut self, service: Service) -> Option<Failure> {
        let faults = self.service_faults[service as usize];
        if self.rng.below(1000) < faults.throttle_per_mille {
            return Some(Failure::Throttled);
        }
        (self.rng.below(1000) < faults.error_per_mille).then_some(Failure::Transient)
    }

    // ---- the simulated record processors ---------------------------------------------------
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{fleet_config, RunSpec, Scenario};

    /// A leader that could not scan (the table failing its calls) cannot see a dead worker's
    /// row stand still: the table-size check counts from when it could again, not from the
    /// departure (`--scenario chaos --workers 2000 --shards 8000 --duration 3m --seed 1`: a
    /// worker crashed 7 s before DynamoDB's faults ended, and its row was deleted 76 s after).
    #[test]
    fn a_dead_row_is_judged_from_when_the_leader_could_observe_it() {
        use kcl_core::write::{Condition, LeaseWrite, WriteAction};
        let mut dynamo = Dynamo::new(Consistency::default());
        let key = format!("{WORKER_KEY_PREFIX}w9");
        let mut row = Item::new();
        row.insert(
            "leaseKey".into(),
            kcl_core::AttributeValue::S(key.as_str().into()),
        );
        let put = LeaseWrite {
            key: key.as_str().into(),
            action: WriteAction::Put(row),
            condition: Condition::NotExists,
            return_item: false,
            kind: WriteKind::Create,
        };
        assert!(dynamo.write(0, &put).is_ok());
        let kinesis = Kinesis::new(1, KinesisLimits::default());
        let departed = BTreeMap::from([(WorkerId::from("w9"), 98_000)]);
        let grace = core::time::Duration::from_secs(76);
        let judged = |observed| {
            table_size_violations(
                &dynamo,
                &kinesis,
                &BTreeSet::new(),
                &departed,
                observed,
                180_000,
                grace,
            )
        };
        assert_eq!(judged(0).len(), 1, "82 s after the departure");
        assert_eq!(
            judged(105_000),
            Vec::<String>::new(),
            "75 s after the faults"
        );
    }

    /// A scan's first page is the call itself: a table that throttles 30% of calls answers
    /// about 70% of one-page scans.
    #[test]
    fn a_scan_is_throttled_as_often_as_any_call() {
        let spec = RunSpec {
            workers: 1,
            shards: 4,
            ..RunSpec::new(Scenario::Steady)
        };
        let mut fleet = Fleet::new(fleet_config(&spec), 1);
        fleet.service_faults[Service::Dynamo as usize] = ServiceFaults {
            throttle_per_mille: 300,
            error_per_mille: 0,
        };
        let scans = 4_000;
        let mut answered = 0;
        for req in 0..scans {
            let scan = Command::ScanLeaseTable {
                req: RequestId(req),
                consistent: false,
            };
            if let Served::Scan(_, consistent) = fleet.serve_command(0, 0, scan) {
                if fleet.serve_scan_page(consistent, None).is_ok() {
                    answered += 1;
                }
            }
        }
        assert!(
            (2_680..=2_920).contains(&answered),
            "{answered} of {scans} scans answered"
        );
        // Each later page is a request of its own.
        let mut faults = |throttle_per_mille, error_per_mille| {
            fleet.service_faults[Service::Dynamo as usize] = ServiceFaults {
                throttle_per_mille,
                error_per_mille,
            };
            (
                fleet.serve_scan_page(false, None).err(),
                fleet.serve_scan_page(false, Some("k")).err(),
            )
        };
        assert_eq!(faults(1000, 0), (None, Some(Failure::Throttled)));
        assert_eq!(faults(0, 1000), (None, Some(Failure::Transient)));
    }
}
