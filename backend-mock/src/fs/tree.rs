//! The in-memory filesystem's inode table.
//!
//! One [`Tree`] per [`MemFs`](super::MemFs), behind one `std::sync::Mutex`:
//! every operation takes the lock, does all its work (resolving the path,
//! checking, changing the tree) and lets go, so each is atomic, as a
//! system call is to other threads.
//!
//! Inodes live in a map keyed by inode number. A directory entry names an
//! inode; an inode counts the entries naming it (`nlink`) and the open
//! handles using it (`opens`: [`File`](weft_core::fs::File)s, and
//! [`Dir`](weft_core::fs::Dir) capabilities rooted at a directory). An
//! inode goes when both reach zero, so a file unlinked while open keeps its
//! data for the handles that still have it, and a directory removed under
//! a `Dir` rooted there stays, empty and dead (nothing can be created in
//! it), until that `Dir` is dropped.
//!
//! Directories know their parent, for `..`. Directory `nlink` follows
//! POSIX: two (the entry in the parent and `.`) plus one per subdirectory
//! (its `..`).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use weft_core::fs::{FileKind, Stat};

/// An inode number.
pub(crate) type Ino = u64;

/// The inode of `/`.
pub(crate) const ROOT: Ino = 1;

/// The device number every `MemFs` reports.
const DEV: u64 = 1;

/// The size a directory reports, as ext4's do.
const DIR_SIZE: u64 = 4096;

/// What an inode is, with its contents.
#[derive(Debug)]
pub(crate) enum Body {
    /// A directory: its entries (sorted) and its parent (itself for `/`).
    Dir {
        entries: BTreeMap<String, Ino>,
        parent: Ino,
    },
    /// A regular file's bytes.
    File(Vec<u8>),
    /// A symlink's target, as given.
    Symlink(String),
    /// A character device.
    Device(Device),
}

/// The character devices a [`MemFs`](super::MemFs) has, in `/dev`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Device {
    /// `/dev/null`: reads see end of file, writes are discarded.
    Null,
    /// `/dev/zero`: reads give zeros, writes are discarded.
    Zero,
}

/// A file, directory or symlink.
#[derive(Debug)]
pub(crate) struct Inode {
    pub(crate) body: Body,
    /// Permission bits (`0o7777`).
    pub(crate) perm: u32,
    /// Directory entries naming it (see the module docs for directories).
    pub(crate) nlink: u64,
    /// Open handles using it.
    pub(crate) opens: usize,
    pub(crate) atime: SystemTime,
    pub(crate) mtime: SystemTime,
    pub(crate) ctime: SystemTime,
}

impl Inode {
    pub(crate) fn kind(&self) -> FileKind {
        match self.body {
            Body::Dir { .. } => FileKind::Directory,
            Body::File(_) => FileKind::File,
            Body::Symlink(_) => FileKind::Symlink,
            Body::Device(_) => FileKind::CharDevice,
        }
    }

    pub(crate) fn is_dir(&self) -> bool {
        matches!(self.body, Body::Dir { .. })
    }
}

/// The inode table. See the module docs.
#[derive(Debug)]
pub(crate) struct Tree {
    inodes: HashMap<Ino, Inode>,
    next_ino: Ino,
    /// The working directory: where relative paths of `fs` start, and the
    /// root of `cwd`.
    pub(crate) cwd: Ino,
    /// Applied to the permissions of new files and directories.
    pub(crate) umask: u32,
    /// The latest timestamp given out, for when no clock is reachable.
    last_time: SystemTime,
    /// Open `File`s.
    pub(crate) open_files: usize,
    /// Open `Dir` capabilities.
    pub(crate) open_dirs: usize,
}

impl Tree {
    /// A tree holding only `/` (which is also the working directory).
    pub(crate) fn new() -> Tree {
        let mut t = Tree {
            inodes: HashMap::new(),
            next_ino: ROOT,
            cwd: ROOT,
            umask: 0o022,
            last_time: SystemTime::UNIX_EPOCH,
            open_files: 0,
            open_dirs: 0,
        };
        let root = t.alloc(
            Body::Dir {
                entries: BTreeMap::new(),
                parent: ROOT,
            },
            0o755,
        );
        debug_assert_eq!(root, ROOT);
        let r = t.get_mut(ROOT);
        r.nlink = 2;
        // The working directory is held, as a process holds its own.
        r.opens = 1;
        t
    }

