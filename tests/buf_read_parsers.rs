//! `weft::buf_read`: every parser, on the cases of Eio's `tests/buf_reader.md`
//! (checked as mock traces, including when the flow is read) and on hostile
//! input: oversized and endless lines, unterminated and truncated input,
//! CRLF, binary and invalid UTF-8, one-byte packets.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;

use weft::buf_read::{self, BufReader, Quoted};
use weft::flow::{string_source, Source};
use weft::mock::{self, Action};
use weft::{traceln, Error, ErrorKind, NetError, Result};

/// A source handing out scripted chunks (split to fit the reader's buffer),
/// tracing each read like the `mock_flow` of Eio's tests; end of stream once
/// the script runs out.
struct Chunks {
    next: RefCell<VecDeque<Vec<u8>>>,
}

fn chunks<const N: usize>(items: [&str; N]) -> Chunks {
    Chunks {
        next: RefCell::new(items.iter().map(|s| s.as_bytes().to_vec()).collect()),
    }
}

impl Source for Chunks {
    fn read(&self, buf: &mut [u8]) -> Result<usize> {
        let mut next = self.next.borrow_mut();
        let Some(mut x) = next.pop_front() else {
            traceln!("mock_flow returning Eof");
            return Ok(0);
        };
        let n = buf.len().min(x.len());
        traceln!("mock_flow returning {n} bytes");
        buf[..n].copy_from_slice(&x[..n]);
        if n < x.len() {
            next.push_front(x.split_off(n));
        }
        Ok(n)
    }
}

/// Runs `f` under the mock backend and returns its trace; `f` must succeed.
fn trace_of(f: impl FnOnce() -> Result<()>) -> Vec<String> {
    let (r, trace) = mock::run_traced(|_env| f());
    r.unwrap();
    trace
}

fn s(b: &[u8]) -> String {
    Quoted(b).to_string()
}

/// Traces an error as `kind: message`.
fn show(e: &Error) -> String {
    let contexts: Vec<&str> = e.contexts().collect();
    format!("{:?}: {}", e.kind(), contexts.join(", "))
}

#[test]
fn simple_run_through() {
    let trace = trace_of(|| {
        let mut r = BufReader::new(string_source("Hello"), 100);
        traceln!("{}", s(r.peek()));
        r.ensure(1)?;
        traceln!("{}", s(r.peek()));
        r.consume(1);
        r.ensure(4)?;
        traceln!("{}", s(r.peek()));
        traceln!("{}", show(&r.ensure(5).unwrap_err()));
        traceln!("{}", s(r.peek()));
        r.consume(4);
        traceln!("{} pos={}", s(r.peek()), r.pos());
        Ok(())
    });
    assert_eq!(
        trace,
        [
            r#""""#,
            r#""Hello""#,
            r#""ello""#,
            "EndOfFile: unexpected end-of-file at offset 5",
            r#""ello""#,
            r#""" pos=5"#,
        ]
    );
}

#[test]
fn minimising_reads_and_growth() {
    let trace = trace_of(|| {
        let mut r = BufReader::with_capacity(chunks(["hello world!"]), 4, 10);
        for n in [1, 5, 9, 10] {
            r.ensure(n)?;
            traceln!("ensure {n}: {} (capacity {})", s(r.peek()), r.capacity());
        }
        let err = r.ensure(11).unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::BufferLimitExceeded);
        traceln!("{}", show(&err));
        // Doubling is not always enough: straight to 10.
        let mut r = BufReader::with_capacity(chunks(["hello world!"]), 4, 10);
        r.ensure(10)?;
        traceln!("{} (capacity {})", s(r.peek()), r.capacity());
        Ok(())
    });
    assert_eq!(
        trace,
        [
            "mock_flow returning 4 bytes",
            r#"ensure 1: "hell" (capacity 4)"#,
            "mock_flow returning 4 bytes",
            r#"ensure 5: "hello wo" (capacity 8)"#,
            "mock_flow returning 2 bytes",
            r#"ensure 9: "hello worl" (capacity 10)"#,
            r#"ensure 10: "hello worl" (capacity 10)"#,
            "BufferLimitExceeded: buffer size limit exceeded when reading at offset 0 (max_size is 10)",
            "mock_flow returning 10 bytes",
            r#""hello worl" (capacity 10)"#,
        ]
    );
}

