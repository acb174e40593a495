//! Operating a lease table by hand: what the `kcl-admin` command does, as a library.
//!
//! Every write is an operation of the lease protocol ([`kcl_core::protocol`]), conditional on
//! what was just read, so a tool racing a running fleet changes nothing it did not see:
//!
//! - [`TableAdmin::snapshot`]: every row, decoded (leases, worker rows, the leader row, and what
//!   could not be decoded).
//! - [`TableAdmin::release`]: frees a lease whoever holds it ([`LeaseOp::Evict`]). A holder under
//!   worker liveness (the default), which renews nothing, is told by a note in its worker row
//!   ([`LeaseOp::Notify`]); its next renewal (one is sent for the note) or checkpoint fails and
//!   it stops delivering. Records of its last moments may be processed again by the next owner,
//!   as in any failover, and its checkpoints cannot land.
//! - [`TableAdmin::set_checkpoint`]: moves the checkpoint of a lease nobody holds
//!   ([`LeaseOp::ResetCheckpoint`]); a held lease is refused, so release it first (and keep the
//!   fleet from taking it back, by stopping it, if the new checkpoint must be the one read from).
//! - [`TableAdmin::prune_workers`]: deletes the rows of workers whose heartbeat stood still while
//!   watched ([`LeaseOp::DeleteDeadWorkerRow`], as the leader does).
//! - [`deregister_consumer`]: removes an enhanced fan-out consumer from its stream.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use kcl_core::lease::{LeaderRow, Row, RowError, WorkerRow};
use kcl_core::protocol::LeaseOp;
use kcl_core::{Failure, Lease, LeaseKey, Position, WorkerId};

use crate::backend::LeaseTable;
use crate::failure::classify;
use crate::kinesis::StreamId;
use crate::runtime::Runtime;

/// Why an administrative operation did nothing.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum AdminError {
    /// The lease table's call failed.
    Table(Failure),
    /// The stream's call failed.
    Stream(Failure),
    /// No lease row has this key.
    NoSuchLease {
        /// The key asked for.
        shard: String,
    },
    /// The row could not be decoded: it is left alone.
    Malformed {
        /// The key.
        shard: String,
        /// What is wrong with it.
        error: RowError,
    },
    /// The lease is held (or being handed over): release it first.
    Held {
        /// The lease.
        shard: String,
        /// Its owner.
        owner: String,
    },
    /// The lease was freed, but its holder under worker liveness (which renews nothing) could
    /// not be told: it goes on delivering until a checkpoint of its fails or its process stops,
    /// beside the next owner. Restart the holder.
    HolderNotTold {
        /// The lease.
        shard: String,
        /// Its holder.
        holder: String,
        /// Why the note was not written.
        failure: Box<Failure>,
    },
    /// The row changed between the read and the write (a worker renewed or took it): nothing
    /// was written; read it again.
    Changed {
        /// The lease.
        shard: String,
    },
    /// The checkpoint is not `TRIM_HORIZON` or a sequence number (with an optional
    /// `:sub-sequence`).
    BadPosition {
        /// What was given.
        text: String,
    },
}

impl fmt::Display for AdminError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Table(e) => write!(f, "the lease table refused: {e}"),
            Self::Stream(e) => write!(f, "the stream refused: {e}"),
            Self::NoSuchLease { shard } => write!(f, "no lease {shard:?} in the table"),
            Self::Malformed { shard, error } => {
                write!(f, "the row of {shard:?} cannot be decoded: {error}")
            }
            Self::Held { shard, owner } => write!(
                f,
                "{shard} is held by {owner}: release it first (kcl-admin release {shard})"
            ),
            Self::HolderNotTold {
                shard,
                holder,
                failure,
            } => write!(
                f,
                "{shard} was freed, but its holder {holder} could not be told ({failure}): it may go on delivering beside the next owner until a checkpoint of its fails; restart {holder}"
            ),
            Self::Changed { shard } => write!(
                f,
                "{shard} changed while this ran (a worker renewed or took it): nothing was written"
            ),
            Self::BadPosition { text } => write!(
                f,
                "{text:?} is not a checkpoint: TRIM_HORIZON, or a sequence number with an optional :sub-sequence"
            ),
        }
    }
}

