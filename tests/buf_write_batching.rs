//! `weft::buf_write`: batching, flushing, zero-copy scheduling and errors,
//! on the cases of the Eio README and Eio's `tests/buf_write.md`, as mock
//! traces.

use std::cell::RefCell;
use std::io::{IoSlice, Write as _};

use weft::buf_read;
use weft::buf_write::{self, Bytes};
use weft::flow::{self, Sink};
use weft::mock::{self, Action};
use weft::sync::Promise;
use weft::{fiber, traceln, Error, ErrorKind, NetError, Result, Switch};

/// Runs `f` under the mock backend and returns its trace; `f` must succeed.
fn trace_of(f: impl FnOnce() -> Result<()>) -> Vec<String> {
    let (r, trace) = mock::run_traced(|_env| f());
    r.unwrap();
    trace
}

#[test]
fn readme_unbuffered_response_makes_three_writes() {
    let trace = trace_of(|| {
        let socket = mock::Flow::new("socket");
        flow::copy_string("HTTP/1.1 200 OK\r\n", &socket)?;
        flow::copy_string("\r\n", &socket)?;
        fiber::yield_now()?;
        flow::copy_string("Body data", &socket)
    });
    assert_eq!(
        trace,
        [
            r#"socket: wrote "HTTP/1.1 200 OK\r\n""#,
            r#"socket: wrote "\r\n""#,
            r#"socket: wrote "Body data""#,
            "socket: closed",
        ]
    );
}

#[test]
fn readme_buffered_response_makes_two_writes() {
    let trace = trace_of(|| {
        let socket = mock::Flow::new("socket");
        buf_write::with_flow(&socket, |w| {
            w.string("HTTP/1.1 200 OK\r\n")?;
            w.string("\r\n")?;
            fiber::yield_now()?; // Simulate delayed generation of body
            w.string("Body data")
        })
    });
    assert_eq!(
        trace,
        [
            r#"socket: wrote "HTTP/1.1 200 OK\r\n""#,
            r#" "\r\n""#,
            r#"socket: wrote "Body data""#,
            "socket: closed",
        ]
    );
}

#[test]
fn writes_between_suspensions_are_combined() {
    let trace = trace_of(|| {
        let flow = mock::Flow::new("flow");
        buf_write::with_flow(&flow, |w| {
            w.string("Hello")?;
            w.char(' ')?;
            w.string("world")
        })?;
        buf_write::with_flow(&flow, |w| {
            w.string("Hello")?;
            w.char(' ')?;
            fiber::yield_now()?;
            w.string("world")
        })?;
        // A tiny initial buffer grows instead of splitting the batch.
        buf_write::with_flow_capacity(&flow, 1, |w| {
            for part in ["te", "st", "te", "st"] {
                w.string(part)?;
            }
            w.char('t')?;
            w.char('e')
        })
    });
    assert_eq!(
        trace,
        [
            r#"flow: wrote "Hello world""#,
            r#"flow: wrote "Hello ""#,
            r#"flow: wrote "world""#,
            r#"flow: wrote "testtestte""#,
            "flow: closed",
        ]
    );
}

#[test]
fn empty_writes_write_nothing() {
    let trace = trace_of(|| {
        let flow = mock::Flow::new("flow");
        buf_write::with_flow(&flow, |w| {
            w.string("")?;
            w.bytes(&[])?;
            w.schedule_bytes(Bytes::new())?;
            w.flush()?;
            assert_eq!(w.pending_bytes(), 0);
            Ok(())
        })
    });
    assert_eq!(trace, ["flow: closed"]);
}

