//! Cancellation contexts: `await_cancel`, `check`, `protect`, `cancel::sub`,
//! and how a cancellation reaches suspended, running and protected fibers.

use std::time::Duration;

use weft::sync::Promise;
use weft::{cancel, fiber, mock, traceln, Error, ErrorKind, Switch};

fn failure(msg: &'static str) -> Error {
    Error::msg(ErrorKind::Io, msg)
}

#[test]
fn await_cancel_waits_for_a_sibling_failure() {
    let (r, trace) = mock::run_traced(|env| {
        let clock = env.mono_clock();
        fiber::both(
            || {
                traceln!("waiting for cancellation");
                let e = fiber::await_cancel();
                traceln!(
                    "await_cancel returned at {:?}: {e}",
                    clock.now()?.since_origin()
                );
                assert!(e.is_cancelled());
                Err(e)
            },
            || {
                clock.sleep(Duration::from_secs(3))?;
                Err(failure("sibling failed"))
            },
        )
    });
    assert_eq!(r.unwrap_err().to_string(), "io error, sibling failed");
    assert_eq!(
        trace,
        [
            "waiting for cancellation",
            "mock time is now 3",
            "await_cancel returned at 3s: cancelled: io error, sibling failed",
        ]
    );
}

#[test]
fn check_reports_cancellation_without_switching() {
    let (r, trace) = mock::run_traced(|_env| {
        Switch::run(|sw| {
            sw.fork(|| {
                traceln!("other fiber ran");
                Ok(())
            });
            traceln!("check: {:?}", fiber::check().is_ok());
            sw.fail(failure("stop"));
            // `check` is not a suspension point: nothing else runs here.
            let e = fiber::check().unwrap_err();
            traceln!("check: {e}");
            assert!(e.cancel_reason().is_some());
            Ok(())
        })
    });
    assert_eq!(r.unwrap_err().to_string(), "io error, stop");
    assert_eq!(
        trace,
        [
            "other fiber ran",
            "check: true",
            "check: cancelled: io error, stop"
        ]
    );
}

#[test]
fn yield_now_in_a_cancelled_context_fails_before_switching() {
    let (r, trace) = mock::run_traced(|_env| {
        Switch::run(|sw| {
            sw.fork(|| {
                fiber::yield_now()?;
                traceln!("not reached: the switch failed first");
                Ok(())
            });
            sw.fail(failure("stop"));
            let r = fiber::yield_now();
            traceln!("yield: {}", r.unwrap_err());
            Ok(())
        })
    });
    assert_eq!(r.unwrap_err().to_string(), "io error, stop");
    assert_eq!(trace, ["yield: cancelled: io error, stop"]);
}

#[test]
fn a_cancelled_sleep_wakes_at_once() {
    let (r, trace) = mock::run_traced(|env| {
        let clock = env.mono_clock();
        fiber::both(
            || {
                let r = clock.sleep(Duration::from_secs(100));
                traceln!(
                    "sleep ended at {:?}: {}",
                    clock.now()?.since_origin(),
                    r.unwrap_err()
                );
                Ok(())
            },
            || {
                clock.sleep(Duration::from_secs(1))?;
                Err(failure("Simulated cancel"))
            },
        )?;
        Ok(())
    });
    assert_eq!(r.unwrap_err().to_string(), "io error, Simulated cancel");
    // The 100 s timer was removed: time never jumps there.
    assert_eq!(
        trace,
        [
            "mock time is now 1",
            "sleep ended at 1s: cancelled: io error, Simulated cancel",
        ]
    );
}

#[test]
fn sleeping_in_a_failed_switch_fails_at_once() {
    let (r, trace) = mock::run_traced(|env| {
        Switch::run(|sw| {
            sw.fail(failure("Simulated failure"));
            let r = env.clock().sleep(Duration::from_secs(1200));
            traceln!("sleep: {}", r.unwrap_err());
            Ok(())
        })
    });
    assert_eq!(r.unwrap_err().to_string(), "io error, Simulated failure");
    assert_eq!(trace, ["sleep: cancelled: io error, Simulated failure"]);
}

// ---------------------------------------------------------------------------
// protect
// ---------------------------------------------------------------------------

#[test]
fn a_protected_region_is_not_interrupted() {
    let (r, trace) = mock::run_traced(|env| {
        let clock = env.mono_clock();
        fiber::both(
            || {
                let v = cancel::protect(|| {
                    traceln!("protected: sleeping 2s");
                    clock.sleep(Duration::from_secs(2))?;
                    traceln!(
                        "protected: woke, check inside: {:?}",
                        fiber::check().is_ok()
                    );
                    fiber::yield_now()?;
                    traceln!("protected: yielded");
                    Ok::<_, Error>(42)
                })?;
                // The cancellation that arrived during the protected region
                // is seen right after it: `check`, then the next suspension.
                traceln!(
                    "after protect: value {v}, check: {}",
                    fiber::check().unwrap_err()
                );
                let r = fiber::yield_now();
                traceln!("next suspension: {}", r.as_ref().unwrap_err());
                r
            },
            || {
                clock.sleep(Duration::from_secs(1))?;
                traceln!("failing at 1s");
                Err(failure("stop"))
            },
        )
    });
    assert_eq!(r.unwrap_err().to_string(), "io error, stop");
    assert_eq!(
        trace,
        [
            "protected: sleeping 2s",
            "mock time is now 1",
            "failing at 1s",
            "mock time is now 2",
            "protected: woke, check inside: true",
            "protected: yielded",
            "after protect: value 42, check: cancelled: io error, stop",
            "next suspension: cancelled: io error, stop",
        ]
    );
}

