//! The lease protocol: every write any worker makes to the lease table, as data.
//!
//! A [`LeaseOp`] names one operation of the protocol with the values it depends on, and
//! [`LeaseOp::to_write`] turns it into the conditional [`LeaseWrite`] a driver carries out. This
//! module is the only place in the crate that builds a `LeaseWrite`, so the table below is the
//! whole protocol. `c` is the lease counter the issuer last saw (the holder: the counter its own
//! last write left), `me` the issuing worker.
//!
//! | operation | issued by | condition | update | the condition failing means |
//! |---|---|---|---|---|
//! | [`Renew`](LeaseOp::Renew) | the holder, every renew interval | `leaseCounter = c` and (`leaseOwner = me` or `checkpointOwner = me`) | `leaseCounter = c+1`, `throughputKBps` | another worker changed the lease: it is lost, unless a write of this holder's own whose outcome is unknown explains it (then a consistent read decides) |
//! | [`Checkpoint`](LeaseOp::Checkpoint) (commit) | the holder, for its processor | as renew | counter `c+1`, `checkpoint` + sub-sequence, `ownerSwitchesSinceCheckpoint = 0`, the pending checkpoint removed | as renew |
//! | [`Checkpoint`](LeaseOp::Checkpoint) (prepare) | the holder, for its processor | as renew | counter `c+1`, `pendingCheckpoint` + sub-sequence and its state (removed when none) | as renew |
//! | [`CompleteHandoff`](LeaseOp::CompleteHandoff) | the old owner, once its processor finished | as renew | counter `c+1`, `checkpointOwner` and `ownerIncarnation` removed, `ownerSwitchesSinceCheckpoint + 1` | the lease moved on; nothing more to do |
//! | [`Release`](LeaseOp::Release) | the holder (shutdown without a successor, a failed processor) | `leaseCounter = c` and `leaseOwner = me` | counter `c+1`, `leaseOwner`, `checkpointOwner` and `ownerIncarnation` removed | the lease moved on, or a handoff the holder has not seen is under way: a consistent read tells, and the holder completes the handoff instead (the lease is the receiver's) |
//! | [`FinishShard`](LeaseOp::FinishShard) | the holder, after the processor's `shard_ended` | as renew | counter `c+1`, `checkpoint = SHARD_END`, the pending checkpoint, `leaseOwner`, `checkpointOwner` and `ownerIncarnation` removed, `childShardIds` | as complete handoff |
//! | [`Create`](LeaseOp::Create) | shard sync; a parent at its shard end, for split children | the row is absent | the whole row, unowned; a root lease at `LATEST` / `AT_TIMESTAMP` with `startingTimestamp` | it exists already, which is as good |
//! | [`Take`](LeaseOp::Take) | a worker's Java 2.x taker (`Kcl2Compatible`) | `leaseCounter = c` (seen unchanged for the failover time, or unowned) | `leaseOwner = me`, counter `c+1`, `checkpointOwner` and `ownerIncarnation` removed, `ownerSwitchesSinceCheckpoint + 1` unless `me` owned it | another worker renewed or took it first |
//! | [`Assign`](LeaseOp::Assign) | the leader, for an unowned or expired lease | `leaseCounter = c` | `leaseOwner = to`, counter `c+1`, `checkpointOwner` and `ownerIncarnation` removed, `ownerSwitchesSinceCheckpoint + 1` | the lease changed since the scan; the next plan sees it |
//! | [`InitiateHandoff`](LeaseOp::InitiateHandoff) | the leader, to move a live lease | `leaseOwner = from` and no `checkpointOwner` | `leaseOwner = to`, `checkpointOwner = from` | the owner changed or a handoff is under way |
//! | [`Acquire`](LeaseOp::Acquire) | the new owner, after an assignment or handoff | `leaseOwner = me`, no `checkpointOwner`, and `leaseCounter = c` (the counter the assignment's note names, or the new owner last read) | counter `+ 1`; under worker liveness `ownerIncarnation = mine` (the lease then lives while this process's worker row does) | the old owner has not completed yet, or renewed meanwhile (read the row and try again at its counter), or the lease moved on |
//! | [`Delete`](LeaseOp::Delete) | the leader's cleanup | `leaseCounter = c` and `checkpoint = SHARD_END` | the row deleted | the row changed; the next scan decides again |
//! | [`Heartbeat`](LeaseOp::Heartbeat) | every worker (`Coordinated`), every heartbeat interval | no `incarnation`, or `incarnation = mine`; a takeover: `leaseCounter = c` (the row of a process with this id stood still for the failover time). Under worker liveness, once one landed: `incarnation = mine` only; a process that gave up every lease with its incarnation: also `incarnation = previous` (its notes are removed) | `entityType`, `incarnation = mine`, counter `+ 1`, `maxLeases`, `leaving`, `readsStalled` (set while true, else removed), acknowledged keys removed from `assignedLeases` (a takeover removes them all) | another process has this worker id: the newcomer reads the row, and stops with an error if its counter moves, or takes it over once it has stood still for the failover time; a registered worker whose row was taken over stops |
//! | [`Notify`](LeaseOp::Notify) | the leader, after an assignment or handoff to another worker, and again for an assignment not acquired whose new owner's row names no note of it (worker liveness); an operator, to the holder of a lease it evicted under worker liveness | the worker row exists | the note `<leaseKey>@<counter>` (an assignment: the counter it left, at which the new owner acquires) or `<leaseKey>@h<counter>` (read the row first: the new owner of a handoff before it acquires; a holder, by one renewal, to find a handoff or an eviction) added to `assignedLeases` (a heartbeat acknowledges each note it saw, so a later assignment of the same lease is a new note) | the worker is gone; its lease expires and is assigned again |
//! | [`HeadsUp`](LeaseOp::HeadsUp) | the leader (worker liveness), to the workers it would give the leases of a worker whose row a consistent read shows still past `receiver_expiry` | the worker row exists | the note `<leaseKey>@p<counter>:<from>:<to>` (the lease's counter now; the assignment is due between `from` and `to` ms after the write) added to `assignedLeases`; the worker heartbeats every `handoff_poll_interval` from a heartbeat interval before that window to a scan interval after it, as its own clock tells from when it read the note (rule 7 of *Worker liveness*); acknowledged as any note | the worker is gone; nothing to do |
//! | [`ClaimLeader`](LeaseOp::ClaimLeader) | a follower that saw the leader row absent, unowned, its own or expired | the row absent (`c` unknown), or `leaseCounter = c` | `leaseOwner = me`, counter `c+1` (a new row: 1); under worker liveness `leaderHeartbeat` = its own last heartbeat, else removed; `standby` = the follower it names, else removed | another worker claimed it first |
//! | [`RenewLeader`](LeaseOp::RenewLeader) | the leader, every renew interval (under worker liveness, after each of its heartbeats that lands) | `leaseCounter = c` and `leaseOwner = me` | counter `c+1`; under worker liveness `leaderHeartbeat` = what that heartbeat left in its worker row; `standby` = the follower it names, else removed | leadership is lost |
//! | [`ReleaseLeader`](LeaseOp::ReleaseLeader) | the leader, when its shutdown begins (it plans no more) | as renew leader | `leaseOwner`, `leaderHeartbeat` and `standby` removed, counter `c+1` | it was lost already |
//! | [`FenceWorker`](LeaseOp::FenceWorker) | the leader (worker liveness), for a worker row whose counter it saw stand still for the failover time | `leaseCounter = c` and `incarnation = i` (as seen) | `incarnation` and `assignedLeases` removed; the counter stays | the worker heartbeat meanwhile, or the row changed hands: nothing to fence |
//! | [`DeleteWorkerRow`](LeaseOp::DeleteWorkerRow) | every worker, at the end of its shutdown | `incarnation = mine` | the worker row deleted | the row is gone or another process's; nothing to do |
//! | [`DeleteDeadWorkerRow`](LeaseOp::DeleteDeadWorkerRow) | the leader's cleanup, for a row whose counter stood still for `worker_row_retention`; an operator's prune (`kcl-admin prune-workers`) | `leaseCounter = c` and the `incarnation` seen (a row written again by a new process, its counter starting over, is another row) | the worker row deleted | the worker heartbeat meanwhile: it lives |
//! | [`Evict`](LeaseOp::Evict) | an operator (`kcl-admin release`), then a `Notify` (`@h`) of the holder under worker liveness, which renews nothing | `leaseCounter = c` (the counter the operator read) | counter `c+1`, `leaseOwner`, `checkpointOwner` and `ownerIncarnation` removed | the lease changed since it was read: read it again |
//! | [`ResetCheckpoint`](LeaseOp::ResetCheckpoint) | an operator (`kcl-admin set-checkpoint`), on a lease nobody holds | `leaseCounter = c`, no `leaseOwner`, no `checkpointOwner` | counter `c+1`, `checkpoint` + sub-sequence, `ownerSwitchesSinceCheckpoint = 0`, the pending checkpoint removed | a worker took the lease, or it changed: release it first, or read it again |
//!
//! **Fencing.** Every operation of a holder on its own lease is conditional on the counter its
//! last write left and on the holder being `leaseOwner` (or, during a handoff, `checkpointOwner`),
//! so once any other worker has changed the lease, nothing the old holder sends can land: a
//! paused or partitioned worker can never move a checkpoint or finish a shard it lost. An
//! operator's eviction is such a change: the holder's next renewal (under worker liveness, the
//! one a note in its row asks for) fails and it stops delivering,
//! at the latest when its delivery window closes; the worker the lease goes to next may start
//! before that, so records of the evicted ownership's last moments can be processed twice, as in
//! any failover, and its checkpoints cannot land. Every
//! ownership begins with a write that bumps the counter (a take, or the acquire that follows an
//! assignment or a handoff), which is why the counter right after it is the ownership's
//! [`FencingToken`](crate::FencingToken). The unit tests below check each operation
//! against [`write::apply`](crate::write::apply) and, by property, that no holder operation lands
//! on a row whose counter or owner differ.
//!
//! **Checkpoints** never move backwards. A holder writes its processor's checkpoint requests
//! one at a time, in the order they were made, and judges each position against the lease as
//! its own last write left it when the request's turn comes (not when it was made: a newer
//! request ahead of it may land first); a commit of the prepared checkpoint commits what is
//! prepared at that moment. A write of unknown outcome (a timeout or a 5xx) may have landed, so
//! it is sent again, or verified by a read, before anything behind it; its processor hears
//! `OutcomeUnknown` only if the lease is lost before the outcome is known.
//!
//! **Where a lease starts.** A lease at a record checkpoint resumes at it. A child starts at
//! `TRIM_HORIZON`, so nothing between its parent's end and its own start is lost (also when the
//! parent's lease is gone and a sibling is leased). A root lease at `LATEST` or `AT_TIMESTAMP`
//! starts at the `startingTimestamp` fixed when it was created ([`crate::sync`]: the listing's
//! wall-clock time less one second, or the configured time), so every owner until the first
//! checkpoint reads from the same place, and no record put after the lease was created is lost
//! to a failover. A row without `startingTimestamp` (the Java KCL created it) is resolved at each
//! acquisition, as Java does.
//!
//! **Where a lease ends early.** A held shard whose GetShardIterator or GetRecords answers
//! NotFound, or whose GetShardIterator refuses its position as invalid, makes its holder list the
//! stream: a shard no longer listed (expired past retention, or deleted) is finished with
//! `SHARD_END`, so its children start; one still listed is read again after a backoff, and a
//! refused position is reported (`Event::IteratorRefused`), never skipped.
//!
//! **One process per worker id** (`Coordinated`): a heartbeat
//! lands only on a row with no `incarnation` or the writer's own, so of two live processes with
//! one id only the first is registered; the other neither claims leadership nor acquires (both
//! wait for the first heartbeat that lands), sees the row's counter move, and stops. A row that
//! stood still for the failover time is taken over, and the notes it held are dropped: the leases
//! they named are assigned again only once expired on the leader's clock. Worker rows are
//! observed by counter and incarnation together, so a row deleted and written again by a new
//! process is never mistaken for the dead one, and a shutting-down worker deletes its row only
//! once its last heartbeat has been answered.
//!
//! **Expiry** is judged on the observer's own clock ([`crate::observe`]): a row is expired when
//! its counter has not changed for `failover_time` since the observer first saw that value. A
//! holder stops delivering `failover_time - safety_margin` after it *sent* its last renewal that
//! landed, so it stops before any observer may take the lease while clock rates differ by less
//! than [`Config::tolerated_clock_rate_ratio`](crate::Config::tolerated_clock_rate_ratio). A
//! host suspend must count as time passed on the holder's clock (the crate page's driver
//! contract, [`crate::time::Suspension`]): a clock stopped through it runs at rate 0, far outside
//! the bound.
//!
//! **Graceful handoff** (`Coordinated`), in five steps:
//! 1. the leader writes [`InitiateHandoff`](LeaseOp::InitiateHandoff): the new owner becomes
//!    `leaseOwner`, the old one `checkpointOwner`; then [`Notify`](LeaseOp::Notify)s the new owner;
//! 2. the old owner learns it from the row its next renewal returns, stops delivering, and calls
//!    its processor's `shutdown_requested`, which may still checkpoint (its writes stay
//!    conditional on `checkpointOwner = me`);
//! 3. the old owner writes [`CompleteHandoff`](LeaseOp::CompleteHandoff), removing
//!    `checkpointOwner`;
//! 4. the new owner, told by the `assignedLeases` of its heartbeat row, polls the row until
//!    `checkpointOwner` is gone and writes [`Acquire`](LeaseOp::Acquire);
//! 5. the acquire's returned row is its lease, from the checkpoint the old owner left. A handoff
//!    that takes longer than `handoff_timeout` is forced: the old processor is told the lease is
//!    lost, the old owner renews no more, and it completes the handoff when the processor's
//!    running call returns; if it never does, the lease expires (after the old owner's window
//!    closed) and the leader assigns it again. The new owner never processes beside a call
//!    still running at the old one. A shutdown that outlasts `shutdown_timeout` ends the same
//!    way.
//!
//! The leader tells the new owner also of a move whose write had an unknown outcome (a timeout,
//! a 5xx), and sends the move again with its next plan if it did not land. The same move leaves
//! the same note, which the new owner's acknowledgement of the first would remove unread. So a
//! new owner that reads the row as it was before the move its note names (an assignment: a
//! counter below the note's; a handoff: the note's counter, another owner, no old owner
//! finishing) polls the row for two scan intervals before it gives the note up.
//!
//! The leader hands no lease on that its last assignment or handoff gave to a worker that has
//! not acquired it yet (the new handoff would name as checkpoint owner a worker that holds
//! nothing, and the lease would stall until it expired); a receiver whose heartbeat stands
//! still past [`Config::receiver_expiry`](crate::Config::receiver_expiry) first frees it again.
//! Under worker liveness a lease that stood still that long, assigned and not acquired (no
//! `ownerIncarnation`, no `checkpointOwner`), whose new owner's row lives and names no note of
//! it, is noted again, once per leader: its note was lost with the leader that assigned it, or
//! removed when the new owner registered again. Otherwise it would wait out the failover time.
//!
//! **Worker liveness** (`Coordinated` with [`Liveness::Worker`](crate::config::Liveness::Worker),
//! the default): no lease is renewed. A worker's heartbeat row proves it alive for every lease it holds, and a
//! lease row is written only when its ownership or its checkpoint changes. The rules:
//! 1. An acquire writes `ownerIncarnation`, the acquiring process; every write that ends an
//!    ownership (or starts one without an acquire) removes it. A lease with `ownerIncarnation`
//!    lives while the row of its holder (the checkpoint owner during a handoff, else the owner)
//!    names that incarnation and its counter moves. A lease without it (an assignment not yet
//!    acquired, a handoff completed, a row of the Java KCL or of `Liveness::Lease`) keeps the
//!    counter rule of **Expiry** above.
//! 2. A holder delivers only until `failover_time - safety_margin` after *sending* the last
//!    heartbeat that landed; its own writes (an acquire, a checkpoint) never move that. Once a
//!    heartbeat is known to have landed, the next ones are conditional on `incarnation = mine`.
//! 3. The leader fences a worker row whose counter it saw stand still for `failover_time` on its
//!    own clock ([`FenceWorker`](LeaseOp::FenceWorker), conditional on that counter and
//!    incarnation), and assigns that worker's leases only once the fence landed. A worker whose
//!    heartbeat is refused (fenced, deleted, taken over) drops every lease at once and registers
//!    again under a fresh incarnation.
//! 4. Every lease a process stops holding leaves the table by a write of its own (release,
//!    completed handoff, shard end) or by a change of its row's incarnation; otherwise it would
//!    look alive for as long as the process heartbeats. So a worker whose window closed (its
//!    heartbeats failed, or their answers were lost) gives up its incarnation, which its next
//!    heartbeat may replace at once (`previous`); a lease whose abandoned processor call outlives
//!    its window is left by its last write; and a worker row is deleted at shutdown only once
//!    every lease was left.
//! 5. A handoff's old owner is notified too (the same `@h` note): no renewal shows it the row,
//!    so it sends one renewal to read it back, and goes on as in **Graceful handoff**.
//! 6. The leader renews the leader row after each of its heartbeats that lands, naming what that
//!    heartbeat left in its worker row (`leaderHeartbeat`: the counter mixed with the incarnation,
//!    as observers watch it). A follower that claims the row once it stood still for
//!    `failover_time` counts the old leader's worker row, if it still shows that heartbeat, as
//!    seen since it first read that leader row: a leader that died is fenced at the new leader's
//!    first scan, not after a second failover time of watching.
//! 7. A worker whose row a scan shows still past `receiver_expiry` gets nothing, and the leader
//!    reads its row again, consistently; still, the workers that would receive its leases are
//!    sent a heads-up ([`HeadsUp`](LeaseOp::HeadsUp)) naming when the fence is due, and
//!    heartbeat every `handoff_poll_interval` around then, so they read an assignment a poll
//!    after it is made rather than up to a heartbeat interval after.
//!    The leader's plans prefer them among workers of equal load. A heads-up writes only a note:
//!    it changes no lease and no condition, so exclusivity never rests on it.
//!
//! **Stalled reads** (`Coordinated`, either liveness). A worker whose Kinesis calls have gone
//! unanswered (timeouts, connection failures, 5xx; any refusal is an answer, an iterator obtained
//! is none) over [`Config::read_stall_time`](crate::Config::read_stall_time), that is, unanswered
//! calls reported that far apart and no answer between, sets `readsStalled` with a heartbeat
//! sent at that moment, and lists the stream at its first heartbeat at least `backoff_max` after
//! the last listing until Kinesis answers; the first answer clears the flag with the next
//! heartbeat. While the workers whose row says so are fewer than half of the workers holding leases, the leader plans them as leaving: they
//! receive nothing and hand their leases over by **Graceful handoff**; when half or more say so,
//! Kinesis is failing for the fleet, not for a host, and nothing moves. Like `leaving`, the flag
//! only steers the plan: exclusivity never rests on it.
//!
//! *Exclusivity.* Say W's last heartbeat that landed was sent at true time `t_s`, and the leader
//! first saw the counter it left at `t_f >= t_s`. The fence lands only if no heartbeat landed
//! since, and after it none does; it comes no sooner than `failover_time` after `t_f` on the
//! leader's clock. W stops at `failover_time - safety_margin` after `t_s` on its own clock, so
//! it stops first while the two clocks' rates differ by less than
//! [`Config::tolerated_clock_rate_ratio`](crate::Config::tolerated_clock_rate_ratio), the same
//! bound as per-lease renewals. A row whose incarnation changed (takeover, given up, deleted)
//! frees its leases without a fence: each such change happens only once the old process's
//! windows closed (a takeover and a dead row's deletion wait `failover_time` of stillness, a
//! process gives its incarnation up only after its window closed). The leader believes such a
//! change only for a lease it saw in an earlier scan, because a scan reads rows one at a time
//! and may read the worker row before the process registered. Checkpoints stay conditional on
//! the counter and owner: one that lands between the fence and the reassignment belongs to the
//! only ownership there is. Rule 6 keeps the same inequality: the heartbeat a leader row names
//! landed before its leader sent that row, so before the new leader first read it (`t_f` is then
//! that first read), and the new leader claims no sooner than `failover_time` after it.
//!
//! *Mixed settings.* Every leader, whatever its own setting, judges a lease by the rule its row
//! asks for (by its holder's worker row with `ownerIncarnation`, by its counter without), so a
//! fleet may switch between `Liveness::Lease` and `Liveness::Worker` worker by worker. kcl-rs
//! versions before worker liveness know only the counter rule: their leaders would take a
//! worker-liveness lease after `failover_time`, so a fleet of them upgrades in two rolls (first
//! to this version with `Liveness::Lease`, then to `Liveness::Worker`). A fleet with Java KCL
//! workers must use `Kcl2Compatible`.
//!
//! **Election** (`Coordinated`): the leader row is a lease on leadership. A follower reads it
//! every `leader_check_interval` (eventually consistent: see below) and claims it when it is
//! absent, unowned, its own or expired on the follower's clock; the leader renews it with its
//! leases (under worker liveness, after each heartbeat that lands, rule 6 above) and acts as
//! leader only inside the same delivery window a lease has. Safety never depends on the leader:
//! each of its writes is conditional on what it saw.
//!
//! *Standby.* The leader names in its row (`standby`) a follower that may be given leases, not
//! leaving, outside the leader's failure domain when one is (`failureDomain` of the worker rows,
//! [`Config::failure_domain`](crate::Config::failure_domain)), keeping the one it named while it
//! qualifies. The standby scans the whole table every
//! [`standby_scan_interval`](crate::Config::standby_scan_interval) into the same view and
//! observer the leader keeps, acts on nothing, and reads the leader row from its scans. When
//! the leader dies together with other workers (its machine, its zone), the standby claims
//! knowing since when it saw each of their rows stand still, and fences them at its first scan
//! as leader; a follower that never scanned would first watch their rows for a failover time.
//! The other followers treat a row naming another standby as expired only after
//! `failover_time +` [`Config::standby_head_start`](crate::Config::standby_head_start) (two
//! standby scans and a second), so a live standby claims first; if it died too, they claim after
//! that and watch the rows as before. Every follower looks at the row again the moment it
//! would be free, not up to an interval later. Exclusivity is untouched: the standby's
//! sightings are an observer's like the leader's, and its claim is the same conditional write.
//!
//! *Eventually consistent reads.* Scans and the followers' reads of the leader row are
//! eventually consistent (half the read units); every other read is consistent. A stale read
//! shows a version that was written, before the read: a counter first seen in it was written no
//! later than the sighting, so the stillness an observer measures from its first sighting is
//! never longer than the true one, and every write that acts on a read (a claim, a fence) is
//! conditional on the counter read, so one based on a superseded version is refused. An older
//! version read after a newer one counts as a change, which only delays a judgement. A scan may
//! also miss rows written in its last moments: when a leader's scan shows worker rows its last
//! scan did not, it moves no lease from it (orphans are still assigned) and scans again at
//! once, consistently, planning the handoffs from that. Workers that start together (a
//! scale-up) are then all seen, and the surplus moves once, to all of them.

