//! Heads-ups (worker liveness): word to the workers likely to receive a silent worker's leases,
//! so that they read their assignment a heartbeat poll after it is made, not up to a heartbeat
//! interval after.
//!
//! A worker that holds leases and whose row a scan shows still for `receiver_expiry` (a
//! heartbeat interval and a half) is read again, consistently: a scan may be stale. If the row
//! still has not moved, the leader plans as if the workers so confirmed were fenced, and sends
//! each receiver of those plans one [`HeadsUp`](crate::protocol::LeaseOp::HeadsUp) note saying
//! when the fences (and so the assignments) are due; a worker that reads one heartbeats every
//! `handoff_poll_interval` around then ([`Hurry`]). The leader's plans prefer the workers it
//! told among workers of equal load, so the assignments after the fence go to workers that are
//! looking. The standby does the same while the leader row is silent too: when the leader died
//! with others, it is the standby that fences them and assigns their leases once it claimed.
//!
//! A heads-up moves no lease and proves nothing: lost, wrong or late, it costs a few
//! heartbeats, never exclusivity. The fence and the assignment stay as the protocol page says.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;

use super::{Pending, Worker};
use crate::balance::PlanWorker;
use crate::config::Config;
use crate::io::{Failure, Record};
use crate::item::Item;
use crate::lease::{Row, WorkerId, WorkerRow, LEADER_KEY};
use crate::protocol::LeaseOp;
use crate::time::Instant;
use core::time::Duration;

/// The leader's side.
#[derive(Clone, Debug, Default)]
pub(crate) struct HeadsUps {
    /// Workers whose row a scan showed still past `receiver_expiry`.
    silent: BTreeMap<WorkerId, Silence>,
    /// The workers told, with the window their heads-ups named, on this worker's clock: one is
    /// told again only of a window its last does not cover.
    told: BTreeMap<WorkerId, (Instant, Instant)>,
    /// A silent row was confirmed since the receivers were last told.
    untold: bool,
}

/// A row a scan showed still: the liveness it showed, and how far its consistent read got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Silence {
    liveness: u64,
    confirmed: Confirmation,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Confirmation {
    /// The consistent read is in flight.
    Reading,
    /// It showed the row still as the scan did.
    Confirmed,
}

impl HeadsUps {
    /// Whether `worker` was told of an assignment due about now: it is heartbeating often, and
    /// reads an assignment soonest.
    pub(crate) fn expects(&self, worker: &WorkerId, now: Instant, config: &Config) -> bool {
        self.told
            .get(worker)
            .is_some_and(|(_, to)| now <= *to + config.scan_interval)
    }
}

/// The receiver's side: heartbeats every `handoff_poll_interval` around the time its heads-ups
/// said an assignment may come.
#[derive(Clone, Debug, Default)]
pub(crate) struct Hurry {
    /// From when to when, on this worker's clock; the union of every heads-up's window.
    window: Option<(Instant, Instant)>,
}

impl Hurry {
    /// A heads-up read at `now`, saying the assignment may come `due` after it was written. It
    /// was written at most a heartbeat interval before (the heartbeat before this one read the
    /// row), so the assignment comes within `due`, minus up to a heartbeat interval, of `now`;
    /// a scan interval after the window covers the fence and the plan that assigns.
    pub(crate) fn heads_up(&mut self, now: Instant, due: (Duration, Duration), config: &Config) {
        let from = now + due.0 - (config.heartbeat_interval + config.handoff_poll_interval);
        let to = now + due.1 + config.scan_interval;
        self.window = Some(match self.window {
            Some((f, t)) if t > now => (f.min(from), t.max(to)),
            _ => (from, to),
        });
    }

    /// When the next heartbeat is due, the last one sent at `now`.
    pub(crate) fn next_heartbeat(&self, now: Instant, config: &Config) -> Instant {
        let regular = now + config.heartbeat_interval;
        match self.window {
            Some((from, to)) if now < to => {
                if from <= now {
                    now + config.handoff_poll_interval
                } else {
                    regular.min(from)
                }
            }
            _ => regular,
        }
    }
}

