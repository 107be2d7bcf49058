//! An in-memory filesystem: the mock backend's `env.fs()` and `env.cwd()`.
//!
//! Under the mock backend a program that uses files runs with no real IO:
//! every mock run gets a fresh [`MemFs`], a tree of directories, files and
//! symlinks in memory, laid out as
//!
//! ```text
//! /          0o755
//! /tmp       0o1777
//! /work      0o755   the working directory
//! /dev       0o755
//! /dev/null  0o666   character devices, as Linux's
//! /dev/zero  0o666
//! ```
//!
//! `env.cwd()` is confined to `/work`; `env.fs()` is the whole tree, with
//! relative paths starting at `/work`. Paths resolve exactly as in the
//! POSIX backend (see [Confinement](#confinement)), so a `Dir` is a
//! sandbox here too, and since nothing outside the run takes part, the same
//! program gives the same trace — inode numbers and timestamps included.
//!
//! ```
//! use weft::fs::Create;
//!
//! let (result, trace) = weft::mock::run_traced(|env| {
//!     let cwd = env.cwd();
//!     let path = &cwd / "test.txt";
//!     weft::traceln!("Saving to {path}");
//!     path.save("line one\nline two\n", Create::Exclusive(0o600))?;
//!     path.with_lines(|lines| {
//!         for line in lines {
//!             weft::traceln!("Processing {:?}", line?);
//!         }
//!         Ok(())
//!     })?;
//!     let err = (&cwd / "../escaped").mkdir(0o700).unwrap_err();
//!     weft::traceln!("{err}");
//!     Ok(())
//! });
//! result.unwrap();
//! assert_eq!(
//!     trace,
//!     [
//!         "Saving to <cwd:test.txt>",
//!         r#"Processing "line one""#,
//!         r#"Processing "line two""#,
//!         "fs: permission denied, the path leads outside the directory, \
//!          creating directory <cwd:../escaped>",
//!     ]
//! );
//! ```
//!
//! # What it models
//!
//! * **Directories, regular files and symlinks**, in an inode table:
//!   several handles on one file share its bytes, a file unlinked while
//!   open lives on for its open handles, and a `Dir` keeps its directory
//!   even if it is removed (see [`file`](mod@file) for files).
//! * **Metadata**: `stat` reports the kind, size (a symlink's is the length
//!   of its target, a directory's 4096), permission bits, link count (POSIX
//!   style: a directory has two plus one per subdirectory), an inode number
//!   (`/` is 1, then counting up as entries are created), device 1, owner
//!   0:0, and times from the run's virtual clock (`mtime` and `ctime` move
//!   on changes; reads leave `atime` alone, as a `noatime` mount does).
//!   Outside a run (the inspection methods below) a counter stands in for
//!   the clock, a nanosecond per change.
//! * **Permissions** are recorded — new files and directories get the
//!   requested bits less a umask of `0o022`; symlinks are `0o777` — but not
//!   enforced: the mock runs as the superuser would.
//! * **Errors** are those of the POSIX backend on Linux, kind for kind, with
//!   the same contexts added by [`Path`](weft_core::fs::Path) (`fs: not
//!   found, opening <cwd:missing.txt>`). See [`dir`] for which error when.
//!
//! Everything is behind one `std::sync::Mutex`, so a `Dir` may be used from
//! several domains at once: domains started from a run share its `MemFs`.
//!
//! # Confinement
//!
//! `env.cwd()` and every `Dir` made by `open_dir` are confined: `..` above
//! them, absolute paths and symlinks leading out are refused with
//! `PermissionDenied`, and at most 40 symlinks are followed in one path
//! (`TooManySymlinks`). The rules are listed in [`resolve`].
//!
//! # Cancellation, and never suspending
//!
//! Memory needs no waiting, so no file operation suspends the fiber. Each
//! is still a cancellation point, as in the real backends: a cancelled
//! fiber's `save`, `mkdir` or `read` fails with `Cancelled` and changes
//! nothing. A loop that does nothing but file operations keeps the CPU as
//! a computation would: give other fibers a turn with
//! `weft::fiber::yield_now`.
//!
//! # Preparing and inspecting
//!
//! Give the run a `MemFs` of your own with [`Config::fs`](crate::Config::fs)
//! to fill it first and look at it afterwards, outside the run: the
//! inspection methods ([`read`](MemFs::read), [`write`](MemFs::write),
//! [`symlink`](MemFs::symlink), [`paths`](MemFs::paths), …) work on the
//! whole tree, unconfined, like `env.fs()`, and are not cancellation
//! points. [`MemFs::open_handles`] counts open files and directories: after
//! a run it should be zero.
//!
//! ```
//! let fs = weft_mock::MemFs::new();
//! fs.write("/work/config.toml", "port = 8080\n").unwrap();
//! weft_mock::Config::new().fs(fs.clone()).run(|env| {
//!     let config = (env.cwd() / "config.toml").load_string()?;
//!     (env.cwd() / "out").mkdir(0o755)?;
//!     let _leaked = (env.cwd() / "config.toml").open_in()?;
//!     assert_eq!(fs.open_handles(), 3, "cwd, fs and the file");
//!     (env.cwd() / "out/port").save(config.trim_start_matches("port = "),
//!         weft::fs::Create::Exclusive(0o644))
//! })
//! .unwrap();
//! assert_eq!(fs.read("/work/out/port").unwrap(), b"8080\n");
//! assert_eq!(fs.paths("/work").unwrap(), ["config.toml", "out/", "out/port"]);
//! assert_eq!(fs.open_handles(), 0);
//! ```

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use weft_core::fs::{Create, Dir, OpenOut, Stat};
use weft_core::{Error, ErrorKind, FsError, Result};

