//! Conformance: vectored IO. `Source::read_vectored` fills its buffers in
//! order (one `readv` on io_uring and POSIX), and the buffered writer hands
//! the flow all its pending buffers in one vectored write, resuming
//! correctly inside a buffer after a partial write.

#[path = "fs_support/mod.rs"]
mod support;

use std::io::{IoSliceMut, Seek, SeekFrom};
use std::time::Duration;

use rstest::rstest;
use support::{with_scratch, Resolve};
use weft::buf_write::{self, Bytes};
use weft::flow::{Sink, Source};
use weft::fs::{Create, OpenOut};
use weft::{fiber, time::with_timeout, Backend};

#[rstest]
#[case::uring(Backend::Uring)]
#[case::posix(Backend::Posix)]
#[case::mock(Backend::Mock)]
fn read_vectored_fills_the_buffers_in_order(#[case] backend: Backend) {
    with_scratch(backend, Resolve::Kernel, "readv", |env, root, _| {
        let (a, b) = env.net().socketpair()?;
        a.write_all(b"abcdefghij")?;
        let (mut x, mut y, mut z) = ([0u8; 3], [0u8; 4], [0u8; 10]);
        let mut bufs = [
            IoSliceMut::new(&mut x),
            IoSliceMut::new(&mut []),
            IoSliceMut::new(&mut y),
            IoSliceMut::new(&mut z),
        ];
        assert_eq!(b.read_vectored(&mut bufs)?, 10, "one read takes all ten");
        assert_eq!((&x, &y, &z[..3]), (b"abc", b"defg", &b"hij"[..]));
        assert_eq!(b.read_vectored(&mut [])?, 0);

        // A cancelled vectored read takes nothing.
        let err = with_timeout(env.mono_clock(), Duration::from_millis(20), || {
            b.read_vectored(&mut [IoSliceMut::new(&mut [0u8; 8])])
        })
        .unwrap_err();
        assert!(err.is_timeout());
        a.write_all(b"later")?;
        let mut w = [0u8; 8];
        let n = b.read_vectored(&mut [IoSliceMut::new(&mut w)])?;
        assert_eq!(&w[..n], b"later");

        // Files read at their position, which moves.
        let f = (root / "f").open_out(OpenOut::new(Create::OrTruncate(0o600)))?;
        f.write_all(b"0123456789")?;
        f.seek(SeekFrom::Start(1))?;
        let (mut p, mut q) = ([0u8; 4], [0u8; 3]);
        let n = f.read_vectored(&mut [IoSliceMut::new(&mut p), IoSliceMut::new(&mut q)])?;
        assert_eq!((n, &p, &q), (7, b"1234", b"567"));
        assert_eq!((&f).stream_position()?, 8);
        let mut r = [0u8; 10];
        assert_eq!(f.read_vectored(&mut [IoSliceMut::new(&mut r)])?, 2);
        assert_eq!(&r[..2], b"89");
        assert_eq!(f.read_vectored(&mut [IoSliceMut::new(&mut r)])?, 0);
        Ok(())
    });
}

/// Hundreds of buffers, copied and zero-copy, through a socket that takes
/// them in partial writes: the reader gets every byte, in order.
#[rstest]
#[case::uring(Backend::Uring)]
#[case::posix(Backend::Posix)]
#[case::mock(Backend::Mock)]
fn buffered_writes_survive_partial_vectored_writes(#[case] backend: Backend) {
    with_scratch(backend, Resolve::Kernel, "bufw", |env, _root, _| {
        let (a, b) = env.net().socketpair()?;
        let mut expect = Vec::new();
        let chunks: Vec<Bytes> = (0..300u32)
            .map(|i| {
                let len = 1 + (i as usize * 7919) % 50_000;
                Bytes::from(
                    (0..len)
                        .map(|j| (i as usize + j) as u8)
                        .collect::<Vec<u8>>(),
                )
            })
            .collect();
        for (i, c) in chunks.iter().enumerate() {
            expect.extend_from_slice(format!("<{i}>").as_bytes());
            expect.extend_from_slice(c);
        }
        let ((), got) = fiber::pair(
            || {
                buf_write::with_flow(&a, |w| {
                    for (i, c) in chunks.iter().enumerate() {
                        w.string(&format!("<{i}>"))?;
                        w.schedule_bytes(c.clone())?;
                        if i % 250 == 249 {
                            fiber::yield_now()?;
                        }
                    }
                    Ok(())
                })?;
                drop(a);
                Ok(())
            },
            || {
                // Small reads with yields, so the writer's socket fills and
                // its writes are partial.
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    match b.read(&mut buf)? {
                        0 => return Ok(got),
                        n => got.extend_from_slice(&buf[..n]),
                    }
                    fiber::yield_now()?;
                }
            },
        )?;
        assert_eq!(got.len(), expect.len());
        assert!(got == expect, "every byte, in order");
        Ok(())
    });
}

/// On io_uring, a flush of many small buffers is one `IORING_OP_SENDMSG`
/// (a write per buffer would be a hundred operations), up to `IOV_MAX`
/// (1024) buffers per write.
#[test]
fn a_flush_of_many_buffers_is_one_ring_operation() {
    // The other tests here count the process's fds: open none meanwhile.
    let _serial = support::serial();
    if weft::uring::probe().is_err() {
        return;
    }
    weft::run_with(Backend::Uring, |env| {
        let (a, b) = env.net().socketpair()?;
        for (buffers, writes) in [(100usize, 1u64), (1500, 2)] {
            let ops = buf_write::with_flow(&a, |w| {
                let before = weft::uring::stats()?.ops;
                for i in 0..buffers {
                    w.schedule_bytes(Bytes::from(vec![i as u8; 10]))?;
                }
                w.flush()?;
                Ok(weft::uring::stats()?.ops - before)
            })?;
            assert_eq!(ops, writes, "{buffers} buffers");
            let mut got = vec![0u8; buffers * 10];
            b.read_exact(&mut got)?;
            let in_order = got
                .chunks(10)
                .enumerate()
                .all(|(i, c)| c.iter().all(|&x| x == i as u8));
            assert!(in_order);
        }
        Ok(())
    })
    .unwrap();
}
