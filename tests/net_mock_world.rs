//! Whole networked programs under the mock backend's in-memory network:
//! deterministic traces, `run_server` limits, cancellation, refused and
//! queued connections, and the mock-only behaviours (name tables, small
//! pipes, datagrams to nobody, deadlock reports).

use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use weft::flow::{Shutdown, ShutdownKind, Sink, Source};
use weft::net::{Addr, ListenOptions, ServerOptions};
use weft::{fiber, traceln, ErrorKind, NetError, Switch};
use weft_mock::MemNet;

/// Runs `main` traced on a fresh in-memory network and checks that nothing
/// was left open on it.
fn run_world<T>(
    net: MemNet,
    main: impl FnOnce(&weft::Env) -> weft::Result<T>,
) -> (weft::Result<T>, Vec<String>) {
    let (r, trace) = weft::mock::Config::new().net(net.clone()).run_traced(main);
    let open = net.open_resources();
    assert!(open.is_empty(), "left open on the mock network: {open:?}");
    (r, trace)
}

/// An echo server on 127.0.0.1:7 and 20 clients, each sending one line.
fn echo_world() -> Vec<String> {
    let (r, trace) = run_world(MemNet::new(), |env| {
        let net = env.net();
        let listener = net.listen(&"127.0.0.1:7".parse()?)?;
        let addr = listener.local_addr()?;
        Switch::run(|sw| {
            sw.fork_daemon(|| {
                weft::net::run_server(&listener, ServerOptions::default(), |conn, peer| {
                    traceln!("server: {peer} connected");
                    let mut buf = [0u8; 7];
                    loop {
                        match conn.read(&mut buf)? {
                            0 => break,
                            n => conn.write_all(&buf[..n])?,
                        }
                    }
                    traceln!("server: {peer} done");
                    Ok(())
                })
            });
            fiber::iter(20, 0..20, |i| {
                let c = net.connect(&addr)?;
                c.write_all(format!("hello from client {i}").as_bytes())?;
                c.shutdown(ShutdownKind::Write)?;
                let reply = c.read_all()?;
                traceln!("client {i} at {}: {reply:?}", c.local_addr()?);
                Ok(())
            })
        })
    });
    r.unwrap();
    trace
}

#[test]
fn an_echo_server_with_twenty_clients_traces_the_same_every_time() {
    let first = echo_world();
    let second = echo_world();
    assert_eq!(first, second, "the same program gives the same trace");
    assert_eq!(first.len(), 60, "{first:#?}");
    assert_eq!(first[0], "server: tcp:127.0.0.1:49152 connected");
    for i in 0..20 {
        let port = 49152 + i;
        let line = format!("client {i} at tcp:127.0.0.1:{port}: \"hello from client {i}\"");
        assert!(first.contains(&line), "{line} in {first:#?}");
        let done = format!("server: tcp:127.0.0.1:{port} done");
        assert!(first.contains(&done), "{done} in {first:#?}");
    }
}

#[test]
fn run_server_handles_at_most_max_connections_at_once() {
    let (active, peak) = (Cell::new(0), Cell::new(0));
    let (r, trace) = run_world(MemNet::new(), |env| {
        let net = env.net();
        let clock = env.mono_clock();
        let listener = net.listen(&"127.0.0.1:0".parse()?)?;
        let addr = listener.local_addr()?;
        Switch::run(|sw| {
            sw.fork_daemon(|| {
                let opts = ServerOptions {
                    max_connections: 3,
                    ..Default::default()
                };
                weft::net::run_server(&listener, opts, |conn, _| {
                    active.set(active.get() + 1);
                    peak.set(peak.get().max(active.get()));
                    clock.sleep(Duration::from_secs(1))?;
                    active.set(active.get() - 1);
                    conn.write_all(b"served")
                })
            });
            fiber::iter(10, 0..10, |_| {
                assert_eq!(net.connect(&addr)?.read_all()?, "served");
                Ok(())
            })
        })
    });
    r.unwrap();
    assert_eq!(peak.get(), 3);
    // Ten one-second connections, three at a time: four rounds.
    assert_eq!(
        trace,
        [
            "mock time is now 1",
            "mock time is now 2",
            "mock time is now 3",
            "mock time is now 4"
        ]
    );
}

