//! Criterion benchmarks of weft's scheduling core: fiber switches, spawning,
//! promises and streams. Each measurement runs inside one mock runtime (no
//! IO is involved, so the backend does not matter) and times only the work.
//!
//! Run: `cargo bench --bench core`.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use weft::sync::{Promise, Stream};
use weft::{fiber, Switch};

/// Runs `f` in a fresh runtime and returns the time it reports.
fn in_runtime(f: impl FnOnce() -> weft::Result<Duration>) -> Duration {
    weft::mock::run(|_env| f()).expect("benchmark run failed")
}

fn yield_pingpong(c: &mut Criterion) {
    let mut g = c.benchmark_group("yield");
    g.throughput(Throughput::Elements(1));
    g.bench_function("pingpong_two_fibers", |b| {
        // One element = one switch; each iteration is two switches (one per fiber).
        b.iter_custom(|iters| {
            in_runtime(|| {
                let start = Instant::now();
                let n = iters.div_ceil(2);
                fiber::both(
                    || {
                        for _ in 0..n {
                            fiber::yield_now()?;
                        }
                        Ok(())
                    },
                    || {
                        for _ in 0..n {
                            fiber::yield_now()?;
                        }
                        Ok(())
                    },
                )?;
                Ok(start.elapsed())
            })
        })
    });
    g.finish();
}

fn spawn_join(c: &mut Criterion) {
    let mut g = c.benchmark_group("spawn");
    g.throughput(Throughput::Elements(1));
    g.bench_function("fork_and_join", |b| {
        b.iter_custom(|iters| {
            in_runtime(|| {
                let start = Instant::now();
                // Batches of 1000 forks per switch, as a server would fork
                // per connection inside one long-lived switch.
                let mut left = iters;
                while left > 0 {
                    let batch = left.min(1000);
                    Switch::run(|sw| {
                        for _ in 0..batch {
                            sw.fork(|| Ok(()));
                        }
                        Ok(())
                    })?;
                    left -= batch;
                }
                Ok(start.elapsed())
            })
        })
    });
    g.finish();
}

fn promise_round_trip(c: &mut Criterion) {
    let mut g = c.benchmark_group("promise");
    g.throughput(Throughput::Elements(1));
    g.bench_function("fork_waiter_then_resolve", |b| {
        // A forked fiber waits (and suspends); the parent resolves; the
        // waiter wakes and finishes. Comparable to tokio's spawn + oneshot.
        b.iter_custom(|iters| {
            in_runtime(|| {
                let start = Instant::now();
                Switch::run(|sw| {
                    for _ in 0..iters {
                        let (p, r) = Promise::<u64>::new();
                        sw.fork(move || {
                            let v = p.wait()?;
                            std::hint::black_box(v);
                            Ok(())
                        });
                        r.resolve(1).ok();
                        fiber::yield_now()?;
                    }
                    Ok(())
                })?;
                Ok(start.elapsed())
            })
        })
    });
    g.bench_function("resolved_peek", |b| {
        b.iter_custom(|iters| {
            in_runtime(|| {
                let p = Promise::resolved(7u64);
                let start = Instant::now();
                for _ in 0..iters {
                    std::hint::black_box(p.wait()?);
                }
                Ok(start.elapsed())
            })
        })
    });
    g.finish();
}

fn stream_throughput(c: &mut Criterion) {
    let mut g = c.benchmark_group("stream");
    g.throughput(Throughput::Elements(1));
    for cap in [0usize, 1, 64] {
        g.bench_with_input(BenchmarkId::new("one_to_one", cap), &cap, |b, &cap| {
            b.iter_custom(|iters| {
                in_runtime(|| {
                    let s = Stream::new(cap);
                    let start = Instant::now();
                    fiber::both(
                        || {
                            for i in 0..iters {
                                s.add(i)?;
                            }
                            Ok(())
                        },
                        || {
                            for _ in 0..iters {
                                std::hint::black_box(s.take()?);
                            }
                            Ok(())
                        },
                    )?;
                    Ok(start.elapsed())
                })
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = yield_pingpong, spawn_join, promise_round_trip, stream_throughput
}
criterion_main!(benches);
