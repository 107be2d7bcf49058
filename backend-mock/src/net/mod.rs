//! An in-memory network: the mock backend's `env.net()`.
//!
//! Under the mock backend a networked program runs with no real IO: every
//! mock run gets a fresh [`MemNet`], a loopback network in memory on which
//! every IP address is local. Listeners, connections and datagram sockets
//! behave like their kernel counterparts on loopback (see below), and since
//! nothing outside the run takes part, the whole program — the server, its
//! clients and the order in which they run — is deterministic: the same
//! program gives the same trace every time, ephemeral ports included.
//!
//! ```
//! use weft::flow::{Sink, Source};
//!
//! let (result, trace) = weft::mock::run_traced(|env| {
//!     let net = env.net();
//!     let listener = net.listen(&"127.0.0.1:0".parse()?)?;
//!     let addr = listener.local_addr()?;
//!     weft::traceln!("listening on {addr}");
//!     weft::fiber::both(
//!         || {
//!             let (conn, peer) = listener.accept()?;
//!             weft::traceln!("server: connection from {peer}");
//!             let mut name = [0u8; 5];
//!             conn.read_exact(&mut name)?;
//!             conn.write_all(b"hello, ")?;
//!             conn.write_all(&name)
//!             // `conn` is dropped here: the client reads end of stream.
//!         },
//!         || {
//!             let conn = net.connect(&addr)?;
//!             conn.write_all(b"world")?;
//!             weft::traceln!("client: got {:?}", conn.read_all()?);
//!             Ok(())
//!         },
//!     )
//! });
//! result.unwrap();
//! assert_eq!(
//!     trace,
//!     [
//!         "listening on tcp:127.0.0.1:49152",
//!         "server: connection from tcp:127.0.0.1:49153",
//!         r#"client: got "hello, world""#,
//!     ]
//! );
//! ```
//!
//! # What it models
//!
//! * **Listening** on `Addr::Ip` (port 0: an ephemeral port, counting up
//!   from 49152; `0.0.0.0` or `::` accepts connections to every IP of its
//!   family) or `Addr::Unix` (any path: nothing is created on disk).
//!   Binding an address that is taken fails with `Net(AddrInUse)`, unless
//!   both listeners set `reuse_port`, in which case connections alternate
//!   between them. Dropping the listener unbinds it.
//! * **Connecting** succeeds as soon as the connection is queued for
//!   `accept`, and waits while the listener's backlog is full; nobody
//!   listening is `Net(ConnectionRefused)`. Clients get ephemeral ports
//!   from the same counter; Unix clients are unnamed.
//! * **Streams** are two bounded byte pipes (64 KiB each way by default,
//!   see [`MemNet::with_pipe_capacity`]): partial reads and writes, half
//!   close with `shutdown`, end of stream and `Net(BrokenPipe)` once the
//!   peer is gone. A cancelled read consumes nothing and a cancelled write
//!   writes nothing.
//! * **Datagrams** go into per-socket queues of 256; a full queue drops
//!   them, an unbound IP destination loses them silently (UDP), an unbound
//!   Unix path is `Net(ConnectionRefused)`.
//! * **Names**: `getaddrinfo` knows `localhost` (`127.0.0.1` and `::1`),
//!   numeric addresses, and names added with [`MemNet::add_host`]; services
//!   are port numbers, `http` and `https`. Anything else is
//!   `Net(ResolveFailed)`.
//!
//! Everything is behind `std::sync::Mutex`es, so a connection may have its
//! ends on different OS threads (a domain connecting to its parent's
//! listener through a `Net` it was handed).
//!
//! # Blocking and cancellation
//!
//! Blocking operations — read, write on a full pipe, accept, connect on a
//! full backlog, `recv_from` — suspend the fiber (deadlock reports name them
//! `net read`, `net accept`, …) and are cancellation points.
//!
//! # Checking for leaks
//!
//! Give the run a `MemNet` of your own with
//! [`Config::net`](crate::Config::net) and look at it afterwards:
//! [`MemNet::open_resources`] lists every listener, stream end and datagram
//! socket still open.
//!
//! ```
//! let net = weft_mock::MemNet::new();
//! weft_mock::Config::new().net(net.clone()).run(|env| {
//!     let listener = env.net().listen(&"[::1]:8080".parse()?)?;
//!     let _client = env.net().connect(&listener.local_addr()?)?;
//!     assert_eq!(net.open_resources().streams.len(), 2, "both ends are open");
//!     Ok(())
//! })
//! .unwrap();
//! assert!(net.open_resources().is_empty());
//! ```

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use weft_core::net::{Addr, DatagramImpl, ListenOptions, ListenerImpl, NetBackend, StreamImpl};
use weft_core::{NetError, Result};

mod datagram;
mod listener;
mod stream;
mod table;
pub(crate) mod wait;

use table::{net_err, Table};
use wait::lock;

/// An in-memory network. See the [module docs](self).
///
/// Cloning gives another handle to the same network.
#[derive(Clone)]
pub struct MemNet {
    table: Arc<Mutex<Table>>,
}

impl Default for MemNet {
    fn default() -> Self {
        MemNet::new()
    }
}

