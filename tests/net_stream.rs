//! Conformance: stream sockets (TCP and Unix). Runs on every backend that
//! has a network; the mock's in-memory network is still to come.

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

#[rstest]
#[case::posix(Backend::Posix)]
fn tcp_echo_round_trip(#[case] backend: Backend) {
    let _serial = serial();
    let before = open_fds();
    weft::run_with(backend, |env| {
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
    })
    .unwrap();
    assert_eq!(open_fds(), before, "no fd leaked");
}

#[rstest]
#[case::posix(Backend::Posix)]
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
fn unix_socket_round_trip(#[case] backend: Backend) {
    let _serial = serial();
    let dir = std::env::temp_dir().join(format!("weft-unix-{}", std::process::id()));
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
fn a_cancelled_accept_returns_and_closes_nothing_it_should_not(#[case] backend: Backend) {
    let _serial = serial();
    let before = open_fds();
    weft::run_with(backend, |env| {
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
    })
    .unwrap();
    assert_eq!(open_fds(), before, "no fd leaked");
}

#[rstest]
#[case::posix(Backend::Posix)]
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
#[case::posix(Backend::Posix)]
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
