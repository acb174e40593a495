//! Everything the simulated processes share: the two services' models with their injected
//! faults, the network between machines and services, the producer's stream, the downstream
//! sink, and the checkers that watch all of it.
//!
//! One mutex guards it; the executor is single-threaded, so the lock is never contended and
//! never held across an await.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use kcl_core::lease::attr;
use kcl_core::rng::Rng;
use kcl_core::write::{LeaseWrite, WriteKind};
use kcl_core::{AttributeValue, Failure, FencingToken, InitialPosition, Item, LeaseKey, Position};

use super::exec::Handle;
use crate::check::{touches_checkpoint, Checker};
use crate::checkpoints::CheckpointLedger;
use crate::dynamo::Dynamo;
use crate::fleet::{NodeId, Service};
use crate::kinesis::Kinesis;
use crate::record::SimRecord;

/// A machine's links to the two services.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Links {
    /// Until when (true ms) each service is unreachable, by [`Service`] index.
    pub partitioned_until: [u64; 2],
    /// Until when its messages take up to `extra_delay_ms` longer each way.
    pub delay_until: u64,
    pub extra_delay_ms: u64,
}

/// Injected service faults, in per mille of calls.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ServiceFaults {
    pub throttle_per_mille: u64,
    pub error_per_mille: u64,
    /// Answers held at the service, and for how long (ms, uniform in the range).
    pub slow_per_mille: u64,
    pub slow_hold_ms: (u64, u64),
}

/// What a call meets at its service before the model sees it.
pub(crate) enum Arrival {
    /// Refused outright.
    Refused(Failure),
    /// Reaches the model; `error`: its answer is a 5xx (a write may land all the same);
    /// `hold_ms`: the service holds its answer this long before sending it.
    Served { error: bool, hold_ms: u64 },
}

/// A `process_records` call under way.
#[derive(Clone, Debug)]
struct Running {
    node: NodeId,
    worker: kcl_core::WorkerId,
    token: FencingToken,
    since_ms: u64,
}

/// Who owns a shard in the table, and under which fencing token: the lease counter the owner's
/// take or acquisition left (a leader's assignment names the owner, whose acquisition then
/// begins its ownership), `None` until that write.
#[derive(Clone, Debug)]
struct Ownership {
    owner: String,
    token: Option<FencingToken>,
}

/// The downstream store the processors write to: it remembers the highest fencing token per
/// shard and refuses writes with a lower one.
#[derive(Clone, Debug, Default)]
pub(crate) struct Sink {
    highest: BTreeMap<LeaseKey, FencingToken>,
    /// Writes accepted.
    pub accepted: u64,
    /// Writes refused for a stale token: what a sink unaware of tokens would have taken.
    pub refused_stale: u64,
    /// Writes accepted although the lease table had moved the shard to a newer ownership (or
    /// to nobody) before they arrived: the token sink had not yet seen the newer token.
    pub accepted_stale: u64,
    /// Of those, the writes of processes frozen at some time during their call.
    pub accepted_stale_while_frozen: u64,
}

/// Whether `node`'s process was frozen at some time between `from` and `until` (true ms).
fn frozen_between(
    frozen: &BTreeMap<NodeId, Vec<(u64, u64)>>,
    node: NodeId,
    from: u64,
    until: u64,
) -> bool {
    frozen.get(&node).is_some_and(|spans| {
        spans
            .iter()
            .any(|&(start, end)| start <= until && end >= from)
    })
}