#[test]
fn end_of_file_is_sticky() {
    let trace = trace_of(|| {
        let mut r = BufReader::with_capacity(chunks(["hi"]), 4, 10);
        traceln!("{}", show(&r.ensure(10).unwrap_err()));
        traceln!("{} eof_seen={}", s(r.peek()), r.eof_seen());
        traceln!("{}", show(&r.ensure(10).unwrap_err()));
        traceln!("{}", s(&r.take_all()?));
        traceln!("{}", s(&r.take_all()?));
        Ok(())
    });
    assert_eq!(
        trace,
        [
            "mock_flow returning 2 bytes",
            "mock_flow returning Eof",
            "EndOfFile: unexpected end-of-file at offset 2",
            r#""hi" eof_seen=true"#,
            "EndOfFile: unexpected end-of-file at offset 2",
            r#""hi""#,
            r#""""#,
        ]
    );
}

#[test]
fn several_reads_for_one_request() {
    let trace = trace_of(|| {
        let mut r = BufReader::with_capacity(chunks(["one", "two", "three"]), 4, 10);
        r.ensure(10)?;
        traceln!("{}", s(r.peek()));
        r.consume(4);
        r.ensure(7)?;
        traceln!("{}", s(r.peek()));
        Ok(())
    });
    assert_eq!(
        trace,
        [
            "mock_flow returning 3 bytes",
            "mock_flow returning 3 bytes",
            "mock_flow returning 4 bytes",
            r#""onetwothre""#,
            "mock_flow returning 1 bytes",
            r#""wothree""#,
        ]
    );
}

/// Reads lines until an error, tracing each.
fn trace_lines<S: Source>(r: &mut BufReader<S>) {
    loop {
        match r.line() {
            Ok(line) => traceln!("{line:?}"),
            Err(e) => {
                traceln!("{}", show(&e));
                return;
            }
        }
    }
}

#[test]
fn lines_lf() {
    let trace = trace_of(|| {
        trace_lines(&mut BufReader::new(
            chunks(["one", "\ntwo\n", "three\n"]),
            100,
        ));
        Ok(())
    });
    assert_eq!(
        trace,
        [
            "mock_flow returning 3 bytes",
            "mock_flow returning 5 bytes",
            r#""one""#,
            r#""two""#,
            "mock_flow returning 6 bytes",
            r#""three""#,
            "mock_flow returning Eof",
            "EndOfFile: unexpected end-of-file at offset 14",
        ]
    );
}

#[test]
fn lines_crlf_split_across_reads() {
    let trace = trace_of(|| {
        trace_lines(&mut BufReader::new(
            chunks(["one\r", "\ntwo\r\n", "three\r\n"]),
            100,
        ));
        Ok(())
    });
    assert_eq!(
        trace,
        [
            "mock_flow returning 4 bytes",
            "mock_flow returning 6 bytes",
            r#""one""#,
            r#""two""#,
            "mock_flow returning 7 bytes",
            r#""three""#,
            "mock_flow returning Eof",
            "EndOfFile: unexpected end-of-file at offset 17",
        ]
    );
}

