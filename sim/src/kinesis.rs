//! The simulated Kinesis data stream: shards with hash-key ranges, partition keys hashed with
//! MD5, sequence numbers as 56-digit decimal strings, KPL aggregated records (handed out as their
//! user records, with sub-sequence numbers, as a driver deaggregates them), every GetShardIterator type, GetRecords with
//! the service's limits, iterators that expire, retention trimming (a closed shard disappears
//! from the stream a retention period after it closed), and resharding (SplitShard, MergeShards,
//! UpdateShardCount with uniform scaling) with parent and child shards.

use std::collections::VecDeque;

use kcl_core::io::{ChildShard, ShardDescription, StartingPosition};
use kcl_core::item::Text;
use kcl_core::{Failure, HashKeyRange, LeaseKey, RecordPosition, SequenceNumber};
use md5::{Digest, Md5};

use crate::record::SimRecord;

/// Service limits, as documented for Kinesis Data Streams.
#[derive(Clone, Debug)]
pub struct KinesisLimits {
    /// Records per GetRecords call.
    pub max_records_per_call: usize,
    /// Bytes per GetRecords call.
    pub max_bytes_per_call: u64,
    /// GetRecords calls per shard per second.
    pub calls_per_shard_per_second: usize,
    /// Bytes read per shard per second.
    pub read_bytes_per_shard_per_second: u64,
    /// Shard iterators expire after this long (ms).
    pub iterator_lifetime_ms: u64,
    /// Records older than this are trimmed (ms).
    pub retention_ms: u64,
}

impl Default for KinesisLimits {
    fn default() -> Self {
        Self {
            max_records_per_call: 10_000,
            max_bytes_per_call: 10 * 1024 * 1024,
            calls_per_shard_per_second: 5,
            read_bytes_per_shard_per_second: 2 * 1024 * 1024,
            iterator_lifetime_ms: 5 * 60 * 1000,
            retention_ms: 24 * 3600 * 1000,
        }
    }
}

/// One record as the stream stores it.
#[derive(Clone, Copy, Debug)]
struct Stored {
    /// Stream-wide, increasing: the sequence number is derived from it.
    counter: u64,
    arrival_ms: u64,
    size: u32,
    /// User records in it: 0 for a plain record (one record, sub-sequence 0), `n` for a KPL
    /// aggregate of `n` user records (sub-sequence numbers `0..n`).
    aggregated: u32,
    /// The shard's user-record index of its first user record (the checkers count user
    /// records).
    first_user: u64,
}

impl Stored {
    fn users(&self) -> u64 {
        u64::from(self.aggregated.max(1))
    }
}

#[derive(Clone, Debug)]
struct Shard {
    id: LeaseKey,
    parents: Vec<usize>,
    range: HashKeyRange,
    /// Index (within the shard, counting trimmed records) of `records[0]`.
    first_index: u64,
    records: VecDeque<Stored>,
    /// User records ever put (an aggregate counts each of its user records).
    user_end: u64,
    closed: bool,
    /// When a trim first saw the shard closed: it expires a retention period later.
    closed_seen_ms: Option<u64>,
    /// Expired: no longer listed, and every call naming it answers NotFound. Kept (unlisted)
    /// so that shard indices stay stable.
    expired: bool,
    children: Vec<usize>,
    /// Recent GetRecords calls: (ms, bytes), for the per-shard read limits.
    reads: VecDeque<(u64, u64)>,
}

impl Shard {
    fn end_index(&self) -> u64 {
        self.first_index + self.records.len() as u64
    }

    /// The user-record index of the first record still held (`user_end` when none is).
    fn first_user_held(&self) -> u64 {
        self.records.front().map_or(self.user_end, |r| r.first_user)
    }

    /// The stored record that holds user record `i`, unless it was trimmed or never put.
    fn holding(&self, i: u64) -> Option<&Stored> {
        if i < self.first_user_held() || i >= self.user_end {
            return None;
        }
        let at = self
            .records
            .partition_point(|r| r.first_user + r.users() <= i);
        self.records.get(at)
    }
}

/// A GetRecords answer.
#[derive(Clone, Debug)]
pub struct GetRecordsOutput {
    /// Records in order.
    pub records: Vec<SimRecord>,
    /// `None` once a closed shard has been read to its end.
    pub next_iterator: Option<Text>,
    /// How far the last record returned is behind the tip of the shard.
    pub millis_behind_latest: u64,
    /// At the end of a closed shard: its children.
    pub child_shards: Vec<ChildShard>,
}

