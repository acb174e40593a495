//! The leader's duties under `Coordinated`: planning from the table view ([`crate::balance`])
//! into assignments and handoffs, telling the new owners, and deleting finished leases.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;
use core::time::Duration;

use super::heads_up::HeadsUps;
use super::{Worker, WriteOp};
use crate::balance::{self, Move, PlanLease, PlanWorker};
use crate::io::{Failure, Record};
use crate::item::{Item, Text};
use crate::lease::{LeaseKey, WorkerId, WorkerRow};
use crate::protocol::LeaseOp;
use crate::worker::table_view::{LeaseTable, Progress, TableLease, TableView};

#[derive(Clone, Debug, Default)]
pub(crate) struct Planning {
    /// The leases with a write of the leader in flight (an assignment, a handoff or a delete):
    /// the next plan leaves them alone.
    busy: BTreeSet<LeaseKey>,
    /// Notifications that failed without landing, sent again with the next plan.
    notify_again: BTreeSet<(WorkerId, LeaseKey, u64, bool)>,
    /// Dead workers whose row's deletion is in flight.
    deleting_workers: BTreeSet<WorkerId>,
    /// Leases moved by this leader (or noted again) whose new owner has not acquired them yet.
    unacquired: Unacquired,
    /// Worker liveness: the workers whose fence is in flight.
    fencing: BTreeSet<WorkerId>,
    /// Worker liveness: the incarnations this leader fenced, while a lease of the last scan
    /// still names one: those leases are free at once.
    fenced: BTreeSet<Text>,
    /// Worker liveness: silent workers, and the receivers told of their leases.
    pub(super) heads_ups: HeadsUps,
}

/// The leases this leader moved, or noted again, whose new owner has not acquired them yet,
/// each until a scan shows it acquired or changed since (its counter moved past the one kept:
/// a scan that read the row before the move landed shows less, and the lease still waits).
#[derive(Clone, Debug, Default)]
struct Unacquired {
    /// Assigned, with the counter the assignment left: until the new owner's acquire moves it,
    /// the lease is not handed on (the handoff would name as checkpoint owner a worker that
    /// holds nothing, and stall until the lease expired), and it is free again once the new
    /// owner falls silent.
    assigned: BTreeMap<LeaseKey, u64>,
    /// Handed over, with the receiver, until a scan shows the handoff ended.
    handing_off: BTreeMap<LeaseKey, WorkerId>,
    /// Handoffs a scan showed completed and maybe not acquired yet (the receiver acquires once
    /// it read its note, up to a heartbeat later), with the counter the completion left: not
    /// handed on until the counter moves. Only moving waits: unlike an assignment, such a lease
    /// is never freed here, because a row of lease liveness looks the same once acquired.
    handed_over: BTreeMap<LeaseKey, u64>,
    /// Worker liveness: noted again by `note_orphaned_assignments`, with the counter they stood
    /// at, so that each is noted once. Never freed either, for the same reason.
    noted_again: BTreeMap<LeaseKey, u64>,
}

impl Unacquired {
    /// Forgets what `view` shows acquired or changed since, and notes the handoffs it shows
    /// completed and maybe not acquired.
    fn forget_settled(&mut self, view: &LeaseTable) {
        let unchanged = |key: &LeaseKey, counter: &mut u64| {
            view.get(key).is_some_and(|l| l.counter <= *counter)
        };
        self.assigned.retain(unchanged);
        self.handed_over.retain(unchanged);
        self.noted_again.retain(unchanged);
        let handed_over = &mut self.handed_over;
        self.handing_off.retain(|key, to| {
            let Some(l) = view.get(key) else {
                return false;
            };
            if l.checkpoint_owner.is_some() {
                return true;
            }
            // Ended. Without an incarnation the receiver may not have acquired it yet (under
            // lease liveness an acquired row looks the same: it waits for its next renewal).
            if l.owner.as_ref() == Some(to) && l.owner_incarnation.is_none() {
                handed_over.insert(key.clone(), l.counter);
            }
            false
        });
    }

    /// Whether `key` waits for its new owner's acquire, and is not to be handed on meanwhile.
    fn waits(&self, key: &LeaseKey) -> bool {
        self.assigned.contains_key(key) || self.handed_over.contains_key(key)
    }
}

/// Under worker liveness, what a lease's `ownerIncarnation` says of its holder.
enum Judged {
    /// Its process lives (or may: judged again at the next scan).
    Alive,
    /// Its process lives, and its row is watched: fenced once it stands still long enough.
    Watched(WorkerId),
    /// Its process is gone for good: fenced, taken over, deleted, or given up.
    Gone,
    /// Its worker row stood still for the failover time: fence it first.
    Fence(WorkerId, u64),
}

/// Judges the holder of a lease acquired by `incarnation` (the checkpoint owner during a
/// handoff, which is who delivers), from the worker rows of the scan completed at `scanned_at`.
/// A row showing another incarnation (or none) is only believed for a lease first seen in an
/// earlier scan: a scan reads rows one by one, and the row may have been read before the
/// process registered and acquired.
fn judge(
    lease: &TableLease,
    incarnation: &Text,
    view: &TableView,
    planning: &Planning,
    seen_still: impl Fn(&WorkerId) -> bool,
    me: &WorkerId,
) -> Judged {
    let Some(holder) = lease.checkpoint_owner.as_ref().or(lease.owner.as_ref()) else {
        return Judged::Gone;
    };
    if planning.fenced.contains(incarnation) {
        return Judged::Gone;
    }
    let row = view.workers.get(holder);
    let same_process = row.is_some_and(|r| r.incarnation.as_deref() == Some(incarnation.as_str()));
    if !same_process {
        let seen_before = lease
            .seen
            .since
            .is_some_and(|s| view.scanned_at.is_some_and(|at| s < at));
        return if seen_before {
            Judged::Gone
        } else {
            Judged::Alive
        };
    }
    match row {
        Some(r) if holder != me && seen_still(holder) => Judged::Fence(holder.clone(), r.counter),
        Some(_) if holder != me => Judged::Watched(holder.clone()),
        _ => Judged::Alive,
    }
}

/// What a plan judged of the leases of the last scan: the leases as the planner sees them
/// (a lease whose holder is gone has none), the workers to fence first, and the workers whose
/// row is watched.
pub(super) struct Judgement {
    pub(super) leases: Vec<PlanLease>,
    fences: BTreeMap<WorkerId, (u64, Text)>,
    pub(super) watched: BTreeSet<WorkerId>,
}

impl<R: Record + Clone> Worker<R> {
    /// Plans from the last scan's view, in this order: the notifications that failed are sent
    /// again; the assignments and handoffs of the plan are sent (the handoffs not while
    /// `handoffs_wait`); the fence timer is set for the next watched row to stand still long
    /// enough; the fences are sent.
    pub(super) fn plan(&mut self, handoffs_wait: bool) {
        for (worker, shard, counter, handoff) in core::mem::take(&mut self.planning.notify_again) {
            self.notify(worker, shard, counter, handoff);
        }
        let mut workers = self.plan_workers();
        self.forget_settled();
        let judgement = self.judge_leases();
        let leases = &judgement.leases;
        balance::set_aside_stalled(&mut workers, leases);
        let budget = usize::try_from(
            ((leases.len() as u64) * self.ctx.config.move_budget_per_mille / 1000).max(1),
        )
        .unwrap_or(usize::MAX);
        let plan = balance::plan(
            leases,
            &workers,
            budget,
            self.ctx.config.throughput_weighting,
        );
        for m in plan.moves {
            if handoffs_wait && matches!(m, Move::Handoff { .. }) {
                continue;
            }
            self.send_move(m, leases, &workers);
        }
        self.note_orphaned_assignments();
        self.set_fence_timer(&judgement.watched);
        self.send_fences(judgement.fences);
        self.check_silent(&judgement.watched);
    }

