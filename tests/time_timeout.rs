//! `with_timeout` when the deadline and the work finish together, and what
//! the cancelled work is told.

use std::time::Duration;

use weft::{mock, time};

#[test]
fn a_value_that_arrives_with_the_deadline_is_kept() {
    // Both timers fire in the same turn (the timeout's first): the work's
    // result must not be thrown away in favour of the timeout.
    let r = mock::run(|env| {
        let clock = env.mono_clock();
        time::with_timeout(clock, Duration::from_secs(1), || {
            clock.sleep(Duration::from_secs(1))?;
            Ok(5)
        })
    });
    assert_eq!(r.unwrap(), 5);
}

#[test]
fn a_deadline_before_the_value_is_a_timeout() {
    let r = mock::run(|env| {
        let clock = env.mono_clock();
        time::with_timeout(clock, Duration::from_secs(1), || {
            clock.sleep(Duration::from_secs(2))?;
            Ok(5)
        })
    });
    let e = r.unwrap_err();
    assert!(e.is_timeout(), "{e}");
    assert_eq!(e.to_string(), "timeout, timed out after 1s");
}

#[test]
fn an_error_from_the_work_is_returned_not_masked() {
    let r = mock::run(|env| {
        time::with_timeout(env.mono_clock(), Duration::from_secs(1), || {
            Err::<(), _>(weft::Error::msg(weft::ErrorKind::InvalidInput, "bad"))
        })
    });
    assert_eq!(r.unwrap_err().kind(), &weft::ErrorKind::InvalidInput);
}

#[test]
fn the_work_is_cancelled_because_of_the_timeout() {
    // The work sees why it stops: the timeout, not a generic "another fiber
    // finished first".
    let (r, trace) = mock::run_traced(|env| {
        let clock = env.mono_clock();
        time::with_timeout(clock, Duration::from_secs(1), || {
            let r = clock.sleep(Duration::from_secs(2));
            if let Err(e) = &r {
                let reason = e.cancel_reason().expect("a cancellation");
                assert!(reason.is_timeout(), "{e}");
                weft::traceln!("work: {e}");
            }
            r
        })
    });
    assert!(r.unwrap_err().is_timeout());
    assert_eq!(
        trace,
        [
            "mock time is now 1",
            "work: cancelled: timeout, timed out after 1s"
        ]
    );
}

#[test]
fn racing_losers_are_told_another_fiber_finished_first() {
    let (r, trace) = mock::run_traced(|env| {
        let clock = env.mono_clock();
        weft::fiber::first(
            || Ok("quick"),
            || {
                let r = clock.sleep(Duration::from_secs(2));
                if let Err(e) = &r {
                    weft::traceln!("slow: {e}");
                }
                r.map(|()| "slow")
            },
        )
    });
    assert_eq!(r.unwrap(), "quick");
    assert_eq!(trace, ["slow: cancelled: another fiber finished first"]);
}
