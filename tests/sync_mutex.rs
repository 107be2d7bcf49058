//! `weft::sync::Mutex`: Eio's mutex tests (tests/mutex.md) as trace tests,
//! the README's `Atomic_file` example, cancellation, poisoning by panics,
//! and a stress test with real OS threads.

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use weft::sync::{Mutex, MutexGuard};
use weft::{cancel, fiber, traceln, Error, ErrorKind, Switch};

fn simulated() -> Error {
    Error::msg(ErrorKind::InvalidInput, "Simulated error")
}

fn lock<T>(m: &Mutex<T>) -> weft::Result<MutexGuard<'_, T>> {
    traceln!("Locking");
    let g = m.lock()?;
    traceln!("Locked");
    Ok(g)
}

fn unlock<T>(g: MutexGuard<'_, T>) {
    traceln!("Unlocking");
    drop(g);
    traceln!("Unlocked");
}

/// The poison error's source: the error that poisoned the mutex.
fn poison_cause(e: &Error) -> &Error {
    assert_eq!(e.kind(), &ErrorKind::Poisoned, "{e}");
    e.source_error()
        .and_then(|s| s.downcast_ref::<Error>())
        .expect("a poison error has the failure as its source")
}

#[test]
fn readme_atomic_file() {
    struct AtomicFile {
        data: Mutex<String>,
    }
    impl AtomicFile {
        fn save(&self, data: &str) -> weft::Result<()> {
            self.data.use_rw(true, |file| {
                file.clear();
                fiber::yield_now()?; // the write suspends half-way
                file.push_str(data);
                Ok(())
            })
        }
        fn load(&self) -> weft::Result<String> {
            self.data.use_ro(|file| Ok(file.clone()))
        }
    }
    let (r, trace) = weft::mock::run_traced(|_env| {
        let t = AtomicFile {
            data: Mutex::new(String::new()),
        };
        fiber::both(
            || t.save("some data"),
            || {
                let data = t.load()?;
                traceln!("Loaded: {data:?}");
                Ok(())
            },
        )
    });
    r.unwrap();
    assert_eq!(trace, [r#"Loaded: "some data""#]);
}

#[test]
fn simple_case() {
    let (r, trace) = weft::mock::run_traced(|_env| {
        let t = Mutex::new(());
        unlock(lock(&t)?);
        unlock(lock(&t)?);
        Ok(())
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "Locking",
            "Locked",
            "Unlocking",
            "Unlocked",
            "Locking",
            "Locked",
            "Unlocking",
            "Unlocked"
        ]
    );
}

#[test]
fn concurrent_access_is_fifo() {
    let (r, trace) = weft::mock::run_traced(|_env| {
        let t = Mutex::new(());
        fiber::all((0..4).map(|_| {
            let t = &t;
            move || {
                let g = lock(t)?;
                fiber::yield_now()?;
                unlock(g);
                Ok(())
            }
        }))
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "Locking",
            "Locked",
            "Locking",
            "Locking",
            "Locking",
            "Unlocking",
            "Unlocked",
            "Locked",
            "Unlocking",
            "Unlocked",
            "Locked",
            "Unlocking",
            "Unlocked",
            "Locked",
            "Unlocking",
            "Unlocked",
        ]
    );
}

// Eio's "double unlock raises an exception" has no equivalent: a guard can
// only be dropped once.

#[test]
fn use_rw_one_critical_section_at_a_time() {
    let (r, trace) = weft::mock::run_traced(|_env| {
        let t = Mutex::new(());
        let f = |_: &mut ()| {
            traceln!("Entered critical section");
            fiber::yield_now()?;
            traceln!("Leaving critical section");
            Ok(())
        };
        fiber::both(|| t.use_rw(true, f), || t.use_rw(true, f))
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "Entered critical section",
            "Leaving critical section",
            "Entered critical section",
            "Leaving critical section"
        ]
    );
}

#[test]
fn failed_use_rw_poisons() {
    let (r, trace) = weft::mock::run_traced(|_env| {
        let t = Mutex::new(());
        let e = t.use_rw(true, |_| Err::<(), _>(simulated())).unwrap_err();
        assert_eq!(e.kind(), &ErrorKind::InvalidInput);
        assert!(t.is_poisoned());
        traceln!("Trying to use the failed lock again fails:");
        t.lock().map(drop)
    });
    let e = r.unwrap_err();
    assert_eq!(poison_cause(&e).to_string(), simulated().to_string());
    assert!(
        e.to_string().contains("poisoned by a writer that failed"),
        "{e}"
    );
    assert_eq!(trace, ["Trying to use the failed lock again fails:"]);
}

#[test]
fn protect_prevents_cancellation_of_critical_section() {
    let (r, trace) = weft::mock::run_traced(|_env| {
        let t = Mutex::new(());
        fiber::both(
            || {
                t.use_rw(true, |_| {
                    fiber::yield_now()?;
                    traceln!("Restored invariant");
                    Ok(())
                })?;
                fiber::check()?;
                traceln!("Error: not cancelled!");
                Ok(())
            },
            || {
                traceln!("Cancelling...");
                Err(simulated())
            },
        )?;
        assert!(!t.is_poisoned());
        Ok(())
    });
    assert_eq!(r.unwrap_err().to_string(), simulated().to_string());
    assert_eq!(trace, ["Cancelling...", "Restored invariant"]);
}

#[test]
fn unprotected_critical_section_is_interrupted_and_poisons() {
    let (r, trace) = weft::mock::run_traced(|_env| {
        let t = Mutex::new(());
        let r = fiber::both(
            || {
                t.use_rw(false, |_| {
                    fiber::yield_now()?;
                    traceln!("Restored invariant");
                    Ok(())
                })
            },
            || {
                traceln!("Cancelling...");
                Err(simulated())
            },
        );
        assert!(r.is_err());
        traceln!("Trying to reuse the failed mutex...");
        t.use_ro(|_| -> weft::Result<()> { unreachable!("poisoned") })
    });
    let e = r.unwrap_err();
    let cause = poison_cause(&e);
    assert!(cause.is_cancelled(), "{cause}");
    assert_eq!(
        cause.cancel_reason().unwrap().to_string(),
        simulated().to_string()
    );
    assert_eq!(
        trace,
        ["Cancelling...", "Trying to reuse the failed mutex..."]
    );
}

#[test]
fn protect_does_not_prevent_cancellation_while_waiting() {
    let (r, trace) = weft::mock::run_traced(|_env| {
        let t = Mutex::new(());
        let g = t.lock()?;
        let r = fiber::both(
            || {
                t.use_rw(true, |_| -> weft::Result<()> {
                    unreachable!("never locked")
                })
            },
            || {
                traceln!("Cancelling...");
                Err(simulated())
            },
        );
        assert_eq!(r.unwrap_err().to_string(), simulated().to_string());
        drop(g);
        t.use_ro(|_| {
            traceln!("Can reuse the mutex");
            Ok(())
        })
    });
    r.unwrap();
    assert_eq!(trace, ["Cancelling...", "Can reuse the mutex"]);
}

#[test]
fn poisoning_wakes_waiters() {
    let (r, trace) = weft::mock::run_traced(|_env| {
        let t = Mutex::new(());
        fiber::both(
            || {
                let r = t.use_rw(false, |_| {
                    fiber::yield_now()?;
                    traceln!("Poisoning mutex");
                    Err::<(), _>(simulated())
                });
                assert!(r.is_err());
                Ok(())
            },
            || {
                traceln!("Waiting for lock...");
                t.use_ro(|_| -> weft::Result<()> { unreachable!("poisoned") })
            },
        )
    });
    let e = r.unwrap_err();
    assert_eq!(poison_cause(&e).to_string(), simulated().to_string());
    assert_eq!(trace, ["Waiting for lock...", "Poisoning mutex"]);
}

#[test]
fn failed_use_ro_does_not_poison() {
    let (r, trace) = weft::mock::run_traced(|_env| {
        let t = Mutex::new(());
        let e = t.use_ro(|_| Err::<(), _>(simulated())).unwrap_err();
        traceln!("Caught: {e}");
        traceln!("Trying to use the lock again is OK:");
        drop(t.lock()?);
        Ok(())
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "Caught: invalid input, Simulated error",
            "Trying to use the lock again is OK:"
        ]
    );
}

#[test]
fn try_lock() {
    let (r, trace) = weft::mock::run_traced(|_env| {
        let t = Mutex::new(());
        let f = || {
            match t.try_lock()? {
                Some(g) => {
                    traceln!("Entered critical section");
                    fiber::yield_now()?;
                    traceln!("Leaving critical section");
                    drop(g);
                }
                None => traceln!("Failed to get lock"),
            }
            Ok(())
        };
        fiber::both(f, f)?;
        t.use_ro(|_| {
            traceln!("Lock still works");
            Ok(())
        })
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "Entered critical section",
            "Failed to get lock",
            "Leaving critical section",
            "Lock still works"
        ]
    );
}

#[test]
fn try_lock_on_poisoned_mutex_fails() {
    weft::mock::run(|_env| {
        let t = Mutex::new(1);
        let _ = t.use_rw(false, |_| Err::<(), _>(simulated()));
        assert_eq!(t.try_lock().unwrap_err().kind(), &ErrorKind::Poisoned);
        Ok(())
    })
    .unwrap();
}

#[test]
fn guard_dropped_by_panic_poisons() {
    weft::mock::run(|_env| {
        let t = Mutex::new(vec![1]);
        let r = catch_unwind(AssertUnwindSafe(|| {
            let mut g = t.lock().unwrap();
            g.push(2);
            panic!("half-way through");
        }));
        assert!(r.is_err());
        assert!(t.is_poisoned());
        let e = t.lock().unwrap_err();
        assert_eq!(poison_cause(&e).kind(), &ErrorKind::Panic);
        Ok(())
    })
    .unwrap();
}

#[test]
fn use_rw_panic_poisons_and_use_ro_panic_does_not() {
    weft::mock::run(|_env| {
        let t = Mutex::new(0);
        let r = catch_unwind(AssertUnwindSafe(|| {
            t.use_ro(|_| -> weft::Result<()> { panic!("reader") })
        }));
        assert!(r.is_err());
        assert!(!t.is_poisoned(), "a reader's panic does not poison");
        assert_eq!(*t.lock()?, 0);

        let r = catch_unwind(AssertUnwindSafe(|| {
            t.use_rw(false, |x| -> weft::Result<()> {
                *x = 1;
                panic!("writer")
            })
        }));
        assert!(r.is_err());
        let e = t.lock().unwrap_err();
        let cause = poison_cause(&e);
        assert_eq!(cause.kind(), &ErrorKind::Panic);
        assert!(cause.to_string().contains("writer"), "{cause}");
        Ok(())
    })
    .unwrap();
}

/// A waiter cancelled before the lock is released never gets it; the lock
/// goes to the next waiter.
#[test]
fn cancelled_waiter_never_owns_the_lock() {
    let (r, trace) = weft::mock::run_traced(|_env| {
        let t = Mutex::new(0);
        let held = RefCell::new(Some(t.lock()?));
        Switch::run(|sw| {
            sw.fork(|| {
                let r = cancel::sub(|scope| {
                    Switch::run(|inner| {
                        inner.fork(|| {
                            let r = t.lock();
                            traceln!("A: {}", if r.is_ok() { "locked" } else { "cancelled" });
                            let mut g = r?;
                            *g += 1;
                            Ok(())
                        });
                        traceln!("cancelling A");
                        scope.cancel(simulated());
                        Ok(())
                    })
                });
                // A's `Err(Cancelled)` is only the echo of the scope's
                // cancellation, which the switch does not report.
                let _ = r;
                Ok(())
            });
            sw.fork(|| {
                let mut g = t.lock()?;
                traceln!("B: locked");
                *g += 10;
                Ok(())
            });
            traceln!("unlocking");
            drop(held.borrow_mut().take());
            Ok(())
        })?;
        assert_eq!(*t.lock()?, 10, "only B ran its critical section");
        assert!(!t.is_poisoned());
        Ok(())
    });
    r.unwrap();
    assert_eq!(
        trace,
        ["cancelling A", "unlocking", "A: cancelled", "B: locked"]
    );
}

/// If the lock was handed to a waiter before it was cancelled, the waiter
/// owns it (the hand-off wins the race); it sees the cancellation at its
/// next suspension point, and its unlock passes the lock on.
#[test]
fn hand_off_then_cancel_passes_the_lock_on() {
    let (r, trace) = weft::mock::run_traced(|_env| {
        let t = Mutex::new(Vec::new());
        let held = RefCell::new(Some(t.lock()?));
        Switch::run(|sw| {
            sw.fork(|| {
                let r = cancel::sub(|scope| {
                    Switch::run(|inner| {
                        inner.fork(|| {
                            let mut g = t.lock()?;
                            traceln!("A: locked");
                            g.push("A");
                            let r = fiber::yield_now();
                            traceln!(
                                "A: yield says {}",
                                if r.is_ok() { "ok" } else { "cancelled" }
                            );
                            r
                        });
                        // A waits; hand it the lock, then cancel it.
                        traceln!("unlocking");
                        drop(held.borrow_mut().take());
                        traceln!("cancelling A");
                        scope.cancel(simulated());
                        Ok(())
                    })
                });
                // A's `Err(Cancelled)` is only the echo of the scope's
                // cancellation, which the switch does not report.
                let _ = r;
                Ok(())
            });
            sw.fork(|| {
                traceln!("B: waiting");
                t.lock()?.push("B");
                traceln!("B: locked");
                Ok(())
            });
            Ok(())
        })?;
        assert_eq!(*t.lock()?, ["A", "B"]);
        Ok(())
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "unlocking",
            "cancelling A",
            "B: waiting",
            "A: locked",
            "A: yield says cancelled",
            "B: locked"
        ]
    );
}

#[test]
fn already_cancelled_fiber_does_not_queue() {
    weft::mock::run(|_env| {
        let t = Mutex::new(());
        let g = t.lock()?;
        let r = cancel::sub(|scope| {
            scope.cancel(simulated());
            t.lock().map(drop)
        });
        assert!(r.unwrap_err().is_cancelled());
        drop(g);
        // Uncontended locking does not suspend, so it is no cancellation
        // point (as in Eio).
        let r = cancel::sub(|scope| {
            scope.cancel(simulated());
            t.lock().map(drop)
        });
        assert!(r.is_ok());
        Ok(())
    })
    .unwrap();
}

#[test]
fn get_mut_and_into_inner() {
    let mut m = Mutex::new(vec![1]);
    m.get_mut().push(2);
    assert_eq!(m.into_inner(), [1, 2]);
    let m = Mutex::default();
    let _: &Mutex<u8> = &m;
    assert!(format!("{m:?}").contains("locked: false"));
}

/// Four OS threads, each with its own scheduler and eight fibers, hammer one
/// mutex. Every increment must be counted and no two critical sections may
/// overlap, even though the lock is handed between threads.
#[test]
fn stress_across_threads() {
    const THREADS: u64 = 4;
    const FIBERS: u64 = 8;
    const ROUNDS: u64 = 300;
    let counter = Mutex::new(0u64);
    let inside = AtomicBool::new(false);
    let handoffs = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                weft::mock::Config::new()
                    .external_wait(Duration::from_secs(20))
                    .run(|_env| {
                        fiber::all((0..FIBERS).map(|i| {
                            let (counter, inside, handoffs) = (&counter, &inside, &handoffs);
                            move || {
                                for round in 0..ROUNDS {
                                    let mut g = counter.lock()?;
                                    assert!(!inside.swap(true, Ordering::SeqCst), "overlap");
                                    let before = *g;
                                    if (round + i) % 3 == 0 {
                                        fiber::yield_now()?;
                                        handoffs.fetch_add(1, Ordering::Relaxed);
                                    }
                                    *g = before + 1;
                                    inside.store(false, Ordering::SeqCst);
                                }
                                Ok(())
                            }
                        }))
                    })
                    .unwrap();
            });
        }
    });
    assert_eq!(counter.into_inner(), THREADS * FIBERS * ROUNDS);
    assert!(handoffs.load(Ordering::Relaxed) > 0);
}

