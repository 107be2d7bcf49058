//! `weft::sync::Pool`: Eio's pool tests (tests/pool.md) as trace tests,
//! plus panics, cancellation and use from several OS threads.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use weft::sync::{Pool, Promise};
use weft::{fiber, traceln, Error, ErrorKind, Switch};

fn simulated() -> Error {
    Error::msg(ErrorKind::InvalidInput, "Simulated error")
}

/// Eio's `create`: item `i` is the value of the `i`th promise, which may
/// not be resolved yet (so allocation can suspend).
fn alloc_from(items: &[Promise<weft::Result<i32>>]) -> impl Fn() -> weft::Result<i32> + '_ {
    let next = AtomicUsize::new(0);
    move || {
        let i = next.fetch_add(1, Ordering::Relaxed);
        traceln!("Creating item {i}");
        items[i].wait_result()
    }
}

fn ready(v: i32) -> Promise<weft::Result<i32>> {
    Promise::resolved(Ok(v))
}

fn dispose(x: i32) {
    traceln!("disposing {x}");
}

/// A use that traces, yields, and traces again.
fn using(name: &'static str) -> impl FnOnce(&mut i32) -> weft::Result<()> {
    move |x| {
        traceln!("{name}: using item {x}");
        fiber::yield_now()?;
        traceln!("{name} done");
        Ok(())
    }
}

#[test]
fn simple_case() {
    let (r, trace) = weft::mock::run_traced(|_env| {
        let items = [ready(0)];
        let t = Pool::new(1, alloc_from(&items));
        t.with(|x| {
            traceln!("Using item {x}");
            Ok(())
        })?;
        t.with(|x| {
            traceln!("Using item {x}");
            Ok(())
        })
    });
    r.unwrap();
    assert_eq!(trace, ["Creating item 0", "Using item 0", "Using item 0"]);
}

#[test]
fn capacity_one_second_use_waits() {
    let (r, trace) = weft::mock::run_traced(|_env| {
        let (p, resolver) = Promise::new();
        let items = [p];
        let t = Pool::new(1, alloc_from(&items));
        fiber::all([
            Box::new(|| t.with(using("A"))) as Box<dyn FnOnce() -> weft::Result<()>>,
            Box::new(|| t.with(using("B"))),
            Box::new(|| {
                resolver.resolve(Ok(0)).unwrap();
                Ok(())
            }),
        ])
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "Creating item 0",
            "A: using item 0",
            "A done",
            "B: using item 0",
            "B done"
        ]
    );
}

#[test]
fn capacity_two_uses_run_in_parallel() {
    let (r, trace) = weft::mock::run_traced(|_env| {
        let (p0, r0) = Promise::new();
        let (p1, r1) = Promise::new();
        let items = [p0, p1];
        let t = Pool::new(2, alloc_from(&items));
        fiber::all([
            Box::new(|| t.with(using("A"))) as Box<dyn FnOnce() -> weft::Result<()>>,
            Box::new(|| t.with(using("B"))),
            Box::new(|| {
                r0.resolve(Ok(0)).unwrap();
                r1.resolve(Ok(1)).unwrap();
                Ok(())
            }),
        ])
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "Creating item 0",
            "A: using item 0",
            "Creating item 1",
            "B: using item 1",
            "A done",
            "B done"
        ]
    );
}

/// Capacity 1; two uses that cannot block and two normal uses. The first
/// two run in parallel (B on an extra item, disposed afterwards), the next
/// two one after the other. The pool always suspends a fiber that makes a
/// new slot, even if it then takes that slot itself, which is why the items
/// are assigned out of order.
#[test]
fn never_block() {
    let (r, trace) = weft::mock::run_traced(|_env| {
        let (p0, r0) = Promise::new();
        let (p1, r1) = Promise::new();
        let items = [p0, p1];
        let t = Pool::new(1, alloc_from(&items)).dispose(dispose);
        fiber::all([
            Box::new(|| t.with_never_block(using("A"))) as Box<dyn FnOnce() -> weft::Result<()>>,
            Box::new(|| t.with_never_block(using("B"))),
            Box::new(|| t.with(using("C"))),
            Box::new(|| t.with(using("D"))),
            Box::new(|| {
                r0.resolve(Ok(0)).unwrap();
                r1.resolve(Ok(1)).unwrap();
                Ok(())
            }),
        ])
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "Creating item 0",
            "Creating item 1",
            "A: using item 1",
            "B: using item 0",
            "A done",
            "B done",
            "disposing 0",
            "C: using item 1",
            "C done",
            "D: using item 1",
            "D done"
        ]
    );
}

