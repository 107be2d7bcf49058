//! The operations on a [`Path`]: each calls the directory's backend and
//! names the path in the context of any error.

use crate::buf_read::{self, BufReader};
use crate::error::{Error, ErrorKind, FsError, Result};
use crate::flow::{Sink, Source};
use crate::fs::{Create, Dir, File, FileKind, OpenOut, Path, Stat};

/// The longest line [`Path::with_lines`] accepts.
const MAX_LINE: usize = 1 << 20;

/// The lines of a file, from [`Path::with_lines`]: an iterator of
/// `Result<String>`.
pub type Lines<'r, 'f> = buf_read::Lines<'r, &'f File>;

/// A path string may not contain NUL: no OS could be given it.
fn check(path: &Path) -> Result<()> {
    if path.as_str().as_bytes().contains(&0) {
        return Err(Error::msg(
            ErrorKind::Fs(FsError::InvalidPath),
            "path contains a NUL byte",
        ));
    }
    Ok(())
}

impl Path {
    /// Runs `op` on this path's backend and path string, adding
    /// `"{what} {self}"` to the context of an error.
    fn op<T>(
        &self,
        what: &str,
        op: impl FnOnce(&dyn crate::fs::DirBackend, &str) -> Result<T>,
    ) -> Result<T> {
        check(self)
            .and_then(|()| op(&**self.dir().backend(), self.as_str()))
            .map_err(|e| e.context(format!("{what} {self}")))
    }

    /// Opens the file for reading.
    ///
    /// ```
    /// use weft::buf_read::BufReader;
    ///
    /// weft::run(|env| {
    ///     // Doc-tests run in the crate's directory, which holds its manifest.
    ///     let manifest = (env.cwd() / "Cargo.toml").open_in()?;
    ///     let mut r = BufReader::new(manifest, 4096);
    ///     let first = r.line()?;
    ///     assert_eq!(first, "[package]");
    ///     Ok(())
    /// })
    /// .unwrap();
    /// ```
    pub fn open_in(&self) -> Result<File> {
        self.op("opening", |b, p| b.open_in(p)).map(File::from_impl)
    }

    /// Opens the file for reading and writing, creating or truncating it as
    /// `opts` says.
    ///
    /// ```
    /// use weft::flow::Sink;
    /// use weft::fs::{Create, OpenOut};
    ///
    /// weft::run(|env| {
    ///     let tmp = std::env::temp_dir();
    ///     let name = format!("weft-doc-open-out-{}", std::process::id());
    ///     let path = env.fs() / tmp.to_str().unwrap() / name;
    ///     path.save(b"one", Create::OrTruncate(0o600))?;
    ///     let log = path.open_out(OpenOut::append(Create::Never))?;
    ///     log.write_all(b", two")?;
    ///     log.close()?;
    ///     assert_eq!(path.load_string()?, "one, two");
    ///     path.unlink()
    /// })
    /// .unwrap();
    /// ```
    pub fn open_out(&self, opts: OpenOut) -> Result<File> {
        self.op("opening", |b, p| b.open_out(p, &opts))
            .map(File::from_impl)
    }

    /// Reads the whole file.
    ///
    /// ```
    /// use weft::{ErrorKind, FsError};
    ///
    /// weft::run(|env| {
    ///     // Doc-tests run in the crate's directory, which holds its manifest.
    ///     let cwd = env.cwd();
    ///     let manifest = (&cwd / "Cargo.toml").load()?;
    ///     assert!(manifest.starts_with(b"[package]"));
    ///
    ///     let err = (&cwd / "no-such-file").load().unwrap_err();
    ///     assert_eq!(err.kind(), &ErrorKind::Fs(FsError::NotFound));
    ///     assert!(err.to_string().ends_with("opening <cwd:no-such-file>"), "{err}");
    ///     Ok(())
    /// })
    /// .unwrap();
    /// ```
    pub fn load(&self) -> Result<Vec<u8>> {
        let file = self.open_in()?;
        let mut out = Vec::new();
        file.read_to_end(&mut out)
            .map_err(|e| e.context(format!("reading {self}")))?;
        Ok(out)
    }

    /// Reads the whole file as UTF-8.
    pub fn load_string(&self) -> Result<String> {
        let bytes = self.load()?;
        String::from_utf8(bytes).map_err(|e| {
            Error::with_source(ErrorKind::InvalidInput, e).context(format!("reading {self}"))
        })
    }

