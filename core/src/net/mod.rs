//! Networking: the [`Net`] capability, addresses, listeners and streams.
//!
//! A function that is given a `Net` can listen and connect; one that is
//! given only a [`Listener`] can accept on that one socket and nothing
//! more. Streams are flows ([`Source`] + [`Sink`] + [`Shutdown`]) and also
//! `std::io::Read`/`Write`, and are closed when dropped.
//!
//! Backends implement [`NetBackend`] (and the `*Impl` traits); so can
//! tests, to script a network.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use crate::error::{Error, ErrorKind, NetError, Result};

mod server;
use crate::flow::{Backing, Shutdown, ShutdownKind, Sink, Source};
pub use server::{run_server, ServerOptions};

/// A network address: an IP socket address or a Unix-domain path.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Addr {
    /// TCP or UDP over IPv4/IPv6.
    Ip(std::net::SocketAddr),
    /// A Unix-domain socket path.
    Unix(PathBuf),
}

impl Addr {
    /// The plain IP socket address, as `std::net` uses it (and as it prints:
    /// `127.0.0.1:8080`, `[::1]:80`, without the `tcp:` of `Addr`'s own
    /// `Display`); `None` for a Unix-domain address. To fail instead, use
    /// `SocketAddr::try_from(&addr)`.
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use weft::net::Addr;
    ///
    /// let addr: Addr = "tcp:127.0.0.1:8080".parse()?;
    /// assert_eq!(addr.to_string(), "tcp:127.0.0.1:8080");
    /// let ip = addr.socket_addr().unwrap();
    /// assert_eq!(ip.to_string(), "127.0.0.1:8080");
    /// assert_eq!(format!("http://{ip}/"), "http://127.0.0.1:8080/");
    /// assert_eq!(ip, SocketAddr::try_from(&addr)?);
    ///
    /// let unix: Addr = "unix:/run/app.sock".parse()?;
    /// assert_eq!(unix.socket_addr(), None);
    /// let err = SocketAddr::try_from(&unix).unwrap_err();
    /// assert_eq!(err.to_string(), "net: invalid address, unix:/run/app.sock is not an IP address");
    /// # Ok::<(), weft::Error>(())
    /// ```
    pub fn socket_addr(&self) -> Option<std::net::SocketAddr> {
        match self {
            Addr::Ip(a) => Some(*a),
            Addr::Unix(_) => None,
        }
    }

    /// The port of an IP address; `None` for a Unix-domain address.
    ///
    /// ```
    /// let addr: weft::net::Addr = "[::1]:443".parse()?;
    /// assert_eq!(addr.port(), Some(443));
    /// # Ok::<(), weft::Error>(())
    /// ```
    pub fn port(&self) -> Option<u16> {
        self.socket_addr().map(|a| a.port())
    }
}

/// The IP socket address; an `InvalidAddress` error for a Unix-domain
/// address. See [`Addr::socket_addr`].
impl TryFrom<&Addr> for std::net::SocketAddr {
    type Error = Error;

    fn try_from(addr: &Addr) -> Result<std::net::SocketAddr> {
        addr.socket_addr().ok_or_else(|| {
            Error::msg(
                ErrorKind::Net(NetError::InvalidAddress),
                format!("{addr} is not an IP address"),
            )
        })
    }
}

/// The IP socket address; see [`Addr::socket_addr`].
impl TryFrom<Addr> for std::net::SocketAddr {
    type Error = Error;

    fn try_from(addr: Addr) -> Result<std::net::SocketAddr> {
        std::net::SocketAddr::try_from(&addr)
    }
}

impl fmt::Display for Addr {
    /// `tcp:127.0.0.1:8080`, `tcp:[::1]:80`, `unix:/run/app.sock`. IP
    /// addresses print as `tcp:` whatever the socket type (a datagram
    /// socket's too); [`Addr::socket_addr`] gives the bare `IP:PORT`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Ip(a) => write!(f, "tcp:{a}"),
            Addr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

impl From<std::net::SocketAddr> for Addr {
    fn from(a: std::net::SocketAddr) -> Addr {
        Addr::Ip(a)
    }
}

impl FromStr for Addr {
    type Err = Error;

