//! Running parsers over whole flows, the line iterator, and the
//! `std::io::Read`/`BufRead` adapters.

use std::io;

use super::BufReader;
use crate::error::{ErrorKind, Result};
use crate::flow::{Source, StringSource};

/// Parses all of `src` with `p`: makes a [`BufReader`] with `max_size`, runs
/// `p`, then checks that the input has ended (a `Parse` error
/// `unexpected data after parsing (at offset N)` if not).
///
/// ```
/// use weft::buf_read;
/// use weft::flow::string_source;
///
/// weft::mock::run(|_env| {
///     let n = buf_read::parse(string_source("\x00\x2a"), 16, |r| r.u16_be())?;
///     assert_eq!(n, 42);
///     let err = buf_read::parse(string_source("abc"), 16, |r| r.take(2)).unwrap_err();
///     assert_eq!(err.to_string(), "parse error, unexpected data after parsing (at offset 2)");
///     Ok(())
/// })
/// .unwrap();
/// ```
pub fn parse<S: Source, T>(
    src: S,
    max_size: usize,
    p: impl FnOnce(&mut BufReader<S>) -> Result<T>,
) -> Result<T> {
    let mut r = BufReader::new(src, max_size);
    let value = p(&mut r)?;
    r.end_of_input()?;
    Ok(value)
}

/// Parses the start of `src` with `p` and hands back the reader, positioned
/// after what `p` consumed, to go on with the rest (nothing buffered is
/// lost).
///
/// ```
/// use weft::buf_read;
/// use weft::flow::string_source;
///
/// weft::mock::run(|_env| {
///     let src = string_source("HEAD 3\nabcrest");
///     let (len, mut r) = buf_read::parse_prefix(src, 64, |r| {
///         r.string("HEAD ")?;
///         Ok(r.line()?.parse::<usize>().unwrap())
///     })?;
///     assert_eq!(r.take(len)?, b"abc");
///     assert_eq!(r.take_all()?, b"rest");
///     Ok(())
/// })
/// .unwrap();
/// ```
pub fn parse_prefix<S: Source, T>(
    src: S,
    max_size: usize,
    p: impl FnOnce(&mut BufReader<S>) -> Result<T>,
) -> Result<(T, BufReader<S>)> {
    let mut r = BufReader::new(src, max_size);
    let value = p(&mut r)?;
    Ok((value, r))
}

/// Parses all of `data`, already in memory, with `p` (Eio's
/// `parse_string`). Needs no runtime, since no flow is read.
///
/// ```
/// let pair = weft::buf_read::parse_bytes("7,8", |r| {
///     let a = r.u8()?;
///     r.char(',')?;
///     Ok((a, r.u8()?))
/// });
/// assert_eq!(pair.unwrap(), (b'7', b'8'));
/// ```
pub fn parse_bytes<T>(
    data: impl Into<Vec<u8>>,
    p: impl FnOnce(&mut BufReader<StringSource>) -> Result<T>,
) -> Result<T> {
    let mut r = BufReader::from_bytes(data);
    let value = p(&mut r)?;
    r.end_of_input()?;
    Ok(value)
}

/// The lines of a [`BufReader`], from [`BufReader::lines`].
///
/// Ends at the end of the stream. An error is returned once, and ends the
/// iteration.
#[derive(Debug)]
pub struct Lines<'a, S> {
    reader: &'a mut BufReader<S>,
    done: bool,
}

impl<S: Source> BufReader<S> {
    /// Iterates over the remaining lines (see [`line`](BufReader::line)),
    /// until the end of the stream.
    ///
    /// ```
    /// use weft::buf_read::BufReader;
    ///
    /// let mut r = BufReader::from_bytes("one\r\ntwo\n\nthree");
    /// let lines: Vec<String> = r.lines().collect::<weft::Result<_>>().unwrap();
    /// assert_eq!(lines, ["one", "two", "", "three"]);
    /// ```
    pub fn lines(&mut self) -> Lines<'_, S> {
        Lines {
            reader: self,
            done: false,
        }
    }
}

impl<S: Source> Iterator for Lines<'_, S> {
    type Item = Result<String>;

    fn next(&mut self) -> Option<Result<String>> {
        if self.done {
            return None;
        }
        let item = match self.reader.at_end_of_input() {
            Ok(true) => None,
            Ok(false) => Some(self.reader.line()),
            Err(e) => Some(Err(e)),
        };
        self.done = !matches!(item, Some(Ok(_)));
        item
    }
}

impl<S: Source> std::iter::FusedIterator for Lines<'_, S> {}

/// Reads through the buffer; a read into a buffer at least as large as the
/// reader's, while nothing is buffered, goes straight to the flow.
impl<S: Source> io::Read for BufReader<S> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        if self.buffered() == 0 && !self.eof && out.len() >= self.capacity() {
            let n = match self.src.read(out) {
                Ok(n) => n,
                Err(e) if e.kind() == &ErrorKind::EndOfFile => 0,
                Err(e) => return Err(e.into()),
            };
            if n == 0 {
                self.eof = true;
            }
            self.consumed += n as u64;
            return Ok(n);
        }
        if !self.try_ensure(1)? {
            return Ok(0);
        }
        let n = out.len().min(self.buffered());
        out[..n].copy_from_slice(&self.peek()[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<S: Source> io::BufRead for BufReader<S> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.try_ensure(1)?;
        Ok(self.peek())
    }

    fn consume(&mut self, amt: usize) {
        BufReader::consume(self, amt.min(self.buffered()));
    }
}
