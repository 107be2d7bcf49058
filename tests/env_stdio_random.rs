//! Conformance: standard streams and the random source.

use std::time::Duration;

use rstest::rstest;
use weft::flow::{Sink, Source};
use weft::Backend;

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn random_bytes_fill_the_buffer(#[case] backend: Backend) {
    weft::run_with(backend, |env| {
        let r = env.secure_random();
        let (mut a, mut b) = ([0u8; 33], [0u8; 33]);
        r.fill(&mut a)?;
        r.fill(&mut b)?;
        assert_ne!(a, [0u8; 33]);
        assert_ne!(a, b, "successive reads differ");
        Ok(())
    })
    .unwrap();
}

#[test]
fn the_mock_random_source_is_seeded() {
    let draw = |seed| {
        weft::mock::Config::new()
            .seed(seed)
            .run(|env| env.secure_random().u64())
            .unwrap()
    };
    assert_eq!(draw(7), draw(7));
    assert_ne!(draw(7), draw(8));
}

/// Replaces fd 0 with a pipe for the duration of `f` (this is the only test
/// in this binary that touches fd 0).
fn with_stdin_pipe(f: impl FnOnce(i32)) {
    // The per-backend cases run in parallel threads of one process, and
    // fd 0 is per process: one at a time.
    static STDIN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = STDIN.lock().unwrap_or_else(|e| e.into_inner());
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array for pipe2; dup/dup2 on fds we own.
    let saved = unsafe {
        assert_eq!(libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC), 0);
        let saved = libc::dup(0);
        libc::dup2(fds[0], 0);
        libc::close(fds[0]);
        saved
    };
    f(fds[1]);
    // SAFETY: restoring fd 0 from our saved copy; closing fds we own.
    unsafe {
        libc::dup2(saved, 0);
        libc::close(saved);
        libc::close(fds[1]);
    }
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
fn stdin_reads_and_a_cancelled_read_loses_nothing(#[case] backend: Backend) {
    with_stdin_pipe(|w| {
        weft::run_with(backend, |env| {
            let stdin = env.stdin();
            let clock = env.mono_clock();
            let mut buf = [0u8; 64];
            // Nothing to read yet: the read times out...
            let e =
                weft::time::with_timeout(clock, Duration::from_millis(20), || stdin.read(&mut buf))
                    .unwrap_err();
            assert!(e.is_timeout(), "{e}");
            // ...but the bytes that arrive afterwards are not lost.
            // SAFETY: writing from a valid buffer to the pipe we own.
            unsafe { libc::write(w, b"hello\n".as_ptr().cast(), 6) };
            let n = stdin.read(&mut buf[..3])?;
            assert_eq!(&buf[..n], b"hel");
            let n = stdin.read(&mut buf)?;
            assert_eq!(&buf[..n], b"lo\n");
            Ok(())
        })
        .unwrap();
    });
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn stdout_and_stderr_accept_writes(#[case] backend: Backend) {
    weft::run_with(backend, |env| {
        env.stdout().write_all(b"")?;
        env.stderr().write_all(b"weft stderr test line\n")?;
        Ok(())
    })
    .unwrap();
}
