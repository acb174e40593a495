//! The tenure of a held lease: how long it may deliver, and its own writes.
//!
//! The safety-critical part of holding a lease. The delivery window ends `failover_time -
//! safety_margin` after the *send* time of the last own write that landed; another worker takes
//! the lease only after seeing its counter unchanged for `failover_time` on its own clock, so the
//! holder stops first (see [`crate::protocol`]). Under worker liveness only the worker's
//! heartbeats move the window ([`Tenure::heartbeat_landed`]): the leader reassigns a lease once
//! it has fenced the worker whose heartbeat it saw stand still, whatever the lease's own writes
//! did meanwhile, so a checkpoint that lands proves nothing about the time after it. A write
//! whose outcome is unknown (a timeout, a 5xx) may have landed: the lease is not lost on a later
//! refused write until a consistent read shows whether one of this holder's own writes explains
//! the refusal (under worker liveness, every refusal is read back).
//!
//! The tenure issues at most one write at a time, so a refused write always names one outcome.

use super::checkpoints::CheckpointJob;
use crate::config::Config;
use crate::io::{Failure, ReleaseReason};
use crate::time::Instant;
use crate::worker::timers::{LeaseTimer, TimerSlot};
use crate::worker::Ctx;

/// What the holder's own write does to its lease, once it lands.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum OwnWrite {
    Renew,
    /// Boxed: a job carries the processor's position and state, and renewals are the many.
    Checkpoint(alloc::boxed::Box<CheckpointJob>),
    Leave(Leave),
}

/// The last write of a tenure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Leave {
    CompleteHandoff,
    Release(ReleaseReason),
    FinishShard,
}

#[derive(Clone, Debug, PartialEq)]
enum WriteState {
    Idle,
    /// A write sent at `sent` awaits its answer.
    InFlight {
        sent: Instant,
        write: OwnWrite,
    },
    /// A write was refused while an own write of unknown outcome was outstanding: a consistent
    /// read of the row decides whether the lease is still held. `read_due` once a read failed
    /// and is to be sent again at the retry time.
    Verifying {
        write: OwnWrite,
        read_due: bool,
    },
}

/// Bytes delivered since the last renewal, and the smoothed throughput each renewal writes.
#[derive(Clone, Debug, Default, PartialEq)]
struct Throughput {
    bytes_since_renew: u64,
    kbps: f64,
}

/// What a tenure may send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// Nothing: a write or read is in flight, or a backoff lasts.
    Wait,
    /// The read of a verification (then [`Tenure::verify_read_sent`]).
    VerifyRead,
    /// A new write, if there is one to make (then [`Tenure::sent`]).
    Write,
}

/// What the answer to an own write means for the lease.
#[derive(Debug, PartialEq)]
pub(crate) enum Written {
    /// It landed.
    Landed(OwnWrite),
    /// It was refused: the lease moved on.
    Lost,
    /// It was refused, and a read decides; send it with [`Tenure::verify_read_sent`].
    Verify,
    /// It failed without an answer (or was throttled); it is tried again after a backoff.
    Failed { write: OwnWrite, throttled: bool },
}

/// What the read that follows a refused write shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RowSeen {
    /// The read failed.
    Unread,
    /// The counter one own write leaves, and this worker as owner or checkpoint owner.
    OwnWriteLanded,
    /// The counter this holder's last write left, another owner and this worker as checkpoint
    /// owner: a handoff it had not seen.
    HandoffUnseen,
    /// Anything else: the lease moved on.
    Moved,
}

/// The answer to the read that follows a refused write.
#[derive(Debug, PartialEq)]
pub(crate) enum Verified {
    /// The read failed: it is sent again after a backoff.
    Retry,
    /// One of this holder's own writes of unknown outcome landed; the lease is still held.
    Held(OwnWrite),
    /// A release was refused by a handoff the holder had not seen: the lease is still its to
    /// give, to the receiver (complete the handoff).
    HandoffUnseen,
    /// The lease moved on.
    Lost,
}

