//! The shard reader: a shard's records through GetShardIterator and GetRecords, paced, with a
//! few batches read ahead of the processor.
//!
//! It knows nothing of leases: where to start and what was delivered are given to it. A
//! checkpoint inside a KPL aggregate resumes *at* the aggregate's sequence number and skips the
//! user records up to the checkpoint's sub-sequence number; so does a resumption after an expired
//! iterator, from the last record delivered.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use crate::config::{Config, InitialPosition};
use crate::io::{
    ChildShard, Command, Failure, FencingToken, FetchedRecords, Record, StartingPosition,
};
use crate::item::Text;
use crate::lease::{HashKeyRange, LeaseKey};
use crate::sequence::{Position, RecordPosition};
use crate::time::{Instant, WallTime};
use crate::worker::timers::{LeaseTimer, TimerSlot};
use crate::worker::{Ctx, Pending};

/// The reader's shard iterator.
#[derive(Clone, Debug, PartialEq)]
enum Cursor {
    None,
    /// GetShardIterator is in flight.
    Requested,
    Held(Text),
}

/// A batch read and not yet delivered, with its `MillisBehindLatest`.
pub(crate) type Batch<R> = (Vec<R>, u64);

pub(crate) struct ShardReader<R> {
    start: Option<StartingPosition>,
    /// Records at or before this position were processed already: dropped when read.
    skip_through: Option<RecordPosition>,
    cursor: Cursor,
    /// Send time of the GetRecords call in flight.
    fetch_sent: Option<Instant>,
    next_fetch_at: Instant,
    /// Failed calls since the last that succeeded (the backoff's exponent).
    attempts: u32,
    prefetched: VecDeque<Batch<R>>,
    /// The shard's end was read: its children.
    end: Option<Vec<ChildShard>>,
    /// The starting position was refused and the refusal reported; cleared by records read.
    refusal_reported: bool,
    /// The backoff under way follows a call that got no answer ([`Failure::Transient`]).
    unanswered: bool,
}