impl std::error::Error for AdminError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Table(e) | Self::Stream(e) => Some(e),
            Self::Malformed { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// Every row of a lease table, decoded.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TableSnapshot {
    /// Shard leases, by key.
    pub leases: BTreeMap<LeaseKey, Lease>,
    /// Worker heartbeat rows (`Coordinated`), by worker.
    pub workers: BTreeMap<WorkerId, WorkerRow>,
    /// The leader row (`Coordinated`), if there is one.
    pub leader: Option<LeaderRow>,
    /// Rows of kinds this library does not manage (the Java KCL 3.x's), by key and kind.
    pub foreign: BTreeMap<String, String>,
    /// Rows that could not be decoded, by key (or `"?"`).
    pub malformed: BTreeMap<String, RowError>,
}

/// Administrative operations on one lease table.
#[derive(Clone, Debug)]
pub struct TableAdmin<T> {
    table: T,
}

impl<T: LeaseTable> TableAdmin<T> {
    /// Operations on `table`.
    pub fn new(table: T) -> Self {
        Self { table }
    }

    /// Every row, decoded.
    pub async fn snapshot(&self) -> Result<TableSnapshot, AdminError> {
        let items = self.table.scan(false).await.map_err(AdminError::Table)?;
        let mut snapshot = TableSnapshot::default();
        for item in &items {
            match Row::from_item(item) {
                Ok(Row::Lease(lease)) => {
                    snapshot.leases.insert(lease.key.clone(), *lease);
                }
                Ok(Row::Worker(row)) => {
                    snapshot.workers.insert(row.worker.clone(), row);
                }
                Ok(Row::Leader(row)) => snapshot.leader = Some(row),
                Ok(Row::Foreign { key, entity_type }) => {
                    snapshot.foreign.insert(key, entity_type);
                }
                Err(error) => {
                    let key = match item.get(kcl_core::lease::attr::LEASE_KEY) {
                        Some(kcl_core::AttributeValue::S(k)) => k.to_string(),
                        _ => "?".into(),
                    };
                    snapshot.malformed.insert(key, error);
                }
            }
        }
        Ok(snapshot)
    }

    /// Frees `shard`'s lease, whoever holds it; the lease as it is now. A lease acquired under
    /// worker liveness (`ownerIncarnation`) has a holder that renews nothing: a note in its
    /// worker row tells it ([`AdminError::HolderNotTold`] if that write fails; a missing row
    /// means the holder is gone).
    pub async fn release(&self, shard: &str) -> Result<Lease, AdminError> {
        let lease = self.lease(shard).await?;
        self.write(
            shard,
            LeaseOp::Evict {
                shard: lease.key.clone(),
                counter: lease.counter,
            },
        )
        .await?;
        if lease.owner_incarnation.is_some() {
            // Both, during a handoff: the checkpoint owner delivers, the owner may have acquired.
            let holders = lease.checkpoint_owner.iter().chain(lease.owner.iter());
            for holder in holders {
                // A handoff note: the holder reads the lease back (one renewal, refused) and
                // drops it; a worker that does not hold it finds it assigned elsewhere.
                let told = self
                    .table
                    .write(
                        &LeaseOp::Notify {
                            worker: holder.clone(),
                            shard: lease.key.clone(),
                            counter: lease.counter + 1,
                            handoff: true,
                        }
                        .to_write(),
                    )
                    .await;
                match told {
                    Ok(_) | Err(Failure::ConditionFailed) => {}
                    Err(failure) => {
                        return Err(AdminError::HolderNotTold {
                            shard: shard.to_string(),
                            holder: holder.to_string(),
                            failure: Box::new(failure),
                        })
                    }
                }
            }
        }
        self.lease(shard).await
    }

    /// Moves the checkpoint of `shard`, which nobody may hold; the lease as it is now.
    pub async fn set_checkpoint(&self, shard: &str, at: Position) -> Result<Lease, AdminError> {
        let lease = self.lease(shard).await?;
        if let Some(owner) = lease.owner.as_ref().or(lease.checkpoint_owner.as_ref()) {
            return Err(AdminError::Held {
                shard: shard.to_string(),
                owner: owner.to_string(),
            });
        }
        self.write(
            shard,
            LeaseOp::ResetCheckpoint {
                shard: lease.key.clone(),
                counter: lease.counter,
                at,
            },
        )
        .await?;
        self.lease(shard).await
    }

