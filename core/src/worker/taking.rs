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
