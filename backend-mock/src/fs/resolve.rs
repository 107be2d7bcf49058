//! Path resolution in the in-memory filesystem, confined or not.
//!
//! The rules are the POSIX backend's (its `resolve` module), which are
//! Linux's with `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)` for
//! confined directories:
//!
//! * A path is split into components; empty ones and `.` are skipped. A
//!   path of 4096 bytes or more, or a component longer than 255, is
//!   `InvalidPath` ("file name too long"); so is a NUL byte anywhere.
//! * `..` goes to the parent directory. In a confined directory, `..` at
//!   its root is refused with `PermissionDenied` ("the path leads outside
//!   the directory"); in the unconfined `fs`, `..` at `/` stays at `/`.
//! * An absolute path starts at `/` — and is refused in a confined
//!   directory, even if it names something inside.
//! * A symlink met on the way is expanded: its target's components take
//!   its place (relative to the directory holding the link; from `/` for an
//!   absolute target, refused when confined). More than 40 expansions in
//!   one resolution is `TooManySymlinks`, which is how loops end.
//! * A last component that is a symlink is followed or not, as the
//!   operation says; a trailing slash always follows it and requires a
//!   directory.
//!
//! Operations on a name in a directory (mkdir, unlink, rename, symlink,
//! lstat, …) resolve the directory with `parent` and act on the last
//! component there, never following it, exactly as the POSIX backend does
//! with its `*at` system calls.
//!
//! ```
//! use weft::fs::Create;
//!
//! weft::mock::run(|env| {
//!     let cwd = env.cwd();
//!     (&cwd / "a/b").mkdirs(0o755)?;
//!     (&cwd / "a/b/up").symlink("..")?;
//!     (&cwd / "a/f").save("f", Create::Exclusive(0o644))?;
//!     // `..` and links are fine while they stay inside...
//!     assert_eq!((&cwd / "a/b/up/f").load_string()?, "f");
//!     assert_eq!((&cwd / "a/b/../b/./up/f").load_string()?, "f");
//!     // ...and refused as soon as they would leave.
//!     let err = (&cwd / "a/b/up/../..").read_dir().unwrap_err();
//!     assert_eq!(err.to_string(),
//!         "fs: permission denied, the path leads outside the directory, \
//!          reading directory <cwd:a/b/up/../..>");
//!     Ok(())
//! })
//! .unwrap();
//! ```

use std::collections::VecDeque;

use weft_core::{Error, ErrorKind, FsError, Result};

use super::tree::{Body, Ino, Tree, ROOT};

/// The most symlinks one resolution may expand (Linux's own limit).
pub(crate) const MAX_SYMLINKS: u32 = 40;

/// Paths of this many bytes or more are too long (Linux's `PATH_MAX`).
pub(crate) const PATH_MAX: usize = 4096;

/// The longest name of one directory entry (Linux's `NAME_MAX`).
pub(crate) const NAME_MAX: usize = 255;

/// Where a directory capability resolves paths from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Base {
    /// The directory relative paths start from: the root of a confined
    /// directory, the working directory for the unconfined `fs`.
    pub(crate) start: Ino,
    /// Whether paths must stay below `start`.
    pub(crate) confined: bool,
}

impl Base {
    /// The directory `..` cannot go above.
    fn top(self) -> Ino {
        if self.confined {
            self.start
        } else {
            ROOT
        }
    }
}

/// An error of kind `Fs(e)`, with nothing more to say.
pub(crate) fn fs_err(e: FsError) -> Error {
    Error::new(ErrorKind::Fs(e))
}

/// The error for a path that would leave its confined directory (the same
/// as the POSIX backend's).
pub(crate) fn escape() -> Error {
    Error::msg(
        ErrorKind::Fs(FsError::PermissionDenied),
        "the path leads outside the directory",
    )
}

/// `ENAMETOOLONG`.
pub(crate) fn too_long() -> Error {
    Error::msg(ErrorKind::Fs(FsError::InvalidPath), "file name too long")
}

/// Refuses a path string with a NUL byte (as the POSIX backend does when it
/// makes a C string of it).
pub(crate) fn check_nul(path: &str) -> Result<()> {
    if path.as_bytes().contains(&0) {
        return Err(Error::msg(
            ErrorKind::Fs(FsError::InvalidPath),
            "path contains a NUL byte",
        ));
    }
    Ok(())
}

/// Refuses a directory entry name longer than [`NAME_MAX`].
pub(crate) fn check_name(name: &str) -> Result<()> {
    if name.len() > NAME_MAX {
        return Err(too_long());
    }
    Ok(())
}