#[test]
fn lines_missing_final_eol_and_empty_lines() {
    let trace = trace_of(|| {
        trace_lines(&mut BufReader::new(chunks(["on", "e\ntwo"]), 100));
        trace_lines(&mut BufReader::new(chunks(["one\ntwo\n\nthree"]), 100));
        // A lone CR is data, and a CR before EOF stays in the last line.
        trace_lines(&mut BufReader::new(chunks(["a\rb\nc\r"]), 100));
        Ok(())
    });
    assert_eq!(
        trace,
        [
            "mock_flow returning 2 bytes",
            "mock_flow returning 5 bytes",
            r#""one""#,
            "mock_flow returning Eof",
            r#""two""#,
            "EndOfFile: unexpected end-of-file at offset 7",
            "mock_flow returning 14 bytes",
            r#""one""#,
            r#""two""#,
            r#""""#,
            "mock_flow returning Eof",
            r#""three""#,
            "EndOfFile: unexpected end-of-file at offset 14",
            "mock_flow returning 6 bytes",
            r#""a\rb""#,
            "mock_flow returning Eof",
            r#""c\r""#,
            "EndOfFile: unexpected end-of-file at offset 6",
        ]
    );
}

#[test]
fn lines_iterator_stops_at_end_and_after_an_error() {
    let trace = trace_of(|| {
        let mut r = BufReader::new(chunks(["one", "\ntwo\n", "three"]), 100);
        for line in r.lines() {
            traceln!("{:?}", line?);
        }
        let mut r = BufReader::new(chunks(["ok\nxxxxxxxxxxxx\nnever\n"]), 8);
        let got: Vec<_> = r.lines().collect();
        traceln!("{} items", got.len());
        traceln!("{:?}", got[0].as_ref().unwrap());
        traceln!("{}", show(got[1].as_ref().unwrap_err()));
        Ok(())
    });
    assert_eq!(
        trace,
        [
            "mock_flow returning 3 bytes",
            "mock_flow returning 5 bytes",
            r#""one""#,
            r#""two""#,
            "mock_flow returning 5 bytes",
            "mock_flow returning Eof",
            r#""three""#,
            "mock_flow returning 8 bytes",
            "mock_flow returning 3 bytes",
            "2 items",
            r#""ok""#,
            "BufferLimitExceeded: buffer size limit exceeded when reading at offset 3 (max_size is 8)",
        ]
    );
}

#[test]
fn oversized_line_never_grows_past_max_size() {
    // An endless line, as an attacker would send it.
    struct Endless(Cell<u64>);
    impl Source for Endless {
        fn read(&self, buf: &mut [u8]) -> Result<usize> {
            self.0.set(self.0.get() + buf.len() as u64);
            buf.fill(b'x');
            Ok(buf.len())
        }
    }
    mock::run(|_env| {
        let src = Endless(Cell::new(0));
        let mut r = BufReader::with_capacity(&src, 16, 1000);
        let err = r.line().unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::BufferLimitExceeded);
        assert_eq!(r.capacity(), 1000);
        assert_eq!(src.0.get(), 1000);
        assert_eq!(r.buffered(), 1000);
        // The data is still there; skipping it is not limited by the buffer.
        r.skip(1_000_000)?;
        assert_eq!(r.pos(), 1_000_000);
        assert_eq!(r.capacity(), 1000);
        let err = r.take_while(|b| b == b'x').unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::BufferLimitExceeded);
        assert_eq!(
            err.to_string(),
            "buffer limit exceeded, buffer size limit exceeded when reading at offset 1000000 (max_size is 1000)"
        );
        Ok(())
    })
    .unwrap();
}

#[test]
fn line_up_to_exactly_max_size() {
    mock::run(|_env| {
        // "abc\n" needs 4 bytes of buffer: fine with 4, not with 3.
        let mut r = BufReader::new(chunks(["abc\nabc"]), 4);
        assert_eq!(r.line()?, "abc");
        assert_eq!(r.line()?, "abc");
        let mut r = BufReader::new(chunks(["abc\n"]), 3);
        assert_eq!(
            r.line().unwrap_err().kind(),
            &ErrorKind::BufferLimitExceeded
        );
        Ok(())
    })
    .unwrap();
}

