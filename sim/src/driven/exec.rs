//! A deterministic single-threaded executor on simulated time.
//!
//! Tasks run in the order they were woken; timers fire in the order of their deadline, then of
//! their creation. Time moves only when no task is ready, straight to the next timer, so a
//! simulated hour of mostly idle workers takes as long as their work. Same spawns, same wakes,
//! same order: nothing here depends on the host (no thread, no clock, no hash order).
//!
//! Tasks belong to a [`Group`], one per simulated process: a task spawned by a task joins its
//! group, and [`Executor::kill`] drops a whole group at once (a crash: nothing of the process
//! runs again, its pending timers go with it).
//!
//! Why not tokio with paused time inside turmoil: tokio's paused clock advances only when its
//! runtime is idle and lets us neither kill a group of tasks at once nor stop a group from being
//! polled (a process pause), and one tokio runtime per simulated worker would cost a thread
//! each. An executor of our own is two hundred lines and gives exact control of both.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};

type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The tasks of one simulated process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Group(pub u64);

/// What tasks, timers and runtime handles share.
#[derive(Default)]
struct State {
    /// True simulated time (ms).
    now_ms: u64,
    /// Timers by (deadline, creation number): the order they fire in.
    timers: BTreeMap<(u64, u64), Waker>,
    next_timer: u64,
    /// Tasks woken, by (slot, generation), in wake order.
    ready: VecDeque<(usize, u64)>,
    /// Tasks spawned since the executor last took them in.
    spawned: Vec<(Group, Task)>,
    /// The group of the task being polled: a task it spawns joins it.
    current: Group,
}

/// A handle on the executor's clock, timers and spawner; cheap to clone, `Send`.
#[derive(Clone, Default)]
pub struct Handle(Arc<Mutex<State>>);

impl Handle {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The executor never panics while holding the lock; a panic elsewhere must not hide
        // behind a poisoned mutex either.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True simulated time (ms).
    pub fn now_ms(&self) -> u64 {
        self.lock().now_ms
    }

    /// Completes at true time `at_ms`.
    pub fn sleep_until(&self, at_ms: u64) -> Sleep {
        Sleep {
            handle: self.clone(),
            at_ms,
            key: None,
        }
    }

    /// Spawns `task` into the group of the task running now (the group given to
    /// [`Executor::spawn`] when called from outside any task).
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut s = self.lock();
        let group = s.current;
        s.spawned.push((group, Box::pin(task)));
    }

    /// The group of the task being polled.
    pub fn current_group(&self) -> Group {
        self.lock().current
    }
}

/// A timer of the executor.
pub struct Sleep {
    handle: Handle,
    at_ms: u64,
    key: Option<(u64, u64)>,
}

impl Future for Sleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let mut s = this.handle.lock();
        if s.now_ms >= this.at_ms {
            if let Some(key) = this.key.take() {
                s.timers.remove(&key);
            }
            return Poll::Ready(());
        }
        match this.key {
            Some(key) => {
                if let Some(w) = s.timers.get_mut(&key) {
                    if !w.will_wake(cx.waker()) {
                        *w = cx.waker().clone();
                    }
                }
            }
            None => {
                let key = (this.at_ms, s.next_timer);
                s.next_timer += 1;
                s.timers.insert(key, cx.waker().clone());
                this.key = Some(key);
            }
        }
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            self.handle.lock().timers.remove(&key);
        }
    }
}

/// Wakes one task: queues it once until it is polled.
struct TaskWaker {
    slot: usize,
    generation: u64,
    queued: AtomicBool,
    handle: Handle,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.handle
                .lock()
                .ready
                .push_back((self.slot, self.generation));
        }
    }
}

struct Slot {
    task: Task,
    group: Group,
    waker: Arc<TaskWaker>,
}

/// The executor: owns the tasks and runs them.
pub struct Executor {
    handle: Handle,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    next_generation: u64,
    /// Groups whose tasks are not polled until the given true time (a paused process).
    paused: BTreeMap<Group, u64>,
    /// Tasks woken while their group was paused, in wake order.
    parked: VecDeque<(usize, u64)>,
}