/// Calls answered, by API.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct KinesisCounts {
    /// ListShards.
    pub list_shards: u64,
    /// GetShardIterator.
    pub get_shard_iterator: u64,
    /// GetRecords.
    pub get_records: u64,
    /// GetRecords refused for the per-shard limits (ProvisionedThroughputExceeded).
    pub throughput_exceeded: u64,
    /// GetRecords with an expired iterator.
    pub expired_iterators: u64,
    /// Records put.
    pub records_put: u64,
    /// Records trimmed by retention.
    pub records_trimmed: u64,
    /// Closed shards expired a retention period after they closed.
    pub shards_expired: u64,
}

/// The stream.
#[derive(Clone, Debug)]
pub struct Kinesis {
    shards: Vec<Shard>,
    /// Only looked up, never iterated: its order cannot leak.
    by_id: std::collections::HashMap<LeaseKey, usize, crate::hash::FastHash>,
    /// Open shards sorted by the start of their hash range.
    open: Vec<usize>,
    next_counter: u64,
    limits: KinesisLimits,
    /// Calls answered so far.
    pub counts: KinesisCounts,
}

/// The MD5 of a partition key as a 128-bit hash key, as Kinesis maps keys to shards.
pub fn hash_key(partition_key: &str) -> u128 {
    u128::from_be_bytes(Md5::digest(partition_key.as_bytes()).into())
}

/// The 56-digit sequence number of a record: Kinesis's are decimal strings that only grow.
fn sequence_string(counter: u64, shard: usize) -> String {
    let mut s = String::with_capacity(56);
    s.push_str("49");
    push_padded(&mut s, counter, 36);
    push_padded(&mut s, shard as u64, 18);
    s
}

/// `n` in decimal, with leading zeros to `width` digits.
fn push_padded(s: &mut String, n: u64, width: usize) {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(n);
    s.extend(std::iter::repeat_n('0', width.saturating_sub(digits.len())));
    s.push_str(digits);
}

fn parse_sequence(s: &str) -> Option<(u64, usize)> {
    let digits = s.strip_prefix("49")?;
    if digits.len() != 54 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let counter = digits[..36].parse().ok()?;
    let shard = digits[36..].parse().ok()?;
    Some((counter, shard))
}

fn invalid(what: &str) -> Failure {
    Failure::InvalidArgument(kcl_core::ServiceError::new(
        "InvalidArgumentException",
        what,
    ))
}

impl Kinesis {
    /// A stream of `shards` shards splitting the hash-key space evenly.
    pub fn new(shards: usize, limits: KinesisLimits) -> Self {
        let mut k = Self {
            shards: Vec::new(),
            by_id: Default::default(),
            open: Vec::new(),
            next_counter: 1,
            limits,
            counts: KinesisCounts::default(),
        };
        for range in even_ranges(
            HashKeyRange {
                start: 0,
                end: u128::MAX,
            },
            shards.max(1),
        ) {
            k.add_shard(Vec::new(), range);
        }
        k
    }

    fn add_shard(&mut self, parents: Vec<usize>, range: HashKeyRange) -> usize {
        let index = self.shards.len();
        let id = LeaseKey::from(format!("shardId-{index:012}"));
        self.by_id.insert(id.clone(), index);
        for &p in &parents {
            self.shards[p].children.push(index);
        }
        self.shards.push(Shard {
            id,
            parents,
            range,
            first_index: 0,
            records: VecDeque::new(),
            user_end: 0,
            closed: false,
            closed_seen_ms: None,
            expired: false,
            children: Vec::new(),
            reads: VecDeque::new(),
        });
        let at = self
            .open
            .partition_point(|&s| self.shards[s].range.start < range.start);
        self.open.insert(at, index);
        index
    }

    fn close(&mut self, shard: usize) {
        self.shards[shard].closed = true;
        self.open.retain(|&s| s != shard);
    }

    /// Number of shards ever created.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Open shards, by index.
    pub fn open_shards(&self) -> &[usize] {
        &self.open
    }

    /// The id of shard `index`.
    pub fn shard_id(&self, index: usize) -> Option<&LeaseKey> {
        self.shards.get(index).map(|s| &s.id)
    }

    /// The index of shard `id`.
    pub fn shard_index(&self, id: &str) -> Option<usize> {
        self.by_id.get(id).copied()
    }

    /// Parents of shard `index`.
    pub fn parents(&self, index: usize) -> &[usize] {
        self.shards.get(index).map_or(&[], |s| &s.parents)
    }

