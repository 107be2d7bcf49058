//! Path resolution on io_uring, with weft-core's shared rules
//! ([`weft_core::fs::resolve`]): the unconfined `fs` opens with
//! `IORING_OP_OPENAT` from the working directory; a confined directory
//! opens with `IORING_OP_OPENAT2` and `RESOLVE_BENEATH |
//! RESOLVE_NO_MAGICLINKS`, or — when forced, for tests — with the shared
//! user-space walker, whose steps here are `OPENAT(O_PATH | O_NOFOLLOW)`
//! and `STATX` SQEs and a `readlinkat` on a system thread.
//!
//! Trees are removed with the shared [`tree::remove_tree`], its `unlinkat`
//! calls through the ring and its directory listings on a system thread.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use weft_core::fs::resolve::{self as shared, At, Beneath, Limit, Step, Walker};
use weft_core::fs::tree::{Listed, Remover, Unlinked};
use weft_core::{Error, Result};

use super::sys;
use crate::ops::path::{self, DirFd};

const BENEATH: u64 = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;

/// The directory paths are resolved from.
#[derive(Clone, Debug)]
pub(super) enum Root {
    /// The process's working directory, whatever it is at the time
    /// (`AT_FDCWD`): the root of the unconfined `fs`.
    Cwd,
    /// An open directory (`O_PATH`), shared by the `Dir`s that use it.
    Fd(Arc<OwnedFd>),
}

impl Root {
    pub(super) fn dir_fd(&self) -> DirFd<'_> {
        match self {
            Root::Cwd => DirFd::Cwd,
            Root::Fd(fd) => DirFd::Fd(fd.as_fd()),
        }
    }
}

/// A directory an operation on a name acts in: the root itself, or a
/// directory opened below it.
pub(super) enum Parent {
    Root(Root),
    Opened(OwnedFd),
}

impl Parent {
    pub(super) fn dir_fd(&self) -> DirFd<'_> {
        match self {
            Parent::Root(r) => r.dir_fd(),
            Parent::Opened(fd) => DirFd::Fd(fd.as_fd()),
        }
    }

    /// The raw fd, for calls on a system thread (which hold the parent
    /// until they return).
    pub(super) fn raw(&self) -> RawFd {
        match self.dir_fd() {
            DirFd::Cwd => libc::AT_FDCWD,
            DirFd::Fd(fd) => fd.as_raw_fd(),
        }
    }
}

/// How a directory resolves paths: from which root, and whether confined.
#[derive(Clone, Debug)]
pub(super) struct Resolver {
    pub(super) root: Root,
    pub(super) confined: bool,
    /// Use the user-space walker instead of `openat2` (tests).
    pub(super) force_walker: bool,
}

impl Resolver {
    /// Opens `path` with `flags` (`O_CLOEXEC` is added; `mode` is used with
    /// `O_CREAT`), following symlinks — within the root, if confined.
    pub(super) fn open(&self, path: &[u8], flags: i32, mode: u32) -> Result<OwnedFd> {
        let path = shared::nonempty(path);
        let c = sys::cstr(path)?;
        let root = self.root.dir_fd();
        if !self.confined {
            return path::openat(root, &c, flags, mode);
        }
        if self.force_walker {
            let w = RingWalker { root, flags, mode };
            return shared::walk(&w, path);
        }
        shared::retry_beneath(|| match path::openat2(root, &c, flags, mode, BENEATH) {
            Ok(fd) => Beneath::Done(fd),
            Err(e) => match e.raw_os_error() {
                Some(libc::EXDEV) => Beneath::Escaped,
                Some(libc::EAGAIN) => Beneath::Busy(e),
                _ => Beneath::Failed(e),
            },
        })
    }

    /// Resolves the directory holding `path`'s last component and returns
    /// it with that component (see [`shared::parent_and_leaf`]). A name
    /// directly in the root needs no resolution: the root is the parent.
    pub(super) fn parent(&self, path: &str) -> Result<(Parent, CString)> {
        let (dir, leaf) = shared::parent_and_leaf(path);
        let leaf = sys::cstr(leaf.as_bytes())?;
        if dir.is_empty() {
            return Ok((Parent::Root(self.root.clone()), leaf));
        }
        let fd = self.open(dir.as_bytes(), libc::O_PATH | libc::O_DIRECTORY, 0)?;
        Ok((Parent::Opened(fd), leaf))
    }
}

/// The walker's steps as SQEs.
struct RingWalker<'a> {
    root: DirFd<'a>,
    flags: i32,
    mode: u32,
}

fn at_fd<'a>(root: DirFd<'a>, at: At<'a, OwnedFd>) -> DirFd<'a> {
    match at {
        At::Root => root,
        At::Dir(fd) => DirFd::Fd(fd.as_fd()),
    }
}

/// Whether `name` in `dir` is a symlink (not following it).
fn is_symlink(dir: DirFd<'_>, name: &std::ffi::CStr) -> Result<bool> {
    match path::statx(dir, name, libc::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(u32::from(st.stx_mode) & libc::S_IFMT == libc::S_IFLNK),
        Err(e) if e.is_cancelled() => Err(e),
        Err(_) => Ok(false),
    }
}

