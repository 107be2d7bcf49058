//! Connected stream sockets: a pair of bounded in-memory byte pipes.
//!
//! A connection is one [`Conn`] behind its own `std::sync::Mutex`, shared by
//! its two ends. `pipes[i]` carries the bytes that end `i` reads, so end `i`
//! writes into `pipes[1 - i]`. Each pipe holds at most its capacity (64 KiB
//! by default): a writer waits while it is full, a reader while it is empty.
//!
//! Semantics, those of a loopback TCP or Unix stream socket:
//!
//! * `read` returns as soon as at least one byte is there (partial reads);
//!   `Ok(0)` is end of stream: the peer shut down writing or closed, and
//!   every byte it wrote before has been read.
//! * `write` and `write_vectored` put as many bytes as fit into the pipe, at
//!   least one, waiting for room when it is full, and return the count
//!   (partial writes; `write_all` loops).
//! * **Cancellation.** A cancelled `read` consumed nothing: the bytes stay
//!   for the next read. A cancelled `write` wrote nothing: bytes only enter
//!   the pipe in a write that returns their count. (A cancelled `write_all`
//!   may have written a prefix in its earlier, completed `write`s, as on a
//!   real socket.)
//! * `shutdown(Write)`: the peer reads the buffered bytes, then end of
//!   stream; our later writes fail with `Net(BrokenPipe)`.
//! * `shutdown(Read)`: our reads return end of stream at once, buffered bytes
//!   are discarded, and the peer's writes fail with `Net(BrokenPipe)` (as
//!   with Unix sockets).
//! * Dropping or closing an end does both: the peer reads end of stream
//!   after what was buffered, and its writes fail with `Net(BrokenPipe)`.
//!
//! ```
//! use weft::flow::{Shutdown, ShutdownKind, Sink, Source};
//! use weft::{ErrorKind, NetError};
//!
//! weft::mock::run(|env| {
//!     let (a, b) = env.net().socketpair()?;
//!     a.write_all(b"request")?;
//!     a.shutdown(ShutdownKind::Write)?;
//!     assert_eq!(b.read_all()?, "request", "the bytes, then end of stream");
//!     b.write_all(b"response")?;
//!     drop(b);
//!     assert_eq!(a.read_all()?, "response");
//!     let err = a.write(b"more").unwrap_err();
//!     assert_eq!(err.kind(), &ErrorKind::Net(NetError::BrokenPipe));
//!     Ok(())
//! })
//! .unwrap();
//! ```

use std::collections::VecDeque;
use std::io;
use std::ops::Deref;
use std::sync::{Arc, Mutex};

use weft_core::flow::{Shutdown, ShutdownKind, Sink, Source};
use weft_core::net::{Addr, StreamImpl};
use weft_core::{NetError, Result};

use super::table::{net_err, Proto, Table};
use super::wait::{lock, wait_until, Poll, WaitState, Waiters};

/// One direction of a connection.
#[derive(Debug)]
struct Pipe {
    buf: VecDeque<u8>,
    capacity: usize,
    /// The writing end shut down writing or closed: once `buf` is empty the
    /// reader sees end of stream, and further writes fail.
    write_closed: bool,
    /// The reading end shut down reading or closed: `buf` is discarded and
    /// writes fail with `BrokenPipe`.
    read_closed: bool,
    readers: Waiters,
    writers: Waiters,
}

impl Pipe {
    fn new(capacity: usize) -> Pipe {
        Pipe {
            buf: VecDeque::new(),
            capacity: capacity.max(1),
            write_closed: false,
            read_closed: false,
            readers: Waiters::default(),
            writers: Waiters::default(),
        }
    }

    fn close_read(&mut self) {
        self.read_closed = true;
        self.buf = VecDeque::new();
        self.readers.wake_all();
        self.writers.wake_all();
    }

    fn close_write(&mut self) {
        self.write_closed = true;
        self.readers.wake_all();
        self.writers.wake_all();
    }
}

/// Which waiter list of a [`Conn`]: a pipe, and its readers or writers.
#[derive(Clone, Copy, Debug)]
pub(crate) enum ConnKey {
    Readers(usize),
    Writers(usize),
}

/// Both directions of one connection.
#[derive(Debug)]
pub(crate) struct Conn {
    pipes: [Pipe; 2],
}

impl WaitState for Conn {
    type Key = ConnKey;

    fn waiters(&mut self, key: ConnKey) -> Option<&mut Waiters> {
        Some(match key {
            ConnKey::Readers(i) => &mut self.pipes[i].readers,
            ConnKey::Writers(i) => &mut self.pipes[i].writers,
        })
    }
}

/// Everything that makes one end of a connection, before it is wrapped in a
/// [`MemStream`] (a server end waits in its listener's accept queue as this).
#[derive(Debug)]
pub(crate) struct EndParts {
    conn: Arc<Mutex<Conn>>,
    /// Which end: reads `pipes[side]`, writes `pipes[1 - side]`.
    side: usize,
    /// Key in [`Table::streams`].
    id: u64,
    pub(crate) local: Addr,
    pub(crate) peer: Addr,
    /// The ephemeral port this end holds (client ends of IP connections).
    owned_port: Option<u16>,
}

impl EndParts {
    /// Shuts down both directions of this end (what closing it does to the
    /// connection). Takes the connection's lock: never call it while
    /// holding the table's.
    pub(crate) fn close_conn(&self) {
        let mut c = lock(&self.conn);
        let side = self.side;
        c.pipes[side].close_read();
        c.pipes[1 - side].close_write();
    }

