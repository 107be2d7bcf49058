//! Open files. Regular files are always "ready" to `epoll`, so every read,
//! write and metadata call runs on a system thread instead, suspending only
//! the calling fiber.
//!
//! The closures sent to the system thread own everything they touch: a
//! clone of the `Arc` holding the file (so the fd stays open while a call
//! is in flight, even if the fiber was cancelled and the `File` dropped)
//! and their own buffers, copied to or from the caller's.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use weft_core::flow::{Sink, Source};
use weft_core::fs::{FileImpl, Stat};
use weft_core::{Error, Result};

use super::sys;

/// The most bytes one call moves (bounding the copy buffer).
const MAX_IO: usize = 8 << 20;

pub(super) struct PosixFile {
    file: Arc<std::fs::File>,
}

impl PosixFile {
    pub(super) fn new(fd: OwnedFd) -> PosixFile {
        PosixFile {
            file: Arc::new(std::fs::File::from(fd)),
        }
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
        self.read_with(buf, |mut f, b| f.read(b))
    }

    /// One read (on a system thread) of the buffers' total length,
    /// scattered into them in order.
    fn read_vectored(&self, bufs: &mut [io::IoSliceMut<'_>]) -> Result<usize> {
        let want: usize = bufs.iter().map(|b| b.len()).sum();
        if want == 0 {
            return Ok(0);
        }
        let mut data = vec![0u8; want.min(MAX_IO)];
        let n = self.read(&mut data)?;
        let mut rest = &data[..n];
        for b in bufs.iter_mut() {
            let k = b.len().min(rest.len());
            b[..k].copy_from_slice(&rest[..k]);
            rest = &rest[k..];
        }
        Ok(n)
    }
}

impl Sink for PosixFile {
    fn write(&self, buf: &[u8]) -> Result<usize> {
        self.write_with(buf, |mut f, b| f.write(b))
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

    /// `lseek` does no IO, so it runs in place.
    fn seek(&self, pos: SeekFrom) -> Result<u64> {
        Ok((&*self.file).seek(pos)?)
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
