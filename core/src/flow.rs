//! Flows: byte streams that fibers read and write.
//!
//! A [`Source`] produces bytes and a [`Sink`] consumes them; sockets, pipes
//! and files are both. Flow methods take `&self`, so one fiber may read a
//! socket while another writes it. Every flow is also a `std::io::Read` /
//! `std::io::Write` through [`IoReader`] and [`IoWriter`] (and the concrete
//! flow types implement the std traits directly), so ordinary synchronous
//! crates work on fibers unchanged.
//!
//! ```
//! use weft::flow::{self, Sink, Source};
//!
//! weft::mock::run(|_env| {
//!     let src = flow::string_source("Hello, world!\n");
//!     let sink = flow::buffer_sink();
//!     flow::copy(&src, &sink)?;
//!     assert_eq!(sink.contents(), b"Hello, world!\n");
//!     Ok(())
//! })
//! .unwrap();
//! ```

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::io;

use crate::error::{Error, ErrorKind, Result};

/// Which direction(s) of a two-way flow to shut down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownKind {
    /// No more reads.
    Read,
    /// No more writes: the peer sees end of stream.
    Write,
    /// Both.
    Both,
}

/// A flow that produces bytes.
pub trait Source {
    /// Reads at least one byte into `buf` (unless `buf` is empty), waiting
    /// if none is available yet. `Ok(0)` means end of stream.
    fn read(&self, buf: &mut [u8]) -> Result<usize>;

    /// Reads into several buffers, filling them in order, as one operation
    /// where the flow can (`readv`); returns the bytes read, `Ok(0)` at end
    /// of stream. Like [`read`](Source::read), it may return fewer bytes
    /// than the buffers hold. The default reads into the first non-empty
    /// buffer.
    fn read_vectored(&self, bufs: &mut [io::IoSliceMut<'_>]) -> Result<usize> {
        match bufs.iter_mut().find(|b| !b.is_empty()) {
            Some(b) => self.read(b),
            None => Ok(0),
        }
    }

    /// What this flow is backed by, for a sink of the same backend that can
    /// move bytes from it in the kernel (see [`Backing`]). `None` (the
    /// default) for flows in memory and wrappers that buffer what they read.
    /// A wrapper may forward its inner flow's backing only if its reads are
    /// exactly the inner flow's: a sink that splices bypasses `read`.
    fn backing(&self) -> Option<Backing<'_>> {
        None
    }

    /// Fills `buf` completely, or fails with `EndOfFile` (keeping what was
    /// read in `buf`).
    fn read_exact(&self, mut buf: &mut [u8]) -> Result<()> {
        while !buf.is_empty() {
            match self.read(buf)? {
                0 => {
                    return Err(Error::msg(
                        ErrorKind::EndOfFile,
                        "end of stream before the buffer was filled",
                    ))
                }
                n => buf = &mut buf[n..],
            }
        }
        Ok(())
    }

