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
//! that won the race — bytes read, an accepted socket — which is returned
//! as a success. Nothing the kernel did is lost; the cancellation is
//! reported by the fiber's next suspension point instead.
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
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::rc::Rc;

use io_uring::{opcode, squeue, types};
use socket2::SockAddr;
use weft_core::backend::suspend_with_cancel;
use weft_core::{Error, ErrorKind, Result};

use crate::ring;

/// Largest transfer asked for in one SQE (the kernel's own cap).
const MAX_RW: usize = 0x7fff_f000;
/// Largest iovec count `sendmsg` accepts.
const MAX_IOV: usize = 1024;

/// Queues `sqe` on this thread's ring and suspends until its CQE; returns
/// the CQE's result (`-errno` on failure).
///
/// Fails without submitting anything if the fiber is already cancelled;
/// once submitted, only the CQE ends the wait. If the fiber is cancelled
/// meanwhile and the CQE says `-ECANCELED`, that becomes `Err(Cancelled)`.
///
/// # Safety
/// Every buffer, address and fd `sqe` names must stay valid (and buffers
/// the kernel writes, unaliased) until this returns. Borrows held by the
/// caller for the duration of the call satisfy this: the call does not
/// return before the CQE.
pub(crate) unsafe fn submit(what: &'static str, sqe: squeue::Entry, fd: RawFd) -> Result<i32> {
    let ring = ring::current()?;
    let key = Cell::new(0u64);
    let reason: RefCell<Option<Error>> = RefCell::new(None);
    let res = suspend_with_cancel(
        what,
        |r| {
            // SAFETY: forwarded from our caller; the resumer stored with
            // the SQE is the only one that ends this wait.
            key.set(unsafe { ring.push(sqe, r, fd) });
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
    if res == -libc::ECANCELED {
        if let Some(why) = reason.borrow_mut().take() {
            return Err(Error::cancelled(why));
        }
    }
    Ok(res)
}

fn errno(res: i32) -> Error {
    Error::from(io::Error::from_raw_os_error(-res))
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
            Ok(res) if res < 0 => Err(errno(res).context("closing an fd")),
            Ok(_) => Ok(()),
            // Not submitted (the fiber is cancelled already, or there is
            // no ring on this thread): close it here instead.
            Err(_) => {
                // SAFETY: as above; the ring never saw this close.
                if unsafe { libc::close(raw) } != 0 {
                    return Err(Error::from(io::Error::last_os_error()).context("closing an fd"));
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
        return Err(Error::from(io::Error::last_os_error()).context("creating a pipe"));
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

    /// Runs one operation on this fd: `build` gets the raw fd.
    ///
    /// # Safety
    /// As for [`submit`]: what the SQE names must outlive this call.
    unsafe fn op(
        &self,
        what: &'static str,
        build: impl FnOnce(types::Fd) -> squeue::Entry,
    ) -> Result<u32> {
        let f = &*self.inner;
        if f.state.get() != State::Open {
            return Err(closed_error(what));
        }
        f.uses.set(f.uses.get() + 1);
        let _use = Use(f);
        let sqe = build(types::Fd(f.raw));
        // SAFETY: forwarded from our caller; `_use` keeps the fd open
        // until after the CQE.
        let res = unsafe { submit(what, sqe, f.raw) }?;
        if res >= 0 {
            return Ok(res as u32);
        }
        if res == -libc::ECANCELED && f.state.get() != State::Open {
            return Err(closed_error(what));
        }
        Err(errno(res))
    }

    /// Reads at the current position (`IORING_OP_READ`). `Ok(0)` at end of
    /// file, or for an empty `buf`.
    pub fn read(&self, buf: &mut [u8]) -> Result<usize> {
        self.read_at_raw(buf, u64::MAX)
    }

    /// Reads at `offset` without moving the file position.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        self.read_at_raw(buf, offset)
    }

    fn read_at_raw(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let len = buf.len().min(MAX_RW) as u32;
        let ptr = buf.as_mut_ptr();
        // SAFETY: `buf` is exclusively borrowed for this whole call, which
        // returns only after the CQE; `len` is within it.
        let n = unsafe {
            self.op("io_uring read", |fd| {
                opcode::Read::new(fd, ptr, len).offset(offset).build()
            })
        }?;
        Ok(n as usize)
    }

    /// Writes at the current position (`IORING_OP_WRITE`); may write less
    /// than `buf`.
    pub fn write(&self, buf: &[u8]) -> Result<usize> {
        self.write_at_raw(buf, u64::MAX)
    }

    /// Writes at `offset` without moving the file position.
    pub fn write_at(&self, buf: &[u8], offset: u64) -> Result<usize> {
        self.write_at_raw(buf, offset)
    }

    fn write_at_raw(&self, buf: &[u8], offset: u64) -> Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let len = buf.len().min(MAX_RW) as u32;
        let ptr = buf.as_ptr();
        // SAFETY: `buf` is borrowed for this whole call, which returns only
        // after the CQE; the kernel only reads it.
        let n = unsafe {
            self.op("io_uring write", |fd| {
                opcode::Write::new(fd, ptr, len).offset(offset).build()
            })
        }?;
        Ok(n as usize)
    }

    /// Receives from a socket (`IORING_OP_RECV`).
    pub fn recv(&self, buf: &mut [u8]) -> Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let len = buf.len().min(MAX_RW) as u32;
        let ptr = buf.as_mut_ptr();
        // SAFETY: as in `read`.
        let n = unsafe {
            self.op("io_uring recv", |fd| {
                opcode::Recv::new(fd, ptr, len).build()
            })
        }?;
        Ok(n as usize)
    }

    /// Sends on a socket (`IORING_OP_SEND`, `MSG_NOSIGNAL`: a closed peer
    /// is an `EPIPE` error, not a signal).
    pub fn send(&self, buf: &[u8]) -> Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let len = buf.len().min(MAX_RW) as u32;
        let ptr = buf.as_ptr();
        // SAFETY: as in `write`.
        let n = unsafe {
            self.op("io_uring send", |fd| {
                opcode::Send::new(fd, ptr, len)
                    .flags(libc::MSG_NOSIGNAL)
                    .build()
            })
        }?;
        Ok(n as usize)
    }

    /// Sends several buffers in one `sendmsg` (gathered), optionally to
    /// `to` (datagram sockets). Returns the bytes sent.
    pub fn send_vectored(&self, bufs: &[io::IoSlice<'_>], to: Option<&SockAddr>) -> Result<usize> {
        let bufs = &bufs[..bufs.len().min(MAX_IOV)];
        // SAFETY: an all-zero msghdr is a valid empty message.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        // IoSlice is ABI-compatible with iovec on Unix (documented).
        msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = bufs.len() as _;
        if let Some(a) = to {
            msg.msg_name = a.as_ptr() as *mut libc::c_void;
            msg.msg_namelen = a.len();
        }
        let msg_ptr: *const libc::msghdr = &msg;
        // SAFETY: `msg`, the iovecs (`bufs`) and the address (`to`) are
        // borrowed or owned by this frame for the whole call, which returns
        // only after the CQE; the kernel only reads them.
        let n = unsafe {
            self.op("io_uring sendmsg", |fd| {
                opcode::SendMsg::new(fd, msg_ptr)
                    .flags(libc::MSG_NOSIGNAL as u32)
                    .build()
            })
        }?;
        Ok(n as usize)
    }

    /// Receives one message (`IORING_OP_RECVMSG`) and its sender's address.
    /// A datagram longer than `buf` is truncated.
    pub fn recv_from(&self, buf: &mut [u8]) -> Result<(usize, SockAddr)> {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let iov_ptr: *mut libc::iovec = &mut iov;
        let init = |storage: *mut socket2::SockAddrStorage, len: *mut libc::socklen_t| {
            // SAFETY: an all-zero msghdr is a valid empty message.
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_name = storage.cast();
            // SAFETY: `try_init` passes a valid pointer to the length.
            msg.msg_namelen = unsafe { *len };
            msg.msg_iov = iov_ptr;
            msg.msg_iovlen = 1;
            let msg_ptr: *mut libc::msghdr = &mut msg;
            // SAFETY: `msg` (this frame), `iov` over the exclusively
            // borrowed `buf` (the caller's frame) and the address storage
            // (`try_init`'s frame) all outlive this call, which returns
            // only after the CQE.
            let n = unsafe {
                self.op("io_uring recvmsg", |fd| {
                    opcode::RecvMsg::new(fd, msg_ptr).build()
                })
            }
            .map_err(io::Error::from)?;
            // SAFETY: as above; recvmsg set `msg_namelen` to the address
            // length it wrote (at most the storage size).
            unsafe { *len = msg.msg_namelen };
            Ok(n as usize)
        };
        // SAFETY: `init` leaves in the storage what recvmsg wrote, an
        // address of the socket's family, and its true length in `len`.
        let (n, addr) = unsafe { SockAddr::try_init(init) }.map_err(Error::from)?;
        Ok((n, addr))
    }

    /// Accepts a connection (`IORING_OP_ACCEPT`, `SOCK_CLOEXEC`).
    ///
    /// If the fiber is cancelled while a connection arrives, the connection
    /// wins: it is returned, and the cancellation is reported by the next
    /// suspension point. It is never left open and unowned.
    pub fn accept(&self) -> Result<(Fd, SockAddr)> {
        let init = |storage: *mut socket2::SockAddrStorage, len: *mut libc::socklen_t| {
            let sa = storage.cast::<libc::sockaddr>();
            // SAFETY: the storage and its length live in `try_init`'s
            // frame, which outlasts this call; the call returns only after
            // the CQE, and the kernel writes at most `*len` bytes.
            let n = unsafe {
                self.op("io_uring accept", |fd| {
                    opcode::Accept::new(fd, sa, len)
                        .flags(libc::SOCK_CLOEXEC)
                        .build()
                })
            }
            .map_err(io::Error::from)?;
            // SAFETY: a successful accept returns a new fd that we own;
            // wrapping it at once means it is closed on every later path.
            Ok(Fd::from(unsafe { OwnedFd::from_raw_fd(n as RawFd) }))
        };
        // SAFETY: accept wrote a peer address of the listener's family and
        // set its length.
        let (fd, addr) = unsafe { SockAddr::try_init(init) }.map_err(Error::from)?;
        Ok((fd, addr))
    }

    /// Connects a socket (`IORING_OP_CONNECT`).
    pub fn connect(&self, addr: &SockAddr) -> Result<()> {
        let (ptr, len) = (addr.as_ptr().cast::<libc::sockaddr>(), addr.len());
        // SAFETY: `addr` is borrowed for the whole call, which returns only
        // after the CQE; the kernel only reads it.
        unsafe {
            self.op("io_uring connect", |fd| {
                opcode::Connect::new(fd, ptr, len).build()
            })
        }?;
        Ok(())
    }

    /// Shuts down part of a full-duplex socket (`IORING_OP_SHUTDOWN`;
    /// `how` is `libc::SHUT_RD`, `SHUT_WR` or `SHUT_RDWR`).
    pub fn shutdown(&self, how: i32) -> Result<()> {
        // SAFETY: a shutdown names only the fd, kept open by `op`.
        unsafe {
            self.op("io_uring shutdown", |fd| {
                opcode::Shutdown::new(fd, how).build()
            })
        }?;
        Ok(())
    }

    /// Waits until the fd is ready for `events` (`POLLIN`, `POLLOUT`…,
    /// `IORING_OP_POLL_ADD`); returns the events that are.
    pub fn poll(&self, events: i16) -> Result<i16> {
        // SAFETY: a poll names only the fd, kept open by `op`.
        let r = unsafe {
            self.op("io_uring poll", |fd| {
                opcode::PollAdd::new(fd, events as u16 as u32).build()
            })
        }?;
        Ok(r as i16)
    }
}
