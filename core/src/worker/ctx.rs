//! What every part of a worker shares: its configuration, identity, clock value and seed, the
//! requests in flight and what each is for, the timers, and the queue of commands out.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;

use super::in_flight::InFlight;
use super::timers::{TimerKey, Timers};
use super::Stats;
use crate::config::Config;
use crate::io::{CallId, Command, Event, FencingToken, ProcessorCall, RequestId};
use crate::lease::{LeaseKey, WorkerId};
use crate::protocol::LeaseOp;
use crate::rng::Rng;
use crate::time::Instant;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    Running,
    ShuttingDown,
    Stopped,
}

/// A role's one request of a kind: none, or the one in flight (a role never sends a second
/// while one is unanswered).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Outstanding {
    #[default]
    Idle,
    InFlight(RequestId),
}

/// What a pending request was for, so its result can be routed and checked.
#[derive(Clone, Debug)]
pub(crate) enum Pending {
    Scan,
    ListShards,
    /// A listing to see whether shards whose iterator was not found are gone.
    ListGone,
    /// A listing to see whether Kinesis answers a worker whose reads stalled.
    ProbeKinesis,
    ReadParent {
        shard: LeaseKey,
        token: FencingToken,
    },
    ReadOwn {
        shard: LeaseKey,
        token: FencingToken,
        expect_counter: u64,
    },
    ReadLeader,
    /// This worker's own heartbeat row, read after a refused heartbeat.
    ReadWorkerRow,
    /// A worker row the last scan showed silent, read again consistently before a heads-up.
    ConfirmSilent {
        worker: WorkerId,
        liveness: u64,
    },
    ReadAcquire {
        shard: LeaseKey,
    },
    /// A held lease's write on its own row; the lease keeps what the write is for.
    OwnWrite {
        shard: LeaseKey,
        token: FencingToken,
    },
    /// Any other write.
    Write {
        key: LeaseKey,
        op: WriteOp,
        sent: Instant,
    },
    Iterator {
        shard: LeaseKey,
        token: FencingToken,
    },
    Fetch {
        shard: LeaseKey,
        token: FencingToken,
    },
}

impl Pending {
    /// A Kinesis call whose outcome tells whether Kinesis answers this worker (the probe reports
    /// its own).
    pub(crate) fn asks_kinesis(&self) -> bool {
        matches!(
            self,
            Self::ListShards | Self::ListGone | Self::Iterator { .. } | Self::Fetch { .. }
        )
    }
}

/// What a write was for.
#[derive(Clone, Debug)]
pub(crate) enum WriteOp {
    Take {
        steal: bool,
    },
    Acquire,
    Create {
        child_of: Option<(LeaseKey, FencingToken)>,
    },
    Delete,
    DeleteDeadWorkerRow {
        worker: WorkerId,
    },
    Assign {
        to: WorkerId,
        counter_after: u64,
    },
    InitiateHandoff {
        /// The old owner, when it is to be told (it holds the lease under worker liveness).
        tell_from: Option<WorkerId>,
        to: WorkerId,
        counter: u64,
    },
    Notify {
        worker: WorkerId,
        shard: LeaseKey,
        counter: u64,
        handoff: bool,
    },
    HeadsUp,
    Heartbeat {
        acked: Vec<crate::item::Text>,
        /// The process the heartbeat was for: an answer for an incarnation given up since is
        /// stale.
        incarnation: crate::item::Text,
    },
    FenceWorker {
        worker: WorkerId,
        incarnation: crate::item::Text,
    },
    LeaderClaim {
        counter_after: u64,
        /// The leader the claim replaces, when it named its last heartbeat.
        predecessor: Option<Predecessor>,
    },
    LeaderRenew {
        counter_after: u64,
    },
    LeaderRelease,
    WorkerRowDelete,
}

/// A leader whose row a follower saw stand still for the failover time, as the row named it:
/// its worker row's liveness after its last heartbeat that landed, and when the follower first
/// saw the leader row that named it (that heartbeat is older).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Predecessor {
    pub(crate) worker: WorkerId,
    pub(crate) liveness: u64,
    pub(crate) seen_since: Instant,
}

/// Under worker liveness, the heartbeats that keep every lease of this process: a lease may
/// deliver until `delivery_window` after the *send* of the last heartbeat known to have landed,
/// and a heartbeat in flight may yet extend that (nothing is delivered meanwhile).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Heartbeats {
    /// When the last heartbeat of this incarnation known to have landed was sent.
    pub(crate) landed: Option<Instant>,
    /// When the heartbeat in flight was sent.
    pub(crate) in_flight: Option<Instant>,
    /// What the worker row showed an observer ([`crate::WorkerRow::liveness`]) after the last
    /// heartbeat that landed: a leader names it in the leader row.
    pub(crate) liveness: Option<u64>,
}

impl Heartbeats {
    /// Until when a heartbeat may still prove this process alive: the window of the last one
    /// that landed, or of the one in flight if it would end later. `None`: nothing can.
    pub(crate) fn holds_until(&self, config: &Config) -> Option<Instant> {
        let window = config.delivery_window();
        match (self.landed, self.in_flight) {
            (Some(l), Some(f)) => Some(l.max(f) + window),
            (Some(s), None) | (None, Some(s)) => Some(s + window),
            (None, None) => None,
        }
    }
}