    /// Makes directory `dir` the working directory, holding it (and letting
    /// go of the previous one).
    pub(crate) fn set_cwd(&mut self, dir: Ino) {
        self.get_mut(dir).opens += 1;
        let old = std::mem::replace(&mut self.cwd, dir);
        self.get_mut(old).opens -= 1;
        self.collect(old);
    }

    /// The time to stamp a change with: the calling fiber's clock (virtual
    /// time under the mock) — but never before a stamp already given — or,
    /// off any runtime, a counter: one nanosecond after the latest stamp.
    pub(crate) fn now(&mut self) -> SystemTime {
        let t = match weft_core::time::Clock::default().now() {
            Ok(t) => t.max(self.last_time),
            Err(_) => self.last_time + Duration::from_nanos(1),
        };
        self.last_time = t;
        t
    }

    /// Stamps every inode with the Unix epoch and restarts the counter
    /// there: a new filesystem's layout dates from the start of time.
    pub(crate) fn reset_times(&mut self) {
        self.last_time = SystemTime::UNIX_EPOCH;
        for i in self.inodes.values_mut() {
            (i.atime, i.mtime, i.ctime) = (self.last_time, self.last_time, self.last_time);
        }
    }

    /// A new inode with no links yet.
    pub(crate) fn alloc(&mut self, body: Body, perm: u32) -> Ino {
        let ino = self.next_ino;
        self.next_ino += 1;
        let now = self.now();
        self.inodes.insert(
            ino,
            Inode {
                body,
                perm: perm & 0o7777,
                nlink: 0,
                opens: 0,
                atime: now,
                mtime: now,
                ctime: now,
            },
        );
        ino
    }

    /// The inode `ino`. Panics if it is gone: every caller holds a link or
    /// an open handle that keeps it.
    pub(crate) fn get(&self, ino: Ino) -> &Inode {
        self.inodes.get(&ino).expect("a live inode")
    }

    /// The inode `ino`, to change. Panics if it is gone (see [`get`](Self::get)).
    pub(crate) fn get_mut(&mut self, ino: Ino) -> &mut Inode {
        self.inodes.get_mut(&ino).expect("a live inode")
    }

    /// The entries of directory `dir`; `None` if it is not a directory.
    pub(crate) fn entries(&self, dir: Ino) -> Option<&BTreeMap<String, Ino>> {
        match &self.get(dir).body {
            Body::Dir { entries, .. } => Some(entries),
            _ => None,
        }
    }

    /// What `name` names in directory `dir`.
    pub(crate) fn lookup(&self, dir: Ino, name: &str) -> Option<Ino> {
        self.entries(dir)?.get(name).copied()
    }

    /// The parent of directory `dir`.
    pub(crate) fn parent(&self, dir: Ino) -> Ino {
        match &self.get(dir).body {
            Body::Dir { parent, .. } => *parent,
            _ => unreachable!("only directories have parents"),
        }
    }

    /// Whether directory `dir` is still linked in the tree (a removed one
    /// can still be the root of a `Dir`, but nothing can be created in it).
    /// The absolute path of directory `dir`, through its parents (what
    /// `getcwd` gives); a directory that was removed has none.
    pub(crate) fn path_of(&self, dir: Ino) -> Option<String> {
        let mut names = Vec::new();
        let mut cur = dir;
        while cur != ROOT {
            let parent = self.parent(cur);
            let name = self
                .entries(parent)?
                .iter()
                .find(|(_, &ino)| ino == cur)
                .map(|(n, _)| n.clone())?;
            names.push(name);
            cur = parent;
        }
        names.reverse();
        Some(format!("/{}", names.join("/")))
    }

    pub(crate) fn is_alive(&self, dir: Ino) -> bool {
        self.get(dir).nlink > 0
    }

    /// Whether `ino` is `dir` or below it.
    pub(crate) fn is_within(&self, mut ino: Ino, dir: Ino) -> bool {
        loop {
            if ino == dir {
                return true;
            }
            if ino == ROOT || !self.is_alive(ino) {
                return false;
            }
            ino = self.parent(ino);
        }
    }

