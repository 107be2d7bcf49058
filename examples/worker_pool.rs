//! A worker pool over a `Stream`: clients put jobs on a stream, workers in
//! other domains (OS threads) take them, and each job carries a `Resolver`
//! for its reply.
//!
//! `Stream`, `Promise` and `Resolver` work across domains, so this is all
//! it takes to spread CPU work over cores. (`weft::domain::ExecutorPool`
//! packages the same idea; see `examples/executor_pool.rs`.)
//!
//! ```text
//! cargo run --release --example worker_pool
//! ```

use weft::sync::{Promise, Resolver, Stream};
use weft::{fiber, Result, Switch};

/// A request and where to send its answer.
struct Job {
    limit: u64,
    reply: Resolver<(u64, String)>,
}

/// Counts the primes below `limit`: CPU work with no suspension points.
fn count_primes(limit: u64) -> u64 {
    (2..limit)
        .filter(|&n| (2..).take_while(|d| d * d <= n).all(|d| n % d != 0))
        .count() as u64
}

/// A worker: takes jobs forever (until its domain is cancelled).
fn run_worker(name: String, jobs: Stream<Job>) -> Result<()> {
    loop {
        let job = jobs.take()?;
        let primes = count_primes(job.limit);
        // The client may have given up (been cancelled); then nobody
        // listens and the answer is dropped.
        let _ = job.reply.resolve((primes, name.clone()));
    }
}

/// A client: submits one job and waits for the answer. Only this fiber
/// waits; the others on this thread keep running.
fn submit(jobs: &Stream<Job>, limit: u64) -> Result<(u64, String)> {
    let (answer, reply) = Promise::new();
    jobs.add(Job { limit, reply })?;
    answer.wait().cloned()
}

fn main() -> Result<()> {
    weft::run(|env| {
        let dm = env.domain_mgr();
        // Capacity 0: a job is handed straight to an idle worker.
        let jobs: Stream<Job> = Stream::new(0);
        Switch::run(|sw| {
            for i in 1..=2 {
                let (dm, jobs) = (dm.clone(), jobs.clone());
                // Each worker gets its own domain; the daemon fiber here
                // waits for it and is cancelled (cancelling the domain's
                // work) when the switch ends.
                sw.fork_daemon(move || dm.run(move || run_worker(format!("worker {i}"), jobs)));
            }
            let limits = [50_000, 60_000, 70_000, 80_000, 90_000, 100_000];
            let answers = fiber::map(limits.len(), limits, |limit| submit(&jobs, limit))?;
            for (limit, (primes, worker)) in limits.iter().zip(answers) {
                println!("{primes:>5} primes below {limit:>6} (counted by {worker})");
            }
            Ok(())
        })
    })
}