#[test]
fn cancellation() {
    let (r, trace) = weft::mock::run_traced(|_env| {
        let (p, _resolver) = Promise::new();
        let items = [p];
        let t = Pool::new(1, alloc_from(&items));
        let r = fiber::all([
            // Waits for the creation to finish.
            Box::new(|| t.with(|_| -> weft::Result<()> { unreachable!() }))
                as Box<dyn FnOnce() -> weft::Result<()>>,
            // Waits for the item to be returned.
            Box::new(|| t.with(|_| -> weft::Result<()> { unreachable!() })),
            Box::new(|| Err(simulated())),
        ]);
        // The slot survived the cancelled creation.
        assert_eq!(t.idle(), 1);
        r
    });
    assert_eq!(r.unwrap_err().to_string(), simulated().to_string());
    assert_eq!(trace, ["Creating item 0"]);
}

#[test]
fn on_error_the_resource_is_still_returned() {
    let (r, trace) = weft::mock::run_traced(|_env| {
        let items = [ready(0)];
        let t = Pool::new(1, alloc_from(&items));
        let e = t
            .with(|x| -> weft::Result<()> {
                traceln!("Using item {x}");
                Err(simulated())
            })
            .unwrap_err();
        traceln!("Failed: {e}");
        t.with(|x| {
            traceln!("Using item {x}");
            Ok(())
        })
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "Creating item 0",
            "Using item 0",
            "Failed: invalid input, Simulated error",
            "Using item 0"
        ]
    );
}

/// Two fibers want a resource while one is being created. The creation
/// fails: the first fiber reports the error, and the second, woken with the
/// empty slot, tries again.
#[test]
fn failed_creation_wakes_the_next_waiter() {
    let (r, trace) = weft::mock::run_traced(|_env| {
        let (p, resolver) = Promise::new();
        let items = [p, ready(1)];
        let t = Pool::new(1, alloc_from(&items));
        Switch::run(|sw| {
            let a = sw.fork_promise(|| {
                t.with(|i| {
                    traceln!("A: using item {i}");
                    Ok(())
                })
            });
            fiber::both(
                || {
                    t.with(|i| {
                        traceln!("B: using item {i}");
                        Ok(())
                    })
                },
                || {
                    resolver
                        .resolve(Err(Error::msg(
                            ErrorKind::InvalidInput,
                            "Simulated creation failure",
                        )))
                        .unwrap();
                    Ok(())
                },
            )?;
            a.wait_result()
        })
    });
    assert_eq!(
        r.unwrap_err().to_string(),
        "invalid input, Simulated creation failure"
    );
    assert_eq!(
        trace,
        ["Creating item 0", "Creating item 1", "B: using item 1"]
    );
}

#[test]
fn validation() {
    let (r, trace) = weft::mock::run_traced(|_env| {
        let items = [ready(0), ready(1), ready(2)];
        let t = Pool::new(2, alloc_from(&items))
            .validate(|x: &i32| {
                let ok = x & 1 == 0;
                traceln!("validate {x} => {ok}");
                ok
            })
            .dispose(dispose);
        let use_ = |name: &'static str| {
            let t = &t;
            move || {
                t.with(|x| {
                    traceln!("{name}: using item {x}");
                    fiber::yield_now()
                })
            }
        };
        fiber::all([use_("A"), use_("B"), use_("C"), use_("D")])
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "Creating item 0",
            "A: using item 0",
            "Creating item 1",
            "B: using item 1",
            "validate 0 => true",
            "C: using item 0",
            "validate 1 => false",
            "disposing 1",
            "Creating item 2",
            "D: using item 2"
        ]
    );
}

