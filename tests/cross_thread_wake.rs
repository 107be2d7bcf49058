//! Waking fibers from other OS threads: promises resolved and streams fed by
//! plain `std::thread`s or by fibers of other schedulers, with and without
//! `ExternalWork`, including stress tests that check nothing is lost or
//! duplicated.

use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use rstest::rstest;
use weft::backend::ExternalWork;
use weft::sync::{Promise, Resolver, Stream};
use weft::{cancel, fiber, mock, traceln, Backend, ErrorKind, Result, Switch};

#[test]
fn a_plain_thread_resolves_a_promise_under_external_work() {
    let (r, trace) = mock::run_traced(|_env| {
        let (p, resolver) = Promise::new();
        let _ext = ExternalWork::begin();
        let t = thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            resolver.resolve(42u32).unwrap();
        });
        traceln!("waiting");
        let v = *p.wait()?;
        traceln!("got {v}");
        t.join().unwrap();
        Ok(v)
    });
    assert_eq!(r.unwrap(), 42);
    // Real time passed, but virtual time did not move.
    assert_eq!(trace, ["waiting", "got 42"]);
}

#[test]
fn a_plain_thread_resolves_a_promise_with_external_wait() {
    let r = mock::Config::new()
        .external_wait(Duration::from_secs(30))
        .run(|_env| {
            let (p, resolver) = Promise::new();
            let t = thread::spawn(move || {
                thread::sleep(Duration::from_millis(20));
                resolver.resolve("from a thread").unwrap();
            });
            let v = *p.wait()?;
            t.join().unwrap();
            Ok(v)
        });
    assert_eq!(r.unwrap(), "from a thread");
}

#[test]
fn external_wait_gives_up_with_a_deadlock() {
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let mut holder = None;
    let r = mock::Config::new()
        .external_wait(Duration::from_millis(50))
        .run(|_env| {
            let (p, resolver) = Promise::<()>::new();
            // The thread holds the resolver until the run is over.
            holder = Some(thread::spawn(move || {
                go_rx.recv().unwrap();
                drop(resolver);
            }));
            p.wait().map(|_| ())
        });
    assert_eq!(r.unwrap_err().kind(), &ErrorKind::Deadlock);
    go_tx.send(()).unwrap();
    holder.unwrap().join().unwrap();
}

#[test]
fn without_a_declaration_an_idle_run_is_a_deadlock() {
    // Nothing told the scheduler a thread might wake it: it does not wait.
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let mut holder = None;
    let r = mock::run(|_env| {
        let (p, resolver) = Promise::<()>::new();
        holder = Some(thread::spawn(move || {
            go_rx.recv().unwrap();
            // Resolving after the run ended reaches nobody, harmlessly.
            let _ = resolver.resolve(());
        }));
        p.wait().map(|_| ())
    });
    assert_eq!(r.unwrap_err().kind(), &ErrorKind::Deadlock);
    go_tx.send(()).unwrap();
    holder.unwrap().join().unwrap();
}

#[test]
fn external_work_ending_lets_the_deadlock_be_seen() {
    // The guard is dropped by the thread's owner while the fiber still
    // waits: the scheduler re-checks and reports the deadlock.
    let r = mock::run(|_env| {
        let (p, _resolver) = Promise::<()>::new();
        let ext = ExternalWork::begin();
        Switch::run(|sw| {
            sw.fork(|| {
                fiber::yield_now()?;
                drop(ext);
                Ok(())
            });
            p.wait().map(|_| ())
        })
    });
    assert_eq!(r.unwrap_err().kind(), &ErrorKind::Deadlock);
}

const PRODUCERS: u32 = 4;
const ITEMS: u32 = 10_000;

