//! TCP and Unix stream sockets on nonblocking fds and the reactor.

use std::io::{self, Read, Write};
use std::net::Shutdown as StdShutdown;
use std::os::fd::AsRawFd;

use socket2::{Domain, Socket, Type};
use weft_core::flow::{Shutdown, ShutdownKind, Sink, Source};
use weft_core::net::{Addr, DatagramImpl, ListenOptions, ListenerImpl, NetBackend, StreamImpl};
use weft_core::{Error, Result};

use crate::reactor::{Interest, Registration};
use crate::unix::net::{from_sockaddr, getaddrinfo, to_sockaddr};

/// The POSIX network capability. Stateless: sockets register with the
/// reactor of the thread that creates them.
pub(crate) struct PosixNet;

fn new_socket(domain: Domain) -> Result<Socket> {
    new_socket_of(domain, Type::STREAM)
}

fn new_socket_of(domain: Domain, ty: Type) -> Result<Socket> {
    // socket2 sets SOCK_CLOEXEC on Linux; ask for nonblocking explicitly.
    Socket::new(domain, ty.nonblocking(), None).map_err(Error::from)
}

/// A registered nonblocking socket. `reg` is declared first so it is
/// dropped (deregistered) before `sock` closes the fd.
struct Sock {
    reg: Registration,
    sock: Socket,
}

impl Sock {
    fn new(sock: Socket) -> Result<Sock> {
        // SAFETY: `sock` owns the fd and is dropped after `reg` (field
        // order), so the fd stays open for the registration's lifetime.
        let reg = unsafe { Registration::new(sock.as_raw_fd()) }?;
        Ok(Sock { reg, sock })
    }

    /// Retries `op` until it does not return `WouldBlock`, waiting for
    /// `interest` in between.
    fn io<T>(&self, interest: Interest, mut op: impl FnMut(&Socket) -> io::Result<T>) -> Result<T> {
        loop {
            match op(&self.sock) {
                Ok(v) => return Ok(v),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.reg.wait(interest)?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::from(e)),
            }
        }
    }
}

impl NetBackend for PosixNet {
    fn listen(&self, addr: &Addr, opts: &ListenOptions) -> Result<Box<dyn ListenerImpl>> {
        let (sa, domain) = to_sockaddr(addr)?;
        let sock = new_socket(domain)?;
        if domain != Domain::UNIX {
            sock.set_reuse_address(opts.reuse_addr)?;
            sock.set_reuse_port(opts.reuse_port)?;
        }
        sock.bind(&sa)?;
        let backlog = i32::try_from(opts.backlog).unwrap_or(i32::MAX);
        sock.listen(backlog)?;
        Ok(Box::new(PosixListener {
            s: Sock::new(sock)?,
        }))
    }

    fn connect(&self, addr: &Addr) -> Result<Box<dyn StreamImpl>> {
        let (sa, domain) = to_sockaddr(addr)?;
        let sock = new_socket(domain)?;
        let s = Sock::new(sock)?;
        match s.sock.connect(&sa) {
            Ok(()) => {}
            Err(e)
                if e.raw_os_error() == Some(libc::EINPROGRESS)
                    || e.kind() == io::ErrorKind::WouldBlock =>
            {
                s.reg.wait(Interest::Writable)?;
                if let Some(err) = s.sock.take_error()? {
                    return Err(Error::from(err));
                }
            }
            Err(e) => return Err(Error::from(e)),
        }
        if domain != Domain::UNIX {
            s.sock.set_tcp_nodelay(true)?;
        }
        Ok(Box::new(PosixStream { s }))
    }

    fn bind_datagram(&self, addr: &Addr) -> Result<Box<dyn DatagramImpl>> {
        let (sa, domain) = to_sockaddr(addr)?;
        let sock = new_socket_of(domain, Type::DGRAM)?;
        sock.bind(&sa)?;
        Ok(Box::new(PosixDatagram {
            s: Sock::new(sock)?,
        }))
    }

    fn socketpair(&self) -> Result<(Box<dyn StreamImpl>, Box<dyn StreamImpl>)> {
        let (a, b) = Socket::pair(Domain::UNIX, Type::STREAM.nonblocking().cloexec(), None)?;
        Ok((
            Box::new(PosixStream { s: Sock::new(a)? }),
            Box::new(PosixStream { s: Sock::new(b)? }),
        ))
    }

    fn getaddrinfo(&self, host: &str, service: &str) -> Result<Vec<Addr>> {
        getaddrinfo(host, service)
    }
}

struct PosixListener {
    s: Sock,
}

impl ListenerImpl for PosixListener {
    fn accept(&self) -> Result<(Box<dyn StreamImpl>, Addr)> {
        // accept4 with SOCK_CLOEXEC | SOCK_NONBLOCK in one call.
        let (sock, addr) = self.s.io(Interest::Readable, |s| {
            let (c, a) = s.accept()?;
            c.set_nonblocking(true)?;
            Ok((c, a))
        })?;
        if addr.as_socket().is_some() {
            let _ = sock.set_tcp_nodelay(true);
        }
        let peer = from_sockaddr(&addr);
        Ok((
            Box::new(PosixStream {
                s: Sock::new(sock)?,
            }),
            peer,
        ))
    }

