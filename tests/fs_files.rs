//! Conformance: files and directories — create modes, `File` IO
//! (pread/pwrite, seek, stat, truncate, sync), `read_dir`, `mkdirs`,
//! `rmtree`, `rename`, `stat`/`lstat`, symlinks, and error contexts.

#[path = "fs_support/mod.rs"]
mod support;

use std::io::{Read, Seek, SeekFrom, Write};
use std::time::Duration;

use rstest::rstest;
use support::{assert_err, assert_fs_err, with_scratch, Resolve};
use weft::flow::{Sink, Source};
use weft::fs::{Create, FileKind, OpenOut};
use weft::{fiber, Backend, ErrorKind, FsError};

#[rstest]
#[case::uring(Backend::Uring)]
#[case::posix(Backend::Posix)]
#[case::mock(Backend::Mock)]
fn create_modes(#[case] backend: Backend) {
    with_scratch(
        backend,
        Resolve::Kernel,
        "files-create",
        |_env, root, scratch| {
            let l = scratch.label();
            let f = root / "test-file";
            assert_fs_err(
                f.save("1st-write-original", Create::Never),
                FsError::NotFound,
                &format!("opening <{l}:test-file>"),
            );
            assert!(!scratch.exists(scratch.join("test-file")));

            f.save("1st-write-original", Create::IfMissing(0o666))?;
            f.save("2nd-write", Create::IfMissing(0o666))?;
            assert_eq!(
                f.load_string()?,
                "2nd-write-original",
                "IfMissing keeps the rest"
            );

            f.save("1st-write-original", Create::OrTruncate(0o666))?;
            f.save("2nd-write", Create::OrTruncate(0o666))?;
            assert_eq!(f.load_string()?, "2nd-write", "OrTruncate truncates");

            assert_fs_err(
                f.save("again", Create::Exclusive(0o666)),
                FsError::AlreadyExists,
                &format!("opening <{l}:test-file>"),
            );
            assert_eq!(
                f.load_string()?,
                "2nd-write",
                "a failed Exclusive changes nothing"
            );

            f.save("overwritten", Create::Never)?;
            assert_eq!(f.load_string()?, "overwritten");
            f.save_with("+appended", OpenOut::append(Create::Never))?;
            assert_eq!(f.load_string()?, "overwritten+appended");
            (root / "log").save_with("a", OpenOut::append(Create::IfMissing(0o600)))?;
            (root / "log").save_with("b", OpenOut::append(Create::IfMissing(0o600)))?;
            assert_eq!((root / "log").load_string()?, "ab");

            (root / "private").save("p", Create::Exclusive(0o600))?;
            assert_eq!((root / "private").stat()?.perm & 0o777, 0o600);
            assert_eq!(scratch.mode(scratch.join("private")) & 0o777, 0o600);
            assert_fs_err(
                (root / "missing-dir/file").save("x", Create::IfMissing(0o600)),
                FsError::NotFound,
                "opening",
            );
            assert_fs_err(
                (root / "nope").load(),
                FsError::NotFound,
                &format!("opening <{l}:nope>"),
            );
            let bad_utf8 = root / "bin";
            bad_utf8.save([0xff, 0xfe], Create::Exclusive(0o600))?;
            assert_err(bad_utf8.load_string(), ErrorKind::InvalidInput, "reading");
            Ok(())
        },
    );
}

#[rstest]
#[case::uring(Backend::Uring)]
#[case::posix(Backend::Posix)]
#[case::mock(Backend::Mock)]
fn file_positioned_io_seek_truncate_sync(#[case] backend: Backend) {
    with_scratch(
        backend,
        Resolve::Kernel,
        "files-io",
        |_env, root, _scratch| {
            let path = root / "test.txt";
            let file = path.open_out(OpenOut::new(Create::Exclusive(0o600)))?;
            file.write_all(b"+-!")?;
            file.write_all_at(b"abc123", 2)?;
            let mut buf1 = [0u8; 3];
            let mut buf2 = [0u8; 4];
            file.read_exact_at(&mut buf1, 1)?;
            file.read_exact_at(&mut buf2, 4)?;
            assert_eq!((&buf1, &buf2), (b"-ab", b"c123"));
            // Positioned IO left the position after "+-!".
            assert_eq!((&file).stream_position()?, 3);

            let mut buf = [0u8; 10];
            assert_eq!(file.read_at(&mut buf, 0)?, 8);
            assert_eq!(&buf[..8], b"+-abc123");
            assert_eq!(file.read_at(&mut buf, 8)?, 0, "at the end");
            assert_eq!(file.read_at(&mut buf, 100)?, 0, "past the end");
            assert_err(
                file.read_exact_at(&mut buf, 5),
                ErrorKind::EndOfFile,
                "offset 8",
            );
            assert_eq!(file.read_at(&mut [], 0)?, 0);

            file.set_len(10)?;
            assert_eq!(file.stat()?.size, 10);
            assert_eq!(file.stat()?.kind, FileKind::File);
            assert_eq!(file.seek(SeekFrom::Start(3))?, 3);
            assert_eq!(file.seek(SeekFrom::Current(2))?, 5);
            assert_eq!(file.seek(SeekFrom::End(-1))?, 9);
            assert_err(
                file.seek(SeekFrom::Current(-100)),
                ErrorKind::InvalidInput,
                "",
            );
            file.sync_all()?;
            file.sync_data()?;
            file.set_len(4)?;
            file.seek(SeekFrom::Start(0))?;
            assert_eq!(file.read_all()?, "+-ab");
            file.close()?;
            assert_eq!(path.load()?, b"+-ab");

            // std::io through File and &File.
            let mut f = path.open_out(OpenOut::new(Create::OrTruncate(0o600)))?;
            writeln!(f, "hello {}", 42)?;
            Write::write_all(&mut &f, b"second\n")?;
            f.rewind()?;
            let mut text = String::new();
            (&f).read_to_string(&mut text)?;
            assert_eq!(text, "hello 42\nsecond\n");
            f.seek(SeekFrom::Start(6))?;
            let mut two = [0u8; 2];
            f.read_exact(&mut two)?;
            assert_eq!(&two, b"42");
            drop(f);

            // A file opened for reading cannot be written.
            let ro = path.open_in()?;
            assert!(ro.write(b"x").is_err());
            assert_eq!(ro.read_all()?, "hello 42\nsecond\n");
            Ok(())
        },
    );
}

