//! Open files on the in-memory filesystem.
//!
//! A `MemFile` is a handle on an inode, with its own position and access
//! mode, as an open file description is: two handles on one file share its
//! bytes (a write through one is seen at once through the other) but not
//! their positions. A handle keeps its inode alive, so a file unlinked or
//! replaced while open can still be read and written through it.
//!
//! Calls behave as the POSIX backend's (Linux's `read`, `pwrite`, `lseek`,
//! `ftruncate`, …): at most 8 MiB move per call, an empty buffer returns
//! `Ok(0)` at once, writing past the end fills the gap with zeros, a file
//! opened to append writes at its end (positioned writes too, Linux's
//! `pwrite` bug), reading a directory handle is `IsADirectory`, and writing
//! a handle opened for reading fails. Every call but `seek` and `close`
//! is a cancellation point. Files hold at most [`MAX_FILE_SIZE`] bytes
//! (`FileTooLarge` beyond), all of them in memory.
//!
//! The devices `/dev/null` and `/dev/zero` behave as Linux's: reads see end
//! of file or zeros, writes are discarded (and counted), the position
//! stays 0 whatever `seek` asks, and `set_len` is `InvalidInput`.
//!
//! ```
//! use weft::flow::{Sink, Source};
//! use weft::fs::{Create, OpenOut};
//!
//! weft::mock::run(|env| {
//!     let path = env.cwd() / "shared.txt";
//!     let writer = path.open_out(OpenOut::new(Create::Exclusive(0o644)))?;
//!     let reader = path.open_in()?;
//!     writer.write_all(b"hello")?;
//!     assert_eq!(reader.read_all()?, "hello", "one inode, two handles");
//!     path.unlink()?;
//!     writer.write_all(b", world")?;
//!     assert_eq!(reader.read_all()?, ", world", "still there for open handles");
//!     assert_eq!(reader.stat()?.nlink, 0);
//!     Ok(())
//! })
//! .unwrap();
//! ```

use std::cell::Cell;
use std::io::{self, SeekFrom};

use weft_core::flow::{Sink, Source};
use weft_core::fs::{FileImpl, Stat};
use weft_core::{Error, ErrorKind, FsError, Result};

use super::resolve::fs_err;
use super::tree::{Body, Device, Ino, Tree};
use super::{not_cancelled, MemFs};

/// The most bytes one read or write moves (as the POSIX backend's).
const MAX_IO: usize = 8 << 20;

/// The largest file the in-memory filesystem holds: 4 GiB.
pub const MAX_FILE_SIZE: u64 = 1 << 32;

/// An open file on a [`MemFs`].
pub(crate) struct MemFile {
    fs: MemFs,
    ino: Ino,
    pos: Cell<u64>,
    writable: bool,
    append: bool,
    /// A device: the position never moves.
    device: bool,
}

impl MemFile {
    /// A handle on `ino`, which the caller has just resolved under the
    /// lock `t`.
    pub(crate) fn new(fs: MemFs, t: &mut Tree, ino: Ino, writable: bool, append: bool) -> MemFile {
        t.open(ino, false);
        let device = matches!(t.get(ino).body, Body::Device(_));
        MemFile {
            fs,
            ino,
            pos: Cell::new(0),
            writable,
            append,
            device,
        }
    }

    /// Reads at `offset` into `buf` (not empty); returns the count.
    fn read_from(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        not_cancelled()?;
        let t = self.fs.lock();
        match &t.get(self.ino).body {
            Body::File(data) => {
                let Ok(start) = usize::try_from(offset) else {
                    return Ok(0);
                };
                let Some(rest) = data.get(start..) else {
                    return Ok(0);
                };
                let n = rest.len().min(buf.len()).min(MAX_IO);
                buf[..n].copy_from_slice(&rest[..n]);
                Ok(n)
            }
            Body::Device(Device::Null) => Ok(0),
            Body::Device(Device::Zero) => {
                let n = buf.len().min(MAX_IO);
                buf[..n].fill(0);
                Ok(n)
            }
            _ => Err(fs_err(FsError::IsADirectory)),
        }
    }

