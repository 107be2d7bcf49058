//! When `io_uring_setup` is refused (here by a seccomp filter, as in many
//! containers), the probe and `run` fail with an error that says why,
//! instead of crashing or hanging.
//!
//! The filter cannot be removed once installed, so the check runs in a
//! child process: this test binary, re-run with an environment variable.

use std::process::Command;

const CHILD_ENV: &str = "WEFT_URING_TEST_SECCOMP_CHILD";
const TEST_NAME: &str = "a_refused_io_uring_setup_is_a_clear_error";

/// Makes `io_uring_setup` fail with `EPERM` on this thread (and threads it
/// starts later); every other system call is allowed.
fn forbid_io_uring_setup() {
    const BPF_LD_W_ABS: u16 = 0x20;
    const BPF_JEQ_K: u16 = 0x15;
    const BPF_RET_K: u16 = 0x06;
    const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
    const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
    let filter = [
        // A = seccomp_data.nr
        libc::sock_filter {
            code: BPF_LD_W_ABS,
            jt: 0,
            jf: 0,
            k: 0,
        },
        // if A == io_uring_setup: next, else skip one
        libc::sock_filter {
            code: BPF_JEQ_K,
            jt: 0,
            jf: 1,
            k: libc::SYS_io_uring_setup as u32,
        },
        libc::sock_filter {
            code: BPF_RET_K,
            jt: 0,
            jf: 0,
            k: SECCOMP_RET_ERRNO | libc::EPERM as u32,
        },
        libc::sock_filter {
            code: BPF_RET_K,
            jt: 0,
            jf: 0,
            k: SECCOMP_RET_ALLOW,
        },
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: prctl with constant arguments, then with a pointer to a
    // valid filter program that outlives the call (the kernel copies it).
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        assert_eq!(
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                &prog as *const libc::sock_fprog,
            ),
            0,
            "installing the seccomp filter: {}",
            std::io::Error::last_os_error()
        );
    }
}

#[test]
fn a_refused_io_uring_setup_is_a_clear_error() {
    if std::env::var_os(CHILD_ENV).is_some() {
        forbid_io_uring_setup();
        let e = weft_uring::probe().unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("io_uring_setup refused"), "{msg}");
        assert!(
            msg.contains("seccomp") || msg.contains("kernel.io_uring_disabled"),
            "{msg}"
        );
        let e = weft_uring::run(&weft_core::RunConfig::default(), |_env| Ok(())).unwrap_err();
        assert!(e.to_string().contains("io_uring_setup refused"), "{e}");
        println!("child saw: {msg}");
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("child saw: "), "{stdout}");
}