#[test]
fn protect_runs_inside_a_cancelled_context() {
    let (r, trace) = mock::run_traced(|env| {
        let clock = env.mono_clock();
        Switch::run(|sw| {
            sw.fail(failure("stop"));
            let r = cancel::protect(|| {
                clock.sleep(Duration::from_secs(1))?;
                fiber::both(
                    || {
                        traceln!("clean-up a");
                        fiber::yield_now()
                    },
                    || {
                        traceln!("clean-up b");
                        fiber::yield_now()
                    },
                )
            });
            traceln!("protected clean-up: {r:?}");
            Ok(())
        })
    });
    assert_eq!(r.unwrap_err().to_string(), "io error, stop");
    assert_eq!(
        trace,
        [
            "mock time is now 1",
            "clean-up a",
            "clean-up b",
            "protected clean-up: Ok(())"
        ]
    );
}

#[test]
fn a_protected_wait_ignores_cancellation_until_resolved() {
    let (r, trace) = mock::run_traced(|_env| {
        let (p, resolver) = Promise::new();
        Switch::run(|sw| {
            sw.fork(|| {
                let v = cancel::protect(|| p.wait().copied())?;
                traceln!("protected wait got {v}");
                fiber::check()
            });
            sw.fail(failure("stop"));
            traceln!("switch failed");
            fiber::both(|| Ok(()), || Ok(())).unwrap_err();
            cancel::protect(|| -> weft::Result<()> {
                fiber::yield_now()?;
                traceln!("resolving");
                resolver.resolve(5).unwrap();
                Ok(())
            })
        })
    });
    assert_eq!(r.unwrap_err().to_string(), "io error, stop");
    assert_eq!(
        trace,
        ["switch failed", "resolving", "protected wait got 5"]
    );
}

// ---------------------------------------------------------------------------
// cancel::sub
// ---------------------------------------------------------------------------

/// A context's member list stays whole as fibers leave it from the middle
/// and the end (one finishing, one moving into a protected region and
/// back, then finishing) and their control blocks are reused: the
/// cancellation still reaches every fiber that waits in it, oldest first,
/// then those in the contexts below it.
#[test]
fn cancellation_reaches_every_waiter_after_others_leave_the_context() {
    let (r, trace) = mock::run_traced(|_env| {
        Switch::run(|sw| {
            for n in 0..6 {
                sw.fork(move || match n {
                    1 => fiber::yield_now(),
                    3 => cancel::sub(|_scope| {
                        let e = fiber::await_cancel();
                        traceln!("{n} cancelled in its sub-context");
                        Err(e)
                    }),
                    5 => cancel::protect(fiber::yield_now),
                    _ => {
                        let e = fiber::await_cancel();
                        traceln!("{n} cancelled");
                        Err(e)
                    }
                });
            }
            // Fibers 1 and 5 finish.
            fiber::yield_now()?;
            assert_eq!(fiber::stats()?.fibers, 5, "main, 0, 2, 3 and 4 are left");
            // Two new fibers in a context below: they reuse the control
            // blocks of 1 and 5, which must not still be linked into the
            // switch's list.
            Switch::run(|inner| {
                for n in ["a", "b"] {
                    inner.fork(move || {
                        let e = fiber::await_cancel();
                        traceln!("{n} cancelled in the inner switch");
                        Err(e)
                    });
                }
                traceln!("failing the switch");
                sw.fail(failure("stop"));
                Ok(())
            })
        })
    });
    assert_eq!(r.unwrap_err().to_string(), "io error, stop");
    assert_eq!(
        trace,
        [
            "failing the switch",
            "0 cancelled",
            "2 cancelled",
            "4 cancelled",
            "3 cancelled in its sub-context",
            "a cancelled in the inner switch",
            "b cancelled in the inner switch",
        ]
    );
}

#[test]
fn cancelling_a_sub_context_leaves_the_caller_running() {
    let (r, trace) = mock::run_traced(|_env| {
        let r = cancel::sub(|scope| {
            traceln!("in sub, cancelled: {}", scope.is_cancelled());
            scope.cancel(Error::new(ErrorKind::Timeout));
            traceln!("in sub, cancelled: {}", scope.is_cancelled());
            fiber::yield_now()?;
            traceln!("not reached");
            Ok(())
        });
        let e = r.unwrap_err();
        traceln!("sub returned: {e}");
        assert!(e.cancel_reason().unwrap().is_timeout());
        fiber::yield_now()?;
        traceln!("caller still running");
        Ok(())
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "in sub, cancelled: false",
            "in sub, cancelled: true",
            "sub returned: cancelled: timeout",
            "caller still running",
        ]
    );
}

