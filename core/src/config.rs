//! Worker configuration, with defaults that match the Java KCL where they are sensible.

use core::time::Duration;

/// Where a shard without a checkpoint starts when it has no parent with a lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum InitialPosition {
    /// The oldest record still retained.
    TrimHorizon,
    /// Only records put after the lease is created.
    Latest,
    /// Records from a wall-clock timestamp (milliseconds since the Unix epoch).
    AtTimestamp(u64),
}

/// How leases are spread over the fleet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum BalancingPolicy {
    /// Ours: one elected leader plans, moves by graceful handoff; see [`crate::balance`].
    Coordinated,
    /// A faithful model of the Java KCL 2.x lease taker; joins a Java 2.x fleet on one table.
    Kcl2Compatible,
}

/// What proves, under [`BalancingPolicy::Coordinated`], that a lease's holder is alive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Liveness {
    /// Each lease is renewed by its holder every renew interval (a conditional write per lease),
    /// and expires when its counter stands still for the failover time, as in the Java KCL.
    /// The setting of kcl-rs before worker liveness; a fleet of those versions upgrades through
    /// it ([`Config::with_lease_liveness`]).
    Lease,
    /// The default. The worker's heartbeat row proves it alive for every lease it holds: lease
    /// rows are written only when their ownership or checkpoint changes. The leader fences a
    /// worker whose heartbeat stood still for the failover time before it reassigns that
    /// worker's leases ([`crate::protocol`]). Leaders of both settings judge each lease by the
    /// rule its row asks for, so a running fleet can switch between them worker by worker; a
    /// fleet with Java workers must use [`BalancingPolicy::Kcl2Compatible`].
    #[default]
    Worker,
}

