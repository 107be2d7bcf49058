//! The scheduling micro-benchmarks: yield ping-pong, spawn + join, promise
//! round trip (two shapes) and bounded streams, on weft, tokio
//! (current_thread) and may (1 worker), plus the bare corosensei switch as
//! the floor.
//!
//! Each child runs its workload `reps` times in one runtime and reports the
//! median time per operation (and the minimum).

use std::time::{Duration, Instant};

use crate::report::{Imp, Measure, Work};
use crate::runner::{emit, interleaved, run_child};
use crate::Opts;

/// Forks/spawns per scope in the spawn workload, as a server forks per
/// connection inside one long-lived scope.
const BATCH: usize = 1000;

/// Runs the selected micro-benchmarks on every runtime that has them.
pub fn run_all(opts: &Opts, out: &mut Vec<Measure>) {
    let scale = if opts.quick { 5 } else { 1 };
    let plan: [(Work, &str, usize, &[Imp]); 6] = [
        (
            Work::Yield,
            "yield",
            1_000_000 / scale,
            &[
                Imp::WeftUring,
                Imp::WeftPosix,
                Imp::TokioCt,
                Imp::May,
                Imp::Floor,
            ],
        ),
        (
            Work::Spawn,
            "spawn",
            200_000,
            &[Imp::WeftUring, Imp::WeftPosix, Imp::TokioCt, Imp::May],
        ),
        (
            Work::Promise,
            "promise",
            200_000 / scale,
            &[Imp::WeftUring, Imp::WeftPosix, Imp::TokioCt],
        ),
        (
            Work::PromiseDirect,
            "promise",
            200_000 / scale,
            &[Imp::WeftUring, Imp::WeftPosix, Imp::TokioCt],
        ),
        (
            Work::Stream1,
            "stream",
            500_000 / scale,
            &[Imp::WeftUring, Imp::WeftPosix, Imp::TokioCt],
        ),
        (
            Work::Stream64,
            "stream",
            500_000 / scale,
            &[Imp::WeftUring, Imp::WeftPosix, Imp::TokioCt],
        ),
    ];
    for (work, group, n, imps) in plan {
        if !opts.wants("micro", group) && !opts.wants("micro", work.key()) {
            continue;
        }
        let args = [n.to_string(), opts.reps.to_string()];
        out.extend(interleaved(work, imps, opts.rounds, |imp| {
            run_child(
                &["micro", work.key(), imp.key(), &args[0], &args[1]],
                Duration::from_secs(120),
                None,
            )
            .result("median")
        }));
    }
}

/// Child side: runs `work` on `imp` and emits `median` and `min` (ns per
/// operation).
pub fn child(work: &str, imp: &str, n: usize, reps: usize) -> Result<(), String> {
    let work = Work::from_key(work).ok_or_else(|| format!("unknown workload {work}"))?;
    let imp = Imp::from_key(imp).ok_or_else(|| format!("unknown runtime {imp}"))?;
    let n = n.max(1);
    let reps = reps.max(1);
    let times: Vec<Duration> = match imp {
        Imp::WeftUring => weft_reps(weft::Backend::Uring, work, n, reps)?,
        Imp::WeftPosix => weft_reps(weft::Backend::Posix, work, n, reps)?,
        Imp::TokioCt => tokio_reps(work, n, reps)?,
        Imp::May => may_reps(work, n, reps)?,
        Imp::Floor if work == Work::Yield => (0..reps).map(|_| floor_switch(n)).collect(),
        _ => return Err(format!("{} has no {} workload", imp.key(), work.key())),
    };
    // Operations per rep: two switches per yield round, one per item/task.
    let ops = if work == Work::Yield && imp != Imp::Floor {
        2 * n
    } else {
        n
    };
    let mut per: Vec<f64> = times
        .iter()
        .map(|t| t.as_nanos() as f64 / ops as f64)
        .collect();
    per.sort_by(f64::total_cmp);
    emit("median", per[per.len() / 2]);
    emit("min", per[0]);
    Ok(())
}

fn weft_reps(
    backend: weft::Backend,
    work: Work,
    n: usize,
    reps: usize,
) -> Result<Vec<Duration>, String> {
    weft::run_with(backend, |_env| {
        (0..reps)
            .map(|_| weft_once(work, n))
            .collect::<weft::Result<Vec<_>>>()
    })
    .map_err(|e| e.to_string())
}