#[test]
fn characters() {
    let trace = trace_of(|| {
        let mut r = BufReader::new(chunks(["ab", "c"]), 100);
        traceln!("{:?}", r.any_char()?);
        traceln!("{:?}", r.peek_char()?);
        traceln!("{:?}", r.any_char()?);
        traceln!("{:?}", r.any_char()?);
        traceln!("{}", show(&r.any_char().unwrap_err()));
        traceln!("{:?}", r.peek_char()?);
        Ok(())
    });
    assert_eq!(
        trace,
        [
            "mock_flow returning 2 bytes",
            "'a'",
            "Some('b')",
            "'b'",
            "mock_flow returning 1 bytes",
            "'c'",
            "mock_flow returning Eof",
            "EndOfFile: unexpected end-of-file at offset 3",
            "None",
        ]
    );
}

#[test]
fn utf8_characters_split_across_one_byte_packets() {
    mock::run(|_env| {
        let text = "é€😀x";
        let flow = mock::Flow::new("flow");
        flow.on_read(text.bytes().map(|b| Action::Return(vec![b])));
        let mut r = BufReader::new(&flow, 16);
        assert_eq!(r.peek_char()?, Some('é'));
        let got: Vec<char> = (0..4).map(|_| r.any_char()).collect::<Result<_>>()?;
        assert_eq!(got, ['é', '€', '😀', 'x']);
        assert_eq!(r.pos(), text.len() as u64);
        assert!(r.at_end_of_input()?);

        // Truncated and invalid sequences.
        let mut r = BufReader::from_bytes(&b"\xe2\x82"[..]);
        assert_eq!(r.any_char().unwrap_err().kind(), &ErrorKind::EndOfFile);
        let mut r = BufReader::from_bytes(&b"a\xff"[..]);
        r.char('a')?;
        let err = r.any_char().unwrap_err();
        assert_eq!(err.to_string(), "parse error, invalid UTF-8 (at offset 1)");
        let err = r.char('b').unwrap_err();
        assert_eq!(
            err.to_string(),
            "parse error, expected 'b' but got byte 0xff (at offset 1)"
        );
        r.char('\u{ff}').unwrap_err();
        assert_eq!(r.u8()?, 0xff);
        Ok(())
    })
    .unwrap();
}

#[test]
fn fixed_length_take() {
    let trace = trace_of(|| {
        let mut r = BufReader::new(chunks(["ab", "c"]), 100);
        traceln!("{}", s(&r.take(1)?));
        traceln!("{}", show(&r.take(3).unwrap_err()));
        traceln!("{}", s(&r.take(2)?));
        traceln!("{}", s(&r.take(0)?));
        Ok(())
    });
    assert_eq!(
        trace,
        [
            "mock_flow returning 2 bytes",
            r#""a""#,
            "mock_flow returning 1 bytes",
            "mock_flow returning Eof",
            "EndOfFile: unexpected end-of-file at offset 3",
            r#""bc""#,
            r#""""#,
        ]
    );
    mock::run(|_env| {
        let mut r = BufReader::new(string_source(&b"h\xc3\xa9llo\xff"[..]), 100);
        assert_eq!(r.take_string(3)?, "hé");
        let err = r.take_string(4).unwrap_err();
        assert_eq!(err.to_string(), "parse error, invalid UTF-8 (at offset 6)");
        assert_eq!(r.take(4)?, b"llo\xff");
        let mut r = BufReader::new(string_source("abc"), 2);
        assert_eq!(
            r.take(3).unwrap_err().kind(),
            &ErrorKind::BufferLimitExceeded
        );
        Ok(())
    })
    .unwrap();
}