/// Tunables of a [`crate::Worker`]. Every duration is on the worker's own monotonic clock.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
pub struct Config {
    /// Lease duration D (Java `failoverTimeMillis`): a worker row (under worker liveness) or a
    /// lease counter (otherwise) that has not changed for this long on an observer's clock is
    /// expired for that observer.
    pub failover_time: Duration,
    /// Java's `epsilonMillis`: renewals run every `failover_time / 3 - epsilon`.
    pub epsilon: Duration,
    /// An owner stops delivering records once `failover_time - safety_margin` has passed since it
    /// sent its last successful heartbeat (under worker liveness) or renewal. With D = 10 s and a
    /// 1 s margin, safety holds while the
    /// ratio of any two workers' clock rates stays within D / (D - margin) = 1.11 (about ±5% each).
    /// At least 1% of `failover_time`: no margin would tolerate no drift at all.
    pub safety_margin: Duration,
    /// Balancing policy.
    pub policy: BalancingPolicy,
    /// Coordinated: what proves a holder alive, per lease or per worker. Kcl2Compatible always
    /// renews per lease.
    pub liveness: Liveness,
    /// The most leases this worker holds.
    pub max_leases_per_worker: u64,
    /// Kcl2Compatible: the most leases stolen in one taker run (Java `maxLeasesToStealAtOneTime`).
    pub max_leases_to_steal: u64,
    /// Kcl2Compatible: whether very old leases are taken first (Java `enablePriorityLeaseAssignment`).
    pub priority_lease_assignment: bool,
    /// How often the lease table is scanned: by every worker in Kcl2Compatible (Java's taker
    /// interval, `2 * (failover_time + epsilon)` = 20.05 s), by the leader alone in Coordinated.
    pub scan_interval: Duration,
    /// Coordinated: how often a worker writes its heartbeat row and reads its inbox. The renew
    /// interval by default (under worker liveness the heartbeat keeps every lease); 2 s with
    /// [`Config::with_lease_liveness`]. Under worker liveness two must fit in the delivery window.
    pub heartbeat_interval: Duration,
    /// Coordinated: the leader deletes the row of a worker whose heartbeat has not moved for this
    /// long on its clock (a crashed process never deletes its own), so the table holds the
    /// leases, the live workers and few others. At least three heartbeat intervals.
    pub worker_row_retention: Duration,
    /// Coordinated: how often a non-leader reads the leader row to judge the leader's liveness.
    pub leader_check_interval: Duration,
    /// `Coordinated`: how often the standby the leader names in its row scans the table beside
    /// it (`None`: the leader names none). The standby watches every worker row, so when the
    /// leader dies with other workers (its machine, its zone) the standby takes over knowing
    /// how long each row has stood still and fences the dead at its first scan; a follower
    /// that never scanned would watch their rows a failover time first. The other followers
    /// leave the standby a head start ([`Config::standby_head_start`]) before they claim.
    pub standby_scan_interval: Option<Duration>,
    /// The host, rack or zone this worker fails with (`failureDomain` in its worker row): the
    /// leader names a standby outside its own domain when it can. `None`: unknown (kcl-aws
    /// sets the host name unless told otherwise).
    pub failure_domain: Option<alloc::string::String>,
    /// Coordinated: the most handoffs the leader starts per scan, as a fraction (per mille) of
    /// the eligible leases, at least 1. Unowned and expired leases are assigned outside the budget.
    pub move_budget_per_mille: u64,
    /// Coordinated: weigh leases by their `throughputKBps` instead of counting them.
    pub throughput_weighting: bool,
    /// Coordinated: how long an owner may take to hand a lease over. Then its processor is told
    /// the lease is lost, and the lease is handed over once the processor's running call returns,
    /// or expires if it never does.
    pub handoff_timeout: Duration,
    /// Coordinated: how often a new owner looks whether a handoff to it has completed.
    pub handoff_poll_interval: Duration,
    /// How often shards are listed and missing leases created (by the leader in Coordinated).
    pub shard_sync_interval: Duration,
    /// Where shards without parents start. Default [`InitialPosition::Latest`], as in the Java
    /// KCL; read only when a shard's lease is created, so changing it later moves nothing.
    pub initial_position: InitialPosition,
    /// How often a blocked child re-reads its parents' leases.
    pub parent_poll_interval: Duration,
    /// Records asked for per GetRecords call (Kinesis allows at most 10,000).
    pub max_records: u32,
    /// At most this many GetRecords per second per shard is 5; this is the gap between calls.
    pub min_fetch_interval: Duration,
    /// The gap after a call that returned no records, or fewer than `max_records` with the
    /// shard caught up (`MillisBehindLatest` 0). A full batch is followed at `min_fetch_interval`.
    pub idle_time_between_reads: Duration,
    /// Fetched batches held per shard while the processor works on the previous one.
    pub max_prefetched_batches: usize,
    /// First backoff after a throttled or failed call; doubles per attempt, with jitter.
    pub backoff_base: Duration,
    /// Largest backoff.
    pub backoff_max: Duration,
    /// A request without a result after this long is treated as failed (its late result is
    /// ignored). Drivers should time out sooner.
    pub request_timeout: Duration,
    /// How long a shutdown waits for processors to checkpoint. Then a processor still busy is
    /// told its lease is lost, and the lease is released once that call returns, or expires.
    pub shutdown_timeout: Duration,
    /// Delete finished leases once their children have started.
    pub cleanup_finished_leases: bool,
}

impl Default for Config {
    fn default() -> Self {
        let failover_time = Duration::from_secs(10);
        let epsilon = Duration::from_millis(25);
        Self {
            failover_time,
            epsilon,
            safety_margin: Duration::from_secs(1),
            policy: BalancingPolicy::Coordinated,
            liveness: Liveness::Worker,
            max_leases_per_worker: u64::MAX,
            max_leases_to_steal: 1,
            priority_lease_assignment: true,
            scan_interval: Duration::from_secs(2),
            // The renew interval (D / 3 - epsilon): one heartbeat per worker costs what one
            // renewal per lease did.
            heartbeat_interval: Duration::from_millis(failover_time.as_millis() as u64 / 3)
                .saturating_sub(epsilon),
            worker_row_retention: Duration::from_secs(60),
            leader_check_interval: Duration::from_secs(5),
            standby_scan_interval: Some(Duration::from_secs(3)),
            failure_domain: None,
            move_budget_per_mille: 1000,
            throughput_weighting: false,
            handoff_timeout: Duration::from_secs(30),
            handoff_poll_interval: Duration::from_millis(500),
            shard_sync_interval: Duration::from_secs(60),
            initial_position: InitialPosition::Latest,
            parent_poll_interval: Duration::from_secs(2),
            max_records: 10_000,
            min_fetch_interval: Duration::from_millis(200),
            idle_time_between_reads: Duration::from_millis(1000),
            max_prefetched_batches: 2,
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(30),
            cleanup_finished_leases: true,
        }
    }
}

