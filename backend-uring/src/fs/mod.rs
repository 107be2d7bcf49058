//! The filesystem capability on io_uring.
//!
//! Directories are held as `O_PATH` descriptors and every operation is
//! relative to one, as on the POSIX backend, with the same confinement
//! rules and the same errors — the resolution logic is shared
//! ([`weft_core::fs::resolve`]). What differs is how the work is done:
//! instead of blocking system calls on a system thread, each step is one
//! SQE submitted by the calling fiber, batched with everything else its
//! scheduler does in a turn:
//!
//! | operation | io_uring |
//! |---|---|
//! | open (`fs`) / open (confined) | `OPENAT` / `OPENAT2` with `RESOLVE_BENEATH \| RESOLVE_NO_MAGICLINKS` |
//! | mkdir, rmdir and unlink, rename, symlink | `MKDIRAT`, `UNLINKAT`, `RENAMEAT`, `SYMLINKAT` on the resolved parent |
//! | stat, lstat, `File::stat` | `STATX` |
//! | file reads and writes | `READ`, `WRITE`, `WRITEV` at explicit offsets (see [`file`]) |
//! | `sync_all`, `sync_data` | `FSYNC`, `FSYNC` with `DATASYNC` |
//! | `set_len` | `FTRUNCATE` (Linux 6.9), else `ftruncate` on a system thread |
//! | close | `CLOSE`, deferred while calls on the file are in flight |
//! | read_link, read_dir | `readlinkat`, `readdir` on a system thread (no opcode) |
//!
//! `cwd` is the working directory, opened once when [`run`](crate::run)
//! starts and confined; `fs` resolves from `AT_FDCWD` without confinement;
//! [`open_dir`](weft_core::fs::Path::open_dir) gives a new confined
//! directory. A `Dir` may be handed to another domain: each operation uses
//! the ring of the thread it runs on — or, on a thread that runs no
//! scheduler (a plain thread, a system thread), a small ring of that
//! thread's own, the operation then blocking the thread like a system call.
//!
//! ```
//! # if weft_uring::probe().is_err() { return; }
//! use weft_core::fs::Create;
//!
//! weft_uring::run(&weft_core::RunConfig::default(), |env| {
//!     let tmp = std::env::temp_dir();
//!     let top = env.fs() / tmp.to_str().unwrap() / format!("weft-uring-fs-{}", std::process::id());
//!     top.mkdirs(0o700)?;
//!     let dir = top.open_dir()?;
//!     (&dir / "hello.txt").save("hi from the ring", Create::Exclusive(0o600))?;
//!     assert_eq!((&dir / "hello.txt").load_string()?, "hi from the ring");
//!     // Confined: no way out.
//!     assert!((&dir / "../escape").mkdir(0o700).is_err());
//!     top.rmtree()
//! })
//! .unwrap();
//! ```

use std::any::Any;
use std::ffi::CStr;
use std::os::fd::AsFd;
use std::sync::Arc;

use weft_core::fs::resolve::{self as shared, not_cancelled};
use weft_core::fs::{tree, Create, Dir, DirBackend, FileImpl, OpenOut, Stat};
use weft_core::Result;

pub(crate) mod file;
mod resolve;
mod sys;

use crate::ops::path::{self, DirFd};
use file::UringFile;
use resolve::{Resolver, Root};

/// The `fs` and `cwd` capabilities for a new run.
pub(crate) fn dirs() -> (Dir, Dir) {
    weft_posix::unix::fs::dirs(|cwd, force_walker| {
        Arc::new(UringDir {
            r: Resolver {
                confined: cwd.is_some(),
                root: cwd.map_or(Root::Cwd, |fd| Root::Fd(Arc::new(fd))),
                force_walker,
            },
        })
    })
}

/// A directory capability on io_uring.
struct UringDir {
    r: Resolver,
}

impl UringDir {
    /// Runs `op` on `path`'s parent directory and last component.
    fn at_parent<T>(
        &self,
        path: &str,
        op: impl FnOnce(DirFd<'_>, &CStr) -> Result<T>,
    ) -> Result<T> {
        not_cancelled()?;
        let (dir, leaf) = self.r.parent(path)?;
        op(dir.dir_fd(), &leaf)
    }

    /// Runs `op` on `path`'s parent directory and last component on a
    /// system thread, which owns the parent until it returns.
    fn at_parent_blocking<T: Send + 'static>(
        &self,
        path: &str,
        op: impl FnOnce(i32, &CStr) -> std::io::Result<T> + Send + 'static,
    ) -> Result<T> {
        not_cancelled()?;
        let (dir, leaf) = self.r.parent(path)?;
        not_cancelled()?;
        Ok(weft_core::systhread::run(move || op(dir.raw(), &leaf))??)
    }

