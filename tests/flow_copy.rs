//! Conformance: `flow::copy` between files, sockets and pipes gives the
//! same results on every backend — the bytes, the count, and the file
//! positions afterwards — whether the backend splices in the kernel
//! (io_uring; each case there also checks the ring's splice counter, so a
//! silent fall back to the buffer loop fails it) or copies through a
//! buffer (POSIX, the mock).

#[path = "fs_support/mod.rs"]
mod support;

use std::io::{Seek, SeekFrom};
use std::time::Duration;

use rstest::rstest;
use support::{with_scratch, Resolve};
use weft::flow::{self, Shutdown, ShutdownKind, Sink, Source};
use weft::fs::{Create, File, OpenOut};
use weft::net::Stream;
use weft::process::{Command, Stdio};
use weft::{fiber, Backend, Env};

/// Bytes without a short period, so a lost or repeated chunk shows.
fn data(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x2545_f491;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 8) as u8
        })
        .collect()
}

/// Bytes the io_uring ring of this thread has spliced so far (0 on the
/// other backends).
fn spliced(backend: Backend) -> u64 {
    match backend {
        Backend::Uring => weft::uring::stats().unwrap().spliced_bytes,
        _ => 0,
    }
}

/// On io_uring, checks that at least `min` bytes were spliced since
/// `before`.
#[track_caller]
fn assert_spliced(backend: Backend, before: u64, min: u64) {
    if backend == Backend::Uring {
        let moved = spliced(backend) - before;
        assert!(
            moved >= min,
            "spliced {moved} bytes, expected at least {min}"
        );
    }
}

fn tcp_pair(env: &Env) -> weft::Result<(Stream, Stream)> {
    let listener = env.net().listen(&"127.0.0.1:0".parse()?)?;
    let addr = listener.local_addr()?;
    let (a, (b, _)) = fiber::pair(|| env.net().connect(&addr), || listener.accept())?;
    Ok((a, b))
}

fn read_to_vec(src: &impl Source) -> weft::Result<Vec<u8>> {
    let mut v = Vec::new();
    src.read_to_end(&mut v)?;
    Ok(v)
}

fn create(root: &weft::fs::Dir, name: &str, contents: &[u8]) -> weft::Result<File> {
    let f = (root / name).open_out(OpenOut::new(Create::OrTruncate(0o600)))?;
    f.write_all(contents)?;
    f.seek(SeekFrom::Start(0))?;
    Ok(f)
}

#[rstest]
#[case::uring(Backend::Uring)]
#[case::posix(Backend::Posix)]
#[case::mock(Backend::Mock)]
fn a_file_to_tcp_from_its_position(#[case] backend: Backend) {
    let want = data(1_500_000);
    with_scratch(backend, Resolve::Kernel, "copy-file-tcp", |env, root, _| {
        let file = create(root, "src", &want)?;
        file.seek(SeekFrom::Start(1000))?;
        let (tx, rx) = tcp_pair(env)?;
        let before = spliced(backend);
        let (n, got) = fiber::pair(
            || {
                let n = flow::copy(&file, &tx)?;
                tx.shutdown(ShutdownKind::Write)?;
                Ok(n)
            },
            || read_to_vec(&rx),
        )?;
        assert_eq!(n, want.len() as u64 - 1000);
        assert!(
            got == want[1000..],
            "the socket received the file from 1000"
        );
        assert_spliced(backend, before, n);
        assert_eq!((&file).stream_position()?, want.len() as u64, "at the end");
        assert_eq!(flow::copy(&file, &tx)?, 0, "nothing more to copy");
        Ok(())
    });
}

#[rstest]
#[case::uring(Backend::Uring)]
#[case::posix(Backend::Posix)]
#[case::mock(Backend::Mock)]
fn tcp_to_a_file_at_its_position(#[case] backend: Backend) {
    let want = data(1_200_000);
    with_scratch(backend, Resolve::Kernel, "copy-tcp-file", |env, root, _| {
        let file = create(root, "dst", b"head:")?;
        file.seek(SeekFrom::End(0))?;
        let (tx, rx) = tcp_pair(env)?;
        let before = spliced(backend);
        let ((), n) = fiber::pair(
            || {
                for chunk in want.chunks(70_000) {
                    tx.write_all(chunk)?;
                }
                drop(tx);
                Ok(())
            },
            || flow::copy(&rx, &file),
        )?;
        assert_eq!(n, want.len() as u64);
        assert_spliced(backend, before, n);
        file.write_all(b":tail")?;
        let mut expect = b"head:".to_vec();
        expect.extend_from_slice(&want);
        expect.extend_from_slice(b":tail");
        assert!((root / "dst").load()? == expect, "head, the stream, tail");
        Ok(())
    });
}