    /// Worker liveness: notes again an assignment the scan shows not acquired whose new owner's
    /// row names no note of that lease, once the lease stood still for `receiver_expiry`. Its
    /// note was lost (the leader that assigned it failed before the note landed) or removed
    /// (the new owner registered again); without it the lease would wait out the failover
    /// time. Once per assignment, and nothing more: a row of lease liveness looks the same once
    /// acquired (its holder, renewing, reads the note and keeps the lease), so it must not be
    /// freed as an assignment would be. A note too many costs a read, never exclusivity: the
    /// acquire is conditional on the counter.
    fn note_orphaned_assignments(&mut self) {
        if !self.ctx.config.worker_liveness() {
            return;
        }
        let (now, expiry) = (self.ctx.now, self.ctx.config.receiver_expiry());
        let orphans: Vec<(WorkerId, LeaseKey, u64)> = self
            .view
            .leases
            .iter()
            .filter(|(key, l)| {
                l.checkpoint_owner.is_none()
                    && l.owner_incarnation.is_none()
                    && !l.is_finished()
                    && l.seen.older_than(now, expiry)
                    && !self.planning.unacquired.assigned.contains_key(*key)
                    && self.planning.unacquired.noted_again.get(*key) != Some(&l.counter)
                    && !self.planning.busy.contains(*key)
            })
            .filter_map(|(key, l)| {
                let owner = l.owner.as_ref().filter(|o| **o != self.ctx.id)?;
                let row = self.view.workers.get(owner)?;
                let noted = row.assigned.iter().any(|a| a.shard == *key);
                (!noted && !row.leaving && !self.silent(owner))
                    .then(|| (owner.clone(), key.clone(), l.counter))
            })
            .collect();
        for (owner, key, counter) in orphans {
            self.planning
                .unacquired
                .noted_again
                .insert(key.clone(), counter);
            self.ctx.stats.orphaned_assignments_noted += 1;
            self.notify(owner, key, counter, false);
        }
    }

    /// The workers a plan may give leases to: every worker row of the scan but those that stood
    /// still past `receiver_expiry` (left out: given nothing, their leases neither counted nor
    /// moved until they are fenced) and, under worker liveness, fenced ones; and this leader
    /// once its own heartbeat landed. (Those whose reads stalled are set aside once the leases
    /// are judged: [`balance::set_aside_stalled`].)
    pub(super) fn plan_workers(&self) -> Vec<PlanWorker> {
        let me = &self.ctx.id;
        let worker_liveness = self.ctx.config.worker_liveness();
        let mut workers: Vec<PlanWorker> = self
            .view
            .workers
            .values()
            .filter(|w| self.receives(w))
            .map(|w| PlanWorker {
                id: w.worker.clone(),
                max_leases: w.max_leases,
                leaving: w.leaving,
                reads_stalled: w.reads_stalled,
                pick_up_ms: u64::try_from(self.pick_up_in(w).as_millis()).unwrap_or(u64::MAX),
            })
            .collect();
        // Under worker liveness a leader whose heartbeat has not landed (it gave its incarnation
        // up) takes nothing until it has: it could not deliver.
        if !worker_liveness || self.ctx.heartbeats.landed.is_some() {
            workers.push(PlanWorker {
                id: me.clone(),
                max_leases: self.ctx.config.max_leases_per_worker,
                leaving: false,
                reads_stalled: self.kinesis.stalled(&self.ctx.config),
                pick_up_ms: 0,
            });
        }
        workers
    }

    /// How long until another worker is expected to read an assignment, which its next
    /// heartbeat does: that lands at the latest a heartbeat interval after the scan that first
    /// showed the last one (at once for a worker told of a lease by a heads-up: it heartbeats
    /// every poll). A worker whose heartbeat is overdue (slow, cut off, or shown stale by the
    /// scan) ranks after every punctual one, by how late it is, told or not.
    fn pick_up_in(&self, w: &WorkerRow) -> Duration {
        let interval = self.ctx.config.heartbeat_interval;
        let Some(since) = self.seen(&WorkerRow::key(&w.worker)).since else {
            return Duration::MAX;
        };
        let due = since + interval;
        if due < self.ctx.now {
            interval + self.ctx.now.saturating_since(due)
        } else if self
            .planning
            .heads_ups
            .expects(&w.worker, self.ctx.now, &self.ctx.config)
        {
            Duration::ZERO
        } else {
            due.saturating_since(self.ctx.now)
        }
    }

    /// Whether another worker's row, as the last scan showed it, may be given leases: it moved
    /// within `receiver_expiry`, and under worker liveness names an incarnation this leader has
    /// not fenced (a fenced row takes nothing until its worker registered again).
    fn receives(&self, w: &WorkerRow) -> bool {
        w.worker != self.ctx.id
            && !self
                .seen(&WorkerRow::key(&w.worker))
                .older_than(self.ctx.now, self.ctx.config.receiver_expiry())
            && (!self.ctx.config.worker_liveness()
                || w.incarnation
                    .as_deref()
                    .is_some_and(|i| !self.planning.fenced.contains(i)))
    }

    /// The follower the leader row names standby: one that may be given leases and is not
    /// leaving, outside this leader's failure domain when such a worker exists; the one named
    /// before while it qualifies (a new standby has watched nothing yet), else the first by id.
    /// None without a standby scan interval, or before the leader's first scan.
    pub(super) fn choose_standby(&self) -> Option<WorkerId> {
        self.ctx.config.standby_scan_interval?;
        let mine = self.ctx.config.failure_domain.as_deref();
        let elsewhere = |w: &WorkerRow| {
            mine.is_some() && w.failure_domain.is_some() && w.failure_domain.as_deref() != mine
        };
        let eligible: Vec<&WorkerRow> = self
            .view
            .workers
            .values()
            .filter(|w| !w.leaving && self.receives(w))
            .collect();
        let pool: Vec<&WorkerRow> = if eligible.iter().any(|w| elsewhere(w)) {
            eligible.into_iter().filter(|w| elsewhere(w)).collect()
        } else {
            eligible
        };
        let named = self.election.named_standby();
        pool.iter()
            .find(|w| Some(&w.worker) == named)
            .or(pool.first())
            .map(|w| w.worker.clone())
    }

    /// Forgets the moves the scan shows acquired or changed since ([`Unacquired`]), and the
    /// fenced incarnations no lease of the scan names any more.
    fn forget_settled(&mut self) {
        let view = &self.view.leases;
        self.planning.unacquired.forget_settled(view);
        if !self.planning.fenced.is_empty() {
            let named: BTreeSet<&str> = view
                .iter()
                .filter_map(|(_, l)| l.owner_incarnation.as_deref())
                .collect();
            self.planning.fenced.retain(|i| named.contains(i.as_str()));
        }
    }

    /// Judges every lease of the scan that is not finished and whose parents are done: free
    /// (unowned, expired, or its holder gone), held, or held by a worker to fence first.
    pub(super) fn judge_leases(&self) -> Judgement {
        let now = self.ctx.now;
        let d = self.ctx.config.failover_time;
        let mut fences: BTreeMap<WorkerId, (u64, Text)> = BTreeMap::new();
        let mut watched: BTreeSet<WorkerId> = BTreeSet::new();
        let seen_still = |w: &WorkerId| self.seen(&WorkerRow::key(w)).older_than(now, d);
        let leases: Vec<PlanLease> = self
            .view
            .leases
            .iter()
            .filter(|(_, l)| !l.is_finished() && self.parents_done(l))
            .map(|(key, l)| {
                let expired = l.owner.is_none()
                    // A lease acquired under worker liveness is judged by its holder's row
                    // whatever this leader's own setting: a fleet moving from one setting to
                    // the other has leaders of both.
                    || match l.owner_incarnation.as_ref() {
                        None => {
                            l.seen.older_than(now, d)
                                || (self.planning.unacquired.assigned.get(key) == Some(&l.counter)
                                    && l.owner.as_ref().is_some_and(|w| self.silent(w)))
                        }
                        Some(incarnation) => {
                            match judge(
                                l,
                                incarnation,
                                &self.view,
                                &self.planning,
                                seen_still,
                                &self.ctx.id,
                            ) {
                                Judged::Alive => false,
                                Judged::Watched(worker) => {
                                    watched.insert(worker);
                                    false
                                }
                                Judged::Gone => true,
                                Judged::Fence(worker, counter) => {
                                    fences.insert(worker, (counter, incarnation.clone()));
                                    false
                                }
                            }
                        }
                    };
                PlanLease {
                    key: key.clone(),
                    holder: if expired { None } else { l.owner.clone() },
                    counter: l.counter,
                    weight: l.throughput_kbps.map_or(1.0, f64::from),
                    in_handoff: (!expired
                        && (l.checkpoint_owner.is_some() || self.planning.unacquired.waits(key)))
                        || self.planning.busy.contains(key),
                }
            })
            .collect();
        Judgement {
            leases,
            fences,
            watched,
        }
    }

