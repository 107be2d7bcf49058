//! The low-level layer: file descriptors and fiber-suspending io_uring
//! operations on them.
//!
//! Every operation here is one SQE: the calling fiber queues it, suspends,
//! and is resumed by its CQE — never earlier. That one rule is what makes
//! it sound to hand the kernel pointers into the fiber's own stack: the
//! buffer a `read` fills is borrowed for the whole call, and the call does
//! not return while the kernel may still write to it.
//!
//! **Cancellation** follows from the same rule. When the fiber's context is
//! cancelled, its cancel hook submits `IORING_OP_ASYNC_CANCEL` for the
//! operation and leaves the fiber suspended. The original CQE then resumes
//! it: with `-ECANCELED`, reported as `Err(Cancelled)`; or with the result
//! that won the race. A result that *took* something — bytes read, a
//! datagram, an accepted socket — is kept on the fd for the next call of
//! the same kind while the cancelled call reports `Err(Cancelled)`, so a
//! cancelled read consumes nothing (see `io`); a result that *gave*
//! something — bytes written — is returned, and the cancellation is
//! reported by the fiber's next suspension point.
//!
//! **Descriptors** are reference-counted while in use. [`Fd`] owns one and
//! [`FdRef`]s are handles to it that do not keep it open. Dropping (or
//! [`closing`](Fd::close)) the `Fd` while operations on it are in flight
//! cancels them and defers the `close(2)` until the last of their CQEs has
//! arrived; those operations fail with `Closed`, and any later operation
//! through an `FdRef` fails with `Closed` without reaching the kernel. The
//! fd number is therefore never reused while the kernel may still act on
//! it.
//!
//! ```
//! # if weft_uring::probe().is_err() { return; }
//! use std::time::Duration;
//! use weft_uring::ops;
//!
//! weft_uring::run(&weft_core::RunConfig::default(), |env| {
//!     let (r, w) = ops::pipe()?;
//!     // Nobody writes: the read is cancelled by the timeout and returns
//!     // only once the kernel has let go of `buf`.
//!     let mut buf = [0u8; 16];
//!     let err = weft_core::time::with_timeout(env.mono_clock(), Duration::from_millis(5), || {
//!         r.read(&mut buf)
//!     })
//!     .unwrap_err();
//!     assert!(err.is_timeout());
//!     w.write(b"hello")?;
//!     let n = r.read(&mut buf)?;
//!     assert_eq!(&buf[..n], b"hello");
//!     Ok(())
//! })
//! .unwrap();
//! ```

use std::cell::{Cell, RefCell};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::rc::Rc;

use io_uring::{opcode, squeue, types};
use weft_core::backend::suspend_with_cancel;
use weft_core::{Error, ErrorKind, Result};

use crate::ring;

mod file;
mod io;
pub(crate) mod path;
mod splice;

/// What one operation's CQE said, and whether the fiber was cancelled
/// while it waited for it.
pub(crate) struct Done {
    /// The CQE's result (`-errno` on failure).
    pub(crate) res: i32,
    /// The cancellation that asked the kernel to cancel this operation,
    /// if any: the result may still be a success that won the race.
    pub(crate) cancelled: Option<Error>,
}

