//! Persistent refusals. A stream or lease table that answers NotFound or AccessDenied to every
//! call for [`DriverConfig::give_up_after`](crate::DriverConfig::give_up_after), with no other
//! answer from that service in between, ends the worker with a [`RunError`] instead of leaving it
//! idle: the stream or the table was deleted, or a permission revoked. Timeouts and throttles say
//! nothing either way (a partition heals), so they neither start nor end a run of refusals; any
//! other answer, a lost race included, shows the service there and ends it. Reads are watched
//! apart as well: a worker whose every GetRecords is refused access (a permission missing, or the
//! stream's KMS key refusing it or disabled) for that long ends too, though its listings and
//! iterators, which need no key, still succeed.

use core::time::Duration;

use kcl_core::{Failure, Input, Instant, Stats};

/// The service a call went to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    /// Kinesis Data Streams.
    Kinesis,
    /// DynamoDB (the lease table).
    DynamoDb,
}

impl Service {
    fn name(self) -> &'static str {
        match self {
            Self::Kinesis => "Kinesis",
            Self::DynamoDb => "DynamoDB",
        }
    }
}

/// Why [`Driver::run`](crate::Driver::run) ended without a shutdown being asked for.
#[derive(Clone, Debug, PartialEq)]
pub struct RunError {
    /// The service that refused.
    pub service: Service,
    /// The last call refused.
    pub op: &'static str,
    /// Its answer.
    pub failure: Failure,
    /// How long every call to the service had been refused.
    pub refused_for: Duration,
    /// The worker's counters when it stopped.
    pub stats: Stats,
}

impl core::fmt::Display for RunError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{} refused every call for {} s (last: {}): the worker stopped",
            self.service.name(),
            self.refused_for.as_secs(),
            self.op
        )
    }
}

impl std::error::Error for RunError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.failure)
    }
}

/// The first refusal of the current run, per service, and of reads apart.
#[derive(Debug, Default)]
pub(crate) struct RefusalWatch {
    since: [Option<Instant>; 2],
    reads_denied_since: Option<Instant>,
}

impl RefusalWatch {
    /// Looks at an answer; `Some` when its service has refused everything for `give_up_after`.
    pub(crate) fn observe<R>(
        &mut self,
        now: Instant,
        input: &Input<R>,
        give_up_after: Duration,
    ) -> Option<(Service, &'static str, Failure, Duration)> {
        let (service, op, failure) = answer(input)?;
        if matches!(input, Input::RecordsFetched { .. }) {
            match failure {
                Some(f @ Failure::AccessDenied(_)) => {
                    let since = *self.reads_denied_since.get_or_insert(now);
                    let refused_for = now.saturating_since(since);
                    if refused_for >= give_up_after {
                        return Some((service, op, f.clone(), refused_for));
                    }
                }
                Some(Failure::Transient | Failure::Throttled) => {}
                _ => self.reads_denied_since = None,
            }
        }
        let slot = &mut self.since[service as usize];
        match failure {
            Some(f @ (Failure::NotFound | Failure::AccessDenied(_))) => {
                let since = *slot.get_or_insert(now);
                let refused_for = now.saturating_since(since);
                (refused_for >= give_up_after).then(|| (service, op, f.clone(), refused_for))
            }
            Some(Failure::Transient | Failure::Throttled) => None,
            _ => {
                *slot = None;
                None
            }
        }
    }
}