fn weft_once(work: Work, n: usize) -> weft::Result<Duration> {
    use weft::sync::{Promise, Stream};
    use weft::{fiber, Switch};
    let start = Instant::now();
    match work {
        Work::Yield => fiber::both(
            || (0..n).try_for_each(|_| fiber::yield_now()),
            || (0..n).try_for_each(|_| fiber::yield_now()),
        )?,
        Work::Spawn => {
            let mut left = n;
            while left > 0 {
                let batch = left.min(BATCH);
                Switch::run(|sw| {
                    for _ in 0..batch {
                        sw.fork(|| Ok(()));
                    }
                    Ok(())
                })?;
                left -= batch;
            }
        }
        // One side suspends on the promise and the other wakes it: the
        // forked waiter runs at once and suspends; resolving wakes it, and
        // the yield lets it finish.
        Work::Promise => Switch::run(|sw| {
            for i in 0..n {
                let (p, r) = Promise::<usize>::new();
                sw.fork(move || {
                    std::hint::black_box(*p.wait()?);
                    Ok(())
                });
                let _ = r.resolve(i);
                fiber::yield_now()?;
            }
            Ok(())
        })?,
        // The program as ANCHORS states it, as tokio runs it below: fork
        // the resolver, then wait. weft's `fork` runs the child first, so
        // the value is there when the wait comes and nobody suspends.
        Work::PromiseDirect => Switch::run(|sw| {
            for i in 0..n {
                let (p, r) = Promise::<usize>::new();
                sw.fork(move || {
                    let _ = r.resolve(i);
                    Ok(())
                });
                std::hint::black_box(*p.wait()?);
            }
            Ok(())
        })?,
        Work::Stream1 | Work::Stream64 => {
            let s = Stream::new(work.capacity());
            fiber::both(
                || (0..n).try_for_each(|i| s.add(i)),
                || {
                    for _ in 0..n {
                        std::hint::black_box(s.take()?);
                    }
                    Ok(())
                },
            )?
        }
        _ => unreachable!("not a micro workload"),
    }
    Ok(start.elapsed())
}

fn tokio_reps(work: Work, n: usize, reps: usize) -> Result<Vec<Duration>, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| e.to_string())?;
    Ok(rt.block_on(async {
        let mut v = Vec::new();
        for _ in 0..reps {
            v.push(tokio_once(work, n).await);
        }
        v
    }))
}

async fn tokio_once(work: Work, n: usize) -> Duration {
    use tokio::sync::{mpsc, oneshot};
    use tokio::task::yield_now;
    let start = Instant::now();
    match work {
        Work::Yield => {
            let yielder = move || async move {
                for _ in 0..n {
                    yield_now().await;
                }
            };
            let (a, b) = (tokio::spawn(yielder()), tokio::spawn(yielder()));
            a.await.unwrap();
            b.await.unwrap();
        }
        Work::Spawn => {
            let mut left = n;
            let mut handles = Vec::with_capacity(BATCH);
            while left > 0 {
                let batch = left.min(BATCH);
                handles.extend((0..batch).map(|_| tokio::spawn(async {})));
                for h in handles.drain(..) {
                    h.await.unwrap();
                }
                left -= batch;
            }
        }
        // The awaiting task suspends (the spawned resolver has not run
        // yet) and the resolver wakes it: one suspension per round trip,
        // as in weft's `Promise` shape. The same program is weft's
        // `PromiseDirect`, where the resolver runs first.
        Work::Promise | Work::PromiseDirect => {
            for i in 0..n {
                let (tx, rx) = oneshot::channel::<usize>();
                tokio::spawn(async move {
                    let _ = tx.send(i);
                });
                std::hint::black_box(rx.await.unwrap());
            }
        }
        Work::Stream1 | Work::Stream64 => {
            let (tx, mut rx) = mpsc::channel::<usize>(work.capacity());
            let p = tokio::spawn(async move {
                for i in 0..n {
                    tx.send(i).await.unwrap();
                }
            });
            let c = tokio::spawn(async move {
                for _ in 0..n {
                    std::hint::black_box(rx.recv().await.unwrap());
                }
            });
            p.await.unwrap();
            c.await.unwrap();
        }
        _ => unreachable!("not a micro workload"),
    }
    start.elapsed()
}

fn may_reps(work: Work, n: usize, reps: usize) -> Result<Vec<Duration>, String> {
    may::config().set_workers(1);
    let mut v = Vec::new();
    for _ in 0..reps {
        let start = Instant::now();
        match work {
            Work::Yield => {
                let yielder = move || {
                    for _ in 0..n {
                        may::coroutine::yield_now();
                    }
                };
                let (a, b) = (may::go!(yielder), may::go!(yielder));
                a.join().map_err(|_| "a may coroutine panicked")?;
                b.join().map_err(|_| "a may coroutine panicked")?;
            }
            Work::Spawn => {
                // Spawned and joined from a coroutine, as on the others.
                let main = may::go!(move || {
                    let mut left = n;
                    let mut handles = Vec::with_capacity(BATCH);
                    while left > 0 {
                        let batch = left.min(BATCH);
                        handles.extend((0..batch).map(|_| may::go!(|| {})));
                        for h in handles.drain(..) {
                            h.join().unwrap();
                        }
                        left -= batch;
                    }
                });
                main.join().map_err(|_| "a may coroutine panicked")?;
            }
            _ => return Err(format!("no {} workload for may", work.key())),
        }
        v.push(start.elapsed());
    }
    Ok(v)
}

/// The floor: one corosensei resume + suspend, no scheduler at all.
fn floor_switch(n: usize) -> Duration {
    use corosensei::{Coroutine, Yielder};
    let mut co = Coroutine::new(|y: &Yielder<(), ()>, ()| loop {
        y.suspend(());
    });
    let start = Instant::now();
    for _ in 0..n {
        std::hint::black_box(co.resume(()));
    }
    start.elapsed()
}