/// Queues `sqe` on this thread's ring and suspends until its CQE. On a
/// thread without a scheduler (a plain thread using a `Dir` it was handed),
/// the operation goes to a private ring of that thread and blocks it until
/// the CQE.
///
/// Fails without submitting anything if the fiber is already cancelled;
/// once submitted, only the CQE ends the wait. The fiber is never resumed
/// before that CQE: the only resumer of this wait is the one stored with
/// the SQE, which the cancel hook does not use.
///
/// # Safety
/// Every buffer, address and fd `sqe` names must stay valid (and buffers
/// the kernel writes, unaliased) until this returns. Borrows held by the
/// caller for the duration of the call satisfy this: the call does not
/// return before the CQE.
pub(crate) unsafe fn submit(what: &'static str, sqe: squeue::Entry, fd: RawFd) -> Result<Done> {
    let (ring, private) = ring::for_submit()?;
    let key = Cell::new(0u64);
    let reason: RefCell<Option<Error>> = RefCell::new(None);
    let res = suspend_with_cancel(
        what,
        |r| {
            // SAFETY: forwarded from our caller; the resumer stored with
            // the SQE is the only one that ends this wait.
            key.set(unsafe { ring.push(sqe, r, fd) });
            if private {
                // No scheduler here: complete it now (this resumes `r`).
                ring.complete_all();
            }
        },
        |r, why| {
            // Still pending means the CQE has not been dispatched, so the
            // key names our operation (keys are versioned, and the table
            // entry lives until dispatch). Do not resume: the CQE will.
            if r.is_pending() {
                *reason.borrow_mut() = Some(why.clone());
                ring.cancel(key.get());
            }
        },
    )?;
    Ok(Done {
        res,
        cancelled: reason.into_inner(),
    })
}

fn errno(res: i32) -> Error {
    Error::from(std::io::Error::from_raw_os_error(-res))
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Open,
    /// The owner is gone; closed when the last use ends.
    Closing,
    Closed,
}

struct FdInner {
    raw: RawFd,
    /// Operations in flight on `raw`.
    uses: Cell<u32>,
    state: Cell<State>,
    /// What cancelled reads took from the kernel anyway, for the next
    /// read (see [`io`]).
    stash: RefCell<Option<Box<io::Stash>>>,
}

impl FdInner {
    fn close_now(&self) {
        self.state.set(State::Closed);
        // SAFETY: `raw` is owned by this FdInner (see `Fd::from`), no
        // operation uses it (`uses` is 0) and the state change above makes
        // this the only close.
        unsafe { libc::close(self.raw) };
    }
}

/// Marks one operation in flight on an fd; the last one out closes an fd
/// whose owner has gone.
struct Use<'a>(&'a FdInner);

impl Drop for Use<'_> {
    fn drop(&mut self) {
        let f = self.0;
        f.uses.set(f.uses.get() - 1);
        if f.uses.get() == 0 && f.state.get() == State::Closing {
            f.close_now();
        }
    }
}

/// A handle to an [`Fd`] that does not keep it open. All operations are
/// here; once the owning `Fd` is closed they fail with `Closed`.
#[derive(Clone)]
pub struct FdRef {
    inner: Rc<FdInner>,
}

impl std::fmt::Debug for FdRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FdRef")
            .field("fd", &self.inner.raw)
            .field("state", &self.inner.state.get())
            .field("in_flight", &self.inner.uses.get())
            .finish()
    }
}

/// An owned file descriptor used through io_uring. Closed when dropped;
/// see the [module docs](self) for what happens to operations in flight.
pub struct Fd {
    handle: FdRef,
}

impl std::fmt::Debug for Fd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Fd").field(&self.handle.inner.raw).finish()
    }
}

impl From<OwnedFd> for Fd {
    fn from(fd: OwnedFd) -> Fd {
        Fd {
            handle: FdRef {
                inner: Rc::new(FdInner {
                    raw: fd.into_raw_fd(),
                    uses: Cell::new(0),
                    state: Cell::new(State::Open),
                    stash: RefCell::new(None),
                }),
            },
        }
    }
}

impl std::ops::Deref for Fd {
    type Target = FdRef;
    fn deref(&self) -> &FdRef {
        &self.handle
    }
}

impl AsFd for Fd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the owner is alive (borrowed), so the fd is not closed:
        // it is only closed by the owner's drop or `close`, or after the
        // owner is gone.
        unsafe { BorrowedFd::borrow_raw(self.handle.inner.raw) }
    }
}

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.handle.inner.raw
    }
}

impl Fd {
    /// A handle that does not keep the fd open.
    pub fn handle(&self) -> FdRef {
        self.handle.clone()
    }

