//! Child processes on io_uring: spawned as on the POSIX backend
//! (`std::process::Command`: fork/exec, every descriptor of ours
//! close-on-exec), waited for through a pidfd polled on the ring.
//!
//! * Spawning runs on the scheduler thread; it returns once the child has
//!   called `exec` (or failed to).
//! * The parent's pipe ends are [`Fd`]s: reads and writes are `READ` and
//!   `WRITE`/`WRITEV` SQEs at the pipe's own position, with the rules of
//!   the [`ops`](crate::ops) layer (a cancelled read consumes nothing; an
//!   explicit close goes through the ring once nothing is in flight).
//! * Waiting: `pidfd_open(2)` gives a descriptor that becomes readable when
//!   the child exits; the fiber waits for that with `IORING_OP_POLL_ADD`,
//!   then reaps the child with `waitpid` (through
//!   `std::process::Child::try_wait`). Where there is no pidfd (kernels
//!   before 5.3, seccomp filters) it polls `try_wait`, sleeping on the
//!   scheduler's clock between tries.
//! * Dropping a child that is still running sends `SIGKILL` and reaps it:
//!   the fiber waits (protected from cancellation) when it can, and
//!   otherwise — during a panic — blocks in `waitpid`, which a killed child
//!   ends quickly.
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

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::process::Child as StdChild;
use std::time::Duration;

use weft_core::flow::{Backing, Sink, Source};
use weft_core::process::{
    ChildImpl, Command, ExitStatus, PipeReaderImpl, PipeWriterImpl, ProcessBackend, Spawned,
    SIGKILL,
};
use weft_core::time::MonoClock;
use weft_core::{Error, ErrorKind, ProcessError, Result};

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
        let mut std_child = cmd
            .to_std()
            .spawn()
            .map_err(|e| Error::with_source(ErrorKind::Process(ProcessError::SpawnFailed), e))?;
        let pipe = |fd: Option<OwnedFd>| fd.map(|fd| Pipe { fd: Fd::from(fd) });
        let stdin = pipe(std_child.stdin.take().map(OwnedFd::from));
        let stdout = pipe(std_child.stdout.take().map(OwnedFd::from));
        let stderr = pipe(std_child.stderr.take().map(OwnedFd::from));
        // From here on the child is owned by `UringChild`, whose Drop kills
        // and reaps it if anything below fails.
        let mut child = UringChild {
            pid: std_child.id(),
            pidfd: None,
            status: Cell::new(None),
            std: RefCell::new(std_child),
        };
        if self.use_pidfd {
            child.pidfd = open_pidfd(child.pid)?;
        }
        Ok(Spawned {
            child: Box::new(child),
            stdin: stdin.map(|p| Box::new(p) as Box<dyn PipeWriterImpl>),
            stdout: stdout.map(|p| Box::new(p) as Box<dyn PipeReaderImpl>),
            stderr: stderr.map(|p| Box::new(p) as Box<dyn PipeReaderImpl>),
        })
    }
}

/// `pidfd_open(pid)`, or `None` where the kernel (or a seccomp filter) does
/// not offer it.
fn open_pidfd(pid: u32) -> Result<Option<Fd>> {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return Ok(None);
    };
    // SAFETY: pidfd_open takes a pid and a flags word and returns a new
    // descriptor or -1; it reads and writes no memory of ours.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0 as libc::c_uint) };
    if ret < 0 {
        let err = io::Error::last_os_error();
        return match err.raw_os_error() {
            Some(libc::ENOSYS | libc::EPERM | libc::EACCES | libc::ENODEV | libc::EINVAL) => {
                Ok(None)
            }
            _ => Err(Error::from(err).context("pidfd_open")),
        };
    }
    // SAFETY: the syscall returned a new descriptor (close-on-exec, as
    // pidfd_open always sets it) that nothing else owns.
    Ok(Some(Fd::from(unsafe {
        OwnedFd::from_raw_fd(ret as RawFd)
    })))
}

struct UringChild {
    pid: u32,
    /// Readable once the child has exited; closed after `Drop::drop` has
    /// reaped the child.
    pidfd: Option<Fd>,
    /// Set once the child has been reaped; after that its pid may belong to
    /// another process and must not be signalled.
    status: Cell<Option<ExitStatus>>,
    std: RefCell<StdChild>,
}

fn from_std(st: std::process::ExitStatus) -> ExitStatus {
    match (st.code(), st.signal()) {
        (Some(c), _) => ExitStatus::Exited(c),
        (None, Some(s)) => ExitStatus::Signaled(s),
        // Stopped or continued: not reported without WUNTRACED; be safe.
        (None, None) => ExitStatus::Exited(st.into_raw()),
    }
}

impl UringChild {
    /// Waits in the fiber: for the pidfd to become readable, or by polling.
    fn wait_in_fiber(&self) -> Result<ExitStatus> {
        let mut nap = Duration::from_millis(1);
        loop {
            if let Some(st) = self.try_wait()? {
                return Ok(st);
            }
            match &self.pidfd {
                Some(fd) => {
                    fd.poll(libc::POLLIN)?;
                }
                None => {
                    MonoClock::default().sleep(nap)?;
                    nap = (nap * 2).min(Duration::from_millis(50));
                }
            }
        }
    }
}

impl ChildImpl for UringChild {
    fn pid(&self) -> u32 {
        self.pid
    }

    fn wait(&self) -> Result<ExitStatus> {
        self.wait_in_fiber()
    }

    fn try_wait(&self) -> Result<Option<ExitStatus>> {
        if let Some(st) = self.status.get() {
            return Ok(Some(st));
        }
        let st = self
            .std
            .borrow_mut()
            .try_wait()
            .map_err(|e| Error::from(e).context(format!("waiting for process {}", self.pid)))?
            .map(from_std);
        self.status.set(st);
        Ok(st)
    }

    fn signal(&self, sig: i32) -> Result<()> {
        if self.status.get().is_some() {
            return Ok(());
        }
        let Ok(pid) = libc::pid_t::try_from(self.pid) else {
            return Ok(());
        };
        // SAFETY: kill(2) reads no memory. The pid is still our child's: it
        // has not been reaped (`status` is unset and only `try_wait`, which
        // sets it, reaps), so it cannot have been reused.
        if unsafe { libc::kill(pid, sig) } != 0 {
            let err = io::Error::last_os_error();
            return Err(Error::from(err).context(format!("sending signal {sig} to process {pid}")));
        }
        Ok(())
    }
}

impl Drop for UringChild {
    fn drop(&mut self) {
        if !matches!(self.try_wait(), Ok(None)) {
            return;
        }
        let _ = self.signal(SIGKILL);
        // A fiber waits without blocking the thread (and a thread without a
        // scheduler waits on its private ring); a panic unwinding (or a
        // fiber being torn down) must not suspend: then block, briefly,
        // since the child has been killed.
        if !std::thread::panicking() && weft_core::cancel::protect(|| self.wait_in_fiber()).is_ok()
        {
            return;
        }
        if let Ok(st) = self.std.get_mut().wait() {
            self.status.set(Some(from_std(st)));
        }
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
