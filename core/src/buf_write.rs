//! Buffered writing: batch small writes into few large ones.
//!
//! Writing a response piece by piece straight to a socket sends many small
//! packets. [`with_flow`] gives a [`BufWriter`] instead: writes are copied
//! into a buffer, and a writer fiber sends everything collected so far, in
//! one vectored write, whenever the producer lets it run — that is, when the
//! producing fiber suspends (waits for IO, yields, or calls
//! [`flush`](BufWriter::flush)). A burst of writes between two suspensions
//! becomes one write on the flow. When the function given to `with_flow`
//! returns, everything is flushed before `with_flow` returns.
//!
//! ```
//! use weft::{buf_write, fiber, mock};
//!
//! let (result, trace) = mock::run_traced(|_env| {
//!     let socket = mock::Flow::new("socket");
//!     buf_write::with_flow(&socket, |w| {
//!         w.string("HTTP/1.1 200 OK\r\n")?;
//!         w.string("\r\n")?;
//!         fiber::yield_now()?; // the body is not ready yet
//!         w.string("Body data")
//!     })
//! });
//! result.unwrap();
//! assert_eq!(
//!     trace,
//!     [
//!         r#"socket: wrote "HTTP/1.1 200 OK\r\n""#,
//!         r#" "\r\n""#,
//!         r#"socket: wrote "Body data""#,
//!         "socket: closed",
//!     ]
//! );
//! ```
//!
//! Large payloads need not be copied:
//! [`schedule_bytes`](BufWriter::schedule_bytes) queues a [`Bytes`] as it is, and the flow
//! receives that very memory as one of the buffers of a vectored write.
//!
//! # Errors
//!
//! If the flow fails, the writer fiber fails, which cancels the producer
//! (as any failing fiber cancels its switch); `with_flow` returns the flow's
//! error. Writes and flushes made after the failure return `Cancelled`, with
//! the flow's error as the reason. Writing after [`close`](BufWriter::close)
//! is a `Closed` error.
//!
//! # Synchronous crates
//!
//! `BufWriter` (and `&BufWriter`) implements [`std::io::Write`], so
//! `write!` and synchronous serialisers write into it directly; `flush` on it
//! waits for the data to reach the flow.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io::{self, IoSlice};

use bytes::{Buf, BytesMut};
use smallvec::SmallVec;

pub use bytes::Bytes;

use crate::backend::{suspend, Resumer};
use crate::error::{Error, ErrorKind, Result};
use crate::flow::Sink;
use crate::switch::{ForkOptions, Switch};

/// The default size of the buffer collecting writes: 4 KiB.
pub const DEFAULT_INITIAL_SIZE: usize = 4096;

/// At most this many buffers go into one vectored write: `IOV_MAX` on
/// Linux and the BSDs, beyond which `writev`/`sendmsg` refuse the call.
const MAX_IOVECS: usize = 1024;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Open,
    Closed,
    Failed,
}

/// A buffered writer, made by [`with_flow`]. See the [module docs](self).
///
/// Methods take `&self`: the producer and the writer fiber share it.
pub struct BufWriter {
    /// Copied writes not yet handed to the writer fiber.
    buf: RefCell<BytesMut>,
    /// Buffers waiting to be written, in order.
    queue: RefCell<VecDeque<Bytes>>,
    /// Bytes accepted so far (buffered or queued or written).
    received: Cell<u64>,
    /// Bytes the flow has taken so far.
    written: Cell<u64>,
    state: Cell<State>,
    /// Why the writer fiber stopped, once it has failed.
    failure: RefCell<Option<Error>>,
    /// The writer fiber, while it waits for data.
    writer: Cell<Option<Resumer<()>>>,
    /// Fibers in `flush`, with the byte count they wait for.
    flushes: RefCell<VecDeque<(u64, Resumer<()>)>>,
}

impl std::fmt::Debug for BufWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufWriter")
            .field("state", &self.state.get())
            .field("pending_bytes", &self.pending_bytes())
            .finish()
    }
}

/// Runs `f` with a [`BufWriter`] that sends what it is given to `sink`,
/// flushes everything once `f` returns, and returns `f`'s value.
///
/// A writer fiber, running next to `f` in a switch of its own, does the
/// writing: whenever `f` suspends, it sends all the data collected so far
/// with one `write_vectored`. If `f` fails, what it had written is still
/// flushed before its error is returned. If the flow fails, `f` is
/// cancelled and the flow's error is returned.
///
/// Pass the sink by reference (`&socket`) to keep using it afterwards.
pub fn with_flow<S: Sink, T>(sink: S, f: impl FnOnce(&BufWriter) -> Result<T>) -> Result<T> {
    with_flow_capacity(sink, DEFAULT_INITIAL_SIZE, f)
}