/// Drains `stream` with `consumers` fibers until every producer's `None`
/// sentinel has been seen, checking that every item arrives exactly once
/// and that each consumer sees each producer's items in order.
fn drain(stream: &Stream<Option<(u32, u32)>>, consumers: usize) -> Result<usize> {
    let seen = RefCell::new(HashSet::new());
    Switch::run(|sw| {
        for _ in 0..consumers {
            let seen = &seen;
            sw.fork(move || {
                let mut last = vec![None::<u32>; PRODUCERS as usize];
                // Each consumer stops at the first sentinel it takes; there
                // are as many sentinels as consumers.
                while let Some((p, i)) = stream.take()? {
                    assert!(seen.borrow_mut().insert((p, i)), "duplicate ({p}, {i})");
                    let l = &mut last[p as usize];
                    assert!(l.is_none_or(|l| l < i), "out of order: {l:?} then {i}");
                    *l = Some(i);
                }
                Ok(())
            });
        }
        Ok(())
    })?;
    let seen = seen.into_inner();
    for p in 0..PRODUCERS {
        for i in 0..ITEMS {
            assert!(seen.contains(&(p, i)), "lost ({p}, {i})");
        }
    }
    Ok(seen.len())
}

#[test]
fn stress_stream_fed_by_plain_threads() {
    // Plain threads cannot suspend, so the stream has room for everything;
    // the consuming fibers still wait on it, and are woken from the threads.
    let n = mock::run(|_env| {
        let stream = Stream::new((PRODUCERS * (ITEMS + 1)) as usize);
        let _ext = ExternalWork::begin();
        let threads: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let s = stream.clone();
                thread::spawn(move || {
                    for i in 0..ITEMS {
                        s.add(Some((p, i))).unwrap();
                        if i % 1000 == 0 {
                            thread::yield_now();
                        }
                    }
                    s.add(None).unwrap();
                })
            })
            .collect();
        let n = drain(&stream, PRODUCERS as usize)?;
        for t in threads {
            t.join().unwrap();
        }
        assert!(stream.is_empty());
        Ok(n)
    });
    assert_eq!(n.unwrap(), (PRODUCERS * ITEMS) as usize);
}

#[test]
fn stress_bounded_stream_between_schedulers() {
    // Each producer thread runs its own scheduler, so its fibers block when
    // the small stream is full and are woken by the consumers on this one
    // (and the other way round).
    let n = mock::run(|_env| {
        let stream = Stream::new(16);
        let _ext = ExternalWork::begin();
        let threads: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let s = stream.clone();
                thread::spawn(move || {
                    mock::run(|_env| {
                        let _ext = ExternalWork::begin();
                        for i in 0..ITEMS {
                            s.add(Some((p, i)))?;
                        }
                        s.add(None)
                    })
                })
            })
            .collect();
        let n = drain(&stream, PRODUCERS as usize)?;
        for t in threads {
            t.join().unwrap()?;
        }
        Ok(n)
    });
    assert_eq!(n.unwrap(), (PRODUCERS * ITEMS) as usize);
}

#[test]
fn stress_promise_ping_pong_with_a_plain_thread() {
    const ROUNDS: u64 = 10_000;
    let r = mock::run(|_env| {
        let (tx, rx) = mpsc::channel::<(u64, Resolver<u64>)>();
        let _ext = ExternalWork::begin();
        let t = thread::spawn(move || {
            for (i, reply) in rx {
                reply.resolve(i * 2 + 1).unwrap();
            }
        });
        let mut sum = 0;
        for i in 0..ROUNDS {
            let (p, r) = Promise::new();
            tx.send((i, r)).unwrap();
            let v = *p.wait()?;
            assert_eq!(v, i * 2 + 1);
            sum += v;
        }
        drop(tx);
        t.join().unwrap();
        Ok(sum)
    });
    assert_eq!(r.unwrap(), (0..ROUNDS).map(|i| i * 2 + 1).sum::<u64>());
}

