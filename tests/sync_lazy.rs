//! `weft::sync::Lazy`: Eio's lazy tests (tests/lazy.md) as trace tests, for
//! all three cancel modes, plus panics and forcing from several threads.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use weft::sync::{Lazy, LazyCancel};
use weft::{fiber, traceln, Error, ErrorKind};

/// Eio's `test`: force, then check for cancellation, tracing what happened.
fn test<F: Fn() -> weft::Result<i32>>(label: &str, v: &Lazy<i32, F>) -> weft::Result<()> {
    traceln!("{label}: forcing...");
    match v.force() {
        Ok(v) => {
            fiber::check()?;
            traceln!("{label}: {v}");
        }
        Err(e) => {
            traceln!("{label}: {e}");
            fiber::check()?;
        }
    }
    Ok(())
}

fn calculation() -> weft::Result<i32> {
    traceln!("calculating...");
    fiber::yield_now()?;
    traceln!("complete");
    Ok(42)
}

#[test]
fn computed_only_once() {
    let (r, trace) = weft::mock::run_traced(|_env| {
        let v = Lazy::new(LazyCancel::Restart, calculation);
        fiber::both(|| test("a", &v), || test("b", &v))?;
        assert!(v.is_forced());
        assert_eq!(*v.force()?, 42);
        Ok(())
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "a: forcing...",
            "calculating...",
            "b: forcing...",
            "complete",
            "a: 42",
            "b: 42"
        ]
    );
}

#[test]
fn failure_is_recorded_and_shared() {
    let calls = AtomicUsize::new(0);
    let (r, trace) = weft::mock::run_traced(|_env| {
        let v = Lazy::new(LazyCancel::Restart, || -> weft::Result<i32> {
            calls.fetch_add(1, Ordering::Relaxed);
            traceln!("calculating...");
            fiber::yield_now()?;
            Err(Error::msg(ErrorKind::InvalidInput, "failed"))
        });
        fiber::both(|| test("a", &v), || test("b", &v))?;
        // Not retried later either.
        assert_eq!(v.force().unwrap_err().to_string(), "invalid input, failed");
        assert!(v.get().unwrap().is_err());
        Ok(())
    });
    r.unwrap();
    assert_eq!(calls.load(Ordering::Relaxed), 1);
    assert_eq!(
        trace,
        [
            "a: forcing...",
            "calculating...",
            "b: forcing...",
            "a: invalid input, failed",
            "b: invalid input, failed"
        ]
    );
}

/// Eio's `test_cancel`: the first forcer is cancelled while computing.
fn test_cancel(cancel: LazyCancel) -> Vec<String> {
    let (r, trace) = weft::mock::run_traced(|_env| {
        let v = Lazy::new(cancel, calculation);
        fiber::both(
            || {
                let x = fiber::first(
                    || {
                        test("a", &v)?;
                        unreachable!("a is cancelled")
                    },
                    || Ok(5),
                )?;
                traceln!("a: {x}");
                Ok(())
            },
            || test("b", &v),
        )
    });
    r.unwrap();
    trace
}

const CANCELLED: &str = "cancelled: another fiber finished first";

#[test]
fn cancel_record_mode() {
    assert_eq!(
        test_cancel(LazyCancel::Record),
        [
            "a: forcing...".to_string(),
            "calculating...".into(),
            "b: forcing...".into(),
            format!("a: {CANCELLED}"),
            format!("b: {CANCELLED}"),
            "a: 5".into(),
        ]
    );
}

#[test]
fn cancel_protect_mode() {
    assert_eq!(
        test_cancel(LazyCancel::Protect),
        [
            "a: forcing...",
            "calculating...",
            "b: forcing...",
            "complete",
            "b: 42",
            "a: 5"
        ]
    );
}

#[test]
fn cancel_restart_mode() {
    assert_eq!(
        test_cancel(LazyCancel::Restart),
        [
            "a: forcing...".to_string(),
            "calculating...".into(),
            "b: forcing...".into(),
            format!("a: {CANCELLED}"),
            "calculating...".into(),
            "a: 5".into(),
            "complete".into(),
            "b: 42".into(),
        ]
    );
}

