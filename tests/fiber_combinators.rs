//! Fiber scheduling order and combinators (`both`, `pair`, `all`, `first`,
//! `first_with`, `any`, `n_any`, `map`/`filter_map`/`iter`, `await_cancel`),
//! with the edge cases of Eio's `tests/fiber.md`, as mock traces.

use std::cell::{Cell, RefCell};
use std::time::Duration;

use weft::sync::Promise;
use weft::{cancel, fiber, mock, traceln, Error, ErrorKind, Result, Switch};

fn failure(msg: &'static str) -> Error {
    Error::msg(ErrorKind::Io, msg)
}

fn messages(e: &Error) -> Vec<String> {
    e.errors().iter().map(|e| e.to_string()).collect()
}

// ---------------------------------------------------------------------------
// Scheduling order
// ---------------------------------------------------------------------------

#[test]
fn fork_runs_child_first_and_parent_before_queued_work() {
    let (r, trace) = mock::run_traced(|_env| {
        Switch::run(|sw| {
            sw.fork(|| {
                traceln!("1st child runs");
                fiber::yield_now()?;
                traceln!("Queued work");
                Ok(())
            });
            sw.fork(|| {
                traceln!("2nd child runs immediately");
                Ok(())
            });
            traceln!("Caller runs before queued work");
            Ok(())
        })?;
        traceln!("ok");
        Ok(())
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "1st child runs",
            "2nd child runs immediately",
            "Caller runs before queued work",
            "Queued work",
            "ok",
        ]
    );
}

#[test]
fn both_runs_its_branches_before_queued_work() {
    let (r, trace) = mock::run_traced(|_env| {
        Switch::run(|sw| {
            sw.fork(|| {
                traceln!("Enqueuing work for later");
                fiber::yield_now()?;
                traceln!("Queued work");
                Ok(())
            });
            fiber::both(
                || {
                    traceln!("1st branch");
                    Ok(())
                },
                || {
                    traceln!("2nd branch");
                    Ok(())
                },
            )
        })?;
        traceln!("ok");
        Ok(())
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "Enqueuing work for later",
            "1st branch",
            "2nd branch",
            "Queued work",
            "ok"
        ]
    );
}

#[test]
fn first_runs_its_branches_before_queued_work() {
    let (r, trace) = mock::run_traced(|_env| {
        Switch::run(|sw| {
            sw.fork(|| {
                traceln!("Enqueuing work for later");
                fiber::yield_now()?;
                traceln!("Queued work");
                Ok(())
            });
            fiber::first(
                || {
                    traceln!("1st branch");
                    Ok(())
                },
                || {
                    traceln!("2nd branch");
                    Ok(())
                },
            )
        })?;
        traceln!("ok");
        Ok(())
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "Enqueuing work for later",
            "1st branch",
            "2nd branch",
            "Queued work",
            "ok"
        ]
    );
}

#[test]
fn nested_forks_run_depth_first() {
    // A child that forks runs its own child first; each parent resumes
    // before anything that was already queued.
    let (r, trace) = mock::run_traced(|_env| {
        Switch::run(|sw| {
            sw.fork(|| {
                traceln!("queued: before");
                fiber::yield_now()?;
                traceln!("queued: after");
                Ok(())
            });
            sw.fork(move || {
                traceln!("child");
                sw.fork(move || {
                    traceln!("grandchild");
                    fiber::yield_now()?;
                    traceln!("grandchild resumed");
                    Ok(())
                });
                traceln!("child resumed");
                Ok(())
            });
            traceln!("parent resumed");
            Ok(())
        })
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "queued: before",
            "child",
            "grandchild",
            "child resumed",
            "parent resumed",
            "queued: after",
            "grandchild resumed",
        ]
    );
}

#[test]
fn yield_now_is_round_robin() {
    let (r, trace) = mock::run_traced(|_env| {
        fiber::all(["a", "b", "c"].map(|name| {
            move || {
                for i in 1..=3 {
                    traceln!("{name}{i}");
                    fiber::yield_now()?;
                }
                Ok(())
            }
        }))
    });
    r.unwrap();
    assert_eq!(
        trace,
        ["a1", "b1", "c1", "a2", "b2", "c2", "a3", "b3", "c3"]
    );
}