    /// Removes this end from the table (and frees its port).
    pub(crate) fn unregister(&self, t: &mut Table) {
        t.streams.remove(&self.id);
        if let Some(p) = self.owned_port {
            t.ports.release(Proto::Tcp, p);
        }
    }
}

/// Creates a connection and registers both ends in `t`: end 0 (the client)
/// at `a_local`, end 1 (the server) at `b_local`. `a_port` is the ephemeral
/// port end 0 holds, if any.
pub(crate) fn connect_pair(
    t: &mut Table,
    a_local: Addr,
    b_local: Addr,
    a_port: Option<u16>,
) -> (EndParts, EndParts) {
    let conn = Arc::new(Mutex::new(Conn {
        pipes: [Pipe::new(t.pipe_capacity), Pipe::new(t.pipe_capacity)],
    }));
    let (ia, ib) = (t.id(), t.id());
    t.streams.insert(ia, (a_local.clone(), b_local.clone()));
    t.streams.insert(ib, (b_local.clone(), a_local.clone()));
    let a = EndParts {
        conn: conn.clone(),
        side: 0,
        id: ia,
        local: a_local.clone(),
        peer: b_local.clone(),
        owned_port: a_port,
    };
    let b = EndParts {
        conn,
        side: 1,
        id: ib,
        local: b_local,
        peer: a_local,
        owned_port: None,
    };
    (a, b)
}

/// One end of an in-memory connection. See the [module docs](self).
pub(crate) struct MemStream {
    net: Arc<Mutex<Table>>,
    parts: EndParts,
}

impl MemStream {
    pub(crate) fn new(net: Arc<Mutex<Table>>, parts: EndParts) -> MemStream {
        MemStream { net, parts }
    }

    /// Writes as much of `bufs` as fits, at least one byte, waiting for room.
    fn send<B: Deref<Target = [u8]>>(&self, bufs: &[B]) -> Result<usize> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total == 0 {
            return Ok(0);
        }
        let out = 1 - self.parts.side;
        wait_until(&self.parts.conn, "net write", |c| {
            let p = &mut c.pipes[out];
            if p.write_closed {
                return Err(net_err(
                    NetError::BrokenPipe,
                    "writing to a stream shut down for writing",
                ));
            }
            if p.read_closed {
                return Err(net_err(
                    NetError::BrokenPipe,
                    "writing to a stream whose peer closed it",
                ));
            }
            let room = p.capacity.saturating_sub(p.buf.len());
            if room == 0 {
                return Ok(Poll::Pending(ConnKey::Writers(out)));
            }
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(room - n);
                p.buf.extend(&b[..take]);
                n += take;
                if n == room {
                    break;
                }
            }
            p.readers.wake_all();
            Ok(Poll::Ready(n))
        })
    }
}

impl std::fmt::Debug for MemStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemStream")
            .field("local", &self.parts.local)
            .field("peer", &self.parts.peer)
            .finish()
    }
}

impl Source for MemStream {
    fn read(&self, buf: &mut [u8]) -> Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let side = self.parts.side;
        wait_until(&self.parts.conn, "net read", |c| {
            let p = &mut c.pipes[side];
            if p.read_closed {
                return Ok(Poll::Ready(0));
            }
            if p.buf.is_empty() {
                return Ok(if p.write_closed {
                    Poll::Ready(0)
                } else {
                    Poll::Pending(ConnKey::Readers(side))
                });
            }
            let n = buf.len().min(p.buf.len());
            for (dst, src) in buf.iter_mut().zip(p.buf.drain(..n)) {
                *dst = src;
            }
            p.writers.wake_all();
            Ok(Poll::Ready(n))
        })
    }

    /// As `read`, filling the buffers in order with what is there (as
    /// `readv` on a socket does).
    fn read_vectored(&self, bufs: &mut [io::IoSliceMut<'_>]) -> Result<usize> {
        weft_core::flow::read_vectored_scattered(bufs, usize::MAX, |buf| self.read(buf))
    }
}

impl Sink for MemStream {
    fn write(&self, buf: &[u8]) -> Result<usize> {
        self.send(&[buf])
    }

    fn write_vectored(&self, bufs: &[io::IoSlice<'_>]) -> Result<usize> {
        self.send(bufs)
    }
}

impl Shutdown for MemStream {
    fn shutdown(&self, how: ShutdownKind) -> Result<()> {
        let side = self.parts.side;
        let mut c = lock(&self.parts.conn);
        if matches!(how, ShutdownKind::Read | ShutdownKind::Both) {
            c.pipes[side].close_read();
        }
        if matches!(how, ShutdownKind::Write | ShutdownKind::Both) {
            c.pipes[1 - side].close_write();
        }
        Ok(())
    }
}

impl StreamImpl for MemStream {
    fn local_addr(&self) -> Result<Addr> {
        Ok(self.parts.local.clone())
    }

    fn peer_addr(&self) -> Result<Addr> {
        Ok(self.parts.peer.clone())
    }

    fn set_nodelay(&self, _on: bool) -> Result<()> {
        // Nothing is ever delayed in memory.
        Ok(())
    }

    fn close(self: Box<Self>) -> Result<()> {
        drop(self);
        Ok(())
    }
}

impl Drop for MemStream {
    fn drop(&mut self) {
        self.parts.close_conn();
        self.parts.unregister(&mut lock(&self.net));
    }
}

/// A connected pair with no addresses (`socketpair(2)`).
pub(crate) fn socketpair(net: &Arc<Mutex<Table>>) -> (MemStream, MemStream) {
    let unnamed = || Addr::Unix(Default::default());
    let (a, b) = connect_pair(&mut lock(net), unnamed(), unnamed(), None);
    (
        MemStream::new(net.clone(), a),
        MemStream::new(net.clone(), b),
    )
}