/// In restart mode, only the computing fiber's *own* cancellation restarts
/// the computation; a `Cancelled` error that the function got from
/// elsewhere is recorded like any other error.
#[test]
fn restart_mode_records_a_foreign_cancellation() {
    weft::mock::run(|_env| {
        let calls = AtomicUsize::new(0);
        let v = Lazy::new(LazyCancel::Restart, || -> weft::Result<i32> {
            calls.fetch_add(1, Ordering::Relaxed);
            Err(Error::cancelled(Error::new(ErrorKind::Timeout)))
        });
        assert!(v.force().unwrap_err().is_cancelled());
        assert!(v.force().unwrap_err().is_cancelled());
        assert_eq!(calls.load(Ordering::Relaxed), 1);
        Ok(())
    })
    .unwrap();
}

/// A cancelled *waiter* does not disturb the computation.
#[test]
fn cancelled_waiter() {
    let (r, trace) = weft::mock::run_traced(|_env| {
        let v = Lazy::new(LazyCancel::Record, calculation);
        fiber::both(
            || test("a", &v),
            || {
                let r = fiber::first(|| v.force().map(|_| "b: forced"), || Ok("b: gave up"))?;
                traceln!("{r}");
                Ok(())
            },
        )?;
        assert_eq!(*v.force()?, 42);
        Ok(())
    });
    r.unwrap();
    assert_eq!(
        trace,
        // `a` was queued (by its yield) before `b`'s racing branch was
        // cancelled, so it finishes first.
        [
            "a: forcing...",
            "calculating...",
            "complete",
            "a: 42",
            "b: gave up"
        ]
    );
}

#[test]
fn from_value_and_no_suspension_after_forcing() {
    let (r, trace) = weft::mock::run_traced(|_env| {
        let v = Lazy::from_value(7);
        assert!(v.is_forced());
        assert_eq!(*v.force()?, 7);
        let w = Lazy::new(LazyCancel::Record, || Ok(String::from("x")));
        assert!(w.get().is_none());
        assert_eq!(w.force()?, "x");
        assert!(format!("{w:?}").contains("\"x\""));
        traceln!("ok");
        Ok(())
    });
    r.unwrap();
    assert_eq!(trace, ["ok"]);
}

#[test]
fn panic_is_recorded_for_others_and_re_raised() {
    weft::mock::run(|_env| {
        let v = Lazy::new(LazyCancel::Record, || -> weft::Result<i32> {
            fiber::yield_now()?;
            panic!("init exploded")
        });
        let b_saw = std::cell::RefCell::new(None);
        let r = catch_unwind(AssertUnwindSafe(|| {
            fiber::both(
                || v.force().map(drop),
                || {
                    let e = v.force().unwrap_err();
                    *b_saw.borrow_mut() = Some(e);
                    Ok(())
                },
            )
        }));
        assert!(r.is_err(), "the panic reaches the switch");
        let e = b_saw.into_inner().expect("b was woken with an error");
        assert_eq!(e.kind(), &ErrorKind::Panic);
        assert!(e.to_string().contains("init exploded"), "{e}");
        assert_eq!(v.force().unwrap_err().kind(), &ErrorKind::Panic);
        Ok(())
    })
    .unwrap();
}

/// Fibers on four OS threads force one value: the function runs once and
/// everyone gets the same value.
#[test]
fn forced_from_several_threads() {
    let calls = AtomicUsize::new(0);
    let v = Lazy::new(LazyCancel::Record, || {
        calls.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(20)); // slow, and blocking
        fiber::yield_now()?;
        Ok(vec![1, 2, 3])
    });
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                weft::mock::Config::new()
                    .external_wait(Duration::from_secs(20))
                    .run(|_env| {
                        fiber::all((0..5).map(|_| {
                            let v = &v;
                            move || {
                                assert_eq!(v.force()?, &[1, 2, 3]);
                                Ok(())
                            }
                        }))
                    })
                    .unwrap();
            });
        }
    });
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}
