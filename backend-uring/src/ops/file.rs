//! Operations on an open regular file, one SQE each: positioned reads and
//! gathered writes, `fsync`/`fdatasync`, `ftruncate`, `fallocate` and
//! `statx` of the open file.
//!
//! Files are positional: a read at an offset consumes nothing, so a read
//! that completed although its fiber was cancelled can simply be handed
//! back ([`FdRef::read_at`]) or, by a caller that keeps a file position,
//! ignored — the bytes are still in the file for the next read
//! ([`FdRef::read_at_reporting`]). Writes, syncs and truncations *give*:
//! once done they are reported as done.
//!
//! ```
//! # if weft_uring::probe().is_err() { return; }
//! use std::os::fd::OwnedFd;
//! use weft_uring::ops::Fd;
//!
//! weft_uring::run(&weft_core::RunConfig::default(), |_env| {
//!     let path = std::env::temp_dir().join(format!("weft-ops-file-{}", std::process::id()));
//!     let std_file = std::fs::File::options()
//!         .read(true).write(true).create(true).truncate(true)
//!         .open(&path)?;
//!     let _ = std::fs::remove_file(&path);
//!     let fd = Fd::from(OwnedFd::from(std_file));
//!     fd.write_at(b"hello, world", 0)?;
//!     fd.fsync(true)?;
//!     let mut buf = [0u8; 5];
//!     assert_eq!(fd.read_at(&mut buf, 7)?, 5);
//!     assert_eq!(&buf, b"world");
//!     fd.fallocate(0, 0, 4096)?;
//!     assert_eq!(fd.statx()?.stx_size, 4096);
//!     fd.close()
//! })
//! .unwrap();
//! ```

use std::io;

use io_uring::{opcode, types};
use weft_core::{Error, Result};

use super::{closed_error, FdRef, State};

/// Largest transfer asked for in one SQE (the kernel's own cap).
const MAX_RW: usize = 0x7fff_f000;
/// Largest iovec count `readv`/`writev` accept (`IOV_MAX`).
const MAX_IOV: usize = 1024;

impl FdRef {
    /// Reads at `offset` (`IORING_OP_READ`; `u64::MAX` means the fd's own
    /// position) and reports, besides the bytes read, the cancellation that
    /// arrived while the read was in flight, if any: the bytes in `buf` are
    /// valid either way, and the caller decides whether they count.
    pub(crate) fn read_at_reporting(
        &self,
        buf: &mut [u8],
        offset: u64,
    ) -> Result<(usize, Option<Error>)> {
        if buf.is_empty() {
            return Ok((0, None));
        }
        let (ptr, len) = (buf.as_mut_ptr(), buf.len().min(MAX_RW) as u32);
        // SAFETY: `buf` is exclusively borrowed for this whole call, which
        // returns only after the CQE; `len` is within it.
        let (n, c) = unsafe {
            self.op("io_uring read", |fd| {
                opcode::Read::new(fd, ptr, len).offset(offset).build()
            })
        }?;
        Ok((n as usize, c))
    }

    /// Reads into several buffers, in order, at `offset`
    /// (`IORING_OP_READV`; `u64::MAX` means the fd's own position), and
    /// reports the cancellation that arrived meanwhile as
    /// [`read_at_reporting`](FdRef::read_at_reporting) does.
    pub(crate) fn read_vectored_at_reporting(
        &self,
        bufs: &mut [io::IoSliceMut<'_>],
        offset: u64,
    ) -> Result<(usize, Option<Error>)> {
        let cap = bufs.len().min(MAX_IOV);
        let bufs = &mut bufs[..cap];
        if bufs.iter().all(|b| b.is_empty()) {
            return Ok((0, None));
        }
        let (ptr, len) = (bufs.as_mut_ptr().cast::<libc::iovec>(), bufs.len() as u32);
        // SAFETY: the iovecs (`bufs`, ABI-compatible with iovec on Unix, as
        // documented) and the memory they point to are exclusively borrowed
        // for this whole call, which returns only after the CQE.
        let (n, c) = unsafe {
            self.op("io_uring readv", |fd| {
                opcode::Readv::new(fd, ptr, len).offset(offset).build()
            })
        }?;
        Ok((n as usize, c))
    }

    /// Writes the buffers, in order, at `offset` (`IORING_OP_WRITEV`;
    /// `u64::MAX` means the fd's own position, which for a file opened with
    /// `O_APPEND` is its end). Returns the bytes written.
    pub fn write_vectored_at(&self, bufs: &[io::IoSlice<'_>], offset: u64) -> Result<usize> {
        let bufs = &bufs[..bufs.len().min(MAX_IOV)];
        if bufs.iter().all(|b| b.is_empty()) {
            return Ok(0);
        }
        let (ptr, len) = (bufs.as_ptr().cast::<libc::iovec>(), bufs.len() as u32);
        // SAFETY: the iovecs (`bufs`, ABI-compatible with iovec on Unix, as
        // documented) and the memory they point to are borrowed for this
        // whole call, which returns only after the CQE; the kernel only
        // reads them.
        let (n, _) = unsafe {
            self.op("io_uring writev", |fd| {
                opcode::Writev::new(fd, ptr, len).offset(offset).build()
            })
        }?;
        Ok(n as usize)
    }

    /// Flushes the file to its device (`IORING_OP_FSYNC`): data and
    /// metadata, or with `data_only` what is needed to read the data back
    /// (`fdatasync`).
    pub fn fsync(&self, data_only: bool) -> Result<()> {
        let flags = if data_only {
            types::FsyncFlags::DATASYNC
        } else {
            types::FsyncFlags::empty()
        };
        // SAFETY: an fsync names only the fd, kept open by `op`.
        unsafe {
            self.op("io_uring fsync", |fd| {
                opcode::Fsync::new(fd).flags(flags).build()
            })
        }?;
        Ok(())
    }

    /// Truncates or extends the file to `len` bytes (`IORING_OP_FTRUNCATE`,
    /// Linux 6.9; older kernels fail with `InvalidInput` — `EINVAL`).
    pub fn ftruncate(&self, len: u64) -> Result<()> {
        // SAFETY: an ftruncate names only the fd, kept open by `op`.
        unsafe {
            self.op("io_uring ftruncate", |fd| {
                opcode::Ftruncate::new(fd, len).build()
            })
        }?;
        Ok(())
    }

    /// Allocates (or, with `mode` flags such as `FALLOC_FL_PUNCH_HOLE`,
    /// deallocates) `len` bytes from `offset` (`IORING_OP_FALLOCATE`, with
    /// `fallocate(2)`'s meaning of `mode`).
    pub fn fallocate(&self, mode: i32, offset: u64, len: u64) -> Result<()> {
        // SAFETY: a fallocate names only the fd, kept open by `op`.
        unsafe {
            self.op("io_uring fallocate", |fd| {
                opcode::Fallocate::new(fd, len)
                    .offset(offset)
                    .mode(mode)
                    .build()
            })
        }?;
        Ok(())
    }

    /// The open file's `statx(2)` (`IORING_OP_STATX` with `AT_EMPTY_PATH`):
    /// its basic fields.
    pub fn statx(&self) -> Result<libc::statx> {
        let f = &*self.inner;
        if f.state.get() != State::Open {
            return Err(closed_error("io_uring statx"));
        }
        f.uses.set(f.uses.get() + 1);
        let _use = super::Use(f);
        super::path::statx_raw(f.raw, c"", libc::AT_EMPTY_PATH)
    }
}
