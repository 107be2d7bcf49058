//! Child processes on the POSIX backend: the shared plumbing of
//! [`unix::process`](crate::unix::process) (spawn, signal, reap, pidfd),
//! with the pidfd and the parent's pipe ends registered with the reactor.
//!
//! * The parent's pipe ends are made nonblocking and registered with the
//!   reactor, so reads and writes suspend only the calling fiber.
//! * Outside a scheduler (say, after `run` has returned a `Child`) nothing
//!   polls the reactor, so waits block the thread instead (`waitpid`,
//!   `poll(2)`), as core's primitives do there.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};

use weft_core::flow::{Sink, Source};
use weft_core::process::{Command, PipeReaderImpl, PipeWriterImpl, ProcessBackend, Spawned};
use weft_core::{Error, Result};

use crate::reactor::{Interest, Registration};
use crate::unix::{self, process::PidfdWait};

/// The POSIX process manager. Stateless: children register with the
/// reactor of the thread that spawns them.
pub(crate) struct PosixProcessMgr {
    /// Whether to ask for pidfds; tests turn it off to cover the fallback.
    pub(crate) use_pidfd: bool,
}

impl PosixProcessMgr {
    pub(crate) fn new() -> PosixProcessMgr {
        PosixProcessMgr { use_pidfd: true }
    }
}

impl ProcessBackend for PosixProcessMgr {
    fn spawn(&self, cmd: &Command<'_>) -> Result<Spawned> {
        unix::process::spawn::<PidFd, _>(cmd, self.use_pidfd, Pipe::new)
    }
}

/// A pidfd registered with the reactor. `reg` is declared first so that it
/// is dropped (deregistered) before `fd` closes.
struct PidFd {
    reg: Registration,
    _fd: OwnedFd,
}

impl PidfdWait for PidFd {
    fn new(fd: OwnedFd) -> Result<PidFd> {
        // SAFETY: `fd` is open and, being declared after `reg` in `PidFd`,
        // is closed only after the registration is dropped.
        let reg = unsafe { Registration::new(fd.as_raw_fd()) }?;
        Ok(PidFd { reg, _fd: fd })
    }

    fn wait_readable(&self) -> Result<()> {
        self.reg.wait(Interest::Readable)
    }

    fn can_suspend() -> bool {
        in_runtime()
    }
}

/// Whether this thread is running a weft scheduler. Outside one, nothing
/// polls the reactor, so waits block the thread instead.
fn in_runtime() -> bool {
    weft_core::fiber::stats().is_ok()
}

/// The parent's end of a pipe, nonblocking and registered with the
/// reactor. `reg` is declared first so that it is deregistered before
/// `file` closes the descriptor.
struct Pipe {
    reg: Registration,
    file: File,
}

impl Pipe {
    fn new(fd: OwnedFd) -> Result<Pipe> {
        set_nonblocking(&fd)?;
        // SAFETY: `fd` moves into `file`, which is dropped after `reg`
        // (field order), so the descriptor outlives the registration.
        let reg = unsafe { Registration::new(fd.as_raw_fd()) }?;
        Ok(Pipe {
            reg,
            file: File::from(fd),
        })
    }

    /// Retries `op` until it does not return `WouldBlock`, waiting for
    /// `interest` in between.
    fn io<T>(&self, interest: Interest, mut op: impl FnMut(&File) -> io::Result<T>) -> Result<T> {
        loop {
            match op(&self.file) {
                Ok(v) => return Ok(v),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.wait_ready(interest)?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::from(e)),
            }
        }
    }

    /// Waits for readiness: in the fiber, or (outside a runtime) by
    /// blocking the thread in `poll(2)`.
    fn wait_ready(&self, interest: Interest) -> Result<()> {
        if in_runtime() {
            return self.reg.wait(interest);
        }
        let events = match interest {
            Interest::Readable => libc::POLLIN,
            Interest::Writable => libc::POLLOUT,
        };
        let mut pfd = libc::pollfd {
            fd: self.file.as_raw_fd(),
            events,
            revents: 0,
        };
        // SAFETY: `pfd` is a valid pollfd for the one descriptor we own,
        // living on this frame for the duration of the call.
        if unsafe { libc::poll(&mut pfd, 1, -1) } < 0 {
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(Error::from(err).context("waiting for a pipe"));
            }
        }
        Ok(())
    }

    fn close(self) -> Result<()> {
        let Pipe { reg, file } = self;
        drop(reg);
        let fd = std::os::fd::IntoRawFd::into_raw_fd(file);
        // SAFETY: `into_raw_fd` gave us sole ownership of `fd`; it is closed
        // exactly once, here.
        if unsafe { libc::close(fd) } != 0 {
            return Err(Error::from(io::Error::last_os_error()).context("closing a pipe"));
        }
        Ok(())
    }
}

fn set_nonblocking(fd: &OwnedFd) -> Result<()> {
    let fd = fd.as_raw_fd();
    // SAFETY: F_GETFL/F_SETFL on a descriptor we own; no memory is passed.
    let ok = unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        flags >= 0 && libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) == 0
    };
    if ok {
        Ok(())
    } else {
        Err(Error::from(io::Error::last_os_error()).context("making a pipe nonblocking"))
    }
}

impl Source for Pipe {
    fn read(&self, buf: &mut [u8]) -> Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.io(Interest::Readable, |mut f| f.read(buf))
    }

    /// One `readv`.
    fn read_vectored(&self, bufs: &mut [io::IoSliceMut<'_>]) -> Result<usize> {
        if bufs.iter().all(|b| b.is_empty()) {
            return Ok(0);
        }
        self.io(Interest::Readable, |mut f| f.read_vectored(&mut *bufs))
    }
}

impl Sink for Pipe {
    fn write(&self, buf: &[u8]) -> Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.io(Interest::Writable, |mut f| f.write(buf))
    }

    fn write_vectored(&self, bufs: &[io::IoSlice<'_>]) -> Result<usize> {
        if bufs.iter().all(|b| b.is_empty()) {
            return Ok(0);
        }
        self.io(Interest::Writable, |mut f| f.write_vectored(bufs))
    }
}

impl PipeReaderImpl for Pipe {
    fn close(self: Box<Self>) -> Result<()> {
        Pipe::close(*self)
    }
}

impl PipeWriterImpl for Pipe {
    fn close(self: Box<Self>) -> Result<()> {
        Pipe::close(*self)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use weft_core::process::{Command, ExitStatus, ProcessMgr, Stdio};
    use weft_core::RunConfig;

    use super::PosixProcessMgr;

    /// Without pidfds (old kernels, seccomp), waiting polls on the clock.
    #[test]
    fn waiting_without_pidfd_polls() {
        crate::run(&RunConfig::default(), |_env| {
            let mgr = ProcessMgr::new(Arc::new(PosixProcessMgr { use_pidfd: false }));
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
