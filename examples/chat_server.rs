//! A line-based chat server: every line a client sends goes to every other
//! client.
//!
//! Each connection has two fibers: one reads the client's lines and puts
//! them in the other clients' outboxes (bounded `Stream`s), the other takes
//! from its own outbox and writes to the socket, so a slow client never
//! holds up the rest. `fiber::first` ties the two together: when the reader
//! finishes (the client left), the writer is cancelled.
//!
//! By default three clients of the program's own join, chat, and leave;
//! with `--serve` the server keeps running:
//!
//! ```text
//! cargo run --example chat_server
//! cargo run --example chat_server -- --serve 127.0.0.1:7000   # then: telnet 127.0.0.1 7000
//! ```

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use weft::buf_read::BufReader;
use weft::fiber;
use weft::net::{self, Addr, ServerOptions};
use weft::prelude::*;
// `sync::Stream` (a queue between fibers), not `net::Stream` (a socket).
use weft::sync::{Promise, Resolver, Stream};

/// Messages queued for one client; when its outbox is full, a client that
/// does not keep up misses messages instead of slowing everyone down.
const OUTBOX: usize = 64;
/// The longest line a client may send.
const MAX_LINE: usize = 4096;

/// The room: who is connected, and how to reach them. Only the fibers of
/// this thread touch it, so a `RefCell` is enough.
#[derive(Default)]
struct Room {
    members: RefCell<BTreeMap<u64, (String, Stream<String>)>>,
    next_id: Cell<u64>,
}

impl Room {
    fn join(&self, name: &str) -> (u64, Stream<String>) {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let outbox = Stream::new(OUTBOX);
        self.members
            .borrow_mut()
            .insert(id, (name.to_string(), outbox.clone()));
        (id, outbox)
    }

    fn leave(&self, id: u64) {
        self.members.borrow_mut().remove(&id);
    }

    /// Queues `line` for everyone but `from`. Never suspends (the borrow of
    /// the member table cannot be held across a fiber switch), so a client
    /// whose outbox is full misses the line.
    fn broadcast(&self, from: u64, line: &str) {
        for (&id, (_, outbox)) in self.members.borrow().iter() {
            if id != from {
                // `add` would wait on a full outbox; `try_add` never waits
                // and hands the message back instead, which we drop.
                let _ = outbox.try_add(format!("{line}\n"));
            }
        }
    }

    fn online(&self) -> usize {
        self.members.borrow().len()
    }
}

/// Serves one client: a name first, then chat lines until it leaves.
fn serve(room: &Room, conn: net::Stream) -> Result<()> {
    let mut reader = BufReader::new(&conn, MAX_LINE);
    conn.write_all(b"* your name?\n")?;
    let name = reader.line()?.trim().to_string();
    let (id, outbox) = room.join(&name);
    room.broadcast(id, &format!("* {name} joined"));
    conn.write_all(format!("* welcome {name}, {} online\n", room.online()).as_bytes())?;

    let result = fiber::first(
        || loop {
            // Ends on end of stream (an `EndOfFile` error) or `/quit`.
            let line = reader.line()?;
            if line == "/quit" {
                return Ok(());
            }
            room.broadcast(id, &format!("{name}: {line}"));
        },
        || loop {
            let msg = outbox.take()?;
            conn.write_all(msg.as_bytes())?;
        },
    );
    room.leave(id);
    room.broadcast(id, &format!("* {name} left"));
    match result {
        Err(e) if e.kind() == &ErrorKind::EndOfFile => Ok(()), // hung up
        r => r,
    }
}

/// A demo client: joins, says when it has been welcomed, waits for `go`,
/// says one thing, and reads until it has heard from the two others.
fn client(
    netw: &net::Net,
    addr: &Addr,
    name: &str,
    welcomed: Resolver<()>,
    go: &Promise<()>,
) -> Result<()> {
    let conn = netw.connect(addr)?;
    let mut reader = BufReader::new(&conn, MAX_LINE);
    reader.line()?; // "* your name?"
    conn.write_all(format!("{name}\n").as_bytes())?;
    println!("{name} sees: {}", reader.line()?);
    let _ = welcomed.resolve(());
    go.wait()?;
    conn.write_all(format!("hello, I am {name}\n").as_bytes())?;
    let mut heard = 0;
    while heard < 2 {
        let line = reader.line()?;
        if !line.starts_with('*') {
            heard += 1;
        }
        println!("{name} sees: {line}");
    }
    conn.write_all(b"/quit\n")
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let serve_forever = args.next().as_deref() == Some("--serve");
    let addr: Addr = args.next().as_deref().unwrap_or("127.0.0.1:0").parse()?;

    weft::run(|env| {
        let netw = env.net();
        let listener = netw.listen(&addr)?;
        let addr = listener.local_addr()?;
        println!("chat server on {addr}");
        let room = Room::default();
        let handler = |conn, _peer| serve(&room, conn);
        if serve_forever {
            return net::run_server(&listener, ServerOptions::default(), handler);
        }
        Switch::run(|sw| {
            sw.fork_daemon(|| net::run_server(&listener, ServerOptions::default(), handler));
            let (netw, addr) = (&netw, &addr);
            let (go, start) = Promise::new();
            let go = &go;
            Switch::run(|clients| {
                // Join one at a time, so that who sees which join notice
                // does not depend on timing; then everyone talks at once.
                for name in ["alice", "bob", "carol"] {
                    let (welcomed, resolver) = Promise::new();
                    clients.fork(move || client(netw, addr, name, resolver, go));
                    welcomed.wait()?;
                }
                let _ = start.resolve(());
                Ok(())
            })
        })
    })
}
