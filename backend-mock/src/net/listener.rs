//! Listening, connecting and accepting on the in-memory network.
//!
//! A listener is an entry in the [`Table`] with a bounded accept queue (its
//! backlog, at least 1). `connect` finds the listener for the address,
//! creates a connection, queues the server end and returns the client end at
//! once, as a kernel completes a TCP handshake before `accept`. While the
//! queue is full, `connect` waits (like a SYN that is not answered yet) —
//! until an `accept` makes room, or the listener is closed, which refuses
//! it. Nobody listening refuses at once with `Net(ConnectionRefused)`.
//!
//! Dropping a listener unbinds its address at once (for Unix paths too: no
//! socket file is left behind) and closes the connections still queued:
//! their clients read end of stream and get `BrokenPipe` when they write.
//!
//! ```
//! use std::time::Duration;
//! use weft::net::{Addr, ListenOptions};
//!
//! let (result, trace) = weft::mock::run_traced(|env| {
//!     let net = env.net();
//!     let opts = ListenOptions { backlog: 1, ..Default::default() };
//!     let listener = net.listen_with(&Addr::Unix("/run/app.sock".into()), &opts)?;
//!     let addr = listener.local_addr()?;
//!     let _first = net.connect(&addr)?; // queued: the backlog is now full
//!     weft::fiber::both(
//!         || {
//!             let _second = net.connect(&addr)?; // waits for room
//!             weft::traceln!("second connected");
//!             Ok(())
//!         },
//!         || {
//!             env.clock().sleep(Duration::from_secs(1))?;
//!             weft::traceln!("accepting");
//!             listener.accept().map(drop)
//!         },
//!     )
//! });
//! result.unwrap();
//! assert_eq!(trace, ["mock time is now 1", "accepting", "second connected"]);
//! ```

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use weft_core::net::{Addr, ListenOptions, ListenerImpl, StreamImpl};
use weft_core::{NetError, Result};

use super::stream::{connect_pair, EndParts, MemStream};
use super::table::{net_err, overlaps, route, ListenerEntry, Proto, Table, TableKey};
use super::wait::{lock, wait_until, Poll, Waiters};

/// A listening socket on the in-memory network.
pub(crate) struct MemListener {
    net: Arc<Mutex<Table>>,
    id: u64,
    addr: Addr,
}

/// Binds `addr` and starts listening.
pub(crate) fn listen(
    net: &Arc<Mutex<Table>>,
    addr: &Addr,
    opts: &ListenOptions,
) -> Result<MemListener> {
    let mut t = lock(net);
    let id = t.id();
    let bound = match addr {
        Addr::Unix(path) => {
            t.bind_unix(path, id)?;
            addr.clone()
        }
        Addr::Ip(want) => {
            let taken = t.listeners.values().any(|l| match &l.addr {
                Addr::Ip(b) => overlaps(want, b) && !(opts.reuse_port && l.reuse_port),
                Addr::Unix(_) => false,
            });
            Addr::Ip(t.bind_ip(Proto::Tcp, *want, taken)?)
        }
    };
    let backlog = usize::try_from(opts.backlog).unwrap_or(usize::MAX).max(1);
    t.listeners.insert(
        id,
        ListenerEntry {
            addr: bound.clone(),
            reuse_port: opts.reuse_port,
            backlog,
            queue: VecDeque::new(),
            accepters: Waiters::default(),
            connectors: Waiters::default(),
        },
    );
    Ok(MemListener {
        net: net.clone(),
        id,
        addr: bound,
    })
}

/// Connects to `addr`, waiting while the listener's backlog is full.
pub(crate) fn connect(net: &Arc<Mutex<Table>>, addr: &Addr) -> Result<MemStream> {
    let parts = wait_until(net, "net connect (backlog full)", |t| try_connect(t, addr))?;
    Ok(MemStream::new(net.clone(), parts))
}

/// One attempt to connect: the client end, or the listener to wait on.
fn try_connect(t: &mut Table, addr: &Addr) -> Result<Poll<EndParts, TableKey>> {
    let Some(id) = t.find_listener(addr) else {
        return Err(net_err(
            NetError::ConnectionRefused,
            format!("nobody listens on {addr}"),
        ));
    };
    let l = &t.listeners[&id];
    if l.queue.len() >= l.backlog {
        return Ok(Poll::Pending(TableKey::Connect(id)));
    }
    let (client, server, port) = match (addr, &l.addr) {
        (Addr::Ip(dest), Addr::Ip(bound)) => {
            let dest = route(*dest);
            let port = t.ports.ephemeral(Proto::Tcp)?;
            let client = SocketAddr::new(dest.ip(), port);
            let server = SocketAddr::new(dest.ip(), bound.port());
            (Addr::Ip(client), Addr::Ip(server), Some(port))
        }
        // Unix clients are unnamed; the server end is named by the path.
        (_, bound) => (Addr::Unix(Default::default()), bound.clone(), None),
    };
    let (c, s) = connect_pair(t, client, server, port);
    let l = t.listeners.get_mut(&id).expect("listener found above");
    l.queue.push_back(s);
    l.accepters.wake_all();
    Ok(Poll::Ready(c))
}

impl ListenerImpl for MemListener {
    fn accept(&self) -> Result<(Box<dyn StreamImpl>, Addr)> {
        let id = self.id;
        let parts = wait_until(&self.net, "net accept", |t| {
            let l = t.listeners.get_mut(&id).expect("listener open");
            match l.queue.pop_front() {
                Some(p) => {
                    l.connectors.wake_all();
                    Ok(Poll::Ready(p))
                }
                None => Ok(Poll::Pending(TableKey::Accept(id))),
            }
        })?;
        let peer = parts.peer.clone();
        Ok((Box::new(MemStream::new(self.net.clone(), parts)), peer))
    }

    fn local_addr(&self) -> Result<Addr> {
        Ok(self.addr.clone())
    }
}

impl Drop for MemListener {
    fn drop(&mut self) {
        let pending = {
            let mut t = lock(&self.net);
            let Some(mut l) = t.listeners.remove(&self.id) else {
                return;
            };
            t.unbind(Proto::Tcp, &l.addr);
            // Connectors waiting for room re-check and are refused.
            l.connectors.wake_all();
            l.accepters.wake_all();
            for p in &l.queue {
                p.unregister(&mut t);
            }
            l.queue
        };
        // Outside the table lock: closing takes each connection's lock.
        for p in &pending {
            p.close_conn();
        }
    }
}

impl std::fmt::Debug for MemListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemListener")
            .field("addr", &self.addr)
            .finish()
    }
}
