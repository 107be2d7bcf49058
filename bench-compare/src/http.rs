//! HTTP/1.1 "hello" with keep-alive: a minimal server per runtime (read the
//! request head up to its blank line, answer a fixed response), loaded by
//! `wrk -t1 -c64`, or by a built-in generator when wrk is not installed.

use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use crate::echo::{announce, cpu_per_op};
use crate::report::{Imp, Measure, Work};
use crate::runner::{interleaved_with, Server};
use crate::Opts;

const RESPONSE: &str =
    "HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nHello, world!";
const CONNECTIONS: usize = 64;

/// Measures every HTTP server.
pub fn run_all(opts: &Opts, out: &mut Vec<Measure>) {
    let wrk = Command::new("wrk").arg("--version").output().is_ok();
    if !wrk {
        println!("  (wrk not found: using the built-in load generator; `apt-get install -y wrk` for wrk)");
    }
    let imps = [
        Imp::WeftUring,
        Imp::WeftPosix,
        Imp::TokioCt,
        Imp::TokioMt,
        Imp::May,
    ];
    out.extend(interleaved_with(
        Work::Http,
        Some(Work::HttpCpu),
        &imps,
        opts.rounds,
        |imp| {
            let server = Server::start("http", imp.key())?;
            let c0 = server.cpu_time();
            let t0 = Instant::now();
            let rate = if wrk {
                run_wrk(server.port, opts.load())
            } else {
                builtin_load(server.port, opts.load())
            }?;
            let share = match (c0, server.cpu_time()) {
                (Some(a), Some(b)) => Some((b - a).as_secs_f64() / t0.elapsed().as_secs_f64()),
                _ => None,
            };
            let note = format!(
                "{}{}",
                if wrk {
                    "wrk"
                } else {
                    "built-in load generator"
                },
                share.map_or(String::new(), |c| format!(", server CPU {:.0}%", c * 100.0))
            );
            Ok((rate, share.map(|c| cpu_per_op(c, rate)), note))
        },
    ));
}

/// `wrk -t1 -c64 -dNs`: requests per second from its summary.
fn run_wrk(port: u16, dur: Duration) -> Result<f64, String> {
    let secs = dur.as_secs_f64().ceil().max(1.0) as u64;
    let out = Command::new("wrk")
        .args(["-t1", &format!("-c{CONNECTIONS}"), &format!("-d{secs}s")])
        .arg(format!("http://127.0.0.1:{port}/"))
        .output()
        .map_err(|e| format!("running wrk: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("Non-2xx") || text.contains("Socket errors") {
        // Reported, not fatal: the rate still says how fast it served.
        eprintln!("  wrk reported errors:\n{text}");
    }
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("no Requests/sec in wrk's output: {text}"))
}