    fn local_addr(&self) -> Result<Addr> {
        Ok(from_sockaddr(&self.s.sock.local_addr()?))
    }
}

struct PosixStream {
    s: Sock,
}

impl Source for PosixStream {
    fn read(&self, buf: &mut [u8]) -> Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let reg = &self.s.reg;
        if reg.read_drained() {
            // The last read emptied the socket: no `recv` until new data.
            reg.wait(Interest::Readable)?;
        }
        let n = self.s.io(Interest::Readable, |mut s| s.read(buf))?;
        // A stream socket returns less than asked only when its receive
        // queue is empty (an end of stream still to come is told apart by
        // EPOLLRDHUP, see `mark_read_drained`).
        if n > 0 && n < buf.len() {
            reg.mark_read_drained();
        }
        Ok(n)
    }

    /// One `readv`.
    fn read_vectored(&self, bufs: &mut [io::IoSliceMut<'_>]) -> Result<usize> {
        if bufs.iter().all(|b| b.is_empty()) {
            return Ok(0);
        }
        self.s
            .io(Interest::Readable, |mut s| s.read_vectored(&mut *bufs))
    }
}

impl Sink for PosixStream {
    fn write(&self, buf: &[u8]) -> Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.s.io(Interest::Writable, |mut s| s.write(buf))
    }

    fn write_vectored(&self, bufs: &[io::IoSlice<'_>]) -> Result<usize> {
        // One slice with bytes (a buffered writer's usual flush) goes out
        // with `send`: `sendmsg` would copy and check a msghdr and iovec.
        let mut full = bufs.iter().filter(|b| !b.is_empty());
        match (full.next(), full.next()) {
            (None, _) => Ok(0),
            (Some(one), None) => self.write(one),
            _ => self.s.io(Interest::Writable, |s| s.send_vectored(bufs)),
        }
    }
}

impl Shutdown for PosixStream {
    fn shutdown(&self, how: ShutdownKind) -> Result<()> {
        if how != ShutdownKind::Write {
            // The kernel reports it too (EPOLLRDHUP); this spares a wait.
            self.s.reg.mark_read_closed();
        }
        let how = match how {
            ShutdownKind::Read => StdShutdown::Read,
            ShutdownKind::Write => StdShutdown::Write,
            ShutdownKind::Both => StdShutdown::Both,
        };
        self.s.sock.shutdown(how).map_err(Error::from)
    }
}

impl StreamImpl for PosixStream {
    fn local_addr(&self) -> Result<Addr> {
        Ok(from_sockaddr(&self.s.sock.local_addr()?))
    }

    fn peer_addr(&self) -> Result<Addr> {
        Ok(from_sockaddr(&self.s.sock.peer_addr()?))
    }

    fn set_nodelay(&self, on: bool) -> Result<()> {
        match self.s.sock.local_addr()?.as_socket() {
            Some(_) => self.s.sock.set_tcp_nodelay(on).map_err(Error::from),
            None => Ok(()),
        }
    }

    fn close(self: Box<Self>) -> Result<()> {
        let PosixStream {
            s: Sock { reg, sock },
        } = *self;
        drop(reg);
        let fd = std::os::fd::IntoRawFd::into_raw_fd(sock);
        // SAFETY: `into_raw_fd` gave us sole ownership of `fd`; it is closed
        // exactly once, here.
        if unsafe { libc::close(fd) } != 0 {
            return Err(Error::from(io::Error::last_os_error()).context("closing a socket"));
        }
        Ok(())
    }
}

struct PosixDatagram {
    s: Sock,
}

impl DatagramImpl for PosixDatagram {
    fn send_to(&self, buf: &[u8], addr: &Addr) -> Result<usize> {
        let (sa, _) = to_sockaddr(addr)?;
        self.s.io(Interest::Writable, |s| s.send_to(buf, &sa))
    }

    fn recv_from(&self, buf: &mut [u8]) -> Result<(usize, Addr)> {
        self.s.io(Interest::Readable, |s| {
            // SAFETY: `recv_from` only writes initialised bytes into the
            // buffer and reports how many; viewing `&mut [u8]` as
            // `&mut [MaybeUninit<u8>]` is sound because u8 has no invalid
            // values and we never write uninitialised data back.
            let uninit = unsafe {
                std::slice::from_raw_parts_mut(
                    buf.as_mut_ptr().cast::<std::mem::MaybeUninit<u8>>(),
                    buf.len(),
                )
            };
            let (n, a) = s.recv_from(uninit)?;
            Ok((n, from_sockaddr(&a)))
        })
    }

    fn local_addr(&self) -> Result<Addr> {
        Ok(from_sockaddr(&self.s.sock.local_addr()?))
    }
}