impl fmt::Debug for MemNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemNet")
            .field("open", &self.open_resources())
            .finish()
    }
}

impl MemNet {
    /// An empty network: nothing bound, ephemeral ports from 49152.
    pub fn new() -> MemNet {
        MemNet {
            table: Arc::new(Mutex::new(Table::new())),
        }
    }

    /// Sets how many bytes each direction of a connection made from now on
    /// holds before writers wait (64 KiB by default; at least 1).
    ///
    /// ```
    /// let net = weft_mock::MemNet::new().with_pipe_capacity(4);
    /// weft_mock::Config::new().net(net).run(|env| {
    ///     use weft::flow::Sink;
    ///     let (a, _b) = env.net().socketpair()?;
    ///     assert_eq!(a.write(b"0123456789")?, 4, "a partial write");
    ///     Ok(())
    /// })
    /// .unwrap();
    /// ```
    pub fn with_pipe_capacity(self, bytes: usize) -> MemNet {
        lock(&self.table).pipe_capacity = bytes.max(1);
        self
    }

    /// Makes `name` resolve to `ips` (in that order), replacing what it
    /// resolved to before. Names are not case-sensitive.
    ///
    /// ```
    /// use std::net::{IpAddr, Ipv4Addr};
    ///
    /// let net = weft_mock::MemNet::new();
    /// net.add_host("example.com", [IpAddr::V4(Ipv4Addr::new(93, 184, 216, 34))]);
    /// weft_mock::Config::new().net(net).run(|env| {
    ///     let addrs = env.net().getaddrinfo("Example.COM", "https")?;
    ///     assert_eq!(addrs, ["93.184.216.34:443".parse::<weft::net::Addr>()?]);
    ///     Ok(())
    /// })
    /// .unwrap();
    /// ```
    pub fn add_host(&self, name: &str, ips: impl IntoIterator<Item = IpAddr>) {
        lock(&self.table)
            .hosts
            .insert(name.to_ascii_lowercase(), ips.into_iter().collect());
    }

    /// Every listener, stream end and datagram socket that is open now. A
    /// test hook: after a run it should be empty.
    pub fn open_resources(&self) -> OpenResources {
        let t = lock(&self.table);
        OpenResources {
            listeners: t.listeners.values().map(|l| l.addr.clone()).collect(),
            streams: t.streams.values().cloned().collect(),
            datagrams: t.dgrams.values().map(|d| d.addr.clone()).collect(),
        }
    }
}

/// What is open on a [`MemNet`] (see [`MemNet::open_resources`]), each list
/// in the order the resources were created.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenResources {
    /// Bound addresses of open listeners.
    pub listeners: Vec<Addr>,
    /// Open stream ends, as (local address, peer address).
    pub streams: Vec<(Addr, Addr)>,
    /// Bound addresses of open datagram sockets.
    pub datagrams: Vec<Addr>,
}

impl OpenResources {
    /// True if nothing is open.
    pub fn is_empty(&self) -> bool {
        self.listeners.is_empty() && self.streams.is_empty() && self.datagrams.is_empty()
    }
}

impl NetBackend for MemNet {
    fn bind_datagram(&self, addr: &Addr) -> Result<Box<dyn DatagramImpl>> {
        Ok(Box::new(datagram::bind(&self.table, addr)?))
    }

    fn socketpair(&self) -> Result<(Box<dyn StreamImpl>, Box<dyn StreamImpl>)> {
        let (a, b) = stream::socketpair(&self.table);
        Ok((Box::new(a), Box::new(b)))
    }

    fn listen(&self, addr: &Addr, opts: &ListenOptions) -> Result<Box<dyn ListenerImpl>> {
        Ok(Box::new(listener::listen(&self.table, addr, opts)?))
    }

    fn connect(&self, addr: &Addr) -> Result<Box<dyn StreamImpl>> {
        Ok(Box::new(listener::connect(&self.table, addr)?))
    }

    fn getaddrinfo(&self, host: &str, service: &str) -> Result<Vec<Addr>> {
        let port = service_port(service)?;
        let ips = resolve_host(&lock(&self.table), host)?;
        Ok(ips
            .into_iter()
            .map(|ip| Addr::Ip(SocketAddr::new(ip, port)))
            .collect())
    }
}

/// A service as a port: a number, `http` or `https`.
fn service_port(service: &str) -> Result<u16> {
    if let Ok(p) = service.parse() {
        return Ok(p);
    }
    match service.to_ascii_lowercase().as_str() {
        "http" => Ok(80),
        "https" => Ok(443),
        _ => Err(net_err(
            NetError::ResolveFailed,
            format!("unknown service {service:?}"),
        )),
    }
}

/// A host's IP addresses: numeric, `localhost`, or added with `add_host`.
fn resolve_host(t: &Table, host: &str) -> Result<Vec<IpAddr>> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    let name = host.trim_end_matches('.').to_ascii_lowercase();
    if let Some(ips) = t.hosts.get(&name) {
        return Ok(ips.clone());
    }
    if name == "localhost" {
        return Ok(vec![
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ]);
    }
    Err(net_err(
        NetError::ResolveFailed,
        format!(
            "unknown host {host:?} (the mock network knows localhost and MemNet::add_host names)"
        ),
    ))
}
