//! Path resolution, confined or not.
//!
//! The rules are weft-core's ([`weft_core::fs::resolve`]), shared with the
//! io_uring backend: `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`
//! for confined directories where the kernel has it, else the user-space
//! walker, whose component steps here are blocking `openat(O_PATH |
//! O_NOFOLLOW)`, `fstatat` and `readlinkat` calls (this module runs on a
//! system thread).
//!
//! Operations that act on a name in a directory (mkdir, unlink, rename,
//! symlink, lstat) resolve the parent and then act on the last component
//! relative to the parent's fd, so the last component is never followed.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, OnceLock};

use weft_core::fs::resolve::{self as shared, At, Beneath, Limit, Step, Walker};
use weft_core::{Error, Result};

use super::sys::{self, O_PATH};

#[cfg(any(target_os = "linux", target_os = "android"))]
const BENEATH: u64 = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const BENEATH: u64 = 0;

/// The directory paths are resolved from.
#[derive(Clone, Debug)]
pub(super) enum Root {
    /// The process's working directory, whatever it is at the time
    /// (`AT_FDCWD`): the root of the unconfined `fs`.
    Cwd,
    /// An open directory (`O_PATH`).
    Fd(Arc<OwnedFd>),
}

impl Root {
    fn raw(&self) -> RawFd {
        match self {
            Root::Cwd => libc::AT_FDCWD,
            Root::Fd(fd) => fd.as_raw_fd(),
        }
    }
}

/// How a directory resolves paths: from which root, and whether confined.
#[derive(Clone, Debug)]
pub(super) struct Resolver {
    pub(super) root: Root,
    pub(super) confined: bool,
    /// Use the user-space walker even where `openat2` exists (tests).
    pub(super) force_walker: bool,
}

/// Whether the kernel has `openat2` (and a seccomp filter lets us use it).
fn have_openat2() -> bool {
    static HAVE: OnceLock<bool> = OnceLock::new();
    *HAVE.get_or_init(|| match sys::openat2(libc::AT_FDCWD, c"/", O_PATH, 0, 0) {
        Ok(_) => true,
        Err(e) => !matches!(e.raw_os_error(), Some(libc::ENOSYS) | Some(libc::EPERM)),
    })
}

impl Resolver {
    /// Opens `path` with `flags` (`O_CLOEXEC` is added; `mode` is used with
    /// `O_CREAT`), following symlinks — within the root, if confined.
    pub(super) fn open(&self, path: &[u8], flags: libc::c_int, mode: u32) -> Result<OwnedFd> {
        let path = shared::nonempty(path);
        let c = sys::cstr(path)?;
        if !self.confined {
            return Ok(sys::openat(self.root.raw(), &c, flags, mode)?);
        }
        if self.force_walker || !have_openat2() {
            return walk(self.root.raw(), path, flags, mode);
        }
        shared::retry_beneath(
            || match sys::openat2(self.root.raw(), &c, flags, mode, BENEATH) {
                Ok(fd) => Beneath::Done(fd),
                Err(e) => match e.raw_os_error() {
                    Some(libc::EXDEV) => Beneath::Escaped,
                    Some(libc::EAGAIN) => Beneath::Busy(Error::from(e)),
                    _ => Beneath::Failed(Error::from(e)),
                },
            },
        )
    }

    /// Resolves the directory holding `path`'s last component and returns
    /// it with that component (see [`shared::parent_and_leaf`]).
    pub(super) fn parent(&self, path: &str) -> Result<(OwnedFd, CString)> {
        let (dir, leaf) = shared::parent_and_leaf(path);
        let leaf = sys::cstr(leaf.as_bytes())?;
        Ok((
            self.open(dir.as_bytes(), O_PATH | libc::O_DIRECTORY, 0)?,
            leaf,
        ))
    }
}

/// Resolves `path` below `root` with the shared walker, its steps made
/// with blocking `*at` calls, and opens the result with `flags`.
pub(super) fn walk(root: RawFd, path: &[u8], flags: libc::c_int, mode: u32) -> Result<OwnedFd> {
    shared::walk(&SysWalker { root, flags, mode }, path)
}

/// The walker's steps as blocking system calls.
struct SysWalker {
    root: RawFd,
    flags: libc::c_int,
    mode: u32,
}

impl SysWalker {
    fn raw(&self, at: At<'_, OwnedFd>) -> RawFd {
        match at {
            At::Root => self.root,
            At::Dir(fd) => fd.as_raw_fd(),
        }
    }
}

/// `O_NOFOLLOW` on a symlink fails with `ELOOP`, or `ENOTDIR` with
/// `O_DIRECTORY`: tells that apart from a real error.
fn symlink_or<T>(dir: RawFd, name: &CStr, e: io::Error) -> Result<Step<T>> {
    if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR))
        && sys::is_symlink(dir, name)
    {
        return Ok(Step::Symlink);
    }
    Err(Error::from(e))
}

impl Walker for SysWalker {
    type Dir = OwnedFd;
    type Out = OwnedFd;
    const PATH_MAX: usize = libc::PATH_MAX as usize;

    fn enter(&self, at: At<'_, OwnedFd>, name: &[u8]) -> Result<Step<OwnedFd>> {
        let (dir, c) = (self.raw(at), sys::cstr(name)?);
        let flags = O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW;
        match sys::openat(dir, &c, flags, 0) {
            Ok(fd) => Ok(Step::Opened(fd)),
            Err(e) => symlink_or(dir, &c, e),
        }
    }

