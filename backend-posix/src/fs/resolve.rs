//! Path resolution, confined or not.
//!
//! A confined directory must never let a path resolve outside it. Linux
//! (5.6+) enforces that in the kernel: `openat2` with `RESOLVE_BENEATH`
//! fails with `EXDEV` when `..`, an absolute path or a symlink would leave
//! the directory, and `RESOLVE_NO_MAGICLINKS` refuses `/proc`-style links.
//! Where `openat2` is missing, [`walk`] does the same in user space: one
//! component at a time with `openat(O_PATH | O_NOFOLLOW)`, expanding
//! symlinks itself (at most [`MAX_SYMLINKS`]) and keeping the chain of open
//! directories, so `..` pops back to the previous one and can never rise
//! above the root.
//!
//! Operations that act on a name in a directory (mkdir, unlink, rename,
//! symlink, lstat) resolve the parent this way and then act on the last
//! component relative to the parent's fd, so the last component is never
//! followed.

use std::collections::VecDeque;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, OnceLock};

use weft_core::{Error, ErrorKind, FsError, Result};

use super::sys::{self, O_PATH};

/// The most symlinks one resolution may expand (Linux's own limit).
pub(super) const MAX_SYMLINKS: u32 = 40;

/// Attempts when `openat2` reports a concurrent rename (`EAGAIN`).
const OPENAT2_ATTEMPTS: u32 = 64;

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

/// The error for a path that would leave its confined directory.
pub(super) fn escape() -> Error {
    Error::msg(
        ErrorKind::Fs(FsError::PermissionDenied),
        "the path leads outside the directory",
    )
}

/// Whether the kernel has `openat2` (and a seccomp filter lets us use it).
fn have_openat2() -> bool {
    static HAVE: OnceLock<bool> = OnceLock::new();
    *HAVE.get_or_init(|| match sys::openat2(libc::AT_FDCWD, c"/", O_PATH, 0, 0) {
        Ok(_) => true,
        Err(e) => !matches!(e.raw_os_error(), Some(libc::ENOSYS) | Some(libc::EPERM)),
    })
}

/// A `.` for the empty path: `openat` on `""` is `ENOENT`.
fn nonempty(path: &[u8]) -> &[u8] {
    if path.is_empty() {
        b"."
    } else {
        path
    }
}

impl Resolver {
    /// Opens `path` with `flags` (`O_CLOEXEC` is added; `mode` is used with
    /// `O_CREAT`), following symlinks — within the root, if confined.
    pub(super) fn open(&self, path: &[u8], flags: libc::c_int, mode: u32) -> Result<OwnedFd> {
        let path = nonempty(path);
        let c = sys::cstr(path)?;
        if !self.confined {
            return Ok(sys::openat(self.root.raw(), &c, flags, mode)?);
        }
        if self.force_walker || !have_openat2() {
            return walk(self.root.raw(), path, flags, mode);
        }
        let mut attempts = 0;
        loop {
            match sys::openat2(self.root.raw(), &c, flags, mode, BENEATH) {
                Ok(fd) => return Ok(fd),
                Err(e) => match e.raw_os_error() {
                    Some(libc::EXDEV) => return Err(escape()),
                    Some(libc::EAGAIN) if attempts < OPENAT2_ATTEMPTS => attempts += 1,
                    _ => return Err(Error::from(e)),
                },
            }
        }
    }

    /// Resolves the directory holding `path`'s last component and returns
    /// it with that component. A path without a usable last component
    /// (`""`, `"/"`, one ending in `.` or `..`) resolves as a whole, with
    /// `.` as the component, so that `..` is checked like any other path.
    pub(super) fn parent(&self, path: &str) -> Result<(OwnedFd, CString)> {
        let dir_flags = O_PATH | libc::O_DIRECTORY;
        match split(path) {
            Some((parent, leaf)) if leaf != "." && leaf != ".." => {
                let leaf = sys::cstr(leaf.as_bytes())?;
                Ok((self.open(parent.as_bytes(), dir_flags, 0)?, leaf))
            }
            _ => Ok((self.open(path.as_bytes(), dir_flags, 0)?, c".".to_owned())),
        }
    }
}

