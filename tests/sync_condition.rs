//! `weft::sync::Condition`: the README's X and Y modules and its signal
//! handler examples, Eio's condition tests (tests/condition.md) as trace
//! tests, broadcasts from real signal handlers, and cross-thread use.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use weft::sync::{Condition, Mutex};
use weft::{cancel, fiber, traceln, Error, ErrorKind, Switch};

fn simulated() -> Error {
    Error::msg(ErrorKind::InvalidInput, "Simulated error")
}

// ---------------------------------------------------------------------------
// The README's examples.

/// Eio's module X: only safe on one thread, with no fiber switch between
/// the check and the wait.
struct X {
    x: Cell<i32>,
    changed: Condition,
}

impl X {
    fn new(x: i32) -> X {
        X {
            x: Cell::new(x),
            changed: Condition::new(),
        }
    }

    fn await_zero(&self) -> weft::Result<()> {
        while self.x.get() != 0 {
            self.changed.wait_no_mutex()?;
        }
        traceln!("x is now zero");
        Ok(())
    }

    fn set(&self, x: i32) {
        self.x.set(x);
        self.changed.broadcast();
        traceln!("x set to {x}");
    }
}

#[test]
fn readme_x() {
    let (r, trace) = weft::mock::run_traced(|_env| {
        let x = X::new(5);
        fiber::both(
            || {
                traceln!("Waiting for x to be 0");
                x.await_zero()
            },
            || {
                x.set(0);
                Ok(())
            },
        )
    });
    r.unwrap();
    assert_eq!(
        trace,
        ["Waiting for x to be 0", "x set to 0", "x is now zero"]
    );
}

/// Eio's module Y: safe to share between threads.
struct Y {
    y: Mutex<i32>,
    changed: Condition,
}

impl Y {
    fn new(y: i32) -> Y {
        Y {
            y: Mutex::new(y),
            changed: Condition::new(),
        }
    }

    fn await_zero(&self) -> weft::Result<()> {
        let mut y = self.y.lock()?;
        while *y != 0 {
            y = self.changed.wait(y)?;
        }
        traceln!("y is now zero (at least until we release the mutex)");
        Ok(())
    }

    fn set(&self, value: i32) -> weft::Result<()> {
        self.y.use_rw(true, |y| {
            *y = value;
            self.changed.broadcast();
            traceln!("y set to {value}");
            Ok(())
        })
    }
}

#[test]
fn readme_y() {
    let (r, trace) = weft::mock::run_traced(|_env| {
        let y = Y::new(5);
        fiber::both(
            || {
                traceln!("Waiting for y to be 0");
                y.await_zero()
            },
            || y.set(0),
        )
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "Waiting for y to be 0",
            "y set to 0",
            "y is now zero (at least until we release the mutex)"
        ]
    );
}

/// Module Y across OS threads: a plain thread sets `y` (through its own
/// scheduler) while fibers on this thread wait for it.
#[test]
fn readme_y_across_threads() {
    let y = Y::new(5);
    std::thread::scope(|s| {
        s.spawn(|| {
            weft::mock::Config::new()
                .external_wait(Duration::from_secs(20))
                .run(|_env| {
                    for v in [4, 3, 2, 1, 0] {
                        std::thread::sleep(Duration::from_millis(2));
                        y.y.use_rw(false, |y| {
                            *y = v;
                            Ok(())
                        })?;
                        y.changed.broadcast();
                    }
                    Ok(())
                })
                .unwrap();
        });
        weft::mock::Config::new()
            .external_wait(Duration::from_secs(20))
            .run(|_env| fiber::all((0..3).map(|_| || y.await_zero())))
            .unwrap();
    });
}

// ---------------------------------------------------------------------------
// Eio's tests/condition.md.

#[test]
fn simple_case() {
    let (r, trace) = weft::mock::run_traced(|_env| {
        let condition = Condition::new();
        fiber::both(
            || {
                traceln!("1: wait for condition");
                condition.wait_no_mutex()?;
                traceln!("1: finished");
                Ok(())
            },
            || {
                traceln!("2: broadcast condition");
                condition.broadcast();
                traceln!("2: finished");
                Ok(())
            },
        )
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "1: wait for condition",
            "2: broadcast condition",
            "2: finished",
            "1: finished"
        ]
    );
}

