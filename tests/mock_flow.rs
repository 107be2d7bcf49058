//! Scripted mocks (`weft::mock::{Action, Handler, Flow}`) and the Eio README
//! examples built on flows: testing with mocks, the networking client and
//! handler, the buffered-reading CLI, the `message` parser and the provider
//! interface's zero flow. Checked as mock traces.

use std::cell::Cell;
use std::io::{Read as _, Write as _};

use weft::buf_read::{self, BufReader};
use weft::flow::{self, Shutdown, ShutdownKind, Sink, Source};
use weft::mock::{self, Action, CopyMethod, Handler};
use weft::sync::Promise;
use weft::{fiber, traceln, Error, ErrorKind, NetError, Result, Switch};

/// Runs `f` under the mock backend and returns its trace; `f` must succeed.
fn trace_of(f: impl FnOnce() -> Result<()>) -> Vec<String> {
    let (r, trace) = mock::run_traced(|_env| f());
    r.unwrap();
    trace
}

/// The README's `main`: greets on whatever sink it is given.
fn hello_main(stdout: &impl Sink) -> Result<()> {
    flow::copy_string("Hello, world!\n", stdout)
}

#[test]
fn readme_testing_with_mocks() {
    let trace = trace_of(|| {
        let buffer = flow::buffer_sink();
        hello_main(&buffer)?;
        traceln!("Main would print {:?}", buffer.contents_string());
        hello_main(&mock::Flow::new("mock-stdout"))
    });
    assert_eq!(
        trace,
        [
            r#"Main would print "Hello, world!\n""#,
            r#"mock-stdout: wrote "Hello, world!\n""#,
            "mock-stdout: closed",
        ]
    );
}

fn handle_client(flow: &impl Sink) -> Result<()> {
    traceln!("Server: got connection from client");
    flow::copy_string("Hello from server", flow)
}

#[test]
fn readme_networking_handler() {
    let trace = trace_of(|| {
        let flow = mock::Flow::new("flow");
        handle_client(&flow)
    });
    assert_eq!(
        trace,
        [
            "Server: got connection from client",
            r#"flow: wrote "Hello from server""#,
            "flow: closed",
        ]
    );
}

/// The README's client, given its (mock) connection.
fn run_client(connect: impl FnOnce() -> Result<mock::Flow>) -> Result<()> {
    Switch::run_named("client", |_sw| {
        traceln!("Client: connecting to server");
        let flow = connect()?;
        // Read all data until end-of-stream (shutdown):
        traceln!("Client: received {:?}", flow.read_all()?);
        Ok(())
    })
}

#[test]
fn readme_networking_client() {
    let trace = trace_of(|| {
        run_client(|| {
            let flow = mock::Flow::new("flow");
            flow.on_read([
                Action::ret("(packet 1)"),
                Action::yield_then(Action::ret("(packet 2)")),
                Action::Error(Error::new(ErrorKind::EndOfFile)),
            ]);
            Ok(flow)
        })
    });
    assert_eq!(
        trace,
        [
            "Client: connecting to server",
            r#"flow: read "(packet 1)""#,
            r#"flow: read "(packet 2)""#,
            r#"Client: received "(packet 1)(packet 2)""#,
            "flow: closed",
        ]
    );
}

/// The README's command-line interface: one line at a time, forever.
fn cli(stdin: impl Source, stdout: &impl Sink) -> Result<()> {
    let mut buf = BufReader::with_capacity(stdin, 100, 1_000_000);
    loop {
        let line = buf.line()?;
        traceln!("> {line}");
        match line.as_str() {
            "h" | "help" => flow::copy_string("It's just an example\n", stdout)?,
            x => flow::copy_string(&format!("Unknown command {x:?}\n"), stdout)?,
        }
    }
}

