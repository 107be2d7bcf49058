//! Open files: [`File`], the [`FileImpl`] backends provide, and [`Stat`].

use std::fmt;
use std::io::{self, SeekFrom};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Error, ErrorKind, Result};
use crate::flow::{Backing, Sink, Source};

/// The type of a filesystem entry.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Directory,
    /// A symbolic link (seen only when not following links).
    Symlink,
    /// A character device.
    CharDevice,
    /// A block device.
    BlockDevice,
    /// A named pipe.
    Fifo,
    /// A Unix-domain socket.
    Socket,
    /// Something else.
    Unknown,
}

impl FileKind {
    /// The kind a POSIX file mode (`st_mode`, `stx_mode`) gives, from its
    /// file-type bits (`S_IFMT`, whose values every Unix shares).
    ///
    /// ```
    /// use weft_core::fs::FileKind;
    /// assert_eq!(FileKind::from_mode(0o100644), FileKind::File);
    /// assert_eq!(FileKind::from_mode(0o040755), FileKind::Directory);
    /// assert_eq!(FileKind::from_mode(0o120777), FileKind::Symlink);
    /// ```
    pub fn from_mode(mode: u32) -> FileKind {
        match mode & 0o170000 {
            0o100000 => FileKind::File,
            0o040000 => FileKind::Directory,
            0o120000 => FileKind::Symlink,
            0o020000 => FileKind::CharDevice,
            0o060000 => FileKind::BlockDevice,
            0o010000 => FileKind::Fifo,
            0o140000 => FileKind::Socket,
            _ => FileKind::Unknown,
        }
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileKind::File => "regular file",
            FileKind::Directory => "directory",
            FileKind::Symlink => "symbolic link",
            FileKind::CharDevice => "character device",
            FileKind::BlockDevice => "block device",
            FileKind::Fifo => "fifo",
            FileKind::Socket => "socket",
            FileKind::Unknown => "unknown",
        })
    }
}

/// Information about a file, from [`Path::stat`](crate::fs::Path::stat),
/// [`Path::lstat`](crate::fs::Path::lstat) or [`File::stat`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    /// What kind of entry this is.
    pub kind: FileKind,
    /// Size in bytes (for a symlink, the length of its target).
    pub size: u64,
    /// Permission bits (`0o644`), including set-id and sticky bits.
    pub perm: u32,
    /// Number of hard links.
    pub nlink: u64,
    /// Inode number.
    pub ino: u64,
    /// Device the entry lives on.
    pub dev: u64,
    /// Owner's user id.
    pub uid: u32,
    /// Owner's group id.
    pub gid: u32,
    /// Last access.
    pub atime: SystemTime,
    /// Last modification of the contents.
    pub mtime: SystemTime,
    /// Last change of the metadata.
    pub ctime: SystemTime,
}

impl Stat {
    /// A timestamp given, as `stat(2)` and `statx(2)` give them, in seconds
    /// since the Unix epoch (negative before 1970) and nanoseconds (an
    /// out-of-range value is clamped).
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// use weft_core::fs::Stat;
    /// assert_eq!(Stat::unix_time(1, 5), UNIX_EPOCH + Duration::new(1, 5));
    /// assert_eq!(Stat::unix_time(-1, 0), UNIX_EPOCH - Duration::from_secs(1));
    /// ```
    pub fn unix_time(secs: i64, nsec: i64) -> SystemTime {
        let nsec = u32::try_from(nsec).unwrap_or(0).min(999_999_999);
        if secs >= 0 {
            UNIX_EPOCH + Duration::new(secs as u64, nsec)
        } else {
            UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
                + Duration::from_nanos(nsec.into())
        }
    }
}

