//! The worker's view of the lease table, as its last scan showed it: the leases (what taking,
//! planning, sync and cleanup read of them, with when each counter was first seen) and the
//! worker rows. Kept by the workers that scan: every worker under `Kcl2Compatible`, the leader
//! and its standby under `Coordinated`.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;

use super::{Ctx, Outstanding, Pending, Phase, Worker};
use crate::config::BalancingPolicy;
use crate::io::{Command, Failure, Record};
use crate::item::Item;
use crate::lease::{
    LeaderRow, LeaseKey, LeaseRow, Row, WorkerId, WorkerRow, LEADER_KEY, WORKER_KEY_PREFIX,
};
use crate::observe::{Observer, Seen};
use crate::worker::timers::TimerKey;

/// What a scan keeps of a lease.
#[derive(Clone, Debug)]
pub(crate) struct TableLease {
    pub(crate) owner: Option<WorkerId>,
    pub(crate) checkpoint_owner: Option<WorkerId>,
    /// Worker liveness: the process that acquired it ([`crate::lease::attr::OWNER_INCARNATION`]).
    pub(crate) owner_incarnation: Option<crate::item::Text>,
    pub(crate) counter: u64,
    /// When this worker first saw the counter: expiry is judged on its own clock.
    pub(crate) seen: Seen,
    pub(crate) progress: Progress,
    pub(crate) throughput_kbps: Option<f32>,
    pub(crate) parents: Vec<LeaseKey>,
    pub(crate) children: Vec<LeaseKey>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Progress {
    /// Still at its initial position.
    NotStarted,
    /// Checkpointed at a record.
    Started,
    /// At `SHARD_END`.
    Finished,
}

impl TableLease {
    pub(crate) fn is_finished(&self) -> bool {
        self.progress == Progress::Finished
    }
}

/// The leases of the last scan, sorted by key. A scan replaces it whole, so a sorted vector
/// serves lookups with the memory of the entries alone.
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

    pub(crate) fn get(&self, key: &LeaseKey) -> Option<&TableLease> {
        self.position(key.as_str()).ok().map(|i| &self.entries[i].1)
    }

    pub(crate) fn contains_key(&self, key: &LeaseKey) -> bool {
        self.position(key.as_str()).is_ok()
    }

    pub(crate) fn remove(&mut self, key: &LeaseKey) {
        if let Ok(i) = self.position(key.as_str()) {
            self.entries.remove(i);
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&LeaseKey, &TableLease)> {
        self.entries.iter().map(|(k, l)| (k, l))
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = &LeaseKey> {
        self.entries.iter().map(|(k, _)| k)
    }
}

/// What a scan found that others act on.
pub(crate) struct ScanSummary {
    /// A lease reached `SHARD_END` since the last scan (it may free a merged child).
    pub(crate) newly_finished: bool,
    /// A worker row the last scan did not show.
    pub(crate) new_workers: bool,
    /// The leader row, if the scan showed it.
    pub(crate) leader_row: Option<LeaderRow>,
}

/// The last scan, and the scan in flight.
#[derive(Clone, Debug, Default)]
pub(crate) struct TableView {
    pub(crate) leases: LeaseTable,
    pub(crate) workers: BTreeMap<WorkerId, WorkerRow>,
    /// When the last scan completed, on this worker's clock.
    pub(crate) scanned_at: Option<crate::time::Instant>,
    scan: Outstanding,
    /// Whether the scan in flight is a consistent one.
    scan_consistent: bool,
    /// The next scan is to be consistent.
    pub(crate) consistent_due: bool,
}

impl TableView {
    /// Replaces the view with the rows of a scan completed at `now`. Worker rows' counters go
    /// to the observer, which forgets the workers whose row is gone; a row that does not decode
    /// is reported and skipped.
    pub(crate) fn refresh<R>(
        &mut self,
        items: &[Item],
        observer: &mut Observer,
        ctx: &mut Ctx<R>,
    ) -> ScanSummary {
        let now = ctx.now;
        let mut entries: Vec<(LeaseKey, TableLease)> = Vec::with_capacity(items.len());
        let mut workers = BTreeMap::new();
        let mut ids: BTreeSet<WorkerId> = BTreeSet::new();
        let mut newly_finished = false;
        let mut leader_row = None;
        // Rows come in key order from this table (real DynamoDB scans need not): the entry
        // after the last one found is tried before a search.
        let mut next_old = 0;
        for item in items {
            let row = match LeaseRow::of_row(item) {
                Ok(Some(l)) => l,
                Ok(None) => {
                    match Row::from_item(item) {
                        Ok(Row::Worker(w)) => {
                            let k = WorkerRow::key(&w.worker);
                            observer.observe(&k, w.liveness(), true, now);
                            workers.insert(w.worker.clone(), w);
                        }
                        Ok(Row::Leader(row)) => leader_row = Some(row),
                        Ok(Row::Lease(_) | Row::Foreign { .. }) => {}
                        Err(error) => ctx.malformed(item, error),
                    }
                    continue;
                }
                Err(error) => {
                    ctx.malformed(item, error);
                    continue;
                }
            };
            let old = self.leases.find(row.key, next_old).map(|i| {
                next_old = i + 1;
                &self.leases.entries[i]
            });
            let seen = Seen::after(
                old.map(|(_, o)| o.seen),
                row.counter,
                row.owner.is_some(),
                now,
            );
            let progress = if row.checkpoint.is_shard_end() {
                Progress::Finished
            } else if row.checkpoint.is_initial() {
                Progress::NotStarted
            } else {
                Progress::Started
            };
            newly_finished |=
                progress == Progress::Finished && old.is_none_or(|(_, o)| !o.is_finished());
            // The key the last scan made, when there is one.
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
                owner_incarnation: row.owner_incarnation.map(crate::item::Text::from),
                counter: row.counter,
                seen,
                progress,
                throughput_kbps: row.throughput_kbps.map(|t| t as f32),
                parents: row.parents(),
                children: row.children(),
            };
            entries.push((key, entry));
        }
        // The observer keeps worker rows and the leader row.
        observer.retain(|k| {
            k == LEADER_KEY
                || k.strip_prefix(WORKER_KEY_PREFIX)
                    .is_some_and(|w| workers.contains_key(w))
        });
        self.leases = LeaseTable::new(entries);
        let new_workers = workers.keys().any(|w| !self.workers.contains_key(w));
        self.workers = workers;
        self.scanned_at = Some(now);
        ScanSummary {
            newly_finished,
            new_workers,
            leader_row,
        }
    }
}

/// The id named `name`: the last scan's when it named the same worker (nearly always),
/// otherwise one shared by every row of this scan that names it.
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

fn intern(ids: &mut BTreeSet<WorkerId>, id: Option<&str>) -> Option<WorkerId> {
    let id = id?;
    if let Some(shared) = ids.get(id) {
        return Some(shared.clone());
    }
    let id = WorkerId::from(id);
    ids.insert(id.clone());
    Some(id)
}

impl<R: Record + Clone> Worker<R> {
    /// Whether this worker keeps the table view: every worker under `Kcl2Compatible`, the
    /// leader and its standby under `Coordinated`.
    pub(super) fn scans_table(&self) -> bool {
        self.acts_on_table() || self.election.is_standby()
    }

