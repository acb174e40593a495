//! The default policy's own rows (a heartbeat row per worker, the leader row) and [`Row`], any
//! row of the table decoded.

use alloc::string::String;
use alloc::vec::Vec;

use super::borrowed::{counter, opt_bool, opt_n, opt_s, opt_ss, req_s};
use super::schema::{attr, ENTITY_LEADER, ENTITY_LEASE, ENTITY_WORKER, WORKER_KEY_PREFIX};
use super::{Lease, LeaseKey, RowError, WorkerId};
use crate::item::Item;

/// A worker's heartbeat row (default policy only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerRow {
    /// The worker.
    pub worker: WorkerId,
    /// Heartbeat counter; liveness is judged by its changes on the observer's clock.
    pub counter: u64,
    /// The most leases the worker will hold.
    pub max_leases: u64,
    /// The worker is shutting down and should receive no leases.
    pub leaving: bool,
    /// Every Kinesis call of the worker has gone unanswered for a while: it should receive no
    /// leases, and those it holds are better read by another.
    pub reads_stalled: bool,
    /// Leases assigned or handed over to the worker, not yet acknowledged.
    pub assigned: Vec<Assignment>,
    /// The process heartbeating the row; absent on a row no heartbeat wrote yet.
    pub incarnation: Option<String>,
    /// The host, rack or zone it fails with, if it said.
    pub failure_domain: Option<String>,
}

/// One note in a worker row's `assignedLeases`: `<leaseKey>@<counter>`, the counter an
/// assignment left, or `<leaseKey>@h<counter>`, the counter a handoff saw (the old owner's
/// renewals and its completion move it on, so the new owner reads the row before it acquires),
/// or `<leaseKey>@p<counter>:<from>:<to>`, a heads-up: no assignment yet, only word that one may
/// come between `from` and `to` milliseconds after the note was written.
/// Two assignments of one lease are two notes, so the acknowledgement of the first (which
/// removes its note) cannot remove the second.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    /// The lease.
    pub shard: LeaseKey,
    /// The note as stored, which an acknowledgement removes.
    pub note: crate::item::Text,
}

impl Assignment {
    /// The note of an assignment of `shard` that left `counter`, or of a handoff that saw it.
    pub fn note(shard: &LeaseKey, counter: u64, handoff: bool) -> crate::item::Text {
        let mut note = String::from(shard.as_str());
        note.push('@');
        if handoff {
            note.push('h');
        }
        note.push_str(crate::decimal::u64_digits(counter, &mut [0; 20]));
        crate::item::Text::from(note.as_str())
    }

    /// The note of a heads-up ([`crate::protocol`]): `shard`, whose counter is `counter` now,
    /// may be assigned to the worker told between `due_ms.0` and `due_ms.1` milliseconds after
    /// the note was written: `<leaseKey>@p<counter>:<from>:<to>`.
    pub fn heads_up(shard: &LeaseKey, counter: u64, due_ms: (u64, u64)) -> crate::item::Text {
        let mut note = String::from(shard.as_str());
        note.push_str("@p");
        for (i, n) in [counter, due_ms.0, due_ms.1].into_iter().enumerate() {
            if i > 0 {
                note.push(':');
            }
            note.push_str(crate::decimal::u64_digits(n, &mut [0; 20]));
        }
        crate::item::Text::from(note.as_str())
    }

    /// Whether the note is a heads-up, not an assignment.
    pub fn is_heads_up(&self) -> bool {
        self.suffix().is_some_and(|c| c.starts_with('p'))
    }

    /// A heads-up's window, in milliseconds after it was written; `None` for any other note, or
    /// a heads-up that does not name one.
    pub fn heads_up_due(&self) -> Option<(u64, u64)> {
        let mut parts = self.suffix()?.strip_prefix('p')?.split(':').skip(1);
        let from = parts.next()?.parse().ok()?;
        let to = parts.next()?.parse().ok()?;
        Some((from, to))
    }

    fn suffix(&self) -> Option<&str> {
        self.note.as_str().rsplit_once('@').map(|(_, c)| c)
    }

    /// The counter the new owner may acquire at: the one an assignment left. `None` for a
    /// handoff (the row must be read first), a heads-up and a note of an older writer.
    pub fn counter(&self) -> Option<u64> {
        self.note
            .as_str()
            .rsplit_once('@')
            .and_then(|(_, c)| c.parse().ok())
    }

    /// The counter a handoff's note saw (the lease's while its old owner held it); `None` for
    /// any other note.
    pub fn handoff_counter(&self) -> Option<u64> {
        self.suffix()?.strip_prefix('h')?.parse().ok()
    }

    /// A note read back; a note without a counter (an older writer's) names the lease alone.
    pub fn parse(note: &str) -> Self {
        let shard = match note.rsplit_once('@') {
            Some((shard, counter))
                if match counter.strip_prefix('p') {
                    Some(numbers) => numbers.split(':').all(|n| n.parse::<u64>().is_ok()),
                    None => counter
                        .strip_prefix('h')
                        .unwrap_or(counter)
                        .parse::<u64>()
                        .is_ok(),
                } =>
            {
                shard
            }
            _ => note,
        };
        Self {
            shard: LeaseKey::from(shard),
            note: crate::item::Text::from(note),
        }
    }
}

