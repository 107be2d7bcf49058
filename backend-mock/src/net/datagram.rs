//! Datagram sockets (UDP and Unix datagram) on the in-memory network.
//!
//! Each bound socket has a receive queue of at most 256 datagrams. Sending
//! never waits:
//!
//! * to an IP address nobody is bound to, the datagram is lost and
//!   `send_to` still succeeds, as with UDP;
//! * to a Unix path nobody is bound to, `send_to` fails with
//!   `Net(ConnectionRefused)`;
//! * to a socket whose queue is full, the datagram is dropped (for Unix
//!   datagram sockets too, where a kernel would make the sender wait).
//!
//! `recv_from` waits for a datagram and returns its length, truncated to
//! the buffer (the rest of that datagram is discarded), and its sender: the
//! sending socket's address, with an unspecified IP replaced by the IP the
//! datagram was sent to. A cancelled `recv_from` takes no datagram.
//!
//! ```
//! use weft::net::Addr;
//! use weft::{ErrorKind, NetError};
//!
//! weft::mock::run(|env| {
//!     let net = env.net();
//!     let server = net.bind_datagram(&"127.0.0.1:53".parse()?)?;
//!     let client = net.bind_datagram(&"0.0.0.0:0".parse()?)?;
//!     client.send_to(b"query", &"127.0.0.1:53".parse()?)?;
//!     client.send_to(b"lost", &"127.0.0.1:54".parse()?)?; // nobody: no error
//!     let mut buf = [0u8; 512];
//!     let (n, from) = server.recv_from(&mut buf)?;
//!     assert_eq!(&buf[..n], b"query");
//!     assert_eq!(from, "127.0.0.1:49152".parse()?);
//!
//!     let unix = net.bind_datagram(&Addr::Unix("/tmp/me".into()))?;
//!     let err = unix.send_to(b"hi", &Addr::Unix("/tmp/nobody".into())).unwrap_err();
//!     assert_eq!(err.kind(), &ErrorKind::Net(NetError::ConnectionRefused));
//!     Ok(())
//! })
//! .unwrap();
//! ```

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use weft_core::net::{Addr, DatagramImpl};
use weft_core::{Error, ErrorKind, NetError, Result};

use super::table::{
    net_err, overlaps, same_family, source_for, DgramEntry, Proto, Table, TableKey, DGRAM_QUEUE_LEN,
};
use super::wait::{lock, wait_until, Poll, Waiters};

/// The largest UDP payload (over IPv4).
const MAX_UDP_PAYLOAD: usize = 65_507;

/// A bound datagram socket on the in-memory network.
pub(crate) struct MemDatagram {
    net: Arc<Mutex<Table>>,
    id: u64,
    addr: Addr,
}

/// Binds a datagram socket on `addr` (port 0: an ephemeral UDP port).
pub(crate) fn bind(net: &Arc<Mutex<Table>>, addr: &Addr) -> Result<MemDatagram> {
    let mut t = lock(net);
    let id = t.id();
    let bound = match addr {
        Addr::Unix(path) => {
            t.bind_unix(path, id)?;
            addr.clone()
        }
        Addr::Ip(want) => {
            let taken = t.dgrams.values().any(|d| match &d.addr {
                Addr::Ip(b) => overlaps(want, b),
                Addr::Unix(_) => false,
            });
            Addr::Ip(t.bind_ip(Proto::Udp, *want, taken)?)
        }
    };
    t.dgrams.insert(
        id,
        DgramEntry {
            addr: bound.clone(),
            queue: VecDeque::new(),
            receivers: Waiters::default(),
        },
    );
    Ok(MemDatagram {
        net: net.clone(),
        id,
        addr: bound,
    })
}

impl DatagramImpl for MemDatagram {
    fn send_to(&self, buf: &[u8], addr: &Addr) -> Result<usize> {
        same_family(&self.addr, addr)?;
        let from = match (&self.addr, addr) {
            (Addr::Ip(local), Addr::Ip(dest)) => {
                if buf.len() > MAX_UDP_PAYLOAD {
                    return Err(Error::msg(
                        ErrorKind::InvalidInput,
                        format!(
                            "a UDP datagram of {} bytes is larger than {MAX_UDP_PAYLOAD}",
                            buf.len()
                        ),
                    ));
                }
                Addr::Ip(source_for(*local, *dest))
            }
            (local, _) => local.clone(),
        };
        let mut t = lock(&self.net);
        let Some(id) = t.find_dgram(addr) else {
            return match addr {
                Addr::Ip(_) => Ok(buf.len()),
                Addr::Unix(_) => Err(net_err(
                    NetError::ConnectionRefused,
                    format!("no datagram socket is bound to {addr}"),
                )),
            };
        };
        let d = t.dgrams.get_mut(&id).expect("found above");
        if d.queue.len() < DGRAM_QUEUE_LEN {
            d.queue.push_back((buf.to_vec(), from));
            d.receivers.wake_all();
        }
        Ok(buf.len())
    }

    fn recv_from(&self, buf: &mut [u8]) -> Result<(usize, Addr)> {
        let id = self.id;
        wait_until(&self.net, "net recv_from", |t| {
            let d = t.dgrams.get_mut(&id).expect("datagram socket open");
            match d.queue.pop_front() {
                Some((data, from)) => {
                    let n = data.len().min(buf.len());
                    buf[..n].copy_from_slice(&data[..n]);
                    Ok(Poll::Ready((n, from)))
                }
                None => Ok(Poll::Pending(TableKey::Recv(id))),
            }
        })
    }

    fn local_addr(&self) -> Result<Addr> {
        Ok(self.addr.clone())
    }
}

impl Drop for MemDatagram {
    fn drop(&mut self) {
        let mut t = lock(&self.net);
        if let Some(mut d) = t.dgrams.remove(&self.id) {
            t.unbind(Proto::Udp, &d.addr);
            d.receivers.wake_all();
        }
    }
}

impl std::fmt::Debug for MemDatagram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemDatagram")
            .field("addr", &self.addr)
            .finish()
    }
}