/// What a backend provides for an open file.
pub trait FileImpl: Source + Sink {
    /// Reads at `offset` without moving the file position; `Ok(0)` at or
    /// past the end.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize>;
    /// Writes at `offset` without moving the file position (but see
    /// [`File::write_at`] for files opened to append).
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<usize>;
    /// Moves the file position; returns the new one.
    fn seek(&self, pos: SeekFrom) -> Result<u64>;
    /// Information about the open file.
    fn stat(&self) -> Result<Stat>;
    /// Truncates or extends the file to `size` bytes.
    fn set_len(&self, size: u64) -> Result<()>;
    /// Flushes data and metadata to the device.
    fn sync_all(&self) -> Result<()>;
    /// Flushes data (and the metadata needed to read it back).
    fn sync_data(&self) -> Result<()>;
    /// Closes the file, reporting errors that `Drop` would ignore.
    fn close(self: Box<Self>) -> Result<()>;

    /// The file's size if it is cheap to learn, to size the buffer of
    /// [`read_to_end`](Source::read_to_end) (a hint: the file may change).
    /// The default asks [`stat`](FileImpl::stat); a backend whose `stat`
    /// costs more than a few reads returns `None`, and `read_to_end` then
    /// grows its reads instead.
    fn size_hint(&self) -> Option<u64> {
        self.stat().ok().map(|s| s.size)
    }
}

/// An open file. Closed on drop, or by [`close`](File::close), which
/// reports errors.
///
/// A `File` is a flow ([`Source`] + [`Sink`]) and a `std::io::Read +
/// Write + Seek` (also through `&File`), reading and writing at the file
/// position. [`read_at`](File::read_at) and [`write_at`](File::write_at)
/// work at an explicit offset instead and leave the position alone.
///
/// ```
/// use std::io::SeekFrom;
/// use weft::flow::{Sink, Source};
/// use weft::fs::{Create, OpenOut};
///
/// weft::run(|env| {
///     let tmp = std::env::temp_dir();
///     let name = format!("weft-doc-file-{}", std::process::id());
///     let path = env.fs() / tmp.to_str().unwrap() / name;
///     let file = path.open_out(OpenOut::new(Create::OrTruncate(0o600)))?;
///     file.write_all(b"+-!")?;
///     file.write_at(b"abc123", 2)?;
///     let mut buf = [0u8; 7];
///     file.read_exact_at(&mut buf, 1)?;
///     assert_eq!(&buf, b"-abc123");
///     assert_eq!(file.seek(SeekFrom::End(-1))?, 7);
///     file.set_len(3)?;
///     assert_eq!(file.stat()?.size, 3);
///     file.sync_all()?;
///     file.close()?;
///     assert_eq!(path.load()?, b"+-a");
///     path.unlink()
/// })
/// .unwrap();
/// ```
///
/// Like other resources, a `File` stays on the thread (domain) that opened
/// it; it is not `Send`:
///
/// ```compile_fail
/// fn assert_send<T: Send>() {}
/// assert_send::<weft::fs::File>();
/// ```
pub struct File {
    inner: Box<dyn FileImpl>,
}

impl fmt::Debug for File {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("File")
    }
}

impl File {
    /// Wraps a backend file (backends and test doubles use this).
    pub fn from_impl(inner: Box<dyn FileImpl>) -> File {
        File { inner }
    }

