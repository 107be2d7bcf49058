//! The network capability on io_uring: TCP, UDP and Unix sockets.
//!
//! Sockets are created, bound and configured with ordinary system calls
//! (`socket2`); everything that can wait — accept, connect, send, receive,
//! shutdown and an explicit close — is one SQE on the thread's ring (see
//! [`ops`](crate::ops)). Sockets stay in blocking mode: io_uring tries each
//! operation without blocking and arms an internal poll when it would.
//! Name resolution (`getaddrinfo`) blocks, so it runs on a system thread.
//!
//! ```
//! # if weft_uring::probe().is_err() { return; }
//! use weft_core::flow::{Sink, Source};
//!
//! weft_uring::run(&weft_core::RunConfig::default(), |env| {
//!     let net = env.net();
//!     let listener = net.listen(&"127.0.0.1:0".parse()?)?;
//!     let addr = listener.local_addr()?;
//!     weft_core::fiber::both(
//!         || {
//!             let (conn, _peer) = listener.accept()?;
//!             conn.write_all(b"hello from io_uring")
//!         },
//!         || {
//!             let conn = net.connect(&addr)?;
//!             assert_eq!(conn.read_all()?, "hello from io_uring");
//!             Ok(())
//!         },
//!     )
//! })
//! .unwrap();
//! ```

use std::io;
use std::os::fd::OwnedFd;

use socket2::{Domain, SockRef, Socket, Type};
use weft_core::flow::{Backing, Shutdown, ShutdownKind, Sink, Source};
use weft_core::net::{Addr, DatagramImpl, ListenOptions, ListenerImpl, NetBackend, StreamImpl};
use weft_core::{Error, Result};

use weft_posix::unix::net::{from_sockaddr, getaddrinfo, to_sockaddr};

use crate::ops::Fd;

/// The io_uring network capability. Stateless: every operation uses the
/// ring of the thread it runs on.
pub(crate) struct UringNet;

/// A new socket (socket2 sets `SOCK_CLOEXEC` on Linux), blocking mode.
fn new_socket(domain: Domain, ty: Type) -> Result<Socket> {
    Socket::new(domain, ty, None).map_err(Error::from)
}

fn into_fd(s: Socket) -> Fd {
    Fd::from(OwnedFd::from(s))
}

fn is_ip(fd: &Fd) -> bool {
    SockRef::from(fd)
        .local_addr()
        .map(|a| a.as_socket().is_some())
        .unwrap_or(false)
}

impl NetBackend for UringNet {
    fn listen(&self, addr: &Addr, opts: &ListenOptions) -> Result<Box<dyn ListenerImpl>> {
        let (sa, domain) = to_sockaddr(addr)?;
        let sock = new_socket(domain, Type::STREAM)?;
        if domain != Domain::UNIX {
            sock.set_reuse_address(opts.reuse_addr)?;
            sock.set_reuse_port(opts.reuse_port)?;
        }
        sock.bind(&sa)?;
        sock.listen(i32::try_from(opts.backlog).unwrap_or(i32::MAX))?;
        Ok(Box::new(UringListener { fd: into_fd(sock) }))
    }

    fn connect(&self, addr: &Addr) -> Result<Box<dyn StreamImpl>> {
        let (sa, domain) = to_sockaddr(addr)?;
        let fd = into_fd(new_socket(domain, Type::STREAM)?);
        fd.connect(&sa)?;
        if domain != Domain::UNIX {
            SockRef::from(&fd).set_tcp_nodelay(true)?;
        }
        Ok(Box::new(UringStream { fd }))
    }

    fn bind_datagram(&self, addr: &Addr) -> Result<Box<dyn DatagramImpl>> {
        let (sa, domain) = to_sockaddr(addr)?;
        let sock = new_socket(domain, Type::DGRAM)?;
        sock.bind(&sa)?;
        Ok(Box::new(UringDatagram { fd: into_fd(sock) }))
    }

    fn socketpair(&self) -> Result<(Box<dyn StreamImpl>, Box<dyn StreamImpl>)> {
        let (a, b) = Socket::pair(Domain::UNIX, Type::STREAM.cloexec(), None)?;
        Ok((
            Box::new(UringStream { fd: into_fd(a) }),
            Box::new(UringStream { fd: into_fd(b) }),
        ))
    }

