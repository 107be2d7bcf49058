//! Can this process use io_uring? [`probe`] answers before a program
//! commits to the backend.
//!
//! It sets up a small ring exactly as a scheduler would, checks the
//! features the driver relies on (`IORING_FEAT_EXT_ARG` for timed waits,
//! `IORING_FEAT_NODROP` so no completion is ever lost) and asks the kernel
//! (`IORING_REGISTER_PROBE`) for every opcode the backend submits. A
//! failure names what is missing, including the usual reasons
//! `io_uring_setup` is refused: the `kernel.io_uring_disabled` sysctl, a
//! seccomp filter (containers), or the locked-memory limit.
//!
//! ```
//! match weft_uring::probe() {
//!     Ok(()) => println!("io_uring is usable"),
//!     Err(e) => println!("falling back to POSIX: {e}"),
//! }
//! ```

use std::sync::OnceLock;

use io_uring::{opcode, Probe};
use weft_core::{Error, ErrorKind, Result};

use crate::ring::{self, RingOptions};

/// Every opcode the backend submits, with its name for error messages.
const REQUIRED: &[(u8, &str)] = &[
    (opcode::Read::CODE, "READ"),
    (opcode::Write::CODE, "WRITE"),
    (opcode::Recv::CODE, "RECV"),
    (opcode::Send::CODE, "SEND"),
    (opcode::SendMsg::CODE, "SENDMSG"),
    (opcode::RecvMsg::CODE, "RECVMSG"),
    (opcode::Accept::CODE, "ACCEPT"),
    (opcode::Connect::CODE, "CONNECT"),
    (opcode::Shutdown::CODE, "SHUTDOWN"),
    (opcode::Close::CODE, "CLOSE"),
    (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
    (opcode::PollAdd::CODE, "POLL_ADD"),
    (opcode::Writev::CODE, "WRITEV"),
    (opcode::Readv::CODE, "READV"),
    (opcode::Splice::CODE, "SPLICE"),
    (opcode::OpenAt::CODE, "OPENAT"),
    (opcode::OpenAt2::CODE, "OPENAT2"),
    (opcode::Statx::CODE, "STATX"),
    (opcode::Fsync::CODE, "FSYNC"),
    (opcode::Fallocate::CODE, "FALLOCATE"),
    (opcode::UnlinkAt::CODE, "UNLINKAT"),
    (opcode::RenameAt::CODE, "RENAMEAT"),
    (opcode::MkDirAt::CODE, "MKDIRAT"),
    (opcode::SymlinkAt::CODE, "SYMLINKAT"),
];

/// Optional opcodes: the backend uses them where the kernel has them and
/// falls back to a system call on a system thread where not.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Features {
    /// `IORING_OP_FTRUNCATE` (Linux 6.9).
    pub(crate) ftruncate: bool,
}

/// Checks that io_uring can run weft on this machine; the answer is
/// computed once per process.
///
/// `Err` says why not, e.g. "io_uring_setup refused: disabled by the sysctl
/// kernel.io_uring_disabled=2" or "the kernel lacks io_uring opcodes
/// SHUTDOWN, MKDIRAT (weft needs Linux 5.15 or later)".
pub fn probe() -> Result<()> {
    probed().map(drop)
}

/// The optional opcodes this kernel has (none if io_uring is unusable).
pub(crate) fn features() -> Features {
    probed().unwrap_or_default()
}

fn probed() -> Result<Features> {
    static RESULT: OnceLock<std::result::Result<Features, Error>> = OnceLock::new();
    RESULT.get_or_init(probe_uncached).clone()
}

