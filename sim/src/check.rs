//! The invariant checkers of docs/design.md, outside the workers. They see what the services and the
//! simulated applications see: records put and delivered, lease-table writes, processors
//! initialized; the fleet asks them at every delivery and every table write.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use kcl_core::lease::attr;
use kcl_core::lease::ENTITY_LEASE;
use kcl_core::write::{LeaseWrite, Update, WriteAction, WriteKind};
use kcl_core::{AttributeValue, FencingToken, Item, LeaseKey, Position, RecordPosition, WorkerId};

use crate::kinesis::Kinesis;
use crate::record::SimRecord;

/// An invariant broken, with when.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Violation {
    /// Simulated (true) time, ms.
    pub at_ms: u64,
    /// Which invariant, and how.
    pub what: String,
}

/// One ownership of a shard, as its processor's initialization showed it.
#[derive(Clone, Debug)]
struct Ownership {
    /// The checkpoint it started from.
    start: Position,
    worker: WorkerId,
    /// The user-record index after the last record it delivered; `None` before its first batch.
    next: Option<u64>,
}

/// The violations kept in full; beyond this only the count grows.
const KEPT_VIOLATIONS: usize = 100;

#[derive(Clone, Copy, Debug, Default)]
struct Delivery {
    count: u32,
    node: u32,
    token: u64,
}

#[derive(Clone, Debug, Default)]
struct ShardLog {
    /// One entry per record put, by index within the shard.
    records: Vec<Delivery>,
    /// Records before this index have all been delivered, or are not owed.
    first_undelivered: u64,
    /// Records that arrived before this time (ms) are not owed: they were put before the
    /// shard's lease was created at `LATEST`, or before an `AT_TIMESTAMP` lease's timestamp.
    owed_from_ms: u64,
    /// Nodes that delivered this shard recently (the candidates for an exclusivity clash).
    deliverers: Vec<usize>,
}

/// The checkers' state.
#[derive(Clone, Debug, Default)]
pub struct Checker {
    violations: Vec<Violation>,
    violation_count: u64,
    shards: Vec<ShardLog>,
    /// Each ownership whose processor was initialized, by shard and token: the checkpoint it
    /// started from and its worker. The latest token's worker is the shard's owner in the
    /// checkers' own record, the only one that may move its checkpoint. Only looked up, never
    /// iterated: its order cannot leak.
    init: HashMap<LeaseKey, BTreeMap<FencingToken, Ownership>, crate::hash::FastHash>,
    finished: BTreeSet<LeaseKey>,
    unfinished: BTreeSet<LeaseKey>,
    /// Shards expired from the stream (closed, every record trimmed): nothing of theirs is left
    /// to deliver before their children's, whether or not their lease ever finished.
    expired: BTreeSet<LeaseKey>,
    /// Ownerships whose processor was told the shard ended: their lease must end at SHARD_END.
    told_shard_ended: BTreeSet<(WorkerId, LeaseKey)>,
    /// Records delivered, duplicates included.
    pub records_delivered: u64,
    /// Deliveries of a record delivered before.
    pub duplicate_deliveries: u64,
    /// Records put.
    pub records_put: u64,
    /// Crashes and how long their leases took to deliver again.
    pub failover: crate::failover::FailoverWatch,
}

impl Checker {
    /// Records a violation.
    pub fn violation(&mut self, at_ms: u64, what: String) {
        self.violation_count += 1;
        if self.violations.len() < KEPT_VIOLATIONS {
            self.violations.push(Violation { at_ms, what });
        }
    }

    /// The first violations (at most 100).
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// Every violation, counted.
    pub fn violation_count(&self) -> u64 {
        self.violation_count
    }

    fn shard(&mut self, shard: usize) -> &mut ShardLog {
        if self.shards.len() <= shard {
            self.shards.resize_with(shard + 1, ShardLog::default);
        }
        &mut self.shards[shard]
    }

    /// `users` user records were put at `first..first + users` of `shard` (one for a plain
    /// record, more for a KPL aggregate).
    pub fn put(&mut self, shard: usize, first: u64, users: u64) {
        self.records_put += users;
        let log = self.shard(shard);
        let end = (first + users) as usize;
        if log.records.len() < end {
            log.records.resize(end, Delivery::default());
        }
    }

