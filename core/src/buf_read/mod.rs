//! Buffered reading and parsing.
//!
//! A flow hands out data in whatever chunks it has: a socket gives packets,
//! not lines. A [`BufReader`] wraps a [`Source`] with a buffer and offers
//! parsers that take exactly what they need from it — a line, `n` bytes, a
//! big-endian `u32`, a literal — reading more from the flow only when the
//! buffer runs short.
//!
//! The buffer grows as needed, but never past the `max_size` given when the
//! reader is made: a parser that would need more fails with
//! [`ErrorKind::BufferLimitExceeded`] instead. This keeps a peer that sends
//! an endless line from eating all memory, so `max_size` is mandatory. Set it
//! to the largest item you want to parse plus its terminator, with room to
//! spare.
//!
//! Parsers are methods returning [`Result`], so a parser for a larger thing
//! is a plain function or closure calling smaller ones with `?`. The parsers
//! do not backtrack: a parser that fails may have consumed input.
//!
//! ```
//! use weft::buf_read::{self, BufReader};
//! use weft::flow;
//!
//! struct Message {
//!     src: String,
//!     body: String,
//! }
//!
//! fn message<S: flow::Source>(r: &mut BufReader<S>) -> weft::Result<Message> {
//!     r.string("FROM:")?;
//!     let src = r.line()?;
//!     let body = r.take_all_string()?;
//!     Ok(Message { src, body })
//! }
//!
//! weft::mock::run(|_env| {
//!     let input = flow::string_source("FROM:Alice\nHello!\n");
//!     let msg = buf_read::parse(input, 1024, message)?;
//!     weft::traceln!("{} sent {:?}", msg.src, msg.body);
//!     assert_eq!((msg.src.as_str(), msg.body.as_str()), ("Alice", "Hello!\n"));
//!
//!     let bad = buf_read::parse(flow::string_source("TO:Bob\n"), 1024, message);
//!     let err = bad.err().unwrap();
//!     assert_eq!(err.kind(), &weft::ErrorKind::Parse);
//!     assert_eq!(
//!         err.to_string(),
//!         r#"parse error, expected "FROM:" but got "TO:Bo" (at offset 0)"#
//!     );
//!     Ok(())
//! })
//! .unwrap();
//! ```
//!
//! # Errors
//!
//! Every error says where in the stream it happened, counting from the first
//! byte the reader ever saw:
//!
//! * [`ErrorKind::Parse`]: the input does not match, e.g.
//!   `expected "FROM:" but got "TO:B" (at offset 0)` or
//!   `unexpected data after parsing (at offset 12)`. The offset is
//!   [`BufReader::pos`] when the parser gave up (the start of the item that
//!   did not match; for text that is not UTF-8, the first bad byte). Build
//!   your own with [`BufReader::parse_error`].
//! * [`ErrorKind::EndOfFile`]: the flow ended before the parser had what it
//!   needed: `unexpected end-of-file at offset N`, where `N` is where the
//!   stream ended.
//! * [`ErrorKind::BufferLimitExceeded`]: the item does not fit in
//!   `max_size`: `buffer size limit exceeded when reading at offset N`.
//!
//! Errors from the flow itself (a reset connection, a cancellation) pass
//! through unchanged. After an error the reader stays usable: what was not
//! consumed is still buffered.
//!
//! # Synchronous crates
//!
//! `BufReader` implements [`std::io::Read`] and [`std::io::BufRead`], so a
//! synchronous parser (serde_json, csv, httparse...) can read from a flow
//! running on a fiber, sharing the buffer with the parsers here.
//!
//! Where those traits are in scope, call the parsers through a `&mut
//! BufReader` (as parser closures get it): on an owned reader, `r.take(n)`
//! and `r.lines()` would resolve to `Read::take` and `BufRead::lines`, which
//! take the reader by value.

use std::fmt;

use crate::error::{Error, ErrorKind, Result};
use crate::flow::{self, Source, StringSource};

mod io;
mod parsers;

pub use io::{parse, parse_bytes, parse_prefix, Lines};

/// The default initial buffer size: 4 KiB (or `max_size`, if smaller).
pub const DEFAULT_INITIAL_SIZE: usize = 4096;

