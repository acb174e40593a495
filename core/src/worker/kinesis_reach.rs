//! Whether Kinesis answers this worker.
//!
//! A worker cut off from Kinesis but not from DynamoDB (a broken route, endpoint or DNS on one
//! host) keeps its leases alive with its heartbeats while reading nothing: without this, its
//! shards stall for as long as the fault lasts. Every Kinesis call's outcome is observed: an
//! answer of any kind (records, an iterator, a listing, or a refusal such as throttling, an
//! expired iterator or a shard not found) shows that Kinesis is reachable; a call that got no
//! answer ([`Failure::Transient`]: a timeout, a connection failure, a 5xx) does not. Once every
//! call has gone unanswered for [`Config::read_stall_time`], the worker's reads are *stalled*: its
//! heartbeat says so (`readsStalled`), and a leader moves its leases to workers that can read,
//! by the ordinary handoff, as long as the stalled ones are a minority of the workers holding
//! leases (when Kinesis fails for most of the fleet, moving leases would only move the stall).
//!
//! A stalled worker probes Kinesis with a listing every [`Config::backoff_max`] (its readers, in
//! backoff, may make no call for as long, and once its leases are gone it makes none at all);
//! the first answer ends the stall, and readers waiting out a backoff after unanswered calls
//! retry at once.
//!
//! The flag is advice for the leader's plan, nothing more: exclusivity never rests on it.

use crate::config::{BalancingPolicy, Config};
use crate::io::{Command, Event, Failure, Record, RequestId};
use crate::time::Instant;

use super::ctx::{Outstanding, Pending};
use super::timers::TimerKey;
use super::Worker;

/// What the worker knows of its reach to Kinesis.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct KinesisReach {
    /// When the first of the calls gone unanswered since the last answer was reported
    /// (`None`: the last call was answered, or none failed).
    unanswered_since: Option<Instant>,
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
    /// The first call gone unanswered since the last answer: the reads stall at
    /// [`KinesisReach::stalls_at`] unless one is answered first.
    Unanswered,
    /// An answer came after calls had gone unanswered: the readers waiting out a backoff may
    /// retry at once.
    Restored,
}

impl KinesisReach {
    /// A Kinesis call reported `result` at `now`.
    pub(crate) fn observe<T>(&mut self, now: Instant, result: &Result<T, Failure>) -> Reach {
        match result {
            Err(Failure::Transient) => match self.unanswered_since {
                Some(_) => Reach::Unchanged,
                None => {
                    self.unanswered_since = Some(now);
                    Reach::Unanswered
                }
            },
            // A refusal on this side (`Other`) says nothing of the service.
            Err(Failure::Other(_)) => Reach::Unchanged,
            _ => match self.unanswered_since.take() {
                Some(_) => Reach::Restored,
                None => Reach::Unchanged,
            },
        }
    }

    /// When the reads will stall unless a call is answered first (`None`: no call is
    /// unanswered, or the stall came and was reported).
    pub(crate) fn stalls_at(&self, config: &Config) -> Option<Instant> {
        self.unanswered_since
            .filter(|_| !self.reported)
            .map(|since| since + config.read_stall_time())
    }

    /// Whether every Kinesis call has gone unanswered for the stall time.
    pub(crate) fn stalled(&self, now: Instant, config: &Config) -> bool {
        self.unanswered_since
            .is_some_and(|since| now.saturating_since(since) >= config.read_stall_time())
    }

