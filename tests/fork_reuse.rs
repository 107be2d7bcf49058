//! Conformance: forked fibers of the default stack size run on reused
//! workers (a parked coroutine takes the next body). Each body is moved in
//! and dropped exactly once, whether it returns, fails, suspends or is
//! cancelled; a worker whose body panicked runs the next one; and
//! fibers of another stack size, and forks inside forked fibers, run.

use std::cell::Cell;
use std::rc::Rc;

use rstest::rstest;
use weft::fiber::ForkOptions;
use weft::sync::Promise;
use weft::{fiber, Backend, ErrorKind, Switch};

/// Counts its drops in a shared cell.
struct Tally(Rc<Cell<usize>>);

impl Drop for Tally {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn every_body_is_dropped_once_however_it_ends(#[case] backend: Backend) {
    const N: usize = 600;
    let drops = Rc::new(Cell::new(0));
    let ran = Rc::new(Cell::new(0));
    weft::run_with(backend, |_env| {
        for round in 0..3 {
            let r = Switch::run(|sw| {
                for i in 0..N {
                    let t = Tally(drops.clone());
                    let ran = ran.clone();
                    sw.fork(move || {
                        let _t = &t;
                        ran.set(ran.get() + 1);
                        match i % 4 {
                            0 => Ok(()),
                            1 => fiber::yield_now(),
                            // Suspends until the switch fails and cancels it.
                            2 => Promise::<()>::new().0.wait().map(|_| ()),
                            _ if round == 2 && i == N - 1 => Err(weft::Error::msg(
                                ErrorKind::InvalidInput,
                                "the last one fails",
                            )),
                            _ => Ok(()),
                        }
                    });
                }
                // Fibers waiting on promises nobody resolves: cancel them.
                sw.fail(weft::Error::msg(ErrorKind::InvalidInput, "done"));
                Ok(())
            });
            assert!(r.is_err(), "round {round}: the switch was failed");
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(ran.get(), 3 * N, "every fiber ran");
    assert_eq!(drops.get(), 3 * N, "every body was dropped exactly once");
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn a_worker_whose_body_panicked_runs_the_next(#[case] backend: Backend) {
    let after = weft::run_with(backend, |_env| {
        for _ in 0..50 {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                Switch::run(|sw| {
                    sw.fork(|| panic!("a forked body panics"));
                    Ok(())
                })
            }));
            assert!(r.is_err(), "the panic reaches the switch's caller");
            // The next fork (on the same parked worker, most likely) runs
            // its body to the end, suspending on the way.
            let seen = Cell::new(0);
            Switch::run(|sw| {
                for _ in 0..3 {
                    sw.fork(|| {
                        fiber::yield_now()?;
                        seen.set(seen.get() + 1);
                        Ok(())
                    });
                }
                Ok(())
            })?;
            assert_eq!(seen.get(), 3);
        }
        Ok(fiber::stats()?.fibers)
    })
    .unwrap();
    assert_eq!(after, 1, "only the main fiber is left");
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn forks_of_other_stack_sizes_and_nested_forks_run(#[case] backend: Backend) {
    let total = weft::run_with(backend, |_env| {
        let total = Cell::new(0u64);
        Switch::run(|sw| {
            for i in 0..200u64 {
                let total = &total;
                let opts = ForkOptions::default().stack_size(64 * 1024);
                let body = move || {
                    // A fork inside a forked fiber, parked on a worker too.
                    Switch::run(|inner| {
                        inner.fork(move || {
                            fiber::yield_now()?;
                            total.set(total.get() + i);
                            Ok(())
                        });
                        Ok(())
                    })
                };
                if i % 2 == 0 {
                    sw.fork_with(opts, body);
                } else {
                    sw.fork(body);
                }
            }
            Ok(())
        })?;
        Ok(total.get())
    })
    .unwrap();
    assert_eq!(total, (0..200).sum::<u64>());
}
