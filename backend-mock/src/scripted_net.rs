//! A scripted network, in the manner of `Eio_mock.Net`.
//!
//! Each call (`connect`, `listen`, `getaddrinfo`, `accept`) is traced and
//! answered by the next scripted [`Action`]. Use it to test a client or a
//! server without any network at all:
//!
//! ```
//! use weft::flow::Source;
//! use weft::mock::{self, Action, Flow};
//!
//! let (r, trace) = mock::run_traced(|_env| {
//!     let net = mock::Net::new("mocknet");
//!     let flow = Flow::new("flow");
//!     flow.on_read([Action::ret("(packet 1)"), Action::yield_then(Action::ret("(packet 2)"))]);
//!     net.on_connect([Action::Return(flow.into())]);
//!     let conn = net.net().connect(&"127.0.0.1:8080".parse()?)?;
//!     weft::traceln!("Client: received {:?}", conn.read_all()?);
//!     Ok(())
//! });
//! r.unwrap();
//! assert_eq!(trace, [
//!     "mocknet: connect to tcp:127.0.0.1:8080",
//!     "flow: read \"(packet 1)\"",
//!     "flow: read \"(packet 2)\"",
//!     "Client: received \"(packet 1)(packet 2)\"",
//!     "flow: closed",
//! ]);
//! ```

use std::rc::Rc;
use std::thread::ThreadId;

use weft_core::flow::{Shutdown, ShutdownKind, Sink, Source};
use weft_core::net::{Addr, DatagramImpl, ListenOptions, ListenerImpl, NetBackend, StreamImpl};
use weft_core::{traceln, Error, ErrorKind, Result};

use crate::{Action, Flow, Handler};

/// A mock flow as a connection: a shared [`Flow`] that is closed (and
/// traced `closed`) when the connection is dropped or closed.
#[derive(Clone)]
pub struct Conn(Rc<Flow>);

impl From<Flow> for Conn {
    fn from(f: Flow) -> Conn {
        Conn(Rc::new(f))
    }
}

impl From<Rc<Flow>> for Conn {
    fn from(f: Rc<Flow>) -> Conn {
        Conn(f)
    }
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Conn({})", self.0.label())
    }
}

struct ConnStream {
    flow: Rc<Flow>,
    local: Addr,
    peer: Addr,
}

impl Drop for ConnStream {
    fn drop(&mut self) {
        self.flow.close();
    }
}

impl Source for ConnStream {
    fn read(&self, buf: &mut [u8]) -> Result<usize> {
        self.flow.read(buf)
    }
}

impl Sink for ConnStream {
    fn write(&self, buf: &[u8]) -> Result<usize> {
        self.flow.write(buf)
    }
    fn write_vectored(&self, bufs: &[std::io::IoSlice<'_>]) -> Result<usize> {
        self.flow.write_vectored(bufs)
    }
    fn copy_from(&self, src: &dyn Source) -> Result<u64> {
        self.flow.copy_from(src)
    }
}

impl Shutdown for ConnStream {
    fn shutdown(&self, how: ShutdownKind) -> Result<()> {
        self.flow.shutdown(how)
    }
}

impl StreamImpl for ConnStream {
    fn local_addr(&self) -> Result<Addr> {
        Ok(self.local.clone())
    }
    fn peer_addr(&self) -> Result<Addr> {
        Ok(self.peer.clone())
    }
    fn set_nodelay(&self, _on: bool) -> Result<()> {
        Ok(())
    }
    fn close(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}

/// A scripted listening socket (Eio_mock.Net.listening_socket).
#[derive(Clone)]
pub struct ListeningSocket {
    inner: Rc<ListenInner>,
}

struct ListenInner {
    label: String,
    on_accept: Handler<(Conn, Addr)>,
    addr: std::cell::RefCell<Option<Addr>>,
}

impl std::fmt::Debug for ListeningSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ListeningSocket({})", self.inner.label)
    }
}

impl ListeningSocket {
    /// A listening socket whose accepts fail until scripted.
    pub fn new(label: impl Into<String>) -> ListeningSocket {
        ListeningSocket {
            inner: Rc::new(ListenInner {
                label: label.into(),
                on_accept: Handler::new(Action::Error(Error::msg(
                    ErrorKind::InvalidInput,
                    "mock listening socket: no more accepts scripted",
                ))),
                addr: std::cell::RefCell::new(None),
            }),
        }
    }

    /// Scripts the next accepts: each returns a connection and the peer.
    pub fn on_accept(&self, actions: impl IntoIterator<Item = Action<(Conn, Addr)>>) {
        self.inner.on_accept.seq(actions);
    }
}

impl ListenerImpl for ListeningSocket {
    fn accept(&self) -> Result<(Box<dyn StreamImpl>, Addr)> {
        let (conn, peer) = self.inner.on_accept.run()?;
        traceln!("{}: accepted connection from {peer}", self.inner.label);
        let local = self.local_addr()?;
        Ok((
            Box::new(ConnStream {
                flow: conn.0,
                local,
                peer: peer.clone(),
            }),
            peer,
        ))
    }

    fn local_addr(&self) -> Result<Addr> {
        Ok(self
            .inner
            .addr
            .borrow()
            .clone()
            .unwrap_or_else(|| "127.0.0.1:0".parse().expect("valid address")))
    }
}