impl WorkerRow {
    /// What an observer watches to judge the worker alive: the counter, mixed with the
    /// incarnation, so that a row deleted and written again by a new process (whose counter
    /// starts over) is never taken for the old row standing still.
    pub fn liveness(&self) -> u64 {
        self.counter ^ crate::hash::fnv1a(self.incarnation.as_deref().unwrap_or("").as_bytes())
    }

    /// The row key of a worker.
    pub fn key(worker: &WorkerId) -> String {
        let mut key = String::with_capacity(WORKER_KEY_PREFIX.len() + worker.as_str().len());
        key.push_str(WORKER_KEY_PREFIX);
        key.push_str(worker.as_str());
        key
    }
}

/// The leader row (default policy only): a lease on leadership.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderRow {
    /// The leader; `None` after a leader stepped down.
    pub owner: Option<WorkerId>,
    /// Fencing counter, bumped by every renewal.
    pub counter: u64,
    /// Under worker liveness, the liveness ([`WorkerRow::liveness`]) the leader's own worker row
    /// had after the last heartbeat the leader had landed when it wrote this row. That heartbeat
    /// landed before anyone read this row, so a follower that watched the row stand still for
    /// the failover time knows the leader's heartbeat showing this has stood as long.
    pub heartbeat: Option<u64>,
    /// The follower the leader named to watch the table beside it (see
    /// [`crate::Config::standby_scan_interval`]); the others leave it a head start to claim.
    pub standby: Option<WorkerId>,
}

/// Any row of the lease table, decoded.
#[derive(Clone, Debug, PartialEq)]
pub enum Row {
    /// A shard lease.
    Lease(alloc::boxed::Box<Lease>),
    /// A worker heartbeat row.
    Worker(WorkerRow),
    /// The leader row.
    Leader(LeaderRow),
    /// A row of another kind (Java 3.x metrics, migration state, ...): left alone.
    Foreign {
        /// Its key.
        key: String,
        /// Its `entityType`.
        entity_type: String,
    },
}

impl Row {
    /// Decodes any row of the table.
    pub fn from_item(item: &Item) -> Result<Self, RowError> {
        match opt_s(&item, attr::ENTITY_TYPE)? {
            None | Some(ENTITY_LEASE) => {
                Lease::from_item(item).map(|l| Self::Lease(alloc::boxed::Box::new(l)))
            }
            Some(ENTITY_WORKER) => {
                let key = req_s(&item, attr::LEASE_KEY)?;
                let worker = key
                    .strip_prefix(WORKER_KEY_PREFIX)
                    .ok_or(RowError::invalid(
                        attr::LEASE_KEY,
                        "worker row key lacks its prefix",
                    ))?;
                Ok(Row::Worker(WorkerRow {
                    worker: WorkerId::from(worker),
                    counter: counter(&item)?,
                    max_leases: opt_n(&item, attr::MAX_LEASES)?.unwrap_or(u64::MAX),
                    leaving: opt_bool(&item, attr::LEAVING)?,
                    reads_stalled: opt_bool(&item, attr::READS_STALLED)?,
                    assigned: opt_ss(&item, attr::ASSIGNED_LEASES)?
                        .iter()
                        .map(|n| Assignment::parse(n))
                        .collect(),
                    incarnation: opt_s(&item, attr::INCARNATION)?.map(String::from),
                    failure_domain: opt_s(&item, attr::FAILURE_DOMAIN)?.map(String::from),
                }))
            }
            Some(ENTITY_LEADER) => Ok(Row::Leader(LeaderRow {
                owner: opt_s(&item, attr::LEASE_OWNER)?.map(WorkerId::from),
                counter: counter(&item)?,
                heartbeat: opt_n(&item, attr::LEADER_HEARTBEAT)?,
                standby: opt_s(&item, attr::STANDBY)?.map(WorkerId::from),
            })),
            Some(other) => Ok(Row::Foreign {
                key: req_s(&item, attr::LEASE_KEY)?.into(),
                entity_type: other.into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_note_reads_back_as_written() {
        let shard = LeaseKey::from("shardId-000000000007");
        let assignment = Assignment::parse(Assignment::note(&shard, 41, false).as_str());
        assert_eq!(assignment.shard, shard);
        assert_eq!(assignment.counter(), Some(41));
        assert!(!assignment.is_heads_up());

        let handoff = Assignment::parse(Assignment::note(&shard, 41, true).as_str());
        assert_eq!(handoff.shard, shard);
        assert_eq!(
            handoff.counter(),
            None,
            "a handoff is read before it is acquired"
        );
        assert_eq!(handoff.handoff_counter(), Some(41));
        assert_eq!(assignment.handoff_counter(), None);

        let heads_up = Assignment::parse(Assignment::heads_up(&shard, 41, (4_200, 7_300)).as_str());
        assert_eq!(heads_up.note.as_str(), "shardId-000000000007@p41:4200:7300");
        assert_eq!(heads_up.shard, shard);
        assert!(heads_up.is_heads_up());
        assert_eq!(heads_up.heads_up_due(), Some((4_200, 7_300)));
        assert_eq!(heads_up.counter(), None, "nothing to acquire");
        assert_eq!(assignment.heads_up_due(), None);
    }

    #[test]
    fn a_note_this_version_does_not_know_names_a_lease_of_that_name() {
        for note in ["shard@p41:x:1", "shard@q3", "shard"] {
            let a = Assignment::parse(note);
            assert_eq!(a.shard.as_str(), note);
            assert_eq!(a.heads_up_due(), None);
            assert_eq!(a.handoff_counter(), None);
        }
    }
}
