//! io_uring cancellation: a cancelled operation submits `AsyncCancel` and
//! its fiber resumes only with the original CQE, so nothing the kernel did
//! is lost and no fd leaks.

use std::cell::Cell;
use std::time::{Duration, Instant};

use weft_core::flow::{Sink, Source};
use weft_core::{fiber, time::with_timeout, RunConfig};
use weft_uring::ops;

/// Tests here count the process's fds: run them one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn run<T>(main: impl FnOnce(&weft_core::Env) -> weft_core::Result<T>) -> T {
    weft_uring::run(&RunConfig::default(), main).unwrap()
}

#[test]
fn a_cancelled_pipe_read_resumes_only_after_its_cqe() {
    let _s = serial();
    run(|env| {
        let (r, w) = ops::pipe()?;
        let mut buf = [0u8; 32];
        for _ in 0..20 {
            let t0 = Instant::now();
            let err = with_timeout(env.mono_clock(), Duration::from_millis(5), || {
                r.read(&mut buf)
            })
            .unwrap_err();
            assert!(err.is_timeout(), "{err}");
            assert!(t0.elapsed() < Duration::from_secs(2), "cancelled promptly");
            // The read's completion (-ECANCELED) has been consumed: the
            // fiber was resumed by it, not by the cancellation.
            assert_eq!(weft_uring::stats()?.in_flight, 0);
        }
        w.write(b"after")?;
        let n = r.read(&mut buf)?;
        assert_eq!(&buf[..n], b"after", "the pipe still works, nothing lost");
        Ok(())
    });
}

#[test]
fn a_read_cancelled_as_data_arrives_loses_no_bytes() {
    let _s = serial();
    let (mut got_data, mut got_cancel) = (0, 0);
    run(|_env| {
        let (r, w) = ops::pipe()?;
        for i in 0..200u32 {
            let mut buf = [0u8; 8];
            let read_result = Cell::new(None);
            let expected = b'a' + (i % 26) as u8;
            // The writer wins the race to finish, which cancels the reader
            // just as its data arrives; sometimes the SQE is already in the
            // kernel (after a yield), sometimes not yet submitted.
            let r2 = fiber::first(
                || {
                    let res = r.read(&mut buf);
                    read_result.set(Some(res.as_ref().map(|n| *n).map_err(|e| e.is_cancelled())));
                    res
                },
                || {
                    if i % 2 == 0 {
                        fiber::yield_now()?;
                    }
                    let byte = [b'a' + (i % 26) as u8];
                    // SAFETY: writing one byte from a live buffer to the
                    // pipe's write end, which `w` keeps open.
                    let n = unsafe { libc::write(w.raw().unwrap(), byte.as_ptr().cast(), 1) };
                    assert_eq!(n, 1);
                    Ok(0)
                },
            )?;
            assert_eq!(r2, 0);
            match read_result.take() {
                // The byte reached the kernel's read in the same instant as
                // the cancellation, but a cancelled read never hands it to
                // a caller that `first` is about to drop: it is kept...
                Some(Ok(n)) => panic!("a cancelled read consumed {n} bytes"),
                Some(Err(true)) => got_cancel += 1,
                // ...or the read never reached the kernel at all.
                None => got_data += 1,
                Some(Err(false)) => panic!("the read failed"),
            }
            // Either way the byte is still there, for the next read.
            let n = r.read(&mut buf)?;
            assert_eq!(&buf[..n], &[expected]);
        }
        Ok(())
    });
    assert_eq!(got_data + got_cancel, 200);
    eprintln!("race outcomes: {got_cancel} cancelled in flight, {got_data} before submission");
}

#[test]
fn an_accept_cancelled_while_a_client_connects_leaks_no_fd() {
    let _s = serial();
    let before = open_fds();
    let (mut accepted, mut cancelled) = (0, 0);
    run(|env| {
        let listener = env.net().listen(&"127.0.0.1:0".parse()?)?;
        let addr = match listener.local_addr()? {
            weft_core::net::Addr::Ip(a) => a,
            other => panic!("{other}"),
        };
        let mut clients = Vec::new();
        for i in 0..100 {
            let outcome = Cell::new(None);
            fiber::first(
                || {
                    let r = listener.accept();
                    outcome.set(Some(r.is_ok()));
                    r.map(|(conn, _)| {
                        // A connection that arrived anyway is ours: it is
                        // dropped (closed) by `first`, never leaked.
                        drop(conn);
                    })
                },
                || {
                    if i % 2 == 0 {
                        // Let the accept reach the kernel first.
                        fiber::yield_now()?;
                    }
                    clients.push(std::net::TcpStream::connect(addr).unwrap());
                    Ok(())
                },
            )?;
            match outcome.take() {
                Some(true) => accepted += 1,
                _ => cancelled += 1,
            }
        }
        // Connections left in the backlog are still accepted normally.
        let conn = weft_core::fiber::pair(
            || listener.accept().map(|(c, _)| c),
            || {
                clients.push(std::net::TcpStream::connect(addr).unwrap());
                Ok(())
            },
        )?
        .0;
        conn.write_all(b"x")?;
        drop(conn);
        drop(clients);
        Ok(())
    });
    assert_eq!(open_fds(), before, "no fd leaked");
    assert_eq!(accepted + cancelled, 100);
    eprintln!("accept race: {accepted} returned a connection, {cancelled} cancelled");
}

