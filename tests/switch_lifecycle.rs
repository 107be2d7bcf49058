//! Switches: joining, borrowing, failing, release hooks, daemons, error
//! combination, panics, nesting and names (Eio's `tests/switch.md` and the
//! daemon cases of `tests/fiber.md`), as mock traces.

use std::cell::{Cell, RefCell};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use weft::sync::Promise;
use weft::{cancel, fiber, mock, traceln, Error, ErrorKind, Switch};

fn failure(msg: &'static str) -> Error {
    Error::msg(ErrorKind::Io, msg)
}

fn messages(e: &Error) -> Vec<String> {
    e.errors().iter().map(|e| e.to_string()).collect()
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic>".to_string()
    }
}

// ---------------------------------------------------------------------------
// Joining and borrowing
// ---------------------------------------------------------------------------

#[test]
fn a_very_basic_switch() {
    let (r, trace) = mock::run_traced(|_env| {
        Switch::run(|_sw| {
            traceln!("Running");
            Ok(7)
        })
    });
    assert_eq!(r.unwrap(), 7);
    assert_eq!(trace, ["Running"]);
}

#[test]
fn run_waits_for_every_fiber() {
    let (r, trace) = mock::run_traced(|env| {
        let clock = env.mono_clock();
        Switch::run(|sw| {
            for secs in [3u64, 1, 2] {
                sw.fork(move || {
                    clock.sleep(Duration::from_secs(secs))?;
                    traceln!("fiber {secs} done");
                    Ok(())
                });
            }
            traceln!("body done");
            Ok(())
        })?;
        traceln!("switch done at {:?}", clock.now()?.since_origin());
        Ok(())
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "body done",
            "mock time is now 1",
            "fiber 1 done",
            "mock time is now 2",
            "fiber 2 done",
            "mock time is now 3",
            "fiber 3 done",
            "switch done at 3s",
        ]
    );
}

#[test]
fn fibers_borrow_from_the_enclosing_scope() {
    let r = mock::run(|_env| {
        let names = [
            String::from("zero"),
            String::from("one"),
            String::from("two"),
        ];
        let mut finished: Vec<&str> = Vec::new();
        {
            let cell = RefCell::new(&mut finished);
            Switch::run(|sw| {
                for (i, name) in names.iter().enumerate() {
                    let cell = &cell;
                    sw.fork(move || {
                        for _ in 0..(3 - i) {
                            fiber::yield_now()?;
                        }
                        cell.borrow_mut().push(name.as_str());
                        Ok(())
                    });
                }
                Ok(())
            })?;
        }
        // The switch has ended, so the borrows have too: the Vec is ours
        // again, and holds borrows of `names` pushed by the fibers.
        finished.push("end");
        Ok(finished.join(","))
    });
    assert_eq!(r.unwrap(), "two,one,zero,end");
}

// ---------------------------------------------------------------------------
// fail and check
// ---------------------------------------------------------------------------

#[test]
fn a_failed_switch_still_allows_clean_up() {
    let (r, trace) = mock::run_traced(|_env| {
        Switch::run(|sw| {
            traceln!("Running");
            sw.fail(failure("Cancel"));
            traceln!("Clean up");
            Ok(())
        })
    });
    assert_eq!(r.unwrap_err().to_string(), "io error, Cancel");
    assert_eq!(trace, ["Running", "Clean up"]);
}

#[test]
fn fail_cancels_the_fibers_and_check_reports_it() {
    let (r, trace) = mock::run_traced(|_env| {
        let (p, _r) = Promise::<()>::new();
        Switch::run(|sw| {
            sw.fork(|| {
                traceln!("Waiting");
                let e = p.wait().unwrap_err();
                traceln!("Waiter: {e}");
                Err(e)
            });
            traceln!("check before: {:?}", sw.check().is_ok());
            sw.fail(failure("Simulated failure"));
            traceln!("check after: {}", sw.check().unwrap_err());
            Ok(())
        })
    });
    assert_eq!(r.unwrap_err().to_string(), "io error, Simulated failure");
    assert_eq!(
        trace,
        [
            "Waiting",
            "check before: true",
            "check after: cancelled: io error, Simulated failure",
            "Waiter: cancelled: io error, Simulated failure",
        ]
    );
}

