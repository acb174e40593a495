//! Leader election under `Coordinated`: the leader row is a lease on leadership, claimed by a
//! follower that finds it absent, unowned, its own or expired on its own clock, and renewed with
//! the worker's leases. The leader acts as leader only inside the same delivery window a lease
//! has (see [`crate::protocol`]). The row names a standby, a follower that scans the table beside
//! the leader and sees the row in its scans; the other followers read the row and leave the
//! standby a head start before they claim.

use super::ctx::Predecessor;
use super::timers::TimerKey;
use super::{Outstanding, Pending, Phase, Worker, WriteOp};
use crate::config::{BalancingPolicy, Config};
use crate::io::{Event, Failure, Record};
use crate::item::Item;
use crate::lease::{LeaderRow, Row, WorkerId, WorkerRow, LEADER_KEY};
use crate::protocol::LeaseOp;
use crate::time::Instant;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
enum Leader {
    #[default]
    Follower,
    /// A claim is in flight.
    Claiming,
    Leading {
        /// The counter its last write left.
        counter: u64,
        /// Send time of its last write that landed.
        renewed_sent: Instant,
        renewal: Outstanding,
    },
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Election {
    leader: Leader,
    /// The read of the leader row in flight.
    check: Outstanding,
    /// A follower named standby by the last leader row it saw: it scans the table.
    standby: bool,
    /// The leader: the standby its last write of the row named.
    named: Option<WorkerId>,
}

impl Election {
    /// Whether this worker may act as leader at `now`.
    pub(crate) fn is_leader(&self, config: &Config, now: Instant) -> bool {
        matches!(self.leader, Leader::Leading { renewed_sent, .. } if now < renewed_sent + config.delivery_window())
    }

    /// Whether it holds the leader row, window or not.
    pub(crate) fn is_leading(&self) -> bool {
        matches!(self.leader, Leader::Leading { .. })
    }

    /// Whether it follows as the standby the leader row named.
    pub(crate) fn is_standby(&self) -> bool {
        self.standby && self.leader == Leader::Follower
    }

    /// The standby this leader named last.
    pub(crate) fn named_standby(&self) -> Option<&WorkerId> {
        self.named.as_ref()
    }
}

impl<R: Record + Clone> Worker<R> {
    /// Leadership ends with the window of its last renewal that landed.
    pub(super) fn check_leadership(&mut self) {
        if let Leader::Leading { renewed_sent, .. } = self.election.leader {
            if self.ctx.now >= renewed_sent + self.ctx.config.delivery_window() {
                self.election.leader = Leader::Follower;
                self.ctx.event(Event::LeadershipLost);
            }
        }
    }

    pub(super) fn leader_check_timer(&mut self) {
        self.check_leadership();
        // A process whose heartbeat has not landed may share its id with a live leader. The
        // standby sees the row in its scans.
        if self.ctx.phase == Phase::Running
            && self.inbox.registration.registered()
            && self.election.leader == Leader::Follower
            && !self.election.standby
            && self.election.check == Outstanding::Idle
        {
            let req = self.ctx.read_eventually(LEADER_KEY, Pending::ReadLeader);
            self.election.check = Outstanding::InFlight(req);
        }
        let at = self.ctx.now + self.ctx.config.leader_check_interval;
        self.ctx.timers.set(TimerKey::LeaderCheck, at);
    }

    /// The leader row, read by a follower.
    pub(super) fn leader_read(&mut self, result: Result<Option<Item>, Failure>) {
        self.election.check = Outstanding::Idle;
        let row = match result {
            Ok(None) => None,
            Ok(Some(item)) => match Row::from_item(&item) {
                Ok(Row::Leader(row)) => Some(row),
                Ok(_) => return,
                Err(error) => {
                    self.ctx.malformed(&item, error);
                    return;
                }
            },
            Err(_) => return,
        };
        self.leader_row_seen(row);
    }

