//! A TCP echo server.
//!
//! By default it listens on a free local port, serves three clients of its
//! own (in fibers of the same program), prints what they got back, and
//! exits. With `--serve` it keeps serving until interrupted:
//!
//! ```text
//! cargo run --example echo_server
//! cargo run --example echo_server -- --serve 127.0.0.1:7777   # then: nc 127.0.0.1 7777
//! ```

// The prelude brings in the flow traits (`Source`, `Sink`, `Shutdown`) whose
// methods `read_all`, `write_all` and `shutdown` are, plus `Result`,
// `Switch` and the other common types.
use weft::net::{self, Addr, ServerOptions};
use weft::prelude::*;
use weft::{fiber, flow};

/// Serves one connection: everything read is written back, until the
/// client closes its side. The stream is closed when the handler returns.
fn echo(conn: net::Stream, peer: Addr) -> Result<()> {
    let n = flow::copy(&conn, &conn)?;
    println!("server: echoed {n} bytes to {peer}");
    Ok(())
}

/// One client: sends a few lines, half-closes, and reads the echo.
fn client(netw: &net::Net, addr: &Addr, id: usize) -> Result<String> {
    let conn = netw.connect(addr)?;
    for line in 1..=2 {
        conn.write_all(format!("client {id}, line {line}\n").as_bytes())?;
    }
    // Tell the server we are done sending; it then finishes echoing and
    // closes, which ends our `read_all`.
    conn.shutdown(ShutdownKind::Write)?;
    conn.read_all()
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let serve = args.next().as_deref() == Some("--serve");
    let addr: Addr = args.next().as_deref().unwrap_or("127.0.0.1:0").parse()?;

    weft::run(|env| {
        let netw = env.net();
        let listener = netw.listen(&addr)?;
        let addr = listener.local_addr()?;
        println!("listening on {addr}");
        if serve {
            // Runs until the process is interrupted. At most 1024
            // connections are handled at once (the default); errors in one
            // connection are reported and do not stop the server.
            return net::run_server(&listener, ServerOptions::default(), echo);
        }
        Switch::run(|sw| {
            // A daemon fiber does not keep the switch open: it is cancelled
            // once the rest of the switch (the clients) has finished.
            sw.fork_daemon(|| net::run_server(&listener, ServerOptions::default(), echo));
            // Three clients at once, each in its own fiber.
            let replies = fiber::map(3, 1..=3, |id| client(&netw, &addr, id))?;
            for (id, reply) in (1..=3).zip(replies) {
                print!("client {id} got back:\n{reply}");
            }
            Ok(())
        })
    })
}