/// Where a path led.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Found {
    /// Something that exists (a symlink only if the last one was not to be
    /// followed).
    Node(Ino),
    /// Nothing: the last component `name` is missing from directory `dir`.
    Missing { dir: Ino, name: String },
}

/// The result of [`walk`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Walked {
    pub(crate) found: Found,
    /// The path (or the target of a last symlink) ended with a slash: what
    /// it names must be a directory, and cannot be created as a file.
    pub(crate) dir_required: bool,
}

/// The components of `path`, without empty ones and `.`.
fn components(path: &str) -> impl DoubleEndedIterator<Item = &str> {
    path.split('/').filter(|c| !c.is_empty() && *c != ".")
}

/// Resolves `path` from `base` (see the module docs). With `follow_last`,
/// a last component that is a symlink is followed. With `creating` (the
/// path is being opened with a create mode), a last component that must be
/// a directory (a trailing slash) is `IsADirectory` whatever it names, as
/// in Linux's `open(O_CREAT)`.
pub(crate) fn walk(
    t: &Tree,
    base: Base,
    path: &str,
    follow_last: bool,
    creating: bool,
) -> Result<Walked> {
    check_nul(path)?;
    if path.len() >= PATH_MAX {
        return Err(too_long());
    }
    let mut cur = base.start;
    if path.starts_with('/') {
        if base.confined {
            return Err(escape());
        }
        cur = ROOT;
    }
    let mut todo: VecDeque<String> = components(path).map(str::to_owned).collect();
    let mut dir_required = path.ends_with('/');
    let mut links = 0u32;
    loop {
        let Some(name) = todo.pop_front() else {
            // Ended on a directory entered already (or the start).
            return Ok(Walked {
                found: Found::Node(cur),
                dir_required,
            });
        };
        if name == ".." {
            if cur == base.top() {
                if base.confined {
                    return Err(escape());
                }
            } else if t.is_alive(cur) {
                cur = t.parent(cur);
            }
            continue;
        }
        check_name(&name)?;
        let last = todo.is_empty();
        if last && creating && dir_required {
            return Err(fs_err(FsError::IsADirectory));
        }
        let Some(ino) = t.lookup(cur, &name) else {
            if last {
                return Ok(Walked {
                    found: Found::Missing { dir: cur, name },
                    dir_required,
                });
            }
            return Err(fs_err(FsError::NotFound));
        };
        let target = match &t.get(ino).body {
            Body::Dir { .. } if last => {
                return Ok(Walked {
                    found: Found::Node(ino),
                    dir_required,
                })
            }
            Body::Dir { .. } => {
                cur = ino;
                continue;
            }
            Body::File(_) | Body::Device(_) if last && !dir_required => {
                return Ok(Walked {
                    found: Found::Node(ino),
                    dir_required,
                })
            }
            Body::File(_) | Body::Device(_) => return Err(fs_err(FsError::NotADirectory)),
            Body::Symlink(_) if last && !follow_last && !dir_required => {
                return Ok(Walked {
                    found: Found::Node(ino),
                    dir_required,
                })
            }
            Body::Symlink(target) => target,
        };
        links += 1;
        if links > MAX_SYMLINKS {
            return Err(fs_err(FsError::TooManySymlinks));
        }
        if target.starts_with('/') {
            if base.confined {
                return Err(escape());
            }
            cur = ROOT;
        }
        if last && target.ends_with('/') {
            dir_required = true;
        }
        for part in components(target).rev() {
            todo.push_front(part.to_owned());
        }
    }
}

/// Resolves `path` (following every symlink) to a directory.
pub(crate) fn dir(t: &Tree, base: Base, path: &str) -> Result<Ino> {
    match walk(t, base, path, true, false)?.found {
        Found::Missing { .. } => Err(fs_err(FsError::NotFound)),
        Found::Node(ino) if t.get(ino).is_dir() => Ok(ino),
        Found::Node(_) => Err(fs_err(FsError::NotADirectory)),
    }
}

