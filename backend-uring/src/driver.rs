//! The io_uring [`Driver`]: one `io_uring_enter` per scheduler turn.
//!
//! Each [`Driver::park`] submits everything fibers queued since the last
//! turn and collects completions in the same system call:
//!
//! - `Park::Poll` waits for nothing (and makes no system call at all when
//!   nothing is queued and the kernel has flagged no completion work);
//! - `Park::Until(deadline)` waits for one completion with a timeout passed
//!   through `IORING_ENTER_EXT_ARG`, so timers need no SQE of their own;
//! - `Park::Forever` waits for one completion.
//!
//! Other threads wake a parked ring through an `eventfd`: the ring always
//! has a `POLL_ADD` on it in flight, re-armed each time it fires, and
//! [`Unpark`] writes the eventfd (a single `write(2)`: async-signal-safe).
//!
//! ```
//! # if weft_uring::probe().is_err() { return; }
//! use weft_core::backend::ExternalWork;
//! use weft_core::sync::Promise;
//!
//! weft_uring::run(&weft_core::RunConfig::default(), |_env| {
//!     let (p, r) = Promise::new();
//!     let _ext = ExternalWork::begin();
//!     // Nothing else to do: the ring waits in the kernel until the other
//!     // thread's resolve writes the eventfd.
//!     let t = std::thread::spawn(move || r.resolve(42).unwrap());
//!     assert_eq!(*p.wait()?, 42);
//!     t.join().unwrap();
//!     Ok(())
//! })
//! .unwrap();
//! ```

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use weft_core::backend::{Driver, Park, Parked, Unpark};
use weft_core::{Error, Result};

use crate::ring::Ring;

pub(crate) struct UringDriver {
    ring: Rc<Ring>,
    origin: Instant,
    wake: Arc<EventFdUnpark>,
}

/// Wakes a parked ring by writing its eventfd.
struct EventFdUnpark {
    fd: OwnedFd,
    /// Set from the first `unpark` until the driver consumes the wake-up,
    /// so a burst of wake-ups costs one `write(2)`.
    pending: AtomicBool,
}

impl Unpark for EventFdUnpark {
    fn unpark(&self) {
        if self.pending.swap(true, Ordering::AcqRel) {
            return;
        }
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live local to an eventfd we own
        // (it is closed only when the last Arc to us is dropped). write(2)
        // and atomics are async-signal-safe.
        unsafe {
            libc::write(
                self.fd.as_raw_fd(),
                (&one as *const u64).cast(),
                std::mem::size_of::<u64>(),
            )
        };
    }
}

impl EventFdUnpark {
    /// Consumes a wake-up: drains the eventfd counter, then clears the
    /// flag. An unpark landing between the two finds the flag still set and
    /// skips its write, which loses nothing: its wake-up is already in the
    /// scheduler's remote queue, drained right after this. (Clearing first
    /// lost wake-ups: an unpark could set the flag and write between the
    /// two, the read swallowed that write, the flag stayed set, and every
    /// later unpark skipped its write — a sleeping scheduler never woke.)
    fn consume(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a live local from our nonblocking
        // eventfd; EAGAIN (nothing to read) is fine.
        unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                (&mut v as *mut u64).cast(),
                std::mem::size_of::<u64>(),
            )
        };
        self.pending.store(false, Ordering::Release);
    }
}

impl UringDriver {
    pub(crate) fn new(ring: Rc<Ring>) -> Result<UringDriver> {
        // SAFETY: eventfd(2) with constant flags; the result is checked.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if raw < 0 {
            return Err(Error::from(std::io::Error::last_os_error())
                .context("creating the io_uring wake-up eventfd"));
        }
        // SAFETY: `raw` is a fresh fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let wake = Arc::new(EventFdUnpark {
            fd,
            pending: AtomicBool::new(false),
        });
        ring.arm_wake(wake.fd.as_raw_fd());
        Ok(UringDriver {
            ring,
            origin: Instant::now(),
            wake,
        })
    }
}

impl Driver for UringDriver {
    fn name(&self) -> &'static str {
        "uring"
    }

    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn wall_clock(&self) -> SystemTime {
        SystemTime::now()
    }

    fn park(&mut self, park: Park, _external: bool) -> Parked {
        let wait = match park {
            Park::Poll => Some(Duration::ZERO),
            Park::Until(deadline) => {
                Some(Duration::from_nanos(deadline.saturating_sub(self.now())))
            }
            // Like POSIX, a real backend cannot tell a deadlock from a long
            // wait: another thread or the outside world may still wake it.
            Park::Forever => None,
        };
        if let Err(e) = self.ring.enter(wait) {
            // Only a broken ring (EBADF, EFAULT…) gets here; no retry
            // would mend it.
            eprintln!("weft: io_uring_enter failed: {e}");
            return Parked::Stuck;
        }
        if self.ring.take_wake() {
            self.wake.consume();
            self.ring.arm_wake(self.wake.fd.as_raw_fd());
        }
        Parked::Ok
    }

    fn unparker(&self) -> Arc<dyn Unpark> {
        self.wake.clone()
    }
}

impl std::fmt::Debug for UringDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringDriver")
            .field("setup", &self.ring.setup())
            .finish()
    }
}