    /// The ids of the parents of shard `id` (none for a root shard or an unknown id).
    pub fn parent_ids(&self, id: &str) -> Vec<LeaseKey> {
        match self.shard_index(id) {
            Some(i) => self
                .parents(i)
                .iter()
                .filter_map(|&p| self.shard_id(p).cloned())
                .collect(),
            None => Vec::new(),
        }
    }

    /// Splits an open shard drawn by `rng` (the nemesis' resharding).
    pub fn split_random(&mut self, rng: &mut kcl_core::rng::Rng) {
        let open = self.open_shards().to_vec();
        if !open.is_empty() {
            let s = open[rng.index(open.len())];
            let _ = self.split(s);
        }
    }

    /// Merges a pair of adjacent open shards drawn by `rng`.
    pub fn merge_random(&mut self, rng: &mut kcl_core::rng::Rng) {
        let open = self.open_shards().to_vec();
        if open.len() >= 2 {
            let i = rng.index(open.len() - 1);
            let _ = self.merge(open[i], open[i + 1]);
        }
    }

    /// UpdateShardCount to the open shards times `per_mille` / 1000, kept between half and
    /// double as Kinesis allows.
    pub fn rescale(&mut self, per_mille: u64) {
        let open = self.open_shards().len();
        let target = (open as u64 * per_mille / 1000) as usize;
        let _ = self.update_shard_count(target.clamp(open.div_ceil(2), open * 2));
    }

    /// User records ever put to shard `index` (trimmed ones included).
    pub fn records_in(&self, index: usize) -> u64 {
        self.shards.get(index).map_or(0, |s| s.user_end)
    }

    /// Arrival time of user record `i` of shard `index`, unless trimmed.
    pub fn arrival_ms(&self, index: usize, i: u64) -> Option<u64> {
        Some(self.shards.get(index)?.holding(i)?.arrival_ms)
    }

    /// User record `i` of shard `index`, unless trimmed: its position and arrival time.
    pub fn user_record(&self, index: usize, i: u64) -> Option<(RecordPosition, u64)> {
        let r = self.shards.get(index)?.holding(i)?;
        let sequence = SequenceNumber::parse(&sequence_string(r.counter, index)).ok()?;
        Some((
            RecordPosition {
                sequence,
                sub_sequence: i - r.first_user,
            },
            r.arrival_ms,
        ))
    }

    /// The user-record index of shard `index`'s first record that arrived at or after `ms`
    /// (trimmed records count: they arrived earlier).
    pub fn records_before(&self, index: usize, ms: u64) -> u64 {
        self.shards.get(index).map_or(0, |s| {
            let at = s.records.partition_point(|r| r.arrival_ms < ms);
            s.records.get(at).map_or(s.user_end, |r| r.first_user)
        })
    }

    /// Whether the shard is closed.
    pub fn is_closed(&self, index: usize) -> bool {
        self.shards.get(index).is_some_and(|s| s.closed)
    }

    /// PutRecord of a plain record: the shard (by index) and the record's user-record index
    /// within it.
    pub fn put(&mut self, now_ms: u64, partition_key: &str, size: u32) -> (usize, u64) {
        self.put_aggregate(now_ms, partition_key, size, 0)
    }

    /// PutRecord of a KPL aggregate of `users` user records (0: a plain record), routed by its
    /// partition key as the KPL routes an aggregate: the shard, and the user-record index of its
    /// first user record (the others follow).
    pub fn put_aggregate(
        &mut self,
        now_ms: u64,
        partition_key: &str,
        size: u32,
        users: u32,
    ) -> (usize, u64) {
        let hash = hash_key(partition_key);
        let at = self
            .open
            .partition_point(|&s| self.shards[s].range.start <= hash);
        // The open shards tile the whole key space, so the one starting at or before the hash
        // holds it.
        let shard = self.open[at.saturating_sub(1)];
        let counter = self.next_counter;
        self.next_counter += 1;
        self.counts.records_put += 1;
        let s = &mut self.shards[shard];
        let stored = Stored {
            counter,
            arrival_ms: now_ms,
            size,
            aggregated: users,
            first_user: s.user_end,
        };
        s.user_end += stored.users();
        s.records.push_back(stored);
        (shard, stored.first_user)
    }

    /// Drops records older than the retention period, and closed shards a retention period
    /// after they closed (every record of theirs is older by then); answers the shards that
    /// expired now.
    pub fn trim(&mut self, now_ms: u64) -> Vec<LeaseKey> {
        let retention = self.limits.retention_ms;
        let horizon = now_ms.saturating_sub(retention);
        let mut expired = Vec::new();
        for s in &mut self.shards {
            while s.records.front().is_some_and(|r| r.arrival_ms < horizon) {
                s.records.pop_front();
                s.first_index += 1;
                self.counts.records_trimmed += 1;
            }
            if s.closed && !s.expired {
                let closed = *s.closed_seen_ms.get_or_insert(now_ms);
                if closed.saturating_add(retention) <= now_ms && s.records.is_empty() {
                    s.expired = true;
                    self.counts.shards_expired += 1;
                    expired.push(s.id.clone());
                }
            }
        }
        expired
    }