use alloc::boxed::Box;
use alloc::vec::Vec;

use crate::item::{AttributeValue, Item};
use crate::lease::{
    attr, key_set, Assignment, Lease, LeaseKey, WorkerId, WorkerRow, ENTITY_LEADER, ENTITY_WORKER,
    LEADER_KEY,
};
use crate::sequence::Position;
use crate::write::{Condition, LeaseWrite, Update, WriteAction, WriteKind};

mod parts;

use parts::{bump, held_by, leads, owned_by, set_checkpoint, set_standby, string};

/// What a checkpoint operation writes.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum CheckpointKind {
    /// Move `checkpoint`: records up to the position are processed.
    Commit,
    /// Two-phase: write `pendingCheckpoint` (with the application's bytes), to be committed later.
    Prepare {
        /// Application bytes stored with the prepared checkpoint.
        state: Option<Vec<u8>>,
    },
}

/// One operation of the lease protocol (see the [module documentation](self) for the table).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum LeaseOp {
    /// An operator frees a lease, whoever holds it.
    Evict {
        /// The lease.
        shard: LeaseKey,
        /// The counter the operator read.
        counter: u64,
    },
    /// An operator moves the checkpoint of a lease nobody holds.
    ResetCheckpoint {
        /// The lease.
        shard: LeaseKey,
        /// The counter the operator read.
        counter: u64,
        /// The new checkpoint.
        at: Position,
    },
    /// The holder bumps the counter to prove it is alive, with its recent throughput.
    Renew {
        /// The lease.
        shard: LeaseKey,
        /// The counter the holder's last write left.
        counter: u64,
        /// The holding worker.
        holder: WorkerId,
        /// Throughput over the last renew interval, smoothed, in KB/s.
        throughput_kbps: f64,
    },
    /// The holder moves the checkpoint, or prepares one.
    Checkpoint {
        /// The lease.
        shard: LeaseKey,
        /// The counter the holder's last write left.
        counter: u64,
        /// The holding worker.
        holder: WorkerId,
        /// The position.
        at: Position,
        /// Commit or prepare.
        kind: CheckpointKind,
    },
    /// The old owner of a handoff gives the lease to the new one.
    CompleteHandoff {
        /// The lease.
        shard: LeaseKey,
        /// The counter the holder's last write left.
        counter: u64,
        /// The old owner.
        holder: WorkerId,
    },
    /// The holder gives the lease up, leaving it unowned.
    Release {
        /// The lease.
        shard: LeaseKey,
        /// The counter the holder's last write left.
        counter: u64,
        /// The holding worker.
        holder: WorkerId,
    },
    /// The holder checkpoints `SHARD_END` and gives the finished lease up.
    FinishShard {
        /// The lease.
        shard: LeaseKey,
        /// The counter the holder's last write left.
        counter: u64,
        /// The holding worker.
        holder: WorkerId,
        /// The shard's children (`childShardIds`; not written when empty).
        children: Vec<LeaseKey>,
    },
    /// A new lease row, if there is none.
    Create {
        /// The row to write (boxed: a row is several times the size of every other operation).
        lease: Box<Lease>,
    },
    /// A taker takes a lease it saw unowned or expired (or steals one, Java 2.x style).
    Take {
        /// The lease.
        shard: LeaseKey,
        /// The counter the taker saw.
        counter: u64,
        /// The taking worker.
        taker: WorkerId,
        /// The owner the taker saw.
        from: Option<WorkerId>,
    },
    /// The leader gives an unowned or expired lease to a worker.
    Assign {
        /// The lease.
        shard: LeaseKey,
        /// The counter the leader saw.
        counter: u64,
        /// The new owner.
        to: WorkerId,
    },
    /// The leader asks a live owner to hand a lease to another worker.
    InitiateHandoff {
        /// The lease.
        shard: LeaseKey,
        /// The owner now.
        from: WorkerId,
        /// The new owner.
        to: WorkerId,
    },
    /// The new owner of an assignment or handoff starts holding the lease.
    Acquire {
        /// The lease.
        shard: LeaseKey,
        /// The new owner.
        worker: WorkerId,
        /// The counter the assignment left, or the new owner last read.
        counter: u64,
        /// Under worker liveness, the acquiring process (written as `ownerIncarnation`): the
        /// lease then lives while that process's worker row does.
        incarnation: Option<crate::item::Text>,
    },
    /// The leader deletes a finished lease.
    Delete {
        /// The lease.
        shard: LeaseKey,
        /// The counter the leader saw.
        counter: u64,
    },
    /// A worker's heartbeat row: alive, its capacity, and which assignments it has seen.
    Heartbeat {
        /// The worker.
        worker: WorkerId,
        /// This process.
        incarnation: crate::item::Text,
        /// Take the row over from a process with the same id whose heartbeat stood still at
        /// this counter for the failover time.
        takeover: Option<u64>,
        /// Under worker liveness, whether this process's heartbeat landed before: then only a
        /// row with its own `incarnation` takes it, so a fenced, deleted or taken-over row
        /// refuses it.
        registered: bool,
        /// Under worker liveness, this process's previous incarnation, which it gave up with
        /// every lease it held: its row may be taken over at once.
        previous: Option<crate::item::Text>,
        /// The most leases it will hold.
        max_leases: u64,
        /// It is shutting down.
        leaving: bool,
        /// Every Kinesis call it made has gone unanswered for the stall time.
        reads_stalled: bool,
        /// Assigned leases it has taken note of (removed from `assignedLeases`).
        acked: Vec<crate::item::Text>,
        /// The host, rack or zone it fails with (`failureDomain`), if known.
        failure_domain: Option<crate::item::Text>,
    },
    /// The leader tells a worker about a lease assigned or handed to it.
    Notify {
        /// The worker.
        worker: WorkerId,
        /// The lease.
        shard: LeaseKey,
        /// The counter the assignment left (or the handoff saw): it tells this assignment from
        /// an earlier one of the same lease.
        counter: u64,
        /// A handoff (the old owner still moves the counter) rather than an assignment.
        handoff: bool,
    },
    /// The leader tells a worker that a lease may soon be assigned to it (worker liveness: the
    /// holder's heartbeat is overdue), so that it reads its row often until then.
    HeadsUp {
        /// The worker.
        worker: WorkerId,
        /// The lease.
        shard: LeaseKey,
        /// The lease's counter now: it tells this heads-up from an earlier one.
        counter: u64,
        /// When the assignment may come: between these many milliseconds after this write.
        due_ms: (u64, u64),
    },
    /// A follower claims the leader row.
    ClaimLeader {
        /// The claiming worker.
        worker: WorkerId,
        /// The counter it saw; `None` when the row did not exist.
        counter: Option<u64>,
        /// Under worker liveness, its own worker row's liveness after its last heartbeat that
        /// landed (`leaderHeartbeat`, see [`crate::lease::LeaderRow::heartbeat`]).
        heartbeat: Option<u64>,
        /// The follower it names to watch the table beside it (`standby`), if any.
        standby: Option<WorkerId>,
    },
    /// The leader renews the leader row.
    RenewLeader {
        /// The leader.
        worker: WorkerId,
        /// The counter its last write left.
        counter: u64,
        /// As in [`LeaseOp::ClaimLeader`].
        heartbeat: Option<u64>,
        /// As in [`LeaseOp::ClaimLeader`].
        standby: Option<WorkerId>,
    },
    /// The leader steps down.
    ReleaseLeader {
        /// The leader.
        worker: WorkerId,
        /// The counter its last write left.
        counter: u64,
    },
    /// The leader fences a worker whose heartbeat counter stood still for the failover time on
    /// its clock (worker liveness): none of that process's heartbeats lands again.
    FenceWorker {
        /// The worker.
        worker: WorkerId,
        /// The counter the leader saw stand still.
        counter: u64,
        /// The incarnation of the row it saw.
        incarnation: crate::item::Text,
    },
    /// A worker leaving deletes its heartbeat row.
    DeleteWorkerRow {
        /// The worker.
        worker: WorkerId,
        /// This process: another's row with the same id is left alone.
        incarnation: crate::item::Text,
    },
    /// The leader deletes the row of a worker that stopped heartbeating long ago.
    DeleteDeadWorkerRow {
        /// The worker.
        worker: WorkerId,
        /// The counter the leader saw stand still.
        counter: u64,
        /// The incarnation of the row it saw (`None`: the row had none).
        incarnation: Option<crate::item::Text>,
    },
}

