//! The in-memory network's control plane: who is bound where.
//!
//! One [`Table`] per [`MemNet`](super::MemNet), behind one `std::sync::Mutex`,
//! holds every listener with its accept queue, every datagram socket with its
//! receive queue, the Unix paths in use, the ports in use, and a registry of
//! open stream ends (for leak checks). Bytes flowing through a connection do
//! not touch it: each connection has its own lock (see `stream.rs`).
//!
//! Lock order: code holding the table lock may lock a connection, never the
//! other way round; in practice no code path holds both.
//!
//! Address rules, those of a loopback interface on which every IP address
//! is local:
//!
//! * A destination whose IP is unspecified (`0.0.0.0`, `::`) means the
//!   loopback address of its family.
//! * A socket bound to an unspecified IP receives for every IP of its family
//!   on its port; a socket bound to the exact destination IP is preferred.
//! * The source IP of a connection or datagram from a socket bound to an
//!   unspecified IP is the destination's IP.
//! * Port 0 asks for an ephemeral port: the next one not in use counting up
//!   from 49152 (wrapping at 65535), separately for TCP and UDP.
//!
//! ```
//! weft::mock::run(|env| {
//!     let net = env.net();
//!     let listener = net.listen(&"0.0.0.0:0".parse()?)?;
//!     assert_eq!(listener.local_addr()?, "0.0.0.0:49152".parse()?);
//!     let client = net.connect(&"192.0.2.7:49152".parse()?)?;
//!     assert_eq!(client.local_addr()?, "192.0.2.7:49153".parse()?);
//!     let (server, peer) = listener.accept()?;
//!     assert_eq!(server.local_addr()?, "192.0.2.7:49152".parse()?);
//!     assert_eq!(peer, client.local_addr()?);
//!     Ok(())
//! })
//! .unwrap();
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use weft_core::net::Addr;
use weft_core::{Error, ErrorKind, NetError, Result};

use super::stream::EndParts;
use super::wait::{WaitState, Waiters};

/// First ephemeral port (IANA's dynamic range, as on BSD and Windows).
pub(crate) const EPHEMERAL_FIRST: u16 = 49152;

/// Default capacity of each direction of a connection, in bytes.
pub(crate) const DEFAULT_PIPE_CAPACITY: usize = 64 * 1024;

/// Datagrams a socket holds before further ones are dropped.
pub(crate) const DGRAM_QUEUE_LEN: usize = 256;

/// The two port spaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Proto {
    /// Stream sockets (listeners and client ends of connections).
    Tcp,
    /// Datagram sockets.
    Udp,
}

/// Ports in use and the ephemeral port counter.
#[derive(Debug)]
pub(crate) struct Ports {
    next: u16,
    in_use: BTreeMap<(Proto, u16), usize>,
}

impl Ports {
    fn new() -> Ports {
        Ports {
            next: EPHEMERAL_FIRST,
            in_use: BTreeMap::new(),
        }
    }

    /// Takes `port` (another reference if it is in use already).
    pub(crate) fn take(&mut self, proto: Proto, port: u16) {
        *self.in_use.entry((proto, port)).or_insert(0) += 1;
    }

    /// Takes the next free ephemeral port.
    pub(crate) fn ephemeral(&mut self, proto: Proto) -> Result<u16> {
        let span = u32::from(u16::MAX - EPHEMERAL_FIRST) + 1;
        for _ in 0..span {
            let p = self.next;
            self.next = if p == u16::MAX {
                EPHEMERAL_FIRST
            } else {
                p + 1
            };
            if !self.in_use.contains_key(&(proto, p)) {
                self.take(proto, p);
                return Ok(p);
            }
        }
        Err(Error::msg(
            ErrorKind::Net(NetError::AddrInUse),
            "no ephemeral port left",
        ))
    }

    /// Releases one reference to `port`.
    pub(crate) fn release(&mut self, proto: Proto, port: u16) {
        if let Some(n) = self.in_use.get_mut(&(proto, port)) {
            *n -= 1;
            if *n == 0 {
                self.in_use.remove(&(proto, port));
            }
        }
    }
}

