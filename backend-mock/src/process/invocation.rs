//! [`Invocation`]: what a mock program is started with — its arguments,
//! environment, working directory, standard streams — and what it may do
//! as a process (sleep on the run's clock, signal itself, `exec` another
//! program).

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

use weft_core::backend::DetachedFiber;
use weft_core::flow::{Sink, Source};
use weft_core::fs::Dir;
use weft_core::process::ExitStatus;
use weft_core::time::MonoClock;
use weft_core::Result;

use super::Programs;

/// What a process knows of itself while it runs, shared with its `Child`.
pub(crate) struct ProcState {
    pub(crate) pid: u32,
    /// The signal that ended it (the first one sent), if any.
    pub(crate) signal: Cell<Option<i32>>,
    /// Its fiber; set right after the fiber is spawned.
    pub(crate) fiber: std::cell::OnceCell<DetachedFiber>,
}

impl ProcState {
    /// Delivers `sig`, whose default action ends the process: the first
    /// such signal is the one its exit status reports.
    pub(crate) fn terminate(&self, sig: i32) {
        if self.signal.get().is_none() {
            self.signal.set(Some(sig));
        }
        if let Some(f) = self.fiber.get() {
            f.cancel(weft_core::Error::new(weft_core::ErrorKind::Process(
                weft_core::ProcessError::Signaled(sig),
            )));
        }
    }
}

/// A mock program's view of its process: given to the program's handler
/// (see [`Programs::register`]).
///
/// The standard streams are what the [`Command`](weft_core::process::Command)
/// asked for: a pipe to or from the parent, a pipe pumped from or to a
/// flow of the parent's, `/dev/null`, or the mock world's own streams when
/// inherited (stdin is empty; what is written to stdout and stderr goes to
/// the trace).
pub struct Invocation {
    pub(crate) argv: Vec<String>,
    pub(crate) env: BTreeMap<String, String>,
    pub(crate) cwd: String,
    pub(crate) dir: Dir,
    pub(crate) stdin: Rc<dyn Source>,
    pub(crate) stdout: Rc<dyn Sink>,
    pub(crate) stderr: Rc<dyn Sink>,
    pub(crate) programs: Programs,
    pub(crate) state: Rc<ProcState>,
}

impl fmt::Debug for Invocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Invocation")
            .field("pid", &self.state.pid)
            .field("argv", &self.argv)
            .field("cwd", &self.cwd)
            .finish()
    }
}

impl Invocation {
    /// The program name, as the command gave it (`argv[0]`).
    pub fn program(&self) -> &str {
        &self.argv[0]
    }

    /// The arguments after the program name. Arguments that are not UTF-8
    /// arrive converted lossily.
    pub fn args(&self) -> &[String] {
        &self.argv[1..]
    }

    /// The whole argument vector, program name first.
    pub fn argv(&self) -> &[String] {
        &self.argv
    }

    /// An environment variable.
    pub fn var(&self, key: &str) -> Option<&str> {
        self.env.get(key).map(String::as_str)
    }

    /// The environment, sorted by name.
    pub fn vars(&self) -> &BTreeMap<String, String> {
        &self.env
    }

    /// The working directory, absolute, with symlinks resolved (what
    /// `pwd -P` prints).
    pub fn cwd(&self) -> &str {
        &self.cwd
    }

    /// The whole mock filesystem, unconfined as a process's view is, with
    /// relative paths starting at the working directory.
    pub fn dir(&self) -> &Dir {
        &self.dir
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.state.pid
    }

    /// Standard input.
    pub fn stdin(&self) -> &dyn Source {
        &*self.stdin
    }

    /// Standard output.
    pub fn stdout(&self) -> &dyn Sink {
        &*self.stdout
    }

    /// Standard error.
    pub fn stderr(&self) -> &dyn Sink {
        &*self.stderr
    }

    /// Sleeps on the run's monotonic (virtual) clock. A cancellation point:
    /// a signal ends the sleep (and the process).
    pub fn sleep(&self, d: Duration) -> Result<()> {
        MonoClock::default().sleep(d)
    }

    /// Sends `sig` to this very process, as `raise(3)` does. A signal
    /// whose default action ends the process makes this return
    /// `Err(Cancelled)` (return it: the exit status will be
    /// `Signaled(sig)`); one that is ignored by default returns `Ok`.
    pub fn raise(&self, sig: i32) -> Result<()> {
        super::child::deliver(&self.state, sig)?;
        weft_core::fiber::check()
    }

    /// Runs the program `argv[0]` in place of this one, as `exec` does:
    /// same process, streams and working directory, with `env` as its
    /// environment; returns its exit status. `None` if no such program is
    /// registered (a shell would then say "command not found" and exit
    /// with 127).
    pub fn exec(
        &self,
        argv: &[String],
        env: BTreeMap<String, String>,
    ) -> Option<Result<ExitStatus>> {
        let program = self.programs.lookup(argv.first()?)?;
        let next = Invocation {
            argv: argv.to_vec(),
            env,
            cwd: self.cwd.clone(),
            dir: self.dir.clone(),
            stdin: self.stdin.clone(),
            stdout: self.stdout.clone(),
            stderr: self.stderr.clone(),
            programs: self.programs.clone(),
            state: self.state.clone(),
        };
        Some(program(&next))
    }

    /// Writes `line` and a newline to stderr, ignoring failure (a program
    /// reporting an error has nothing better to do).
    pub fn complain(&self, line: &str) {
        let _ = self.stderr.write_all(format!("{line}\n").as_bytes());
    }
}