    /// The leader row as a follower saw it (`None`: absent): whether the row names it standby,
    /// and a claim if the row is free. A row that names another standby is free for this
    /// follower only after the standby's head start besides the failover time. A process whose
    /// heartbeat has not landed may share its id with a live worker (the one named, even): it
    /// neither watches nor claims. The standby sees the row in its scans (`None` there: the scan
    /// did not show it).
    pub(super) fn leader_row_seen(&mut self, row: Option<LeaderRow>) {
        if self.election.leader != Leader::Follower
            || self.ctx.phase != Phase::Running
            || !self.inbox.registration.registered()
        {
            return;
        }
        let me = self.ctx.id.clone();
        let named = row.as_ref().and_then(|r| r.standby.as_ref()) == Some(&me);
        self.set_standby(named);
        let mut predecessor = None;
        let seen_counter = match row {
            None => None,
            Some(row) => {
                let now = self.ctx.now;
                let seen = self
                    .observer
                    .observe(LEADER_KEY, row.counter, row.owner.is_some(), now);
                let config = &self.ctx.config;
                let wait = match &row.standby {
                    Some(standby) if *standby != me => {
                        config.failover_time + config.standby_head_start()
                    }
                    _ => config.failover_time,
                };
                let free = row.owner.is_none()
                    || row.owner.as_ref() == Some(&me)
                    || seen.older_than(now, wait);
                if !free {
                    // Looked at again the moment it would be free, not up to an interval later.
                    if let Some(since) = seen.since {
                        let at = since + wait + core::time::Duration::from_millis(1);
                        let timer = if self.election.standby {
                            TimerKey::Scan
                        } else {
                            TimerKey::LeaderCheck
                        };
                        self.ctx.timers.set_earlier(timer, at);
                    }
                    return;
                }
                predecessor = match (row.owner, row.heartbeat, seen.since) {
                    (Some(worker), Some(liveness), Some(seen_since)) if worker != me => {
                        Some(Predecessor {
                            worker,
                            liveness,
                            seen_since,
                        })
                    }
                    _ => None,
                };
                Some(row.counter)
            }
        };
        self.election.leader = Leader::Claiming;
        let standby = self.choose_standby();
        let op = LeaseOp::ClaimLeader {
            worker: me,
            counter: seen_counter,
            heartbeat: self.leader_heartbeat(),
            standby: standby.clone(),
        };
        self.election.named = standby;
        let counter_after = op.counter_after().unwrap_or(1);
        self.ctx.write(
            &op,
            WriteOp::LeaderClaim {
                counter_after,
                predecessor,
            },
        );
    }

    /// Starts scanning when first named standby (the scan timer keeps it going while it is);
    /// the standby role exists only under `Coordinated` with a standby scan interval.
    fn set_standby(&mut self, named: bool) {
        let standby = named
            && self.policy() == BalancingPolicy::Coordinated
            && self.ctx.config.standby_scan_interval.is_some();
        if standby && !self.election.standby {
            self.ctx.timers.set(TimerKey::Scan, self.ctx.now);
        }
        self.election.standby = standby;
    }

    /// What the leader row names as this worker's last heartbeat (worker liveness only).
    fn leader_heartbeat(&self) -> Option<u64> {
        self.ctx
            .config
            .worker_liveness()
            .then_some(self.ctx.heartbeats.liveness)
            .flatten()
    }

    /// A claim's answer: leading from its send time, with a scan and a shard sync at once. The
    /// predecessor's last heartbeat it named landed before this worker first saw that leader
    /// row, so its worker row, if it still shows that heartbeat, has stood still at least since
    /// then: the first scan judges it from there, not from its own first sight (a leader that
    /// died would otherwise be watched for a second failover time before its leases move).
    pub(super) fn claimed(
        &mut self,
        counter_after: u64,
        predecessor: Option<Predecessor>,
        sent: Instant,
        result: Result<Option<Item>, Failure>,
    ) {
        if result.is_ok() && self.ctx.phase == Phase::Running {
            if let Some(p) = predecessor {
                self.observer.seen_no_later_than(
                    &WorkerRow::key(&p.worker),
                    p.liveness,
                    p.seen_since,
                );
            }
            self.election.leader = Leader::Leading {
                counter: counter_after,
                renewed_sent: sent,
                renewal: Outstanding::Idle,
            };
            self.election.standby = false;
            self.ctx.stats.leaderships += 1;
            self.ctx.event(Event::BecameLeader);
            self.sync.due = true;
            self.ctx.timers.set(TimerKey::Scan, self.ctx.now);
        } else {
            self.election.leader = Leader::Follower;
        }
    }