/// `O_NOFOLLOW` on a symlink fails with `ELOOP`, or `ENOTDIR` with
/// `O_DIRECTORY`: tells that apart from a real error.
fn symlink_or<T>(dir: DirFd<'_>, name: &std::ffi::CStr, e: Error) -> Result<Step<T>> {
    if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR)) && is_symlink(dir, name)?
    {
        return Ok(Step::Symlink);
    }
    Err(e)
}

impl Walker for RingWalker<'_> {
    type Dir = OwnedFd;
    type Out = OwnedFd;
    const PATH_MAX: usize = libc::PATH_MAX as usize;

    fn enter(&self, at: At<'_, OwnedFd>, name: &[u8]) -> Result<Step<OwnedFd>> {
        let (dir, c) = (at_fd(self.root, at), sys::cstr(name)?);
        let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW;
        match path::openat(dir, &c, flags, 0) {
            Ok(fd) => Ok(Step::Opened(fd)),
            Err(e) => symlink_or(dir, &c, e),
        }
    }

    fn open_last(&self, at: At<'_, OwnedFd>, name: &[u8], dir_only: bool) -> Result<Step<OwnedFd>> {
        let (dir, c) = (at_fd(self.root, at), sys::cstr(name)?);
        let mut flags = self.flags | libc::O_NOFOLLOW;
        if dir_only {
            if self.flags & libc::O_CREAT != 0 {
                return Err(Error::from(std::io::Error::from_raw_os_error(libc::EISDIR)));
            }
            flags |= libc::O_DIRECTORY;
        }
        match path::openat(dir, &c, flags, self.mode) {
            // With O_PATH | O_NOFOLLOW a symlink opens as itself.
            Ok(fd) if self.flags & libc::O_PATH != 0 => {
                let st = path::statx(DirFd::Fd(fd.as_fd()), c"", libc::AT_EMPTY_PATH)?;
                if u32::from(st.stx_mode) & libc::S_IFMT != libc::S_IFLNK {
                    return Ok(Step::Opened(fd));
                }
                Ok(Step::Symlink)
            }
            Ok(fd) => Ok(Step::Opened(fd)),
            Err(e) => symlink_or(dir, &c, e),
        }
    }

    fn open_here(&self, at: At<'_, OwnedFd>) -> Result<OwnedFd> {
        path::openat(at_fd(self.root, at), c".", self.flags, self.mode)
    }

    /// On a system thread, with a duplicate of the directory (the walk may
    /// be cancelled and drop its own while `readlinkat` runs).
    fn read_link(&self, at: At<'_, OwnedFd>, name: &[u8]) -> Result<Option<Vec<u8>>> {
        let name = sys::cstr(name)?;
        let dir = match at_fd(self.root, at) {
            DirFd::Cwd => None,
            DirFd::Fd(fd) => Some(fd.try_clone_to_owned()?),
        };
        shared::not_cancelled()?;
        let r = weft_core::systhread::run(move || {
            let raw = dir.as_ref().map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
            sys::readlinkat(raw, &name)
        })?;
        match r {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(None),
            Err(e) => Err(Error::from(e)),
        }
    }

    fn limit(&self, limit: Limit) -> Error {
        let errno = match limit {
            Limit::PathTooLong => libc::ENAMETOOLONG,
            Limit::TooManySymlinks => libc::ELOOP,
        };
        Error::from(std::io::Error::from_raw_os_error(errno))
    }
}

/// [`tree::remove_tree`](weft_core::fs::tree::remove_tree)'s steps:
/// `unlinkat` and `openat` through the ring, listings on a system thread.
/// Directories are `Parent`s so the root can be the top one.
pub(super) struct RingRemover;

fn entry_name(name: &[u8]) -> CString {
    CString::new(name).expect("directory entries contain no NUL")
}

impl Remover for RingRemover {
    type Dir = Parent;

    fn unlink(&self, dir: &Parent, name: &[u8]) -> Result<Unlinked> {
        match path::unlinkat(dir.dir_fd(), &entry_name(name), 0) {
            Ok(()) => Ok(Unlinked::Removed),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(Unlinked::Missing(e)),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EISDIR) | Some(libc::EPERM)) => {
                Ok(Unlinked::Directory(e))
            }
            Err(e) => Err(e),
        }
    }

    /// Never through a symlink (`O_NOFOLLOW`), so a directory swapped for a
    /// link mid-walk is not followed.
    fn open_dir(&self, dir: &Parent, name: &[u8]) -> Result<Option<Listed<Parent>>> {
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;
        let fd = match path::openat(dir.dir_fd(), &entry_name(name), flags, 0) {
            Ok(fd) => fd,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTDIR) | Some(libc::ELOOP)) => {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        let listing = fd.try_clone()?;
        shared::not_cancelled()?;
        let names = weft_core::systhread::run(move || sys::read_dir_names(listing))??;
        Ok(Some(Listed {
            dir: Parent::Opened(fd),
            names,
        }))
    }

    fn rmdir(&self, dir: &Parent, name: &[u8]) -> Result<()> {
        path::unlinkat(dir.dir_fd(), &entry_name(name), libc::AT_REMOVEDIR)
    }

    fn not_a_directory(&self) -> Error {
        Error::from(std::io::Error::from_raw_os_error(libc::ENOTDIR))
    }
}
