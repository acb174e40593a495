//! A second thread for the pure part of a batch: the fleet hands it independent tasks, one by
//! one as it finds them ([`Pool::submit`]), and takes each back by its number when it needs
//! its result ([`Pool::take`]). The helper runs tasks in the order they were handed over, the
//! order the fleet takes them back in; a task the helper has not started when the fleet needs
//! it, the fleet runs itself. So the fleet carries out the first tasks' results while the
//! helper still runs the later ones. Which thread ran a task never shows in its result, so a
//! run is the same with or without the pool.
//!
//! A batch is short (about 20 steps, around a tenth of a millisecond, at 2,000 workers; about
//! one per simulated millisecond), so both threads wait by spinning (the helper then by
//! yielding): parking and waking a thread for every batch would cost a good part of one.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Spins before the idle helper starts yielding its core.
const SPINS_BEFORE_YIELD: u32 = 512;

/// Tasks shared by the fleet's thread and one helper.
pub(super) struct Pool<T> {
    /// Handed over, not started: in the order handed over, each with its number.
    todo: Mutex<VecDeque<(usize, T)>>,
    /// Finished by the helper, not taken back yet: by number.
    done: Mutex<Vec<Option<T>>>,
    /// Tasks waiting in `todo`: what the idle helper watches instead of the lock.
    queued: AtomicUsize,
    /// Tasks the helper has finished, ever: what the fleet's thread watches while it waits.
    finished: AtomicUsize,
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
            todo: Mutex::new(VecDeque::new()),
            done: Mutex::new(Vec::new()),
            queued: AtomicUsize::new(0),
            finished: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            helping: AtomicBool::new(true),
        }
    }

    /// The helper's loop: runs tasks until the [`Stopper`] is dropped.
    pub(super) fn help(&self, run: impl Fn(&mut T)) {
        let _leaving = Leaving(&self.helping);
        let mut idle = 0u32;
        while !self.stop.load(Ordering::Acquire) {
            if self.queued.load(Ordering::Acquire) > 0 && self.run_first(&run) {
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

    /// Hands over task number `index`; the helper may start on it at once. Numbers are handed
    /// over in increasing order and each is taken back once before it is used again.
    pub(super) fn submit(&self, index: usize, task: T) {
        let mut todo = lock(&self.todo);
        todo.push_back((index, task));
        self.queued.store(todo.len(), Ordering::Release);
    }

    /// Task number `index`, run: finished by the helper, or run here if the helper has not
    /// started it, or waited for while the helper runs it.
    pub(super) fn take(&self, index: usize, run: impl Fn(&mut T)) -> T {
        loop {
            let finished = self.finished.load(Ordering::Acquire);
            if let Some(task) = lock(&self.done).get_mut(index).and_then(Option::take) {
                return task;
            }
            let queued = {
                let mut todo = lock(&self.todo);
                let task = match todo.front() {
                    // The common case: the helper works from the front too.
                    Some((first, _)) if *first == index => todo.pop_front(),
                    _ => todo
                        .iter()
                        .position(|(i, _)| *i == index)
                        .and_then(|at| todo.remove(at)),
                };
                self.queued.store(todo.len(), Ordering::Release);
                task
            };
            if let Some((_, mut task)) = queued {
                run(&mut task);
                return task;
            }
            // The helper runs it: meanwhile run the last task handed over, which the helper
            // would reach last.
            if self.run_last(&run) {
                continue;
            }
            while self.finished.load(Ordering::Acquire) == finished {
                assert!(
                    self.helping.load(Ordering::Acquire),
                    "the helper thread died in a task (its panic follows)"
                );
                std::hint::spin_loop();
            }
        }
    }

    /// Takes the first task handed over, runs it and files it as done; false when none was
    /// left.
    fn run_first(&self, run: &impl Fn(&mut T)) -> bool {
        self.run_one(run, VecDeque::pop_front)
    }

    /// [`Pool::run_first`] from the other end.
    fn run_last(&self, run: &impl Fn(&mut T)) -> bool {
        self.run_one(run, VecDeque::pop_back)
    }

    fn run_one(
        &self,
        run: &impl Fn(&mut T),
        pick: impl FnOnce(&mut VecDeque<(usize, T)>) -> Option<(usize, T)>,
    ) -> bool {
        let task = {
            let mut todo = lock(&self.todo);
            let task = pick(&mut todo);
            self.queued.store(todo.len(), Ordering::Release);
            task
        };
        let Some((index, mut task)) = task else {
            return false;
        };
        run(&mut task);
        {
            let mut done = lock(&self.done);
            if done.len() <= index {
                done.resize_with(index + 1, || None);
            }
            done[index] = Some(task);
        }
        self.finished.fetch_add(1, Ordering::AcqRel);
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
    fn every_task_comes_back_run_once_by_its_number() {
        let pool = Pool::<(usize, u64, u32)>::new();
        let run = |t: &mut (usize, u64, u32)| {
            t.1 = t.0 as u64 * 3;
            t.2 += 1;
        };
        std::thread::scope(|s| {
            s.spawn(|| pool.help(run));
            let _stop = pool.stopper();
            for round in 0..500usize {
                let n = round % 37;
                for i in 0..n {
                    pool.submit(i, (i, 0, 0));
                }
                // In order mostly; every fifth round one task is wanted early, as the
                // exclusivity check does.
                let early = (round % 5 == 0 && n > 2).then(|| n - 1);
                if let Some(e) = early {
                    let t = pool.take(e, run);
                    assert_eq!(t, (e, e as u64 * 3, 1));
                }
                for i in (0..n).filter(|&i| Some(i) != early) {
                    assert_eq!(pool.take(i, run), (i, i as u64 * 3, 1));
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
                pool.submit(0, 1);
                panic!("a service model failed");
            });
        }));
        assert!(result.is_err());
    }

    #[test]
    fn a_panic_in_the_helper_ends_the_wait_for_its_task() {
        let pool = Pool::<u32>::new();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            std::thread::scope(|s| {
                s.spawn(|| pool.help(|_| panic!("a step failed")));
                let _stop = pool.stopper();
                pool.submit(0, 1);
                // Give the helper the task before asking for it.
                while pool.queued.load(Ordering::Acquire) > 0 {
                    std::hint::spin_loop();
                }
                pool.take(0, |_| {});
            });
        }));
        assert!(result.is_err());
    }
}
