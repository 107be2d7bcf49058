//! TCP echo, io_uring against POSIX, side by side in one run.
//!
//! A weft server on one thread echoes 64-byte messages for 32 blocking
//! clients (one OS thread each) doing round trips for a fixed time; the
//! same load runs against each backend in turn. Run with
//! `cargo run --release -p weft-uring --example echo_compare [seconds]`.

use std::io::{Read, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use weft_core::flow::{Sink, Source};
use weft_core::{Env, Result, RunConfig, Switch};

const CLIENTS: usize = 32;
const MSG: usize = 64;

fn server(env: &Env, ready: mpsc::Sender<std::net::SocketAddr>) -> Result<()> {
    let listener = env.net().listen(&"127.0.0.1:0".parse()?)?;
    match listener.local_addr()? {
        weft_core::net::Addr::Ip(a) => ready.send(a).unwrap(),
        other => panic!("{other}"),
    }
    Switch::run(|sw| {
        for _ in 0..CLIENTS {
            let (conn, _) = listener.accept()?;
            sw.fork(move || {
                let mut buf = [0u8; 4096];
                loop {
                    let n = conn.read(&mut buf)?;
                    if n == 0 {
                        return Ok(());
                    }
                    conn.write_all(&buf[..n])?;
                }
            });
        }
        Ok(())
    })
}

fn measure(name: &str, secs: f64, run: fn(mpsc::Sender<std::net::SocketAddr>)) -> f64 {
    let (tx, rx) = mpsc::channel();
    let srv = std::thread::spawn(move || run(tx));
    let addr = rx.recv().unwrap();
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            std::thread::spawn(move || {
                let mut s = std::net::TcpStream::connect(addr).unwrap();
                s.set_nodelay(true).unwrap();
                let msg = [7u8; MSG];
                let mut back = [0u8; MSG];
                let mut n = 0u64;
                while Instant::now() < deadline {
                    s.write_all(&msg).unwrap();
                    s.read_exact(&mut back).unwrap();
                    n += 1;
                }
                n
            })
        })
        .collect();
    let total: u64 = clients.into_iter().map(|c| c.join().unwrap()).sum();
    srv.join().unwrap();
    let rate = total as f64 / secs;
    println!("{name:>6}: {rate:>10.0} round trips/s");
    rate
}

fn main() {
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    if let Err(e) = weft_uring::probe() {
        eprintln!("io_uring unavailable: {e}");
        return;
    }
    let posix = measure("posix", secs, |tx| {
        weft_posix::run(&RunConfig::default(), |env| server(env, tx)).unwrap()
    });
    let uring = measure("uring", secs, |tx| {
        weft_uring::run(&RunConfig::default(), |env| {
            server(env, tx)?;
            let s = weft_uring::stats()?;
            println!(
                "        {} ops in {} io_uring_enter calls ({:.1} per call)",
                s.ops,
                s.enters,
                s.ops as f64 / s.enters.max(1) as f64
            );
            Ok(())
        })
        .unwrap()
    });
    println!("uring / posix = {:.2}", uring / posix);
}