impl Default for Executor {
    fn default() -> Self {
        Self::new()
    }
}

impl Executor {
    /// An executor at true time 0.
    pub fn new() -> Self {
        Self {
            handle: Handle::default(),
            slots: Vec::new(),
            free: Vec::new(),
            next_generation: 0,
            paused: BTreeMap::new(),
            parked: VecDeque::new(),
        }
    }

    /// A handle for runtimes and services.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// True simulated time (ms).
    pub fn now_ms(&self) -> u64 {
        self.handle.now_ms()
    }

    /// Spawns `task` into `group`.
    pub fn spawn(&self, group: Group, task: impl Future<Output = ()> + Send + 'static) {
        self.handle.lock().spawned.push((group, Box::pin(task)));
    }

    /// Tasks alive (spawned and not finished or killed).
    pub fn tasks(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Drops every task of `group` (a crash). Their timers go with them.
    pub fn kill(&mut self, group: Group) {
        let mut dropped = Vec::new();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if slot.as_ref().is_some_and(|s| s.group == group) {
                dropped.push(slot.take());
                self.free.push(i);
            }
        }
        let spawned: Vec<(Group, Task)> = {
            let mut s = self.handle.lock();
            let (mine, others) = core::mem::take(&mut s.spawned)
                .into_iter()
                .partition(|(g, _)| *g == group);
            s.spawned = others;
            mine
        };
        self.paused.remove(&group);
        // Dropped without the lock held: a dropped future deregisters its timers and may wake
        // others (a channel closing).
        drop(dropped);
        drop(spawned);
    }

    /// Stops polling `group`'s tasks until true time `until_ms` (a process pause: what woke
    /// them meanwhile runs when it resumes).
    pub fn pause(&mut self, group: Group, until_ms: u64) {
        let until = self.paused.entry(group).or_insert(until_ms);
        *until = (*until).max(until_ms);
    }

    fn admit_spawned(&mut self) {
        let spawned = core::mem::take(&mut self.handle.lock().spawned);
        for (group, task) in spawned {
            let generation = self.next_generation;
            self.next_generation += 1;
            let slot = self.free.pop().unwrap_or_else(|| {
                self.slots.push(None);
                self.slots.len() - 1
            });
            let waker = Arc::new(TaskWaker {
                slot,
                generation,
                queued: AtomicBool::new(false),
                handle: self.handle.clone(),
            });
            waker.wake_by_ref();
            self.slots[slot] = Some(Slot { task, group, waker });
        }
    }

    /// Polls every ready task until none is ready. Tasks that keep waking each other without
    /// time moving would never let the run end: that is a bug of theirs, reported as a panic.
    fn run_ready(&mut self) {
        const MAX_POLLS_AT_ONE_INSTANT: u64 = 50_000_000;
        let mut polls = 0u64;
        loop {
            self.admit_spawned();
            let next = self.handle.lock().ready.pop_front();
            let Some((slot, generation)) = next else {
                return;
            };
            let Some(s) = self.slots.get_mut(slot).and_then(Option::as_mut) else {
                continue;
            };
            if s.waker.generation != generation {
                continue;
            }
            let now = self.handle.now_ms();
            if self.paused.get(&s.group).is_some_and(|&until| now < until) {
                self.parked.push_back((slot, generation));
                continue;
            }
            polls += 1;
            assert!(
                polls < MAX_POLLS_AT_ONE_INSTANT,
                "no progress: tasks kept waking each other at {now} ms without time moving"
            );
            s.waker.queued.store(false, Ordering::Release);
            let group = s.group;
            let waker = Waker::from(Arc::clone(&s.waker));
            self.handle.lock().current = group;
            let done = s
                .task
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_ready();
            if done {
                let finished = self.slots[slot].take();
                self.free.push(slot);
                drop(finished);
            }
        }
    }