#[rstest]
#[case::uring(Backend::Uring)]
#[case::posix(Backend::Posix)]
#[case::mock(Backend::Mock)]
fn big_files_and_many_fibers(#[case] backend: Backend) {
    with_scratch(
        backend,
        Resolve::Kernel,
        "files-big",
        |_env, root, _scratch| {
            let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
            (root / "big").save(&data, Create::Exclusive(0o600))?;
            assert_eq!((root / "big").load()?, data);
            let lines = root / "big-lines";
            let text: String = (0..10_000).map(|i| format!("line {i}\n")).collect();
            lines.save(&text, Create::Exclusive(0o600))?;
            let n = lines.with_lines(|it| {
                let mut n = 0;
                for (i, line) in it.enumerate() {
                    assert_eq!(line?, format!("line {i}"));
                    n += 1;
                }
                Ok(n)
            })?;
            assert_eq!(n, 10_000);
            // Fibers doing file IO at once, each suspended only itself.
            let names: Vec<String> = (0..50).map(|i| format!("f{i}")).collect();
            fiber::iter(16, names.iter(), |name| {
                let p = root / name.as_str();
                p.save(name, Create::Exclusive(0o600))?;
                assert_eq!(p.load_string()?, *name);
                Ok(())
            })?;
            assert_eq!(root.path().read_dir()?.len(), 52);
            Ok(())
        },
    );
}

/// Every file call is a cancellation point, even when the data is there at
/// once; a call still running on its system thread keeps its fd open until
/// it finishes, and nothing leaks (checked by `with_scratch`).
#[rstest]
#[case::uring(Backend::Uring)]
#[case::posix(Backend::Posix)]
// Not on the mock: its file calls never suspend, so these endless readers
// would never let their sibling run (`file_calls_are_cancellation_points`).
fn cancelled_reads_stop_promptly(#[case] backend: Backend) {
    with_scratch(backend, Resolve::Kernel, "files-cancel", |env, root, _| {
        let zero = (env.fs() / "/dev/zero").open_out(OpenOut::new(Create::Never))?;
        let result = fiber::both(
            || {
                let mut buf = [0u8; 4];
                loop {
                    zero.read_exact(&mut buf)?;
                }
            },
            || Err(weft::Error::msg(ErrorKind::InvalidInput, "simulated error")),
        );
        let err = result.unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::InvalidInput, "{err}");
        drop(zero);
        // A fiber cancelled in the middle of loading a file.
        let data = vec![7u8; 4 << 20];
        (root / "big").save(&data, Create::Exclusive(0o600))?;
        let raced = fiber::first(
            || loop {
                (root / "big").load()?;
            },
            || {
                fiber::yield_now()?;
                Ok(Vec::<u8>::new())
            },
        )?;
        assert!(raced.is_empty());
        // Nothing starts from a cancelled context.
        let r = weft::cancel::sub(|scope| {
            scope.cancel(weft::Error::msg(ErrorKind::InvalidInput, "stop"));
            (root / "never").mkdir(0o700)
        });
        assert!(r.unwrap_err().is_cancelled());
        assert!(!(root / "never").exists()?);
        Ok(())
    });
}

