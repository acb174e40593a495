//! Taking under `Kcl2Compatible`: every worker runs the Java KCL 2.x taker
//! ([`crate::taker`]) over its own scan and takes what it chose, one conditional write a lease.

use alloc::collections::BTreeSet;
use alloc::vec::Vec;

use super::{Worker, WriteOp};
use crate::io::{Failure, Record};
use crate::item::Item;
use crate::lease::LeaseKey;
use crate::protocol::LeaseOp;
use crate::taker::{self, TakerLease};
use crate::time::Instant;

/// The takes in flight, by lease.
#[derive(Clone, Debug, Default)]
pub(crate) struct Taking {
    in_flight: BTreeSet<LeaseKey>,
}

impl<R: Record + Clone> Worker<R> {
    pub(super) fn take_leases(&mut self) {
        let leases: Vec<TakerLease> = self
            .view
            .leases
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
            if self.held.contains_key(&t.key) || !self.taking.in_flight.insert(t.key.clone()) {
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

    /// A take's answer: the row it returned is the lease from now on.
    pub(super) fn taken(
        &mut self,
        key: LeaseKey,
        steal: bool,
        sent: Instant,
        result: Result<Option<Item>, Failure>,
    ) {
        self.taking.in_flight.remove(&key);
        if let Ok(Some(item)) = result {
            self.adopt(item, sent, steal);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::worker::testing::{owned, unowned, Harness};
    use crate::write::{Condition, WriteKind};

    #[test]
    fn an_unowned_lease_is_taken_at_once_and_an_expired_one_after_the_failover_time() {
        let mut h = Harness::new(Config::kcl2(), "w1");
        h.put(&unowned("shard-1"));
        h.put(&owned("shard-2", "w2", 5));
        h.run_until(1);
        assert!(h.holds("shard-1"));
        assert!(!h.holds("shard-2"), "w2's lease is not expired yet");
        let takes = h.writes(WriteKind::Take);
        assert_eq!(takes.len(), 1);
        assert_eq!(
            takes[0].condition,
            Condition::eq_num(crate::lease::attr::LEASE_COUNTER, 0)
        );
        // w2 never renews: at the next scan its counter has stood still for the failover time.
        h.run_until(25_000);
        assert!(h.holds("shard-2"));
        let takes = h.writes(WriteKind::Take);
        assert_eq!(
            takes.len(),
            2,
            "one take per lease, none while one is in flight"
        );
        assert_eq!(
            takes[1].condition,
            Condition::eq_num(crate::lease::attr::LEASE_COUNTER, 5)
        );
        assert_eq!(
            h.lease("shard-2").and_then(|l| l.owner),
            Some(crate::WorkerId::from("w1"))
        );
    }

    #[test]
    fn a_row_whose_counter_cannot_be_bumped_is_malformed_not_a_panic() {
        let mut h = Harness::new(Config::kcl2(), "w1");
        h.put(&owned("shard-1", "w2", u64::MAX));
        h.put(&unowned("shard-2"));
        h.run_until(30_000);
        assert!(!h.holds("shard-1"));
        assert!(h.holds("shard-2"), "the other leases are unaffected");
        assert!(h.writes(WriteKind::Take).iter().all(|w| w.key != "shard-1"));
        assert!(h.w.stats().malformed_rows > 0, "counted");
    }
}