#[test]
fn fork_on_a_failed_switch_does_not_start_the_fiber() {
    let (r, trace) = mock::run_traced(|_env| {
        Switch::run(|sw| {
            sw.fail(failure("Cancel"));
            sw.fork(|| {
                traceln!("Not reached");
                Ok(())
            });
            sw.fork_daemon(|| {
                traceln!("Not reached either");
                Ok(())
            });
            traceln!("Main continues");
            Ok(())
        })
    });
    assert_eq!(r.unwrap_err().to_string(), "io error, Cancel");
    assert_eq!(trace, ["Main continues"]);
}

#[test]
fn fork_promise_on_a_failed_switch_gives_cancelled() {
    let (r, trace) = mock::run_traced(|_env| {
        Switch::run(|sw| {
            sw.fail(failure("Cancel"));
            let p = sw.fork_promise(|| {
                traceln!("Not reached");
                Ok(1)
            });
            let e = p.peek().expect("resolved at once").clone().unwrap_err();
            traceln!("promise: {e}");
            Ok(())
        })
    });
    assert_eq!(r.unwrap_err().to_string(), "io error, Cancel");
    assert_eq!(trace, ["promise: cancelled: io error, Cancel"]);
}

#[test]
fn switch_in_a_cancelled_context_does_not_run() {
    let (r, trace) = mock::run_traced(|_env| {
        Switch::run(|sw| {
            sw.fail(failure("outer failed"));
            let inner = Switch::run(|_inner| {
                traceln!("Not reached");
                Ok(())
            });
            traceln!("inner: {}", inner.unwrap_err());
            // A protected context is not cancelled: a switch can run there.
            cancel::protect(|| {
                Switch::run(|_inner| {
                    traceln!("protected switch runs");
                    Ok(())
                })
            })
        })
    });
    assert_eq!(r.unwrap_err().to_string(), "io error, outer failed");
    assert_eq!(
        trace,
        [
            "inner: cancelled: io error, outer failed",
            "protected switch runs"
        ]
    );
}

#[test]
fn promise_or_switch_promise_first() {
    let (r, trace) = mock::run_traced(|_env| {
        let (p, resolver) = Promise::new();
        Switch::run(|sw| {
            sw.fork(|| {
                traceln!("Waiting");
                p.wait()?;
                traceln!("Resolved");
                Ok(())
            });
            resolver.resolve(()).unwrap();
            fiber::yield_now()?;
            traceln!("Now cancelling...");
            sw.fail(failure("Cancelled"));
            Ok(())
        })
    });
    assert_eq!(r.unwrap_err().to_string(), "io error, Cancelled");
    assert_eq!(trace, ["Waiting", "Resolved", "Now cancelling..."]);
}

#[test]
fn promise_or_switch_switch_first() {
    let (r, trace) = mock::run_traced(|_env| {
        let (p, resolver) = Promise::new();
        Switch::run(|sw| {
            sw.fork(|| {
                traceln!("Waiting");
                p.wait()?;
                traceln!("Resolved");
                Ok(())
            });
            sw.fail(failure("Cancelled"));
            resolver.resolve(()).unwrap();
            Ok(())
        })
    });
    assert_eq!(r.unwrap_err().to_string(), "io error, Cancelled");
    assert_eq!(trace, ["Waiting"]);
}

#[test]
fn promise_or_switch_resolved_then_cancelled_without_yielding() {
    // The resolution claimed the waiter first; the later cancellation
    // cannot take it back.
    let (r, trace) = mock::run_traced(|_env| {
        let (p, resolver) = Promise::new();
        Switch::run(|sw| {
            sw.fork(|| {
                traceln!("Waiting");
                p.wait()?;
                traceln!("Resolved");
                Ok(())
            });
            resolver.resolve(()).unwrap();
            traceln!("Now cancelling...");
            sw.fail(failure("Cancelled"));
            Ok(())
        })
    });
    assert_eq!(r.unwrap_err().to_string(), "io error, Cancelled");
    assert_eq!(trace, ["Waiting", "Now cancelling...", "Resolved"]);
}

// ---------------------------------------------------------------------------
// Release hooks
// ---------------------------------------------------------------------------

fn release(label: &str) {
    let _ = fiber::yield_now();
    traceln!("release {label}");
}