#[test]
fn timers_fire_in_deadline_order_then_registration_order() {
    let (r, trace) = mock::run_traced(|env| {
        let clock = env.mono_clock();
        let t0 = clock.now()?;
        let sleepers = [("A", 5), ("B", 7), ("C", 2), ("D", 0), ("E", 5)].map(|(label, secs)| {
            move || {
                clock.sleep_until(t0 + Duration::from_secs(secs))?;
                traceln!("{label} ({secs}) woken");
                Ok(())
            }
        });
        fiber::all(sleepers)
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "D (0) woken",
            "mock time is now 2",
            "C (2) woken",
            "mock time is now 5",
            "A (5) woken",
            "E (5) woken",
            "mock time is now 7",
            "B (7) woken",
        ]
    );
}

#[test]
fn virtual_time_stands_still_while_fibers_yield() {
    // Under the mock, time only moves when no fiber can run: a busy fiber
    // runs to the end of its loop before the sleeper's deadline is reached,
    // however short the sleep.
    let (r, trace) = mock::run_traced(|env| {
        let clock = env.mono_clock();
        fiber::both(
            || {
                clock.sleep(Duration::from_millis(1))?;
                traceln!("sleeper woke at {:?}", clock.now()?.since_origin());
                Ok(())
            },
            || {
                for i in 0..4 {
                    traceln!("busy {i} at {:?}", clock.now()?.since_origin());
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
            "busy 0 at 0ns",
            "busy 1 at 0ns",
            "busy 2 at 0ns",
            "busy 3 at 0ns",
            "mock time is now 0.001",
            "sleeper woke at 1ms",
        ]
    );
}

#[test]
fn a_due_sleep_yields_instead_of_waiting() {
    // Sleeping for zero (a timer that is already due) lets other fibers run
    // once, without touching the clock.
    let (r, trace) = mock::run_traced(|env| {
        let clock = env.clock();
        fiber::both(
            || {
                traceln!("First fiber runs");
                clock.sleep(Duration::ZERO)?;
                traceln!("Sleep done");
                Ok(())
            },
            || {
                traceln!("Second fiber runs");
                Ok(())
            },
        )
    });
    r.unwrap();
    assert_eq!(
        trace,
        ["First fiber runs", "Second fiber runs", "Sleep done"]
    );
}

// ---------------------------------------------------------------------------
// first / first_with
// ---------------------------------------------------------------------------

#[test]
fn first_finishes_and_second_is_cancelled() {
    let (r, trace) = mock::run_traced(|_env| {
        let (p, _r) = Promise::<&str>::new();
        let x = fiber::first(
            || Ok("a"),
            || match p.wait() {
                Ok(v) => Ok(*v),
                Err(e) => {
                    traceln!(
                        "second: {}",
                        if e.is_cancelled() { "cancelled" } else { "?" }
                    );
                    Err(e)
                }
            },
        )?;
        traceln!("{x}");
        Ok(())
    });
    r.unwrap();
    assert_eq!(trace, ["second: cancelled", "a"]);
}

#[test]
fn second_finishes_and_first_is_cancelled() {
    let (r, trace) = mock::run_traced(|_env| {
        let (p, _r) = Promise::<&str>::new();
        let x = fiber::first(|| p.wait().copied(), || Ok("b"))?;
        traceln!("{x}");
        Ok(())
    });
    r.unwrap();
    assert_eq!(trace, ["b"]);
}

#[test]
fn first_keeps_the_first_result_when_both_succeed() {
    let r = mock::run(|_env| fiber::first(|| Ok("a"), || Ok("b")));
    assert_eq!(r.unwrap(), "a");
}

#[test]
fn first_with_combines_when_both_finish() {
    // The second function never suspends, so it finishes before the
    // cancellation caused by the first can take effect.
    let calls = Cell::new(0);
    let r = mock::run(|_env| {
        fiber::first_with(
            || Ok(String::from("a")),
            || Ok(String::from("b")),
            |x, y| {
                calls.set(calls.get() + 1);
                x + &y
            },
        )
    });
    assert_eq!(r.unwrap(), "ab");
    assert_eq!(calls.get(), 1);
}

#[test]
fn first_with_combines_when_both_finish_after_suspending() {
    // Both suspend in protected regions, so neither sees the other's win.
    let (r, trace) = mock::run_traced(|_env| {
        let v = fiber::first_with(
            || {
                cancel::protect(fiber::yield_now)?;
                traceln!("a done");
                Ok(vec!["a"])
            },
            || {
                cancel::protect(fiber::yield_now)?;
                traceln!("b done");
                Ok(vec!["b"])
            },
            |mut x, y| {
                x.extend(y);
                x
            },
        )?;
        traceln!("{v:?}");
        Ok(())
    });
    r.unwrap();
    assert_eq!(trace, ["a done", "b done", "[\"a\", \"b\"]"]);
}

#[test]
fn first_with_does_not_combine_when_the_loser_is_cancelled() {
    let calls = Cell::new(0);
    let r = mock::run(|_env| {
        fiber::first_with(
            || Ok(1),
            || {
                fiber::yield_now()?;
                Ok(2)
            },
            |a, b| {
                calls.set(calls.get() + 1);
                a * 10 + b
            },
        )
    });
    assert_eq!(r.unwrap(), 1);
    assert_eq!(calls.get(), 0);
}

#[test]
fn first_reports_a_crash_of_the_second() {
    let r = mock::run(|_env| fiber::first(|| Ok("a"), || Err(failure("b crashed"))));
    assert_eq!(r.unwrap_err().to_string(), "io error, b crashed");
}

#[test]
fn first_reports_a_crash_of_the_first() {
    let r = mock::run(|_env| fiber::first(|| Err(failure("a crashed")), || Ok("b")));
    assert_eq!(r.unwrap_err().to_string(), "io error, a crashed");
}

#[test]
fn first_reports_both_crashes_in_order() {
    let r = mock::run(|_env| {
        fiber::first::<()>(|| Err(failure("a crashed")), || Err(failure("b crashed")))
    });
    let err = r.unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Multiple(_)), "{err:?}");
    assert_eq!(
        messages(&err),
        ["io error, a crashed", "io error, b crashed"]
    );
}

#[test]
fn first_loser_cancelled_before_it_can_crash() {
    let r = mock::run(|_env| {
        fiber::first(
            || Ok("a"),
            || {
                fiber::yield_now()?;
                Err(failure("b crashed"))
            },
        )
    });
    assert_eq!(r.unwrap(), "a");
}

#[test]
fn first_reports_a_cancellation_that_is_not_its_own() {
    // A function that fails with `Cancelled` for its own reasons (not
    // because the other one won) is a failure of the race.
    let r =
        mock::run(|_env| fiber::first(|| Err(Error::cancelled(failure("cancel-a"))), || Ok("b")));
    let err = r.unwrap_err();
    assert!(err.is_cancelled());
    assert_eq!(err.to_string(), "cancelled: io error, cancel-a");

    let r = mock::run(|_env| {
        fiber::first(
            || {
                fiber::yield_now()?;
                Ok("a")
            },
            || Err(Error::cancelled(failure("cancel-b"))),
        )
    });
    assert_eq!(r.unwrap_err().to_string(), "cancelled: io error, cancel-b");
}

#[test]
fn first_cancelled_from_parent() {
    let r = mock::run(|_env| {
        let (p, _r) = Promise::<&str>::new();
        fiber::both(
            || {
                let v = fiber::first(|| p.wait().copied(), || p.wait().copied())?;
                Err(failure(v))
            },
            || Err(failure("Parent cancel")),
        )
    });
    assert_eq!(r.unwrap_err().to_string(), "io error, Parent cancel");
}

#[test]
fn first_cancelled_from_parent_while_already_cancelling() {
    // Differs from Eio, whose `first` raises the parent's cancellation even
    // when a winner exists: weft returns the winner's value, and the caller
    // sees its own cancellation at the next cancellation point.
    let (r, trace) = mock::run_traced(|_env| {
        fiber::both(
            || {
                let v = fiber::first(
                    || Ok("a"),
                    || {
                        // `yield_now` would fail at once in the cancelled
                        // race; shielded, it really lets the parent run.
                        cancel::protect(fiber::yield_now)?;
                        fiber::check()?;
                        Err(failure("cancel-b"))
                    },
                )?;
                traceln!("first returned {v}");
                let c = fiber::check();
                traceln!("check: {}", c.unwrap_err());
                Ok(())
            },
            || {
                traceln!("Cancelling parent");
                Err(failure("Parent cancel"))
            },
        )
    });
    assert_eq!(r.unwrap_err().to_string(), "io error, Parent cancel");
    assert_eq!(
        trace,
        [
            "Cancelling parent",
            "first returned a",
            "check: cancelled: io error, Parent cancel",
        ]
    );
}

#[test]
fn cancellation_seen_inside_and_outside_a_nested_switch() {
    // Inside the cancelled context the error is `Cancelled(reason)`; the
    // switch that failed reports the reason itself.
    let (r, trace) = mock::run_traced(|_env| {
        let (p, _r) = Promise::<()>::new();
        fiber::both(
            || {
                let r = Switch::run(|_sw| {
                    p.wait()
                        .map(|_| ())
                        .inspect_err(|e| traceln!("Nested error: {e}"))
                });
                r.inspect_err(|e| traceln!("Parent error: {e}"))
            },
            || Err(failure("Exit")),
        )
    });
    assert_eq!(r.unwrap_err().to_string(), "io error, Exit");
    assert_eq!(
        trace,
        [
            "Nested error: cancelled: io error, Exit",
            "Parent error: cancelled: io error, Exit"
        ]
    );
}

#[test]
fn forking_while_cancelled_starts_nothing() {
    // The second racer is started in a cancelled context: the switch that
    // `both` would create cannot even start.
    let (r, trace) = mock::run_traced(|_env| {
        fiber::first(
            || Err::<(), _>(failure("Simulated error")),
            || {
                fiber::both(
                    || {
                        traceln!("Not reached");
                        Ok(())
                    },
                    || {
                        traceln!("Not reached");
                        Ok(())
                    },
                )?;
                unreachable!("both in a cancelled context must fail");
            },
        )
    });
    assert_eq!(r.unwrap_err().to_string(), "io error, Simulated error");
    assert!(trace.is_empty(), "{trace:?}");
}

// ---------------------------------------------------------------------------
// pair, all, any, n_any, await_cancel
// ---------------------------------------------------------------------------

#[test]
fn pair_returns_both_values() {
    let r = mock::run(|_env| {
        let (x, y) = fiber::pair(
            || {
                fiber::yield_now()?;
                Ok("a")
            },
            || Ok(2),
        )?;
        Ok(format!("{x}{y}"))
    });
    assert_eq!(r.unwrap(), "a2");
}

#[test]
fn pair_fails_if_either_fails() {
    let r = mock::run(|_env| fiber::pair(|| Ok(1), || Err::<u8, _>(failure("second failed"))));
    assert_eq!(r.unwrap_err().to_string(), "io error, second failed");
    let r = mock::run(|_env| {
        fiber::pair(
            || Err::<u8, _>(failure("first failed")),
            || {
                fiber::yield_now()?;
                Ok(2)
            },
        )
    });
    assert_eq!(r.unwrap_err().to_string(), "io error, first failed");
}

#[test]
fn all_runs_every_function_in_order() {
    let (r, trace) = mock::run_traced(|_env| {
        fiber::all(Vec::<fn() -> Result<()>>::new())?;
        fiber::all((0..3).map(|x| {
            move || {
                traceln!("fiber {x}");
                Ok(())
            }
        }))?;
        traceln!("done");
        Ok(())
    });
    r.unwrap();
    assert_eq!(trace, ["fiber 0", "fiber 1", "fiber 2", "done"]);
}

#[test]
fn all_first_failure_cancels_the_rest() {
    let (r, trace) = mock::run_traced(|_env| {
        fiber::all((0..3).map(|x| {
            move || {
                traceln!("start {x}");
                fiber::yield_now()?;
                if x == 1 {
                    return Err(failure("1 failed"));
                }
                fiber::yield_now()?;
                traceln!("finished {x}");
                Ok(())
            }
        }))
    });
    assert_eq!(r.unwrap_err().to_string(), "io error, 1 failed");
    assert_eq!(trace, ["start 0", "start 1", "start 2"]);
}

#[test]
fn any_returns_the_first_to_finish() {
    let (r, trace) = mock::run_traced(|_env| {
        let x = fiber::any((0..3).map(|x| {
            move || {
                traceln!("{x}");
                fiber::yield_now()?;
                Ok(x)
            }
        }))?;
        traceln!("result {x}");
        Ok(())
    });
    r.unwrap();
    assert_eq!(trace, ["0", "1", "2", "result 0"]);
}

#[test]
fn any_picks_the_fastest_not_the_first() {
    let r = mock::run(|_env| {
        fiber::any((0..4).map(|x: u32| {
            move || {
                for _ in 0..(4 - x) {
                    fiber::yield_now()?;
                }
                Ok(x)
            }
        }))
    });
    assert_eq!(r.unwrap(), 3);
}

#[test]
fn any_of_nothing_is_invalid_input() {
    // Differs from Eio, where `any []` waits until cancelled.
    let r = mock::run(|_env| fiber::any(Vec::<fn() -> Result<()>>::new()));
    assert_eq!(r.unwrap_err().kind(), &ErrorKind::InvalidInput);
}

#[test]
fn n_any_returns_what_finished_before_cancellation_took_effect() {
    // 0 and 2 never suspend, so both finish (2 runs after 0 has already
    // cancelled the race, but has no cancellation point to notice it);
    // 1 and 3 are cancelled at their yield.
    let (r, trace) = mock::run_traced(|_env| {
        let v = fiber::n_any((0..4).map(|x| {
            move || {
                if x % 2 == 1 {
                    fiber::yield_now()?;
                    traceln!("{x} not cancelled");
                }
                Ok(x)
            }
        }))?;
        traceln!("{v:?}");
        Ok(())
    });
    r.unwrap();
    assert_eq!(trace, ["[0, 2]"]);
}

#[test]
fn n_any_yielding_fibers_only_the_first_wins() {
    let r = mock::run(|_env| {
        fiber::n_any((0..3).map(|x| {
            move || {
                fiber::yield_now()?;
                Ok(x)
            }
        }))
    });
    assert_eq!(r.unwrap(), [0]);
}

#[test]
fn n_any_keeps_the_order_of_finishing() {
    // All of them shield their wait, so all finish: in the order they
    // finished, not the order they were given.
    let r = mock::run(|_env| {
        fiber::n_any((0..4).map(|x: u32| {
            move || {
                cancel::protect(|| {
                    for _ in 0..(4 - x) {
                        fiber::yield_now()?;
                    }
                    Ok::<(), Error>(())
                })?;
                Ok(x)
            }
        }))
    });
    assert_eq!(r.unwrap(), [3, 2, 1, 0]);
}

#[test]
fn n_any_reports_a_failure() {
    let r = mock::run(|_env| {
        fiber::n_any((0..3).map(|x| {
            move || {
                if x == 1 {
                    return Err(failure("1 failed"));
                }
                fiber::yield_now()?;
                Ok(x)
            }
        }))
    });
    assert_eq!(r.unwrap_err().to_string(), "io error, 1 failed");
}

#[test]
fn await_cancel_returns_the_cancellation() {
    let (r, trace) = mock::run_traced(|_env| {
        fiber::both(
            || {
                let e = fiber::await_cancel();
                traceln!("Caught: {e}");
                assert_eq!(
                    e.cancel_reason().unwrap().to_string(),
                    "io error, simulated error"
                );
                Err(e)
            },
            || Err(failure("simulated error")),
        )
    });
    assert_eq!(r.unwrap_err().to_string(), "io error, simulated error");
    assert_eq!(trace, ["Caught: cancelled: io error, simulated error"]);
}

// ---------------------------------------------------------------------------
// map / filter_map / iter
// ---------------------------------------------------------------------------

fn process<T>(x: u32, f: impl FnOnce(u32) -> Result<T>) -> Result<T> {
    traceln!("Start {x}");
    fiber::yield_now()?;
    let y = f(x)?;
    traceln!("Finished {x}");
    Ok(y)
}

fn string_even(x: u32) -> Result<Option<String>> {
    Ok((x % 2 == 0).then(|| x.to_string()))
}

#[test]
fn filter_map_keeps_item_order() {
    let (r, trace) = mock::run_traced(|_env| {
        let v = fiber::filter_map(usize::MAX, [1, 2, 3, 4], |x| process(x, string_even))?;
        traceln!("{v:?}");
        Ok(())
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "Start 1",
            "Start 2",
            "Start 3",
            "Start 4",
            "Finished 1",
            "Finished 2",
            "Finished 3",
            "Finished 4",
            "[\"2\", \"4\"]",
        ]
    );
}

#[test]
fn map_keeps_item_order() {
    let (r, trace) = mock::run_traced(|_env| {
        let v = fiber::map(usize::MAX, [1, 2, 3, 4], |x| process(x, string_even))?;
        traceln!("{v:?}");
        Ok(())
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "Start 1",
            "Start 2",
            "Start 3",
            "Start 4",
            "Finished 1",
            "Finished 2",
            "Finished 3",
            "Finished 4",
            "[None, Some(\"2\"), None, Some(\"4\")]",
        ]
    );
}

#[test]
fn map_keeps_item_order_when_completion_order_differs() {
    let r = mock::run(|_env| {
        fiber::map(3, 0..10u32, |i| {
            for _ in 0..(i * 7 % 4) {
                fiber::yield_now()?;
            }
            Ok(i * 10)
        })
    });
    assert_eq!(r.unwrap(), (0..10).map(|i| i * 10).collect::<Vec<_>>());
}

#[test]
fn filter_map_failure_cancels_everything() {
    let crash_on_three = |x| {
        if x == 3 {
            Err(failure("Simulated error"))
        } else {
            string_even(x)
        }
    };
    let (r, trace) = mock::run_traced(|_env| {
        let v = fiber::filter_map(usize::MAX, [1, 2, 3, 4], |x| process(x, crash_on_three))?;
        traceln!("{v:?}");
        Ok(())
    });
    assert_eq!(r.unwrap_err().to_string(), "io error, Simulated error");
    assert_eq!(
        trace,
        [
            "Start 1",
            "Start 2",
            "Start 3",
            "Start 4",
            "Finished 1",
            "Finished 2"
        ]
    );
}

#[test]
fn map_limits_concurrency_with_max_fibers() {
    let (r, trace) = mock::run_traced(|_env| {
        let ps: Vec<_> = (0..4).map(|_| Promise::<&str>::new()).collect();
        let names = ["zero", "one", "two", "three"];
        let finish = |i: usize| ps[i].1.resolve(names[i]).unwrap();
        fiber::both(
            || {
                let v = fiber::map(2, 0..4u32, |i| {
                    process(i, |i| ps[i as usize].0.wait().copied())
                })?;
                traceln!("{v:?}");
                Ok(())
            },
            || {
                finish(1);
                fiber::yield_now()?;
                finish(2);
                fiber::yield_now()?;
                fiber::yield_now()?;
                finish(0);
                fiber::yield_now()?;
                fiber::yield_now()?;
                finish(3);
                Ok(())
            },
        )
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "Start 0",
            "Start 1",
            "Finished 1",
            "Start 2",
            "Finished 2",
            "Start 3",
            "Finished 0",
            "Finished 3",
            "[\"zero\", \"one\", \"two\", \"three\"]",
        ]
    );
}

#[test]
fn map_failure_while_waiting_for_a_free_fiber() {
    let (r, trace) = mock::run_traced(|_env| {
        let ps: Vec<_> = (0..2).map(|_| Promise::<Result<&str>>::new()).collect();
        fiber::both(
            || {
                let v = fiber::map(1, 0..2u32, |i| {
                    process(i, |i| ps[i as usize].0.wait_result())
                })?;
                traceln!("{v:?}");
                Ok(())
            },
            || {
                fiber::yield_now()?;
                ps[0].1.resolve(Err(failure("Simulated error"))).unwrap();
                Ok(())
            },
        )
    });
    assert_eq!(r.unwrap_err().to_string(), "io error, Simulated error");
    assert_eq!(trace, ["Start 0"]);
}

#[test]
fn iter_limits_concurrency_with_max_fibers() {
    let (r, trace) = mock::run_traced(|_env| {
        let ps: Vec<_> = (0..4).map(|_| Promise::<()>::new()).collect();
        let finish = |i: usize| ps[i].1.resolve(()).unwrap();
        fiber::both(
            || {
                fiber::iter(2, 0..4u32, |i| {
                    process(i, |i| ps[i as usize].0.wait().map(|_| ()))
                })
            },
            || {
                finish(1);
                fiber::yield_now()?;
                finish(2);
                fiber::yield_now()?;
                fiber::yield_now()?;
                finish(0);
                fiber::yield_now()?;
                fiber::yield_now()?;
                finish(3);
                Ok(())
            },
        )
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "Start 0",
            "Start 1",
            "Finished 1",
            "Start 2",
            "Finished 2",
            "Start 3",
            "Finished 0",
            "Finished 3",
        ]
    );
}

/// Runs `op` with a counter of calls in progress and returns the highest
/// value it reached.
fn high_water_mark(max_fibers: usize, items: u32) -> usize {
    let running = Cell::new(0usize);
    let peak = Cell::new(0usize);
    let seen = RefCell::new(Vec::new());
    mock::run(|_env| {
        fiber::iter(max_fibers, 0..items, |i| {
            running.set(running.get() + 1);
            peak.set(peak.get().max(running.get()));
            for _ in 0..(1 + i % 3) {
                fiber::yield_now()?;
            }
            seen.borrow_mut().push(i);
            running.set(running.get() - 1);
            Ok(())
        })
    })
    .unwrap();
    let mut seen = seen.into_inner();
    seen.sort();
    assert_eq!(seen, (0..items).collect::<Vec<_>>(), "every item once");
    assert_eq!(running.get(), 0);
    peak.get()
}

#[test]
fn max_fibers_bounds_the_calls_in_progress() {
    assert_eq!(high_water_mark(1, 10), 1);
    assert_eq!(high_water_mark(3, 10), 3);
    assert_eq!(high_water_mark(7, 20), 7);
    assert_eq!(high_water_mark(100, 10), 10);
}

#[test]
fn max_fibers_zero_is_invalid_input() {
    let r = mock::run(|_env| {
        let called = Cell::new(false);
        let e1 = fiber::iter(0, [1], |_| {
            called.set(true);
            Ok(())
        })
        .unwrap_err();
        let e2 = fiber::map(0, [1], |x| {
            called.set(true);
            Ok(x)
        })
        .unwrap_err();
        let e3 = fiber::filter_map(0, [1], |x| {
            called.set(true);
            Ok(Some(x))
        })
        .unwrap_err();
        assert!(!called.get(), "no item may be processed");
        Ok([e1, e2, e3])
    });
    for e in r.unwrap() {
        assert_eq!(e.kind(), &ErrorKind::InvalidInput, "{e}");
    }
}

#[test]
fn map_of_nothing_is_empty() {
    let r = mock::run(|_env| fiber::map(4, Vec::<u32>::new(), |x| Ok(x + 1)));
    assert_eq!(r.unwrap(), Vec::<u32>::new());
}

#[test]
fn no_item_starts_after_a_failure() {
    // Item 1 shields its yield, so it finishes after item 0 has failed; the
    // fiber that ran it must not go on to start items 2 and 3 (in Eio the
    // limiter's wait for a free fiber is cancelled by the failure).
    let (r, trace) = mock::run_traced(|_env| {
        fiber::iter(2, 0..4u32, |x| {
            traceln!("Start {x}");
            if x == 0 {
                fiber::yield_now()?;
                return Err(failure("0 failed"));
            }
            cancel::protect(fiber::yield_now)?;
            traceln!("Finished {x}");
            Ok(())
        })
    });
    assert_eq!(r.unwrap_err().to_string(), "io error, 0 failed");
    assert_eq!(trace, ["Start 0", "Start 1", "Finished 1"]);
}

// ---------------------------------------------------------------------------
// Cancelled from outside: an error, never a partial result
// ---------------------------------------------------------------------------

#[test]
fn pair_cancelled_from_outside_is_an_error() {
    // `f` is cancelled by the enclosing scope while `g` succeeds: `pair`
    // has no value for `f`, so it reports the cancellation.
    let r = mock::run(|_env| {
        let (p, _r) = Promise::<u8>::new();
        let r = cancel::sub(|scope| {
            fiber::pair(
                || p.wait().copied(),
                || {
                    scope.cancel(failure("outside"));
                    Ok(2)
                },
            )
        });
        Ok(r.map_err(|e| e.to_string()))
    });
    assert_eq!(r.unwrap(), Err("cancelled: io error, outside".to_string()));
}

#[test]
fn map_cancelled_from_outside_is_an_error_not_a_partial_result() {
    let r = mock::run(|_env| {
        let r = cancel::sub(|scope| {
            fiber::map(2, 0..4u32, |i| {
                if i == 1 {
                    scope.cancel(failure("outside"));
                }
                fiber::yield_now()?;
                Ok(i)
            })
        });
        Ok(r.map_err(|e| e.to_string()))
    });
    assert_eq!(r.unwrap(), Err("cancelled: io error, outside".to_string()));
}

#[test]
fn map_keeps_its_results_if_every_item_finished_before_the_cancellation() {
    // The last item cancels the scope but finishes without suspending:
    // every item was processed, so the results are returned.
    let r = mock::run(|_env| {
        cancel::sub(|scope| {
            fiber::map(1, 0..3u32, |i| {
                if i == 2 {
                    scope.cancel(failure("outside"));
                }
                Ok(i * 2)
            })
        })
    });
    assert_eq!(r.unwrap(), [0, 2, 4]);
}
