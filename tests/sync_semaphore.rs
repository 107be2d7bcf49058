//! `weft::sync::Semaphore`: Eio's semaphore tests (tests/semaphore.md) as
//! trace tests, cancellation, permits, and a stress test with OS threads.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use weft::sync::Semaphore;
use weft::{cancel, fiber, traceln, Error, ErrorKind, Switch};

fn acquire(t: &Semaphore) -> weft::Result<()> {
    traceln!("Acquiring");
    t.acquire()?;
    traceln!("Acquired");
    Ok(())
}

fn release(t: &Semaphore) {
    traceln!("Releasing");
    t.release();
    traceln!("Released");
}

fn simulated() -> Error {
    Error::msg(ErrorKind::InvalidInput, "Simulated error")
}

#[test]
fn simple_case() {
    let (r, trace) = weft::mock::run_traced(|_env| {
        let t = Semaphore::new(1);
        acquire(&t)?;
        release(&t);
        acquire(&t)?;
        release(&t);
        Ok(())
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "Acquiring",
            "Acquired",
            "Releasing",
            "Released",
            "Acquiring",
            "Acquired",
            "Releasing",
            "Released"
        ]
    );
}

#[test]
fn concurrent_access() {
    let (r, trace) = weft::mock::run_traced(|_env| {
        let t = Semaphore::new(2);
        fiber::all((0..4).map(|_| {
            let t = &t;
            move || {
                acquire(t)?;
                fiber::yield_now()?;
                release(t);
                Ok(())
            }
        }))?;
        assert_eq!(t.available(), 2);
        Ok(())
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "Acquiring",
            "Acquired",
            "Acquiring",
            "Acquired",
            "Acquiring",
            "Acquiring",
            "Releasing",
            "Released",
            "Releasing",
            "Released",
            "Acquired",
            "Acquired",
            "Releasing",
            "Released",
            "Releasing",
            "Released",
        ]
    );
}

#[test]
fn cancellation() {
    let (r, trace) = weft::mock::run_traced(|_env| {
        let t = Semaphore::new(0);
        fiber::first(|| acquire(&t), || Ok(()))?;
        release(&t);
        acquire(&t)?;
        assert_eq!(t.available(), 0);
        Ok(())
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "Acquiring",
            "Releasing",
            "Released",
            "Acquiring",
            "Acquired"
        ]
    );
}

/// Waiter A is cancelled, then a permit is released: waiter B (behind A)
/// gets it, and the count stays right.
#[test]
fn cancelled_waiter_never_consumes_a_release() {
    let (r, trace) = weft::mock::run_traced(|_env| {
        let t = Semaphore::new(0);
        Switch::run(|sw| {
            sw.fork(|| {
                let _ = cancel::sub(|scope| {
                    Switch::run(|inner| {
                        inner.fork(|| {
                            let r = t.acquire();
                            traceln!("A: {}", if r.is_ok() { "acquired" } else { "cancelled" });
                            r
                        });
                        scope.cancel(simulated());
                        Ok(())
                    })
                });
                Ok(())
            });
            sw.fork(|| {
                t.acquire()?;
                traceln!("B: acquired");
                Ok(())
            });
            assert_eq!(t.waiting(), 1, "only B is still waiting");
            traceln!("releasing");
            t.release();
            assert_eq!(t.available(), 0, "the permit went to B");
            Ok(())
        })?;
        assert_eq!(t.available(), 0);
        assert_eq!(t.waiting(), 0);
        t.release();
        assert_eq!(t.available(), 1);
        Ok(())
    });
    r.unwrap();
    assert_eq!(trace, ["releasing", "A: cancelled", "B: acquired"]);
}

/// A release hands a permit to A; A is cancelled before it runs. The
/// hand-off wins: A holds the permit, and releasing it (here, by dropping
/// its `Permit`) passes it on to B.
#[test]
fn hand_off_then_cancel() {
    let (r, trace) = weft::mock::run_traced(|_env| {
        let t = Semaphore::new(0);
        Switch::run(|sw| {
            sw.fork(|| {
                let _ = cancel::sub(|scope| {
                    Switch::run(|inner| {
                        inner.fork(|| {
                            let _permit = t.acquire_permit()?;
                            traceln!("A: acquired");
                            fiber::yield_now()
                        });
                        t.release();
                        scope.cancel(simulated());
                        Ok(())
                    })
                });
                Ok(())
            });
            sw.fork(|| {
                let _permit = t.acquire_permit()?;
                traceln!("B: acquired");
                Ok(())
            });
            Ok(())
        })?;
        assert_eq!(t.available(), 1);
        Ok(())
    });
    r.unwrap();
    assert_eq!(trace, ["A: acquired", "B: acquired"]);
}

