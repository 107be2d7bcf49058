//! What a backend provides for a directory capability, and the options of
//! the operations that create files.

use std::any::Any;
use std::sync::Arc;

use crate::error::{Error, ErrorKind, Result};
use crate::fs::{FileImpl, Stat};

/// What to do when the file to open for writing is missing or exists.
///
/// The permission bits of the variants that may create the file are
/// filtered by the process's umask, as with `open(2)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Create {
    /// Open an existing file; fail with `NotFound` if it is missing.
    Never,
    /// Create the file with these permissions if it is missing; keep the
    /// contents of an existing one.
    IfMissing(u32),
    /// Create the file if it is missing; truncate an existing one.
    OrTruncate(u32),
    /// Create a new file; fail with `AlreadyExists` if the name is taken
    /// (even by a dangling symlink).
    Exclusive(u32),
}

impl Create {
    /// The permission bits for a new file, if this mode may create one.
    pub fn perm(self) -> Option<u32> {
        match self {
            Create::Never => None,
            Create::IfMissing(p) | Create::OrTruncate(p) | Create::Exclusive(p) => Some(p),
        }
    }
}

/// Options for [`Path::open_out`](crate::fs::Path::open_out).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenOut {
    /// Every write goes to the end of the file (`O_APPEND`).
    pub append: bool,
    /// What to do when the file is missing or exists.
    pub create: Create,
}

impl OpenOut {
    /// Options to open with `create`, writing from the start.
    pub fn new(create: Create) -> OpenOut {
        OpenOut {
            append: false,
            create,
        }
    }

    /// Options to append to the file, creating it as `create` says.
    pub fn append(create: Create) -> OpenOut {
        OpenOut {
            append: true,
            create,
        }
    }
}

/// What a backend provides for a directory capability.
///
/// Paths are strings relative to the directory (or absolute, when the
/// backend allows it). A confined backend must refuse — with
/// [`FsError::PermissionDenied`](crate::FsError::PermissionDenied) — any
/// path that would resolve outside the directory: `..` above it, absolute
/// paths, and symlinks whose targets leave it. The callers in
/// [`Path`](crate::fs::Path) add the path to the error's context; backends
/// need not.
pub trait DirBackend: Send + Sync + 'static {
    /// Opens a file for reading.
    fn open_in(&self, path: &str) -> Result<Box<dyn FileImpl>>;

    /// Opens a file for reading and writing, creating it as `opts` says.
    fn open_out(&self, path: &str, opts: &OpenOut) -> Result<Box<dyn FileImpl>>;

    /// Creates a directory (not its parents).
    fn mkdir(&self, path: &str, perm: u32) -> Result<()>;

    /// Removes an empty directory.
    fn rmdir(&self, path: &str) -> Result<()>;

    /// Removes a file or symlink (the link itself, never its target).
    fn unlink(&self, path: &str) -> Result<()>;

    /// Renames `from` (in this directory) to `to` in `to_dir`, replacing
    /// what `to` names if the platform allows. `to_dir` may be any
    /// directory of the same backend; another backend's directory is an
    /// [`ErrorKind::InvalidInput`] error.
    fn rename(&self, from: &str, to_dir: &dyn DirBackend, to: &str) -> Result<()>;

    /// Creates a symlink at `path` pointing to `target`. The target is
    /// stored as given; confinement applies when the link is followed.
    fn symlink(&self, path: &str, target: &str) -> Result<()>;

    /// The target of the symlink at `path`.
    fn read_link(&self, path: &str) -> Result<String>;

    /// The names in a directory, without `.` and `..`, in any order.
    fn read_dir(&self, path: &str) -> Result<Vec<String>>;

    /// Information about the file at `path`; with `follow`, about the
    /// target of a final symlink, else about the link itself.
    fn stat(&self, path: &str, follow: bool) -> Result<Stat>;

    /// Opens the directory at `path` as a new confined directory.
    fn open_dir(&self, path: &str) -> Result<Arc<dyn DirBackend>>;

    /// Removes `path` and, if it is a directory, everything in it. Symlinks
    /// are removed, never followed.
    ///
    /// The default walks the tree with `stat`, `read_dir`, `unlink` and
    /// `rmdir`; backends that can work on open directory handles should
    /// override it, so that a directory swapped for a symlink mid-walk
    /// cannot redirect the removal.
    fn rmtree(&self, path: &str) -> Result<()> {
        let st = self.stat(path, false)?;
        if st.kind != crate::fs::FileKind::Directory {
            return self.unlink(path);
        }
        for name in self.read_dir(path)? {
            let child = if path.is_empty() || path.ends_with('/') {
                format!("{path}{name}")
            } else {
                format!("{path}/{name}")
            };
            self.rmtree(&child)?;
        }
        self.rmdir(path)
    }

    /// This backend as `Any`, so that [`rename`](DirBackend::rename) can
    /// recognise a target directory of its own kind.
    fn as_any(&self) -> &dyn Any;
}

/// A directory capability that refuses everything: the `fs` and `cwd` of a
/// backend without a filesystem (yet), or of one whose working directory
/// could not be opened.
pub(crate) struct NoDir {
    pub(crate) why: Arc<str>,
}

impl NoDir {
    fn err<T>(&self) -> Result<T> {
        Err(Error::msg(ErrorKind::InvalidInput, self.why.to_string()))
    }
}

impl DirBackend for NoDir {
    fn open_in(&self, _: &str) -> Result<Box<dyn FileImpl>> {
        self.err()
    }
    fn open_out(&self, _: &str, _: &OpenOut) -> Result<Box<dyn FileImpl>> {
        self.err()
    }
    fn mkdir(&self, _: &str, _: u32) -> Result<()> {
        self.err()
    }
    fn rmdir(&self, _: &str) -> Result<()> {
        self.err()
    }
    fn unlink(&self, _: &str) -> Result<()> {
        self.err()
    }
    fn rename(&self, _: &str, _: &dyn DirBackend, _: &str) -> Result<()> {
        self.err()
    }
    fn symlink(&self, _: &str, _: &str) -> Result<()> {
        self.err()
    }
    fn read_link(&self, _: &str) -> Result<String> {
        self.err()
    }
    fn read_dir(&self, _: &str) -> Result<Vec<String>> {
        self.err()
    }
    fn stat(&self, _: &str, _: bool) -> Result<Stat> {
        self.err()
    }
    fn open_dir(&self, _: &str) -> Result<Arc<dyn DirBackend>> {
        self.err()
    }
    fn rmtree(&self, _: &str) -> Result<()> {
        self.err()
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}