/// A buffer over a [`Source`], with parsers. See the [module docs](self).
///
/// ```
/// use weft::buf_read::BufReader;
/// use weft::{flow, ErrorKind};
///
/// weft::mock::run(|_env| {
///     // A length-prefixed record: a big-endian u16, then that many bytes.
///     let input = flow::string_source(b"\x00\x05hello\x00\x03hi".to_vec());
///     let mut r = BufReader::new(input, 64);
///     let len = r.u16_be()? as usize;
///     assert_eq!(r.take_string(len)?, "hello");
///     let len = r.u16_be()? as usize;
///     let err = r.take(len).unwrap_err(); // only two bytes left
///     assert_eq!(err.kind(), &ErrorKind::EndOfFile);
///     Ok(())
/// })
/// .unwrap();
/// ```
pub struct BufReader<S> {
    src: S,
    /// The buffer; `buf.len()` is the capacity.
    buf: Box<[u8]>,
    /// Start of the unconsumed data in `buf`.
    start: usize,
    /// Length of the unconsumed data.
    len: usize,
    /// The source has reported end of stream.
    eof: bool,
    /// Bytes consumed since the start of the stream.
    consumed: u64,
    max_size: usize,
}

impl<S> fmt::Debug for BufReader<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufReader")
            .field("pos", &self.consumed)
            .field("buffered", &self.len)
            .field("capacity", &self.buf.len())
            .field("max_size", &self.max_size)
            .field("eof_seen", &self.eof)
            .finish()
    }
}

impl<S: Source> BufReader<S> {
    /// A reader over `src` whose buffer never grows past `max_size` bytes.
    /// It starts with [`DEFAULT_INITIAL_SIZE`] bytes (or `max_size` if
    /// smaller).
    ///
    /// # Panics
    /// If `max_size` is 0.
    pub fn new(src: S, max_size: usize) -> BufReader<S> {
        Self::with_capacity(src, DEFAULT_INITIAL_SIZE, max_size)
    }

    /// Like [`new`](BufReader::new), with an initial buffer of
    /// `initial_size` bytes (capped at `max_size`). The buffer doubles when
    /// an item does not fit, up to `max_size`.
    ///
    /// # Panics
    /// If `max_size` is 0.
    pub fn with_capacity(src: S, initial_size: usize, max_size: usize) -> BufReader<S> {
        assert!(max_size > 0, "BufReader: max_size must be positive");
        BufReader {
            src,
            buf: vec![0; initial_size.min(max_size)].into_boxed_slice(),
            start: 0,
            len: 0,
            eof: false,
            consumed: 0,
            max_size,
        }
    }
}

impl BufReader<StringSource> {
    /// A reader over bytes already in memory (Eio's `of_string`): the data
    /// becomes the buffer without being copied, and there is no size limit.
    ///
    /// ```
    /// let mut r = weft::buf_read::BufReader::from_bytes("12 apples");
    /// assert_eq!(r.take_while_string(|b| b.is_ascii_digit()).unwrap(), "12");
    /// assert_eq!(r.pos(), 2);
    /// ```
    pub fn from_bytes(data: impl Into<Vec<u8>>) -> BufReader<StringSource> {
        let buf = data.into().into_boxed_slice();
        BufReader {
            src: flow::string_source(Vec::new()),
            len: buf.len(),
            buf,
            start: 0,
            eof: true,
            consumed: 0,
            max_size: usize::MAX,
        }
    }
}

impl<S> BufReader<S> {
    /// The number of bytes consumed so far: the stream offset of the next
    /// byte a parser will see.
    #[inline]
    pub fn pos(&self) -> u64 {
        self.consumed
    }

    /// The buffered, unconsumed data. Reading does not change it; use
    /// [`consume`](BufReader::consume) to mark a prefix as used.
    #[inline]
    pub fn peek(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }

    /// How many bytes can be parsed without reading the flow
    /// (`peek().len()`).
    #[inline]
    pub fn buffered(&self) -> usize {
        self.len
    }

    /// Discards the first `n` buffered bytes. Never reads the flow (unlike
    /// [`skip`](BufReader::skip)).
    ///
    /// # Panics
    /// If fewer than `n` bytes are buffered.
    #[inline]
    pub fn consume(&mut self, n: usize) {
        assert!(
            n <= self.len,
            "BufReader::consume: can't consume {n} bytes of a {} byte buffer",
            self.len
        );
        self.start += n;
        self.len -= n;
        self.consumed += n as u64;
    }

    /// Whether the flow has reported end of stream. If so,
    /// [`peek`](BufReader::peek) holds everything that is left. `false` does not
    /// mean more data is coming: use
    /// [`at_end_of_input`](BufReader::at_end_of_input) to find out.
    pub fn eof_seen(&self) -> bool {
        self.eof
    }

    /// The current size of the buffer.
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// The largest size the buffer may grow to.
    pub fn max_size(&self) -> usize {
        self.max_size
    }

    /// The underlying flow.
    pub fn get_ref(&self) -> &S {
        &self.src
    }

    /// Gives back the flow. Buffered data that was not consumed is lost.
    pub fn into_inner(self) -> S {
        self.src
    }

