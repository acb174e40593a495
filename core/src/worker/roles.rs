//! The table-level roles of a worker: scanning and taking (Kcl2Compatible), leader election,
//! planning and heartbeats with their inbox (Coordinated), shard sync, cleanup and shutdown.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;

use super::held::{Exit, HeldLease};
use super::timers::{LeaseTimer, TimerKey};
use super::{Pending, Phase, Worker, WriteOp};
use crate::balance::{self, Move, PlanLease, PlanWorker};
use crate::config::{BalancingPolicy, Config};
use crate::io::{Command, Event, Failure, Record, ShardDescription};
use crate::item::Item;
use crate::lease::{Lease, LeaseKey, LeaseRow, Row, WorkerId, WorkerRow, LEADER_KEY};
use crate::observe::Seen;
use crate::protocol::LeaseOp;
use crate::sync;
use crate::taker::{self, TakerLease};
use crate::time::Instant;

/// What a scan keeps of a lease: only what taking, planning, sync and cleanup read, with the
/// expiry observation folded in and owner ids shared between rows (about a third of a
/// [`Lease`]).
#[derive(Clone, Debug)]
pub(crate) struct TableLease {
    owner: Option<WorkerId>,
    checkpoint_owner: Option<WorkerId>,
    counter: u64,
    seen: Seen,
    progress: Progress,
    throughput_kbps: Option<f32>,
    parents: Vec<LeaseKey>,
    children: Vec<LeaseKey>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Progress {
    /// Still at its initial position.
    NotStarted,
    /// Checkpointed at a record.
    Started,
    /// At `SHARD_END`.
    Finished,
}

impl TableLease {
    fn is_finished(&self) -> bool {
        self.progress == Progress::Finished
    }
}

/// The leases of the last scan, sorted by key: a scan replaces it whole, so a sorted vector
/// serves lookups at the memory cost of the entries alone (a B-tree built in key order leaves
/// its nodes half empty).
#[derive(Clone, Debug, Default)]
pub(crate) struct LeaseTable {
    entries: Vec<(LeaseKey, TableLease)>,
}

impl LeaseTable {
    fn new(mut entries: Vec<(LeaseKey, TableLease)>) -> Self {
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries.dedup_by(|a, b| a.0 == b.0);
        entries.shrink_to_fit();
        Self { entries }
    }

    fn position(&self, key: &str) -> Result<usize, usize> {
        self.entries.binary_search_by(|(k, _)| k.as_str().cmp(key))
    }

    /// Where `key` is, trying `hint` first.
    fn find(&self, key: &str, hint: usize) -> Option<usize> {
        match self.entries.get(hint) {
            Some((k, _)) if k.as_str() == key => Some(hint),
            _ => self.position(key).ok(),
        }
    }

    fn get(&self, key: &LeaseKey) -> Option<&TableLease> {
        self.position(key.as_str()).ok().map(|i| &self.entries[i].1)
    }

    fn contains_key(&self, key: &LeaseKey) -> bool {
        self.position(key.as_str()).is_ok()
    }

    fn remove(&mut self, key: &LeaseKey) {
        if let Ok(i) = self.position(key.as_str()) {
            self.entries.remove(i);
        }
    }

    fn iter(&self) -> impl Iterator<Item = (&LeaseKey, &TableLease)> {
        self.entries.iter().map(|(k, l)| (k, l))
    }

