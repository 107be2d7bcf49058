//! Thin, blocking wrappers over the `*at` system calls the filesystem uses
//! (all of them on the POSIX backend; on io_uring, those with no opcode),
//! and the `fs` and `cwd` capabilities a run starts with.
//!
//! Directory arguments are raw fds because one of them may be `AT_FDCWD`;
//! every caller keeps the fd it passes open (an `OwnedFd` or an
//! `Arc<OwnedFd>` it holds) for the duration of the call. All wrappers
//! retry `EINTR`, and every fd they create is close-on-exec.

use std::cell::Cell;
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use weft_core::fs::{Dir, DirBackend, FileKind, Stat};
use weft_core::{Error, ErrorKind, FsError, Result};

/// `O_PATH` where the platform has it; elsewhere a read-only open is the
/// closest (and needs read permission).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub const O_PATH: libc::c_int = libc::O_PATH;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub const O_PATH: libc::c_int = libc::O_RDONLY;

thread_local! {
    static FORCE_WALKER: Cell<bool> = const { Cell::new(false) };
}

/// Makes directories created by a run on this thread (of either Linux
/// backend) resolve confined paths with the user-space walker even where
/// `openat2` exists, so that tests can check both. Directories opened from
/// them inherit the choice.
#[doc(hidden)]
pub fn force_walker(on: bool) {
    FORCE_WALKER.with(|f| f.set(on));
}

/// The `fs` and `cwd` capabilities for a new run. `make(cwd, force_walker)`
/// builds a backend's directory: the unconfined `fs` from `AT_FDCWD` when
/// `cwd` is `None`, else a directory confined to the opened working
/// directory. Opening it is a blocking `openat`: no fiber runs yet.
pub fn dirs(make: impl Fn(Option<OwnedFd>, bool) -> Arc<dyn DirBackend>) -> (Dir, Dir) {
    let force_walker = FORCE_WALKER.with(Cell::get);
    let fs = Dir::new("fs", make(None, force_walker));
    let cwd = match openat(libc::AT_FDCWD, c".", O_PATH | libc::O_DIRECTORY, 0) {
        Ok(fd) => Dir::new("cwd", make(Some(fd), force_walker)),
        Err(e) => Dir::unavailable(
            "cwd",
            format!("the working directory could not be opened: {e}"),
        ),
    };
    (fs, cwd)
}

/// The path as a C string; a NUL byte makes it an invalid path.
pub fn cstr(path: &[u8]) -> Result<CString> {
    CString::new(path).map_err(|_| {
        Error::msg(
            ErrorKind::Fs(FsError::InvalidPath),
            "path contains a NUL byte",
        )
    })
}

/// Runs `f` until it does not fail with `EINTR`, turning `-1` into the
/// OS error.
pub fn retry<T: PartialEq + From<i8>>(mut f: impl FnMut() -> T) -> io::Result<T> {
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

/// `openat(2)`; `mode` is used only with `O_CREAT`.
pub fn openat(dir: RawFd, path: &CStr, flags: libc::c_int, mode: u32) -> io::Result<OwnedFd> {
    let flags = flags | libc::O_CLOEXEC;
    // SAFETY: `path` is a valid NUL-terminated string that outlives the
    // call; `dir` is AT_FDCWD or an fd the caller keeps open. The mode is
    // passed as the variadic `c_uint` argument open expects.
    let fd = retry(|| unsafe { libc::openat(dir, path.as_ptr(), flags, mode as libc::c_uint) })?;
    // SAFETY: openat succeeded, so `fd` is a new descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `openat2(2)` with `resolve` flags; `ENOSYS` where the kernel (or the
/// platform) lacks it.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn openat2(
    dir: RawFd,
    path: &CStr,
    flags: libc::c_int,
    mode: u32,
    resolve: u64,
) -> io::Result<OwnedFd> {
    let creating = flags & (libc::O_CREAT | libc::O_TMPFILE) != 0;
    // `open_how` is non-exhaustive in libc, so it is built from zeroes.
    // SAFETY: open_how is plain integers; all-zero is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.mode = if creating { u64::from(mode) } else { 0 };
    how.resolve = resolve;
    let fd = retry(|| {
        // SAFETY: `path` is NUL-terminated and `how` a fully initialised
        // open_how, both alive for the call, whose size we pass; `dir` is
        // AT_FDCWD or an fd the caller keeps open.
        unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir,
                path.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        }
    })?;
    // SAFETY: openat2 succeeded, so `fd` (which fits an int) is a new
    // descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub fn openat2(_: RawFd, _: &CStr, _: libc::c_int, _: u32, _: u64) -> io::Result<OwnedFd> {
    Err(io::Error::from_raw_os_error(libc::ENOSYS))
}

/// Turns a `0`/`-1` result into `io::Result<()>`, retrying `EINTR`.
fn unit(f: impl FnMut() -> libc::c_int) -> io::Result<()> {
    retry(f).map(|_| ())
}