/// `dispose` fails (in Rust, panics): the failure reaches the user, but the
/// resource counts as disposed and is re-created next time.
#[test]
fn dispose_fails() {
    let (r, trace) = weft::mock::run_traced(|_env| {
        let items = [ready(0), ready(1), ready(2)];
        let t = Pool::new(1, alloc_from(&items))
            .validate(|x: &i32| {
                let ok = x & 1 == 1;
                traceln!("validate {x} => {ok}");
                ok
            })
            .dispose(|x| panic!("Simulated error disposing {x}"));
        let use_ = |name: &'static str| {
            let t = &t;
            move || {
                t.with(|x| {
                    traceln!("{name}: using item {x}");
                    fiber::yield_now()
                })
            }
        };
        let r = catch_unwind(AssertUnwindSafe(|| fiber::both(use_("A"), use_("B"))));
        let p = r.expect_err("dispose panicked");
        traceln!("Failed: {}", p.downcast_ref::<String>().unwrap());
        fiber::both(use_("C"), use_("D"))
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "Creating item 0",
            "A: using item 0",
            "validate 0 => false",
            "Failed: Simulated error disposing 0",
            "Creating item 1",
            "C: using item 1",
            "validate 1 => true",
            "D: using item 1"
        ]
    );
}

/// Unlike an `Err`, a panic in the function disposes of the resource (it
/// may be in any state); the pool keeps its capacity.
#[test]
fn panic_disposes_the_resource() {
    let (r, trace) = weft::mock::run_traced(|_env| {
        let items = [ready(0), ready(1)];
        let t = Pool::new(1, alloc_from(&items)).dispose(dispose);
        let r = catch_unwind(AssertUnwindSafe(|| {
            t.with(|x| -> weft::Result<()> { panic!("bug while using {x}") })
        }));
        assert!(r.is_err());
        assert_eq!(t.idle(), 1, "the (now empty) slot is back");
        t.with(|x| {
            traceln!("Using item {x}");
            Ok(())
        })
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "Creating item 0",
            "disposing 0",
            "Creating item 1",
            "Using item 1"
        ]
    );
}

#[test]
#[should_panic(expected = "max_size must be at least 1")]
fn max_size_zero_is_rejected() {
    let _ = Pool::new(0, || Ok(()));
}

/// A waiter cancelled while it waits gets nothing; the resource goes to the
/// next waiter.
#[test]
fn cancelled_waiter_gets_nothing() {
    let (r, trace) = weft::mock::run_traced(|_env| {
        let items = [ready(0)];
        let t = Pool::new(1, alloc_from(&items));
        fiber::all([
            Box::new(|| t.with(using("A"))) as Box<dyn FnOnce() -> weft::Result<()>>,
            Box::new(|| {
                let r = fiber::first(|| t.with(|_| Ok("B: used")), || Ok("B: gave up"))?;
                traceln!("{r}");
                Ok(())
            }),
            Box::new(|| t.with(using("C"))),
        ])
    });
    r.unwrap();
    assert_eq!(
        trace,
        // A was queued (by its yield) before B's racing branch was
        // cancelled, so "A done" comes first; C, not B, gets the item.
        [
            "Creating item 0",
            "A: using item 0",
            "A done",
            "B: gave up",
            "C: using item 0",
            "C done"
        ]
    );
}

/// Fibers on four OS threads share a pool of at most 3 resources: no more
/// than 3 are ever made or in use at once.
#[test]
fn shared_across_threads() {
    const MAX: usize = 3;
    let made = AtomicUsize::new(0);
    let in_use = AtomicUsize::new(0);
    let uses = AtomicUsize::new(0);
    let pool = Pool::new(MAX, || Ok(made.fetch_add(1, Ordering::SeqCst)));
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                weft::mock::Config::new()
                    .external_wait(Duration::from_secs(20))
                    .run(|_env| {
                        fiber::all((0..5).map(|_| {
                            let (pool, in_use, uses) = (&pool, &in_use, &uses);
                            move || {
                                for round in 0..100 {
                                    pool.with(|_conn| {
                                        let now = in_use.fetch_add(1, Ordering::SeqCst) + 1;
                                        assert!(now <= MAX, "{now} in use");
                                        if round % 2 == 0 {
                                            fiber::yield_now()?;
                                        }
                                        in_use.fetch_sub(1, Ordering::SeqCst);
                                        uses.fetch_add(1, Ordering::Relaxed);
                                        Ok(())
                                    })?;
                                }
                                Ok(())
                            }
                        }))
                    })
                    .unwrap();
            });
        }
    });
    assert!(made.load(Ordering::SeqCst) <= MAX);
    assert_eq!(uses.load(Ordering::Relaxed), 4 * 5 * 100);
    assert_eq!(pool.idle(), made.load(Ordering::SeqCst));
}
