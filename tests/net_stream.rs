//! Conformance: stream sockets (TCP and Unix), on every backend that has a
//! network: POSIX sockets and the mock's in-memory network.
//!
//! Resource checks depend on the backend: under POSIX the process's open
//! fds are counted (`/proc/self/fd`); under the mock the in-memory network
//! must have nothing open after the run ([`weft_mock::MemNet::open_resources`]).

use std::io::{BufRead, BufReader, Write};

use rstest::rstest;
use weft::flow::{Shutdown, ShutdownKind, Sink, Source};
use weft::net::Addr;
use weft::{Backend, ErrorKind, NetError, Switch};

/// fd counts are per process: tests in this file run one at a time so one
/// test's sockets do not show up in another's count.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Runs `main` on `backend` and checks that it leaked nothing: no fd under
/// POSIX, nothing left open on the mock's in-memory network.
fn run_leak_checked<T>(backend: Backend, main: impl FnOnce(&weft::Env) -> weft::Result<T>) -> T {
    match backend {
        Backend::Mock => {
            let net = weft_mock::MemNet::new();
            let r = weft::mock::Config::new()
                .net(net.clone())
                .run(main)
                .unwrap();
            let open = net.open_resources();
            assert!(open.is_empty(), "left open on the mock network: {open:?}");
            r
        }
        _ => {
            let before = open_fds();
            let r = weft::run_with(backend, main).unwrap();
            assert_eq!(open_fds(), before, "no fd leaked");
            r
        }
    }
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn tcp_echo_round_trip(#[case] backend: Backend) {
    let _serial = serial();
    run_leak_checked(backend, |env| {
        let net = env.net();
        let listener = net.listen(&"127.0.0.1:0".parse()?)?;
        let addr = listener.local_addr()?;
        Switch::run(|sw| {
            sw.fork(|| {
                let (conn, _peer) = listener.accept()?;
                let mut buf = [0u8; 1024];
                loop {
                    let n = conn.read(&mut buf)?;
                    if n == 0 {
                        return Ok(());
                    }
                    conn.write_all(&buf[..n])?;
                }
            });
            let client = net.connect(&addr)?;
            for i in 0..100 {
                let msg = format!("message {i}\n");
                client.write_all(msg.as_bytes())?;
                let mut got = vec![0u8; msg.len()];
                client.read_exact(&mut got)?;
                assert_eq!(got, msg.as_bytes());
            }
            client.shutdown(ShutdownKind::Write)?;
            assert_eq!(
                client.read(&mut [0u8; 8])?,
                0,
                "echo side closed after our shutdown"
            );
            Ok(())
        })
    });
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn sync_crates_use_streams_through_std_io(#[case] backend: Backend) {
    let _serial = serial();
    weft::run_with(backend, |env| {
        let net = env.net();
        let listener = net.listen(&"127.0.0.1:0".parse()?)?;
        let addr = listener.local_addr()?;
        fweft(&net, &listener, &addr)
    })
    .unwrap();

    fn fweft(
        net: &weft::net::Net,
        listener: &weft::net::Listener,
        addr: &Addr,
    ) -> weft::Result<()> {
        weft::fiber::both(
            || {
                let (conn, _) = listener.accept()?;
                let mut w = &conn;
                writeln!(w, "line one")?;
                writeln!(w, "line two")?;
                Ok(())
            },
            || {
                let conn = net.connect(addr)?;
                let lines: Vec<String> = BufReader::new(&conn).lines().collect::<Result<_, _>>()?;
                assert_eq!(lines, ["line one", "line two"]);
                Ok(())
            },
        )
    }
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn unix_socket_round_trip(#[case] backend: Backend) {
    let _serial = serial();
    let dir = std::env::temp_dir().join(format!("weft-unix-{}-{backend:?}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("sock");
    let _ = std::fs::remove_file(&path);
    weft::run_with(backend, |env| {
        let net = env.net();
        let addr = Addr::Unix(path.clone());
        let listener = net.listen(&addr)?;
        weft::fiber::both(
            || {
                let (conn, _) = listener.accept()?;
                conn.write_all(b"hello over unix")?;
                Ok(())
            },
            || {
                let conn = net.connect(&addr)?;
                assert_eq!(conn.read_all()?, "hello over unix");
                Ok(())
            },
        )
    })
    .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn connection_refused_names_the_address(#[case] backend: Backend) {
    let _serial = serial();
    weft::run_with(backend, |env| {
        let net = env.net();
        // Bind then drop a listener to find a port nobody listens on.
        let port = {
            let l = net.listen(&"127.0.0.1:0".parse()?)?;
            l.local_addr()?
        };
        let err = net.connect(&port).unwrap_err();
        assert_eq!(
            err.kind(),
            &ErrorKind::Net(NetError::ConnectionRefused),
            "{err}"
        );
        assert!(
            err.to_string().contains(&format!("connecting to {port}")),
            "{err}"
        );
        Ok(())
    })
    .unwrap();
}

#[test]
fn unix_addresses_have_no_socket_addr() {
    let unix: Addr = "unix:/tmp/weft.sock".parse().unwrap();
    assert_eq!(unix.socket_addr(), None);
    assert_eq!(unix.port(), None);
    let err = std::net::SocketAddr::try_from(unix).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Net(NetError::InvalidAddress));
    assert_eq!(
        err.to_string(),
        "net: invalid address, unix:/tmp/weft.sock is not an IP address"
    );
}

#[test]
fn malformed_addresses_are_clear_errors() {
    for bad in [
        "",
        "localhost",
        "127.0.0.1",
        "1.2.3.4:99999",
        "unix:",
        "tcp:[::1]",
    ] {
        let err = bad.parse::<Addr>().unwrap_err();
        assert_eq!(
            err.kind(),
            &ErrorKind::Net(NetError::InvalidAddress),
            "{bad:?}: {err}"
        );
        assert!(
            err.to_string().contains("parsing a network address"),
            "{err}"
        );
    }
    assert_eq!(
        "tcp:127.0.0.1:80".parse::<Addr>().unwrap().to_string(),
        "tcp:127.0.0.1:80"
    );
    assert_eq!(
        "[::1]:8080".parse::<Addr>().unwrap().to_string(),
        "tcp:[::1]:8080"
    );
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn a_cancelled_accept_returns_and_closes_nothing_it_should_not(#[case] backend: Backend) {
    let _serial = serial();
    run_leak_checked(backend, |env| {
        let net = env.net();
        let clock = env.mono_clock();
        let listener = net.listen(&"127.0.0.1:0".parse()?)?;
        let err = weft::time::with_timeout(clock, std::time::Duration::from_millis(20), || {
            listener.accept().map(|_| ())
        })
        .unwrap_err();
        assert!(err.is_timeout(), "{err}");
        // The listener still works after the cancelled accept.
        let addr = listener.local_addr()?;
        weft::fiber::both(
            || listener.accept().map(|_| ()),
            || net.connect(&addr).map(|_| ()),
        )
    });
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn getaddrinfo_resolves_localhost(#[case] backend: Backend) {
    let _serial = serial();
    weft::run_with(backend, |env| {
        let addrs = env.net().getaddrinfo("localhost", "80")?;
        assert!(
            addrs
                .iter()
                .any(|a| matches!(a, Addr::Ip(ip) if ip.ip().is_loopback() && ip.port() == 80)),
            "{addrs:?}"
        );
        let err = env
            .net()
            .getaddrinfo("localhost", "no-such-service")
            .unwrap_err();
        assert_eq!(
            err.kind(),
            &ErrorKind::Net(NetError::ResolveFailed),
            "{err}"
        );
        Ok(())
    })
    .unwrap();
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn run_server_bounds_concurrency_and_serves_everyone(#[case] backend: Backend) {
    let _serial = serial();
    use std::cell::Cell;
    weft::run_with(backend, |env| {
        let net = env.net();
        let clock = env.mono_clock();
        let listener = net.listen(&"127.0.0.1:0".parse()?)?;
        let addr = listener.local_addr()?;
        let (active, peak, served) = (Cell::new(0), Cell::new(0), Cell::new(0));
        Switch::run(|sw| {
            sw.fork_daemon(|| {
                let opts = weft::net::ServerOptions {
                    max_connections: 4,
                    ..Default::default()
                };
                weft::net::run_server(&listener, opts, |conn, _| {
                    active.set(active.get() + 1);
                    peak.set(peak.get().max(active.get()));
                    clock.sleep(std::time::Duration::from_millis(2))?;
                    conn.write_all(b"hi")?;
                    active.set(active.get() - 1);
                    served.set(served.get() + 1);
                    Ok(())
                })
            });
            weft::fiber::iter(50, 0..50, |_| {
                let c = net.connect(&addr)?;
                assert_eq!(c.read_all()?, "hi");
                Ok(())
            })
        })?;
        assert_eq!(served.get(), 50);
        assert_eq!(peak.get(), 4, "at most max_connections handlers at once");
        Ok(())
    })
    .unwrap();
}

#[rstest]
// POSIX only: it lowers RLIMIT_NOFILE so that accept(2) fails with EMFILE,
// and connects with std's real sockets; the mock has neither fds nor a
// kernel backlog to pre-fill.
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
fn run_server_survives_running_out_of_fds(#[case] backend: Backend) {
    let _serial = serial();
    use std::cell::{Cell, RefCell};
    use std::io::Read;
    // Clients connect (through the kernel backlog) before the server runs.
    let listener_std = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener_std.local_addr().unwrap();
    drop(listener_std);
    weft::run_with(backend, |env| {
        let net = env.net();
        let clock = env.mono_clock();
        let listener = net.listen(&Addr::Ip(addr))?;
        let mut clients: Vec<std::net::TcpStream> = (0..3)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        let errors = RefCell::new(Vec::new());
        let served = Cell::new(0);
        // No new fd can be allocated now: accept fails with EMFILE.
        let mut old = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: valid pointer to an rlimit struct.
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut old) };
        // The lowest free fd number: with the limit there, no fd can be
        // allocated at all.
        // SAFETY: dup of stdin's fd number; the new fd is closed at once.
        let lowest_free = unsafe {
            let fd = libc::dup(0);
            libc::close(fd);
            fd
        };
        let tight = libc::rlimit {
            rlim_cur: lowest_free as u64,
            rlim_max: old.rlim_max,
        };
        // SAFETY: valid pointer to an rlimit struct.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &tight) };
        let r = Switch::run(|sw| {
            sw.fork_daemon(|| {
                let opts = weft::net::ServerOptions {
                    on_error: Box::new(|e| errors.borrow_mut().push(e.clone())),
                    ..Default::default()
                };
                weft::net::run_server(&listener, opts, |conn, _| {
                    conn.write_all(b"ok")?;
                    served.set(served.get() + 1);
                    Ok(())
                })
            });
            clock.sleep(std::time::Duration::from_millis(30))?;
            // SAFETY: valid pointer to an rlimit struct.
            unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &old) };
            while served.get() < 3 {
                clock.sleep(std::time::Duration::from_millis(5))?;
            }
            Ok(())
        });
        // SAFETY: valid pointer to an rlimit struct (restore even on failure).
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &old) };
        r?;
        let errs = errors.borrow();
        assert!(!errs.is_empty(), "accept failed while out of fds");
        assert!(
            errs.iter()
                .all(|e| e.kind() == &ErrorKind::Fs(weft::FsError::TooManyOpenFiles)),
            "{errs:?}"
        );
        for c in &mut clients {
            let mut s = String::new();
            c.read_to_string(&mut s).unwrap();
            assert_eq!(s, "ok");
        }
        Ok(())
    })
    .unwrap();
}

/// A listener on 127.0.0.1 and one connection to it, both ends accepted.
fn connected_pair(
    net: &weft::net::Net,
) -> weft::Result<(weft::net::Listener, weft::net::Stream, weft::net::Stream)> {
    let listener = net.listen(&"127.0.0.1:0".parse()?)?;
    let client = net.connect(&listener.local_addr()?)?;
    let (server, _) = listener.accept()?;
    Ok((listener, client, server))
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn addresses_of_both_ends_agree(#[case] backend: Backend) {
    let _serial = serial();
    run_leak_checked(backend, |env| {
        let (listener, client, server) = connected_pair(&env.net())?;
        let addr = listener.local_addr()?;
        assert_eq!(client.peer_addr()?, addr);
        assert_eq!(server.local_addr()?, addr);
        assert_eq!(server.peer_addr()?, client.local_addr()?);
        match client.local_addr()? {
            Addr::Ip(a) => assert!(a.ip().is_loopback() && a.port() != 0, "{a}"),
            other => panic!("{other}"),
        }
        Ok(())
    });
}

/// `Addr::socket_addr` gives the `std::net::SocketAddr` of both ends, the
/// form other crates (and, on real backends, `std::net`) take.
#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn socket_addrs_are_plain_std_addresses(#[case] backend: Backend) {
    let _serial = serial();
    run_leak_checked(backend, |env| {
        let (listener, client, server) = connected_pair(&env.net())?;
        let addr = listener.local_addr()?;
        let ip = addr.socket_addr().expect("an IP listener");
        assert!(ip.ip().is_loopback() && ip.port() != 0, "{ip}");
        assert_eq!(addr.port(), Some(ip.port()));
        assert_eq!(addr.to_string(), format!("tcp:{ip}"));
        assert_eq!(std::net::SocketAddr::try_from(&addr)?, ip);
        assert_eq!(Addr::from(ip), addr);
        assert_eq!(
            server.peer_addr()?.socket_addr(),
            client.local_addr()?.socket_addr()
        );
        if backend != Backend::Mock {
            // A plain std client reaches the weft listener at that address.
            let std_client = std::net::TcpStream::connect(ip)
                .map_err(|e| weft::Error::from(e).context("std connect"))?;
            let (_conn, peer) = listener.accept()?;
            assert_eq!(peer.socket_addr(), Some(std_client.local_addr().unwrap()));
        }
        Ok(())
    });
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn shutdown_write_delivers_buffered_bytes_then_end_of_stream(#[case] backend: Backend) {
    let _serial = serial();
    run_leak_checked(backend, |env| {
        let (_listener, client, server) = connected_pair(&env.net())?;
        client.write_all(b"request")?;
        client.shutdown(ShutdownKind::Write)?;
        assert_eq!(server.read_all()?, "request", "bytes, then end of stream");
        assert_eq!(server.read(&mut [0u8; 4])?, 0, "end of stream again");
        // The other direction still works.
        server.write_all(b"response")?;
        drop(server);
        assert_eq!(client.read_all()?, "response");
        let err = client.write(b"more").unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::Net(NetError::BrokenPipe), "{err}");
        Ok(())
    });
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn shutdown_read_ends_reads(#[case] backend: Backend) {
    let _serial = serial();
    run_leak_checked(backend, |env| {
        let (x, _y) = env.net().socketpair()?;
        x.shutdown(ShutdownKind::Read)?;
        assert_eq!(x.read(&mut [0u8; 4])?, 0);
        Ok(())
    });
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn a_closed_peer_means_end_of_stream_and_broken_pipe(#[case] backend: Backend) {
    let _serial = serial();
    run_leak_checked(backend, |env| {
        let (x, y) = env.net().socketpair()?;
        y.write_all(b"last words")?;
        y.close()?;
        assert_eq!(x.read_all()?, "last words");
        let err = x.write_all(b"anyone there?").unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::Net(NetError::BrokenPipe), "{err}");
        Ok(())
    });
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn a_cancelled_read_loses_no_bytes(#[case] backend: Backend) {
    let _serial = serial();
    run_leak_checked(backend, |env| {
        let clock = env.mono_clock();
        let (x, y) = env.net().socketpair()?;
        let mut buf = [0u8; 16];
        let err = weft::time::with_timeout(clock, std::time::Duration::from_millis(10), || {
            x.read(&mut buf)
        })
        .unwrap_err();
        assert!(err.is_timeout(), "{err}");
        y.write_all(b"after")?;
        let n = x.read(&mut buf)?;
        assert_eq!(&buf[..n], b"after");
        Ok(())
    });
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn a_megabyte_crosses_with_backpressure(#[case] backend: Backend) {
    let _serial = serial();
    run_leak_checked(backend, |env| {
        let (_listener, client, server) = connected_pair(&env.net())?;
        let data: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
        let got = weft::fiber::pair(
            || {
                client.write_all(&data)?;
                client.shutdown(ShutdownKind::Write)
            },
            || {
                let mut v = Vec::new();
                server.read_to_end(&mut v)?;
                Ok(v)
            },
        )?
        .1;
        assert!(got == data, "the megabyte arrived intact");
        Ok(())
    });
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn write_vectored_sends_the_buffers_in_order(#[case] backend: Backend) {
    let _serial = serial();
    run_leak_checked(backend, |env| {
        let (x, y) = env.net().socketpair()?;
        let bufs = [
            std::io::IoSlice::new(b"head "),
            std::io::IoSlice::new(b""),
            std::io::IoSlice::new(b"body"),
        ];
        assert_eq!(x.write_vectored(&bufs)?, 9);
        let mut got = [0u8; 9];
        y.read_exact(&mut got)?;
        assert_eq!(&got, b"head body");
        // One buffer with bytes among empty ones (a plain send on io_uring).
        let one = [
            std::io::IoSlice::new(b""),
            std::io::IoSlice::new(b"tail"),
            std::io::IoSlice::new(b""),
        ];
        assert_eq!(x.write_vectored(&one)?, 4);
        let mut got = [0u8; 4];
        y.read_exact(&mut got)?;
        assert_eq!(&got, b"tail");
        Ok(())
    });
}

#[test]
fn a_socket_used_after_its_runtime_ended_is_an_error_not_a_hang() {
    let _serial = serial();
    let listener = weft::run_with(Backend::Posix, |env| {
        env.net().listen(&"127.0.0.1:0".parse()?)
    })
    .unwrap();
    let err = listener.accept().unwrap_err();
    assert!(
        err.to_string().contains("outside the weft runtime"),
        "{err}"
    );
}