/// The service, the operation and the failure (if any) of an answer; `None` for inputs that are
/// no service's answer.
pub(crate) fn answer<R>(input: &Input<R>) -> Option<(Service, &'static str, Option<&Failure>)> {
    Some(match input {
        Input::LeaseTableScanned { result, .. } => {
            (Service::DynamoDb, "scan", result.as_ref().err())
        }
        Input::LeaseRead { result, .. } => (Service::DynamoDb, "get_item", result.as_ref().err()),
        Input::LeaseWritten { result, .. } => {
            (Service::DynamoDb, "write_item", result.as_ref().err())
        }
        Input::ShardsListed { result, .. } => {
            (Service::Kinesis, "list_shards", result.as_ref().err())
        }
        Input::IteratorObtained { result, .. } => (
            Service::Kinesis,
            "get_shard_iterator",
            result.as_ref().err(),
        ),
        Input::RecordsFetched { result, .. } => {
            (Service::Kinesis, "get_records", result.as_ref().err())
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kcl_core::{BasicRecord, RequestId};

    fn listed(result: Result<(), Failure>) -> Input<BasicRecord> {
        Input::ShardsListed {
            req: RequestId(1),
            result: result.map(|()| kcl_core::ShardListing {
                shards: Vec::new(),
                listed_at: kcl_core::WallTime::from_unix_millis(0),
            }),
        }
    }

    fn scanned(result: Result<(), Failure>) -> Input<BasicRecord> {
        Input::LeaseTableScanned {
            req: RequestId(2),
            result: result.map(|()| Vec::new()),
        }
    }

    fn fetched(result: Result<(), Failure>) -> Input<BasicRecord> {
        Input::RecordsFetched {
            req: RequestId(3),
            result: result.map(|()| kcl_core::FetchedRecords {
                records: Vec::new(),
                next_iterator: None,
                millis_behind_latest: 0,
                child_shards: Vec::new(),
            }),
        }
    }

    /// A worker whose every read is refused (a permission missing, or the stream's KMS key
    /// refusing it) while its listings and iterators succeed (they need no key) is of no use:
    /// it stops once reads alone have been refused for the bound.
    #[test]
    fn reads_refused_for_the_bound_end_the_worker_though_other_calls_succeed() {
        let bound = Duration::from_secs(60);
        let at = Instant::from_millis;
        let denied = || {
            fetched(Err(Failure::AccessDenied(kcl_core::ServiceError::new(
                "KMSAccessDeniedException",
                "no",
            ))))
        };
        let mut w = RefusalWatch::default();
        assert_eq!(w.observe(at(0), &denied(), bound), None);
        assert_eq!(w.observe(at(20_000), &listed(Ok(())), bound), None);
        assert_eq!(w.observe(at(40_000), &denied(), bound), None);
        let gave_up = w.observe(at(60_000), &denied(), bound);
        assert!(
            matches!(
                gave_up,
                Some((Service::Kinesis, "get_records", Failure::AccessDenied(_), d)) if d == bound
            ),
            "{gave_up:?}"
        );
        // A read that succeeds in between ends the run.
        let mut w = RefusalWatch::default();
        assert_eq!(w.observe(at(0), &denied(), bound), None);
        assert_eq!(w.observe(at(30_000), &fetched(Ok(())), bound), None);
        assert_eq!(w.observe(at(61_000), &denied(), bound), None);
    }

    #[test]
    fn only_an_unbroken_run_of_refusals_as_long_as_the_bound_ends_the_worker() {
        let bound = Duration::from_secs(60);
        let at = Instant::from_millis;
        let mut w = RefusalWatch::default();
        assert_eq!(
            w.observe(at(0), &listed(Err(Failure::NotFound)), bound),
            None
        );
        // Timeouts say nothing; the other service's answers are its own.
        assert_eq!(
            w.observe(at(30_000), &listed(Err(Failure::Transient)), bound),
            None
        );
        assert_eq!(w.observe(at(40_000), &scanned(Ok(())), bound), None);
        let gave_up = w.observe(at(60_000), &listed(Err(Failure::NotFound)), bound);
        assert_eq!(
            gave_up,
            Some((
                Service::Kinesis,
                "list_shards",
                Failure::NotFound,
                Duration::from_secs(60)
            ))
        );
        // An answer of any other kind ends the run of refusals.
        let mut w = RefusalWatch::default();
        let denied = || {
            scanned(Err(Failure::AccessDenied(kcl_core::ServiceError::new(
                "AccessDeniedException",
                "no",
            ))))
        };
        assert_eq!(w.observe(at(0), &denied(), bound), None);
        assert_eq!(
            w.observe(at(59_000), &scanned(Err(Failure::ConditionFailed)), bound),
            None
        );
        assert_eq!(w.observe(at(61_000), &denied(), bound), None);
        assert!(w.observe(at(121_000), &denied(), bound).is_some());
    }
}
