//! Shared helpers for the `fs_*` conformance tests: a fresh scratch
//! directory per test, opened as a confined `Dir`, with fd-leak checks.

#![allow(dead_code)]

use std::path::{Path as StdPath, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use weft::fs::Dir;
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

/// Asserts that the fd count comes back to `before`. A system thread
/// drops its hold on the finished run's driver (its epoll, eventfd and
/// timerfd) just after handing over its result, so the count may take a
/// moment to settle.
#[track_caller]
pub fn assert_fds_settle(before: usize) {
    for _ in 0..200 {
        if open_fds() == before {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(open_fds(), before, "no fd leaked: {:?}", fd_names());
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

/// How a confined directory resolves paths on POSIX.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolve {
    /// `openat2(RESOLVE_BENEATH)` where the kernel has it.
    Kernel,
    /// The user-space walker, forced.
    Walker,
}

/// A fresh directory under the system temp dir, and a sibling standing
/// for "somewhere outside the sandbox"; both removed on drop.
pub struct Scratch {
    /// The directory opened as the test's confined root.
    pub path: PathBuf,
    /// An empty directory next to it, outside the sandbox.
    pub outside: PathBuf,
}

impl Scratch {
    pub fn new(test: &str) -> Scratch {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("weft-{test}-{}-{n}", std::process::id()));
        let outside = path.with_extension("outside");
        for p in [&path, &outside] {
            let _ = std::fs::remove_dir_all(p);
            std::fs::create_dir_all(p).unwrap();
        }
        Scratch { path, outside }
    }

    /// The scratch directory's path as a string.
    pub fn as_str(&self) -> &str {
        self.path.to_str().unwrap()
    }

    /// A path inside the scratch directory.
    pub fn join(&self, rel: impl AsRef<StdPath>) -> PathBuf {
        self.path.join(rel)
    }

    /// A path inside the outside directory.
    pub fn out(&self, rel: impl AsRef<StdPath>) -> PathBuf {
        self.outside.join(rel)
    }

    /// The outside directory's name (a sibling of the scratch directory).
    pub fn outside_name(&self) -> String {
        self.outside
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned()
    }

    /// The name the confined `Dir` of this scratch directory is shown with.
    pub fn label(&self) -> String {
        self.path.file_name().unwrap().to_str().unwrap().to_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
        let _ = std::fs::remove_dir_all(&self.outside);
    }
}

/// Runs `f` on `backend` with a fresh scratch directory opened (through
/// `env.fs()`) as a confined `Dir`, checking that no fd leaks. The
/// scratch directory itself is passed too, for checks with `std::fs`.
pub fn with_scratch<T>(
    backend: Backend,
    resolve: Resolve,
    test: &str,
    f: impl FnOnce(&Env, &Dir, &Scratch) -> weft::Result<T>,
) -> T {
    let _serial = serial();
    let scratch = Scratch::new(test);
    let before = settled_fds();
    weft_posix::force_fs_walker(resolve == Resolve::Walker);
    let result = weft::run_with(backend, |env| {
        // (Already there on disk; a backend with its own filesystem, such
        // as the mock's to come, makes it here.)
        let top = env.fs() / scratch.as_str();
        top.mkdirs(0o700)?;
        let root = top.open_dir()?;
        f(env, &root, &scratch)
    });
    weft_posix::force_fs_walker(false);
    let value = match result {
        Ok(v) => v,
        Err(e) => panic!("test failed: {e}"),
    };
    assert_fds_settle(before);
    drop(scratch);
    value
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
