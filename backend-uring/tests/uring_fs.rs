//! The filesystem on io_uring: cancelled file reads lose nothing, many
//! fibers share one file, appends, and what `sync_*`, `set_len` and `stat`
//! do — all through the ring.

use std::cell::Cell;
use std::io::{Seek, SeekFrom};
use std::os::fd::OwnedFd;
use std::time::Duration;

use weft_core::flow::{Sink, Source};
use weft_core::fs::{Create, FileKind, OpenOut, Path};
use weft_core::{fiber, time::with_timeout, Env, Result, RunConfig};
use weft_uring::ops;

/// Tests here count the process's fds: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Runs `main` with a fresh scratch directory (removed afterwards), given
/// as a confined `Dir`'s path and as its real path, and checks that no fd
/// is left open.
fn with_scratch<T>(
    test: &str,
    main: impl FnOnce(&Env, &Path, &std::path::Path) -> Result<T>,
) -> Option<T> {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if weft_uring::probe().is_err() {
        eprintln!("skipped: io_uring is not usable here");
        return None;
    }
    let dir = std::env::temp_dir().join(format!("weft-uring-fs-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let before = open_fds();
    let r = weft_uring::run(&RunConfig::default(), |env| {
        let top = env.fs() / dir.to_str().unwrap();
        main(env, &top.open_dir()?.path(), &dir)
    });
    let _ = std::fs::remove_dir_all(&dir);
    let value = r.unwrap_or_else(|e| panic!("{test}: {e}"));
    assert_eq!(open_fds(), before, "no fd leaked");
    Some(value)
}

fn pattern(len: usize) -> Vec<u8> {
    // Not periodic within any read size used here.
    let mut x = 0x9e37_79b9u32;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// A read at the file position cancelled while in flight — here, always
/// after its SQE is queued, so its CQE usually carries bytes anyway — does
/// not move the position: reading on gives the file exactly once.
#[test]
fn a_file_read_cancelled_in_flight_loses_and_repeats_nothing() {
    with_scratch("cancel-read", |_env, dir, _real| {
        let data = pattern(300_000);
        (dir / "data").save(&data, Create::Exclusive(0o600))?;
        let file = (dir / "data").open_in()?;
        let (mut got, mut cancelled, mut round) = (Vec::new(), 0, 0usize);
        loop {
            round += 1;
            let mut buf = vec![0u8; 1000 + round % 3000];
            let outcome = Cell::new(None);
            let _ = fiber::first(
                || {
                    let r = file.read(&mut buf);
                    outcome.set(Some(r.as_ref().map(|n| *n).map_err(|e| e.is_cancelled())));
                    r.map(Some)
                },
                // Cancels the read at once (queued, not yet submitted), or
                // after one or two turns of the ring.
                || {
                    for _ in 0..round % 3 {
                        fiber::yield_now()?;
                    }
                    Ok(None)
                },
            );
            match outcome.get().expect("the read ran") {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(true) => cancelled += 1,
                Err(false) => panic!("the read failed"),
            }
        }
        assert!(
            cancelled > 50,
            "reads were cancelled in flight ({cancelled})"
        );
        assert_eq!(got.len(), data.len());
        assert!(got == data, "every byte once, in order");
        assert_eq!(weft_uring::stats()?.in_flight, 0);
        Ok(())
    });
}

/// A read from a FIFO nobody writes is in flight until cancelled; it
/// returns only with its CQE, and what is written later arrives whole.
#[test]
fn a_fifo_read_nobody_writes_is_cancelled_and_the_file_still_works() {
    with_scratch("fifo", |env, dir, real| {
        let real = real.join("fifo");
        let c = std::ffi::CString::new(real.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // A writer first, so that opening the reader does not wait.
        let writer = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&real)?;
        let reader = (dir / "fifo").open_in()?;
        let mut buf = [0u8; 64];
        for _ in 0..5 {
            let err = with_timeout(env.mono_clock(), Duration::from_millis(5), || {
                reader.read(&mut buf)
            })
            .unwrap_err();
            assert!(err.is_timeout(), "{err}");
            assert_eq!(weft_uring::stats()?.in_flight, 0, "resumed by its CQE");
        }
        std::io::Write::write_all(&mut &writer, b"after the timeouts")?;
        let n = reader.read(&mut buf)?;
        assert_eq!(&buf[..n], b"after the timeouts");
        drop(writer);
        assert_eq!(reader.read(&mut buf)?, 0, "end of stream");
        Ok(())
    });
}

/// 64 fibers read one file at once at their own offsets; their reads are
/// in flight together and reach the kernel in batches.
#[test]
fn sixty_four_fibers_read_one_file_at_once() {
    with_scratch("many-readers", |_env, dir, _real| {
        const CHUNK: usize = 48 * 1024;
        let data = pattern(64 * CHUNK);
        (dir / "data").save(&data, Create::Exclusive(0o600))?;
        let file = (dir / "data").open_in()?;
        let before = weft_uring::stats()?;
        let chunks = fiber::map(64, 0..64, |i| {
            let mut out = vec![0u8; CHUNK];
            // In pieces, so that each fiber has several reads.
            for (j, piece) in out.chunks_mut(8192).enumerate() {
                file.read_exact_at(piece, (i * CHUNK + j * 8192) as u64)?;
            }
            Ok((i, out))
        })?;
        let after = weft_uring::stats()?;
        for (i, chunk) in chunks {
            assert!(chunk == data[i * CHUNK..(i + 1) * CHUNK], "chunk {i}");
        }
        let ops = after.ops - before.ops;
        assert!(ops >= 64 * 6, "{ops} reads");
        assert!(after.enters - before.enters < ops / 8, "batched: {after:?}");
        // Positioned reads left the position alone.
        assert_eq!((&file).stream_position()?, 0);
        Ok(())
    });
}

/// Fibers sharing a `File` take turns at its position: each byte is read
/// by exactly one of them.
#[test]
fn fibers_sharing_a_file_position_read_each_byte_once() {
    with_scratch("shared-position", |_env, dir, _real| {
        let data = pattern(200_000);
        (dir / "data").save(&data, Create::Exclusive(0o600))?;
        let file = (dir / "data").open_in()?;
        let parts = fiber::map(8, 0..8, |i| {
            let mut mine = Vec::new();
            let mut buf = vec![0u8; 1000 + 357 * i];
            loop {
                match file.read(&mut buf)? {
                    0 => return Ok(mine),
                    n => mine.extend_from_slice(&buf[..n]),
                }
            }
        })?;
        let mut all: Vec<u8> = parts.concat();
        let mut want = data.clone();
        assert_eq!(all.len(), want.len(), "no byte read twice or skipped");
        all.sort_unstable();
        want.sort_unstable();
        assert!(all == want);
        Ok(())
    });
}

/// Appends land at the end whatever the position, whole, from many fibers;
/// the position follows the end of the last append.
#[test]
fn appends_from_many_fibers_land_whole() {
    with_scratch("append", |_env, dir, _real| {
        let log = dir / "log";
        log.save("head\n", Create::Exclusive(0o600))?;
        let shared = log.open_out(OpenOut::append(Create::Never))?;
        assert_eq!(shared.seek(SeekFrom::Start(0))?, 0);
        fiber::all((0..16).map(|i| {
            let (log, shared) = (&log, &shared);
            move || {
                let own = log.open_out(OpenOut::append(Create::Never))?;
                for j in 0..50 {
                    let f = if j % 2 == 0 { &own } else { shared };
                    f.write_all(format!("fiber {i:02} line {j:02}\n").as_bytes())?;
                }
                own.close()
            }
        }))?;
        let text = log.load_string()?;
        let mut lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.remove(0), "head");
        assert_eq!(lines.len(), 800);
        lines.sort_unstable();
        let want: Vec<String> = (0..16)
            .flat_map(|i| (0..50).map(move |j| format!("fiber {i:02} line {j:02}")))
            .collect();
        assert_eq!(lines, want);
        // Alone, an append leaves the position at the end, and reads and
        // writes go on from there.
        shared.write_all(b"tail\n")?;
        let end = text.len() as u64 + 5;
        assert_eq!((&shared).stream_position()?, end);
        assert_eq!(shared.seek(SeekFrom::Current(-5))?, end - 5);
        assert_eq!(shared.read_all()?, "tail\n");
        Ok(())
    });
}

/// `stat` (STATX) agrees with `std::fs::metadata`; `set_len`, `sync_all`
/// and `sync_data` do what they say; `fallocate` through the ops layer.
#[test]
fn stat_sync_truncate_and_fallocate() {
    with_scratch("meta", |env, dir, real| {
        let path = dir / "f";
        let f = path.open_out(OpenOut::new(Create::Exclusive(0o640)))?;
        f.write_all(b"0123456789")?;
        f.sync_data()?;
        f.sync_all()?;
        let st = f.stat()?;
        let real = real.join("f");
        let meta = std::fs::metadata(&real)?;
        use std::os::unix::fs::MetadataExt;
        assert_eq!(st.kind, FileKind::File);
        assert_eq!((st.size, st.perm, st.nlink), (10, 0o640, 1));
        assert_eq!(
            (st.ino, st.dev, st.uid, st.gid),
            (meta.ino(), meta.dev(), meta.uid(), meta.gid())
        );
        assert_eq!(st.mtime, meta.modified()?);
        assert_eq!(path.stat()?, st, "the path's stat is the file's");
        f.set_len(4)?;
        assert_eq!(f.stat()?.size, 4);
        f.set_len(6)?;
        assert_eq!(path.load()?, b"0123\0\0");
        // The position did not move with the length.
        assert_eq!((&f).stream_position()?, 10);
        f.close()?;
        let dir_st = dir.stat()?;
        assert_eq!(dir_st.kind, FileKind::Directory);
        assert_eq!((env.fs() / "/dev/null").stat()?.kind, FileKind::CharDevice);

        let std_file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&real)?;
        let fd = ops::Fd::from(OwnedFd::from(std_file));
        fd.fallocate(0, 0, 1 << 16)?;
        assert_eq!(fd.statx()?.stx_size, 1 << 16);
        fd.ftruncate(1)?;
        fd.fsync(false)?;
        assert_eq!(std::fs::metadata(&real)?.len(), 1);
        fd.close()
    });
}

/// Directory and file operations are SQEs on the ring of the fiber's
/// thread: each adds to its operation count.
#[test]
fn fs_operations_go_through_the_ring() {
    with_scratch("ring", |_env, dir, _real| {
        let count = |f: &dyn Fn() -> Result<()>| -> Result<u64> {
            let before = weft_uring::stats()?.ops;
            f()?;
            Ok(weft_uring::stats()?.ops - before)
        };
        // open + write + close
        assert_eq!(
            count(&|| (dir / "a").save("x", Create::Exclusive(0o600)))?,
            3
        );
        assert_eq!(count(&|| (dir / "d").mkdir(0o700))?, 1);
        assert_eq!(
            count(&|| (dir / "a").rename(&(dir / "d/a")))?,
            2,
            "open d + rename"
        );
        assert_eq!(
            count(&|| (dir / "d/a").lstat().map(drop))?,
            2,
            "open d + statx"
        );
        assert_eq!(
            count(&|| (dir / "d/a").stat().map(drop))?,
            2,
            "openat2 + statx"
        );
        assert_eq!(count(&|| (dir / "l").symlink("d/a"))?, 1);
        assert_eq!(count(&|| (dir / "l").unlink())?, 1);
        let f = (dir / "d/a").open_out(OpenOut::new(Create::Never))?;
        assert_eq!(count(&|| f.sync_all())?, 1);
        // FTRUNCATE where the kernel has it (6.9), else a system thread.
        assert!(count(&|| f.set_len(0))? <= 1);
        drop(f);
        Ok(())
    });
}

/// A `Dir` is `Send`: handed to a plain thread (which runs no scheduler),
/// its operations go to a small ring of that thread and block it, as
/// system calls would; the ring goes with the thread. Files opened there
/// work there.
#[test]
fn a_dir_works_on_a_plain_thread() {
    with_scratch("thread", |_env, dir, _real| {
        let before = weft_uring::stats()?.ops;
        let d = dir.clone();
        let read_back = std::thread::scope(|s| {
            s.spawn(move || -> Result<String> {
                (&d / "plain").save("from a plain thread", Create::Exclusive(0o600))?;
                let f = (&d / "plain").open_out(OpenOut::append(Create::Never))?;
                f.write_all(b", appended")?;
                f.sync_data()?;
                f.close()?;
                (&d / "sub").mkdir(0o700)?;
                assert!((&d / "../out").mkdir(0o700).is_err(), "still confined");
                (&d / "plain").load_string()
            })
            .join()
            .unwrap()
        })?;
        assert_eq!(read_back, "from a plain thread, appended");
        assert_eq!(
            weft_uring::stats()?.ops,
            before,
            "none on the scheduler's ring"
        );
        Ok(())
    });
}
