//! What the filesystem needs that io_uring has no opcode for: blocking
//! `readlinkat`, directory listing (`getdents` through `readdir`) — both
//! shared with the POSIX backend ([`weft_posix::unix::fs`]) — and the
//! `ftruncate` of kernels before 6.9, each run on a system thread by the
//! caller; and `lseek`, which does no IO and runs in place. Also the
//! conversion of a `statx` to the portable [`Stat`].

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use weft_core::fs::{FileKind, Stat};
use weft_core::{Error, Result};
use weft_posix::unix::fs::retry;

pub(super) use weft_posix::unix::fs::{cstr, read_dir_names, readlinkat};

/// `lseek(2)`: moves the fd's own position, returning the new one. Does no
/// IO.
pub(super) fn lseek(fd: RawFd, offset: i64, whence: libc::c_int) -> Result<u64> {
    // SAFETY: lseek takes plain integers; the caller keeps `fd` open.
    let r = unsafe { libc::lseek(fd, offset, whence) };
    if r < 0 {
        return Err(Error::from(io::Error::last_os_error()));
    }
    Ok(r as u64)
}

/// `ftruncate(2)` on an fd the caller owns (a duplicate, on a system
/// thread).
pub(super) fn ftruncate(fd: &OwnedFd, len: i64) -> io::Result<()> {
    // SAFETY: plain integers; `fd` is borrowed, so open.
    retry(|| unsafe { libc::ftruncate(fd.as_raw_fd(), len) }).map(drop)
}

/// The portable [`Stat`] of a `statx` with the basic fields, equal to what
/// `fstat` gives.
pub(crate) fn to_stat(st: &libc::statx) -> Stat {
    let mode = u32::from(st.stx_mode);
    let time = |t: &libc::statx_timestamp| Stat::unix_time(t.tv_sec, i64::from(t.tv_nsec));
    Stat {
        kind: FileKind::from_mode(mode),
        size: st.stx_size,
        perm: mode & 0o7777,
        nlink: u64::from(st.stx_nlink),
        ino: st.stx_ino,
        dev: libc::makedev(st.stx_dev_major, st.stx_dev_minor),
        uid: st.stx_uid,
        gid: st.stx_gid,
        atime: time(&st.stx_atime),
        mtime: time(&st.stx_mtime),
        ctime: time(&st.stx_ctime),
    }
}