    fn keys(&self) -> impl Iterator<Item = &LeaseKey> {
        self.entries.iter().map(|(k, _)| k)
    }
}

/// The id named `name`: the last scan's when it named the same worker (nearly always; one string
/// comparison instead of a search of every worker's id), otherwise one shared per scan.
fn worker_id(
    ids: &mut BTreeSet<WorkerId>,
    last: Option<&WorkerId>,
    name: Option<&str>,
) -> Option<WorkerId> {
    match last {
        Some(id) if Some(id.as_str()) == name => Some(id.clone()),
        _ => intern(ids, name),
    }
}

/// One shared `WorkerId` per distinct owner string seen in a scan.
fn intern(ids: &mut BTreeSet<WorkerId>, id: Option<&str>) -> Option<WorkerId> {
    let id = id?;
    if let Some(shared) = ids.get(id) {
        return Some(shared.clone());
    }
    let id = WorkerId::from(id);
    ids.insert(id.clone());
    Some(id)
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) enum Leader {
    #[default]
    Follower,
    Claiming,
    Leading {
        counter: u64,
        renewed_sent: Instant,
        renewing: bool,
    },
}

#[derive(Clone, Debug)]
pub(crate) struct Acquiring {
    since: Instant,
    writing: bool,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Roles {
    pub(crate) acquiring: BTreeMap<LeaseKey, Acquiring>,
    inbox_acks: BTreeSet<LeaseKey>,
    heartbeat_in_flight: bool,
    scan_in_flight: bool,
    pub(crate) sync_due: bool,
    list_in_flight: bool,
    creating: BTreeSet<LeaseKey>,
    taking: BTreeSet<LeaseKey>,
    leader_busy: BTreeSet<LeaseKey>,
    table: LeaseTable,
    workers: BTreeMap<WorkerId, WorkerRow>,
    leader: Leader,
    leader_check_in_flight: bool,
    stop_writes: usize,
    stop_started: bool,
    shutdown_forced: bool,
}

impl Roles {
    pub(crate) fn is_leader(&self, config: &Config, now: Instant) -> bool {
        matches!(self.leader, Leader::Leading { renewed_sent, .. } if now < renewed_sent + config.delivery_window())
    }
}

impl<R: Record + Clone> Worker<R> {
    pub(super) fn start(&mut self) {
        let now = self.ctx.now;
        let renew = self.ctx.config.renew_interval();
        self.ctx.timers.set(TimerKey::Renew, now + renew);
        self.ctx.timers.set(
            TimerKey::ShardSync,
            now + self.ctx.config.shard_sync_interval,
        );
        match self.policy() {
            BalancingPolicy::Kcl2Compatible => {
                self.roles.sync_due = true;
                self.ctx.timers.set(TimerKey::Scan, now);
            }
            BalancingPolicy::Coordinated => {
                self.ctx.timers.set(TimerKey::Heartbeat, now);
                // A little jitter so a fleet started at once does not race for leadership in step.
                let spread = self.ctx.config.leader_check_interval.as_millis() as u64 / 10;
                let j = self.ctx.rng.below(spread + 1);
                self.ctx.timers.set(
                    TimerKey::LeaderCheck,
                    now + core::time::Duration::from_millis(j),
                );
            }
        }
    }

    fn scans_table(&self) -> bool {
        self.policy() == BalancingPolicy::Kcl2Compatible
            || self.roles.is_leader(&self.ctx.config, self.ctx.now)
    }

    // ---- scanning ------------------------------------------------------------------------

    pub(super) fn scan_timer(&mut self) {
        self.check_leadership();
        if self.ctx.phase == Phase::Running && self.scans_table() && !self.roles.scan_in_flight {
            self.roles.scan_in_flight = true;
            self.ctx
                .request(Pending::Scan, |req| Command::ScanLeaseTable { req });
        }
        if self.policy() == BalancingPolicy::Kcl2Compatible
            || matches!(self.roles.leader, Leader::Leading { .. })
        {
            let at = self.ctx.now + self.ctx.config.scan_interval;
            self.ctx.timers.set(TimerKey::Scan, at);
        }
    }