#[test]
fn stress_promise_ping_pong_between_schedulers() {
    const ROUNDS: usize = 10_000;
    let (pings, ping_rs): (Vec<_>, Vec<_>) = (0..ROUNDS).map(|_| Promise::<usize>::new()).unzip();
    let (pongs, pong_rs): (Vec<_>, Vec<_>) = (0..ROUNDS).map(|_| Promise::<usize>::new()).unzip();
    let other = thread::spawn(move || {
        mock::run(|_env| {
            let _ext = ExternalWork::begin();
            for (ping, pong) in pings.iter().zip(pong_rs) {
                let v = *ping.wait()?;
                pong.resolve(v + 1).unwrap();
            }
            Ok(())
        })
    });
    let r = mock::run(|_env| {
        let _ext = ExternalWork::begin();
        for (i, (ping, pong)) in ping_rs.into_iter().zip(&pongs).enumerate() {
            ping.resolve(i * 10).unwrap();
            assert_eq!(*pong.wait()?, i * 10 + 1);
        }
        Ok(())
    });
    r.unwrap();
    other.join().unwrap().unwrap();
}

#[test]
fn stress_cross_thread_add_racing_a_cancelled_take() {
    // A thread adds one item while a fiber's `take` races a cancellation.
    // Whatever wins, the item is delivered exactly once: to the taker, or
    // left in the stream.
    const ROUNDS: u32 = 2_000;
    let (delivered, left) = mock::run(|_env| {
        let stream = Stream::<u32>::new(1);
        let (tx, rx) = mpsc::channel::<(u32, Resolver<()>)>();
        let _ext = ExternalWork::begin();
        let s = stream.clone();
        let t = thread::spawn(move || {
            for (round, added) in rx {
                for _ in 0..(round % 64) * 50 {
                    std::hint::spin_loop();
                }
                s.add(round).unwrap();
                added.resolve(()).unwrap();
            }
        });
        let (mut delivered, mut left) = (0, 0);
        for round in 0..ROUNDS {
            let (added, added_r) = Promise::new();
            tx.send((round, added_r)).unwrap();
            // Keep a value even if both branches finish.
            let got = fiber::first_with(
                || stream.take().map(Some),
                || {
                    for _ in 0..(round % 5) {
                        fiber::yield_now()?;
                    }
                    Ok(None)
                },
                |a, b| a.or(b),
            )?;
            added.wait()?;
            match got {
                Some(v) => {
                    assert_eq!(v, round);
                    assert_eq!(stream.take_nonblocking(), None, "round {round}: duplicated");
                    delivered += 1;
                }
                None => {
                    assert_eq!(
                        stream.take_nonblocking(),
                        Some(round),
                        "round {round}: lost"
                    );
                    left += 1;
                }
            }
        }
        drop(tx);
        t.join().unwrap();
        Ok((delivered, left))
    })
    .unwrap();
    assert_eq!(delivered + left, ROUNDS);
}

#[test]
fn stress_cross_thread_resolve_racing_cancellation() {
    // The resolver thread and the cancellation race on the waiter's wake
    // slot; exactly one of them wins, and the waiter never hangs.
    const ROUNDS: u32 = 2_000;
    let outcomes = mock::run(|_env| {
        let (tx, rx) = mpsc::channel::<(u32, Resolver<u32>)>();
        let _ext = ExternalWork::begin();
        let t = resolve_after_a_spin(rx);
        let (mut values, mut cancels) = (0u32, 0u32);
        for round in 0..ROUNDS {
            let (p, r) = Promise::new();
            tx.send((round, r)).unwrap();
            let got = wait_racing_cancel(&p, round);
            tally(got, round, &mut values, &mut cancels);
            // Either way the promise ends up resolved by the thread.
            assert_eq!(*p.wait()?, round);
        }
        drop(tx);
        t.join().unwrap();
        Ok((values, cancels))
    })
    .unwrap();
    assert_eq!(outcomes.0 + outcomes.1, ROUNDS);
}

