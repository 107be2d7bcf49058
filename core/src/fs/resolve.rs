//! Path resolution for backends with a real filesystem: the parts that do
//! not depend on how a backend talks to the kernel.
//!
//! A confined [`Dir`](crate::fs::Dir) must never let a path resolve
//! outside it. Linux (5.6+) enforces that in the kernel: `openat2` with
//! `RESOLVE_BENEATH` fails with `EXDEV` when `..`, an absolute path or a
//! symlink would leave the directory (and `EAGAIN` when a concurrent rename
//! makes the answer uncertain, which [`retry_beneath`] retries). Where a
//! backend cannot use `openat2`, [`walk`] does the same in user space: one
//! component at a time, never letting the kernel follow a symlink,
//! expanding each link itself (at most [`MAX_SYMLINKS`]) and keeping the
//! chain of directories entered so far, so that `..` pops back to the
//! previous one and can never rise above the root.
//!
//! Operations that act on a name in a directory (mkdir, unlink, rename,
//! symlink, lstat) resolve the parent and act on the last component
//! relative to it ([`parent_and_leaf`]), so the last component is never
//! followed.
//!
//! What stays in the backends is how one component is opened, read or
//! examined: the POSIX backend makes blocking `*at` system calls on a
//! system thread, the io_uring backend submits `IORING_OP_OPENAT` and
//! `IORING_OP_STATX` from the fiber. Both implement [`Walker`] and call
//! the one [`walk`], so they resolve every path alike.
//!
//! ```
//! use weft_core::fs::resolve::{parent_and_leaf, split};
//!
//! assert_eq!(split("a/b//c/"), Some(("a/b", "c")));
//! // A path ending in `.` or `..` is resolved as a whole: its "leaf" is `.`.
//! assert_eq!(parent_and_leaf("a/b/.."), ("a/b/..", "."));
//! assert_eq!(parent_and_leaf("a/b"), ("a", "b"));
//! ```

use std::collections::VecDeque;

use crate::error::{Error, ErrorKind, FsError, Result};

/// The most symlinks one resolution may expand (Linux's own limit).
pub const MAX_SYMLINKS: u32 = 40;

/// Attempts of `openat2(RESOLVE_BENEATH)` while the kernel reports a
/// concurrent rename (`EAGAIN`).
pub const BENEATH_ATTEMPTS: u32 = 64;

/// The error for a path that would leave its confined directory.
pub fn escape() -> Error {
    Error::msg(
        ErrorKind::Fs(FsError::PermissionDenied),
        "the path leads outside the directory",
    )
}

/// The error for a rename into a directory of another backend.
pub fn other_backend() -> Error {
    Error::msg(
        ErrorKind::InvalidInput,
        "the target directory belongs to another backend",
    )
}

/// The error for `rmtree` on a path that does not end in a name (`""`,
/// `"."`, `"a/.."`).
pub fn rmtree_needs_a_name() -> Error {
    Error::msg(
        ErrorKind::InvalidInput,
        "rmtree needs a path ending in a name",
    )
}

/// A symlink's target as a `String`, or the error for one that is not
/// UTF-8.
pub fn link_target(target: Vec<u8>) -> Result<String> {
    String::from_utf8(target).map_err(|e| {
        Error::with_source(ErrorKind::InvalidInput, e).context("the symlink's target is not UTF-8")
    })
}

/// `Err(Cancelled)` if the calling fiber is cancelled. Backends check this
/// before handing an operation to a [system thread](crate::systhread),
/// where it would run to the end (creating, renaming, removing) whatever
/// happens to the caller. Outside a fiber (a plain thread using a `Dir`)
/// it is always `Ok`.
pub fn not_cancelled() -> Result<()> {
    match crate::fiber::check() {
        Err(e) if e.is_cancelled() => Err(e),
        _ => Ok(()),
    }
}

/// `.` for the empty path (`openat` on `""` is `ENOENT`), else the path.
pub fn nonempty(path: &[u8]) -> &[u8] {
    if path.is_empty() {
        b"."
    } else {
        path
    }
}

/// Splits `path` into its parent and last component, ignoring trailing
/// slashes and collapsing the slashes between them; `"/"` is the parent of
/// `"/c"`. `None` for a path with no component (`""`, `"/"`, `"///"`).
/// This is [`Path::split`](crate::fs::Path::split) on strings.
pub fn split(path: &str) -> Option<(&str, &str)> {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return None;
    }
    match trimmed.rfind('/') {
        None => Some(("", trimmed)),
        Some(i) => {
            let leaf = &trimmed[i + 1..];
            let parent = trimmed[..i].trim_end_matches('/');
            let parent = if parent.is_empty() { "/" } else { parent };
            Some((parent, leaf))
        }
    }
}

