//! Open files on io_uring: every read and write is positioned
//! (`IORING_OP_READ`/`WRITE`/`WRITEV` at an explicit offset, as
//! `pread`/`pwrite`), and the file position that `read`, `write` and
//! `seek` use is kept here, in user space.
//!
//! That is what makes a cancelled read harmless: **a read at the position
//! that was cancelled while in flight never moves the position**, whatever
//! its CQE says. If the kernel read bytes anyway (they arrived in the same
//! instant as the `AsyncCancel`), they are not handed to the cancelled
//! caller — who may be about to drop them — and, since they are still in
//! the file, the next `read` returns them again. Nothing is lost and
//! nothing is read twice. (The kernel's buffer is the caller's own: the
//! call returns only after the CQE, so it is never written after it has
//! gone.) A write that completed is reported as done even when cancelled
//! and moves the position, as the bytes are in the file.
//!
//! Reads and writes at the position take turns, one at a time per file, so
//! that fibers sharing a `File` each get their own bytes, as threads
//! sharing a file description do under POSIX. Positioned calls
//! (`read_at`/`write_at`) do not wait for that turn: any number may be in
//! flight at once.
//!
//! A file opened to append writes through the kernel's own position
//! (offset `-1`), which `O_APPEND` moves to the end of each write; the
//! position here then follows the kernel's (`lseek(SEEK_CUR)`, asked only
//! when it is needed). Devices that cannot seek (a FIFO, a terminal) fail
//! a positioned transfer with `ESPIPE`: such a file switches to the
//! kernel's position for good, and its reads follow the rule of pipes and
//! sockets (see [`ops`](crate::ops)): a cancelled read consumes nothing,
//! as bytes the kernel took anyway are kept for the next read.

use std::cell::Cell;
use std::io::{self, SeekFrom};
use std::os::fd::{AsFd, OwnedFd};

use weft_core::flow::{Backing, Sink, Source};
use weft_core::fs::{FileImpl, Stat};
use weft_core::sync::{Permit, Semaphore};
use weft_core::{Error, ErrorKind, Result};

use super::sys;
use crate::ops::Fd;

/// The offset that asks the kernel to use (and move) the fd's position.
pub(crate) const KERNEL_POS: u64 = u64::MAX;

pub(crate) struct UringFile {
    fd: Fd,
    append: bool,
    /// The position `read` and `write` use; `None` when it is the kernel's
    /// (after an append, or for a device that cannot seek).
    pos: Cell<Option<u64>>,
    /// The file cannot seek: every transfer uses the kernel's position.
    stream: Cell<bool>,
    /// One read or write at the position at a time.
    turn: Semaphore,
}

impl UringFile {
    pub(crate) fn new(fd: OwnedFd, append: bool) -> UringFile {
        UringFile {
            fd: Fd::from(fd),
            append,
            pos: Cell::new(Some(0)),
            stream: Cell::new(false),
            turn: Semaphore::new(1),
        }
    }

    fn raw(&self) -> Result<i32> {
        self.fd
            .raw()
            .ok_or_else(|| Error::msg(ErrorKind::Closed, "the file is closed"))
    }