#[test]
fn literals_with_offsets() {
    let trace = trace_of(|| {
        let mut r = BufReader::new(chunks(["ab", "c"]), 100);
        traceln!("{}", show(&r.char('A').unwrap_err()));
        r.char('a')?;
        traceln!("{}", show(&r.string("BC").unwrap_err()));
        traceln!("{}", show(&r.string("bC").unwrap_err()));
        traceln!("{}", show(&r.string("bcd").unwrap_err()));
        traceln!("{}", show(&r.string("bcd").unwrap_err()));
        r.string("")?;
        r.string("bc")?;
        traceln!("{} at {}", s(r.peek()), r.pos());
        Ok(())
    });
    assert_eq!(
        trace,
        [
            "mock_flow returning 2 bytes",
            "Parse: expected 'A' but got 'a' (at offset 0)",
            r#"Parse: expected "BC" but got "b" (at offset 1)"#,
            "mock_flow returning 1 bytes",
            r#"Parse: expected "bC" but got "bc" (at offset 1)"#,
            "mock_flow returning Eof",
            "EndOfFile: unexpected end-of-file at offset 3",
            "EndOfFile: unexpected end-of-file at offset 3",
            r#""" at 3"#,
        ]
    );
    mock::run(|_env| {
        let mut r = BufReader::new(string_source(&b"FROM:\x00\xfe\r\n"[..]), 100);
        r.string(b"FROM:")?;
        let err = r.string("TO").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"parse error, expected "TO" but got "\0\xfe" (at offset 5)"#
        );
        r.string(b"\0\xfe\r\n")?;
        r.end_of_input()
    })
    .unwrap();
}

#[test]
fn scanning() {
    let is_digit = |b: u8| b.is_ascii_digit();
    let trace = trace_of(|| {
        let mut r = BufReader::new(chunks(["aa", "a0", "123de"]), 100);
        r.skip_while(|b| b == b'a')?;
        traceln!("{}", s(&r.take_while(is_digit)?));
        traceln!("{}", s(&r.take_while(|b| !is_digit(b))?));
        traceln!("{}", s(&r.take_while(is_digit)?));
        Ok(())
    });
    assert_eq!(
        trace,
        [
            "mock_flow returning 2 bytes",
            "mock_flow returning 2 bytes",
            "mock_flow returning 5 bytes",
            r#""0123""#,
            "mock_flow returning Eof",
            r#""de""#,
            r#""""#,
        ]
    );
    let trace = trace_of(|| {
        let mut r = BufReader::new(chunks(["abc", "def", "ghi"]), 100);
        r.skip(5)?;
        traceln!("{}", s(&r.take_all()?));
        let mut r = BufReader::new(chunks(["abcdefg"]), 3);
        r.skip(5)?;
        traceln!("{}", s(&r.take_all()?));
        Ok(())
    });
    assert_eq!(
        trace,
        [
            "mock_flow returning 3 bytes",
            "mock_flow returning 3 bytes",
            "mock_flow returning 3 bytes",
            "mock_flow returning Eof",
            r#""fghi""#,
            "mock_flow returning 3 bytes",
            "mock_flow returning 3 bytes",
            "mock_flow returning 1 bytes",
            "mock_flow returning Eof",
            r#""fg""#,
        ]
    );
    mock::run(|_env| {
        let mut r = BufReader::new(string_source("  42abc"), 100);
        r.skip_while1(|b| b == b' ')?;
        let err = r.skip_while1(|b| b == b' ').unwrap_err();
        assert_eq!(
            err.to_string(),
            "parse error, skip_while1: no byte matched (at offset 2)"
        );
        assert_eq!(r.take_while1(is_digit)?, b"42");
        let err = r.take_while1(is_digit).unwrap_err();
        assert_eq!(
            err.to_string(),
            "parse error, take_while1: no byte matched (at offset 4)"
        );
        assert_eq!(r.take_while_string(|b| b.is_ascii_lowercase())?, "abc");
        // Skipping past the end discards everything.
        let err = r.skip(1).unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::EndOfFile);
        let mut r = BufReader::new(string_source("xyz"), 100);
        r.skip(10).unwrap_err();
        assert_eq!((r.buffered(), r.pos()), (0, 3));
        Ok(())
    })
    .unwrap();
}