    /// Whether `worker` takes no new lease: its row stood still past `receiver_expiry`, is
    /// fenced (no incarnation), or is gone. A lease assigned to it and not yet acquired is free
    /// again: nobody delivers it, and its acquire and a new assignment are both conditional on
    /// the counter the assignment left, so only one of them lands.
    fn silent(&self, worker: &WorkerId) -> bool {
        let expiry = self.ctx.config.receiver_expiry();
        match self.view.workers.get(worker) {
            Some(row) => {
                row.incarnation.is_none()
                    || self
                        .seen(&WorkerRow::key(worker))
                        .older_than(self.ctx.now, expiry)
            }
            None => *worker != self.ctx.id,
        }
    }

    /// Sends one move of a plan: an assignment or a handoff, unless a write of the leader on
    /// that lease is in flight.
    fn send_move(&mut self, m: Move, leases: &[PlanLease], workers: &[PlanWorker]) {
        match m {
            Move::Assign {
                lease,
                to,
                expect_counter,
            } => {
                let (lease, to) = (leases[lease].key.clone(), workers[to].id.clone());
                if !self.planning.busy.insert(lease.clone()) {
                    return;
                }
                let op = LeaseOp::Assign {
                    shard: lease,
                    counter: expect_counter,
                    to: to.clone(),
                };
                let counter_after = expect_counter + 1;
                self.ctx.write(&op, WriteOp::Assign { to, counter_after });
            }
            Move::Handoff { lease, from, to } => {
                let (counter, lease, from, to) = (
                    leases[lease].counter,
                    leases[lease].key.clone(),
                    &workers[from].id,
                    workers[to].id.clone(),
                );
                if !self.planning.busy.insert(lease.clone()) {
                    return;
                }
                self.planning
                    .unacquired
                    .handing_off
                    .insert(lease.clone(), to.clone());
                // A holder under worker liveness renews nothing, so it is told.
                let tell_from = self
                    .view
                    .leases
                    .get(&lease)
                    .is_some_and(|l| l.owner_incarnation.is_some())
                    .then(|| from.clone());
                let op = LeaseOp::InitiateHandoff {
                    shard: lease,
                    from: from.clone(),
                    to: to.clone(),
                };
                self.ctx.write(
                    &op,
                    WriteOp::InitiateHandoff {
                        tell_from,
                        to,
                        counter,
                    },
                );
            }
        }
    }

    /// The next watched row to stand still long enough is scanned (and fenced) then, not at
    /// the scan after.
    fn set_fence_timer(&mut self, watched: &BTreeSet<WorkerId>) {
        let d = self.ctx.config.failover_time;
        let next_fence = watched
            .iter()
            .filter_map(|w| self.seen(&WorkerRow::key(w)).since)
            .min()
            .map(|since| since + d + Duration::from_millis(1));
        if let Some(at) = next_fence.filter(|at| *at > self.ctx.now) {
            self.ctx.timers.set(super::timers::TimerKey::Fence, at);
        }
    }

    /// Fences each worker judged still for the failover time, unless its fence is in flight.
    fn send_fences(&mut self, fences: BTreeMap<WorkerId, (u64, Text)>) {
        for (worker, (counter, incarnation)) in fences {
            if !self.planning.fencing.insert(worker.clone()) {
                continue;
            }
            let op = LeaseOp::FenceWorker {
                worker: worker.clone(),
                counter,
                incarnation: incarnation.clone(),
            };
            self.ctx.write(
                &op,
                WriteOp::FenceWorker {
                    worker,
                    incarnation,
                },
            );
        }
    }

    /// A watched worker row may have stood still for the failover time: scan now, and plan
    /// from that scan. The leader plans only from a scan's view: its own moves since the last
    /// scan are not in it, so a plan between scans would assign a lease again and count the
    /// receivers' loads without what they were just given.
    pub(super) fn fence_timer(&mut self) {
        self.scan_soon();
    }

    /// Scans now, unless a scan is in flight (its answer plans).
    pub(super) fn scan_soon(&mut self) {
        if self.ctx.phase == super::Phase::Running
            && self.election.is_leader(&self.ctx.config, self.ctx.now)
        {
            self.ctx
                .timers
                .set(super::timers::TimerKey::Scan, self.ctx.now);
        }
    }

    /// A fence's answer. Once it landed, none of the fenced process's heartbeats lands again
    /// and its windows have closed (its counter stood still for the failover time on this
    /// clock), so its leases are planned at once, from a scan made now (whatever the scan
    /// shows of the row, the fenced incarnation is kept here). Refused: it heartbeat meanwhile,
    /// or its row changed hands; the next scan shows which.
    pub(super) fn fenced(
        &mut self,
        worker: WorkerId,
        incarnation: Text,
        result: Result<Option<Item>, Failure>,
    ) {
        self.planning.fencing.remove(&worker);
        if result.is_err() {
            return;
        }
        self.ctx.stats.workers_fenced += 1;
        // The answer may come after a scan showed the row written again by the worker's next
        // process: only the process fenced is gone.
        if let Some(row) = self.view.workers.get_mut(&worker) {
            if row.incarnation.as_deref() == Some(incarnation.as_str()) {
                row.incarnation = None;
            }
        }
        self.planning.fenced.insert(incarnation);
        self.scan_soon();
    }

    /// Deletes the rows of workers whose heartbeat counter stood still for `worker_row_retention`
    /// on this leader's clock, each conditional on that counter (a heartbeat since keeps it).
    pub(super) fn delete_dead_worker_rows(&mut self) {
        let (now, retention) = (self.ctx.now, self.ctx.config.worker_row_retention);
        let dead: Vec<(WorkerId, u64, Option<Text>)> = self
            .view
            .workers
            .values()
            .filter(|w| {
                w.worker != self.ctx.id
                    && !self.planning.deleting_workers.contains(&w.worker)
                    && self
                        .seen(&WorkerRow::key(&w.worker))
                        .older_than(now, retention)
            })
            .map(|w| {
                let incarnation = w.incarnation.as_deref().map(Text::from);
                (w.worker.clone(), w.counter, incarnation)
            })
            .collect();
        for (worker, counter, incarnation) in dead {
            self.planning.deleting_workers.insert(worker.clone());
            let op = LeaseOp::DeleteDeadWorkerRow {
                worker: worker.clone(),
                counter,
                incarnation,
            };
            self.ctx.write(&op, WriteOp::DeleteDeadWorkerRow { worker });
        }
    }

    pub(super) fn dead_worker_row_deleted(
        &mut self,
        worker: WorkerId,
        result: Result<Option<Item>, Failure>,
    ) {
        self.planning.deleting_workers.remove(&worker);
        if result.is_ok() {
            self.ctx.stats.worker_rows_deleted += 1;
            self.view.workers.remove(&worker);
        }
    }

    /// Deletes the finished leases whose children have started and whose own parents are gone.
    pub(super) fn cleanup(&mut self) {
        let table = &self.view.leases;
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
            if self.planning.busy.contains(key) || l.parents.iter().any(|p| table.contains_key(p)) {
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
            self.planning.busy.insert(key.clone());
            let op = LeaseOp::Delete {
                shard: key,
                counter,
            };
            self.ctx.write(&op, WriteOp::Delete);
        }
    }

    pub(super) fn deleted(&mut self, key: LeaseKey, result: Result<Option<Item>, Failure>) {
        self.planning.busy.remove(&key);
        if result.is_ok() {
            self.ctx.stats.leases_deleted += 1;
            self.view.leases.remove(&key);
        }
    }