#[test]
fn a_client_blocked_on_read_sees_end_of_stream_when_the_server_is_cancelled() {
    let (r, trace) = run_world(MemNet::new(), |env| {
        let net = env.net();
        let clock = env.mono_clock();
        let listener = net.listen(&"127.0.0.1:80".parse()?)?;
        fiber::both(
            || {
                let r = weft::time::with_timeout(clock, Duration::from_secs(1), || {
                    let (_conn, peer) = listener.accept()?;
                    traceln!("server: accepted {peer}, now waiting");
                    Err::<(), _>(fiber::await_cancel())
                });
                traceln!("server: {}", r.unwrap_err());
                Ok(())
            },
            || {
                let c = net.connect(&"127.0.0.1:80".parse()?)?;
                traceln!("client: reading");
                let n = c.read(&mut [0u8; 8])?;
                traceln!("client: read {n} bytes");
                Ok(())
            },
        )
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "client: reading",
            "server: accepted tcp:127.0.0.1:49152, now waiting",
            "mock time is now 1",
            // The server's stream is dropped as its cancelled fiber ends.
            "client: read 0 bytes",
            "server: timeout, timed out after 1s",
        ]
    );
}

#[test]
fn connecting_to_a_closed_listener_is_refused() {
    let (r, _) = run_world(MemNet::new(), |env| {
        let net = env.net();
        let addr: Addr = "127.0.0.1:8080".parse()?;
        drop(net.listen(&addr)?);
        let err = net.connect(&addr).unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::Net(NetError::ConnectionRefused));
        assert!(
            err.to_string().contains("connecting to tcp:127.0.0.1:8080"),
            "{err}"
        );
        // The address is free again.
        let _again = net.listen(&addr)?;
        Ok(())
    });
    r.unwrap();
}

#[test]
fn closing_a_listener_closes_its_queue_and_refuses_waiting_connectors() {
    let (r, trace) = run_world(MemNet::new(), |env| {
        let net = env.net();
        let opts = ListenOptions {
            backlog: 1,
            ..Default::default()
        };
        let listener = net.listen_with(&Addr::Unix("/run/app.sock".into()), &opts)?;
        let addr = listener.local_addr()?;
        let queued = net.connect(&addr)?;
        fiber::both(
            || {
                // The backlog is full: this waits until the listener closes.
                let err = net.connect(&addr).unwrap_err();
                traceln!("waiting connector: {}", err.kind_name());
                Ok(())
            },
            || {
                traceln!("closing the listener");
                drop(listener);
                Ok(())
            },
        )?;
        assert_eq!(queued.read_all()?, "", "never accepted: end of stream");
        let err = queued.write_all(b"hello?").unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::Net(NetError::BrokenPipe));
        Ok(())
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "closing the listener",
            "waiting connector: connection refused"
        ]
    );
}

/// `Error::kind` rendered the way `Display` shows it.
trait KindName {
    fn kind_name(&self) -> String;
}

impl KindName for weft::Error {
    fn kind_name(&self) -> String {
        match self.kind() {
            ErrorKind::Net(e) => e.to_string(),
            k => format!("{k:?}"),
        }
    }
}

#[test]
fn a_full_backlog_makes_connect_wait_until_accept() {
    let (r, trace) = run_world(MemNet::new(), |env| {
        let net = env.net();
        let clock = env.mono_clock();
        let opts = ListenOptions {
            backlog: 1,
            ..Default::default()
        };
        let listener = net.listen_with(&"127.0.0.1:0".parse()?, &opts)?;
        let addr = listener.local_addr()?;
        fiber::both(
            || {
                fiber::iter(3, 0..3, |i| {
                    traceln!("client {i}: connecting");
                    let c = net.connect(&addr)?;
                    traceln!("client {i}: connected");
                    c.read_all().map(drop)
                })
            },
            || {
                clock.sleep(Duration::from_secs(1))?;
                for _ in 0..3 {
                    let (conn, peer) = listener.accept()?;
                    traceln!("server: accepted {peer}");
                    drop(conn);
                    fiber::yield_now()?;
                }
                Ok(())
            },
        )
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "client 0: connecting",
            "client 0: connected",
            "client 1: connecting",
            "client 2: connecting",
            "mock time is now 1",
            "server: accepted tcp:127.0.0.1:49153",
            "client 1: connected",
            "server: accepted tcp:127.0.0.1:49154",
            "client 2: connected",
            "server: accepted tcp:127.0.0.1:49155",
        ]
    );
}

