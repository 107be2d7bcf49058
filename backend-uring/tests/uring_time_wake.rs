//! Timers on the real clock, blocking waits that do not spin, wake-ups
//! from other threads, and IO that yielding fibers cannot starve.

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::time::{Duration, Instant};

use weft_core::backend::ExternalWork;
use weft_core::sync::Promise;
use weft_core::{fiber, RunConfig, Switch};
use weft_uring::ops;

fn run<T>(main: impl FnOnce(&weft_core::Env) -> weft_core::Result<T>) -> T {
    weft_uring::run(&RunConfig::default(), main).unwrap()
}

/// CPU time (user + system) this thread has used.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec for clock_gettime to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[test]
fn timers_fire_in_deadline_order_on_the_real_clock() {
    run(|env| {
        let clock = env.mono_clock();
        let order = RefCell::new(Vec::new());
        let t0 = Instant::now();
        Switch::run(|sw| {
            for ms in [30u64, 10, 20] {
                let order = &order;
                sw.fork(move || {
                    clock.sleep(Duration::from_millis(ms))?;
                    order.borrow_mut().push(ms);
                    Ok(())
                });
            }
            Ok(())
        })?;
        let took = t0.elapsed();
        assert_eq!(*order.borrow(), [10, 20, 30]);
        assert!(took >= Duration::from_millis(30), "{took:?}");
        assert!(took < Duration::from_secs(2), "{took:?}");
        Ok(())
    });
}

#[test]
fn a_sleeping_scheduler_blocks_in_the_kernel_instead_of_spinning() {
    run(|env| {
        let cpu0 = thread_cpu();
        env.mono_clock().sleep(Duration::from_millis(100))?;
        let used = thread_cpu() - cpu0;
        assert!(used < Duration::from_millis(50), "used {used:?} of CPU");
        Ok(())
    });
}

#[test]
fn promises_resolved_by_another_thread_wake_the_parked_ring() {
    run(|_env| {
        for _ in 0..50 {
            let (p, r) = Promise::<u32>::new();
            let _ext = ExternalWork::begin();
            let t = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_micros(200));
                r.resolve(7).unwrap();
            });
            // No timer, no IO: the ring waits without a timeout and only
            // the eventfd can wake it.
            assert_eq!(*p.wait()?, 7);
            t.join().unwrap();
        }
        Ok(())
    });
}

#[test]
fn a_ping_pong_with_a_thread_crosses_many_times() {
    run(|_env| {
        let n = 1000;
        let (to_thread, from_fiber) =
            std::sync::mpsc::channel::<Arc<weft_core::sync::Resolver<u32>>>();
        let _ext = ExternalWork::begin();
        let t = std::thread::spawn(move || {
            for r in from_fiber {
                let _ = r.resolve(1);
            }
        });
        let mut total = 0;
        for _ in 0..n {
            let (p, r) = Promise::<u32>::new();
            to_thread.send(Arc::new(r)).unwrap();
            total += *p.wait()?;
        }
        drop(to_thread);
        t.join().unwrap();
        assert_eq!(total, n);
        Ok(())
    });
}

#[test]
fn yielding_fibers_do_not_starve_io() {
    run(|_env| {
        let (r, w) = ops::pipe()?;
        let raw_w = w.raw().unwrap();
        let got = Cell::new(false);
        let spins = Cell::new(0u64);
        let _ext = ExternalWork::begin();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(10));
            // SAFETY: one byte from a live buffer to a pipe kept open by
            // `w`, which outlives this thread (joined below).
            unsafe { libc::write(raw_w, b"!".as_ptr().cast(), 1) };
        });
        fiber::both(
            || {
                let mut b = [0u8; 1];
                r.read(&mut b)?;
                got.set(true);
                Ok(())
            },
            || {
                let t0 = Instant::now();
                // Busy, but yielding: the run queue is never empty, so the
                // ring is only ever polled, never waited on.
                while !got.get() {
                    assert!(t0.elapsed() < Duration::from_secs(10), "IO starved");
                    spins.set(spins.get() + 1);
                    fiber::yield_now()?;
                }
                Ok(())
            },
        )?;
        writer.join().unwrap();
        assert!(spins.get() > 0);
        drop(w);
        Ok(())
    });
}

#[test]
fn domains_each_get_their_own_ring() {
    run(|env| {
        let dm = env.domain_mgr();
        let (a, b) = fiber::pair(
            || {
                dm.run(|| {
                    let (r, w) = ops::pipe()?;
                    w.write(b"in a domain")?;
                    let mut buf = [0u8; 32];
                    let n = r.read(&mut buf)?;
                    Ok((
                        String::from_utf8_lossy(&buf[..n]).into_owned(),
                        weft_uring::stats()?.ops,
                    ))
                })
            },
            || Ok(weft_uring::stats()?.ops),
        )?;
        assert_eq!(a.0, "in a domain");
        assert_eq!(a.1, 2, "the domain's ring saw only its own two operations");
        assert_eq!(b, 0, "nothing ran on this ring yet");
        Ok(())
    });
}

/// Wake-ups from other threads race the scheduler consuming the previous
/// one, many thousand times: none may be lost (a lost one leaves the
/// scheduler asleep for good; the watchdog turns that into a failure).
#[test]
fn racing_remote_wake_ups_are_never_lost() {
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        run(|_env| {
            let _ext = ExternalWork::begin();
            for round in 0..20_000u32 {
                // Two waiters, resolved from two threads at nearly the same
                // time, so one unpark often lands while the scheduler is
                // consuming the other's.
                let (p1, r1) = Promise::<u32>::new();
                let (p2, r2) = Promise::<u32>::new();
                let t1 = std::thread::spawn(move || r1.resolve(round).is_ok());
                let t2 = std::thread::spawn(move || r2.resolve(round).is_ok());
                let (a, b) = fiber::pair(|| p1.wait().copied(), || p2.wait().copied())?;
                assert_eq!((a, b), (round, round));
                assert!(t1.join().unwrap() && t2.join().unwrap());
            }
            Ok(())
        });
        let _ = done_tx.send(());
    });
    done_rx
        .recv_timeout(Duration::from_secs(120))
        .expect("a wake-up was lost: the scheduler never woke");
}
