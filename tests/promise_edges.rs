//! Promises: resolving once, many waiters, cancelled waiters, abandoned
//! promises, `fork_promise` (Eio's `tests/sync.md` and the points).

use std::time::Duration;

use weft::sync::{AlreadyResolved, Promise};
use weft::time::with_timeout;
use weft::{fiber, mock, traceln, Error, ErrorKind, Result, Switch};

fn failure(msg: &'static str) -> Error {
    Error::msg(ErrorKind::Io, msg)
}

fn state<T: std::fmt::Display>(p: &Promise<Result<T>>) -> String {
    match p.peek() {
        None => "unresolved".into(),
        Some(Ok(v)) => format!("fulfilled:{v}"),
        Some(Err(e)) => format!("broken:{e}"),
    }
}

#[test]
fn fork_promise_waiting_for_a_fulfilled_promise() {
    let (r, trace) = mock::run_traced(|_env| {
        let (p, r) = Promise::<Result<String>>::new();
        Switch::run(|sw| {
            traceln!("Initial state: {}", state(&p));
            let thread = sw.fork_promise(|| p.wait_result());
            r.resolve(Ok("ok".into())).unwrap();
            traceln!("After being fulfilled: {}", state(&p));
            traceln!("Thread before yield: {}", state(&thread));
            fiber::yield_now()?;
            traceln!("Thread after yield: {}", state(&thread));
            traceln!("Final result: {}", thread.wait_result()?);
            Ok(())
        })
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "Initial state: unresolved",
            "After being fulfilled: fulfilled:ok",
            "Thread before yield: unresolved",
            "Thread after yield: fulfilled:ok",
            "Final result: ok",
        ]
    );
}

#[test]
fn fork_promise_waiting_for_a_broken_promise() {
    // The forked fiber's error goes to its promise: the switch does not fail.
    let (r, trace) = mock::run_traced(|_env| {
        let (p, r) = Promise::<Result<String>>::new();
        Switch::run(|sw| {
            let thread = sw.fork_promise(|| p.wait_result());
            r.resolve(Err(failure("test"))).unwrap();
            traceln!("After being broken: {}", state(&p));
            traceln!("Thread before yield: {}", state(&thread));
            fiber::yield_now()?;
            traceln!("Thread after yield: {}", state(&thread));
            match thread.wait_result() {
                Ok(v) => traceln!("unexpected {v}"),
                Err(e) => traceln!("Final result error: {e}"),
            }
            traceln!("switch still on: {}", sw.check().is_ok());
            Ok(())
        })
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "After being broken: broken:io error, test",
            "Thread before yield: unresolved",
            "Thread after yield: broken:io error, test",
            "Final result error: io error, test",
            "switch still on: true",
        ]
    );
}

#[test]
fn forked_code_runs_and_waits() {
    let (r, trace) = mock::run_traced(|_env| {
        let i = std::cell::Cell::new(0);
        Switch::run(|sw| {
            sw.fork(|| {
                i.set(i.get() + 1);
                Ok(())
            });
            Ok(())
        })?;
        traceln!("Forked code ran; i is now {}", i.get());
        let (p1, r1) = Promise::new();
        let r = Switch::run(|sw| {
            sw.fork(|| {
                p1.wait()?;
                i.set(i.get() + 1);
                Err(failure("Exit"))
            });
            traceln!("Forked code waiting; i is still {}", i.get());
            r1.resolve(()).unwrap();
            Ok(())
        });
        traceln!("Forked code ran; i is now {} ({})", i.get(), r.unwrap_err());
        Ok(())
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "Forked code ran; i is now 1",
            "Forked code waiting; i is still 1",
            "Forked code ran; i is now 2 (io error, Exit)",
        ]
    );
}

#[test]
fn a_second_resolve_gives_the_value_back() {
    let r = mock::run(|_env| {
        let (p, r) = Promise::new();
        assert!(!r.is_resolved());
        r.resolve(String::from("first")).unwrap();
        let back = r.resolve(String::from("second"));
        assert_eq!(back, Err(AlreadyResolved(String::from("second"))));
        assert!(!r.try_resolve(String::from("third")));
        assert!(r.is_resolved() && p.is_resolved());
        Ok(p.wait()?.clone())
    });
    assert_eq!(r.unwrap(), "first");
}

#[test]
fn try_resolve_resolves_once() {
    let r = mock::run(|_env| {
        let (p, r) = Promise::new();
        let r2 = r.clone();
        assert!(r2.try_resolve(1));
        assert!(!r.try_resolve(2));
        assert!(!r2.try_resolve(3));
        Ok(*p.wait()?)
    });
    assert_eq!(r.unwrap(), 1);
}