#[test]
fn readme_buffered_reading_cli() {
    let input = "help\nexit\nquit\nbye\nstop\n";
    let (r, trace) = mock::run_traced(|_env| {
        let stdout = flow::buffer_sink();
        let r = cli(flow::string_source(input), &stdout);
        traceln!("stdout: {:?}", stdout.contents_string());
        r
    });
    let err = r.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::EndOfFile);
    assert_eq!(
        err.to_string(),
        "end of file, unexpected end-of-file at offset 24"
    );
    assert_eq!(
        trace,
        [
            "> help",
            "> exit",
            "> quit",
            "> bye",
            "> stop",
            "stdout: \"It's just an example\\nUnknown command \\\"exit\\\"\\n\
             Unknown command \\\"quit\\\"\\nUnknown command \\\"bye\\\"\\n\
             Unknown command \\\"stop\\\"\\n\"",
        ]
    );
    // With a mock stdout the output interleaves with the trace, as in the
    // README.
    let (r, trace) = mock::run_traced(|_env| {
        cli(
            flow::string_source("help\nexit\n"),
            &mock::Flow::new("stdout"),
        )
    });
    assert_eq!(r.unwrap_err().kind(), &ErrorKind::EndOfFile);
    assert_eq!(
        trace,
        [
            "> help",
            r#"stdout: wrote "It's just an example\n""#,
            "> exit",
            r#"stdout: wrote "Unknown command \"exit\"\n""#,
            "stdout: closed",
        ]
    );
}

struct Message {
    src: String,
    body: String,
}

/// The README's `message` parser.
fn message<S: Source>(r: &mut BufReader<S>) -> Result<Message> {
    r.string("FROM:")?;
    let src = r.line()?;
    let body = r.take_all_string()?;
    Ok(Message { src, body })
}

#[test]
fn readme_message_parser() {
    let trace = trace_of(|| {
        for input in ["FROM:Alice\nHello!\n", "TO:Bob\nHi", "FROM:Carol"] {
            match buf_read::parse(flow::string_source(input), 1024, message) {
                Ok(Message { src, body }) => traceln!("{src} sent {body:?}"),
                Err(err) => traceln!("Parse failed: {err}"),
            }
        }
        Ok(())
    });
    assert_eq!(
        trace,
        [
            r#"Alice sent "Hello!\n""#,
            r#"Parse failed: parse error, expected "FROM:" but got "TO:Bo" (at offset 0)"#,
            r#"Carol sent """#,
        ]
    );
}

/// The provider-interfaces example: a flow of endless zeros, like /dev/zero.
struct Zero;

impl Source for Zero {
    fn read(&self, buf: &mut [u8]) -> Result<usize> {
        buf.fill(0);
        Ok(buf.len())
    }
}