#[test]
fn plain_threads_block_on_weft_primitives() {
    use weft::sync::{Promise, Stream};
    // A plain thread (no runtime) waits on a promise a fiber resolves, and
    // adds to a full stream until a fiber takes: it blocks, losing nothing.
    let (p, r) = Promise::<u32>::new();
    let s: Stream<u32> = Stream::new(1);
    let (p2, s2) = (p.clone(), s.clone());
    let t = std::thread::spawn(move || {
        let v = *p2.wait().unwrap();
        for i in 0..100 {
            s2.add(v + i).unwrap();
        }
    });
    weft::mock::Config::new()
        .external_wait(std::time::Duration::from_secs(20))
        .run(|_env| {
            r.resolve(1000).unwrap();
            for i in 0..100 {
                assert_eq!(s.take()?, 1000 + i);
            }
            Ok(())
        })
        .unwrap();
    t.join().unwrap();
}

/// A plain thread feeds a fiber with `try_add`, retrying while the stream
/// is full: it never blocks, and every item arrives once, in order. On the
/// real backends the scheduler sleeps in epoll or io_uring while the fiber
/// waits in `take`, so each hand-over must wake it from another thread.
#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn a_plain_thread_feeds_a_fiber_with_try_add(#[case] backend: Backend) {
    const ITEMS: u32 = 2_000;
    for capacity in [0, 1, 8] {
        let got = weft::run_with(backend, |_env| {
            let stream = Stream::<u32>::new(capacity);
            let _ext = ExternalWork::begin();
            let s = stream.clone();
            let t = thread::spawn(move || {
                for i in 0..ITEMS {
                    let mut item = i;
                    while let Err(back) = s.try_add(item) {
                        assert_eq!(back, i, "the refused item comes back unchanged");
                        item = back;
                        thread::yield_now();
                    }
                }
            });
            let got = (0..ITEMS)
                .map(|_| stream.take())
                .collect::<Result<Vec<_>>>()?;
            t.join().unwrap();
            assert_eq!(stream.take_nonblocking(), None, "nothing left over");
            Ok(got)
        })
        .unwrap();
        assert_eq!(
            got,
            (0..ITEMS).collect::<Vec<_>>(),
            "capacity {capacity}: each item once, in order"
        );
    }
}

/// How long the runs below wait for other threads before calling a lost
/// wake-up a deadlock.
const LOST: Duration = Duration::from_secs(5);

#[test]
fn fibers_and_plain_threads_wait_on_one_promise() {
    // A promise's waiters may mix fibers (woken on their own scheduler
    // without reference counting) and plain threads; whoever resolves, from
    // a fiber or from another thread, wakes every one of them.
    for resolve_from_a_thread in [false, true] {
        for thread_waits_first in [false, true] {
            // A lost wake-up becomes a deadlock error, not a hang.
            let got = mock::Config::new().external_wait(LOST).run(|_env| {
                let (p, r) = Promise::new();
                let (tx, rx) = mpsc::channel();
                let p2 = p.clone();
                let waiter = thread::spawn(move || tx.send(*p2.wait().unwrap()).unwrap());
                if thread_waits_first {
                    thread::sleep(Duration::from_millis(5));
                }
                let (a, b) = fiber::pair(
                    || p.wait().copied(),
                    || {
                        fiber::yield_now()?;
                        if resolve_from_a_thread {
                            thread::spawn(move || r.resolve(5u32).unwrap());
                        } else {
                            r.resolve(5u32).unwrap();
                        }
                        Ok(*p.wait()?)
                    },
                )?;
                waiter.join().unwrap();
                Ok((a, b, rx.recv().unwrap()))
            });
            assert_eq!(
                got.unwrap(),
                (5, 5, 5),
                "thread resolves: {resolve_from_a_thread}, thread first: {thread_waits_first}"
            );
        }
    }
}