/// Cancellation churn across threads: waiters that give up after a yield
/// must never leave the mutex locked or lose an increment.
#[test]
fn stress_cancellation_across_threads() {
    const THREADS: usize = 3;
    let counter = Mutex::new(0u64);
    let done = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                weft::mock::Config::new()
                    .external_wait(Duration::from_secs(20))
                    .run(|_env| {
                        for _ in 0..300 {
                            // Race a lock against a fiber that finishes at
                            // once: the lock is cancelled if it must wait.
                            let got = fiber::first(
                                || {
                                    let mut g = counter.lock()?;
                                    *g += 1;
                                    fiber::yield_now()?;
                                    Ok(true)
                                },
                                || Ok(false),
                            )?;
                            if got {
                                done.fetch_add(1, Ordering::Relaxed);
                            }
                            let mut g = counter.lock()?;
                            *g += 1;
                            done.fetch_add(1, Ordering::Relaxed);
                            drop(g);
                            fiber::yield_now()?;
                        }
                        Ok(())
                    })
                    .unwrap();
            });
        }
    });
    // Every increment whose fiber reported success happened, and possibly
    // some whose fiber was cancelled at the yield after incrementing.
    let n = counter.into_inner();
    assert!(n >= done.load(Ordering::Relaxed), "{n}");
    assert!(n >= (THREADS * 300) as u64);
}
