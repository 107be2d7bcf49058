//! `weft::sync::RwLock`: shared and exclusive access, fairness, cancellation,
//! poisoning, and a stress test with OS threads.

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use weft::sync::RwLock;
use weft::{cancel, fiber, traceln, Error, ErrorKind, Switch};

fn simulated() -> Error {
    Error::msg(ErrorKind::InvalidInput, "Simulated error")
}

type Job<'a> = Box<dyn FnOnce() -> weft::Result<()> + 'a>;

fn reader<'a>(t: &'a RwLock<i32>, name: &'static str) -> Job<'a> {
    Box::new(move || {
        traceln!("{name}: reading");
        let g = t.read()?;
        traceln!("{name}: read {}", *g);
        fiber::yield_now()?;
        traceln!("{name}: done");
        Ok(())
    })
}

fn writer<'a>(t: &'a RwLock<i32>, name: &'static str, v: i32) -> Job<'a> {
    Box::new(move || {
        traceln!("{name}: writing");
        let mut g = t.write()?;
        *g = v;
        traceln!("{name}: wrote {v}");
        fiber::yield_now()?;
        traceln!("{name}: done");
        Ok(())
    })
}

#[test]
fn readers_share_writers_exclude() {
    let (r, trace) = weft::mock::run_traced(|_env| {
        let t = RwLock::new(0);
        fiber::all([
            reader(&t, "r1"),
            reader(&t, "r2"),
            writer(&t, "w", 1),
            reader(&t, "r3"),
        ])
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "r1: reading",
            "r1: read 0",
            "r2: reading",
            "r2: read 0",  // two readers at once
            "w: writing",  // waits for both readers
            "r3: reading", // queued behind the writer: fair
            "r1: done",
            "r2: done",
            "w: wrote 1",
            "w: done",
            "r3: read 1",
            "r3: done"
        ]
    );
}

/// When a writer finishes, every reader queued before the next writer is
/// let in together; the writer after them waits for all of them.
#[test]
fn queued_readers_are_admitted_together() {
    let (r, trace) = weft::mock::run_traced(|_env| {
        let t = RwLock::new(0);
        fiber::all([
            writer(&t, "w1", 1),
            reader(&t, "r1"),
            reader(&t, "r2"),
            writer(&t, "w2", 2),
            reader(&t, "r3"),
        ])
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "w1: writing",
            "w1: wrote 1",
            "r1: reading",
            "r2: reading",
            "w2: writing",
            "r3: reading",
            "w1: done",
            "r1: read 1",
            "r2: read 1",
            "r1: done",
            "r2: done",
            "w2: wrote 2",
            "w2: done",
            "r3: read 2",
            "r3: done"
        ]
    );
}

/// A writer waiting at the head of the queue is cancelled: the readers
/// queued behind it only waited because of it, so they are let in at once.
#[test]
fn cancelled_writer_unblocks_readers_behind_it() {
    let (r, trace) = weft::mock::run_traced(|_env| {
        let t = RwLock::new(0);
        let held = RefCell::new(Some(t.read()?));
        Switch::run(|sw| {
            sw.fork(|| {
                let _ = cancel::sub(|scope| {
                    Switch::run(|inner| {
                        inner.fork(|| {
                            let r = t.write();
                            traceln!("w: {}", if r.is_ok() { "locked" } else { "cancelled" });
                            r.map(drop)
                        });
                        sw.fork(|| {
                            let g = t.read()?;
                            traceln!("r: read {}", *g);
                            Ok(())
                        });
                        traceln!("cancelling w");
                        scope.cancel(simulated());
                        Ok(())
                    })
                });
                Ok(())
            });
            Ok(())
        })?;
        drop(held.borrow_mut().take());
        assert!(t.try_write()?.is_some());
        Ok(())
    });
    r.unwrap();
    // The cancel hook admits the reader before it fails the writer. The
    // reader got in while the first read lock was still held.
    assert_eq!(trace, ["cancelling w", "r: read 0", "w: cancelled"]);
}

#[test]
fn cancelled_reader_never_holds_the_lock() {
    weft::mock::run(|_env| {
        let t = RwLock::new(0);
        let w = t.write()?;
        let got = fiber::first(|| t.read().map(|_| true), || Ok(false))?;
        assert!(!got);
        drop(w);
        // No reader was left counted: a writer can get in at once.
        assert!(t.try_write()?.is_some());
        Ok(())
    })
    .unwrap();
}