/// Splits off the last component, as `weft_core::fs::Path::split` does.
pub(super) fn split(path: &str) -> Option<(&str, &str)> {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return None;
    }
    match trimmed.rfind('/') {
        None => Some(("", trimmed)),
        Some(i) => {
            let parent = trimmed[..i].trim_end_matches('/');
            Some((
                if parent.is_empty() { "/" } else { parent },
                &trimmed[i + 1..],
            ))
        }
    }
}

/// Resolves `path` below `root` one component at a time and opens the
/// result with `flags` (see the module docs). Never follows a symlink in
/// the kernel: each is read and its target spliced into the components
/// still to walk.
pub(super) fn walk(root: RawFd, path: &[u8], flags: libc::c_int, mode: u32) -> Result<OwnedFd> {
    if path.first() == Some(&b'/') {
        return Err(escape());
    }
    if path.len() >= libc::PATH_MAX as usize {
        // As the kernel would say for the whole path.
        return Err(Error::from(io::Error::from_raw_os_error(
            libc::ENAMETOOLONG,
        )));
    }
    let mut todo: VecDeque<Vec<u8>> = components(path).collect();
    let mut trailing_slash = path.ends_with(b"/");
    // The directories entered so far; the last is the current one, and an
    // empty chain means the root itself.
    let mut chain: Vec<OwnedFd> = Vec::new();
    let mut links = 0u32;
    loop {
        let cur = chain.last().map_or(root, |fd| fd.as_raw_fd());
        let Some(name) = todo.pop_front() else {
            // Ended on a directory already entered (or the root): open it.
            return Ok(sys::openat(cur, c".", flags, mode)?);
        };
        if name == b".." {
            chain.pop().ok_or_else(escape)?;
            continue;
        }
        let c = sys::cstr(&name)?;
        let last = todo.is_empty();
        let opened = if last {
            let mut f = flags | libc::O_NOFOLLOW;
            if trailing_slash {
                if flags & libc::O_CREAT != 0 {
                    return Err(Error::from(io::Error::from_raw_os_error(libc::EISDIR)));
                }
                f |= libc::O_DIRECTORY;
            }
            sys::openat(cur, &c, f, mode)
        } else {
            sys::openat(cur, &c, O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW, 0)
        };
        let symlink = match opened {
            // With O_PATH | O_NOFOLLOW a symlink opens as itself.
            Ok(fd) if last && flags & O_PATH != 0 => {
                let st = sys::fstat(fd.as_raw_fd())?;
                if st.st_mode & libc::S_IFMT != libc::S_IFLNK {
                    return Ok(fd);
                }
                true
            }
            Ok(fd) if last => return Ok(fd),
            Ok(fd) => {
                chain.push(fd);
                false
            }
            // O_NOFOLLOW on a symlink: ELOOP, or ENOTDIR with O_DIRECTORY.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR)) => {
                if !sys::is_symlink(cur, &c) {
                    return Err(Error::from(e));
                }
                true
            }
            Err(e) => return Err(Error::from(e)),
        };
        if !symlink {
            continue;
        }
        links += 1;
        if links > MAX_SYMLINKS {
            return Err(Error::from(io::Error::from_raw_os_error(libc::ELOOP)));
        }
        let target = match sys::readlinkat(cur, &c) {
            Ok(t) => t,
            // Replaced by a non-link since we looked: look again.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                todo.push_front(name);
                continue;
            }
            Err(e) => return Err(Error::from(e)),
        };
        if target.first() == Some(&b'/') {
            return Err(escape());
        }
        if last && target.ends_with(b"/") {
            trailing_slash = true;
        }
        for part in components(&target).collect::<Vec<_>>().into_iter().rev() {
            todo.push_front(part);
        }
    }
}

/// The components of `path`, without empty ones and `.`.
fn components(path: &[u8]) -> impl Iterator<Item = Vec<u8>> + '_ {
    path.split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .map(<[u8]>::to_vec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_core::ErrorKind;

    #[test]
    fn split_like_core() {
        let cases: [(&str, Option<(&str, &str)>); 8] = [
            ("foo/bar", Some(("foo", "bar"))),
            ("/foo/bar//baz/", Some(("/foo/bar", "baz"))),
            ("bar", Some(("", "bar"))),
            ("/bar", Some(("/", "bar"))),
            ("./", Some(("", "."))),
            ("a/..", Some(("a", ".."))),
            ("", None),
            ("///", None),
        ];
        for (path, want) in cases {
            assert_eq!(split(path), want, "{path:?}");
        }
    }

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