#[test]
fn integers_and_endianness() {
    let trace = trace_of(|| {
        let flow = mock::Flow::new("flow");
        buf_write::with_flow(&flow, |w| {
            w.write_u16_le(5)?;
            fiber::yield_now()?;
            w.write_u16_be(5)
        })
    });
    assert_eq!(
        trace,
        [
            r#"flow: wrote "\u{5}\0""#,
            r#"flow: wrote "\0\u{5}""#,
            "flow: closed"
        ]
    );
    // Round trips through BufReader.
    mock::run(|_env| {
        let sink = flow::buffer_sink();
        buf_write::with_flow(&sink, |w| {
            w.write_u8(0xa5)?;
            w.write_i8(-3)?;
            w.write_u16_be(0xa123)?;
            w.write_i16_le(-2)?;
            w.write_u32_be(0xa123_4567)?;
            w.write_u32_le(0xa123_4567)?;
            w.write_i32_be(i32::MIN)?;
            w.write_u64_be(0xa123_4567_890a_bcde)?;
            w.write_u64_le(0xa123_4567_890a_bcde)?;
            w.write_i64_le(-7)?;
            w.write_f32_be(32.25)?;
            w.write_f32_le(32.25)?;
            w.write_f64_be(32.25)?;
            w.write_f64_le(32.25)?;
            w.char('é')
        })?;
        let data = sink.contents();
        assert_eq!(&data[10..14], [0x67, 0x45, 0x23, 0xa1]);
        assert_eq!(&data[42..46], [0x42, 0x01, 0x00, 0x00]);
        buf_read::parse_bytes(data, |r| {
            assert_eq!(r.u8()?, 0xa5);
            assert_eq!(r.i8()?, -3);
            assert_eq!(r.u16_be()?, 0xa123);
            assert_eq!(r.i16_le()?, -2);
            assert_eq!(r.u32_be()?, 0xa123_4567);
            assert_eq!(r.u32_le()?, 0xa123_4567);
            assert_eq!(r.i32_be()?, i32::MIN);
            assert_eq!(r.u64_be()?, 0xa123_4567_890a_bcde);
            assert_eq!(r.u64_le()?, 0xa123_4567_890a_bcde);
            assert_eq!(r.i64_le()?, -7);
            assert_eq!(r.f32_be()?, 32.25);
            assert_eq!(r.f32_le()?, 32.25);
            assert_eq!(r.f64_be()?, 32.25);
            assert_eq!(r.f64_le()?, 32.25);
            assert_eq!(r.any_char()?, 'é');
            Ok(())
        })
    })
    .unwrap();
}

#[test]
fn flush_waits_for_the_flow() {
    let (p, resolver) = Promise::new();
    let trace = trace_of(|| {
        let flow = mock::Flow::new("flow");
        flow.on_copy_bytes([Action::Await(p)]);
        buf_write::with_flow(&flow, |w| {
            fiber::both(
                || {
                    w.flush()?; // nothing pending: returns at once
                    w.string("Hello")?;
                    traceln!("Flushing...");
                    w.flush()?;
                    traceln!("Flushed");
                    Ok(())
                },
                || {
                    traceln!("Write now completes...");
                    resolver.resolve(Ok(3)).unwrap();
                    Ok(())
                },
            )
        })
    });
    assert_eq!(
        trace,
        [
            "Flushing...",
            "Write now completes...",
            r#"flow: wrote "Hel""#,
            r#"flow: wrote "lo""#,
            "Flushed",
            "flow: closed",
        ]
    );
}

#[test]
fn each_flush_waits_for_its_own_data() {
    let trace = trace_of(|| {
        let flow = mock::Flow::new("flow");
        flow.on_copy_bytes([1, 2, 2, 2].map(|n| Action::yield_then(Action::Return(n))));
        buf_write::with_flow(&flow, |w| {
            let writer = |data: &'static str, name: &'static str| {
                move || {
                    w.string(data)?;
                    w.flush()?;
                    traceln!("{name} flush");
                    Ok(())
                }
            };
            fiber::all([
                writer("ab", "1st"),
                writer("cd", "2nd"),
                writer("ef", "3rd"),
            ])?;
            traceln!("Done");
            Ok(())
        })
    });
    assert_eq!(
        trace,
        [
            r#"flow: wrote "a""#,
            r#"flow: wrote ["b"; "c"]"#,
            "1st flush",
            r#"flow: wrote ["d"; "e"]"#,
            "2nd flush",
            r#"flow: wrote "f""#,
            "3rd flush",
            "Done",
            "flow: closed",
        ]
    );
}

