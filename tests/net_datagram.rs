//! Conformance: datagram sockets and socket pairs, on POSIX sockets and the
//! mock's in-memory network.

use rstest::rstest;
use weft::flow::{Sink, Source};
use weft::net::{Addr, ListenOptions};
use weft::{Backend, ErrorKind, NetError};

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn udp_round_trip(#[case] backend: Backend) {
    weft::run_with(backend, |env| {
        let net = env.net();
        let a = net.bind_datagram(&"127.0.0.1:0".parse()?)?;
        let b = net.bind_datagram(&"127.0.0.1:0".parse()?)?;
        let b_addr = b.local_addr()?;
        let a_addr = a.local_addr()?;
        weft::fiber::both(
            || {
                let mut buf = [0u8; 64];
                let (n, from) = b.recv_from(&mut buf)?;
                assert_eq!(&buf[..n], b"ping");
                assert_eq!(from, a_addr);
                b.send_to(b"pong", &from)?;
                Ok(())
            },
            || {
                a.send_to(b"ping", &b_addr)?;
                let mut buf = [0u8; 64];
                let (n, _) = a.recv_from(&mut buf)?;
                assert_eq!(&buf[..n], b"pong");
                Ok(())
            },
        )
    })
    .unwrap();
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn unix_datagram_round_trip(#[case] backend: Backend) {
    let dir = std::env::temp_dir().join(format!("weft-dgram-{}-{backend:?}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let (pa, pb) = (dir.join("a"), dir.join("b"));
    let _ = std::fs::remove_file(&pa);
    let _ = std::fs::remove_file(&pb);
    weft::run_with(backend, |env| {
        let net = env.net();
        let a = net.bind_datagram(&Addr::Unix(pa.clone()))?;
        let b = net.bind_datagram(&Addr::Unix(pb.clone()))?;
        a.send_to(b"over unix", &Addr::Unix(pb.clone()))?;
        let mut buf = [0u8; 64];
        let (n, from) = b.recv_from(&mut buf)?;
        assert_eq!(&buf[..n], b"over unix");
        assert_eq!(from, Addr::Unix(pa.clone()));
        Ok(())
    })
    .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn socketpair_carries_bytes_both_ways(#[case] backend: Backend) {
    weft::run_with(backend, |env| {
        let (x, y) = env.net().socketpair()?;
        x.write_all(b"to y")?;
        let mut buf = [0u8; 4];
        y.read_exact(&mut buf)?;
        assert_eq!(&buf, b"to y");
        y.write_all(b"to x")?;
        x.read_exact(&mut buf)?;
        assert_eq!(&buf, b"to x");
        Ok(())
    })
    .unwrap();
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn listen_options_reuse_port_and_addr_in_use(#[case] backend: Backend) {
    weft::run_with(backend, |env| {
        let net = env.net();
        let opts = ListenOptions {
            reuse_port: true,
            ..Default::default()
        };
        let first = net.listen_with(&"127.0.0.1:0".parse()?, &opts)?;
        let addr = first.local_addr()?;
        // SO_REUSEPORT lets a second listener share the port...
        let _second = net.listen_with(&addr, &opts)?;
        // ...but without it the port is taken.
        let plain = ListenOptions {
            reuse_port: false,
            ..Default::default()
        };
        let err = net.listen_with(&addr, &plain).unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::Net(NetError::AddrInUse), "{err}");
        assert!(
            err.to_string().contains(&format!("listening on {addr}")),
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
fn udp_to_nobody_succeeds_and_datagrams_keep_their_boundaries(#[case] backend: Backend) {
    weft::run_with(backend, |env| {
        let net = env.net();
        let a = net.bind_datagram(&"127.0.0.1:0".parse()?)?;
        let b = net.bind_datagram(&"127.0.0.1:0".parse()?)?;
        let b_addr = b.local_addr()?;
        // Nobody is bound there any more: UDP loses the datagram without
        // an error.
        let nobody = {
            let c = net.bind_datagram(&"127.0.0.1:0".parse()?)?;
            c.local_addr()?
        };
        assert_eq!(a.send_to(b"lost", &nobody)?, 4);
        a.send_to(b"first", &b_addr)?;
        a.send_to(b"second datagram", &b_addr)?;
        let mut buf = [0u8; 64];
        let (n, _) = b.recv_from(&mut buf)?;
        assert_eq!(&buf[..n], b"first");
        // A short buffer truncates the datagram; the rest of it is gone.
        let mut short = [0u8; 6];
        let (n, _) = b.recv_from(&mut short)?;
        assert_eq!(&short[..n], b"second");
        a.send_to(b"third", &b_addr)?;
        let (n, _) = b.recv_from(&mut buf)?;
        assert_eq!(&buf[..n], b"third");
        Ok(())
    })
    .unwrap();
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn udp_port_in_use(#[case] backend: Backend) {
    weft::run_with(backend, |env| {
        let net = env.net();
        let a = net.bind_datagram(&"127.0.0.1:0".parse()?)?;
        let addr = a.local_addr()?;
        let err = net.bind_datagram(&addr).unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::Net(NetError::AddrInUse), "{err}");
        drop(a);
        // Free again once the socket is closed.
        net.bind_datagram(&addr)?;
        Ok(())
    })
    .unwrap();
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn a_cancelled_recv_takes_no_datagram(#[case] backend: Backend) {
    weft::run_with(backend, |env| {
        let net = env.net();
        let clock = env.mono_clock();
        let a = net.bind_datagram(&"127.0.0.1:0".parse()?)?;
        let b = net.bind_datagram(&"127.0.0.1:0".parse()?)?;
        let mut buf = [0u8; 16];
        let err = weft::time::with_timeout(clock, std::time::Duration::from_millis(10), || {
            b.recv_from(&mut buf)
        })
        .unwrap_err();
        assert!(err.is_timeout(), "{err}");
        a.send_to(b"late", &b.local_addr()?)?;
        let (n, from) = b.recv_from(&mut buf)?;
        assert_eq!(&buf[..n], b"late");
        assert_eq!(from, a.local_addr()?);
        Ok(())
    })
    .unwrap();
}
