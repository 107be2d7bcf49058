//! Directory capabilities on the in-memory filesystem, and the operations
//! behind them.
//!
//! Each operation is a function on the locked `Tree` and a `Base` (where
//! paths start and whether they are confined), doing what the POSIX
//! backend's system calls do, error for error: the name-in-a-directory
//! operations resolve the parent with `resolve::parent` and act on the
//! last component, never following it; the others resolve the whole path.
//! `MemDir` is the `DirBackend` that calls them for a `Dir`;
//! [`MemFs`]'s inspection methods call them for tests, unconfined.
//!
//! Which error for which case (all as on Linux):
//!
//! | case | error |
//! |---|---|
//! | a path component, or the entry acted on, is missing | `NotFound` |
//! | a component on the way is a file | `NotADirectory` |
//! | `mkdir`, `symlink` or `open_out(Exclusive)` of a name that is taken (even by a dangling symlink) | `AlreadyExists` |
//! | `open_out` or `unlink` of a directory, creating a file with a trailing slash | `IsADirectory` |
//! | `rmdir` of a file or symlink, `read_dir` of a file | `NotADirectory` |
//! | `rmdir` of a non-empty directory, `rename` over one | `DirectoryNotEmpty` |
//! | `rename` of a file over a directory | `IsADirectory` |
//! | `rename` of a directory over a file | `NotADirectory` |
//! | `rename` of a directory into itself | `InvalidInput` |
//! | `rename` of `.` or `..`, or onto them | `Busy` |
//! | creating anything in a directory that was removed | `NotFound` |
//! | `read_link` of something that is not a symlink | `InvalidInput` |
//!
//! ```
//! use weft::fs::Create;
//! use weft::{ErrorKind, FsError};
//!
//! weft::mock::run(|env| {
//!     let cwd = env.cwd();
//!     (&cwd / "d/sub").mkdirs(0o755)?;
//!     (&cwd / "f").save("x", Create::Exclusive(0o600))?;
//!     let kind = |r: weft::Result<()>| r.unwrap_err().kind().clone();
//!     assert_eq!(kind((&cwd / "d").rmdir()), ErrorKind::Fs(FsError::DirectoryNotEmpty));
//!     assert_eq!(kind((&cwd / "d").unlink()), ErrorKind::Fs(FsError::IsADirectory));
//!     assert_eq!(kind((&cwd / "f").rename(&(&cwd / "d"))), ErrorKind::Fs(FsError::IsADirectory));
//!     assert_eq!(kind((&cwd / "d").rename(&(&cwd / "d/sub/in"))), ErrorKind::InvalidInput);
//!     (&cwd / "d").rename(&(&cwd / "e"))?;
//!     assert_eq!(cwd.path().read_dir()?, ["e", "f"]);
//!     Ok(())
//! })
//! .unwrap();
//! ```

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;

use weft_core::fs::{Create, DirBackend, FileImpl, OpenOut, Stat};
use weft_core::{Error, ErrorKind, FsError, Result};

use super::file::MemFile;
use super::resolve::{self, check_name, fs_err, Base, Found};
use super::tree::{Body, Device, Ino, Tree};
use super::{not_cancelled, MemFs};

/// An error of kind `InvalidInput` saying `msg`.
fn invalid(msg: &'static str) -> Error {
    Error::msg(ErrorKind::InvalidInput, msg)
}

/// Fails with `NotFound` if directory `dir` was removed: nothing can be
/// created in it.
fn alive(t: &Tree, dir: Ino) -> Result<()> {
    if t.is_alive(dir) {
        Ok(())
    } else {
        Err(fs_err(FsError::NotFound))
    }
}

/// A new empty directory or file or symlink named `name` in `dir`.
fn create(t: &mut Tree, dir: Ino, name: &str, body: Body, perm: u32) -> Result<Ino> {
    alive(t, dir)?;
    let perm = match body {
        Body::Symlink(_) => perm,
        _ => perm & !t.umask,
    };
    let ino = t.alloc(body, perm);
    t.link(dir, name, ino);
    Ok(ino)
}

/// Creates the device node `path` (the layout of a new `MemFs`).
pub(crate) fn mknod(t: &mut Tree, base: Base, path: &str, device: Device, perm: u32) -> Result<()> {
    let (dir, leaf) = resolve::parent(t, base, path)?;
    create(t, dir, leaf, Body::Device(device), perm).map(drop)
}

