//! A Kinesis stream model: shards with hash ranges, sequence numbers as large decimal strings,
//! iterators, shard end with child shards, splits and merges.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::vec::Vec;

use crate::io::{ChildShard, Failure, ShardDescription, ShardListing, StartingPosition};
use crate::item::Text;
use crate::lease::{HashKeyRange, LeaseKey};
use crate::sequence::{RecordPosition, SequenceNumber};
use crate::time::WallTime;

/// One record in the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamRecord {
    /// Its position.
    pub position: RecordPosition,
    /// A stream-wide id, to check delivery.
    pub id: u64,
}

#[derive(Clone, Debug)]
struct Shard {
    parents: Vec<LeaseKey>,
    range: HashKeyRange,
    records: Vec<StreamRecord>,
    closed: bool,
    children: Vec<LeaseKey>,
}

/// A GetRecords answer: records, next iterator, millis behind, children at the end.
pub type Fetched = (Vec<StreamRecord>, Option<Text>, u64, Vec<ChildShard>);

/// The stream.
#[derive(Clone, Debug, Default)]
pub struct MemStream {
    shards: BTreeMap<LeaseKey, Shard>,
    next_shard: u64,
    next_seq: u64,
    next_id: u64,
}

impl MemStream {
    /// A stream of `n` shards splitting the hash space evenly.
    pub fn new(n: usize) -> Self {
        let mut s = Self::default();
        let n = n.max(1) as u128;
        let step = u128::MAX / n;
        for i in 0..n {
            let start = i * step;
            let end = if i + 1 == n {
                u128::MAX
            } else {
                (i + 1) * step - 1
            };
            s.add_shard(Vec::new(), HashKeyRange { start, end });
        }
        s
    }

    fn add_shard(&mut self, parents: Vec<LeaseKey>, range: HashKeyRange) -> LeaseKey {
        let id = LeaseKey::from(format!("shardId-{:012}", self.next_shard));
        self.next_shard += 1;
        self.shards.insert(
            id.clone(),
            Shard {
                parents,
                range,
                records: Vec::new(),
                closed: false,
                children: Vec::new(),
            },
        );
        id
    }

