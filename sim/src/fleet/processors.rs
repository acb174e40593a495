//! The simulated record processors (their time, checkpoints, panics) and the producer; every
//! delivery passes the exclusivity checker here.

use super::*;

impl Fleet {
    pub(super) fn processor(
        &mut self,
        node: NodeId,
        inc: u64,
        shard: LeaseKey,
        call: CallId,
        action: ProcessorCall<SimRecord>,
    ) {
        self.observe_call(node, &shard, &action);
        if self.cfg.processors == Processors::Mixed {
            return self.mixed_processor(node, inc, shard, call, action);
        }
        let (lo, hi) = self.cfg.process_ms;
        let delay = self.rng.between(lo, hi);
        let (token, outcome) = match action {
            ProcessorCall::Initialize { token, .. } => (token, ProcessorOutcome::Returned),
            ProcessorCall::ProcessRecords { token, .. } => {
                if self.rng.below(1000) < self.processor_failure_per_mille {
                    (token, ProcessorOutcome::Failed)
                } else {
                    let every = self.cfg.checkpoint_every.max(1);
                    let batches = &mut self.nodes[node].batches;
                    let n = match batches.get_mut(&shard) {
                        Some(n) => n,
                        None => batches.entry(shard.clone()).or_insert(0),
                    };
                    *n += 1;
                    if n.is_multiple_of(every) {
                        (token, ProcessorOutcome::Checkpoint)
                    } else {
                        (token, ProcessorOutcome::Returned)
                    }
                }
            }
            ProcessorCall::ShardEnded { token } => (token, ProcessorOutcome::Returned),
            ProcessorCall::ShutdownRequested { token } => (token, ProcessorOutcome::Checkpoint),
            ProcessorCall::CheckpointDone { ticket, result } => {
                return self.checkpoint_answered(node, inc, ticket, &result)
            }
            // Lease lost: nothing to answer.
            _ => return,
        };
        if outcome == ProcessorOutcome::Checkpoint {
            // The ticket `ProcessorOutcome::inputs` gives the request.
            self.checkpoints
                .asked(self.now, (node, inc), call.0, &shard, None);
        }
        self.schedule(
            self.now + delay,
            Ev::ProcDone {
                node,
                inc,
                shard,
                call,
                token,
                outcome,
            },
        );
    }

    /// What the checkers see of a call reaching a processor, whatever the processor then does:
    /// an ownership starting, a batch (exclusivity judged now, deliveries counted), a shard's
    /// end told.
    fn observe_call(&mut self, node: NodeId, shard: &LeaseKey, action: &ProcessorCall<SimRecord>) {
        match action {
            ProcessorCall::Initialize {
                checkpoint, token, ..
            } => {
                let worker = &self.nodes[node].id;
                self.checker
                    .initialized(worker, shard, *token, checkpoint.clone());
            }
            ProcessorCall::ProcessRecords { records, token, .. } => {
                self.check_delivery(node, shard, *token, records);
            }
            ProcessorCall::ShardEnded { .. } => {
                self.checker.shard_ended_told(&self.nodes[node].id, shard);
            }
            _ => {}
        }
    }

    /// A batch reached a processor: exclusivity is judged now, and the deliveries counted.
    fn check_delivery(
        &mut self,
        node: NodeId,
        shard: &LeaseKey,
        token: FencingToken,
        records: &[SimRecord],
    ) {
        self.check_exclusive(node, shard, records);
        self.checker
            .delivered(self.now, node, shard, token, records, &self.kinesis);
    }

    /// A checkpoint request was answered: once, and truthfully (see [`CheckpointLedger`]).
    pub(super) fn checkpoint_answered(
        &mut self,
        node: NodeId,
        inc: u64,
        ticket: u64,
        result: &Result<(), kcl_core::io::CheckpointError>,
    ) {
        let dynamo = &self.dynamo;
        let wrong = self
            .checkpoints
            .answered((node, inc), ticket, result, |shard| {
                dynamo
                    .peek(shard.as_str())
                    .and_then(|item| kcl_core::Lease::from_item(item).ok())
                    .map(|lease| lease.checkpoint)
            });
        if let Some(what) = wrong {
            self.checker.violation(self.now, what);
        }
    }

    /// Invariant 1: at this true instant no other worker may deliver this shard.
    pub(super) fn check_exclusive(
        &mut self,
        node: NodeId,
        shard: &LeaseKey,
        records: &[SimRecord],
    ) {
        let Some(index) = records.first().map(|r| r.shard as usize) else {
            return;
        };
        let others: Vec<NodeId> = self
            .checker
            .deliverers(index)
            .iter()
            .copied()
            .filter(|&n| n != node)
            .collect();
        for other in others {
            let n = &self.nodes[other];
            // A worker out of its node would look like one that stopped delivering; the batch
            // takes back the steps of the shard's deliverers before this check.
            assert!(
                n.stepping.is_none(),
                "the exclusivity check looked at {} while it stepped",
                n.id
            );
            let until = n
                .worker
                .as_ref()
                .and_then(|w| w.delivery_deadline(shard.as_str()))
                .map(|local| n.clock.true_time(local));
            match until {
                Some(t) if t > self.now => {
                    let what = format!(
                        "exclusivity: {} delivers {shard} while {} may deliver it until {t} ms",
                        self.nodes[node].id, n.id
                    );
                    self.checker.violation(self.now, what);
                }
                _ => self.checker.forget_deliverer(index, other),
            }
        }
    }

    // ---- producer, sampling, actions -----------------------------------------------------------

    pub(super) fn produce(&mut self) {
        if self.producing {
            produce_tick(
                &mut self.rng,
                &mut self.produce_carry,
                &self.cfg,
                self.now,
                &mut self.kinesis,
                &mut self.checker,
            );
        }
        self.schedule(self.now + PRODUCE_EVERY_MS, Ev::Produce);
    }
}

/// How often the producer puts records (ms).
pub(crate) const PRODUCE_EVERY_MS: u64 = 100;

/// The producer's puts of one tick at `now`: `records_per_second` spread over the ticks, the
/// fraction carried over in `carry`; with `kpl`, a quarter of them KPL aggregates of 2 to 8 user
/// records (no draw at all without it, so other runs keep their random stream).
pub(crate) fn produce_tick(
    rng: &mut Rng,
    carry: &mut f64,
    cfg: &FleetConfig,
    now: u64,
    kinesis: &mut Kinesis,
    checker: &mut Checker,
) {
    *carry += cfg.records_per_second * PRODUCE_EVERY_MS as f64 / 1000.0;
    while *carry >= 1.0 {
        *carry -= 1.0;
        let mut key = String::from("pk-");
        key.push_str(itoa::Buffer::new().format(rng.next_u64()));
        let users = if cfg.kpl && rng.below(4) == 0 {
            rng.between(2, 8) as u32
        } else {
            0
        };
        let size = cfg.record_bytes * users.max(1);
        let (shard, first) = kinesis.put_aggregate(now, &key, size, users);
        checker.put(shard, first, u64::from(users.max(1)));
    }
}