    /// Waits for this fiber's turn to use the position.
    pub(crate) fn turn(&self) -> Result<Permit<'_>> {
        self.turn.acquire_permit()
    }

    /// The fd, for splicing ([`copy`](crate::copy)).
    pub(crate) fn fd(&self) -> &Fd {
        &self.fd
    }

    /// True if writes go to the end of the file (`O_APPEND`).
    pub(crate) fn appends(&self) -> bool {
        self.append
    }

    /// From now on, use the kernel's position (a pipe or another device
    /// that cannot seek).
    pub(crate) fn use_kernel_position(&self) {
        self.stream.set(true);
        self.pos.set(None);
    }

    /// The position, asking the kernel if it holds it.
    fn position(&self) -> Result<u64> {
        match self.pos.get() {
            Some(p) => Ok(p),
            None => sys::lseek(self.raw()?, 0, libc::SEEK_CUR),
        }
    }

    /// Where a transfer at the position goes: an explicit offset, or the
    /// kernel's position ([`KERNEL_POS`]).
    pub(crate) fn offset(&self) -> Result<u64> {
        if self.stream.get() {
            return Ok(KERNEL_POS);
        }
        self.position()
    }

    /// Records that `n` bytes were transferred at `offset`.
    pub(crate) fn advance(&self, offset: u64, n: usize) {
        if offset == KERNEL_POS {
            self.pos.set(None);
        } else {
            self.pos.set(Some(offset + n as u64));
        }
    }

    /// Runs a transfer at `offset`; a device that cannot seek is switched
    /// to the kernel's position and the transfer retried there.
    fn transfer<T>(&self, offset: u64, mut f: impl FnMut(u64) -> Result<T>) -> Result<(T, u64)> {
        match f(offset) {
            Err(e) if e.raw_os_error() == Some(libc::ESPIPE) && offset != KERNEL_POS => {
                self.use_kernel_position();
                Ok((f(KERNEL_POS)?, KERNEL_POS))
            }
            r => Ok((r?, offset)),
        }
    }

    /// `ftruncate` on a system thread, on a duplicate of the fd so that it
    /// stays open however the caller ends.
    fn set_len_blocking(&self, len: i64) -> Result<()> {
        let dup = self.fd.as_fd().try_clone_to_owned()?;
        weft_core::fs::resolve::not_cancelled()?;
        Ok(weft_core::systhread::run(move || {
            sys::ftruncate(&dup, len)
        })??)
    }

    /// Writes at the position (at the end, appending), with `f` doing one
    /// transfer at an offset.
    fn write_with(&self, f: impl FnMut(u64) -> Result<usize>) -> Result<usize> {
        let _turn = self.turn()?;
        let offset = if self.append {
            KERNEL_POS
        } else {
            self.offset()?
        };
        let (n, offset) = self.transfer(offset, f)?;
        self.advance(offset, n);
        Ok(n)
    }
}

impl Source for UringFile {
    fn read(&self, buf: &mut [u8]) -> Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let _turn = self.turn()?;
        if self.stream.get() {
            return self.fd.read(buf);
        }
        let offset = self.position()?;
        let (n, cancelled) = match self.fd.read_at_reporting(buf, offset) {
            Err(e) if e.raw_os_error() == Some(libc::ESPIPE) => {
                self.use_kernel_position();
                return self.fd.read(buf);
            }
            r => r?,
        };
        if let Some(why) = cancelled {
            // The position stays: the bytes are read again next time.
            return Err(Error::cancelled(why));
        }
        self.advance(offset, n);
        Ok(n)
    }

    /// As `read`, with one `IORING_OP_READV`.
    fn read_vectored(&self, bufs: &mut [io::IoSliceMut<'_>]) -> Result<usize> {
        if bufs.iter().all(|b| b.is_empty()) {
            return Ok(0);
        }
        let _turn = self.turn()?;
        if self.stream.get() {
            return self.fd.read_vectored(bufs);
        }
        let offset = self.position()?;
        let (n, cancelled) = match self.fd.read_vectored_at_reporting(bufs, offset) {
            Err(e) if e.raw_os_error() == Some(libc::ESPIPE) => {
                self.use_kernel_position();
                return self.fd.read_vectored(bufs);
            }
            r => r?,
        };
        if let Some(why) = cancelled {
            // The position stays: the bytes are read again next time.
            return Err(Error::cancelled(why));
        }
        self.advance(offset, n);
        Ok(n)
    }

    fn backing(&self) -> Option<Backing<'_>> {
        Some(Backing::new(self))
    }
}

impl Sink for UringFile {
    fn write(&self, buf: &[u8]) -> Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.write_with(|at| self.fd.write_at(buf, at))
    }

    /// One `IORING_OP_WRITEV` of the buffers (up to `IOV_MAX` of them).
    fn write_vectored(&self, bufs: &[io::IoSlice<'_>]) -> Result<usize> {
        if bufs.iter().all(|b| b.is_empty()) {
            return Ok(0);
        }
        self.write_with(|at| self.fd.write_vectored_at(bufs, at))
    }

    /// Splices from a file, socket or pipe of this backend (see
    /// [`copy`](crate::copy)).
    fn copy_from(&self, src: &dyn Source) -> Result<u64> {
        crate::copy::copy(src, self, crate::copy::End::File(self))
    }
}