#[test]
fn listeners_on_the_unspecified_address_accept_every_ip_of_their_family() {
    let (r, _) = run_world(MemNet::new(), |env| {
        let net = env.net();
        let listener = net.listen(&"0.0.0.0:9000".parse()?)?;
        assert_eq!(listener.local_addr()?, "0.0.0.0:9000".parse()?);
        let c = net.connect(&"10.1.2.3:9000".parse()?)?;
        let (s, peer) = listener.accept()?;
        assert_eq!(s.local_addr()?, "10.1.2.3:9000".parse()?);
        assert_eq!(peer, c.local_addr()?);
        let err = net.connect(&"[::1]:9000".parse()?).unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::Net(NetError::ConnectionRefused));
        // Binding an IP the wildcard covers is taken (as on Linux, even
        // with SO_REUSEADDR)...
        let err = net.listen(&"10.1.2.3:9000".parse()?).unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::Net(NetError::AddrInUse));
        // ...unless both share with reuse_port; then the exact IP wins.
        let shared = ListenOptions {
            reuse_port: true,
            ..Default::default()
        };
        let wild = net.listen_with(&"0.0.0.0:9100".parse()?, &shared)?;
        let exact = net.listen_with(&"10.1.2.3:9100".parse()?, &shared)?;
        let _c2 = net.connect(&"10.1.2.3:9100".parse()?)?;
        let _c3 = net.connect(&"127.0.0.1:9100".parse()?)?;
        assert_eq!(exact.accept()?.0.local_addr()?, "10.1.2.3:9100".parse()?);
        assert_eq!(wild.accept()?.0.local_addr()?, "127.0.0.1:9100".parse()?);
        Ok(())
    });
    r.unwrap();
}

#[test]
fn reuse_port_listeners_take_turns() {
    let (r, _) = run_world(MemNet::new(), |env| {
        let net = env.net();
        let opts = ListenOptions {
            reuse_port: true,
            ..Default::default()
        };
        let a = net.listen_with(&"127.0.0.1:0".parse()?, &opts)?;
        let addr = a.local_addr()?;
        let b = net.listen_with(&addr, &opts)?;
        let _clients = (0..4)
            .map(|_| net.connect(&addr))
            .collect::<weft::Result<Vec<_>>>()?;
        for l in [&a, &b, &a, &b] {
            l.accept()?;
        }
        Ok(())
    });
    r.unwrap();
}

#[test]
fn a_cancelled_write_writes_nothing() {
    let (r, _) = run_world(MemNet::new().with_pipe_capacity(4), |env| {
        let clock = env.mono_clock();
        let (x, y) = env.net().socketpair()?;
        assert_eq!(x.write(b"abcdef")?, 4, "a partial write fills the pipe");
        let err =
            weft::time::with_timeout(clock, Duration::from_secs(1), || x.write(b"ef")).unwrap_err();
        assert!(err.is_timeout(), "{err}");
        x.shutdown(ShutdownKind::Write)?;
        assert_eq!(y.read_all()?, "abcd", "nothing of the cancelled write");
        Ok(())
    });
    r.unwrap();
}

#[test]
fn a_reader_nobody_will_write_to_is_a_deadlock_naming_the_read() {
    let (r, _) = run_world(MemNet::new(), |env| {
        let (x, _y) = env.net().socketpair()?;
        x.read(&mut [0u8; 1])
    });
    let err = r.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Deadlock);
    assert!(
        err.to_string().ends_with("\"main\" waiting on net read"),
        "{err}"
    );
}

