//! Shard sync: the scanning worker lists the stream's shards and creates the leases missing
//! from the table ([`crate::sync`]), parents before children, when it starts, every
//! `shard_sync_interval`, and as soon as a lease reaches its shard end.

use alloc::collections::BTreeSet;

use super::timers::TimerKey;
use super::{Outstanding, Pending, Phase, Worker, WriteOp};
use crate::io::{Command, Failure, FencingToken, Record, ShardListing};
use crate::item::Item;
use crate::lease::LeaseKey;
use crate::protocol::LeaseOp;
use crate::sync;

#[derive(Clone, Debug, Default)]
pub(crate) struct ShardSync {
    /// A sync is to run after the next scan.
    pub(crate) due: bool,
    listing: Outstanding,
    /// Leases whose create is in flight.
    creating: BTreeSet<LeaseKey>,
}

impl<R: Record + Clone> Worker<R> {
    pub(super) fn sync_timer(&mut self) {
        self.sync.due = true;
        let at = self.ctx.now + self.ctx.config.shard_sync_interval;
        self.ctx.timers.set(TimerKey::ShardSync, at);
    }

    /// Lists the shards if a sync is due and none is under way.
    pub(super) fn sync_if_due(&mut self) {
        if self.sync.due && self.sync.listing == Outstanding::Idle {
            let req = self
                .ctx
                .request(Pending::ListShards, |req| Command::ListShards { req });
            self.sync.listing = Outstanding::InFlight(req);
        }
    }

    pub(super) fn shards_listed(&mut self, result: Result<ShardListing, Failure>) {
        self.sync.listing = Outstanding::Idle;
        let Ok(listing) = result else { return };
        if self.ctx.phase != Phase::Running {
            return;
        }
        self.sync.due = false;
        let mut existing: BTreeSet<LeaseKey> = self.view.leases.keys().cloned().collect();
        existing.extend(self.held.keys().cloned());
        existing.extend(self.sync.creating.iter().cloned());
        let start = sync::RootStart::new(self.ctx.config.initial_position, listing.listed_at);
        for lease in sync::leases_to_create(&listing.shards, &existing, start) {
            // Children of what is created now come in the next round, after the next scan.
            self.sync.due = true;
            self.sync.creating.insert(lease.key.clone());
            self.ctx.write(
                &LeaseOp::Create {
                    lease: alloc::boxed::Box::new(lease),
                },
                WriteOp::Create { child_of: None },
            );
        }
    }

    /// A create's answer, from shard sync or from a parent at its shard end (`child_of`). A row
    /// that existed already counts as created for the parent.
    pub(super) fn created(
        &mut self,
        key: LeaseKey,
        child_of: Option<(LeaseKey, FencingToken)>,
        result: Result<Option<Item>, Failure>,
    ) {
        self.sync.creating.remove(&key);
        let ok = result.is_ok();
        if ok {
            self.ctx.stats.leases_created += 1;
        }
        if let Some((shard, token)) = child_of {
            let created = ok || result == Err(Failure::ConditionFailed);
            self.with_token(&shard, token, |h, ctx| h.child_created(ctx, created));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::io::{Command, ShardDescription};
    use crate::lease::{HashKeyRange, LeaseKey};
    use crate::worker::testing::Harness;
    use crate::write::WriteKind;

    fn shard(id: &str) -> ShardDescription {
        ShardDescription {
            shard_id: LeaseKey::from(id),
            parent: None,
            adjacent_parent: None,
            hash_range: HashKeyRange { start: 0, end: 1 },
            closed: false,
        }
    }

    /// A LATEST lease keeps the time it was listed at, and its owner reads from there: the
    /// records put between the creation and the first read are delivered.
    #[test]
    fn a_latest_lease_is_read_from_when_it_was_created_not_when_it_was_taken() {
        let mut config = Config::kcl2();
        config.initial_position = crate::config::InitialPosition::Latest;
        let mut h = Harness::new(config, "w1");
        h.shards = alloc::vec![shard("shard-0")];
        h.now = crate::time::Instant::from_millis(50_000);
        h.run_until(50_001);
        let lease = h.lease("shard-0").expect("created");
        assert_eq!(lease.checkpoint, crate::sequence::Position::Latest);
        let created = lease.starting_timestamp.map(|t| t.unix_millis());
        assert!(
            created.is_some_and(|t| (49_000..50_001).contains(&t)),
            "{created:?}"
        );
        // Taken much later, by the taker's next run.
        h.run_until(200_000);
        let asked: alloc::vec::Vec<_> = h
            .log
            .iter()
            .filter_map(|c| match c {
                Command::GetShardIterator { position, .. } => Some(position.clone()),
                _ => None,
            })
            .collect();
        assert!(!asked.is_empty());
        for position in asked {
            assert_eq!(
                position,
                crate::io::StartingPosition::AtTimestamp(created.unwrap_or_default())
            );
        }
    }

    #[test]
    fn missing_leases_are_created_after_the_first_scan_and_only_once() {
        let mut h = Harness::new(Config::kcl2(), "w1");
        h.shards = alloc::vec![shard("shard-0"), shard("shard-1")];
        h.run_until(1);
        let creates = h.writes(WriteKind::Create);
        assert_eq!(creates.len(), 2);
        assert_eq!(h.w.stats().leases_created, 2);
        assert!(h.lease("shard-0").is_some() && h.lease("shard-1").is_some());
        // Leases were created, so the next scan lists again (their children may be missing),
        // and creates nothing that exists.
        h.run_until(25_000);
        let lists = h
            .log
            .iter()
            .filter(|c| matches!(c, Command::ListShards { .. }))
            .count();
        assert!(lists >= 2, "{lists}");
        assert_eq!(h.writes(WriteKind::Create).len(), 2);
    }
}
