//! An executor pool: a fixed set of domains taking jobs from a queue.

use std::cell::Cell;
use std::sync::Mutex;

use super::{await_forwarding_cancel, run_cancellable, DomainMgr, Slot};
use crate::error::{Error, ErrorKind, Result};
use crate::switch::Switch;
use crate::sync::{Promise, Stream};

/// Weights are counted in millionths of a core, so sums are exact.
const FULL: u32 = 1_000_000;

struct Job {
    weight: u32,
    run: Box<dyn FnOnce() + Send>,
}

/// Distributes jobs over a fixed set of worker domains.
///
/// Each worker starts jobs while the total weight of its running jobs is
/// below 1.0 (a weight is the share of a core a job is expected to use);
/// other jobs wait in the queue. The workers are daemon fibers of the switch
/// given to [`ExecutorPool::new`]: they stop, cancelling their jobs, when it
/// finishes.
///
/// ```
/// use weft::{domain::ExecutorPool, fiber, Switch};
///
/// weft::run(|env| {
///     Switch::run(|sw| {
///         let pool = ExecutorPool::new(sw, &env.domain_mgr(), 2)?;
///         let (a, b) = fiber::pair(
///             || pool.submit(1.0, || Ok((1..=100_000u64).sum::<u64>())),
///             || pool.submit(1.0, || Ok((1..=50_000u64).sum::<u64>())),
///         )?;
///         assert_eq!((a, b), (5_000_050_000, 1_250_025_000));
///         Ok(())
///     })
/// })
/// .unwrap();
/// ```
#[derive(Clone)]
pub struct ExecutorPool {
    jobs: Stream<Job>,
}

impl std::fmt::Debug for ExecutorPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExecutorPool")
    }
}

impl ExecutorPool {
    /// Starts `domain_count` worker domains as daemon fibers of `sw`.
    pub fn new<'sw>(
        sw: &'sw Switch<'sw, '_>,
        domain_mgr: &DomainMgr,
        domain_count: usize,
    ) -> Result<ExecutorPool> {
        if domain_count == 0 {
            return Err(Error::msg(
                ErrorKind::InvalidInput,
                "an executor pool needs at least one domain",
            ));
        }
        // Capacity 0: a job is handed straight to a worker with room for
        // it, so a submitter cancelled while waiting never has its job run.
        let jobs: Stream<Job> = Stream::new(0);
        for _ in 0..domain_count {
            let jobs = jobs.clone();
            let dm = domain_mgr.clone();
            sw.fork_daemon(move || dm.run(move || worker(jobs)));
        }
        Ok(ExecutorPool { jobs })
    }

    /// Runs `f` on a worker domain and returns its result. `weight` (0.0 to
    /// 1.0) is the share of a core `f` is expected to use. If the caller is
    /// cancelled, the job is cancelled too (or never started).
    pub fn submit<T, F>(&self, weight: f64, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T> + Send + 'static,
    {
        if !(0.0..=1.0).contains(&weight) {
            return Err(Error::msg(
                ErrorKind::InvalidInput,
                format!("job weight must be between 0.0 and 1.0, not {weight}"),
            ));
        }
        let (result, set_result) = Promise::<Slot<T>>::new();
        let (cancel, set_cancel) = Promise::<Error>::new();
        self.jobs.add(Job {
            weight: (weight * FULL as f64).round() as u32,
            run: Box::new(move || {
                let r = run_cancellable(&cancel, f);
                let _ = set_result.resolve(Mutex::new(Some(r)));
            }),
        })?;
        await_forwarding_cancel(&result, &set_cancel)
    }
}

/// A worker domain's loop: take jobs while there is room, run each in its
/// own fiber.
fn worker(jobs: Stream<Job>) -> Result<()> {
    let load = Cell::new(0u32);
    let freed: Stream<()> = Stream::new(1);
    Switch::run(|sw| loop {
        while load.get() >= FULL {
            freed.take()?;
        }
        let job = jobs.take()?;
        load.set(load.get() + job.weight);
        let (load, freed) = (&load, &freed);
        sw.fork(move || {
            (job.run)();
            load.set(load.get() - job.weight);
            if freed.is_empty() {
                freed.add(())?;
            }
            Ok(())
        });
    })
}
