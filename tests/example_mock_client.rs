//! `examples/mock_tested_client.rs`: its own unit tests (the client against
//! the mock's scripted network) are compiled in here, and its whole demo —
//! a server and three concurrent clients — runs on every backend, on the
//! mock's in-memory network with a deterministic trace.

use rstest::rstest;
use weft::Backend;

#[allow(dead_code)] // the example's `main`
#[path = "../examples/mock_tested_client.rs"]
mod example;

fn expected() -> Vec<Option<String>> {
    vec![Some("hello".to_string()), Some("42".to_string()), None]
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn the_demo_finds_what_the_server_has(#[case] backend: Backend) {
    assert_eq!(weft::run_with(backend, example::demo).unwrap(), expected());
}

#[test]
fn on_the_mock_network_the_demo_traces_the_same_and_leaves_nothing_open() {
    let net = weft::mock::MemNet::new();
    let (r, trace) = weft::mock::Config::new()
        .net(net.clone())
        .run_traced(example::demo);
    assert_eq!(r.unwrap(), expected());
    assert_eq!(
        trace,
        [
            r#"greeting = Some("hello")"#,
            r#"answer = Some("42")"#,
            "missing = None",
        ]
    );
    let open = net.open_resources();
    assert!(open.is_empty(), "left open: {open:?}");
}
