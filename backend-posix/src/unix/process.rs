//! Child processes as both Linux backends run them: spawned with
//! `std::process::Command` (fork/exec, every descriptor of ours
//! close-on-exec), signalled with `kill(2)`, reaped with `waitpid` (through
//! `std::process::Child`), and woken by a pidfd where the kernel has one.
//!
//! A backend supplies only the waiting: how a fiber waits for the pidfd to
//! become readable ([`PidfdWait`]), and how the parent's pipe ends do IO.
//!
//! * Waiting: `pidfd_open(2)` gives a descriptor that becomes readable when
//!   the child exits; the fiber waits for that, then reaps the child. Where
//!   there is no pidfd (kernels before 5.3, seccomp filters, non-Linux
//!   systems) it polls `try_wait`, sleeping on the scheduler's clock
//!   between tries.
//! * Dropping a child that is still running sends `SIGKILL` and reaps it:
//!   the fiber waits (protected from cancellation) when it can, and
//!   otherwise — during a panic, or where the thread cannot suspend —
//!   blocks in `waitpid`, which a killed child ends quickly.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::process::Child as StdChild;
use std::time::Duration;

use weft_core::process::{
    ChildImpl, Command, ExitStatus, PipeReaderImpl, PipeWriterImpl, Spawned, SIGKILL,
};
use weft_core::time::MonoClock;
use weft_core::{Error, ErrorKind, ProcessError, Result};

/// How a backend waits for a child's pidfd.
pub trait PidfdWait: Sized {
    /// Takes over a freshly opened pidfd (close-on-exec).
    fn new(pidfd: OwnedFd) -> Result<Self>;

    /// Suspends the calling fiber until the pidfd is readable, that is,
    /// until the child has exited (spurious returns are fine: the caller
    /// checks with `waitpid`).
    fn wait_readable(&self) -> Result<()>;

    /// Whether the calling thread can wait by suspending a fiber; where it
    /// cannot, waits block the thread in `waitpid` instead.
    fn can_suspend() -> bool;
}

/// Spawns `cmd`. With `use_pidfd` (tests turn it off to cover the
/// fallback) the child is waited for through a pidfd where the kernel has
/// one; `pipe` wraps each of the parent's pipe ends.
///
/// Returns once the child has called `exec` (or failed to). If anything
/// after the fork fails, the child is killed and reaped.
pub fn spawn<W, P>(
    cmd: &Command<'_>,
    use_pidfd: bool,
    pipe: impl Fn(OwnedFd) -> Result<P>,
) -> Result<Spawned>
where
    W: PidfdWait + 'static,
    P: PipeReaderImpl + PipeWriterImpl + 'static,
{
    let mut std_child = cmd
        .to_std()
        .spawn()
        .map_err(|e| Error::with_source(ErrorKind::Process(ProcessError::SpawnFailed), e))?;
    let (stdin, stdout, stderr) = (
        std_child.stdin.take().map(OwnedFd::from),
        std_child.stdout.take().map(OwnedFd::from),
        std_child.stderr.take().map(OwnedFd::from),
    );
    // From here on the child is owned by `UnixChild`, whose Drop kills and
    // reaps it if anything below fails.
    let mut child = UnixChild::<W> {
        pid: std_child.id(),
        pidfd: None,
        status: Cell::new(None),
        std: RefCell::new(std_child),
    };
    if use_pidfd {
        child.pidfd = pidfd_open(child.pid)?.map(W::new).transpose()?;
    }
    let stdin = stdin.map(&pipe).transpose()?;
    let stdout = stdout.map(&pipe).transpose()?;
    let stderr = stderr.map(&pipe).transpose()?;
    Ok(Spawned {
        child: Box::new(child),
        stdin: stdin.map(|p| Box::new(p) as Box<dyn PipeWriterImpl>),
        stdout: stdout.map(|p| Box::new(p) as Box<dyn PipeReaderImpl>),
        stderr: stderr.map(|p| Box::new(p) as Box<dyn PipeReaderImpl>),
    })
}

/// `pidfd_open(pid)`, or `None` where the kernel (or a seccomp filter) does
/// not offer it.
#[cfg(target_os = "linux")]
pub fn pidfd_open(pid: u32) -> Result<Option<OwnedFd>> {
    use std::os::fd::{FromRawFd, RawFd};
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
    Ok(Some(unsafe { OwnedFd::from_raw_fd(ret as RawFd) }))
}

/// `pidfd_open(pid)`, or `None` where the kernel (or a seccomp filter) does
/// not offer it: here, never.
#[cfg(not(target_os = "linux"))]
pub fn pidfd_open(_pid: u32) -> Result<Option<OwnedFd>> {
    Ok(None)
}

/// A spawned child, waited for through `W`.
struct UnixChild<W: PidfdWait> {
    pid: u32,
    /// Readable once the child has exited; closed after `Drop::drop` has
    /// reaped the child.
    pidfd: Option<W>,
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

impl<W: PidfdWait> UnixChild<W> {
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
                Some(p) => p.wait_readable()?,
                None => {
                    MonoClock::default().sleep(nap)?;
                    nap = (nap * 2).min(Duration::from_millis(50));
                }
            }
        }
    }
}

impl<W: PidfdWait> ChildImpl for UnixChild<W> {
    fn pid(&self) -> u32 {
        self.pid
    }

    fn wait(&self) -> Result<ExitStatus> {
        if W::can_suspend() {
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
        // has not been reaped (`status` is unset and only `try_wait` and
        // `wait_blocking`, which set it, reap), so it cannot have been
        // reused.
        if unsafe { libc::kill(pid, sig) } != 0 {
            let err = io::Error::last_os_error();
            return Err(Error::from(err).context(format!("sending signal {sig} to process {pid}")));
        }
        Ok(())
    }
}

impl<W: PidfdWait> Drop for UnixChild<W> {
    fn drop(&mut self) {
        if !matches!(self.try_wait(), Ok(None)) {
            return;
        }
        let _ = self.signal(SIGKILL);
        // A fiber waits without blocking the thread; a panic unwinding (or a
        // fiber being torn down) must not suspend, nor can a thread that
        // `W` says cannot: then block, briefly, since the child has been
        // killed.
        if !std::thread::panicking()
            && W::can_suspend()
            && weft_core::cancel::protect(|| self.wait_in_fiber()).is_ok()
        {
            return;
        }
        let _ = self.wait_blocking();
    }
}