/// The parts of a worker that per-lease code needs beside the lease itself.
pub(crate) struct Ctx<R> {
    pub(crate) config: Config,
    pub(crate) id: WorkerId,
    pub(crate) rng: Rng,
    pub(crate) now: Instant,
    next_req: u64,
    next_call: u64,
    in_flight: InFlight,
    pub(crate) timers: Timers,
    pub(crate) out: VecDeque<Command<R>>,
    pub(crate) stats: Stats,
    pub(crate) phase: Phase,
    /// Worker liveness only: this process's heartbeats.
    pub(crate) heartbeats: Heartbeats,
}

impl<R> Ctx<R> {
    pub(crate) fn new(config: Config, id: WorkerId, seed: u64, now: Instant) -> Self {
        Self {
            config,
            id,
            rng: Rng::new(seed),
            now,
            next_req: 0,
            next_call: 0,
            in_flight: InFlight::default(),
            timers: Timers::default(),
            out: VecDeque::new(),
            stats: Stats::default(),
            phase: Phase::Running,
            heartbeats: Heartbeats::default(),
        }
    }

    /// The next command for the driver, in the order they were decided.
    pub(crate) fn next_command(&mut self) -> Option<Command<R>> {
        /// Commands the output queue keeps room for once drained: a burst (a thousand
        /// acquisitions at once) must not pin its queue forever.
        const KEPT: usize = 64;
        let command = self.out.pop_front();
        if command.is_none() && self.out.capacity() > KEPT {
            self.out.shrink_to(KEPT);
        }
        command
    }

    /// What request `req` was for, if it is still in flight; it is not any more.
    pub(crate) fn answered(&mut self, req: RequestId) -> Option<Pending> {
        self.in_flight.take(req)
    }

    /// The oldest request in flight and its timeout.
    pub(crate) fn oldest_request(&self) -> Option<(RequestId, Instant)> {
        self.in_flight.oldest()
    }

    pub(crate) fn pending_requests(&self) -> usize {
        self.in_flight.len()
    }

    /// Sends a request: `pending` says what its answer is for; it times out after
    /// `request_timeout`.
    pub(crate) fn request(
        &mut self,
        pending: Pending,
        command: impl FnOnce(RequestId) -> Command<R>,
    ) -> RequestId {
        self.next_req += 1;
        let req = RequestId(self.next_req);
        let deadline = self.now + self.config.request_timeout;
        if self.in_flight.is_empty() {
            self.timers.set(TimerKey::Requests, deadline);
        }
        self.in_flight.add(req, deadline, pending);
        self.out.push_back(command(req));
        req
    }

    /// Sends a write that is not a held lease's own; `op` says what its answer is for.
    pub(crate) fn write(&mut self, lease_op: &LeaseOp, op: WriteOp) -> RequestId {
        let write = lease_op.to_write();
        let key = LeaseKey::from(write.key.as_str());
        let sent = self.now;
        self.request(Pending::Write { key, op, sent }, |req| {
            Command::WriteLease { req, write }
        })
    }

    /// Sends a held lease's write on its own row.
    pub(crate) fn own_write(&mut self, lease_op: &LeaseOp, token: FencingToken) -> RequestId {
        let write = lease_op.to_write();
        let shard = LeaseKey::from(write.key.as_str());
        self.request(Pending::OwnWrite { shard, token }, |req| {
            Command::WriteLease { req, write }
        })
    }

    /// A consistent read of one row.
    pub(crate) fn read(&mut self, key: &str, pending: Pending) -> RequestId {
        self.read_row(key, true, pending)
    }

    /// An eventually consistent read of one row: it may show the row as it was before its
    /// latest write, never a version that was not written.
    pub(crate) fn read_eventually(&mut self, key: &str, pending: Pending) -> RequestId {
        self.read_row(key, false, pending)
    }

    fn read_row(&mut self, key: &str, consistent: bool, pending: Pending) -> RequestId {
        let key = String::from(key);
        self.request(pending, |req| Command::ReadLease {
            req,
            key,
            consistent,
        })
    }

    pub(crate) fn call(&mut self, shard: &LeaseKey, action: ProcessorCall<R>) -> CallId {
        self.next_call += 1;
        let call = CallId(self.next_call);
        self.out.push_back(Command::Processor {
            shard: shard.clone(),
            call,
            action,
        });
        call
    }

    pub(crate) fn event(&mut self, e: Event) {
        self.out.push_back(Command::Event(e));
    }

    /// A row that does not decode: counted, reported with its key when readable, left alone.
    pub(crate) fn malformed(&mut self, item: &crate::item::Item, error: crate::lease::RowError) {
        self.stats.malformed_rows += 1;
        let key = match item.get(crate::lease::attr::LEASE_KEY) {
            Some(crate::item::AttributeValue::S(k)) => Some(String::from(&**k)),
            _ => None,
        };
        self.event(Event::MalformedRow { key, error });
    }

    /// Exponential backoff with equal jitter: half fixed, half random.
    pub(crate) fn backoff(&mut self, attempt: u32) -> Duration {
        let base = self.config.backoff_base.as_millis() as u64;
        let cap = self.config.backoff_max.as_millis() as u64;
        let full = base.saturating_mul(1u64 << attempt.min(20)).min(cap).max(1);
        Duration::from_millis(full / 2 + self.rng.below(full / 2 + 1))
    }
}
