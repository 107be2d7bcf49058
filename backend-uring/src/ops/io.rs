//! The operations on an [`FdRef`], one SQE each.
//!
//! Operations that *take* something from the kernel — `read`, `recv`,
//! `recv_from`, `accept` — may complete with a result even though the
//! fiber was cancelled while it waited (the data or the connection arrived
//! in the same instant as the `AsyncCancel`). Such a result is never
//! handed to the cancelled caller, who may be about to drop it (a
//! `with_timeout` that fired, the loser of `fiber::first`): it is kept in
//! the fd's stash, the call reports `Err(Cancelled)`, and the next call of
//! the same kind returns it first. A cancelled read therefore consumes
//! nothing, exactly as on the POSIX and mock backends.
//!
//! Operations that *give* — `write`, `send`, `connect`, `shutdown` — report
//! what was done even when cancelled: bytes that were sent cannot be taken
//! back, and the cancellation is reported by the next suspension point.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use io_uring::opcode;
use socket2::SockAddr;
use weft_core::{Error, Result};

use super::{Fd, FdRef};

/// Largest transfer asked for in one SQE (the kernel's own cap).
const MAX_RW: usize = 0x7fff_f000;
/// Largest iovec count `sendmsg` and `readv` accept.
const MAX_IOV: usize = 1024;