/// A sink that takes its time: it yields before each write.
struct Slow;

impl Sink for Slow {
    fn write(&self, buf: &[u8]) -> Result<usize> {
        fiber::yield_now()?;
        traceln!("Write {:?}", String::from_utf8_lossy(buf));
        Ok(buf.len())
    }
}

#[test]
fn flush_waits_for_a_slow_sink_and_std_io_write() {
    let trace = trace_of(|| {
        buf_write::with_flow(Slow, |w| {
            w.string("test")?;
            w.flush()?;
            traceln!("Flush complete");
            let mut out = w;
            write!(out, "{}+{}={}", 1, 2, 3)?;
            out.flush()?;
            traceln!("io::Write flush complete");
            Ok(())
        })
    });
    assert_eq!(
        trace,
        [
            "Write \"test\"",
            "Flush complete",
            "Write \"1+2=3\"",
            "io::Write flush complete"
        ]
    );
}

#[test]
fn scheduled_bytes_keep_their_place_in_the_order() {
    let trace = trace_of(|| {
        let flow = mock::Flow::new("flow");
        buf_write::with_flow(&flow, |w| {
            w.schedule_bytes(Bytes::from_static(b"one"))?;
            w.string("two")?;
            fiber::yield_now()?;
            w.string("one")?;
            w.schedule_bytes(Bytes::from_static(b"two"))?;
            w.string("three")?;
            fiber::yield_now()?;
            w.schedule_bytes(Bytes::from_static(b"end"))?;
            fiber::yield_now()?;
            traceln!("Should all be flushed by now.");
            Ok(())
        })
    });
    assert_eq!(
        trace,
        [
            r#"flow: wrote ["one"; "two"]"#,
            r#"flow: wrote ["one"; "two"; "three"]"#,
            r#"flow: wrote "end""#,
            "Should all be flushed by now.",
            "flow: closed",
        ]
    );
}

/// Records the address and length of every buffer it is given.
#[derive(Default)]
struct Recorder {
    seen: RefCell<Vec<(usize, usize)>>,
    data: RefCell<Vec<u8>>,
}

impl Sink for Recorder {
    fn write(&self, buf: &[u8]) -> Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> Result<usize> {
        let mut n = 0;
        for b in bufs {
            self.seen.borrow_mut().push((b.as_ptr() as usize, b.len()));
            self.data.borrow_mut().extend_from_slice(b);
            n += b.len();
        }
        Ok(n)
    }
}

#[test]
fn schedule_bytes_is_zero_copy() {
    let body = Bytes::from(vec![7u8; 100_000]);
    let addr = body.as_ptr() as usize;
    let sink = Recorder::default();
    mock::run(|_env| {
        buf_write::with_flow(&sink, |w| {
            w.string("HTTP/1.1 200 OK\r\n\r\n")?;
            w.schedule_bytes(body.clone())?;
            w.string("trailer")
        })
    })
    .unwrap();
    let seen = sink.seen.borrow();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(
        seen[1],
        (addr, 100_000),
        "the Bytes reached the sink unchanged"
    );
    assert_ne!(seen[0].0, addr);
    let data = sink.data.borrow();
    assert_eq!(data.len(), 19 + 100_000 + 7);
    assert!(data.starts_with(b"HTTP/1.1 200 OK\r\n\r\n\x07"));
    assert!(data.ends_with(b"\x07trailer"));
}