/// `/dev/null` and `/dev/zero`: reads see end of file or zeros, writes are
/// discarded and counted, the position stays 0, and they cannot be
/// truncated or created anew.
#[rstest]
#[case::uring(Backend::Uring)]
#[case::posix(Backend::Posix)]
#[case::mock(Backend::Mock)]
fn dev_null_and_dev_zero(#[case] backend: Backend) {
    with_scratch(
        backend,
        Resolve::Kernel,
        "files-devices",
        |env, _root, _| {
            let null = (env.fs() / "/dev/null").open_out(OpenOut::new(Create::Never))?;
            assert_eq!(null.stat()?.kind, FileKind::CharDevice);
            assert_eq!(null.stat()?.size, 0);
            assert_eq!(null.write(b"gone")?, 4);
            assert_eq!(null.read_all()?, "");
            let mut buf = [1u8; 5000];
            assert_eq!(null.read_at(&mut buf, 0)?, 0);
            drop(null);

            let zero = (env.fs() / "/dev/zero").open_in()?;
            zero.read_exact(&mut buf)?;
            assert!(buf.iter().all(|&b| b == 0));
            assert_eq!((&zero).stream_position()?, 0);
            assert_eq!(zero.seek(SeekFrom::Start(100))?, 0);
            buf[..10].fill(1);
            assert_eq!(zero.read_at(&mut buf[..10], 1 << 40)?, 10);
            assert_eq!(&buf[..10], &[0; 10]);
            assert!(zero.write(b"x").is_err(), "opened for reading");
            let zero = (env.fs() / "/dev/zero").open_out(OpenOut::new(Create::Never))?;
            assert_eq!(zero.write(b"x")?, 1);
            assert!(zero.set_len(0).is_err());
            drop(zero);

            assert_fs_err(
                (env.fs() / "/dev/null").save("x", Create::Exclusive(0o600)),
                FsError::AlreadyExists,
                "opening",
            );
            (env.fs() / "/dev/null").save("x", Create::OrTruncate(0o600))?;
            assert_eq!((env.fs() / "/dev/null").load()?, b"");
            Ok(())
        },
    );
}

/// A read cancelled while in flight loses no bytes: what a read returned
/// (even one that completed in the same instant as its cancellation) plus
/// what the later reads return is the whole file, in order. On POSIX the
/// read runs on a system thread that cannot be stopped, so this holds only
/// because the position is moved when a result is delivered, not by the
/// kernel; on io_uring a cancelled positioned read never moves it; the
/// mock's reads never suspend, so none is cut short there, and the bytes
/// must still all arrive in order.
#[rstest]
#[case::uring(Backend::Uring)]
#[case::posix(Backend::Posix)]
#[case::mock(Backend::Mock)]
fn a_cancelled_file_read_loses_no_bytes(#[case] backend: Backend) {
    with_scratch(
        backend,
        Resolve::Kernel,
        "files-cancel-read",
        |_env, root, _| {
            let data: Vec<u8> = (0..1u32 << 20).map(|i| (i * 7 % 251) as u8).collect();
            (root / "data").save(&data, Create::Exclusive(0o600))?;
            // Whether a read is still in flight when its cancellation lands
            // depends on how the OS schedules the POSIX pool thread; on a
            // loaded machine a whole pass can see every read finish first,
            // so passes are repeated until one has cancelled reads.
            for _pass in 0..20 {
                let file = (root / "data").open_in()?;
                let (got, cancelled) = read_racing_cancellations(&file)?;
                assert_eq!(got.len(), data.len(), "{cancelled} reads cancelled");
                assert!(got == data, "every byte, in order");
                if backend != Backend::Posix || cancelled > 0 {
                    return Ok(());
                }
            }
            panic!("no read was cancelled in flight in 20 passes");
        },
    );
}

