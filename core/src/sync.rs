//! Shard sync: which leases to create for a listed shard set.
//!
//! A shard gets a lease when it has none and either descends from a shard that has or had one
//! (a parent leased, or a parent whose lease is gone but whose other child is leased), in which
//! case it starts at `TRIM_HORIZON` so nothing between a parent's end and the child's start is
//! lost, or it is a root relative to the table: then it starts at the configured initial
//! position, unless a descendant already has a lease (it was consumed and cleaned up) or it is
//! closed and the initial position is `LATEST`.
//!
//! A root lease's start is fixed when the lease is created, not when it is acquired: `LATEST`
//! becomes the listing's wall-clock time (less [`LATEST_CLOCK_TOLERANCE`]) and `AT_TIMESTAMP` the
//! configured time, stored in `startingTimestamp` beside the sentinel checkpoint. Every owner until
//! the first checkpoint reads from there, so no record put after the lease was created is lost
//! to a failover, a slow first acquisition, or a worker configured differently. A child is created only once its parent's lease
//! exists (a later round, or the parent's owner at shard end), so a lease never exists below a
//! missing, unconsumed parent.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;

use core::time::Duration;

use crate::config::InitialPosition;
use crate::io::ShardDescription;
use crate::lease::{Lease, LeaseKey};
use crate::sequence::Position;
use crate::time::WallTime;

/// How long before its listing a `LATEST` lease starts: a lister whose wall clock runs up to this
/// far ahead of Kinesis's arrival timestamps still loses nothing. The cost is up to this much of
/// the stream's recent past delivered at the first read.
pub const LATEST_CLOCK_TOLERANCE: Duration = Duration::from_secs(1);

/// Where root shards' leases start: the configured initial position, resolved at a listing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RootStart {
    initial: InitialPosition,
    listed_at: WallTime,
}

impl RootStart {
    /// Root leases created from a listing answered at `listed_at`.
    pub fn new(initial: InitialPosition, listed_at: WallTime) -> Self {
        Self { initial, listed_at }
    }

    /// The wall-clock time a root lease starts from, kept with its sentinel checkpoint;
    /// `None` at `TRIM_HORIZON`, which needs none.
    pub fn timestamp(self) -> Option<WallTime> {
        match self.initial {
            InitialPosition::TrimHorizon => None,
            InitialPosition::Latest => Some(self.listed_at - LATEST_CLOCK_TOLERANCE),
            InitialPosition::AtTimestamp(ms) => Some(WallTime::from_unix_millis(ms)),
        }
    }
}

/// The sentinel a root shard starts at.
pub fn initial_checkpoint(p: InitialPosition) -> Position {
    match p {
        InitialPosition::TrimHorizon => Position::TrimHorizon,
        InitialPosition::Latest => Position::Latest,
        InitialPosition::AtTimestamp(_) => Position::AtTimestamp,
    }
}

/// The leases to create, in shard order.
pub fn leases_to_create(
    shards: &[ShardDescription],
    existing: &BTreeSet<LeaseKey>,
    root_start: RootStart,
) -> Vec<Lease> {
    let by_id: BTreeMap<&LeaseKey, &ShardDescription> =
        shards.iter().map(|s| (&s.shard_id, s)).collect();
    let mut children: BTreeMap<&LeaseKey, Vec<&LeaseKey>> = BTreeMap::new();
    for s in shards {
        for p in s.parent.iter().chain(s.adjacent_parent.iter()) {
            children.entry(p).or_default().push(&s.shard_id);
        }
    }
    let graph = Graph {
        by_id: &by_id,
        children: &children,
        existing,
        initial: root_start.initial,
    };
    let mut memo = BTreeMap::new();
    let mut out = Vec::new();
    for (id, shard) in &by_id {
        if graph.fate(id, &mut memo, 0) != Fate::WillLease {
            continue;
        }
        let parents: Vec<LeaseKey> = shard.parents();
        let fates: Vec<Fate> = parents
            .iter()
            .map(|p| graph.fate(p, &mut memo, 0))
            .collect();
        // Wait for a parent that will get a lease: were both created in one round and the
        // parent's create lost, the parent would later look consumed.
        if fates.contains(&Fate::WillLease) {
            continue;
        }
        // A parent that has a lease, or had one (a descendant of it has: it was consumed and
        // cleaned up), was read to its end: its children owe every record.
        let consumed_parent = fates.contains(&Fate::Leased)
            || parents
                .iter()
                .any(|p| has_leased_descendant(p, &children, existing, &mut BTreeSet::new()));
        let mut lease = if consumed_parent {
            Lease::new((*id).clone(), Position::TrimHorizon)
        } else {
            let mut root = Lease::new((*id).clone(), initial_checkpoint(root_start.initial));
            root.starting_timestamp = root_start.timestamp();
            root
        };
        lease.parent_shard_ids = parents;
        lease.hash_range = Some(shard.hash_range);
        out.push(lease);
    }
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    /// Has a lease.
    Leased,
    /// Gets one, now or in a later round.
    WillLease,
    /// Never: consumed and cleaned up, before the initial position, or not listed.
    Never,
}