impl Config {
    /// The Java KCL 2.x timing: taker every `2 * (D + epsilon)`, a renewal per lease, everything
    /// else as the default.
    pub fn kcl2() -> Self {
        let c = Self::default().with_lease_liveness();
        Self {
            policy: BalancingPolicy::Kcl2Compatible,
            scan_interval: (c.failover_time + c.epsilon) * 2,
            ..c
        }
    }

    /// This configuration with [`Liveness::Worker`], and the heartbeat at the renew interval
    /// (what one renewal per lease cost is then spent once per worker): the default's.
    pub fn with_worker_liveness(self) -> Self {
        Self {
            liveness: Liveness::Worker,
            heartbeat_interval: self.renew_interval(),
            ..self
        }
    }

    /// This configuration with [`Liveness::Lease`] (a renewal per lease), and a heartbeat every
    /// 2 s: there it only carries assignments and the worker's presence, and picks them up
    /// sooner.
    pub fn with_lease_liveness(self) -> Self {
        Self {
            liveness: Liveness::Lease,
            heartbeat_interval: Duration::from_secs(2),
            ..self
        }
    }

    /// Renewal period: `D / 3 - epsilon` (3.308 s by default), as the Java KCL.
    pub fn renew_interval(&self) -> Duration {
        Duration::from_millis(self.failover_time.as_millis() as u64 / 3)
            .saturating_sub(self.epsilon)
    }

    /// How long after sending its last successful renewal an owner may deliver records.
    pub fn delivery_window(&self) -> Duration {
        self.failover_time.saturating_sub(self.safety_margin)
    }

    /// The clock-rate ratio between any two workers that keeps exclusivity: `D / (D - margin)`.
    pub fn tolerated_clock_rate_ratio(&self) -> f64 {
        let d = self.failover_time.as_secs_f64();
        let w = self.delivery_window().as_secs_f64();
        if w <= 0.0 {
            f64::INFINITY
        } else {
            d / w
        }
    }

    /// Whether the worker's heartbeat, not a renewal per lease, keeps its leases (Coordinated
    /// with [`Liveness::Worker`]).
    pub fn worker_liveness(&self) -> bool {
        self.policy == BalancingPolicy::Coordinated && self.liveness == Liveness::Worker
    }

    /// Coordinated: a worker whose heartbeat counter has not changed for this long is gone.
    pub fn worker_expiry(&self) -> Duration {
        self.heartbeat_interval.saturating_mul(3)
    }

    /// Coordinated: a worker whose heartbeat counter has not changed for this long is given no
    /// lease (what it holds stays until it is fenced or expires). Under worker liveness a
    /// heartbeat interval and a half: when a machine dies, its workers stop receiving before the
    /// first of them is fenced (about a heartbeat interval apart), so the leases that fence frees
    /// go to live workers, not to a dead one that would hold them for another failover time.
    /// Under lease liveness [`Config::worker_expiry`].
    pub fn receiver_expiry(&self) -> Duration {
        if self.worker_liveness() {
            self.heartbeat_interval.saturating_mul(3) / 2
        } else {
            self.worker_expiry()
        }
    }

    /// Coordinated: a worker whose Kinesis calls have gone unanswered (timeouts, connection
    /// failures, 5xx) over this long (unanswered calls reported this far apart, none answered
    /// between) says in its heartbeat that its reads are stalled,
    /// and the leader moves its leases to workers that can read while the stalled ones are a
    /// minority of the holders: half the failover time (5 s by default), so that a host cut off
    /// from Kinesis loses its shards about as soon as a crashed one would.
    pub fn read_stall_time(&self) -> Duration {
        self.failover_time / 2
    }