    /// Parses `127.0.0.1:80`, `[::1]:80`, `tcp:127.0.0.1:80` or
    /// `unix:/path`. Host names are not resolved here (see
    /// [`Net::getaddrinfo`]).
    fn from_str(s: &str) -> Result<Addr> {
        let bad = |why: &str| {
            Error::msg(
                ErrorKind::Net(NetError::InvalidAddress),
                format!("{why}: {s:?}"),
            )
            .context("parsing a network address")
        };
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(bad("empty Unix socket path"));
            }
            if path.as_bytes().contains(&0) {
                return Err(bad("Unix socket path contains a NUL byte"));
            }
            return Ok(Addr::Unix(PathBuf::from(path)));
        }
        let ip = s
            .strip_prefix("tcp:")
            .or_else(|| s.strip_prefix("udp:"))
            .unwrap_or(s);
        ip.parse::<std::net::SocketAddr>()
            .map(Addr::Ip)
            .map_err(|_| bad("expected IP:PORT, [IPv6]:PORT or unix:PATH"))
    }
}

/// Options for [`Net::listen`].
#[derive(Clone, Debug)]
pub struct ListenOptions {
    /// The `listen(2)` backlog.
    pub backlog: u32,
    /// `SO_REUSEADDR`.
    pub reuse_addr: bool,
    /// `SO_REUSEPORT`.
    pub reuse_port: bool,
}

impl Default for ListenOptions {
    fn default() -> Self {
        ListenOptions {
            backlog: 128,
            reuse_addr: true,
            reuse_port: false,
        }
    }
}

/// What a backend provides for a connected stream socket.
pub trait StreamImpl: Source + Sink + Shutdown {
    /// The local address.
    fn local_addr(&self) -> Result<Addr>;
    /// The peer's address.
    fn peer_addr(&self) -> Result<Addr>;
    /// `TCP_NODELAY` (a no-op for Unix sockets).
    fn set_nodelay(&self, on: bool) -> Result<()>;
    /// Closes the socket, reporting errors that `Drop` would ignore.
    fn close(self: Box<Self>) -> Result<()>;
}

/// What a backend provides for a listening socket.
pub trait ListenerImpl {
    /// Waits for a connection.
    fn accept(&self) -> Result<(Box<dyn StreamImpl>, Addr)>;
    /// The address bound (with the real port when 0 was asked for).
    fn local_addr(&self) -> Result<Addr>;
}

/// What a backend provides for a datagram socket (UDP or Unix datagram).
pub trait DatagramImpl {
    /// Sends one datagram to `addr`.
    fn send_to(&self, buf: &[u8], addr: &Addr) -> Result<usize>;
    /// Waits for one datagram; returns its length (truncated to `buf`) and
    /// sender.
    fn recv_from(&self, buf: &mut [u8]) -> Result<(usize, Addr)>;
    /// The bound address.
    fn local_addr(&self) -> Result<Addr>;
}

/// What a backend provides for the network capability.
pub trait NetBackend: Send + Sync + 'static {
    /// Binds a datagram socket (UDP for IP addresses, `SOCK_DGRAM` for Unix
    /// paths).
    fn bind_datagram(&self, addr: &Addr) -> Result<Box<dyn DatagramImpl>>;
    /// A pair of connected Unix stream sockets.
    fn socketpair(&self) -> Result<(Box<dyn StreamImpl>, Box<dyn StreamImpl>)>;
    /// Binds and listens.
    fn listen(&self, addr: &Addr, opts: &ListenOptions) -> Result<Box<dyn ListenerImpl>>;
    /// Connects.
    fn connect(&self, addr: &Addr) -> Result<Box<dyn StreamImpl>>;
    /// Resolves a host and service (port number or name) to addresses.
    fn getaddrinfo(&self, host: &str, service: &str) -> Result<Vec<Addr>>;
}

/// The capability to use the network.
#[derive(Clone)]
pub struct Net {
    backend: Arc<dyn NetBackend>,
}

