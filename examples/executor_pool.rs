//! CPU-heavy work on an executor pool, while the main domain stays
//! responsive.
//!
//! A fiber that computes without suspending holds its thread: no other
//! fiber there runs until it is done. `ExecutorPool` runs such jobs on
//! worker domains (OS threads with their own schedulers); the submitting
//! fiber waits for the answer like for any IO. Here a heartbeat fiber keeps
//! ticking on the main domain while the pool computes.
//!
//! ```text
//! cargo run --release --example executor_pool
//! ```

use std::time::Duration;

use weft::domain::ExecutorPool;
use weft::{fiber, Result, Switch};

/// The length of the Collatz sequence from `n` down to 1.
fn collatz_len(mut n: u64) -> u32 {
    let mut steps = 0;
    while n != 1 {
        n = if n % 2 == 0 { n / 2 } else { 3 * n + 1 };
        steps += 1;
    }
    steps
}

/// The start below `limit` with the longest Collatz sequence: pure CPU
/// work, no suspension points.
fn longest_collatz(from: u64, to: u64) -> (u64, u32) {
    (from..to)
        .map(|n| (n, collatz_len(n)))
        .max_by_key(|&(_, len)| len)
        .unwrap_or((from, 0))
}

fn main() -> Result<()> {
    weft::run(|env| {
        let clock = env.mono_clock();
        let t0 = clock.now()?;
        let ms = move || clock.now().map(|t| t.duration_since(t0).as_millis());
        Switch::run(|sw| {
            // Two worker domains, stopped when this switch finishes.
            let pool = ExecutorPool::new(sw, &env.domain_mgr(), 2)?;
            // The heartbeat: if the main thread were busy computing, the
            // ticks would stop.
            sw.fork_daemon(|| loop {
                clock.sleep(Duration::from_millis(50))?;
                println!("[{:>4} ms] main domain: heartbeat", ms()?);
            });

            // Four chunks of the search. A weight of 1.0 says a job uses a
            // whole core, so each worker runs one at a time.
            let chunk = 250_000;
            let chunks: Vec<(u64, u64)> = (0..4)
                .map(|i| (1 + i * chunk, 1 + (i + 1) * chunk))
                .collect();
            let best = fiber::map(chunks.len(), chunks, |(from, to)| {
                let r = pool.submit(1.0, move || Ok(longest_collatz(from, to)))?;
                println!(
                    "[{:>4} ms] chunk {from}..{to}: best start {} ({} steps)",
                    ms()?,
                    r.0,
                    r.1
                );
                Ok(r)
            })?;
            let (n, len) = best
                .into_iter()
                .max_by_key(|&(_, len)| len)
                .expect("four chunks");
            println!(
                "[{:>4} ms] longest below {}: {n} with {len} steps",
                ms()?,
                4 * chunk + 1
            );
            Ok(())
        })
    })
}