    /// Reads until end of stream, appending to `out`; returns the count.
    fn read_to_end(&self, out: &mut Vec<u8>) -> Result<usize> {
        let start = out.len();
        let mut chunk = [0u8; 4096];
        loop {
            match self.read(&mut chunk)? {
                0 => return Ok(out.len() - start),
                n => out.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Reads everything until end of stream as UTF-8.
    fn read_all(&self) -> Result<String> {
        let mut v = Vec::new();
        self.read_to_end(&mut v)?;
        String::from_utf8(v).map_err(|e| Error::with_source(ErrorKind::InvalidInput, e))
    }
}

/// A flow that consumes bytes.
pub trait Sink {
    /// Writes some of `buf` (at least one byte unless it is empty), waiting
    /// for room if needed; returns how many bytes were taken.
    fn write(&self, buf: &[u8]) -> Result<usize>;

    /// Writes several buffers, as one operation where the flow can (the
    /// default writes the first non-empty one).
    fn write_vectored(&self, bufs: &[io::IoSlice<'_>]) -> Result<usize> {
        match bufs.iter().find(|b| !b.is_empty()) {
            Some(b) => self.write(b),
            None => Ok(0),
        }
    }

    /// Writes all of `buf`.
    fn write_all(&self, mut buf: &[u8]) -> Result<()> {
        while !buf.is_empty() {
            match self.write(buf)? {
                0 => {
                    return Err(Error::msg(ErrorKind::Closed, "sink accepted no bytes"));
                }
                n => buf = &buf[n..],
            }
        }
        Ok(())
    }

    /// Copies everything from `src` until its end; returns the byte count.
    /// The default is [`copy_with_buffer`]. Flows backed by file
    /// descriptors override this to move the bytes in the kernel when
    /// `src`'s [`backing`](Source::backing) is one of their own backend's
    /// (io_uring splices), falling back to `copy_with_buffer` otherwise.
    fn copy_from(&self, src: &dyn Source) -> Result<u64> {
        copy_with_buffer(src, self)
    }
}

/// The generic copy: reads `src` into a 64 KiB buffer and writes each
/// chunk to `dst` in full, until `src` ends; returns the byte count.
///
/// If it fails or is cancelled while writing a chunk, the part of that
/// chunk `dst` did not take cannot go back to `src`: the error says how
/// many bytes that was (and how many were copied before), so the loss is
/// never silent. Sinks that splice in the kernel give such bytes back to
/// their source instead.
///
/// ```
/// use weft::flow::{buffer_sink, copy_with_buffer, string_source};
///
/// let src = string_source("through user memory");
/// let dst = buffer_sink();
/// assert_eq!(copy_with_buffer(&src, &dst).unwrap(), 19);
/// assert_eq!(dst.contents_string(), "through user memory");
/// ```
pub fn copy_with_buffer(src: &(impl Source + ?Sized), dst: &(impl Sink + ?Sized)) -> Result<u64> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = src
            .read(&mut buf)
            .map_err(|e| e.context(format!("copying, after {total} bytes")))?;
        if n == 0 {
            return Ok(total);
        }
        let mut chunk = &buf[..n];
        while !chunk.is_empty() {
            match dst.write(chunk) {
                Ok(0) => {
                    return Err(Error::msg(ErrorKind::Closed, "sink accepted no bytes")
                        .context(lost(total, chunk.len())))
                }
                Ok(k) => {
                    chunk = &chunk[k..];
                    total += k as u64;
                }
                Err(e) => return Err(e.context(lost(total, chunk.len()))),
            }
        }
    }
}

fn lost(copied: u64, unwritten: usize) -> String {
    format!(
        "copying, after {copied} bytes: {unwritten} bytes read from the source were not written"
    )
}

/// A vectored read made of one plain read: `read` gets a buffer as long as
/// `bufs` together (at most `max` bytes), and what it returns is scattered
/// into them in order, as `readv` would. For flows whose backend has no
/// vectored read of its own but whose reads are costly enough (a system
/// thread hop, a lock) that one read beats one per buffer.
///
/// ```
/// use std::io::IoSliceMut;
/// use weft::flow::read_vectored_scattered;
///
/// let (mut a, mut b) = ([0u8; 3], [0u8; 4]);
/// let mut bufs = [IoSliceMut::new(&mut a), IoSliceMut::new(&mut b)];
/// let n = read_vectored_scattered(&mut bufs, usize::MAX, |buf| {
///     buf[..5].copy_from_slice(b"hello");
///     Ok(5)
/// })
/// .unwrap();
/// assert_eq!((n, &a, &b[..2]), (5, b"hel", &b"lo"[..]));
/// ```
pub fn read_vectored_scattered(
    bufs: &mut [io::IoSliceMut<'_>],
    max: usize,
    read: impl FnOnce(&mut [u8]) -> Result<usize>,
) -> Result<usize> {
    let want: usize = bufs.iter().map(|b| b.len()).sum();
    if want == 0 {
        return Ok(0);
    }
    let mut data = vec![0u8; want.min(max)];
    let n = read(&mut data)?;
    let mut rest = &data[..n.min(data.len())];
    for b in bufs.iter_mut() {
        let k = b.len().min(rest.len());
        b[..k].copy_from_slice(&rest[..k]);
        rest = &rest[k..];
    }
    Ok(n)
}

/// An opaque view of the object behind a [`Source`], given by
/// [`Source::backing`]: a sink that recognises the concrete type (a socket,
/// pipe or file of its own backend) may move bytes from it without passing
/// them through user memory. Only backends create and inspect it; to
/// everyone else it is opaque, so no backend type shows in weft's API.
#[derive(Clone, Copy)]
pub struct Backing<'a> {
    flow: &'a dyn Any,
}

impl<'a> Backing<'a> {
    /// The backing of a backend's own flow object.
    pub fn new<T: Any>(flow: &'a T) -> Backing<'a> {
        Backing { flow }
    }

    /// The flow object, if it is a `T`.
    pub fn downcast<T: Any>(self) -> Option<&'a T> {
        self.flow.downcast_ref::<T>()
    }
}

impl std::fmt::Debug for Backing<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Backing(..)")
    }
}

