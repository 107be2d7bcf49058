//! Conformance: datagram sockets and socket pairs.

use rstest::rstest;
use weft::flow::{Sink, Source};
use weft::net::{Addr, ListenOptions};
use weft::{Backend, ErrorKind, NetError};

#[rstest]
#[case::posix(Backend::Posix)]
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
fn unix_datagram_round_trip(#[case] backend: Backend) {
    let dir = std::env::temp_dir().join(format!("weft-dgram-{}", std::process::id()));
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