    /// Whether it acts on what its scans show (takes, plans, cleans up, syncs shards): every
    /// worker under `Kcl2Compatible`, the leader under `Coordinated` (the standby only watches).
    fn acts_on_table(&self) -> bool {
        self.policy() == BalancingPolicy::Kcl2Compatible
            || self.election.is_leader(&self.ctx.config, self.ctx.now)
    }

    pub(super) fn scan_timer(&mut self) {
        self.check_leadership();
        if self.ctx.phase == Phase::Running
            && self.scans_table()
            && self.view.scan == Outstanding::Idle
        {
            let consistent = core::mem::take(&mut self.view.consistent_due);
            let req = self
                .ctx
                .request(Pending::Scan, |req| Command::ScanLeaseTable {
                    req,
                    consistent,
                });
            self.view.scan = Outstanding::InFlight(req);
            self.view.scan_consistent = consistent;
        }
        let interval =
            if self.policy() == BalancingPolicy::Kcl2Compatible || self.election.is_leading() {
                Some(self.ctx.config.scan_interval)
            } else if self.election.is_standby() {
                self.ctx.config.standby_scan_interval
            } else {
                None
            };
        if let Some(interval) = interval {
            self.ctx.timers.set(TimerKey::Scan, self.ctx.now + interval);
        }
    }

    /// A scan's answer: the view is refreshed, then the scanning roles act on it (taking or
    /// planning, cleanup, shard sync).
    pub(super) fn scanned(&mut self, result: Result<Vec<Item>, Failure>) {
        self.view.scan = Outstanding::Idle;
        let Ok(items) = result else { return };
        self.ctx.stats.scans += 1;
        let summary = self.view.refresh(&items, &mut self.observer, &mut self.ctx);
        // A lease finished since the last scan may free a merged child: sync now, not in a minute.
        if summary.newly_finished {
            self.sync.due = true;
        }
        if self.ctx.phase != Phase::Running {
            return;
        }
        match self.policy() {
            BalancingPolicy::Kcl2Compatible => self.take_leases(),
            BalancingPolicy::Coordinated => {
                if self.election.is_leader(&self.ctx.config, self.ctx.now) {
                    // An eventually consistent scan may miss rows written in its last moments:
                    // when it shows new workers, others may have started with them (a scale-up)
                    // and be missing. Leases move only from a consistent scan made at once, so
                    // that they are spread over all of them in one go.
                    let recheck = summary.new_workers && !self.view.scan_consistent;
                    self.plan(recheck);
                    if recheck {
                        self.view.consistent_due = true;
                        self.scan_soon();
                    }
                    self.delete_dead_worker_rows();
                } else if self.election.is_standby() {
                    self.leader_row_seen(summary.leader_row);
                    self.standby_checks_silent();
                }
            }
        }
        if self.acts_on_table() {
            if self.ctx.config.cleanup_finished_leases {
                self.cleanup();
            }
            self.sync_if_due();
        }
    }

