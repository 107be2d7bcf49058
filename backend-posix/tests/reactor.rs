//! The POSIX reactor: readiness waits on real file descriptors, timers on the
//! real clock, and wake-ups from other threads.

use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use weft_core::sync::Promise;
use weft_core::{fiber, time, RunConfig};
use weft_posix::{Interest, Registration};

fn pipe() -> (RawFd, RawFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid two-element array for pipe2 to fill.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
    assert_eq!(rc, 0);
    (fds[0], fds[1])
}

fn close(fd: RawFd) {
    // SAFETY: the test owns `fd` and closes it once.
    unsafe { libc::close(fd) };
}

fn read_some(reg: &Registration) -> weft_core::Result<Vec<u8>> {
    let mut buf = [0u8; 64];
    loop {
        // SAFETY: `buf` is valid for 64 bytes of writes.
        let n = unsafe { libc::read(reg.fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(buf[..n as usize].to_vec());
        }
        let e = std::io::Error::last_os_error();
        assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "{e}");
        reg.wait(Interest::Readable)?;
    }
}

#[test]
fn a_reader_waits_for_a_writer() {
    let (r, w) = pipe();
    weft_posix::run(&RunConfig::default(), |env| {
        // SAFETY: `r` stays open until after the run.
        let reg = unsafe { Registration::new(r) }?;
        let clock = env.mono_clock();
        let (got, ()) = fiber::pair(
            || read_some(&reg),
            || {
                clock.sleep(Duration::from_millis(20))?;
                // SAFETY: writing 5 bytes from a valid buffer.
                let n = unsafe { libc::write(w, b"hello".as_ptr().cast(), 5) };
                assert_eq!(n, 5);
                Ok(())
            },
        )?;
        assert_eq!(got, b"hello");
        Ok(())
    })
    .unwrap();
    close(r);
    close(w);
}

#[test]
fn a_cancelled_wait_leaves_the_registration_usable() {
    let (r, w) = pipe();
    weft_posix::run(&RunConfig::default(), |env| {
        // SAFETY: `r` stays open until after the run.
        let reg = unsafe { Registration::new(r) }?;
        let clock = env.mono_clock();
        let start = Instant::now();
        let err =
            time::with_timeout(clock, Duration::from_millis(30), || read_some(&reg)).unwrap_err();
        assert!(err.is_timeout(), "{err}");
        assert!(start.elapsed() >= Duration::from_millis(30));
        // SAFETY: writing 2 bytes from a valid buffer.
        unsafe { libc::write(w, b"ok".as_ptr().cast(), 2) };
        assert_eq!(read_some(&reg)?, b"ok");
        Ok(())
    })
    .unwrap();
    close(r);
    close(w);
}

/// Registrations are edge-triggered: data that arrives while nobody waits
/// produces its one edge then. A later wait must not sleep through it (no
/// new edge would come): it returns at once, the caller retries, and only
/// an `EAGAIN` after that makes it wait for real.
#[test]
fn an_edge_while_nobody_waits_is_not_lost() {
    let (r, w) = pipe();
    weft_posix::run(&RunConfig::default(), |env| {
        // SAFETY: `r` stays open until after the run.
        let reg = unsafe { Registration::new(r) }?;
        let clock = env.mono_clock();
        // SAFETY: writing 3 bytes from a valid buffer.
        assert_eq!(unsafe { libc::write(w, b"abc".as_ptr().cast(), 3) }, 3);
        // The scheduler polls (and takes the edge) while nobody waits.
        clock.sleep(Duration::from_millis(20))?;
        time::with_timeout(clock, Duration::from_secs(2), || {
            reg.wait(Interest::Readable)
        })?;
        assert_eq!(read_some(&reg)?, b"abc");
        // The edge was used up: with nothing to read, a wait waits.
        let err = time::with_timeout(clock, Duration::from_millis(30), || {
            reg.wait(Interest::Readable)
        })
        .unwrap_err();
        assert!(err.is_timeout(), "{err}");
        Ok(())
    })
    .unwrap();
    close(r);
    close(w);
}

/// A waiter cancelled in the same turn as its data arrives: the edge goes
/// to nobody, and the next reader still gets the bytes.
#[test]
fn an_edge_for_a_cancelled_waiter_reaches_the_next_reader() {
    let (r, w) = pipe();
    weft_posix::run(&RunConfig::default(), |_env| {
        // SAFETY: `r` stays open until after the run.
        let reg = unsafe { Registration::new(r) }?;
        let first = fiber::first(
            || read_some(&reg).map(Some),
            || {
                // SAFETY: writing 2 bytes from a valid buffer.
                assert_eq!(unsafe { libc::write(w, b"hi".as_ptr().cast(), 2) }, 2);
                Ok(None)
            },
        )?;
        assert_eq!(
            first, None,
            "the writer finishes first and cancels the reader"
        );
        for _ in 0..3 {
            fiber::yield_now()?;
        }
        assert_eq!(read_some(&reg)?, b"hi");
        Ok(())
    })
    .unwrap();
    close(r);
    close(w);
}

#[test]
fn a_promise_resolved_by_a_plain_thread_wakes_the_fiber() {
    weft_posix::run(&RunConfig::default(), |_env| {
        for i in 0..200u32 {
            let (p, r) = Promise::new();
            let t = std::thread::spawn(move || {
                r.resolve(i).unwrap();
            });
            assert_eq!(*p.wait()?, i);
            t.join().unwrap();
        }
        Ok(())
    })
    .unwrap();
}

#[test]
fn sleeps_fire_in_deadline_order_on_the_real_clock() {
    weft_posix::run(&RunConfig::default(), |env| {
        let clock = env.mono_clock();
        let order = std::cell::RefCell::new(Vec::new());
        let start = clock.now()?;
        fiber::all([30u64, 10, 20].map(|ms| {
            let order = &order;
            move || {
                clock.sleep(Duration::from_millis(ms))?;
                order.borrow_mut().push(ms);
                Ok(())
            }
        }))?;
        assert_eq!(*order.borrow(), [10, 20, 30]);
        assert!(clock.now()?.duration_since(start) >= Duration::from_millis(30));
        Ok(())
    })
    .unwrap();
}
