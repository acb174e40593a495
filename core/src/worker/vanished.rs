//! Shards gone from the stream. A held lease whose GetShardIterator or GetRecords answers
//! NotFound, or whose starting position is refused as invalid (by GetShardIterator; with enhanced
//! fan-out, by the subscription behind GetRecords), makes the worker list the stream's shards. A
//! shard the stream no longer lists (its records trimmed past retention, the shard deleted) is
//! finished as if its end had been read, so its children can start. The Java KCL takes the
//! NotFound alone as the shard's end; the listing first keeps a NotFound of the whole stream (a
//! misconfiguration, or a stream just created) from finishing every lease: when the listing
//! fails, nothing is finished and the iterator is asked again. A refused position of a shard
//! still listed is reported ([`crate::Event::IteratorRefused`]) and asked again: skipping to
//! elsewhere in the shard would lose or repeat records silently.

use alloc::collections::BTreeMap;
use alloc::string::String;

use super::{Outstanding, Pending, Worker};
use crate::io::{Command, Failure, Record, ShardListing};
use crate::lease::LeaseKey;

#[derive(Clone, Debug, Default)]
pub(crate) struct Vanishing {
    /// Held leases whose shard was not found, to be looked for in the next listing, with the
    /// service's message when it refused the starting position instead.
    suspects: BTreeMap<LeaseKey, Option<String>>,
    listing: Outstanding,
}

impl<R: Record + Clone> Worker<R> {
    /// A read of `shard` answered `failure`: when it says the shard may be gone, or refuses
    /// where reading starts (GetShardIterator; with enhanced fan-out, the subscription behind
    /// GetRecords), the stream's shards are listed.
    pub(super) fn read_failed(&mut self, shard: &LeaseKey, failure: &Failure) {
        let refusal = match failure {
            Failure::NotFound => None,
            Failure::InvalidArgument(reason) => Some(alloc::string::ToString::to_string(reason)),
            _ => return,
        };
        self.vanishing.suspects.insert(shard.clone(), refusal);
        if self.vanishing.listing == Outstanding::Idle {
            let req = self
                .ctx
                .request(Pending::ListGone, |req| Command::ListShards { req });
            self.vanishing.listing = Outstanding::InFlight(req);
        }
    }

    /// The listing's answer: each suspect it does not name is finished; a refusal of one it
    /// names is reported.
    pub(super) fn gone_listed(&mut self, result: Result<ShardListing, Failure>) {
        self.vanishing.listing = Outstanding::Idle;
        let suspects = core::mem::take(&mut self.vanishing.suspects);
        let Ok(listing) = result else { return };
        for (key, refusal) in suspects {
            if !listing.shards.iter().any(|s| s.shard_id == key) {
                self.with_held(&key, |h, ctx| h.shard_gone(ctx));
            } else if let Some(reason) = refusal {
                self.with_held(&key, |h, ctx| h.start_refused(ctx, reason));
            }
        }
    }
}
