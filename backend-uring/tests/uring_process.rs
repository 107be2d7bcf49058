//! Child processes on io_uring: waiting is a poll of the pidfd on the ring
//! (no busy loop), a cancelled wait or pipe read loses nothing, and many
//! children can be waited for at once.

use std::time::Duration;

use weft_core::flow::Source;
use weft_core::process::{Command, ExitStatus, Stdio};
use weft_core::{fiber, time::with_timeout, Env, Result, RunConfig};

/// Tests here count the process's fds: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn run<T>(main: impl FnOnce(&Env) -> Result<T>) -> Option<T> {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if weft_uring::probe().is_err() {
        eprintln!("skipped: io_uring is not usable here");
        return None;
    }
    let before = open_fds();
    let v = weft_uring::run(&RunConfig::default(), main).unwrap();
    assert_eq!(open_fds(), before, "no fd leaked");
    Some(v)
}

#[test]
fn waiting_is_one_poll_on_the_ring() {
    run(|env| {
        let child = env
            .process_mgr()
            .spawn(&Command::new("sh").args(["-c", "sleep 0.1; exit 3"]))?;
        let before = weft_uring::stats()?;
        assert_eq!(child.wait()?, ExitStatus::Exited(3));
        let after = weft_uring::stats()?;
        // A POLL_ADD on the pidfd (perhaps two, if woken early), not a
        // loop of short sleeps.
        assert!(after.ops - before.ops <= 2, "{before:?} -> {after:?}");
        assert_eq!(
            child.wait()?,
            ExitStatus::Exited(3),
            "the same status again"
        );
        Ok(())
    });
}

#[test]
fn a_cancelled_wait_leaves_the_child_for_a_later_wait() {
    run(|env| {
        let child = env
            .process_mgr()
            .spawn(&Command::new("sh").args(["-c", "sleep 0.2; exit 5"]))?;
        for _ in 0..3 {
            let err = with_timeout(env.mono_clock(), Duration::from_millis(10), || child.wait())
                .unwrap_err();
            assert!(err.is_timeout(), "{err}");
            assert_eq!(weft_uring::stats()?.in_flight, 0, "resumed by its CQE");
        }
        assert_eq!(child.try_wait()?, None, "still running");
        assert_eq!(child.wait()?, ExitStatus::Exited(5));
        Ok(())
    });
}

#[test]
fn a_cancelled_pipe_read_loses_no_output() {
    run(|env| {
        let cmd = Command::new("sh")
            .args([
                "-c",
                "for i in 1 2 3 4 5; do echo line $i; sleep 0.01; done",
            ])
            .stdout(Stdio::Pipe);
        let child = env.process_mgr().spawn(&cmd)?;
        let out = child.stdout().expect("a pipe");
        let (mut got, mut timeouts) = (Vec::new(), 0);
        loop {
            let mut buf = [0u8; 64];
            match with_timeout(env.mono_clock(), Duration::from_millis(3), || {
                out.read(&mut buf)
            }) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.is_timeout() => timeouts += 1,
                Err(e) => return Err(e),
            }
        }
        assert!(timeouts > 0, "reads were cancelled while waiting");
        let want: String = (1..=5).map(|i| format!("line {i}\n")).collect();
        assert_eq!(String::from_utf8(got).unwrap(), want);
        assert_eq!(child.wait()?, ExitStatus::Exited(0));
        Ok(())
    });
}

#[test]
fn many_children_are_waited_for_at_once() {
    run(|env| {
        let mgr = env.process_mgr();
        let statuses = fiber::map(32, 0..32, |i| {
            let script = format!("sleep 0.0{}; exit {i}", i % 5);
            mgr.spawn(&Command::new("sh").args(["-c", &script]))?.wait()
        })?;
        let want: Vec<ExitStatus> = (0..32).map(ExitStatus::Exited).collect();
        assert_eq!(statuses, want);
        // Output through pipes, from many children at once.
        let outs = fiber::map(16, 0..16, |i| {
            mgr.output_string(Command::new("echo").arg(format!("child {i}")))
        })?;
        for (i, out) in outs.iter().enumerate() {
            assert_eq!(out, &format!("child {i}\n"));
        }
        Ok(())
    });
}