/// Opens `path` for reading (`opts` `None`) or for reading and writing as
/// `opts` says, creating or truncating the file; returns the inode. A
/// directory may be opened for reading only (reads then fail).
pub(crate) fn open(t: &mut Tree, base: Base, path: &str, opts: Option<&OpenOut>) -> Result<Ino> {
    let create_perm = opts.and_then(|o| o.create.perm());
    let exclusive = matches!(opts, Some(o) if matches!(o.create, Create::Exclusive(_)));
    let w = resolve::walk(t, base, path, !exclusive, create_perm.is_some())?;
    match (w.found, create_perm) {
        (Found::Missing { dir, name }, Some(perm)) => {
            create(t, dir, &name, Body::File(Vec::new()), perm)
        }
        (Found::Missing { .. }, None) => Err(fs_err(FsError::NotFound)),
        (Found::Node(_), _) if exclusive => Err(fs_err(FsError::AlreadyExists)),
        (Found::Node(ino), _) if opts.is_none() => Ok(ino),
        (Found::Node(ino), _) => {
            let truncate = matches!(opts.map(|o| o.create), Some(Create::OrTruncate(_)));
            let now = t.now();
            let inode = t.get_mut(ino);
            match &mut inode.body {
                Body::Dir { .. } => return Err(fs_err(FsError::IsADirectory)),
                Body::File(data) if truncate => {
                    data.clear();
                    (inode.mtime, inode.ctime) = (now, now);
                }
                _ => {}
            }
            Ok(ino)
        }
    }
}

/// The directory and name where `path` is to be created: the name must be
/// valid and not taken, and the directory still linked.
fn free_name<'p>(t: &Tree, base: Base, path: &'p str) -> Result<(Ino, &'p str)> {
    let (dir, leaf) = resolve::parent(t, base, path)?;
    if leaf == "." {
        return Err(fs_err(FsError::AlreadyExists));
    }
    check_name(leaf)?;
    alive(t, dir)?;
    if t.lookup(dir, leaf).is_some() {
        return Err(fs_err(FsError::AlreadyExists));
    }
    Ok((dir, leaf))
}

/// Creates the directory `path` (not its parents).
pub(crate) fn mkdir(t: &mut Tree, base: Base, path: &str, perm: u32) -> Result<()> {
    let (dir, leaf) = free_name(t, base, path)?;
    let body = Body::Dir {
        entries: BTreeMap::new(),
        parent: dir,
    };
    create(t, dir, leaf, body, perm).map(drop)
}

/// The entry `path` names, not following a last symlink: its directory,
/// name and inode. `dot` is the error for a path that names no entry.
fn entry<'p>(t: &Tree, base: Base, path: &'p str, dot: Error) -> Result<(Ino, &'p str, Ino)> {
    let (dir, leaf) = resolve::parent(t, base, path)?;
    if leaf == "." {
        return Err(dot);
    }
    check_name(leaf)?;
    match t.lookup(dir, leaf) {
        Some(ino) => Ok((dir, leaf, ino)),
        None => Err(fs_err(FsError::NotFound)),
    }
}

/// Removes the empty directory `path`.
pub(crate) fn rmdir(t: &mut Tree, base: Base, path: &str) -> Result<()> {
    let dot = invalid("invalid argument: the path names no entry to remove");
    let (dir, leaf, ino) = entry(t, base, path, dot)?;
    match t.entries(ino) {
        None => Err(fs_err(FsError::NotADirectory)),
        Some(e) if !e.is_empty() => Err(fs_err(FsError::DirectoryNotEmpty)),
        Some(_) => {
            t.unlink(dir, leaf);
            Ok(())
        }
    }
}

/// Removes the file or symlink `path`.
pub(crate) fn unlink(t: &mut Tree, base: Base, path: &str) -> Result<()> {
    let (dir, leaf, ino) = entry(t, base, path, fs_err(FsError::IsADirectory))?;
    if t.get(ino).is_dir() {
        return Err(fs_err(FsError::IsADirectory));
    }
    t.unlink(dir, leaf);
    Ok(())
}

