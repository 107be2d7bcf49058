//! Mock flows: scripted reads, traced writes (Eio's `Eio_mock.Flow`).
//!
//! A [`Flow`] is a two-way flow for tests. Its reads return what a test
//! scripted with [`Flow::on_read`] (end of stream once the script runs
//! out), and everything done to it is traced, so a test compares the trace
//! with what it expects:
//!
//! * a read: `flow: read "(packet 1)"`;
//! * a write: `flow: wrote "Hello"`. Data is shown as Rust shows a string
//!   (`"\r\n"`; bytes that are not UTF-8 as `\xNN`), and split after each
//!   newline, every further line starting with a space: writing
//!   `"HTTP/1.1 200 OK\r\n\r\n"` traces `socket: wrote "HTTP/1.1 200 OK\r\n"`
//!   then ` "\r\n"`. A vectored write of several buffers traces them as a
//!   list: `flow: wrote ["head"; "body"]`;
//! * `flow: shutdown write` (or `read`, `both`), and `flow: closed` when it
//!   is closed or dropped.
//!
//! How much each write (or each chunk of a copy) takes is scripted too, with
//! [`Flow::on_copy_bytes`] (4096 bytes by default).
//!
//! ```
//! use weft::flow::{self, Source};
//! use weft::mock::{self, Action};
//!
//! let (result, trace) = mock::run_traced(|_env| {
//!     let flow = mock::Flow::new("flow");
//!     flow.on_read([
//!         Action::ret("(packet 1)"),
//!         Action::yield_then(Action::ret("(packet 2)")),
//!     ]);
//!     let got = flow.read_all()?;
//!     weft::traceln!("received {got:?}");
//!     flow::copy_string("bye\n", &flow)
//! });
//! result.unwrap();
//! assert_eq!(
//!     trace,
//!     [
//!         r#"flow: read "(packet 1)""#,
//!         r#"flow: read "(packet 2)""#,
//!         r#"received "(packet 1)(packet 2)""#,
//!         r#"flow: wrote "bye\n""#,
//!         "flow: closed",
//!     ]
//! );
//! ```

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::io;

use weft_core::buf_read::Quoted;
use weft_core::flow::{Shutdown, ShutdownKind, Sink, Source};
use weft_core::{traceln, Error, ErrorKind, Result};

use crate::action::Action;
use crate::handler::Handler;

/// How a mock flow's [`Sink::copy_from`] copies (Eio's `set_copy_method`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CopyMethod {
    /// Read the source in chunks whose sizes come from
    /// [`Flow::on_copy_bytes`], tracing each chunk as a write. The default.
    #[default]
    ReadInto,
    /// The generic way: read up to 64 KiB at a time, and pass each read to
    /// [`Sink::write_all`], so that every write is traced (and limited by
    /// `on_copy_bytes`) as a direct write would be.
    Fallback,
}

/// A scripted, traced two-way flow. See the [module docs](self).
pub struct Flow {
    label: String,
    on_read: Handler<Vec<u8>>,
    on_copy_bytes: Handler<usize>,
    copy_method: Cell<CopyMethod>,
    closed: Cell<bool>,
    /// The rest of a scripted read that did not fit in the caller's buffer.
    leftover: RefCell<Vec<u8>>,
}

impl std::fmt::Debug for Flow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flow")
            .field("label", &self.label)
            .field("closed", &self.closed.get())
            .finish()
    }
}

/// Traces `data` as Eio's mock flows do: split after each newline, the first
/// piece after `head`, the others on lines of their own after a space.
pub(crate) fn trace_data(head: std::fmt::Arguments<'_>, data: &[u8]) {
    let mut pieces = data.split_inclusive(|&b| b == b'\n');
    let first = pieces.next().unwrap_or(b"");
    traceln!("{head} {}", Quoted(first));
    for piece in pieces {
        traceln!(" {}", Quoted(piece));
    }
}

impl Flow {
    /// A new mock flow; `label` starts its trace lines. Reads return end of
    /// stream until scripted with [`on_read`](Flow::on_read).
    pub fn new(label: impl Into<String>) -> Flow {
        Flow {
            label: label.into(),
            on_read: Handler::new(Action::Error(Error::new(ErrorKind::EndOfFile))),
            on_copy_bytes: Handler::new(Action::Return(4096)),
            copy_method: Cell::new(CopyMethod::default()),
            closed: Cell::new(false),
            leftover: RefCell::new(Vec::new()),
        }
    }

    /// The label given to [`new`](Flow::new).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Scripts the next reads: each read performs the next action and
    /// returns its bytes. An error of kind `EndOfFile`, which is also the
    /// default once the script runs out, is reported as the end of the
    /// stream. Bytes that do not fit in the reader's buffer are returned by
    /// the following read(s), before the script goes on (each read traces
    /// what it returned).
    pub fn on_read(&self, actions: impl IntoIterator<Item = Action<Vec<u8>>>) {
        self.on_read.seq(actions);
    }

    /// Scripts how many bytes the next writes (and copy chunks) take at
    /// most; the default is 4096.
    pub fn on_copy_bytes(&self, actions: impl IntoIterator<Item = Action<usize>>) {
        self.on_copy_bytes.seq(actions);
    }