    pub(super) fn assigned(
        &mut self,
        key: LeaseKey,
        to: WorkerId,
        counter_after: u64,
        result: Result<Option<Item>, Failure>,
    ) {
        self.planning.busy.remove(&key);
        if result.is_ok() {
            self.ctx.stats.assignments += 1;
        }
        if may_have_landed(&result) {
            self.planning
                .unacquired
                .assigned
                .insert(key.clone(), counter_after);
            self.tell_new_owner(key, to, counter_after, false);
        }
    }

    pub(super) fn handoff_initiated(
        &mut self,
        key: LeaseKey,
        tell_from: Option<WorkerId>,
        to: WorkerId,
        counter: u64,
        result: Result<Option<Item>, Failure>,
    ) {
        self.planning.busy.remove(&key);
        if result.is_ok() {
            self.ctx.stats.handoffs_initiated += 1;
        }
        if may_have_landed(&result) {
            // No renewal shows a holder under worker liveness the row: it is told too.
            match tell_from {
                Some(from) if from == self.ctx.id => {
                    self.touch(&key, |h, _| h.renew_due());
                }
                Some(from) => self.notify(from, key.clone(), counter, true),
                None => {}
            }
            self.tell_new_owner(key, to, counter, true);
        }
    }

    /// The new owner of an assignment or handoff learns of it from its worker row (or, when it
    /// is this worker, acquires it at once). It is told when the write may have landed too: a
    /// new owner told of a move that did not happen finds the row not its own and gives up
    /// (once the next plan could have sent the move again: see [`crate::protocol`]),
    /// while one never told leaves the lease unprocessed until it expires.
    fn tell_new_owner(&mut self, key: LeaseKey, to: WorkerId, counter: u64, handoff: bool) {
        if to == self.ctx.id {
            self.start_acquire(key, None, (!handoff).then_some(counter));
        } else {
            self.notify(to, key, counter, handoff);
        }
    }

    fn notify(&mut self, worker: WorkerId, shard: LeaseKey, counter: u64, handoff: bool) {
        let op = LeaseOp::Notify {
            worker: worker.clone(),
            shard: shard.clone(),
            counter,
            handoff,
        };
        self.ctx.write(
            &op,
            WriteOp::Notify {
                worker,
                shard,
                counter,
                handoff,
            },
        );
    }

    /// A notification's answer: one that did not land (throttled, or of unknown outcome) is
    /// sent again with the next plan; a refused one means the worker row is gone.
    pub(super) fn notified(
        &mut self,
        worker: WorkerId,
        shard: LeaseKey,
        counter: u64,
        handoff: bool,
        result: Result<Option<Item>, Failure>,
    ) {
        if matches!(result, Err(ref f) if *f != Failure::ConditionFailed) {
            self.planning
                .notify_again
                .insert((worker, shard, counter, handoff));
        }
    }
}