pub(crate) struct Tenure {
    /// Send time of the last own write known to have landed.
    renewed_sent: Instant,
    /// Send time of the oldest own write whose outcome is unknown since then.
    unknown_since: Option<Instant>,
    /// A stolen lease's old owner may deliver until its own window closes.
    no_delivery_before: Instant,
    write: WriteState,
    /// Failed attempts since the last write that landed (the backoff's exponent).
    attempts: u32,
    retry_at: Instant,
    renew_due: bool,
    throughput: Throughput,
}

impl Tenure {
    /// The tenure of a lease whose acquiring write was sent at `sent`; a stolen lease delivers
    /// only once the old owner's window has closed.
    pub(crate) fn new(config: &Config, now: Instant, sent: Instant, stolen: bool) -> Self {
        Self {
            renewed_sent: sent,
            unknown_since: None,
            no_delivery_before: if stolen {
                now + config.failover_time
            } else {
                now
            },
            write: WriteState::Idle,
            attempts: 0,
            retry_at: now,
            renew_due: false,
            throughput: Throughput::default(),
        }
    }

    pub(crate) fn window_end(&self, config: &Config) -> Instant {
        self.renewed_sent + config.delivery_window()
    }

    /// Until when records may be delivered, if they may be now.
    pub(crate) fn deliver_until(&self, config: &Config, now: Instant) -> Option<Instant> {
        let end = self.window_end(config);
        (!matches!(self.write, WriteState::Verifying { .. })
            && now < end
            && now >= self.no_delivery_before)
            .then_some(end)
    }

    /// Delivery is held back for a stolen lease: wake the lease when that ends.
    pub(crate) fn wait_for_delivery<R>(&self, ctx: &mut Ctx<R>, slot: TimerSlot) {
        if ctx.now < self.no_delivery_before {
            ctx.timers
                .set_lease(slot, LeaseTimer::Fetch, self.no_delivery_before);
        }
    }

    /// Keeps the window's timer; false once the window has closed for good. A closed window is
    /// reopened by a write in flight (or one of unknown outcome being verified) sent late enough
    /// to end a window still open; until that is known, nothing is delivered. Under worker
    /// liveness only the worker's heartbeat in flight may reopen it, and none may while `frozen`
    /// (an abandoned processor's call runs: the lease is left once its window closed).
    pub(crate) fn window_holds<R>(&self, ctx: &mut Ctx<R>, slot: TimerSlot, frozen: bool) -> bool {
        let now = ctx.now;
        let window = ctx.config.delivery_window();
        let end = self.window_end(&ctx.config);
        let until = if now < end {
            end
        } else {
            let rescue = if ctx.config.worker_liveness() {
                ctx.heartbeats.in_flight.filter(|_| !frozen)
            } else {
                match &self.write {
                    WriteState::InFlight { sent, .. } => Some(*sent),
                    WriteState::Verifying { .. } => self.unknown_since,
                    WriteState::Idle => None,
                }
            };
            match rescue.map(|s| s + window) {
                Some(end) if end > now => end,
                _ => return false,
            }
        };
        ctx.timers.set_lease(slot, LeaseTimer::Window, until);
        true
    }

    /// Worker liveness: a heartbeat sent at `sent` landed, so the window runs from then.
    pub(crate) fn heartbeat_landed(&mut self, sent: Instant) {
        if sent > self.renewed_sent {
            self.renewed_sent = sent;
        }
    }

    pub(crate) fn set_renew_due(&mut self) {
        self.renew_due = true;
    }

    pub(crate) fn renew_due(&self) -> bool {
        self.renew_due
    }

    /// Counts records handed to the processor, for the throughput the next renewal writes.
    pub(crate) fn delivered_bytes(&mut self, bytes: u64) {
        self.throughput.bytes_since_renew += bytes;
    }

    /// The throughput a renewal writes: the last renew interval's, smoothed (alpha 0.5, as the
    /// Java KCL 3.x).
    pub(crate) fn renewal_throughput(&mut self, config: &Config) -> f64 {
        let secs = config.renew_interval().as_secs_f64().max(0.001);
        let kbps = (self.throughput.bytes_since_renew as f64 / 1024.0) / secs;
        self.throughput.kbps = 0.5 * self.throughput.kbps + 0.5 * kbps;
        self.throughput.bytes_since_renew = 0;
        self.throughput.kbps
    }