    /// How much longer than the failover time a follower that is not the standby watches a
    /// leader row naming a standby before it claims: two standby scans and a second. The
    /// standby first sees the row's last counter at most a scan after it was written and claims
    /// at most a scan after the failover time since then; the head start covers both, so the
    /// standby, if alive, claims first.
    pub fn standby_head_start(&self) -> Duration {
        self.standby_scan_interval.map_or(Duration::ZERO, |s| {
            s.saturating_mul(2).saturating_add(Duration::from_secs(1))
        })
    }

    /// Checks the configuration for values that cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.failover_time.is_zero() {
            return Err(ConfigError("failover_time must be positive"));
        }
        // With no margin an owner stops delivering at the very instant another worker may
        // start: any clock running slower than the observer's breaks exclusivity.
        if self.safety_margin < self.failover_time / 100 || self.safety_margin.is_zero() {
            return Err(ConfigError(
                "safety_margin must be at least 1% of failover_time (clocks drift)",
            ));
        }
        if self.safety_margin >= self.failover_time {
            return Err(ConfigError(
                "safety_margin must be shorter than failover_time",
            ));
        }
        if self.renew_interval() >= self.delivery_window() || self.renew_interval().is_zero() {
            return Err(ConfigError(
                "renewals (failover_time / 3 - epsilon) must fit inside the delivery window",
            ));
        }
        if self.max_records == 0 || self.max_records > 10_000 {
            return Err(ConfigError("max_records must be in 1..=10000"));
        }
        if self.max_leases_per_worker == 0 {
            return Err(ConfigError("max_leases_per_worker must be positive"));
        }
        if self.worker_row_retention < self.worker_expiry() {
            return Err(ConfigError(
                "worker_row_retention must be at least three heartbeat intervals",
            ));
        }
        if self.worker_liveness() {
            // One heartbeat lost must not close the window of every lease the worker holds.
            if self.heartbeat_interval.saturating_mul(2) >= self.delivery_window() {
                return Err(ConfigError(
                    "with worker liveness, two heartbeat intervals must fit inside the delivery window",
                ));
            }
            // A dead worker's row is deleted only after its last window has closed.
            if self.worker_row_retention < self.failover_time {
                return Err(ConfigError(
                    "with worker liveness, worker_row_retention must be at least failover_time",
                ));
            }
        }
        if self.scan_interval.is_zero()
            || self.heartbeat_interval.is_zero()
            || self.leader_check_interval.is_zero()
            || self.standby_scan_interval.is_some_and(|s| s.is_zero())
            || self.handoff_poll_interval.is_zero()
            || self.shard_sync_interval.is_zero()
            || self.parent_poll_interval.is_zero()
        {
            return Err(ConfigError("intervals must be positive"));
        }
        // Followers wait the failover time and the standby's head start (two of its scans) before
        // they claim past a named standby: an endless head start leaves a fleet leaderless.
        if self
            .standby_scan_interval
            .is_some_and(|s| s > self.failover_time)
        {
            return Err(ConfigError(
                "standby_scan_interval must not exceed failover_time",
            ));
        }
        // No batch fetched ahead means none is fetched at all: the worker would hold its leases
        // and read nothing.
        if self.max_prefetched_batches == 0 {
            return Err(ConfigError("max_prefetched_batches must be at least 1"));
        }
        if self.request_timeout.is_zero() {
            return Err(ConfigError("request_timeout must be positive"));
        }
        if self.backoff_base.is_zero() || self.backoff_max < self.backoff_base {
            return Err(ConfigError(
                "backoff_base must be positive and backoff_max at least backoff_base",
            ));
        }
        Ok(())
    }
}

/// A configuration that cannot work, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigError(pub &'static str);

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.0)
    }
}