    /// What this worker knows of a worker or leader row's counter.
    pub(super) fn seen(&self, key: &str) -> Seen {
        self.observer.get(key).unwrap_or(Seen {
            counter: 0,
            since: None,
        })
    }

    /// A lease may be given out once every parent lease is finished or gone.
    pub(super) fn parents_done(&self, lease: &TableLease) -> bool {
        lease
            .parents
            .iter()
            .all(|p| self.view.leases.get(p).is_none_or(TableLease::is_finished))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::io::{BasicRecord, Command, Event};
    use crate::item::AttributeValue;
    use crate::lease::{attr, Lease};
    use crate::protocol::LeaseOp;
    use crate::sequence::Position;
    use crate::time::Instant;
    use crate::worker::testing::{owned, unowned};
    use crate::write::apply;

    fn worker_row(name: &str) -> Item {
        let op = LeaseOp::Heartbeat {
            failure_domain: None,
            worker: WorkerId::from(name),
            incarnation: name.into(),
            takeover: None,
            registered: false,
            previous: None,
            max_leases: 3,
            leaving: false,
            reads_stalled: false,
            acked: Vec::new(),
        };
        apply(None, &op.to_write()).expect("always").expect("a row")
    }

    fn finished(key: &str) -> Lease {
        let mut l = unowned(key);
        l.checkpoint = Position::ShardEnd;
        l
    }

    #[test]
    fn a_scan_keeps_when_each_counter_was_first_seen() {
        let mut ctx: Ctx<BasicRecord> = Ctx::new(
            Config::default(),
            WorkerId::from("w1"),
            7,
            Instant::from_millis(1_000),
        );
        let mut observer = Observer::default();
        let mut view = TableView::default();
        let rows = [
            owned("shard-1", "w2", 4).to_item(),
            owned("shard-2", "w2", 9).to_item(),
            unowned("shard-3").to_item(),
            worker_row("w2"),
        ];
        let summary = view.refresh(&rows, &mut observer, &mut ctx);
        assert!(!summary.newly_finished);
        assert_eq!(view.leases.keys().count(), 3);
        let first = view.leases.get(&LeaseKey::from("shard-1")).expect("leased");
        assert_eq!(first.seen.since, Some(Instant::from_millis(1_000)));
        assert_eq!(first.owner, Some(WorkerId::from("w2")));
        assert_eq!(
            view.leases
                .get(&LeaseKey::from("shard-3"))
                .map(|l| l.seen.since),
            Some(None),
            "unowned when first seen: as if forever"
        );
        assert_eq!(view.workers.len(), 1);
        assert!(observer
            .get(&WorkerRow::key(&WorkerId::from("w2")))
            .is_some());
        // Later: shard-1 unchanged, shard-2 renewed, shard-3 finished, the worker row gone.
        ctx.now = Instant::from_millis(5_000);
        let rows = [
            owned("shard-1", "w2", 4).to_item(),
            owned("shard-2", "w2", 10).to_item(),
            finished("shard-3").to_item(),
        ];
        let summary = view.refresh(&rows, &mut observer, &mut ctx);
        assert!(summary.newly_finished);
        let get = |k: &str| {
            view.leases
                .get(&LeaseKey::from(k))
                .expect("leased")
                .seen
                .since
        };
        assert_eq!(get("shard-1"), Some(Instant::from_millis(1_000)));
        assert_eq!(get("shard-2"), Some(Instant::from_millis(5_000)));
        assert!(view.workers.is_empty());
        assert!(observer
            .get(&WorkerRow::key(&WorkerId::from("w2")))
            .is_none());
        let again = view.refresh(&rows, &mut observer, &mut ctx);
        assert!(!again.newly_finished, "finished once");
    }

    #[test]
    fn a_malformed_row_is_reported_and_skipped() {
        let mut ctx: Ctx<BasicRecord> =
            Ctx::new(Config::default(), WorkerId::from("w1"), 7, Instant::ZERO);
        let mut observer = Observer::default();
        let mut view = TableView::default();
        let mut bad = owned("shard-1", "w2", 4).to_item();
        bad.insert(attr::LEASE_COUNTER.into(), AttributeValue::S("four".into()));
        let mut foreign = unowned("metrics").to_item();
        foreign.insert(
            attr::ENTITY_TYPE.into(),
            AttributeValue::S("WORKER_METRIC_STATS".into()),
        );
        let rows = [bad, foreign, owned("shard-2", "w2", 1).to_item()];
        view.refresh(&rows, &mut observer, &mut ctx);
        assert_eq!(
            view.leases.keys().cloned().collect::<Vec<_>>(),
            [LeaseKey::from("shard-2")]
        );
        assert_eq!(ctx.stats.malformed_rows, 1);
        let events: Vec<Command<BasicRecord>> = ctx.out.drain(..).collect();
        assert!(matches!(
            &events[..],
            [Command::Event(Event::MalformedRow { key: Some(k), .. })] if k == "shard-1"
        ));
    }
}