#[test]
fn partial_writes_resume_inside_a_buffer() {
    let trace = trace_of(|| {
        let flow = mock::Flow::new("flow");
        flow.on_copy_bytes([Action::Return(4), Action::Return(3)]);
        buf_write::with_flow(&flow, |w| {
            w.string("ab")?;
            w.schedule_bytes(Bytes::from_static(b"cdef"))?;
            w.string("gh")
        })
    });
    assert_eq!(
        trace,
        [
            r#"flow: wrote ["ab"; "cd"]"#,
            r#"flow: wrote ["ef"; "g"]"#,
            r#"flow: wrote "h""#,
            "flow: closed",
        ]
    );
}

#[test]
fn output_is_still_flushed_when_the_function_fails() {
    let (r, trace) = mock::run_traced(|_env| {
        let flow = mock::Flow::new("flow");
        flow.on_copy_bytes([Action::Return(1), Action::yield_then(Action::Return(1))]);
        buf_write::with_flow(&flow, |w| -> Result<()> {
            w.string("foo")?;
            Err(Error::msg(ErrorKind::Io, "Simulated error"))
        })
    });
    assert_eq!(r.unwrap_err().to_string(), "io error, Simulated error");
    assert_eq!(
        trace,
        [
            r#"flow: wrote "f""#,
            r#"flow: wrote "o""#,
            r#"flow: wrote "o""#,
            "flow: closed",
        ]
    );
}

#[test]
fn cancelled_while_the_flow_writes() {
    let (r, trace) = mock::run_traced(|_env| {
        let flow = mock::Flow::new("flow");
        flow.on_copy_bytes([Action::run_fn(|| Err(fiber::await_cancel()))]);
        fiber::both(
            || {
                buf_write::with_flow(&flow, |w| {
                    w.string("Hello")?;
                    traceln!("Did write");
                    Ok(())
                })
            },
            || {
                fiber::yield_now()?;
                Err(Error::msg(ErrorKind::Io, "Simulated error"))
            },
        )
    });
    assert_eq!(r.unwrap_err().to_string(), "io error, Simulated error");
    assert_eq!(trace, ["Did write", "flow: closed"]);
}

#[test]
fn not_flushed_when_cancelled() {
    let (r, trace) = mock::run_traced(|_env| {
        let flow = mock::Flow::new("flow");
        flow.on_copy_bytes([Action::run_fn(|| Err(fiber::await_cancel()))]);
        fiber::both(
            || {
                buf_write::with_flow(&flow, |w| {
                    w.string("foo")?;
                    Err(fiber::await_cancel())
                })
            },
            || Err(Error::msg(ErrorKind::Io, "Simulated error")),
        )
    });
    assert_eq!(r.unwrap_err().to_string(), "io error, Simulated error");
    assert_eq!(trace, ["flow: closed"]);
}

/// A sink that accepts `ok` writes, then fails.
struct Failing {
    ok: std::cell::Cell<u32>,
}

impl Sink for Failing {
    fn write(&self, buf: &[u8]) -> Result<usize> {
        match self.ok.get() {
            0 => Err(Error::new(ErrorKind::Net(NetError::BrokenPipe)).context("writing to peer")),
            n => {
                self.ok.set(n - 1);
                traceln!("sent {:?}", String::from_utf8_lossy(buf));
                Ok(buf.len())
            }
        }
    }
}

#[test]
fn sink_errors_fail_with_flow_and_cancel_the_producer() {
    let (r, trace) = mock::run_traced(|_env| {
        buf_write::with_flow(Failing { ok: 1.into() }, |w| {
            w.string("first")?;
            fiber::yield_now()?;
            w.string("second")?;
            match fiber::yield_now() {
                Ok(()) => traceln!("not cancelled?"),
                Err(e) => traceln!("producer: {e}"),
            }
            let e = w.string("third").unwrap_err();
            traceln!("write after failure: {e}");
            let e = w.flush().unwrap_err();
            traceln!("flush after failure: {e}");
            assert!(w.is_closed());
            Err::<(), _>(e)
        })
    });
    let err = r.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Net(NetError::BrokenPipe));
    assert_eq!(err.to_string(), "net: broken pipe, writing to peer");
    assert_eq!(
        trace,
        [
            "sent \"first\"",
            "producer: cancelled: net: broken pipe, writing to peer",
            "write after failure: cancelled: net: broken pipe, writing to peer, \
             the BufWriter's flow failed",
            "flush after failure: cancelled: net: broken pipe, writing to peer, \
             the BufWriter's flow failed",
        ]
    );
}