    fn open_file(
        &self,
        path: &str,
        flags: i32,
        mode: u32,
        append: bool,
    ) -> Result<Box<dyn FileImpl>> {
        not_cancelled()?;
        let fd = self.r.open(path.as_bytes(), flags | libc::O_NOCTTY, mode)?;
        Ok(Box::new(UringFile::new(fd, append)))
    }
}

impl DirBackend for UringDir {
    fn open_in(&self, path: &str) -> Result<Box<dyn FileImpl>> {
        self.open_file(path, libc::O_RDONLY, 0, false)
    }

    fn open_out(&self, path: &str, opts: &OpenOut) -> Result<Box<dyn FileImpl>> {
        let (create, perm) = match opts.create {
            Create::Never => (0, 0),
            Create::IfMissing(p) => (libc::O_CREAT, p),
            Create::OrTruncate(p) => (libc::O_CREAT | libc::O_TRUNC, p),
            Create::Exclusive(p) => (libc::O_CREAT | libc::O_EXCL, p),
        };
        let append = if opts.append { libc::O_APPEND } else { 0 };
        self.open_file(path, libc::O_RDWR | create | append, perm, opts.append)
    }

    fn mkdir(&self, path: &str, perm: u32) -> Result<()> {
        self.at_parent(path, |dir, leaf| path::mkdirat(dir, leaf, perm))
    }

    fn rmdir(&self, path: &str) -> Result<()> {
        self.at_parent(path, |dir, leaf| {
            path::unlinkat(dir, leaf, libc::AT_REMOVEDIR)
        })
    }

    fn unlink(&self, path: &str) -> Result<()> {
        self.at_parent(path, |dir, leaf| path::unlinkat(dir, leaf, 0))
    }

    fn rename(&self, from: &str, to_dir: &dyn DirBackend, to: &str) -> Result<()> {
        let Some(to_dir) = to_dir.as_any().downcast_ref::<UringDir>() else {
            return Err(shared::other_backend());
        };
        not_cancelled()?;
        let (from_dir, from_leaf) = self.r.parent(from)?;
        let (to_dir, to_leaf) = to_dir.r.parent(to)?;
        path::renameat(from_dir.dir_fd(), &from_leaf, to_dir.dir_fd(), &to_leaf)
    }

    fn symlink(&self, path: &str, target: &str) -> Result<()> {
        let target = sys::cstr(target.as_bytes())?;
        self.at_parent(path, |dir, leaf| path::symlinkat(&target, dir, leaf))
    }

    fn read_link(&self, path: &str) -> Result<String> {
        shared::link_target(self.at_parent_blocking(path, sys::readlinkat)?)
    }

    fn read_dir(&self, path: &str) -> Result<Vec<String>> {
        not_cancelled()?;
        let fd = self
            .r
            .open(path.as_bytes(), libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
        not_cancelled()?;
        let names = weft_core::systhread::run(move || sys::read_dir_names(fd))??;
        Ok(names
            .into_iter()
            .map(|n| String::from_utf8_lossy(&n).into_owned())
            .collect())
    }

    fn stat(&self, path: &str, follow: bool) -> Result<Stat> {
        if !follow {
            return self.at_parent(path, |dir, leaf| {
                path::statx(dir, leaf, libc::AT_SYMLINK_NOFOLLOW).map(|st| sys::to_stat(&st))
            });
        }
        not_cancelled()?;
        if !self.r.confined {
            // One STATX resolves exactly as the open would.
            let c = sys::cstr(shared::nonempty(path.as_bytes()))?;
            return Ok(sys::to_stat(&path::statx(self.r.root.dir_fd(), &c, 0)?));
        }
        let fd = self.r.open(path.as_bytes(), libc::O_PATH, 0)?;
        let st = path::statx(DirFd::Fd(fd.as_fd()), c"", libc::AT_EMPTY_PATH)?;
        Ok(sys::to_stat(&st))
    }

    fn open_dir(&self, path: &str) -> Result<Arc<dyn DirBackend>> {
        not_cancelled()?;
        let fd = self
            .r
            .open(path.as_bytes(), libc::O_PATH | libc::O_DIRECTORY, 0)?;
        Ok(Arc::new(UringDir {
            r: Resolver {
                root: Root::Fd(Arc::new(fd)),
                confined: true,
                force_walker: self.r.force_walker,
            },
        }))
    }

    /// Removes the tree on open directory handles (the shared
    /// [`tree::remove_tree`]), each removal one `UNLINKAT`. A cancellation
    /// stops it between two removals.
    fn rmtree(&self, path: &str) -> Result<()> {
        not_cancelled()?;
        let (dir, leaf) = self.r.parent(path)?;
        if leaf.to_bytes() == b"." {
            return Err(shared::rmtree_needs_a_name());
        }
        tree::remove_tree(&resolve::RingRemover, &dir, leaf.into_bytes())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
