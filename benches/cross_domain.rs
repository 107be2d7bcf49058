//! Criterion benchmarks of work across domains (OS threads, each with its
//! own scheduler): a promise resolved in another domain, a stream fed from
//! another domain, and starting a domain. Runs on the POSIX backend, whose
//! schedulers sleep in epoll and are woken across threads.
//!
//! Run: `cargo bench --bench cross_domain`.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use weft::sync::{Promise, Resolver, Stream};
use weft::{fiber, Backend};

/// Runs `f` in a fresh POSIX runtime and returns the time it reports.
fn in_runtime(f: impl FnOnce(&weft::Env) -> weft::Result<Duration>) -> Duration {
    weft::run_with(Backend::Posix, f).expect("benchmark run failed")
}

fn promise_across(c: &mut Criterion) {
    let mut g = c.benchmark_group("cross_domain_promise");
    g.throughput(Throughput::Elements(1));
    // This domain makes a promise and sends its resolver to the other
    // domain (a stream of capacity 1), which resolves it; this one waits.
    // One element = one resolver sent, resolved over there, seen here.
    g.bench_function("resolve_in_other_domain", |b| {
        b.iter_custom(|iters| {
            in_runtime(|env| {
                let dm = env.domain_mgr();
                let to_other = Stream::<Resolver<u64>>::new(1);
                let rx = to_other.clone();
                let mut took = Duration::ZERO;
                fiber::both(
                    || {
                        dm.run(move || {
                            for i in 0..=iters {
                                let _ = rx.take()?.resolve(i);
                            }
                            Ok(())
                        })
                    },
                    || {
                        // One warm round trip: the other thread is running.
                        let (p, r) = Promise::new();
                        to_other.add(r)?;
                        p.wait()?;
                        let start = Instant::now();
                        for i in 1..=iters {
                            let (p, r) = Promise::new();
                            to_other.add(r)?;
                            assert_eq!(*p.wait()?, i);
                        }
                        took = start.elapsed();
                        Ok(())
                    },
                )?;
                Ok(took)
            })
        })
    });
    g.finish();
}

fn stream_across(c: &mut Criterion) {
    let mut g = c.benchmark_group("cross_domain_stream");
    g.throughput(Throughput::Elements(1));
    // The other domain produces, this one consumes.
    for cap in [1usize, 64] {
        g.bench_with_input(BenchmarkId::new("one_to_one", cap), &cap, |b, &cap| {
            b.iter_custom(|iters| {
                in_runtime(|env| {
                    let dm = env.domain_mgr();
                    let s = Stream::<u64>::new(cap);
                    let tx = s.clone();
                    let mut took = Duration::ZERO;
                    fiber::both(
                        || {
                            dm.run(move || {
                                for i in 0..=iters {
                                    tx.add(i)?;
                                }
                                Ok(())
                            })
                        },
                        || {
                            s.take()?; // the producer is running
                            let start = Instant::now();
                            for _ in 0..iters {
                                std::hint::black_box(s.take()?);
                            }
                            took = start.elapsed();
                            Ok(())
                        },
                    )?;
                    Ok(took)
                })
            })
        });
    }
    g.finish();
}

fn domain_start(c: &mut Criterion) {
    let mut g = c.benchmark_group("domain");
    g.throughput(Throughput::Elements(1));
    // A new OS thread and scheduler, an empty job, and the result back.
    g.bench_function("run_empty_job", |b| {
        b.iter_custom(|iters| {
            in_runtime(|env| {
                let dm = env.domain_mgr();
                let start = Instant::now();
                for _ in 0..iters {
                    dm.run(|| Ok(()))?;
                }
                Ok(start.elapsed())
            })
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = promise_across, stream_across, domain_start
}
criterion_main!(benches);