    /// Reads at `offset` without moving the file position. Returns how many
    /// bytes were read: `Ok(0)` at or past the end of the file.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        self.inner.read_at(buf, offset)
    }

    /// Fills `buf` from `offset`, or fails with
    /// [`ErrorKind::EndOfFile`] if the file ends first.
    pub fn read_exact_at(&self, mut buf: &mut [u8], mut offset: u64) -> Result<()> {
        while !buf.is_empty() {
            match self.inner.read_at(buf, offset)? {
                0 => {
                    return Err(Error::msg(
                        ErrorKind::EndOfFile,
                        format!("end of file at offset {offset}"),
                    ))
                }
                n => {
                    buf = &mut buf[n..];
                    offset += n as u64;
                }
            }
        }
        Ok(())
    }

    /// Writes at `offset` without moving the file position; returns how
    /// many bytes were written. On Linux, a file opened to append writes at
    /// the end whatever the offset (`pwrite(2)`'s known bug).
    pub fn write_at(&self, buf: &[u8], offset: u64) -> Result<usize> {
        self.inner.write_at(buf, offset)
    }

    /// Writes all of `buf` at `offset`.
    pub fn write_all_at(&self, mut buf: &[u8], mut offset: u64) -> Result<()> {
        while !buf.is_empty() {
            match self.inner.write_at(buf, offset)? {
                0 => return Err(Error::msg(ErrorKind::Closed, "file accepted no bytes")),
                n => {
                    buf = &buf[n..];
                    offset += n as u64;
                }
            }
        }
        Ok(())
    }

    /// Moves the file position; returns the new position.
    pub fn seek(&self, pos: SeekFrom) -> Result<u64> {
        self.inner.seek(pos)
    }

    /// Information about the open file.
    pub fn stat(&self) -> Result<Stat> {
        self.inner.stat()
    }

    /// Truncates or extends (with zeros) the file to `size` bytes. The file
    /// position does not move.
    pub fn set_len(&self, size: u64) -> Result<()> {
        self.inner.set_len(size)
    }

    /// Flushes the contents and metadata to the storage device (`fsync`).
    pub fn sync_all(&self) -> Result<()> {
        self.inner.sync_all()
    }

    /// Flushes the contents to the storage device (`fdatasync`).
    pub fn sync_data(&self) -> Result<()> {
        self.inner.sync_data()
    }

    /// Closes the file, reporting any error (which dropping it would
    /// ignore).
    pub fn close(self) -> Result<()> {
        self.inner.close()
    }
}

impl Source for File {
    fn read(&self, buf: &mut [u8]) -> Result<usize> {
        self.inner.read(buf)
    }

    fn read_vectored(&self, bufs: &mut [io::IoSliceMut<'_>]) -> Result<usize> {
        self.inner.read_vectored(bufs)
    }

    fn backing(&self) -> Option<Backing<'_>> {
        self.inner.backing()
    }

    /// Reads in large chunks, sized from the file's length when known
    /// ([`FileImpl::size_hint`]), so a whole file usually takes one or two
    /// reads; otherwise from 8 KiB, each read that fills its chunk doubling
    /// the next.
    fn read_to_end(&self, out: &mut Vec<u8>) -> Result<usize> {
        const MAX_CHUNK: usize = 1 << 24;
        let start = out.len();
        let mut chunk = match self.inner.size_hint() {
            // One more byte than the size, so the end shows at once.
            Some(size) => (usize::try_from(size)
                .unwrap_or(usize::MAX)
                .clamp(1, MAX_CHUNK)
                + 1)
            .max(64 * 1024),
            // A small file fits the first chunk; a large one doubles its way up.
            None => 8 * 1024,
        };
        loop {
            let len = out.len();
            out.resize(len + chunk, 0);
            match self.inner.read(&mut out[len..]) {
                Ok(0) => {
                    out.truncate(len);
                    return Ok(len - start);
                }
                Ok(n) => {
                    out.truncate(len + n);
                    if n == chunk {
                        chunk = (chunk * 2).min(MAX_CHUNK);
                    }
                }
                Err(e) => {
                    out.truncate(len);
                    return Err(e);
                }
            }
        }
    }
}

impl Sink for File {
    fn write(&self, buf: &[u8]) -> Result<usize> {
        self.inner.write(buf)
    }
    fn write_vectored(&self, bufs: &[io::IoSlice<'_>]) -> Result<usize> {
        self.inner.write_vectored(bufs)
    }
    fn copy_from(&self, src: &dyn Source) -> Result<u64> {
        self.inner.copy_from(src)
    }
}

crate::std_io::std_read!(File);
crate::std_io::std_write!(File);

impl io::Seek for File {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        Ok(File::seek(self, pos)?)
    }
}

impl io::Seek for &File {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        Ok(File::seek(self, pos)?)
    }
}
