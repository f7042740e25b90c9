//! A persistent fork-join thread pool: `run(n, f)` calls `f(0..n)` spread over the pool's threads (the
//! caller is one of them) and returns when every call has finished. Workers spin briefly after a job
//! before parking, so the many short kernels of a model do not pay a wake-up each.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

type Task = dyn Fn(usize) + Sync;

struct Shared {
    /// Bumped for every job; workers run a job once per generation.
    generation: AtomicU64,
    job: Mutex<Option<JobPtr>>,
    wake: Condvar,
    next: AtomicUsize,
    tasks: AtomicUsize,
    /// Workers that have not finished the current job.
    pending: AtomicUsize,
    panicked: AtomicBool,
    shutdown: AtomicBool,
}

#[derive(Clone, Copy)]
struct JobPtr(*const Task);
// SAFETY: the pointer is only dereferenced while `Pool::run` keeps the closure alive, and the closure is `Sync`.
unsafe impl Send for JobPtr {}

/// A pool of `threads` threads including the caller.
pub struct Pool {
    threads: usize,
    shared: Arc<Shared>,
    handles: Vec<JoinHandle<()>>,
    /// Held for a whole job: callers on several threads (concurrent runs of one session) take turns.
    busy: Mutex<()>,
}

const SPIN: u32 = 200_000;

fn work(shared: &Shared, f: &(dyn Fn(usize) + Sync)) {
    loop {
        let i = shared.next.fetch_add(1, Ordering::AcqRel);
        if i >= shared.tasks.load(Ordering::Acquire) {
            break;
        }
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(i))).is_err() {
            shared.panicked.store(true, Ordering::Release);
        }
    }
}

fn worker(shared: Arc<Shared>) {
    let mut seen = 0u64;
    loop {
        let mut spins = 0;
        while shared.generation.load(Ordering::Acquire) == seen && !shared.shutdown.load(Ordering::Acquire) {
            if spins < SPIN {
                spins += 1;
                std::hint::spin_loop();
            } else {
                let guard = shared.job.lock().unwrap_or_else(|e| e.into_inner());
                if shared.generation.load(Ordering::Acquire) == seen && !shared.shutdown.load(Ordering::Acquire) {
                    drop(shared.wake.wait(guard).unwrap_or_else(|e| e.into_inner()));
                }
            }
        }
        if shared.shutdown.load(Ordering::Acquire) {
            return;
        }
        seen = shared.generation.load(Ordering::Acquire);
        let job = *shared.job.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(JobPtr(f)) = job {
            // SAFETY: `run` waits for `pending` to reach zero before its closure goes out of scope.
            work(&shared, unsafe { &*f });
        }
        shared.pending.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Pool {
    /// A pool of `threads` threads (at least one: the caller).
    pub fn new(threads: usize) -> Pool {
        let threads = threads.max(1);
        let shared = Arc::new(Shared {
            generation: AtomicU64::new(0),
            job: Mutex::new(None),
            wake: Condvar::new(),
            next: AtomicUsize::new(0),
            tasks: AtomicUsize::new(0),
            pending: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
        });
        let handles = (1..threads)
            .map(|i| {
                let s = shared.clone();
                std::thread::Builder::new()
                    .name(format!("sovc-worker-{i}"))
                    .spawn(move || worker(s))
                    .expect("spawning a worker thread")
            })
            .collect();
        Pool { threads, shared, handles, busy: Mutex::new(()) }
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Calls `f(i)` for every `i < n` across the pool; returns when all calls are done. A panic in a task
    /// is re-raised here.
    pub fn run(&self, n: usize, f: &(dyn Fn(usize) + Sync)) {
        if n == 0 {
            return;
        }
        if self.threads == 1 || n == 1 {
            for i in 0..n {
                f(i);
            }
            return;
        }
        let _turn = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        let s = &*self.shared;
        // SAFETY: erases the closure's lifetime; it outlives every use because this function does not
        // return before all workers have decremented `pending`.
        let ptr: *const Task = unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync), &'static Task>(f) };
        {
            let mut job = s.job.lock().unwrap_or_else(|e| e.into_inner());
            *job = Some(JobPtr(ptr));
            s.next.store(0, Ordering::Release);
            s.tasks.store(n, Ordering::Release);
            s.pending.store(self.threads - 1, Ordering::Release);
            s.generation.fetch_add(1, Ordering::AcqRel);
            s.wake.notify_all();
        }
        work(s, f);
        while s.pending.load(Ordering::Acquire) != 0 {
            std::hint::spin_loop();
        }
        *s.job.lock().unwrap_or_else(|e| e.into_inner()) = None;
        if s.panicked.swap(false, Ordering::AcqRel) {
            panic!("a task of the thread pool panicked");
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        {
            let _g = self.shared.job.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.shutdown.store(true, Ordering::Release);
            self.shared.wake.notify_all();
        }
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Pool;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn every_task_runs_once() {
        for threads in [1, 2, 3] {
            let pool = Pool::new(threads);
            for n in [0, 1, 5, 100] {
                let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
                pool.run(n, &|i| {
                    hits[i].fetch_add(1, Ordering::Relaxed);
                });
                assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1), "threads {threads} n {n}");
            }
        }
    }

    #[test]
    fn callers_on_several_threads_take_turns() {
        let pool = Pool::new(2);
        std::thread::scope(|s| {
            for n in [7usize, 12, 3] {
                let pool = &pool;
                s.spawn(move || {
                    for _ in 0..200 {
                        let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
                        pool.run(n, &|i| {
                            hits[i].fetch_add(1, Ordering::Relaxed);
                        });
                        assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
                    }
                });
            }
        });
    }
}