#[test]
fn take_all_and_its_limit() {
    let trace = trace_of(|| {
        let mut r = BufReader::new(
            chunks(["20 text/gemini\r\n", "# Introduction\n", "# Conclusion\n"]),
            100,
        );
        traceln!("{:?}", r.line()?);
        traceln!("{}", s(&r.take_all()?));
        let mut r = BufReader::new(chunks(["abc", "def", "ghi", "jkl"]), 10);
        traceln!("{}", show(&r.take_all().unwrap_err()));
        traceln!("{}", s(&r.take(3)?));
        Ok(())
    });
    assert_eq!(
        trace,
        [
            "mock_flow returning 16 bytes",
            r#""20 text/gemini""#,
            "mock_flow returning 15 bytes",
            "mock_flow returning 13 bytes",
            "mock_flow returning Eof",
            r##""# Introduction\n# Conclusion\n""##,
            "mock_flow returning 3 bytes",
            "mock_flow returning 3 bytes",
            "mock_flow returning 3 bytes",
            "mock_flow returning 1 bytes",
            "BufferLimitExceeded: buffer size limit exceeded when reading at offset 0 (max_size is 10)",
            r#""abc""#,
        ]
    );
}

#[test]
fn parse_errors_as_in_eio() {
    let trace = trace_of(|| {
        let show_result = |r: Result<Vec<u8>>| match r {
            Ok(v) => traceln!("Ok {}", s(&v)),
            Err(e) => traceln!("{e}"),
        };
        show_result(buf_read::parse(chunks(["abc"]), 10, |r| r.take(3)));
        show_result(buf_read::parse(chunks(["abc"]), 10, |r| r.take(2)));
        show_result(buf_read::parse(chunks(["abc"]), 10, |r| r.take(4)));
        show_result(buf_read::parse(chunks(["abc"]), 2, |r| r.line_bytes()));
        Ok(())
    });
    assert_eq!(
        trace,
        [
            "mock_flow returning 3 bytes",
            "mock_flow returning Eof",
            r#"Ok "abc""#,
            "mock_flow returning 3 bytes",
            "parse error, unexpected data after parsing (at offset 2)",
            "mock_flow returning 3 bytes",
            "mock_flow returning Eof",
            "end of file, unexpected end-of-file at offset 3",
            "mock_flow returning 2 bytes",
            "buffer limit exceeded, buffer size limit exceeded when reading at offset 0 (max_size is 2)",
        ]
    );
}

#[test]
fn sequences_of_fixed_items() {
    mock::run(|_env| {
        let pairs = |input: &'static str| -> Result<Vec<String>> {
            let mut r = BufReader::new(string_source(input), 100);
            let mut out = Vec::new();
            while !r.at_end_of_input()? {
                out.push(r.take_string(2)?);
            }
            Ok(out)
        };
        assert_eq!(pairs("abcd1234")?, ["ab", "cd", "12", "34"]);
        assert_eq!(pairs("abcd123").unwrap_err().kind(), &ErrorKind::EndOfFile);
        Ok(())
    })
    .unwrap();
}

