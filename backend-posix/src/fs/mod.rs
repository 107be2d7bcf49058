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
use std::cell::Cell;
use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use weft_core::fs::{Create, Dir, DirBackend, FileImpl, OpenOut, Stat};
use weft_core::{Error, ErrorKind, Result};

mod file;
mod resolve;
mod sys;

use file::PosixFile;
use resolve::{Resolver, Root};
use sys::O_PATH;

thread_local! {
    static FORCE_WALKER: Cell<bool> = const { Cell::new(false) };
}

/// Makes directories created by [`run`](crate::run) on this thread resolve
/// confined paths with the user-space walker even where `openat2` exists,
/// so that tests can check both. Directories opened from them inherit the
/// choice.
#[doc(hidden)]
pub fn force_walker(on: bool) {
    FORCE_WALKER.with(|f| f.set(on));
}

/// The `fs` and `cwd` capabilities for a new run.
pub(crate) fn dirs() -> (Dir, Dir) {
    let force_walker = FORCE_WALKER.with(Cell::get);
    let fs = PosixDir {
        r: Resolver {
            root: Root::Cwd,
            confined: false,
            force_walker,
        },
    };
    let fs = Dir::new("fs", Arc::new(fs));
    let flags = O_PATH | libc::O_DIRECTORY;
    let cwd = match sys::openat(libc::AT_FDCWD, c".", flags, 0) {
        Ok(fd) => Dir::new(
            "cwd",
            Arc::new(PosixDir {
                r: Resolver {
                    root: Root::Fd(Arc::new(fd)),
                    confined: true,
                    force_walker,
                },
            }),
        ),
        Err(e) => Dir::unavailable(
            "cwd",
            format!("the working directory could not be opened: {e}"),
        ),
    };
    (fs, cwd)
}

/// `Err(Cancelled)` if the calling fiber is cancelled: checked before
/// handing an operation to a system thread, where it would run to the end
/// (creating, renaming, removing) whatever happens to the caller.
pub(super) fn not_cancelled() -> Result<()> {
    match weft_core::fiber::check() {
        Err(e) if e.is_cancelled() => Err(e),
        // Fine, or not on a fiber at all (a plain thread may use a `Dir`).
        _ => Ok(()),
    }
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
        Ok(Box::new(PosixFile::new(fd)))
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
            return Err(Error::msg(
                ErrorKind::InvalidInput,
                "the target directory belongs to another backend",
            ));
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
        let target = self.at_parent(path, sys::readlinkat)?;
        String::from_utf8(target).map_err(|e| {
            Error::with_source(ErrorKind::InvalidInput, e)
                .context("the symlink's target is not UTF-8")
        })
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
                return Err(Error::msg(
                    ErrorKind::InvalidInput,
                    "rmtree needs a path ending in a name",
                ));
            }
            Ok(remove_tree(dir, leaf.to_owned())?)
        })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// A directory being emptied by [`remove_tree`].
struct Level {
    /// The directory, open for reading.
    dir: OwnedFd,
    /// Its name in the level above.
    name: std::ffi::CString,
    /// Entries still to remove.
    todo: Vec<Vec<u8>>,
}

/// Whether `unlinkat(.., 0)` failed because the entry is a directory
/// (`EISDIR` on Linux, `EPERM` elsewhere).
fn is_dir_error(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EISDIR) | Some(libc::EPERM))
}

/// Opens `name` in `dir` as a directory to empty: never through a symlink
/// (`O_NOFOLLOW`), so a directory swapped for a link mid-walk is not
/// followed. Returns `None` if `name` turned out not to be a directory.
fn enter(dir: RawFd, name: std::ffi::CString) -> io::Result<Option<Level>> {
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;
    let fd = match sys::openat(dir, &name, flags, 0) {
        Ok(fd) => fd,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTDIR) | Some(libc::ELOOP)) => {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    let todo = sys::read_dir_names(fd.try_clone()?)?;
    Ok(Some(Level {
        dir: fd,
        name,
        todo,
    }))
}

/// Removes `name` in `parent` and, for a directory, everything below it,
/// without following symlinks. Iterative, holding one fd per level.
fn remove_tree(parent: OwnedFd, name: std::ffi::CString) -> io::Result<()> {
    match sys::unlinkat(parent.as_raw_fd(), &name, 0) {
        Ok(()) => return Ok(()),
        Err(e) if is_dir_error(&e) => {}
        Err(e) => return Err(e),
    }
    let mut stack = Vec::new();
    let Some(top) = enter(parent.as_raw_fd(), name)? else {
        return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
    };
    stack.push(top);
    while let Some(level) = stack.last_mut() {
        let Some(entry) = level.todo.pop() else {
            let done = stack.pop().expect("the stack has a top level");
            let above = stack
                .last()
                .map_or(parent.as_raw_fd(), |l| l.dir.as_raw_fd());
            drop(done.dir);
            sys::unlinkat(above, &done.name, libc::AT_REMOVEDIR)?;
            continue;
        };
        let entry = std::ffi::CString::new(entry).expect("directory entries contain no NUL");
        match sys::unlinkat(level.dir.as_raw_fd(), &entry, 0) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) if is_dir_error(&e) => match enter(level.dir.as_raw_fd(), entry)? {
                Some(child) => stack.push(child),
                None => return Err(e),
            },
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