impl LeaseOp {
    /// The conditional write that carries the operation out.
    pub fn to_write(&self) -> LeaseWrite {
        let (key, action, condition) = match self {
            Self::Evict { shard, counter } => (
                shard.as_str().into(),
                WriteAction::Update(alloc::vec![
                    bump(*counter),
                    Update::Remove(attr::LEASE_OWNER),
                    Update::Remove(attr::CHECKPOINT_OWNER),
                    Update::Remove(attr::OWNER_INCARNATION),
                ]),
                Condition::eq_num(attr::LEASE_COUNTER, *counter),
            ),
            Self::ResetCheckpoint { shard, counter, at } => {
                let (checkpoint, sub) = at.to_attribute();
                let mut updates = alloc::vec![bump(*counter)];
                set_checkpoint(&mut updates, checkpoint, sub);
                (
                    shard.as_str().into(),
                    WriteAction::Update(updates),
                    Condition::And(alloc::vec![
                        Condition::eq_num(attr::LEASE_COUNTER, *counter),
                        Condition::Absent(attr::LEASE_OWNER),
                        Condition::Absent(attr::CHECKPOINT_OWNER),
                    ]),
                )
            }
            Self::Renew {
                shard,
                counter,
                holder,
                throughput_kbps,
            } => (
                shard.as_str().into(),
                WriteAction::Update(alloc::vec![
                    bump(*counter),
                    Update::Set(
                        attr::THROUGHPUT_KBPS,
                        AttributeValue::N(crate::decimal::format_fixed3(*throughput_kbps).into()),
                    ),
                ]),
                held_by(*counter, holder),
            ),
            Self::Checkpoint {
                shard,
                counter,
                holder,
                at,
                kind,
            } => {
                let (checkpoint, sub) = at.to_attribute();
                let mut updates = alloc::vec![bump(*counter)];
                match kind {
                    CheckpointKind::Prepare { state } => {
                        updates.push(Update::Set(
                            attr::PENDING_CHECKPOINT,
                            AttributeValue::S(checkpoint),
                        ));
                        updates.push(Update::Set(
                            attr::PENDING_CHECKPOINT_SUB,
                            AttributeValue::number(sub),
                        ));
                        updates.push(match state {
                            Some(s) => Update::Set(
                                attr::PENDING_CHECKPOINT_STATE,
                                AttributeValue::B(s.clone()),
                            ),
                            None => Update::Remove(attr::PENDING_CHECKPOINT_STATE),
                        });
                    }
                    CheckpointKind::Commit => {
                        set_checkpoint(&mut updates, checkpoint, sub);
                    }
                }
                (
                    shard.as_str().into(),
                    WriteAction::Update(updates),
                    held_by(*counter, holder),
                )
            }
            Self::CompleteHandoff {
                shard,
                counter,
                holder,
            } => (
                shard.as_str().into(),
                WriteAction::Update(alloc::vec![
                    bump(*counter),
                    Update::Remove(attr::CHECKPOINT_OWNER),
                    Update::Remove(attr::OWNER_INCARNATION),
                    Update::Increment(attr::OWNER_SWITCHES, 1),
                ]),
                held_by(*counter, holder),
            ),
            Self::Release {
                shard,
                counter,
                holder,
            } => (
                shard.as_str().into(),
                WriteAction::Update(alloc::vec![
                    bump(*counter),
                    Update::Remove(attr::LEASE_OWNER),
                    Update::Remove(attr::CHECKPOINT_OWNER),
                    Update::Remove(attr::OWNER_INCARNATION),
                ]),
                owned_by(*counter, holder),
            ),
            Self::FinishShard {
                shard,
                counter,
                holder,
                children,
            } => {
                let (checkpoint, sub) = Position::ShardEnd.to_attribute();
                let mut updates = alloc::vec![bump(*counter)];
                set_checkpoint(&mut updates, checkpoint, sub);
                updates.push(Update::Remove(attr::LEASE_OWNER));
                updates.push(Update::Remove(attr::CHECKPOINT_OWNER));
                updates.push(Update::Remove(attr::OWNER_INCARNATION));
                if !children.is_empty() {
                    updates.push(Update::Set(attr::CHILD_SHARD_IDS, key_set(children)));
                }
                (
                    shard.as_str().into(),
                    WriteAction::Update(updates),
                    held_by(*counter, holder),
                )
            }
            Self::Create { lease } => (
                lease.key.as_str().into(),
                WriteAction::Put(lease.to_item()),
                Condition::NotExists,
            ),
            Self::Take {
                shard,
                counter,
                taker,
                from,
            } => {
                let mut updates = alloc::vec![
                    Update::Set(attr::LEASE_OWNER, string(taker.as_str())),
                    Update::Set(attr::LEASE_COUNTER, AttributeValue::number(counter + 1)),
                    Update::Remove(attr::CHECKPOINT_OWNER),
                    Update::Remove(attr::OWNER_INCARNATION),
                ];
                if from.as_ref() != Some(taker) {
                    updates.push(Update::Increment(attr::OWNER_SWITCHES, 1));
                }
                (
                    shard.as_str().into(),
                    WriteAction::Update(updates),
                    Condition::eq_num(attr::LEASE_COUNTER, *counter),
                )
            }
            Self::Assign { shard, counter, to } => (
                shard.as_str().into(),
                WriteAction::Update(alloc::vec![
                    Update::Set(attr::LEASE_OWNER, string(to.as_str())),
                    Update::Set(attr::LEASE_COUNTER, AttributeValue::number(counter + 1)),
                    Update::Remove(attr::CHECKPOINT_OWNER),
                    Update::Remove(attr::OWNER_INCARNATION),
                    Update::Increment(attr::OWNER_SWITCHES, 1),
                ]),
                Condition::eq_num(attr::LEASE_COUNTER, *counter),
            ),
            Self::InitiateHandoff { shard, from, to } => (
                shard.as_str().into(),
                WriteAction::Update(alloc::vec![
                    Update::Set(attr::LEASE_OWNER, string(to.as_str())),
                    Update::Set(attr::CHECKPOINT_OWNER, string(from.as_str())),
                ]),
                Condition::And(alloc::vec![
                    Condition::eq_str(attr::LEASE_OWNER, from.as_str()),
                    Condition::Absent(attr::CHECKPOINT_OWNER),
                ]),
            ),
            Self::Acquire {
                shard,
                worker,
                counter,
                incarnation,
            } => (
                shard.as_str().into(),
                WriteAction::Update(match incarnation {
                    None => alloc::vec![Update::Increment(attr::LEASE_COUNTER, 1)],
                    Some(i) => alloc::vec![
                        Update::Increment(attr::LEASE_COUNTER, 1),
                        Update::Set(attr::OWNER_INCARNATION, string(i.as_str())),
                    ],
                }),
                Condition::And(alloc::vec![
                    Condition::eq_str(attr::LEASE_OWNER, worker.as_str()),
                    Condition::Absent(attr::CHECKPOINT_OWNER),
                    Condition::eq_num(attr::LEASE_COUNTER, *counter),
                ]),
            ),
            Self::Delete { shard, counter } => (
                shard.as_str().into(),
                WriteAction::Delete,
                Condition::And(alloc::vec![
                    Condition::eq_num(attr::LEASE_COUNTER, *counter),
                    Condition::eq_str(attr::CHECKPOINT, Position::SHARD_END),
                ]),
            ),
            Self::Heartbeat {
                worker,
                incarnation,
                takeover,
                registered,
                previous,
                max_leases,
                leaving,
                reads_stalled,
                acked,
                failure_domain,
            } => {
                let mut updates = alloc::vec![
                    Update::Set(attr::ENTITY_TYPE, string(ENTITY_WORKER)),
                    Update::Set(attr::INCARNATION, string(incarnation.as_str())),
                    Update::Increment(attr::LEASE_COUNTER, 1),
                    Update::Set(attr::MAX_LEASES, AttributeValue::number(*max_leases)),
                    Update::Set(attr::LEAVING, AttributeValue::Bool(*leaving)),
                ];
                // Written only while true (and removed once false again, from a row that had
                // it): the heartbeat of a worker that reads well costs no byte more.
                updates.push(if *reads_stalled {
                    Update::Set(attr::READS_STALLED, AttributeValue::Bool(true))
                } else {
                    Update::Remove(attr::READS_STALLED)
                });
                if let Some(domain) = failure_domain {
                    updates.push(Update::Set(attr::FAILURE_DOMAIN, string(domain.as_str())));
                }
                let condition = match takeover {
                    // The notes were the other process's: it may have acquired those leases.
                    Some(counter) => {
                        updates.push(Update::Remove(attr::ASSIGNED_LEASES));
                        Condition::eq_num(attr::LEASE_COUNTER, *counter)
                    }
                    None => {
                        if !acked.is_empty() {
                            updates.push(Update::DeleteFromSet(
                                attr::ASSIGNED_LEASES,
                                acked.iter().map(|k| k.as_str().into()).collect(),
                            ));
                        }
                        if *registered {
                            Condition::eq_str(attr::INCARNATION, incarnation.as_str())
                        } else {
                            let mut free = alloc::vec![
                                Condition::Absent(attr::INCARNATION),
                                Condition::eq_str(attr::INCARNATION, incarnation.as_str()),
                            ];
                            if let Some(p) = previous {
                                // The notes were for the previous incarnation, which gave up
                                // everything it held.
                                updates.push(Update::Remove(attr::ASSIGNED_LEASES));
                                free.push(Condition::eq_str(attr::INCARNATION, p.as_str()));
                            }
                            Condition::Or(free)
                        }
                    }
                };
                (
                    WorkerRow::key(worker),
                    WriteAction::Update(updates),
                    condition,
                )
            }
            Self::Notify {
                worker,
                shard,
                counter,
                handoff,
            } => add_note(worker, Assignment::note(shard, *counter, *handoff)),
            Self::HeadsUp {
                worker,
                shard,
                counter,
                due_ms,
            } => add_note(worker, Assignment::heads_up(shard, *counter, *due_ms)),
            Self::ClaimLeader {
                worker,
                counter,
                heartbeat,
                standby,
            } => match counter {
                None => {
                    let mut item = Item::new();
                    item.insert(attr::ENTITY_TYPE.into(), string(ENTITY_LEADER));
                    item.insert(attr::LEASE_OWNER.into(), string(worker.as_str()));
                    item.insert(attr::LEASE_COUNTER.into(), AttributeValue::number(1));
                    if let Some(h) = heartbeat {
                        item.insert(attr::LEADER_HEARTBEAT.into(), AttributeValue::number(*h));
                    }
                    if let Some(s) = standby {
                        item.insert(attr::STANDBY.into(), string(s.as_str()));
                    }
                    (
                        LEADER_KEY.into(),
                        WriteAction::Put(item),
                        Condition::NotExists,
                    )
                }
                // The predecessor's heartbeat goes: it is not this leader's.
                Some(c) => (
                    LEADER_KEY.into(),
                    WriteAction::Update(alloc::vec![
                        Update::Set(attr::LEASE_OWNER, string(worker.as_str())),
                        Update::Set(attr::LEASE_COUNTER, AttributeValue::number(c + 1)),
                        match heartbeat {
                            Some(h) => {
                                Update::Set(attr::LEADER_HEARTBEAT, AttributeValue::number(*h))
                            }
                            None => Update::Remove(attr::LEADER_HEARTBEAT),
                        },
                        set_standby(standby.as_ref()),
                    ]),
                    Condition::eq_num(attr::LEASE_COUNTER, *c),
                ),
            },
            Self::RenewLeader {
                worker,
                counter,
                heartbeat,
                standby,
            } => {
                let mut updates = alloc::vec![bump(*counter), set_standby(standby.as_ref())];
                if let Some(h) = heartbeat {
                    updates.push(Update::Set(
                        attr::LEADER_HEARTBEAT,
                        AttributeValue::number(*h),
                    ));
                }
                (
                    LEADER_KEY.into(),
                    WriteAction::Update(updates),
                    leads(*counter, worker),
                )
            }
            Self::ReleaseLeader { worker, counter } => (
                LEADER_KEY.into(),
                WriteAction::Update(alloc::vec![
                    Update::Remove(attr::LEASE_OWNER),
                    Update::Set(attr::LEASE_COUNTER, AttributeValue::number(counter + 1)),
                    Update::Remove(attr::LEADER_HEARTBEAT),
                    Update::Remove(attr::STANDBY),
                ]),
                leads(*counter, worker),
            ),
            Self::FenceWorker {
                worker,
                counter,
                incarnation,
            } => (
                WorkerRow::key(worker),
                WriteAction::Update(alloc::vec![
                    Update::Remove(attr::INCARNATION),
                    Update::Remove(attr::ASSIGNED_LEASES),
                ]),
                Condition::And(alloc::vec![
                    Condition::eq_num(attr::LEASE_COUNTER, *counter),
                    Condition::eq_str(attr::INCARNATION, incarnation.as_str()),
                ]),
            ),
            Self::DeleteWorkerRow {
                worker,
                incarnation,
            } => (
                WorkerRow::key(worker),
                WriteAction::Delete,
                Condition::eq_str(attr::INCARNATION, incarnation.as_str()),
            ),
            Self::DeleteDeadWorkerRow {
                worker,
                counter,
                incarnation,
            } => (
                WorkerRow::key(worker),
                WriteAction::Delete,
                Condition::And(alloc::vec![
                    Condition::eq_num(attr::LEASE_COUNTER, *counter),
                    match incarnation {
                        Some(i) => Condition::eq_str(attr::INCARNATION, i.as_str()),
                        None => Condition::Absent(attr::INCARNATION),
                    },
                ]),
            ),
        };
        LeaseWrite {
            key,
            action,
            condition,
            return_item: self.returns_item(),
            kind: self.kind(),
        }
    }

