//! Conformance: a child process never outlives its owner. Cancelling the
//! fiber or switch that owns a `Child`, dropping it, or panicking kills and
//! reaps it; no descriptor leaks in the parent, and none but the chosen
//! standard streams reaches the child. Under the mock, "gone" means no
//! longer among `Programs::running`, and its resources are `MemFs` handles.

use std::cell::Cell;
use std::time::{Duration, Instant};

use rstest::rstest;
use weft::mock::{MemFs, Programs};
use weft::process::{Command, ExitStatus, Stdio};
use weft::time::with_timeout;
use weft::{Backend, Env, Error, ErrorKind, Switch};

/// fd counts are per process: tests in this file run one at a time so one
/// test's descriptors do not show up in another's count.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

fn sleeper() -> Command<'static> {
    Command::new("sleep").arg("100")
}

/// The mock world of one case (the real backends ignore it).
#[derive(Default)]
struct World {
    programs: Programs,
    fs: MemFs,
}

fn run<T>(
    backend: Backend,
    world: &World,
    main: impl FnOnce(&Env) -> weft::Result<T>,
) -> weft::Result<T> {
    match backend {
        Backend::Mock => weft::mock::Config::new()
            .programs(world.programs.clone())
            .fs(world.fs.clone())
            .run(main),
        real => weft::run_with(real, main),
    }
}