struct Inner {
    label: String,
    on_connect: Handler<Conn>,
    on_listen: Handler<ListeningSocket>,
    on_getaddrinfo: Handler<Vec<Addr>>,
}

/// A scripted network (Eio_mock.Net). Get the capability with
/// [`net`](Net::net).
#[derive(Clone)]
pub struct Net {
    inner: Rc<Inner>,
}

impl std::fmt::Debug for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "mock::Net({})", self.inner.label)
    }
}

impl Net {
    /// A new scripted network; `label` starts its trace lines. Every call
    /// fails until scripted.
    pub fn new(label: impl Into<String>) -> Net {
        let label = label.into();
        let unscripted = |what: &str| {
            Error::msg(
                ErrorKind::InvalidInput,
                format!("mock net {label:?}: no {what} scripted"),
            )
        };
        Net {
            inner: Rc::new(Inner {
                on_connect: Handler::new(Action::Error(unscripted("connect"))),
                on_listen: Handler::new(Action::Error(unscripted("listen"))),
                on_getaddrinfo: Handler::new(Action::Error(unscripted("getaddrinfo"))),
                label,
            }),
        }
    }

    /// Scripts the next connects.
    pub fn on_connect(&self, actions: impl IntoIterator<Item = Action<Conn>>) {
        self.inner.on_connect.seq(actions);
    }

    /// Scripts the next listens.
    pub fn on_listen(&self, actions: impl IntoIterator<Item = Action<ListeningSocket>>) {
        self.inner.on_listen.seq(actions);
    }

    /// Scripts the next name lookups.
    pub fn on_getaddrinfo(&self, actions: impl IntoIterator<Item = Action<Vec<Addr>>>) {
        self.inner.on_getaddrinfo.seq(actions);
    }

    /// The network capability backed by this script. It may only be used
    /// on the thread that made it (using it elsewhere is an error).
    pub fn net(&self) -> weft_core::net::Net {
        weft_core::net::Net::new(std::sync::Arc::new(ThreadBound {
            owner: std::thread::current().id(),
            net: std::mem::ManuallyDrop::new(self.clone()),
        }))
    }
}

/// Makes the single-threaded scripted net usable where a `Send + Sync`
/// backend is required, by refusing every use from another thread.
struct ThreadBound {
    owner: ThreadId,
    net: std::mem::ManuallyDrop<Net>,
}

// SAFETY: the only field that is not Send/Sync is `net` (Rc-based). It is
// touched only after `check` has confirmed the current thread is `owner`,
// and Drop releases it only on `owner` (elsewhere it is leaked), so the
// Rc counts are never touched from two threads.
unsafe impl Send for ThreadBound {}
// SAFETY: as above: every access goes through `check`.
unsafe impl Sync for ThreadBound {}

impl Drop for ThreadBound {
    fn drop(&mut self) {
        if std::thread::current().id() == self.owner {
            // SAFETY: on the owner thread, and `net` is never used again.
            unsafe { std::mem::ManuallyDrop::drop(&mut self.net) };
        }
    }
}

impl ThreadBound {
    fn check(&self) -> Result<&Net> {
        if std::thread::current().id() != self.owner {
            return Err(Error::msg(
                ErrorKind::InvalidInput,
                "a scripted mock net was used from another thread",
            ));
        }
        Ok(&self.net)
    }
}

impl NetBackend for ThreadBound {
    fn listen(&self, addr: &Addr, _opts: &ListenOptions) -> Result<Box<dyn ListenerImpl>> {
        let net = self.check()?;
        traceln!("{}: listen on {addr}", net.inner.label);
        let sock = net.inner.on_listen.run()?;
        *sock.inner.addr.borrow_mut() = Some(addr.clone());
        Ok(Box::new(sock))
    }

    fn connect(&self, addr: &Addr) -> Result<Box<dyn StreamImpl>> {
        let net = self.check()?;
        traceln!("{}: connect to {addr}", net.inner.label);
        let conn = net.inner.on_connect.run()?;
        Ok(Box::new(ConnStream {
            flow: conn.0,
            local: "127.0.0.1:0".parse().expect("valid address"),
            peer: addr.clone(),
        }))
    }

    fn getaddrinfo(&self, host: &str, service: &str) -> Result<Vec<Addr>> {
        let net = self.check()?;
        traceln!("{}: getaddrinfo ~service:{service} {host}", net.inner.label);
        net.inner.on_getaddrinfo.run()
    }

    fn bind_datagram(&self, addr: &Addr) -> Result<Box<dyn DatagramImpl>> {
        let net = self.check()?;
        Err(Error::msg(
            ErrorKind::InvalidInput,
            format!(
                "mock net {:?}: datagram sockets are not scripted ({addr})",
                net.inner.label
            ),
        ))
    }

    fn socketpair(&self) -> Result<(Box<dyn StreamImpl>, Box<dyn StreamImpl>)> {
        let net = self.check()?;
        Err(Error::msg(
            ErrorKind::InvalidInput,
            format!(
                "mock net {:?}: socket pairs are not scripted",
                net.inner.label
            ),
        ))
    }
}