    pub(super) fn scanned(&mut self, result: Result<Vec<Item>, Failure>) {
        self.roles.scan_in_flight = false;
        let Ok(items) = result else { return };
        self.ctx.stats.scans += 1;
        let now = self.ctx.now;
        let mut entries: Vec<(LeaseKey, TableLease)> = Vec::with_capacity(items.len());
        let mut workers = BTreeMap::new();
        let mut ids: BTreeSet<WorkerId> = BTreeSet::new();
        let mut newly_finished = false;
        // Rows come in key order from this table (real DynamoDB scans need not): the entry
        // after the last one found is tried before a search.
        let mut next_old = 0;
        for item in &items {
            let row = match LeaseRow::of_row(item) {
                Ok(Some(l)) => l,
                Ok(None) => {
                    match Row::from_item(item) {
                        Ok(Row::Worker(w)) => {
                            let k = WorkerRow::key(&w.worker);
                            self.observer.observe(&k, w.counter, true, now);
                            workers.insert(w.worker.clone(), w);
                        }
                        Ok(Row::Lease(_) | Row::Leader(_) | Row::Foreign { .. }) => {}
                        Err(error) => self.ctx.malformed(item, error),
                    }
                    continue;
                }
                Err(error) => {
                    self.ctx.malformed(item, error);
                    continue;
                }
            };
            let old_at = self.roles.table.find(row.key, next_old);
            let old = old_at.map(|i| {
                next_old = i + 1;
                &self.roles.table.entries[i]
            });
            // Expiry on this worker's clock: the time a counter value was first seen.
            let seen = match old {
                Some((_, o)) if o.counter == row.counter => o.seen,
                Some(_) => Seen {
                    counter: row.counter,
                    since: Some(now),
                },
                None => Seen {
                    counter: row.counter,
                    since: row.owner.is_some().then_some(now),
                },
            };
            let progress = if row.checkpoint.is_shard_end() {
                Progress::Finished
            } else if row.checkpoint.is_initial() {
                Progress::NotStarted
            } else {
                Progress::Started
            };
            newly_finished |=
                progress == Progress::Finished && old.is_none_or(|(_, o)| !o.is_finished());
            // The key the last scan made, when there is one: no new copy of the string.
            let key = match old {
                Some((k, _)) => k.clone(),
                None => LeaseKey::from(row.key),
            };
            let old_lease = old.map(|(_, o)| o);
            let entry = TableLease {
                owner: worker_id(
                    &mut ids,
                    old_lease.and_then(|o| o.owner.as_ref()),
                    row.owner,
                ),
                checkpoint_owner: worker_id(
                    &mut ids,
                    old_lease.and_then(|o| o.checkpoint_owner.as_ref()),
                    row.checkpoint_owner,
                ),
                counter: row.counter,
                seen,
                progress,
                throughput_kbps: row.throughput_kbps.map(|t| t as f32),
                parents: row.parents(),
                children: row.children(),
            };
            entries.push((key, entry));
        }
        // The observer keeps worker rows and the leader row; forget workers whose row is gone.
        self.observer.retain(|k| {
            k == LEADER_KEY
                || k.strip_prefix(crate::lease::WORKER_KEY_PREFIX)
                    .is_some_and(|w| workers.contains_key(w))
        });
        // A lease finished since the last scan may free a merged child: sync now, not in a minute.
        if newly_finished {
            self.roles.sync_due = true;
        }
        self.roles.table = LeaseTable::new(entries);
        self.roles.workers = workers;
        if self.ctx.phase != Phase::Running {
            return;
        }
        match self.policy() {
            BalancingPolicy::Kcl2Compatible => self.take_leases(),
            BalancingPolicy::Coordinated => {
                if self.roles.is_leader(&self.ctx.config, now) {
                    self.plan();
                }
            }
        }
        if self.scans_table() {
            if self.ctx.config.cleanup_finished_leases {
                self.cleanup();
            }
            if self.roles.sync_due && !self.roles.list_in_flight {
                self.roles.list_in_flight = true;
                self.ctx
                    .request(Pending::ListShards, |req| Command::ListShards { req });
            }
        }
    }

    fn seen(&self, key: &str) -> Seen {
        self.observer.get(key).unwrap_or(Seen {
            counter: 0,
            since: None,
        })
    }