/// Whether `pid` is gone: no process, not even a zombie waiting to be
/// reaped, has it.
fn is_gone(backend: Backend, world: &World, pid: u32) -> bool {
    if backend == Backend::Mock {
        return !world.programs.running().contains(&pid);
    }
    let pid = libc::pid_t::try_from(pid).unwrap();
    // SAFETY: kill with signal 0 only checks that the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn a_timeout_kills_and_reaps_the_child(#[case] backend: Backend) {
    let _serial = serial();
    let world = World::default();
    let pid = Cell::new(0);
    run(backend, &world, |env| {
        let proc_mgr = env.process_mgr();
        let started = Instant::now();
        let r = with_timeout(env.mono_clock(), Duration::from_millis(50), || {
            let child = proc_mgr.spawn(&sleeper())?;
            pid.set(child.pid());
            child.wait()
        });
        assert!(r.unwrap_err().is_timeout());
        assert!(started.elapsed() < Duration::from_secs(50));
        assert!(
            is_gone(backend, &world, pid.get()),
            "pid {} still exists",
            pid.get()
        );

        // The `run` helpers too: this returns after 50 ms, not 100 s.
        let r = with_timeout(env.mono_clock(), Duration::from_millis(50), || {
            proc_mgr.run(&["sleep", "100"])
        });
        assert!(r.unwrap_err().is_timeout());
        assert!(started.elapsed() < Duration::from_secs(50));
        Ok(())
    })
    .unwrap();
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn a_failing_switch_kills_its_childs_owner(#[case] backend: Backend) {
    let _serial = serial();
    let world = World::default();
    let pid = Cell::new(0);
    run(backend, &world, |env| {
        let proc_mgr = env.process_mgr();
        let r = Switch::run(|sw| {
            sw.fork(|| {
                let child = proc_mgr.spawn(&sleeper())?;
                pid.set(child.pid());
                child.wait()?;
                unreachable!("the child sleeps for 100 s");
            });
            sw.fork(|| Err(Error::msg(ErrorKind::Io, "sibling failed")));
            Ok(())
        });
        assert_eq!(r.unwrap_err().to_string(), "io error, sibling failed");
        assert!(is_gone(backend, &world, pid.get()));
        Ok(())
    })
    .unwrap();
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn dropping_a_running_child_kills_and_reaps_it(#[case] backend: Backend) {
    let _serial = serial();
    let world = World::default();
    run(backend, &world, |env| {
        let proc_mgr = env.process_mgr();
        let child = proc_mgr.spawn(&sleeper())?;
        let pid = child.pid();
        drop(child);
        assert!(is_gone(backend, &world, pid));

        // A child that already exited (unreaped) is reaped, not signalled.
        let child = proc_mgr.spawn(&Command::new("true"))?;
        let pid = child.pid();
        env.mono_clock().sleep(Duration::from_millis(20))?;
        drop(child);
        assert!(is_gone(backend, &world, pid));
        Ok(())
    })
    .unwrap();
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
// Not on the mock: its processes are fibers of the run and end with it
// (tests/process_mock_world.rs checks what a `Child` says after the run).
fn outside_the_runtime_a_child_is_killed_waited_and_read(#[case] backend: Backend) {
    let _serial = serial();
    let world = World::default();
    let child = run(backend, &world, |env| env.process_mgr().spawn(&sleeper())).unwrap();
    let pid = child.pid();
    assert_eq!(child.try_wait().unwrap(), None);
    drop(child);
    assert!(is_gone(backend, &world, pid));

    // Waiting and reading block the thread there.
    let cmd = Command::new("echo").arg("late").stdout(Stdio::Pipe);
    let child = run(backend, &world, |env| env.process_mgr().spawn(&cmd)).unwrap();
    let out = weft::flow::Source::read_all(child.stdout().unwrap()).unwrap();
    assert_eq!(out, "late\n");
    assert!(child.wait().unwrap().success());
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn a_panic_kills_the_child(#[case] backend: Backend) {
    let _serial = serial();
    let world = World::default();
    let pid = Cell::new(0);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run(backend, &world, |env| -> weft::Result<()> {
            let child = env.process_mgr().spawn(&sleeper())?;
            pid.set(child.pid());
            panic!("boom with a child running");
        })
    }));
    assert!(r.is_err());
    assert_ne!(pid.get(), 0);
    assert!(is_gone(backend, &world, pid.get()));
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
#[case::mock(Backend::Mock)]
fn no_descriptor_leaks(#[case] backend: Backend) {
    let _serial = serial();
    let world = World::default();
    // fds on the real backends; open `MemFs` handles (a process holds its
    // working directory) and running processes under the mock.
    let resources = || match backend {
        Backend::Mock => world.fs.open_handles() + world.programs.running().len(),
        _ => open_fds(),
    };
    let before = resources();
    run(backend, &world, |env| {
        let proc_mgr = env.process_mgr();
        let inner_before = resources();
        for _ in 0..3 {
            let out = proc_mgr.output_string(Command::new("echo").arg("x"))?;
            assert_eq!(out, "x\n");
            let sink = weft::flow::buffer_sink();
            let cat = Command::new("cat")
                .stdin_from(weft::flow::string_source("abc"))
                .stdout_to(&sink)
                .stderr(Stdio::Pipe);
            proc_mgr.run_with(cat)?;
            let piped = Command::new("sleep")
                .arg("100")
                .stdin(Stdio::Pipe)
                .stdout(Stdio::Pipe)
                .stderr(Stdio::Pipe);
            let child = proc_mgr.spawn(&piped)?;
            child.kill()?;
            assert_eq!(child.wait()?, ExitStatus::Signaled(9));
            drop(child);
            let _ = proc_mgr.run(&["weft-no-such-program"]).unwrap_err();
            let r = with_timeout(env.mono_clock(), Duration::from_millis(10), || {
                proc_mgr.spawn(&piped)?.wait()
            });
            assert!(r.unwrap_err().is_timeout());
        }
        assert_eq!(resources(), inner_before, "no fd leaked inside the runtime");
        Ok(())
    })
    .unwrap();
    assert_eq!(resources(), before, "no fd leaked");
}

/// This process's descriptors: number, what it refers to, and whether it
/// is close-on-exec.
fn fds() -> Vec<(u32, String, bool)> {
    const O_CLOEXEC_OCTAL: u32 = 0o2000000;
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Some(fd) = e.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Ok(target) = std::fs::read_link(e.path()) else {
            continue;
        };
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap_or_default();
        let flags = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
            .unwrap_or(0);
        let cloexec = flags & O_CLOEXEC_OCTAL != 0;
        v.push((fd, target.to_string_lossy().into_owned(), cloexec));
    }
    v
}

#[rstest]
#[case::posix(Backend::Posix)]
#[case::uring(Backend::Uring)]
// Not on the mock: it is about the descriptors of real processes (it reads
// /proc/self/fd in both); a mock program holds only its three streams.
fn the_child_inherits_only_its_standard_streams(#[case] backend: Backend) {
    let _serial = serial();
    let world = World::default();
    // Descriptors this test process itself inherited without close-on-exec
    // (a jobserver pipe, say) pass on to any child: not weft's business.
    let before = fds();
    let inheritable: Vec<(u32, String)> = before
        .iter()
        .filter(|(_, _, cloexec)| !cloexec)
        .map(|(fd, t, _)| (*fd, t.clone()))
        .collect();
    run(backend, &world, |env| {
        let proc_mgr = env.process_mgr();
        // Hold a socket, pipes and a pidfd while the child starts.
        let listener = env.net().listen(&"127.0.0.1:0".parse()?)?;
        let piped = Command::new("sleep")
            .arg("100")
            .stdin(Stdio::Pipe)
            .stdout(Stdio::Pipe);
        let other = proc_mgr.spawn(&piped)?;
        let ours: Vec<String> = fds()
            .into_iter()
            .filter(|(_, t, _)| !before.iter().any(|(_, b, _)| b == t))
            .map(|(_, t, cloexec)| {
                assert!(cloexec, "weft opened {t} without close-on-exec");
                t
            })
            .collect();
        // (A pidfd too, where the kernel has them.)
        // The scheduler's own fd: epoll on POSIX, the ring on io_uring.
        let poller = match backend {
            Backend::Uring => "io_uring",
            _ => "eventpoll",
        };
        for kind in ["socket:", "pipe:", poller] {
            assert!(
                ours.iter().any(|t| t.contains(kind)),
                "no {kind} in {ours:?}"
            );
        }

        let listing = proc_mgr.output_string(
            Command::new("sh")
                .args(["-c", "exec ls -l /proc/self/fd/"])
                .stdin(Stdio::Null)
                .stderr(Stdio::Null),
        )?;
        // Every entry: "<perms> ... <fd> -> <target>".
        let child_fds: Vec<(u32, String)> = listing
            .lines()
            .filter_map(|l| {
                let (left, target) = l.split_once(" -> ")?;
                Some((left.rsplit(' ').next()?.parse().ok()?, target.to_owned()))
            })
            .collect();
        assert!(child_fds.iter().any(|(fd, _)| *fd == 1), "{listing}");
        for (fd, target) in &child_fds {
            assert!(
                !ours.contains(target),
                "{target} leaked into the child\n{listing}"
            );
            let expected = *fd <= 2
                || target.starts_with("/proc/")
                || inheritable.contains(&(*fd, target.clone()));
            assert!(
                expected,
                "fd {fd} ({target}) leaked into the child\n{listing}"
            );
        }
        drop((listener, other));
        Ok(())
    })
    .unwrap();
}