    /// Writes `buf` (not empty) at `offset`, or at the end when appending;
    /// returns the count and where the write ended.
    fn write_to(&self, buf: &[u8], offset: u64) -> Result<(usize, u64)> {
        not_cancelled()?;
        if !self.writable {
            return Err(Error::msg(
                ErrorKind::Io,
                "bad file descriptor: the file is not open for writing",
            ));
        }
        let mut t = self.fs.lock();
        let now = t.now();
        let inode = t.get_mut(self.ino);
        let data = match &mut inode.body {
            Body::File(data) => data,
            Body::Device(_) => return Ok((buf.len().min(MAX_IO), 0)),
            _ => return Err(fs_err(FsError::IsADirectory)),
        };
        let offset = if self.append {
            data.len() as u64
        } else {
            offset
        };
        if offset >= MAX_FILE_SIZE {
            return Err(fs_err(FsError::FileTooLarge));
        }
        let room = usize::try_from(MAX_FILE_SIZE - offset).unwrap_or(usize::MAX);
        let n = buf.len().min(MAX_IO).min(room);
        let start = usize::try_from(offset).map_err(|_| fs_err(FsError::FileTooLarge))?;
        if data.len() < start + n {
            data.resize(start + n, 0);
        }
        data[start..start + n].copy_from_slice(&buf[..n]);
        (inode.mtime, inode.ctime) = (now, now);
        Ok((n, offset + n as u64))
    }
}

impl Drop for MemFile {
    fn drop(&mut self) {
        self.fs.lock().release(self.ino, false);
    }
}

impl Source for MemFile {
    fn read(&self, buf: &mut [u8]) -> Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let n = self.read_from(buf, self.pos.get())?;
        if !self.device {
            self.pos.set(self.pos.get() + n as u64);
        }
        Ok(n)
    }

    /// Fills the buffers in order, as one `readv` of a regular file does
    /// (up to the end of the file).
    fn read_vectored(&self, bufs: &mut [io::IoSliceMut<'_>]) -> Result<usize> {
        let mut total = 0;
        for b in bufs.iter_mut().filter(|b| !b.is_empty()) {
            let n = self.read(b)?;
            total += n;
            if n < b.len() {
                break;
            }
        }
        Ok(total)
    }
}

impl Sink for MemFile {
    fn write(&self, buf: &[u8]) -> Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let (n, end) = self.write_to(buf, self.pos.get())?;
        self.pos.set(end);
        Ok(n)
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

impl FileImpl for MemFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.read_from(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.write_to(buf, offset).map(|(n, _)| n)
    }

    /// Moves no data, so, as `lseek` in the POSIX backend, it is not a
    /// cancellation point. A position before the start is `InvalidInput`.
    fn seek(&self, pos: SeekFrom) -> Result<u64> {
        if self.device {
            return Ok(0);
        }
        let (base, delta) = match pos {
            SeekFrom::Start(n) => (n, 0),
            SeekFrom::Current(d) => (self.pos.get(), d),
            SeekFrom::End(d) => (self.fs.lock().stat(self.ino).size, d),
        };
        let new = base
            .checked_add_signed(delta)
            .filter(|&p| p <= i64::MAX as u64)
            .ok_or_else(|| {
                Error::msg(
                    ErrorKind::InvalidInput,
                    "invalid argument: seek to a negative or too large position",
                )
            })?;
        self.pos.set(new);
        Ok(new)
    }

    fn stat(&self) -> Result<Stat> {
        not_cancelled()?;
        Ok(self.fs.lock().stat(self.ino))
    }

    fn set_len(&self, size: u64) -> Result<()> {
        not_cancelled()?;
        let mut t = self.fs.lock();
        let now = t.now();
        let inode = t.get_mut(self.ino);
        match &mut inode.body {
            Body::File(data) if self.writable => {
                let size = usize::try_from(size)
                    .ok()
                    .filter(|&s| s as u64 <= MAX_FILE_SIZE)
                    .ok_or_else(|| fs_err(FsError::FileTooLarge))?;
                data.resize(size, 0);
                (inode.mtime, inode.ctime) = (now, now);
                Ok(())
            }
            _ => Err(Error::msg(
                ErrorKind::InvalidInput,
                "invalid argument: the file is not open for writing",
            )),
        }
    }

    /// Memory needs no flushing; still a cancellation point.
    fn sync_all(&self) -> Result<()> {
        not_cancelled()
    }

    /// Memory needs no flushing; still a cancellation point.
    fn sync_data(&self) -> Result<()> {
        not_cancelled()
    }

    /// Releases the handle (as dropping it does); never fails.
    fn close(self: Box<Self>) -> Result<()> {
        drop(self);
        Ok(())
    }
}
