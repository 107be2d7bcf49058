//! Removing a directory tree on open directory handles, for backends with a
//! real filesystem.
//!
//! [`remove_tree`] never follows a symlink and never resolves a path twice:
//! it holds one open directory per level and removes each entry relative to
//! it, so a directory swapped for a symlink in the middle of the walk
//! cannot redirect the removal elsewhere. The backend supplies the three
//! system calls ([`Remover`]); the POSIX backend makes them on a system
//! thread, the io_uring backend through its ring.

use crate::error::{Error, Result};

/// What removing a name with `unlinkat(dir, name, 0)` gave, as the backend
/// classifies it.
#[derive(Debug)]
pub enum Unlinked {
    /// The name was removed.
    Removed,
    /// Nothing has that name (`ENOENT`); the error, in case it matters.
    Missing(Error),
    /// The name is a directory (`EISDIR` on Linux, `EPERM` elsewhere); the
    /// error, in case it turns out not to be one after all.
    Directory(Error),
}

/// A directory opened to be emptied, and its entries.
#[derive(Debug)]
pub struct Listed<D> {
    /// The directory, open.
    pub dir: D,
    /// Its entries, without `.` and `..`.
    pub names: Vec<Vec<u8>>,
}

/// The system calls [`remove_tree`] needs.
pub trait Remover {
    /// An open directory.
    type Dir;

    /// Removes the non-directory `name` in `dir` (`unlinkat(.., 0)`).
    fn unlink(&self, dir: &Self::Dir, name: &[u8]) -> Result<Unlinked>;

    /// Opens `name` in `dir` as a directory to empty, never through a
    /// symlink, and lists its entries (without `.` and `..`). `None` if
    /// `name` is not a directory (or is a symlink).
    fn open_dir(&self, dir: &Self::Dir, name: &[u8]) -> Result<Option<Listed<Self::Dir>>>;

    /// Removes the empty directory `name` in `dir`
    /// (`unlinkat(.., AT_REMOVEDIR)`).
    fn rmdir(&self, dir: &Self::Dir, name: &[u8]) -> Result<()>;

    /// The error for a name that could be neither unlinked nor opened as a
    /// directory (`ENOTDIR`).
    fn not_a_directory(&self) -> Error;
}

/// A directory being emptied.
struct Level<D> {
    /// The directory, open.
    dir: D,
    /// Its name in the level above.
    name: Vec<u8>,
    /// Entries still to remove.
    todo: Vec<Vec<u8>>,
}

/// Removes `name` in `parent` and, for a directory, everything below it,
/// without following symlinks. Iterative, holding one open directory per
/// level. Entries that vanish meanwhile are fine; anything else that fails
/// stops the removal with that error.
pub fn remove_tree<R: Remover>(r: &R, parent: &R::Dir, name: Vec<u8>) -> Result<()> {
    match r.unlink(parent, &name)? {
        Unlinked::Removed => return Ok(()),
        Unlinked::Directory(_) => {}
        Unlinked::Missing(e) => return Err(e),
    }
    let Some(top) = r.open_dir(parent, &name)? else {
        return Err(r.not_a_directory());
    };
    let mut stack = vec![Level {
        dir: top.dir,
        name,
        todo: top.names,
    }];
    while let Some(level) = stack.last_mut() {
        let Some(entry) = level.todo.pop() else {
            let done = stack.pop().expect("the stack has a top level");
            drop(done.dir);
            let above = stack.last().map_or(parent, |l| &l.dir);
            r.rmdir(above, &done.name)?;
            continue;
        };
        match r.unlink(&level.dir, &entry)? {
            Unlinked::Removed | Unlinked::Missing(_) => {}
            Unlinked::Directory(e) => match r.open_dir(&level.dir, &entry)? {
                Some(child) => stack.push(Level {
                    dir: child.dir,
                    name: entry,
                    todo: child.names,
                }),
                None => return Err(e),
            },
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{ErrorKind, FsError};
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    /// Paths to "is a directory"; a directory handle is its path.
    struct Fake(RefCell<BTreeMap<String, bool>>);

    fn join(dir: &str, name: &[u8]) -> String {
        format!("{dir}/{}", std::str::from_utf8(name).unwrap())
    }

    impl Remover for Fake {
        type Dir = String;

        fn unlink(&self, dir: &String, name: &[u8]) -> Result<Unlinked> {
            let p = join(dir, name);
            let mut m = self.0.borrow_mut();
            Ok(match m.get(&p) {
                None => Unlinked::Missing(Error::new(ErrorKind::Fs(FsError::NotFound))),
                Some(true) => Unlinked::Directory(Error::new(ErrorKind::Fs(FsError::IsADirectory))),
                Some(false) => {
                    m.remove(&p);
                    Unlinked::Removed
                }
            })
        }

        fn open_dir(&self, dir: &String, name: &[u8]) -> Result<Option<Listed<String>>> {
            let p = join(dir, name);
            let m = self.0.borrow();
            if m.get(&p) != Some(&true) {
                return Ok(None);
            }
            let prefix = format!("{p}/");
            let names = m
                .keys()
                .filter_map(|k| k.strip_prefix(&prefix))
                .filter(|rest| !rest.contains('/'))
                .map(|n| n.as_bytes().to_vec())
                .collect();
            Ok(Some(Listed { dir: p, names }))
        }

        fn rmdir(&self, dir: &String, name: &[u8]) -> Result<()> {
            let p = join(dir, name);
            let mut m = self.0.borrow_mut();
            let prefix = format!("{p}/");
            assert!(!m.keys().any(|k| k.starts_with(&prefix)), "{p} not empty");
            m.remove(&p);
            Ok(())
        }

        fn not_a_directory(&self) -> Error {
            Error::new(ErrorKind::Fs(FsError::NotADirectory))
        }
    }

    #[test]
    fn removes_depth_first_and_reports_missing_roots() {
        let entries = [
            ("/r/t", true),
            ("/r/t/a", true),
            ("/r/t/a/x", false),
            ("/r/t/a/y", true),
            ("/r/t/b", false),
            ("/r/keep", false),
        ];
        let fake = Fake(RefCell::new(
            entries.iter().map(|(p, d)| (p.to_string(), *d)).collect(),
        ));
        remove_tree(&fake, &"/r".to_string(), b"t".to_vec()).unwrap();
        assert_eq!(fake.0.borrow().keys().collect::<Vec<_>>(), ["/r/keep"]);
        remove_tree(&fake, &"/r".to_string(), b"keep".to_vec()).unwrap();
        let e = remove_tree(&fake, &"/r".to_string(), b"gone".to_vec()).unwrap_err();
        assert_eq!(e.kind(), &ErrorKind::Fs(FsError::NotFound));
    }
}