    fn take_leases(&mut self) {
        let leases: Vec<TakerLease> = self
            .roles
            .table
            .iter()
            .filter(|(_, l)| !l.is_finished())
            .map(|(key, l)| TakerLease {
                key: key.clone(),
                owner: l.owner.clone(),
                counter: l.counter,
                seen: l.seen,
            })
            .collect();
        let takes = taker::take_leases(
            &leases,
            &self.ctx.id,
            &self.ctx.config,
            self.ctx.now,
            &mut self.ctx.rng,
        );
        let me = self.ctx.id.clone();
        for t in takes {
            if self.held.contains_key(&t.key) || !self.roles.taking.insert(t.key.clone()) {
                continue;
            }
            let op = LeaseOp::Take {
                shard: t.key.clone(),
                counter: t.expect_counter,
                taker: me.clone(),
                from: t.from.clone(),
            };
            self.ctx.write(&op, WriteOp::Take { steal: t.steal });
        }
    }

    /// A lease is eligible for assignment once every parent lease is finished or gone.
    fn parents_done(&self, l: &TableLease) -> bool {
        l.parents
            .iter()
            .all(|p| self.roles.table.get(p).is_none_or(TableLease::is_finished))
    }

    fn plan(&mut self) {
        let now = self.ctx.now;
        let d = self.ctx.config.failover_time;
        let expiry = self.ctx.config.worker_expiry();
        let me = self.ctx.id.clone();
        let mut workers: Vec<PlanWorker> = self
            .roles
            .workers
            .values()
            .filter(|w| {
                w.worker != me
                    && !self
                        .seen(&WorkerRow::key(&w.worker))
                        .older_than(now, expiry)
            })
            .map(|w| PlanWorker {
                id: w.worker.clone(),
                max_leases: w.max_leases,
                leaving: w.leaving,
            })
            .collect();
        workers.push(PlanWorker {
            id: me,
            max_leases: self.ctx.config.max_leases_per_worker,
            leaving: false,
        });
        let leases: Vec<PlanLease> = self
            .roles
            .table
            .iter()
            .filter(|(_, l)| !l.is_finished() && self.parents_done(l))
            .map(|(key, l)| {
                let expired = l.owner.is_none() || l.seen.older_than(now, d);
                PlanLease {
                    key: key.clone(),
                    holder: if expired { None } else { l.owner.clone() },
                    counter: l.counter,
                    weight: l.throughput_kbps.map_or(1.0, f64::from),
                    in_handoff: (!expired && l.checkpoint_owner.is_some())
                        || self.roles.leader_busy.contains(key),
                }
            })
            .collect();
        let budget = usize::try_from(
            ((leases.len() as u64) * self.ctx.config.move_budget_per_mille / 1000).max(1),
        )
        .unwrap_or(usize::MAX);
        let plan = balance::plan(
            &leases,
            &workers,
            budget,
            self.ctx.config.throughput_weighting,
        );
        for m in plan.moves {
            match m {
                Move::Assign {
                    lease,
                    to,
                    expect_counter,
                } => {
                    let (lease, to) = (leases[lease].key.clone(), workers[to].id.clone());
                    if !self.roles.leader_busy.insert(lease.clone()) {
                        continue;
                    }
                    let op = LeaseOp::Assign {
                        shard: lease,
                        counter: expect_counter,
                        to: to.clone(),
                    };
                    self.ctx.write(&op, WriteOp::Assign { to });
                }
                Move::Handoff { lease, from, to } => {
                    let (lease, from, to) = (
                        leases[lease].key.clone(),
                        &workers[from].id,
                        workers[to].id.clone(),
                    );
                    if !self.roles.leader_busy.insert(lease.clone()) {
                        continue;
                    }
                    let op = LeaseOp::InitiateHandoff {
                        shard: lease,
                        from: from.clone(),
                        to: to.clone(),
                    };
                    self.ctx.write(&op, WriteOp::InitiateHandoff { to });
                }
            }
        }
    }