#[test]
fn peek_never_suspends() {
    let (r, trace) = mock::run_traced(|_env| {
        let (p, r) = Promise::new();
        Switch::run(|sw| {
            sw.fork(|| {
                traceln!("other fiber");
                Ok(())
            });
            traceln!("peek: {:?}", p.peek());
            r.resolve(9).unwrap();
            traceln!("peek: {:?}", p.peek());
            Ok(())
        })
    });
    r.unwrap();
    assert_eq!(trace, ["other fiber", "peek: None", "peek: Some(9)"]);
}

#[test]
fn waiting_on_a_resolved_promise_does_not_switch_fibers() {
    let (r, trace) = mock::run_traced(|_env| {
        let p = Promise::resolved("ready");
        Switch::run(|sw| {
            sw.fork(|| {
                traceln!("queued fiber starts");
                fiber::yield_now()?;
                traceln!("queued fiber resumes");
                Ok(())
            });
            traceln!("got {}", p.wait()?);
            traceln!("got {} again", p.wait()?);
            Ok(())
        })
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "queued fiber starts",
            "got ready",
            "got ready again",
            "queued fiber resumes"
        ]
    );
}

#[test]
fn every_waiter_gets_the_value_in_wait_order() {
    let (r, trace) = mock::run_traced(|_env| {
        let (p, r) = Promise::new();
        Switch::run(|sw| {
            for i in 0..5 {
                let p = &p;
                sw.fork(move || {
                    let v: &String = p.wait()?;
                    traceln!("waiter {i} got {v}");
                    Ok(())
                });
            }
            traceln!("resolving");
            r.resolve(String::from("shared")).unwrap();
            Ok(())
        })
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "resolving",
            "waiter 0 got shared",
            "waiter 1 got shared",
            "waiter 2 got shared",
            "waiter 3 got shared",
            "waiter 4 got shared",
        ]
    );
}

/// Forks `waiters` fibers that each wait on one promise as `wait` says
/// (given the waiter's number, the clock and the promise), resolves it with
/// 42 after 2 s of mock time, and returns the trace.
fn waiters_trace(
    waiters: u64,
    wait: impl Fn(u64, weft::time::MonoClock, &Promise<u64>) -> Result<u64> + Copy,
) -> Vec<String> {
    let (r, trace) = mock::run_traced(|env| {
        let clock = env.mono_clock();
        let (p, r) = Promise::new();
        let p = &p;
        Switch::run(|sw| {
            for i in 0..waiters {
                sw.fork(move || {
                    match wait(i, clock, p) {
                        Ok(v) => traceln!("waiter {i} got {v}"),
                        Err(e) => traceln!("waiter {i} failed: {e}"),
                    }
                    Ok(())
                });
            }
            clock.sleep(Duration::from_secs(2))?;
            traceln!("resolving");
            r.resolve(42).unwrap();
            Ok(())
        })
    });
    r.unwrap();
    trace
}

#[test]
fn a_cancelled_waiter_does_not_stop_the_others() {
    let trace = waiters_trace(3, |i, clock, p| {
        if i == 1 {
            with_timeout(clock, Duration::from_secs(1), || p.wait().copied())
        } else {
            p.wait().copied()
        }
    });
    assert_eq!(
        trace,
        [
            "mock time is now 1",
            "waiter 1 failed: timeout, timed out after 1s",
            "mock time is now 2",
            "resolving",
            "waiter 0 got 42",
            "waiter 2 got 42",
        ]
    );
}

/// The first waiter leaves (timed out) and another arrives later: the rest
/// are still woken in the order they began to wait.
#[test]
fn waiters_keep_their_order_when_the_first_leaves() {
    let trace = waiters_trace(4, |i, clock, p| match i {
        0 => with_timeout(clock, Duration::from_secs(1), || p.wait().copied()),
        3 => {
            clock.sleep(Duration::from_millis(1500))?;
            p.wait().copied()
        }
        _ => p.wait().copied(),
    });
    assert_eq!(
        trace,
        [
            "mock time is now 1",
            "waiter 0 failed: timeout, timed out after 1s",
            "mock time is now 1.5",
            "mock time is now 2",
            "resolving",
            "waiter 1 got 42",
            "waiter 2 got 42",
            "waiter 3 got 42",
        ]
    );
}

#[test]
fn a_waiter_cancelled_by_its_switch_gets_cancelled() {
    let (r, trace) = mock::run_traced(|_env| {
        let (p, resolver) = Promise::<u8>::new();
        let p = &p;
        let inner = fiber::both(
            || {
                let e = p.wait().unwrap_err();
                traceln!("inner waiter: {e}");
                Err(e)
            },
            || Err(failure("inner failed")),
        );
        traceln!("inner: {}", inner.unwrap_err());
        fiber::both(
            || {
                traceln!("outer waiter got {}", p.wait()?);
                Ok(())
            },
            || {
                resolver.resolve(3).unwrap();
                Ok(())
            },
        )
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "inner waiter: cancelled: io error, inner failed",
            "inner: io error, inner failed",
            "outer waiter got 3",
        ]
    );
}