/// Removes `path` and everything below it, never following symlinks.
pub(crate) fn rmtree(t: &mut Tree, base: Base, path: &str) -> Result<()> {
    let dot = invalid("rmtree needs a path ending in a name");
    let (dir, leaf, _) = entry(t, base, path, dot)?;
    t.remove_tree(dir, leaf);
    Ok(())
}

/// Renames `from` (resolved from `base`) to `to` (from `to_base`), replacing
/// a file, or an empty directory by a directory.
pub(crate) fn rename(t: &mut Tree, base: Base, from: &str, to_base: Base, to: &str) -> Result<()> {
    let (fdir, fleaf) = resolve::parent(t, base, from)?;
    let (tdir, tleaf) = resolve::parent(t, to_base, to)?;
    if fleaf == "." || tleaf == "." {
        return Err(Error::msg(
            ErrorKind::Fs(FsError::Busy),
            "cannot rename `.` or `..`",
        ));
    }
    check_name(fleaf)?;
    let src = t
        .lookup(fdir, fleaf)
        .ok_or_else(|| fs_err(FsError::NotFound))?;
    check_name(tleaf)?;
    alive(t, tdir)?;
    let dst = t.lookup(tdir, tleaf);
    let src_is_dir = t.get(src).is_dir();
    if src_is_dir && t.is_within(tdir, src) {
        return Err(invalid(
            "invalid argument: cannot move a directory into itself",
        ));
    }
    if let Some(dst) = dst {
        if dst == src {
            return Ok(());
        }
        // Linux's order: a target that is an ancestor of the source, then
        // the kinds, then whether a directory replaced is empty.
        let dst_is_dir = t.get(dst).is_dir();
        if dst_is_dir && t.is_within(fdir, dst) {
            return Err(fs_err(FsError::DirectoryNotEmpty));
        }
        match (src_is_dir, dst_is_dir) {
            (false, true) => return Err(fs_err(FsError::IsADirectory)),
            (true, false) => return Err(fs_err(FsError::NotADirectory)),
            _ => {}
        }
        if t.entries(dst).is_some_and(|e| !e.is_empty()) {
            return Err(fs_err(FsError::DirectoryNotEmpty));
        }
        t.unlink(tdir, tleaf);
    }
    t.move_entry(fdir, fleaf, tdir, tleaf);
    Ok(())
}

/// Creates the symlink `path` → `target`.
pub(crate) fn symlink(t: &mut Tree, base: Base, path: &str, target: &str) -> Result<()> {
    resolve::check_nul(target)?;
    if target.is_empty() {
        return Err(Error::msg(
            ErrorKind::Fs(FsError::NotFound),
            "a symlink's target cannot be empty",
        ));
    }
    if target.len() >= resolve::PATH_MAX {
        return Err(resolve::too_long());
    }
    let (dir, leaf) = free_name(t, base, path)?;
    create(t, dir, leaf, Body::Symlink(target.to_owned()), 0o777).map(drop)
}

/// The target of the symlink `path`.
pub(crate) fn read_link(t: &Tree, base: Base, path: &str) -> Result<String> {
    let not_link = || invalid("invalid argument: not a symbolic link");
    let (_, _, ino) = entry(t, base, path, not_link())?;
    match &t.get(ino).body {
        Body::Symlink(target) => Ok(target.clone()),
        _ => Err(not_link()),
    }
}

/// The names in directory `path`, sorted.
pub(crate) fn read_dir(t: &Tree, base: Base, path: &str) -> Result<Vec<String>> {
    let dir = resolve::dir(t, base, path)?;
    Ok(t.entries(dir)
        .into_iter()
        .flatten()
        .map(|(n, _)| n.clone())
        .collect())
}

/// The [`Stat`] of `path`, following a last symlink or not.
pub(crate) fn stat(t: &Tree, base: Base, path: &str, follow: bool) -> Result<Stat> {
    if follow {
        return match resolve::walk(t, base, path, true, false)?.found {
            Found::Node(ino) => Ok(t.stat(ino)),
            Found::Missing { .. } => Err(fs_err(FsError::NotFound)),
        };
    }
    let (dir, leaf) = resolve::parent(t, base, path)?;
    if leaf == "." {
        return Ok(t.stat(dir));
    }
    check_name(leaf)?;
    match t.lookup(dir, leaf) {
        Some(ino) => Ok(t.stat(ino)),
        None => Err(fs_err(FsError::NotFound)),
    }
}