    /// What the tenure may send now. While it waits for a backoff, the retry timer is kept.
    pub(crate) fn poll<R>(&self, ctx: &mut Ctx<R>, slot: TimerSlot) -> Next {
        let ready = match self.write {
            WriteState::Idle => Next::Write,
            WriteState::Verifying { read_due: true, .. } => Next::VerifyRead,
            WriteState::InFlight { .. } | WriteState::Verifying { .. } => return Next::Wait,
        };
        if ctx.now < self.retry_at {
            ctx.timers.set_lease(slot, LeaseTimer::Retry, self.retry_at);
            return Next::Wait;
        }
        ready
    }

    /// Whether a verification is under way (its read in flight or due).
    #[cfg(test)]
    pub(crate) fn is_verifying(&self) -> bool {
        matches!(self.write, WriteState::Verifying { .. })
    }

    pub(crate) fn sent(&mut self, now: Instant, write: OwnWrite) {
        debug_assert_eq!(self.write, WriteState::Idle, "one own write at a time");
        self.write = WriteState::InFlight { sent: now, write };
    }

    pub(crate) fn verify_read_sent(&mut self) {
        if let WriteState::Verifying { read_due, .. } = &mut self.write {
            *read_due = false;
        }
    }

    /// The answer to the write in flight; `None` when there is none (a stale answer).
    pub(crate) fn written<R>(
        &mut self,
        ctx: &mut Ctx<R>,
        result: Result<(), &Failure>,
    ) -> Option<Written> {
        let WriteState::InFlight { sent, write } =
            core::mem::replace(&mut self.write, WriteState::Idle)
        else {
            return None;
        };
        Some(match result {
            Ok(()) => {
                self.attempts = 0;
                if sent > self.renewed_sent && !ctx.config.worker_liveness() {
                    self.renewed_sent = sent;
                }
                self.unknown_since = None;
                if write == OwnWrite::Renew {
                    self.renew_due = false;
                }
                Written::Landed(write)
            }
            Err(Failure::ConditionFailed) => match write {
                // Only one of this holder's own writes of unknown outcome can explain a lost
                // race on a lease it holds; without one, the lease is gone (and what a last
                // write meant to do is moot). A release asks for `leaseOwner = me`, so a
                // handoff this holder has not seen refuses it too: the row decides. Under
                // worker liveness the row always decides: a lease dropped while the row still
                // names this process would look alive for as long as it heartbeats (a write
                // retried by the driver after it landed is refused by its own first landing).
                ref w
                    if self.unknown_since.is_none()
                        && !ctx.config.worker_liveness()
                        && !matches!(w, OwnWrite::Leave(Leave::Release(_))) =>
                {
                    Written::Lost
                }
                write => {
                    self.write = WriteState::Verifying {
                        write,
                        read_due: false,
                    };
                    Written::Verify
                }
            },
            Err(failure) => {
                let throttled = *failure == Failure::Throttled;
                if !throttled {
                    // A timeout or 5xx may still have landed.
                    self.unknown_since = Some(self.unknown_since.map_or(sent, |u| u.min(sent)));
                }
                self.back_off(ctx);
                Written::Failed { write, throttled }
            }
        })
    }

    /// The verification read's answer. `None` when no verification was under way (a stale
    /// answer).
    pub(crate) fn verified<R>(&mut self, ctx: &mut Ctx<R>, row: RowSeen) -> Option<Verified> {
        let WriteState::Verifying { write, .. } =
            core::mem::replace(&mut self.write, WriteState::Idle)
        else {
            return None;
        };
        Some(match (row, self.unknown_since) {
            (RowSeen::Unread, _) => {
                // Ask again while the window (or the unknown write) allows.
                self.write = WriteState::Verifying {
                    write,
                    read_due: true,
                };
                self.back_off(ctx);
                Verified::Retry
            }
            (RowSeen::OwnWriteLanded, Some(since)) => {
                // Date the renewal by the oldest such write's send time.
                if since > self.renewed_sent && !ctx.config.worker_liveness() {
                    self.renewed_sent = since;
                }
                self.unknown_since = None;
                Verified::Held(write)
            }
            (RowSeen::OwnWriteLanded, None) if ctx.config.worker_liveness() => {
                Verified::Held(write)
            }
            (RowSeen::HandoffUnseen, _) if matches!(write, OwnWrite::Leave(Leave::Release(_))) => {
                Verified::HandoffUnseen
            }
            _ => Verified::Lost,
        })
    }

