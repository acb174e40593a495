//! Shards gone from the stream. A held lease whose GetShardIterator answers NotFound makes the
//! worker list the stream's shards; a shard the stream no longer lists (its records trimmed past
//! retention, the shard deleted) is finished as if its end had been read, so its children can
//! start. The Java KCL takes the NotFound alone as the shard's end; the listing first keeps a
//! NotFound of the whole stream (a misconfiguration, or a stream just created) from finishing
//! every lease: when the listing fails, nothing is finished and the iterator is asked again.

use alloc::collections::BTreeSet;

use super::{Outstanding, Pending, Worker};
use crate::io::{Command, Failure, Record, ShardListing};
use crate::lease::LeaseKey;

#[derive(Clone, Debug, Default)]
pub(crate) struct Vanishing {
    /// Held leases whose shard iterator was not found, to be looked for in the next listing.
    suspects: BTreeSet<LeaseKey>,
    listing: Outstanding,
}

impl<R: Record + Clone> Worker<R> {
    /// `shard`'s GetShardIterator answered NotFound: the stream's shards are listed.
    pub(super) fn iterator_not_found(&mut self, shard: &LeaseKey) {
        self.vanishing.suspects.insert(shard.clone());
        if self.vanishing.listing == Outstanding::Idle {
            let req = self
                .ctx
                .request(Pending::ListGone, |req| Command::ListShards { req });
            self.vanishing.listing = Outstanding::InFlight(req);
        }
    }

    /// The listing's answer: each suspect it does not name is finished.
    pub(super) fn gone_listed(&mut self, result: Result<ShardListing, Failure>) {
        self.vanishing.listing = Outstanding::Idle;
        let suspects = core::mem::take(&mut self.vanishing.suspects);
        let Ok(listing) = result else { return };
        for key in suspects {
            if !listing.shards.iter().any(|s| s.shard_id == key) {
                self.with_held(&key, |h, ctx| h.shard_gone(ctx));
            }
        }
    }
}
