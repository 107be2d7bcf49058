//! Shared helpers for the `fs_*` conformance tests: a fresh scratch
//! directory per test, opened as a confined `Dir`, with leak checks.
//!
//! The tests run on every backend with a filesystem: io_uring and POSIX
//! (the real disk) and the mock (its in-memory `MemFs`). What a test cannot
//! do through the `Dir` under test — make a symlink leading out, swap a
//! link behind the program's back, look at what really landed where — it
//! does through a [`Host`]: `std::fs` on the disk under io_uring and POSIX,
//! the `MemFs` inspection methods under the mock. Resource checks are per
//! backend too: the process's open fds on the disk, `MemFs::open_handles`
//! under the mock.

#![allow(dead_code)]

use std::ops::Deref;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use weft::fs::Dir;
use weft::mock::MemFs;
use weft::{Backend, Env, ErrorKind, FsError};

/// fd counts are per process: tests in one file run one at a time so one
/// test's files do not show up in another's count. Everything that opens
/// fds (even `std::fs::remove_dir_all` when a scratch directory goes)
/// happens under this lock.
static SERIAL: Mutex<()> = Mutex::new(());

/// Takes the per-file test lock.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// How many fds this process has open.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Asserts that the fd count comes back to `before` (or below). A system thread
/// drops its hold on the finished run's driver (its epoll, eventfd and
/// timerfd) just after handing over its result, so the count may take a
/// moment to settle.
#[track_caller]
pub fn assert_fds_settle(before: usize) {
    // Fewer than before is no leak: an fd of an earlier run (a socket a
    // system thread was still closing) can go away during this one.
    for _ in 0..200 {
        if open_fds() <= before {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let now = open_fds();
    assert!(
        now <= before,
        "no fd leaked: {now} open, {before} before: {:?}",
        fd_names()
    );
}

/// The fd count once no run's driver is still being released (see
/// [`assert_fds_settle`]): the baseline to compare with after a run.
pub fn settled_fds() -> usize {
    for _ in 0..200 {
        if !fd_names().iter().any(|f| f.contains("anon_inode:")) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    open_fds()
}

/// What each open fd is, for failure messages.
pub fn fd_names() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        let target = std::fs::read_link(e.path()).ok()?;
        Some(format!(
            "{} -> {}",
            e.file_name().to_string_lossy(),
            target.display()
        ))
    })
    .collect()
}

/// How a confined directory resolves paths on io_uring and POSIX (the mock
/// ignores it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolve {
    /// `openat2(RESOLVE_BENEATH)` where the kernel has it (`IORING_OP_OPENAT2`
    /// on io_uring).
    Kernel,
    /// The user-space walker, forced.
    Walker,
}

/// The filesystem a backend runs on, seen from outside the program under
/// test. Paths are absolute (or relative to the backend's working
/// directory); every method panics on failure.
pub enum Host {
    /// The real disk, through `std::fs`.
    Disk,
    /// A mock run's in-memory filesystem, through its inspection methods.
    Mem(MemFs),
}

impl Host {
    /// The host of a fresh run on `backend`.
    pub fn new(backend: Backend) -> Host {
        match backend {
            Backend::Mock => Host::Mem(MemFs::new()),
            _ => Host::Disk,
        }
    }

    /// Runs `main` on `backend` on this host's filesystem and checks that
    /// it left nothing open: no fd on the disk (with `resolve` choosing how
    /// confined paths resolve), no file or `Dir` on the `MemFs`. Panics if
    /// `main` fails.
    pub fn run<T>(
        &self,
        backend: Backend,
        resolve: Resolve,
        main: impl FnOnce(&Env) -> weft::Result<T>,
    ) -> T {
        match self {
            Host::Disk => {
                let before = settled_fds();
                let walker = resolve == Resolve::Walker;
                weft_posix::force_fs_walker(walker);
                weft_uring::force_fs_walker(walker);
                let result = weft::run_with(backend, main);
                weft_posix::force_fs_walker(false);
                weft_uring::force_fs_walker(false);
                let value = result.unwrap_or_else(|e| panic!("test failed: {e}"));
                assert_fds_settle(before);
                value
            }
            Host::Mem(fs) => {
                assert_eq!(backend, Backend::Mock);
                let result = weft::mock::Config::new().fs(fs.clone()).run(main);
                let value = result.unwrap_or_else(|e| panic!("test failed: {e}"));
                assert_eq!(fs.open_handles(), 0, "left open on the in-memory fs");
                value
            }
        }
    }