impl fmt::Debug for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Net")
    }
}

impl Net {
    /// A `Net` backed by `backend` (backends and test doubles use this).
    pub fn new(backend: Arc<dyn NetBackend>) -> Net {
        Net { backend }
    }

    /// Listens on `addr` with default options (backlog 128, `SO_REUSEADDR`).
    ///
    /// Port 0 picks a free port; [`Listener::local_addr`] tells which.
    ///
    /// ```
    /// use weft::flow::{Sink, Source};
    /// use weft::fiber;
    ///
    /// weft::run(|env| {
    ///     let net = env.net();
    ///     let listener = net.listen(&"127.0.0.1:0".parse()?)?;
    ///     let addr = listener.local_addr()?;
    ///     fiber::both(
    ///         || {
    ///             let (conn, _peer) = listener.accept()?;
    ///             conn.write_all(b"welcome")
    ///         },
    ///         || {
    ///             assert_eq!(net.connect(&addr)?.read_all()?, "welcome");
    ///             Ok(())
    ///         },
    ///     )
    /// })
    /// .unwrap();
    /// ```
    pub fn listen(&self, addr: &Addr) -> Result<Listener> {
        self.listen_with(addr, &ListenOptions::default())
    }

    /// Listens on `addr`.
    pub fn listen_with(&self, addr: &Addr, opts: &ListenOptions) -> Result<Listener> {
        let inner = self
            .backend
            .listen(addr, opts)
            .map_err(|e| e.context(format!("listening on {addr}")))?;
        Ok(Listener { inner })
    }

    /// Connects to `addr`. Errors say which address
    /// (`net: connection refused, connecting to tcp:127.0.0.1:9`).
    ///
    /// ```
    /// use weft::flow::{Shutdown, ShutdownKind, Sink, Source};
    /// use weft::{fiber, ErrorKind, NetError};
    ///
    /// weft::run(|env| {
    ///     let net = env.net();
    ///     let listener = net.listen(&"127.0.0.1:0".parse()?)?;
    ///     let addr = listener.local_addr()?;
    ///     fiber::both(
    ///         || {
    ///             let (conn, _peer) = listener.accept()?;
    ///             let question = conn.read_all()?;
    ///             conn.write_all(format!("you said {question:?}").as_bytes())
    ///         },
    ///         || {
    ///             let conn = net.connect(&addr)?;
    ///             conn.write_all(b"hi")?;
    ///             conn.shutdown(ShutdownKind::Write)?;
    ///             assert_eq!(conn.read_all()?, r#"you said "hi""#);
    ///             Ok(())
    ///         },
    ///     )?;
    ///     drop(listener);
    ///     let refused = net.connect(&addr).unwrap_err();
    ///     assert_eq!(refused.kind(), &ErrorKind::Net(NetError::ConnectionRefused));
    ///     Ok(())
    /// })
    /// .unwrap();
    /// ```
    pub fn connect(&self, addr: &Addr) -> Result<Stream> {
        let inner = self
            .backend
            .connect(addr)
            .map_err(|e| e.context(format!("connecting to {addr}")))?;
        Ok(Stream { inner })
    }