/// The directory to resolve for an operation on a name, and the name: the
/// parent and last component of `path`; or, for a path without a usable
/// last component (`""`, `"/"`, one ending in `.` or `..`), the whole path
/// and `"."`, so that `..` is checked like any other path.
pub fn parent_and_leaf(path: &str) -> (&str, &str) {
    match split(path) {
        Some((parent, leaf)) if leaf != "." && leaf != ".." => (parent, leaf),
        _ => (path, "."),
    }
}

/// The components of `path`, without empty ones and `.`.
pub fn components(path: &[u8]) -> impl Iterator<Item = &[u8]> + '_ {
    path.split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
}

/// What one `openat2(RESOLVE_BENEATH)` attempt gave, as the backend
/// classifies it for [`retry_beneath`].
#[derive(Debug)]
pub enum Beneath<T> {
    /// It opened.
    Done(T),
    /// The path leads outside the directory (`EXDEV`).
    Escaped,
    /// A concurrent rename made the kernel give up (`EAGAIN`): try again.
    Busy(Error),
    /// Any other error, final.
    Failed(Error),
}

/// Runs `attempt` until it is not [`Beneath::Busy`] (at most
/// [`BENEATH_ATTEMPTS`] retries, then the last `EAGAIN` is the error).
/// An escape becomes [`escape`].
pub fn retry_beneath<T>(mut attempt: impl FnMut() -> Beneath<T>) -> Result<T> {
    let mut retries = 0;
    loop {
        match attempt() {
            Beneath::Done(v) => return Ok(v),
            Beneath::Escaped => return Err(escape()),
            Beneath::Busy(e) if retries >= BENEATH_ATTEMPTS => return Err(e),
            Beneath::Busy(_) => retries += 1,
            Beneath::Failed(e) => return Err(e),
        }
    }
}

/// The directory a [`Walker`] operation is relative to.
#[derive(Debug)]
pub enum At<'a, D> {
    /// The root the walk started from.
    Root,
    /// A directory entered on the way.
    Dir(&'a D),
}

impl<D> Clone for At<'_, D> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<D> Copy for At<'_, D> {}

/// What opening one component without following a symlink gave.
#[derive(Debug)]
pub enum Step<T> {
    /// The component, opened.
    Opened(T),
    /// The component is a symlink, for the walker to expand.
    Symlink,
}

/// Failures [`walk`] detects itself, which the backend turns into its own
/// errors (with the errno its system calls would give).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// The path is at least [`Walker::PATH_MAX`] bytes long
    /// (`ENAMETOOLONG`).
    PathTooLong,
    /// More than [`MAX_SYMLINKS`] symlinks (`ELOOP`).
    TooManySymlinks,
}

/// How a backend opens one path component, for [`walk`].
///
/// Every method works relative to an [`At`]: the root of the walk (which
/// the walker knows how to name) or a directory it entered on the way.
pub trait Walker {
    /// A directory entered on the way.
    type Dir;
    /// What the walk opens at the end.
    type Out;

    /// Paths of this many bytes or more are refused with
    /// [`Limit::PathTooLong`].
    const PATH_MAX: usize;