    /// User records of shard `index` trimmed so far (they are its first ones).
    pub fn trimmed_in(&self, index: usize) -> u64 {
        self.shards.get(index).map_or(0, Shard::first_user_held)
    }

    /// Shard `index`, unless it never existed or expired.
    fn live(&self, index: usize) -> Result<&Shard, Failure> {
        match self.shards.get(index) {
            Some(s) if !s.expired => Ok(s),
            _ => Err(Failure::NotFound),
        }
    }

    /// ListShards (all pages): every shard, open or closed.
    pub fn list_shards(&mut self) -> Vec<ShardDescription> {
        self.counts.list_shards += 1;
        self.shards
            .iter()
            .filter(|s| !s.expired)
            .map(|s| ShardDescription {
                shard_id: s.id.clone(),
                parent: s.parents.first().map(|&p| self.shards[p].id.clone()),
                adjacent_parent: s.parents.get(1).map(|&p| self.shards[p].id.clone()),
                hash_range: s.range,
                closed: s.closed,
            })
            .collect()
    }

    /// GetShardIterator.
    pub fn get_shard_iterator(
        &mut self,
        now_ms: u64,
        shard_id: &str,
        position: &StartingPosition,
    ) -> Result<Text, Failure> {
        self.counts.get_shard_iterator += 1;
        let index = self.shard_index(shard_id).ok_or(Failure::NotFound)?;
        let s = self.live(index)?;
        let at = match position {
            StartingPosition::TrimHorizon => s.first_index,
            StartingPosition::Latest => s.end_index(),
            StartingPosition::AtTimestamp(ms) => {
                s.first_index + s.records.partition_point(|r| r.arrival_ms < *ms) as u64
            }
            StartingPosition::AtSequenceNumber(seq)
            | StartingPosition::AfterSequenceNumber(seq) => {
                let (counter, owner) = parse_sequence(seq.as_str())
                    .ok_or_else(|| invalid("malformed sequence number"))?;
                if owner != index {
                    return Err(invalid("sequence number belongs to another shard"));
                }
                let found = s.records.partition_point(|r| r.counter < counter);
                let exact = s.records.get(found).is_some_and(|r| r.counter == counter);
                let after = matches!(position, StartingPosition::AfterSequenceNumber(_));
                // A trimmed sequence number starts at the trim horizon, as Kinesis does.
                s.first_index + found as u64 + u64::from(after && exact)
            }
        };
        Ok(iterator_string(index, at, now_ms))
    }

    /// Whether a read at `iterator` would find nothing yet: its shard open, read to its end.
    /// (A push-style reader waits for the next record instead of answering empty.)
    pub fn nothing_new(&self, iterator: &str) -> bool {
        let Some((index, at, _)) = parse_iterator(iterator) else {
            return false;
        };
        self.shards
            .get(index)
            .is_some_and(|s| !s.expired && !s.closed && at.max(s.first_index) >= s.end_index())
    }