/// A directory capability on a [`MemFs`]: confined below a directory, or
/// (for `env.fs()`) the whole filesystem. Holds its directory open: if the
/// directory is removed, the `Dir` still works, on an empty directory in
/// which nothing can be created.
pub(crate) struct MemDir {
    fs: MemFs,
    base: Base,
}

impl MemDir {
    /// A capability resolving from `base`, taking a handle on its start.
    pub(crate) fn new(fs: MemFs, t: &mut Tree, base: Base) -> MemDir {
        t.open(base.start, true);
        MemDir { fs, base }
    }

    /// Runs `op` on the locked tree, if the calling fiber is not cancelled.
    fn with<T>(&self, op: impl FnOnce(&mut Tree, Base) -> Result<T>) -> Result<T> {
        not_cancelled()?;
        op(&mut self.fs.lock(), self.base)
    }

    fn open_file(&self, path: &str, opts: Option<&OpenOut>) -> Result<Box<dyn FileImpl>> {
        self.with(|t, base| {
            let ino = open(t, base, path, opts)?;
            let (writable, append) = opts.map_or((false, false), |o| (true, o.append));
            Ok(
                Box::new(MemFile::new(self.fs.clone(), t, ino, writable, append))
                    as Box<dyn FileImpl>,
            )
        })
    }
}

impl Drop for MemDir {
    fn drop(&mut self) {
        self.fs.lock().release(self.base.start, true);
    }
}

impl DirBackend for MemDir {
    fn open_in(&self, path: &str) -> Result<Box<dyn FileImpl>> {
        self.open_file(path, None)
    }

    fn open_out(&self, path: &str, opts: &OpenOut) -> Result<Box<dyn FileImpl>> {
        self.open_file(path, Some(opts))
    }

    fn mkdir(&self, path: &str, perm: u32) -> Result<()> {
        self.with(|t, base| mkdir(t, base, path, perm))
    }

    fn rmdir(&self, path: &str) -> Result<()> {
        self.with(|t, base| rmdir(t, base, path))
    }

    fn unlink(&self, path: &str) -> Result<()> {
        self.with(|t, base| unlink(t, base, path))
    }

    /// Within one `MemFs`, atomic. To another `MemFs`: `CrossesDevices`
    /// (once both paths resolve), as between two mounted filesystems.
    fn rename(&self, from: &str, to_dir: &dyn DirBackend, to: &str) -> Result<()> {
        let Some(to_dir) = to_dir.as_any().downcast_ref::<MemDir>() else {
            return Err(invalid("the target directory belongs to another backend"));
        };
        if self.fs.same_fs(&to_dir.fs) {
            return self.with(|t, base| rename(t, base, from, to_dir.base, to));
        }
        self.with(|t, base| resolve::parent(t, base, from).map(drop))?;
        to_dir.with(|t, base| resolve::parent(t, base, to).map(drop))?;
        Err(Error::msg(
            ErrorKind::Fs(FsError::CrossesDevices),
            "the directories are on different in-memory filesystems",
        ))
    }

    fn symlink(&self, path: &str, target: &str) -> Result<()> {
        self.with(|t, base| symlink(t, base, path, target))
    }

    fn read_link(&self, path: &str) -> Result<String> {
        self.with(|t, base| read_link(t, base, path))
    }

    fn read_dir(&self, path: &str) -> Result<Vec<String>> {
        self.with(|t, base| read_dir(t, base, path))
    }

    fn stat(&self, path: &str, follow: bool) -> Result<Stat> {
        self.with(|t, base| stat(t, base, path, follow))
    }

    fn open_dir(&self, path: &str) -> Result<Arc<dyn DirBackend>> {
        self.with(|t, base| {
            let dir = resolve::dir(t, base, path)?;
            let base = Base {
                start: dir,
                confined: true,
            };
            Ok(Arc::new(MemDir::new(self.fs.clone(), t, base)) as Arc<dyn DirBackend>)
        })
    }

    /// In one step under the lock: nothing can be swapped in mid-walk.
    fn rmtree(&self, path: &str) -> Result<()> {
        self.with(|t, base| rmtree(t, base, path))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