    /// A create `write` landed at `now`: a root shard's lease at `LATEST` or `AT_TIMESTAMP`
    /// owes only the records that arrive from its creation, or from the timestamp, on; a lease
    /// at `TRIM_HORIZON`, or after a parent, owes every record.
    pub fn lease_created(
        &mut self,
        write: &LeaseWrite,
        kinesis: &Kinesis,
        initial_position: kcl_core::InitialPosition,
        now: u64,
    ) {
        let Some(from_ms) = owed_from_ms(write, initial_position, now) else {
            return;
        };
        if let Some(shard) = kinesis.shard_index(&write.key) {
            self.shard(shard).owed_from_ms = from_ms;
        }
    }

    /// `shard` expired from the stream: closed, and every record of it trimmed.
    pub fn shard_expired(&mut self, shard: LeaseKey) {
        self.expired.insert(shard);
    }

    /// `worker`'s processor of `shard` was initialized for the ownership `token`, starting from
    /// `checkpoint`: a new ownership, told nothing yet.
    pub fn initialized(
        &mut self,
        worker: &WorkerId,
        shard: &LeaseKey,
        token: FencingToken,
        checkpoint: Position,
    ) {
        let ownership = Ownership {
            start: checkpoint,
            worker: worker.clone(),
            next: None,
        };
        match self.init.get_mut(shard.as_str()) {
            Some(by_token) => by_token.insert(token, ownership),
            None => self
                .init
                .entry(shard.clone())
                .or_default()
                .insert(token, ownership),
        };
        if !self.told_shard_ended.is_empty() {
            self.told_shard_ended
                .remove(&(worker.clone(), shard.clone()));
        }
    }

    /// The worker of `shard`'s latest ownership, by the checkers' own record.
    fn owner(&self, shard: &str) -> Option<&WorkerId> {
        let (_, latest) = self.init.get(shard)?.last_key_value()?;
        Some(&latest.worker)
    }

    /// `worker`'s processor of `shard` was told the shard ended.
    pub fn shard_ended_told(&mut self, worker: &WorkerId, shard: &LeaseKey) {
        self.told_shard_ended
            .insert((worker.clone(), shard.clone()));
    }

    /// The nodes that delivered `shard` recently; the fleet asks each whether it still may.
    pub fn deliverers(&self, shard: usize) -> &[usize] {
        self.shards.get(shard).map_or(&[], |s| &s.deliverers)
    }

    /// Forgets a node as a recent deliverer of `shard` once its window is closed.
    pub fn forget_deliverer(&mut self, shard: usize, node: usize) {
        self.shard(shard).deliverers.retain(|&n| n != node);
    }

    /// Invariants 5 (parent before child), 4 (duplicates only across ownerships, and never at
    /// or before the checkpoint the ownership started from) and 8 (an ownership delivers from
    /// right after its checkpoint, without gaps), for `records` of `shard_id` delivered by
    /// `node` under `token`; `stream` tells the shard's parents and the records it still holds.
    /// Exclusivity (invariant 1) is judged by the fleet, which knows every worker's delivery
    /// deadline.
    pub fn delivered(
        &mut self,
        now: u64,
        node: usize,
        shard_id: &LeaseKey,
        token: FencingToken,
        records: &[SimRecord],
        stream: &Kinesis,
    ) {
        for p in &stream.parent_ids(shard_id.as_str()) {
            if !self.finished.contains(p) && !self.expired.contains(p) {
                self.violation(
                    now,
                    format!("parent before child: {shard_id} delivered before its parent {p} reached SHARD_END"),
                );
            }
        }
        let floor = self
            .init
            .get(shard_id.as_str())
            .and_then(|by_token| by_token.get(&token))
            .map(|o| o.start.clone());
        let Some(first) = records.first() else {
            return;
        };
        self.failover.delivered(now, shard_id);
        let shard = first.shard as usize;
        self.contiguous(now, shard_id, token, records, |i| {
            stream.user_record(shard, i)
        });
        if !self.shard(shard).deliverers.contains(&node) {
            self.shard(shard).deliverers.push(node);
        }
        for r in records {
            self.records_delivered += 1;
            let log = self.shard(r.shard as usize);
            let Some(d) = log.records.get_mut(r.index as usize) else {
                let what = format!(
                    "delivered record {} of {shard_id} that was never put",
                    r.index
                );
                self.violation(now, what);
                continue;
            };
            let before = *d;
            d.count += 1;
            d.node = node as u32;
            d.token = token.0;
            if before.count == 0 {
                continue;
            }
            self.duplicate_deliveries += 1;
            if before.node as usize == node && before.token == token.0 {
                self.violation(
                    now,
                    format!(
                        "duplicate within one ownership: record {} of {shard_id} delivered twice under token {}",
                        r.index, token.0
                    ),
                );
            }
            if let Some(Position::Record(cp)) = &floor {
                if r.position <= *cp {
                    self.violation(
                        now,
                        format!(
                            "redelivered record {} of {shard_id}, at or before the checkpoint its owner started from",
                            r.index
                        ),
                    );
                }
            }
        }
    }