    /// Deletes the rows of workers whose heartbeat did not move in `watch` (give it three
    /// heartbeat intervals at least); the workers whose rows were deleted. A row written again
    /// meanwhile (a live worker, or a new process with the same id) is kept.
    pub async fn prune_workers<Rt: Runtime>(
        &self,
        runtime: &Rt,
        watch: Duration,
    ) -> Result<Vec<WorkerId>, AdminError> {
        let before = self.snapshot().await?.workers;
        runtime.sleep(watch).await;
        let after = self.snapshot().await?.workers;
        let mut pruned = Vec::new();
        for (worker, row) in &after {
            let still = before.get(worker).is_some_and(|old| {
                old.counter == row.counter && old.incarnation == row.incarnation
            });
            if !still {
                continue;
            }
            let op = LeaseOp::DeleteDeadWorkerRow {
                worker: worker.clone(),
                counter: row.counter,
                incarnation: row.incarnation.as_deref().map(kcl_core::Text::from),
            };
            match self.table.write(&op.to_write()).await {
                Ok(_) => pruned.push(worker.clone()),
                // It heartbeat after all: alive.
                Err(Failure::ConditionFailed) => {}
                Err(e) => return Err(AdminError::Table(e)),
            }
        }
        Ok(pruned)
    }

    /// The lease row of `shard`, read consistently.
    async fn lease(&self, shard: &str) -> Result<Lease, AdminError> {
        let item = self
            .table
            .read(shard, true)
            .await
            .map_err(AdminError::Table)?
            .ok_or_else(|| AdminError::NoSuchLease {
                shard: shard.to_string(),
            })?;
        match Row::from_item(&item) {
            Ok(Row::Lease(lease)) => Ok(*lease),
            Ok(_) => Err(AdminError::NoSuchLease {
                shard: shard.to_string(),
            }),
            Err(error) => Err(AdminError::Malformed {
                shard: shard.to_string(),
                error,
            }),
        }
    }

    async fn write(&self, shard: &str, op: LeaseOp) -> Result<(), AdminError> {
        match self.table.write(&op.to_write()).await {
            Ok(_) => Ok(()),
            Err(Failure::ConditionFailed) => Err(AdminError::Changed {
                shard: shard.to_string(),
            }),
            Err(e) => Err(AdminError::Table(e)),
        }
    }
}

/// A checkpoint as an operator writes it: `TRIM_HORIZON`, or a sequence number with an optional
/// `:sub-sequence` (a user record inside a KPL aggregate).
pub fn parse_checkpoint(text: &str) -> Result<Position, AdminError> {
    let bad = || AdminError::BadPosition {
        text: text.to_string(),
    };
    let (sequence, sub) = match text.split_once(':') {
        Some((sequence, sub)) => (sequence, sub.parse().map_err(|_| bad())?),
        None => (text, 0),
    };
    match Position::parse(sequence, sub) {
        Ok(p @ (Position::TrimHorizon | Position::Record(_))) => Ok(p),
        _ => Err(bad()),
    }
}

/// Deregisters the enhanced fan-out consumer `consumer` of `stream` (its subscriptions end; a
/// consumer started again registers it anew).
pub async fn deregister_consumer(
    client: &aws_sdk_kinesis::Client,
    stream: &StreamId,
    consumer: &str,
) -> Result<(), AdminError> {
    let arn = client
        .describe_stream_summary()
        .set_stream_name(stream.name())
        .set_stream_arn(stream.arn())
        .send()
        .await
        .map_err(|e| AdminError::Stream(classify(&e)))?
        .stream_description_summary
        .map(|s| s.stream_arn)
        .ok_or(AdminError::Stream(Failure::NotFound))?;
    client
        .deregister_stream_consumer()
        .stream_arn(arn)
        .consumer_name(consumer)
        .send()
        .await
        .map_err(|e| AdminError::Stream(classify(&e)))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operator_checkpoint_is_trim_horizon_or_a_sequence_number() {
        assert_eq!(parse_checkpoint("TRIM_HORIZON"), Ok(Position::TrimHorizon));
        let Ok(Position::Record(at)) =
            parse_checkpoint("49590338271490256608559692538361571095921575989136588898:3")
        else {
            panic!("a record position");
        };
        assert_eq!(at.sub_sequence, 3);
        for bad in ["LATEST", "SHARD_END", "AT_TIMESTAMP", "12ab", "", "123:x"] {
            assert!(
                matches!(parse_checkpoint(bad), Err(AdminError::BadPosition { .. })),
                "{bad}"
            );
        }
    }
}