impl FileImpl for UringFile {
    /// A positioned read consumes nothing, so one that completed despite a
    /// cancellation returns its bytes.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        self.fd.read_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<usize> {
        self.fd.write_at(buf, offset)
    }

    /// Sets the position through `lseek`, which checks it as POSIX does and
    /// does no IO, so this runs in place.
    fn seek(&self, pos: SeekFrom) -> Result<u64> {
        let raw = self.raw()?;
        let new = match pos {
            SeekFrom::Start(n) => sys::lseek(raw, n as i64, libc::SEEK_SET)?,
            SeekFrom::End(d) => sys::lseek(raw, d, libc::SEEK_END)?,
            SeekFrom::Current(d) => {
                let target = i64::try_from(self.position()?)
                    .ok()
                    .and_then(|cur| cur.checked_add(d))
                    .ok_or_else(|| Error::from(io::Error::from_raw_os_error(libc::EINVAL)))?;
                sys::lseek(raw, target, libc::SEEK_SET)?
            }
        };
        if !self.stream.get() {
            self.pos.set(Some(new));
        }
        Ok(new)
    }

    fn stat(&self) -> Result<Stat> {
        Ok(sys::to_stat(&self.fd.statx()?))
    }

    /// None: the kernel always hands `IORING_OP_STATX` to one of its
    /// worker threads (`REQ_F_FORCE_ASYNC`), a round trip that costs more
    /// than the few extra reads — done inline for a cached file — that
    /// `read_to_end` makes without a size (a 4 KiB `load` takes about a
    /// third of the time).
    fn size_hint(&self) -> Option<u64> {
        None
    }

    /// `IORING_OP_FTRUNCATE` where the kernel has it (6.9), else
    /// `ftruncate` on a system thread, on a duplicate of the fd so that it
    /// stays open however the caller ends.
    fn set_len(&self, size: u64) -> Result<()> {
        let len = i64::try_from(size)
            .map_err(|e| Error::from(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
        if crate::probe::features().ftruncate {
            return self.fd.ftruncate(size);
        }
        self.set_len_blocking(len)
    }

    fn sync_all(&self) -> Result<()> {
        self.fd.fsync(false)
    }

    fn sync_data(&self) -> Result<()> {
        self.fd.fsync(true)
    }

    /// Closes through the ring; with calls still in flight (from fibers
    /// that were cancelled), the last of them closes the fd when its CQE
    /// arrives.
    fn close(self: Box<Self>) -> Result<()> {
        let UringFile { fd, .. } = *self;
        fd.close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The path kernels before 6.9 take (this one may have the opcode).
    #[test]
    fn set_len_without_the_ftruncate_opcode() {
        if crate::probe().is_err() {
            return;
        }
        let path = std::env::temp_dir().join(format!("weft-uring-set-len-{}", std::process::id()));
        let std_file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        let _ = std::fs::remove_file(&path);
        crate::run(&weft_core::RunConfig::default(), |_env| {
            let file = UringFile::new(OwnedFd::from(std_file), false);
            file.write(b"hello")?;
            file.set_len_blocking(2)?;
            assert_eq!(file.stat()?.size, 2);
            file.set_len_blocking(8)?;
            let mut buf = [1u8; 8];
            assert_eq!(file.read_at(&mut buf, 0)?, 8);
            assert_eq!(&buf, b"he\0\0\0\0\0\0");
            let r = weft_core::cancel::sub(|scope| {
                scope.cancel(weft_core::Error::msg(ErrorKind::InvalidInput, "stop"));
                file.set_len_blocking(0)
            });
            assert!(r.unwrap_err().is_cancelled());
            assert_eq!(file.stat()?.size, 8, "nothing started once cancelled");
            Box::new(file).close()
        })
        .unwrap();
    }
}