#[test]
fn integers_across_one_byte_reads() {
    let mut data = vec![0xfe];
    data.extend(0x1234u16.to_be_bytes());
    data.extend(0x1234u16.to_le_bytes());
    data.extend((-2i16).to_be_bytes());
    data.extend(0xdead_beefu32.to_be_bytes());
    data.extend(0xdead_beefu32.to_le_bytes());
    data.extend((-5i32).to_le_bytes());
    data.extend(0x0102_0304_0506_0708u64.to_be_bytes());
    data.extend(0x0102_0304_0506_0708u64.to_le_bytes());
    data.extend(i64::MIN.to_be_bytes());
    data.extend(1.5f32.to_be_bytes());
    data.extend((-0.25f64).to_le_bytes());
    data.push(0x80);
    let len = data.len();
    let (r, trace) = mock::run_traced(|_env| {
        let flow = mock::Flow::new("flow");
        flow.on_read(data.iter().map(|&b| Action::Return(vec![b])));
        buf_read::parse(&flow, 8, |r| {
            assert_eq!(r.u8()?, 0xfe);
            assert_eq!(r.u16_be()?, 0x1234);
            assert_eq!(r.u16_le()?, 0x1234);
            assert_eq!(r.i16_be()?, -2);
            assert_eq!(r.u32_be()?, 0xdead_beef);
            assert_eq!(r.u32_le()?, 0xdead_beef);
            assert_eq!(r.i32_le()?, -5);
            assert_eq!(r.u64_be()?, 0x0102_0304_0506_0708);
            assert_eq!(r.u64_le()?, 0x0102_0304_0506_0708);
            assert_eq!(r.i64_be()?, i64::MIN);
            assert_eq!(r.f32_be()?, 1.5);
            assert_eq!(r.f64_le()?, -0.25);
            assert_eq!(r.i8()?, -128);
            Ok(r.pos())
        })
    });
    assert_eq!(r.unwrap(), len as u64);
    // One traced read per byte, then the end of the stream (untraced).
    assert_eq!(trace.len(), len + 1, "{trace:?}");
    assert_eq!(trace[0], r#"flow: read "\xfe""#);
    assert_eq!(trace[1], r#"flow: read "\u{12}""#);
    assert_eq!(trace[len], "flow: closed");
    // Not enough bytes for the integer.
    mock::run(|_env| {
        let err = buf_read::parse(string_source("\x01\x02\x03"), 8, |r| r.u32_le()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "end of file, unexpected end-of-file at offset 3"
        );
        Ok(())
    })
    .unwrap();
}

#[test]
fn invalid_utf8_line_is_left_for_line_bytes() {
    mock::run(|_env| {
        let mut r = BufReader::new(string_source(&b"ok\r\nbad \xc3\x28 line\r\nnext"[..]), 64);
        assert_eq!(r.line()?, "ok");
        let err = r.line().unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::Parse);
        assert_eq!(
            err.to_string(),
            "parse error, line is not valid UTF-8 (at offset 8)"
        );
        assert_eq!(r.pos(), 4);
        assert_eq!(r.line_bytes()?, b"bad \xc3\x28 line");
        assert_eq!(r.line()?, "next");
        assert!(r.at_end_of_input()?);
        Ok(())
    })
    .unwrap();
}

#[test]
fn source_errors_pass_through_and_the_reader_stays_usable() {
    struct Flaky(Cell<u32>);
    impl Source for Flaky {
        fn read(&self, buf: &mut [u8]) -> Result<usize> {
            let n = self.0.get();
            self.0.set(n + 1);
            match n {
                0 => {
                    buf[..3].copy_from_slice(b"ab\n");
                    Ok(3)
                }
                1 => Err(Error::new(ErrorKind::Net(NetError::ConnectionReset))),
                2 => {
                    buf[..2].copy_from_slice(b"cd");
                    Ok(2)
                }
                _ => Err(Error::msg(ErrorKind::EndOfFile, "source-side end")),
            }
        }
    }
    mock::run(|_env| {
        let mut r = BufReader::new(Flaky(Cell::new(0)), 64);
        assert_eq!(r.take(1)?, b"a");
        assert_eq!(r.line()?, "b");
        let err = r.line().unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::Net(NetError::ConnectionReset));
        // An `EndOfFile` error from the source is an end of stream.
        assert_eq!(r.line()?, "cd");
        assert!(r.at_end_of_input()?);
        assert!(r.eof_seen());
        Ok(())
    })
    .unwrap();
}

