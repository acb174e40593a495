//! The invariant checkers of DESIGN.md, outside the workers. They see what the services and the
//! simulated applications see: records put and delivered, lease-table writes, processors
//! initialized; the fleet asks them at every delivery and every table write.

use std::collections::{BTreeMap, BTreeSet};

use kcl_core::lease::attr;
use kcl_core::write::{LeaseWrite, Update, WriteAction};
use kcl_core::{FencingToken, Lease, LeaseKey, Position, WorkerId};

use crate::record::SimRecord;

/// An invariant broken, with when.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Violation {
    /// Simulated (true) time, ms.
    pub at_ms: u64,
    /// Which invariant, and how.
    pub what: String,
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
    /// Records before this index have all been delivered.
    first_undelivered: u64,
    /// Nodes that delivered this shard recently (the candidates for an exclusivity clash).
    deliverers: Vec<usize>,
}

/// The checkers' state.
#[derive(Clone, Debug, Default)]
pub struct Checker {
    violations: Vec<Violation>,
    violation_count: u64,
    shards: Vec<ShardLog>,
    /// The checkpoint each ownership (shard, token) started from.
    init: BTreeMap<(LeaseKey, FencingToken), Position>,
    finished: BTreeSet<LeaseKey>,
    unfinished: BTreeSet<LeaseKey>,
    /// Records delivered, duplicates included.
    pub records_delivered: u64,
    /// Deliveries of a record delivered before.
    pub duplicate_deliveries: u64,
    /// Records put.
    pub records_put: u64,
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

    /// A record was put at `index` of `shard`.
    pub fn put(&mut self, shard: usize, index: u64) {
        self.records_put += 1;
        let log = self.shard(shard);
        if log.records.len() as u64 <= index {
            log.records.resize(index as usize + 1, Delivery::default());
        }
    }

    /// A processor was initialized for an ownership.
    pub fn initialized(&mut self, shard: &LeaseKey, token: FencingToken, checkpoint: Position) {
        self.init.insert((shard.clone(), token), checkpoint);
    }

    /// The nodes that delivered `shard` recently; the fleet asks each whether it still may.
    pub fn deliverers(&self, shard: usize) -> &[usize] {
        self.shards.get(shard).map_or(&[], |s| &s.deliverers)
    }

    /// Forgets a node as a recent deliverer of `shard` once its window is closed.
    pub fn forget_deliverer(&mut self, shard: usize, node: usize) {
        self.shard(shard).deliverers.retain(|&n| n != node);
    }

    /// Invariant 4 (parent before child) and 3 (duplicates only across ownerships, and never at
    /// or before the checkpoint the ownership started from). Exclusivity (invariant 1) is
    /// judged by the fleet, which knows every worker's delivery deadline.
    pub fn delivered(
        &mut self,
        now: u64,
        node: usize,
        shard_id: &LeaseKey,
        parents: &[LeaseKey],
        token: FencingToken,
        records: &[SimRecord],
    ) {
        for p in parents {
            if !self.finished.contains(p) {
                self.violation(
                    now,
                    format!("parent before child: {shard_id} delivered before its parent {p} reached SHARD_END"),
                );
            }
        }
        let floor = self.init.get(&(shard_id.clone(), token)).cloned();
        let Some(first) = records.first() else {
            return;
        };
        let shard = first.shard as usize;
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

    /// A lease-table write landed: invariant 2 (checkpoints never move backwards and only the
    /// owner moves them), and the bookkeeping of which leases exist and are finished.
    pub fn table_write(
        &mut self,
        now: u64,
        writer: &WorkerId,
        write: &LeaseWrite,
        before: Option<&Lease>,
        after: Option<&Lease>,
    ) {
        match after {
            Some(a) if a.is_finished() => {
                self.unfinished.remove(&a.key);
                self.finished.insert(a.key.clone());
            }
            Some(a) => {
                self.unfinished.insert(a.key.clone());
            }
            None => {
                if let Some(b) = before {
                    self.unfinished.remove(&b.key);
                }
            }
        }
        let (Some(b), Some(a)) = (before, after) else {
            return;
        };
        if a.checkpoint == b.checkpoint {
            return;
        }
        if a.checkpoint < b.checkpoint {
            self.violation(
                now,
                format!(
                    "checkpoint of {} moved backwards: {:?} -> {:?} by {writer} ({:?})",
                    a.key, b.checkpoint, a.checkpoint, write.kind
                ),
            );
        }
        let owner = b.owner.as_ref() == Some(writer) || b.checkpoint_owner.as_ref() == Some(writer);
        if !owner {
            self.violation(
                now,
                format!(
                    "checkpoint of {} moved by {writer}, not its owner {:?}",
                    a.key, b.owner
                ),
            );
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

    /// Records of `shard` not delivered yet whose arrival is older than `before_ms`, found by
    /// `arrival`; advances the delivered prefix as a side effect.
    pub fn behind(
        &mut self,
        shard: usize,
        before_ms: u64,
        arrival: impl Fn(u64) -> Option<u64>,
    ) -> bool {
        let log = self.shard(shard);
        while (log.first_undelivered as usize) < log.records.len()
            && log.records[log.first_undelivered as usize].count > 0
        {
            log.first_undelivered += 1;
        }
        let i = log.first_undelivered;
        (i as usize) < log.records.len() && arrival(i).is_some_and(|t| t < before_ms)
    }

    /// Records never delivered.
    pub fn undelivered(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.records.iter().filter(|d| d.count == 0).count() as u64)
            .sum()
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
