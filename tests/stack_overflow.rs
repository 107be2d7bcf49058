//! A fiber that overflows its stack is reported as `fiber stack overflow`
//! with its name (or spawn site), then the process aborts; other faults
//! are left to whoever handled them before weft.
//!
//! Each case runs in a child process: this test binary re-run with
//! `WEFT_OVERFLOW_CHILD=<case>`, which makes `child` do the deed.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output};

use weft::switch::ForkOptions;
use weft::{Backend, Switch};

const CHILD_ENV: &str = "WEFT_OVERFLOW_CHILD";

/// Recurses until something stops it.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let pad = std::hint::black_box([depth; 32]);
    if std::hint::black_box(depth) == u64::MAX {
        return 0;
    }
    recurse(depth + 1).wrapping_add(pad[1])
}

fn overflow_in_fiber(backend: Backend, named: bool) {
    let r = weft::run_with(backend, |_env| {
        Switch::run(|sw| {
            // A sibling that is not running when the overflow happens.
            sw.fork_with(ForkOptions::new().name("bystander"), || {
                weft::fiber::yield_now()?;
                Ok(())
            });
            if named {
                let opts = ForkOptions::new()
                    .name("deep-recursion")
                    .stack_size(64 * 1024);
                sw.fork_with(opts, || {
                    recurse(0);
                    Ok(())
                });
            } else {
                sw.fork(|| {
                    recurse(0);
                    Ok(())
                });
            }
            Ok(())
        })
    });
    unreachable!("the overflow was survived: {r:?}");
}

/// A fiber that finishes parks its worker; the next default-size fork runs
/// on that worker and overflows: the report must name the second fiber.
fn overflow_on_a_reused_worker(backend: Backend) {
    let r = weft::run_with(backend, |_env| {
        Switch::run(|sw| {
            sw.fork_with(ForkOptions::new().name("finished-first"), || Ok(()));
            sw.fork_with(ForkOptions::new().name("second-on-the-worker"), || {
                recurse(0);
                Ok(())
            });
            Ok(())
        })
    });
    unreachable!("the overflow was survived: {r:?}");
}

/// The child's side: does what `WEFT_OVERFLOW_CHILD` says.
#[test]
fn child() {
    let Ok(case) = std::env::var(CHILD_ENV) else {
        return; // not a child
    };
    match case.as_str() {
        "named-mock" => overflow_in_fiber(Backend::Mock, true),
        "named-default" => overflow_in_fiber(Backend::from_env().unwrap(), true),
        "unnamed-mock" => overflow_in_fiber(Backend::Mock, false),
        "reused-worker" => overflow_on_a_reused_worker(Backend::from_env().unwrap()),
        "null-write-after-run" => {
            weft::mock::run(|_env| Ok(())).unwrap();
            // SAFETY: not safe: a deliberate fault, in a child process.
            unsafe { std::ptr::write_volatile(std::hint::black_box(16usize) as *mut u8, 1) };
        }
        "thread-overflow-after-run" => {
            weft::mock::run(|_env| Ok(())).unwrap();
            std::thread::Builder::new()
                .name("plain-thread".into())
                .stack_size(256 * 1024)
                .spawn(|| recurse(0))
                .unwrap()
                .join()
                .unwrap();
        }
        other => panic!("unknown case {other}"),
    }
}

fn run_child(case: &str, env: &[(&str, &str)]) -> (Output, String) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, case);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stderr)
}

fn assert_overflow_report(case: &str, env: &[(&str, &str)], expect: &[&str]) {
    let (out, stderr) = run_child(case, env);
    assert!(
        stderr.contains("weft: fiber stack overflow in fiber #"),
        "{case}: {stderr}"
    );
    for e in expect {
        assert!(stderr.contains(e), "{case}: expected {e:?} in {stderr}");
    }
    assert!(!stderr.contains("bystander"), "{case}: {stderr}");
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{case}: {stderr}");
}

#[test]
fn overflow_is_reported_with_the_fiber_name_mock() {
    assert_overflow_report(
        "named-mock",
        &[],
        &["\"deep-recursion\"", "stack_overflow.rs:"],
    );
}

#[test]
fn overflow_is_reported_with_the_fiber_name_default_backend() {
    assert_overflow_report("named-default", &[], &["\"deep-recursion\""]);
}

#[test]
fn overflow_on_a_reused_worker_names_the_fiber_running_there() {
    let (_, stderr) = run_child("reused-worker", &[]);
    assert!(!stderr.contains("finished-first"), "{stderr}");
    assert_overflow_report("reused-worker", &[], &["\"second-on-the-worker\""]);
}

#[test]
fn overflow_with_mprotect_guards_is_reported_too() {
    let env = [("WEFT_STACK_GUARDS", "mprotect")];
    assert_overflow_report("named-mock", &env, &["\"deep-recursion\""]);
}

#[test]
fn overflow_of_an_unnamed_fiber_names_its_spawn_site() {
    assert_overflow_report(
        "unnamed-mock",
        &[],
        &["(forked at tests/stack_overflow.rs:"],
    );
}

#[test]
fn other_faults_are_not_called_overflows() {
    let (out, stderr) = run_child("null-write-after-run", &[]);
    assert!(!stderr.contains("fiber stack overflow"), "{stderr}");
    assert_eq!(out.status.signal(), Some(libc::SIGSEGV), "{stderr}");
}

#[test]
fn a_plain_thread_overflow_is_still_rusts_report() {
    let (out, stderr) = run_child("thread-overflow-after-run", &[]);
    assert!(!stderr.contains("fiber stack overflow"), "{stderr}");
    assert!(stderr.contains("has overflowed its stack"), "{stderr}");
    assert!(!out.status.success());
}
