//! The `Kcl2Compatible` policy: a faithful model of the Java KCL 2.x `DynamoDBLeaseTaker`.
//!
//! Every worker scans the table every taker interval and decides alone: take unowned or expired
//! leases up to `target = ceil(leases / workers)`; take "very old" leases (counter unchanged for
//! 3 D, or never seen owned) first and regardless of target; otherwise steal from the single most
//! loaded worker, at most `max_leases_to_steal` per run. It is both the way to join a Java 2.x
//! fleet and the baseline the default policy is measured against.
//!
//! Two deliberate differences from Java, both about safety rather than balance: finished
//! (`SHARD_END`) leases are released by their owner and are neither counted nor taken, and a
//! thief does not deliver records of a stolen lease until the victim's delivery window has
//! certainly closed (see [`crate::Worker`]).

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use crate::config::Config;
use crate::lease::{LeaseKey, WorkerId};
use crate::observe::Seen;
use crate::rng::Rng;
use crate::time::Instant;

/// A lease as the taker sees it after a scan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TakerLease {
    /// Its key.
    pub key: LeaseKey,
    /// Its owner.
    pub owner: Option<WorkerId>,
    /// Its counter, for the conditional take.
    pub counter: u64,
    /// When this worker first saw the counter.
    pub seen: Seen,
}

/// One lease to take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Take {
    /// The lease.
    pub key: LeaseKey,
    /// The counter the take is conditional on.
    pub expect_counter: u64,
    /// The lease was live (a steal): its old owner may still deliver for one window.
    pub steal: bool,
    /// The owner it is taken from, if any.
    pub from: Option<WorkerId>,
}

/// One taker run.
pub fn take_leases(
    leases: &[TakerLease],
    me: &WorkerId,
    config: &Config,
    now: Instant,
    rng: &mut Rng,
) -> Vec<Take> {
    let d = config.failover_time;
    let available: Vec<&TakerLease> = leases
        .iter()
        .filter(|l| l.owner.is_none() || l.seen.older_than(now, d))
        .collect();
    let mut counts: BTreeMap<&WorkerId, u64> = BTreeMap::new();
    for l in leases {
        if let Some(o) = &l.owner {
            if !(l.seen.older_than(now, d)) {
                *counts.entry(o).or_insert(0) += 1;
            }
        }
    }
    counts.entry(me).or_insert(0);
    let workers = counts.len() as u64;
    let total = leases.len() as u64;
    let mut target = if workers >= total {
        1
    } else {
        total.div_ceil(workers)
    };
    if target > config.max_leases_per_worker {
        target = config.max_leases_per_worker;
    }
    let mine = counts.get(me).copied().unwrap_or(0);
    let take = |l: &TakerLease, steal: bool| Take {
        key: l.key.clone(),
        expect_counter: l.counter,
        steal,
        from: l.owner.clone(),
    };

    if config.priority_lease_assignment {
        let mut very_old: Vec<&TakerLease> = available
            .iter()
            .copied()
            .filter(|l| l.seen.older_than(now, d * 3))
            .collect();
        if !very_old.is_empty() {
            rng.shuffle(&mut very_old);
            let room = config.max_leases_per_worker.saturating_sub(mine);
            return very_old
                .into_iter()
                .take(usize::try_from(room).unwrap_or(usize::MAX))
                .map(|l| take(l, false))
                .collect();
        }
    }
    let need = target.saturating_sub(mine);
    if need == 0 {
        return Vec::new();
    }
    if !available.is_empty() {
        let mut av = available;
        rng.shuffle(&mut av);
        return av
            .into_iter()
            .take(usize::try_from(need).unwrap_or(usize::MAX))
            .map(|l| take(l, false))
            .collect();
    }
    // Steal from the most loaded worker (ties broken at random, as Java's HashMap order is
    // arbitrary).
    let most = counts
        .iter()
        .filter(|(w, _)| **w != me)
        .map(|(_, c)| *c)
        .max()
        .unwrap_or(0);
    let candidates: Vec<&WorkerId> = counts
        .iter()
        .filter(|(w, c)| **w != me && **c == most)
        .map(|(w, _)| *w)
        .collect();
    if candidates.is_empty() || most < target {
        return Vec::new();
    }
    let victim = candidates[rng.index(candidates.len())];
    let mut n = need.min(most - target);
    if n == 0 && need > 1 {
        n = 1;
    }
    n = n.min(config.max_leases_to_steal);
    let mut theirs: Vec<&TakerLease> = leases
        .iter()
        .filter(|l| l.owner.as_ref() == Some(victim))
        .collect();
    rng.shuffle(&mut theirs);
    theirs
        .into_iter()
        .take(usize::try_from(n).unwrap_or(usize::MAX))
        .map(|l| take(l, true))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    fn lease(i: usize, owner: Option<&str>, since: Option<u64>) -> TakerLease {
        TakerLease {
            key: LeaseKey::from(format!("s{i:03}")),
            owner: owner.map(WorkerId::from),
            counter: 1,
            seen: Seen {
                counter: 1,
                since: since.map(Instant::from_millis),
            },
        }
    }

    fn take_as_me(leases: &[TakerLease], config: &Config, now_ms: u64) -> Vec<Take> {
        take_leases(
            leases,
            &WorkerId::from("me"),
            config,
            Instant::from_millis(now_ms),
            &mut Rng::new(1),
        )
    }

    #[test]
    fn new_unowned_leases_are_all_grabbed_by_the_first_scanner() {
        let leases: Vec<TakerLease> = (0..10).map(|i| lease(i, None, None)).collect();
        let t = take_as_me(&leases, &Config::kcl2(), 1000);
        assert_eq!(t.len(), 10, "Java's priority path ignores the target");
    }

    #[test]
    fn steals_one_from_the_most_loaded() {
        let mut leases = Vec::new();
        for i in 0..8 {
            leases.push(lease(i, Some("a"), Some(0)));
        }
        for i in 8..10 {
            leases.push(lease(i, Some("b"), Some(0)));
        }
        let t = take_as_me(&leases, &Config::kcl2(), 1000);
        assert_eq!(t.len(), 1);
        assert!(t[0].steal);
        assert_eq!(t[0].from.as_ref().map(WorkerId::as_str), Some("a"));
    }

    #[test]
    fn expired_leases_are_taken_up_to_target() {
        let mut leases = Vec::new();
        for i in 0..6 {
            leases.push(lease(i, Some("dead"), Some(0)));
        }
        for i in 6..9 {
            leases.push(lease(i, Some("b"), Some(15_000)));
        }
        let cfg = Config {
            priority_lease_assignment: false,
            ..Config::kcl2()
        };
        let t = take_as_me(&leases, &cfg, 20_000);
        // Workers: b and me (dead's leases are expired, so dead is not counted): target = ceil(9/2).
        assert_eq!(t.len(), 5);
        assert!(t.iter().all(|t| !t.steal));
    }
}