    fn open_last(&self, at: At<'_, OwnedFd>, name: &[u8], dir_only: bool) -> Result<Step<OwnedFd>> {
        let (dir, c) = (self.raw(at), sys::cstr(name)?);
        let mut flags = self.flags | libc::O_NOFOLLOW;
        if dir_only {
            if self.flags & libc::O_CREAT != 0 {
                return Err(Error::from(io::Error::from_raw_os_error(libc::EISDIR)));
            }
            flags |= libc::O_DIRECTORY;
        }
        match sys::openat(dir, &c, flags, self.mode) {
            // With O_PATH | O_NOFOLLOW a symlink opens as itself.
            Ok(fd) if self.flags & O_PATH != 0 => {
                let st = sys::fstat(fd.as_raw_fd())?;
                if st.st_mode & libc::S_IFMT != libc::S_IFLNK {
                    return Ok(Step::Opened(fd));
                }
                Ok(Step::Symlink)
            }
            Ok(fd) => Ok(Step::Opened(fd)),
            Err(e) => symlink_or(dir, &c, e),
        }
    }

    fn open_here(&self, at: At<'_, OwnedFd>) -> Result<OwnedFd> {
        Ok(sys::openat(self.raw(at), c".", self.flags, self.mode)?)
    }

    fn read_link(&self, at: At<'_, OwnedFd>, name: &[u8]) -> Result<Option<Vec<u8>>> {
        match sys::readlinkat(self.raw(at), &sys::cstr(name)?) {
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
        Error::from(io::Error::from_raw_os_error(errno))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_core::{ErrorKind, FsError};

    /// A fresh directory, opened `O_PATH`, removed on drop.
    struct Tmp(std::path::PathBuf, OwnedFd);

    impl Tmp {
        fn new(name: &str) -> Tmp {
            let dir = std::env::temp_dir().join(format!("weft-walk-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(dir.join("a/b")).unwrap();
            std::fs::write(dir.join("a/file"), "f").unwrap();
            let c = CString::new(dir.to_str().unwrap()).unwrap();
            let fd = sys::openat(libc::AT_FDCWD, &c, O_PATH | libc::O_DIRECTORY, 0).unwrap();
            Tmp(dir, fd)
        }

        fn walk(&self, path: &str, flags: libc::c_int) -> Result<OwnedFd> {
            walk(self.1.as_raw_fd(), path.as_bytes(), flags, 0o600)
        }
    }

    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn kind(r: Result<OwnedFd>) -> ErrorKind {
        r.map(|_| ()).unwrap_err().kind().clone()
    }

    #[test]
    fn walker_keeps_dotdot_below_the_root() {
        let t = Tmp::new("dotdot");
        let denied = ErrorKind::Fs(FsError::PermissionDenied);
        for p in ["..", "a/../..", "a/b/../../../a", "/", "/etc"] {
            assert_eq!(kind(t.walk(p, O_PATH)), denied, "{p}");
        }
        for p in ["", ".", "a/..", "a/b/../..", "a/./b/..//.."] {
            let fd = t.walk(p, O_PATH | libc::O_DIRECTORY).unwrap();
            let (st, root) = (
                sys::fstat(fd.as_raw_fd()).unwrap(),
                sys::fstat(t.1.as_raw_fd()).unwrap(),
            );
            assert_eq!((st.st_dev, st.st_ino), (root.st_dev, root.st_ino), "{p}");
        }
        assert!(t.walk("a/b/../file", libc::O_RDONLY).is_ok());
    }

    #[test]
    fn walker_follows_links_inside_and_counts_them() {
        let t = Tmp::new("links");
        std::os::unix::fs::symlink("a/b/..", t.0.join("up")).unwrap();
        std::os::unix::fs::symlink("../file", t.0.join("a/b/to-file")).unwrap();
        std::os::unix::fs::symlink("loop", t.0.join("loop")).unwrap();
        std::os::unix::fs::symlink("../../..", t.0.join("a/b/out")).unwrap();
        assert!(t.walk("up/file", libc::O_RDONLY).is_ok());
        assert!(t.walk("a/b/to-file", libc::O_RDONLY).is_ok());
        assert!(t.walk("a/b/to-file", O_PATH).is_ok());
        assert_eq!(
            kind(t.walk("loop", O_PATH)),
            ErrorKind::Fs(FsError::TooManySymlinks)
        );
        assert_eq!(
            kind(t.walk("a/b/out", O_PATH)),
            ErrorKind::Fs(FsError::PermissionDenied)
        );
        // The link itself (O_PATH | O_NOFOLLOW) is never what comes back.
        let fd = t.walk("a/b/to-file", O_PATH).unwrap();
        let st = sys::fstat(fd.as_raw_fd()).unwrap();
        assert_eq!(st.st_mode & libc::S_IFMT, libc::S_IFREG);
    }

    #[test]
    fn walker_trailing_slashes_and_long_paths() {
        let t = Tmp::new("slashes");
        assert_eq!(
            kind(t.walk("a/file/", libc::O_RDONLY)),
            ErrorKind::Fs(FsError::NotADirectory)
        );
        let create = libc::O_RDWR | libc::O_CREAT;
        assert_eq!(
            kind(t.walk("new/", create)),
            ErrorKind::Fs(FsError::IsADirectory)
        );
        assert!(t.walk("a/b/", libc::O_RDONLY).is_ok());
        assert!(t.walk("a/new", create).is_ok());
        let long = "a/".repeat(3000);
        assert_eq!(
            kind(t.walk(&long, O_PATH)),
            ErrorKind::Fs(FsError::InvalidPath)
        );
    }
}