    /// Invariant 8: the record before a batch's first was delivered by this ownership before,
    /// or (for its first batch) is at or before the checkpoint it started from, or is trimmed,
    /// or not owed. A resume past the checkpoint (inside a KPL aggregate, say) shows here even
    /// when an earlier owner happened to deliver what was skipped.
    fn contiguous(
        &mut self,
        now: u64,
        shard_id: &LeaseKey,
        token: FencingToken,
        records: &[SimRecord],
        held: impl Fn(u64) -> Option<(RecordPosition, u64)>,
    ) {
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            return;
        };
        let owed_from_ms = self.shard(first.shard as usize).owed_from_ms;
        let Some(ownership) = self
            .init
            .get_mut(shard_id.as_str())
            .and_then(|by_token| by_token.get_mut(&token))
        else {
            return;
        };
        let before = first.index.checked_sub(1).and_then(&held);
        let gap = match (&before, ownership.next, &ownership.start) {
            (None, _, _) => false,
            (Some(_), Some(next), _) => first.index > next,
            (Some((_, arrival)), None, _) if *arrival < owed_from_ms => false,
            (Some((position, _)), None, Position::Record(start)) => position > start,
            (Some(_), None, _) => true,
        };
        ownership.next = Some(
            ownership
                .next
                .map_or(last.index + 1, |n| n.max(last.index + 1)),
        );
        if gap {
            let what = format!(
                "gap: token {} of {shard_id} delivered record {} without the record before it (held by the stream, after its start {:?})",
                token.0, first.index, ownership.start
            );
            self.violation(now, what);
        }
    }

    /// A lease-table write landed: invariant 2 (checkpoints never move backwards and only the
    /// owner moves them, the owner being the worker of the latest ownership whose processor was
    /// initialized), and the bookkeeping of which leases exist and are finished. The rows
    /// are read, not decoded: only a checkpoint that changed is parsed.
    pub fn table_write(
        &mut self,
        now: u64,
        writer: &WorkerId,
        write: &LeaseWrite,
        before: Option<&Item>,
        after: Option<&Item>,
    ) {
        if matches!(write.kind, WriteKind::Release | WriteKind::CompleteHandoff)
            && !self.told_shard_ended.is_empty()
            && self
                .told_shard_ended
                .contains(&(writer.clone(), LeaseKey::from(write.key.as_str())))
        {
            self.violation(
                now,
                format!(
                    "{writer} gave {} up ({:?}) after its processor was told the shard ended: SHARD_END must win",
                    write.key, write.kind
                ),
            );
        }
        let (before, after) = (
            before.and_then(LeaseRowView::of),
            after.and_then(LeaseRowView::of),
        );
        match &after {
            Some(a) if a.is_finished() => {
                self.unfinished.remove(a.key);
                if !self.finished.contains(a.key) {
                    self.finished.insert(LeaseKey::from(a.key));
                }
            }
            Some(a) => {
                if !self.unfinished.contains(a.key) {
                    self.unfinished.insert(LeaseKey::from(a.key));
                }
            }
            None => {
                if let Some(b) = &before {
                    self.unfinished.remove(b.key);
                }
            }
        }
        let (Some(b), Some(a)) = (before, after) else {
            return;
        };
        if a.checkpoint == b.checkpoint {
            return;
        }
        let (Some(from), Some(to)) = (b.position(), a.position()) else {
            return;
        };
        if to == from {
            return;
        }
        if to < from {
            self.violation(
                now,
                format!(
                    "checkpoint of {} moved backwards: {from:?} -> {to:?} by {writer} ({:?})",
                    a.key, write.kind
                ),
            );
        }
        // The owner by the checkers' own record (the latest ownership whose processor was
        // initialized), not by the row the write's condition was checked against.
        let owner = self.owner(a.key);
        if owner != Some(writer) {
            let what = format!(
                "checkpoint of {} moved by {writer} ({:?} to {:?}), not its owner {owner:?} (the worker of its latest ownership)",
                a.key, write.kind, a.checkpoint.0
            );
            self.violation(now, what);
        }
    }

    /// Unfinished leases in the table.
    pub fn unfinished(&self) -> &BTreeSet<LeaseKey> {
        &self.unfinished
    }

    /// Whether `shard` reached SHARD_END in the table.
    pub fn is_finished(&self, shard: &LeaseKey) -> bool {
        self.finished.contains(shard)
    }

    /// Whether `shard` has a record owed and not delivered yet whose arrival is older than
    /// `before_ms`, found by `arrival` (`None` for a record trimmed by retention, which is owed
    /// no longer); advances the delivered prefix as a side effect.
    pub fn behind(
        &mut self,
        shard: usize,
        before_ms: u64,
        arrival: impl Fn(u64) -> Option<u64>,
    ) -> bool {
        let log = self.shard(shard);
        let owed_from_ms = log.owed_from_ms;
        while let Some(d) = log.records.get(log.first_undelivered as usize) {
            // A record put and without an arrival time was trimmed: no longer owed.
            let not_owed = || arrival(log.first_undelivered).is_none_or(|t| t < owed_from_ms);
            if d.count == 0 && !not_owed() {
                break;
            }
            log.first_undelivered += 1;
        }
        let i = log.first_undelivered;
        (i as usize) < log.records.len() && arrival(i).is_some_and(|t| t < before_ms)
    }

    /// Records owed and never delivered: those lost, and those trimmed by retention before any
    /// worker read them (a consumer that lags past the retention period loses them; the stream,
    /// not the library, drops them). `first_owed` gives the index of a shard's first record that
    /// arrived at or after a time; `trimmed` how many of a shard's first records were trimmed.
    pub fn undelivered(
        &self,
        first_owed: impl Fn(usize, u64) -> u64,
        trimmed: impl Fn(usize) -> u64,
    ) -> Undelivered {
        let mut total = Undelivered::default();
        for (shard, s) in self.shards.iter().enumerate() {
            let from = match s.owed_from_ms {
                0 => 0,
                ms => first_owed(shard, ms) as usize,
            };
            let trimmed = (trimmed(shard) as usize).min(s.records.len());
            let unread = |range: core::ops::Range<usize>| {
                let owed = s.records.get(range).unwrap_or(&[]);
                owed.iter().filter(|d| d.count == 0).count() as u64
            };
            total.trimmed_unread += unread(from.min(trimmed)..trimmed);
            total.lost += unread(from.max(trimmed)..s.records.len());
        }
        total
    }
}