    fn getaddrinfo(&self, host: &str, service: &str) -> Result<Vec<Addr>> {
        getaddrinfo(host, service)
    }
}

struct UringListener {
    fd: Fd,
}

impl ListenerImpl for UringListener {
    fn accept(&self) -> Result<(Box<dyn StreamImpl>, Addr)> {
        // Even when this fiber is cancelled meanwhile, a connection that
        // was accepted is returned (and so owned, and closed on drop).
        let (fd, peer) = self.fd.accept()?;
        if peer.as_socket().is_some() {
            let _ = SockRef::from(&fd).set_tcp_nodelay(true);
        }
        Ok((Box::new(UringStream { fd }), from_sockaddr(&peer)))
    }

    fn local_addr(&self) -> Result<Addr> {
        Ok(from_sockaddr(&SockRef::from(&self.fd).local_addr()?))
    }
}

pub(crate) struct UringStream {
    pub(crate) fd: Fd,
}

impl Source for UringStream {
    fn read(&self, buf: &mut [u8]) -> Result<usize> {
        self.fd.recv(buf)
    }

    /// One `IORING_OP_READV`.
    fn read_vectored(&self, bufs: &mut [io::IoSliceMut<'_>]) -> Result<usize> {
        self.fd.read_vectored(bufs)
    }

    fn backing(&self) -> Option<Backing<'_>> {
        Some(Backing::new(self))
    }
}

impl Sink for UringStream {
    fn write(&self, buf: &[u8]) -> Result<usize> {
        self.fd.send(buf)
    }

    /// One `IORING_OP_SEND` when a single buffer holds bytes (the common
    /// case of a buffered writer), else one `IORING_OP_SENDMSG`: a plain
    /// send skips the kernel's copying and checking of a `msghdr` and its
    /// iovec array.
    fn write_vectored(&self, bufs: &[io::IoSlice<'_>]) -> Result<usize> {
        let mut full = bufs.iter().filter(|b| !b.is_empty());
        match (full.next(), full.next()) {
            (None, _) => Ok(0),
            (Some(one), None) => self.fd.send(one),
            _ => self.fd.send_vectored(bufs, None),
        }
    }

    /// Splices from a file, socket or pipe of this backend (see
    /// [`copy`](crate::copy)).
    fn copy_from(&self, src: &dyn Source) -> Result<u64> {
        crate::copy::copy(src, self, crate::copy::End::Socket(&self.fd))
    }
}

impl Shutdown for UringStream {
    fn shutdown(&self, how: ShutdownKind) -> Result<()> {
        let how = match how {
            ShutdownKind::Read => libc::SHUT_RD,
            ShutdownKind::Write => libc::SHUT_WR,
            ShutdownKind::Both => libc::SHUT_RDWR,
        };
        self.fd.shutdown(how)
    }
}

impl StreamImpl for UringStream {
    fn local_addr(&self) -> Result<Addr> {
        Ok(from_sockaddr(&SockRef::from(&self.fd).local_addr()?))
    }

    fn peer_addr(&self) -> Result<Addr> {
        Ok(from_sockaddr(&SockRef::from(&self.fd).peer_addr()?))
    }

    fn set_nodelay(&self, on: bool) -> Result<()> {
        if is_ip(&self.fd) {
            SockRef::from(&self.fd).set_tcp_nodelay(on)?;
        }
        Ok(())
    }

    fn close(self: Box<Self>) -> Result<()> {
        self.fd.close().map_err(|e| e.context("closing a socket"))
    }
}

struct UringDatagram {
    fd: Fd,
}

impl DatagramImpl for UringDatagram {
    fn send_to(&self, buf: &[u8], addr: &Addr) -> Result<usize> {
        let (sa, _) = to_sockaddr(addr)?;
        self.fd.send_vectored(&[io::IoSlice::new(buf)], Some(&sa))
    }

    fn recv_from(&self, buf: &mut [u8]) -> Result<(usize, Addr)> {
        let (n, from) = self.fd.recv_from(buf)?;
        Ok((n, from_sockaddr(&from)))
    }

    fn local_addr(&self) -> Result<Addr> {
        Ok(from_sockaddr(&SockRef::from(&self.fd).local_addr()?))
    }
}