#[test]
fn broadcast_with_no_waiters_does_not_block() {
    let (r, trace) = weft::mock::run_traced(|_env| {
        let condition = Condition::new();
        traceln!("broadcast condition");
        condition.broadcast();
        traceln!("finished");
        Ok(())
    });
    r.unwrap();
    assert_eq!(trace, ["broadcast condition", "finished"]);
}

#[test]
fn broadcast_wakes_all_waiters() {
    let (r, trace) = weft::mock::run_traced(|_env| {
        let condition = Condition::new();
        let c = &condition;
        fiber::all([
            Box::new(move || {
                traceln!("1: wait for condition");
                c.wait_no_mutex()?;
                traceln!("1: finished");
                Ok(())
            }) as Box<dyn FnOnce() -> weft::Result<()>>,
            Box::new(move || {
                traceln!("2: wait for condition");
                c.wait_no_mutex()?;
                traceln!("2: finished");
                Ok(())
            }),
            Box::new(move || {
                assert_eq!(c.waiting(), 2);
                traceln!("3: broadcast condition");
                c.broadcast();
                traceln!("3: finished");
                Ok(())
            }),
        ])?;
        assert_eq!(condition.waiting(), 0);
        Ok(())
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "1: wait for condition",
            "2: wait for condition",
            "3: broadcast condition",
            "3: finished",
            "1: finished",
            "2: finished"
        ]
    );
}

/// Eio's "typical single-domain use": a predicate on a plain cell.
struct Single {
    x: Cell<i32>,
    cond: Condition,
}

impl Single {
    fn set(&self, value: i32) {
        self.x.set(value);
        self.cond.broadcast();
    }

    fn await_(&self, p: impl Fn(i32) -> bool) -> weft::Result<()> {
        while !p(self.x.get()) {
            self.cond.wait_no_mutex()?;
        }
        Ok(())
    }
}

#[test]
fn typical_single_thread_use_and_cancellation() {
    let (r, trace) = weft::mock::run_traced(|_env| {
        let t = Single {
            x: Cell::new(0),
            cond: Condition::new(),
        };
        fiber::both(
            || {
                traceln!("x = {}", t.x.get());
                t.await_(|x| x == 42)?;
                traceln!("x = {}", t.x.get());
                Ok(())
            },
            || {
                t.set(5);
                fiber::yield_now()?;
                t.set(7);
                t.set(42);
                Ok(())
            },
        )?;
        // Cancellation while waiting.
        fiber::first(
            || {
                t.await_(|x| x == 0)?;
                unreachable!("x is 42")
            },
            || Ok(()),
        )?;
        assert_eq!(t.cond.waiting(), 0, "the cancelled waiter left");
        fiber::both(
            || {
                traceln!("x = {}", t.x.get());
                t.await_(|x| x == 0)?;
                traceln!("x = {}", t.x.get());
                Ok(())
            },
            || {
                t.set(5);
                fiber::yield_now()?;
                t.set(0);
                Ok(())
            },
        )
    });
    r.unwrap();
    assert_eq!(trace, ["x = 0", "x = 42", "x = 42", "x = 0"]);
}

/// Eio's "use with mutex".
struct WithMutex {
    x: Mutex<i32>,
    cond: Condition,
}

impl WithMutex {
    fn set(&self, value: i32) -> weft::Result<()> {
        self.x.use_rw(false, |x| {
            *x = value;
            Ok(())
        })?;
        self.cond.broadcast();
        Ok(())
    }

    fn await_(&self, p: impl Fn(i32) -> bool) -> weft::Result<()> {
        let mut x = self.x.lock()?;
        while !p(*x) {
            x = self.cond.wait(x)?;
        }
        Ok(())
    }

    fn get(&self) -> i32 {
        *self.x.lock().unwrap()
    }
}