/// Resolves the directory holding `path`'s last component and returns it
/// with that component. A path without a usable last component (`""`,
/// `"/"`, one ending in `.` or `..`) resolves as a whole, with `.` as the
/// component, so that `..` is checked like any other path.
pub(crate) fn parent<'p>(t: &Tree, base: Base, path: &'p str) -> Result<(Ino, &'p str)> {
    let (parent, leaf) = weft_core::fs::resolve::parent_and_leaf(path);
    check_nul(leaf)?;
    Ok((dir(t, base, parent)?, leaf))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// `/r` with `a/b/`, `a/file`, and the given symlinks; returns the tree
    /// and `/r`'s inode.
    fn tree(links: &[(&str, &str, &str)]) -> (Tree, Ino) {
        let mut t = Tree::new();
        let dir = |t: &mut Tree, parent: Ino, name: &str| {
            let body = Body::Dir {
                entries: BTreeMap::new(),
                parent,
            };
            let ino = t.alloc(body, 0o755);
            t.link(parent, name, ino);
            ino
        };
        let r = dir(&mut t, ROOT, "r");
        let a = dir(&mut t, r, "a");
        dir(&mut t, a, "b");
        let f = t.alloc(Body::File(b"f".to_vec()), 0o644);
        t.link(a, "file", f);
        for (at, name, target) in links {
            let at = if at.is_empty() {
                r
            } else {
                t.lookup(r, at).unwrap()
            };
            let l = t.alloc(Body::Symlink((*target).to_owned()), 0o777);
            t.link(at, name, l);
        }
        (t, r)
    }

    fn confined(r: Ino) -> Base {
        Base {
            start: r,
            confined: true,
        }
    }

    fn kind(r: Result<Walked>) -> ErrorKind {
        r.unwrap_err().kind().clone()
    }

    #[test]
    fn dotdot_stays_below_a_confined_root() {
        let (t, r) = tree(&[]);
        let denied = ErrorKind::Fs(FsError::PermissionDenied);
        for p in ["..", "a/../..", "a/b/../../../a", "/", "/r"] {
            assert_eq!(kind(walk(&t, confined(r), p, true, false)), denied, "{p}");
        }
        for p in ["", ".", "a/..", "a/b/../..", "a/./b/..//.."] {
            let w = walk(&t, confined(r), p, true, false).unwrap();
            assert_eq!(w.found, Found::Node(r), "{p}");
        }
        // Unconfined, `..` stops at `/`.
        let fs = Base {
            start: r,
            confined: false,
        };
        assert_eq!(
            walk(&t, fs, "../../..", true, false).unwrap().found,
            Found::Node(ROOT)
        );
        assert_eq!(
            walk(&t, fs, "/r/a/..", true, false).unwrap().found,
            Found::Node(r)
        );
    }

    #[test]
    fn links_are_expanded_and_counted() {
        let (t, r) = tree(&[
            ("", "up", "a/b/.."),
            ("a", "to-file", "../a/file"),
            ("", "loop", "loop"),
            ("a", "out", "../.."),
            ("", "abs", "/r/a"),
            ("", "dangle", "a/new"),
        ]);
        let file = t.lookup(t.lookup(r, "a").unwrap(), "file").unwrap();
        let w = |p: &str, follow| walk(&t, confined(r), p, follow, false);
        assert_eq!(w("up/file", true).unwrap().found, Found::Node(file));
        assert_eq!(w("a/to-file", true).unwrap().found, Found::Node(file));
        let link = t.lookup(t.lookup(r, "a").unwrap(), "to-file").unwrap();
        assert_eq!(w("a/to-file", false).unwrap().found, Found::Node(link));
        assert_eq!(
            kind(w("loop", true)),
            ErrorKind::Fs(FsError::TooManySymlinks)
        );
        let denied = ErrorKind::Fs(FsError::PermissionDenied);
        assert_eq!(kind(w("a/out", true)), denied);
        assert_eq!(kind(w("abs", true)), denied);
        let a = t.lookup(r, "a").unwrap();
        assert_eq!(
            w("dangle", true).unwrap().found,
            Found::Missing {
                dir: a,
                name: "new".into()
            }
        );
    }

    #[test]
    fn slashes_names_and_lengths() {
        let (t, r) = tree(&[]);
        let w = |p: &str| walk(&t, confined(r), p, true, false);
        assert_eq!(kind(w("a/file/")), ErrorKind::Fs(FsError::NotADirectory));
        assert!(w("new/").unwrap().dir_required);
        let create = |p: &str| walk(&t, confined(r), p, true, true);
        assert_eq!(
            kind(create("a/file/")),
            ErrorKind::Fs(FsError::IsADirectory)
        );
        assert_eq!(create("a/..").unwrap().found, Found::Node(r));
        assert_eq!(kind(w("missing/x")), ErrorKind::Fs(FsError::NotFound));
        assert_eq!(kind(w("a/file/x")), ErrorKind::Fs(FsError::NotADirectory));
        let invalid = ErrorKind::Fs(FsError::InvalidPath);
        assert_eq!(kind(w(&"a/".repeat(3000))), invalid);
        assert_eq!(kind(w(&"n".repeat(256))), invalid);
        assert_eq!(kind(w("a\0b")), invalid);
        assert!(w(&"n".repeat(255)).is_ok());
        assert_eq!(parent(&t, confined(r), "a/b/").unwrap().1, "b");
        assert_eq!(parent(&t, confined(r), "a/..").unwrap(), (r, "."));
    }
}
