//! A second thread for the pure part of a batch: the fleet hands it independent tasks (one by
//! one as it finds them, [`Pool::submit`], or as a list), runs its own sequential work
//! meanwhile, then helps with what is left and takes the finished tasks back. Which thread ran a
//! task never shows in its result, so a run is the same with or without the pool.
//!
//! A batch is short (about 20 steps, around a tenth of a millisecond, at 2,000 workers; about
//! one per simulated millisecond), so the helper waits by spinning, then by yielding: parking
//! and waking a thread for every batch would cost a good part of one.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Spins before the idle helper starts yielding its core.
const SPINS_BEFORE_YIELD: u32 = 512;

/// Tasks shared by the fleet's thread and one helper.
pub(super) struct Pool<T> {
    todo: Mutex<Vec<T>>,
    done: Mutex<Vec<T>>,
    /// Tasks waiting in `todo`: what the idle helper watches instead of the lock.
    queued: AtomicUsize,
    /// Tasks of the current batch not finished yet.
    unfinished: AtomicUsize,
    stop: AtomicBool,
    /// Cleared when the helper leaves [`Pool::help`], normally or by a panic in a task: the
    /// fleet's thread must not wait forever for a task that died with it.
    helping: AtomicBool,
}

/// Stops the helper when dropped.
pub(super) struct Stopper<'a>(&'a AtomicBool);

impl Drop for Stopper<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Clears [`Pool::helping`] however the helper leaves.
struct Leaving<'a>(&'a AtomicBool);

impl Drop for Leaving<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl<T: Send> Pool<T> {
    pub(super) fn new() -> Self {
        Self {
            todo: Mutex::new(Vec::new()),
            done: Mutex::new(Vec::new()),
            queued: AtomicUsize::new(0),
            unfinished: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            helping: AtomicBool::new(true),
        }
    }

    /// The helper's loop: runs tasks until the [`Stopper`] is dropped.
    pub(super) fn help(&self, run: impl Fn(&mut T)) {
        let _leaving = Leaving(&self.helping);
        let mut idle = 0u32;
        while !self.stop.load(Ordering::Acquire) {
            if self.queued.load(Ordering::Acquire) > 0 && self.run_one(&run) {
                idle = 0;
            } else if idle < SPINS_BEFORE_YIELD {
                idle += 1;
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }

    /// Ends [`Pool::help`] when dropped.
    pub(super) fn stopper(&self) -> Stopper<'_> {
        Stopper(&self.stop)
    }

    /// Hands over one task now: the helper may start on it before [`Pool::run`].
    pub(super) fn submit(&self, task: T) {
        self.unfinished.fetch_add(1, Ordering::AcqRel);
        let mut todo = lock(&self.todo);
        todo.push(task);
        self.queued.store(todo.len(), Ordering::Release);
    }

    /// Runs `tasks` and those submitted since the last run on both threads while this thread
    /// also does `meanwhile`; every task comes back into `tasks`, run, in no particular order.
    pub(super) fn run(&self, tasks: &mut Vec<T>, run: impl Fn(&mut T), meanwhile: impl FnOnce()) {
        if !tasks.is_empty() {
            self.unfinished.fetch_add(tasks.len(), Ordering::AcqRel);
            let mut todo = lock(&self.todo);
            todo.append(tasks);
            self.queued.store(todo.len(), Ordering::Release);
        }
        meanwhile();
        while self.run_one(&run) {}
        while self.unfinished.load(Ordering::Acquire) > 0 {
            assert!(
                self.helping.load(Ordering::Acquire),
                "the helper thread died in a task (its panic follows)"
            );
            std::hint::spin_loop();
        }
        tasks.append(&mut lock(&self.done));
    }

    /// Takes one task, runs it and files it as done; false when none was left.
    fn run_one(&self, run: &impl Fn(&mut T)) -> bool {
        let task = {
            let mut todo = lock(&self.todo);
            let task = todo.pop();
            self.queued.store(todo.len(), Ordering::Release);
            task
        };
        let Some(mut task) = task else { return false };
        run(&mut task);
        lock(&self.done).push(task);
        self.unfinished.fetch_sub(1, Ordering::AcqRel);
        true
    }
}

/// A task that panicked poisons nothing that matters here: the panic ends the run anyway.
fn lock<V>(m: &Mutex<V>) -> std::sync::MutexGuard<'_, V> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_runs_once_and_comes_back() {
        let pool = Pool::<(usize, u64)>::new();
        std::thread::scope(|s| {
            s.spawn(|| pool.help(|t| t.1 = t.0 as u64 * 3));
            let _stop = pool.stopper();
            for round in 0..200usize {
                let mut tasks: Vec<(usize, u64)> = (0..round % 37).map(|i| (i, 0)).collect();
                // Some handed over ahead of the run.
                for _ in 0..round % 5 {
                    if let Some(t) = tasks.pop() {
                        pool.submit(t);
                    }
                }
                let mut side = 0;
                let mut back = tasks;
                pool.run(&mut back, |t| t.1 = t.0 as u64 * 3, || side += 1);
                back.sort_unstable();
                assert_eq!(side, 1);
                assert_eq!(back.len(), round % 37);
                for (i, (index, v)) in back.iter().enumerate() {
                    assert_eq!((*index, *v), (i, i as u64 * 3));
                }
            }
        });
    }

    #[test]
    fn a_panic_on_the_fleets_thread_does_not_wait_for_the_helper() {
        let pool = Pool::<u32>::new();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            std::thread::scope(|s| {
                s.spawn(|| pool.help(|_| {}));
                let _stop = pool.stopper();
                let mut tasks = vec![1, 2, 3];
                pool.run(&mut tasks, |_| {}, || panic!("a service model failed"));
            });
        }));
        assert!(result.is_err());
    }
}