/// Records owed and never delivered, by why.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Undelivered {
    /// Records never delivered that the stream still holds: lost by the library. (A run's
    /// liveness tail is shorter than the retention period, so a shard left unread till the end
    /// shows here, not as trimmed.)
    pub lost: u64,
    /// Records trimmed by retention before any worker delivered them.
    pub trimmed_unread: u64,
}

/// What the checkers read of a lease row, borrowed from it: its key and checkpoint. Rows of
/// other kinds (worker and leader rows) have no view.
struct LeaseRowView<'a> {
    key: &'a str,
    /// `checkpoint` and `checkpointSubSequenceNumber`, as stored.
    checkpoint: (&'a str, Option<&'a str>),
}

impl<'a> LeaseRowView<'a> {
    fn of(item: &'a Item) -> Option<Self> {
        let string = |name| match item.get(name) {
            Some(AttributeValue::S(s)) => Some(&**s),
            _ => None,
        };
        let number = |name| match item.get(name) {
            Some(AttributeValue::N(n)) => Some(&**n),
            _ => None,
        };
        if !matches!(string(attr::ENTITY_TYPE), None | Some(ENTITY_LEASE)) {
            return None;
        }
        Some(Self {
            key: string(attr::LEASE_KEY)?,
            checkpoint: (string(attr::CHECKPOINT)?, number(attr::CHECKPOINT_SUB)),
        })
    }

    fn is_finished(&self) -> bool {
        self.checkpoint.0 == Position::SHARD_END
    }

    /// The checkpoint, when it parses (the workers' writes always do).
    fn position(&self) -> Option<Position> {
        let sub = match self.checkpoint.1 {
            Some(n) => n.parse().ok()?,
            None => 0,
        };
        Position::parse(self.checkpoint.0, sub).ok()
    }
}