/// 64 blocking keep-alive connections, each on its own thread.
fn builtin_load(port: u16, dur: Duration) -> Result<f64, String> {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let ready = Arc::new(Barrier::new(CONNECTIONS + 1));
    let request = format!("GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    let mut threads = Vec::new();
    for _ in 0..CONNECTIONS {
        let (stop, done, ready, request) =
            (stop.clone(), done.clone(), ready.clone(), request.clone());
        threads.push(std::thread::spawn(move || -> Result<(), String> {
            let conn = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"));
            ready.wait();
            let mut conn = conn?;
            conn.set_nodelay(true).map_err(|e| e.to_string())?;
            let mut back = vec![0u8; RESPONSE.len()];
            while !stop.load(Ordering::Relaxed) {
                conn.write_all(request.as_bytes())
                    .map_err(|e| format!("write: {e}"))?;
                conn.read_exact(&mut back)
                    .map_err(|e| format!("read: {e}"))?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        }));
    }
    ready.wait();
    std::thread::sleep(Duration::from_millis(300));
    let (c0, t0) = (done.load(Ordering::Relaxed), Instant::now());
    std::thread::sleep(dur);
    let (c1, t1) = (done.load(Ordering::Relaxed), Instant::now());
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join()
            .map_err(|_| "a client thread panicked".to_string())??;
    }
    Ok((c1 - c0) as f64 / (t1 - t0).as_secs_f64())
}

/// Child side: serves HTTP on 127.0.0.1 with `imp` until killed.
pub fn serve(imp: &str) -> Result<(), String> {
    match Imp::from_key(imp) {
        Some(Imp::WeftUring) => weft_serve(weft::Backend::Uring),
        Some(Imp::WeftPosix) => weft_serve(weft::Backend::Posix),
        Some(Imp::TokioCt) => tokio_serve(false),
        Some(Imp::TokioMt) => tokio_serve(true),
        Some(Imp::May) => may_serve(),
        _ => Err(format!("no HTTP server for {imp}")),
    }
}

/// Skips one request head: lines up to and including the blank one.
fn weft_skip_head<S: weft::flow::Source>(r: &mut weft::buf_read::BufReader<S>) -> weft::Result<()> {
    loop {
        let mut len = 0usize;
        r.skip_while(|b| {
            len += 1;
            b != b'\n'
        })?;
        r.char('\n')?;
        // `len` counted the newline too: 1 is "\n", 2 is "\r\n".
        if len <= 2 {
            return Ok(());
        }
    }
}

fn weft_serve(backend: weft::Backend) -> Result<(), String> {
    use weft::buf_read::BufReader;
    crate::echo::weft_server(backend, |conn| {
        let mut r = BufReader::new(conn, 16 * 1024);
        // Responses collect in the writer and go out when this fiber
        // waits for the next request.
        weft::buf_write::with_flow(conn, |w| {
            while !r.at_end_of_input()? {
                weft_skip_head(&mut r)?;
                w.string(RESPONSE)?;
            }
            Ok(())
        })
    })
}

/// A tokio runtime: current_thread, or multi_thread with 2 workers.
pub fn tokio_runtime(multi: bool) -> Result<tokio::runtime::Runtime, String> {
    let mut b = if multi {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(2);
        b
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    b.enable_all().build().map_err(|e| e.to_string())
}

fn tokio_serve(multi: bool) -> Result<(), String> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let rt = tokio_runtime(multi)?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        announce(listener.local_addr().map_err(|e| e.to_string())?.port());
        loop {
            let (mut conn, _) = listener.accept().await.map_err(|e| e.to_string())?;
            tokio::spawn(async move {
                let _ = conn.set_nodelay(true);
                let (rd, mut wr) = conn.split();
                let mut rd = BufReader::with_capacity(16 * 1024, rd);
                let mut line = Vec::with_capacity(256);
                'conn: loop {
                    loop {
                        line.clear();
                        match rd.read_until(b'\n', &mut line).await {
                            Ok(0) | Err(_) => break 'conn,
                            Ok(_) if line.len() <= 2 => break,
                            Ok(_) => {}
                        }
                    }
                    if wr.write_all(RESPONSE.as_bytes()).await.is_err() {
                        break;
                    }
                }
            });
        }
    })
}

fn may_serve() -> Result<(), String> {
    may::config().set_workers(1);
    let listener = may::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    announce(listener.local_addr().map_err(|e| e.to_string())?.port());
    let acceptor = may::go!(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            may::go!(move || {
                let _ = conn.set_nodelay(true);
                let Ok(mut wr) = conn.try_clone() else { return };
                let mut rd = std::io::BufReader::with_capacity(16 * 1024, conn);
                let mut line = Vec::with_capacity(256);
                'conn: loop {
                    loop {
                        line.clear();
                        match rd.read_until(b'\n', &mut line) {
                            Ok(0) | Err(_) => break 'conn,
                            Ok(_) if line.len() <= 2 => break,
                            Ok(_) => {}
                        }
                    }
                    if wr.write_all(RESPONSE.as_bytes()).is_err() {
                        break;
                    }
                }
            });
        }
    });
    acceptor
        .join()
        .map_err(|_| "the may acceptor panicked".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_weft_server_reads_whole_request_heads() {
        let two =
            "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /x HTTP/1.1\r\nHost: b\r\nAccept: */*\r\n\r\n";
        let mut r = weft::buf_read::BufReader::from_bytes(two);
        weft_skip_head(&mut r).unwrap();
        assert_eq!(r.pos(), 27);
        weft_skip_head(&mut r).unwrap();
        assert!(r.at_end_of_input().unwrap());
        // A head cut short is an error, not a request.
        let mut cut = weft::buf_read::BufReader::from_bytes("GET / HTTP/1.1\r\nHost");
        assert!(weft_skip_head(&mut cut).is_err());
    }

    #[test]
    fn the_builtin_generator_counts_answered_requests() {
        // A plain threaded server answering every request head.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                std::thread::spawn(move || {
                    let mut wr = conn.try_clone().unwrap();
                    let mut rd = std::io::BufReader::new(conn);
                    let mut line = Vec::new();
                    loop {
                        line.clear();
                        match rd.read_until(b'\n', &mut line) {
                            Ok(0) | Err(_) => return,
                            Ok(_) if line.len() <= 2 => {
                                if wr.write_all(RESPONSE.as_bytes()).is_err() {
                                    return;
                                }
                            }
                            Ok(_) => {}
                        }
                    }
                });
            }
        });
        let rate = builtin_load(port, Duration::from_millis(200)).unwrap();
        assert!(rate > 0.0, "{rate}");
    }
}