pub mod dir;
pub mod file;
pub mod resolve;
mod tree;

pub use file::MAX_FILE_SIZE;

use dir::MemDir;
use resolve::{fs_err, Base};
use tree::{Body, Device, Tree, ROOT};

/// `Err(Cancelled)` if the calling fiber is cancelled; fine off a fiber (a
/// plain thread may use a `Dir`). Every operation starts with it.
pub(crate) fn not_cancelled() -> Result<()> {
    match weft_core::fiber::check() {
        Err(e) if e.is_cancelled() => Err(e),
        _ => Ok(()),
    }
}

/// How the unconfined `fs` (and the inspection methods) resolve paths:
/// relative ones from the working directory.
fn unconfined(t: &Tree) -> Base {
    Base {
        start: t.cwd,
        confined: false,
    }
}

/// An in-memory filesystem. See the [module docs](self).
///
/// Cloning gives another handle to the same filesystem.
#[derive(Clone)]
pub struct MemFs {
    tree: Arc<Mutex<Tree>>,
}

impl Default for MemFs {
    fn default() -> Self {
        MemFs::new()
    }
}

impl fmt::Debug for MemFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.lock();
        f.debug_struct("MemFs")
            .field("open_files", &t.open_files)
            .field("open_dirs", &t.open_dirs)
            .finish()
    }
}

impl MemFs {
    /// A filesystem holding only the layout in the [module docs](self):
    /// `/`, `/tmp` and `/work` (the working directory), all empty, and
    /// `/dev` with `null` and `zero`; all dated at the Unix epoch.
    pub fn new() -> MemFs {
        let fs = MemFs {
            tree: Arc::new(Mutex::new(Tree::new())),
        };
        {
            let mut t = fs.lock();
            let base = unconfined(&t);
            t.umask = 0;
            dir::mkdir(&mut t, base, "/tmp", 0o1777).expect("a fresh tree has room");
            t.umask = 0o022;
            dir::mkdir(&mut t, base, "/work", 0o755).expect("a fresh tree has room");
            dir::mkdir(&mut t, base, "/dev", 0o755).expect("a fresh tree has room");
            t.umask = 0;
            for (name, dev) in [("/dev/null", Device::Null), ("/dev/zero", Device::Zero)] {
                dir::mknod(&mut t, base, name, dev, 0o666).expect("a fresh tree has room");
            }
            t.umask = 0o022;
            let work = t.lookup(ROOT, "work").expect("just made");
            t.set_cwd(work);
            t.reset_times();
        }
        fs
    }

    /// Makes `path` (absolute, created with its parents if missing) the
    /// working directory of the runs that use this filesystem: the root of
    /// their `env.cwd()`, and where relative paths of `env.fs()` start.
    ///
    /// ```
    /// let fs = weft_mock::MemFs::new().with_cwd("/srv/app").unwrap();
    /// weft_mock::Config::new().fs(fs.clone()).run(|env| {
    ///     (env.cwd() / "log").save("started", weft::fs::Create::Exclusive(0o644))
    /// })
    /// .unwrap();
    /// assert_eq!(fs.read("/srv/app/log").unwrap(), b"started");
    /// ```
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a relative path; the errors of
    /// [`mkdirs`](MemFs::mkdirs) if it cannot be made a directory.
    pub fn with_cwd(self, path: &str) -> Result<MemFs> {
        if !path.starts_with('/') {
            return Err(Error::msg(
                ErrorKind::InvalidInput,
                format!("the working directory must be an absolute path, not {path:?}"),
            ));
        }
        self.mkdirs(path)?;
        {
            let mut t = self.lock();
            let dir = resolve::dir(&t, unconfined(&t), path)?;
            t.set_cwd(dir);
        }
        Ok(self)
    }