    /// Writes `data` as the file's contents, creating it as `create` says
    /// (with [`Create::IfMissing`], an existing file longer than `data`
    /// keeps its tail).
    ///
    /// ```
    /// use weft::fs::Create;
    /// use weft::{ErrorKind, FsError};
    ///
    /// weft::run(|env| {
    ///     let tmp = std::env::temp_dir();
    ///     let name = format!("weft-doc-save-{}", std::process::id());
    ///     let dir = env.fs() / tmp.to_str().unwrap() / name;
    ///     dir.mkdir(0o700)?;
    ///     let path = &dir / "settings";
    ///     path.save("verbose=1\n", Create::Exclusive(0o600))?;
    ///     let again = path.save("verbose=0\n", Create::Exclusive(0o600)).unwrap_err();
    ///     assert_eq!(again.kind(), &ErrorKind::Fs(FsError::AlreadyExists));
    ///     path.save("quiet\n", Create::OrTruncate(0o600))?;
    ///     assert_eq!(path.load_string()?, "quiet\n");
    ///     dir.rmtree()
    /// })
    /// .unwrap();
    /// ```
    pub fn save(&self, data: impl AsRef<[u8]>, create: Create) -> Result<()> {
        self.save_with(data, OpenOut::new(create))
    }

    /// Writes `data` to the file opened with `opts` (for instance, appends).
    pub fn save_with(&self, data: impl AsRef<[u8]>, opts: OpenOut) -> Result<()> {
        let file = self.open_out(opts)?;
        let written = file.write_all(data.as_ref());
        let closed = file.close();
        written
            .and(closed)
            .map_err(|e| e.context(format!("writing {self}")))
    }

    /// Opens the file and calls `f` with an iterator over its lines (without
    /// their `\n` or `\r\n`). A line longer than 1 MiB is an
    /// [`ErrorKind::BufferLimitExceeded`] error.
    ///
    /// ```
    /// use weft::fs::Create;
    ///
    /// weft::run(|env| {
    ///     let tmp = std::env::temp_dir();
    ///     let name = format!("weft-doc-lines-{}", std::process::id());
    ///     let path = env.fs() / tmp.to_str().unwrap() / name;
    ///     path.save("one\ntwo\nthree", Create::OrTruncate(0o600))?;
    ///     let lines = path.with_lines(|lines| lines.collect::<weft::Result<Vec<_>>>())?;
    ///     assert_eq!(lines, ["one", "two", "three"]);
    ///     path.unlink()
    /// })
    /// .unwrap();
    /// ```
    pub fn with_lines<T>(&self, f: impl FnOnce(Lines<'_, '_>) -> Result<T>) -> Result<T> {
        let file = self.open_in()?;
        let mut reader = BufReader::with_capacity(&file, 64 * 1024, MAX_LINE);
        let result = f(reader.lines());
        drop(reader);
        let closed = file
            .close()
            .map_err(|e| e.context(format!("closing {self}")));
        let value = result?;
        closed.map(|()| value)
    }

    /// The entries of the directory, without `.` and `..`, sorted.
    ///
    /// Names that are not valid UTF-8 are converted lossily.
    pub fn read_dir(&self) -> Result<Vec<String>> {
        let mut names = self.op("reading directory", |b, p| b.read_dir(p))?;
        names.sort();
        Ok(names)
    }

    /// Creates the directory (not its parents).
    pub fn mkdir(&self, perm: u32) -> Result<()> {
        self.op("creating directory", |b, p| b.mkdir(p, perm))
    }

    /// Creates the directory and any missing parents. A directory that
    /// exists already (or a symlink to one) is fine.
    ///
    /// ```
    /// weft::run(|env| {
    ///     let tmp = std::env::temp_dir();
    ///     let name = format!("weft-doc-mkdirs-{}", std::process::id());
    ///     let top = env.fs() / tmp.to_str().unwrap() / name;
    ///     (&top / "a/b/c").mkdirs(0o700)?;
    ///     (&top / "a/b").mkdirs(0o700)?;
    ///     assert_eq!((&top / "a/b").read_dir()?, ["c"]);
    ///     top.rmtree()
    /// })
    /// .unwrap();
    /// ```
    pub fn mkdirs(&self, perm: u32) -> Result<()> {
        let ctx = |e: Error| e.context(format!("creating directory {self}"));
        check(self).map_err(ctx)?;
        self.mkdirs_inner(perm).map_err(ctx)
    }

