//! The filesystem: directory capabilities, paths and files.
//!
//! All access to files goes through a [`Dir`]: a capability for one
//! directory and everything beneath it. The [`Env`](crate::Env) hands out
//! two:
//!
//! * [`Env::cwd`](crate::Env::cwd) grants the subtree below the working
//!   directory the program started in. `..` that would leave it, absolute
//!   paths and symlinks pointing outside are refused with
//!   [`FsError::PermissionDenied`](crate::FsError::PermissionDenied).
//! * [`Env::fs`](crate::Env::fs) grants the whole filesystem, like `std::fs`:
//!   absolute paths are allowed and relative ones start at the working
//!   directory.
//!
//! A [`Path`] is a `Dir` together with a path string relative to it, built
//! with `/`. Every operation is a method on the path; errors say which path
//! they were about (`fs: not found, opening <cwd:data/in.txt>`).
//!
//! ```
//! use weft::fs::Create;
//!
//! weft::run(|env| {
//!     // A scratch directory below the system's temporary directory.
//!     let tmp = std::env::temp_dir();
//!     let scratch = env.fs() / tmp.to_str().unwrap() / format!("weft-doc-fs-{}", std::process::id());
//!     scratch.mkdirs(0o700)?;
//!     // Everything below is confined to the scratch directory.
//!     let dir = scratch.open_dir()?;
//!
//!     let path = &dir / "test.txt";
//!     path.save(b"line one\nline two\n", Create::Exclusive(0o600))?;
//!     path.with_lines(|lines| {
//!         for line in lines {
//!             weft::traceln!("Processing {:?}", line?);
//!         }
//!         Ok(())
//!     })?;
//!
//!     // The sandbox holds: no way out with `..`, absolute paths or symlinks.
//!     let err = (&dir / "../escaped").mkdir(0o700).unwrap_err();
//!     assert_eq!(err.kind(), &weft::ErrorKind::Fs(weft::FsError::PermissionDenied));
//!     assert!(err.to_string().ends_with(":../escaped>"), "{err}");
//!
//!     scratch.rmtree()
//! })
//! .unwrap();
//! ```
//!
//! # Creating, reading and writing files
//!
//! [`Path::load`] and [`Path::save`] read and write whole files;
//! [`Path::open_in`] and [`Path::open_out`] give a [`File`], which is a
//! flow ([`Source`](crate::flow::Source) + [`Sink`](crate::flow::Sink)), a
//! `std::io::Read + Write + Seek`, and offers positioned reads and writes,
//! `stat`, `set_len` and `sync_all`. [`Create`] says what to do when the
//! file is missing or exists: fail, create it, truncate it, or insist that
//! it is new.
//!
//! # Confinement
//!
//! A `Dir` made by [`Path::open_dir`] is a new sandbox rooted at that
//! directory, whichever `Dir` it came from; use it to hand a part of the
//! filesystem to code that should see nothing else. Within a sandbox,
//! symlinks are followed as long as they stay inside it. Each operation
//! resolves its path afresh, so replacing a symlink between two operations
//! cannot smuggle the second one out.
//!
//! # Backends
//!
//! Backends implement [`DirBackend`] and [`FileImpl`]; so can tests, to
//! script a filesystem. The POSIX backend runs file operations on
//! [system threads](crate::systhread), suspending only the calling fiber;
//! the io_uring backend submits them to its ring. Both resolve confined
//! paths with the same rules and code ([`resolve`]) and remove trees with
//! the same walk ([`tree`]).

use std::fmt;
use std::ops::Div;
use std::sync::Arc;

mod backend;
mod file;
mod path_ops;
pub mod resolve;
pub mod tree;

pub use backend::{Create, DirBackend, OpenOut};
pub use file::{File, FileImpl, FileKind, Stat};
pub use path_ops::Lines;

/// A capability for a directory and everything beneath it.
///
/// Cheap to clone, and `Send + Sync`: a `Dir` (or a [`Path`]) may be handed
/// to another domain. Make paths in it with `/`:
///
/// ```
/// weft::run(|env| {
///     let cwd = env.cwd();
///     let p = &cwd / "dir1" / "file";
///     assert_eq!(p.to_string(), "<cwd:dir1/file>");
///     assert_eq!(cwd.path().to_string(), "<cwd>");
///     Ok(())
/// })
/// .unwrap();
/// ```
#[derive(Clone)]
pub struct Dir {
    backend: Arc<dyn DirBackend>,
    label: Arc<str>,
}

impl fmt::Debug for Dir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Dir(<{}>)", self.label)
    }
}

impl Dir {
    /// A `Dir` backed by `backend`, shown as `<label>` in paths and error
    /// messages (backends and test doubles use this).
    pub fn new(label: impl Into<Arc<str>>, backend: Arc<dyn DirBackend>) -> Dir {
        Dir {
            backend,
            label: label.into(),
        }
    }

    /// A `Dir` that refuses every operation with an
    /// [`InvalidInput`](crate::ErrorKind::InvalidInput) error saying `why`:
    /// the filesystem of a backend that has none, or a working directory
    /// that could not be opened.
    pub fn unavailable(label: impl Into<Arc<str>>, why: impl Into<Arc<str>>) -> Dir {
        Dir::new(label, Arc::new(backend::NoDir { why: why.into() }))
    }

    /// The name this directory is shown with: `cwd`, `fs`, or for a
    /// directory opened with [`Path::open_dir`], its last path component.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The directory itself, as a path (with an empty path string).
    pub fn path(&self) -> Path {
        Path {
            dir: self.clone(),
            path: String::new(),
        }
    }

