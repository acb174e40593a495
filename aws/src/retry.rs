//! Retrying one service call: a per-attempt timeout, and jittered exponential backoff for the
//! failures that may be repeated.

use core::future::Future;
use core::time::Duration;

use futures_util::future::{select, Either};
use kcl_core::Failure;
use serde::{Deserialize, Serialize};

use crate::runtime::Runtime;

/// How calls to DynamoDB and Kinesis are retried inside one request of the core. The core has its
/// own, slower backoff on top (for throttled fetches and lease writes); this one absorbs bursts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RetryPolicy {
    /// Attempts per request, the first included (at least 1).
    pub attempts: u32,
    /// First backoff; doubles per attempt, with full jitter.
    pub base: Duration,
    /// Largest backoff.
    pub max: Duration,
    /// One attempt's time limit; an attempt past it is a [`Failure::Transient`].
    pub call_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 3,
            base: Duration::from_millis(50),
            max: Duration::from_secs(1),
            call_timeout: Duration::from_secs(10),
        }
    }
}

/// Whether a failed attempt may be made again: a throttled call never happened; a transient
/// failure may have, so only idempotent calls (reads) repeat it. A conditional write whose answer
/// was lost goes back to the core as `Transient`, which verifies it by a read.
pub(crate) fn may_retry(failure: &Failure, idempotent: bool) -> bool {
    match failure {
        Failure::Throttled => true,
        Failure::Transient => idempotent,
        _ => false,
    }
}

impl RetryPolicy {
    /// Backoff before attempt `attempt` (1-based count of failures so far), jittered by `salt`.
    pub(crate) fn backoff(&self, attempt: u32, salt: u64) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.max);
        let ceiling_ms = u64::try_from(ceiling.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        Duration::from_millis(mix(salt ^ u64::from(attempt)) % ceiling_ms + 1)
    }

    /// Runs `call` until it succeeds, fails for good, or runs out of attempts.
    pub(crate) async fn run<T, Fut>(
        &self,
        runtime: &impl Runtime,
        idempotent: bool,
        salt: u64,
        mut call: impl FnMut() -> Fut,
    ) -> (Result<T, Failure>, u32)
    where
        Fut: Future<Output = Result<T, Failure>> + Send,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let timeout = runtime.sleep(self.call_timeout);
            let outcome = match select(core::pin::pin!(call()), core::pin::pin!(timeout)).await {
                Either::Left((outcome, _)) => outcome,
                Either::Right(((), _)) => Err(Failure::Transient),
            };
            match outcome {
                Err(f) if attempt < self.attempts.max(1) && may_retry(&f, idempotent) => {
                    runtime.sleep(self.backoff(attempt, salt)).await;
                }
                done => return (done, attempt),
            }
        }
    }
}

/// SplitMix64: spreads a request id into jitter without any shared random state.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_cannot_have_happened_is_repeated_for_writes() {
        assert!(may_retry(&Failure::Throttled, false));
        assert!(!may_retry(&Failure::Transient, false));
        assert!(may_retry(&Failure::Transient, true));
        assert!(!may_retry(&Failure::ConditionFailed, true));
        assert!(!may_retry(&Failure::ExpiredIterator, true));
    }

    #[test]
    fn backoff_is_jittered_and_bounded() {
        let p = RetryPolicy::default();
        let all: Vec<Duration> = (0..200).map(|salt| p.backoff(6, salt)).collect();
        assert!(all
            .iter()
            .all(|d| *d >= Duration::from_millis(1) && *d <= p.max));
        let distinct: std::collections::BTreeSet<_> = all.iter().collect();
        assert!(distinct.len() > 50, "jitter spreads the retries");
        assert!((0..200).all(|salt| p.backoff(1, salt) <= p.base));
    }
}