    /// Gives the leader row back (at the start of a shutdown): at once, or when the renewal in
    /// flight is answered, with the counter it leaves. A refused release (the row moved on)
    /// changes nothing.
    pub(super) fn resign_leadership(&mut self) {
        let Leader::Leading {
            counter, renewal, ..
        } = self.election.leader
        else {
            return;
        };
        if renewal != Outstanding::Idle {
            return;
        }
        self.election.leader = Leader::Follower;
        self.ctx.event(Event::LeadershipLost);
        let op = LeaseOp::ReleaseLeader {
            worker: self.ctx.id.clone(),
            counter,
        };
        self.ctx.write(&op, WriteOp::LeaderRelease);
    }

    /// Stops acting as leader without a write (the row expires).
    pub(super) fn abdicate(&mut self) {
        if self.election.is_leading() {
            self.election.leader = Leader::Follower;
            self.ctx.event(Event::LeadershipLost);
        }
    }

    /// Renews the leader row with the worker's leases.
    pub(super) fn renew_leadership(&mut self) {
        self.check_leadership();
        if self.ctx.phase != Phase::Running {
            return self.resign_leadership();
        }
        let Leader::Leading {
            counter,
            renewal: Outstanding::Idle,
            ..
        } = self.election.leader
        else {
            return;
        };
        let standby = self.choose_standby();
        let op = LeaseOp::RenewLeader {
            worker: self.ctx.id.clone(),
            counter,
            heartbeat: self.leader_heartbeat(),
            standby: standby.clone(),
        };
        self.election.named = standby;
        let req = self.ctx.write(
            &op,
            WriteOp::LeaderRenew {
                counter_after: counter + 1,
            },
        );
        if let Leader::Leading { renewal, .. } = &mut self.election.leader {
            *renewal = Outstanding::InFlight(req);
        }
    }

