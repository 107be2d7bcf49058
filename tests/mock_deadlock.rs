//! Deadlock detection under the mock backend: a run in which nothing can
//! ever happen again stops with `ErrorKind::Deadlock`, naming every blocked
//! fiber and what it waits on, instead of hanging.

use std::time::Duration;

use weft::fiber::ForkOptions;
use weft::sync::{Promise, Stream};
use weft::{cancel, fiber, mock, traceln, ErrorKind, Switch};

#[test]
fn main_waiting_on_a_promise_nobody_resolves() {
    let r = mock::run(|_env| {
        let (p, _resolver) = Promise::<u32>::new();
        p.wait().copied()
    });
    let err = r.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Deadlock);
    assert_eq!(
        err.to_string(),
        "deadlock, fiber #1 \"main\" waiting on promise"
    );
}

#[test]
fn a_named_fiber_appears_by_name_and_fork_site() {
    let (r, trace) = mock::run_traced(|_env| {
        let (p, _resolver) = Promise::<u32>::new();
        Switch::run(|sw| {
            sw.fork_with(ForkOptions::new().name("worker"), || {
                let e = p.wait().unwrap_err();
                // The deadlock cancels the blocked fibers, so they unwind
                // through their normal error paths.
                traceln!("worker: {e}");
                Err(e)
            });
            Ok(())
        })
    });
    let err = r.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Deadlock);
    let msg = err.to_string();
    let (head, tail) = msg.split_once(" (forked at ").expect("fork site named");
    assert_eq!(
        head,
        "deadlock, fiber #1 \"main\" waiting on switch to finish its fibers; fiber #2 \"worker\""
    );
    assert!(tail.starts_with("tests/mock_deadlock.rs:"), "{msg}");
    assert!(tail.ends_with(") waiting on promise"), "{msg}");
    assert_eq!(trace, [format!("worker: cancelled: {msg}")]);
}

#[test]
fn waiting_on_an_empty_stream() {
    let r = mock::run(|_env| {
        let s = Stream::<u8>::new(4);
        s.take()
    });
    let err = r.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Deadlock);
    assert_eq!(
        err.to_string(),
        "deadlock, fiber #1 \"main\" waiting on stream take"
    );
}

#[test]
fn waiting_to_add_to_a_full_stream() {
    let r = mock::run(|_env| {
        let s = Stream::new(1);
        s.add(1)?;
        Switch::run(|sw| {
            sw.fork_with(ForkOptions::new().name("producer"), || s.add(2));
            Ok(())
        })
    });
    let msg = r.unwrap_err().to_string();
    assert!(msg.contains("fiber #2 \"producer\""), "{msg}");
    assert!(msg.ends_with("waiting on stream add"), "{msg}");
}

#[test]
fn two_fibers_waiting_on_each_other() {
    let r = mock::run(|_env| {
        let (pa, ra) = Promise::<()>::new();
        let (pb, rb) = Promise::<()>::new();
        fiber::both(
            || {
                pb.wait()?;
                ra.resolve(()).unwrap();
                Ok(())
            },
            || {
                pa.wait()?;
                rb.resolve(()).unwrap();
                Ok(())
            },
        )
    });
    let err = r.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Deadlock);
    let msg = err.to_string();
    assert!(
        msg.starts_with("deadlock, fiber #1 \"main\" waiting on promise; fiber #2 (forked at "),
        "{msg}"
    );
    assert!(msg.ends_with(") waiting on promise"), "{msg}");
}

#[test]
fn the_deadlock_is_reported_even_if_main_handles_its_cancellation() {
    let (r, trace) = mock::run_traced(|_env| {
        let (p, _resolver) = Promise::<()>::new();
        let e = fiber::await_cancel();
        traceln!("main: {e}");
        drop(p);
        Ok(())
    });
    assert_eq!(r.unwrap_err().kind(), &ErrorKind::Deadlock);
    assert_eq!(
        trace,
        ["main: cancelled: deadlock, fiber #1 \"main\" waiting on cancellation"]
    );
}

#[test]
fn a_protected_wait_does_not_hang_the_run() {
    // Cancellation cannot reach a protected wait; the run still ends.
    let r = mock::run(|_env| {
        let (p, _resolver) = Promise::<()>::new();
        cancel::protect(|| p.wait().map(|_| ()))
    });
    let err = r.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Deadlock);
    assert!(err.to_string().contains("waiting on promise"), "{err}");
}

#[test]
fn pending_timers_are_not_a_deadlock() {
    let (r, trace) = mock::run_traced(|env| {
        let clock = env.mono_clock();
        let (p, resolver) = Promise::new();
        fiber::both(
            || {
                traceln!("got {}", p.wait()?);
                Ok(())
            },
            || {
                clock.sleep(Duration::from_secs(1000))?;
                resolver.resolve("late").unwrap();
                Ok(())
            },
        )
    });
    r.unwrap();
    assert_eq!(trace, ["mock time is now 1000", "got late"]);
}

#[test]
fn deadlock_after_time_has_advanced() {
    let (r, trace) = mock::run_traced(|env| {
        env.mono_clock().sleep(Duration::from_secs(2))?;
        traceln!("Timeout done");
        let (p, _r) = Promise::<()>::new();
        p.wait()?;
        traceln!("not reached");
        Ok(())
    });
    assert_eq!(r.unwrap_err().kind(), &ErrorKind::Deadlock);
    assert_eq!(trace, ["mock time is now 2", "Timeout done"]);
}

#[test]
fn an_abandoned_promise_is_not_a_deadlock() {
    // Dropping the last resolver wakes the waiter with `Closed` instead.
    let r = mock::run(|_env| {
        let (p, resolver) = Promise::<()>::new();
        fiber::both(
            || p.wait().map(|_| ()),
            || {
                drop(resolver);
                Ok(())
            },
        )
    });
    assert_eq!(r.unwrap_err().kind(), &ErrorKind::Closed);
}

#[test]
fn runs_after_a_deadlock_are_unaffected() {
    for _ in 0..3 {
        let r = mock::run(|_env| {
            let (p, _r) = Promise::<()>::new();
            p.wait().map(|_| ())
        });
        assert_eq!(r.unwrap_err().kind(), &ErrorKind::Deadlock);
        let (r, trace) = mock::run_traced(|env| {
            env.mono_clock().sleep(Duration::from_secs(1))?;
            Ok(1)
        });
        assert_eq!(r.unwrap(), 1);
        assert_eq!(trace, ["mock time is now 1"]);
    }
}
