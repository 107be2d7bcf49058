//! Conformance: a stream read that returns less than asked takes the
//! socket for drained (on POSIX the next read waits for readiness instead of
//! trying a `recv` that would fail), and that must never lose data or an end
//! of stream: data sent after the short read, an end of stream that came
//! with the data (before or after the reader's poll saw it), and this side
//! shutting reads.
//!
//! Each read is bounded by a timeout, so a lost wake-up fails the test
//! rather than hanging it.

use std::time::Duration;

use rstest::rstest;
use weft::flow::{Shutdown, ShutdownKind, Sink, Source};
use weft::{time, Backend, Switch};

/// Reads once into a 64-byte buffer, failing after 5 s.
fn read_bounded(env: &weft::Env, conn: &weft::net::Stream) -> weft::Result<Vec<u8>> {
    let mut buf = [0u8; 64];
    let n = time::with_timeout(env.mono_clock(), Duration::from_secs(5), || {
        conn.read(&mut buf)
    })?;
    Ok(buf[..n].to_vec())
}

/// A connected pair on loopback TCP: (accepted, client).
fn tcp_pair(env: &weft::Env) -> weft::Result<(weft::net::Stream, weft::net::Stream)> {
    let listener = env.net().listen(&"127.0.0.1:0".parse()?)?;
    let client = env.net().connect(&listener.local_addr()?)?;
    let (server, _) = listener.accept()?;
    Ok((server, client))
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn data_after_a_short_read_is_read(#[case] backend: Backend) {
    weft::run_with(backend, |env| {
        let (server, client) = tcp_pair(env)?;
        Switch::run(|sw| {
            sw.fork(|| {
                for i in 0..20u8 {
                    client.write_all(&[i; 3])?;
                    // Let the reader drain the socket and wait.
                    env.mono_clock().sleep(Duration::from_millis(1))?;
                }
                client.shutdown(ShutdownKind::Write)
            });
            let mut got = Vec::new();
            loop {
                let chunk = read_bounded(env, &server)?;
                if chunk.is_empty() {
                    break;
                }
                got.extend(chunk);
            }
            let want: Vec<u8> = (0..20u8).flat_map(|i| [i; 3]).collect();
            assert_eq!(got, want);
            Ok(())
        })
    })
    .unwrap();
}

#[rstest]
#[case::posix_read_at_once(Backend::Posix, false)]
#[case::posix_read_after_a_poll(Backend::Posix, true)]
#[case::uring_read_at_once(Backend::Uring, false)]
#[case::uring_read_after_a_poll(Backend::Uring, true)]
#[case::mock_read_at_once(Backend::Mock, false)]
#[case::mock_read_after_a_poll(Backend::Mock, true)]
fn an_end_of_stream_sent_with_the_data_ends_the_next_read(
    #[case] backend: Backend,
    #[case] poll_first: bool,
) {
    weft::run_with(backend, |env| {
        let (server, client) = tcp_pair(env)?;
        client.write_all(b"hello")?;
        client.shutdown(ShutdownKind::Write)?;
        if poll_first {
            // The scheduler polls while we sleep and sees data and end of
            // stream in one event, before the reader's first read.
            env.mono_clock().sleep(Duration::from_millis(20))?;
        }
        assert_eq!(read_bounded(env, &server)?, b"hello");
        assert_eq!(read_bounded(env, &server)?, b"", "end of stream");
        assert_eq!(read_bounded(env, &server)?, b"", "and again");
        Ok(())
    })
    .unwrap();
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn shutting_reads_after_a_short_read_ends_the_next_read(#[case] backend: Backend) {
    weft::run_with(backend, |env| {
        let (server, client) = tcp_pair(env)?;
        client.write_all(b"abc")?;
        assert_eq!(read_bounded(env, &server)?, b"abc");
        server.shutdown(ShutdownKind::Read)?;
        assert_eq!(read_bounded(env, &server)?, b"");
        drop(client);
        Ok(())
    })
    .unwrap();
}
