//! kcl-aws's two backend traits over the simulated services: every call a request that travels
//! to its service (latency, injected delay), meets the injected throttling and errors there, is
//! applied to the model at its arrival, and an answer that travels back. A cut link loses the
//! request or the answer: the call then never completes, and the driver's own call timeout
//! decides, as it does against AWS when a connection goes silent.

use std::future::pending;

use kcl_aws::{LeaseTable, ShardStream};
use kcl_core::write::LeaseWrite;
use kcl_core::{
    Failure, FetchedRecords, HashKeyRange, Item, ShardDescription, StartingPosition, WorkerId,
};

use super::exec::Handle;
use super::world::{Arrival, SharedWorld, World};
use crate::fleet::{NodeId, Service, PRODUCE_EVERY_MS};
use crate::record::SimRecord;

/// One process's connection to the services.
#[derive(Clone)]
pub(crate) struct Link {
    pub world: SharedWorld,
    pub exec: Handle,
    pub node: NodeId,
    pub machine: usize,
    pub worker: WorkerId,
}

impl Link {
    /// One round trip to `service`: `serve` runs at the service when the request arrives
    /// (`error`: the answer will be a 5xx whatever it did).
    async fn call<T>(
        &self,
        service: Service,
        serve: impl FnOnce(&mut World, bool) -> Result<T, Failure>,
    ) -> Result<T, Failure> {
        self.call_when(service, |_| false, serve).await
    }

    /// As [`Link::call`], but the service holds the request while `wait` says so, looking again
    /// every [`PRODUCE_EVERY_MS`] for at most [`PUSH_WAIT_MS`] (a push-style read waiting for the
    /// next record).
    async fn call_when<T>(
        &self,
        service: Service,
        wait: impl Fn(&World) -> bool,
        serve: impl FnOnce(&mut World, bool) -> Result<T, Failure>,
    ) -> Result<T, Failure> {
        let out = self.trip(service);
        let Some(out) = out else {
            return pending().await;
        };
        self.exec.sleep_until(self.exec.now_ms() + out).await;
        let arrived = self.exec.now_ms();
        while self.exec.now_ms() < arrived + PUSH_WAIT_MS && wait(&self.world.lock()) {
            let next = self.exec.now_ms() + PRODUCE_EVERY_MS;
            self.exec.sleep_until(next).await;
        }
        let answer = {
            let mut w = self.world.lock();
            // The link may have been cut while the request travelled.
            if w.reachable(self.machine, service) {
                let (result, hold_ms) = match w.arrive(self.machine, service) {
                    Arrival::Refused(failure) => (Err(failure), 0),
                    Arrival::Served { error, hold_ms } => (serve(&mut w, error), hold_ms),
                };
                w.trip(self.machine, service)
                    .map(|back| (result, hold_ms + back))
            } else {
                None
            }
        };
        let Some((result, back)) = answer else {
            return pending().await;
        };
        self.exec.sleep_until(self.exec.now_ms() + back).await;
        if !self.world.lock().reachable(self.machine, service) {
            return pending().await;
        }
        result
    }

    fn trip(&self, service: Service) -> Option<u64> {
        self.world.lock().trip(self.machine, service)
    }
}

/// How long a push-style read waits for the next record before answering empty (a
/// SubscribeToShard event comes at least this often).
const PUSH_WAIT_MS: u64 = 5_000;

fn transient<T>() -> Result<T, Failure> {
    Err(Failure::Transient)
}

/// The lease table, on the simulated DynamoDB.
pub(crate) struct SimTable(pub Link);

impl LeaseTable for SimTable {
    async fn scan(&self, consistent: bool) -> Result<Vec<Item>, Failure> {
        // Page by page, each its own request, as the SDK's paginator makes them.
        let mut items = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let start = after.take();
            let (page, next) = self
                .0
                .call(Service::Dynamo, |w, error| {
                    if error {
                        return transient();
                    }
                    let now = w.now;
                    let World { dynamo, rng, .. } = w;
                    Ok(dynamo.scan_page(now, start.as_deref(), consistent, rng))
                })
                .await?;
            items.extend(page);
            match next {
                Some(key) => after = Some(key),
                None => return Ok(items),
            }
        }
    }

    async fn read(&self, key: &str, consistent: bool) -> Result<Option<Item>, Failure> {
        self.0
            .call(Service::Dynamo, |w, error| {
                if error {
                    return transient();
                }
                let now = w.now;
                let World { dynamo, rng, .. } = w;
                Ok(dynamo.get(now, key, consistent, rng))
            })
            .await
    }

    async fn write(&self, write: &LeaseWrite) -> Result<Option<Item>, Failure> {
        let writer = &self.0.worker;
        self.0
            .call(Service::Dynamo, |w, error| {
                // A 5xx on a write leaves its outcome unknown: half of them landed.
                let lands = !error || w.rng.below(2) == 0;
                let result = if lands {
                    w.table_write(writer, write)
                } else {
                    transient()
                };
                if error {
                    transient()
                } else {
                    result
                }
            })
            .await
    }
}

/// The stream, on the simulated Kinesis.
pub(crate) struct SimStream(pub Link);

impl ShardStream for SimStream {
    type Record = SimRecord;

    async fn list_shards(&self) -> Result<Vec<ShardDescription>, Failure> {
        self.0
            .call(Service::Kinesis, |w, error| {
                if error {
                    return transient();
                }
                Ok(w.kinesis.list_shards())
            })
            .await
    }

    async fn shard_iterator(
        &self,
        shard: &str,
        position: &StartingPosition,
    ) -> Result<String, Failure> {
        self.0
            .call(Service::Kinesis, |w, error| {
                if error {
                    return transient();
                }
                let now = w.now;
                w.kinesis
                    .get_shard_iterator(now, shard, position)
                    .map(|text| text.to_string())
            })
            .await
    }

    async fn get_records(
        &self,
        iterator: &str,
        limit: u32,
        _shard_range: Option<HashKeyRange>,
    ) -> Result<FetchedRecords<SimRecord>, Failure> {
        let wait = |w: &World| w.blocking_reads && w.kinesis.nothing_new(iterator);
        self.0
            .call_when(Service::Kinesis, wait, |w, error| {
                if error {
                    return transient();
                }
                let now = w.now;
                w.kinesis
                    .get_records(now, iterator, limit as usize)
                    .map(|o| FetchedRecords {
                        records: o.records,
                        next_iterator: o.next_iterator,
                        millis_behind_latest: o.millis_behind_latest,
                        child_shards: o.child_shards,
                    })
            })
            .await
    }
}