    /// Locks the tree. A panic while it was held cannot leave it half
    /// changed (no operation panics midway), so poisoning is ignored.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Tree> {
        self.tree.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `other` is a handle to this same filesystem.
    pub(crate) fn same_fs(&self, other: &MemFs) -> bool {
        Arc::ptr_eq(&self.tree, &other.tree)
    }

    /// The `fs` and `cwd` capabilities of a run.
    pub(crate) fn dirs(&self) -> (Dir, Dir) {
        let mut t = self.lock();
        let base = unconfined(&t);
        let fs = MemDir::new(self.clone(), &mut t, base);
        let confined = Base {
            confined: true,
            ..base
        };
        let confined = MemDir::new(self.clone(), &mut t, confined);
        (
            Dir::new("fs", Arc::new(fs)),
            Dir::new("cwd", Arc::new(confined)),
        )
    }

    /// A process's working directory: `path` (or the run's working
    /// directory), resolved as `env.fs()` resolves it, as an absolute path
    /// and an unconfined `Dir` whose relative paths start there.
    pub(crate) fn process_dir(&self, path: Option<&str>) -> Result<(String, Dir)> {
        let mut t = self.lock();
        let base = unconfined(&t);
        let ino = match path {
            None => t.cwd,
            Some(p) => resolve::dir(&t, base, p)
                .map_err(|e| e.context(format!("changing to working directory {p:?}")))?,
        };
        let abs = t.path_of(ino).ok_or_else(|| {
            fs_err(FsError::NotFound).context("the working directory has been removed")
        })?;
        let dir = MemDir::new(
            self.clone(),
            &mut t,
            Base {
                start: ino,
                confined: false,
            },
        );
        Ok((abs, Dir::new("fs", Arc::new(dir))))
    }

    /// Runs an inspection: `op` on the locked tree from the unconfined base,
    /// naming `what` and `path` in the context of an error.
    fn inspect<T>(
        &self,
        what: &str,
        path: &str,
        op: impl FnOnce(&mut Tree, Base) -> Result<T>,
    ) -> Result<T> {
        let mut t = self.lock();
        let base = unconfined(&t);
        op(&mut t, base).map_err(|e| e.context(format!("MemFs: {what} {path:?}")))
    }

    /// The contents of the file at `path` (following symlinks).
    ///
    /// # Errors
    ///
    /// As [`Path::load`](weft_core::fs::Path::load): `NotFound`,
    /// `IsADirectory`, ….
    pub fn read(&self, path: &str) -> Result<Vec<u8>> {
        self.inspect("reading", path, |t, base| {
            let ino = dir::open(t, base, path, None)?;
            match &t.get(ino).body {
                Body::File(data) => Ok(data.clone()),
                Body::Device(Device::Null) => Ok(Vec::new()),
                Body::Device(Device::Zero) => Err(Error::msg(
                    ErrorKind::InvalidInput,
                    "/dev/zero never ends: read it through a File",
                )),
                _ => Err(fs_err(FsError::IsADirectory)),
            }
        })
    }

    /// Writes `data` as the contents of the file at `path`, creating it
    /// (permissions `0o644`) or truncating it. The directory must exist.
    pub fn write(&self, path: &str, data: impl AsRef<[u8]>) -> Result<()> {
        self.inspect("writing", path, |t, base| {
            let opts = OpenOut::new(Create::OrTruncate(0o666));
            let ino = dir::open(t, base, path, Some(&opts))?;
            let now = t.now();
            let inode = t.get_mut(ino);
            if let Body::File(d) = &mut inode.body {
                d.extend_from_slice(data.as_ref());
            }
            (inode.mtime, inode.ctime) = (now, now);
            Ok(())
        })
    }

    /// Creates the directory `path` and any missing parents (permissions
    /// `0o755`); a directory that exists already is fine.
    pub fn mkdirs(&self, path: &str) -> Result<()> {
        self.inspect("creating directory", path, |t, base| {
            let mut prefix = String::new();
            for part in path.split('/') {
                prefix.push_str(part);
                prefix.push('/');
                if part.is_empty() || part == "." || part == ".." {
                    continue;
                }
                match dir::mkdir(t, base, &prefix, 0o755) {
                    Err(e) if e.kind() == &ErrorKind::Fs(FsError::AlreadyExists) => {
                        resolve::dir(t, base, &prefix).map_err(|_| e)?;
                    }
                    other => other?,
                }
            }
            Ok(())
        })
    }

    /// Creates a symlink at `path` pointing to `target` (the argument order
    /// of [`Path::symlink`](weft_core::fs::Path::symlink), not of `ln -s`).
    pub fn symlink(&self, path: &str, target: &str) -> Result<()> {
        self.inspect("creating symlink", path, |t, base| {
            dir::symlink(t, base, path, target)
        })
    }

    /// Renames `from` to `to`, as [`Path::rename`](weft_core::fs::Path::rename).
    pub fn rename(&self, from: &str, to: &str) -> Result<()> {
        self.inspect("renaming", from, |t, base| {
            dir::rename(t, base, from, base, to)
        })
    }