    /// The working directory of a run on this host.
    pub fn cwd(&self) -> String {
        match self {
            Host::Disk => std::env::current_dir()
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned(),
            Host::Mem(_) => "/work".to_owned(),
        }
    }

    /// The contents of a file.
    #[track_caller]
    pub fn read(&self, path: impl AsRef<str>) -> Vec<u8> {
        let path = path.as_ref();
        match self {
            Host::Disk => std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}")),
            Host::Mem(fs) => fs.read(path).unwrap_or_else(|e| panic!("{e}")),
        }
    }

    /// Whether something is there (following symlinks).
    pub fn exists(&self, path: impl AsRef<str>) -> bool {
        match self {
            Host::Disk => std::path::Path::new(path.as_ref()).exists(),
            Host::Mem(fs) => fs.exists(path.as_ref()),
        }
    }

    /// Whether it is a directory (following symlinks).
    pub fn is_dir(&self, path: impl AsRef<str>) -> bool {
        match self {
            Host::Disk => std::path::Path::new(path.as_ref()).is_dir(),
            Host::Mem(fs) => fs.is_dir(path.as_ref()),
        }
    }

    /// Creates or truncates a file with `data`.
    #[track_caller]
    pub fn write(&self, path: impl AsRef<str>, data: impl AsRef<[u8]>) {
        let path = path.as_ref();
        match self {
            Host::Disk => std::fs::write(path, data).unwrap_or_else(|e| panic!("{path}: {e}")),
            Host::Mem(fs) => fs.write(path, data).unwrap_or_else(|e| panic!("{e}")),
        }
    }

    /// Creates a directory and its missing parents.
    #[track_caller]
    pub fn mkdirs(&self, path: impl AsRef<str>) {
        let path = path.as_ref();
        match self {
            Host::Disk => std::fs::create_dir_all(path).unwrap_or_else(|e| panic!("{path}: {e}")),
            Host::Mem(fs) => fs.mkdirs(path).unwrap_or_else(|e| panic!("{e}")),
        }
    }

    /// Creates the symlink `link` pointing to `target` (`std`'s order:
    /// target first).
    #[track_caller]
    pub fn symlink(&self, target: impl AsRef<str>, link: impl AsRef<str>) {
        let (target, link) = (target.as_ref(), link.as_ref());
        match self {
            Host::Disk => std::os::unix::fs::symlink(target, link)
                .unwrap_or_else(|e| panic!("{link} -> {target}: {e}")),
            Host::Mem(fs) => fs.symlink(link, target).unwrap_or_else(|e| panic!("{e}")),
        }
    }

    /// Renames `from` to `to` (atomically replacing what `to` names).
    #[track_caller]
    pub fn rename(&self, from: impl AsRef<str>, to: impl AsRef<str>) {
        let (from, to) = (from.as_ref(), to.as_ref());
        match self {
            Host::Disk => std::fs::rename(from, to).unwrap_or_else(|e| panic!("{from}: {e}")),
            Host::Mem(fs) => fs.rename(from, to).unwrap_or_else(|e| panic!("{e}")),
        }
    }

    /// Removes a directory tree, if it is there.
    pub fn remove_all(&self, path: impl AsRef<str>) {
        match self {
            Host::Disk => {
                let _ = std::fs::remove_dir_all(path.as_ref());
            }
            Host::Mem(fs) => {
                let _ = fs.remove_all(path.as_ref());
            }
        }
    }

    /// The permission bits (`0o7777`), following symlinks.
    #[track_caller]
    pub fn mode(&self, path: impl AsRef<str>) -> u32 {
        let path = path.as_ref();
        match self {
            Host::Disk => {
                let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{path}: {e}"));
                std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777
            }
            Host::Mem(fs) => fs.stat(path).unwrap_or_else(|e| panic!("{e}")).perm,
        }
    }

    /// The inode number, following symlinks.
    #[track_caller]
    pub fn ino(&self, path: impl AsRef<str>) -> u64 {
        let path = path.as_ref();
        match self {
            Host::Disk => {
                let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{path}: {e}"));
                std::os::unix::fs::MetadataExt::ino(&meta)
            }
            Host::Mem(fs) => fs.stat(path).unwrap_or_else(|e| panic!("{e}")).ino,
        }
    }
}

