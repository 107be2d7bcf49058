//! Open files. Regular files are always "ready" to `epoll`, so every read,
//! write and metadata call runs on a system thread instead, suspending only
//! the calling fiber.
//!
//! The closures sent to the system thread own everything they touch: a
//! clone of the `Arc` holding the file (so the fd stays open while a call
//! is in flight, even if the fiber was cancelled and the `File` dropped)
//! and their own buffers, copied to or from the caller's.
//!
//! # The file position lives here
//!
//! A system thread cannot be interrupted, so a fiber cancelled during a
//! read returns at once while the call goes on. With `read(2)` the kernel
//! would move the position anyway and the bytes would be dropped with the
//! cancelled call's buffer: lost. So, as on io_uring, every read and write
//! at the position is **positioned** (`pread`/`pwrite` at an offset kept
//! in user space), and the position moves only when a result is delivered
//! to the caller. A read cancelled in flight leaves the position where it
//! was: its bytes, still in the file, are what the next read returns.
//! A write, once started, is waited for (protected from cancellation; the
//! cancellation is seen at the next suspension point), as io_uring waits
//! for its completion: its bytes are in the file, so it is reported and
//! moves the position.
//!
//! Reads and writes at the position take turns, one at a time per file,
//! so that fibers sharing a `File` each get their own bytes. `read_at` and
//! `write_at` do not wait for a turn.
//!
//! A file opened to append writes with `write(2)` (`O_APPEND` puts the
//! bytes at the end and moves the kernel's position there); the position
//! then follows the kernel's (`lseek(SEEK_CUR)`, asked when needed). A
//! device that cannot seek (a FIFO, a terminal) fails a positioned call
//! with `ESPIPE`: such a file uses the kernel's position for good, with
//! `read(2)`/`write(2)`; as there is no position to come back to, what a
//! cancelled read of it took is kept for the next read (see
//! [`stream_read`](super::stream_read)).

use std::cell::Cell;
use std::io::{self, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use weft_core::flow::{Sink, Source};
use weft_core::fs::{FileImpl, Stat};
use weft_core::sync::{Permit, Semaphore};
use weft_core::{Error, Result};

use super::stream_read::StreamStash;
use super::sys;

/// The most bytes one call moves (bounding the copy buffer).
const MAX_IO: usize = 8 << 20;

pub(super) struct PosixFile {
    file: Arc<std::fs::File>,
    append: bool,
    /// The position `read` and `write` use; `None` when it is the kernel's
    /// (after an append, or for a device that cannot seek).
    pos: Cell<Option<u64>>,
    /// The file cannot seek: every transfer uses the kernel's position.
    stream: Cell<bool>,
    /// One read or write at the position at a time.
    turn: Semaphore,
    /// What reads of a stream took from the kernel and nobody has read.
    stash: StreamStash,
}

fn is_espipe(e: &Error) -> bool {
    e.raw_os_error() == Some(libc::ESPIPE)
}

impl PosixFile {
    pub(super) fn new(fd: OwnedFd, append: bool) -> PosixFile {
        PosixFile {
            file: Arc::new(std::fs::File::from(fd)),
            append,
            pos: Cell::new(Some(0)),
            stream: Cell::new(false),
            turn: Semaphore::new(1),
            stash: StreamStash::default(),
        }
    }

    /// A read at the kernel's position of a file that cannot seek.
    fn read_stream(&self, buf: &mut [u8]) -> Result<usize> {
        self.stash.read(&self.file, buf, MAX_IO, |mut call| {
            self.blocking(move |_| call())
        })
    }

    /// Waits for this fiber's turn to use the position.
    fn turn(&self) -> Result<Permit<'_>> {
        self.turn.acquire_permit()
    }

    /// The position, asking the kernel if it holds it (`lseek` does no IO,
    /// so it runs in place).
    fn position(&self) -> Result<u64> {
        match self.pos.get() {
            Some(p) => Ok(p),
            None => Ok((&*self.file).stream_position()?),
        }
    }

    /// Switches to the kernel's position for good (see the module docs).
    fn become_stream(&self) {
        self.stream.set(true);
        self.pos.set(None);
    }

    /// Runs a write to completion once it has started: its bytes are in
    /// the file whatever happens to the caller.
    fn write_started(
        &self,
        buf: &[u8],
        op: impl Fn(&std::fs::File, &[u8]) -> io::Result<usize> + Send + 'static,
    ) -> Result<usize> {
        weft_core::fs::resolve::not_cancelled()?;
        weft_core::cancel::protect(|| self.write_with(buf, op))
    }

    /// Runs `f` on the file on a system thread, retrying `EINTR`.
    fn blocking<T: Send + 'static>(
        &self,
        mut f: impl FnMut(&std::fs::File) -> io::Result<T> + Send + 'static,
    ) -> Result<T> {
        weft_core::fs::resolve::not_cancelled()?;
        let file = self.file.clone();
        let result = weft_core::systhread::run(move || loop {
            match f(&file) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        })?;
        result.map_err(Error::from)
    }

    /// Reads up to `buf.len()` bytes with `op` into a buffer of the system
    /// thread's own, then copies them into `buf`.
    fn read_with(
        &self,
        buf: &mut [u8],
        op: impl Fn(&std::fs::File, &mut [u8]) -> io::Result<usize> + Send + 'static,
    ) -> Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let len = buf.len().min(MAX_IO);
        let data = self.blocking(move |f| {
            let mut data = vec![0u8; len];
            let n = op(f, &mut data)?;
            data.truncate(n);
            Ok(data)
        })?;
        buf[..data.len()].copy_from_slice(&data);
        Ok(data.len())
    }

    /// Writes a copy of (up to [`MAX_IO`] bytes of) `buf` with `op`.
    fn write_with(
        &self,
        buf: &[u8],
        op: impl Fn(&std::fs::File, &[u8]) -> io::Result<usize> + Send + 'static,
    ) -> Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let data = buf[..buf.len().min(MAX_IO)].to_vec();
        self.blocking(move |f| op(f, &data))
    }
}