#[test]
fn use_with_mutex_and_cancellation() {
    let (r, trace) = weft::mock::run_traced(|_env| {
        let t = WithMutex {
            x: Mutex::new(0),
            cond: Condition::new(),
        };
        fiber::both(
            || {
                traceln!("x = {}", t.get());
                t.await_(|x| x == 42)?;
                traceln!("x = {}", t.get());
                Ok(())
            },
            || {
                t.set(5)?;
                fiber::yield_now()?;
                t.set(7)?;
                t.set(42)
            },
        )?;
        fiber::first(
            || {
                t.await_(|x| x == 0)?;
                unreachable!("x is 42")
            },
            || Ok(()),
        )?;
        assert!(
            t.x.try_lock()?.is_some(),
            "the cancelled waiter left the mutex unlocked"
        );
        fiber::both(
            || {
                traceln!("x = {}", t.get());
                t.await_(|x| x == 0)?;
                traceln!("x = {}", t.get());
                Ok(())
            },
            || {
                t.set(5)?;
                fiber::yield_now()?;
                t.set(0)
            },
        )
    });
    r.unwrap();
    assert_eq!(trace, ["x = 0", "x = 42", "x = 42", "x = 0"]);
}

/// Eio's "cancelling while the mutex is held". Eio re-locks the mutex
/// before `await` raises, and its fiber then unlocks it; here `wait`
/// consumes the guard and returns `Err(Cancelled)` with the mutex left
/// unlocked, so the cancelled fiber can finish while the main fiber still
/// holds the lock — and can never touch the data meanwhile.
#[test]
fn cancelling_while_the_mutex_is_held() {
    let (r, trace) = weft::mock::run_traced(|_env| {
        let mutex = Mutex::new(0);
        let cond = Condition::new();
        Switch::run(|sw| {
            sw.fork(|| {
                traceln!("Forked fiber locking");
                let g = mutex.lock()?;
                match cond.wait(g) {
                    Ok(_) => unreachable!("never broadcast"),
                    Err(e) => {
                        assert!(e.is_cancelled());
                        traceln!("Forked fiber cancelled, without the lock");
                        Err(e)
                    }
                }
            });
            cancel::protect(|| {
                traceln!("Main fiber locking");
                let g = mutex.lock()?;
                sw.fail(simulated());
                fiber::yield_now()?;
                traceln!("Main fiber unlocking");
                drop(g);
                Ok(())
            })
        })
    });
    assert_eq!(r.unwrap_err().to_string(), simulated().to_string());
    assert_eq!(
        trace,
        [
            "Forked fiber locking",
            "Main fiber locking",
            "Forked fiber cancelled, without the lock",
            "Main fiber unlocking"
        ]
    );
}

#[test]
fn wait_when_already_cancelled_releases_the_mutex() {
    weft::mock::run(|_env| {
        let mutex = Mutex::new(());
        let cond = Condition::new();
        let r = cancel::sub(|scope| {
            let g = mutex.lock()?;
            scope.cancel(simulated());
            cond.wait(g).map(drop)
        });
        assert!(r.unwrap_err().is_cancelled());
        assert!(mutex.try_lock()?.is_some());
        assert_eq!(cond.waiting(), 0);
        Ok(())
    })
    .unwrap();
}

/// `wait` registers before it unlocks: a fiber that was waiting for the
/// mutex, and changes the value and broadcasts as soon as it gets it, is
/// never missed.
#[test]
fn wait_registers_before_releasing_the_mutex() {
    let (r, trace) = weft::mock::run_traced(|_env| {
        let m = Mutex::new(false);
        let cond = Condition::new();
        let g = m.lock()?;
        Switch::run(|sw| {
            sw.fork(|| {
                let mut g = m.lock()?; // waits until `wait` below unlocks
                *g = true;
                cond.broadcast();
                traceln!("set and broadcast");
                Ok(())
            });
            let mut g = g;
            while !*g {
                traceln!("waiting");
                g = cond.wait(g)?;
            }
            traceln!("saw the change");
            Ok(())
        })
    });
    r.unwrap();
    assert_eq!(trace, ["waiting", "set and broadcast", "saw the change"]);
}

#[test]
fn looping() {
    let (r, trace) = weft::mock::run_traced(|_env| {
        let cond = Condition::new();
        let x = Cell::new(0);
        let set = |v| {
            traceln!("setting x={v}");
            x.set(v);
            cond.broadcast();
        };
        fiber::both(
            || {
                cond.loop_no_mutex(|| {
                    traceln!("Checking x...");
                    fiber::yield_now()?;
                    let seen = x.get();
                    traceln!("Saw x = {seen}");
                    if seen == 3 {
                        traceln!("Finished");
                        Ok(Some(()))
                    } else {
                        Ok(None)
                    }
                })
            },
            || {
                for v in 1..=4 {
                    set(v);
                    fiber::yield_now()?;
                }
                Ok(())
            },
        )
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "Checking x...",
            "setting x=1",
            "Saw x = 1",
            "setting x=2",
            "Checking x...",
            "setting x=3",
            "Saw x = 3",
            "Finished",
            "setting x=4"
        ]
    );
}