    /// Resolves `host` and `service` and connects to the first address that
    /// accepts, returning the last failure if none does.
    pub fn connect_host(&self, host: &str, service: &str) -> Result<Stream> {
        let ctx = || format!("connecting to {host:?}:{service}");
        let addrs = self
            .getaddrinfo(host, service)
            .map_err(|e| e.context(ctx()))?;
        let mut last = None;
        for a in &addrs {
            match self.connect(a) {
                Ok(s) => return Ok(s),
                Err(e) if e.is_cancelled() => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        Err(last
            .unwrap_or_else(|| Error::msg(ErrorKind::Net(NetError::ResolveFailed), "no addresses"))
            .context(ctx()))
    }

    /// Binds a datagram socket on `addr`.
    pub fn bind_datagram(&self, addr: &Addr) -> Result<Datagram> {
        let inner = self
            .backend
            .bind_datagram(addr)
            .map_err(|e| e.context(format!("binding a datagram socket on {addr}")))?;
        Ok(Datagram { inner })
    }

    /// A pair of connected stream sockets (`socketpair(2)`).
    pub fn socketpair(&self) -> Result<(Stream, Stream)> {
        let (a, b) = self
            .backend
            .socketpair()
            .map_err(|e| e.context("creating a socket pair"))?;
        Ok((Stream { inner: a }, Stream { inner: b }))
    }

    /// Resolves `host` and `service`.
    pub fn getaddrinfo(&self, host: &str, service: &str) -> Result<Vec<Addr>> {
        self.backend
            .getaddrinfo(host, service)
            .map_err(|e| e.context(format!("resolving {host:?}:{service}")))
    }
}

/// A listening socket.
pub struct Listener {
    inner: Box<dyn ListenerImpl>,
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("local_addr", &self.inner.local_addr().ok())
            .finish()
    }
}

impl Listener {
    /// Waits for a connection and returns it with the peer's address.
    pub fn accept(&self) -> Result<(Stream, Addr)> {
        let (inner, addr) = self.inner.accept()?;
        Ok((Stream { inner }, addr))
    }

    /// The bound address (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> Result<Addr> {
        self.inner.local_addr()
    }
}

/// A datagram socket. Closed on drop.
pub struct Datagram {
    inner: Box<dyn DatagramImpl>,
}

impl fmt::Debug for Datagram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Datagram")
            .field("local_addr", &self.inner.local_addr().ok())
            .finish()
    }
}

impl Datagram {
    /// Sends `buf` as one datagram to `addr`.
    pub fn send_to(&self, buf: &[u8], addr: &Addr) -> Result<usize> {
        self.inner
            .send_to(buf, addr)
            .map_err(|e| e.context(format!("sending a datagram to {addr}")))
    }

    /// Waits for a datagram.
    pub fn recv_from(&self, buf: &mut [u8]) -> Result<(usize, Addr)> {
        self.inner.recv_from(buf)
    }

    /// The bound address.
    pub fn local_addr(&self) -> Result<Addr> {
        self.inner.local_addr()
    }
}

/// A connected stream socket. Closed on drop.
///
/// Not to be confused with [`sync::Stream`](crate::sync::Stream), the
/// bounded queue between fibers; refer to each by its module (`net::Stream`,
/// `sync::Stream`) when both are in use. Its methods come from the flow
/// traits [`Source`], [`Sink`] and [`Shutdown`] (all in `weft::prelude`).
pub struct Stream {
    inner: Box<dyn StreamImpl>,
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stream")
            .field("local", &self.inner.local_addr().ok())
            .field("peer", &self.inner.peer_addr().ok())
            .finish()
    }
}

impl Stream {
    /// Wraps a backend stream (backends and test doubles use this).
    pub fn from_impl(inner: Box<dyn StreamImpl>) -> Stream {
        Stream { inner }
    }

    /// The local address.
    pub fn local_addr(&self) -> Result<Addr> {
        self.inner.local_addr()
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> Result<Addr> {
        self.inner.peer_addr()
    }

    /// Sets `TCP_NODELAY`.
    pub fn set_nodelay(&self, on: bool) -> Result<()> {
        self.inner.set_nodelay(on)
    }

    /// Closes the stream, reporting any error.
    pub fn close(self) -> Result<()> {
        self.inner.close()
    }
}

impl Source for Stream {
    fn read(&self, buf: &mut [u8]) -> Result<usize> {
        self.inner.read(buf)
    }
    fn read_vectored(&self, bufs: &mut [io::IoSliceMut<'_>]) -> Result<usize> {
        self.inner.read_vectored(bufs)
    }
    fn backing(&self) -> Option<Backing<'_>> {
        self.inner.backing()
    }
}

impl Sink for Stream {
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

impl Shutdown for Stream {
    fn shutdown(&self, how: ShutdownKind) -> Result<()> {
        self.inner.shutdown(how)
    }
}

crate::std_io::std_read!(Stream);
crate::std_io::std_write!(Stream);