struct Graph<'a> {
    by_id: &'a BTreeMap<&'a LeaseKey, &'a ShardDescription>,
    children: &'a BTreeMap<&'a LeaseKey, Vec<&'a LeaseKey>>,
    existing: &'a BTreeSet<LeaseKey>,
    initial: InitialPosition,
}

impl<'a> Graph<'a> {
    fn fate(&self, id: &LeaseKey, memo: &mut BTreeMap<LeaseKey, Fate>, depth: usize) -> Fate {
        if let Some(f) = memo.get(id) {
            return *f;
        }
        if self.existing.contains(id) {
            return Fate::Leased;
        }
        let Some(shard) = self.by_id.get(id) else {
            return Fate::Never;
        };
        // A malformed listing with a cycle must not recurse forever.
        if depth > self.by_id.len() {
            return Fate::Never;
        }
        let leased_below = has_leased_descendant(
            &shard.shard_id,
            self.children,
            self.existing,
            &mut BTreeSet::new(),
        );
        let f = if shard.closed && leased_below {
            Fate::Never
        } else {
            let parents: Vec<Fate> = shard
                .parents()
                .iter()
                .map(|p| self.fate(p, memo, depth + 1))
                .collect();
            if parents.iter().any(|f| *f != Fate::Never) {
                Fate::WillLease
            } else if leased_below || (shard.closed && self.initial == InitialPosition::Latest) {
                Fate::Never
            } else {
                Fate::WillLease
            }
        };
        memo.insert(id.clone(), f);
        f
    }
}