#[test]
fn permits_release_on_drop_and_on_error() {
    weft::mock::run(|_env| {
        let t = Semaphore::new(2);
        {
            let _a = t.acquire_permit()?;
            let b = t.try_acquire_permit().expect("a second permit");
            assert_eq!(t.available(), 0);
            assert!(t.try_acquire_permit().is_none());
            assert!(!t.try_acquire());
            drop(b);
            assert_eq!(t.available(), 1);
        }
        assert_eq!(t.available(), 2);
        let r: weft::Result<()> = (|| {
            let _p = t.acquire_permit()?;
            Err(simulated())
        })();
        assert!(r.is_err());
        assert_eq!(t.available(), 2, "the permit came back despite the error");
        t.acquire_permit()?.forget();
        assert_eq!(t.available(), 1);
        Ok(())
    })
    .unwrap();
}

#[test]
fn release_above_initial_count_and_fifo_order() {
    let (r, trace) = weft::mock::run_traced(|_env| {
        let t = Semaphore::new(0);
        t.release();
        t.release();
        assert_eq!(t.available(), 2);
        t.acquire()?;
        t.acquire()?;
        Switch::run(|sw| {
            for name in ["a", "b", "c"] {
                let t = &t;
                sw.fork(move || {
                    t.acquire()?;
                    traceln!("{name} acquired");
                    Ok(())
                });
            }
            assert_eq!(t.waiting(), 3);
            for _ in 0..3 {
                t.release();
            }
            Ok(())
        })
    });
    r.unwrap();
    assert_eq!(trace, ["a acquired", "b acquired", "c acquired"]);
}

#[test]
fn already_cancelled_waiter_does_not_queue() {
    weft::mock::run(|_env| {
        let t = Semaphore::new(0);
        let r = cancel::sub(|scope| {
            scope.cancel(simulated());
            t.acquire()
        });
        assert!(r.unwrap_err().is_cancelled());
        assert_eq!(t.waiting(), 0);
        t.release();
        assert_eq!(t.available(), 1);
        Ok(())
    })
    .unwrap();
}

/// Four OS threads with their own schedulers share a semaphore of 3
/// permits; a high-water mark checks that never more than 3 fibers are
/// inside at once, and every acquisition is counted.
#[test]
fn stress_across_threads() {
    const PERMITS: usize = 3;
    const THREADS: usize = 4;
    const FIBERS: usize = 6;
    const ROUNDS: usize = 300;
    let sem = Semaphore::new(PERMITS);
    let inside = AtomicUsize::new(0);
    let high_water = AtomicUsize::new(0);
    let total = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                weft::mock::Config::new()
                    .external_wait(Duration::from_secs(20))
                    .run(|_env| {
                        fiber::all((0..FIBERS).map(|i| {
                            let (sem, inside, high_water, total) =
                                (&sem, &inside, &high_water, &total);
                            move || {
                                for round in 0..ROUNDS {
                                    let _permit = sem.acquire_permit()?;
                                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                                    high_water.fetch_max(now, Ordering::SeqCst);
                                    assert!(now <= PERMITS, "{now} fibers inside");
                                    if (round + i) % 2 == 0 {
                                        fiber::yield_now()?;
                                    }
                                    total.fetch_add(1, Ordering::Relaxed);
                                    inside.fetch_sub(1, Ordering::SeqCst);
                                }
                                Ok(())
                            }
                        }))
                    })
                    .unwrap();
            });
        }
    });
    assert_eq!(total.load(Ordering::Relaxed), THREADS * FIBERS * ROUNDS);
    assert!(high_water.load(Ordering::SeqCst) <= PERMITS);
    assert_eq!(sem.available(), PERMITS);
    assert_eq!(sem.waiting(), 0);
}

/// Cancelled waiters on several threads never leak or duplicate a permit.
#[test]
fn stress_cancellation_across_threads() {
    const PERMITS: usize = 2;
    let sem = Semaphore::new(PERMITS);
    let inside = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                weft::mock::Config::new()
                    .external_wait(Duration::from_secs(20))
                    .run(|_env| {
                        let held = RefCell::new(0usize);
                        for _ in 0..400 {
                            let _ = fiber::first(
                                || {
                                    let _p = sem.acquire_permit()?;
                                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                                    assert!(now <= PERMITS);
                                    *held.borrow_mut() += 1;
                                    let r = fiber::yield_now();
                                    inside.fetch_sub(1, Ordering::SeqCst);
                                    r
                                },
                                fiber::yield_now,
                            );
                        }
                        assert!(*held.borrow() > 0);
                        Ok(())
                    })
                    .unwrap();
            });
        }
    });
    assert_eq!(sem.available(), PERMITS, "no permit leaked or duplicated");
    assert_eq!(sem.waiting(), 0);
}