#[test]
fn cancelling_a_sub_context_cancels_the_fibers_below_it() {
    // A hand-made timeout: one fiber cancels the scope the others run in.
    let (r, trace) = mock::run_traced(|env| {
        let clock = env.mono_clock();
        let r = cancel::sub(|scope| {
            Switch::run(|sw| {
                sw.fork(move || {
                    let r = clock.sleep(Duration::from_secs(10));
                    traceln!("sleeper: {}", r.as_ref().unwrap_err());
                    r
                });
                sw.fork(move || {
                    clock.sleep(Duration::from_secs(2))?;
                    traceln!("cancelling the scope");
                    scope.cancel(Error::new(ErrorKind::Timeout));
                    traceln!("canceller: check: {}", fiber::check().unwrap_err());
                    Ok(())
                });
                Ok("body value")
            })
        });
        traceln!(
            "sub returned {:?} at {:?}",
            r.as_ref().map_err(|e| e.to_string()),
            clock.now()?.since_origin()
        );
        Ok(r)
    });
    // As in Eio: the sleeper was cut short by a cancellation from outside
    // the switch, so the switch's work is incomplete and `run` reports the
    // cancellation rather than the body's value.
    let err = r.unwrap().unwrap_err();
    assert!(err.is_cancelled(), "{err}");
    assert_eq!(err.cancel_reason().unwrap().kind(), &ErrorKind::Timeout);
    assert_eq!(
        trace,
        [
            "mock time is now 2",
            "cancelling the scope",
            "canceller: check: cancelled: timeout",
            "sleeper: cancelled: timeout",
            "sub returned Err(\"cancelled: timeout\") at 2s",
        ]
    );
}

#[test]
fn a_sub_context_is_cancelled_with_its_parent() {
    let (r, trace) = mock::run_traced(|_env| {
        fiber::both(
            || {
                cancel::sub(|scope| {
                    let e = fiber::await_cancel();
                    traceln!("sub cancelled by parent: {} ({e})", scope.is_cancelled());
                    Err::<(), _>(e)
                })
            },
            || Err(failure("parent failed")),
        )
    });
    assert_eq!(r.unwrap_err().to_string(), "io error, parent failed");
    assert_eq!(
        trace,
        ["sub cancelled by parent: true (cancelled: io error, parent failed)"]
    );
}

#[test]
fn sub_in_a_cancelled_context_does_not_run() {
    let (r, trace) = mock::run_traced(|_env| {
        Switch::run(|sw| {
            sw.fail(failure("stop"));
            let r = cancel::sub(|_scope| {
                traceln!("not reached");
                Ok(())
            });
            traceln!("sub: {}", r.unwrap_err());
            Ok(())
        })
    });
    assert_eq!(r.unwrap_err().to_string(), "io error, stop");
    assert_eq!(trace, ["sub: cancelled: io error, stop"]);
}

#[test]
fn the_first_cancellation_reason_wins() {
    let r = mock::run(|_env| {
        cancel::sub(|scope| {
            scope.cancel(failure("first reason"));
            scope.cancel(failure("second reason"));
            Ok(fiber::check().unwrap_err())
        })
    });
    assert_eq!(r.unwrap().to_string(), "cancelled: io error, first reason");
}

#[test]
fn protect_shields_a_sub_context_below_it() {
    let (r, trace) = mock::run_traced(|_env| {
        fiber::both(
            || {
                cancel::protect(|| {
                    cancel::sub(|_scope| {
                        fiber::yield_now()?;
                        traceln!("sub below protect still runs");
                        Ok(())
                    })
                })?;
                let r = fiber::yield_now();
                traceln!("outside protect: {}", r.as_ref().unwrap_err());
                r
            },
            || Err(failure("stop")),
        )
    });
    assert_eq!(r.unwrap_err().to_string(), "io error, stop");
    assert_eq!(
        trace,
        [
            "sub below protect still runs",
            "outside protect: cancelled: io error, stop"
        ]
    );
}

#[test]
fn a_zero_timeout_still_lets_a_ready_operation_win() {
    let (r, trace) = mock::run_traced(|env| {
        let clock = env.mono_clock();
        let quick = weft::time::with_timeout(clock, Duration::ZERO, || Ok("quick"));
        traceln!("quick: {:?}", quick.map_err(|e| e.to_string()));
        let slow = weft::time::with_timeout(clock, Duration::ZERO, || -> weft::Result<()> {
            Err(fiber::await_cancel())
        });
        traceln!("slow: {}", slow.unwrap_err());
        Ok(())
    });
    r.unwrap();
    // Virtual time never moves: a zero timeout fires on the next turn.
    assert_eq!(
        trace,
        ["quick: Ok(\"quick\")", "slow: timeout, timed out after 0ns"]
    );
}