/// Like [`with_flow`], with a buffer of `initial_size` bytes for collecting
/// writes (it grows for writes that do not fit).
pub fn with_flow_capacity<S: Sink, T>(
    sink: S,
    initial_size: usize,
    f: impl FnOnce(&BufWriter) -> Result<T>,
) -> Result<T> {
    let w = BufWriter::new(initial_size);
    let (w, sink) = (&w, &sink);
    Switch::run(|sw| {
        let opts = ForkOptions::new().name("buf_write writer");
        sw.fork_with(opts, move || w.run_writer(sink));
        let result = f(w);
        w.close();
        if result.is_err() {
            // Returning the error cancels the writer: flush first.
            let _ = w.flush();
        }
        result
    })
}

impl BufWriter {
    fn new(initial_size: usize) -> BufWriter {
        BufWriter {
            buf: RefCell::new(BytesMut::with_capacity(initial_size)),
            queue: RefCell::new(VecDeque::new()),
            received: Cell::new(0),
            written: Cell::new(0),
            state: Cell::new(State::Open),
            failure: RefCell::new(None),
            writer: Cell::new(None),
            flushes: RefCell::new(VecDeque::new()),
        }
    }

    #[inline]
    fn check_writable(&self) -> Result<()> {
        match self.state.get() {
            State::Open => Ok(()),
            State::Closed => Err(Error::msg(
                ErrorKind::Closed,
                "cannot write to a closed BufWriter",
            )),
            State::Failed => Err(self.failed_error()),
        }
    }

    fn failed_error(&self) -> Error {
        match &*self.failure.borrow() {
            Some(e) => Error::cancelled(e.clone()).context("the BufWriter's flow failed"),
            None => Error::msg(ErrorKind::Closed, "the BufWriter's flow failed"),
        }
    }

    /// Lets the writer fiber run, if it is waiting for data.
    #[inline]
    fn wake_writer(&self) {
        if let Some(r) = self.writer.take() {
            let _ = r.resume(());
        }
    }

    /// Copies `data` into the buffer.
    #[inline]
    pub fn bytes(&self, data: &[u8]) -> Result<()> {
        self.check_writable()?;
        if data.is_empty() {
            return Ok(());
        }
        self.buf.borrow_mut().extend_from_slice(data);
        self.received.set(self.received.get() + data.len() as u64);
        self.wake_writer();
        Ok(())
    }

    /// Copies `s` into the buffer.
    #[inline]
    pub fn string(&self, s: &str) -> Result<()> {
        self.bytes(s.as_bytes())
    }

    /// Writes `c` in UTF-8.
    pub fn char(&self, c: char) -> Result<()> {
        self.bytes(c.encode_utf8(&mut [0; 4]).as_bytes())
    }

    /// Queues `data` to be written without copying it: the flow gets this
    /// very memory. Data written before it is sent before it.
    pub fn schedule_bytes(&self, data: Bytes) -> Result<()> {
        self.check_writable()?;
        if data.is_empty() {
            return Ok(());
        }
        self.schedule_pending();
        self.received.set(self.received.get() + data.len() as u64);
        self.queue.borrow_mut().push_back(data);
        self.wake_writer();
        Ok(())
    }

    /// Moves the buffered bytes to the queue, as one buffer (no copy).
    fn schedule_pending(&self) {
        let mut buf = self.buf.borrow_mut();
        if !buf.is_empty() {
            let chunk = buf.split().freeze();
            self.queue.borrow_mut().push_back(chunk);
        }
    }

    /// Bytes written to this writer that the flow has not taken yet.
    pub fn pending_bytes(&self) -> u64 {
        self.received.get() - self.written.get()
    }

    /// Whether [`close`](BufWriter::close) has been called (or the flow
    /// failed).
    pub fn is_closed(&self) -> bool {
        self.state.get() != State::Open
    }

    /// Waits until everything written so far has been taken by the flow.
    /// Returns at once if nothing is pending.
    pub fn flush(&self) -> Result<()> {
        self.schedule_pending();
        let target = self.received.get();
        if self.written.get() >= target {
            return Ok(());
        }
        if self.state.get() == State::Failed {
            return Err(self.failed_error());
        }
        self.wake_writer();
        suspend("BufWriter flush", |r| {
            self.flushes.borrow_mut().push_back((target, r));
        })
    }

    /// Closes the writer: later writes fail with `Closed`. What was written
    /// before is still sent. Does not wait (see [`flush`](BufWriter::flush)).
    pub fn close(&self) {
        if self.state.get() == State::Open {
            self.state.set(State::Closed);
        }
        self.schedule_pending();
        self.wake_writer();
    }

    /// The writer fiber: sends batches until closed and drained.
    fn run_writer<S: Sink + ?Sized>(&self, sink: &S) -> Result<()> {
        let r = self.write_loop(sink);
        if let Err(e) = &r {
            self.fail(e.clone());
        }
        r
    }