    fn back_off<R>(&mut self, ctx: &mut Ctx<R>) {
        self.attempts += 1;
        let delay = ctx.backoff(self.attempts);
        self.retry_at = ctx.now + delay;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::BasicRecord;
    use crate::lease::LeaseKey;
    use crate::worker::timers::Due;
    use crate::WorkerId;
    use alloc::vec::Vec;

    fn ms(n: u64) -> Instant {
        Instant::from_millis(n)
    }

    /// A worker under lease liveness, where a lease's own writes move its window.
    fn ctx_at(now: u64) -> (Ctx<BasicRecord>, TimerSlot) {
        let config = Config::default().with_lease_liveness();
        let mut ctx = Ctx::new(config, WorkerId::from("w1"), 7, ms(now));
        let slot = ctx.timers.claim(&LeaseKey::from("shard-1"));
        (ctx, slot)
    }

    /// The defaults: a 9 s window (10 s failover, 1 s margin).
    const WINDOW: u64 = 9_000;

    fn window_timer(ctx: &mut Ctx<BasicRecord>, at: u64) -> Vec<Due> {
        let mut due = Vec::new();
        ctx.timers.pop_due(ms(at), &mut due);
        due
    }

    #[test]
    fn the_window_runs_from_the_send_time_of_the_last_write_that_landed() {
        let (mut ctx, slot) = ctx_at(1_000);
        let mut t = Tenure::new(&ctx.config, ms(1_000), ms(500), false);
        assert_eq!(
            t.deliver_until(&ctx.config, ms(1_000)),
            Some(ms(500 + WINDOW))
        );
        assert!(t.window_holds(&mut ctx, slot, false));
        // A renewal sent at 3 s lands at 4 s: the window now runs from 3 s.
        ctx.now = ms(3_000);
        assert_eq!(t.poll(&mut ctx, slot), Next::Write);
        t.sent(ctx.now, OwnWrite::Renew);
        assert_eq!(t.poll(&mut ctx, slot), Next::Wait, "one write at a time");
        ctx.now = ms(4_000);
        assert_eq!(
            t.written(&mut ctx, Ok(())),
            Some(Written::Landed(OwnWrite::Renew))
        );
        assert_eq!(
            t.deliver_until(&ctx.config, ms(4_000)),
            Some(ms(3_000 + WINDOW))
        );
        assert_eq!(t.deliver_until(&ctx.config, ms(3_000 + WINDOW)), None);
        assert_eq!(t.written(&mut ctx, Ok(())), None, "no write in flight");
    }

    #[test]
    fn a_closed_window_is_kept_open_only_by_a_write_sent_in_time() {
        let (mut ctx, slot) = ctx_at(0);
        let mut t = Tenure::new(&ctx.config, ms(0), ms(0), false);
        ctx.now = ms(WINDOW);
        assert!(
            !t.window_holds(&mut ctx, slot, false),
            "closed, nothing in flight"
        );
        // A renewal sent at 8 s, unanswered at 9 s: its window would end at 17 s.
        let mut t2 = Tenure::new(&ctx.config, ms(0), ms(0), false);
        t2.sent(ms(8_000), OwnWrite::Renew);
        assert!(t2.window_holds(&mut ctx, slot, false));
        assert_eq!(
            t2.deliver_until(&ctx.config, ctx.now),
            None,
            "but no delivery"
        );
        assert!(window_timer(&mut ctx, 8_000 + WINDOW - 1).is_empty());
        assert_eq!(window_timer(&mut ctx, 8_000 + WINDOW).len(), 1);
        ctx.now = ms(8_000 + WINDOW);
        assert!(
            !t2.window_holds(&mut ctx, slot, false),
            "and not past its own window"
        );
        t.sent(ms(0), OwnWrite::Renew);
        assert!(!t.window_holds(&mut ctx, slot, false));
    }

    /// Worker liveness: the lease's own writes never move its window (a checkpoint that lands
    /// proves nothing once the leader has fenced the worker); the heartbeats do, and only a
    /// heartbeat in flight keeps a closed window from being lost, unless the window is frozen.
    #[test]
    fn under_worker_liveness_only_heartbeats_move_the_window() {
        let (mut ctx, slot) = ctx_at(0);
        ctx.config.liveness = crate::config::Liveness::Worker;
        let mut t = Tenure::new(&ctx.config, ms(0), ms(0), false);
        t.sent(ms(2_000), OwnWrite::Renew);
        ctx.now = ms(2_500);
        assert_eq!(
            t.written(&mut ctx, Ok(())),
            Some(Written::Landed(OwnWrite::Renew))
        );
        assert_eq!(
            t.window_end(&ctx.config),
            ms(WINDOW),
            "an own write does not move it"
        );
        t.heartbeat_landed(ms(3_000));
        assert_eq!(t.window_end(&ctx.config), ms(3_000 + WINDOW));
        t.heartbeat_landed(ms(1_000));
        assert_eq!(
            t.window_end(&ctx.config),
            ms(3_000 + WINDOW),
            "never backwards"
        );
        // Closed, with an own write in flight: under worker liveness that rescues nothing.
        ctx.now = ms(3_000 + WINDOW);
        t.sent(ms(11_000), OwnWrite::Renew);
        assert!(!t.window_holds(&mut ctx, slot, false));
        // A heartbeat in flight, sent in time, does (without delivery), unless frozen.
        ctx.heartbeats.in_flight = Some(ms(10_000));
        assert!(t.window_holds(&mut ctx, slot, false));
        assert_eq!(t.deliver_until(&ctx.config, ctx.now), None);
        assert!(!t.window_holds(&mut ctx, slot, true));
    }

    #[test]
    fn a_refused_write_loses_the_lease_unless_an_unknown_outcome_explains_it() {
        let (mut ctx, _) = ctx_at(0);
        let mut t = Tenure::new(&ctx.config, ms(0), ms(0), false);
        t.sent(ms(0), OwnWrite::Renew);
        assert_eq!(
            t.written(&mut ctx, Err(&Failure::ConditionFailed)),
            Some(Written::Lost)
        );
        // A renewal times out (it may have landed), then the next one is refused: verify.
        let mut t = Tenure::new(&ctx.config, ms(0), ms(0), false);
        t.sent(ms(1_000), OwnWrite::Renew);
        let failed = t.written(&mut ctx, Err(&Failure::Transient));
        assert_eq!(
            failed,
            Some(Written::Failed {
                write: OwnWrite::Renew,
                throttled: false
            })
        );
        ctx.now = t.retry_at;
        t.sent(ctx.now, OwnWrite::Renew);
        assert_eq!(
            t.written(&mut ctx, Err(&Failure::ConditionFailed)),
            Some(Written::Verify)
        );
        assert!(t.is_verifying());
        assert_eq!(
            t.deliver_until(&ctx.config, ctx.now),
            None,
            "none while unsure"
        );
        // The read shows the row as the timed-out renewal left it: still held, and the window
        // runs from that renewal's send time.
        assert_eq!(
            t.verified(&mut ctx, RowSeen::OwnWriteLanded),
            Some(Verified::Held(OwnWrite::Renew))
        );
        assert_eq!(
            t.deliver_until(&ctx.config, ctx.now),
            Some(ms(1_000 + WINDOW))
        );
        assert_eq!(
            t.verified(&mut ctx, RowSeen::OwnWriteLanded),
            None,
            "answered once"
        );
    }

    #[test]
    fn a_failed_verification_read_is_sent_again_after_a_backoff() {
        let (mut ctx, slot) = ctx_at(0);
        let mut t = Tenure::new(&ctx.config, ms(0), ms(0), false);
        t.sent(ms(0), OwnWrite::Renew);
        t.written(&mut ctx, Err(&Failure::Transient));
        ctx.now = t.retry_at;
        t.sent(ctx.now, OwnWrite::Renew);
        t.written(&mut ctx, Err(&Failure::ConditionFailed));
        // The first read goes out with the refusal.
        assert_eq!(t.poll(&mut ctx, slot), Next::Wait);
        t.verify_read_sent();
        assert_eq!(t.verified(&mut ctx, RowSeen::Unread), Some(Verified::Retry));
        assert_eq!(
            t.poll(&mut ctx, slot),
            Next::Wait,
            "not before the retry time"
        );
        ctx.now = t.retry_at;
        assert_eq!(t.poll(&mut ctx, slot), Next::VerifyRead);
        t.verify_read_sent();
        assert_eq!(t.verified(&mut ctx, RowSeen::Moved), Some(Verified::Lost));
    }

    #[test]
    fn a_throttled_write_is_not_an_unknown_outcome() {
        let (mut ctx, slot) = ctx_at(0);
        let mut t = Tenure::new(&ctx.config, ms(0), ms(0), false);
        t.sent(ms(0), OwnWrite::Renew);
        t.written(&mut ctx, Err(&Failure::Throttled));
        assert_eq!(t.poll(&mut ctx, slot), Next::Wait, "backing off");
        ctx.now = t.retry_at;
        assert_eq!(t.poll(&mut ctx, slot), Next::Write);
        t.sent(ctx.now, OwnWrite::Renew);
        assert_eq!(
            t.written(&mut ctx, Err(&Failure::ConditionFailed)),
            Some(Written::Lost),
            "a throttled write never landed, so it cannot explain the refusal"
        );
    }

    #[test]
    fn a_refused_last_write_is_verified_after_an_unknown_outcome_and_lost_without_one() {
        let (mut ctx, _) = ctx_at(0);
        let mut t = Tenure::new(&ctx.config, ms(0), ms(0), false);
        t.sent(ms(0), OwnWrite::Renew);
        t.written(&mut ctx, Err(&Failure::Transient));
        ctx.now = t.retry_at;
        t.sent(ctx.now, OwnWrite::Leave(Leave::CompleteHandoff));
        assert_eq!(
            t.written(&mut ctx, Err(&Failure::ConditionFailed)),
            Some(Written::Verify),
            "the renewal that timed out may have moved the counter"
        );
        assert_eq!(
            t.verified(&mut ctx, RowSeen::OwnWriteLanded),
            Some(Verified::Held(OwnWrite::Leave(Leave::CompleteHandoff)))
        );
        t.sent(ctx.now, OwnWrite::Leave(Leave::CompleteHandoff));
        assert_eq!(
            t.written(&mut ctx, Err(&Failure::ConditionFailed)),
            Some(Written::Lost)
        );
    }

    #[test]
    fn a_stolen_lease_waits_for_the_old_owners_window() {
        let (mut ctx, slot) = ctx_at(1_000);
        let t = Tenure::new(&ctx.config, ms(1_000), ms(1_000), true);
        assert_eq!(t.deliver_until(&ctx.config, ms(1_000)), None);
        t.wait_for_delivery(&mut ctx, slot);
        let failover = ctx.config.failover_time.as_millis() as u64;
        assert_eq!(
            window_timer(&mut ctx, 1_000 + failover).len(),
            1,
            "woken when it may deliver"
        );
        // By then its own window (from 1 s) is closed unless renewed.
        assert_eq!(t.deliver_until(&ctx.config, ms(1_000 + failover)), None);
        assert!(t
            .deliver_until(&ctx.config, ms(1_000 + failover - 1))
            .is_none());
    }

    #[test]
    fn renewals_write_the_smoothed_throughput() {
        let (ctx, _) = ctx_at(0);
        let mut t = Tenure::new(&ctx.config, ms(0), ms(0), false);
        let secs = ctx.config.renew_interval().as_secs_f64();
        t.delivered_bytes(1024 * 10);
        let first = t.renewal_throughput(&ctx.config);
        assert!((first - 0.5 * 10.0 / secs).abs() < 1e-9, "{first}");
        let second = t.renewal_throughput(&ctx.config);
        assert!((second - first / 2.0).abs() < 1e-9, "{second}");
    }
}
