//! Whether Kinesis answers this worker.
//!
//! A worker cut off from Kinesis but not from DynamoDB (a broken route, endpoint or DNS on one
//! host) keeps its leases alive with its heartbeats while reading nothing: without this, its
//! shards stall for as long as the fault lasts. Every Kinesis call's outcome is observed: an
//! answer of any kind (records, a listing, or a refusal such as throttling, an expired iterator
//! or a shard not found) shows that Kinesis is reachable; a call that got no answer
//! ([`Failure::Transient`]: a timeout, a connection failure, a 5xx) does not. A shard iterator
//! obtained says nothing (under enhanced fan-out it is made up locally). The reads are *stalled*
//! once unanswered calls have been reported over [`Config::read_stall_time`] with no answer
//! between: evidence over that whole span, so that a worker that stopped calling (its processor
//! slow, its leases gone) after one failed call is not taken for cut off. At that moment a
//! heartbeat says so (`readsStalled`), and a leader moves the worker's leases to workers that
//! can read, by the ordinary handoff, as long as the stalled ones are a minority of the workers
//! holding leases (when Kinesis fails for most of the fleet, moving leases would only move the
//! stall).
//!
//! A stalled worker probes Kinesis with a listing at its first heartbeat at least
//! [`Config::backoff_max`] after the last (once its leases are gone it makes no other call); the
//! first answer ends the stall (the next heartbeat says so), and readers waiting out a backoff
//! after unanswered calls retry at once.
//!
//! The flag is advice for the leader's plan, nothing more: exclusivity never rests on it.

use crate::config::{BalancingPolicy, Config};
use crate::io::{Command, Event, Failure, Record, RequestId};
use crate::time::Instant;

use super::ctx::{Outstanding, Pending};
use super::timers::TimerKey;
use super::Phase;
use super::Worker;

/// What the worker knows of its reach to Kinesis.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct KinesisReach {
    /// When the first and the latest of the calls gone unanswered since the last answer were
    /// reported (`None`: the last call was answered, or none failed).
    unanswered: Option<(Instant, Instant)>,
    /// The probe in flight.
    probe: Outstanding,
    /// When the last probe was sent.
    probed_at: Option<Instant>,
    /// [`Event::ReadsStalled`] was reported, and no [`Event::ReadsResumed`] since.
    reported: bool,
}

/// What an observed outcome changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reach {
    /// Nothing the worker must act on.
    Unchanged,
    /// The reads stall now: unanswered calls span the stall time, and no heartbeat said so yet.
    Stalled,
    /// An answer came after calls had gone unanswered: the readers waiting out a backoff may
    /// retry at once.
    Restored,
}

impl KinesisReach {
    /// A Kinesis call reported `result` at `now`.
    pub(crate) fn observe<T>(
        &mut self,
        now: Instant,
        config: &Config,
        result: &Result<T, Failure>,
    ) -> Reach {
        match result {
            Err(Failure::Transient) => {
                let first = self.unanswered.map_or(now, |(first, _)| first);
                self.unanswered = Some((first, now));
                if self.stalled(config) && !self.reported {
                    Reach::Stalled
                } else {
                    Reach::Unchanged
                }
            }
            // A refusal on this side (`Other`) says nothing of the service.
            Err(Failure::Other(_)) => Reach::Unchanged,
            _ => match self.unanswered.take() {
                Some(_) => Reach::Restored,
                None => Reach::Unchanged,
            },
        }
    }

    /// Whether unanswered calls span the stall time with no answer between.
    pub(crate) fn stalled(&self, config: &Config) -> bool {
        self.unanswered
            .is_some_and(|(first, last)| last.saturating_since(first) >= config.read_stall_time())
    }

    /// Whether a probe is due at `now`: the reads are stalled, no probe is in flight, and the
    /// last was sent at least `backoff_max` ago.
    pub(crate) fn probe_due(&self, now: Instant, config: &Config) -> bool {
        self.stalled(config)
            && self.probe == Outstanding::Idle
            && self
                .probed_at
                .is_none_or(|at| now.saturating_since(at) >= config.backoff_max)
    }

    /// The probe `req` was sent at `now`.
    pub(crate) fn probe_sent(&mut self, now: Instant, req: RequestId) {
        self.probe = Outstanding::InFlight(req);
        self.probed_at = Some(now);
    }

    /// The probe was answered (or gave up); its outcome goes to [`observe`](Self::observe).
    pub(crate) fn probe_done(&mut self) {
        self.probe = Outstanding::Idle;
    }

    /// Whether the stall came and no heartbeat said so yet.
    pub(crate) fn unreported(&self, config: &Config) -> bool {
        self.stalled(config) && !self.reported
    }
}