/// The simulated world.
pub(crate) struct World {
    pub rng: Rng,
    pub dynamo: Dynamo,
    pub kinesis: Kinesis,
    pub checker: Checker,
    pub checkpoints: CheckpointLedger,
    pub links: Vec<Links>,
    pub service_faults: [ServiceFaults; 2],
    /// One-way latency between a machine and a service (ms), uniform in this range.
    pub latency_ms: (u64, u64),
    pub initial_position: InitialPosition,
    /// Changes of a lease's owner seen in the table (every first assignment too).
    pub acquisitions: u64,
    /// Leases released to nobody (a graceful hand-off or shutdown).
    pub releases: u64,
    /// Leases that went from one owner to another without a release (taken after expiry, or
    /// stolen).
    pub takes_from_owner: u64,
    /// Calls from a machine (first) to a service (second, by [`Service`] index) that are all
    /// refused with this failure: a misconfiguration (a deleted stream, a revoked permission).
    pub refusals: BTreeMap<(usize, usize), Failure>,
    /// Reads wait at the service for the next record of their shard (up to 5 s) instead of
    /// answering empty, as a fan-out subscription does: the driver's stream calls stay in
    /// flight for seconds.
    pub blocking_reads: bool,
    /// The drivers' call timeout (ms).
    pub call_timeout_ms: u64,
    /// Answers held at a service for at least the call timeout: calls that time out although
    /// the service did what they asked.
    pub answers_held_past_call_timeout: u64,
    /// Batches on which processors panic or hang, per mille.
    pub processor_failure_per_mille: u64,
    /// Batches that hung.
    pub processor_hangs: u64,
    pub sink: Sink,
    running: BTreeMap<LeaseKey, Vec<Running>>,
    /// Whether the protocol ends an ownership's calls before the table moves its lease on, so
    /// that a stale write a non-frozen process makes is a violation: true of the Coordinated
    /// policy; Kcl2Compatible steals leases from live owners, which go on processing until
    /// their next renewal fails (only the fencing token keeps those writes out).
    pub stale_writes_are_violations: bool,
    /// Each shard's ownership in the table now (absent while nobody owns it).
    ownership: BTreeMap<LeaseKey, Ownership>,
    /// When each node's process was frozen (paused, or its host suspended): true ms spans.
    frozen: BTreeMap<NodeId, Vec<(u64, u64)>>,
    /// A new ownership's call started while an older one's was under way in a process frozen
    /// meanwhile (not a violation: see [`World::processing_started`]).
    pub overlaps_while_frozen: u64,
    /// Checkpoint tickets, one sequence for the whole run.
    next_ticket: u64,
    /// True time now (ms), the executor's, set by [`SharedWorld::lock`].
    pub now: u64,
}

/// The world, shared, on the executor's clock.
#[derive(Clone)]
pub(crate) struct SharedWorld(Arc<Mutex<World>>, Handle);

impl SharedWorld {
    pub(crate) fn new(world: World, clock: Handle) -> Self {
        Self(Arc::new(Mutex::new(world)), clock)
    }

    /// The world, its `now` set to the executor's.
    pub(crate) fn lock(&self) -> MutexGuard<'_, World> {
        let mut w = self.0.lock().unwrap_or_else(|e| e.into_inner());
        w.now = self.1.now_ms();
        w
    }
}

