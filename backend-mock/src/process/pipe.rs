//! In-memory pipes between a mock process and its parent, with the
//! semantics of a Linux pipe:
//!
//! * It holds at most [`PIPE_CAPACITY`] bytes. A read returns as soon as
//!   at least one byte is there; `Ok(0)` once the writing end is closed
//!   and everything written has been read.
//! * A write of at most [`PIPE_BUF`] bytes is atomic (it waits for room
//!   for all of it); a longer one writes what fits, at least one byte.
//! * Writing after the reading end has closed fails with
//!   `Net(BrokenPipe)` (a mock program that gets it dies of `SIGPIPE`, see
//!   [`Programs`](super::Programs)).
//! * Every read and write is a cancellation point, even one that need not
//!   wait (so a signal stops a program that only writes). A cancelled read
//!   consumed nothing and a cancelled write wrote nothing: waiting is the
//!   mock network's `wait_until`, which only changes the pipe when the
//!   operation completes.
//!
//! Pipes outlive the run only in the parent's hands (a `Child` returned
//! from `main`); the process fiber always finishes inside the run (see
//! `weft_core::backend::DetachedFiber`), closing its ends. A wait that
//! could only end inside the run fails instead of blocking forever.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use weft_core::flow::{Sink, Source};
use weft_core::process::{PipeReaderImpl, PipeWriterImpl};
use weft_core::{Error, ErrorKind, NetError, Result};

use crate::net::wait::{lock, wait_until, Poll, WaitState, Waiters};

/// How many bytes a pipe holds (Linux's default).
pub const PIPE_CAPACITY: usize = 64 * 1024;

/// Writes up to this size are atomic (POSIX `PIPE_BUF` on Linux).
pub const PIPE_BUF: usize = 4096;

struct State {
    buf: VecDeque<u8>,
    reader_open: bool,
    writer_open: bool,
    readers: Waiters,
    writers: Waiters,
}

#[derive(Clone, Copy)]
enum Key {
    Readers,
    Writers,
}

impl WaitState for State {
    type Key = Key;

    fn waiters(&mut self, key: Key) -> Option<&mut Waiters> {
        Some(match key {
            Key::Readers => &mut self.readers,
            Key::Writers => &mut self.writers,
        })
    }
}

/// A new pipe: its reading and its writing end.
pub(crate) fn pipe() -> (PipeReader, PipeWriter) {
    let st = Arc::new(Mutex::new(State {
        buf: VecDeque::new(),
        reader_open: true,
        writer_open: true,
        readers: Waiters::default(),
        writers: Waiters::default(),
    }));
    (PipeReader { st: st.clone() }, PipeWriter { st })
}

/// The wait would outlive the mock world: nothing could ever end it.
fn after_the_run(what: &str) -> Error {
    Error::msg(
        ErrorKind::Closed,
        format!("{what} a mock pipe after the run has ended: nothing can take part any more"),
    )
}

/// The reading end of a pipe.
pub(crate) struct PipeReader {
    st: Arc<Mutex<State>>,
}

/// The writing end of a pipe.
pub(crate) struct PipeWriter {
    st: Arc<Mutex<State>>,
}

impl Source for PipeReader {
    fn read(&self, buf: &mut [u8]) -> Result<usize> {
        crate::fs::not_cancelled()?;
        if buf.is_empty() {
            return Ok(0);
        }
        wait_until(&self.st, "reading a mock pipe", |st| {
            if !st.buf.is_empty() {
                let n = buf.len().min(st.buf.len());
                for (dst, src) in buf.iter_mut().zip(st.buf.drain(..n)) {
                    *dst = src;
                }
                st.writers.wake_all();
                return Ok(Poll::Ready(n));
            }
            if !st.writer_open {
                return Ok(Poll::Ready(0));
            }
            if !weft_core::backend::in_runtime() {
                return Err(after_the_run("reading"));
            }
            Ok(Poll::Pending(Key::Readers))
        })
    }
}