fn probe_uncached() -> Result<Features> {
    let opts = RingOptions {
        sq_entries: 8,
        cq_entries: 16,
    };
    let (uring, _setup) = ring::build(&opts).map_err(setup_error)?;
    let params = uring.params();
    if !params.is_feature_ext_arg() {
        return Err(unsupported(
            "the kernel lacks IORING_FEAT_EXT_ARG (timed waits; Linux 5.11)",
        ));
    }
    if !params.is_feature_nodrop() {
        return Err(unsupported(
            "the kernel lacks IORING_FEAT_NODROP (Linux 5.5)",
        ));
    }
    let mut probe = Probe::new();
    uring.submitter().register_probe(&mut probe).map_err(|e| {
        Error::with_source(ErrorKind::Io, e)
            .context("IORING_REGISTER_PROBE failed (the kernel is older than 5.6)")
    })?;
    let missing: Vec<&str> = REQUIRED
        .iter()
        .filter(|(code, _)| !probe.is_supported(*code))
        .map(|(_, name)| *name)
        .collect();
    if !missing.is_empty() {
        return Err(unsupported(format!(
            "the kernel lacks io_uring opcodes {} (weft needs Linux 5.15 or later)",
            missing.join(", ")
        )));
    }
    Ok(Features {
        ftruncate: probe.is_supported(opcode::Ftruncate::CODE),
    })
}

fn unsupported(msg: impl Into<std::borrow::Cow<'static, str>>) -> Error {
    Error::msg(ErrorKind::Io, msg).context("io_uring is not usable")
}

/// Maps a failed `io_uring_setup` to a clear error.
pub(crate) fn setup_error(e: std::io::Error) -> Error {
    let why = explain_setup_errno(e.raw_os_error());
    Error::with_source(ErrorKind::Io, e).context(format!("io_uring_setup refused: {why}"))
}

/// Why `io_uring_setup(2)` fails with `errno`, in words a user can act on.
pub(crate) fn explain_setup_errno(errno: Option<i32>) -> String {
    let sysctl = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()
        .map(|s| s.trim().to_string());
    explain(errno, sysctl.as_deref())
}

fn explain(errno: Option<i32>, io_uring_disabled: Option<&str>) -> String {
    match errno {
        Some(libc::EPERM) => match io_uring_disabled {
            Some("2") => "disabled by the sysctl kernel.io_uring_disabled=2".into(),
            Some("1") => "restricted by the sysctl kernel.io_uring_disabled=1 to members of \
                          the group kernel.io_uring_group (or CAP_SYS_ADMIN)"
                .into(),
            _ => "permission denied (EPERM): a seccomp filter or container policy forbids \
                  io_uring_setup"
                .into(),
        },
        Some(libc::ENOSYS) => "the kernel has no io_uring (ENOSYS): it is older than 5.1, \
                               built without CONFIG_IO_URING, or a seccomp filter hides it"
            .into(),
        Some(libc::ENOMEM) => "out of locked memory (ENOMEM): raise RLIMIT_MEMLOCK \
                               (`ulimit -l`); kernels before 5.12 charge rings to it"
            .into(),
        Some(libc::EINVAL) => "the kernel rejected every setup variant (EINVAL): it is \
                               too old"
            .into(),
        Some(libc::EMFILE | libc::ENFILE) => "out of file descriptors".into(),
        Some(n) => format!("{}", std::io::Error::from_raw_os_error(n)),
        None => "unknown error".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_errors_name_their_cause() {
        assert!(explain(Some(libc::EPERM), Some("2")).contains("kernel.io_uring_disabled=2"));
        assert!(explain(Some(libc::EPERM), Some("1")).contains("io_uring_group"));
        assert!(explain(Some(libc::EPERM), Some("0")).contains("seccomp"));
        assert!(explain(Some(libc::ENOSYS), None).contains("ENOSYS"));
        assert!(explain(Some(libc::ENOMEM), None).contains("RLIMIT_MEMLOCK"));
        assert!(explain(Some(libc::EINVAL), None).contains("too old"));
    }

    #[test]
    fn this_machine_probes_consistently() {
        // Whatever the answer, it is the same the second time (cached).
        assert_eq!(probe().is_ok(), probe().is_ok());
    }
}