#[test]
fn waiting_flushes_fail_with_the_flow() {
    let (r, trace) = mock::run_traced(|_env| {
        let flow = mock::Flow::new("flow");
        let io_error = Error::msg(ErrorKind::Io, "Simulated IO error");
        flow.on_copy_bytes([Action::Error(io_error)]);
        buf_write::with_flow(&flow, |w| {
            Switch::run(|sw| {
                sw.fork(|| {
                    w.string("foo")?;
                    match w.flush() {
                        Ok(()) => traceln!("flushed?"),
                        Err(e) => traceln!("Flush failed: {e}"),
                    }
                    Ok(())
                });
                traceln!("with_flow returning; the writer will be closed");
                Ok(())
            })
        })
    });
    assert_eq!(r.unwrap_err().to_string(), "io error, Simulated IO error");
    assert_eq!(
        trace,
        [
            "with_flow returning; the writer will be closed",
            "Flush failed: cancelled: io error, Simulated IO error, the BufWriter's flow failed",
            "flow: closed",
        ]
    );
}

#[test]
fn close_then_write_is_an_error() {
    let trace = trace_of(|| {
        let flow = mock::Flow::new("flow");
        buf_write::with_flow(&flow, |w| {
            w.string("last words")?;
            w.close();
            assert!(w.is_closed());
            assert_eq!(w.pending_bytes(), 10);
            let err = w.string("more").unwrap_err();
            assert_eq!(err.kind(), &ErrorKind::Closed);
            traceln!("{err}");
            w.flush()?;
            assert_eq!(w.pending_bytes(), 0);
            Ok(())
        })
    });
    assert_eq!(
        trace,
        [
            "closed, cannot write to a closed BufWriter",
            r#"flow: wrote "last words""#,
            "flow: closed",
        ]
    );
}

#[test]
fn large_output_in_small_partial_writes() {
    let (r, _trace) = mock::run_traced(|_env| {
        let flow = mock::Flow::new("flow");
        let sink = flow::buffer_sink();
        // Lots of small writes interleaved with yields, to a flow taking
        // at most 7 bytes per write.
        let counter = std::cell::Cell::new(0);
        flow.copy_bytes_handler().set_handler(move || {
            counter.set(counter.get() + 1);
            Ok(7)
        });
        let mut expected = Vec::new();
        buf_write::with_flow(&sink, |w| {
            for i in 0..2000u32 {
                w.write_u32_be(i)?;
                expected.extend(i.to_be_bytes());
                if i % 97 == 0 {
                    w.schedule_bytes(Bytes::from(vec![b'x'; i as usize % 13]))?;
                    expected.extend(std::iter::repeat_n(b'x', i as usize % 13));
                    fiber::yield_now()?;
                }
            }
            Ok(())
        })?;
        assert_eq!(sink.contents(), expected);
        // The same through the mock flow, checking only the total.
        let total = std::cell::Cell::new(0);
        buf_write::with_flow(&flow, |w| {
            for i in 0..100u32 {
                w.write_u32_le(i)?;
                total.set(total.get() + 4);
            }
            w.flush()?;
            assert_eq!(w.pending_bytes(), 0);
            Ok(())
        })?;
        assert_eq!(total.get(), 400);
        Ok(())
    });
    r.unwrap();
}