/// A bound listener and its accept queue.
#[derive(Debug)]
pub(crate) struct ListenerEntry {
    /// The bound address (the real port when 0 was asked for).
    pub(crate) addr: Addr,
    pub(crate) reuse_port: bool,
    /// Connections queued before `accept` (at least 1).
    pub(crate) backlog: usize,
    /// Server ends of connections not yet accepted, oldest first.
    pub(crate) queue: VecDeque<EndParts>,
    /// Fibers in `accept`.
    pub(crate) accepters: Waiters,
    /// Fibers in `connect`, waiting for room in the queue.
    pub(crate) connectors: Waiters,
}

/// A bound datagram socket and its receive queue.
#[derive(Debug)]
pub(crate) struct DgramEntry {
    pub(crate) addr: Addr,
    /// Datagrams with their senders, oldest first.
    pub(crate) queue: VecDeque<(Vec<u8>, Addr)>,
    /// Fibers in `recv_from`.
    pub(crate) receivers: Waiters,
}

/// Names a waiter list in the [`Table`].
#[derive(Clone, Copy, Debug)]
pub(crate) enum TableKey {
    /// Fibers accepting on this listener.
    Accept(u64),
    /// Fibers connecting to this listener while its backlog is full.
    Connect(u64),
    /// Fibers receiving on this datagram socket.
    Recv(u64),
}

/// Everything bound on one in-memory network.
#[derive(Debug)]
pub(crate) struct Table {
    next_id: u64,
    pub(crate) ports: Ports,
    pub(crate) listeners: BTreeMap<u64, ListenerEntry>,
    pub(crate) dgrams: BTreeMap<u64, DgramEntry>,
    /// Unix paths bound by listeners or datagram sockets.
    pub(crate) unix: BTreeMap<PathBuf, u64>,
    /// Open stream ends: local and peer address.
    pub(crate) streams: BTreeMap<u64, (Addr, Addr)>,
    /// Names [`MemNet::add_host`](super::MemNet::add_host) made resolvable.
    pub(crate) hosts: BTreeMap<String, Vec<IpAddr>>,
    /// Capacity of each direction of new connections.
    pub(crate) pipe_capacity: usize,
    /// Spreads connections over listeners sharing a port (`reuse_port`).
    pub(crate) round_robin: usize,
}

impl Table {
    pub(crate) fn new() -> Table {
        Table {
            next_id: 1,
            ports: Ports::new(),
            listeners: BTreeMap::new(),
            dgrams: BTreeMap::new(),
            unix: BTreeMap::new(),
            streams: BTreeMap::new(),
            hosts: BTreeMap::new(),
            pipe_capacity: DEFAULT_PIPE_CAPACITY,
            round_robin: 0,
        }
    }

    /// A fresh id for a listener, datagram socket or stream end.
    pub(crate) fn id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Reserves a Unix path, or fails with `AddrInUse`.
    pub(crate) fn bind_unix(&mut self, path: &std::path::Path, id: u64) -> Result<()> {
        if path.as_os_str().is_empty() {
            return Err(Error::msg(
                ErrorKind::Net(NetError::InvalidAddress),
                "empty Unix socket path",
            ));
        }
        if self.unix.contains_key(path) {
            return Err(Error::msg(
                ErrorKind::Net(NetError::AddrInUse),
                format!("{} is bound already", path.display()),
            ));
        }
        self.unix.insert(path.to_path_buf(), id);
        Ok(())
    }

    /// Binds `want` in `proto`'s port space: an ephemeral port for port 0,
    /// else `want` itself unless `taken` says another socket holds it.
    pub(crate) fn bind_ip(
        &mut self,
        proto: Proto,
        want: SocketAddr,
        taken: bool,
    ) -> Result<SocketAddr> {
        if want.port() == 0 {
            let p = self.ports.ephemeral(proto)?;
            return Ok(SocketAddr::new(want.ip(), p));
        }
        if taken {
            return Err(Error::msg(
                ErrorKind::Net(NetError::AddrInUse),
                format!("{want} is bound already"),
            ));
        }
        self.ports.take(proto, want.port());
        Ok(want)
    }

    /// Releases what binding `addr` in `proto` reserved.
    pub(crate) fn unbind(&mut self, proto: Proto, addr: &Addr) {
        match addr {
            Addr::Ip(a) => self.ports.release(proto, a.port()),
            Addr::Unix(p) => {
                self.unix.remove(p);
            }
        }
    }