#[test]
fn loop_cancelled() {
    let (r, trace) = weft::mock::run_traced(|_env| {
        let cond = Condition::new();
        fiber::both(
            || {
                cond.loop_no_mutex(|| {
                    traceln!("Checking");
                    Ok(None::<()>)
                })
            },
            || Err(simulated()),
        )
    });
    assert_eq!(r.unwrap_err().to_string(), simulated().to_string());
    assert_eq!(trace, ["Checking"]);
}

#[test]
fn loop_cancelled_after_succeeding() {
    let (r, trace) = weft::mock::run_traced(|_env| {
        let cond = Condition::new();
        fiber::both(
            || {
                cond.loop_no_mutex(|| {
                    traceln!("Checking");
                    Ok(None::<()>)
                })
            },
            || {
                traceln!("Broadcasting");
                cond.broadcast();
                Err(simulated())
            },
        )
    });
    assert_eq!(r.unwrap_err().to_string(), simulated().to_string());
    assert_eq!(trace, ["Checking", "Broadcasting", "Checking"]);
}

#[test]
fn loop_user_function_fails() {
    let (r, trace) = weft::mock::run_traced(|_env| {
        let cond = Condition::new();
        cond.loop_no_mutex(|| -> weft::Result<Option<()>> {
            fiber::yield_now()?;
            Err(Error::msg(ErrorKind::InvalidInput, "Simulated failure"))
        })
    });
    assert_eq!(
        r.unwrap_err().to_string(),
        "invalid input, Simulated failure"
    );
    assert!(trace.is_empty());
}

#[test]
fn wait_since_does_not_miss_an_earlier_broadcast() {
    let (r, trace) = weft::mock::run_traced(|_env| {
        let cond = Condition::new();
        let seen = cond.sequence();
        cond.broadcast();
        assert_eq!(cond.sequence(), seen.wrapping_add(1));
        traceln!("waiting");
        cond.wait_since(seen)?; // returns at once
        traceln!("done");
        Ok(())
    });
    r.unwrap();
    assert_eq!(trace, ["waiting", "done"]);
}

// ---------------------------------------------------------------------------
// Cross-thread broadcasts.

/// Plain threads (outside any runtime) broadcast while fibers on several
/// schedulers wait with `wait_since`; no broadcast is lost.
#[test]
fn broadcasts_from_plain_threads() {
    const ROUNDS: u64 = 500;
    let cond = Condition::new();
    let round = AtomicU64::new(0);
    let acked = AtomicU64::new(0);
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 1..=ROUNDS {
                round.store(i, Ordering::SeqCst);
                cond.broadcast();
                while acked.load(Ordering::SeqCst) < i {
                    std::thread::yield_now();
                }
            }
        });
        weft::mock::Config::new()
            .external_wait(Duration::from_secs(20))
            .run(|_env| {
                let mut last = 0;
                while last < ROUNDS {
                    let seen = cond.sequence();
                    let now = round.load(Ordering::SeqCst);
                    if now > last {
                        last = now;
                        acked.store(now, Ordering::SeqCst);
                        continue;
                    }
                    cond.wait_since(seen)?;
                }
                Ok(())
            })
            .unwrap();
    });
}

// ---------------------------------------------------------------------------
// Signal handlers.

static SIGNALLED: Condition = Condition::new();

extern "C" fn on_sigusr1(_signum: libc::c_int) {
    // Only async-signal-safe work here: `broadcast` is.
    SIGNALLED.broadcast();
}

fn install_handler() {
    // SAFETY: a zeroed `sigaction` is a valid value (empty mask, no flags),
    // which we then fill in; `on_sigusr1` has the signature the kernel
    // calls handlers with and only calls an async-signal-safe function.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigusr1 as extern "C" fn(libc::c_int) as libc::sighandler_t;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()), 0);
    }
}

fn raise_sigusr1() {
    // SAFETY: raising a signal whose handler is installed is always sound.
    assert_eq!(unsafe { libc::raise(libc::SIGUSR1) }, 0);
}