#[test]
fn stress_thread_resolve_racing_cancellation_across_short_runs() {
    // As above, but every round is a run of its own, so the waiter's wake
    // slot goes away with its scheduler right after the race: a thread that
    // took the waiter out of the promise must hold its own reference.
    const ROUNDS: u32 = 300;
    let (tx, rx) = mpsc::channel::<(u32, Resolver<u32>)>();
    let t = resolve_after_a_spin(rx);
    let (mut values, mut cancels) = (0u32, 0u32);
    for round in 0..ROUNDS {
        let (p, r) = Promise::new();
        let got = mock::Config::new().external_wait(LOST).run(|_env| {
            tx.send((round, r)).unwrap();
            wait_racing_cancel(&p, round)
        });
        tally(got, round, &mut values, &mut cancels);
        // Outside any run now: waits on this plain thread.
        assert_eq!(*p.wait().unwrap(), round);
    }
    drop(tx);
    t.join().unwrap();
    assert_eq!(values + cancels, ROUNDS);
}

/// A thread that resolves each promise it is sent with its round number,
/// after a spin that varies with the round, so that the resolve lands at
/// different points of the waiter's cancellation.
fn resolve_after_a_spin(rx: mpsc::Receiver<(u32, Resolver<u32>)>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        for (round, r) in rx {
            for _ in 0..(round % 32) * 40 {
                std::hint::spin_loop();
            }
            r.resolve(round).unwrap();
        }
    })
}

/// Waits on `p` while a sibling cancels the wait after `round % 3` yields.
fn wait_racing_cancel(p: &Promise<u32>, round: u32) -> weft::Result<(u32, ())> {
    cancel::sub(|scope| {
        fiber::pair(
            || p.wait().copied(),
            || {
                for _ in 0..(round % 3) {
                    fiber::yield_now()?;
                }
                scope.cancel(weft::Error::new(ErrorKind::Timeout));
                Ok(())
            },
        )
    })
}

/// Counts a race's outcome: the value of `round`, or a cancellation.
fn tally(got: weft::Result<(u32, ())>, round: u32, values: &mut u32, cancels: &mut u32) {
    match got {
        Ok((v, ())) => {
            assert_eq!(v, round);
            *values += 1;
        }
        Err(e) => {
            assert!(e.is_cancelled(), "{e}");
            *cancels += 1;
        }
    }
}

/// Several plain threads wake sleeping fibers at once, round after round,
/// on each backend's real sleep: every wake-up must end the scheduler's
/// sleep (two threads writing the POSIX backend's eventfd around one wait
/// once lost every later wake-up). Bounded by a timeout on the real
/// backends, so a lost wake-up fails instead of hanging (the mock's clock
/// is virtual: it would jump to the deadline while the threads work).
#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn concurrent_wakers_never_leave_the_scheduler_asleep(#[case] backend: Backend) {
    const THREADS: usize = 4;
    const ROUNDS: u32 = 1000;
    let total = weft::run_with(backend, |env| {
        let _ext = ExternalWork::begin();
        let rounds = || {
            let mut total = 0u64;
            for round in 0..ROUNDS {
                let mut promises = Vec::new();
                let mut threads = Vec::new();
                for t in 0..THREADS {
                    let (p, r) = Promise::<u32>::new();
                    promises.push(p);
                    threads.push(thread::spawn(move || {
                        // Resolve once the scheduler is asleep, the threads
                        // a little apart, so that their wake-ups land around
                        // the moment its wait returns.
                        thread::sleep(Duration::from_micros(100));
                        for _ in 0..(round as usize * 7 + t * 13) % 300 {
                            std::hint::spin_loop();
                        }
                        r.resolve(round).unwrap();
                    }));
                }
                Switch::run(|sw| {
                    for p in &promises {
                        sw.fork(|| {
                            assert_eq!(*p.wait()?, round);
                            Ok(())
                        });
                    }
                    Ok(())
                })?;
                for t in threads {
                    t.join().unwrap();
                }
                total += u64::from(round) * THREADS as u64;
            }
            Ok(total)
        };
        match backend {
            Backend::Mock => rounds(),
            _ => weft::time::with_timeout(env.mono_clock(), Duration::from_secs(20), rounds),
        }
    })
    .unwrap();
    assert_eq!(total, (0..ROUNDS as u64).sum::<u64>() * THREADS as u64);
}