#[rstest]
#[case::uring(Backend::Uring)]
#[case::posix(Backend::Posix)]
#[case::mock(Backend::Mock)]
fn file_to_file_and_empty_files(#[case] backend: Backend) {
    let want = data(700_000);
    with_scratch(
        backend,
        Resolve::Kernel,
        "copy-file-file",
        |_env, root, _| {
            let src = create(root, "a", &want)?;
            let dst = create(root, "b", b"")?;
            let before = spliced(backend);
            assert_eq!(flow::copy(&src, &dst)?, want.len() as u64);
            assert_spliced(backend, before, want.len() as u64);
            assert!((root / "b").load()? == want);
            assert_eq!((&dst).stream_position()?, want.len() as u64);

            let empty = create(root, "empty", b"")?;
            assert_eq!(flow::copy(&empty, &dst)?, 0);
            assert_eq!((root / "b").load()?.len(), want.len(), "unchanged");
            Ok(())
        },
    );
}

/// Cancelled while the source has nothing to give: the bytes copied so far
/// are in the sink, and the source keeps the rest.
#[rstest]
#[case::uring(Backend::Uring)]
#[case::posix(Backend::Posix)]
#[case::mock(Backend::Mock)]
fn a_copy_cancelled_while_the_source_idles_loses_nothing(#[case] backend: Backend) {
    with_scratch(backend, Resolve::Kernel, "copy-cancel", |env, root, _| {
        let (w, r) = env.net().socketpair()?;
        let file = create(root, "out", b"")?;
        w.write_all(b"first ")?;
        // The copy never ends (the source stays open): it is cancelled once
        // "first " is in the file, while it waits for more.
        let copied = || {
            while (root / "out").stat()?.size < 6 {
                env.mono_clock().sleep(Duration::from_millis(1))?;
            }
            Ok(())
        };
        fiber::first(|| flow::copy(&r, &file).map(|_| ()), copied)?;
        w.write_all(b"second")?;
        drop(w);
        assert_eq!((root / "out").load_string()?, "first ");
        assert_eq!(r.read_all()?, "second");
        Ok(())
    });
}

#[rstest]
#[case::uring(Backend::Uring)]
#[case::posix(Backend::Posix)]
fn a_childs_stdout_to_a_file_and_a_file_to_a_childs_stdin(#[case] backend: Backend) {
    let want = data(400_000);
    with_scratch(backend, Resolve::Kernel, "copy-pipes", |env, root, _| {
        let src = create(root, "in", &want)?;
        let out = create(root, "out", b"")?;
        let cmd = Command::new("cat").stdin(Stdio::Pipe).stdout(Stdio::Pipe);
        let mut child = env.process_mgr().spawn(&cmd)?;
        let stdin = child.take_stdin().unwrap();
        let before = spliced(backend);
        let (n_in, n_out) = fiber::pair(
            || {
                let n = flow::copy(&src, &stdin)?;
                drop(stdin);
                Ok(n)
            },
            || flow::copy(child.stdout().unwrap(), &out),
        )?;
        child.wait()?.check()?;
        assert_eq!((n_in, n_out), (want.len() as u64, want.len() as u64));
        assert!((root / "out").load()? == want, "through cat and back");
        assert_spliced(backend, before, 2 * want.len() as u64);
        Ok(())
    });
}

/// A sink whose peer has gone fails the copy as a write to it would.
#[rstest]
#[case::uring(Backend::Uring)]
#[case::posix(Backend::Posix)]
#[case::mock(Backend::Mock)]
fn a_copy_to_a_closed_peer_fails_like_a_write(#[case] backend: Backend) {
    with_scratch(backend, Resolve::Kernel, "copy-epipe", |env, root, _| {
        let src = create(root, "src", &data(300_000))?;
        let (a, b) = env.net().socketpair()?;
        drop(b);
        let copy_err = flow::copy(&src, &a).unwrap_err();
        let write_err = a.write(b"x").unwrap_err();
        assert_eq!(
            copy_err.kind(),
            write_err.kind(),
            "{copy_err} / {write_err}"
        );
        Ok(())
    });
}