impl<R: Record + Clone> Worker<R> {
    /// Reads again, consistently, each row in `watched` that the last scan showed still past
    /// `receiver_expiry`, once per stillness; forgets the rows that moved, and the heads-ups on
    /// leases that moved.
    pub(super) fn check_silent(&mut self, watched: &BTreeSet<WorkerId>) {
        let (now, expiry) = (self.ctx.now, self.ctx.config.receiver_expiry());
        let still: BTreeMap<WorkerId, u64> = watched
            .iter()
            .filter(|w| self.seen(&WorkerRow::key(w)).older_than(now, expiry))
            .filter_map(|w| Some((w.clone(), self.view.workers.get(w)?.liveness())))
            .collect();
        let heads_ups = &mut self.planning.heads_ups;
        heads_ups
            .silent
            .retain(|w, s| still.get(w) == Some(&s.liveness));
        let forget_after = self.ctx.config.scan_interval;
        heads_ups
            .told
            .retain(|_, (_, to)| now <= *to + forget_after);
        for (worker, liveness) in still {
            if self.planning.heads_ups.silent.contains_key(&worker) {
                continue;
            }
            self.planning.heads_ups.silent.insert(
                worker.clone(),
                Silence {
                    liveness,
                    confirmed: Confirmation::Reading,
                },
            );
            let key = WorkerRow::key(&worker);
            self.ctx
                .read(&key, Pending::ConfirmSilent { worker, liveness });
        }
    }

    /// A consistent read of a row the scan showed silent: still as the scan showed it, the
    /// likely receivers of its leases are told; moved, gone or unread, it is forgotten (the next
    /// scan judges it again).
    pub(super) fn silence_read(
        &mut self,
        worker: WorkerId,
        liveness: u64,
        result: Result<Option<Item>, Failure>,
    ) {
        let still = match &result {
            Ok(Some(item)) => {
                matches!(Row::from_item(item), Ok(Row::Worker(r)) if r.liveness() == liveness)
            }
            _ => false,
        };
        let heads_ups = &mut self.planning.heads_ups;
        let Some(silence) = heads_ups.silent.get_mut(&worker) else {
            return; // A later scan saw it move.
        };
        if silence.liveness != liveness {
            return; // A later scan judged it again.
        }
        if still {
            silence.confirmed = Confirmation::Confirmed;
            heads_ups.untold = true;
        } else {
            heads_ups.silent.remove(&worker);
        }
        // The rows a scan showed silent together (a machine) are told of together, once the
        // last of their reads is answered.
        let answered = heads_ups
            .silent
            .values()
            .all(|s| s.confirmed == Confirmation::Confirmed);
        if answered
            && heads_ups.untold
            && (self.election.is_leader(&self.ctx.config, self.ctx.now)
                || (self.election.is_standby() && self.leader_silent()))
        {
            self.planning.heads_ups.untold = false;
            self.tell_receivers();
        }
    }

    /// The standby checks silent rows too while the leader row is silent: when the leader died
    /// with others (its machine), it is the standby that will fence and assign them.
    pub(super) fn standby_checks_silent(&mut self) {
        if self.ctx.config.worker_liveness() && self.leader_silent() {
            let watched = self.judge_leases().watched;
            self.check_silent(&watched);
        }
    }

    /// Whether the leader row stood still past `receiver_expiry` as this worker's scans showed it.
    fn leader_silent(&self) -> bool {
        self.seen(LEADER_KEY)
            .older_than(self.ctx.now, self.ctx.config.receiver_expiry())
    }

    /// When, in milliseconds from now, the fence of a row first seen as it is at `since` is due:
    /// from a leader, a failover time after `since`; from the standby, no sooner than it may
    /// claim (the leader row still for the failover time), and up to a standby scan later.
    fn fence_due(&self, since: Option<Instant>) -> (u64, u64) {
        let (now, d) = (self.ctx.now, self.ctx.config.failover_time);
        let fence = since.map_or(now, |s| s + d);
        let (from, to) = if self.election.is_leader(&self.ctx.config, now) {
            (fence, fence)
        } else {
            let claim = self.seen(LEADER_KEY).since.map_or(now, |s| s + d);
            let scan = self.ctx.config.standby_scan_interval.unwrap_or_default();
            (fence.max(claim), fence.max(claim + scan))
        };
        let ms =
            |at: Instant| u64::try_from(at.saturating_since(now).as_millis()).unwrap_or(u64::MAX);
        (ms(from), ms(to))
    }

