//! Running blocking calls on system threads.
//!
//! [`run`] hands a blocking function (a DNS lookup, a file operation on a
//! backend without async file IO, a call into a blocking library) to a
//! bounded pool of OS threads (at most [`MAX_THREADS`]; idle ones exit after
//! ten seconds) and suspends only the calling fiber until it returns.
//!
//! ```
//! weft::mock::run(|_env| {
//!     let n = weft::systhread::run(|| (1..=10u64).product::<u64>())?;
//!     assert_eq!(n, 3_628_800);
//!     Ok(())
//! })
//! .unwrap();
//! ```

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use crate::backend::ExternalWork;
use crate::error::{Error, ErrorKind, Result};
use crate::sync::Promise;

type Job = Box<dyn FnOnce() + Send>;

struct Pool {
    state: Mutex<PoolState>,
    work: Condvar,
}

struct PoolState {
    jobs: VecDeque<Job>,
    idle: usize,
    threads: usize,
}

/// How long an idle thread waits for work before it exits.
const MAX_IDLE_WAIT: Duration = Duration::from_secs(10);

/// The pool never grows past this many threads; further jobs queue until a
/// thread is free.
pub const MAX_THREADS: usize = 64;

static POOL: Pool = Pool {
    state: Mutex::new(PoolState {
        jobs: VecDeque::new(),
        idle: 0,
        threads: 0,
    }),
    work: Condvar::new(),
};

fn submit(job: Job) -> Result<()> {
    let mut st = POOL.state.lock().unwrap_or_else(|e| e.into_inner());
    st.jobs.push_back(job);
    if st.idle > 0 {
        POOL.work.notify_one();
        return Ok(());
    }
    if st.threads >= MAX_THREADS {
        // Bounded: the job waits for a busy thread to finish.
        return Ok(());
    }
    st.threads += 1;
    drop(st);
    let spawned = std::thread::Builder::new()
        .name("weft-systhread".into())
        .spawn(worker);
    if let Err(e) = spawned {
        let mut st = POOL.state.lock().unwrap_or_else(|e| e.into_inner());
        st.threads -= 1;
        // The job stays queued for a running worker if there is one.
        if st.threads == 0 {
            st.jobs.pop_back();
            return Err(Error::with_source(ErrorKind::Io, e).context("starting a system thread"));
        }
    }
    Ok(())
}

fn worker() {
    let mut st = POOL.state.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if let Some(job) = st.jobs.pop_front() {
            drop(st);
            job();
            st = POOL.state.lock().unwrap_or_else(|e| e.into_inner());
            continue;
        }
        st.idle += 1;
        let (g, timeout) = POOL
            .work
            .wait_timeout(st, MAX_IDLE_WAIT)
            .unwrap_or_else(|e| e.into_inner());
        st = g;
        st.idle -= 1;
        if timeout.timed_out() && st.jobs.is_empty() {
            st.threads -= 1;
            return;
        }
    }
}

/// The result slot of a job started with [`spawn`]: the value travels in a
/// Mutex so a waiter can move it out of the shared promise.
pub(crate) type JobResult<T> = Promise<Mutex<Option<std::thread::Result<T>>>>;

/// Starts `f` on a system thread; the returned promise resolves when it
/// finishes. The current scheduler counts the job as external work until
/// then, so the mock does not report a deadlock while it runs.
pub(crate) fn spawn<T, F>(f: F) -> Result<JobResult<T>>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (promise, resolver) = Promise::new();
    let external = ExternalWork::begin();
    submit(Box::new(move || {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let _ = resolver.resolve(Mutex::new(Some(r)));
        drop(external);
    }))?;
    Ok(promise)
}

/// Moves a finished job's value out of its promise.
pub(crate) fn take_result<T>(promise: &JobResult<T>) -> Result<T> {
    let taken = promise
        .peek()
        .and_then(|m| m.lock().unwrap_or_else(|e| e.into_inner()).take());
    match taken {
        Some(Ok(v)) => Ok(v),
        Some(Err(p)) => Err(
            Error::msg(ErrorKind::Panic, crate::switch::panic_message(&p))
                .context("in a system thread"),
        ),
        None => Err(Error::msg(
            ErrorKind::Closed,
            "system thread result already taken",
        )),
    }
}

/// Runs `f` on a system thread and waits (suspending only this fiber) for
/// its result. If the fiber is cancelled first, `run` returns
/// `Err(Cancelled)` at once and `f`'s result is dropped when it finishes
/// (a system thread cannot be interrupted). A panic in `f` becomes
/// `ErrorKind::Panic`.
pub fn run<T, F>(f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let promise = spawn(f)?;
    promise.wait()?;
    take_result(&promise)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_is_bounded_and_queues_the_rest() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicUsize::new(0));
        let n = MAX_THREADS * 2;
        for _ in 0..n {
            let (running, peak, done) = (running.clone(), peak.clone(), done.clone());
            submit(Box::new(move || {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(20));
                running.fetch_sub(1, Ordering::SeqCst);
                done.fetch_add(1, Ordering::SeqCst);
            }))
            .unwrap();
        }
        while done.load(Ordering::SeqCst) < n {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(
            peak.load(Ordering::SeqCst) <= MAX_THREADS,
            "peak {}",
            peak.load(Ordering::SeqCst)
        );
    }
}