    /// Whether a probe is due at `now`: the reads are stalled, no probe is in flight, and the
    /// last was sent at least `backoff_max` ago.
    pub(crate) fn probe_due(&self, now: Instant, config: &Config) -> bool {
        self.stalled(now, config)
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
}

impl<R: Record + Clone> Worker<R> {
    /// A Kinesis call of this worker reported `result`; once Kinesis answers again after calls
    /// went unanswered, every reader waiting out a backoff retries now. `Coordinated` only:
    /// `Kcl2Compatible` keeps the Java KCL's behaviour, heartbeat-less.
    pub(super) fn kinesis_answered<T>(&mut self, result: &Result<T, Failure>) {
        if self.policy() != BalancingPolicy::Coordinated {
            return;
        }
        match self.kinesis.observe(self.ctx.now, result) {
            Reach::Unchanged => {}
            // The heartbeat that says so goes out then, not up to an interval later.
            Reach::Unanswered => {
                if let Some(at) = self.kinesis.stalls_at(&self.ctx.config) {
                    self.ctx.timers.set_earlier(TimerKey::Heartbeat, at);
                }
            }
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

    /// Whether this worker's reads are stalled, as its next heartbeat says (reported once per
    /// stall as [`Event::ReadsStalled`]).
    pub(super) fn reads_stalled(&mut self) -> bool {
        let stalled = self.kinesis.stalled(self.ctx.now, &self.ctx.config);
        if stalled && !self.kinesis.reported {
            self.kinesis.reported = true;
            self.ctx.stats.reads_stalls += 1;
            self.ctx.event(Event::ReadsStalled);
        }
        stalled
    }

    /// Lists the stream if the reads are stalled and a probe is due (called with each
    /// heartbeat).
    pub(super) fn probe_kinesis(&mut self) {
        if self.kinesis.probe_due(self.ctx.now, &self.ctx.config) {
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

    #[test]
    fn unanswered_calls_stall_the_reads_after_the_stall_time_and_any_answer_ends_it() {
        let config = Config::default();
        let stall = config.read_stall_time();
        let mut reach = KinesisReach::default();
        let none: Result<(), Failure> = Err(Failure::Transient);
        assert_eq!(reach.observe(at(1_000), &none), Reach::Unanswered);
        assert_eq!(reach.stalls_at(&config), Some(at(1_000) + stall));
        let later = at(1_000) + stall - Duration::from_millis(1);
        assert_eq!(reach.observe(later, &none), Reach::Unchanged);
        assert!(!reach.stalled(later, &config), "not yet the stall time");
        assert!(reach.stalled(at(1_000) + stall, &config));
        // A refusal is an answer: Kinesis is there, it throttles.
        let throttled: Result<(), Failure> = Err(Failure::Throttled);
        assert_eq!(
            reach.observe(at(1_000) + stall, &throttled),
            Reach::Restored
        );
        assert!(!reach.stalled(at(1_000) + stall * 2, &config));
        assert_eq!(
            reach.observe(at(1_000) + stall * 2, &Ok::<(), Failure>(())),
            Reach::Unchanged,
            "nothing was unanswered"
        );
    }

    /// A lone worker holding a lease is cut off from Kinesis alone: the heartbeat that goes out
    /// when its reads stall says so (it keeps the lease: it is the only holder), a probe lists
    /// the stream every `backoff_max`, and the first answer ends the stall, the reader retrying
    /// at once rather than at the end of its backoff.
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
        let (mut first_failure, mut said_at) = (None, None);
        for t in (30_000..=70_000).step_by(10) {
            h.run_until(t);
            if first_failure.is_none() && h.log[cut_at..].iter().any(is_read) {
                first_failure = Some(t);
            }
            if said_at.is_none() && stalled(&h) {
                said_at = Some(t);
            }
        }
        let (Some(first), Some(said)) = (first_failure, said_at) else {
            panic!("{first_failure:?} {said_at:?}");
        };
        assert!(
            said >= first + stall && said <= first + stall + 10,
            "when the reads stall ({first} + {stall}), not a heartbeat later: {said}"
        );
        assert!(h.holds("shard-1"), "the only holder keeps its lease");
        let probes = h.w.stats().kinesis_probes;
        assert!(
            (3..=4).contains(&probes),
            "every 10 s from {said}: {probes}"
        );
        let stalled_events =
            |h: &Harness, e: Event| h.events().iter().filter(|x| ***x == e).count();
        assert_eq!(stalled_events(&h, Event::ReadsStalled), 1);
        assert_eq!(h.w.stats().reads_stalls, 1);

        h.kinesis_cut_off = false;
        let back_at = h.log.len();
        let (mut answered, mut read_again) = (None, None);
        for t in (70_000..=85_000).step_by(10) {
            h.run_until(t);
            let since = &h.log[back_at..];
            if answered.is_none() && !since.is_empty() {
                let listed = since
                    .iter()
                    .any(|c| matches!(c, Command::ListShards { .. }));
                if listed || since.iter().any(is_read) {
                    answered = Some(t);
                }
            }
            if read_again.is_none()
                && since
                    .iter()
                    .any(|c| matches!(c, Command::GetRecords { .. }))
            {
                read_again = Some(t);
            }
        }
        let (Some(answered), Some(read_again)) = (answered, read_again) else {
            panic!("{answered:?} {read_again:?}");
        };
        assert!(read_again <= answered + 10, "{answered} {read_again}");
        assert!(!stalled(&h), "the next heartbeat says so no more");
        assert_eq!(stalled_events(&h, Event::ReadsResumed), 1);
    }

    #[test]
    fn a_failure_on_this_side_says_nothing_of_kinesis() {
        let config = Config::default();
        let mut reach = KinesisReach::default();
        reach.observe::<()>(at(0), &Err(Failure::Transient));
        let here: Result<(), Failure> = Err(Failure::Other("unparsable answer".into()));
        assert_eq!(reach.observe(at(1), &here), Reach::Unchanged);
        assert!(reach.stalled(at(0) + config.read_stall_time(), &config));
    }

    #[test]
    fn a_stalled_worker_probes_once_per_backoff_max() {
        let config = Config::default();
        let mut reach = KinesisReach::default();
        reach.observe::<()>(at(0), &Err(Failure::Transient));
        let stalled = at(0) + config.read_stall_time();
        assert!(!reach.probe_due(at(1), &config), "not stalled yet");
        assert!(reach.probe_due(stalled, &config));
        reach.probe_sent(stalled, RequestId(7));
        assert!(
            !reach.probe_due(stalled + config.backoff_max, &config),
            "one in flight"
        );
        reach.probe_done();
        reach.observe::<()>(stalled + Duration::from_secs(1), &Err(Failure::Transient));
        assert!(!reach.probe_due(stalled + Duration::from_secs(1), &config));
        assert!(reach.probe_due(stalled + config.backoff_max, &config));
    }
}
