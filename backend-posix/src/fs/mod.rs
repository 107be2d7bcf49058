//! The POSIX filesystem: directories held as `O_PATH` descriptors, every
//! operation relative to one of them.
//!
//! `cwd` is the working directory, opened once when [`run`](crate::run)
//! starts and confined; `fs` resolves from `AT_FDCWD` without confinement;
//! [`open_dir`](weft_core::fs::Path::open_dir) gives a new confined
//! directory. Confinement is in [`resolve`]: `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_MAGICLINKS)`, or a user-space walker where the kernel lacks
//! it.
//!
//! Directory operations block, so each runs on a system thread with owned
//! copies of what it needs (the directory's `Arc<OwnedFd>`, the path
//! strings); only the calling fiber waits.

use std::any::Any;
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use weft_core::fs::resolve::{self as shared, not_cancelled};
use weft_core::fs::tree::{self, Listed, Remover, Unlinked};
use weft_core::fs::{Create, Dir, DirBackend, FileImpl, OpenOut, Stat};
use weft_core::{Error, Result};

mod file;
mod resolve;
mod stream_read;

use crate::unix::fs::{self as sys, O_PATH};
use file::PosixFile;
use resolve::{Resolver, Root};

/// The `fs` and `cwd` capabilities for a new run.
pub(crate) fn dirs() -> (Dir, Dir) {
    sys::dirs(|cwd, force_walker| {
        Arc::new(PosixDir {
            r: Resolver {
                confined: cwd.is_some(),
                root: cwd.map_or(Root::Cwd, |fd| Root::Fd(Arc::new(fd))),
                force_walker,
            },
        })
    })
}

/// A directory capability on POSIX.
struct PosixDir {
    r: Resolver,
}

impl PosixDir {
    /// Runs `f` with this directory's resolver on a system thread.
    fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Resolver) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        not_cancelled()?;
        let r = self.r.clone();
        weft_core::systhread::run(move || f(&r))?
    }

    /// Runs `op` on `path`'s parent directory and last component.
    fn at_parent<T: Send + 'static>(
        &self,
        path: &str,
        op: impl FnOnce(RawFd, &CStr) -> io::Result<T> + Send + 'static,
    ) -> Result<T> {
        let path = path.to_owned();
        self.blocking(move |r| {
            let (dir, leaf) = r.parent(&path)?;
            Ok(op(dir.as_raw_fd(), &leaf)?)
        })
    }

    fn open_file(&self, path: &str, flags: libc::c_int, mode: u32) -> Result<Box<dyn FileImpl>> {
        let path = path.to_owned();
        let fd = self.blocking(move |r| r.open(path.as_bytes(), flags | libc::O_NOCTTY, mode))?;
        Ok(Box::new(PosixFile::new(fd, flags & libc::O_APPEND != 0)))
    }
}

impl DirBackend for PosixDir {
    fn open_in(&self, path: &str) -> Result<Box<dyn FileImpl>> {
        self.open_file(path, libc::O_RDONLY, 0)
    }

    fn open_out(&self, path: &str, opts: &OpenOut) -> Result<Box<dyn FileImpl>> {
        let (create, perm) = match opts.create {
            Create::Never => (0, 0),
            Create::IfMissing(p) => (libc::O_CREAT, p),
            Create::OrTruncate(p) => (libc::O_CREAT | libc::O_TRUNC, p),
            Create::Exclusive(p) => (libc::O_CREAT | libc::O_EXCL, p),
        };
        let append = if opts.append { libc::O_APPEND } else { 0 };
        self.open_file(path, libc::O_RDWR | create | append, perm)
    }

    fn mkdir(&self, path: &str, perm: u32) -> Result<()> {
        self.at_parent(path, move |dir, leaf| sys::mkdirat(dir, leaf, perm))
    }

    fn rmdir(&self, path: &str) -> Result<()> {
        self.at_parent(path, |dir, leaf| {
            sys::unlinkat(dir, leaf, libc::AT_REMOVEDIR)
        })
    }

    fn unlink(&self, path: &str) -> Result<()> {
        self.at_parent(path, |dir, leaf| sys::unlinkat(dir, leaf, 0))
    }

    fn rename(&self, from: &str, to_dir: &dyn DirBackend, to: &str) -> Result<()> {
        let Some(to_dir) = to_dir.as_any().downcast_ref::<PosixDir>() else {
            return Err(shared::other_backend());
        };
        let (from, to, to_r) = (from.to_owned(), to.to_owned(), to_dir.r.clone());
        self.blocking(move |r| {
            let (from_dir, from_leaf) = r.parent(&from)?;
            let (to_dir, to_leaf) = to_r.parent(&to)?;
            Ok(sys::renameat(
                from_dir.as_raw_fd(),
                &from_leaf,
                to_dir.as_raw_fd(),
                &to_leaf,
            )?)
        })
    }