    /// Marks a change to directory `dir`'s entries.
    fn touch_dir(&mut self, dir: Ino) {
        let now = self.now();
        let d = self.get_mut(dir);
        d.mtime = now;
        d.ctime = now;
    }

    /// Adds the entry `name` → `ino` to directory `dir`, which must not
    /// have it.
    pub(crate) fn link(&mut self, dir: Ino, name: &str, ino: Ino) {
        let is_dir = self.get(ino).is_dir();
        if let Body::Dir { entries, .. } = &mut self.get_mut(dir).body {
            let old = entries.insert(name.to_owned(), ino);
            debug_assert!(old.is_none(), "link over an existing entry");
        }
        if is_dir {
            if let Body::Dir { parent, .. } = &mut self.get_mut(ino).body {
                *parent = dir;
            }
            self.get_mut(ino).nlink = 2;
            self.get_mut(dir).nlink += 1;
        } else {
            self.get_mut(ino).nlink += 1;
        }
        let now = self.now();
        self.get_mut(ino).ctime = now;
        self.touch_dir(dir);
    }

    /// Removes the entry `name` from directory `dir` and drops the link it
    /// held (a directory removed must be empty). Returns the inode it named.
    pub(crate) fn unlink(&mut self, dir: Ino, name: &str) -> Ino {
        let ino = match &mut self.get_mut(dir).body {
            Body::Dir { entries, .. } => entries.remove(name).expect("an existing entry"),
            _ => unreachable!("unlink in a directory"),
        };
        if self.get(ino).is_dir() {
            debug_assert!(self.entries(ino).is_some_and(|e| e.is_empty()));
            self.get_mut(ino).nlink = 0;
            self.get_mut(dir).nlink -= 1;
        } else {
            self.get_mut(ino).nlink -= 1;
        }
        let now = self.now();
        self.get_mut(ino).ctime = now;
        self.touch_dir(dir);
        self.collect(ino);
        ino
    }

    /// Moves the entry `name` of `dir` to `to_name` in `to_dir`, which must
    /// not have it. Keeps the inode's links as they are.
    pub(crate) fn move_entry(&mut self, dir: Ino, name: &str, to_dir: Ino, to_name: &str) {
        let ino = match &mut self.get_mut(dir).body {
            Body::Dir { entries, .. } => entries.remove(name).expect("an existing entry"),
            _ => unreachable!("a move out of a directory"),
        };
        if let Body::Dir { entries, .. } = &mut self.get_mut(to_dir).body {
            entries.insert(to_name.to_owned(), ino);
        }
        if self.get(ino).is_dir() {
            if let Body::Dir { parent, .. } = &mut self.get_mut(ino).body {
                *parent = to_dir;
            }
            self.get_mut(dir).nlink -= 1;
            self.get_mut(to_dir).nlink += 1;
        }
        let now = self.now();
        self.get_mut(ino).ctime = now;
        self.touch_dir(dir);
        self.touch_dir(to_dir);
    }

    /// Removes the entry `name` of `dir` and everything below it, never
    /// following symlinks (they are entries like any other).
    pub(crate) fn remove_tree(&mut self, dir: Ino, name: &str) {
        let top = self.lookup(dir, name).expect("an existing entry");
        // Empty each directory, deepest first, then unlink it.
        let mut stack = vec![(dir, name.to_owned(), top)];
        while let Some((parent, name, ino)) = stack.pop() {
            let children: Vec<(String, Ino)> = match self.entries(ino) {
                Some(e) if !e.is_empty() => e.iter().map(|(n, i)| (n.clone(), *i)).collect(),
                _ => {
                    self.unlink(parent, &name);
                    continue;
                }
            };
            stack.push((parent, name, ino));
            for (child_name, child) in children.into_iter().rev() {
                stack.push((ino, child_name, child));
            }
        }
    }

    /// Drops the inode if nothing uses it any more.
    pub(crate) fn collect(&mut self, ino: Ino) {
        let i = self.get(ino);
        if i.nlink == 0 && i.opens == 0 && ino != ROOT {
            self.inodes.remove(&ino);
        }
    }

    /// Takes a handle on `ino` (a `File`, or a `Dir` rooted there).
    pub(crate) fn open(&mut self, ino: Ino, dir_handle: bool) {
        self.get_mut(ino).opens += 1;
        if dir_handle {
            self.open_dirs += 1;
        } else {
            self.open_files += 1;
        }
    }