impl World {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        seed: u64,
        dynamo: Dynamo,
        kinesis: Kinesis,
        latency_ms: (u64, u64),
        initial_position: InitialPosition,
    ) -> Self {
        Self {
            rng: Rng::new(seed),
            dynamo,
            kinesis,
            checker: Checker::default(),
            checkpoints: CheckpointLedger::default(),
            links: Vec::new(),
            service_faults: [ServiceFaults::default(); 2],
            latency_ms,
            initial_position,
            acquisitions: 0,
            releases: 0,
            takes_from_owner: 0,
            refusals: BTreeMap::new(),
            blocking_reads: false,
            call_timeout_ms: u64::MAX,
            answers_held_past_call_timeout: 0,
            processor_failure_per_mille: 0,
            processor_hangs: 0,
            sink: Sink::default(),
            running: BTreeMap::new(),
            stale_writes_are_violations: true,
            ownership: BTreeMap::new(),
            frozen: BTreeMap::new(),
            overlaps_while_frozen: 0,
            next_ticket: 0,
            now: 0,
        }
    }

    /// The one-way trip of a message from `machine` to `service` or back, starting now: its
    /// latency, or `None` when the link is cut (the message is lost).
    pub(crate) fn trip(&mut self, machine: usize, service: Service) -> Option<u64> {
        let links = self.links.get(machine).copied().unwrap_or_default();
        if links.partitioned_until[service as usize] > self.now {
            return None;
        }
        let (lo, hi) = self.latency_ms;
        let mut ms = self.rng.between(lo, hi);
        if links.delay_until > self.now && links.extra_delay_ms > 0 {
            ms += self.rng.below(links.extra_delay_ms + 1);
        }
        Some(ms)
    }

    /// Whether `machine` can reach `service` now.
    pub(crate) fn reachable(&self, machine: usize, service: Service) -> bool {
        self.links
            .get(machine)
            .is_none_or(|l| l.partitioned_until[service as usize] <= self.now)
    }

    /// A call from `machine` reaches `service`: a standing refusal, the injected throttling,
    /// errors and slowness.
    pub(crate) fn arrive(&mut self, machine: usize, service: Service) -> Arrival {
        if let Some(failure) = self.refusals.get(&(machine, service as usize)) {
            return Arrival::Refused(failure.clone());
        }
        let faults = self.service_faults[service as usize];
        if self.rng.below(1000) < faults.throttle_per_mille {
            return Arrival::Refused(Failure::Throttled);
        }
        let error = self.rng.below(1000) < faults.error_per_mille;
        let mut hold_ms = 0;
        if faults.slow_per_mille > 0 && self.rng.below(1000) < faults.slow_per_mille {
            let (lo, hi) = faults.slow_hold_ms;
            hold_ms = self.rng.between(lo, hi);
            if hold_ms >= self.call_timeout_ms {
                self.answers_held_past_call_timeout += 1;
            }
        }
        Arrival::Served { error, hold_ms }
    }

    /// A conditional write lands in the table: the checkers see it, and whether it moved the
    /// lease to a new owner.
    pub(crate) fn table_write(
        &mut self,
        writer: &kcl_core::WorkerId,
        write: &LeaseWrite,
    ) -> Result<Option<Item>, Failure> {
        let before = self.dynamo.peek(&write.key).cloned();
        let result = self.dynamo.write(self.now, write)?;
        self.checker
            .failover
            .written(self.now, write.kind, &write.key);
        let after = self.dynamo.peek(&write.key);
        let owner = |item: Option<&Item>| match item.and_then(|i| i.get(attr::LEASE_OWNER)) {
            Some(AttributeValue::S(s)) => Some(s.clone()),
            _ => None,
        };
        let (was, is) = (owner(before.as_ref()), owner(after));
        self.ownership_written(writer, write);
        if is.is_some() && was != is {
            self.acquisitions += 1;
            if was.is_some() {
                self.takes_from_owner += 1;
            }
        }
        if was.is_some() && is.is_none() && write.kind != WriteKind::Delete {
            self.releases += 1;
        }
        if write.kind == WriteKind::Create {
            let (kinesis, now) = (&self.kinesis, self.now);
            self.checker
                .lease_created(write, kinesis, self.initial_position, now);
        }
        if touches_checkpoint(write) {
            let after = self.dynamo.peek(&write.key);
            self.checker
                .table_write(self.now, writer, write, before.as_ref(), after);
        }
        Ok(result)
    }

    /// Keeps [`World::ownership`] after `write` landed. The holder is the row's
    /// `checkpointOwner` during a handoff (the old owner finishes first), its `leaseOwner`
    /// otherwise; a holder's own take or acquisition begins its ownership and fencing token.
    fn ownership_written(&mut self, writer: &kcl_core::WorkerId, write: &LeaseWrite) {
        let after = self.dynamo.peek(&write.key);
        let attribute = |name: &str| match after.and_then(|item| item.get(name)) {
            Some(AttributeValue::S(s)) => Some(s.as_str()),
            _ => None,
        };
        let key = LeaseKey::from(write.key.as_str());
        let Some(holder) = attribute(attr::CHECKPOINT_OWNER).or(attribute(attr::LEASE_OWNER))
        else {
            self.ownership.remove(&key);
            return;
        };
        let begins =
            matches!(write.kind, WriteKind::Take | WriteKind::Acquire) && writer.as_str() == holder;
        let token = begins
            .then(|| after.and_then(|item| kcl_core::Lease::from_item(item).ok()))
            .flatten()
            .map(|lease| FencingToken(lease.counter));
        match self.ownership.get_mut(&key) {
            Some(o) if o.owner == holder => {
                if token.is_some() {
                    o.token = token;
                }
            }
            _ => {
                let owner = holder.to_owned();
                self.ownership.insert(key, Ownership { owner, token });
            }
        }
    }

    /// A `process_records` call starts: exclusivity is judged now (no other ownership's call
    /// of the shard may be under way), and the delivery checked and counted.
    pub(crate) fn processing_started(
        &mut self,
        node: NodeId,
        worker: &kcl_core::WorkerId,
        shard: &LeaseKey,
        token: FencingToken,
        records: &[SimRecord],
    ) {
        let now = self.now;
        let running = self.running.entry(shard.clone()).or_default();
        let mut clashes = Vec::new();
        for r in running.iter().filter(|r| r.token != token) {
            // A process frozen (paused, its host suspended) during its call cannot be stopped
            // by anyone: only the fencing token keeps its writes out, which the sink counts.
            if frozen_between(&self.frozen, r.node, r.since_ms, now) {
                self.overlaps_while_frozen += 1;
            } else {
                clashes.push(format!(
                    "exclusivity: {worker} (token {}) processes {shard} while {} (token {}) has processed it since {} ms",
                    token.0, r.worker, r.token.0, r.since_ms
                ));
            }
        }
        running.push(Running {
            node,
            worker: worker.clone(),
            token,
            since_ms: now,
        });
        for what in clashes {
            self.checker.violation(now, what);
        }
        self.checker
            .delivered(now, node, shard, token, records, &self.kinesis);
    }

    /// `node`'s process is frozen from now for `ms`.
    pub(crate) fn frozen(&mut self, node: NodeId, ms: u64) {
        let now = self.now;
        self.frozen.entry(node).or_default().push((now, now + ms));
    }

    /// The `process_records` call of `node` and `token` on `shard` ended: returned, panicked,
    /// cancelled, or its process died.
    pub(crate) fn processing_ended(&mut self, node: NodeId, shard: &LeaseKey, token: FencingToken) {
        if let Some(running) = self.running.get_mut(shard) {
            if let Some(i) = running
                .iter()
                .position(|r| r.node == node && r.token == token)
            {
                running.remove(i);
            }
            if running.is_empty() {
                self.running.remove(shard);
            }
        }
    }

    /// A processor of `node` writes its results downstream under `token`. A write the sink
    /// accepts from an ownership the table has ended is a violation (under
    /// [`World::stale_writes_are_violations`]) unless its process was frozen during its call
    /// (nothing can stop a frozen process; see [`World::processing_started`]).
    pub(crate) fn sink_write(
        &mut self,
        node: NodeId,
        writer: &kcl_core::WorkerId,
        shard: &LeaseKey,
        token: FencingToken,
    ) {
        let highest = self.sink.highest.entry(shard.clone()).or_insert(token);
        if token < *highest {
            self.sink.refused_stale += 1;
            return;
        }
        *highest = token;
        self.sink.accepted += 1;
        let current = self.ownership.get(shard);
        if current.is_some_and(|o| o.owner == writer.as_str() && o.token == Some(token)) {
            return;
        }
        self.sink.accepted_stale += 1;
        let now = self.now;
        let since = self
            .running
            .get(shard)
            .and_then(|running| running.iter().find(|r| r.node == node && r.token == token))
            .map_or(now, |r| r.since_ms);
        let frozen = frozen_between(&self.frozen, node, since, now);
        if frozen {
            self.sink.accepted_stale_while_frozen += 1;
        }
        if self.stale_writes_are_violations && !frozen {
            let owner = current.map_or("nobody".to_string(), |o| {
                let token = o.token.map_or("none yet".to_string(), |t| t.0.to_string());
                format!("{} (token {token})", o.owner)
            });
            self.checker.violation(
                now,
                format!(
                    "fencing: the sink accepted a write to {shard} under token {} after the table gave the shard to {owner}",
                    token.0
                ),
            );
        }
    }

    /// A new checkpoint ticket.
    pub(crate) fn ticket(&mut self) -> u64 {
        self.next_ticket += 1;
        self.next_ticket
    }

    /// The checkpoint `shard` has in the table now.
    pub(crate) fn table_checkpoint(&self, shard: &LeaseKey) -> Option<Position> {
        self.dynamo
            .peek(shard.as_str())
            .and_then(|item| kcl_core::Lease::from_item(item).ok())
            .map(|lease| lease.checkpoint)
    }
}