#[test]
fn try_read_and_try_write() {
    weft::mock::run(|_env| {
        let t = RwLock::new(5);
        {
            let r1 = t.try_read()?.expect("free");
            let r2 = t.try_read()?.expect("shared");
            assert!(t.try_write()?.is_none());
            assert_eq!(*r1 + *r2, 10);
        }
        {
            let mut w = t.try_write()?.expect("free");
            *w = 6;
            assert!(t.try_read()?.is_none());
            assert!(t.try_write()?.is_none());
        }
        // Failed attempts left nothing behind.
        assert_eq!(*t.write()?, 6);
        assert_eq!(*t.read()?, 6);
        Ok(())
    })
    .unwrap();
}

#[test]
fn failed_writer_poisons_and_wakes_waiters() {
    let (r, trace) = weft::mock::run_traced(|_env| {
        let t = RwLock::new(0);
        let r = fiber::both(
            || {
                let r = t.use_write(false, |v| {
                    *v = 1;
                    fiber::yield_now()?;
                    traceln!("Poisoning lock");
                    Err::<(), _>(simulated())
                });
                assert!(r.is_err());
                Ok(())
            },
            || {
                traceln!("Waiting to read...");
                t.use_read(|_| -> weft::Result<()> { unreachable!("poisoned") })
            },
        );
        let e = r.unwrap_err();
        assert_eq!(e.kind(), &ErrorKind::Poisoned);
        assert!(t.is_poisoned());
        assert_eq!(t.write().unwrap_err().kind(), &ErrorKind::Poisoned);
        assert_eq!(t.try_read().unwrap_err().kind(), &ErrorKind::Poisoned);
        Ok(())
    });
    r.unwrap();
    assert_eq!(trace, ["Waiting to read...", "Poisoning lock"]);
}

#[test]
fn panics_poison_writers_only() {
    weft::mock::run(|_env| {
        let t = RwLock::new(0);
        let r = catch_unwind(AssertUnwindSafe(|| {
            let _g = t.read().unwrap();
            panic!("reader");
        }));
        assert!(r.is_err());
        assert!(!t.is_poisoned());
        let r = catch_unwind(AssertUnwindSafe(|| {
            let mut g = t.write().unwrap();
            *g = 1;
            panic!("writer");
        }));
        assert!(r.is_err());
        assert!(t.is_poisoned());
        assert_eq!(t.into_inner(), 1);
        Ok(())
    })
    .unwrap();
}

#[test]
fn use_write_protected_from_cancellation() {
    let (r, trace) = weft::mock::run_traced(|_env| {
        let t = RwLock::new(0);
        let r = fiber::both(
            || {
                t.use_write(true, |v| {
                    fiber::yield_now()?;
                    *v = 1;
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
        assert!(!t.is_poisoned());
        assert_eq!(*t.read()?, 1);
        Ok(())
    });
    r.unwrap();
    assert_eq!(trace, ["Cancelling...", "Restored invariant"]);
}

/// Readers and writers on four OS threads: writers are always alone, and no
/// update is lost.
#[test]
fn stress_across_threads() {
    let lock = RwLock::new(0u64);
    let readers = AtomicUsize::new(0);
    let writers = AtomicUsize::new(0);
    let max_readers = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                weft::mock::Config::new()
                    .external_wait(Duration::from_secs(20))
                    .run(|_env| {
                        fiber::all((0..6).map(|i| {
                            let (lock, readers, writers, max_readers) =
                                (&lock, &readers, &writers, &max_readers);
                            move || {
                                for round in 0..200 {
                                    if (i + round) % 4 == 0 {
                                        let mut g = lock.write()?;
                                        assert_eq!(writers.fetch_add(1, Ordering::SeqCst), 0);
                                        assert_eq!(readers.load(Ordering::SeqCst), 0);
                                        *g += 1;
                                        if round % 3 == 0 {
                                            fiber::yield_now()?;
                                        }
                                        writers.fetch_sub(1, Ordering::SeqCst);
                                    } else {
                                        let _g = lock.read()?;
                                        let n = readers.fetch_add(1, Ordering::SeqCst) + 1;
                                        max_readers.fetch_max(n, Ordering::SeqCst);
                                        assert_eq!(writers.load(Ordering::SeqCst), 0);
                                        fiber::yield_now()?;
                                        readers.fetch_sub(1, Ordering::SeqCst);
                                    }
                                }
                                Ok(())
                            }
                        }))
                    })
                    .unwrap();
            });
        }
    });
    assert_eq!(lock.into_inner(), 4 * 6 * 200 / 4);
    assert!(
        max_readers.load(Ordering::SeqCst) > 1,
        "readers never overlapped"
    );
}