    pub(super) fn leader_renewed(
        &mut self,
        counter_after: u64,
        sent: Instant,
        result: Result<Option<Item>, Failure>,
    ) {
        let Leader::Leading {
            counter,
            renewed_sent,
            renewal,
        } = &mut self.election.leader
        else {
            return;
        };
        // A renewal of an earlier term (leadership lapsed and was claimed again while it was
        // in flight) says nothing of this one: this term's counter moved past it.
        if counter_after != *counter + 1 {
            self.ctx.stats.stale_results += 1;
            return;
        }
        *renewal = Outstanding::Idle;
        match result {
            Ok(_) => {
                *counter = counter_after;
                if sent > *renewed_sent {
                    *renewed_sent = sent;
                }
                if self.ctx.phase != Phase::Running {
                    self.resign_leadership();
                }
            }
            Err(Failure::ConditionFailed) => {
                self.election.leader = Leader::Follower;
                self.ctx.event(Event::LeadershipLost);
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::io::Event;
    use crate::item::Item;
    use crate::lease::{LeaderRow, Row, WorkerId, LEADER_KEY};
    use crate::protocol::LeaseOp;
    use crate::worker::testing::Harness;
    use crate::write::WriteKind;

    fn leader_row(h: &Harness) -> Option<LeaderRow> {
        match h.table.get(LEADER_KEY).map(Row::from_item) {
            Some(Ok(Row::Leader(row))) => Some(row),
            _ => None,
        }
    }

    /// Leadership lapses while a renewal is unanswered and is claimed again; the old renewal's
    /// late refusal must not end the new term. (Under lease liveness, where renewals follow a
    /// timer: under worker liveness they follow heartbeats, which a cut-off stops too.)
    #[test]
    fn a_late_answer_to_the_previous_terms_renewal_does_not_end_the_next() {
        let mut h = Harness::new(Config::default().with_lease_liveness(), "w1");
        h.run_until(1_000);
        assert!(h.w.is_leader(h.now));
        h.cut_off = true;
        let from = h.log.len();
        h.run_until(5_000);
        let old = h.log[from..]
            .iter()
            .find_map(|c| match c {
                crate::io::Command::WriteLease { req, write }
                    if write.kind == WriteKind::Leader =>
                {
                    Some(*req)
                }
                _ => None,
            })
            .expect("a renewal was sent");
        // Cut off past the window: leadership lapses; then the row is read and claimed again.
        h.run_until(12_000);
        assert!(!h.w.is_leader(h.now));
        h.cut_off = false;
        // Every other call of the cut-off fails now (a driver's timeouts), the renewal excepted.
        let others: alloc::vec::Vec<_> = h.log[from..]
            .iter()
            .filter(|c| c.request() != Some(old))
            .filter_map(|c| c.failed(crate::io::Failure::Transient))
            .collect();
        for input in others {
            h.handle(input);
        }
        h.run_until(20_000);
        assert!(h.w.is_leader(h.now), "claimed again");
        h.handle(crate::io::Input::LeaseWritten {
            req: old,
            result: Err(crate::io::Failure::ConditionFailed),
        });
        assert!(h.w.is_leader(h.now), "the new term goes on");
        h.run_until(30_000);
        assert!(h.w.is_leader(h.now), "and renews");
    }

    #[test]
    fn a_follower_claims_an_absent_leader_row_and_renews_it() {
        let mut h = Harness::new(Config::default(), "w1");
        h.run_until(1_000);
        assert!(h.w.is_leader(h.now));
        assert!(h.events().contains(&&Event::BecameLeader));
        assert_eq!(
            leader_row(&h).and_then(|r| r.owner),
            Some(WorkerId::from("w1"))
        );
        h.run_until(10_000);
        let row = leader_row(&h).expect("a leader row");
        assert!(row.counter >= 3, "renewed with the leases: {row:?}");
        assert!(h.w.is_leader(h.now));
    }

    #[test]
    fn a_live_leader_is_left_alone_and_an_expired_one_replaced() {
        let mut h = Harness::new(Config::default(), "w1");
        h.apply(&LeaseOp::ClaimLeader {
            standby: None,
            worker: WorkerId::from("w9"),
            counter: None,
            heartbeat: None,
        });
        // w9 never renews. Checks every 5 s see the same counter; w1 claims once it has
        // stood still for the failover time (10 s) on w1's clock.
        h.run_until(10_000);
        assert!(!h.w.is_leader(h.now));
        assert!(h.writes(WriteKind::Leader).is_empty());
        h.run_until(16_000);
        assert!(h.w.is_leader(h.now));
        assert_eq!(
            leader_row(&h).map(|r| r.owner),
            Some(Some(WorkerId::from("w1")))
        );
    }

    #[test]
    fn leadership_ends_with_the_window_of_the_last_renewal_that_landed() {
        let mut h = Harness::new(Config::default(), "w1");
        h.run_until(1_000);
        assert!(h.w.is_leader(h.now));
        h.cut_off = true;
        h.run_until(20_000);
        assert!(!h.w.is_leader(h.now));
        assert!(h.events().contains(&&Event::LeadershipLost));
        // Another worker took the row meanwhile: the next renewal is refused.
        let mut h = Harness::new(Config::default(), "w1");
        h.run_until(1_000);
        let mut taken = Item::new();
        taken.insert(
            crate::lease::attr::LEASE_COUNTER.into(),
            crate::item::AttributeValue::number(99),
        );
        h.table.insert(LEADER_KEY.into(), taken);
        h.run_until(5_000);
        assert!(!h.w.is_leader(h.now));
    }
}