fn has_leased_descendant<'a>(
    id: &'a LeaseKey,
    children: &BTreeMap<&'a LeaseKey, Vec<&'a LeaseKey>>,
    existing: &BTreeSet<LeaseKey>,
    visited: &mut BTreeSet<&'a LeaseKey>,
) -> bool {
    if !visited.insert(id) {
        return false;
    }
    children.get(id).is_some_and(|cs| {
        cs.iter()
            .any(|c| existing.contains(*c) || has_leased_descendant(c, children, existing, visited))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::HashKeyRange;
    use alloc::vec;

    fn shard(id: &str, parents: &[&str], closed: bool) -> ShardDescription {
        ShardDescription {
            shard_id: id.into(),
            parent: parents.first().map(|p| LeaseKey::from(*p)),
            adjacent_parent: parents.get(1).map(|p| LeaseKey::from(*p)),
            hash_range: HashKeyRange {
                start: 0,
                end: u128::MAX,
            },
            closed,
        }
    }

    /// Root leases as created from a listing at 1,000,000 ms.
    fn at(initial: InitialPosition) -> RootStart {
        RootStart::new(initial, WallTime::from_unix_millis(1_000_000))
    }

    fn keys(v: &[Lease]) -> Vec<(&str, Position)> {
        v.iter()
            .map(|l| (l.key.as_str(), l.checkpoint.clone()))
            .collect()
    }

    #[test]
    fn empty_table_trim_horizon_takes_closed_roots_and_children_at_trim_horizon() {
        let shards = vec![
            shard("s0", &[], true),
            shard("s1", &["s0"], false),
            shard("s2", &["s0"], false),
        ];
        let out = leases_to_create(&shards, &BTreeSet::new(), at(InitialPosition::TrimHorizon));
        assert_eq!(keys(&out), vec![("s0", Position::TrimHorizon)]);
        // Children follow once the parent's lease exists.
        let existing: BTreeSet<LeaseKey> = [LeaseKey::from("s0")].into_iter().collect();
        let out = leases_to_create(&shards, &existing, at(InitialPosition::TrimHorizon));
        assert_eq!(
            keys(&out),
            vec![("s1", Position::TrimHorizon), ("s2", Position::TrimHorizon)]
        );
        assert_eq!(out[0].parent_shard_ids, vec![LeaseKey::from("s0")]);
    }

    #[test]
    fn empty_table_latest_skips_closed_shards_and_starts_open_ones_at_latest() {
        let shards = vec![shard("s0", &[], true), shard("s1", &["s0"], false)];
        let out = leases_to_create(&shards, &BTreeSet::new(), at(InitialPosition::Latest));
        assert_eq!(keys(&out), vec![("s1", Position::Latest)]);
    }

    /// The start of a root lease is fixed when it is created; children need none.
    #[test]
    fn root_leases_keep_the_wall_clock_time_they_start_from() {
        let shards = vec![shard("s0", &[], false), shard("s1", &["s9"], false)];
        let existing: BTreeSet<LeaseKey> = [LeaseKey::from("s9")].into_iter().collect();
        let starts = |initial| {
            leases_to_create(&shards, &existing, at(initial))
                .into_iter()
                .map(|l| {
                    (
                        alloc::string::String::from(l.key.as_str()),
                        l.starting_timestamp,
                    )
                })
                .collect::<Vec<_>>()
        };
        let ms = |m| Some(WallTime::from_unix_millis(m));
        assert_eq!(
            starts(InitialPosition::Latest),
            vec![("s0".into(), ms(999_000)), ("s1".into(), None)]
        );
        assert_eq!(
            starts(InitialPosition::AtTimestamp(5)),
            vec![("s0".into(), ms(5)), ("s1".into(), None)]
        );
        assert_eq!(
            starts(InitialPosition::TrimHorizon),
            vec![("s0".into(), None), ("s1".into(), None)]
        );
    }

    #[test]
    fn children_of_leased_shards_start_at_trim_horizon_even_with_latest() {
        let shards = vec![
            shard("s0", &[], true),
            shard("s1", &["s0"], false),
            shard("s2", &["s0", "s9"], false),
        ];
        let existing: BTreeSet<LeaseKey> = [LeaseKey::from("s0")].into_iter().collect();
        let out = leases_to_create(&shards, &existing, at(InitialPosition::Latest));
        assert_eq!(
            keys(&out),
            vec![("s1", Position::TrimHorizon), ("s2", Position::TrimHorizon)]
        );
    }

    /// The parent's lease is gone (consumed and cleaned up) and one child is leased: the other
    /// child is a sibling of a consumed shard, so it starts at TRIM_HORIZON too, whether the
    /// parent is still listed or trimmed from the listing.
    #[test]
    fn a_sibling_of_a_leased_child_starts_at_trim_horizon_even_with_latest() {
        let listed_parent = [
            shard("s0", &[], true),
            shard("s1", &["s0"], false),
            shard("s2", &["s0"], false),
        ];
        let existing: BTreeSet<LeaseKey> = [LeaseKey::from("s1")].into_iter().collect();
        for shards in [&listed_parent[..], &listed_parent[1..]] {
            for initial in [InitialPosition::Latest, InitialPosition::AtTimestamp(5)] {
                let out = leases_to_create(shards, &existing, at(initial));
                assert_eq!(keys(&out), vec![("s2", Position::TrimHorizon)]);
            }
        }
    }

    #[test]
    fn cleaned_up_parents_are_not_recreated() {
        let shards = vec![
            shard("s0", &[], true),
            shard("s1", &["s0"], true),
            shard("s3", &["s1"], false),
        ];
        let existing: BTreeSet<LeaseKey> = [LeaseKey::from("s3")].into_iter().collect();
        let out = leases_to_create(&shards, &existing, at(InitialPosition::TrimHorizon));
        assert!(out.is_empty(), "{:?}", keys(&out));
    }

    #[test]
    fn finished_and_deleted_shards_stay_deleted_after_a_merge() {
        let shards = vec![
            shard("s0", &[], false),
            shard("s1", &[], true),
            shard("s2", &[], true),
            shard("s3", &["s2"], true),
            shard("s4", &["s2"], false),
            shard("s5", &["s1", "s3"], false),
        ];
        let existing: BTreeSet<LeaseKey> =
            ["s0", "s4", "s5"].into_iter().map(LeaseKey::from).collect();
        let out = leases_to_create(&shards, &existing, at(InitialPosition::TrimHorizon));
        assert!(out.is_empty(), "{:?}", keys(&out));
        // The parent's row may outlive its cleaned-up child for a moment: still not re-created.
        let existing: BTreeSet<LeaseKey> = ["s0", "s2", "s4", "s5"]
            .into_iter()
            .map(LeaseKey::from)
            .collect();
        let out = leases_to_create(&shards, &existing, at(InitialPosition::TrimHorizon));
        assert!(out.is_empty(), "{:?}", keys(&out));
    }

    #[test]
    fn cycles_in_a_bad_listing_terminate() {
        let shards = vec![shard("a", &["b"], false), shard("b", &["a"], false)];
        let out = leases_to_create(&shards, &BTreeSet::new(), at(InitialPosition::TrimHorizon));
        assert!(out.len() <= 2);
    }
}