impl Source for PosixFile {
    fn read(&self, buf: &mut [u8]) -> Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let _turn = self.turn()?;
        if self.stream.get() {
            return self.read_stream(buf);
        }
        let offset = self.position()?;
        match self.read_with(buf, move |f, b| f.read_at(b, offset)) {
            Ok(n) => {
                self.pos.set(Some(offset + n as u64));
                Ok(n)
            }
            Err(e) if is_espipe(&e) => {
                self.become_stream();
                self.read_stream(buf)
            }
            // Cancelled in flight, or failed: the position stays, and the
            // bytes (if the call read any) are read again next time.
            Err(e) => Err(e),
        }
    }

    /// One read (on a system thread) of the buffers' total length,
    /// scattered into them in order.
    fn read_vectored(&self, bufs: &mut [io::IoSliceMut<'_>]) -> Result<usize> {
        weft_core::flow::read_vectored_scattered(bufs, MAX_IO, |buf| self.read(buf))
    }
}

impl Sink for PosixFile {
    fn write(&self, buf: &[u8]) -> Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let _turn = self.turn()?;
        if self.append || self.stream.get() {
            let n = self.write_started(buf, |mut f, b| f.write(b))?;
            self.pos.set(None);
            return Ok(n);
        }
        let offset = self.position()?;
        match self.write_started(buf, move |f, b| f.write_at(b, offset)) {
            Ok(n) => {
                self.pos.set(Some(offset + n as u64));
                Ok(n)
            }
            Err(e) if is_espipe(&e) => {
                self.become_stream();
                self.write_started(buf, |mut f, b| f.write(b))
            }
            Err(e) => Err(e),
        }
    }

    /// Gathers the buffers (up to the per-call limit) into one write.
    fn write_vectored(&self, bufs: &[io::IoSlice<'_>]) -> Result<usize> {
        let mut data = Vec::new();
        for b in bufs {
            let room = MAX_IO - data.len();
            data.extend_from_slice(&b[..b.len().min(room)]);
            if data.len() == MAX_IO {
                break;
            }
        }
        self.write(&data)
    }
}

impl FileImpl for PosixFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        self.read_with(buf, move |f, b| f.read_at(b, offset))
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<usize> {
        self.write_with(buf, move |f, b| f.write_at(b, offset))
    }

    /// Sets the position through `lseek`, which checks it as POSIX does
    /// and does no IO, so this runs in place.
    fn seek(&self, pos: SeekFrom) -> Result<u64> {
        let mut f = &*self.file;
        let new = match pos {
            SeekFrom::Current(d) if !self.stream.get() => {
                let target = self
                    .position()?
                    .checked_add_signed(d)
                    .ok_or_else(|| Error::from(io::Error::from_raw_os_error(libc::EINVAL)))?;
                f.seek(SeekFrom::Start(target))?
            }
            other => f.seek(other)?,
        };
        if !self.stream.get() {
            self.pos.set(Some(new));
        }
        Ok(new)
    }

    fn stat(&self) -> Result<Stat> {
        self.blocking(|f| sys::fstat(f.as_raw_fd()).map(|st| sys::to_stat(&st)))
    }

    fn set_len(&self, size: u64) -> Result<()> {
        self.blocking(move |f| f.set_len(size))
    }

    fn sync_all(&self) -> Result<()> {
        self.blocking(|f| f.sync_all())
    }

    fn sync_data(&self) -> Result<()> {
        self.blocking(|f| f.sync_data())
    }

    /// Closes now if no call is in flight; otherwise the last call still
    /// running (from a cancelled fiber) closes the fd when it finishes.
    fn close(self: Box<Self>) -> Result<()> {
        match Arc::try_unwrap(self.file) {
            Ok(file) => Ok(sys::close(OwnedFd::from(file))?),
            Err(_) => Ok(()),
        }
    }
}