    /// GetRecords.
    pub fn get_records(
        &mut self,
        now_ms: u64,
        iterator: &str,
        limit: usize,
    ) -> Result<GetRecordsOutput, Failure> {
        self.counts.get_records += 1;
        let (index, at, issued) =
            parse_iterator(iterator).ok_or_else(|| invalid("malformed shard iterator"))?;
        if index >= self.shards.len() {
            return Err(invalid("malformed shard iterator"));
        }
        self.live(index)?;
        if now_ms.saturating_sub(issued) > self.limits.iterator_lifetime_ms {
            self.counts.expired_iterators += 1;
            return Err(Failure::ExpiredIterator);
        }
        let limits = self.limits.clone();
        let s = &mut self.shards[index];
        while s.reads.front().is_some_and(|&(t, _)| t + 1000 <= now_ms) {
            s.reads.pop_front();
        }
        let read_bytes: u64 = s.reads.iter().map(|&(_, b)| b).sum();
        if s.reads.len() >= limits.calls_per_shard_per_second
            || read_bytes >= limits.read_bytes_per_shard_per_second
        {
            self.counts.throughput_exceeded += 1;
            return Err(Failure::Throttled);
        }
        let start = at.max(s.first_index);
        let limit = limit.clamp(1, limits.max_records_per_call);
        let available = usize::try_from(s.end_index().saturating_sub(start)).unwrap_or(limit);
        let mut records = Vec::with_capacity(available.min(limit));
        let mut bytes = 0u64;
        let mut next = start;
        // The limit counts Kinesis records; an aggregate is handed out as its user records.
        while next < s.end_index() && next - start < limit as u64 {
            let r = s.records[(next - s.first_index) as usize];
            if bytes + u64::from(r.size) > limits.max_bytes_per_call && !records.is_empty() {
                break;
            }
            bytes += u64::from(r.size);
            let sequence = SequenceNumber::parse(&sequence_string(r.counter, index))
                .map_err(|_| invalid("sequence number"))?;
            let share = (r.size as u64 / r.users()).max(1) as u32;
            for sub in 0..r.users() {
                records.push(SimRecord {
                    position: RecordPosition {
                        sequence: sequence.clone(),
                        sub_sequence: sub,
                    },
                    shard: index as u32,
                    index: r.first_user + sub,
                    size: share,
                });
            }
            next += 1;
        }
        s.reads.push_back((now_ms, bytes));
        let millis_behind_latest = match s.records.back() {
            Some(tip) if next < s.end_index() => tip.arrival_ms.saturating_sub(
                s.records[(next - s.first_index) as usize]
                    .arrival_ms
                    .min(tip.arrival_ms),
            ),
            _ => 0,
        }
        .max(if next < s.end_index() { 1 } else { 0 });
        let at_end = s.closed && next >= s.end_index();
        let children = if at_end {
            s.children.clone()
        } else {
            Vec::new()
        };
        let child_shards = children
            .iter()
            .map(|&c| ChildShard {
                shard_id: self.shards[c].id.clone(),
                parents: {
                    let mut p: Vec<LeaseKey> = self.shards[c]
                        .parents
                        .iter()
                        .map(|&p| self.shards[p].id.clone())
                        .collect();
                    p.sort();
                    p
                },
                hash_range: Some(self.shards[c].range),
            })
            .collect();
        Ok(GetRecordsOutput {
            records,
            next_iterator: (!at_end).then(|| iterator_string(index, next, now_ms)),
            millis_behind_latest,
            child_shards,
        })
    }

    /// SplitShard at the middle of its hash range: two children.
    pub fn split(&mut self, shard: usize) -> Result<[usize; 2], Failure> {
        let s = self.shards.get(shard).ok_or(Failure::NotFound)?;
        let range = s.range;
        self.split_at(shard, range.start + (range.end - range.start) / 2 + 1)
    }

    /// SplitShard with `NewStartingHashKey` = `at`: the children hold `[start, at)` and
    /// `[at, end]`.
    pub fn split_at(&mut self, shard: usize, at: u128) -> Result<[usize; 2], Failure> {
        let s = self.shards.get(shard).ok_or(Failure::NotFound)?;
        let range = s.range;
        if s.closed || at <= range.start || at > range.end {
            return Err(invalid("shard cannot be split there"));
        }
        self.close(shard);
        let a = self.add_shard(
            vec![shard],
            HashKeyRange {
                start: range.start,
                end: at - 1,
            },
        );
        let b = self.add_shard(
            vec![shard],
            HashKeyRange {
                start: at,
                end: range.end,
            },
        );
        Ok([a, b])
    }

    /// MergeShards of two open shards with adjacent hash ranges: one child.
    pub fn merge(&mut self, a: usize, b: usize) -> Result<usize, Failure> {
        let (Some(sa), Some(sb)) = (self.shards.get(a), self.shards.get(b)) else {
            return Err(Failure::NotFound);
        };
        let (lo, hi) = if sa.range.start < sb.range.start {
            (a, b)
        } else {
            (b, a)
        };
        let (rl, rh) = (self.shards[lo].range, self.shards[hi].range);
        if self.shards[lo].closed
            || self.shards[hi].closed
            || rl.end.checked_add(1) != Some(rh.start)
        {
            return Err(invalid("shards are not open and adjacent"));
        }
        self.close(lo);
        self.close(hi);
        Ok(self.add_shard(
            vec![lo, hi],
            HashKeyRange {
                start: rl.start,
                end: rh.end,
            },
        ))
    }

