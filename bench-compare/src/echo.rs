//! TCP echo: a server per runtime (one thread, except tokio multi_thread),
//! loaded by 32 blocking client threads doing 64-byte round trips.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use crate::report::{Imp, Measure, Work};
use crate::runner::{interleaved_with, Server};
use crate::Opts;

const CLIENTS: usize = 32;
const MSG: usize = 64;

/// Measures every echo server.
pub fn run_all(opts: &Opts, out: &mut Vec<Measure>) {
    let imps = [
        Imp::WeftUring,
        Imp::WeftPosix,
        Imp::TokioCt,
        Imp::TokioMt,
        Imp::May,
    ];
    out.extend(interleaved_with(
        Work::Echo,
        Some(Work::EchoCpu),
        &imps,
        opts.rounds,
        |imp| {
            let server = Server::start("echo", imp.key())?;
            let (rate, cpu) = load(server.port, opts.load(), || server.cpu_time())?;
            let note = cpu.map_or(String::new(), |c| format!("server CPU {:.0}%", c * 100.0));
            Ok((rate, cpu.map(|c| cpu_per_op(c, rate)), note))
        },
    ));
}

/// The server's CPU time per operation in µs, from its CPU share (1.0 =
/// one core busy) and the rate: a cost that, unlike the rate, hardly
/// depends on whether the server or the load generator was the bottleneck.
pub fn cpu_per_op(share: f64, rate: f64) -> f64 {
    share / rate.max(1e-9) * 1e6
}

/// Runs the 32 clients against `port` for `dur` (after a short warm-up);
/// returns round trips per second and the server's CPU use over the same
/// window (1.0 = one core busy).
fn load(
    port: u16,
    dur: Duration,
    cpu: impl Fn() -> Option<Duration>,
) -> Result<(f64, Option<f64>), String> {
    let stop = Arc::new(AtomicBool::new(false));
    let counts: Arc<Vec<AtomicU64>> = Arc::new((0..CLIENTS).map(|_| AtomicU64::new(0)).collect());
    let ready = Arc::new(Barrier::new(CLIENTS + 1));
    let mut threads = Vec::new();
    for i in 0..CLIENTS {
        let (stop, counts, ready) = (stop.clone(), counts.clone(), ready.clone());
        threads.push(std::thread::spawn(move || -> Result<(), String> {
            let conn = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"));
            ready.wait();
            let mut conn = conn?;
            conn.set_nodelay(true).map_err(|e| e.to_string())?;
            let msg = [b'x'; MSG];
            let mut back = [0u8; MSG];
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                conn.write_all(&msg).map_err(|e| format!("write: {e}"))?;
                conn.read_exact(&mut back)
                    .map_err(|e| format!("read: {e}"))?;
                n += 1;
                counts[i].store(n, Ordering::Relaxed);
            }
            Ok(())
        }));
    }
    ready.wait();
    let total = || {
        counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum::<u64>()
    };
    std::thread::sleep(Duration::from_millis(300));
    let (c0, t0, cpu0) = (total(), Instant::now(), cpu());
    std::thread::sleep(dur);
    let (c1, t1, cpu1) = (total(), Instant::now(), cpu());
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join()
            .map_err(|_| "a client thread panicked".to_string())??;
    }
    let wall = (t1 - t0).as_secs_f64();
    let cpu_share = match (cpu0, cpu1) {
        (Some(a), Some(b)) => Some((b - a).as_secs_f64() / wall),
        _ => None,
    };
    Ok(((c1 - c0) as f64 / wall, cpu_share))
}

/// Child side: serves echo on 127.0.0.1 with `imp` until killed.
pub fn serve(imp: &str) -> Result<(), String> {
    match Imp::from_key(imp) {
        Some(Imp::WeftUring) => weft_serve(weft::Backend::Uring),
        Some(Imp::WeftPosix) => weft_serve(weft::Backend::Posix),
        Some(Imp::TokioCt) => tokio_serve(false),
        Some(Imp::TokioMt) => tokio_serve(true),
        Some(Imp::May) => may_serve(),
        _ => Err(format!("no echo server for {imp}")),
    }
}

/// Prints the port for the parent.
pub fn announce(port: u16) {
    println!("LISTENING {port}");
    let _ = std::io::stdout().flush();
}

/// Serves each connection with `handle` (Nagle off) on `backend`: a
/// listener on a free loopback port, announced to the parent, errors of
/// single connections ignored. Shared by the echo and HTTP servers.
pub fn weft_server(
    backend: weft::Backend,
    handle: impl Fn(&weft::net::Stream) -> weft::Result<()>,
) -> Result<(), String> {
    use weft::net::{self, ListenOptions, ServerOptions};
    weft::run_with(backend, |env| {
        let opts = ListenOptions {
            backlog: 1024,
            ..ListenOptions::default()
        };
        let listener = env.net().listen_with(&"127.0.0.1:0".parse()?, &opts)?;
        match listener.local_addr()? {
            net::Addr::Ip(a) => announce(a.port()),
            other => unreachable!("listening on {other}"),
        }
        let quiet = ServerOptions {
            on_error: Box::new(|_| {}),
            ..ServerOptions::default()
        };
        net::run_server(&listener, quiet, |conn, _peer| {
            conn.set_nodelay(true)?;
            handle(&conn)
        })
    })
    .map_err(|e| e.to_string())
}

fn weft_serve(backend: weft::Backend) -> Result<(), String> {
    use weft::flow::{Sink, Source};
    weft_server(backend, |conn| {
        let mut buf = [0u8; 4096];
        loop {
            match conn.read(&mut buf)? {
                0 => return Ok(()),
                n => conn.write_all(&buf[..n])?,
            }
        }
    })
}

fn tokio_serve(multi: bool) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rt = crate::http::tokio_runtime(multi)?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        announce(listener.local_addr().map_err(|e| e.to_string())?.port());
        loop {
            let (mut conn, _) = listener.accept().await.map_err(|e| e.to_string())?;
            tokio::spawn(async move {
                let _ = conn.set_nodelay(true);
                let mut buf = [0u8; 4096];
                loop {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if conn.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
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
            let Ok(mut conn) = conn else { continue };
            may::go!(move || {
                let _ = conn.set_nodelay(true);
                let mut buf = [0u8; 4096];
                loop {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if conn.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
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
    fn the_load_generator_counts_round_trips() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n @ 1..) = conn.read(&mut buf) {
                        if conn.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let (rate, cpu) = load(port, Duration::from_millis(200), || None).unwrap();
        assert!(rate > 0.0, "{rate}");
        assert_eq!(cpu, None);
    }

    #[test]
    fn a_refused_connection_is_an_error() {
        // Bind and drop to get a port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = load(port, Duration::from_millis(50), || None).unwrap_err();
        assert!(e.contains("connect"), "{e}");
    }
}