#[test]
fn a_stream_read_cancelled_by_a_timeout_keeps_the_bytes_for_the_next_read() {
    let _s = serial();
    let before = open_fds();
    run(|env| {
        let (x, y) = env.net().socketpair()?;
        let mut buf = [0u8; 16];
        let err = with_timeout(env.mono_clock(), Duration::from_millis(5), || {
            x.read(&mut buf)
        })
        .unwrap_err();
        assert!(err.is_timeout(), "{err}");
        y.write_all(b"late bytes")?;
        let n = x.read(&mut buf)?;
        assert_eq!(&buf[..n], b"late bytes");
        x.close()?;
        y.close()?;
        Ok(())
    });
    assert_eq!(open_fds(), before);
}

#[test]
fn many_reads_cancelled_at_random_points_lose_and_reorder_nothing() {
    let _s = serial();
    let before = open_fds();
    run(|env| {
        let clock = env.mono_clock();
        const PAIRS: usize = 20;
        const BYTES: usize = 20_000;
        let pairs: Vec<_> = (0..PAIRS)
            .map(|_| env.net().socketpair())
            .collect::<weft_core::Result<_>>()?;
        let timeouts = Cell::new(0u32);
        weft_core::Switch::run(|sw| {
            for (p, (x, y)) in pairs.iter().enumerate() {
                let timeouts = &timeouts;
                sw.fork(move || {
                    // The writer: chunks of varying size, with pauses that
                    // make the reader's timeouts fire mid-stream.
                    let data: Vec<u8> = (0..BYTES).map(|i| (i % 251) as u8).collect();
                    let mut off = 0;
                    let mut k = p;
                    while off < BYTES {
                        k = k.wrapping_mul(31).wrapping_add(7);
                        let n = (k % 1500 + 1).min(BYTES - off);
                        y.write_all(&data[off..off + n])?;
                        off += n;
                        if k % 2 == 0 {
                            clock.sleep(Duration::from_micros((k % 700) as u64))?;
                        }
                    }
                    Ok(())
                });
                sw.fork(move || {
                    let mut got = 0;
                    let mut buf = [0u8; 997];
                    while got < BYTES {
                        // A read raced against a short sleep. If both finish
                        // in the same turn, `first_with` keeps the read's
                        // result; what this checks is the backend's part: a
                        // read that is cancelled consumes nothing.
                        let r = fiber::first_with(
                            || x.read(&mut buf).map(Some),
                            || {
                                clock.sleep(Duration::from_micros(40))?;
                                Ok(None)
                            },
                            |a, b| a.or(b),
                        );
                        match r {
                            Ok(Some(n)) => {
                                assert!(n > 0, "no early end of stream");
                                for (j, b) in buf[..n].iter().enumerate() {
                                    assert_eq!(*b, ((got + j) % 251) as u8, "in order, none lost");
                                }
                                got += n;
                            }
                            Ok(None) => timeouts.set(timeouts.get() + 1),
                            Err(e) => return Err(e),
                        }
                    }
                    Ok(())
                });
            }
            Ok(())
        })?;
        assert_eq!(weft_uring::stats()?.in_flight, 0);
        eprintln!("{} reads were cancelled mid-stream", timeouts.get());
        Ok(())
    });
    assert_eq!(open_fds(), before);
}

#[test]
fn a_recv_cancelled_as_a_datagram_arrives_keeps_it_for_the_next_recv() {
    let _s = serial();
    run(|env| {
        let net = env.net();
        // The sender is a plain socket: its send does not suspend, so the
        // receiver is cancelled right after the datagram reaches the kernel.
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = net.bind_datagram(&"127.0.0.1:0".parse()?)?;
        let b_addr = match b.local_addr()? {
            weft_core::net::Addr::Ip(x) => x,
            other => panic!("{other}"),
        };
        for i in 0..100u32 {
            let mut buf = [0u8; 16];
            fiber::first(
                || {
                    let r = b.recv_from(&mut buf);
                    assert!(r.is_err(), "a cancelled recv took a datagram: {r:?}");
                    r.map(|_| ())
                },
                || {
                    if i % 2 == 0 {
                        fiber::yield_now()?;
                    }
                    a.send_to(format!("d{i}").as_bytes(), b_addr).unwrap();
                    Ok(())
                },
            )?;
            let (n, from) = b.recv_from(&mut buf)?;
            assert_eq!(&buf[..n], format!("d{i}").as_bytes(), "datagram {i} kept");
            assert_eq!(from, weft_core::net::Addr::Ip(a.local_addr().unwrap()));
        }
        Ok(())
    });
}