    /// UpdateShardCount with uniform scaling, as Kinesis does it: through splits and merges
    /// (every child has one or two parents), to `target` open shards of equal ranges, where
    /// `target` is between half and double the open count.
    pub fn update_shard_count(&mut self, target: usize) -> Result<(), Failure> {
        let open = self.open.len();
        if target == 0 || target * 2 < open || target > open * 2 {
            return Err(invalid(
                "UpdateShardCount scales to between half and double the open shards",
            ));
        }
        let targets = even_ranges(
            HashKeyRange {
                start: 0,
                end: u128::MAX,
            },
            target,
        );
        // Split every open shard that straddles a boundary of the new ranges, at the boundary.
        for t in &targets[1..] {
            let at = t.start;
            let holder = self.open.iter().copied().find(|&s| {
                let r = self.shards[s].range;
                r.start < at && at <= r.end
            });
            if let Some(s) = holder {
                self.split_at(s, at)?;
            }
        }
        // Every open shard now lies inside one new range: merge each range's pieces into one.
        for t in &targets {
            loop {
                let inside: Vec<usize> = self
                    .open
                    .iter()
                    .copied()
                    .filter(|&s| {
                        t.start <= self.shards[s].range.start && self.shards[s].range.end <= t.end
                    })
                    .collect();
                if inside.len() < 2 {
                    break;
                }
                self.merge(inside[0], inside[1])?;
            }
        }
        Ok(())
    }
}

/// `SHARD/POSITION/ISSUED_MS`: every GetRecords call makes one, so it is written by hand into a
/// buffer on the stack (three u64s and two separators fit), mostly short enough to be held in
/// line.
fn iterator_string(shard: usize, at: u64, issued_ms: u64) -> Text {
    let mut out = [0u8; 3 * 20 + 2];
    let mut len = 0;
    for (i, n) in [shard as u64, at, issued_ms].into_iter().enumerate() {
        if i > 0 {
            out[len] = b'/';
            len += 1;
        }
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(n).as_bytes();
        out[len..len + digits.len()].copy_from_slice(digits);
        len += digits.len();
    }
    // Only ASCII digits and slashes were written.
    Text::new(std::str::from_utf8(&out[..len]).unwrap_or_default())
}

/// The parts of an iterator [`iterator_string`] made; `None` for anything else. Read by hand
/// like it is written: every GetRecords call reads one.
fn parse_iterator(iterator: &str) -> Option<(usize, u64, u64)> {
    let mut parts = [0u64; 3];
    let mut part = 0;
    let mut digits = 0;
    for b in iterator.bytes() {
        match b {
            b'0'..=b'9' => {
                parts[part] = parts[part]
                    .checked_mul(10)?
                    .checked_add(u64::from(b - b'0'))?;
                digits += 1;
            }
            b'/' if digits > 0 && part < 2 => {
                part += 1;
                digits = 0;
            }
            _ => return None,
        }
    }
    let [shard, at, issued] = parts;
    (part == 2 && digits > 0).then_some((usize::try_from(shard).ok()?, at, issued))
}

