//! What the filesystem needs that io_uring has no opcode for: blocking
//! `readlinkat`, directory listing (`getdents` through `readdir`), the
//! `ftruncate` of kernels before 6.9 — each run on a system thread by the
//! caller — and `lseek`, which does no IO and runs in place. Also the
//! conversion of a `statx` to the portable [`Stat`].
//!
//! Directory arguments are raw fds because one of them may be `AT_FDCWD`;
//! every caller keeps the fd it passes open for the duration of the call.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd, RawFd};

use weft_core::fs::{FileKind, Stat};
use weft_core::{Error, ErrorKind, FsError, Result};

/// The path as a C string; a NUL byte makes it an invalid path.
pub(super) fn cstr(path: &[u8]) -> Result<CString> {
    CString::new(path).map_err(|_| {
        Error::msg(
            ErrorKind::Fs(FsError::InvalidPath),
            "path contains a NUL byte",
        )
    })
}

/// Runs `f` until it does not fail with `EINTR`, turning `-1` into the OS
/// error.
fn retry<T: PartialEq + From<i8>>(mut f: impl FnMut() -> T) -> io::Result<T> {
    loop {
        let r = f();
        if r != T::from(-1) {
            return Ok(r);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// The working directory, opened `O_PATH | O_DIRECTORY` (blocking: called
/// before the scheduler starts).
pub(super) fn open_cwd() -> io::Result<OwnedFd> {
    let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC;
    // SAFETY: a constant NUL-terminated path and plain flags.
    let fd = retry(|| unsafe { libc::open(c".".as_ptr(), flags) })?;
    // SAFETY: open succeeded, so `fd` is a new descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `readlinkat(2)`, growing the buffer until the target fits.
pub(super) fn readlinkat(dir: RawFd, name: &CStr) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    loop {
        let n = retry(|| {
            // SAFETY: `buf` is valid for writes of `buf.len()` bytes, the
            // length we pass; `name` is NUL-terminated; `dir` is kept open.
            unsafe { libc::readlinkat(dir, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) }
        })?;
        let n = n as usize;
        if n < buf.len() {
            buf.truncate(n);
            return Ok(buf);
        }
        if buf.len() >= 1 << 20 {
            return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
        }
        buf.resize(buf.len() * 2, 0);
    }
}

/// The names in the directory open (for reading) as `dir`, without `.` and
/// `..`. Consumes `dir`: the directory stream owns and closes it.
pub(super) fn read_dir_names(dir: OwnedFd) -> io::Result<Vec<Vec<u8>>> {
    let raw = dir.into_raw_fd();
    // SAFETY: `raw` is an open directory fd we own; fdopendir takes it over
    // on success.
    let stream = unsafe { libc::fdopendir(raw) };
    if stream.is_null() {
        let e = io::Error::last_os_error();
        // SAFETY: fdopendir failed, so we still own `raw`: close it once.
        drop(unsafe { OwnedFd::from_raw_fd(raw) });
        return Err(e);
    }
    let mut names = Vec::new();
    let result = loop {
        // SAFETY: __errno_location returns this thread's errno slot, valid
        // for writes for the life of the thread. Cleared so that a NULL
        // from readdir can be told apart from an error.
        unsafe { *libc::__errno_location() = 0 };
        // SAFETY: `stream` is the open DIR* from fdopendir, used by this
        // thread only and not yet closed.
        let ent = unsafe { libc::readdir(stream) };
        if ent.is_null() {
            let e = io::Error::last_os_error();
            break match e.raw_os_error() {
                Some(0) | None => Ok(()),
                Some(_) => Err(e),
            };
        }
        // SAFETY: readdir returned a valid dirent whose d_name is a
        // NUL-terminated string, valid until the next readdir on `stream`;
        // we copy it out before that.
        let name = unsafe { CStr::from_ptr((*ent).d_name.as_ptr()) }.to_bytes();
        if name != b"." && name != b".." {
            names.push(name.to_vec());
        }
    };
    // SAFETY: `stream` is open and closed exactly once, here; this also
    // closes the fd it owns.
    unsafe { libc::closedir(stream) };
    result.map(|()| names)
}

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
    use std::os::fd::AsRawFd;
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