    /// Open shards, in id order.
    pub fn open_shards(&self) -> Vec<LeaseKey> {
        self.shards
            .iter()
            .filter(|(_, s)| !s.closed)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// A shard's parents.
    pub fn parents(&self, shard: &str) -> Vec<LeaseKey> {
        self.shards
            .get(shard)
            .map(|s| s.parents.clone())
            .unwrap_or_default()
    }

    /// Puts one record on the open shard owning `hash`; returns its id.
    pub fn put(&mut self, hash: u128) -> u64 {
        let key = self
            .shards
            .iter()
            .find(|(_, s)| !s.closed && s.range.start <= hash && hash <= s.range.end)
            .map(|(k, _)| k.clone());
        let key = match key {
            Some(k) => k,
            None => match self.open_shards().first() {
                Some(k) => k.clone(),
                None => return u64::MAX,
            },
        };
        self.next_seq += 1;
        self.next_id += 1;
        // Real sequence numbers are ~56 digits, far beyond u128: keep them that wide.
        let seq = format!("4959{:052}", self.next_seq);
        let Ok(sequence) = SequenceNumber::parse(&seq) else {
            return u64::MAX;
        };
        let rec = StreamRecord {
            position: RecordPosition::new(sequence),
            id: self.next_id,
        };
        if let Some(s) = self.shards.get_mut(&key) {
            s.records.push(rec);
        }
        self.next_id
    }

    /// Records put so far.
    pub fn records_put(&self) -> u64 {
        self.next_id
    }

    /// Every record id with its shard.
    pub fn all_records(&self) -> impl Iterator<Item = (&LeaseKey, &StreamRecord)> {
        self.shards
            .iter()
            .flat_map(|(k, s)| s.records.iter().map(move |r| (k, r)))
    }

    /// Splits an open shard in two at the middle of its range.
    pub fn split(&mut self, shard: &str) -> Option<(LeaseKey, LeaseKey)> {
        let s = self.shards.get(shard).filter(|s| !s.closed)?;
        let r = s.range;
        let mid = r.start + (r.end - r.start) / 2;
        let parent = LeaseKey::from(shard);
        let a = self.add_shard(
            alloc::vec![parent.clone()],
            HashKeyRange {
                start: r.start,
                end: mid,
            },
        );
        let b = self.add_shard(
            alloc::vec![parent],
            HashKeyRange {
                start: mid + 1,
                end: r.end,
            },
        );
        let s = self.shards.get_mut(shard)?;
        s.closed = true;
        s.children = alloc::vec![a.clone(), b.clone()];
        Some((a, b))
    }

    /// Merges two open shards with adjacent ranges.
    pub fn merge(&mut self, x: &str, y: &str) -> Option<LeaseKey> {
        let (rx, ry) = (
            self.shards.get(x).filter(|s| !s.closed)?.range,
            self.shards.get(y).filter(|s| !s.closed)?.range,
        );
        let (lo, hi) = if rx.start < ry.start {
            (rx, ry)
        } else {
            (ry, rx)
        };
        if lo.end.checked_add(1) != Some(hi.start) {
            return None;
        }
        let mut parents = alloc::vec![LeaseKey::from(x), LeaseKey::from(y)];
        parents.sort_unstable();
        let c = self.add_shard(
            parents,
            HashKeyRange {
                start: lo.start,
                end: hi.end,
            },
        );
        for p in [x, y] {
            if let Some(s) = self.shards.get_mut(p) {
                s.closed = true;
                s.children = alloc::vec![c.clone()];
            }
        }
        Some(c)
    }

    /// Adjacent open shard pairs, for merges.
    pub fn adjacent_pairs(&self) -> Vec<(LeaseKey, LeaseKey)> {
        let mut open: Vec<(&LeaseKey, &Shard)> =
            self.shards.iter().filter(|(_, s)| !s.closed).collect();
        open.sort_by_key(|(_, s)| s.range.start);
        open.windows(2)
            .filter(|w| w[0].1.range.end.checked_add(1) == Some(w[1].1.range.start))
            .map(|w| (w[0].0.clone(), w[1].0.clone()))
            .collect()
    }

    /// ListShards.
    pub fn list(&self) -> Vec<ShardDescription> {
        self.shards
            .iter()
            .map(|(k, s)| ShardDescription {
                shard_id: k.clone(),
                parent: s.parents.first().cloned(),
                adjacent_parent: s.parents.get(1).cloned(),
                hash_range: s.range,
                closed: s.closed,
            })
            .collect()
    }

    /// ListShards answered at `now_ms` on the wall clock (the testkit's wall and monotonic clocks
    /// are one).
    pub fn listing(&self, now_ms: u64) -> ShardListing {
        ShardListing {
            shards: self.list(),
            listed_at: WallTime::from_unix_millis(now_ms),
        }
    }

    /// GetShardIterator: an iterator is "shard#index#issued_at". Records keep no arrival time:
    /// `AT_TIMESTAMP` reads from the oldest record.
    pub fn iterator(
        &self,
        shard: &str,
        at: &StartingPosition,
        now_ms: u64,
    ) -> Result<Text, Failure> {
        let s = self.shards.get(shard).ok_or(Failure::NotFound)?;
        let index = match at {
            StartingPosition::TrimHorizon | StartingPosition::AtTimestamp(_) => 0,
            StartingPosition::Latest => s.records.len(),
            StartingPosition::AtSequenceNumber(q) => s
                .records
                .iter()
                .position(|r| &r.position.sequence >= q)
                .unwrap_or(s.records.len()),
            StartingPosition::AfterSequenceNumber(q) => s
                .records
                .iter()
                .position(|r| &r.position.sequence > q)
                .unwrap_or(s.records.len()),
        };
        Ok(format!("{shard}#{index}#{now_ms}").into())
    }

    /// GetRecords: records from the iterator, the next iterator (none at the end of a closed
    /// shard), millis behind, and children at the end. Iterators expire after five minutes.
    pub fn get(&self, iterator: &str, limit: usize, now_ms: u64) -> Result<Fetched, Failure> {
        let mut parts = iterator.split('#');
        let (Some(shard), Some(index), Some(issued)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(Failure::Other("malformed iterator".into()));
        };
        let index: usize = index
            .parse()
            .map_err(|_| Failure::Other("malformed iterator".into()))?;
        let issued: u64 = issued
            .parse()
            .map_err(|_| Failure::Other("malformed iterator".into()))?;
        if now_ms.saturating_sub(issued) > 300_000 {
            return Err(Failure::ExpiredIterator);
        }
        let s = self.shards.get(shard).ok_or(Failure::NotFound)?;
        let end = (index + limit).min(s.records.len());
        let records = s
            .records
            .get(index..end)
            .map(<[StreamRecord]>::to_vec)
            .unwrap_or_default();
        let behind = if end < s.records.len() { 1000 } else { 0 };
        if s.closed && end >= s.records.len() {
            let children = s
                .children
                .iter()
                .filter_map(|c| {
                    self.shards.get(c).map(|cs| ChildShard {
                        shard_id: c.clone(),
                        parents: cs.parents.clone(),
                        hash_range: Some(cs.range),
                    })
                })
                .collect();
            Ok((records, None, 0, children))
        } else {
            Ok((
                records,
                Some(format!("{shard}#{end}#{now_ms}").into()),
                behind,
                Vec::new(),
            ))
        }
    }
}