/// Whether a write may have landed: it did, or its answer was lost (a timeout or a 5xx).
fn may_have_landed(result: &Result<Option<Item>, Failure>) -> bool {
    !matches!(result, Err(Failure::ConditionFailed | Failure::Throttled))
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::lease::{Lease, LeaseKey, Row, WorkerId, WorkerRow};
    use crate::protocol::LeaseOp;
    use crate::sequence::{Position, SequenceNumber};
    use crate::worker::testing::{owned, unowned, Harness};
    use crate::write::{WriteAction, WriteKind};

    fn heartbeat(h: &mut Harness, worker: &str) {
        heartbeat_in(h, worker, None);
    }

    /// A heartbeat of `worker`, naming its failure domain.
    fn heartbeat_in(h: &mut Harness, worker: &str, domain: Option<&str>) {
        beat(h, worker, domain, false, &[]);
    }

    /// A heartbeat of `worker` saying whether its reads stalled, acknowledging `acked`.
    fn beat(
        h: &mut Harness,
        worker: &str,
        domain: Option<&str>,
        reads_stalled: bool,
        acked: &[&str],
    ) {
        h.apply(&LeaseOp::Heartbeat {
            failure_domain: domain.map(crate::item::Text::from),
            worker: WorkerId::from(worker),
            incarnation: worker.into(),
            takeover: None,
            registered: false,
            previous: None,
            max_leases: u64::MAX,
            leaving: false,
            reads_stalled,
            acked: acked.iter().map(|&note| note.into()).collect(),
        });
    }

    fn worker_liveness() -> Config {
        Config::default().with_worker_liveness()
    }

    /// `shard-1`, acquired by the process `incarnation` of w2.
    fn acquired_by_w2(h: &mut Harness, incarnation: &str) {
        acquired(h, "shard-1", "w2", incarnation);
    }

    /// `key`, acquired by the process `incarnation` of `worker`.
    fn acquired(h: &mut Harness, key: &str, worker: &str, incarnation: &str) {
        let mut l = unowned(key);
        l.owner = Some(WorkerId::from(worker));
        l.counter = 3;
        l.owner_incarnation = Some(incarnation.into());
        h.put(&l);
    }

    /// Runs the harness to `end` in steps of `step` ms, w2 heartbeating after each.
    fn w2_heartbeats_until(h: &mut Harness, step: usize, end: u64) {
        for t in (step as u64..=end).step_by(step) {
            h.run_until(t);
            heartbeat(h, "w2");
        }
    }

    fn position_of(h: &Harness, kind: WriteKind, key: &str) -> Option<usize> {
        h.log.iter().position(|c| {
            matches!(c, crate::io::Command::WriteLease { write, .. } if write.kind == kind && write.key == key)
        })
    }

    /// The notes of w2's row, by lease.
    fn notes_of_w2(h: &Harness) -> alloc::vec::Vec<alloc::string::String> {
        match h
            .table
            .get(&WorkerRow::key(&WorkerId::from("w2")))
            .map(Row::from_item)
        {
            Some(Ok(Row::Worker(row))) => row
                .assigned
                .into_iter()
                .map(|a| a.note.as_str().into())
                .collect(),
            other => panic!("{other:?}"),
        }
    }

    /// A lease assigned to w2 and not acquired, whose note w2's row does not name: the leader
    /// that assigned it failed before its note landed, or w2 registered again since, which
    /// removes its notes. This leader writes the note again once the lease stood still for
    /// `receiver_expiry`, once, rather than let it wait out the failover time and assign it
    /// again. (A row of lease liveness looks the same once acquired: the note is all this
    /// leader does, so a holder renewing per lease whose renewals failed loses nothing.)
    #[test]
    fn an_assignment_whose_note_is_missing_is_noted_again() {
        let mut h = Harness::new(worker_liveness(), "w1");
        heartbeat(&mut h, "w2");
        h.put(&owned("shard-1", "w2", 4));
        w2_heartbeats_until(&mut h, 500, 8_000);
        assert_eq!(notes_of_w2(&h), ["shard-1@4"]);
        assert!(h.writes(WriteKind::Assign).is_empty());
        // w2 acknowledges the note and still does not acquire: it is not noted again.
        let notes = h.writes(WriteKind::Notify).len();
        beat(&mut h, "w2", None, false, &["shard-1@4"]);
        for t in (8_500..=9_500).step_by(500) {
            h.run_until(t);
            heartbeat(&mut h, "w2");
        }
        assert!(notes_of_w2(&h).is_empty());
        assert_eq!(h.writes(WriteKind::Notify).len(), notes);
    }

    /// A lease noted again is only noted: a row of lease liveness looks the same once acquired,
    /// so when its owner falls silent it is not freed as an assignment of this leader would be
    /// (after `receiver_expiry`), but only once its counter stood still for the failover time.
    /// A failover time of 30 s keeps the two apart (`receiver_expiry` is 3 s here).
    #[test]
    fn a_lease_noted_again_is_not_freed_when_its_owner_falls_silent() {
        let config = Config {
            failover_time: core::time::Duration::from_secs(30),
            heartbeat_interval: core::time::Duration::from_secs(2),
            ..worker_liveness()
        };
        let mut h = Harness::new(config, "w1");
        heartbeat(&mut h, "w2");
        h.put(&owned("shard-1", "w2", 4));
        w2_heartbeats_until(&mut h, 500, 6_000);
        assert_eq!(notes_of_w2(&h), ["shard-1@4"]);
        // w2 falls silent.
        h.run_until(20_000);
        assert!(
            h.writes(WriteKind::Assign).is_empty(),
            "freed before its counter expired"
        );
        h.run_until(40_000);
        assert_eq!(h.writes(WriteKind::Assign).len(), 1, "then it is");
    }

    /// Worker liveness: the lease of a worker whose row stood still is assigned only after the
    /// fence of that row landed; the lease of a worker whose row moves stays where it is. A
    /// leader renewing per lease judges such a lease the same way (a fleet changing its setting
    /// has leaders of both kinds).
    #[test]
    fn under_worker_liveness_a_still_worker_is_fenced_before_its_leases_move() {
        for leader in [worker_liveness(), Config::default()] {
            a_still_worker_is_fenced_by(leader);
        }
    }

    fn a_still_worker_is_fenced_by(leader: Config) {
        let mut h = Harness::new(leader, "w1");
        heartbeat(&mut h, "w2");
        acquired_by_w2(&mut h, "w2");
        w2_heartbeats_until(&mut h, 2_000, 40_000);
        assert_eq!(
            h.lease("shard-1").and_then(|l| l.owner),
            Some(WorkerId::from("w2"))
        );
        assert!(h.writes(WriteKind::Fence).is_empty());
        assert!(h.writes(WriteKind::Assign).is_empty());
        // w2 stops.
        h.run_until(60_000);
        assert!(h.holds("shard-1"), "assigned to w1 and acquired");
        let fence = position_of(&h, WriteKind::Fence, &WorkerRow::key(&WorkerId::from("w2")));
        let assign = position_of(&h, WriteKind::Assign, "shard-1");
        assert!(
            fence.is_some() && assign.is_some() && fence < assign,
            "{fence:?} {assign:?}"
        );
        assert_eq!(h.writes(WriteKind::Fence).len(), 1);
        assert_eq!(h.w.stats().workers_fenced, 1);
        let incarnation = h.lease("shard-1").and_then(|l| l.owner_incarnation);
        assert_ne!(incarnation.as_deref(), Some("w2"), "w1's, if any");
    }

    /// Worker liveness: a worker whose row stood still for a heartbeat interval and a half takes
    /// no new lease. When a machine dies, the lease of the first of its workers to be fenced
    /// goes to a live worker, not to another dead one not yet fenced (which would hold it for a
    /// failover time more).
    #[test]
    fn a_lease_freed_by_a_fence_goes_to_a_worker_that_heartbeats() {
        let mut h = w1_leading_w2_and_w3();
        // w2 heartbeats until 20 s, w3 until 23 s; the first fence frees w2's lease while w3,
        // the least loaded, has stood still for about seven seconds.
        for t in (11_000..=23_000).step_by(1_000) {
            h.run_until(t);
            if t <= 20_000 {
                heartbeat(&mut h, "w2");
            }
            heartbeat(&mut h, "w3");
        }
        h.run_until(45_000);
        let receivers: alloc::vec::Vec<alloc::string::String> = h
            .writes(WriteKind::Assign)
            .iter()
            .filter(|w| w.key == "shard-w2")
            .map(|w| alloc::format!("{:?}", w.action))
            .collect();
        assert!(!receivers.is_empty());
        assert!(receivers.iter().all(|a| !a.contains("w3")), "{receivers:?}");
        assert!(
            h.holds("shard-w2") && h.holds("shard-w3"),
            "both freed, to w1"
        );
    }

    /// A scan can read a lease before the leader's assignment of it lands (the driver's scans
    /// race its writes). Planning from such a view must not forget that the lease awaits its
    /// new owner's acquire: handed on before that, the handoff names as checkpoint owner a worker
    /// that holds nothing, and the lease stalls until it expires.
    #[test]
    fn a_scan_read_before_an_assignment_landed_does_not_free_the_lease_for_a_handoff() {
        let mut h = w1_leading_w2_and_w3();
        let before_assignment = h.table.get("shard-w3").cloned().expect("shard-w3");
        // w3 stops at 20 s; w2 heartbeats on and is given shard-w3 (w1 holds two already).
        let mut t = 11_000;
        while h.lease("shard-w3").and_then(|l| l.owner) != Some(WorkerId::from("w2")) {
            assert!(t < 60_000, "shard-w3 never assigned to w2");
            h.run_until(t);
            heartbeat(&mut h, "w2");
            if t <= 20_000 {
                heartbeat(&mut h, "w3");
            }
            t += 500;
        }
        // w4 joins; the leader's next scan reads shard-w3 as it was before the assignment.
        heartbeat(&mut h, "w4");
        h.cut_off = true;
        let from = h.log.len();
        let mut scan = None;
        while scan.is_none() {
            t += 100;
            h.run_until(t);
            scan = h.log[from..].iter().find_map(|c| match c {
                crate::io::Command::ScanLeaseTable { req, .. } => Some(*req),
                _ => None,
            });
        }
        let unanswered: alloc::vec::Vec<_> = h.log[from..]
            .iter()
            .filter(|c| c.request() != scan)
            .filter_map(|c| c.failed(crate::io::Failure::Transient))
            .collect();
        h.cut_off = false;
        for input in unanswered {
            h.handle(input);
        }
        let mut stale: alloc::vec::Vec<_> = h.table.values().cloned().collect();
        for item in &mut stale {
            if item.get("leaseKey") == before_assignment.get("leaseKey") {
                *item = before_assignment.clone();
            }
        }
        h.handle(crate::io::Input::LeaseTableScanned {
            req: scan.expect("a scan"),
            result: Ok(stale),
        });
        // w2 never acquires (it is played by the test); the leader plans on from fresh scans.
        for _ in 0..20 {
            t += 500;
            h.run_until(t);
            for w in ["w2", "w4"] {
                heartbeat(&mut h, w);
            }
        }
        let handed_on = h
            .writes(WriteKind::InitiateHandoff)
            .iter()
            .any(|w| w.key == "shard-w3");
        assert!(!handed_on, "shard-w3 handed on before w2 acquired it");
        assert!(
            h.writes(WriteKind::InitiateHandoff)
                .iter()
                .any(|w| w.key == "shard-w2"),
            "w4 is given w2's other lease"
        );
    }

    /// A lease assigned to a worker that falls silent before it acquires the lease is assigned
    /// again once that worker takes no new lease, not after the failover time of the counter
    /// rule: nobody delivers it meanwhile.
    #[test]
    fn an_assignment_to_a_worker_gone_silent_is_made_again() {
        let mut h = w1_leading_w2_and_w3();
        // w3 stops at 20 s; w2 heartbeats until it is given shard-w3, then stops too.
        let mut t = 11_000;
        let assigned_at = loop {
            assert!(t < 60_000, "shard-w3 never assigned to w2");
            h.run_until(t);
            if h.lease("shard-w3").and_then(|l| l.owner) == Some(WorkerId::from("w2")) {
                break t;
            }
            heartbeat(&mut h, "w2");
            if t <= 20_000 {
                heartbeat(&mut h, "w3");
            }
            t += 100;
        };
        let reassigned_at = loop {
            assert!(t < assigned_at + 30_000, "shard-w3 never assigned again");
            t += 100;
            h.run_until(t);
            if h.lease("shard-w3").and_then(|l| l.owner) == Some(WorkerId::from("w1")) {
                break t;
            }
        };
        assert!(
            reassigned_at - assigned_at < 8_000,
            "assigned to w2 at {assigned_at}, to w1 at {reassigned_at}"
        );
    }

    /// A handoff the old owner completed leaves the lease to its new owner, which acquires it
    /// once it has read its note (up to a heartbeat later). A plan in between must not hand the
    /// lease on: the new handoff would name as checkpoint owner a worker that holds nothing,
    /// and the lease would stall until it expired (found by scale-up seed 3 at 10 -> 20 workers).
    #[test]
    fn a_lease_handed_over_and_not_yet_acquired_is_not_handed_on() {
        let mut h = Harness::new(worker_liveness(), "w1");
        for j in 0..6 {
            h.put(&unowned(&alloc::format!("shard-{j}")));
        }
        h.run_until(10_000);
        assert_eq!(h.w.held_leases().count(), 6);
        // w2 joins and is handed three; w1 completes the handoffs; w2 (played by the test)
        // heartbeats but never acquires.
        let mut t = 10_000;
        let handed_to_w2 = loop {
            t += 500;
            assert!(t < 30_000, "nothing handed to w2");
            heartbeat(&mut h, "w2");
            h.run_until(t);
            let keys: alloc::vec::Vec<alloc::string::String> = (0..6)
                .map(|j| alloc::format!("shard-{j}"))
                .filter(|k| {
                    h.lease(k).is_some_and(|l| {
                        l.owner == Some(WorkerId::from("w2")) && l.checkpoint_owner.is_none()
                    })
                })
                .collect();
            if keys.len() == 3 {
                break keys;
            }
        };
        // w3 joins: six leases over three workers.
        let before = h.writes(WriteKind::InitiateHandoff).len();
        for _ in 0..8 {
            t += 500;
            heartbeat(&mut h, "w2");
            heartbeat(&mut h, "w3");
            h.run_until(t);
        }
        let handed_on: alloc::vec::Vec<&str> = h.writes(WriteKind::InitiateHandoff)[before..]
            .iter()
            .map(|w| w.key.as_str())
            .filter(|k| handed_to_w2.iter().any(|w| w == k))
            .collect();
        assert!(
            handed_on.is_empty(),
            "handed on before w2 acquired: {handed_on:?}"
        );
        assert!(
            h.writes(WriteKind::InitiateHandoff).len() > 3,
            "w3 is given leases of w1"
        );
    }

    /// Lease liveness: a lease handed over and acquired looks like one not acquired yet (no
    /// incarnation). When its new owner stops (heartbeats and renewals), the lease is free only
    /// once its counter stood still for the failover time, never when the owner's heartbeat
    /// merely fell silent: the owner may deliver until its last renewal's window closes.
    #[test]
    fn a_lease_handed_over_under_lease_liveness_waits_for_its_counter_to_expire() {
        let mut h = Harness::new(Config::default().with_lease_liveness(), "w1");
        for j in 0..4 {
            h.put(&unowned(&alloc::format!("shard-{j}")));
        }
        h.run_until(10_000);
        let mut t = 10_000;
        let mut acquired_by_w2 = alloc::vec::Vec::new();
        while acquired_by_w2.len() < 2 {
            // In small steps: w2 acquires before the leader's next scan sees the completion.
            t += 10;
            assert!(t < 30_000, "nothing handed to w2");
            if t % 500 == 0 {
                heartbeat(&mut h, "w2");
            }
            h.run_until(t);
            for j in 0..4 {
                let key = alloc::format!("shard-{j}");
                let Some(mut l) = h.lease(&key) else { continue };
                if l.owner == Some(WorkerId::from("w2"))
                    && l.checkpoint_owner.is_none()
                    && !acquired_by_w2.contains(&key)
                {
                    // w2 acquires it (lease liveness writes no incarnation).
                    l.counter += 1;
                    h.put(&l);
                    acquired_by_w2.push(key);
                }
            }
        }
        // w2 stops now: no heartbeat, no renewal.
        let stopped = t;
        let before = h.writes(WriteKind::Assign).len();
        h.run_until(stopped + 9_000);
        let moved: alloc::vec::Vec<&str> = h.writes(WriteKind::Assign)[before..]
            .iter()
            .map(|w| w.key.as_str())
            .filter(|k| acquired_by_w2.iter().any(|a| a == k))
            .collect();
        assert!(moved.is_empty(), "assigned within w2's window: {moved:?}");
        h.run_until(stopped + 20_000);
        assert!(
            acquired_by_w2.iter().all(|k| h.holds(k)),
            "free after the counter expired"
        );
    }

    /// At 10 s under worker liveness: w1 leads and holds `shard-a` and `shard-b`; w2 and w3
    /// heartbeat once and hold `shard-w2` and `shard-w3`. Balanced, so nothing moves while all
    /// three heartbeat.
    fn w1_leading_w2_and_w3() -> Harness {
        let mut h = Harness::new(worker_liveness(), "w1");
        for key in ["shard-a", "shard-b"] {
            h.put(&unowned(key));
        }
        h.run_until(10_000);
        assert!(h.holds("shard-a") && h.holds("shard-b"));
        for w in ["w2", "w3"] {
            heartbeat(&mut h, w);
            acquired(&mut h, &alloc::format!("shard-{w}"), w, w);
        }
        h
    }

    /// A worker whose heartbeat says its reads stalled hands its lease over to a worker that
    /// reads, by the ordinary handoff, while it is a minority of the holders; when half of the
    /// holders say so, nothing moves.
    #[test]
    fn the_lease_of_a_worker_whose_reads_stalled_is_handed_to_one_that_reads() {
        let handoffs = |stalled: &[&str]| {
            let mut h = w1_leading_w2_and_w3();
            for t in (11_000..=30_000).step_by(1_000) {
                h.run_until(t);
                for w in ["w2", "w3"] {
                    beat(&mut h, w, None, stalled.contains(&w), &[]);
                }
            }
            h.writes(WriteKind::InitiateHandoff)
                .iter()
                .map(|w| (w.key.clone(), alloc::format!("{:?}", w.action)))
                .collect::<alloc::vec::Vec<_>>()
        };
        let moved = handoffs(&["w2"]);
        assert_eq!(moved.len(), 1, "{moved:?}");
        assert_eq!(moved[0].0, "shard-w2");
        assert!(moved[0].1.contains("w3"), "to the least loaded: {moved:?}");
        assert!(handoffs(&[]).is_empty());
        assert!(handoffs(&["w2", "w3"]).is_empty(), "two of three holders");
    }

    /// Worker liveness: once a consistent read confirms a row the scan showed still for a
    /// heartbeat interval and a half, the worker that will receive its lease is told, in a
    /// heads-up whose window holds the fence; the lease then goes to it.
    #[test]
    fn the_receiver_of_a_silent_workers_lease_is_told_when_it_will_come() {
        let mut h = w1_leading_w2_and_w3();
        let (mut told_at, mut fenced_at) = (None, None);
        for t in (10_500..=30_000).step_by(100) {
            h.run_until(t);
            if t % 1_000 == 0 {
                if t <= 12_000 {
                    heartbeat(&mut h, "w2");
                }
                heartbeat(&mut h, "w3");
            }
            if told_at.is_none() && !h.writes(WriteKind::HeadsUp).is_empty() {
                told_at = Some(t);
            }
            if fenced_at.is_none() && !h.writes(WriteKind::Fence).is_empty() {
                fenced_at = Some(t);
            }
        }
        let heads_ups = h.writes(WriteKind::HeadsUp);
        assert_eq!(heads_ups.len(), 1, "one, to w3");
        assert_eq!(heads_ups[0].key, WorkerRow::key(&WorkerId::from("w3")));
        let row = match h.table.get(&heads_ups[0].key).map(Row::from_item) {
            Some(Ok(Row::Worker(row))) => row,
            other => panic!("{other:?}"),
        };
        let note = row.assigned.iter().find(|a| a.is_heads_up()).expect("note");
        assert_eq!(note.shard.as_str(), "shard-w2");
        let (from, to) = note.heads_up_due().expect("window");
        let (told, fenced) = (told_at.expect("told"), fenced_at.expect("fenced"));
        // w2 stood still from 12 s: told about 5 s later, fenced 10 s after, inside the window.
        assert!((17_000..=19_500).contains(&told), "{told}");
        assert!(
            told + from <= fenced + 100 && fenced <= told + to + 100,
            "{told} {from} {to} {fenced}"
        );
        assert_eq!(
            h.lease("shard-w2").and_then(|l| l.owner),
            Some(WorkerId::from("w3"))
        );
    }

    /// The leader's machine dies: w2 leads and w3 works beside it, both until 20 s. The standby
    /// w1 scanned the table meanwhile, so it fences w3 at its first scans as leader; a follower
    /// that never scanned (no standby named) watches w3's row a failover time after it claims;
    /// one that is not the standby named (a dead one here) claims only after the standby's
    /// head start.
    #[test]
    fn the_standby_takes_over_knowing_how_long_each_row_stood_still() {
        let d = 10_000;
        let head_start = worker_liveness().standby_head_start().as_millis() as u64;
        assert_eq!(head_start, 7_000);
        let (claimed, fenced) = leader_and_worker_die(Some("w1"));
        assert!(
            fenced - claimed < 3_000,
            "standby: claimed {claimed}, fenced {fenced}"
        );
        assert!(
            fenced < 20_000 + d + 7_000,
            "standby: fenced w3 at {fenced}"
        );
        let (cold_claimed, cold_fenced) = leader_and_worker_die(None);
        assert!(
            cold_fenced - cold_claimed >= d,
            "no standby: claimed {cold_claimed}, fenced {cold_fenced}"
        );
        let (other_claimed, _) = leader_and_worker_die(Some("w9"));
        assert!(
            other_claimed >= 20_000 + d + head_start,
            "another standby named: claimed at {other_claimed}"
        );
        assert!(other_claimed >= cold_claimed + head_start - 5_000);
    }

    /// w2 leads naming `standby` in its row, w3 works; both heartbeat until 20 s and hold a
    /// lease each, then stop. When w1 claimed the leader row and when it fenced w3's row (ms).
    fn leader_and_worker_die(standby: Option<&str>) -> (u64, u64) {
        let mut h = Harness::new(worker_liveness(), "w1");
        let w2 = WorkerId::from("w2");
        let standby = standby.map(WorkerId::from);
        for w in ["w2", "w3"] {
            heartbeat(&mut h, w);
            acquired(&mut h, &alloc::format!("shard-{w}"), w, w);
        }
        h.apply(&LeaseOp::ClaimLeader {
            worker: w2.clone(),
            counter: None,
            heartbeat: Some(liveness_of_w2(&h)),
            standby: standby.clone(),
        });
        for (counter, t) in (1..).zip((2_000..=20_000).step_by(2_000)) {
            h.run_until(t);
            heartbeat(&mut h, "w2");
            heartbeat(&mut h, "w3");
            h.apply(&LeaseOp::RenewLeader {
                worker: w2.clone(),
                counter,
                heartbeat: Some(liveness_of_w2(&h)),
                standby: standby.clone(),
            });
        }
        assert!(h.writes(WriteKind::Leader).is_empty(), "w2 leads");
        let w3_row = WorkerRow::key(&WorkerId::from("w3"));
        let (mut claimed, mut fenced) = (None, None);
        for t in (20_100..=70_000).step_by(100) {
            h.run_until(t);
            if claimed.is_none() && !h.writes(WriteKind::Leader).is_empty() {
                claimed = Some(t);
            }
            if fenced.is_none() && h.writes(WriteKind::Fence).iter().any(|w| w.key == w3_row) {
                fenced = Some(t);
            }
        }
        assert!(h.holds("shard-w3"), "w3's lease moved to w1");
        (claimed.expect("w1 claimed"), fenced.expect("w1 fenced w3"))
    }

    /// The leader names as standby a worker outside its own failure domain, keeps it while it
    /// heartbeats, and names another once it falls silent.
    #[test]
    fn the_leader_names_a_standby_outside_its_failure_domain() {
        let config = Config {
            failure_domain: Some("rack-a".into()),
            ..worker_liveness()
        };
        let mut h = Harness::new(config, "w1");
        let standby = |h: &Harness| match h.table.get(crate::lease::LEADER_KEY).map(Row::from_item)
        {
            Some(Ok(Row::Leader(row))) => row.standby,
            other => panic!("the leader row: {other:?}"),
        };
        for t in (1_000..=12_000).step_by(1_000) {
            heartbeat_in(&mut h, "w2", Some("rack-a"));
            heartbeat_in(&mut h, "w3", Some("rack-b"));
            heartbeat_in(&mut h, "w4", Some("rack-c"));
            h.run_until(t);
        }
        assert_eq!(
            standby(&h),
            Some(WorkerId::from("w3")),
            "the first by id outside rack-a"
        );
        // w3 stops; w2 (rack-a) and w4 (rack-c) go on.
        for t in (13_000..=30_000).step_by(1_000) {
            heartbeat_in(&mut h, "w2", Some("rack-a"));
            heartbeat_in(&mut h, "w4", Some("rack-c"));
            h.run_until(t);
        }
        assert_eq!(standby(&h), Some(WorkerId::from("w4")));
    }

    /// What w2's worker row shows an observer now.
    fn liveness_of_w2(h: &Harness) -> u64 {
        let row = h
            .table
            .get(&WorkerRow::key(&WorkerId::from("w2")))
            .map(Row::from_item);
        match row {
            Some(Ok(Row::Worker(r))) => r.liveness(),
            other => panic!("w2's row: {other:?}"),
        }
    }

    /// Worker liveness: the leader row names the leader's last heartbeat, which landed before
    /// anyone read that row. The worker that claims the row once it stood still for the failover
    /// time fences the dead leader's worker row at its first scans, not a failover time later.
    /// Without the heartbeat named (a leader of an older kcl-rs), it watches the row first.
    #[test]
    fn a_new_leader_fences_its_dead_predecessor_at_once() {
        for named in [true, false] {
            let (claimed, fenced) = claim_and_fence(named);
            let d = 10_000;
            if named {
                assert!(
                    fenced - claimed < 3_000,
                    "claimed {claimed}, fenced {fenced}"
                );
            } else {
                assert!(fenced - claimed >= d, "claimed {claimed}, fenced {fenced}");
            }
        }
    }

    /// w2 leads and holds `shard-1` until 20 s, renewing the leader row after each heartbeat
    /// (naming it when `named`); w1 follows. When w1 claimed and when it fenced w2's row (ms).
    fn claim_and_fence(named: bool) -> (u64, u64) {
        let mut h = Harness::new(worker_liveness(), "w1");
        let w2 = WorkerId::from("w2");
        heartbeat(&mut h, "w2");
        acquired_by_w2(&mut h, "w2");
        h.apply(&LeaseOp::ClaimLeader {
            standby: None,
            worker: w2.clone(),
            counter: None,
            heartbeat: named.then(|| liveness_of_w2(&h)),
        });
        for (counter, t) in (1..).zip((2_000..=20_000).step_by(2_000)) {
            h.run_until(t);
            heartbeat(&mut h, "w2");
            h.apply(&LeaseOp::RenewLeader {
                standby: None,
                worker: w2.clone(),
                counter,
                heartbeat: named.then(|| liveness_of_w2(&h)),
            });
        }
        assert!(h.writes(WriteKind::Leader).is_empty(), "w2 leads");
        let (mut claimed, mut fenced) = (None, None);
        for t in (20_100..=60_000).step_by(100) {
            h.run_until(t);
            if claimed.is_none() && !h.writes(WriteKind::Leader).is_empty() {
                claimed = Some(t);
            }
            if fenced.is_none() && !h.writes(WriteKind::Fence).is_empty() {
                fenced = Some(t);
            }
        }
        assert!(h.holds("shard-1"), "w2's lease moved to w1");
        (claimed.expect("w1 claimed"), fenced.expect("w1 fenced w2"))
    }

    /// Two workers stop at once while new shards keep coming: each lease is assigned once. The
    /// leader plans only from a scan's view, never from one older than its own moves (a fence's
    /// timer and its answer ask for a scan), or it assigns a lease again and counts the
    /// receivers' loads without what they were just given.
    #[test]
    fn a_leader_plans_from_a_scan_and_assigns_each_lease_once() {
        let mut h = Harness::new(worker_liveness(), "w1");
        for j in 0..2 {
            h.put(&unowned(&alloc::format!("shard-w1-{j}")));
        }
        h.run_until(10_000);
        assert!(h.holds("shard-w1-0") && h.holds("shard-w1-1"));
        // Three more workers with two leases each: balanced.
        for w in ["w2", "w3", "w4"] {
            heartbeat(&mut h, w);
            for j in 0..2 {
                acquired(&mut h, &alloc::format!("shard-{w}-{j}"), w, w);
            }
        }
        for t in (11_000..=30_000).step_by(1_000) {
            h.run_until(t);
            for w in ["w2", "w3", "w4"] {
                heartbeat(&mut h, w);
            }
        }
        // w3 and w4 stop; w2 goes on (but never acquires: its assignments would expire after
        // the failover time, so the run ends before).
        // New shards keep coming meanwhile, so the scan just before a fence has moves of its own.
        let mut keys = alloc::vec::Vec::new();
        for t in (30_500..=46_000).step_by(500) {
            w2_heartbeats_until(&mut h, 500, t);
            if t >= 36_000 {
                let key = alloc::format!("shard-new-{t}");
                h.put(&unowned(&key));
                keys.push(key);
            }
        }
        assert_eq!(h.writes(WriteKind::Fence).len(), 2);
        for w in ["w3", "w4"] {
            for j in 0..2 {
                keys.push(alloc::format!("shard-{w}-{j}"));
            }
        }
        for key in &keys {
            let assigns = h
                .writes(WriteKind::Assign)
                .iter()
                .filter(|write| write.key == *key)
                .count();
            assert!(assigns <= 1, "{key} assigned {assigns} times");
        }
    }

    /// A lease whose process is no longer the one its worker's row names (the row was taken
    /// over, or the process gave up its incarnation) is free without a fence, once the leader
    /// has seen both in scans one after the other.
    #[test]
    fn under_worker_liveness_a_lease_of_a_process_gone_is_free_at_once() {
        let mut h = Harness::new(worker_liveness(), "w1");
        heartbeat(&mut h, "w2");
        acquired_by_w2(&mut h, "an-earlier-process");
        w2_heartbeats_until(&mut h, 1_000, 8_000);
        assert_ne!(
            h.lease("shard-1").and_then(|l| l.owner),
            Some(WorkerId::from("w2")),
            "assigned within a few scans"
        );
        assert!(h.writes(WriteKind::Fence).is_empty());
    }

    #[test]
    fn orphans_are_spread_over_the_live_workers_and_each_new_owner_told() {
        let mut h = Harness::new(Config::default(), "w1");
        heartbeat(&mut h, "w2");
        h.put(&unowned("shard-1"));
        h.put(&unowned("shard-2"));
        h.run_until(1_000);
        let assigned: alloc::vec::Vec<Option<WorkerId>> = ["shard-1", "shard-2"]
            .iter()
            .map(|k| h.lease(k).and_then(|l| l.owner))
            .collect();
        assert!(
            assigned.contains(&Some(WorkerId::from("w1"))),
            "{assigned:?}"
        );
        assert!(
            assigned.contains(&Some(WorkerId::from("w2"))),
            "{assigned:?}"
        );
        assert_eq!(h.writes(WriteKind::Assign).len(), 2);
        let notes = h.writes(WriteKind::Notify);
        assert_eq!(notes.len(), 1, "w1 acquires its own at once");
        assert_eq!(notes[0].key, WorkerRow::key(&WorkerId::from("w2")));
        assert_eq!(h.w.held_leases().count(), 1);
        assert_eq!(h.w.stats().assignments, 2);
    }

    #[test]
    fn the_new_owner_is_told_of_an_assignment_whose_outcome_is_unknown() {
        let mut h = Harness::new(Config::default(), "w1");
        heartbeat(&mut h, "w2");
        h.put(&unowned("shard-1"));
        h.put(&unowned("shard-2"));
        // The first assignment lands, but its answer is a timeout.
        h.unknown_outcome = Some(WriteKind::Assign);
        h.run_until(1_000);
        assert_eq!(h.writes(WriteKind::Assign).len(), 2);
        assert_eq!(h.writes(WriteKind::Notify).len(), 1, "w2 is told");
        assert_eq!(h.w.held_leases().count(), 1, "w1 acquires its own");
    }

    #[test]
    fn a_notification_that_failed_is_sent_again() {
        let mut h = Harness::new(Config::default(), "w1");
        heartbeat(&mut h, "w2");
        h.put(&unowned("shard-1"));
        h.put(&unowned("shard-2"));
        h.throttled = Some(WriteKind::Notify);
        h.run_until(1_000);
        h.run_until(10_000);
        assert_eq!(
            h.writes(WriteKind::Notify).len(),
            2,
            "throttled, then sent again"
        );
        let row = h
            .table
            .get(&WorkerRow::key(&WorkerId::from("w2")))
            .cloned()
            .expect("w2's row");
        assert!(
            matches!(row.get(crate::lease::attr::ASSIGNED_LEASES), Some(crate::item::AttributeValue::Ss(s)) if s.len() == 1),
            "w2 is told: {row:?}"
        );
    }

    #[test]
    fn the_rows_of_workers_dead_for_the_retention_are_deleted_and_live_ones_kept() {
        let mut h = Harness::new(Config::default(), "w1");
        // w9 heartbeats once and dies (a crashed process with a unique id); w2 lives on.
        heartbeat(&mut h, "w9");
        let row = |h: &Harness, w: &str| h.table.contains_key(&WorkerRow::key(&WorkerId::from(w)));
        let mut t = 0;
        while t < 59_000 {
            t += 1_000;
            heartbeat(&mut h, "w2");
            h.run_until(t);
        }
        assert!(row(&h, "w9"), "not yet dead for the retention (60 s)");
        while t < 75_000 {
            t += 1_000;
            heartbeat(&mut h, "w2");
            h.run_until(t);
        }
        assert!(!row(&h, "w9"), "deleted");
        assert!(row(&h, "w2") && row(&h, "w1"), "live rows kept");
        assert_eq!(h.w.stats().worker_rows_deleted, 1);
    }

    #[test]
    fn an_assigned_lease_is_not_handed_on_before_its_new_owner_acquired_it() {
        let config = Config {
            max_leases_per_worker: 1,
            ..Config::default()
        };
        let mut h = Harness::new(config, "w1");
        heartbeat(&mut h, "w2");
        for k in ["shard-1", "shard-2", "shard-3"] {
            h.put(&unowned(k));
        }
        h.run_until(1_000);
        assert_eq!(h.w.held_leases().count(), 1);
        assert_eq!(h.writes(WriteKind::Notify).len(), 2, "w2 was given two");
        // w3 joins; w2 (which this test never runs) has not acquired its two yet.
        let mut t = 1_000;
        while t < 8_000 {
            t += 1_000;
            heartbeat(&mut h, "w2");
            heartbeat(&mut h, "w3");
            h.run_until(t);
        }
        assert!(
            h.writes(WriteKind::InitiateHandoff).is_empty(),
            "a lease w2 never acquired was handed from w2 to w3"
        );
    }

    #[test]
    fn a_finished_parent_is_deleted_once_its_children_started() {
        let mut h = Harness::new(Config::default(), "w1");
        let mut parent = unowned("shard-0");
        parent.checkpoint = Position::ShardEnd;
        parent.child_shard_ids = alloc::vec![LeaseKey::from("shard-1")];
        h.put(&parent);
        let mut child: Lease = unowned("shard-1");
        child.parent_shard_ids = alloc::vec![LeaseKey::from("shard-0")];
        h.put(&child);
        h.run_until(1_000);
        assert!(
            h.lease("shard-0").is_some(),
            "the child has not started yet"
        );
        // The child's new owner checkpoints a record.
        let mut started = h.lease("shard-1").expect("child");
        started.checkpoint = Position::record(SequenceNumber::parse("5").expect("digits"), 0);
        h.put(&started);
        h.run_until(5_000);
        assert!(h.lease("shard-0").is_none(), "deleted");
        let deletes = h.writes(WriteKind::Delete);
        assert_eq!(deletes.len(), 1);
        assert_eq!(deletes[0].action, WriteAction::Delete);
        assert_eq!(h.w.stats().leases_deleted, 1);
    }
}
