//! Child processes on io_uring: the POSIX backend's shared plumbing
//! ([`weft_posix::unix::process`]: spawn, signal, reap), with the pidfd
//! polled on the ring.
//!
//! * The parent's pipe ends are [`Fd`]s: reads and writes are `READ` and
//!   `WRITE`/`WRITEV` SQEs at the pipe's own position, with the rules of
//!   the [`ops`](crate::ops) layer (a cancelled read consumes nothing; an
//!   explicit close goes through the ring once nothing is in flight).
//! * Waiting for the pidfd is an `IORING_OP_POLL_ADD`. A thread without a
//!   scheduler waits on its private ring, so waits always go through the
//!   ring.
//!
//! ```
//! # if weft_uring::probe().is_err() { return; }
//! use weft_core::process::Command;
//!
//! weft_uring::run(&weft_core::RunConfig::default(), |env| {
//!     let out = env.process_mgr().output_string(Command::new("echo").arg("hi"))?;
//!     assert_eq!(out, "hi\n");
//!     Ok(())
//! })
//! .unwrap();
//! ```

use std::io;
use std::os::fd::OwnedFd;

use weft_core::flow::{Backing, Sink, Source};
use weft_core::process::{Command, PipeReaderImpl, PipeWriterImpl, ProcessBackend, Spawned};
use weft_core::Result;
use weft_posix::unix::process::{self as shared, PidfdWait};

use crate::ops::Fd;

/// The io_uring process manager. Stateless: children are waited for on
/// the ring of the thread that waits.
pub(crate) struct UringProcessMgr {
    /// Whether to ask for pidfds; a test turns it off to cover the
    /// fallback.
    pub(crate) use_pidfd: bool,
}

impl UringProcessMgr {
    pub(crate) fn new() -> UringProcessMgr {
        UringProcessMgr { use_pidfd: true }
    }
}

impl ProcessBackend for UringProcessMgr {
    fn spawn(&self, cmd: &Command<'_>) -> Result<Spawned> {
        shared::spawn::<Fd, _>(cmd, self.use_pidfd, |fd| Ok(Pipe { fd: Fd::from(fd) }))
    }
}

impl PidfdWait for Fd {
    fn new(pidfd: OwnedFd) -> Result<Fd> {
        Ok(Fd::from(pidfd))
    }

    fn wait_readable(&self) -> Result<()> {
        self.poll(libc::POLLIN).map(drop)
    }

    /// Always: a thread without a scheduler waits on a private ring.
    fn can_suspend() -> bool {
        true
    }
}

/// The parent's end of a pipe to or from a child.
pub(crate) struct Pipe {
    pub(crate) fd: Fd,
}

impl Source for Pipe {
    fn read(&self, buf: &mut [u8]) -> Result<usize> {
        self.fd.read(buf)
    }

    /// One `IORING_OP_READV`.
    fn read_vectored(&self, bufs: &mut [io::IoSliceMut<'_>]) -> Result<usize> {
        self.fd.read_vectored(bufs)
    }

    fn backing(&self) -> Option<Backing<'_>> {
        Some(Backing::new(self))
    }
}

impl Sink for Pipe {
    fn write(&self, buf: &[u8]) -> Result<usize> {
        self.fd.write(buf)
    }

    fn write_vectored(&self, bufs: &[io::IoSlice<'_>]) -> Result<usize> {
        self.fd.write_vectored_at(bufs, u64::MAX)
    }

    /// Splices from a file, socket or pipe of this backend (see
    /// [`copy`](crate::copy)).
    fn copy_from(&self, src: &dyn Source) -> Result<u64> {
        crate::copy::copy(src, self, crate::copy::End::Pipe(&self.fd))
    }
}

impl PipeReaderImpl for Pipe {
    fn close(self: Box<Self>) -> Result<()> {
        self.fd.close().map_err(|e| e.context("closing a pipe"))
    }
}

impl PipeWriterImpl for Pipe {
    fn close(self: Box<Self>) -> Result<()> {
        self.fd.close().map_err(|e| e.context("closing a pipe"))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use weft_core::process::{Command, ExitStatus, ProcessMgr, Stdio};
    use weft_core::RunConfig;

    use super::UringProcessMgr;

    /// Without pidfds (old kernels, seccomp), waiting polls on the clock.
    #[test]
    fn waiting_without_pidfd_polls() {
        if crate::probe().is_err() {
            return;
        }
        crate::run(&RunConfig::default(), |_env| {
            let mgr = ProcessMgr::new(Arc::new(UringProcessMgr { use_pidfd: false }));
            let child = mgr.spawn(&Command::new("sh").args(["-c", "sleep 0.05; exit 7"]))?;
            assert_eq!(child.wait()?, ExitStatus::Exited(7));

            let out = mgr.output_string(Command::new("echo").arg("polled"))?;
            assert_eq!(out, "polled\n");

            let sleeper = Command::new("sleep").arg("100").stdout(Stdio::Null);
            let child = mgr.spawn(&sleeper)?;
            child.kill()?;
            assert_eq!(child.wait()?, ExitStatus::Signaled(9));

            // Dropping a running child kills and reaps it here too.
            let child = mgr.spawn(&sleeper)?;
            let pid = libc::pid_t::try_from(child.pid()).unwrap();
            drop(child);
            // SAFETY: signal 0 only checks whether the process exists.
            let r = unsafe { libc::kill(pid, 0) };
            assert_eq!(r, -1);
            let errno = std::io::Error::last_os_error().raw_os_error();
            assert_eq!(errno, Some(libc::ESRCH));
            Ok(())
        })
        .unwrap();
    }
}