    /// Removes `path` and, for a directory, everything in it (never
    /// following symlinks).
    pub fn remove_all(&self, path: &str) -> Result<()> {
        self.inspect("removing", path, |t, base| dir::rmtree(t, base, path))
    }

    /// Whether something is at `path`, following symlinks (a dangling
    /// symlink does not count); `false` also for a path that cannot be
    /// resolved.
    pub fn exists(&self, path: &str) -> bool {
        self.stat(path).is_ok()
    }

    /// Whether `path` is a directory, following symlinks.
    pub fn is_dir(&self, path: &str) -> bool {
        self.stat(path)
            .is_ok_and(|st| st.kind == weft_core::fs::FileKind::Directory)
    }

    /// Information about `path`, following symlinks.
    pub fn stat(&self, path: &str) -> Result<Stat> {
        self.inspect("examining", path, |t, base| dir::stat(t, base, path, true))
    }

    /// Information about `path`, or about the symlink itself if it is one.
    pub fn lstat(&self, path: &str) -> Result<Stat> {
        self.inspect("examining", path, |t, base| dir::stat(t, base, path, false))
    }

    /// The target of the symlink at `path`.
    pub fn read_link(&self, path: &str) -> Result<String> {
        self.inspect("reading target of symlink", path, |t, base| {
            dir::read_link(t, base, path)
        })
    }

    /// The names in the directory `path`, sorted.
    pub fn read_dir(&self, path: &str) -> Result<Vec<String>> {
        self.inspect("reading directory", path, |t, base| {
            dir::read_dir(t, base, path)
        })
    }

    /// Everything below the directory `path`, as paths relative to it,
    /// sorted: directories end with `/`, symlinks show their target
    /// (`link -> target`). A whole tree at a glance, for assertions.
    ///
    /// ```
    /// let fs = weft_mock::MemFs::new();
    /// fs.mkdirs("/work/a/b").unwrap();
    /// fs.write("/work/a/f", "").unwrap();
    /// fs.symlink("/work/up", "a/..").unwrap();
    /// assert_eq!(fs.paths("/work").unwrap(), ["a/", "a/b/", "a/f", "up -> a/.."]);
    /// ```
    pub fn paths(&self, path: &str) -> Result<Vec<String>> {
        self.inspect("listing", path, |t, base| {
            let dir = resolve::dir(t, base, path)?;
            Ok(t.paths(dir, ""))
        })
    }

    /// How many files and directory capabilities (`Dir`s, including a
    /// run's `fs` and `cwd`) are open on this filesystem. Zero after a run
    /// that closed everything it opened.
    pub fn open_handles(&self) -> usize {
        let t = self.lock();
        t.open_files + t.open_dirs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_core::fs::FileKind;

    #[test]
    fn the_layout() {
        let fs = MemFs::new();
        assert_eq!(
            fs.paths("/").unwrap(),
            ["dev/", "dev/null", "dev/zero", "tmp/", "work/"]
        );
        let st = |p| fs.stat(p).unwrap();
        assert_eq!((st("/").ino, st("/tmp").ino, st("/work").ino), (1, 2, 3));
        assert_eq!(
            (st("/").perm, st("/tmp").perm, st("/work").perm),
            (0o755, 0o1777, 0o755)
        );
        assert_eq!(st("/").nlink, 5);
        let null = st("/dev/null");
        assert_eq!(
            (null.kind, null.perm, null.size),
            (FileKind::CharDevice, 0o666, 0)
        );
        assert_eq!(fs.read("/dev/null").unwrap(), b"");
        assert!(fs.read("/dev/zero").is_err());
        assert_eq!(st("/work").mtime, std::time::SystemTime::UNIX_EPOCH);
        assert_eq!(st(".").ino, 3, "relative paths start at /work");
        assert_eq!(fs.open_handles(), 0);
    }

    #[test]
    fn inspection_errors_name_the_path() {
        let fs = MemFs::new();
        let err = fs.read("/work/missing").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"fs: not found, MemFs: reading "/work/missing""#
        );
        fs.write("/work/f", "x").unwrap();
        assert!(fs.mkdirs("/work/f/g").is_err());
        assert!(MemFs::new().with_cwd("rel").is_err());
    }

    #[test]
    fn counter_times_off_a_run() {
        let fs = MemFs::new();
        fs.write("/work/a", "1").unwrap();
        fs.write("/work/b", "2").unwrap();
        let (a, b) = (fs.stat("/work/a").unwrap(), fs.stat("/work/b").unwrap());
        assert!(a.mtime > std::time::SystemTime::UNIX_EPOCH && b.mtime > a.mtime);
        assert_eq!(b.ino, a.ino + 1);
    }
}