/// The README's `run_op`: the first branch registers before the second
/// announces itself.
fn run_op(interrupt: impl FnOnce()) -> weft::Result<()> {
    fiber::first(
        || {
            SIGNALLED.wait_no_mutex()?;
            traceln!("Cancelled at user's request.");
            Ok(())
        },
        || {
            traceln!("Running operation (Ctrl-C to cancel)...");
            interrupt();
            Err(fiber::await_cancel()) // simulated work
        },
    )
}

/// All signal tests share the process-wide handler, so they run in one test.
#[test]
fn broadcast_from_signal_handler() {
    install_handler();
    let expected = [
        "Running operation (Ctrl-C to cancel)...",
        "Cancelled at user's request.",
    ];

    // 1. The "user" presses Ctrl-C on another thread: the handler runs
    //    there and wakes the fiber through its scheduler's remote queue.
    let (r, trace) = weft::mock::Config::new()
        .external_wait(Duration::from_secs(20))
        .run_traced(|_env| {
            let mut presser = None;
            run_op(|| {
                presser = Some(std::thread::spawn(|| {
                    std::thread::sleep(Duration::from_millis(5));
                    raise_sigusr1();
                }));
            })?;
            presser.unwrap().join().unwrap();
            Ok(())
        });
    r.unwrap();
    assert_eq!(trace, expected);

    // 2. The signal arrives on the scheduler's own thread, in the middle of
    //    a fiber.
    let (r, trace) = weft::mock::run_traced(|_env| run_op(raise_sigusr1));
    r.unwrap();
    assert_eq!(trace, expected);

    // 3. Eio's configuration-reloading loop: a signal that arrives while
    //    the configuration is being read makes it be read again.
    let (r, trace) = weft::mock::run_traced(|_env| {
        let loads = Cell::new(0);
        SIGNALLED.loop_no_mutex(|| {
            traceln!("Reading configuration...");
            loads.set(loads.get() + 1);
            if loads.get() < 3 {
                raise_sigusr1(); // the file changed while we read it
            }
            traceln!("Finished reading configuration");
            Ok((loads.get() == 3).then_some(()))
        })
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "Reading configuration...",
            "Finished reading configuration",
            "Reading configuration...",
            "Finished reading configuration",
            "Reading configuration...",
            "Finished reading configuration",
        ]
    );

    // 4. Stress: signals hit the scheduler thread (often while a fiber holds
    //    the waiter list's lock, registering or cancelling) and other
    //    threads; each round waits for exactly one signal, so a lost
    //    broadcast would hang the round (caught by a watchdog).
    signal_stress();
}

fn signal_stress() {
    const ROUNDS: usize = 1500;
    // SAFETY: `pthread_self` has no preconditions.
    let scheduler_thread = unsafe { libc::pthread_self() };
    let ready = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 1..=ROUNDS {
                while ready.load(Ordering::SeqCst) < i {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    std::hint::spin_loop();
                }
                if i % 3 == 0 {
                    raise_sigusr1(); // handler on this thread
                } else {
                    // SAFETY: the scheduler thread outlives this scope (it
                    // joins it), and SIGUSR1 has a handler installed.
                    let rc = unsafe { libc::pthread_kill(scheduler_thread, libc::SIGUSR1) };
                    assert_eq!(rc, 0);
                }
            }
        });
        let r = weft::mock::Config::new()
            .external_wait(Duration::from_secs(20))
            .run(|_env| {
                let finished = Cell::new(false);
                let r = fiber::both(
                    || {
                        for i in 1..=ROUNDS {
                            let seen = SIGNALLED.sequence();
                            ready.store(i, Ordering::SeqCst);
                            SIGNALLED.wait_since(seen)?;
                        }
                        finished.set(true);
                        Ok(())
                    },
                    || {
                        // Churn: register and cancel, over and over, so the
                        // list lock is often held when a signal arrives.
                        let start = Instant::now();
                        while !finished.get() {
                            assert!(
                                start.elapsed() < Duration::from_secs(60),
                                "a broadcast was lost (stuck at round {})",
                                ready.load(Ordering::SeqCst)
                            );
                            fiber::first(|| SIGNALLED.wait_no_mutex(), fiber::yield_now)?;
                        }
                        Ok(())
                    },
                );
                stop.store(true, Ordering::SeqCst);
                r
            });
        stop.store(true, Ordering::SeqCst);
        r.unwrap();
    });
}