#[test]
fn release_hooks_run_last_registered_first() {
    let (r, trace) = mock::run_traced(|_env| {
        Switch::run(|sw| {
            sw.on_release(|| release("1"))?;
            sw.on_release(|| release("2"))?;
            sw.on_release(|| release("3"))?;
            traceln!("body done");
            Ok(())
        })
    });
    r.unwrap();
    assert_eq!(trace, ["body done", "release 3", "release 2", "release 1"]);
}

#[test]
fn release_hooks_run_on_error() {
    let (r, trace) = mock::run_traced(|_env| {
        Switch::run(|sw| {
            sw.on_release(|| release("1"))?;
            sw.on_release(|| release("2"))?;
            Err::<(), _>(failure("Test error"))
        })
    });
    assert_eq!(r.unwrap_err().to_string(), "io error, Test error");
    assert_eq!(trace, ["release 2", "release 1"]);
}

#[test]
fn release_hooks_run_after_every_fiber() {
    let (r, trace) = mock::run_traced(|env| {
        let clock = env.mono_clock();
        Switch::run(|sw| {
            sw.on_release(|| traceln!("release"))?;
            sw.fork(move || {
                clock.sleep(Duration::from_secs(1))?;
                traceln!("fiber done");
                Ok(())
            });
            Ok(())
        })
    });
    r.unwrap();
    assert_eq!(trace, ["mock time is now 1", "fiber done", "release"]);
}

#[test]
fn release_hooks_run_to_completion_in_a_cancelled_switch() {
    // The switch has failed, yet a hook that sleeps is not interrupted.
    let (r, trace) = mock::run_traced(|env| {
        let clock = env.mono_clock();
        Switch::run(|sw| {
            sw.on_release(move || {
                traceln!("hook sleeping");
                let r = clock.sleep(Duration::from_secs(1));
                traceln!("hook slept: {r:?}");
                let r = fiber::yield_now();
                traceln!("hook yielded: {r:?}");
            })?;
            sw.fork(|| {
                fiber::yield_now()?;
                Err(failure("fiber failed"))
            });
            fiber::await_cancel();
            traceln!("body cancelled");
            Ok(())
        })
    });
    assert_eq!(r.unwrap_err().to_string(), "io error, fiber failed");
    assert_eq!(
        trace,
        [
            "body cancelled",
            "hook sleeping",
            "mock time is now 1",
            "hook slept: Ok(())",
            "hook yielded: Ok(())",
        ]
    );
}

#[test]
fn on_release_from_a_hook_runs_at_once_and_fails() {
    let (r, trace) = mock::run_traced(|_env| {
        Switch::run(|sw| {
            sw.on_release(move || {
                traceln!("hook 1 start");
                let r = sw.on_release(|| traceln!("immediate release"));
                match r {
                    Ok(()) => traceln!("on_release accepted"),
                    Err(e) => traceln!("on_release refused: {:?} {e}", e.kind()),
                }
                traceln!("hook 1 end");
            })?;
            Ok(())
        })
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "hook 1 start",
            "immediate release",
            "on_release refused: InvalidInput invalid input, on_release on a finished switch: the hook ran at once",
            "hook 1 end",
        ]
    );
}

#[test]
fn fork_from_a_release_hook_panics() {
    // Differs from Eio, which lets a release hook fork into its switch:
    // weft refuses, because the fiber could outlive everything the switch
    // promised to outlive.
    let (r, trace) = mock::run_traced(|_env| {
        let caught = catch_unwind(AssertUnwindSafe(|| {
            Switch::run(|sw| {
                sw.on_release(move || {
                    sw.fork(|| {
                        traceln!("Not reached");
                        Ok(())
                    })
                })?;
                Ok(())
            })
        }));
        traceln!("panicked: {}", panic_message(&*caught.unwrap_err()));
        Ok(())
    });
    r.unwrap();
    assert_eq!(
        trace,
        ["panicked: fork on a switch that has finished (from a release hook?)"]
    );
}

// ---------------------------------------------------------------------------
// Daemons
// ---------------------------------------------------------------------------

#[test]
fn daemon_runs_until_the_non_daemon_fibers_finish() {
    let (r, trace) = mock::run_traced(|_env| {
        Switch::run(|sw| {
            sw.fork_daemon(|| {
                for _ in 0..10 {
                    traceln!("Daemon running");
                    fiber::yield_now()?;
                }
                Err(failure("Test failed"))
            });
            traceln!("Main running 1");
            fiber::yield_now()?;
            traceln!("Main running 2");
            Ok(())
        })
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "Daemon running",
            "Main running 1",
            "Daemon running",
            "Main running 2"
        ]
    );
}

