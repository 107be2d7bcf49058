//! Criterion benchmarks of weft's fiber synchronisation under contention:
//! `Mutex` and `Semaphore`, with waiters queued because holders suspend
//! inside their critical sections. Runs on the mock backend (no IO).
//!
//! Run: `cargo bench --bench sync`.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use weft::sync::{Mutex, Semaphore};
use weft::{fiber, Switch};

/// Runs `f` in a fresh runtime and returns the time it reports.
fn in_runtime(f: impl FnOnce() -> weft::Result<Duration>) -> Duration {
    weft::mock::run(|_env| f()).expect("benchmark run failed")
}

/// Splits `iters` operations over `fibers` fibers (at least one each).
fn per_fiber(iters: u64, fibers: u64) -> u64 {
    iters.div_ceil(fibers).max(1)
}

fn mutex(c: &mut Criterion) {
    let mut g = c.benchmark_group("mutex");
    g.throughput(Throughput::Elements(1));
    g.bench_function("uncontended_lock_unlock", |b| {
        b.iter_custom(|iters| {
            in_runtime(|| {
                let m = Mutex::new(0u64);
                let start = Instant::now();
                for _ in 0..iters {
                    *m.lock()? += 1;
                }
                std::hint::black_box(*m.lock()?);
                Ok(start.elapsed())
            })
        })
    });
    // Each holder yields inside its critical section, so every other fiber
    // is queued on the lock: each acquisition is a hand-over to a waiter.
    for fibers in [2u64, 8, 64] {
        g.bench_with_input(
            BenchmarkId::new("contended_handover", fibers),
            &fibers,
            |b, &fibers| {
                b.iter_custom(|iters| {
                    in_runtime(|| {
                        let m = Mutex::new(0u64);
                        let each = per_fiber(iters, fibers);
                        let start = Instant::now();
                        Switch::run(|sw| {
                            for _ in 0..fibers {
                                sw.fork(|| {
                                    for _ in 0..each {
                                        let mut g = m.lock()?;
                                        *g += 1;
                                        fiber::yield_now()?;
                                        drop(g);
                                    }
                                    Ok(())
                                });
                            }
                            Ok(())
                        })?;
                        let took = start.elapsed();
                        assert_eq!(*m.lock()?, each * fibers, "lost an increment");
                        // Scale to exactly `iters` acquisitions.
                        Ok(took.mul_f64(iters as f64 / (each * fibers) as f64))
                    })
                })
            },
        );
    }
    g.finish();
}

fn semaphore(c: &mut Criterion) {
    let mut g = c.benchmark_group("semaphore");
    g.throughput(Throughput::Elements(1));
    g.bench_function("uncontended_acquire_release", |b| {
        b.iter_custom(|iters| {
            in_runtime(|| {
                let s = Semaphore::new(1);
                let start = Instant::now();
                for _ in 0..iters {
                    s.acquire()?;
                    s.release();
                }
                Ok(start.elapsed())
            })
        })
    });
    // 16 fibers share `permits` permits, holding each across a yield.
    for permits in [1usize, 4] {
        g.bench_with_input(
            BenchmarkId::new("contended_16_fibers", permits),
            &permits,
            |b, &permits| {
                b.iter_custom(|iters| {
                    in_runtime(|| {
                        let s = Semaphore::new(permits);
                        let fibers = 16;
                        let each = per_fiber(iters, fibers);
                        let start = Instant::now();
                        Switch::run(|sw| {
                            for _ in 0..fibers {
                                sw.fork(|| {
                                    for _ in 0..each {
                                        let permit = s.acquire_permit()?;
                                        fiber::yield_now()?;
                                        drop(permit);
                                    }
                                    Ok(())
                                });
                            }
                            Ok(())
                        })?;
                        let took = start.elapsed();
                        assert_eq!(s.available(), permits, "a permit leaked");
                        Ok(took.mul_f64(iters as f64 / (each * fibers) as f64))
                    })
                })
            },
        );
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = mutex, semaphore
}
criterion_main!(benches);