    /// Opens `name` in `at` as a directory to walk through, never following
    /// a symlink: [`Step::Symlink`] if `name` is one.
    fn enter(&self, at: At<'_, Self::Dir>, name: &[u8]) -> Result<Step<Self::Dir>>;

    /// Opens the last component `name` in `at` as the walk's caller asked,
    /// never following a symlink: [`Step::Symlink`] if `name` is one. With
    /// `dir_only` (the path ended in a slash), `name` must be a directory,
    /// and asking to create a file there is an `EISDIR` error.
    fn open_last(
        &self,
        at: At<'_, Self::Dir>,
        name: &[u8],
        dir_only: bool,
    ) -> Result<Step<Self::Out>>;

    /// Opens `at` itself as the walk's caller asked (a path that ended on
    /// a directory already entered, or on the root).
    fn open_here(&self, at: At<'_, Self::Dir>) -> Result<Self::Out>;

    /// The target of the symlink `name` in `at`; `None` if `name` is no
    /// longer a symlink (replaced since it was seen).
    fn read_link(&self, at: At<'_, Self::Dir>, name: &[u8]) -> Result<Option<Vec<u8>>>;

    /// The error for a limit the walk ran into.
    fn limit(&self, limit: Limit) -> Error;
}

/// Resolves `path` below `w`'s root one component at a time and opens the
/// result (see the [module docs](self)). Never lets the kernel follow a
/// symlink: each is read and its target spliced into the components still
/// to walk. Absolute paths, and `..` or link targets that would rise above
/// the root, fail with [`escape`].
pub fn walk<W: Walker>(w: &W, path: &[u8]) -> Result<W::Out> {
    if path.first() == Some(&b'/') {
        return Err(escape());
    }
    if path.len() >= W::PATH_MAX {
        // As the kernel would say for the whole path.
        return Err(w.limit(Limit::PathTooLong));
    }
    let mut todo: VecDeque<Vec<u8>> = components(path).map(<[u8]>::to_vec).collect();
    let mut trailing_slash = path.ends_with(b"/");
    // The directories entered so far; the last is the current one, and an
    // empty chain means the root itself.
    let mut chain: Vec<W::Dir> = Vec::new();
    let mut links = 0u32;
    loop {
        let at = chain.last().map_or(At::Root, At::Dir);
        let Some(name) = todo.pop_front() else {
            // Ended on a directory already entered (or the root): open it.
            return w.open_here(at);
        };
        if name == b".." {
            chain.pop().ok_or_else(escape)?;
            continue;
        }
        let last = todo.is_empty();
        if last {
            if let Step::Opened(out) = w.open_last(at, &name, trailing_slash)? {
                return Ok(out);
            }
        } else if let Step::Opened(dir) = w.enter(at, &name)? {
            chain.push(dir);
            continue;
        }
        // `name` is a symlink: expand it.
        links += 1;
        if links > MAX_SYMLINKS {
            return Err(w.limit(Limit::TooManySymlinks));
        }
        let Some(target) = w.read_link(at, &name)? else {
            // Replaced by a non-link since we looked: look again.
            todo.push_front(name);
            continue;
        };
        if target.first() == Some(&b'/') {
            return Err(escape());
        }
        if last && target.ends_with(b"/") {
            trailing_slash = true;
        }
        for part in components(&target).collect::<Vec<_>>().into_iter().rev() {
            todo.push_front(part.to_vec());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn split_and_parent() {
        let cases: [(&str, Option<(&str, &str)>); 11] = [
            ("foo/bar", Some(("foo", "bar"))),
            ("/foo/bar//baz/", Some(("/foo/bar", "baz"))),
            ("bar", Some(("", "bar"))),
            ("/bar", Some(("/", "bar"))),
            ("./", Some(("", "."))),
            ("a/..", Some(("a", ".."))),
            ("", None),
            ("/", None),
            ("///", None),
            ("a//", Some(("", "a"))),
            ("//a", Some(("/", "a"))),
        ];
        for (path, want) in cases {
            assert_eq!(split(path), want, "{path:?}");
        }
        assert_eq!(parent_and_leaf(""), ("", "."));
        assert_eq!(parent_and_leaf("/"), ("/", "."));
        assert_eq!(parent_and_leaf("a/."), ("a/.", "."));
        assert_eq!(parent_and_leaf("a/b/"), ("a", "b"));
        assert_eq!(
            components(b"./a//b/./..").collect::<Vec<_>>(),
            [&b"a"[..], b"b", b".."]
        );
        assert_eq!(nonempty(b""), b".");
    }

    #[test]
    fn retry_beneath_gives_up_after_the_budget() {
        let mut n = 0;
        let busy = || Error::msg(ErrorKind::Io, "busy");
        let r: Result<()> = retry_beneath(|| {
            n += 1;
            Beneath::Busy(busy())
        });
        assert_eq!(r.unwrap_err().kind(), &ErrorKind::Io);
        assert_eq!(n, BENEATH_ATTEMPTS + 1);
        let mut n = 0;
        let r = retry_beneath(|| {
            n += 1;
            if n < 3 {
                Beneath::Busy(busy())
            } else {
                Beneath::Done(n)
            }
        });
        assert_eq!(r.unwrap(), 3);
        let r: Result<()> = retry_beneath(|| Beneath::Escaped);
        assert_eq!(
            r.unwrap_err().kind(),
            &ErrorKind::Fs(FsError::PermissionDenied)
        );
    }

    /// An in-memory tree for the walker: paths (from the root, no leading
    /// slash) to entries. A directory handle is its path.
    struct Fake(HashMap<&'static str, Entry>);

    enum Entry {
        Dir,
        File,
        Link(&'static str),
    }

    impl Fake {
        fn path(at: At<'_, String>, name: &[u8]) -> String {
            let name = std::str::from_utf8(name).unwrap();
            match at {
                At::Root => name.to_owned(),
                At::Dir(d) => format!("{d}/{name}"),
            }
        }

        fn missing() -> Error {
            Error::new(ErrorKind::Fs(FsError::NotFound))
        }
    }

    impl Walker for Fake {
        type Dir = String;
        type Out = String;
        const PATH_MAX: usize = 64;

        fn enter(&self, at: At<'_, String>, name: &[u8]) -> Result<Step<String>> {
            let p = Fake::path(at, name);
            match self.0.get(p.as_str()) {
                Some(Entry::Dir) => Ok(Step::Opened(p)),
                Some(Entry::Link(_)) => Ok(Step::Symlink),
                Some(Entry::File) => Err(Error::new(ErrorKind::Fs(FsError::NotADirectory))),
                None => Err(Fake::missing()),
            }
        }

        fn open_last(
            &self,
            at: At<'_, String>,
            name: &[u8],
            dir_only: bool,
        ) -> Result<Step<String>> {
            let p = Fake::path(at, name);
            match self.0.get(p.as_str()) {
                Some(Entry::File) if dir_only => {
                    Err(Error::new(ErrorKind::Fs(FsError::NotADirectory)))
                }
                Some(Entry::Link(_)) => Ok(Step::Symlink),
                Some(_) => Ok(Step::Opened(p)),
                None => Err(Fake::missing()),
            }
        }

        fn open_here(&self, at: At<'_, String>) -> Result<String> {
            Ok(match at {
                At::Root => String::new(),
                At::Dir(d) => d.clone(),
            })
        }

        fn read_link(&self, at: At<'_, String>, name: &[u8]) -> Result<Option<Vec<u8>>> {
            match self.0.get(Fake::path(at, name).as_str()) {
                Some(Entry::Link(t)) => Ok(Some(t.as_bytes().to_vec())),
                _ => Ok(None),
            }
        }

        fn limit(&self, limit: Limit) -> Error {
            Error::msg(ErrorKind::Io, format!("{limit:?}"))
        }
    }

    fn fake() -> Fake {
        Fake(HashMap::from([
            ("a", Entry::Dir),
            ("a/b", Entry::Dir),
            ("a/f", Entry::File),
            ("a/b/up", Entry::Link("../..")),
            ("a/b/out", Entry::Link("../../..")),
            ("a/b/abs", Entry::Link("/etc")),
            ("a/b/tof", Entry::Link("../f")),
            ("a/b/todir", Entry::Link("../b/")),
            ("loop", Entry::Link("loop")),
        ]))
    }

    #[test]
    fn walker_stays_below_the_root_and_expands_links() {
        let f = fake();
        let ok = |p: &str| walk(&f, p.as_bytes()).unwrap();
        let denied = |p: &str| {
            let e = walk(&f, p.as_bytes()).unwrap_err();
            assert_eq!(e.kind(), &ErrorKind::Fs(FsError::PermissionDenied), "{p}");
        };
        assert_eq!(ok(""), "");
        assert_eq!(ok("a/b/.."), "a");
        assert_eq!(ok("a/./b//"), "a/b");
        assert_eq!(ok("a/b/tof"), "a/f");
        assert_eq!(ok("a/b/up/a/f"), "a/f");
        assert_eq!(ok("a/b/todir/up"), "");
        for p in ["..", "a/../..", "/a", "a/b/out", "a/b/abs", "a/b/out/x"] {
            denied(p);
        }
        let e = walk(&f, b"loop").unwrap_err();
        assert!(e.to_string().contains("TooManySymlinks"), "{e}");
        let e = walk(&f, "a/".repeat(40).as_bytes()).unwrap_err();
        assert!(e.to_string().contains("PathTooLong"), "{e}");
        // A link ending in a slash makes the last component a directory.
        assert_eq!(ok("a/b/todir"), "a/b");
        assert_eq!(
            walk(&f, b"a/f/").unwrap_err().kind(),
            &ErrorKind::Fs(FsError::NotADirectory)
        );
    }
}