    /// Why the write is issued, for metrics, logs and billing.
    pub fn kind(&self) -> WriteKind {
        match self {
            Self::Renew { .. } => WriteKind::Renew,
            // Shard end is the last checkpoint of a lease.
            Self::Checkpoint { .. } | Self::FinishShard { .. } | Self::ResetCheckpoint { .. } => {
                WriteKind::Checkpoint
            }
            Self::CompleteHandoff { .. } => WriteKind::CompleteHandoff,
            Self::Release { .. } | Self::Evict { .. } => WriteKind::Release,
            Self::Create { .. } => WriteKind::Create,
            Self::Take { .. } => WriteKind::Take,
            Self::Assign { .. } => WriteKind::Assign,
            Self::InitiateHandoff { .. } => WriteKind::InitiateHandoff,
            Self::Acquire { .. } => WriteKind::Acquire,
            Self::Delete { .. } | Self::DeleteDeadWorkerRow { .. } => WriteKind::Delete,
            Self::Heartbeat { .. } | Self::DeleteWorkerRow { .. } => WriteKind::WorkerHeartbeat,
            Self::Notify { .. } => WriteKind::Notify,
            Self::HeadsUp { .. } => WriteKind::HeadsUp,
            Self::ClaimLeader { .. } | Self::RenewLeader { .. } | Self::ReleaseLeader { .. } => {
                WriteKind::Leader
            }
            Self::FenceWorker { .. } => WriteKind::Fence,
        }
    }