/// `n` contiguous ranges covering `range` evenly.
fn even_ranges(range: HashKeyRange, n: usize) -> Vec<HashKeyRange> {
    let n = n as u128;
    let width = (range.end - range.start) / n;
    (0..n)
        .map(|i| HashKeyRange {
            start: range.start + i * width,
            end: if i + 1 == n {
                range.end
            } else {
                range.start + (i + 1) * width - 1
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(n: usize) -> Kinesis {
        Kinesis::new(n, KinesisLimits::default())
    }

    #[test]
    fn iterators_read_back_what_was_written_and_nothing_else() {
        for (shard, at, issued) in [
            (0, 0, 0),
            (7, 123_456, 3_600_000),
            (9_999, u64::MAX / 10, 1),
            (1, u64::MAX, u64::MAX),
        ] {
            let it = iterator_string(shard, at, issued);
            assert_eq!(parse_iterator(&it), Some((shard, at, issued)), "{it}");
        }
        for bad in [
            "",
            "1/2",
            "1/2/3/4",
            "1//3",
            "/1/2",
            "1/2/",
            "a/2/3",
            "1/2/3x",
            "+1/2/3",
            "1/2/99999999999999999999",
        ] {
            assert_eq!(parse_iterator(bad), None, "{bad}");
        }
    }

    #[test]
    fn partition_keys_land_in_the_shard_whose_range_holds_their_md5() {
        let mut k = stream(4);
        for i in 0..200 {
            let key = format!("pk-{i}");
            let (shard, _) = k.put(0, &key, 10);
            let h = hash_key(&key);
            let r = k.shards[shard].range;
            assert!(r.start <= h && h <= r.end, "{key} -> {shard}");
        }
        // MD5("") is d41d8cd98f00b204e9800998ecf8427e.
        assert_eq!(hash_key(""), 0xd41d8cd98f00b204e9800998ecf8427e);
    }

    #[test]
    fn iterators_of_every_type_and_get_records_limits() {
        let mut k = stream(1);
        for t in 0..10 {
            k.put(t * 100, "a", 100);
        }
        let seq = |k: &mut Kinesis, it: &str| -> Vec<u64> {
            k.get_records(1_000, it, 100)
                .map(|o| o.records.iter().map(|r| r.index).collect())
                .unwrap_or_default()
        };
        let id = "shardId-000000000000";
        let th = k
            .get_shard_iterator(1_000, id, &StartingPosition::TrimHorizon)
            .unwrap_or_default();
        assert_eq!(seq(&mut k, &th), (0..10).collect::<Vec<_>>());
        let latest = k
            .get_shard_iterator(1_000, id, &StartingPosition::Latest)
            .unwrap_or_default();
        assert!(seq(&mut k, &latest).is_empty());
        let ts = k
            .get_shard_iterator(1_000, id, &StartingPosition::AtTimestamp(450))
            .unwrap_or_default();
        assert_eq!(seq(&mut k, &ts), (5..10).collect::<Vec<_>>());
        let third = SequenceNumber::parse(&sequence_string(3, 0)).unwrap_or_else(|e| panic!("{e}"));
        let at = k
            .get_shard_iterator(
                1_000,
                id,
                &StartingPosition::AtSequenceNumber(third.clone()),
            )
            .unwrap_or_default();
        assert_eq!(seq(&mut k, &at), (2..10).collect::<Vec<_>>());
        // Four calls so far at t = 1 s; the sixth within one second exceeds the per-shard limit.
        let after = k
            .get_shard_iterator(1_000, id, &StartingPosition::AfterSequenceNumber(third))
            .unwrap_or_default();
        assert_eq!(
            k.get_records(1_000, &after, 100).map(|o| o.records.len()),
            Ok(7)
        );
        assert_eq!(
            k.get_records(1_000, &after, 100).map(|o| o.records.len()),
            Err(Failure::Throttled)
        );
        assert_eq!(
            k.get_records(2_000, &after, 100).map(|o| o.records.len()),
            Ok(7)
        );
        assert_eq!(
            k.get_records(1_000 + 5 * 60 * 1000 + 1, &after, 100)
                .map(|o| o.records.len()),
            Err(Failure::ExpiredIterator)
        );
        assert!(matches!(
            k.get_records(2_000, "garbage", 1),
            Err(Failure::InvalidArgument(_))
        ));
        assert_eq!(
            k.get_shard_iterator(0, "shardId-nope", &StartingPosition::Latest),
            Err(Failure::NotFound)
        );
    }

    #[test]
    fn sequence_numbers_are_56_digits_and_grow() {
        let a = SequenceNumber::parse(&sequence_string(9, 3)).unwrap_or_else(|e| panic!("{e}"));
        let b = SequenceNumber::parse(&sequence_string(10, 0)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.as_str().len(), 56);
        assert!(a < b);
        assert_eq!(parse_sequence(a.as_str()), Some((9, 3)));
    }

    #[test]
    fn split_and_merge_close_parents_and_report_children_at_the_end() {
        let mut k = stream(2);
        k.put(0, "x", 1);
        let [a, b] = k.split(0).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(k.parents(a), &[0]);
        // b is the upper half of shard 0, so it borders shard 1; a is not adjacent to 1.
        assert!(k.merge(a, 1).is_err());
        let merged = k.merge(b, 1).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(k.parents(merged), &[b, 1]);
        let it = k
            .get_shard_iterator(0, "shardId-000000000000", &StartingPosition::TrimHorizon)
            .unwrap_or_default();
        let out = k
            .get_records(10, &it, 100)
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(out.next_iterator, None);
        assert_eq!(out.child_shards.len(), 2);
        // The open shards still tile the key space.
        let mut end = None;
        for &s in k.open_shards() {
            let r = k.shards[s].range;
            assert_eq!(r.start, end.map_or(0, |e: u128| e + 1));
            end = Some(r.end);
        }
        assert_eq!(end, Some(u128::MAX));
        assert!(k.update_shard_count(k.open_shards().len() * 2 + 1).is_err());
        assert!(k.update_shard_count(0).is_err());
    }

    #[test]
    fn update_shard_count_scales_uniformly_through_splits_and_merges() {
        let mut k = stream(4);
        for target in [3, 6, 5, 10, 5, 4] {
            k.update_shard_count(target)
                .unwrap_or_else(|e| panic!("{target}: {e:?}"));
            let open = k.open_shards().to_vec();
            assert_eq!(open.len(), target);
            let expected = even_ranges(
                HashKeyRange {
                    start: 0,
                    end: u128::MAX,
                },
                target,
            );
            let ranges: Vec<HashKeyRange> = open.iter().map(|&s| k.shards[s].range).collect();
            assert_eq!(ranges, expected, "uniform after scaling to {target}");
        }
        for s in 0..k.shard_count() {
            assert!(k.parents(s).len() <= 2, "shard {s} has {:?}", k.parents(s));
        }
    }

    #[test]
    fn retention_trims_and_trim_horizon_follows() {
        let mut k = Kinesis::new(
            1,
            KinesisLimits {
                retention_ms: 1_000,
                ..KinesisLimits::default()
            },
        );
        k.put(0, "a", 1);
        k.put(1_500, "a", 1);
        k.trim(2_000);
        assert_eq!(k.counts.records_trimmed, 1);
        let it = k
            .get_shard_iterator(
                2_000,
                "shardId-000000000000",
                &StartingPosition::TrimHorizon,
            )
            .unwrap_or_default();
        let out = k
            .get_records(2_000, &it, 10)
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(out.records.iter().map(|r| r.index).collect::<Vec<_>>(), [1]);
    }

    #[test]
    fn a_closed_shard_expires_a_retention_period_after_it_closed() {
        let mut k = Kinesis::new(
            1,
            KinesisLimits {
                retention_ms: 1_000,
                ..KinesisLimits::default()
            },
        );
        k.put(0, "a", 1);
        let parent = "shardId-000000000000";
        let it = k
            .get_shard_iterator(0, parent, &StartingPosition::TrimHorizon)
            .unwrap_or_default();
        k.split(0).unwrap_or_else(|e| panic!("{e:?}"));
        k.trim(500);
        assert_eq!(k.list_shards().len(), 3, "closed, still listed");
        k.trim(1_400);
        assert_eq!(
            k.counts.shards_expired, 0,
            "closed for less than the retention"
        );
        assert_eq!(k.trim(1_500), vec![LeaseKey::from(parent)]);
        assert_eq!(k.counts.shards_expired, 1);
        assert_eq!(k.trimmed_in(0), 1);
        let listed: Vec<String> = k
            .list_shards()
            .into_iter()
            .map(|s| s.shard_id.as_str().to_owned())
            .collect();
        assert!(!listed.iter().any(|s| s == parent), "{listed:?}");
        assert_eq!(
            k.get_shard_iterator(1_500, parent, &StartingPosition::TrimHorizon),
            Err(Failure::NotFound)
        );
        assert!(matches!(
            k.get_records(1_500, &it, 10),
            Err(Failure::NotFound)
        ));
    }

    #[test]
    fn an_aggregate_is_read_as_its_user_records_and_counted_as_one_record() {
        let mut k = stream(1);
        let shard = "shardId-000000000000";
        assert_eq!(k.put(0, "a", 10), (0, 0));
        assert_eq!(k.put_aggregate(1, "a", 30, 3), (0, 1));
        assert_eq!(k.put(2, "a", 10), (0, 4));
        assert_eq!(k.records_in(0), 5);
        let it = k
            .get_shard_iterator(3, shard, &StartingPosition::TrimHorizon)
            .unwrap_or_default();
        let out = k.get_records(3, &it, 2).unwrap_or_else(|e| panic!("{e:?}"));
        let got: Vec<(u64, u64)> = out
            .records
            .iter()
            .map(|r| (r.index, r.position.sub_sequence))
            .collect();
        assert_eq!(
            got,
            [(0, 0), (1, 0), (2, 1), (3, 2)],
            "a limit of 2 Kinesis records"
        );
        let aggregate = &out.records[1].position.sequence;
        assert!(out.records[1..]
            .iter()
            .all(|r| &r.position.sequence == aggregate));
        assert_eq!(
            k.user_record(0, 2).map(|(p, t)| (p.sub_sequence, t)),
            Some((1, 1))
        );
        assert_eq!(k.arrival_ms(0, 4), Some(2));
        assert_eq!(k.records_before(0, 2), 4);
        // AT the aggregate's sequence number: the whole aggregate again.
        let at = k
            .get_shard_iterator(
                3,
                shard,
                &StartingPosition::AtSequenceNumber(aggregate.clone()),
            )
            .unwrap_or_default();
        let again = k
            .get_records(3, &at, 10)
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(again.records.first().map(|r| r.index), Some(1));
    }
}