impl<R: Record + Clone> Worker<R> {
    /// A Kinesis call of this worker reported `result`. When the reads stall, a heartbeat says
    /// so at once; once Kinesis answers again after calls went unanswered, every reader waiting
    /// out a backoff after an unanswered call retries now (the next heartbeat clears the flag:
    /// the leases a leader moved off come back by the balance, no sooner is needed).
    /// `Coordinated` only: `Kcl2Compatible` keeps the Java KCL's behaviour, heartbeat-less.
    pub(super) fn kinesis_answered<T>(&mut self, result: &Result<T, Failure>) {
        if self.policy() != BalancingPolicy::Coordinated {
            return;
        }
        match self.kinesis.observe(self.ctx.now, &self.ctx.config, result) {
            Reach::Unchanged => {}
            Reach::Stalled => self
                .ctx
                .timers
                .set_earlier(TimerKey::Heartbeat, self.ctx.now),
            Reach::Restored => {
                if core::mem::take(&mut self.kinesis.reported) {
                    self.ctx.event(Event::ReadsResumed);
                }
                let keys: alloc::vec::Vec<_> = self.held.keys().cloned().collect();
                for key in keys {
                    self.with_held(&key, |h, ctx| h.read_now(ctx));
                }
            }
        }
    }

    /// Whether this worker's reads are stalled, as the heartbeat being sent says (reported once
    /// per stall as [`Event::ReadsStalled`]).
    pub(super) fn reads_stalled(&mut self) -> bool {
        let stalled = self.kinesis.stalled(&self.ctx.config);
        if stalled && !self.kinesis.reported {
            self.kinesis.reported = true;
            self.ctx.stats.reads_stalls += 1;
            self.ctx.event(Event::ReadsStalled);
        }
        stalled
    }

    /// A heartbeat was answered: one that could not go out when the reads stalled (another was
    /// in flight) goes out now.
    pub(super) fn stall_unreported(&mut self) {
        if self.kinesis.unreported(&self.ctx.config) {
            self.ctx
                .timers
                .set_earlier(TimerKey::Heartbeat, self.ctx.now);
        }
    }

    /// Lists the stream if the reads are stalled and a probe is due (called with each
    /// heartbeat; none while shutting down).
    pub(super) fn probe_kinesis(&mut self) {
        if self.ctx.phase == Phase::Running
            && self.kinesis.probe_due(self.ctx.now, &self.ctx.config)
        {
            let req = self
                .ctx
                .request(Pending::ProbeKinesis, |req| Command::ListShards { req });
            self.kinesis.probe_sent(self.ctx.now, req);
            self.ctx.stats.kinesis_probes += 1;
        }
    }

