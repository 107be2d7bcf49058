//! `IORING_OP_SPLICE`: moving bytes between two fds inside the kernel, and
//! the stash calls that let a copy give back bytes it took from a source
//! but could not deliver.
//!
//! One end of a splice must be a pipe. The kernel always runs a splice on
//! one of its worker threads (the opcode is marked "force async"), where it
//! may block; `AsyncCancel` interrupts it there, and the CQE then says
//! `-ECANCELED` or `-EINTR` — or reports the bytes that moved before the
//! interruption, which are in the output fd and cannot be taken back.
//!
//! ```
//! # if weft_uring::probe().is_err() { return; }
//! use weft_uring::ops;
//!
//! weft_uring::run(&weft_core::RunConfig::default(), |_env| {
//!     let (r1, w1) = ops::pipe()?;
//!     let (r2, w2) = ops::pipe()?;
//!     w1.write(b"through the kernel")?;
//!     let (n, cancelled) = r1.splice_to(None, &w2, None, 64)?;
//!     assert_eq!((n, cancelled.is_none()), (18, true));
//!     let mut buf = [0u8; 32];
//!     assert_eq!(r2.read(&mut buf)?, 18);
//!     assert_eq!(&buf[..18], b"through the kernel");
//!     assert_eq!(weft_uring::stats()?.spliced_bytes, 18);
//!     Ok(())
//! })
//! .unwrap();
//! ```

use io_uring::{opcode, types};
use weft_core::{Error, Result};

use super::{closed_error, errno, submit, Done, FdRef, State, Use};
use crate::ring;

/// Largest transfer asked for in one SQE (the kernel's own cap).
const MAX_RW: usize = 0x7fff_f000;
/// `-ERESTARTSYS`: what an interrupted wait may report before the kernel
/// turns it into `EINTR`.
const ERESTARTSYS: i32 = 512;

/// An offset for the SQE: `-1` means the fd's own position.
fn raw_offset(off: Option<u64>) -> i64 {
    match off {
        Some(o) => i64::try_from(o).unwrap_or(i64::MAX),
        None => -1,
    }
}

impl FdRef {
    /// Moves up to `len` bytes from this fd to `out` (`IORING_OP_SPLICE`).
    /// `off_in`/`off_out` are explicit file offsets, or `None` for the fd's
    /// own position (which pipes and sockets require); an explicit offset
    /// is not moved by the kernel — the caller keeps track of it.
    ///
    /// Returns the bytes moved (`0` at the end of the input) and the
    /// cancellation that arrived while the splice was in flight, if any:
    /// bytes that moved despite it are in `out`. A splice the cancellation
    /// stopped before it moved anything is `Err(Cancelled)`.
    pub fn splice_to(
        &self,
        off_in: Option<u64>,
        out: &FdRef,
        off_out: Option<u64>,
        len: usize,
    ) -> Result<(usize, Option<Error>)> {
        const WHAT: &str = "io_uring splice";
        let (fi, fo) = (&*self.inner, &*out.inner);
        if fi.state.get() != State::Open || fo.state.get() != State::Open {
            return Err(closed_error(WHAT));
        }
        if len == 0 {
            return Ok((0, None));
        }
        fi.uses.set(fi.uses.get() + 1);
        let _use_in = Use(fi);
        fo.uses.set(fo.uses.get() + 1);
        let _use_out = Use(fo);
        let sqe = opcode::Splice::new(
            types::Fd(fi.raw),
            raw_offset(off_in),
            types::Fd(fo.raw),
            raw_offset(off_out),
            len.min(MAX_RW) as u32,
        )
        .build();
        // SAFETY: a splice names two fds and no memory; `_use_in` and
        // `_use_out` keep both open until after the CQE.
        let Done { res, cancelled } = unsafe { submit(WHAT, sqe, fi.raw) }?;
        if res >= 0 {
            if res > 0 {
                if let Some(ring) = ring::try_current() {
                    ring.count_splice(res as u64);
                }
            }
            return Ok((res as usize, cancelled));
        }
        if matches!(-res, libc::ECANCELED | libc::EINTR | ERESTARTSYS) {
            if let Some(why) = cancelled {
                return Err(Error::cancelled(why));
            }
            if fi.state.get() != State::Open || fo.state.get() != State::Open {
                return Err(closed_error(WHAT));
            }
        }
        Err(errno(res))
    }

    /// Bytes that cancelled reads took from the kernel and that the next
    /// read returns first.
    pub(crate) fn stashed_bytes(&self) -> usize {
        self.inner
            .stash
            .borrow()
            .as_deref()
            .map_or(0, |s| s.bytes.len())
    }

    /// Copies up to `buf.len()` stashed bytes into `buf` without taking
    /// them; returns the count.
    pub(crate) fn peek_stash(&self, buf: &mut [u8]) -> usize {
        let stash = self.inner.stash.borrow();
        let Some(s) = stash.as_deref() else {
            return 0;
        };
        let n = buf.len().min(s.bytes.len());
        for (d, b) in buf.iter_mut().zip(s.bytes.iter()) {
            *d = *b;
        }
        n
    }

    /// Drops the first `n` stashed bytes (delivered elsewhere).
    pub(crate) fn consume_stash(&self, n: usize) {
        self.with_stash(|s| {
            let n = n.min(s.bytes.len());
            s.bytes.drain(..n);
        });
    }

    /// Puts `bytes` back in front of the stream: the next read returns
    /// them before anything else.
    pub(crate) fn unread(&self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.with_stash(|s| {
            for &b in bytes.iter().rev() {
                s.bytes.push_front(b);
            }
        });
    }
}