    fn cleanup(&mut self) {
        let table = &self.roles.table;
        // Children by parent, from both sides: a parent's childShardIds and a child's parents.
        let mut children: BTreeMap<&LeaseKey, BTreeSet<&LeaseKey>> = BTreeMap::new();
        for (key, l) in table.iter() {
            for p in &l.parents {
                children.entry(p).or_default().insert(key);
            }
            if l.is_finished() {
                children.entry(key).or_default().extend(l.children.iter());
            }
        }
        let mut deletes = Vec::new();
        for (key, l) in table.iter().filter(|(_, l)| l.is_finished()) {
            // As the Java KCL: only once every parent lease is gone. While a parent row exists,
            // shard sync would take a missing child for one never started and create it again.
            if self.roles.leader_busy.contains(key)
                || l.parents.iter().any(|p| table.contains_key(p))
            {
                continue;
            }
            // A child is deleted only after its parents are, so while this parent exists an
            // absent child is one not created yet (a merge child waits for shard sync).
            let started = children.get(key).is_some_and(|cs| {
                !cs.is_empty()
                    && cs.iter().all(|c| {
                        table
                            .get(c)
                            .is_some_and(|child| child.progress != Progress::NotStarted)
                    })
            });
            if started {
                deletes.push((key.clone(), l.counter));
            }
        }
        for (key, counter) in deletes {
            self.roles.leader_busy.insert(key.clone());
            let op = LeaseOp::Delete {
                shard: key,
                counter,
            };
            self.ctx.write(&op, WriteOp::Delete);
        }
    }

    pub(super) fn shards_listed(&mut self, result: Result<Vec<ShardDescription>, Failure>) {
        self.roles.list_in_flight = false;
        let Ok(shards) = result else { return };
        if self.ctx.phase != Phase::Running {
            return;
        }
        self.roles.sync_due = false;
        let mut existing: BTreeSet<LeaseKey> = self.roles.table.keys().cloned().collect();
        existing.extend(self.held.keys().cloned());
        existing.extend(self.roles.creating.iter().cloned());
        for lease in sync::leases_to_create(&shards, &existing, self.ctx.config.initial_position) {
            // Children of what is created now come in the next round, after the next scan.
            self.roles.sync_due = true;
            self.roles.creating.insert(lease.key.clone());
            self.ctx.write(
                &LeaseOp::Create { lease },
                WriteOp::Create { child_of: None },
            );
        }
    }

    // ---- results of table-level writes ------------------------------------------------------