#[test]
fn daemons_and_workers_together() {
    let (r, trace) = mock::run_traced(|_env| {
        Switch::run(|sw| {
            sw.fork(|| {
                traceln!("Worker 1 starting");
                fiber::yield_now()?;
                traceln!("Worker 1 running");
                fiber::yield_now()?;
                traceln!("Worker 1 finished");
                Ok(())
            });
            sw.fork(|| {
                traceln!("Worker 2 starting");
                fiber::yield_now()?;
                traceln!("Worker 2 finished");
                Ok(())
            });
            sw.fork_daemon(move || {
                let r = (|| {
                    for _ in 0..10 {
                        traceln!("Daemon 1 running");
                        fiber::yield_now()?;
                    }
                    Err(failure("Test failed"))
                })();
                match r {
                    Err(e) if e.is_cancelled() => {
                        traceln!("Daemon cancelled; trying to spawn more fibers");
                        sw.fork_daemon(|| Err(failure("Shouldn't start")));
                        sw.fork(|| Err(failure("Shouldn't start")));
                        Err(e)
                    }
                    other => other,
                }
            });
            sw.fork_daemon(|| {
                traceln!("Daemon 2 running");
                fiber::yield_now()?;
                traceln!("Daemon 2 finished");
                Ok(())
            });
            traceln!("Main running");
            fiber::yield_now()?;
            traceln!("Main finished");
            Ok(())
        })
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "Worker 1 starting",
            "Worker 2 starting",
            "Daemon 1 running",
            "Daemon 2 running",
            "Main running",
            "Worker 1 running",
            "Worker 2 finished",
            "Daemon 1 running",
            "Daemon 2 finished",
            "Main finished",
            "Worker 1 finished",
            "Daemon cancelled; trying to spawn more fibers",
        ]
    );
}

#[test]
fn a_failing_daemon_is_reported() {
    let r = mock::run(|_env| {
        Switch::run(|sw| {
            sw.fork_daemon(|| {
                fiber::yield_now()?;
                Err(failure("Simulated error"))
            });
            fiber::yield_now()?;
            Ok(())
        })
    });
    assert_eq!(r.unwrap_err().to_string(), "io error, Simulated error");
}

#[test]
fn daemon_cancellation_is_silent_and_reasoned() {
    let (r, trace) = mock::run_traced(|_env| {
        Switch::run(|sw| {
            sw.fork_daemon(|| {
                let e = fiber::await_cancel();
                traceln!("daemon: {e}");
                Err(e)
            });
            traceln!("body done");
            Ok("value")
        })
    });
    assert_eq!(r.unwrap(), "value");
    assert_eq!(
        trace,
        [
            "body done",
            "daemon: cancelled: the switch's non-daemon fibers have finished",
        ]
    );
}

// ---------------------------------------------------------------------------
// Combining failures
// ---------------------------------------------------------------------------

#[test]
fn both_failures_are_reported_in_order() {
    let r = mock::run(|_env| {
        Switch::run(|_sw| {
            fiber::both(
                || {
                    cancel::protect(fiber::yield_now)?;
                    Err(failure("Failed 1"))
                },
                || {
                    cancel::protect(fiber::yield_now)?;
                    Err(failure("Failed 2"))
                },
            )
        })
    });
    let err = r.unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Multiple(_)), "{err:?}");
    assert_eq!(messages(&err), ["io error, Failed 1", "io error, Failed 2"]);
}

#[test]
fn failures_during_cancellation_are_all_reported_in_order() {
    let r = mock::run(|_env| {
        Switch::run(|sw| {
            sw.fork(|| {
                fiber::await_cancel();
                Err(failure("cancel1 failed"))
            });
            sw.fork(|| {
                fiber::await_cancel();
                Err(failure("cancel2 failed"))
            });
            Err::<(), _>(failure("Exit"))
        })
    });
    let err = r.unwrap_err();
    assert_eq!(
        messages(&err),
        [
            "io error, Exit",
            "io error, cancel1 failed",
            "io error, cancel2 failed"
        ]
    );
}