/// Reads `file` to its end, racing every other read against a sibling that
/// finishes at once; returns what was read and how many reads were cut short.
fn read_racing_cancellations(file: &weft::fs::File) -> weft::Result<(Vec<u8>, usize)> {
    let mut got = Vec::new();
    let mut cancelled = 0;
    for i in 0.. {
        // A read raced against a sibling that finishes at once: the read is
        // cancelled while on its way unless it wins.
        let mut buf = vec![0u8; 4096 + (i % 3) * 1000];
        let delivered = std::cell::Cell::new(None);
        fiber::first(
            || {
                delivered.set(Some(file.read(&mut buf)?));
                Ok(())
            },
            || Ok(()),
        )?;
        match delivered.take() {
            Some(n) => got.extend_from_slice(&buf[..n]),
            None => cancelled += 1,
        }
        // Then an ordinary read, which goes on from where the last delivered
        // read ended.
        let mut buf = [0u8; 3000];
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    Ok((got, cancelled))
}

/// A read of a FIFO cancelled while nothing has arrived: whatever the
/// read then takes from the kernel (on POSIX the call goes on on its system
/// thread) reaches the next reads, in order. (The mock has no FIFOs.)
#[rstest]
#[case::uring(Backend::Uring)]
#[case::posix(Backend::Posix)]
fn a_cancelled_fifo_read_loses_no_bytes(#[case] backend: Backend) {
    with_scratch(
        backend,
        Resolve::Kernel,
        "files-fifo-cancel",
        |env, root, scratch| {
            let fifo = format!("{}/fifo", scratch.path);
            let c = std::ffi::CString::new(fifo.clone()).unwrap();
            // SAFETY: a valid NUL-terminated path.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
            let (go, wait) = std::sync::mpsc::channel::<()>();
            // The writer is a plain thread; opening a FIFO waits for both ends.
            let writer = std::thread::spawn(move || {
                let mut w = std::fs::OpenOptions::new().write(true).open(&fifo)?;
                wait.recv().unwrap();
                w.write_all(b"every byte")
            });
            let file = (root / "fifo").open_in()?;
            let mut buf = [0u8; 64];
            let r = weft::time::with_timeout(env.mono_clock(), Duration::from_millis(50), || {
                file.read(&mut buf)
            });
            assert_err(r, ErrorKind::Timeout, "timed out");
            // The bytes arrive after the read was cancelled.
            go.send(()).unwrap();
            writer.join().unwrap().unwrap();
            let mut got = Vec::new();
            loop {
                let n = file.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            assert_eq!(String::from_utf8_lossy(&got), "every byte");
            Ok(())
        },
    );
}

/// An append lands at the end whatever the position and leaves the
/// position there; fibers sharing one `File` each read their own bytes.
#[rstest]
#[case::uring(Backend::Uring)]
#[case::posix(Backend::Posix)]
#[case::mock(Backend::Mock)]
fn appends_and_a_shared_position(#[case] backend: Backend) {
    with_scratch(
        backend,
        Resolve::Kernel,
        "files-append-pos",
        |_env, root, _| {
            let log = root / "log";
            log.save("head\n", Create::Exclusive(0o600))?;
            let f = log.open_out(OpenOut::append(Create::Never))?;
            assert_eq!(f.seek(SeekFrom::Start(0))?, 0);
            f.write_all(b"tail\n")?;
            assert_eq!((&f).stream_position()?, 10);
            assert_eq!(f.seek(SeekFrom::Current(-5))?, 5);
            assert_eq!(f.read_all()?, "tail\n");
            assert_eq!(log.load_string()?, "head\ntail\n");

            const N: u32 = 4_000;
            let counters: Vec<u8> = (0..N).flat_map(u32::to_be_bytes).collect();
            (root / "counters").save(&counters, Create::Exclusive(0o600))?;
            let shared = (root / "counters").open_in()?;
            let seen = std::cell::RefCell::new(Vec::new());
            fiber::all((0..8).map(|_| {
                let (shared, seen) = (&shared, &seen);
                move || loop {
                    let mut b = [0u8; 4];
                    match shared.read_exact(&mut b) {
                        Ok(()) => seen.borrow_mut().push(u32::from_be_bytes(b)),
                        Err(e) if e.kind() == &ErrorKind::EndOfFile => return Ok(()),
                        Err(e) => return Err(e),
                    }
                }
            }))?;
            let mut seen = seen.into_inner();
            seen.sort_unstable();
            assert!(seen == (0..N).collect::<Vec<_>>(), "each counter read once");
            Ok(())
        },
    );
}

/// Nothing starts from a cancelled fiber: each directory and file call
/// fails with `Cancelled` and changes nothing, whether the backend
/// suspends for it (POSIX) or not (the mock).
#[rstest]
#[case::uring(Backend::Uring)]
#[case::posix(Backend::Posix)]
#[case::mock(Backend::Mock)]
fn file_calls_are_cancellation_points(#[case] backend: Backend) {
    with_scratch(
        backend,
        Resolve::Kernel,
        "files-cancel-points",
        |_env, root, scratch| {
            let path = root / "file";
            path.save("original", Create::Exclusive(0o600))?;
            let file = path.open_out(OpenOut::new(Create::Never))?;
            let stop = || weft::Error::msg(ErrorKind::InvalidInput, "stop");
            // A reader that cancels its own context after a few reads.
            let mut reads = 0;
            let r: weft::Result<()> = weft::cancel::sub(|scope| loop {
                let mut buf = [0u8; 4];
                file.read_exact_at(&mut buf, 0)?;
                reads += 1;
                if reads == 3 {
                    scope.cancel(stop());
                }
            });
            assert!(r.unwrap_err().is_cancelled());
            assert_eq!(reads, 3, "the read after the cancellation did not happen");
            let r: weft::Result<()> = weft::cancel::sub(|scope| {
                scope.cancel(stop());
                let calls: [(&str, weft::Result<()>); 12] = [
                    ("mkdir", (root / "never").mkdir(0o700)),
                    ("save", (root / "never").save("x", Create::Exclusive(0o600))),
                    ("open", path.open_in().map(drop)),
                    ("stat", path.stat().map(drop)),
                    ("read_dir", root.path().read_dir().map(drop)),
                    ("rename", path.rename(&(root / "moved"))),
                    ("unlink", path.unlink()),
                    ("rmtree", path.rmtree()),
                    ("symlink", (root / "link").symlink("file")),
                    ("write", file.write_all_at(b"changed", 0)),
                    ("set_len", file.set_len(0)),
                    ("read", file.read_at(&mut [0u8; 4], 0).map(drop)),
                ];
                for (what, r) in calls {
                    assert!(r.unwrap_err().is_cancelled(), "{what}");
                }
                Ok(())
            });
            r?;
            drop(file);
            assert_eq!(root.path().read_dir()?, ["file"]);
            assert_eq!(scratch.read(scratch.join("file")), b"original");
            Ok(())
        },
    );
}

#[rstest]
#[case::uring(Backend::Uring)]
#[case::posix(Backend::Posix)]
#[case::mock(Backend::Mock)]
fn read_dir_is_sorted(#[case] backend: Backend) {
    with_scratch(
        backend,
        Resolve::Kernel,
        "files-readdir",
        |_env, root, scratch| {
            let l = scratch.label();
            for name in ["b", "a", "C", "z", "aa", "0", ".hidden"] {
                (root / name).save(name, Create::Exclusive(0o600))?;
            }
            (root / "dir").mkdir(0o700)?;
            (root / "link").symlink("dir")?;
            assert_eq!(
                root.path().read_dir()?,
                [".hidden", "0", "C", "a", "aa", "b", "dir", "link", "z"]
            );
            assert_eq!((root / "dir").read_dir()?, Vec::<String>::new());
            assert_eq!((root / ".").read_dir()?.len(), 9);
            (root / "dir/x").save("", Create::Exclusive(0o600))?;
            assert_eq!((root / "link").read_dir()?, ["x"], "follows links");
            assert_fs_err(
                (root / "missing").read_dir(),
                FsError::NotFound,
                &format!("reading directory <{l}:missing>"),
            );
            assert_fs_err(
                (root / "a").read_dir(),
                FsError::NotADirectory,
                "reading directory",
            );
            Ok(())
        },
    );
}

#[rstest]
#[case::uring(Backend::Uring)]
#[case::posix(Backend::Posix)]
#[case::mock(Backend::Mock)]
fn mkdir_mkdirs_rmdir_unlink(#[case] backend: Backend) {
    with_scratch(
        backend,
        Resolve::Kernel,
        "files-mkdir",
        |_env, root, scratch| {
            let l = scratch.label();
            let nested = root / "subdir1" / "subdir2" / "subdir3";
            nested.mkdirs(0o700)?;
            assert!(nested.is_dir()?);
            nested.mkdirs(0o700)?; // exists: fine
            (root / ".").mkdirs(0o700)?;
            (root / "./test//////////////test").mkdirs(0o700)?;
            assert!(scratch.is_dir(scratch.join("test/test")));
            assert_fs_err(
                (root / "subdir1").mkdir(0o700),
                FsError::AlreadyExists,
                &format!("creating directory <{l}:subdir1>"),
            );
            (root / "file").save("x", Create::Exclusive(0o600))?;
            assert_fs_err(
                (root / "file/sub").mkdirs(0o700),
                FsError::NotADirectory,
                "creating",
            );
            assert_fs_err(
                (root / "file").mkdirs(0o700),
                FsError::AlreadyExists,
                "creating",
            );
            // Through a symlink to a directory.
            scratch.symlink("subdir1", scratch.join("to-subdir"));
            (root / "to-subdir/nested").mkdir(0o700)?;
            assert!(scratch.is_dir(scratch.join("subdir1/nested")));
            assert_fs_err(
                (root / "to-subdir").mkdir(0o700),
                FsError::AlreadyExists,
                "creating",
            );
            scratch.symlink("foo", scratch.join("dangle"));
            assert_fs_err(
                (root / "dangle/foo").mkdir(0o700),
                FsError::NotFound,
                "creating",
            );

            assert_fs_err(
                (root / "subdir1").rmdir(),
                FsError::DirectoryNotEmpty,
                &format!("removing directory <{l}:subdir1>"),
            );
            (root / "to-subdir/nested").rmdir()?;
            assert!(!scratch.exists(scratch.join("subdir1/nested")));
            assert_fs_err(
                (root / "missing").rmdir(),
                FsError::NotFound,
                "removing directory",
            );
            assert_fs_err(
                (root / "file").rmdir(),
                FsError::NotADirectory,
                "removing directory",
            );

            assert_fs_err(
                (root / "subdir1").unlink(),
                FsError::IsADirectory,
                &format!("removing file <{l}:subdir1>"),
            );
            assert_fs_err(
                (root / "missing").unlink(),
                FsError::NotFound,
                "removing file",
            );
            (root / "file").unlink()?;
            assert!(!(root / "file").exists()?);
            (root / "to-subdir").unlink()?; // the link, not the directory
            assert!(scratch.is_dir(scratch.join("subdir1/subdir2")));
            Ok(())
        },
    );
}

#[rstest]
#[case::uring(Backend::Uring, Resolve::Kernel)]
#[case::uring_walker(Backend::Uring, Resolve::Walker)]
#[case::posix(Backend::Posix, Resolve::Kernel)]
#[case::posix_walker(Backend::Posix, Resolve::Walker)]
#[case::mock(Backend::Mock, Resolve::Kernel)]
fn rmtree_does_not_follow_links(#[case] backend: Backend, #[case] resolve: Resolve) {
    with_scratch(backend, resolve, "files-rmtree", |_env, root, scratch| {
        scratch.mkdirs(scratch.out("keep/deep"));
        scratch.write(scratch.out("keep/deep/file"), "keep");
        let l = scratch.label();
        let foo = root / "foo";
        (&foo / "bar/baz").mkdirs(0o700)?;
        (&foo / "bar/file1").save("data", Create::Exclusive(0o600))?;
        for i in 0..20 {
            (&foo / format!("bar/baz/f{i}")).save("x", Create::Exclusive(0o600))?;
        }
        scratch.symlink(scratch.out("keep"), scratch.join("foo/out-abs"));
        scratch.symlink(
            format!("../../{}/keep", scratch.outside_name()),
            scratch.join("foo/out-rel"),
        );
        scratch.symlink("bar", scratch.join("foo/in"));
        scratch.symlink("missing", scratch.join("foo/bar/dangling"));
        let deep = "d/".repeat(60);
        (&foo / deep.as_str()).mkdirs(0o700)?;
        (root / "keep-me").save("kept", Create::Exclusive(0o600))?;

        foo.rmtree()?;
        assert!(!scratch.exists(scratch.join("foo")));
        assert_eq!(scratch.read(scratch.out("keep/deep/file")), b"keep");
        assert_eq!((root / "keep-me").load_string()?, "kept");
        assert_fs_err(
            foo.rmtree(),
            FsError::NotFound,
            &format!("removing <{l}:foo>"),
        );
        foo.rmtree_if_exists()?;

        // A link to a directory: only the link goes.
        (root / "dir/sub").mkdirs(0o700)?;
        (root / "link").symlink("dir")?;
        (root / "link").rmtree()?;
        assert!(scratch.is_dir(scratch.join("dir/sub")));
        (root / "plain").save("x", Create::Exclusive(0o600))?;
        (root / "plain").rmtree()?;
        assert!(!scratch.exists(scratch.join("plain")));
        // Through a link in the parent: the target's entry is removed.
        (root / "link2").symlink("dir")?;
        (root / "link2/sub").rmtree()?;
        assert!(!scratch.exists(scratch.join("dir/sub")));
        Ok(())
    });
}

#[rstest]
#[case::uring(Backend::Uring)]
#[case::posix(Backend::Posix)]
#[case::mock(Backend::Mock)]
fn rename_within_and_across_dirs(#[case] backend: Backend) {
    with_scratch(
        backend,
        Resolve::Kernel,
        "files-rename",
        |env, root, scratch| {
            let l = scratch.label();
            (root / "tmp").mkdir(0o700)?;
            (root / "tmp").rename(&(root / "dir"))?;
            (root / "foo").save("FOO", Create::Exclusive(0o600))?;
            (root / "foo").rename(&(root / "dir/bar"))?;
            assert_eq!((root / "dir/bar").load_string()?, "FOO");
            let dir = (root / "dir").open_dir()?;
            (&dir / "bar").rename(&(root / "foo"))?;
            assert_eq!((root / "foo").load_string()?, "FOO");
            assert_fs_err(
                (&dir / "../foo").rename(&(root / "foo2")),
                FsError::PermissionDenied,
                &format!("renaming <dir:../foo> to <{l}:foo2>"),
            );
            // Replacing an existing file.
            (root / "other").save("OTHER", Create::Exclusive(0o600))?;
            (root / "other").rename(&(root / "foo"))?;
            assert_eq!((root / "foo").load_string()?, "OTHER");
            assert!(!scratch.exists(scratch.join("other")));
            assert_fs_err(
                (root / "missing").rename(&(root / "x")),
                FsError::NotFound,
                &format!("renaming <{l}:missing> to <{l}:x>"),
            );
            // Into the unconfined fs by absolute path.
            let dest = scratch.join("via-fs");
            (root / "foo").rename(&(env.fs() / dest.as_str()))?;
            assert_eq!(scratch.read(&dest), b"OTHER");
            Ok(())
        },
    );
}

#[rstest]
#[case::uring(Backend::Uring)]
#[case::posix(Backend::Posix)]
#[case::mock(Backend::Mock)]
fn stat_lstat_symlinks_and_read_link(#[case] backend: Backend) {
    with_scratch(
        backend,
        Resolve::Kernel,
        "files-stat",
        |env, root, scratch| {
            let l = scratch.label();
            let start = env.clock().now()? - Duration::from_secs(5);
            (root / "subdir").mkdir(0o755)?;
            (root / "file").save("kingbula", Create::Exclusive(0o640))?;
            (root / "link").symlink("file")?;
            (root / "dirlink").symlink("subdir")?;
            (root / "broken").symlink("missing")?;
            (root / "up").symlink("..")?;

            let st = (root / "file").stat()?;
            assert_eq!(
                (st.kind, st.size, st.perm & 0o777),
                (FileKind::File, 8, 0o640)
            );
            let end = env.clock().now()? + Duration::from_secs(5);
            assert!(st.mtime >= start && st.mtime <= end);
            assert!(st.nlink >= 1 && st.ino != 0);
            assert_eq!(st.ino, scratch.ino(scratch.join("file")));
            assert_eq!((root / "subdir").stat()?.kind, FileKind::Directory);
            assert_eq!((root / "link").stat()?.kind, FileKind::File);
            assert_eq!((root / "link").lstat()?.kind, FileKind::Symlink);
            assert_eq!((root / "link").lstat()?.size, 4);
            assert_eq!((root / "dirlink").stat()?.kind, FileKind::Directory);
            assert_eq!((root / "broken").lstat()?.kind, FileKind::Symlink);
            assert_fs_err(
                (root / "broken").stat(),
                FsError::NotFound,
                &format!("examining <{l}:broken>"),
            );
            assert_eq!((root / "up").lstat()?.kind, FileKind::Symlink);
            assert_fs_err((root / "up").stat(), FsError::PermissionDenied, "examining");
            assert_eq!(root.path().stat()?.kind, FileKind::Directory);
            assert_eq!((root / "subdir/..").stat()?.kind, FileKind::Directory);
            assert_fs_err(
                (root / "missing1/missing2").stat(),
                FsError::NotFound,
                "examining",
            );
            assert_eq!((env.fs() / "/dev/null").stat()?.kind, FileKind::CharDevice);

            assert!((root / "file").exists()? && (root / "file").is_file()?);
            assert!(!(root / "file").is_dir()? && (root / "dirlink").is_dir()?);
            assert!(!(root / "broken").exists()?);
            assert!(!(root / "file/below").exists()?);

            assert_eq!((root / "link").read_link()?, "file");
            assert_eq!((root / "up").read_link()?, "..");
            let via_fs = env.fs() / scratch.as_str() / "link";
            assert_eq!(via_fs.read_link()?, "file");
            assert_err(
                (root / "file").read_link(),
                ErrorKind::InvalidInput,
                &format!("reading target of symlink <{l}:file>"),
            );
            assert_fs_err(
                (root / "link").symlink("x"),
                FsError::AlreadyExists,
                "creating symlink",
            );
            Ok(())
        },
    );
}

#[rstest]
#[case::uring(Backend::Uring)]
#[case::posix(Backend::Posix)]
#[case::mock(Backend::Mock)]
fn paths_display_like_eio(#[case] backend: Backend) {
    with_scratch(
        backend,
        Resolve::Kernel,
        "files-display",
        |env, root, scratch| {
            let l = scratch.label();
            assert_eq!(env.cwd().path().to_string(), "<cwd>");
            assert_eq!((env.cwd() / "dir1" / "file").to_string(), "<cwd:dir1/file>");
            assert_eq!((env.fs() / "/etc/hosts").to_string(), "<fs:/etc/hosts>");
            assert_eq!(format!("{:?}", env.cwd() / "x"), "<cwd:x>");
            assert_eq!(root.path().to_string(), format!("<{l}>"));
            (root / "sub").mkdir(0o700)?;
            let sub = (root / "sub/").open_dir()?;
            assert_eq!((&sub / "f").to_string(), "<sub:f>");
            assert_eq!((root / "sub" / "x").to_string(), format!("<{l}:sub/x>"));
            assert_eq!((root / "sub" / "/abs").to_string(), format!("<{l}:/abs>"));
            Ok(())
        },
    );
}

/// The corners where backends could disagree: renames between kinds,
/// names that are not entries (`""`, `.`), trailing slashes with create
/// modes, and files shared between handles or unlinked while open.
#[rstest]
#[case::uring(Backend::Uring, Resolve::Kernel)]
#[case::uring_walker(Backend::Uring, Resolve::Walker)]
#[case::posix(Backend::Posix, Resolve::Kernel)]
#[case::posix_walker(Backend::Posix, Resolve::Walker)]
#[case::mock(Backend::Mock, Resolve::Kernel)]
fn rename_kinds_dots_slashes_and_shared_inodes(#[case] backend: Backend, #[case] resolve: Resolve) {
    with_scratch(backend, resolve, "files-corners", |_env, root, _scratch| {
        (root / "full/sub").mkdirs(0o700)?;
        (root / "empty").mkdir(0o700)?;
        (root / "empty2").mkdir(0o700)?;
        (root / "file").save("f", Create::Exclusive(0o600))?;
        // Renames between kinds.
        let rename = |a: &str, b: &str| (root / a).rename(&(root / b));
        assert_fs_err(rename("file", "full"), FsError::IsADirectory, "renaming");
        assert_fs_err(rename("empty", "file"), FsError::NotADirectory, "renaming");
        assert_fs_err(
            rename("empty", "full"),
            FsError::DirectoryNotEmpty,
            "renaming",
        );
        assert_err(
            rename("full", "full/sub/in"),
            ErrorKind::InvalidInput,
            "renaming",
        );
        assert_fs_err(
            rename("full/sub", "full"),
            FsError::DirectoryNotEmpty,
            "renaming",
        );
        assert_fs_err(rename("", "x"), FsError::Busy, "renaming");
        assert_fs_err(rename("file", "full/.."), FsError::Busy, "renaming");
        assert_fs_err(rename("missing", "x"), FsError::NotFound, "renaming");
        assert_fs_err(rename("file", "missing/x"), FsError::NotFound, "renaming");
        rename("file", "file")?;
        rename("empty", "empty2")?;
        assert!(!(root / "empty").exists()? && (root / "empty2").is_dir()?);
        rename("full/sub", "sub")?;
        assert_eq!((root / "full").read_dir()?, Vec::<String>::new());
        assert_eq!((root / "full").stat()?.nlink, 2);
        assert_eq!(root.path().stat()?.nlink, 5, "full, empty2, sub");

        // Paths that name no entry.
        assert_err(
            (root / "").rmdir(),
            ErrorKind::InvalidInput,
            "removing directory",
        );
        assert_fs_err((root / "").unlink(), FsError::IsADirectory, "removing file");
        assert_fs_err(
            (root / "sub/..").symlink("x"),
            FsError::AlreadyExists,
            "symlink",
        );
        assert_err((root / ".").read_link(), ErrorKind::InvalidInput, "symlink");
        assert_eq!((root / "sub/..").lstat()?.kind, FileKind::Directory);
        assert_fs_err(
            (root / "s").symlink(""),
            FsError::NotFound,
            "creating symlink",
        );
        assert_fs_err(
            (root / "").save("x", Create::Exclusive(0o600)),
            FsError::AlreadyExists,
            "opening",
        );
        assert_fs_err(
            (root / "sub/..").save("x", Create::IfMissing(0o600)),
            FsError::IsADirectory,
            "opening",
        );

        // Trailing slashes.
        for create in [Create::IfMissing(0o600), Create::Exclusive(0o600)] {
            for p in ["new/", "file/", "sub/"] {
                assert_fs_err(
                    (root / p).save("x", create),
                    FsError::IsADirectory,
                    "opening",
                );
            }
        }
        assert_fs_err((root / "file/").load(), FsError::NotADirectory, "opening");
        assert_fs_err((root / "new/").load(), FsError::NotFound, "opening");
        assert_eq!((root / "sub/").stat()?.kind, FileKind::Directory);
        assert_fs_err((root / "file/").stat(), FsError::NotADirectory, "examining");
        (root / "tolink").symlink("sub/")?;
        assert_fs_err(
            (root / "tolink").save("x", Create::IfMissing(0o600)),
            FsError::IsADirectory,
            "opening",
        );
        assert_eq!((root / "tolink").read_dir()?, Vec::<String>::new());

        // One inode, several handles; unlinked while open.
        let a = (root / "shared").open_out(OpenOut::new(Create::Exclusive(0o600)))?;
        let b = (root / "shared").open_out(OpenOut::append(Create::Never))?;
        let r = (root / "shared").open_in()?;
        a.write_all(b"one")?;
        b.write_all(b"+two")?;
        a.write_all(b"!")?;
        assert_eq!(r.read_all()?, "one!two", "a's position, b at the end");
        assert_eq!(b.write_at(b"3", 0)?, 1);
        assert_eq!(
            (root / "shared").load_string()?,
            "one!two3",
            "append ignores offsets"
        );
        assert_eq!(a.stat()?.ino, r.stat()?.ino);
        (root / "shared").unlink()?;
        assert_fs_err((root / "shared").load(), FsError::NotFound, "opening");
        a.write_all_at(b"ONE", 0)?;
        let mut buf = [0u8; 8];
        r.read_exact_at(&mut buf, 0)?;
        assert_eq!(&buf, b"ONE!two3");
        assert_eq!(r.stat()?.nlink, 0);
        // Replaced by a rename: the old inode lives on for its handles.
        (root / "old").save("old", Create::Exclusive(0o600))?;
        let old = (root / "old").open_in()?;
        (root / "new").save("new", Create::Exclusive(0o600))?;
        rename("new", "old")?;
        assert_eq!(old.read_all()?, "old");
        assert_eq!((root / "old").load_string()?, "new");
        // A read-only handle cannot change the file.
        assert!(old.set_len(0).is_err());
        assert!(old.write_at(b"x", 0).is_err());
        Ok(())
    });
}