    pub(super) fn role_written(
        &mut self,
        key: LeaseKey,
        op: WriteOp,
        sent: Instant,
        result: Result<Option<Item>, Failure>,
    ) {
        let ok = result.is_ok();
        match op {
            WriteOp::Take { steal } => {
                self.roles.taking.remove(&key);
                if let Ok(Some(item)) = result {
                    self.adopt(item, sent, steal);
                }
            }
            WriteOp::Acquire => {
                let Some(a) = self.roles.acquiring.get_mut(&key) else {
                    self.ctx.stats.stale_results += 1;
                    return;
                };
                a.writing = false;
                match result {
                    Ok(Some(item)) => {
                        self.roles.acquiring.remove(&key);
                        self.roles.inbox_acks.insert(key);
                        self.adopt(item, sent, false);
                    }
                    Ok(None) | Err(Failure::ConditionFailed) => {
                        self.ctx
                            .read(key.as_str(), Pending::ReadAcquire { shard: key.clone() });
                    }
                    Err(_) => self.ctx.timers.set_for(
                        &key,
                        LeaseTimer::HandoffPoll,
                        self.ctx.now + self.ctx.config.handoff_poll_interval,
                    ),
                }
            }
            WriteOp::Create { child_of } => {
                self.roles.creating.remove(&key);
                if ok {
                    self.ctx.stats.leases_created += 1;
                }
                if let Some((shard, token)) = child_of {
                    let created = ok || result == Err(Failure::ConditionFailed);
                    self.with_token(&shard, token, |h, ctx| h.child_created(ctx, created));
                }
            }
            WriteOp::Delete => {
                self.roles.leader_busy.remove(&key);
                if ok {
                    self.ctx.stats.leases_deleted += 1;
                    self.roles.table.remove(&key);
                }
            }
            WriteOp::Assign { ref to } | WriteOp::InitiateHandoff { ref to } => {
                let assign = matches!(op, WriteOp::Assign { .. });
                let to = to.clone();
                self.roles.leader_busy.remove(&key);
                if ok {
                    if assign {
                        self.ctx.stats.assignments += 1;
                    } else {
                        self.ctx.stats.handoffs_initiated += 1;
                    }
                    if to == self.ctx.id {
                        self.start_acquire(key);
                    } else {
                        let op = LeaseOp::Notify {
                            worker: to,
                            shard: key,
                        };
                        self.ctx.write(&op, WriteOp::Notify);
                    }
                }
            }
            WriteOp::Notify => {}
            WriteOp::Heartbeat { acked } => {
                self.roles.heartbeat_in_flight = false;
                if let Ok(Some(item)) = result {
                    for k in &acked {
                        self.roles.inbox_acks.remove(k);
                    }
                    match Row::from_item(&item) {
                        Ok(Row::Worker(row)) => {
                            for k in row.assigned {
                                if self.held.contains_key(&k) || self.ctx.phase != Phase::Running {
                                    self.roles.inbox_acks.insert(k);
                                } else {
                                    self.start_acquire(k);
                                }
                            }
                        }
                        Ok(_) => {}
                        Err(error) => self.ctx.malformed(&item, error),
                    }
                }
            }
            WriteOp::LeaderClaim { counter_after } => {
                if ok && self.ctx.phase == Phase::Running {
                    self.roles.leader = Leader::Leading {
                        counter: counter_after,
                        renewed_sent: sent,
                        renewing: false,
                    };
                    self.ctx.stats.leaderships += 1;
                    self.ctx.event(Event::BecameLeader);
                    self.roles.sync_due = true;
                    self.ctx.timers.set(TimerKey::Scan, self.ctx.now);
                } else {
                    self.roles.leader = Leader::Follower;
                }
            }
            WriteOp::LeaderRenew { counter_after } => {
                if let Leader::Leading {
                    counter,
                    renewed_sent,
                    renewing,
                } = &mut self.roles.leader
                {
                    *renewing = false;
                    match result {
                        Ok(_) => {
                            *counter = counter_after;
                            if sent > *renewed_sent {
                                *renewed_sent = sent;
                            }
                        }
                        Err(Failure::ConditionFailed) => {
                            self.roles.leader = Leader::Follower;
                            self.ctx.event(Event::LeadershipLost);
                        }
                        Err(_) => {}
                    }
                }
            }
            WriteOp::LeaderRelease | WriteOp::WorkerRowDelete => {
                if matches!(op, WriteOp::LeaderRelease) {
                    self.roles.leader = Leader::Follower;
                }
                self.roles.stop_writes = self.roles.stop_writes.saturating_sub(1);
            }
        }
    }

    /// Starts holding a lease from the row a take or acquire returned.
    fn adopt(&mut self, item: Item, sent: Instant, steal: bool) {
        match Lease::from_item(&item) {
            Ok(lease) => {
                let key = lease.key.clone();
                if self.held.contains_key(&key) || self.ctx.phase != Phase::Running {
                    return;
                }
                let h = alloc::boxed::Box::new(HeldLease::new(&mut self.ctx, lease, sent, steal));
                self.held.insert(key.clone(), h);
                self.settle(&key);
            }
            Err(error) => self.ctx.malformed(&item, error),
        }
    }

    // ---- inbox and acquisition (Coordinated) ------------------------------------------------

    fn start_acquire(&mut self, key: LeaseKey) {
        if self.held.contains_key(&key) || self.ctx.phase != Phase::Running {
            self.roles.inbox_acks.insert(key);
            return;
        }
        if self.roles.acquiring.contains_key(&key) {
            return;
        }
        self.roles.acquiring.insert(
            key.clone(),
            Acquiring {
                since: self.ctx.now,
                writing: false,
            },
        );
        self.acquire_write(key);
    }

    fn acquire_write(&mut self, key: LeaseKey) {
        let Some(a) = self.roles.acquiring.get_mut(&key) else {
            return;
        };
        if a.writing {
            return;
        }
        a.writing = true;
        let op = LeaseOp::Acquire {
            shard: key,
            worker: self.ctx.id.clone(),
        };
        self.ctx.write(&op, WriteOp::Acquire);
    }