#[test]
fn errors_during_cleanup_are_reported_during_cancellation() {
    let r = mock::run(|_env| {
        Switch::run(|sw| {
            sw.fork(|| {
                Switch::run(|_sw| {
                    fiber::await_cancel();
                    Err::<(), _>(failure("cleanup failed"))
                })
            });
            sw.fork(|| Err(failure("simulated error")));
            Ok(())
        })
    });
    assert_eq!(
        messages(&r.unwrap_err()),
        ["io error, simulated error", "io error, cleanup failed"]
    );
}

#[test]
fn a_cancellation_echoing_a_failure_is_not_reported() {
    let r = mock::run(|_env| {
        Switch::run(|sw| {
            for _ in 0..3 {
                sw.fork(|| {
                    // Returns the Cancelled error it was woken with.
                    Err(fiber::await_cancel())
                });
            }
            sw.fork(|| Err(failure("the real failure")));
            Ok(())
        })
    });
    let err = r.unwrap_err();
    assert_eq!(err.errors().len(), 1, "{err:?}");
    assert_eq!(err.kind(), &ErrorKind::Io);
    assert_eq!(err.to_string(), "io error, the real failure");
}

// ---------------------------------------------------------------------------
// Panics
// ---------------------------------------------------------------------------

#[test]
fn a_panic_cancels_the_siblings_and_is_re_raised_after_the_join() {
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let push = |s: String| log.lock().unwrap().push(s);
    let r = catch_unwind(AssertUnwindSafe(|| {
        mock::run(|env| {
            let clock = env.mono_clock();
            Switch::run(|sw| {
                sw.fork(|| {
                    push("A waiting".into());
                    let e = fiber::await_cancel();
                    push(format!("A cancelled: {e}"));
                    // Clean-up that suspends still runs before the panic
                    // leaves `Switch::run`.
                    let slept = cancel::protect(|| clock.sleep(Duration::from_secs(1)));
                    push(format!("A clean-up done: {slept:?}"));
                    Err(e)
                });
                sw.fork(|| {
                    fiber::yield_now()?;
                    push("B panicking".into());
                    panic!("boom");
                });
                push("body done".into());
                Ok(())
            })?;
            push("not reached".into());
            Ok(())
        })
    }));
    let payload = r.expect_err("the panic is re-raised");
    assert_eq!(panic_message(&*payload), "boom");
    assert_eq!(
        *log.lock().unwrap(),
        [
            "A waiting",
            "body done",
            "B panicking",
            "A cancelled: cancelled: panic, boom",
            "A clean-up done: Ok(())",
        ]
    );
    // The thread's runtime was torn down properly: another run works.
    assert_eq!(mock::run(|_env| Ok(5)).unwrap(), 5);
}

#[test]
fn a_panic_is_re_raised_by_the_switch_inside_the_run() {
    let (r, trace) = mock::run_traced(|_env| {
        let caught = catch_unwind(AssertUnwindSafe(|| {
            Switch::run(|sw| {
                sw.fork(|| {
                    let r = fiber::yield_now();
                    traceln!("sibling: {}", r.as_ref().unwrap_err());
                    r
                });
                sw.fork(|| panic!("fiber {} exploded", 2));
                traceln!("body after forks: {}", sw.check().unwrap_err());
                Ok(())
            })
        }));
        let p = caught.expect_err("re-raised");
        traceln!("caught: {}", panic_message(&*p));
        Ok(())
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "body after forks: cancelled: panic, fiber 2 exploded",
            "sibling: cancelled: panic, fiber 2 exploded",
            "caught: fiber 2 exploded",
        ]
    );
}

// ---------------------------------------------------------------------------
// Nesting and names
// ---------------------------------------------------------------------------

#[test]
fn cancelling_the_outer_switch_cancels_the_inner() {
    let (r, trace) = mock::run_traced(|_env| {
        let (p, _r) = Promise::<()>::new();
        let p = &p;
        Switch::run(|sw| {
            for name in ["Child 1", "Child 2"] {
                sw.fork(move || {
                    let r = Switch::run(|_inner| {
                        traceln!("{name}");
                        p.wait().map(|_| ())
                    });
                    match r {
                        Err(e) if e.is_cancelled() => {
                            traceln!("{name}: {e}");
                            Ok(())
                        }
                        other => other,
                    }
                });
            }
            sw.fail(failure("Cancel parent"));
            Ok(())
        })
    });
    assert_eq!(r.unwrap_err().to_string(), "io error, Cancel parent");
    assert_eq!(
        trace,
        [
            "Child 1",
            "Child 2",
            "Child 1: cancelled: io error, Cancel parent",
            "Child 2: cancelled: io error, Cancel parent",
        ]
    );
}