/// A two-way flow that can be half-closed.
pub trait Shutdown {
    /// Shuts down one or both directions.
    fn shutdown(&self, how: ShutdownKind) -> Result<()>;
}

impl<S: Source + ?Sized> Source for &S {
    fn read(&self, buf: &mut [u8]) -> Result<usize> {
        (**self).read(buf)
    }
    fn read_vectored(&self, bufs: &mut [io::IoSliceMut<'_>]) -> Result<usize> {
        (**self).read_vectored(bufs)
    }
    fn backing(&self) -> Option<Backing<'_>> {
        (**self).backing()
    }
}

impl<S: Sink + ?Sized> Sink for &S {
    fn write(&self, buf: &[u8]) -> Result<usize> {
        (**self).write(buf)
    }
    fn write_vectored(&self, bufs: &[io::IoSlice<'_>]) -> Result<usize> {
        (**self).write_vectored(bufs)
    }
    fn copy_from(&self, src: &dyn Source) -> Result<u64> {
        (**self).copy_from(src)
    }
}

impl<S: Source + ?Sized> Source for Box<S> {
    fn read(&self, buf: &mut [u8]) -> Result<usize> {
        (**self).read(buf)
    }
    fn read_vectored(&self, bufs: &mut [io::IoSliceMut<'_>]) -> Result<usize> {
        (**self).read_vectored(bufs)
    }
    fn backing(&self) -> Option<Backing<'_>> {
        (**self).backing()
    }
}

impl<S: Sink + ?Sized> Sink for Box<S> {
    fn write(&self, buf: &[u8]) -> Result<usize> {
        (**self).write(buf)
    }
    fn write_vectored(&self, bufs: &[io::IoSlice<'_>]) -> Result<usize> {
        (**self).write_vectored(bufs)
    }
    fn copy_from(&self, src: &dyn Source) -> Result<u64> {
        (**self).copy_from(src)
    }
}

/// Copies everything from `src` to `dst` until `src` ends; returns the
/// byte count. This is `dst`'s [`copy_from`](Sink::copy_from): on io_uring,
/// between two flows backed by file descriptors (files, sockets, pipes) the
/// bytes move in the kernel (`splice`), otherwise through a buffer
/// ([`copy_with_buffer`]). Files are read and written at their positions,
/// which advance by the bytes copied.
///
/// If the copy fails or is cancelled, the bytes the sink took stay taken.
/// When splicing, every other byte taken from `src` is given back to it
/// (its next read returns it); through a buffer, the rest of the chunk
/// being written is lost (see [`copy_with_buffer`]).
pub fn copy(src: &(impl Source + ?Sized), dst: &(impl Sink + ?Sized)) -> Result<u64> {
    struct AsDyn<'a, S: ?Sized>(&'a S);
    impl<S: Source + ?Sized> Source for AsDyn<'_, S> {
        fn read(&self, buf: &mut [u8]) -> Result<usize> {
            self.0.read(buf)
        }
        fn read_vectored(&self, bufs: &mut [io::IoSliceMut<'_>]) -> Result<usize> {
            self.0.read_vectored(bufs)
        }
        fn backing(&self) -> Option<Backing<'_>> {
            self.0.backing()
        }
    }
    dst.copy_from(&AsDyn(src))
}

