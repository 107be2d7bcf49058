//! An HTTP/1.1 server with keep-alive, parsing with the `httparse` crate.
//!
//! weft's `BufReader` does the buffering (with a size limit, so a client
//! cannot make it buffer without end) and `httparse` parses what is
//! buffered. By default the program serves two clients of its own, each
//! sending three requests over one kept-alive connection, prints the
//! exchanges and exits; with `--serve` it keeps serving:
//!
//! ```text
//! cargo run --example http_server
//! cargo run --example http_server -- --serve 127.0.0.1:8080
//! curl -v http://127.0.0.1:8080/ http://127.0.0.1:8080/stats   # one connection, two requests
//! ```

use std::cell::Cell;

use weft::buf_read::BufReader;
use weft::flow::{Sink, Source};
use weft::net::{self, Addr, ServerOptions};
use weft::{fiber, ErrorKind, Result, Switch};

/// The largest request head plus body we accept.
const MAX_REQUEST: usize = 64 * 1024;

/// The parts of a request the handler needs, copied out of the buffer.
struct Request {
    method: String,
    path: String,
    /// HTTP/1.1 keeps the connection open unless told otherwise; 1.0 closes
    /// it unless told otherwise.
    keep_alive: bool,
    body: Vec<u8>,
}

/// Reads the next request, or `None` if the client closed the connection
/// between requests.
fn read_request<S: Source>(r: &mut BufReader<S>) -> Result<Option<Request>> {
    if r.at_end_of_input()? {
        return Ok(None);
    }
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        let head_len = match req.parse(r.peek()) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                // Wait for at least one more byte (fails with
                // BufferLimitExceeded past MAX_REQUEST, EndOfFile if the
                // client hangs up half-way).
                let more = r.buffered() + 1;
                r.ensure(more)?;
                continue;
            }
            Err(e) => return Err(r.parse_error(format!("bad HTTP request: {e}"))),
        };
        let header = |name: &str| {
            req.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| String::from_utf8_lossy(h.value).to_ascii_lowercase())
        };
        if header("transfer-encoding").is_some() {
            // Kept out of this example; a request we cannot frame ends the
            // connection.
            return Err(r.parse_error("chunked request bodies are not supported"));
        }
        let connection = header("connection");
        let keep_alive = match req.version {
            Some(1) => connection.as_deref() != Some("close"),
            _ => connection.as_deref() == Some("keep-alive"),
        };
        let body_len = match header("content-length") {
            None => 0,
            Some(v) => v
                .trim()
                .parse::<usize>()
                .map_err(|_| r.parse_error(format!("bad Content-Length {v:?}")))?,
        };
        let mut request = Request {
            method: req.method.unwrap_or("").to_string(),
            path: req.path.unwrap_or("").to_string(),
            keep_alive,
            body: Vec::new(),
        };
        r.consume(head_len);
        request.body = r.take(body_len)?;
        return Ok(Some(request));
    }
}

/// Writes one response. Its length is always known, so the connection can
/// stay open for the next request.
fn respond(conn: &impl Sink, status: &str, body: &[u8], keep_alive: bool) -> Result<()> {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n",
        body.len()
    );
    // One write for head and body: no small packets.
    conn.write_all(&[head.as_bytes(), body].concat())
}

/// Serves one connection: requests one after another until the client
/// closes or asks to.
fn serve(conn: net::Stream, peer: Addr, served: &Cell<u64>) -> Result<()> {
    let mut reader = BufReader::new(&conn, MAX_REQUEST);
    loop {
        let req = match read_request(&mut reader) {
            Ok(Some(req)) => req,
            Ok(None) => return Ok(()),
            Err(e) if e.is_cancelled() => return Err(e),
            Err(e) => {
                let status = match e.kind() {
                    ErrorKind::BufferLimitExceeded => "413 Content Too Large",
                    _ => "400 Bad Request",
                };
                println!("server: {peer}: {e}");
                return respond(&conn, status, format!("{e}\n").as_bytes(), false);
            }
        };
        served.set(served.get() + 1);
        let (status, body) = match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/") => ("200 OK", b"Hello from weft\n".to_vec()),
            ("GET", "/stats") => (
                "200 OK",
                format!("{} requests\n", served.get()).into_bytes(),
            ),
            ("POST", "/echo") => ("200 OK", req.body),
            _ => ("404 Not Found", b"no such page\n".to_vec()),
        };
        respond(&conn, status, &body, req.keep_alive)?;
        if !req.keep_alive {
            return Ok(());
        }
    }
}

/// Reads one response: (status code, body).
fn read_response<S: Source>(r: &mut BufReader<S>) -> Result<(u16, String)> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(r.peek()) {
            Ok(httparse::Status::Complete(n)) => {
                let code = resp.code.unwrap_or(0);
                let len = resp
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.parse().ok())
                    .ok_or_else(|| r.parse_error("response without Content-Length"))?;
                r.consume(n);
                return Ok((code, r.take_string(len)?));
            }
            Ok(httparse::Status::Partial) => {
                let more = r.buffered() + 1;
                r.ensure(more)?;
            }
            Err(e) => return Err(r.parse_error(format!("bad HTTP response: {e}"))),
        }
    }
}

/// A client sending three requests over one connection.
fn client(netw: &net::Net, addr: &Addr, id: usize) -> Result<()> {
    let conn = netw.connect(addr)?;
    let mut reader = BufReader::new(&conn, MAX_REQUEST);
    let body = format!("hello from client {id}");
    let requests = [
        "GET / HTTP/1.1\r\nHost: demo\r\n\r\n".to_string(),
        format!(
            "POST /echo HTTP/1.1\r\nHost: demo\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
        "GET /missing HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n".to_string(),
    ];
    for req in &requests {
        conn.write_all(req.as_bytes())?;
        let (code, body) = read_response(&mut reader)?;
        let line = req.lines().next().unwrap_or("");
        println!("client {id}: {line} -> {code} {:?}", body.trim_end());
    }
    // We said `Connection: close`: the server has closed its side.
    assert!(reader.at_end_of_input()?);
    Ok(())
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let serve_forever = args.next().as_deref() == Some("--serve");
    let addr: Addr = args.next().as_deref().unwrap_or("127.0.0.1:0").parse()?;

    weft::run(|env| {
        let netw = env.net();
        let listener = netw.listen(&addr)?;
        let addr = listener.local_addr()?;
        // `Addr` prints as `tcp:IP:PORT`; a URL wants the plain `IP:PORT`.
        let ip = addr.socket_addr().expect("listening on an IP address");
        println!("serving http://{ip}/");
        // Fibers may borrow from the enclosing scope: the handler counts
        // requests in a plain `Cell`, no `Arc` or atomics needed.
        let served = Cell::new(0);
        let handler = |conn, peer| serve(conn, peer, &served);
        if serve_forever {
            return net::run_server(&listener, ServerOptions::default(), handler);
        }
        Switch::run(|sw| {
            sw.fork_daemon(|| net::run_server(&listener, ServerOptions::default(), handler));
            fiber::iter(2, 1..=2, |id| client(&netw, &addr, id))
        })?;
        println!("served {} requests", served.get());
        Ok(())
    })
}
