//! `examples/mock_tested_client.rs` on the mock backend: its own unit tests
//! (the client against a scripted network) are compiled in here, and the
//! whole demo — server and three concurrent clients — runs on the mock's
//! in-memory network with a deterministic trace.

#[allow(dead_code)] // the example's `main`
#[path = "../examples/mock_tested_client.rs"]
mod example;

#[test]
fn the_demo_runs_on_the_mock_network() {
    let net = weft::mock::MemNet::new();
    let (r, trace) = weft::mock::Config::new()
        .net(net.clone())
        .run_traced(example::demo);
    r.unwrap();
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
