//! Child processes: spawned with `std::process::Command` (fork/exec, every
//! descriptor of ours close-on-exec), waited for through a pidfd registered
//! with the reactor.
//!
//! * Spawning runs on the scheduler thread; it returns once the child has
//!   called `exec` (or failed to).
//! * The parent's pipe ends are made nonblocking and registered with the
//!   reactor, so reads and writes suspend only the calling fiber.
//! * Waiting: `pidfd_open(2)` gives a descriptor that becomes readable when
//!   the child exits; the fiber waits for that, then reaps the child with
//!   `waitpid` (through `std::process::Child::try_wait`). Where there is no
//!   pidfd (kernels before 5.3, seccomp filters, non-Linux systems) it
//!   polls `try_wait`, sleeping on the scheduler's clock between tries.
//! * Dropping a child that is still running sends `SIGKILL` and reaps it:
//!   the fiber waits (protected from cancellation) when it can, and
//!   otherwise — during a panic, or outside the scheduler — blocks in
//!   `waitpid`, which a killed child ends quickly.

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::Child as StdChild;
use std::time::Duration;

use weft_core::flow::{Sink, Source};
use weft_core::process::{
    ChildImpl, Command, ExitStatus, PipeReaderImpl, PipeWriterImpl, ProcessBackend, Spawned,
    SIGKILL,
};
use weft_core::time::MonoClock;
use weft_core::{Error, ErrorKind, ProcessError, Result};

use crate::reactor::{Interest, Registration};

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
        let mut std_child = cmd
            .to_std()
            .spawn()
            .map_err(|e| Error::with_source(ErrorKind::Process(ProcessError::SpawnFailed), e))?;
        let (stdin, stdout, stderr) = (
            std_child.stdin.take(),
            std_child.stdout.take(),
            std_child.stderr.take(),
        );
        // From here on the child is owned by `PosixChild`, whose Drop kills
        // and reaps it if anything below fails.
        let mut child = PosixChild {
            pid: std_child.id(),
            pidfd: None,
            status: Cell::new(None),
            std: RefCell::new(std_child),
        };
        if self.use_pidfd {
            child.pidfd = open_pidfd(child.pid)?;
        }
        let stdin = stdin.map(|p| Pipe::new(p.into())).transpose()?;
        let stdout = stdout.map(|p| Pipe::new(p.into())).transpose()?;
        let stderr = stderr.map(|p| Pipe::new(p.into())).transpose()?;
        Ok(Spawned {
            child: Box::new(child),
            stdin: stdin.map(|p| Box::new(p) as Box<dyn PipeWriterImpl>),
            stdout: stdout.map(|p| Box::new(p) as Box<dyn PipeReaderImpl>),
            stderr: stderr.map(|p| Box::new(p) as Box<dyn PipeReaderImpl>),
        })
    }
}

/// A pidfd registered with the reactor. `reg` is declared first so that it
/// is dropped (deregistered) before `fd` closes.
struct PidFd {
    reg: Registration,
    _fd: OwnedFd,
}

/// `pidfd_open(pid)` registered for readability, or `None` where the
/// kernel (or a seccomp filter) does not offer it.
#[cfg(target_os = "linux")]
fn open_pidfd(pid: u32) -> Result<Option<PidFd>> {
    use std::os::fd::FromRawFd;
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
    let fd = unsafe { OwnedFd::from_raw_fd(ret as std::os::fd::RawFd) };
    // SAFETY: `fd` is open and, being declared after `reg` in `PidFd`, is
    // closed only after the registration is dropped.
    let reg = unsafe { Registration::new(fd.as_raw_fd()) }?;
    Ok(Some(PidFd { reg, _fd: fd }))
}

#[cfg(not(target_os = "linux"))]
fn open_pidfd(_pid: u32) -> Result<Option<PidFd>> {
    Ok(None)
}

struct PosixChild {
    pid: u32,
    pidfd: Option<PidFd>,
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

/// Whether this thread is running a weft scheduler. Outside one (say,
/// after `run` has returned a `Child`), nothing polls the reactor, so waits
/// block the thread instead, as core's primitives do there.
fn in_runtime() -> bool {
    weft_core::fiber::stats().is_ok()
}

impl PosixChild {
    /// Blocks the thread in `waitpid` until the child exits.
    fn wait_blocking(&self) -> Result<ExitStatus> {
        if let Some(st) = self.status.get() {
            return Ok(st);
        }
        let st = self
            .std
            .borrow_mut()
            .wait()
            .map_err(|e| Error::from(e).context(format!("waiting for process {}", self.pid)))?;
        let st = from_std(st);
        self.status.set(Some(st));
        Ok(st)
    }

    /// Waits in the fiber: for the pidfd, or by polling.
    fn wait_in_fiber(&self) -> Result<ExitStatus> {
        let mut nap = Duration::from_millis(1);
        loop {
            if let Some(st) = self.try_wait()? {
                return Ok(st);
            }
            match &self.pidfd {
                Some(p) => p.reg.wait(Interest::Readable)?,
                None => {
                    MonoClock::default().sleep(nap)?;
                    nap = (nap * 2).min(Duration::from_millis(50));
                }
            }
        }
    }
}

impl ChildImpl for PosixChild {
    fn pid(&self) -> u32 {
        self.pid
    }

    fn wait(&self) -> Result<ExitStatus> {
        if in_runtime() {
            self.wait_in_fiber()
        } else {
            self.wait_blocking()
        }
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

impl Drop for PosixChild {
    fn drop(&mut self) {
        if !matches!(self.try_wait(), Ok(None)) {
            return;
        }
        let _ = self.signal(SIGKILL);
        // A fiber waits without blocking the thread; a panic unwinding (or a
        // fiber being torn down) must not suspend, and outside the scheduler
        // we cannot: then block, briefly, since the child has been killed.
        if !std::thread::panicking()
            && in_runtime()
            && weft_core::cancel::protect(|| self.wait_in_fiber()).is_ok()
        {
            return;
        }
        let _ = self.wait_blocking();
    }
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