    fn symlink(&self, path: &str, target: &str) -> Result<()> {
        let target = sys::cstr(target.as_bytes())?;
        self.at_parent(path, move |dir, leaf| sys::symlinkat(&target, dir, leaf))
    }

    fn read_link(&self, path: &str) -> Result<String> {
        shared::link_target(self.at_parent(path, sys::readlinkat)?)
    }

    fn read_dir(&self, path: &str) -> Result<Vec<String>> {
        let path = path.to_owned();
        let names = self.blocking(move |r| {
            let fd = r.open(path.as_bytes(), libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
            Ok(sys::read_dir_names(fd)?)
        })?;
        Ok(names
            .into_iter()
            .map(|n| String::from_utf8_lossy(&n).into_owned())
            .collect())
    }

    fn stat(&self, path: &str, follow: bool) -> Result<Stat> {
        if follow {
            let path = path.to_owned();
            self.blocking(move |r| {
                let fd = r.open(path.as_bytes(), O_PATH, 0)?;
                Ok(sys::to_stat(&sys::fstat(fd.as_raw_fd())?))
            })
        } else {
            self.at_parent(path, |dir, leaf| {
                sys::fstatat(dir, leaf, libc::AT_SYMLINK_NOFOLLOW).map(|st| sys::to_stat(&st))
            })
        }
    }

    fn open_dir(&self, path: &str) -> Result<Arc<dyn DirBackend>> {
        let path = path.to_owned();
        let fd = self.blocking(move |r| r.open(path.as_bytes(), O_PATH | libc::O_DIRECTORY, 0))?;
        Ok(Arc::new(PosixDir {
            r: Resolver {
                root: Root::Fd(Arc::new(fd)),
                confined: true,
                force_walker: self.r.force_walker,
            },
        }))
    }

    fn rmtree(&self, path: &str) -> Result<()> {
        let path = path.to_owned();
        self.blocking(move |r| {
            let (dir, leaf) = r.parent(&path)?;
            if leaf.to_bytes() == b"." {
                return Err(shared::rmtree_needs_a_name());
            }
            tree::remove_tree(&SysRemover, &dir, leaf.into_bytes())
        })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// [`tree::remove_tree`]'s steps as blocking system calls.
struct SysRemover;

/// Whether `unlinkat(.., 0)` failed because the entry is a directory
/// (`EISDIR` on Linux, `EPERM` elsewhere).
fn is_dir_error(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EISDIR) | Some(libc::EPERM))
}

fn entry_name(name: &[u8]) -> CString {
    CString::new(name).expect("directory entries contain no NUL")
}

impl Remover for SysRemover {
    type Dir = OwnedFd;

    fn unlink(&self, dir: &OwnedFd, name: &[u8]) -> Result<Unlinked> {
        match sys::unlinkat(dir.as_raw_fd(), &entry_name(name), 0) {
            Ok(()) => Ok(Unlinked::Removed),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Unlinked::Missing(e.into())),
            Err(e) if is_dir_error(&e) => Ok(Unlinked::Directory(e.into())),
            Err(e) => Err(e.into()),
        }
    }

    /// Never through a symlink (`O_NOFOLLOW`), so a directory swapped for a
    /// link mid-walk is not followed.
    fn open_dir(&self, dir: &OwnedFd, name: &[u8]) -> Result<Option<Listed<OwnedFd>>> {
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;
        let fd = match sys::openat(dir.as_raw_fd(), &entry_name(name), flags, 0) {
            Ok(fd) => fd,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTDIR) | Some(libc::ELOOP)) => {
                return Ok(None)
            }
            Err(e) => return Err(e.into()),
        };
        let names = sys::read_dir_names(fd.try_clone()?)?;
        Ok(Some(Listed { dir: fd, names }))
    }

    fn rmdir(&self, dir: &OwnedFd, name: &[u8]) -> Result<()> {
        Ok(sys::unlinkat(
            dir.as_raw_fd(),
            &entry_name(name),
            libc::AT_REMOVEDIR,
        )?)
    }

    fn not_a_directory(&self) -> Error {
        Error::from(io::Error::from_raw_os_error(libc::ENOTDIR))
    }
}
