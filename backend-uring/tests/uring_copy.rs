//! `flow::copy` on io_uring: between files, sockets and pipes the bytes
//! move with `IORING_OP_SPLICE` (the ring's `spliced_bytes` counter proves
//! it: a copy through a buffer would leave it at zero), the file positions
//! advance as with reads and writes, and a cancelled copy loses no byte.

use std::cell::RefCell;
use std::time::Duration;

use weft_core::flow::{self, Shutdown, Sink, Source};
use weft_core::fs::{Create, File, OpenOut};
use weft_core::net::Stream;
use weft_core::process::{Command, Stdio};
use weft_core::{fiber, time::with_timeout, Env, RunConfig};

/// Tests here count the process's fds: run them one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Runs `main` on io_uring (if the kernel allows it) and checks that no fd
/// leaked.
fn run<T>(main: impl FnOnce(&Env) -> weft_core::Result<T>) -> Option<T> {
    if weft_uring::probe().is_err() {
        return None;
    }
    let before = open_fds();
    let r = weft_uring::run(&RunConfig::default(), main).unwrap();
    assert_eq!(open_fds(), before, "no fd leaked");
    Some(r)
}

/// `len` bytes that are not periodic with any small period, so a lost,
/// repeated or reordered chunk shows.
fn data(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

struct Tmp(std::path::PathBuf);

impl Tmp {
    fn new(tag: &str) -> Tmp {
        let p = std::env::temp_dir().join(format!("weft-uring-copy-{tag}-{}", std::process::id()));
        Tmp(p)
    }

    fn path(&self, env: &Env) -> weft_core::fs::Path {
        env.fs() / self.0.to_str().unwrap()
    }

    fn create(&self, env: &Env, contents: &[u8]) -> weft_core::Result<File> {
        let f = self
            .path(env)
            .open_out(OpenOut::new(Create::OrTruncate(0o600)))?;
        f.write_all(contents)?;
        f.seek(std::io::SeekFrom::Start(0))?;
        Ok(f)
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A connected TCP pair on the loopback.
fn tcp_pair(env: &Env) -> weft_core::Result<(Stream, Stream)> {
    let listener = env.net().listen(&"127.0.0.1:0".parse()?)?;
    let addr = listener.local_addr()?;
    let (a, (b, _)) = fiber::pair(|| env.net().connect(&addr), || listener.accept())?;
    Ok((a, b))
}

fn spliced() -> u64 {
    weft_uring::stats().unwrap().spliced_bytes
}

/// Returns (0) once a copy into a sink that nobody reads has spliced and
/// then made no progress for 100 ms: it is stuck, its sink full.
fn stalled(env: &Env) -> weft_core::Result<u64> {
    let clock = env.mono_clock();
    let (mut last, mut still) = (spliced(), 0);
    loop {
        clock.sleep(Duration::from_millis(10))?;
        let now = spliced();
        still = if now == last && now > 0 { still + 1 } else { 0 };
        if still == 10 {
            return Ok(0);
        }
        last = now;
    }
}

/// Copies a file of `len` bytes to a TCP socket and checks that every byte
/// arrived, through the splice path (in and out of the copy's pipe), and
/// that the file position ended at the end, as reads would have left it.
fn file_to_socket_is_spliced(name: &str, len: usize) {
    let _s = serial();
    let tmp = Tmp::new(name);
    let want = data(len);
    run(|env| {
        let file = tmp.create(env, &want)?;
        let (tx, rx) = tcp_pair(env)?;
        let before = spliced();
        let (n, got) = fiber::pair(
            || {
                let n = flow::copy(&file, &tx)?;
                tx.shutdown(flow::ShutdownKind::Write)?;
                Ok(n)
            },
            || rx.read_all_bytes(),
        )?;
        assert_eq!(n, want.len() as u64);
        assert!(
            got.len() == want.len() && got == want,
            "the socket received the file"
        );
        assert_eq!(
            spliced() - before,
            2 * want.len() as u64,
            "in and out of the pipe"
        );
        assert_eq!(
            std::io::Seek::stream_position(&mut &file)?,
            want.len() as u64
        );
        assert_eq!(file.read(&mut [0u8; 8])?, 0);
        Ok(())
    });
}

#[test]
fn a_file_sent_to_a_socket_is_spliced() {
    file_to_socket_is_spliced("file-tcp", 3 << 20);
}

#[test]
fn a_socket_written_to_a_file_is_spliced_at_the_file_position() {
    let _s = serial();
    let tmp = Tmp::new("tcp-file");
    let want = data(2 << 20);
    run(|env| {
        let file = tmp.create(env, b"head:")?;
        file.seek(std::io::SeekFrom::End(0))?;
        let (tx, rx) = tcp_pair(env)?;
        let before = spliced();
        let ((), n) = fiber::pair(
            || {
                for chunk in want.chunks(100_000) {
                    tx.write_all(chunk)?;
                }
                tx.shutdown(flow::ShutdownKind::Write)
            },
            || flow::copy(&rx, &file),
        )?;
        assert_eq!(n, want.len() as u64);
        assert!(spliced() - before >= want.len() as u64);
        // The copy advanced the position: this write goes after it.
        file.write_all(b":tail")?;
        let got = tmp.path(env).load()?;
        let mut expect = b"head:".to_vec();
        expect.extend_from_slice(&want);
        expect.extend_from_slice(b":tail");
        assert!(got == expect, "the file holds head, the stream, tail");
        Ok(())
    });
}

#[test]
fn a_copy_starts_at_the_source_file_position() {
    let _s = serial();
    let tmp = Tmp::new("offset");
    let want = data(300_000);
    run(|env| {
        let file = tmp.create(env, &want)?;
        file.seek(std::io::SeekFrom::Start(12_345))?;
        let (a, b) = env.net().socketpair()?;
        let (n, got) = fiber::pair(
            || {
                let n = flow::copy(&file, &a)?;
                drop(a);
                Ok(n)
            },
            || b.read_all_bytes(),
        )?;
        assert_eq!(n, (want.len() - 12_345) as u64);
        assert!(got == want[12_345..]);
        Ok(())
    });
}

trait ReadAllBytes {
    fn read_all_bytes(&self) -> weft_core::Result<Vec<u8>>;
}

impl<S: Source> ReadAllBytes for S {
    fn read_all_bytes(&self) -> weft_core::Result<Vec<u8>> {
        let mut v = Vec::new();
        self.read_to_end(&mut v)?;
        Ok(v)
    }
}

#[test]
fn a_childs_pipe_written_to_a_file_is_spliced_directly() {
    let _s = serial();
    let tmp = Tmp::new("pipe-file");
    run(|env| {
        let file = tmp.create(env, b"")?;
        let cmd = Command::new("sh")
            .args([
                "-c",
                "i=0; while [ $i -lt 2000 ]; do echo line $i; i=$((i+1)); done",
            ])
            .stdout(Stdio::Pipe);
        let child = env.process_mgr().spawn(&cmd)?;
        let before = weft_uring::stats()?;
        let n = flow::copy(child.stdout().unwrap(), &file)?;
        let after = weft_uring::stats()?;
        child.wait()?.check()?;
        let expect: String = (0..2000).map(|i| format!("line {i}\n")).collect();
        assert_eq!(n, expect.len() as u64);
        assert_eq!(tmp.path(env).load_string()?, expect);
        // Pipe to file needs no intermediate pipe: each byte spliced once.
        assert_eq!(after.spliced_bytes - before.spliced_bytes, n);
        Ok(())
    });
}

#[test]
fn a_file_written_to_a_childs_stdin_is_spliced() {
    let _s = serial();
    let tmp = Tmp::new("file-pipe");
    let want = data(1 << 20);
    run(|env| {
        let file = tmp.create(env, &want)?;
        let cmd = Command::new("wc")
            .arg("-c")
            .stdin(Stdio::Pipe)
            .stdout(Stdio::Pipe);
        let mut child = env.process_mgr().spawn(&cmd)?;
        let stdin = child.take_stdin().unwrap();
        let before = spliced();
        let (n, out) = fiber::pair(
            || {
                let n = flow::copy(&file, &stdin)?;
                drop(stdin);
                Ok(n)
            },
            || child.stdout().unwrap().read_all(),
        )?;
        child.wait()?.check()?;
        assert_eq!(n, want.len() as u64);
        assert_eq!(out.trim(), want.len().to_string());
        assert_eq!(spliced() - before, n);
        Ok(())
    });
}

#[test]
fn sixty_four_mebibytes_arrive_intact() {
    file_to_socket_is_spliced("large", 64 << 20);
}

/// A socket-to-socket copy whose sink's peer reads nothing: the drain
/// blocks with bytes in the intermediate pipe, and the copy is cancelled
/// there. What the sink took plus what the source still yields is exactly
/// what was sent.
#[test]
fn a_copy_cancelled_mid_drain_gives_the_held_bytes_back() {
    let _s = serial();
    let want = data(8 << 20);
    run(|env| {
        let (src_w, src) = env.net().socketpair()?;
        let (dst, dst_r) = env.net().socketpair()?;
        let received = RefCell::new(Vec::new());
        weft_core::Switch::run(|sw| {
            sw.fork(|| {
                src_w.write_all(&want)?;
                drop(src_w);
                Ok(())
            });
            let r = fiber::first(|| flow::copy(&src, &dst), || stalled(env));
            assert_eq!(r?, 0, "the copy was stuck and cancelled");
            // Now collect both sides.
            drop(dst);
            let got = dst_r.read_all_bytes()?;
            received.borrow_mut().extend_from_slice(&got);
            let rest = src.read_all_bytes()?;
            received.borrow_mut().extend_from_slice(&rest);
            Ok(())
        })?;
        let got = received.into_inner();
        assert_eq!(got.len(), want.len(), "no byte lost or repeated");
        assert!(got == want, "in order");
        Ok(())
    });
}

/// The same with a file as the source: its position stops after the last
/// byte the sink took.
#[test]
fn a_cancelled_copy_from_a_file_leaves_the_position_after_what_was_delivered() {
    let _s = serial();
    let tmp = Tmp::new("cancel-file");
    let want = data(8 << 20);
    run(|env| {
        let file = tmp.create(env, &want)?;
        let (dst, dst_r) = env.net().socketpair()?;
        let r = fiber::first(|| flow::copy(&file, &dst), || stalled(env));
        assert_eq!(r?, 0, "the copy was stuck and cancelled");
        let pos = std::io::Seek::stream_position(&mut &file)?;
        drop(dst);
        let got = dst_r.read_all_bytes()?;
        assert!(!got.is_empty() && got.len() < want.len());
        assert_eq!(pos, got.len() as u64, "the position is what the sink took");
        let mut all = got;
        file.read_to_end(&mut all)?;
        assert!(all == want);
        Ok(())
    });
}

/// Cancelled while waiting for the source: nothing held, nothing lost, and
/// no kernel worker left blocked (the copy polls before it splices).
#[test]
fn a_copy_cancelled_while_the_source_is_idle_takes_nothing() {
    let _s = serial();
    run(|env| {
        let (src_w, src) = env.net().socketpair()?;
        let (dst, dst_r) = env.net().socketpair()?;
        src_w.write_all(b"first ")?;
        // The copy never ends (the source stays open); it is cancelled once
        // "first " has arrived, while it waits for more.
        let mut got = vec![0u8; 6];
        fiber::first(
            || flow::copy(&src, &dst).map(|_| ()),
            || dst_r.read_exact(&mut got),
        )?;
        assert_eq!(&got, b"first ");
        assert_eq!(weft_uring::stats()?.in_flight, 0);
        src_w.write_all(b"second")?;
        drop(src_w);
        assert_eq!(src.read_all()?, "second");
        Ok(())
    });
}

/// `/proc` files refuse to splice (`EINVAL`): the copy falls back to a
/// buffer, with the same result.
#[test]
fn a_source_that_cannot_splice_is_copied_through_a_buffer() {
    let _s = serial();
    let want = std::fs::read("/proc/self/cmdline").unwrap();
    run(|env| {
        let file = (env.fs() / "/proc/self/cmdline").open_in()?;
        let (a, b) = env.net().socketpair()?;
        let before = spliced();
        let (n, got) = fiber::pair(
            || {
                let n = flow::copy(&file, &a)?;
                drop(a);
                Ok(n)
            },
            || b.read_all_bytes(),
        )?;
        assert_eq!(n, want.len() as u64);
        assert_eq!(got, want);
        assert_eq!(spliced(), before, "nothing was spliced");
        Ok(())
    });
}

/// `/dev/full` refuses splices too, after the fill has put bytes in the
/// pipe: they are given back, and the buffer copy fails as `write` does
/// (`ENOSPC`, as on POSIX).
#[test]
fn a_sink_that_cannot_splice_fails_as_a_write_would() {
    let _s = serial();
    let tmp = Tmp::new("full");
    run(|env| {
        let file = tmp.create(env, &data(100_000))?;
        let full = (env.fs() / "/dev/full").open_out(OpenOut::new(Create::Never))?;
        let before = spliced();
        let err = flow::copy(&file, &full).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
        assert!(spliced() > before, "the fill had spliced into the pipe");
        Ok(())
    });
}

/// A file opened to append takes the buffer path (splice refuses
/// `O_APPEND`); the data lands at the end.
#[test]
fn a_copy_to_an_appending_file_appends() {
    let _s = serial();
    let tmp = Tmp::new("append");
    run(|env| {
        tmp.create(env, b"old;")?;
        let out = tmp.path(env).open_out(OpenOut::append(Create::Never))?;
        let src = flow::string_source("new");
        let (a, b) = env.net().socketpair()?;
        a.write_all(b"more")?;
        drop(a);
        flow::copy(&src, &out)?;
        flow::copy(&b, &out)?;
        assert_eq!(tmp.path(env).load_string()?, "old;newmore");
        Ok(())
    });
}

/// A splice that blocks in the kernel's worker thread (an empty pipe, no
/// poll first) is interrupted by the cancellation, and its completion
/// awaited: the fiber resumes promptly with `Cancelled`, nothing in flight.
#[test]
fn a_splice_blocked_in_a_kernel_worker_is_cancelled() {
    let _s = serial();
    run(|env| {
        let (r1, w1) = weft_uring::ops::pipe()?;
        let (r2, w2) = weft_uring::ops::pipe()?;
        let t0 = std::time::Instant::now();
        let err = with_timeout(env.mono_clock(), Duration::from_millis(30), || {
            r1.splice_to(None, &w2, None, 4096)
        })
        .unwrap_err();
        assert!(err.is_timeout(), "{err}");
        assert!(t0.elapsed() < Duration::from_secs(5), "promptly");
        assert_eq!(weft_uring::stats()?.in_flight, 0);
        // Both pipes still work.
        w1.write(b"ok")?;
        assert_eq!(r1.splice_to(None, &w2, None, 4096)?.0, 2);
        let mut buf = [0u8; 2];
        assert_eq!(r2.read(&mut buf)?, 2);
        assert_eq!(&buf, b"ok");
        Ok(())
    });
}

/// A file with little left to copy goes through a buffer (two splices on
/// kernel workers would cost more), with the same result.
#[test]
fn a_small_file_is_copied_through_a_buffer() {
    let _s = serial();
    let tmp = Tmp::new("small");
    let want = data(10_000);
    run(|env| {
        let file = tmp.create(env, &want)?;
        let (a, b) = env.net().socketpair()?;
        let before = spliced();
        assert_eq!(flow::copy(&file, &a)?, want.len() as u64);
        drop(a);
        assert!(b.read_all_bytes()? == want);
        assert_eq!(spliced(), before, "not spliced");
        Ok(())
    });
}

/// Copies between two files in both directions at once hold both files'
/// turns, taken in one order: they finish instead of each holding one turn
/// and waiting for the other.
#[test]
fn copies_between_two_files_in_both_directions_finish() {
    let _s = serial();
    let (ta, tb) = (Tmp::new("both-a"), Tmp::new("both-b"));
    run(|env| {
        let a = ta.create(env, &data(3 << 20))?;
        let b = tb.create(env, &data(3 << 20))?;
        let r = with_timeout(env.mono_clock(), Duration::from_secs(20), || {
            fiber::both(
                || flow::copy(&a, &b).map(drop),
                || flow::copy(&b, &a).map(drop),
            )
        });
        assert!(r.is_ok(), "{r:?}");
        Ok(())
    });
}