    /// The listener a connection to `dest` reaches, if any.
    pub(crate) fn find_listener(&mut self, dest: &Addr) -> Option<u64> {
        match dest {
            Addr::Unix(p) => self
                .unix
                .get(p)
                .copied()
                .filter(|id| self.listeners.contains_key(id)),
            Addr::Ip(d) => {
                let d = route(*d);
                let bound = self.listeners.iter().filter_map(|(id, l)| match &l.addr {
                    Addr::Ip(b) => Some((*id, *b)),
                    Addr::Unix(_) => None,
                });
                let ids = pick_exact_or_wildcard(bound, d);
                if ids.is_empty() {
                    return None;
                }
                let pick = ids[self.round_robin % ids.len()];
                self.round_robin = self.round_robin.wrapping_add(1);
                Some(pick)
            }
        }
    }

    /// The datagram socket a datagram to `dest` reaches, if any.
    pub(crate) fn find_dgram(&self, dest: &Addr) -> Option<u64> {
        match dest {
            Addr::Unix(p) => self
                .unix
                .get(p)
                .copied()
                .filter(|id| self.dgrams.contains_key(id)),
            Addr::Ip(d) => {
                let bound = self.dgrams.iter().filter_map(|(id, s)| match &s.addr {
                    Addr::Ip(b) => Some((*id, *b)),
                    Addr::Unix(_) => None,
                });
                pick_exact_or_wildcard(bound, route(*d)).first().copied()
            }
        }
    }
}

impl WaitState for Table {
    type Key = TableKey;

    fn waiters(&mut self, key: TableKey) -> Option<&mut Waiters> {
        match key {
            TableKey::Accept(id) => self.listeners.get_mut(&id).map(|l| &mut l.accepters),
            TableKey::Connect(id) => self.listeners.get_mut(&id).map(|l| &mut l.connectors),
            TableKey::Recv(id) => self.dgrams.get_mut(&id).map(|d| &mut d.receivers),
        }
    }
}

/// The sockets among `bound` that receive for `dest`: those bound to exactly
/// `dest`, or failing that those bound to the unspecified IP of its family
/// on its port.
fn pick_exact_or_wildcard(
    bound: impl Iterator<Item = (u64, SocketAddr)>,
    dest: SocketAddr,
) -> Vec<u64> {
    let (mut exact, mut wild) = (Vec::new(), Vec::new());
    for (id, b) in bound {
        if b.port() != dest.port() || b.is_ipv4() != dest.is_ipv4() {
            continue;
        }
        if b.ip() == dest.ip() {
            exact.push(id);
        } else if b.ip().is_unspecified() {
            wild.push(id);
        }
    }
    if exact.is_empty() {
        wild
    } else {
        exact
    }
}

/// True if sockets bound to `a` and `b` would receive for a common address.
pub(crate) fn overlaps(a: &SocketAddr, b: &SocketAddr) -> bool {
    a.port() == b.port()
        && a.is_ipv4() == b.is_ipv4()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// Where a packet to `dest` goes: the unspecified IP means loopback.
pub(crate) fn route(dest: SocketAddr) -> SocketAddr {
    match dest.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), dest.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), dest.port())
        }
        _ => dest,
    }
}

/// The source address of a socket bound to `local` sending to `dest`: an
/// unspecified local IP becomes the (routed) destination's IP.
pub(crate) fn source_for(local: SocketAddr, dest: SocketAddr) -> SocketAddr {
    if local.ip().is_unspecified() {
        SocketAddr::new(route(dest).ip(), local.port())
    } else {
        local
    }
}

/// A `Net(kind)` error with a message.
pub(crate) fn net_err(kind: NetError, msg: impl Into<std::borrow::Cow<'static, str>>) -> Error {
    Error::msg(ErrorKind::Net(kind), msg)
}

/// Fails unless `a` and `b` are of the same address family.
pub(crate) fn same_family(a: &Addr, b: &Addr) -> Result<()> {
    let ok = match (a, b) {
        (Addr::Ip(x), Addr::Ip(y)) => x.is_ipv4() == y.is_ipv4(),
        (Addr::Unix(_), Addr::Unix(_)) => true,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(net_err(
            NetError::InvalidAddress,
            format!("{b} is not of the same address family as {a}"),
        ))
    }
}