/// `mkdirat(2)`.
pub fn mkdirat(dir: RawFd, name: &CStr, perm: u32) -> io::Result<()> {
    // SAFETY: `name` is NUL-terminated and alive; `dir` is kept open by the caller.
    unit(|| unsafe { libc::mkdirat(dir, name.as_ptr(), perm as libc::mode_t) })
}

/// `unlinkat(2)`; `flags` is `0` or `AT_REMOVEDIR`.
pub fn unlinkat(dir: RawFd, name: &CStr, flags: libc::c_int) -> io::Result<()> {
    // SAFETY: `name` is NUL-terminated and alive; `dir` is kept open by the caller.
    unit(|| unsafe { libc::unlinkat(dir, name.as_ptr(), flags) })
}

/// `renameat(2)`.
pub fn renameat(from_dir: RawFd, from: &CStr, to_dir: RawFd, to: &CStr) -> io::Result<()> {
    // SAFETY: both names are NUL-terminated and alive; both directory fds
    // are kept open by the caller.
    unit(|| unsafe { libc::renameat(from_dir, from.as_ptr(), to_dir, to.as_ptr()) })
}

/// `symlinkat(2)`: creates `name` in `dir` pointing to `target`.
pub fn symlinkat(target: &CStr, dir: RawFd, name: &CStr) -> io::Result<()> {
    // SAFETY: both strings are NUL-terminated and alive; `dir` is kept open
    // by the caller.
    unit(|| unsafe { libc::symlinkat(target.as_ptr(), dir, name.as_ptr()) })
}

/// `readlinkat(2)`, growing the buffer until the target fits.
pub fn readlinkat(dir: RawFd, name: &CStr) -> io::Result<Vec<u8>> {
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

/// `fstatat(2)`; `flags` may hold `AT_SYMLINK_NOFOLLOW` or `AT_EMPTY_PATH`.
pub fn fstatat(dir: RawFd, name: &CStr, flags: libc::c_int) -> io::Result<libc::stat> {
    // SAFETY: a zeroed `stat` is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is valid for writes; `name` is NUL-terminated; `dir` is
    // kept open by the caller.
    unit(|| unsafe { libc::fstatat(dir, name.as_ptr(), &mut st, flags) })?;
    Ok(st)
}

/// `fstat(2)` (works on `O_PATH` descriptors too).
pub fn fstat(fd: RawFd) -> io::Result<libc::stat> {
    // SAFETY: a zeroed `stat` is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is valid for writes; `fd` is kept open by the caller.
    unit(|| unsafe { libc::fstat(fd, &mut st) })?;
    Ok(st)
}

/// Whether `name` in `dir` is a symlink (not following it).
pub fn is_symlink(dir: RawFd, name: &CStr) -> bool {
    fstatat(dir, name, libc::AT_SYMLINK_NOFOLLOW)
        .map(|st| st.st_mode & libc::S_IFMT == libc::S_IFLNK)
        .unwrap_or(false)
}

/// Sets errno to 0, so that a NULL from `readdir` can be told apart from
/// an error.
fn clear_errno() {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    // SAFETY: __errno_location returns this thread's errno slot, valid for
    // writes for the life of the thread.
    unsafe {
        *libc::__errno_location() = 0
    };
}

/// The names in the directory open (for reading) as `dir`, without `.` and
/// `..`. Consumes `dir`: the directory stream owns and closes it.
pub fn read_dir_names(dir: OwnedFd) -> io::Result<Vec<Vec<u8>>> {
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
        clear_errno();
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

/// Closes `fd`, reporting the error `Drop` would ignore. `EINTR` counts as
/// closed (on Linux the fd is released regardless).
pub fn close(fd: OwnedFd) -> io::Result<()> {
    let raw = fd.into_raw_fd();
    // SAFETY: we own `raw` (just released from its OwnedFd) and close it
    // exactly once.
    if unsafe { libc::close(raw) } == -1 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

/// The portable [`Stat`] of a `struct stat`.
#[allow(clippy::unnecessary_cast)] // the field types differ between platforms
pub fn to_stat(st: &libc::stat) -> Stat {
    let kind = FileKind::from_mode(st.st_mode as u32);
    Stat {
        kind,
        size: st.st_size as u64,
        perm: (st.st_mode & 0o7777) as u32,
        nlink: st.st_nlink as u64,
        ino: st.st_ino as u64,
        dev: st.st_dev as u64,
        uid: st.st_uid,
        gid: st.st_gid,
        atime: Stat::unix_time(st.st_atime as i64, st.st_atime_nsec as i64),
        mtime: Stat::unix_time(st.st_mtime as i64, st.st_mtime_nsec as i64),
        ctime: Stat::unix_time(st.st_ctime as i64, st.st_ctime_nsec as i64),
    }
}
