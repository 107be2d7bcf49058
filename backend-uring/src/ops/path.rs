//! Operations on names in directories, one SQE each: `openat`, `openat2`,
//! `statx`, `mkdirat`, `unlinkat`, `renameat`, `symlinkat`.
//!
//! They name a directory by a borrowed fd (or the working directory), and
//! paths by C strings the kernel copies when it takes the SQE; a `statx`
//! buffer lives in the calling frame, which the call does not leave before
//! the CQE. None of them names an fd the ring could cancel on close: the
//! directory is borrowed for the whole call, so it cannot be closed
//! meanwhile.
//!
//! **Cancellation.** Every call here *gives* (it creates, removes, renames)
//! or opens: a call that completed although its fiber was cancelled
//! reports its result — an opened fd is returned, owned, never leaked —
//! and the cancellation is reported by the fiber's next suspension point.
//! A call the kernel cancelled (`-ECANCELED`) did nothing and reports
//! `Err(Cancelled)`. Nothing is submitted from an already cancelled fiber.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use io_uring::{opcode, squeue, types};
use weft_core::{Error, Result};

use super::{errno, submit, Done};

/// The directory a path is relative to.
#[derive(Clone, Copy, Debug)]
pub(crate) enum DirFd<'a> {
    /// The process's working directory (`AT_FDCWD`).
    Cwd,
    /// An open directory (`O_PATH` is enough).
    Fd(BorrowedFd<'a>),
}

impl DirFd<'_> {
    fn raw(self) -> RawFd {
        match self {
            DirFd::Cwd => libc::AT_FDCWD,
            DirFd::Fd(fd) => fd.as_raw_fd(),
        }
    }
}

/// The result of a path operation: its non-negative value, else the
/// cancellation (for `-ECANCELED` after a cancel) or the errno.
fn finish(d: Done) -> Result<u32> {
    if d.res >= 0 {
        return Ok(d.res as u32);
    }
    if d.res == -libc::ECANCELED {
        if let Some(why) = d.cancelled {
            return Err(Error::cancelled(why));
        }
    }
    Err(errno(d.res))
}

/// Submits `sqe`, which names only the borrowed directories and paths of
/// one of this module's functions, and waits for its result.
///
/// # Safety
/// As for [`submit`]: what `sqe` names outlives this call.
unsafe fn run(what: &'static str, sqe: squeue::Entry) -> Result<u32> {
    // SAFETY: forwarded from our caller.
    finish(unsafe { submit(what, sqe, -1) }?)
}

/// Wraps the fd an open returned.
fn owned(res: u32) -> OwnedFd {
    // SAFETY: a successful open returns a new fd that nobody else owns;
    // wrapping it at once means it is closed on every later path.
    unsafe { OwnedFd::from_raw_fd(res as RawFd) }
}

/// `openat(2)` (`IORING_OP_OPENAT`); `O_CLOEXEC` is added, `mode` is used
/// with `O_CREAT`.
pub(crate) fn openat(dir: DirFd<'_>, path: &CStr, flags: i32, mode: u32) -> Result<OwnedFd> {
    let sqe = opcode::OpenAt::new(types::Fd(dir.raw()), path.as_ptr())
        .flags(flags | libc::O_CLOEXEC)
        .mode(mode)
        .build();
    // SAFETY: `dir` and `path` are borrowed for the whole call.
    unsafe { run("io_uring openat", sqe) }.map(owned)
}

/// `openat2(2)` (`IORING_OP_OPENAT2`) with `resolve` flags; `O_CLOEXEC`
/// is added, `mode` is used with `O_CREAT` (the kernel refuses a mode
/// without it).
pub(crate) fn openat2(
    dir: DirFd<'_>,
    path: &CStr,
    flags: i32,
    mode: u32,
    resolve: u64,
) -> Result<OwnedFd> {
    let creating = flags & (libc::O_CREAT | libc::O_TMPFILE) != 0;
    let how = types::OpenHow::new()
        .flags((flags | libc::O_CLOEXEC) as u64)
        .mode(if creating { u64::from(mode) } else { 0 })
        .resolve(resolve);
    let sqe = opcode::OpenAt2::new(types::Fd(dir.raw()), path.as_ptr(), &how).build();
    // SAFETY: `dir`, `path` and `how` are borrowed or owned by this frame
    // for the whole call.
    unsafe { run("io_uring openat2", sqe) }.map(owned)
}