    /// A [`Parse`](ErrorKind::Parse) error with `msg` and the current
    /// offset: `"<msg> (at offset N)"`. For parsers written by hand.
    ///
    /// ```
    /// let r = weft::buf_read::BufReader::from_bytes("x");
    /// let err = r.parse_error("expected a digit");
    /// assert_eq!(err.to_string(), "parse error, expected a digit (at offset 0)");
    /// ```
    pub fn parse_error(&self, msg: impl fmt::Display) -> Error {
        self.parse_error_at(self.consumed, msg)
    }

    pub(crate) fn parse_error_at(&self, offset: u64, msg: impl fmt::Display) -> Error {
        Error::msg(ErrorKind::Parse, format!("{msg} (at offset {offset})"))
    }

    fn eof_error(&self) -> Error {
        let at = self.consumed + self.len as u64;
        Error::msg(
            ErrorKind::EndOfFile,
            format!("unexpected end-of-file at offset {at}"),
        )
    }

    fn limit_error(&self) -> Error {
        let msg = format!(
            "buffer size limit exceeded when reading at offset {} (max_size is {})",
            self.consumed, self.max_size
        );
        Error::msg(ErrorKind::BufferLimitExceeded, msg)
    }
}

impl<S: Source> BufReader<S> {
    /// Makes sure at least `n` bytes are buffered, reading the flow as
    /// needed (and growing the buffer, up to `max_size`).
    ///
    /// Fails with `EndOfFile` if the flow ends first (what it did send stays
    /// buffered), or `BufferLimitExceeded` if `n > max_size`.
    #[inline]
    pub fn ensure(&mut self, n: usize) -> Result<()> {
        if self.len >= n {
            Ok(())
        } else {
            self.fill(n)
        }
    }

    #[inline(never)]
    fn fill(&mut self, n: usize) -> Result<()> {
        if n > self.max_size {
            return Err(self.limit_error());
        }
        if self.eof {
            return Err(self.eof_error());
        }
        if self.len == 0 {
            self.start = 0;
        }
        let cap = self.buf.len();
        if n > cap {
            let new_size = n.max(self.max_size.min(cap.saturating_mul(2)));
            let mut bigger = vec![0; new_size].into_boxed_slice();
            bigger[..self.len].copy_from_slice(self.peek());
            self.buf = bigger;
            self.start = 0;
        } else if self.start + n > cap {
            self.buf.copy_within(self.start..self.start + self.len, 0);
            self.start = 0;
        }
        while self.len < n {
            let free = &mut self.buf[self.start + self.len..];
            let room = free.len();
            match self.src.read(free) {
                Ok(0) => {
                    self.eof = true;
                    return Err(self.eof_error());
                }
                Ok(got) => {
                    debug_assert!(got <= room, "Source::read returned more than asked");
                    self.len += got.min(room);
                }
                Err(e) if e.kind() == &ErrorKind::EndOfFile => {
                    self.eof = true;
                    return Err(self.eof_error());
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// True at the end of the stream; false if at least one more byte can be
    /// read (reading the flow to find out if nothing is buffered).
    pub fn at_end_of_input(&mut self) -> Result<bool> {
        if self.len > 0 {
            return Ok(false);
        }
        match self.ensure(1) {
            Ok(()) => Ok(false),
            Err(e) if e.kind() == &ErrorKind::EndOfFile => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// Checks that the stream has ended: a `Parse` error
    /// `unexpected data after parsing (at offset N)` if it has not.
    pub fn end_of_input(&mut self) -> Result<()> {
        if self.at_end_of_input()? {
            Ok(())
        } else {
            Err(self.parse_error("unexpected data after parsing"))
        }
    }

    /// Like `ensure(n)`, turning an end of stream into `Ok(false)`.
    pub(crate) fn try_ensure(&mut self, n: usize) -> Result<bool> {
        match self.ensure(n) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == &ErrorKind::EndOfFile => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// Shows bytes as a quoted string, the way parse errors and mock traces do:
/// like Rust's `{:?}` for `str` (`"a\r\n"`), with bytes that are not UTF-8
/// as `\xNN`.
///
/// ```
/// use weft::buf_read::Quoted;
/// assert_eq!(Quoted(b"OK\r\n").to_string(), r#""OK\r\n""#);
/// assert_eq!(Quoted(b"\xff'\"").to_string(), r#""\xff'\"""#);
/// ```
#[derive(Clone, Copy)]
pub struct Quoted<'a>(pub &'a [u8]);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write;
        f.write_char('"')?;
        for chunk in self.0.utf8_chunks() {
            for c in chunk.valid().chars() {
                match c {
                    '\'' => f.write_char('\'')?,
                    c => write!(f, "{}", c.escape_debug())?,
                }
            }
            for b in chunk.invalid() {
                write!(f, "\\x{b:02x}")?;
            }
        }
        f.write_char('"')
    }
}

impl fmt::Debug for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