#[test]
fn readme_provider_zero_flow() {
    let trace = trace_of(|| {
        // `&mut`: with `std::io::Read` in scope, `take` on an owned reader
        // would be `Read::take`.
        let r = &mut BufReader::new(Zero, 100);
        traceln!("Got: {}", buf_read::Quoted(&r.take(4)?));
        Ok(())
    });
    assert_eq!(trace, [r#"Got: "\0\0\0\0""#]);
}

#[test]
fn copy_between_mock_flows() {
    let trace = trace_of(|| {
        let src = mock::Flow::new("src");
        let dst = mock::Flow::new("dst");
        src.on_read([Action::ret("foo"), Action::ret("bar")]);
        assert_eq!(flow::copy(&src, &dst)?, 6);
        Ok(())
    });
    assert_eq!(
        trace,
        [
            r#"src: read "foo""#,
            r#"dst: wrote "foo""#,
            r#"src: read "bar""#,
            r#"dst: wrote "bar""#,
            "dst: closed",
            "src: closed",
        ]
    );
}

#[test]
fn copy_methods_and_copy_sizes() {
    let trace = trace_of(|| {
        let dst = mock::Flow::new("dst");
        for method in [CopyMethod::ReadInto, CopyMethod::Fallback] {
            traceln!("{method:?}:");
            dst.set_copy_method(method);
            dst.on_copy_bytes([Action::Return(3), Action::Return(5)]);
            flow::copy(&flow::string_source("foobar"), &dst)?;
        }
        // A write takes what `on_copy_bytes` allows; `write_all` goes on.
        dst.on_copy_bytes([Action::Return(6)]);
        dst.write_all(b"foobar")?;
        dst.on_copy_bytes([Action::Return(4)]);
        assert_eq!(dst.write(b"foobar")?, 4);
        Ok(())
    });
    assert_eq!(
        trace,
        [
            "ReadInto:",
            r#"dst: wrote "foo""#,
            r#"dst: wrote "bar""#,
            "Fallback:",
            r#"dst: wrote "foo""#,
            r#"dst: wrote "bar""#,
            r#"dst: wrote "foobar""#,
            r#"dst: wrote "foob""#,
            "dst: closed",
        ]
    );
}

#[test]
fn write_traces_split_lines_and_list_buffers() {
    let trace = trace_of(|| {
        let f = mock::Flow::new("f");
        f.write_all(b"one\ntwo\r\n\nthree")?;
        f.write_all(b"\n")?;
        f.write_all(b"bin\xff\x00\"'\\")?;
        let bufs = [
            std::io::IoSlice::new(b"head\n"),
            std::io::IoSlice::new(b""),
            std::io::IoSlice::new(b"body"),
        ];
        assert_eq!(f.write_vectored(&bufs)?, 9);
        assert_eq!(f.write_vectored(&[std::io::IoSlice::new(b"")])?, 0);
        f.on_copy_bytes([Action::Return(0)]);
        assert_eq!(f.write(b"x")?, 0);
        Ok(())
    });
    assert_eq!(
        trace,
        [
            r#"f: wrote "one\n""#,
            r#" "two\r\n""#,
            r#" "\n""#,
            r#" "three""#,
            r#"f: wrote "\n""#,
            r#"f: wrote "bin\xff\0\"'\\""#,
            r#"f: wrote ["head\n"; "body"]"#,
            r#"f: wrote """#,
            "f: closed",
        ]
    );
}

#[test]
fn reads_errors_shutdown_and_close() {
    let trace = trace_of(|| {
        let f = mock::Flow::new("f");
        let reset = Error::new(ErrorKind::Net(NetError::ConnectionReset));
        f.on_read([
            Action::ret("a\nb"),
            Action::Error(reset),
            Action::ret("longer than the buffer"),
            Action::ret(""),
        ]);
        let mut buf = [0u8; 8];
        assert_eq!(f.read(&mut buf)?, 3);
        assert_eq!(f.read(&mut [])?, 0, "an empty read consults no script");
        let e = f.read(&mut buf).unwrap_err();
        assert_eq!(e.kind(), &ErrorKind::Net(NetError::ConnectionReset));
        for expected in ["longer t", "han the ", "buffer"] {
            let n = f.read(&mut buf)?;
            assert_eq!(&buf[..n], expected.as_bytes());
        }
        assert_eq!(f.read(&mut buf)?, 0);
        assert_eq!(
            f.read(&mut buf)?,
            0,
            "end of stream once the script is done"
        );
        f.shutdown(ShutdownKind::Write)?;
        f.shutdown(ShutdownKind::Read)?;
        f.shutdown(ShutdownKind::Both)?;
        f.close();
        assert!(f.is_closed());
        f.close();
        let e = f.read(&mut buf).unwrap_err();
        assert_eq!(e.kind(), &ErrorKind::Closed);
        let e = f.write(b"x").unwrap_err();
        traceln!("{e}");
        Ok(())
    });
    assert_eq!(
        trace,
        [
            r#"f: read "a\n""#,
            r#" "b""#,
            r#"f: read "longer t""#,
            r#"f: read "han the ""#,
            r#"f: read "buffer""#,
            r#"f: read """#,
            "f: shutdown write",
            "f: shutdown read",
            "f: shutdown both",
            "f: closed",
            r#"closed, mock flow "f" is closed"#,
        ]
    );
}

#[test]
fn std_io_on_mock_flows() {
    let trace = trace_of(|| {
        let f = mock::Flow::new("io");
        f.on_read([Action::ret("hello "), Action::ret("std")]);
        let mut text = String::new();
        (&f).read_to_string(&mut text)?;
        assert_eq!(text, "hello std");
        std::io::Write::write_all(&mut &f, b"1-2")?;
        let mut owned = mock::Flow::new("owned");
        owned.write_all(b"x")?;
        owned.flush()?;
        Ok(())
    });
    assert_eq!(
        trace,
        [
            r#"io: read "hello ""#,
            // std probes with a small buffer: the chunk is split.
            r#"io: read "st""#,
            r#"io: read "d""#,
            r#"io: wrote "1-2""#,
            r#"owned: wrote "x""#,
            "owned: closed",
            "io: closed",
        ]
    );
}

#[test]
fn handler_scripts_defaults_and_functions() {
    mock::run(|_env| {
        let h = Handler::new(Action::Return(0));
        assert_eq!(h.run()?, 0);
        h.seq([Action::Return(1), Action::Return(2)]);
        assert_eq!(h.remaining(), 2);
        assert_eq!(h.run()?, 1);
        h.seq([Action::Return(3)]);
        assert_eq!((h.run()?, h.run()?), (3, 0));
        h.set_default(Action::Error(Error::new(ErrorKind::Timeout)));
        assert_eq!(h.run().unwrap_err().kind(), &ErrorKind::Timeout);
        let calls = Cell::new(0);
        let calls = std::rc::Rc::new(calls);
        let c = calls.clone();
        h.set_handler(move || {
            c.set(c.get() + 1);
            Ok(c.get() * 10)
        });
        assert_eq!((h.run()?, h.run()?), (10, 20));
        h.seq([Action::Return(5)]);
        assert_eq!(h.run()?, 5, "seq replaces the function");
        assert_eq!(h.run_default().unwrap_err().kind(), &ErrorKind::Timeout);
        assert_eq!(calls.get(), 2);
        assert_eq!(
            format!("{:?}", Action::yield_then(Action::Return(1))),
            "YieldThen(Return(1))"
        );
        Ok(())
    })
    .unwrap();
}

#[test]
fn actions_await_promises_and_yield() {
    let trace = trace_of(|| {
        let f = mock::Flow::new("f");
        let (p, resolver) = Promise::new();
        f.on_read([Action::Await(p), Action::yield_then(Action::ret("second"))]);
        fiber::both(
            || {
                traceln!("reader: {}", f.read_all()?);
                Ok(())
            },
            || {
                traceln!("resolving");
                resolver.resolve(Ok(b"first ".to_vec())).unwrap();
                fiber::yield_now()?;
                traceln!("other fiber ran during the yield");
                Ok(())
            },
        )
    });
    assert_eq!(
        trace,
        [
            "resolving",
            r#"f: read "first ""#,
            "other fiber ran during the yield",
            r#"f: read "second""#,
            "reader: first second",
            "f: closed",
        ]
    );
}

#[test]
fn buf_write_into_a_mock_flow_and_back() {
    let trace = trace_of(|| {
        let out = mock::Flow::new("out");
        weft::buf_write::with_flow(&out, |w| {
            w.string("GET / HTTP/1.1\r\n")?;
            w.string("Host: example.com\r\n\r\n")
        })?;
        let inp = mock::Flow::new("in");
        inp.on_read(
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
                .bytes()
                .map(|b| Action::Return(vec![b])),
        );
        let body = buf_read::parse(&inp, 256, |r| {
            r.string("HTTP/1.1 ")?;
            let status = r.take_while_string(|b| b.is_ascii_digit())?;
            r.line()?;
            let mut len = 0;
            loop {
                let header = r.line()?;
                if header.is_empty() {
                    break;
                }
                if let Some(v) = header.strip_prefix("Content-Length: ") {
                    len = v.parse().map_err(|e| r.parse_error(e))?;
                }
            }
            Ok((status, r.take_string(len)?))
        })?;
        traceln!("{body:?}");
        Ok(())
    });
    let reads = trace.iter().filter(|l| l.starts_with("in: read")).count();
    assert_eq!(reads, 40);
    assert_eq!(
        trace[..3],
        [
            r#"out: wrote "GET / HTTP/1.1\r\n""#,
            r#" "Host: example.com\r\n""#,
            r#" "\r\n""#,
        ]
    );
    assert_eq!(
        trace[trace.len() - 3..],
        [r#"("200", "hi")"#, "in: closed", "out: closed"]
    );
}
