//! Closing an fd while another fiber is blocked on it: the blocked
//! operation is cancelled and fails with `Closed`, and the fd number is
//! released only after that operation's CQE.

use std::time::Duration;

use weft_core::{ErrorKind, RunConfig, Switch};
use weft_uring::ops;

/// Tests here check whether fd numbers are open, which another test
/// running at the same time could reuse: run them one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn fd_is_open(raw: i32) -> bool {
    // SAFETY: F_GETFD only queries the fd table; an fd that is not open
    // gives EBADF.
    unsafe { libc::fcntl(raw, libc::F_GETFD) >= 0 }
}

#[test]
fn dropping_an_fd_while_another_fiber_reads_it() {
    let _s = serial();
    weft_uring::run(&RunConfig::default(), |env| {
        let (r, _w) = ops::pipe()?;
        let raw = r.raw().unwrap();
        let reader = r.handle();
        let mut owner = Some(r);
        Switch::run(|sw| {
            sw.fork(|| {
                let mut buf = [0u8; 8];
                // Nobody writes and the write end stays open: only the
                // close can end this read.
                let err = reader.read(&mut buf).unwrap_err();
                assert_eq!(err.kind(), &ErrorKind::Closed, "{err}");
                assert!(reader.is_closed());
                // The CQE has arrived: now the fd is really closed.
                assert!(!fd_is_open(raw), "closed after the read's completion");
                // Later operations fail at once.
                let again = reader.read(&mut buf).unwrap_err();
                assert_eq!(again.kind(), &ErrorKind::Closed);
                Ok(())
            });
            sw.fork(|| {
                // Let the read reach the kernel.
                env.mono_clock().sleep(Duration::from_millis(5))?;
                drop(owner.take());
                // The read is still in flight: the fd number stays taken.
                assert!(fd_is_open(raw), "not closed under an in-flight read");
                Ok(())
            });
            Ok(())
        })
    })
    .unwrap();
}

#[test]
fn closing_explicitly_while_reads_are_blocked_cancels_them_all() {
    let _s = serial();
    weft_uring::run(&RunConfig::default(), |env| {
        let (r, w) = ops::pipe()?;
        let handles: Vec<_> = (0..5).map(|_| r.handle()).collect();
        let mut owner = Some(r);
        let failures = std::cell::Cell::new(0);
        Switch::run(|sw| {
            for h in &handles {
                let failures = &failures;
                sw.fork(move || {
                    let mut buf = [0u8; 4];
                    let e = h.read(&mut buf).unwrap_err();
                    assert_eq!(e.kind(), &ErrorKind::Closed, "{e}");
                    failures.set(failures.get() + 1);
                    Ok(())
                });
            }
            sw.fork(|| {
                env.mono_clock().sleep(Duration::from_millis(5))?;
                owner.take().unwrap().close()?;
                Ok(())
            });
            Ok(())
        })?;
        assert_eq!(failures.get(), 5);
        // The write end sees the pipe's read side gone.
        let e = w.write(b"x").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPIPE), "{e}");
        Ok(())
    })
    .unwrap();
}

#[test]
fn an_fd_with_nothing_in_flight_closes_at_once() {
    let _s = serial();
    weft_uring::run(&RunConfig::default(), |_env| {
        let (r, w) = ops::pipe()?;
        let (rr, wr) = (r.raw().unwrap(), w.raw().unwrap());
        let h = w.handle();
        drop(r);
        assert!(!fd_is_open(rr));
        w.close()?;
        assert!(!fd_is_open(wr));
        assert_eq!(h.write(b"x").unwrap_err().kind(), &ErrorKind::Closed);
        Ok(())
    })
    .unwrap();
}