impl<R: Record> ShardReader<R> {
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            start: None,
            skip_through: None,
            cursor: Cursor::None,
            fetch_sent: None,
            next_fetch_at: now,
            attempts: 0,
            prefetched: VecDeque::new(),
            end: None,
            refusal_reported: false,
            unanswered: false,
        }
    }

    /// Reading starts from `checkpoint`; a sentinel checkpoint with a `starting_timestamp` (a
    /// root lease's start, fixed at its creation) starts at that timestamp.
    pub(crate) fn start_at(
        &mut self,
        checkpoint: &Position,
        starting_timestamp: Option<WallTime>,
        config: &Config,
    ) {
        self.start = Some(self.position_of(checkpoint, starting_timestamp, config));
    }

    fn position_of(
        &mut self,
        checkpoint: &Position,
        starting_timestamp: Option<WallTime>,
        config: &Config,
    ) -> StartingPosition {
        match (checkpoint, starting_timestamp) {
            (Position::Latest | Position::AtTimestamp, Some(t)) => {
                StartingPosition::AtTimestamp(t.unix_millis())
            }
            (Position::TrimHorizon, _) => StartingPosition::TrimHorizon,
            // A row without the timestamp (the Java KCL created it): resolved now, as Java does.
            (Position::Latest, None) => StartingPosition::Latest,
            (Position::AtTimestamp, None) => match config.initial_position {
                InitialPosition::AtTimestamp(ts) => StartingPosition::AtTimestamp(ts),
                _ => StartingPosition::TrimHorizon,
            },
            (Position::Record(p), _) => {
                // AT the checkpoint's sequence number, dropping what was processed: this also
                // resumes inside a KPL aggregated record.
                self.skip_through = Some(p.clone());
                StartingPosition::AtSequenceNumber(p.sequence.clone())
            }
            (Position::ShardEnd, _) => StartingPosition::TrimHorizon,
        }
    }

    /// Asks for a shard iterator, unless one is held or asked for, or a backoff lasts.
    pub(crate) fn request_iterator(
        &mut self,
        ctx: &mut Ctx<R>,
        slot: TimerSlot,
        shard: &LeaseKey,
        token: FencingToken,
    ) {
        if self.cursor != Cursor::None {
            return;
        }
        if ctx.now < self.next_fetch_at {
            ctx.timers
                .set_lease(slot, LeaseTimer::Fetch, self.next_fetch_at);
            return;
        }
        let position = self.start.clone().unwrap_or(StartingPosition::TrimHorizon);
        self.cursor = Cursor::Requested;
        let shard = shard.clone();
        ctx.request(
            Pending::Iterator {
                shard: shard.clone(),
                token,
            },
            |req| Command::GetShardIterator {
                req,
                shard,
                position,
            },
        );
    }

    /// The shard is gone from the stream: reading ends here, as at a shard end with no
    /// children. False when an end was known already.
    pub(crate) fn mark_gone(&mut self, now: Instant) -> bool {
        if self.end.is_some() {
            return false;
        }
        self.cursor = Cursor::None;
        self.end = Some(Vec::new());
        self.attempts = 0;
        self.unanswered = false;
        self.next_fetch_at = now;
        true
    }

    /// GetShardIterator's answer; true when it gave an iterator.
    pub(crate) fn iterator_obtained(
        &mut self,
        ctx: &mut Ctx<R>,
        slot: TimerSlot,
        result: Result<Text, Failure>,
    ) -> bool {
        self.cursor = Cursor::None;
        match result {
            Ok(iterator) => {
                self.cursor = Cursor::Held(iterator);
                self.attempts = 0;
                self.unanswered = false;
                true
            }
            Err(f) => {
                self.back_off(ctx, slot, &f);
                false
            }
        }
    }

    /// The position to report as refused, unless this run of refusals was reported already.
    pub(crate) fn refusal_to_report(&mut self) -> Option<StartingPosition> {
        if self.refusal_reported {
            return None;
        }
        self.refusal_reported = true;
        Some(self.start.clone().unwrap_or(StartingPosition::TrimHorizon))
    }

    /// Asks for the next records, unless a call is in flight, enough is read ahead, the shard's
    /// end was reached or the pace does not allow it yet.
    pub(crate) fn fetch(
        &mut self,
        ctx: &mut Ctx<R>,
        slot: TimerSlot,
        shard: &LeaseKey,
        hash_range: Option<HashKeyRange>,
        token: FencingToken,
    ) {
        if self.end.is_some() {
            // The end is acted on once `end_reached`: wake the lease then.
            if ctx.now < self.next_fetch_at {
                ctx.timers
                    .set_lease(slot, LeaseTimer::Fetch, self.next_fetch_at);
            }
            return;
        }
        if self.fetch_sent.is_some() || self.prefetched.len() >= ctx.config.max_prefetched_batches {
            return;
        }
        let Cursor::Held(iterator) = &self.cursor else {
            return self.request_iterator(ctx, slot, shard, token);
        };
        if ctx.now < self.next_fetch_at {
            ctx.timers
                .set_lease(slot, LeaseTimer::Fetch, self.next_fetch_at);
            return;
        }
        let iterator = iterator.clone();
        self.fetch_sent = Some(ctx.now);
        let shard = shard.clone();
        let limit = ctx.config.max_records;
        ctx.request(
            Pending::Fetch {
                shard: shard.clone(),
                token,
            },
            |req| Command::GetRecords {
                req,
                shard,
                iterator,
                limit,
                hash_range,
            },
        );
    }

    /// GetRecords' answer. An expired iterator resumes right after `last_delivered`, or where
    /// the ownership started when nothing was delivered yet (a `LATEST` start is not resolved
    /// again: that would skip what was put meanwhile).
    pub(crate) fn records_fetched(
        &mut self,
        ctx: &mut Ctx<R>,
        slot: TimerSlot,
        result: Result<FetchedRecords<R>, Failure>,
        last_delivered: Option<&RecordPosition>,
    ) {
        let sent = self.fetch_sent.take().unwrap_or(ctx.now);
        match result {
            Ok(batch) => {
                self.attempts = 0;
                self.unanswered = false;
                self.refusal_reported = false;
                let mut records = batch.records;
                // A full batch means more is waiting, whatever `MillisBehindLatest` says (it is
                // rounded, and emulators report 0 for open shards): read on at the pace limit.
                let full = records.len() >= ctx.config.max_records as usize;
                if let Some(floor) = &self.skip_through {
                    records.retain(|r| r.position() > floor);
                    if !records.is_empty() {
                        self.skip_through = None;
                    }
                }
                let empty = records.is_empty();
                if !empty {
                    self.prefetched
                        .push_back((records, batch.millis_behind_latest));
                }
                match batch.next_iterator {
                    Some(it) => self.cursor = Cursor::Held(it),
                    None => {
                        self.cursor = Cursor::None;
                        self.end = Some(batch.child_shards);
                    }
                }
                let pace = sent + ctx.config.min_fetch_interval;
                let idle = if empty || (batch.millis_behind_latest == 0 && !full) {
                    ctx.now + ctx.config.idle_time_between_reads
                } else {
                    ctx.now
                };
                self.next_fetch_at = pace.max(idle);
            }
            Err(f @ (Failure::ExpiredIterator | Failure::InvalidArgument(_))) => {
                // An expired iterator, or one the stream refuses (which it would refuse again):
                // resume right after the last record delivered, AT its sequence number, dropping
                // it and anything before (so a partly delivered aggregate resumes inside itself).
                // A refusal waits for the backoff: it may be refused again.
                self.cursor = Cursor::None;
                self.prefetched.clear();
                if let Some(p) = last_delivered {
                    self.skip_through = Some(p.clone());
                    self.start = Some(StartingPosition::AtSequenceNumber(p.sequence.clone()));
                }
                if f == Failure::ExpiredIterator {
                    ctx.stats.expired_iterators += 1;
                    self.next_fetch_at = ctx.now;
                } else {
                    self.pause(ctx, slot);
                }
            }
            Err(Failure::NotFound) => {
                // The shard may be gone (the worker lists the stream to know): a new iterator is
                // asked for after the backoff, and answers NotFound too if it is.
                self.cursor = Cursor::None;
                self.back_off(ctx, slot, &Failure::NotFound);
            }
            Err(f) => self.back_off(ctx, slot, &f),
        }
    }

    fn back_off(&mut self, ctx: &mut Ctx<R>, slot: TimerSlot, f: &Failure) {
        if *f == Failure::Throttled {
            ctx.stats.throttled += 1;
        }
        self.pause(ctx, slot);
        self.unanswered = *f == Failure::Transient;
    }

    fn pause(&mut self, ctx: &mut Ctx<R>, slot: TimerSlot) {
        self.unanswered = false;
        self.attempts += 1;
        let delay = ctx.backoff(self.attempts);
        self.next_fetch_at = ctx.now + delay;
        ctx.timers
            .set_lease(slot, LeaseTimer::Fetch, self.next_fetch_at);
    }

    /// Kinesis answers this worker again: a backoff after a call that got no answer ends now
    /// (that failure said nothing of this shard). A backoff after a refusal (throttled, an
    /// iterator refused, a shard not found) or after a failed child creation runs its course.
    pub(crate) fn retry_now(&mut self, ctx: &mut Ctx<R>, slot: TimerSlot) {
        if self.unanswered && ctx.now < self.next_fetch_at {
            self.unanswered = false;
            self.next_fetch_at = ctx.now;
            ctx.timers.set_lease(slot, LeaseTimer::Fetch, ctx.now);
        }
    }

    pub(crate) fn has_batch(&self) -> bool {
        !self.prefetched.is_empty()
    }

    /// The next batch read ahead, oldest first.
    pub(crate) fn next_batch(&mut self) -> Option<Batch<R>> {
        self.prefetched.pop_front()
    }

    /// Drops what was read ahead (nothing more is delivered).
    pub(crate) fn clear(&mut self) {
        self.prefetched.clear();
    }

    /// Whether the shard's end was read and everything before it delivered, and the pace allows
    /// the next step (a retry after children could not be created waits for its backoff).
    pub(crate) fn end_reached(&self, now: Instant) -> bool {
        self.end.is_some() && self.prefetched.is_empty() && now >= self.next_fetch_at
    }

    /// The children the shard's end named.
    pub(crate) fn take_end(&mut self) -> Vec<ChildShard> {
        self.end.take().unwrap_or_default()
    }

    /// The shard's end is to be acted on again after a backoff (its children could not all be
    /// created).
    pub(crate) fn retry_end(
        &mut self,
        ctx: &mut Ctx<R>,
        slot: TimerSlot,
        children: Vec<ChildShard>,
    ) {
        self.unanswered = false;
        self.attempts += 1;
        let delay = ctx.backoff(self.attempts);
        self.next_fetch_at = ctx.now + delay;
        self.end = Some(children);
        ctx.timers
            .set_lease(slot, LeaseTimer::Fetch, self.next_fetch_at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::BasicRecord;
    use crate::sequence::SequenceNumber;
    use crate::WorkerId;
    use alloc::string::String;
    use alloc::vec;

    fn ms(n: u64) -> Instant {
        Instant::from_millis(n)
    }

    struct Fixture {
        ctx: Ctx<BasicRecord>,
        slot: TimerSlot,
        shard: LeaseKey,
        reader: ShardReader<BasicRecord>,
    }

    fn fixture(config: Config) -> Fixture {
        let mut ctx = Ctx::new(config, WorkerId::from("w1"), 7, ms(0));
        let shard = LeaseKey::from("shard-1");
        let slot = ctx.timers.claim(&shard);
        Fixture {
            ctx,
            slot,
            shard,
            reader: ShardReader::new(ms(0)),
        }
    }

    fn seq(n: u64) -> SequenceNumber {
        SequenceNumber::parse(&alloc::format!("{n}")).expect("digits")
    }

    fn record(n: u64, sub: u64) -> BasicRecord {
        BasicRecord {
            position: RecordPosition {
                sequence: seq(n),
                sub_sequence: sub,
            },
            partition_key: String::from("k"),
            data: vec![0; 10],
        }
    }

    fn batch(
        records: Vec<BasicRecord>,
        behind: u64,
        next: Option<&str>,
    ) -> FetchedRecords<BasicRecord> {
        FetchedRecords {
            records,
            next_iterator: next.map(Text::new),
            millis_behind_latest: behind,
            child_shards: Vec::new(),
        }
    }

    impl Fixture {
        fn commands(&mut self) -> Vec<Command<BasicRecord>> {
            self.ctx.out.drain(..).collect()
        }

        fn fetch(&mut self) {
            let token = FencingToken(1);
            self.reader
                .fetch(&mut self.ctx, self.slot, &self.shard, None, token);
        }

        fn answer(
            &mut self,
            result: Result<FetchedRecords<BasicRecord>, Failure>,
            delivered: Option<&RecordPosition>,
        ) {
            self.reader
                .records_fetched(&mut self.ctx, self.slot, result, delivered);
        }

        /// Gets an iterator and sends the first GetRecords.
        fn reading(&mut self) {
            self.fetch();
            assert!(matches!(
                self.commands()[..],
                [Command::GetShardIterator { .. }]
            ));
            assert!(self
                .reader
                .iterator_obtained(&mut self.ctx, self.slot, Ok(Text::new("it-1"))));
            self.fetch();
            assert!(matches!(self.commands()[..], [Command::GetRecords { .. }]));
        }
    }

    /// A sentinel with a starting timestamp starts there, whatever this worker's configuration
    /// says; without one (a Java-created row) it is resolved as Java resolves it.
    #[test]
    fn a_sentinel_checkpoint_starts_at_the_timestamp_fixed_when_the_lease_was_created() {
        let config = Config {
            initial_position: InitialPosition::AtTimestamp(77),
            ..Config::default()
        };
        let t = Some(WallTime::from_unix_millis(5_000));
        let cases = [
            (Position::Latest, t, StartingPosition::AtTimestamp(5_000)),
            (
                Position::AtTimestamp,
                t,
                StartingPosition::AtTimestamp(5_000),
            ),
            (Position::TrimHorizon, t, StartingPosition::TrimHorizon),
            (Position::Latest, None, StartingPosition::Latest),
            (
                Position::AtTimestamp,
                None,
                StartingPosition::AtTimestamp(77),
            ),
        ];
        for (checkpoint, timestamp, expected) in cases {
            let mut f = fixture(config.clone());
            f.reader.start_at(&checkpoint, timestamp, &config);
            f.fetch();
            match &f.commands()[..] {
                [Command::GetShardIterator { position, .. }] => {
                    assert_eq!(*position, expected, "{checkpoint:?} {timestamp:?}");
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn a_checkpoint_inside_an_aggregate_resumes_at_its_record_and_skips_what_was_processed() {
        let mut f = fixture(Config::default());
        let checkpoint = Position::Record(RecordPosition {
            sequence: seq(40),
            sub_sequence: 2,
        });
        f.reader.start_at(&checkpoint, None, &f.ctx.config);
        f.fetch();
        match &f.commands()[..] {
            [Command::GetShardIterator { position, .. }] => {
                assert_eq!(*position, StartingPosition::AtSequenceNumber(seq(40)));
            }
            other => panic!("{other:?}"),
        }
        f.fetch();
        assert!(f.commands().is_empty(), "one iterator request at a time");
        f.reader
            .iterator_obtained(&mut f.ctx, f.slot, Ok(Text::new("it-1")));
        f.fetch();
        f.commands();
        f.answer(
            Ok(batch(
                vec![record(40, 0), record(40, 2), record(40, 3), record(41, 0)],
                500,
                Some("it-2"),
            )),
            None,
        );
        let (records, behind) = f.reader.next_batch().expect("a batch");
        let kept: Vec<(u64, u64)> = records
            .iter()
            .map(|r| {
                (
                    r.position.sequence.as_str().parse().unwrap_or(0),
                    r.position.sub_sequence,
                )
            })
            .collect();
        assert_eq!(kept, [(40, 3), (41, 0)]);
        assert_eq!(behind, 500);
    }

    /// Nothing delivered yet: an expired iterator starts where the ownership started, not at a
    /// `LATEST` resolved again.
    #[test]
    fn an_expired_iterator_before_any_delivery_starts_where_the_ownership_started() {
        let mut f = fixture(Config::default());
        let t = Some(WallTime::from_unix_millis(5_000));
        f.reader.start_at(&Position::Latest, t, &Config::default());
        f.reading();
        f.answer(Err(Failure::ExpiredIterator), None);
        f.fetch();
        match &f.commands()[..] {
            [Command::GetShardIterator { position, .. }] => {
                assert_eq!(*position, StartingPosition::AtTimestamp(5_000));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_expired_iterator_resumes_right_after_the_last_record_delivered() {
        let mut f = fixture(Config::default());
        f.reading();
        f.answer(
            Ok(batch(vec![record(10, 0), record(11, 0)], 100, Some("it-2"))),
            None,
        );
        f.reader.next_batch();
        f.reader.next_batch();
        f.ctx.now = ms(1_000);
        f.fetch();
        f.commands();
        let delivered = RecordPosition {
            sequence: seq(11),
            sub_sequence: 4,
        };
        f.answer(Err(Failure::ExpiredIterator), Some(&delivered));
        assert_eq!(f.ctx.stats.expired_iterators, 1);
        f.fetch();
        match &f.commands()[..] {
            [Command::GetShardIterator { position, .. }] => {
                assert_eq!(*position, StartingPosition::AtSequenceNumber(seq(11)));
            }
            other => panic!("{other:?}"),
        }
        f.reader
            .iterator_obtained(&mut f.ctx, f.slot, Ok(Text::new("it-3")));
        f.fetch();
        f.commands();
        f.answer(
            Ok(batch(vec![record(11, 4), record(11, 5)], 0, Some("it-4"))),
            None,
        );
        let (records, _) = f.reader.next_batch().expect("a batch");
        assert_eq!(
            records,
            [record(11, 5)],
            "inside the aggregate, after what was delivered"
        );
    }

    #[test]
    fn fetches_keep_the_pace_and_idle_when_caught_up() {
        let mut f = fixture(Config::default());
        f.reading();
        // Caught up with a short batch: idle a second after the answer.
        f.ctx.now = ms(50);
        f.answer(Ok(batch(vec![record(1, 0)], 0, Some("it-2"))), None);
        f.fetch();
        assert!(f.commands().is_empty());
        f.ctx.now = ms(1_049);
        f.fetch();
        assert!(f.commands().is_empty());
        f.ctx.now = ms(1_050);
        f.fetch();
        assert!(matches!(f.commands()[..], [Command::GetRecords { .. }]));
        // A full batch reported caught up is followed at the pace limit (200 ms from sending).
        let mut f = fixture(Config {
            max_records: 2,
            ..Config::default()
        });
        f.reading();
        f.ctx.now = ms(20);
        f.answer(
            Ok(batch(vec![record(1, 0), record(2, 0)], 0, Some("it-2"))),
            None,
        );
        f.reader.next_batch();
        f.ctx.now = ms(199);
        f.fetch();
        assert!(f.commands().is_empty());
        f.ctx.now = ms(200);
        f.fetch();
        assert!(matches!(f.commands()[..], [Command::GetRecords { .. }]));
    }

    #[test]
    fn reading_ahead_stops_at_the_prefetch_limit() {
        let mut f = fixture(Config::default());
        f.reading();
        for i in 0..2 {
            f.answer(Ok(batch(vec![record(i + 1, 0)], 1_000, Some("it"))), None);
            f.ctx.now = f.ctx.now + core::time::Duration::from_millis(200);
            f.fetch();
        }
        assert_eq!(
            f.commands().len(),
            1,
            "the second batch's fetch; none for a third"
        );
        assert!(f.reader.has_batch());
        f.reader.next_batch();
        f.fetch();
        assert!(matches!(f.commands()[..], [Command::GetRecords { .. }]));
    }

    #[test]
    fn a_throttled_call_backs_off_and_counts() {
        let mut f = fixture(Config::default());
        f.reading();
        f.answer(Err(Failure::Throttled), None);
        assert_eq!(f.ctx.stats.throttled, 1);
        f.fetch();
        assert!(f.commands().is_empty(), "backing off");
        let (at, reason) = f.ctx.timers.next().expect("the fetch timer");
        assert_eq!(reason, crate::io::TimerReason::Fetch);
        // Equal jitter on the first retry's 400 ms: between 200 and 400 ms.
        assert!(at >= ms(200) && at <= ms(400), "{at:?}");
        f.ctx.now = at;
        f.fetch();
        assert!(matches!(f.commands()[..], [Command::GetRecords { .. }]));
    }

    #[test]
    fn the_shard_end_waits_for_the_last_batch_and_can_be_retried() {
        let mut f = fixture(Config::default());
        f.reading();
        let mut end = batch(vec![record(9, 0)], 0, None);
        end.child_shards = vec![ChildShard {
            shard_id: LeaseKey::from("shard-2"),
            parents: vec![LeaseKey::from("shard-1")],
            hash_range: None,
        }];
        f.answer(Ok(end), None);
        assert!(
            !f.reader.end_reached(f.ctx.now),
            "a batch is still to be delivered"
        );
        f.reader.next_batch();
        f.ctx.now = ms(10_000);
        assert!(f.reader.end_reached(f.ctx.now));
        f.fetch();
        assert!(f.commands().is_empty(), "nothing is read past the end");
        let children = f.reader.take_end();
        assert_eq!(children.len(), 1);
        assert!(!f.reader.end_reached(f.ctx.now));
        f.reader.retry_end(&mut f.ctx, f.slot, children);
        assert!(!f.reader.end_reached(f.ctx.now), "after a backoff");
        f.ctx.now = ms(20_000);
        assert!(f.reader.end_reached(f.ctx.now));
    }
}