    fn mkdirs_inner(&self, perm: u32) -> Result<()> {
        let backend = self.dir().backend();
        let err = match backend.mkdir(self.as_str(), perm) {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        match err.kind() {
            // There already, or made by someone else meanwhile: fine if it
            // is a directory.
            ErrorKind::Fs(FsError::AlreadyExists) if self.is_dir_quiet()? => Ok(()),
            ErrorKind::Fs(FsError::NotFound) => {
                let Some((parent, leaf)) = self.split() else {
                    return Err(err);
                };
                if leaf == "." || leaf == ".." {
                    return Err(err);
                }
                parent.mkdirs_inner(perm)?;
                match backend.mkdir(self.as_str(), perm) {
                    Err(e) if e.kind() == &ErrorKind::Fs(FsError::AlreadyExists) => {
                        if self.is_dir_quiet()? {
                            Ok(())
                        } else {
                            Err(e)
                        }
                    }
                    other => other,
                }
            }
            _ => Err(err),
        }
    }

    /// Whether this is a directory (following symlinks); `false` if missing.
    fn is_dir_quiet(&self) -> Result<bool> {
        match self.dir().backend().stat(self.as_str(), true) {
            Ok(st) => Ok(st.kind == FileKind::Directory),
            Err(e) if is_missing(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Removes the empty directory.
    pub fn rmdir(&self) -> Result<()> {
        self.op("removing directory", |b, p| b.rmdir(p))
    }

    /// Removes the file or symlink (never the symlink's target).
    pub fn unlink(&self) -> Result<()> {
        self.op("removing file", |b, p| b.unlink(p))
    }

    /// Removes the file, symlink or directory with everything in it.
    /// Symlinks inside are removed, never followed. Fails with `NotFound`
    /// if nothing is there; refuses (with `InvalidInput`) a path whose last
    /// component is `.` or `..`, or that has none, rather than empty the
    /// directory itself.
    pub fn rmtree(&self) -> Result<()> {
        self.op("removing", |b, p| match super::split(p) {
            Some((_, leaf)) if leaf != "." && leaf != ".." => b.rmtree(p),
            _ => {
                // Refuse, but report a sandbox escape as such first.
                b.stat(p, true)?;
                Err(Error::msg(
                    ErrorKind::InvalidInput,
                    "rmtree needs a path ending in a name",
                ))
            }
        })
    }

    /// Like [`rmtree`](Path::rmtree), but a missing path is not an error.
    pub fn rmtree_if_exists(&self) -> Result<()> {
        match self.rmtree() {
            Err(e) if e.kind() == &ErrorKind::Fs(FsError::NotFound) => Ok(()),
            other => other,
        }
    }

    /// Renames this path to `to`, which may be in another directory of the
    /// same backend (within its confinement). Replaces what `to` names if
    /// the platform allows.
    pub fn rename(&self, to: &Path) -> Result<()> {
        let ctx = |e: Error| e.context(format!("renaming {self} to {to}"));
        check(self).and_then(|()| check(to)).map_err(ctx)?;
        self.dir()
            .backend()
            .rename(self.as_str(), &**to.dir().backend(), to.as_str())
            .map_err(ctx)
    }

    /// Creates a symlink here pointing to `target`. The target is stored as
    /// given; it is checked against confinement only when followed.
    pub fn symlink(&self, target: &str) -> Result<()> {
        let ctx = |e: Error| e.context(format!("creating symlink {self} -> {target}"));
        if target.as_bytes().contains(&0) {
            return Err(ctx(Error::msg(
                ErrorKind::Fs(FsError::InvalidPath),
                "symlink target contains a NUL byte",
            )));
        }
        check(self)
            .and_then(|()| self.dir().backend().symlink(self.as_str(), target))
            .map_err(ctx)
    }

    /// The target of the symlink.
    pub fn read_link(&self) -> Result<String> {
        self.op("reading target of symlink", |b, p| b.read_link(p))
    }

    /// Information about the file, following symlinks.
    pub fn stat(&self) -> Result<Stat> {
        self.op("examining", |b, p| b.stat(p, true))
    }

    /// Information about the file or, if it is a symlink, about the link
    /// itself.
    pub fn lstat(&self) -> Result<Stat> {
        self.op("examining", |b, p| b.stat(p, false))
    }

    /// Whether something exists here (following symlinks: a dangling
    /// symlink does not count). A path that may not be accessed is an error,
    /// not `false`.
    pub fn exists(&self) -> Result<bool> {
        self.kind().map(|k| k.is_some())
    }

    /// Whether this is a directory (following symlinks).
    pub fn is_dir(&self) -> Result<bool> {
        self.kind().map(|k| k == Some(FileKind::Directory))
    }

    /// Whether this is a regular file (following symlinks).
    pub fn is_file(&self) -> Result<bool> {
        self.kind().map(|k| k == Some(FileKind::File))
    }

    fn kind(&self) -> Result<Option<FileKind>> {
        match self.stat() {
            Ok(st) => Ok(Some(st.kind)),
            Err(e) if is_missing(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Opens the directory as a new confined [`Dir`]: paths in it cannot
    /// reach above it, whatever `Dir` this path belongs to. The new `Dir` is
    /// shown with the last component of this path as its label.
    pub fn open_dir(&self) -> Result<Dir> {
        let backend = self.op("opening directory", |b, p| b.open_dir(p))?;
        let label = match super::split(self.as_str()) {
            Some((_, leaf)) if leaf != "." && leaf != ".." => leaf,
            _ => self.dir().label(),
        };
        Ok(Dir::new(label, backend))
    }
}

/// `NotFound`, or `NotADirectory` (a file where a directory was expected
/// on the way): either way, nothing is there.
fn is_missing(e: &Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::Fs(FsError::NotFound) | ErrorKind::Fs(FsError::NotADirectory)
    )
}