    /// Runs tasks and fires timers until true time `until_ms`; time then stands at `until_ms`.
    pub fn run_until(&mut self, until_ms: u64) {
        loop {
            self.run_ready();
            let mut s = self.handle.lock();
            let next_timer = s.timers.keys().next().map(|&(at, _)| at);
            let next_resume = self.paused.values().copied().min();
            let next = match (next_timer, next_resume) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            match next {
                Some(at) if at <= until_ms => {
                    s.now_ms = s.now_ms.max(at);
                    let now = s.now_ms;
                    let mut due = Vec::new();
                    while let Some(entry) = s.timers.first_entry() {
                        if entry.key().0 > now {
                            break;
                        }
                        due.push(entry.remove());
                    }
                    drop(s);
                    self.resume(now);
                    for waker in due {
                        waker.wake();
                    }
                }
                _ => {
                    s.now_ms = s.now_ms.max(until_ms);
                    return;
                }
            }
        }
    }

    /// Ends the pauses that are over at `now`, requeueing what woke their tasks meanwhile.
    fn resume(&mut self, now: u64) {
        let before = self.paused.len();
        self.paused.retain(|_, until| *until > now);
        if self.paused.len() == before {
            return;
        }
        let parked = core::mem::take(&mut self.parked);
        let mut s = self.handle.lock();
        for (slot, generation) in parked {
            s.ready.push_back((slot, generation));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::Mutex as StdMutex;

    fn log() -> Arc<StdMutex<Vec<(u64, &'static str)>>> {
        Arc::default()
    }

    #[test]
    fn timers_fire_in_deadline_then_creation_order_and_time_jumps_between_them() {
        let mut exec = Executor::new();
        let seen = log();
        for (name, at) in [("b", 30), ("a", 10), ("c", 30)] {
            let (h, seen) = (exec.handle(), seen.clone());
            exec.spawn(Group(0), async move {
                h.sleep_until(at).await;
                seen.lock().unwrap().push((h.now_ms(), name));
            });
        }
        exec.run_until(20);
        assert_eq!(*seen.lock().unwrap(), [(10, "a")]);
        assert_eq!(exec.now_ms(), 20);
        exec.run_until(1_000);
        assert_eq!(*seen.lock().unwrap(), [(10, "a"), (30, "b"), (30, "c")]);
        assert_eq!(exec.tasks(), 0);
    }

    #[test]
    fn a_killed_group_never_runs_again_and_takes_its_children_and_timers() {
        let mut exec = Executor::new();
        let seen = log();
        for (group, name) in [(1, "one"), (2, "two")] {
            let (h, seen) = (exec.handle(), seen.clone());
            exec.spawn(Group(group), async move {
                let (h2, seen2) = (h.clone(), seen.clone());
                h.spawn(async move {
                    h2.sleep_until(50).await;
                    seen2.lock().unwrap().push((h2.now_ms(), name));
                });
                h.sleep_until(40).await;
                seen.lock().unwrap().push((h.now_ms(), name));
            });
        }
        exec.run_until(10);
        assert_eq!(exec.tasks(), 4);
        exec.kill(Group(1));
        assert_eq!(exec.tasks(), 2);
        exec.run_until(100);
        assert_eq!(*seen.lock().unwrap(), [(40, "two"), (50, "two")]);
        assert!(exec.handle.lock().timers.is_empty());
    }

    #[test]
    fn a_paused_group_runs_what_woke_it_when_the_pause_ends() {
        let mut exec = Executor::new();
        let seen = log();
        let (h, s) = (exec.handle(), seen.clone());
        exec.spawn(Group(7), async move {
            h.sleep_until(10).await;
            s.lock().unwrap().push((h.now_ms(), "woke"));
        });
        exec.run_until(5);
        exec.pause(Group(7), 25);
        exec.run_until(20);
        assert!(seen.lock().unwrap().is_empty());
        exec.run_until(30);
        assert_eq!(*seen.lock().unwrap(), [(25, "woke")]);
    }

    #[test]
    fn a_dropped_sleep_leaves_no_timer() {
        let mut exec = Executor::new();
        let h = exec.handle();
        exec.spawn(Group(0), async move {
            let early = h.sleep_until(5);
            let late = h.sleep_until(500);
            futures_util::pin_mut!(early, late);
            futures_util::future::select(early, late).await;
        });
        exec.run_until(10);
        assert_eq!(exec.tasks(), 0);
        assert!(exec.handle.lock().timers.is_empty());
    }
}