#[test]
fn end_of_input_and_prefix_parsing() {
    mock::run(|_env| {
        let mut r = BufReader::new(string_source("x"), 4);
        assert!(!r.at_end_of_input()?);
        let err = r.end_of_input().unwrap_err();
        assert_eq!(
            err.to_string(),
            "parse error, unexpected data after parsing (at offset 0)"
        );
        r.char('x')?;
        r.end_of_input()?;

        let (word, mut rest) = buf_read::parse_prefix(chunks(["GET /", " HTTP"]), 64, |r| {
            r.take_while_string(|b| b != b' ')
        })?;
        assert_eq!(word, "GET");
        assert_eq!(rest.pos(), 3);
        assert_eq!(rest.take_all_string()?, " / HTTP");
        Ok(())
    })
    .unwrap();
    // In-memory input needs no runtime.
    let n = buf_read::parse_bytes("123\n", |r| {
        let digits = r.take_while_string(|b| b.is_ascii_digit())?;
        r.char('\n')?;
        digits.parse::<u32>().map_err(|e| r.parse_error(e))
    });
    assert_eq!(n.unwrap(), 123);
    let err = buf_read::parse_bytes("12x", |r| r.take_while(|b| b.is_ascii_digit())).unwrap_err();
    assert_eq!(
        err.to_string(),
        "parse error, unexpected data after parsing (at offset 2)"
    );
}

#[test]
fn std_io_read_and_bufread() {
    // With `std::io::Read` in scope, call the parsers through `&mut`: on an
    // owned reader, `reader.take(n)` would be `Read::take`.
    use std::io::{BufRead, Read};
    mock::run(|_env| {
        let mut reader = BufReader::new(chunks(["first line\nsec", "ond line\r\n", "tail"]), 64);
        let r = &mut reader;
        let mut line = String::new();
        r.read_line(&mut line)?;
        assert_eq!(line, "first line\n");
        let lines: Vec<String> = BufRead::lines(&mut *r).collect::<std::io::Result<_>>()?;
        assert_eq!(lines, ["second line", "tail"]);
        let mut rest = Vec::new();
        assert_eq!(r.read_to_end(&mut rest)?, 0);

        // Mixed with the parsers; a large read goes straight to the source.
        let mut reader = BufReader::with_capacity(chunks(["ab", "cdefgh", "ijklmnop"]), 4, 64);
        let r = &mut reader;
        assert_eq!(r.any_char()?, 'a');
        let mut buf = [0u8; 8];
        assert_eq!(r.read(&mut buf)?, 1);
        assert_eq!(&buf[..1], b"b");
        assert_eq!(r.read(&mut buf)?, 6);
        assert_eq!(&buf[..6], b"cdefgh");
        assert_eq!(r.pos(), 8);
        assert_eq!(r.take(2)?, b"ij");
        let mut rest = String::new();
        r.read_to_string(&mut rest)?;
        assert_eq!(rest, "klmnop");
        assert_eq!(r.pos(), 16);
        Ok(())
    })
    .unwrap();
}

#[test]
fn reader_from_bytes_and_debug() {
    let mut r = BufReader::from_bytes(vec![1, 2, 3]);
    assert!(r.eof_seen());
    assert_eq!(r.peek(), [1, 2, 3]);
    assert_eq!(r.u16_le().unwrap(), 0x0201);
    assert_eq!(
        format!("{r:?}"),
        "BufReader { pos: 2, buffered: 1, capacity: 3, max_size: 18446744073709551615, eof_seen: true }"
    );
    assert_eq!(
        r.u16_le().unwrap_err().to_string(),
        "end of file, unexpected end-of-file at offset 3"
    );
}

#[test]
#[should_panic(expected = "can't consume 2 bytes of a 1 byte buffer")]
fn consume_more_than_buffered_panics() {
    BufReader::from_bytes("x").consume(2);
}

#[test]
#[should_panic(expected = "max_size must be positive")]
fn zero_max_size_panics() {
    BufReader::new(string_source(""), 0);
}
