//! Conformance: detached fibers (`backend::spawn_detached`), which belong to
//! no switch — the mock runs its child processes on them. They start after
//! the spawner suspends, are cancelled one by one through their handle, and
//! never outlive the run: when `main` returns, those still running are
//! cancelled and finish before the run returns.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use rstest::rstest;
use weft::backend::spawn_detached;
use weft::{fiber, Backend, Error, ErrorKind};

fn stop(why: &'static str) -> Error {
    Error::msg(ErrorKind::Cancelled, why)
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn a_detached_fiber_starts_later_and_is_cancelled_alone(#[case] backend: Backend) {
    weft::run_with(backend, |env| {
        let log = Rc::new(RefCell::new(Vec::new()));
        let mut handles = Vec::new();
        for i in 0..2 {
            let (log, clock) = (log.clone(), env.mono_clock());
            handles.push(spawn_detached(format!("sleeper {i}"), move || {
                log.borrow_mut().push(format!("{i} starts"));
                let r = clock.sleep(Duration::from_secs(100));
                log.borrow_mut().push(format!("{i} ends: {}", r.is_err()));
            })?);
        }
        assert!(log.borrow().is_empty(), "spawning does not switch");
        fiber::yield_now()?;
        assert_eq!(*log.borrow(), ["0 starts", "1 starts"]);
        handles[1].cancel(stop("only this one"));
        fiber::yield_now()?;
        assert!(handles[1].is_finished() && !handles[0].is_finished());
        assert_eq!(log.borrow().last().unwrap(), "1 ends: true");
        // Cancelling a finished one does nothing.
        handles[1].cancel(stop("again"));
        handles[0].cancel(stop("now the other"));
        fiber::yield_now()?;
        assert!(handles[0].is_finished());
        assert_eq!(log.borrow().len(), 4);
        Ok(())
    })
    .unwrap();
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn the_run_cancels_and_joins_detached_fibers_when_main_returns(#[case] backend: Backend) {
    let ended = Rc::new(Cell::new(None));
    let started = Instant::now();
    let seen = ended.clone();
    let handle = weft::run_with(backend, move |env| {
        let clock = env.mono_clock();
        let h = spawn_detached("sleeper", move || {
            let r = clock.sleep(Duration::from_secs(1000));
            seen.set(Some(r.map_err(|e| e.to_string())));
        })?;
        fiber::yield_now()?;
        Ok(h)
    })
    .unwrap();
    // Its clean-up ran inside the run: cancelled, not left asleep.
    assert!(handle.is_finished());
    let got = ended.take().expect("the fiber finished inside the run");
    assert_eq!(
        got.unwrap_err(),
        "cancelled: the run's main fiber has finished"
    );
    assert!(started.elapsed() < Duration::from_secs(100));
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn a_panicking_detached_fiber_does_not_fail_the_run(#[case] backend: Backend) {
    weft::run_with(backend, |_env| {
        let h = spawn_detached("doomed", || panic!("detached boom"))?;
        fiber::yield_now()?;
        assert!(h.is_finished());
        Ok(())
    })
    .unwrap();
    let err = spawn_detached("outside", || {}).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::InvalidInput);
}
