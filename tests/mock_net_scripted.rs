//! The README's mock-network examples (Eio_mock.Net), as trace tests.

use weft::flow::{Sink, Source};
use weft::mock::{self, Action, Flow, ListeningSocket};
use weft::net::Addr;
use weft::{traceln, Error, ErrorKind, NetError, ResultExt, Switch};

fn run_client(net: &weft::net::Net, addr: &Addr) -> weft::Result<()> {
    Switch::run_named("client", |_sw| {
        traceln!("Client: connecting to server");
        let flow = net.connect(addr)?;
        traceln!("Client: received {:?}", flow.read_all()?);
        Ok(())
    })
}

#[test]
fn readme_client_against_a_mock_network() {
    let (r, trace) = mock::run_traced(|_env| {
        let net = mock::Net::new("mocknet");
        let flow = Flow::new("flow");
        flow.on_read([
            Action::ret("(packet 1)"),
            Action::yield_then(Action::ret("(packet 2)")),
            Action::Error(Error::new(ErrorKind::EndOfFile)),
        ]);
        net.on_connect([Action::Return(flow.into())]);
        run_client(&net.net(), &"127.0.0.1:8080".parse()?)
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "Client: connecting to server",
            "mocknet: connect to tcp:127.0.0.1:8080",
            "flow: read \"(packet 1)\"",
            "flow: read \"(packet 2)\"",
            "Client: received \"(packet 1)(packet 2)\"",
            "flow: closed",
        ]
    );
}

fn get(net: &weft::net::Net, host: &str, path: &str) -> weft::Result<String> {
    let _flow = net
        .connect_host(host, "http")
        .with_context(|| format!("fetching http://{host}/{path}"))?;
    Ok("...".into())
}

#[test]
fn readme_error_contexts_through_a_mock_network() {
    let (r, trace) = mock::run_traced(|_env| {
        let net = mock::Net::new("mocknet");
        net.on_getaddrinfo([Action::Return(vec!["127.0.0.1:80".parse()?])]);
        net.on_connect([Action::Error(Error::new(ErrorKind::Net(
            NetError::TimedOut,
        )))]);
        get(&net.net(), "example.com", "index.html")
    });
    let err = r.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Net(NetError::TimedOut));
    assert_eq!(
        err.contexts().collect::<Vec<_>>(),
        [
            "connecting to tcp:127.0.0.1:80",
            "connecting to \"example.com\":http",
            "fetching http://example.com/index.html",
        ]
    );
    assert_eq!(
        trace,
        [
            "mocknet: getaddrinfo ~service:http example.com",
            "mocknet: connect to tcp:127.0.0.1:80",
        ]
    );
}

#[test]
fn a_scripted_server_accepts_and_handles_connections() {
    let (r, trace) = mock::run_traced(|_env| {
        let net = mock::Net::new("mocknet");
        let socket = ListeningSocket::new("socket");
        let (c1, c2) = (Flow::new("connection-1"), Flow::new("connection-2"));
        socket.on_accept([
            Action::Return((c1.into(), "127.0.0.1:1001".parse()?)),
            Action::Return((c2.into(), "127.0.0.1:1002".parse()?)),
        ]);
        net.on_listen([Action::Return(socket)]);
        let listener = net.net().listen(&"127.0.0.1:80".parse()?)?;
        for _ in 0..2 {
            let (conn, peer) = listener.accept()?;
            traceln!("handling {peer}");
            conn.write_all(b"Hello from server")?;
        }
        // No more accepts scripted: a clear error, not a hang.
        let e = listener.accept().unwrap_err();
        assert!(e.to_string().contains("no more accepts scripted"), "{e}");
        Ok(())
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "mocknet: listen on tcp:127.0.0.1:80",
            "socket: accepted connection from tcp:127.0.0.1:1001",
            "handling tcp:127.0.0.1:1001",
            "connection-1: wrote \"Hello from server\"",
            "connection-1: closed",
            "socket: accepted connection from tcp:127.0.0.1:1002",
            "handling tcp:127.0.0.1:1002",
            "connection-2: wrote \"Hello from server\"",
            "connection-2: closed",
        ]
    );
}

#[test]
fn a_scripted_net_refuses_other_threads() {
    mock::run(|_env| {
        let net = mock::Net::new("mocknet").net();
        let e =
            std::thread::spawn(move || net.connect(&"127.0.0.1:1".parse().unwrap()).map(|_| ()))
                .join()
                .unwrap()
                .unwrap_err();
        assert!(e.to_string().contains("another thread"), "{e}");
        Ok(())
    })
    .unwrap();
}
