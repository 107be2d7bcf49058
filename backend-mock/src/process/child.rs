//! A mock child process: a detached fiber running its program's handler,
//! and the parent's handle on it.
//!
//! * **Exit.** When the handler returns, the process's ends of its pipes
//!   close (the parent reads end of file), then its status is set and
//!   waiters wake: `Ok(status)` as returned; `Err(Cancelled)` after a
//!   signal gives `Signaled(sig)`; `Net(BrokenPipe)` (it wrote to a pipe
//!   nobody reads) gives `Signaled(SIGPIPE)`, as the default action of
//!   `SIGPIPE` would; any other error is reported on its stderr
//!   (`prog: error`) and gives `Exited(1)`; a panic gives `Signaled(SIGABRT)`
//!   and a trace line with the message.
//! * **Signals.** A signal whose default action terminates ends the
//!   process: its fiber is cancelled (it sees `Err(Cancelled)` at its
//!   current or next suspension point) and the status reports the signal.
//!   Programs cannot catch signals. Signals ignored by default (`SIGCHLD`,
//!   `SIGCONT`, `SIGURG`, `SIGWINCH`) do nothing; stopping a process is not
//!   modelled (`InvalidInput`).
//! * **Dropping** a running child kills it and waits (protected) for its
//!   fiber to finish, so that it is gone — pipes closed, status set — when
//!   `drop` returns, as the real backends reap a killed child.
//! * **The end of the run** cancels processes still running (their status
//!   becomes `Signaled(SIGKILL)`): a mock process never outlives its world.

use std::rc::Rc;

use weft_core::process::{ChildImpl, ExitStatus, SIGKILL};
use weft_core::sync::{Promise, Resolver};
use weft_core::{traceln, Error, ErrorKind, NetError, Result};

use super::invocation::{Invocation, ProcState};
use super::ProgramFn;

const SIGABRT: i32 = 6;
const SIGPIPE: i32 = 13;
/// Signals whose default action is to do nothing.
const IGNORED: [i32; 4] = [17, 18, 23, 28];
/// Signals whose default action is to stop the process.
const STOPPING: [i32; 4] = [19, 20, 21, 22];
/// Linux's highest real-time signal.
const SIGRTMAX: i32 = 64;

/// Delivers `sig` to the process, as `kill(2)` does to a running one.
pub(crate) fn deliver(state: &ProcState, sig: i32) -> Result<()> {
    if !(0..=SIGRTMAX).contains(&sig) {
        return Err(Error::msg(
            ErrorKind::InvalidInput,
            format!("invalid signal {sig}"),
        ));
    }
    if STOPPING.contains(&sig) {
        return Err(Error::msg(
            ErrorKind::InvalidInput,
            format!("signal {sig} would stop the process, which the mock does not model"),
        ));
    }
    if sig == 0 || IGNORED.contains(&sig) {
        return Ok(());
    }
    state.terminate(sig);
    Ok(())
}

/// The body of the process's fiber: runs `program` and sets the status.
pub(crate) fn run_process(
    program: std::sync::Arc<ProgramFn>,
    inv: Invocation,
    exit: Resolver<ExitStatus>,
) {
    let state = inv.state.clone();
    let name = inv.program().to_owned();
    let status = if state.signal.get().is_some() || weft_core::fiber::check().is_err() {
        // Killed (or its run ended) before it ever ran.
        None
    } else {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| program(&inv)));
        Some(match r {
            Ok(Ok(st)) => st,
            Ok(Err(e)) if e.is_cancelled() => ExitStatus::Signaled(SIGKILL),
            Ok(Err(e)) if e.kind() == &ErrorKind::Net(NetError::BrokenPipe) => {
                ExitStatus::Signaled(SIGPIPE)
            }
            Ok(Err(e)) => {
                inv.complain(&format!("{name}: {e}"));
                ExitStatus::Exited(1)
            }
            Err(p) => {
                let msg = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                traceln!("process: {name}: panicked: {msg}");
                ExitStatus::Signaled(SIGABRT)
            }
        })
    };
    // Exiting closes the process's descriptors before the parent can see
    // the status.
    let programs = inv.programs.clone();
    drop(inv);
    programs.exited(state.pid);
    let status = match state.signal.get() {
        Some(sig) => ExitStatus::Signaled(sig),
        None => status.unwrap_or(ExitStatus::Signaled(SIGKILL)),
    };
    traceln!("process: {name} {status}");
    let _ = exit.resolve(status);
}

/// The parent's handle on a mock process.
pub(crate) struct MockChild {
    pub(crate) state: Rc<ProcState>,
    pub(crate) status: Promise<ExitStatus>,
}

impl ChildImpl for MockChild {
    fn pid(&self) -> u32 {
        self.state.pid
    }

    fn wait(&self) -> Result<ExitStatus> {
        if let Some(st) = self.status.peek() {
            return Ok(*st);
        }
        if !weft_core::backend::in_runtime() {
            // Only the run could end the process, and it is over.
            return Err(Error::msg(
                ErrorKind::Closed,
                format!(
                    "waiting for mock process {} after its run has ended",
                    self.state.pid
                ),
            ));
        }
        self.status.wait().copied()
    }

    fn try_wait(&self) -> Result<Option<ExitStatus>> {
        Ok(self.status.peek().copied())
    }

    fn signal(&self, sig: i32) -> Result<()> {
        if self.status.is_resolved() {
            return Ok(());
        }
        deliver(&self.state, sig).map_err(|e| {
            e.context(format!(
                "sending signal {sig} to process {}",
                self.state.pid
            ))
        })
    }
}

impl Drop for MockChild {
    fn drop(&mut self) {
        if self.status.is_resolved() {
            return;
        }
        self.state.terminate(SIGKILL);
        // As the real backends reap: wait for the fiber to finish, unless
        // this is a panic unwinding or there is no run to wait in (then the
        // end of the run finishes it).
        if !std::thread::panicking() && weft_core::backend::in_runtime() {
            let _ = weft_core::cancel::protect(|| self.status.wait().map(|_| ()));
        }
    }
}