    /// The handler behind reads, for [`Handler::set_default`] and the like.
    pub fn read_handler(&self) -> &Handler<Vec<u8>> {
        &self.on_read
    }

    /// The handler behind write sizes.
    pub fn copy_bytes_handler(&self) -> &Handler<usize> {
        &self.on_copy_bytes
    }

    /// Chooses how [`Sink::copy_from`] copies into this flow.
    pub fn set_copy_method(&self, method: CopyMethod) {
        self.copy_method.set(method);
    }

    /// Closes the flow, tracing `<label>: closed` (once; dropping an open
    /// flow closes it). Later reads and writes fail with `Closed`.
    pub fn close(&self) {
        if !self.closed.replace(true) {
            traceln!("{}: closed", self.label);
        }
    }

    /// Whether the flow has been closed.
    pub fn is_closed(&self) -> bool {
        self.closed.get()
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.get() {
            let msg = format!("mock flow {:?} is closed", self.label);
            return Err(Error::msg(ErrorKind::Closed, msg));
        }
        Ok(())
    }

    fn copy_chunks(&self, src: &dyn Source) -> Result<u64> {
        let mut total = 0;
        loop {
            let size = self.on_copy_bytes.run()?;
            let mut buf = vec![0; size];
            let n = match src.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == &ErrorKind::EndOfFile => 0,
                Err(e) => return Err(e),
            };
            if n == 0 {
                return Ok(total);
            }
            trace_data(format_args!("{}: wrote", self.label), &buf[..n]);
            total += n as u64;
        }
    }
}

impl Drop for Flow {
    fn drop(&mut self) {
        self.close();
    }
}

impl Source for Flow {
    fn read(&self, buf: &mut [u8]) -> Result<usize> {
        self.check_open()?;
        if buf.is_empty() {
            return Ok(0);
        }
        let mut data = std::mem::take(&mut *self.leftover.borrow_mut());
        if data.is_empty() {
            data = match self.on_read.run() {
                Ok(data) => data,
                Err(e) if e.kind() == &ErrorKind::EndOfFile => return Ok(0),
                Err(e) => return Err(e),
            };
        }
        if data.len() > buf.len() {
            *self.leftover.borrow_mut() = data.split_off(buf.len());
        }
        buf[..data.len()].copy_from_slice(&data);
        trace_data(format_args!("{}: read", self.label), &data);
        Ok(data.len())
    }
}

impl Sink for Flow {
    fn write(&self, buf: &[u8]) -> Result<usize> {
        self.write_vectored(&[io::IoSlice::new(buf)])
    }

    fn write_vectored(&self, bufs: &[io::IoSlice<'_>]) -> Result<usize> {
        self.check_open()?;
        if bufs.iter().all(|b| b.is_empty()) {
            return Ok(0);
        }
        let mut room = self.on_copy_bytes.run()?;
        let mut taken: Vec<&[u8]> = Vec::new();
        for b in bufs.iter().filter(|b| !b.is_empty()) {
            if room == 0 {
                break;
            }
            let n = b.len().min(room);
            taken.push(&b[..n]);
            room -= n;
        }
        match taken.as_slice() {
            [] => traceln!("{}: wrote \"\"", self.label),
            [one] => trace_data(format_args!("{}: wrote", self.label), one),
            several => {
                let mut list = String::from("[");
                for (i, b) in several.iter().enumerate() {
                    let sep = if i == 0 { "" } else { "; " };
                    let _ = write!(list, "{sep}{}", Quoted(b));
                }
                list.push(']');
                traceln!("{}: wrote {list}", self.label);
            }
        }
        Ok(taken.iter().map(|b| b.len()).sum())
    }

    fn copy_from(&self, src: &dyn Source) -> Result<u64> {
        self.check_open()?;
        match self.copy_method.get() {
            CopyMethod::ReadInto => self.copy_chunks(src),
            CopyMethod::Fallback => {
                let mut buf = vec![0; 64 * 1024];
                let mut total = 0;
                loop {
                    let n = match src.read(&mut buf) {
                        Ok(n) => n,
                        Err(e) if e.kind() == &ErrorKind::EndOfFile => 0,
                        Err(e) => return Err(e),
                    };
                    if n == 0 {
                        return Ok(total);
                    }
                    self.write_all(&buf[..n])?;
                    total += n as u64;
                }
            }
        }
    }
}

impl Shutdown for Flow {
    fn shutdown(&self, how: ShutdownKind) -> Result<()> {
        self.check_open()?;
        let how = match how {
            ShutdownKind::Read => "read",
            ShutdownKind::Write => "write",
            ShutdownKind::Both => "both",
        };
        traceln!("{}: shutdown {how}", self.label);
        Ok(())
    }
}

impl io::Read for &Flow {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(Source::read(*self, buf)?)
    }
}

impl io::Read for Flow {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        io::Read::read(&mut &*self, buf)
    }
}

impl io::Write for &Flow {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(Sink::write(*self, buf)?)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        Ok(Sink::write_vectored(*self, bufs)?)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl io::Write for Flow {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        io::Write::write(&mut &*self, buf)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        io::Write::write_vectored(&mut &*self, bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