    /// Closes the fd through the ring (`IORING_OP_CLOSE`), reporting
    /// errors. If operations are still in flight, they are cancelled and
    /// the close happens when the last one completes; this then returns
    /// at once.
    pub fn close(self) -> Result<()> {
        let inner = self.handle.inner.clone();
        let close_here = self.begin_close();
        // Drop now sees a state other than Open and does nothing more.
        drop(self);
        if !close_here {
            return Ok(());
        }
        let raw = inner.raw;
        let sqe = opcode::Close::new(types::Fd(raw)).build();
        // SAFETY: a close names only the fd; the state is Closed, so no
        // other path uses or closes it.
        match unsafe { submit("io_uring close", sqe, -1) } {
            Ok(d) if d.res < 0 => Err(errno(d.res).context("closing an fd")),
            Ok(_) => Ok(()),
            // Not submitted (the fiber is cancelled already, or there is
            // no ring on this thread): close it here instead.
            Err(_) => {
                // SAFETY: as above; the ring never saw this close.
                if unsafe { libc::close(raw) } != 0 {
                    return Err(
                        Error::from(std::io::Error::last_os_error()).context("closing an fd")
                    );
                }
                Ok(())
            }
        }
    }

    /// Starts closing: with nothing in flight, marks the fd Closed and
    /// returns `true` (the caller closes it); otherwise marks it Closing
    /// and cancels what is in flight.
    fn begin_close(&self) -> bool {
        let f = &self.handle.inner;
        if f.state.get() != State::Open {
            return false;
        }
        if f.uses.get() == 0 {
            f.state.set(State::Closed);
            return true;
        }
        f.state.set(State::Closing);
        if let Some(ring) = ring::try_current() {
            ring.cancel_fd(f.raw);
        }
        false
    }
}

impl Drop for Fd {
    fn drop(&mut self) {
        let f = &self.handle.inner;
        if f.state.get() == State::Open && f.uses.get() == 0 {
            // The common case: nothing in flight; close synchronously so
            // the fd is gone when the owner is.
            f.close_now();
        } else {
            self.begin_close();
        }
    }
}

/// A pipe (`O_CLOEXEC`): the read end, then the write end.
pub fn pipe() -> Result<(Fd, Fd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(Error::from(std::io::Error::last_os_error()).context("creating a pipe"));
    }
    // SAFETY: pipe2 succeeded: both fds are fresh and owned by nobody else.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((Fd::from(r), Fd::from(w)))
}

fn closed_error(what: &str) -> Error {
    Error::msg(
        ErrorKind::Closed,
        format!("{what}: the file descriptor was closed"),
    )
}

impl FdRef {
    /// The fd number, while open.
    pub fn raw(&self) -> Option<RawFd> {
        (self.inner.state.get() == State::Open).then_some(self.inner.raw)
    }

    /// True once the owning [`Fd`] has been dropped or closed.
    pub fn is_closed(&self) -> bool {
        self.inner.state.get() != State::Open
    }

    /// Runs one operation on this fd (`build` gets the raw fd); returns
    /// its non-negative result and the cancellation that arrived while it
    /// waited, if any (the operation may have succeeded anyway).
    ///
    /// # Safety
    /// As for [`submit`]: what the SQE names must outlive this call.
    unsafe fn op(
        &self,
        what: &'static str,
        build: impl FnOnce(types::Fd) -> squeue::Entry,
    ) -> Result<(u32, Option<Error>)> {
        let f = &*self.inner;
        if f.state.get() != State::Open {
            return Err(closed_error(what));
        }
        f.uses.set(f.uses.get() + 1);
        let _use = Use(f);
        let sqe = build(types::Fd(f.raw));
        // SAFETY: forwarded from our caller; `_use` keeps the fd open
        // until after the CQE.
        let Done { res, cancelled } = unsafe { submit(what, sqe, f.raw) }?;
        if res >= 0 {
            return Ok((res as u32, cancelled));
        }
        if res == -libc::ECANCELED {
            if let Some(why) = cancelled {
                return Err(Error::cancelled(why));
            }
            if f.state.get() != State::Open {
                return Err(closed_error(what));
            }
        }
        Err(errno(res))
    }
}