/// Copies `src` into the buffers in order; returns the count.
fn scatter(bufs: &mut [io::IoSliceMut<'_>], mut src: &[u8]) -> usize {
    let mut n = 0;
    for b in bufs.iter_mut() {
        if src.is_empty() {
            break;
        }
        let k = b.len().min(src.len());
        b[..k].copy_from_slice(&src[..k]);
        src = &src[k..];
        n += k;
    }
    n
}

/// The first `n` bytes held by the buffers, in order.
fn gather(bufs: &[io::IoSliceMut<'_>], mut n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n);
    for b in bufs {
        if n == 0 {
            break;
        }
        let k = b.len().min(n);
        out.extend_from_slice(&b[..k]);
        n -= k;
    }
    out
}

/// What cancelled operations took from the kernel, oldest first.
#[derive(Default)]
pub(super) struct Stash {
    pub(super) bytes: VecDeque<u8>,
    datagrams: VecDeque<(Vec<u8>, SockAddr)>,
    conns: VecDeque<(Fd, SockAddr)>,
}

impl FdRef {
    pub(super) fn with_stash<T>(&self, f: impl FnOnce(&mut Stash) -> T) -> T {
        let mut s = self.inner.stash.borrow_mut();
        f(s.get_or_insert_with(Box::default))
    }

    fn has_stash(&self, pick: impl FnOnce(&Stash) -> bool) -> bool {
        self.inner.stash.borrow().as_deref().is_some_and(pick)
    }

    /// Serves a read from stashed bytes, if any.
    fn read_stashed(&self, buf: &mut [u8]) -> Option<usize> {
        if !self.has_stash(|s| !s.bytes.is_empty()) {
            return None;
        }
        self.with_stash(|s| s.bytes.read(buf).ok())
    }

    /// Finishes a byte-stream read of `n` bytes into `buf`.
    fn finish_read(&self, buf: &mut [u8], n: usize, cancelled: Option<Error>) -> Result<usize> {
        if let Some(why) = cancelled {
            if n > 0 {
                self.with_stash(|s| s.bytes.extend(&buf[..n]));
            }
            return Err(Error::cancelled(why));
        }
        if n > 0 && self.has_stash(|s| !s.bytes.is_empty()) {
            // A concurrent cancelled read stashed earlier bytes: keep the
            // stream's order.
            return Ok(self.with_stash(|s| {
                s.bytes.extend(&buf[..n]);
                s.bytes.read(buf).unwrap_or(0)
            }));
        }
        Ok(n)
    }

    /// Reads at the current position (`IORING_OP_READ`). `Ok(0)` at end of
    /// file, or for an empty `buf`. A cancelled read consumes nothing.
    pub fn read(&self, buf: &mut [u8]) -> Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if let Some(n) = self.read_stashed(buf) {
            return Ok(n);
        }
        let (ptr, len) = (buf.as_mut_ptr(), buf.len().min(MAX_RW) as u32);
        // SAFETY: `buf` is exclusively borrowed for this whole call, which
        // returns only after the CQE; `len` is within it.
        let (n, c) = unsafe {
            self.op("io_uring read", |fd| {
                opcode::Read::new(fd, ptr, len).offset(u64::MAX).build()
            })
        }?;
        self.finish_read(buf, n as usize, c)
    }

    /// Reads into several buffers, filling them in order, at the current
    /// position (`IORING_OP_READV`, up to `IOV_MAX` buffers); `Ok(0)` at
    /// end of file or when every buffer is empty. A cancelled read consumes
    /// nothing, as for [`read`](FdRef::read).
    pub fn read_vectored(&self, bufs: &mut [io::IoSliceMut<'_>]) -> Result<usize> {
        let cap = bufs.len().min(MAX_IOV);
        let bufs = &mut bufs[..cap];
        let want: usize = bufs.iter().map(|b| b.len()).sum();
        if want == 0 {
            return Ok(0);
        }
        if self.has_stash(|s| !s.bytes.is_empty()) {
            let stashed = self.with_stash(|s| {
                let k = want.min(s.bytes.len());
                s.bytes.drain(..k).collect::<Vec<u8>>()
            });
            return Ok(scatter(bufs, &stashed));
        }
        let (ptr, len) = (bufs.as_mut_ptr().cast::<libc::iovec>(), bufs.len() as u32);
        // SAFETY: the iovecs (`bufs`, ABI-compatible with iovec on Unix, as
        // documented) and the memory they point to are exclusively borrowed
        // for this whole call, which returns only after the CQE.
        let (n, c) = unsafe {
            self.op("io_uring readv", |fd| {
                opcode::Readv::new(fd, ptr, len).offset(u64::MAX).build()
            })
        }?;
        let n = n as usize;
        if let Some(why) = c {
            if n > 0 {
                let got = gather(bufs, n);
                self.with_stash(|s| s.bytes.extend(&got));
            }
            return Err(Error::cancelled(why));
        }
        if n > 0 && self.has_stash(|s| !s.bytes.is_empty()) {
            // A concurrent cancelled read stashed earlier bytes: keep the
            // stream's order.
            let got = gather(bufs, n);
            let ordered = self.with_stash(|s| {
                s.bytes.extend(&got);
                s.bytes.drain(..n).collect::<Vec<u8>>()
            });
            return Ok(scatter(bufs, &ordered));
        }
        Ok(n)
    }

    /// Reads at `offset` without moving the file position. Nothing is
    /// consumed, so a read that completed despite a cancellation is
    /// returned.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let (ptr, len) = (buf.as_mut_ptr(), buf.len().min(MAX_RW) as u32);
        // SAFETY: as in `read`.
        let (n, _) = unsafe {
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
        let (ptr, len) = (buf.as_ptr(), buf.len().min(MAX_RW) as u32);
        // SAFETY: `buf` is borrowed for this whole call, which returns only
        // after the CQE; the kernel only reads it.
        let (n, _) = unsafe {
            self.op("io_uring write", |fd| {
                opcode::Write::new(fd, ptr, len).offset(offset).build()
            })
        }?;
        Ok(n as usize)
    }

    /// Receives from a socket (`IORING_OP_RECV`). A cancelled receive
    /// consumes nothing.
    pub fn recv(&self, buf: &mut [u8]) -> Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if let Some(n) = self.read_stashed(buf) {
            return Ok(n);
        }
        let (ptr, len) = (buf.as_mut_ptr(), buf.len().min(MAX_RW) as u32);
        // SAFETY: as in `read`.
        let (n, c) = unsafe {
            self.op("io_uring recv", |fd| {
                opcode::Recv::new(fd, ptr, len).build()
            })
        }?;
        self.finish_read(buf, n as usize, c)
    }

    /// Sends on a socket (`IORING_OP_SEND`, `MSG_NOSIGNAL`: a closed peer
    /// is an `EPIPE` error, not a signal).
    pub fn send(&self, buf: &[u8]) -> Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let (ptr, len) = (buf.as_ptr(), buf.len().min(MAX_RW) as u32);
        // SAFETY: as in `write`.
        let (n, _) = unsafe {
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
        let (n, _) = unsafe {
            self.op("io_uring sendmsg", |fd| {
                opcode::SendMsg::new(fd, msg_ptr)
                    .flags(libc::MSG_NOSIGNAL as u32)
                    .build()
            })
        }?;
        Ok(n as usize)
    }

    /// Receives one message (`IORING_OP_RECVMSG`) and its sender's address.
    /// A datagram longer than `buf` is truncated. A cancelled receive
    /// consumes no datagram.
    pub fn recv_from(&self, buf: &mut [u8]) -> Result<(usize, SockAddr)> {
        if self.has_stash(|s| !s.datagrams.is_empty()) {
            if let Some((d, a)) = self.with_stash(|s| s.datagrams.pop_front()) {
                let n = d.len().min(buf.len());
                buf[..n].copy_from_slice(&d[..n]);
                return Ok((n, a));
            }
        }
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let iov_ptr: *mut libc::iovec = &mut iov;
        let cancelled = std::cell::Cell::new(None);
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
            let (n, c) = unsafe {
                self.op("io_uring recvmsg", |fd| {
                    opcode::RecvMsg::new(fd, msg_ptr).build()
                })
            }
            .map_err(io::Error::from)?;
            // SAFETY: as above; recvmsg set `msg_namelen` to the address
            // length it wrote (at most the storage size).
            unsafe { *len = msg.msg_namelen };
            cancelled.set(c);
            Ok(n as usize)
        };
        // SAFETY: `init` leaves in the storage what recvmsg wrote, an
        // address of the socket's family, and its true length in `len`.
        let (n, addr) = unsafe { SockAddr::try_init(init) }.map_err(Error::from)?;
        if let Some(why) = cancelled.take() {
            let d = buf[..n].to_vec();
            self.with_stash(|s| s.datagrams.push_back((d, addr)));
            return Err(Error::cancelled(why));
        }
        Ok((n, addr))
    }

    /// Accepts a connection (`IORING_OP_ACCEPT`, `SOCK_CLOEXEC`).
    ///
    /// A connection accepted in the same instant as a cancellation is kept
    /// for the next `accept` (and closed with the listener if there is
    /// none): it is never dropped on the floor nor left unowned.
    pub fn accept(&self) -> Result<(Fd, SockAddr)> {
        if self.has_stash(|s| !s.conns.is_empty()) {
            if let Some(c) = self.with_stash(|s| s.conns.pop_front()) {
                return Ok(c);
            }
        }
        let cancelled = std::cell::Cell::new(None);
        let init = |storage: *mut socket2::SockAddrStorage, len: *mut libc::socklen_t| {
            let sa = storage.cast::<libc::sockaddr>();
            // SAFETY: the storage and its length live in `try_init`'s
            // frame, which outlasts this call; the call returns only after
            // the CQE, and the kernel writes at most `*len` bytes.
            let (n, c) = unsafe {
                self.op("io_uring accept", |fd| {
                    opcode::Accept::new(fd, sa, len)
                        .flags(libc::SOCK_CLOEXEC)
                        .build()
                })
            }
            .map_err(io::Error::from)?;
            cancelled.set(c);
            // SAFETY: a successful accept returns a new fd that we own;
            // wrapping it at once means it is closed on every later path.
            Ok(Fd::from(unsafe { OwnedFd::from_raw_fd(n as RawFd) }))
        };
        // SAFETY: accept wrote a peer address of the listener's family and
        // set its length.
        let (fd, addr) = unsafe { SockAddr::try_init(init) }.map_err(Error::from)?;
        if let Some(why) = cancelled.take() {
            self.with_stash(|s| s.conns.push_back((fd, addr)));
            return Err(Error::cancelled(why));
        }
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
        if events & libc::POLLIN != 0
            && self.has_stash(|s| {
                !(s.bytes.is_empty() && s.datagrams.is_empty() && s.conns.is_empty())
            })
        {
            return Ok(libc::POLLIN);
        }
        // SAFETY: a poll names only the fd, kept open by `op`.
        let (r, _) = unsafe {
            self.op("io_uring poll", |fd| {
                opcode::PollAdd::new(fd, events as u16 as u32).build()
            })
        }?;
        Ok(r as i16)
    }
}