/// Writes `s` to `dst` in full.
pub fn copy_string(s: &str, dst: &(impl Sink + ?Sized)) -> Result<()> {
    dst.write_all(s.as_bytes())
}

/// A source reading from an in-memory byte string.
#[derive(Debug)]
pub struct StringSource {
    data: Vec<u8>,
    pos: Cell<usize>,
}

/// A source that yields the bytes of `s`, then end of stream.
pub fn string_source(s: impl Into<Vec<u8>>) -> StringSource {
    StringSource {
        data: s.into(),
        pos: Cell::new(0),
    }
}

impl Source for StringSource {
    fn read(&self, buf: &mut [u8]) -> Result<usize> {
        let pos = self.pos.get();
        let n = buf.len().min(self.data.len() - pos);
        buf[..n].copy_from_slice(&self.data[pos..pos + n]);
        self.pos.set(pos + n);
        Ok(n)
    }

    fn read_vectored(&self, bufs: &mut [io::IoSliceMut<'_>]) -> Result<usize> {
        let mut total = 0;
        for b in bufs.iter_mut() {
            total += self.read(b)?;
        }
        Ok(total)
    }
}

/// A sink collecting everything written into memory.
#[derive(Debug, Default)]
pub struct BufferSink {
    data: RefCell<Vec<u8>>,
}

/// A new, empty [`BufferSink`].
pub fn buffer_sink() -> BufferSink {
    BufferSink::default()
}

impl BufferSink {
    /// A copy of everything written so far.
    pub fn contents(&self) -> Vec<u8> {
        self.data.borrow().clone()
    }

    /// Everything written so far, as (lossy) UTF-8.
    pub fn contents_string(&self) -> String {
        String::from_utf8_lossy(&self.data.borrow()).into_owned()
    }

    /// Takes the contents, leaving the sink empty.
    pub fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.data.borrow_mut())
    }
}

impl Sink for BufferSink {
    fn write(&self, buf: &[u8]) -> Result<usize> {
        self.data.borrow_mut().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn write_vectored(&self, bufs: &[io::IoSlice<'_>]) -> Result<usize> {
        let mut d = self.data.borrow_mut();
        let mut n = 0;
        for b in bufs {
            d.extend_from_slice(b);
            n += b.len();
        }
        Ok(n)
    }
}

/// `std::io::Read` over any [`Source`].
#[derive(Debug)]
pub struct IoReader<S>(pub S);

impl<S: Source> io::Read for IoReader<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(self.0.read(buf)?)
    }
    fn read_vectored(&mut self, bufs: &mut [io::IoSliceMut<'_>]) -> io::Result<usize> {
        Ok(self.0.read_vectored(bufs)?)
    }
}

/// `std::io::Write` over any [`Sink`].
#[derive(Debug)]
pub struct IoWriter<S>(pub S);

impl<S: Sink> io::Write for IoWriter<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(self.0.write(buf)?)
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        Ok(self.0.write_vectored(bufs)?)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes `room` bytes in all, then fails.
    struct Cramped {
        room: Cell<usize>,
    }

    impl Sink for Cramped {
        fn write(&self, buf: &[u8]) -> Result<usize> {
            let n = buf.len().min(self.room.get()).min(7);
            if n == 0 {
                return Err(Error::msg(ErrorKind::Closed, "sink full"));
            }
            self.room.set(self.room.get() - n);
            Ok(n)
        }
    }

    #[test]
    fn a_failed_buffered_copy_says_how_many_bytes_it_dropped() {
        let src = string_source(vec![b'x'; 100]);
        let dst = Cramped {
            room: Cell::new(30),
        };
        let err = copy_with_buffer(&src, &dst).unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::Closed);
        let text = err.to_string();
        assert!(
            text.contains(
                "copying, after 30 bytes: 70 bytes read from the source were not written"
            ),
            "{text}"
        );
    }
}