/// A fresh directory under the temp dir, and a sibling standing for
/// "somewhere outside the sandbox", on the test's [`Host`] (which the
/// scratch derefs to); on disk, both are removed on drop.
pub struct Scratch {
    /// The directory opened as the test's confined root (absolute).
    pub path: String,
    /// An empty directory next to it, outside the sandbox (absolute).
    pub outside: String,
    /// Where they are.
    pub host: Host,
}

impl Deref for Scratch {
    type Target = Host;
    fn deref(&self) -> &Host {
        &self.host
    }
}

impl Scratch {
    /// Makes the two directories for `test` on a fresh host for `backend`.
    pub fn new(backend: Backend, test: &str) -> Scratch {
        static N: AtomicUsize = AtomicUsize::new(0);
        let host = Host::new(backend);
        let path = match host {
            Host::Disk => {
                let n = N.fetch_add(1, Ordering::Relaxed);
                let dir =
                    std::env::temp_dir().join(format!("weft-{test}-{}-{n}", std::process::id()));
                dir.to_str().unwrap().to_owned()
            }
            // A fresh filesystem each time: no need for unique names.
            Host::Mem(_) => format!("/tmp/weft-{test}"),
        };
        let outside = format!("{path}.outside");
        for p in [&path, &outside] {
            host.remove_all(p);
            host.mkdirs(p);
        }
        Scratch {
            path,
            outside,
            host,
        }
    }

    /// The scratch directory's path.
    pub fn as_str(&self) -> &str {
        &self.path
    }

    /// A path inside the scratch directory.
    pub fn join(&self, rel: &str) -> String {
        format!("{}/{rel}", self.path)
    }

    /// A path inside the outside directory.
    pub fn out(&self, rel: &str) -> String {
        format!("{}/{rel}", self.outside)
    }

    /// A path next to the scratch directory (outside the sandbox).
    pub fn sibling(&self, name: &str) -> String {
        let parent = std::path::Path::new(&self.path).parent().unwrap();
        parent.join(name).to_str().unwrap().to_owned()
    }

    /// How many components the scratch directory's path has (`/` counts).
    pub fn depth(&self) -> usize {
        std::path::Path::new(&self.path).components().count()
    }

    /// The outside directory's name (a sibling of the scratch directory).
    pub fn outside_name(&self) -> String {
        self.outside.rsplit('/').next().unwrap().to_owned()
    }

    /// The name the confined `Dir` of this scratch directory is shown with.
    pub fn label(&self) -> String {
        self.path.rsplit('/').next().unwrap().to_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Host::Disk = self.host {
            self.host.remove_all(&self.path);
            self.host.remove_all(&self.outside);
        }
    }
}

/// Runs `f` on `backend` with a fresh scratch directory opened (through
/// `env.fs()`) as a confined `Dir`, checking that nothing leaks (see
/// [`Host::run`]). The scratch directory itself is passed too, for setting
/// up and checking through its host.
pub fn with_scratch<T>(
    backend: Backend,
    resolve: Resolve,
    test: &str,
    f: impl FnOnce(&Env, &Dir, &Scratch) -> weft::Result<T>,
) -> T {
    let _serial = serial();
    let scratch = Scratch::new(backend, test);
    scratch.host.run(backend, resolve, |env| {
        // (Already there: made through the host.)
        let top = env.fs() / scratch.as_str();
        top.mkdirs(0o700)?;
        let root = top.open_dir()?;
        f(env, &root, &scratch)
    })
}

/// Asserts that `r` failed with the filesystem error `want`, and that the
/// message names `ctx` (the operation and the path).
#[track_caller]
pub fn assert_fs_err<T: std::fmt::Debug>(r: weft::Result<T>, want: FsError, ctx: &str) {
    let err = r.expect_err("expected an error");
    assert_eq!(err.kind(), &ErrorKind::Fs(want), "{err}");
    assert!(
        err.to_string().contains(ctx),
        "{err:?} should mention {ctx:?}"
    );
}

/// Asserts that `r` failed with `want` (any kind), naming `ctx`.
#[track_caller]
pub fn assert_err<T: std::fmt::Debug>(r: weft::Result<T>, want: ErrorKind, ctx: &str) {
    let err = r.expect_err("expected an error");
    assert_eq!(err.kind(), &want, "{err}");
    assert!(
        err.to_string().contains(ctx),
        "{err:?} should mention {ctx:?}"
    );
}

/// Asserts that `r` was refused by the sandbox.
#[track_caller]
pub fn assert_denied<T: std::fmt::Debug>(r: weft::Result<T>, ctx: &str) {
    assert_fs_err(r, FsError::PermissionDenied, ctx);
}