#[test]
fn an_inner_switch_can_fail_alone() {
    let (r, trace) = mock::run_traced(|_env| {
        let (p, _r) = Promise::<()>::new();
        let p = &p;
        Switch::run(|sw| {
            sw.fork(move || {
                let r = Switch::run(|inner| {
                    inner.fork(move || {
                        traceln!("Grandchild waiting");
                        p.wait().map(|_| ())
                    });
                    inner.fail(failure("Cancel child"));
                    Ok(())
                });
                traceln!("child: {}", r.unwrap_err());
                Ok(())
            });
            fiber::yield_now()?;
            traceln!("Parent fiber is still running: {:?}", sw.check().is_ok());
            Ok(())
        })
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "Grandchild waiting",
            "Parent fiber is still running: true",
            "child: io error, Cancel child",
        ]
    );
}

#[test]
fn a_named_switch_appears_in_the_error_context() {
    let r = mock::run(|_env| {
        Switch::run_named("outer", |outer| {
            assert_eq!(outer.name(), Some("outer"));
            Switch::run_named("db", |db| {
                assert_eq!(db.name(), Some("db"));
                db.fork(|| Err(failure("connection lost")));
                Ok(())
            })
        })
    });
    let err = r.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Io);
    assert_eq!(
        err.contexts().collect::<Vec<_>>(),
        ["connection lost", "in switch \"db\"", "in switch \"outer\""]
    );
    let unnamed = mock::run(|_env| {
        Switch::run(|sw| {
            assert_eq!(sw.name(), None);
            Err::<(), _>(failure("plain"))
        })
    });
    assert_eq!(
        unnamed.unwrap_err().contexts().collect::<Vec<_>>(),
        ["plain"]
    );
}

#[test]
fn switch_value_and_fiber_count() {
    // `run` returns the body's value once all fibers are done, and no fiber
    // outlives it.
    let r = mock::run(|_env| {
        let before = fiber::stats()?.fibers;
        let done = Cell::new(0);
        let v = Switch::run(|sw| {
            for _ in 0..5 {
                sw.fork(|| {
                    fiber::yield_now()?;
                    done.set(done.get() + 1);
                    Ok(())
                });
            }
            assert_eq!(fiber::stats()?.fibers, before + 5);
            Ok("body value")
        })?;
        assert_eq!(done.get(), 5);
        assert_eq!(fiber::stats()?.fibers, before);
        Ok(v)
    });
    assert_eq!(r.unwrap(), "body value");
}

#[test]
fn a_panic_in_the_body_cancels_the_fibers_first() {
    let (r, trace) = mock::run_traced(|env| {
        let clock = env.mono_clock();
        let caught = catch_unwind(AssertUnwindSafe(|| {
            Switch::run::<(), _>(|sw| {
                sw.fork(move || {
                    let e = fiber::await_cancel();
                    traceln!("fiber: {e}");
                    cancel::protect(|| clock.sleep(Duration::from_secs(1)))?;
                    traceln!("fiber clean-up done");
                    Err(e)
                });
                panic!("body exploded");
            })
        }));
        traceln!("caught: {}", panic_message(&*caught.unwrap_err()));
        Ok(())
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "fiber: cancelled: panic, body exploded",
            "mock time is now 1",
            "fiber clean-up done",
            "caught: body exploded",
        ]
    );
}

#[test]
fn every_release_hook_runs_even_if_one_panics() {
    let (r, trace) = mock::run_traced(|_env| {
        let caught = catch_unwind(AssertUnwindSafe(|| {
            Switch::run(|sw| {
                sw.on_release(|| {
                    release("1");
                    panic!("failure 1");
                })?;
                sw.on_release(|| release("2"))?;
                sw.on_release(|| {
                    release("3");
                    panic!("failure 3");
                })?;
                Ok(())
            })
        }));
        // The first panic (of the last-registered hook) is the one re-raised.
        traceln!("caught: {}", panic_message(&*caught.unwrap_err()));
        Ok(())
    });
    r.unwrap();
    assert_eq!(
        trace,
        ["release 3", "release 2", "release 1", "caught: failure 3"]
    );
}