    fn write_loop<S: Sink + ?Sized>(&self, sink: &S) -> Result<()> {
        let mut batch: Vec<Bytes> = Vec::with_capacity(MAX_IOVECS);
        loop {
            if !self.await_batch(&mut batch)? {
                return Ok(());
            }
            let n = {
                let slices: SmallVec<[IoSlice<'_>; 16]> =
                    batch.iter().map(|b| IoSlice::new(b)).collect();
                sink.write_vectored(&slices)?
            };
            if n == 0 {
                return Err(Error::msg(ErrorKind::Closed, "sink accepted no bytes"));
            }
            self.shift(&mut batch, n);
        }
    }

    /// Waits for data and moves a batch of it from the queue into `batch`;
    /// `false` once the writer is closed and everything has been written.
    fn await_batch(&self, batch: &mut Vec<Bytes>) -> Result<bool> {
        loop {
            self.schedule_pending();
            {
                let mut queue = self.queue.borrow_mut();
                if !queue.is_empty() {
                    let n = queue.len().min(MAX_IOVECS);
                    batch.extend(queue.drain(..n));
                    return Ok(true);
                }
            }
            if self.state.get() != State::Open {
                return Ok(false);
            }
            suspend("BufWriter: waiting for data", |r| self.writer.set(Some(r)))?;
        }
    }

    /// Records that the flow took `n` bytes of `batch`; puts back what it
    /// did not take and wakes the flushes that are now complete.
    fn shift(&self, batch: &mut Vec<Bytes>, mut n: usize) {
        let total = n;
        let mut keep = batch.len();
        for (i, b) in batch.iter_mut().enumerate() {
            if n >= b.len() {
                n -= b.len();
            } else {
                b.advance(n);
                n = 0;
                keep = i;
                break;
            }
        }
        debug_assert_eq!(n, 0, "the flow reported more bytes than it was given");
        {
            let mut queue = self.queue.borrow_mut();
            for b in batch.drain(keep..).rev() {
                queue.push_front(b);
            }
        }
        batch.clear();
        let written = self.written.get() + total as u64;
        self.written.set(written);
        let mut flushes = self.flushes.borrow_mut();
        while flushes
            .front()
            .is_some_and(|(target, _)| *target <= written)
        {
            if let Some((_, r)) = flushes.pop_front() {
                let _ = r.resume(());
            }
        }
    }

    /// The writer fiber has stopped with `error`: fail everyone waiting.
    fn fail(&self, error: Error) {
        self.state.set(State::Failed);
        *self.failure.borrow_mut() = Some(error);
        let waiting = std::mem::take(&mut *self.flushes.borrow_mut());
        for (_, r) in waiting {
            let _ = r.fail(self.failed_error());
        }
    }
}

macro_rules! int_writers {
    ($($(#[$doc:meta])* $name:ident($t:ty) = $to:ident;)*) => {
        impl BufWriter {
            $(
                $(#[$doc])*
                #[inline]
                pub fn $name(&self, v: $t) -> Result<()> {
                    self.bytes(&v.$to())
                }
            )*
        }
    };
}

int_writers! {
    /// Writes one byte.
    write_u8(u8) = to_be_bytes;
    /// Writes one signed byte.
    write_i8(i8) = to_be_bytes;
    /// Writes a big-endian `u16`.
    write_u16_be(u16) = to_be_bytes;
    /// Writes a little-endian `u16`.
    write_u16_le(u16) = to_le_bytes;
    /// Writes a big-endian `i16`.
    write_i16_be(i16) = to_be_bytes;
    /// Writes a little-endian `i16`.
    write_i16_le(i16) = to_le_bytes;
    /// Writes a big-endian `u32`.
    write_u32_be(u32) = to_be_bytes;
    /// Writes a little-endian `u32`.
    write_u32_le(u32) = to_le_bytes;
    /// Writes a big-endian `i32`.
    write_i32_be(i32) = to_be_bytes;
    /// Writes a little-endian `i32`.
    write_i32_le(i32) = to_le_bytes;
    /// Writes a big-endian `u64`.
    write_u64_be(u64) = to_be_bytes;
    /// Writes a little-endian `u64`.
    write_u64_le(u64) = to_le_bytes;
    /// Writes a big-endian `i64`.
    write_i64_be(i64) = to_be_bytes;
    /// Writes a little-endian `i64`.
    write_i64_le(i64) = to_le_bytes;
    /// Writes a big-endian IEEE 754 `f32`.
    write_f32_be(f32) = to_be_bytes;
    /// Writes a little-endian IEEE 754 `f32`.
    write_f32_le(f32) = to_le_bytes;
    /// Writes a big-endian IEEE 754 `f64`.
    write_f64_be(f64) = to_be_bytes;
    /// Writes a little-endian IEEE 754 `f64`.
    write_f64_le(f64) = to_le_bytes;
}

/// Copies into the buffer; `flush` waits until the flow has taken
/// everything.
impl io::Write for &BufWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.bytes(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        Ok(self.bytes(buf)?)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(BufWriter::flush(self)?)
    }
}

/// Same as for `&BufWriter`.
impl io::Write for BufWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        (&*self).write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        io::Write::flush(&mut &*self)
    }
}