impl Sink for PipeWriter {
    fn write(&self, data: &[u8]) -> Result<usize> {
        crate::fs::not_cancelled()?;
        if data.is_empty() {
            return Ok(0);
        }
        wait_until(&self.st, "writing a mock pipe", |st| {
            if !st.reader_open {
                return Err(Error::msg(
                    ErrorKind::Net(NetError::BrokenPipe),
                    "the reading end of the pipe is closed",
                ));
            }
            let room = PIPE_CAPACITY - st.buf.len();
            let fits = if data.len() <= PIPE_BUF {
                room >= data.len()
            } else {
                room > 0
            };
            if !fits {
                if !weft_core::backend::in_runtime() {
                    return Err(after_the_run("writing"));
                }
                return Ok(Poll::Pending(Key::Writers));
            }
            let n = data.len().min(room);
            st.buf.extend(&data[..n]);
            st.readers.wake_all();
            Ok(Poll::Ready(n))
        })
    }
}

impl Drop for PipeReader {
    fn drop(&mut self) {
        let mut st = lock(&self.st);
        st.reader_open = false;
        st.buf = VecDeque::new();
        st.readers.wake_all();
        st.writers.wake_all();
    }
}

impl Drop for PipeWriter {
    fn drop(&mut self) {
        let mut st = lock(&self.st);
        st.writer_open = false;
        st.readers.wake_all();
        st.writers.wake_all();
    }
}

impl PipeReaderImpl for PipeReader {
    fn close(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}

impl PipeWriterImpl for PipeWriter {
    fn close(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_in_order_then_end_of_stream() {
        crate::run(|_env| {
            let (r, w) = pipe();
            w.write_all(b"hello ")?;
            w.write_all(b"world")?;
            drop(w);
            assert_eq!(r.read_all()?, "hello world");
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn a_full_pipe_waits_and_small_writes_are_atomic() {
        crate::run(|_env| {
            let (r, w) = pipe();
            let big = vec![7u8; PIPE_CAPACITY - 10];
            assert_eq!(w.write(&big)?, big.len());
            // 100 bytes do not fit in 10 and are atomic: the writer waits
            // until a reader makes room, then writes them whole.
            let (n, got) = weft_core::fiber::pair(
                || w.write(&[1u8; 100]),
                || {
                    let mut buf = vec![0u8; 200];
                    r.read(&mut buf)
                },
            )?;
            assert_eq!((n, got), (100, 200));
            // A long write takes what fits.
            let n = w.write(&vec![2u8; PIPE_CAPACITY])?;
            assert_eq!(n, PIPE_CAPACITY - (PIPE_CAPACITY - 10 + 100 - 200));
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn a_cancelled_fiber_neither_reads_nor_writes() {
        crate::run(|_env| {
            let (r, w) = pipe();
            w.write_all(b"kept")?;
            let e = weft_core::cancel::sub(|scope| {
                scope.cancel(Error::msg(ErrorKind::InvalidInput, "stop"));
                let mut buf = [0u8; 4];
                r.read(&mut buf)?;
                w.write(b"lost")
            })
            .unwrap_err();
            assert!(e.is_cancelled());
            drop(w);
            assert_eq!(r.read_all()?, "kept");
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn writing_to_a_closed_reader_is_a_broken_pipe() {
        crate::run(|_env| {
            let (r, w) = pipe();
            w.write_all(b"buffered")?;
            drop(r);
            let err = w.write(b"x").unwrap_err();
            assert_eq!(err.kind(), &ErrorKind::Net(NetError::BrokenPipe));
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn after_the_run_a_wait_fails_instead_of_hanging() {
        let (r, w) = crate::run(|_env| Ok(pipe())).unwrap();
        let mut buf = [0u8; 4];
        let err = r.read(&mut buf).unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::Closed);
        w.write_all(b"late").unwrap();
        assert_eq!(r.read(&mut buf).unwrap(), 4, "bytes there are read");
        drop(w);
        assert_eq!(r.read(&mut buf).unwrap(), 0);
    }
}