    /// Tells each worker that will likely receive a confirmed silent worker's lease (but this
    /// leader, which reads its assignments at once) when that may be, again only of a window it
    /// was not told of. The plans that will free these leases give each orphan to the least
    /// loaded worker with room, ties to the soonest to read ([`balance`]); whether a leader frees
    /// them worker by worker as fences fall due or a standby that claims frees them all at once,
    /// the receivers are then the same workers (the plans' quotas may split ties otherwise, which
    /// costs only a slower pick-up), so one pass in the order the fences are due finds them, at
    /// the cost of a sort rather than a plan per silent worker.
    fn tell_receivers(&mut self) {
        let mut silent: Vec<(Option<Instant>, &WorkerId)> = self
            .planning
            .heads_ups
            .silent
            .iter()
            .filter(|(_, s)| s.confirmed == Confirmation::Confirmed)
            .map(|(w, _)| (self.seen(&WorkerRow::key(w)).since, w))
            .collect();
        silent.sort();
        let mut workers = self.plan_workers();
        let judged = self.judge_leases().leases;
        crate::balance::set_aside_stalled(&mut workers, &judged);
        let mut orphans: BTreeMap<&WorkerId, Vec<usize>> = BTreeMap::new();
        let mut load: BTreeMap<&WorkerId, usize> = BTreeMap::new();
        let silent_ids: BTreeSet<&WorkerId> = silent.iter().map(|(_, w)| *w).collect();
        for (i, l) in judged.iter().enumerate() {
            if let Some(h) = l.holder.as_ref() {
                if silent_ids.contains(h) {
                    orphans.entry(h).or_default().push(i);
                } else {
                    *load.entry(h).or_default() += 1;
                }
            }
        }
        let cap = |w: &PlanWorker| usize::try_from(w.max_leases).unwrap_or(usize::MAX);
        // (load, pick-up, id, position): the next receiver first.
        let mut queue: BTreeSet<(usize, u64, &WorkerId, usize)> = workers
            .iter()
            .enumerate()
            .map(|(i, w)| {
                (
                    load.get(&w.id).copied().unwrap_or(0),
                    w.pick_up_ms,
                    &w.id,
                    i,
                )
            })
            .filter(|&(n, _, _, i)| !workers[i].leaving && n < cap(&workers[i]))
            .collect();
        // (lease, worker, the window of the lease's holder)
        let mut receivers: Vec<(usize, usize, (u64, u64))> = Vec::new();
        for (since, w) in &silent {
            let window = self.fence_due(*since);
            for &lease in orphans.get(w).into_iter().flatten() {
                let Some((n, pick_up, id, to)) = queue.pop_first() else {
                    break;
                };
                if n + 1 < cap(&workers[to]) {
                    queue.insert((n + 1, pick_up, id, to));
                }
                if *id != self.ctx.id {
                    receivers.push((lease, to, window));
                }
            }
        }
        // One heads-up per worker, naming one of its leases and the union of their windows.
        let now = self.ctx.now;
        let mut per_worker: BTreeMap<usize, (usize, Instant, Instant)> = BTreeMap::new();
        for (lease, to, (from_ms, to_ms)) in receivers {
            let (from, until) = (
                now + Duration::from_millis(from_ms),
                now + Duration::from_millis(to_ms),
            );
            per_worker
                .entry(to)
                .and_modify(|w| *w = (w.0, w.1.min(from), w.2.max(until)))
                .or_insert((lease, from, until));
        }
        for (to, (lease, from, until)) in per_worker {
            let worker = workers[to].id.clone();
            let told = self.planning.heads_ups.told.get(&worker);
            if told.is_some_and(|(f, t)| *f <= from && until <= *t) {
                continue;
            }
            let (from, until) = match told {
                Some((f, t)) if now <= *t => ((*f).min(from), (*t).max(until)),
                _ => (from, until),
            };
            let ms = |at: Instant| u64::try_from(at.saturating_since(now).as_millis());
            let op = LeaseOp::HeadsUp {
                worker: worker.clone(),
                shard: judged[lease].key.clone(),
                counter: judged[lease].counter,
                due_ms: (ms(from).unwrap_or(0), ms(until).unwrap_or(u64::MAX)),
            };
            self.ctx.write(&op, super::WriteOp::HeadsUp);
            self.planning.heads_ups.told.insert(worker, (from, until));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    /// Defaults: heartbeat 3,308 ms, poll 500 ms, scan 2 s.
    #[test]
    fn a_heads_up_quickens_heartbeats_from_a_heartbeat_before_its_window_to_a_scan_after() {
        let config = Config::default();
        let mut hurry = Hurry::default();
        assert_eq!(hurry.next_heartbeat(at(1_000), &config), at(4_308));
        let due = (Duration::from_millis(5_000), Duration::from_millis(6_000));
        hurry.heads_up(at(10_000), due, &config);
        // The window: 15,000 - 3,808 = 11,192 to 16,000 + 2,000.
        assert_eq!(hurry.next_heartbeat(at(10_000), &config), at(11_192));
        assert_eq!(hurry.next_heartbeat(at(11_192), &config), at(11_692));
        assert_eq!(hurry.next_heartbeat(at(17_900), &config), at(18_400));
        assert_eq!(hurry.next_heartbeat(at(18_000), &config), at(21_308));
        // A second heads-up widens the window; one read after the first ended starts anew.
        hurry.heads_up(at(12_000), due, &config);
        assert_eq!(hurry.next_heartbeat(at(19_900), &config), at(20_400));
        hurry.heads_up(at(40_000), due, &config);
        assert_eq!(hurry.next_heartbeat(at(40_000), &config), at(41_192));
    }
}