/// `statx(2)` (`IORING_OP_STATX`) for the basic fields; `flags` may hold
/// `AT_SYMLINK_NOFOLLOW` or `AT_EMPTY_PATH` (with an empty `path`).
pub(crate) fn statx(dir: DirFd<'_>, path: &CStr, flags: i32) -> Result<libc::statx> {
    statx_raw(dir.raw(), path, flags)
}

/// [`statx`] on a raw directory fd, for [`FdRef`](super::FdRef)'s own use.
pub(super) fn statx_raw(dir: RawFd, path: &CStr, flags: i32) -> Result<libc::statx> {
    // SAFETY: a zeroed `statx` is a valid value of this plain C struct.
    let mut buf: libc::statx = unsafe { std::mem::zeroed() };
    let ptr = (&mut buf as *mut libc::statx).cast::<types::statx>();
    let sqe = opcode::Statx::new(types::Fd(dir), path.as_ptr(), ptr)
        .flags(flags)
        .mask(libc::STATX_BASIC_STATS)
        .build();
    // SAFETY: `path` is borrowed and `buf` owned by this frame for the
    // whole call, which returns only after the CQE (when the kernel has
    // written `buf`); the caller keeps `dir` open.
    unsafe { run("io_uring statx", sqe) }?;
    Ok(buf)
}

/// `mkdirat(2)` (`IORING_OP_MKDIRAT`).
pub(crate) fn mkdirat(dir: DirFd<'_>, name: &CStr, mode: u32) -> Result<()> {
    let sqe = opcode::MkDirAt::new(types::Fd(dir.raw()), name.as_ptr())
        .mode(mode)
        .build();
    // SAFETY: `dir` and `name` are borrowed for the whole call.
    unsafe { run("io_uring mkdirat", sqe) }.map(drop)
}

/// `unlinkat(2)` (`IORING_OP_UNLINKAT`); `flags` is `0` or `AT_REMOVEDIR`.
pub(crate) fn unlinkat(dir: DirFd<'_>, name: &CStr, flags: i32) -> Result<()> {
    let sqe = opcode::UnlinkAt::new(types::Fd(dir.raw()), name.as_ptr())
        .flags(flags)
        .build();
    // SAFETY: `dir` and `name` are borrowed for the whole call.
    unsafe { run("io_uring unlinkat", sqe) }.map(drop)
}

/// `renameat(2)` (`IORING_OP_RENAMEAT`).
pub(crate) fn renameat(
    from_dir: DirFd<'_>,
    from: &CStr,
    to_dir: DirFd<'_>,
    to: &CStr,
) -> Result<()> {
    let sqe = opcode::RenameAt::new(
        types::Fd(from_dir.raw()),
        from.as_ptr(),
        types::Fd(to_dir.raw()),
        to.as_ptr(),
    )
    .build();
    // SAFETY: both directories and both names are borrowed for the whole
    // call.
    unsafe { run("io_uring renameat", sqe) }.map(drop)
}

/// `symlinkat(2)` (`IORING_OP_SYMLINKAT`): creates `name` in `dir`
/// pointing to `target`.
pub(crate) fn symlinkat(target: &CStr, dir: DirFd<'_>, name: &CStr) -> Result<()> {
    let sqe = opcode::SymlinkAt::new(types::Fd(dir.raw()), target.as_ptr(), name.as_ptr()).build();
    // SAFETY: `target`, `dir` and `name` are borrowed for the whole call.
    unsafe { run("io_uring symlinkat", sqe) }.map(drop)
}
