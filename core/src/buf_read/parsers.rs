//! The parsers of [`BufReader`]: text, bytes, literals and integers.

use super::{BufReader, Quoted};
use crate::error::{ErrorKind, Result};
use crate::flow::Source;

/// Width of the UTF-8 sequence that starts with `b` (0 if `b` cannot start
/// one).
fn utf8_width(b: u8) -> usize {
    match b {
        0x00..=0x7f => 1,
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => 0,
    }
}

macro_rules! int_parsers {
    ($($(#[$doc:meta])* $name:ident -> $t:ty = $from:ident;)*) => {
        $(
            $(#[$doc])*
            #[inline]
            pub fn $name(&mut self) -> Result<$t> {
                const N: usize = std::mem::size_of::<$t>();
                self.ensure(N)?;
                let mut bytes = [0u8; N];
                bytes.copy_from_slice(&self.peek()[..N]);
                self.consume(N);
                Ok(<$t>::$from(bytes))
            }
        )*
    };
}

impl<S: Source> BufReader<S> {
    /// Reads one line, without its terminator (`\n` or `\r\n`). At the end
    /// of the stream, a last line with no terminator is returned as it is;
    /// with nothing left at all, this fails with `EndOfFile`.
    ///
    /// The line and its terminator must fit in `max_size`
    /// (`BufferLimitExceeded` otherwise). A line that is not UTF-8 is a
    /// `Parse` error and is left unconsumed (see
    /// [`line_bytes`](BufReader::line_bytes)).
    pub fn line(&mut self) -> Result<String> {
        let (end, next) = self.find_line()?;
        match std::str::from_utf8(&self.peek()[..end]) {
            Ok(s) => {
                let line = s.to_owned();
                self.consume(next);
                Ok(line)
            }
            Err(e) => {
                let at = self.pos() + e.valid_up_to() as u64;
                Err(self.parse_error_at(at, "line is not valid UTF-8"))
            }
        }
    }

    /// Like [`line`](BufReader::line), for lines that may not be UTF-8.
    pub fn line_bytes(&mut self) -> Result<Vec<u8>> {
        let (end, next) = self.find_line()?;
        let line = self.peek()[..end].to_vec();
        self.consume(next);
        Ok(line)
    }

    /// Finds the next line: (length without terminator, length with it).
    fn find_line(&mut self) -> Result<(usize, usize)> {
        let mut scanned = 0;
        loop {
            let data = self.peek();
            if let Some(i) = memchr::memchr(b'\n', &data[scanned..]) {
                let nl = scanned + i;
                let end = if nl > 0 && data[nl - 1] == b'\r' {
                    nl - 1
                } else {
                    nl
                };
                return Ok((end, nl + 1));
            }
            scanned = data.len();
            if !self.try_ensure(scanned + 1)? {
                if scanned == 0 {
                    return Err(self.eof_error());
                }
                return Ok((scanned, scanned));
            }
        }
    }

    /// Takes exactly `n` bytes (`EndOfFile` if the stream ends first, in
    /// which case nothing is consumed).
    pub fn take(&mut self, n: usize) -> Result<Vec<u8>> {
        self.ensure(n)?;
        let data = self.peek()[..n].to_vec();
        self.consume(n);
        Ok(data)
    }

    /// Takes exactly `n` bytes, which must be UTF-8 (a `Parse` error, with
    /// nothing consumed, if they are not).
    pub fn take_string(&mut self, n: usize) -> Result<String> {
        self.ensure(n)?;
        self.take_utf8(n)
    }

    /// Converts and consumes the first `n` buffered bytes.
    fn take_utf8(&mut self, n: usize) -> Result<String> {
        match std::str::from_utf8(&self.peek()[..n]) {
            Ok(s) => {
                let s = s.to_owned();
                self.consume(n);
                Ok(s)
            }
            Err(e) => {
                let at = self.pos() + e.valid_up_to() as u64;
                Err(self.parse_error_at(at, "invalid UTF-8"))
            }
        }
    }

    /// Takes everything until the end of the stream (empty if already
    /// there). Everything left must fit in the buffer with one byte to
    /// spare, since it takes an extra read to see the end:
    /// `BufferLimitExceeded` if `max_size` or more bytes remain.
    pub fn take_all(&mut self) -> Result<Vec<u8>> {
        let n = self.fill_to_end()?;
        let data = self.peek()[..n].to_vec();
        self.consume(n);
        Ok(data)
    }

    /// Like [`take_all`](BufReader::take_all), for UTF-8 text.
    pub fn take_all_string(&mut self) -> Result<String> {
        let n = self.fill_to_end()?;
        self.take_utf8(n)
    }

    fn fill_to_end(&mut self) -> Result<usize> {
        while self.try_ensure(self.buffered() + 1)? {}
        Ok(self.buffered())
    }

    /// Counts the bytes from the current position for which `pred` holds,
    /// reading as needed; stops at the end of the stream.
    fn count_while(&mut self, mut pred: impl FnMut(u8) -> bool) -> Result<usize> {
        let mut i = 0;
        loop {
            let data = self.peek();
            match data[i..].iter().position(|&b| !pred(b)) {
                Some(j) => return Ok(i + j),
                None => i = data.len(),
            }
            if !self.try_ensure(i + 1)? {
                return Ok(i);
            }
        }
    }

    /// Takes the bytes up to the first one for which `pred` is false (or
    /// the end of the stream). May be empty; never fails with `EndOfFile`.
    /// The bytes taken must fit in `max_size`.
    pub fn take_while(&mut self, pred: impl FnMut(u8) -> bool) -> Result<Vec<u8>> {
        let n = self.count_while(pred)?;
        let data = self.peek()[..n].to_vec();
        self.consume(n);
        Ok(data)
    }

    /// Like [`take_while`](BufReader::take_while), for UTF-8 text.
    pub fn take_while_string(&mut self, pred: impl FnMut(u8) -> bool) -> Result<String> {
        let n = self.count_while(pred)?;
        self.take_utf8(n)
    }

    /// Like [`take_while`](BufReader::take_while), but a `Parse` error if no
    /// byte matches.
    pub fn take_while1(&mut self, pred: impl FnMut(u8) -> bool) -> Result<Vec<u8>> {
        let n = self.count_while(pred)?;
        if n == 0 {
            return Err(self.parse_error("take_while1: no byte matched"));
        }
        let data = self.peek()[..n].to_vec();
        self.consume(n);
        Ok(data)
    }

    /// Skips the bytes for which `pred` holds, up to the first one for
    /// which it does not (or the end of the stream). Unlike `take_while`,
    /// any number of bytes may be skipped, whatever `max_size`.
    pub fn skip_while(&mut self, mut pred: impl FnMut(u8) -> bool) -> Result<()> {
        loop {
            match self.peek().iter().position(|&b| !pred(b)) {
                Some(i) => {
                    self.consume(i);
                    return Ok(());
                }
                None => self.consume(self.buffered()),
            }
            if !self.try_ensure(1)? {
                return Ok(());
            }
        }
    }

    /// Like [`skip_while`](BufReader::skip_while), but a `Parse` error if no
    /// byte matches. The bytes skipped must fit in `max_size`.
    pub fn skip_while1(&mut self, pred: impl FnMut(u8) -> bool) -> Result<()> {
        let n = self.count_while(pred)?;
        if n == 0 {
            return Err(self.parse_error("skip_while1: no byte matched"));
        }
        self.consume(n);
        Ok(())
    }

    /// Discards the next `n` bytes, which need not fit in the buffer. If the
    /// stream ends first, everything is discarded and this fails with
    /// `EndOfFile`.
    pub fn skip(&mut self, mut n: u64) -> Result<()> {
        loop {
            let have = self.buffered();
            if n <= have as u64 {
                self.consume(n as usize);
                return Ok(());
            }
            n -= have as u64;
            self.consume(have);
            let want = (n.min(self.capacity().max(1) as u64)) as usize;
            if let Err(e) = self.ensure(want) {
                if e.kind() == &ErrorKind::EndOfFile {
                    self.consume(self.buffered());
                }
                return Err(e);
            }
        }
    }

    /// Checks that the stream continues with `expected`, and consumes it.
    /// On a mismatch nothing is consumed and the `Parse` error shows what
    /// was there instead: `expected "FROM:" but got "TO:B" (at offset 0)`.
    pub fn string(&mut self, expected: impl AsRef<[u8]>) -> Result<()> {
        let want = expected.as_ref();
        let mut i = 0;
        loop {
            let data = self.peek();
            let upto = want.len().min(data.len());
            if data[i..upto] != want[i..upto] {
                let got = Quoted(&data[..upto]);
                let msg = format!("expected {} but got {got}", Quoted(want));
                return Err(self.parse_error(msg));
            }
            if upto == want.len() {
                self.consume(upto);
                return Ok(());
            }
            i = upto;
            self.ensure(upto + 1)?;
        }
    }

    /// Checks that the next character is `c` (in UTF-8) and consumes it; a
    /// `Parse` error `expected 'a' but got 'b'` if it is not.
    pub fn char(&mut self, c: char) -> Result<()> {
        let mut enc = [0; 4];
        let want = c.encode_utf8(&mut enc).as_bytes();
        self.ensure(1)?;
        if self.peek()[0] == want[0] {
            self.ensure(want.len())?;
            if &self.peek()[..want.len()] == want {
                self.consume(want.len());
                return Ok(());
            }
        }
        let got = self.describe_next();
        Err(self.parse_error(format!("expected {c:?} but got {got}")))
    }

    /// The next character, for error messages: `'x'`, or `byte 0xff`.
    fn describe_next(&self) -> String {
        let data = self.peek();
        let w = utf8_width(data[0]).max(1).min(data.len());
        match std::str::from_utf8(&data[..w])
            .ok()
            .and_then(|s| s.chars().next())
        {
            Some(c) => format!("{c:?}"),
            None => format!("byte 0x{:02x}", data[0]),
        }
    }

    /// Reads one UTF-8 character (a `Parse` error if the bytes are not
    /// UTF-8; `EndOfFile` if the stream ends, even in mid-character).
    pub fn any_char(&mut self) -> Result<char> {
        let (c, w) = self.next_char()?;
        self.consume(w);
        Ok(c)
    }

    /// The next character, without consuming it; `None` at the end of the
    /// stream.
    pub fn peek_char(&mut self) -> Result<Option<char>> {
        if !self.try_ensure(1)? {
            return Ok(None);
        }
        Ok(Some(self.next_char()?.0))
    }

    fn next_char(&mut self) -> Result<(char, usize)> {
        self.ensure(1)?;
        let w = utf8_width(self.peek()[0]);
        if w > 1 {
            self.ensure(w)?;
        }
        let bytes = &self.peek()[..w];
        match std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| s.chars().next())
        {
            Some(c) => Ok((c, w)),
            None => Err(self.parse_error("invalid UTF-8")),
        }
    }

    /// The next byte, without consuming it; `None` at the end of the stream.
    pub fn peek_u8(&mut self) -> Result<Option<u8>> {
        Ok(match self.try_ensure(1)? {
            true => Some(self.peek()[0]),
            false => None,
        })
    }

    int_parsers! {
        /// Reads one byte.
        u8 -> u8 = from_be_bytes;
        /// Reads one byte as a signed integer.
        i8 -> i8 = from_be_bytes;
        /// Reads a big-endian `u16`.
        u16_be -> u16 = from_be_bytes;
        /// Reads a little-endian `u16`.
        u16_le -> u16 = from_le_bytes;
        /// Reads a big-endian `i16`.
        i16_be -> i16 = from_be_bytes;
        /// Reads a little-endian `i16`.
        i16_le -> i16 = from_le_bytes;
        /// Reads a big-endian `u32`.
        u32_be -> u32 = from_be_bytes;
        /// Reads a little-endian `u32`.
        u32_le -> u32 = from_le_bytes;
        /// Reads a big-endian `i32`.
        i32_be -> i32 = from_be_bytes;
        /// Reads a little-endian `i32`.
        i32_le -> i32 = from_le_bytes;
        /// Reads a big-endian `u64`.
        u64_be -> u64 = from_be_bytes;
        /// Reads a little-endian `u64`.
        u64_le -> u64 = from_le_bytes;
        /// Reads a big-endian `i64`.
        i64_be -> i64 = from_be_bytes;
        /// Reads a little-endian `i64`.
        i64_le -> i64 = from_le_bytes;
        /// Reads a big-endian IEEE 754 `f32`.
        f32_be -> f32 = from_be_bytes;
        /// Reads a little-endian IEEE 754 `f32`.
        f32_le -> f32 = from_le_bytes;
        /// Reads a big-endian IEEE 754 `f64`.
        f64_be -> f64 = from_be_bytes;
        /// Reads a little-endian IEEE 754 `f64`.
        f64_le -> f64 = from_le_bytes;
    }
}