    pub(super) fn acquire_read(&mut self, key: LeaseKey, result: Result<Option<Item>, Failure>) {
        let Some(a) = self.roles.acquiring.get(&key) else {
            self.ctx.stats.stale_results += 1;
            return;
        };
        let give_up_at =
            a.since + self.ctx.config.handoff_timeout + self.ctx.config.failover_time * 2;
        let me = self.ctx.id.clone();
        let row = match &result {
            Ok(Some(item)) => Lease::from_item(item).ok(),
            _ => None,
        };
        let keep_waiting = match (&result, &row) {
            (Ok(None), _) => false,
            (Ok(Some(_)), None) => false,
            (Ok(Some(_)), Some(l)) => l.owner.as_ref() == Some(&me) && !l.is_finished(),
            (Err(_), _) => true,
        };
        if !keep_waiting || self.ctx.now >= give_up_at || self.ctx.phase != Phase::Running {
            self.roles.acquiring.remove(&key);
            self.roles.inbox_acks.insert(key);
            return;
        }
        let ready = row.as_ref().is_some_and(|l| l.checkpoint_owner.is_none());
        if ready {
            self.acquire_write(key);
        } else {
            self.ctx.timers.set_for(
                &key,
                LeaseTimer::HandoffPoll,
                self.ctx.now + self.ctx.config.handoff_poll_interval,
            );
        }
    }

    pub(super) fn acquire_poll(&mut self, key: LeaseKey) {
        if self.roles.acquiring.contains_key(&key) {
            self.acquire_write(key);
        }
    }

    pub(super) fn heartbeat_timer(&mut self) {
        if self.policy() != BalancingPolicy::Coordinated || self.ctx.phase == Phase::Stopped {
            return;
        }
        if !self.roles.heartbeat_in_flight && !self.roles.stop_started {
            self.roles.heartbeat_in_flight = true;
            let acked: Vec<LeaseKey> = self.roles.inbox_acks.iter().cloned().collect();
            let op = LeaseOp::Heartbeat {
                worker: self.ctx.id.clone(),
                max_leases: self.ctx.config.max_leases_per_worker,
                leaving: self.ctx.phase != Phase::Running,
                acked: acked.clone(),
            };
            self.ctx.write(&op, WriteOp::Heartbeat { acked });
        }
        let at = self.ctx.now + self.ctx.config.heartbeat_interval;
        self.ctx.timers.set(TimerKey::Heartbeat, at);
    }

    // ---- leadership (Coordinated) -------------------------------------------------------

    fn check_leadership(&mut self) {
        if let Leader::Leading { renewed_sent, .. } = self.roles.leader {
            if self.ctx.now >= renewed_sent + self.ctx.config.delivery_window() {
                self.roles.leader = Leader::Follower;
                self.ctx.event(Event::LeadershipLost);
            }
        }
    }

    pub(super) fn leader_check_timer(&mut self) {
        self.check_leadership();
        if self.ctx.phase == Phase::Running
            && self.roles.leader == Leader::Follower
            && !self.roles.leader_check_in_flight
        {
            self.roles.leader_check_in_flight = true;
            self.ctx.read(LEADER_KEY, Pending::ReadLeader);
        }
        let at = self.ctx.now + self.ctx.config.leader_check_interval;
        self.ctx.timers.set(TimerKey::LeaderCheck, at);
    }

    pub(super) fn leader_read(&mut self, result: Result<Option<Item>, Failure>) {
        self.roles.leader_check_in_flight = false;
        if self.roles.leader != Leader::Follower || self.ctx.phase != Phase::Running {
            return;
        }
        let me = self.ctx.id.clone();
        let seen_counter = match result {
            Ok(None) => None,
            Ok(Some(item)) => match Row::from_item(&item) {
                Ok(Row::Leader(row)) => {
                    let seen = self.observer.observe(
                        LEADER_KEY,
                        row.counter,
                        row.owner.is_some(),
                        self.ctx.now,
                    );
                    let free = row.owner.is_none()
                        || row.owner.as_ref() == Some(&me)
                        || seen.older_than(self.ctx.now, self.ctx.config.failover_time);
                    if !free {
                        return;
                    }
                    Some(row.counter)
                }
                Ok(_) => return,
                Err(error) => {
                    self.ctx.malformed(&item, error);
                    return;
                }
            },
            Err(_) => return,
        };
        self.roles.leader = Leader::Claiming;
        let op = LeaseOp::ClaimLeader {
            worker: me,
            counter: seen_counter,
        };
        let counter_after = seen_counter.map_or(1, |c| c + 1);
        self.ctx.write(&op, WriteOp::LeaderClaim { counter_after });
    }