    /// Whether the issuer needs the row as the write left it: a holder's renewals and checkpoints
    /// learn of handoffs from it, a take or acquire starts its lease from it, a heartbeat reads
    /// its assignments from it. (`ReturnValues=ALL_NEW` costs no read units.)
    fn returns_item(&self) -> bool {
        matches!(
            self,
            Self::Renew { .. }
                | Self::Checkpoint { .. }
                | Self::Take { .. }
                | Self::Acquire { .. }
                | Self::Heartbeat { .. }
        )
    }

    /// The counter the row has once the write landed, where the issuer can know it.
    pub fn counter_after(&self) -> Option<u64> {
        match self {
            Self::Renew { counter, .. }
            | Self::Checkpoint { counter, .. }
            | Self::CompleteHandoff { counter, .. }
            | Self::Release { counter, .. }
            | Self::Evict { counter, .. }
            | Self::ResetCheckpoint { counter, .. }
            | Self::FinishShard { counter, .. }
            | Self::Take { counter, .. }
            | Self::Assign { counter, .. }
            | Self::RenewLeader { counter, .. }
            | Self::ReleaseLeader { counter, .. } => Some(counter + 1),
            Self::ClaimLeader { counter, .. } => Some(counter.map_or(1, |c| c + 1)),
            Self::Create { lease } => Some(lease.counter),
            Self::InitiateHandoff { .. }
            | Self::Acquire { .. }
            | Self::Delete { .. }
            | Self::Heartbeat { .. }
            | Self::Notify { .. }
            | Self::HeadsUp { .. }
            | Self::DeleteWorkerRow { .. }
            | Self::FenceWorker { .. }
            | Self::DeleteDeadWorkerRow { .. } => None,
        }
    }
}