    /// Releases a handle taken with [`open`](Self::open).
    pub(crate) fn release(&mut self, ino: Ino, dir_handle: bool) {
        self.get_mut(ino).opens -= 1;
        if dir_handle {
            self.open_dirs -= 1;
        } else {
            self.open_files -= 1;
        }
        self.collect(ino);
    }

    /// The [`Stat`] of `ino`.
    pub(crate) fn stat(&self, ino: Ino) -> Stat {
        let i = self.get(ino);
        let size = match &i.body {
            Body::Dir { .. } => DIR_SIZE,
            Body::File(data) => data.len() as u64,
            Body::Symlink(target) => target.len() as u64,
            Body::Device(_) => 0,
        };
        Stat {
            kind: i.kind(),
            size,
            perm: i.perm,
            nlink: i.nlink,
            ino,
            dev: DEV,
            uid: 0,
            gid: 0,
            atime: i.atime,
            mtime: i.mtime,
            ctime: i.ctime,
        }
    }

    /// Every path in the tree below `dir` (shown as `prefix`), sorted, so
    /// a directory comes just before what it holds; directories end with
    /// `/`, symlinks show their target.
    pub(crate) fn paths(&self, dir: Ino, prefix: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut todo = vec![(dir, prefix.to_owned())];
        while let Some((dir, prefix)) = todo.pop() {
            for (name, &ino) in self.entries(dir).into_iter().flatten() {
                let path = format!("{prefix}{name}");
                match &self.get(ino).body {
                    Body::Dir { .. } => {
                        out.push(format!("{path}/"));
                        todo.push((ino, format!("{path}/")));
                    }
                    Body::File(_) | Body::Device(_) => out.push(path),
                    Body::Symlink(target) => out.push(format!("{path} -> {target}")),
                }
            }
        }
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mkdir(t: &mut Tree, dir: Ino, name: &str) -> Ino {
        let ino = t.alloc(
            Body::Dir {
                entries: BTreeMap::new(),
                parent: dir,
            },
            0o755,
        );
        t.link(dir, name, ino);
        ino
    }

    #[test]
    fn directory_link_counts_follow_posix() {
        let mut t = Tree::new();
        let a = mkdir(&mut t, ROOT, "a");
        let b = mkdir(&mut t, a, "b");
        let f = t.alloc(Body::File(b"x".to_vec()), 0o644);
        t.link(a, "f", f);
        assert_eq!(
            (t.get(ROOT).nlink, t.get(a).nlink, t.get(b).nlink),
            (3, 3, 2)
        );
        assert_eq!(t.get(f).nlink, 1);
        t.move_entry(a, "b", ROOT, "b2");
        assert_eq!((t.get(ROOT).nlink, t.get(a).nlink), (4, 2));
        assert_eq!(t.parent(b), ROOT);
        assert!(t.is_within(b, ROOT) && !t.is_within(b, a));
    }

    #[test]
    fn open_inodes_outlive_their_links() {
        let mut t = Tree::new();
        let a = mkdir(&mut t, ROOT, "a");
        let f = t.alloc(Body::File(b"kept".to_vec()), 0o644);
        t.link(a, "f", f);
        t.open(f, false);
        t.open(a, true);
        t.remove_tree(ROOT, "a");
        assert!(t.lookup(ROOT, "a").is_none());
        assert_eq!(t.stat(f).nlink, 0);
        assert!(matches!(&t.get(f).body, Body::File(d) if d == b"kept"));
        assert!(!t.is_alive(a));
        t.release(f, false);
        t.release(a, true);
        assert!(!t.inodes.contains_key(&f) && !t.inodes.contains_key(&a));
        assert_eq!((t.open_files, t.open_dirs), (0, 0));
    }

    #[test]
    fn remove_tree_goes_deep_without_recursion() {
        let mut t = Tree::new();
        let mut dir = mkdir(&mut t, ROOT, "top");
        for _ in 0..10_000 {
            dir = mkdir(&mut t, dir, "d");
        }
        t.remove_tree(ROOT, "top");
        assert_eq!(t.inodes.len(), 1, "only / is left");
        assert_eq!(t.get(ROOT).nlink, 2);
    }
}