    /// The probe's outcome.
    pub(super) fn probe_answered<T>(&mut self, result: &Result<T, Failure>) {
        self.kinesis.probe_done();
        self.kinesis_answered(result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::time::Duration;

    fn at(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    const NONE: Result<(), Failure> = Err(Failure::Transient);

    #[test]
    fn unanswered_calls_over_the_stall_time_stall_the_reads_and_any_answer_ends_it() {
        let config = Config::default();
        let stall = config.read_stall_time();
        let mut reach = KinesisReach::default();
        assert_eq!(reach.observe(at(1_000), &config, &NONE), Reach::Unchanged);
        let later = at(1_000) + stall - Duration::from_millis(1);
        assert_eq!(reach.observe(later, &config, &NONE), Reach::Unchanged);
        assert!(!reach.stalled(&config), "not yet over the stall time");
        let over = at(1_000) + stall;
        assert_eq!(reach.observe(over, &config, &NONE), Reach::Stalled);
        assert!(reach.stalled(&config) && reach.unreported(&config));
        reach.reported = true;
        assert_eq!(
            reach.observe(over + stall, &config, &NONE),
            Reach::Unchanged,
            "said once"
        );
        // A refusal is an answer: Kinesis is there, it throttles.
        let throttled: Result<(), Failure> = Err(Failure::Throttled);
        assert_eq!(reach.observe(over, &config, &throttled), Reach::Restored);
        assert!(!reach.stalled(&config));
        assert_eq!(
            reach.observe(over, &config, &Ok::<(), Failure>(())),
            Reach::Unchanged,
            "nothing was unanswered"
        );
    }

    /// A worker that stopped calling after one unanswered call (its processor slow, its leases
    /// gone) has no evidence that Kinesis is gone: however long it waits, its reads are not
    /// stalled.
    #[test]
    fn one_unanswered_call_and_then_none_is_no_stall() {
        let config = Config::default();
        let mut reach = KinesisReach::default();
        reach.observe(at(0), &config, &NONE);
        assert!(!reach.stalled(&config));
        assert!(!reach.probe_due(at(3_600_000), &config));
    }

    #[test]
    fn a_failure_on_this_side_says_nothing_of_kinesis() {
        let config = Config::default();
        let mut reach = KinesisReach::default();
        reach.observe(at(0), &config, &NONE);
        let here: Result<(), Failure> = Err(Failure::Other("unparsable answer".into()));
        assert_eq!(reach.observe(at(1), &config, &here), Reach::Unchanged);
        reach.observe(at(0) + config.read_stall_time(), &config, &NONE);
        assert!(reach.stalled(&config));
    }

    #[test]
    fn a_stalled_worker_probes_once_per_backoff_max() {
        let config = Config::default();
        let mut reach = KinesisReach::default();
        reach.observe(at(0), &config, &NONE);
        let stalled = at(0) + config.read_stall_time();
        assert!(!reach.probe_due(stalled, &config), "not stalled yet");
        reach.observe(stalled, &config, &NONE);
        assert!(reach.probe_due(stalled, &config));
        reach.probe_sent(stalled, RequestId(7));
        assert!(
            !reach.probe_due(stalled + config.backoff_max, &config),
            "one in flight"
        );
        reach.probe_done();
        reach.observe(stalled + Duration::from_secs(1), &config, &NONE);
        assert!(!reach.probe_due(stalled + Duration::from_secs(1), &config));
        assert!(reach.probe_due(stalled + config.backoff_max, &config));
    }

    /// A lone worker holding a lease is cut off from Kinesis alone: the heartbeat that goes out
    /// with the first unanswered call past the stall time says so (it keeps the lease: it is the
    /// only holder), a probe lists the stream every `backoff_max` or so, and the first answer,
    /// the probe's, ends the stall: the reader retries at once rather than at the end of its
    /// backoff, and the next heartbeat says so.
    #[test]
    fn a_worker_cut_off_from_kinesis_says_so_and_reads_again_as_soon_as_it_answers() {
        use crate::io::Command;
        use crate::lease::{Row, WorkerId, WorkerRow};
        use crate::worker::testing::{unowned, Harness};
        let config = Config::default().with_worker_liveness();
        let stall = config.read_stall_time().as_millis() as u64;
        let mut h = Harness::new(config, "w1");
        h.put(&unowned("shard-1"));
        h.run_until(30_000);
        assert!(h.holds("shard-1"));
        let stalled = |h: &Harness| match h
            .table
            .get(&WorkerRow::key(&WorkerId::from("w1")))
            .map(Row::from_item)
        {
            Some(Ok(Row::Worker(row))) => row.reads_stalled,
            other => panic!("{other:?}"),
        };
        let is_read = |c: &Command<_>| {
            matches!(
                c,
                Command::GetShardIterator { .. } | Command::GetRecords { .. }
            )
        };
        h.kinesis_cut_off = true;
        let cut_at = h.log.len();
        let (mut reads, mut said_at) = (alloc::vec::Vec::new(), None);
        let mut seen = 0;
        for t in (30_000..=70_000).step_by(10) {
            h.run_until(t);
            let n = h.log[cut_at..].iter().filter(|c| is_read(c)).count();
            if n > seen {
                reads.push(t);
                seen = n;
            }
            if said_at.is_none() && stalled(&h) {
                said_at = Some(t);
            }
        }
        let (Some(&first), Some(said)) = (reads.first(), said_at) else {
            panic!("{reads:?} {said_at:?}");
        };
        let due = reads.iter().copied().find(|&t| t >= first + stall);
        assert_eq!(
            Some(said),
            due,
            "with the first unanswered call past the stall time: {reads:?}"
        );
        assert!(h.holds("shard-1"), "the only holder keeps its lease");
        let probes = h.w.stats().kinesis_probes;
        assert!(
            (2..=4).contains(&probes),
            "every 10 s or so from {said}: {probes}"
        );
        let count = |h: &Harness, e: Event| h.events().iter().filter(|x| ***x == e).count();
        assert_eq!(count(&h, Event::ReadsStalled), 1);
        assert_eq!(h.w.stats().reads_stalls, 1);

        h.kinesis_cut_off = false;
        let back_at = h.log.len();
        let kinesis = |c: &Command<_>| is_read(c) || matches!(c, Command::ListShards { .. });
        let (mut answered, mut read_again, mut cleared) = (None, None, None);
        for t in (70_000..=85_000).step_by(10) {
            h.run_until(t);
            let since = &h.log[back_at..];
            if answered.is_none() && since.iter().any(&kinesis) {
                answered = Some(t);
                let first = since.iter().find(|c| kinesis(c));
                assert!(
                    matches!(first, Some(Command::ListShards { .. })),
                    "the probe is the first call Kinesis answers: {first:?}"
                );
            }
            if read_again.is_none()
                && since
                    .iter()
                    .any(|c| matches!(c, Command::GetRecords { .. }))
            {
                read_again = Some(t);
            }
            if cleared.is_none() && !stalled(&h) {
                cleared = Some(t);
            }
        }
        let (Some(answered), Some(read_again), Some(cleared)) = (answered, read_again, cleared)
        else {
            panic!("{answered:?} {read_again:?} {cleared:?}");
        };
        assert_eq!(
            read_again, answered,
            "the reader's backoff ended with the answer"
        );
        assert!(
            cleared >= answered && cleared <= answered + 3_400,
            "the next heartbeat says so: {answered} {cleared}"
        );
        assert_eq!(count(&h, Event::ReadsResumed), 1);
    }
}