impl core::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_java_timing() {
        let c = Config::kcl2();
        assert_eq!(c.renew_interval(), Duration::from_millis(3308));
        assert_eq!(c.scan_interval, Duration::from_millis(20_050));
        assert!(c.validate().is_ok());
        assert!(Config::default().validate().is_ok());
        assert!((Config::default().tolerated_clock_rate_ratio() - 10.0 / 9.0).abs() < 1e-9);
    }

    /// Values a team may well type that would leave a worker holding leases and idle (no batch
    /// prefetched, so none fetched; every request timed out at once) or looping without a pause
    /// (a zero poll, sync or backoff): each is refused with a reason, and an absurd one is
    /// refused rather than overflowing.
    #[test]
    fn values_that_idle_or_spin_a_worker_are_refused() {
        let refused = |change: fn(&mut Config)| {
            let mut c = Config::default();
            change(&mut c);
            c.validate().is_err()
        };
        assert!(refused(|c| c.max_prefetched_batches = 0));
        assert!(refused(|c| c.request_timeout = Duration::ZERO));
        assert!(refused(|c| c.handoff_poll_interval = Duration::ZERO));
        assert!(refused(|c| c.shard_sync_interval = Duration::ZERO));
        assert!(refused(|c| c.parent_poll_interval = Duration::ZERO));
        assert!(refused(|c| c.backoff_base = Duration::ZERO));
        assert!(refused(|c| c.backoff_max = c.backoff_base / 2));
        assert!(refused(|c| c.heartbeat_interval = Duration::MAX));
        assert!(refused(|c| c.standby_scan_interval = Some(Duration::MAX)));
        assert!(refused(|c| c.failover_time = Duration::MAX));
        let c = Config {
            max_prefetched_batches: 1,
            min_fetch_interval: Duration::ZERO,
            idle_time_between_reads: Duration::ZERO,
            shutdown_timeout: Duration::ZERO,
            ..Config::default()
        };
        assert_eq!(c.validate(), Ok(()), "waits that may be zero");
    }

    /// The Java KCL's effective default (its `InitialPositionInStreamExtended` is `LATEST` unless
    /// set): a team moving over keeps what its consumer reads on a new table.
    #[test]
    fn a_new_shard_starts_at_latest_as_in_the_java_kcl() {
        assert_eq!(Config::default().initial_position, InitialPosition::Latest);
        assert_eq!(Config::kcl2().initial_position, InitialPosition::Latest);
    }

    /// Worker liveness needs two heartbeats inside a delivery window, and a dead worker's row kept
    /// until its window closed; Kcl2Compatible ignores the setting (it always renews per lease).
    #[test]
    fn worker_liveness_checks_the_heartbeat_against_the_window() {
        let worker = Config {
            liveness: Liveness::Worker,
            ..Config::default()
        };
        assert!(worker.worker_liveness());
        assert_eq!(worker.validate(), Ok(()));
        let slow = Config {
            heartbeat_interval: Duration::from_millis(4500),
            ..worker.clone()
        };
        assert!(
            slow.validate().is_err(),
            "two heartbeats are exactly the 9 s window"
        );
        let at_renewals = Config {
            heartbeat_interval: worker.renew_interval(),
            ..worker.clone()
        };
        assert_eq!(at_renewals.validate(), Ok(()));
        let short = Config {
            worker_row_retention: Duration::from_secs(9),
            heartbeat_interval: Duration::from_secs(1),
            ..worker
        };
        assert!(short.validate().is_err());
        let kcl2 = Config {
            liveness: Liveness::Worker,
            ..Config::kcl2()
        };
        assert!(!kcl2.worker_liveness());
        assert!(Config::default().worker_liveness());
        assert_eq!(
            Config::default().heartbeat_interval,
            Config::default().renew_interval()
        );
        assert!(!Config::default().with_lease_liveness().worker_liveness());
    }

    #[test]
    fn rejects_impossible_configs() {
        let c = Config {
            safety_margin: Duration::from_secs(10),
            ..Config::default()
        };
        assert!(c.validate().is_err());
        let c = Config {
            safety_margin: Duration::from_secs(7),
            ..Config::default()
        };
        assert!(c.validate().is_err());
        let c = Config {
            max_records: 0,
            ..Config::default()
        };
        assert!(c.validate().is_err());
    }

    #[test]
    fn a_safety_margin_too_small_to_tolerate_any_drift_is_refused() {
        for margin in [0, 99] {
            let c = Config {
                safety_margin: Duration::from_millis(margin),
                ..Config::default()
            };
            assert_eq!(
                c.validate(),
                Err(ConfigError(
                    "safety_margin must be at least 1% of failover_time (clocks drift)"
                )),
                "{margin} ms"
            );
        }
        let c = Config {
            safety_margin: Duration::from_millis(100),
            ..Config::default()
        };
        assert!(c.validate().is_ok());
    }
}