/// Whether a write can move a checkpoint (only those are decoded and checked, which keeps the
/// many renewals cheap).
pub fn touches_checkpoint(write: &LeaseWrite) -> bool {
    match &write.action {
        WriteAction::Put(_) | WriteAction::Delete => true,
        WriteAction::Update(updates) => updates
            .iter()
            .any(|u| matches!(u, Update::Set(a, _) | Update::Remove(a) if *a == attr::CHECKPOINT)),
    }
}

/// When the records a newly created lease owes start (true ms): a root shard's lease at `LATEST`
/// owes the records from its creation `now`, one at `AT_TIMESTAMP` those from the timestamp;
/// `None` for any other write (a lease at `TRIM_HORIZON`, or after a parent, owes everything).
fn owed_from_ms(
    write: &LeaseWrite,
    initial_position: kcl_core::InitialPosition,
    now: u64,
) -> Option<u64> {
    let WriteAction::Put(item) = &write.action else {
        return None;
    };
    match item.get(attr::CHECKPOINT) {
        Some(AttributeValue::S(s)) if &**s == Position::LATEST => Some(now),
        Some(AttributeValue::S(s)) if &**s == Position::AT_TIMESTAMP => match initial_position {
            kcl_core::InitialPosition::AtTimestamp(ms) => Some(ms),
            _ => Some(0),
        },
        _ => None,
    }
}

/// Whether every record of every shard older than `before_ms` has been delivered (or is not
/// owed); advances the checker's delivered prefixes.
pub fn caught_up(checker: &mut Checker, kinesis: &Kinesis, before_ms: u64) -> bool {
    let mut caught_up = true;
    for s in 0..kinesis.shard_count() {
        if checker.behind(s, before_ms, |i| kinesis.arrival_ms(s, i)) {
            caught_up = false;
        }
    }
    caught_up
}

#[cfg(test)]
mod tests {
    use super::*;
    use kcl_core::write::{Condition, WriteKind};

    fn row(checkpoint: &str, sub: Option<&str>, owner: &str) -> Item {
        let s = |v: &str| AttributeValue::S(v.into());
        let mut item: Item = [
            (attr::LEASE_KEY, s("shard-1")),
            (attr::CHECKPOINT, s(checkpoint)),
            (attr::LEASE_OWNER, s(owner)),
        ]
        .into();
        if let Some(sub) = sub {
            item.insert(attr::CHECKPOINT_SUB.into(), AttributeValue::N(sub.into()));
        }
        item
    }

    fn write() -> LeaseWrite {
        LeaseWrite {
            key: "shard-1".into(),
            action: WriteAction::Update(Vec::new()),
            condition: Condition::Always,
            return_item: false,
            kind: WriteKind::Checkpoint,
        }
    }

    /// The violations of one write by `writer`, w1's processor having been initialized for the
    /// shard.
    fn check(before: &Item, after: &Item, writer: &str) -> Vec<String> {
        let mut c = Checker::default();
        let shard = LeaseKey::from("shard-1");
        c.initialized(
            &WorkerId::from("w1"),
            &shard,
            FencingToken(3),
            Position::TrimHorizon,
        );
        c.table_write(
            7,
            &WorkerId::from(writer),
            &write(),
            Some(before),
            Some(after),
        );
        c.violations().iter().map(|v| v.what.clone()).collect()
    }

    #[test]
    fn a_checkpoint_moves_forward_by_its_owner_only() {
        let (a, b) = (row("100", None, "w1"), row("200", Some("0"), "w1"));
        assert!(check(&a, &b, "w1").is_empty());
        let back = check(&b, &a, "w1");
        assert!(
            back.len() == 1 && back[0].contains("moved backwards"),
            "{back:?}"
        );
        let stranger = check(&a, &b, "w2");
        assert!(
            stranger.len() == 1 && stranger[0].contains("not its owner"),
            "{stranger:?}"
        );
        // The owner is the checkers' own record, not the row's: a row naming w2 as its owner
        // does not make w2's move right, and w1 (the latest ownership) may move it.
        let (a2, b2) = (row("100", None, "w2"), row("200", None, "w2"));
        assert_eq!(check(&a2, &b2, "w2").len(), 1);
        assert!(check(&a2, &b2, "w1").is_empty());
        // The same position written differently is no move, whoever writes it.
        assert!(check(&row("0100", Some("0"), "w1"), &a, "w2").is_empty());
        // Sub-sequence numbers order records of one aggregated sequence number.
        let (x, y) = (row("100", Some("1"), "w1"), row("100", Some("2"), "w1"));
        assert!(check(&y, &x, "w1")[0].contains("moved backwards"));
    }