#[test]
fn dropping_every_resolver_closes_the_promise() {
    let (r, trace) = mock::run_traced(|_env| {
        let (p, r) = Promise::<u32>::new();
        let r2 = r.clone();
        let p = &p;
        Switch::run(|sw| {
            for i in 0..2 {
                sw.fork(move || {
                    let e = p.wait().unwrap_err();
                    traceln!("waiter {i}: {:?} {e}", e.kind());
                    Ok(())
                });
            }
            drop(r);
            traceln!("one resolver dropped");
            fiber::yield_now()?;
            drop(r2);
            traceln!("last resolver dropped");
            Ok(())
        })?;
        // A later wait fails at once.
        let e = p.wait().unwrap_err();
        traceln!("late wait: {:?}", e.kind());
        assert_eq!(p.peek(), None);
        Ok(())
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "one resolver dropped",
            "last resolver dropped",
            "waiter 0: Closed closed, promise abandoned: every resolver was dropped unresolved",
            "waiter 1: Closed closed, promise abandoned: every resolver was dropped unresolved",
            "late wait: Closed",
        ]
    );
}

#[test]
fn dropping_the_resolver_after_resolving_keeps_the_value() {
    let r = mock::run(|_env| {
        let (p, r) = Promise::new();
        r.resolve(11).unwrap();
        drop(r);
        Ok(*p.wait()?)
    });
    assert_eq!(r.unwrap(), 11);
}

#[test]
fn fork_promise_and_wait_result() {
    let (r, trace) = mock::run_traced(|env| {
        let clock = env.mono_clock();
        Switch::run(|sw| {
            let slow = sw.fork_promise(move || {
                clock.sleep(Duration::from_secs(2))?;
                Ok(2)
            });
            let fast = sw.fork_promise(move || {
                clock.sleep(Duration::from_secs(1))?;
                Ok(1)
            });
            let failing = sw.fork_promise(|| -> Result<u32> { Err(failure("no luck")) });
            traceln!("failing: {}", failing.wait_result().unwrap_err());
            traceln!("slow: {}", slow.wait_result()?);
            traceln!("fast (already resolved): {:?}", fast.peek());
            Ok(fast.wait_result()? + slow.wait_result()?)
        })
    });
    assert_eq!(r.unwrap(), 3);
    assert_eq!(
        trace,
        [
            "failing: io error, no luck",
            "mock time is now 1",
            "mock time is now 2",
            "slow: 2",
            "fast (already resolved): Some(Ok(1))",
        ]
    );
}

#[test]
fn fork_promise_runs_in_the_switch_context_not_the_callers() {
    // The forking fiber is protected; the promise's fiber belongs to the
    // switch, so failing the switch cancels it.
    let (r, trace) = mock::run_traced(|_env| {
        Switch::run(|sw| {
            sw.fork(move || {
                weft::cancel::protect(|| {
                    let child = sw.fork_promise(|| -> Result<()> {
                        traceln!("Forked child");
                        Err(fiber::await_cancel())
                    });
                    sw.fail(failure("Exit"));
                    let e = child.wait_result().unwrap_err();
                    traceln!("child: {e}");
                    Ok(())
                })
            });
            Ok(())
        })
    });
    assert_eq!(r.unwrap_err().to_string(), "io error, Exit");
    assert_eq!(trace, ["Forked child", "child: cancelled: io error, Exit"]);
}

/// Fibers blocked where cancellation cannot reach are left behind when a run
/// ends in deadlock (which the mock detects). Tearing them down drops their
/// fiber-local values; a resolver among them wakes the promise's other (also
/// abandoned) waiter, which must be ignored quietly — not panic, and not
/// run anything.
#[test]
fn a_resolver_dropped_while_a_deadlocked_run_is_torn_down() {
    use weft::fiber::FiberLocal;
    static RESOLVER: FiberLocal<weft::sync::Resolver<u32>> = FiberLocal::new();
    let r = mock::run(|_env| {
        let (p, r) = Promise::<u32>::new();
        let (never, keep) = Promise::<()>::new();
        std::mem::forget(keep);
        Switch::run(|sw| {
            sw.fork(move || {
                RESOLVER.with_binding(r, || weft::cancel::protect(|| never.wait().map(|_| ())))
            });
            sw.fork(move || {
                weft::cancel::protect(|| p.wait().map(|_| ()))?;
                unreachable!("the waiter must never run again")
            });
            Ok(())
        })
    });
    let err = r.expect_err("the run deadlocks");
    assert_eq!(*err.kind(), ErrorKind::Deadlock, "{err}");
}
