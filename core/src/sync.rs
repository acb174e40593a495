//! Shard sync: which leases to create for a listed shard set.
//!
//! A shard gets a lease when it has none and either descends from a shard that has (or gets)
//! one, in which case it starts at `TRIM_HORIZON` so nothing between a parent's end and the
//! child's start is lost, or it is a root relative to the table: then it starts at the configured
//! initial position, unless a descendant already has a lease (it was consumed and cleaned up) or
//! it is closed and the initial position is `LATEST`.

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
pub fn leases_to_create(shards: &[ShardDescription], existing: &BTreeSet<LeaseKey>, initial: InitialPosition) -> Vec<Lease> {
    let by_id: BTreeMap<&LeaseKey, &ShardDescription> = shards.iter().map(|s| (&s.shard_id, s)).collect();
    let mut children: BTreeMap<&LeaseKey, Vec<&LeaseKey>> = BTreeMap::new();
    for s in shards {
        for p in s.parent.iter().chain(s.adjacent_parent.iter()) {
            children.entry(p).or_default().push(&s.shard_id);
        }
    }
    // Decide in an order where parents come first; memoise "has or gets a lease".
    let mut covered: BTreeMap<&LeaseKey, bool> = BTreeMap::new();
    let mut out = Vec::new();
    let mut order: Vec<&LeaseKey> = by_id.keys().copied().collect();
    // Depth from the roots of the listed graph gives a parents-first order.
    let mut depth: BTreeMap<&LeaseKey, usize> = BTreeMap::new();
    for id in &order {
        depth_of(id, &by_id, &mut depth, 0);
    }
    order.sort_by_key(|id| (depth.get(id).copied().unwrap_or(0), *id));
    for id in order {
        let Some(shard) = by_id.get(id) else { continue };
        if existing.contains(id) {
            covered.insert(id, true);
            continue;
        }
        let parents: Vec<LeaseKey> = shard.parents();
        let descends = parents.iter().any(|p| covered.get(p).copied().unwrap_or(false));
        let create = if descends {
            Some(Position::TrimHorizon)
        } else if has_leased_descendant(id, &children, existing, &mut BTreeSet::new()) {
            None
        } else if shard.closed && initial == InitialPosition::Latest {
            None
        } else {
            Some(initial_checkpoint(initial))
        };
        covered.insert(id, create.is_some());
        if let Some(cp) = create {
            let mut lease = Lease::new(id.clone(), cp);
            lease.parent_shard_ids = parents;
            lease.hash_range = Some(shard.hash_range);
            out.push(lease);
        }
    }
    out
}

fn depth_of<'a>(
    id: &'a LeaseKey,
    by_id: &BTreeMap<&'a LeaseKey, &'a ShardDescription>,
    memo: &mut BTreeMap<&'a LeaseKey, usize>,
    guard: usize,
) -> usize {
    if let Some(d) = memo.get(id) {
        return *d;
    }
    // A malformed listing with a cycle must not recurse forever.
    if guard > by_id.len() {
        return 0;
    }
    let d = match by_id.get(id) {
        Some(s) => s
            .parent
            .iter()
            .chain(s.adjacent_parent.iter())
            .filter_map(|p| by_id.get_key_value(p).map(|(k, _)| *k))
            .map(|p| depth_of(p, by_id, memo, guard + 1) + 1)
            .max()
            .unwrap_or(0),
        None => 0,
    };
    memo.insert(id, d);
    d
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
    children
        .get(id)
        .is_some_and(|cs| cs.iter().any(|c| existing.contains(*c) || has_leased_descendant(c, children, existing, visited)))
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
            hash_range: HashKeyRange { start: 0, end: u128::MAX },
            closed,
        }
    }

    fn keys(v: &[Lease]) -> Vec<(&str, Position)> {
        v.iter().map(|l| (l.key.as_str(), l.checkpoint.clone())).collect()
    }

    #[test]
    fn empty_table_trim_horizon_takes_closed_roots_and_children_at_trim_horizon() {
        let shards = vec![shard("s0", &[], true), shard("s1", &["s0"], false), shard("s2", &["s0"], false)];
        let out = leases_to_create(&shards, &BTreeSet::new(), InitialPosition::TrimHorizon);
        assert_eq!(keys(&out), vec![("s0", Position::TrimHorizon), ("s1", Position::TrimHorizon), ("s2", Position::TrimHorizon)]);
        assert_eq!(out[1].parent_shard_ids, vec![LeaseKey::from("s0")]);
    }

    #[test]
    fn empty_table_latest_skips_closed_shards_and_starts_open_ones_at_latest() {
        let shards = vec![shard("s0", &[], true), shard("s1", &["s0"], false)];
        let out = leases_to_create(&shards, &BTreeSet::new(), InitialPosition::Latest);
        assert_eq!(keys(&out), vec![("s1", Position::Latest)]);
    }

    #[test]
    fn children_of_leased_shards_start_at_trim_horizon_even_with_latest() {
        let shards = vec![shard("s0", &[], true), shard("s1", &["s0"], false), shard("s2", &["s0", "s9"], false)];
        let existing: BTreeSet<LeaseKey> = [LeaseKey::from("s0")].into_iter().collect();
        let out = leases_to_create(&shards, &existing, InitialPosition::Latest);
        assert_eq!(keys(&out), vec![("s1", Position::TrimHorizon), ("s2", Position::TrimHorizon)]);
    }

    #[test]
    fn cleaned_up_parents_are_not_recreated() {
        let shards = vec![shard("s0", &[], true), shard("s1", &["s0"], true), shard("s3", &["s1"], false)];
        let existing: BTreeSet<LeaseKey> = [LeaseKey::from("s3")].into_iter().collect();
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