#[test]
fn names_resolve_from_the_mock_host_table() {
    let net = MemNet::new();
    net.add_host("db.internal", [IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5))]);
    let (r, _) = run_world(net, |env| {
        let net = env.net();
        let listener = net.listen(&"10.0.0.5:5432".parse()?)?;
        let c = net.connect_host("db.internal", "5432")?;
        assert_eq!(c.peer_addr()?, listener.local_addr()?);
        assert_eq!(
            net.getaddrinfo("::1", "http")?,
            ["[::1]:80".parse::<Addr>()?]
        );
        let err = net.getaddrinfo("example.com", "443").unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::Net(NetError::ResolveFailed));
        assert!(err.to_string().contains("\"example.com\""), "{err}");
        Ok(())
    });
    r.unwrap();
}

#[test]
fn unix_datagrams_to_an_unbound_path_are_refused_and_udp_ones_lost() {
    let (r, _) = run_world(MemNet::new(), |env| {
        let net = env.net();
        let u = net.bind_datagram(&Addr::Unix("/tmp/a".into()))?;
        let err = u
            .send_to(b"x", &Addr::Unix("/tmp/nobody".into()))
            .unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::Net(NetError::ConnectionRefused));
        let udp = net.bind_datagram(&"0.0.0.0:0".parse()?)?;
        assert_eq!(udp.send_to(b"x", &"127.0.0.1:9".parse()?)?, 1);
        // A wildcard socket's datagrams come from the IP they were sent to.
        let rx = net.bind_datagram(&"127.0.0.2:53".parse()?)?;
        udp.send_to(b"query", &rx.local_addr()?)?;
        let (_, from) = rx.recv_from(&mut [0u8; 8])?;
        let Addr::Ip(from) = from else { panic!() };
        assert_eq!(from.ip(), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
        Ok(())
    });
    r.unwrap();
}

#[test]
fn a_domain_on_another_thread_connects_to_its_parents_listener() {
    let (r, trace) = run_world(MemNet::new(), |env| {
        let net = env.net();
        let listener = net.listen(&"127.0.0.1:0".parse()?)?;
        let addr = listener.local_addr()?;
        let dm = env.domain_mgr();
        fiber::both(
            || {
                let (conn, _) = listener.accept()?;
                traceln!("server got {:?}", conn.read_all()?);
                Ok(())
            },
            || {
                let net = net.clone();
                dm.run(move || {
                    let c = net.connect(&addr)?;
                    c.write_all(b"from another thread")
                })
            },
        )
    });
    r.unwrap();
    assert_eq!(trace, [r#"server got "from another thread""#]);
}

#[test]
fn a_megabyte_crosses_between_threads_through_a_small_pipe() {
    let (r, _) = run_world(MemNet::new().with_pipe_capacity(1000), |env| {
        let dm = env.domain_mgr();
        // The server end stays on this thread; the domain connects from its
        // own thread through this network, so every wake-up crosses threads.
        let listener = env.net().listen(&Addr::Unix("/srv/bulk".into()))?;
        let net = env.net();
        let data: Vec<u8> = (0..1u32 << 20).map(|i| (i % 253) as u8).collect();
        let expected = data.clone();
        let got = fiber::pair(
            || {
                let (conn, _) = listener.accept()?;
                let mut v = Vec::new();
                conn.read_to_end(&mut v)?;
                // Reply over the same connection: the domain now reads.
                conn.write_all(&v[..5000])?;
                Ok(v)
            },
            || {
                dm.run(move || {
                    let c = net.connect(&Addr::Unix("/srv/bulk".into()))?;
                    c.write_all(&data)?;
                    c.shutdown(ShutdownKind::Write)?;
                    let mut back = Vec::new();
                    c.read_to_end(&mut back)?;
                    assert_eq!(back, data[..5000]);
                    Ok(())
                })
            },
        )?
        .0;
        assert!(got == expected, "the megabyte arrived intact");
        Ok(())
    });
    r.unwrap();
}