    pub(super) fn roles_renew(&mut self) {
        self.check_leadership();
        let me = self.ctx.id.clone();
        if let Leader::Leading {
            counter, renewing, ..
        } = &mut self.roles.leader
        {
            if *renewing {
                return;
            }
            *renewing = true;
            let c = *counter;
            let op = LeaseOp::RenewLeader {
                worker: me,
                counter: c,
            };
            self.ctx.write(
                &op,
                WriteOp::LeaderRenew {
                    counter_after: c + 1,
                },
            );
        }
    }

    // ---- shutdown ---------------------------------------------------------------------

    pub(super) fn shutdown(&mut self) {
        if self.ctx.phase != Phase::Running {
            return;
        }
        self.ctx.phase = Phase::ShuttingDown;
        self.ctx.timers.set(
            TimerKey::Shutdown,
            self.ctx.now + self.ctx.config.shutdown_timeout,
        );
        let keys: Vec<LeaseKey> = self.held.keys().cloned().collect();
        for k in &keys {
            if let Some(h) = self.held.get_mut(k) {
                h.begin_exit(&mut self.ctx, Exit::Shutdown);
            }
            self.settle(k);
        }
        let acquiring: Vec<LeaseKey> = self.roles.acquiring.keys().cloned().collect();
        for k in acquiring {
            self.roles.acquiring.remove(&k);
            self.roles.inbox_acks.insert(k);
        }
        if self.policy() == BalancingPolicy::Coordinated {
            // Tell the leader at once that this worker is leaving.
            self.heartbeat_timer();
        }
    }

    pub(super) fn shutdown_timed_out(&mut self) {
        let keys: Vec<LeaseKey> = self.held.keys().cloned().collect();
        if !self.roles.shutdown_forced {
            self.roles.shutdown_forced = true;
            for k in &keys {
                if let Some(h) = self.held.get_mut(k) {
                    h.handoff_timed_out(&mut self.ctx);
                }
                self.settle(k);
            }
            // One more failover time for the final writes, then stop regardless.
            self.ctx.timers.set(
                TimerKey::Shutdown,
                self.ctx.now + self.ctx.config.failover_time,
            );
        } else {
            for k in &keys {
                if let Some(h) = self.held.get_mut(k) {
                    h.lose(&mut self.ctx);
                }
                self.settle(k);
            }
            self.roles.stop_writes = 0;
            self.roles.stop_started = true;
        }
    }

    /// After every input: finish a shutdown once nothing is held any more.
    pub(super) fn after_input(&mut self) {
        if self.ctx.phase != Phase::ShuttingDown || !self.held.is_empty() {
            return;
        }
        if !self.roles.stop_started {
            self.roles.stop_started = true;
            let me = self.ctx.id.clone();
            if let Leader::Leading { counter, .. } = self.roles.leader {
                self.roles.stop_writes += 1;
                let op = LeaseOp::ReleaseLeader {
                    worker: me.clone(),
                    counter,
                };
                self.ctx.write(&op, WriteOp::LeaderRelease);
            }
            if self.policy() == BalancingPolicy::Coordinated {
                self.roles.stop_writes += 1;
                let op = LeaseOp::DeleteWorkerRow { worker: me };
                self.ctx.write(&op, WriteOp::WorkerRowDelete);
            }
        }
        if self.roles.stop_writes == 0 {
            self.ctx.phase = Phase::Stopped;
            self.ctx.event(Event::Stopped);
        }
    }
}