    /// The backend behind this directory.
    pub fn backend(&self) -> &Arc<dyn DirBackend> {
        &self.backend
    }
}

/// A [`Dir`] and a path relative to it (or absolute, for a `Dir` that
/// allows that, such as [`Env::fs`](crate::Env::fs)).
///
/// Paths are built with `/`, which follows Eio's rules: joining an
/// absolute path replaces the whole path, and joining `""` adds a trailing
/// slash.
///
/// ```
/// weft::run(|env| {
///     let fs = env.fs();
///     assert_eq!((&fs / "foo" / "bar").as_str(), "foo/bar");
///     assert_eq!((&fs / "foo/" / "bar").as_str(), "foo/bar");
///     assert_eq!((&fs / "foo" / "/bar").as_str(), "/bar");
///     assert_eq!((&fs / "foo" / "").as_str(), "foo/");
///     assert_eq!((&fs / "" / "bar").as_str(), "bar");
///     Ok(())
/// })
/// .unwrap();
/// ```
#[derive(Clone)]
pub struct Path {
    dir: Dir,
    path: String,
}

impl Path {
    /// The path `path` in `dir` (the same as `dir / path`).
    pub fn new(dir: &Dir, path: impl Into<String>) -> Path {
        Path {
            dir: dir.clone(),
            path: path.into(),
        }
    }

    /// The directory this path is relative to.
    pub fn dir(&self) -> &Dir {
        &self.dir
    }

    /// The path string.
    pub fn as_str(&self) -> &str {
        &self.path
    }

    /// Appends `rel` with the rules of `/` (see [`Path`]).
    pub fn join(&self, rel: &str) -> Path {
        Path {
            dir: self.dir.clone(),
            path: join(&self.path, rel),
        }
    }

    /// Splits off the last component: `"a/b//c/"` gives `"a/b"` and
    /// `"c"`, `"/c"` gives `"/"` and `"c"`. `None` when there is no
    /// component (`""`, `"/"`).
    ///
    /// ```
    /// weft::run(|env| {
    ///     let (parent, leaf) = (env.cwd() / "a/b//c/").split().unwrap();
    ///     assert_eq!((parent.as_str(), leaf.as_str()), ("a/b", "c"));
    ///     let (parent, leaf) = (env.fs() / "/c").split().unwrap();
    ///     assert_eq!((parent.as_str(), leaf.as_str()), ("/", "c"));
    ///     assert!((env.fs() / "///").split().is_none());
    ///     Ok(())
    /// })
    /// .unwrap();
    /// ```
    pub fn split(&self) -> Option<(Path, String)> {
        let (parent, leaf) = split(&self.path)?;
        Some((Path::new(&self.dir, parent), leaf.to_owned()))
    }
}

/// Splits `path` into its parent and last component (see
/// [`resolve::split`]).
pub(crate) fn split(path: &str) -> Option<(&str, &str)> {
    resolve::split(path)
}

fn join(base: &str, rel: &str) -> String {
    if rel.starts_with('/') || base.is_empty() {
        rel.to_owned()
    } else if base.ends_with('/') {
        format!("{base}{rel}")
    } else {
        format!("{base}/{rel}")
    }
}

/// `<label>` for the directory itself, else `<label:path>`, as in Eio.
impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "<{}>", self.dir.label)
        } else {
            write!(f, "<{}:{}>", self.dir.label, self.path)
        }
    }
}

impl fmt::Debug for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl<S: AsRef<str>> Div<S> for &Dir {
    type Output = Path;
    fn div(self, rel: S) -> Path {
        Path::new(self, rel.as_ref())
    }
}

impl<S: AsRef<str>> Div<S> for Dir {
    type Output = Path;
    fn div(self, rel: S) -> Path {
        Path {
            dir: self,
            path: rel.as_ref().to_owned(),
        }
    }
}

impl<S: AsRef<str>> Div<S> for &Path {
    type Output = Path;
    fn div(self, rel: S) -> Path {
        self.join(rel.as_ref())
    }
}

impl<S: AsRef<str>> Div<S> for Path {
    type Output = Path;
    fn div(mut self, rel: S) -> Path {
        self.path = join(&self.path, rel.as_ref());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const _: () = {
        const fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<Dir>();
        assert_send_sync::<Path>();
    };

    #[test]
    fn split_like_eio() {
        let cases: [(&str, Option<(&str, &str)>); 11] = [
            ("foo/bar", Some(("foo", "bar"))),
            ("/foo/bar", Some(("/foo", "bar"))),
            ("/foo/bar/baz", Some(("/foo/bar", "baz"))),
            ("/foo/bar//baz/", Some(("/foo/bar", "baz"))),
            ("bar", Some(("", "bar"))),
            ("/bar", Some(("/", "bar"))),
            (".", Some(("", "."))),
            ("./", Some(("", "."))),
            ("", None),
            ("/", None),
            ("///", None),
        ];
        for (path, want) in cases {
            assert_eq!(split(path), want, "{path:?}");
        }
    }

    #[test]
    fn join_like_eio() {
        let cases = [
            ("foo", "bar", "foo/bar"),
            ("foo/", "bar", "foo/bar"),
            ("foo", "/bar", "/bar"),
            ("foo", "", "foo/"),
            ("foo/", "", "foo/"),
            ("", "", ""),
            ("", "bar", "bar"),
            ("/", "", "/"),
        ];
        for (a, b, want) in cases {
            assert_eq!(join(a, b), want, "{a:?} / {b:?}");
        }
    }
}