/// The write that adds `note` to a worker row's `assignedLeases`, if the row exists.
fn add_note(
    worker: &WorkerId,
    note: crate::item::Text,
) -> (alloc::string::String, WriteAction, Condition) {
    (
        WorkerRow::key(worker),
        WriteAction::Update(alloc::vec![Update::AddToSet(
            attr::ASSIGNED_LEASES,
            alloc::vec![note.as_str().into()],
        )]),
        Condition::Exists,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::{LeaderRow, Row, WorkerRow};
    use crate::write::{apply, ConditionFailed};
    use alloc::vec;

    fn key(s: &str) -> LeaseKey {
        LeaseKey::from(s)
    }

    fn worker(s: &str) -> WorkerId {
        WorkerId::from(s)
    }

    fn at(sequence: &str) -> Position {
        Position::parse(sequence, 0).expect("a sequence number")
    }

    /// `shard-1` held by `w1` at counter 7, checkpointed at 100, with a prepared checkpoint.
    fn held() -> Lease {
        let mut l = Lease::new(key("shard-1"), at("100"));
        l.owner = Some(worker("w1"));
        l.counter = 7;
        l.pending_checkpoint = Some(at("150"));
        l.pending_checkpoint_state = Some(vec![1, 2]);
        l.owner_switches_since_checkpoint = 2;
        l
    }

    /// Applies `op` to `before` as DynamoDB would, and decodes the lease row it leaves.
    fn lease_after(before: Option<&Lease>, op: &LeaseOp) -> Result<Option<Lease>, ConditionFailed> {
        let item = before.map(Lease::to_item);
        let after = apply(item.as_ref(), &op.to_write())?;
        Ok(after.map(|i| Lease::from_item(&i).expect("a lease row")))
    }

    fn row_after(before: Option<&Item>, op: &LeaseOp) -> Result<Option<Row>, ConditionFailed> {
        let after = apply(before, &op.to_write())?;
        Ok(after.map(|i| Row::from_item(&i).expect("a row")))
    }

    fn renew(counter: u64, holder: &str) -> LeaseOp {
        LeaseOp::Renew {
            shard: key("shard-1"),
            counter,
            holder: worker(holder),
            throughput_kbps: 2.5,
        }
    }

    /// An operator's eviction frees the lease whoever holds it, and fences the holder out; a
    /// checkpoint reset lands only on a lease nobody holds.
    #[test]
    fn operator_operations_free_a_lease_and_move_an_unheld_checkpoint() {
        let before = held();
        let evict = LeaseOp::Evict {
            shard: key("shard-1"),
            counter: 7,
        };
        let after = lease_after(Some(&before), &evict)
            .expect("the counter matches")
            .expect("a row");
        assert_eq!((after.owner.as_ref(), after.counter), (None, 8));
        assert_eq!(after.checkpoint, before.checkpoint, "the checkpoint stays");
        assert_eq!(
            lease_after(Some(&after), &renew(7, "w1")),
            Err(ConditionFailed),
            "the evicted holder is fenced out"
        );
        assert_eq!(
            lease_after(Some(&after), &evict),
            Err(ConditionFailed),
            "an eviction at an old counter"
        );
        let reset = |counter| LeaseOp::ResetCheckpoint {
            shard: key("shard-1"),
            counter,
            at: at("50"),
        };
        assert_eq!(
            lease_after(Some(&before), &reset(7)),
            Err(ConditionFailed),
            "held by w1"
        );
        let moved = lease_after(Some(&after), &reset(8))
            .expect("unowned at 8")
            .expect("a row");
        assert_eq!((moved.checkpoint.clone(), moved.counter), (at("50"), 9));
        assert_eq!(moved.pending_checkpoint, None);
        assert_eq!(moved.owner_switches_since_checkpoint, 0);
        let mut handing = after;
        handing.checkpoint_owner = Some(worker("w2"));
        assert_eq!(
            lease_after(Some(&handing), &reset(8)),
            Err(ConditionFailed),
            "a handoff under way"
        );
    }

    /// Checks what each holder operation does to the row it is meant for, and what it returns.
    #[test]
    fn holder_operations_do_what_the_table_says() {
        let before = held();
        type Change = fn(&mut Lease);
        let cases: Vec<(LeaseOp, Change)> = vec![
            (renew(7, "w1"), |l| l.throughput_kbps = Some(2.5)),
            (
                LeaseOp::Checkpoint {
                    shard: key("shard-1"),
                    counter: 7,
                    holder: worker("w1"),
                    at: at("120"),
                    kind: CheckpointKind::Commit,
                },
                |l| {
                    l.checkpoint = at("120");
                    l.pending_checkpoint = None;
                    l.pending_checkpoint_state = None;
                    l.owner_switches_since_checkpoint = 0;
                },
            ),
            (
                LeaseOp::Checkpoint {
                    shard: key("shard-1"),
                    counter: 7,
                    holder: worker("w1"),
                    at: at("130"),
                    kind: CheckpointKind::Prepare {
                        state: Some(vec![9]),
                    },
                },
                |l| {
                    l.pending_checkpoint = Some(at("130"));
                    l.pending_checkpoint_state = Some(vec![9]);
                },
            ),
            (
                LeaseOp::Checkpoint {
                    shard: key("shard-1"),
                    counter: 7,
                    holder: worker("w1"),
                    at: at("130"),
                    kind: CheckpointKind::Prepare { state: None },
                },
                |l| {
                    l.pending_checkpoint = Some(at("130"));
                    l.pending_checkpoint_state = None;
                },
            ),
            (
                LeaseOp::Release {
                    shard: key("shard-1"),
                    counter: 7,
                    holder: worker("w1"),
                },
                |l| l.owner = None,
            ),
            (
                LeaseOp::FinishShard {
                    shard: key("shard-1"),
                    counter: 7,
                    holder: worker("w1"),
                    children: vec![key("shard-3"), key("shard-2")],
                },
                |l| {
                    l.checkpoint = Position::ShardEnd;
                    l.pending_checkpoint = None;
                    l.pending_checkpoint_state = None;
                    l.owner_switches_since_checkpoint = 0;
                    l.owner = None;
                    l.child_shard_ids = vec![key("shard-2"), key("shard-3")];
                },
            ),
            (
                LeaseOp::FinishShard {
                    shard: key("shard-1"),
                    counter: 7,
                    holder: worker("w1"),
                    children: Vec::new(),
                },
                |l| {
                    l.checkpoint = Position::ShardEnd;
                    l.pending_checkpoint = None;
                    l.pending_checkpoint_state = None;
                    l.owner_switches_since_checkpoint = 0;
                    l.owner = None;
                },
            ),
        ];
        for (op, change) in cases {
            let mut expected = before.clone();
            expected.counter = 8;
            change(&mut expected);
            assert_eq!(
                lease_after(Some(&before), &op),
                Ok(Some(expected)),
                "{op:?}"
            );
            assert_eq!(op.counter_after(), Some(8), "{op:?}");
            assert_eq!(op.to_write().key, "shard-1");
        }
    }

    #[test]
    fn a_handoff_moves_the_lease_in_three_writes() {
        let mut lease = held();
        let initiate = LeaseOp::InitiateHandoff {
            shard: key("shard-1"),
            from: worker("w1"),
            to: worker("w2"),
        };
        let during = lease_after(Some(&lease), &initiate)
            .expect("w1 owns it")
            .expect("row");
        lease.owner = Some(worker("w2"));
        lease.checkpoint_owner = Some(worker("w1"));
        assert_eq!(during, lease, "the counter stays: w1 still holds it");
        assert_eq!(
            lease_after(Some(&during), &initiate),
            Err(ConditionFailed),
            "one handoff at a time"
        );
        let acquire = |counter| LeaseOp::Acquire {
            shard: key("shard-1"),
            worker: worker("w2"),
            counter,
            incarnation: None,
        };
        assert_eq!(
            lease_after(Some(&during), &acquire(7)),
            Err(ConditionFailed),
            "not before the old owner completes"
        );
        // The old owner still renews and checkpoints as checkpoint owner.
        let renewed = lease_after(Some(&during), &renew(7, "w1"))
            .expect("w1 is checkpoint owner")
            .expect("row");
        let complete = LeaseOp::CompleteHandoff {
            shard: key("shard-1"),
            counter: 8,
            holder: worker("w1"),
        };
        let completed = lease_after(Some(&renewed), &complete)
            .expect("ok")
            .expect("row");
        assert_eq!(completed.owner, Some(worker("w2")));
        assert_eq!(completed.checkpoint_owner, None);
        assert_eq!(completed.counter, 9);
        assert_eq!(completed.owner_switches_since_checkpoint, 3);
        assert_eq!(
            lease_after(Some(&completed), &acquire(8)),
            Err(ConditionFailed),
            "only at the counter the new owner read: an acquire whose answer was lost cannot \
             land after a later one"
        );
        let acquired = lease_after(Some(&completed), &acquire(9))
            .expect("ok")
            .expect("row");
        assert_eq!(acquired.counter, 10, "the new ownership's token");
        assert_eq!(
            lease_after(Some(&acquired), &acquire(9)),
            Err(ConditionFailed),
            "a late copy of the acquire that landed does not land again"
        );
        assert_eq!(
            lease_after(Some(&acquired), &renew(9, "w1")),
            Err(ConditionFailed),
            "the old owner is fenced"
        );
    }

    #[test]
    fn takers_and_the_leader_change_owners_only_from_what_they_saw() {
        let lease = held();
        let take = |counter, taker: &str| LeaseOp::Take {
            shard: key("shard-1"),
            counter,
            taker: worker(taker),
            from: Some(worker("w1")),
        };
        let taken = lease_after(Some(&lease), &take(7, "w2"))
            .expect("ok")
            .expect("row");
        assert_eq!(taken.owner, Some(worker("w2")));
        assert_eq!(taken.counter, 8);
        assert_eq!(taken.owner_switches_since_checkpoint, 3);
        assert_eq!(take(7, "w2").counter_after(), Some(8));
        let retaken = lease_after(Some(&lease), &take(7, "w1"))
            .expect("ok")
            .expect("row");
        assert_eq!(retaken.owner_switches_since_checkpoint, 2, "no switch");
        assert_eq!(
            lease_after(Some(&lease), &take(6, "w2")),
            Err(ConditionFailed)
        );
        let mut handing = lease.clone();
        handing.checkpoint_owner = Some(worker("w3"));
        let assign = |counter| LeaseOp::Assign {
            shard: key("shard-1"),
            counter,
            to: worker("w2"),
        };
        let assigned = lease_after(Some(&handing), &assign(7))
            .expect("ok")
            .expect("row");
        assert_eq!(assigned.owner, Some(worker("w2")));
        assert_eq!(assigned.checkpoint_owner, None);
        assert_eq!(assigned.counter, 8);
        assert_eq!(assigned.owner_switches_since_checkpoint, 3);
        assert_eq!(
            lease_after(Some(&handing), &assign(8)),
            Err(ConditionFailed)
        );
        let wrong_owner = LeaseOp::InitiateHandoff {
            shard: key("shard-1"),
            from: worker("w3"),
            to: worker("w2"),
        };
        assert_eq!(
            lease_after(Some(&lease), &wrong_owner),
            Err(ConditionFailed)
        );
    }

    #[test]
    fn rows_are_created_once_and_deleted_only_when_finished() {
        let lease = Lease::new(key("shard-9"), Position::TrimHorizon);
        let create = LeaseOp::Create {
            lease: Box::new(lease.clone()),
        };
        assert_eq!(create.to_write().key, "shard-9");
        assert_eq!(lease_after(None, &create), Ok(Some(lease.clone())));
        assert_eq!(lease_after(Some(&lease), &create), Err(ConditionFailed));
        let delete = |counter| LeaseOp::Delete {
            shard: key("shard-9"),
            counter,
        };
        assert_eq!(
            lease_after(Some(&lease), &delete(0)),
            Err(ConditionFailed),
            "not finished"
        );
        let mut finished = lease;
        finished.checkpoint = Position::ShardEnd;
        assert_eq!(
            lease_after(Some(&finished), &delete(1)),
            Err(ConditionFailed)
        );
        assert_eq!(lease_after(Some(&finished), &delete(0)), Ok(None));
    }

    #[test]
    fn heartbeats_and_notifications_keep_the_worker_row() {
        let heartbeat = |acked: Vec<crate::item::Text>, leaving| LeaseOp::Heartbeat {
            failure_domain: None,
            worker: worker("w1"),
            incarnation: "a".into(),
            takeover: None,
            registered: false,
            previous: None,
            max_leases: 5,
            leaving,
            reads_stalled: false,
            acked,
        };
        let notify = |shard: &str| LeaseOp::Notify {
            worker: worker("w1"),
            shard: key(shard),
            counter: 3,
            handoff: false,
        };
        assert_eq!(row_after(None, &notify("shard-1")), Err(ConditionFailed));
        let first = apply(None, &heartbeat(Vec::new(), false).to_write())
            .expect("always")
            .expect("row");
        let told = apply(Some(&first), &notify("shard-1").to_write())
            .and_then(|i| apply(i.as_ref(), &notify("shard-2").to_write()))
            .expect("exists")
            .expect("row");
        let note = |shard: &str, counter| Assignment::note(&key(shard), counter, false);
        // An acknowledgement of another assignment of shard-1 removes nothing.
        let other = row_after(Some(&told), &heartbeat(vec![note("shard-1", 2)], false));
        assert!(matches!(other, Ok(Some(Row::Worker(row))) if row.assigned.len() == 2));
        let acked = row_after(Some(&told), &heartbeat(vec![note("shard-1", 3)], true));
        match acked {
            Ok(Some(Row::Worker(row))) => {
                assert_eq!(row.worker, worker("w1"));
                assert_eq!(row.counter, 2);
                assert_eq!(row.max_leases, 5);
                assert!(row.leaving);
                assert_eq!(
                    row.assigned,
                    vec![Assignment {
                        shard: key("shard-2"),
                        note: note("shard-2", 3)
                    }]
                );
            }
            other => panic!("{other:?}"),
        }
        let gone = |incarnation: &str| LeaseOp::DeleteWorkerRow {
            worker: worker("w1"),
            incarnation: incarnation.into(),
        };
        assert_eq!(
            row_after(Some(&told), &gone("b")),
            Err(ConditionFailed),
            "another process's row"
        );
        let gone = gone("a");
        assert_eq!(row_after(Some(&told), &gone), Ok(None));
        assert_eq!(gone.kind(), WriteKind::WorkerHeartbeat);
        let dead = |counter| LeaseOp::DeleteDeadWorkerRow {
            worker: worker("w1"),
            counter,
            incarnation: Some("a".into()),
        };
        let other_process = LeaseOp::DeleteDeadWorkerRow {
            worker: worker("w1"),
            counter: 1,
            incarnation: Some("b".into()),
        };
        assert_eq!(
            row_after(Some(&told), &other_process),
            Err(ConditionFailed),
            "a row of another process, its counter at the same value"
        );
        assert_eq!(row_after(Some(&told), &dead(1)), Ok(None), "still at 1");
        assert_eq!(
            row_after(Some(&told), &dead(0)),
            Err(ConditionFailed),
            "it heartbeat since: alive"
        );
    }

    /// One process per worker id: a heartbeat of another incarnation is refused, unless it
    /// takes over a row whose counter it saw stand still, which drops the notes of the first.
    #[test]
    fn a_worker_row_belongs_to_one_process() {
        let heartbeat = |incarnation: &str, takeover| LeaseOp::Heartbeat {
            failure_domain: None,
            worker: worker("w1"),
            incarnation: incarnation.into(),
            takeover,
            registered: false,
            previous: None,
            max_leases: 5,
            leaving: false,
            reads_stalled: false,
            acked: Vec::new(),
        };
        let told = told_row(&heartbeat("a", None));
        assert_eq!(
            row_after(Some(&told), &heartbeat("b", None)),
            Err(ConditionFailed)
        );
        assert!(matches!(
            row_after(Some(&told), &heartbeat("a", None)),
            Ok(Some(Row::Worker(WorkerRow { counter: 2, .. })))
        ));
        assert_eq!(
            row_after(Some(&told), &heartbeat("b", Some(0))),
            Err(ConditionFailed),
            "the counter moved since"
        );
        match row_after(Some(&told), &heartbeat("b", Some(1))) {
            Ok(Some(Row::Worker(row))) => {
                assert_eq!(row.incarnation.as_deref(), Some("b"));
                assert!(
                    row.assigned.is_empty(),
                    "the first process's notes are gone"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    /// w1's worker row after its first heartbeat, with a note of `shard-1` at counter 3.
    fn told_row(first: &LeaseOp) -> Item {
        let row = apply(None, &first.to_write())
            .expect("no row yet")
            .expect("row");
        let notify = LeaseOp::Notify {
            worker: worker("w1"),
            shard: key("shard-1"),
            counter: 3,
            handoff: false,
        };
        apply(Some(&row), &notify.to_write())
            .expect("exists")
            .expect("row")
    }

    fn heartbeat_of(incarnation: &str, registered: bool, previous: Option<&str>) -> LeaseOp {
        LeaseOp::Heartbeat {
            failure_domain: None,
            worker: worker("w1"),
            incarnation: incarnation.into(),
            takeover: None,
            registered,
            previous: previous.map(Into::into),
            max_leases: 5,
            leaving: false,
            reads_stalled: false,
            acked: Vec::new(),
        }
    }

    fn worker_row(item: &Item) -> WorkerRow {
        match Row::from_item(item) {
            Ok(Row::Worker(row)) => row,
            other => panic!("{other:?}"),
        }
    }

    /// Worker liveness: the leader's fence lands only on the row as it saw it stand still, and
    /// from then on the fenced process's heartbeats are refused; a fresh incarnation's first
    /// heartbeat registers on the fenced row, and a process may give up its own incarnation for
    /// a fresh one at once, dropping the notes of the old.
    #[test]
    fn a_fenced_worker_heartbeats_no_more() {
        let told = told_row(&heartbeat_of("a", false, None));
        let fence = |counter, incarnation: &str| LeaseOp::FenceWorker {
            worker: worker("w1"),
            counter,
            incarnation: incarnation.into(),
        };
        assert_eq!(fence(1, "a").kind(), WriteKind::Fence);
        assert_eq!(fence(1, "a").counter_after(), None);
        assert_eq!(
            row_after(Some(&told), &fence(0, "a")),
            Err(ConditionFailed),
            "it heartbeat since the leader looked"
        );
        assert_eq!(
            row_after(Some(&told), &fence(1, "b")),
            Err(ConditionFailed),
            "another process's row"
        );
        let fenced = apply(Some(&told), &fence(1, "a").to_write())
            .expect("as seen")
            .expect("the row stays");
        let row = worker_row(&fenced);
        assert_eq!(row.incarnation, None);
        assert_eq!(
            row.counter, 1,
            "a dead row's deletion still finds its counter"
        );
        assert!(row.assigned.is_empty(), "the notes went with the process");
        assert_eq!(
            row_after(Some(&fenced), &heartbeat_of("a", true, None)),
            Err(ConditionFailed),
            "the fenced process is refused"
        );
        assert_eq!(
            row_after(None, &heartbeat_of("a", true, None)),
            Err(ConditionFailed),
            "a registered heartbeat never writes a deleted row again"
        );
        let again = apply(Some(&fenced), &heartbeat_of("c", false, None).to_write())
            .expect("a fenced row is free")
            .expect("row");
        assert_eq!(worker_row(&again).incarnation.as_deref(), Some("c"));
        assert_eq!(
            row_after(Some(&told), &heartbeat_of("c", false, None)),
            Err(ConditionFailed),
            "a live row of another process is not"
        );
        let renewed = apply(Some(&told), &heartbeat_of("c", false, Some("a")).to_write())
            .expect("its own previous incarnation")
            .expect("row");
        let row = worker_row(&renewed);
        assert_eq!(row.incarnation.as_deref(), Some("c"));
        assert!(
            row.assigned.is_empty(),
            "the old incarnation's notes are dropped"
        );
        assert_eq!(
            row_after(Some(&told), &heartbeat_of("c", false, Some("z"))),
            Err(ConditionFailed)
        );
    }

    /// An acquire under worker liveness names the process; every write that ends an ownership
    /// (or starts one without an acquire) removes it, so the attribute always names the holder
    /// of the current ownership or nobody.
    #[test]
    fn the_owner_incarnation_lives_from_acquire_to_the_end_of_the_ownership() {
        let mut assigned = held();
        assigned.owner = Some(worker("w2"));
        let acquire = LeaseOp::Acquire {
            shard: key("shard-1"),
            worker: worker("w2"),
            counter: 7,
            incarnation: Some("i2".into()),
        };
        let acquired = lease_after(Some(&assigned), &acquire)
            .expect("assigned to w2")
            .expect("row");
        assert_eq!(acquired.owner_incarnation.as_deref(), Some("i2"));
        assert_eq!(acquired.counter, 8);
        let ends = [
            LeaseOp::Assign {
                shard: key("shard-1"),
                counter: 8,
                to: worker("w3"),
            },
            LeaseOp::Release {
                shard: key("shard-1"),
                counter: 8,
                holder: worker("w2"),
            },
            LeaseOp::Evict {
                shard: key("shard-1"),
                counter: 8,
            },
            LeaseOp::FinishShard {
                shard: key("shard-1"),
                counter: 8,
                holder: worker("w2"),
                children: Vec::new(),
            },
            LeaseOp::Take {
                shard: key("shard-1"),
                counter: 8,
                taker: worker("w3"),
                from: Some(worker("w2")),
            },
        ];
        for op in &ends {
            let after = lease_after(Some(&acquired), op)
                .expect("lands")
                .expect("row");
            assert_eq!(after.owner_incarnation, None, "{op:?}");
        }
        let mut handing = acquired.clone();
        handing.owner = Some(worker("w3"));
        handing.checkpoint_owner = Some(worker("w2"));
        let complete = LeaseOp::CompleteHandoff {
            shard: key("shard-1"),
            counter: 8,
            holder: worker("w2"),
        };
        let completed = lease_after(Some(&handing), &complete)
            .expect("lands")
            .expect("row");
        assert_eq!(completed.owner_incarnation, None, "w3 has not acquired yet");
        let renew = renew(8, "w2");
        let renewed = lease_after(Some(&acquired), &renew)
            .expect("lands")
            .expect("row");
        assert_eq!(renewed.owner_incarnation.as_deref(), Some("i2"));
        let lease_liveness = LeaseOp::Acquire {
            shard: key("shard-1"),
            worker: worker("w2"),
            counter: 7,
            incarnation: None,
        };
        let plain = lease_after(Some(&assigned), &lease_liveness)
            .expect("lands")
            .expect("row");
        assert_eq!(plain.owner_incarnation, None);
        assert_eq!(plain.to_item(), {
            let mut l = assigned;
            l.counter = 8;
            l.to_item()
        });
    }

    /// The leader row names the leader's last heartbeat (worker liveness) when its leader writes
    /// it; a claim without one removes the predecessor's, and so does a release.
    #[test]
    fn the_leader_row_is_a_lease_on_leadership() {
        let claim = |worker_name: &str, counter| LeaseOp::ClaimLeader {
            standby: (worker_name == "w1").then(|| worker("w3")),
            worker: worker(worker_name),
            counter,
            heartbeat: (worker_name == "w1").then_some(41),
        };
        let leader = |owner: Option<&str>, counter| {
            Ok(Some(Row::Leader(LeaderRow {
                owner: owner.map(worker),
                counter,
                heartbeat: (owner == Some("w1")).then_some(41 + counter - 1),
                standby: (owner == Some("w1")).then(|| worker("w3")),
            })))
        };
        let first = apply(None, &claim("w1", None).to_write())
            .expect("absent")
            .expect("row");
        assert_eq!(row_after(None, &claim("w1", None)), leader(Some("w1"), 1));
        assert_eq!(claim("w1", None).counter_after(), Some(1));
        assert_eq!(
            row_after(Some(&first), &claim("w2", None)),
            Err(ConditionFailed)
        );
        let renew = |worker_name: &str, counter: u64| LeaseOp::RenewLeader {
            standby: Some(worker("w3")),
            worker: worker(worker_name),
            counter,
            heartbeat: Some(41 + counter),
        };
        assert_eq!(
            row_after(Some(&first), &renew("w1", 1)),
            leader(Some("w1"), 2)
        );
        assert_eq!(
            row_after(Some(&first), &renew("w2", 1)),
            Err(ConditionFailed)
        );
        assert_eq!(
            row_after(Some(&first), &renew("w1", 2)),
            Err(ConditionFailed)
        );
        let taken = apply(Some(&first), &claim("w2", Some(1)).to_write())
            .expect("counter 1")
            .expect("row");
        assert_eq!(
            Row::from_item(&taken),
            Ok(Row::Leader(LeaderRow {
                owner: Some(worker("w2")),
                counter: 2,
                heartbeat: None,
                standby: None,
            }))
        );
        let release = |worker_name: &str| LeaseOp::ReleaseLeader {
            worker: worker(worker_name),
            counter: 2,
        };
        assert_eq!(
            row_after(Some(&taken), &release("w1")),
            Err(ConditionFailed)
        );
        assert_eq!(row_after(Some(&taken), &release("w2")), leader(None, 3));
        let renewed = apply(Some(&first), &renew("w1", 1).to_write())
            .expect("w1 leads")
            .expect("row");
        let release_w1 = LeaseOp::ReleaseLeader {
            worker: worker("w1"),
            counter: 2,
        };
        assert_eq!(row_after(Some(&renewed), &release_w1), leader(None, 3));
        for op in [claim("w1", None), renew("w1", 1), release("w1")] {
            assert_eq!(op.kind(), WriteKind::Leader);
            assert_eq!(op.to_write().key, LEADER_KEY);
        }
    }

    fn holder_op(which: u8, counter: u64, holder: WorkerId) -> LeaseOp {
        let shard = key("shard-1");
        match which % 6 {
            0 => LeaseOp::Renew {
                shard,
                counter,
                holder,
                throughput_kbps: 1.0,
            },
            1 => LeaseOp::Checkpoint {
                shard,
                counter,
                holder,
                at: at("120"),
                kind: CheckpointKind::Commit,
            },
            2 => LeaseOp::Checkpoint {
                shard,
                counter,
                holder,
                at: at("120"),
                kind: CheckpointKind::Prepare { state: None },
            },
            3 => LeaseOp::CompleteHandoff {
                shard,
                counter,
                holder,
            },
            4 => LeaseOp::Release {
                shard,
                counter,
                holder,
            },
            _ => LeaseOp::FinishShard {
                shard,
                counter,
                holder,
                children: vec![key("shard-2")],
            },
        }
    }

    const NAMES: [&str; 3] = ["w1", "w2", "w3"];

    fn name(i: u8) -> Option<WorkerId> {
        NAMES.get(usize::from(i)).map(|n| worker(n))
    }

    proptest::proptest! {
        /// The fencing proof: a holder operation lands exactly when the row still has the
        /// counter the holder last left and names it as owner or as checkpoint owner (a release
        /// only as owner: during a handoff the lease is the receiver's). Counters and names
        /// come from small sets, so equal and different values both occur often.
        #[test]
        fn a_holder_operation_lands_only_on_the_row_it_holds(
            which in 0u8..6,
            counter in 0u64..4,
            holder in 0u8..3,
            row_counter in 0u64..4,
            owner in 0u8..4,
            checkpoint_owner in 0u8..4,
        ) {
            let holder = name(holder).expect("one of the names");
            let mut row = held();
            row.counter = row_counter;
            row.owner = name(owner);
            row.checkpoint_owner = name(checkpoint_owner);
            let op = holder_op(which, counter, holder.clone());
            let owns = row.owner.as_ref() == Some(&holder);
            let gives = row.checkpoint_owner.as_ref() == Some(&holder);
            let holds = row_counter == counter
                && (owns || (gives && !matches!(op, LeaseOp::Release { .. })));
            let result = lease_after(Some(&row), &op);
            proptest::prop_assert_eq!(result.is_ok(), holds, "{:?} on {:?}", op, row);
            if let Ok(after) = result {
                let after = after.expect("holder writes keep the row");
                proptest::prop_assert_eq!(Some(after.counter), op.counter_after());
            }
            // A row that is gone takes no holder write either.
            proptest::prop_assert_eq!(lease_after(None, &op), Err(ConditionFailed));
        }

        /// Worker liveness: a registered heartbeat lands exactly when the row exists with the
        /// process's own incarnation, so once the leader fenced it, the row was deleted or
        /// another process took it over, nothing that process sends can prove it alive again.
        /// A fence lands exactly on the row as the leader saw it.
        #[test]
        fn a_registered_heartbeat_lands_only_on_its_own_row(
            exists in proptest::bool::ANY,
            row_incarnation in proptest::option::of(0u8..3),
            mine in 0u8..3,
            row_counter in 0u64..3,
            seen_counter in 0u64..3,
            seen_incarnation in 0u8..3,
        ) {
            let name = |i: u8| alloc::format!("p{i}");
            let row = exists.then(|| {
                let mut item = Item::new();
                item.insert(attr::ENTITY_TYPE.into(), string(ENTITY_WORKER));
                item.insert(attr::LEASE_COUNTER.into(), AttributeValue::number(row_counter));
                if let Some(i) = row_incarnation {
                    item.insert(attr::INCARNATION.into(), string(&name(i)));
                }
                item
            });
            let heartbeat = heartbeat_of(&name(mine), true, None);
            let own = exists && row_incarnation == Some(mine);
            proptest::prop_assert_eq!(
                apply(row.as_ref(), &heartbeat.to_write()).is_ok(),
                own
            );
            let fence = LeaseOp::FenceWorker {
                worker: worker("w1"),
                counter: seen_counter,
                incarnation: name(seen_incarnation).as_str().into(),
            };
            let as_seen = exists
                && row_counter == seen_counter
                && row_incarnation == Some(seen_incarnation);
            let fenced = apply(row.as_ref(), &fence.to_write());
            proptest::prop_assert_eq!(fenced.is_ok(), as_seen);
            if let Ok(Some(after)) = fenced {
                proptest::prop_assert!(apply(Some(&after), &heartbeat.to_write()).is_err());
            }
        }
    }
}
