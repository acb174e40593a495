//! Shard sync: which leases to create for a listed shard set.
//!
//! A shard gets a lease when it has none and either descends from a shard that has or had one
//! (a parent leased, or a parent whose lease is gone but whose other child is leased), in which
//! case it starts at `TRIM_HORIZON` so nothing between a parent's end and the child's start is
//! lost, or it is a root relative to the table: then it starts at the configured initial
//! position, unless a descendant already has a lease (it was consumed and cleaned up) or it is
//! closed and the initial position is `LATEST`. A child is created only once its parent's lease
//! exists (a later round, or the parent's owner at shard end), so a lease never exists below a
//! missing, unconsumed parent.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;

use crate::config::InitialPosition;
use crate::io::ShardDescription;
use crate::lease::{Lease, LeaseKey};
use crate::sequence::Position;

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
    initial: InitialPosition,
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
        initial,
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
        let checkpoint = if consumed_parent {
            Position::TrimHorizon
        } else {
            initial_checkpoint(initial)
        };
        let mut lease = Lease::new((*id).clone(), checkpoint);
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
        let out = leases_to_create(&shards, &BTreeSet::new(), InitialPosition::TrimHorizon);
        assert_eq!(keys(&out), vec![("s0", Position::TrimHorizon)]);
        // Children follow once the parent's lease exists.
        let existing: BTreeSet<LeaseKey> = [LeaseKey::from("s0")].into_iter().collect();
        let out = leases_to_create(&shards, &existing, InitialPosition::TrimHorizon);
        assert_eq!(
            keys(&out),
            vec![("s1", Position::TrimHorizon), ("s2", Position::TrimHorizon)]
        );
        assert_eq!(out[0].parent_shard_ids, vec![LeaseKey::from("s0")]);
    }

    #[test]
    fn empty_table_latest_skips_closed_shards_and_starts_open_ones_at_latest() {
        let shards = vec![shard("s0", &[], true), shard("s1", &["s0"], false)];
        let out = leases_to_create(&shards, &BTreeSet::new(), InitialPosition::Latest);
        assert_eq!(keys(&out), vec![("s1", Position::Latest)]);
    }

    #[test]
    fn children_of_leased_shards_start_at_trim_horizon_even_with_latest() {
        let shards = vec![
            shard("s0", &[], true),
            shard("s1", &["s0"], false),
            shard("s2", &["s0", "s9"], false),
        ];
        let existing: BTreeSet<LeaseKey> = [LeaseKey::from("s0")].into_iter().collect();
        let out = leases_to_create(&shards, &existing, InitialPosition::Latest);
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
        let listed_parent = vec![
            shard("s0", &[], true),
            shard("s1", &["s0"], false),
            shard("s2", &["s0"], false),
        ];
        let existing: BTreeSet<LeaseKey> = [LeaseKey::from("s1")].into_iter().collect();
        for shards in [&listed_parent[..], &listed_parent[1..]] {
            for initial in [InitialPosition::Latest, InitialPosition::AtTimestamp(5)] {
                let out = leases_to_create(shards, &existing, initial);
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
        let out = leases_to_create(&shards, &existing, InitialPosition::TrimHorizon);
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
        let out = leases_to_create(&shards, &existing, InitialPosition::TrimHorizon);
        assert!(out.is_empty(), "{:?}", keys(&out));
        // The parent's row may outlive its cleaned-up child for a moment: still not re-created.
        let existing: BTreeSet<LeaseKey> = ["s0", "s2", "s4", "s5"]
            .into_iter()
            .map(LeaseKey::from)
            .collect();
        let out = leases_to_create(&shards, &existing, InitialPosition::TrimHorizon);
        assert!(out.is_empty(), "{:?}", keys(&out));
    }

    #[test]
    fn cycles_in_a_bad_listing_terminate() {
        let shards = vec![shard("a", &["b"], false), shard("b", &["a"], false)];
        let out = leases_to_create(&shards, &BTreeSet::new(), InitialPosition::TrimHorizon);
        assert!(out.len() <= 2);
    }
}