    #[test]
    fn a_lease_told_its_shard_ended_is_not_given_up() {
        let mut c = Checker::default();
        let (w, shard) = (WorkerId::from("w1"), LeaseKey::from("shard-1"));
        let release = LeaseWrite {
            kind: WriteKind::Release,
            ..write()
        };
        let a = row("100", None, "w1");
        c.table_write(1, &w, &release, Some(&a), Some(&a));
        assert_eq!(c.violation_count(), 0);
        c.shard_ended_told(&w, &shard);
        c.table_write(2, &w, &release, Some(&a), Some(&a));
        assert_eq!(c.violation_count(), 1);
        assert!(c.violations()[0].what.contains("SHARD_END must win"));
        // A new ownership of the shard starts untold.
        c.initialized(&w, &shard, FencingToken(9), Position::TrimHorizon);
        c.table_write(3, &w, &release, Some(&a), Some(&a));
        assert_eq!(c.violation_count(), 1);
    }

    /// A stream of one shard holding records 0..6: one aggregate of three user records, then
    /// three plain records.
    fn stream() -> Kinesis {
        let mut k = Kinesis::new(1, crate::kinesis::KinesisLimits::default());
        k.put_aggregate(0, "a", 1, 3);
        for _ in 0..3 {
            k.put(0, "b", 1);
        }
        k
    }

    fn batch(k: &Kinesis, (from, to): (u64, u64)) -> Vec<SimRecord> {
        (from..to)
            .map(|i| SimRecord {
                position: k.user_record(0, i).map(|(p, _)| p).expect("a record"),
                shard: 0,
                index: i,
                size: 1,
            })
            .collect()
    }

    /// Violations of an ownership that started at `start` and delivered `batches` (index
    /// ranges, end excluded).
    fn gaps(start: Position, batches: &[(u64, u64)]) -> u64 {
        let k = stream();
        let mut c = Checker::default();
        let (w, shard) = (WorkerId::from("w1"), LeaseKey::from("shard-1"));
        c.put(0, 0, 6);
        c.initialized(&w, &shard, FencingToken(4), start);
        for b in batches {
            c.delivered(1, 0, &shard, FencingToken(4), &batch(&k, *b), &k);
        }
        c.violation_count()
    }

    #[test]
    fn an_ownership_delivers_from_right_after_its_checkpoint_without_gaps() {
        let inside = Position::Record(stream().user_record(0, 0).expect("held").0);
        // From inside the aggregate: its next user record first.
        assert_eq!(gaps(inside.clone(), &[(1, 3), (3, 6)]), 0);
        // Resuming after the whole aggregate skips two of its user records.
        assert_eq!(gaps(inside, &[(3, 6)]), 1);
        assert_eq!(gaps(Position::TrimHorizon, &[(0, 2), (2, 6)]), 0);
        assert_eq!(gaps(Position::TrimHorizon, &[(1, 6)]), 1);
        // A gap between two batches of one ownership.
        assert_eq!(gaps(Position::TrimHorizon, &[(0, 2), (3, 6)]), 1);
    }

    #[test]
    fn the_table_writes_keep_the_unfinished_and_finished_leases() {
        let mut c = Checker::default();
        let w = WorkerId::from("w1");
        c.initialized(
            &w,
            &LeaseKey::from("shard-1"),
            FencingToken(1),
            Position::TrimHorizon,
        );
        let open = row("100", None, "w1");
        c.table_write(1, &w, &write(), None, Some(&open));
        assert!(c.unfinished().contains("shard-1"));
        let ended = row(Position::SHARD_END, None, "w1");
        c.table_write(2, &w, &write(), Some(&open), Some(&ended));
        assert!(c.unfinished().is_empty());
        assert!(c.is_finished(&LeaseKey::from("shard-1")));
        assert!(c.violations().is_empty(), "{:?}", c.violations());
        let worker_row: Item =
            [(attr::ENTITY_TYPE, AttributeValue::S("KCL_RS_WORKER".into()))].into();
        c.table_write(3, &w, &write(), None, Some(&worker_row));
        assert!(c.unfinished().is_empty(), "a worker row is no lease");
    }
}
