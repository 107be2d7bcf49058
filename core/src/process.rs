//! Running child processes: the [`ProcessMgr`] capability.
//!
//! A function that is given a `ProcessMgr` (from
//! [`Env::process_mgr`](crate::Env::process_mgr)) can start programs;
//! one that is not, cannot. The simplest use runs a command to completion
//! and fails unless it exits with code 0:
//!
//! ```
//! weft::run(|env| {
//!     let proc_mgr = env.process_mgr();
//!     proc_mgr.run(&["echo", "hello"])?; // prints "hello"
//!     Ok(())
//! })
//! .unwrap();
//! ```
//!
//! A [`Command`] sets the environment, the working directory and the
//! standard streams. A stream can be inherited, `/dev/null`, a pipe, or
//! connected to any flow — then a fiber copies between the flow and a pipe
//! while the child runs. Here `tr` reads from a string and writes into a
//! buffer:
//!
//! ```
//! use weft::flow;
//! use weft::process::Command;
//!
//! weft::run(|env| {
//!     let out = flow::buffer_sink();
//!     let tr = Command::new("tr")
//!         .args(["a-z", "A-Z"])
//!         .stdin_from(flow::string_source("One two three\n"))
//!         .stdout_to(&out);
//!     env.process_mgr().run_with(tr)?;
//!     assert_eq!(out.contents_string(), "ONE TWO THREE\n");
//!     Ok(())
//! })
//! .unwrap();
//! ```
//!
//! To capture the output, use [`ProcessMgr::output_string`], or parse it
//! as it arrives with a [`BufReader`] through [`ProcessMgr::parse_out`].
//! All the `run` helpers check the exit status, and their errors name the
//! command:
//!
//! ```
//! use weft::process::{Command, ProcessError};
//! use weft::ErrorKind;
//!
//! weft::run(|env| {
//!     let proc_mgr = env.process_mgr();
//!     let echo = Command::from_argv(["echo", "hello"])?;
//!     assert_eq!(proc_mgr.parse_out(echo, 1024, |r| r.line())?, "hello");
//!
//!     let exit3 = Command::from_argv(["sh", "-c", "exit 3"])?;
//!     let err = proc_mgr.parse_out(exit3, 1024, |r| r.take_all()).unwrap_err();
//!     assert_eq!(err.kind(), &ErrorKind::Process(ProcessError::Exited(3)));
//!     assert_eq!(
//!         err.to_string(),
//!         r#"process: exited with code 3, running command: sh -c "exit 3""#
//!     );
//!     Ok(())
//! })
//! .unwrap();
//! ```
//!
//! # Lifetimes
//!
//! [`ProcessMgr::spawn`] returns a [`Child`] for full control: its pid, its
//! pipes, [`wait`](Child::wait), [`signal`](Child::signal). A `Child` is an
//! owned resource, and **dropping one that is still running kills it**
//! (`SIGKILL`) and reaps it. Since a cancelled fiber returns `Err(Cancelled)`
//! and drops what it owns on the way out, a child never outlives the switch
//! of the fiber that started it:
//!
//! ```
//! use std::time::Duration;
//! use weft::process::Command;
//!
//! weft::run(|env| {
//!     let proc_mgr = env.process_mgr();
//!     let clock = env.mono_clock();
//!     let r = weft::time::with_timeout(clock, Duration::from_millis(20), || {
//!         let child = proc_mgr.spawn(&Command::new("sleep").arg("100"))?;
//!         child.wait() // cancelled by the timeout; `child` is dropped: killed
//!     });
//!     assert!(r.unwrap_err().is_timeout());
//!     Ok(())
//! })
//! .unwrap();
//! ```
//!
//! Only the standard streams chosen are passed to the child: every other
//! descriptor weft opens is close-on-exec.
//!
//! Under the mock backend, programs are simulated: each is a handler that
//! runs as a fiber of the run (`weft::mock::Programs`), with the same
//! pipes, statuses, signals and lifetimes, on virtual time.

use std::fmt;
use std::sync::Arc;

use crate::buf_read::{self, BufReader};
use crate::error::{Error, ErrorKind, NetError, Result};
use crate::fiber;
use crate::flow::{Sink, Source};
use crate::switch::{ForkOptions, Switch};

mod child;
mod command;

pub use crate::error::ProcessError;
pub use child::{Child, ChildStderr, ChildStdin, ChildStdout};
pub use command::{Command, Stdio};

use command::{Input, Output};

/// Hangup: the portable number of `SIGHUP`.
pub const SIGHUP: i32 = 1;
/// Interrupt (Ctrl-C): `SIGINT`.
pub const SIGINT: i32 = 2;
/// Quit: `SIGQUIT`.
pub const SIGQUIT: i32 = 3;
/// Kill, which cannot be caught: `SIGKILL`.
pub const SIGKILL: i32 = 9;
/// Polite termination: `SIGTERM`.
pub const SIGTERM: i32 = 15;

/// How a child process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExitStatus {
    /// It exited with this code.
    Exited(i32),
    /// It was killed by this signal.
    Signaled(i32),
}

impl ExitStatus {
    /// Whether it exited with code 0.
    pub fn success(self) -> bool {
        self == ExitStatus::Exited(0)
    }

    /// The exit code, if it exited.
    pub fn code(self) -> Option<i32> {
        match self {
            ExitStatus::Exited(c) => Some(c),
            ExitStatus::Signaled(_) => None,
        }
    }

    /// The signal that killed it, if one did.
    pub fn signal(self) -> Option<i32> {
        match self {
            ExitStatus::Exited(_) => None,
            ExitStatus::Signaled(s) => Some(s),
        }
    }

    /// `Ok(())` on success, else an [`ErrorKind::Process`] error
    /// (`Exited(code)` or `Signaled(sig)`).
    ///
    /// ```
    /// use weft::process::{ExitStatus, ProcessError};
    /// use weft::ErrorKind;
    /// assert!(ExitStatus::Exited(0).check().is_ok());
    /// let err = ExitStatus::Signaled(9).check().unwrap_err();
    /// assert_eq!(err.kind(), &ErrorKind::Process(ProcessError::Signaled(9)));
    /// ```
    pub fn check(self) -> Result<()> {
        match self {
            ExitStatus::Exited(0) => Ok(()),
            ExitStatus::Exited(c) => Err(ProcessError::Exited(c).into()),
            ExitStatus::Signaled(s) => Err(ProcessError::Signaled(s).into()),
        }
    }
}

/// `exited with code 3`, `killed by signal 9`.
impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Exited(c) => write!(f, "exited with code {c}"),
            ExitStatus::Signaled(s) => write!(f, "killed by signal {s}"),
        }
    }
}

/// What a backend provides for a spawned child.
///
/// **Dropping it must kill (`SIGKILL`) and reap a child that is still
/// running**, without leaving a zombie; [`Child`] relies on this.
pub trait ChildImpl {
    /// The process id.
    fn pid(&self) -> u32;
    /// Waits (cancellably) for the child to exit; later calls return the
    /// same status.
    fn wait(&self) -> Result<ExitStatus>;
    /// The status if the child has exited, without waiting.
    fn try_wait(&self) -> Result<Option<ExitStatus>>;
    /// Sends a signal; a no-op once the child has been reaped.
    fn signal(&self, sig: i32) -> Result<()>;
}

/// The parent's reading end of a pipe from a child (its stdout or stderr).
pub trait PipeReaderImpl: Source {
    /// Closes the pipe, reporting errors that `Drop` would ignore.
    fn close(self: Box<Self>) -> Result<()>;
}

/// The parent's writing end of a pipe to a child (its stdin).
pub trait PipeWriterImpl: Sink {
    /// Closes the pipe, reporting errors that `Drop` would ignore.
    fn close(self: Box<Self>) -> Result<()>;
}

/// What a backend returns from [`ProcessBackend::spawn`]: the child, and
/// the parent's pipe ends for the streams that are [`Stdio::Pipe`].
pub struct Spawned {
    /// The child.
    pub child: Box<dyn ChildImpl>,
    /// The writing end of the stdin pipe.
    pub stdin: Option<Box<dyn PipeWriterImpl>>,
    /// The reading end of the stdout pipe.
    pub stdout: Option<Box<dyn PipeReaderImpl>>,
    /// The reading end of the stderr pipe.
    pub stderr: Option<Box<dyn PipeReaderImpl>>,
}

/// What a backend provides for the process capability.
pub trait ProcessBackend: Send + Sync + 'static {
    /// Starts `cmd`. Streams connected to flows are given as
    /// [`Stdio::Pipe`] (see [`Command::stdio_kinds`]); the caller copies
    /// them. Every descriptor other than the three chosen must be closed in
    /// the child. A failure to start is [`ProcessError::SpawnFailed`].
    fn spawn(&self, cmd: &Command<'_>) -> Result<Spawned>;
}

/// The capability to start child processes.
///
/// It is `Send` and `Sync`: hand it to another domain, and children spawned
/// there belong to that domain.
#[derive(Clone)]
pub struct ProcessMgr {
    backend: Arc<dyn ProcessBackend>,
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<ProcessMgr>();
};

impl fmt::Debug for ProcessMgr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProcessMgr")
    }
}

impl ProcessMgr {
    /// A `ProcessMgr` backed by `backend` (backends and test doubles use
    /// this).
    pub fn new(backend: Arc<dyn ProcessBackend>) -> ProcessMgr {
        ProcessMgr { backend }
    }

    /// Starts `cmd` and returns at once. Its standard streams must not be
    /// connected to flows (that needs fibers to copy them: use
    /// [`spawn_in`](ProcessMgr::spawn_in) or a `run` helper); pipes are fine.
    ///
    /// Not a suspension point, but it checks for cancellation first: no
    /// child starts in a cancelled context.
    pub fn spawn(&self, cmd: &Command<'_>) -> Result<Child> {
        if cmd.has_flows() {
            return Err(Error::msg(
                ErrorKind::InvalidInput,
                "a standard stream is connected to a flow, which needs a fiber \
                 to copy it: use ProcessMgr::spawn_in or run_with",
            )
            .context(format!("spawning command: {}", cmd.command_line())));
        }
        self.spawn_raw(cmd)
    }

    /// Starts `cmd`, forking a fiber in `sw` for each standard stream
    /// connected to a flow, to copy between the flow and a pipe. The
    /// returned [`Child`] has no pipe ends for those streams.
    pub fn spawn_in<'sw, 'a: 'sw>(
        &self,
        sw: &'sw Switch<'sw, '_>,
        cmd: Command<'a>,
    ) -> Result<Child> {
        let mut child = self.spawn_raw(&cmd)?;
        let name = cmd.get_program().to_string_lossy().into_owned();
        let fork_opts = |what: &str| ForkOptions::new().name(format!("{what} of {name}"));
        if let Input::Flow(src) = cmd.stdin {
            let pipe = child.take_stdin().expect("a flow stdin is a pipe");
            sw.fork_with(fork_opts("copying to stdin"), move || pump_in(&*src, pipe));
        }
        if let Output::Flow(dst) = cmd.stdout {
            let pipe = child.take_stdout().expect("a flow stdout is a pipe");
            sw.fork_with(fork_opts("copying stdout"), move || {
                pump_out(pipe, &*dst, "copying the child's stdout")
            });
        }
        if let Output::Flow(dst) = cmd.stderr {
            let pipe = child.take_stderr().expect("a flow stderr is a pipe");
            sw.fork_with(fork_opts("copying stderr"), move || {
                pump_out(pipe, &*dst, "copying the child's stderr")
            });
        }
        Ok(child)
    }

    fn spawn_raw(&self, cmd: &Command<'_>) -> Result<Child> {
        fiber::check()?;
        self.backend
            .spawn(cmd)
            .map(Child::from_spawned)
            .map_err(|e| e.context(format!("spawning command: {}", cmd.command_line())))
    }

    /// Runs a program with arguments (`argv[0]` is the program), inheriting
    /// the standard streams, and waits for it. Fails unless it exits with
    /// code 0: `Process(Exited(code))` or `Process(Signaled(sig))`, with
    /// the context `running command: ...`.
    ///
    /// ```
    /// use weft::{ErrorKind, ProcessError};
    ///
    /// weft::run(|env| {
    ///     let pm = env.process_mgr();
    ///     pm.run(&["sh", "-c", "test 1 -lt 2"])?;
    ///     let err = pm.run(&["sh", "-c", "test 2 -lt 1"]).unwrap_err();
    ///     assert_eq!(err.kind(), &ErrorKind::Process(ProcessError::Exited(1)));
    ///     assert!(pm.run(&[]).is_err(), "an empty command line is refused");
    ///     Ok(())
    /// })
    /// .unwrap();
    /// ```
    pub fn run(&self, argv: &[&str]) -> Result<()> {
        self.run_with(Command::from_argv(argv)?)
    }

    /// Like [`run`](ProcessMgr::run), for a full [`Command`] (whose streams
    /// may be connected to flows).
    pub fn run_with(&self, cmd: Command<'_>) -> Result<()> {
        let line = cmd.command_line();
        self.status_inner(cmd)
            .and_then(ExitStatus::check)
            .map_err(|e| run_context(e, &line))
    }

    /// Runs `cmd` to completion and returns its exit status, whatever it is.
    /// Flows connected to its streams have been copied in full when this
    /// returns.
    pub fn status(&self, cmd: Command<'_>) -> Result<ExitStatus> {
        let line = cmd.command_line();
        self.status_inner(cmd).map_err(|e| run_context(e, &line))
    }

    fn status_inner(&self, cmd: Command<'_>) -> Result<ExitStatus> {
        Switch::run(|sw| self.spawn_in(sw, cmd)?.wait())
    }

    /// Runs `cmd` with its stdout captured (whatever `cmd` said about
    /// stdout) and returns the output, after checking that it exited with
    /// code 0.
    pub fn output(&self, cmd: Command<'_>) -> Result<Vec<u8>> {
        self.with_stdout(cmd, |out| {
            let mut v = Vec::new();
            out.read_to_end(&mut v)?;
            Ok(v)
        })
    }

    /// Like [`output`](ProcessMgr::output), as UTF-8 (invalid UTF-8 is an
    /// `InvalidInput` error).
    pub fn output_string(&self, cmd: Command<'_>) -> Result<String> {
        self.with_stdout(cmd, |out| out.read_all())
    }

    /// Runs `cmd` and parses its stdout with `p`, as
    /// [`buf_read::parse`] does: the buffer never grows past `max_size`,
    /// and `p` must consume all the output. Then checks that the command
    /// exited with code 0. Errors carry the context `running command: ...`.
    pub fn parse_out<T>(
        &self,
        cmd: Command<'_>,
        max_size: usize,
        p: impl FnOnce(&mut BufReader<&ChildStdout>) -> Result<T>,
    ) -> Result<T> {
        self.with_stdout(cmd, |out| buf_read::parse(out, max_size, p))
    }

    fn with_stdout<T>(
        &self,
        cmd: Command<'_>,
        f: impl FnOnce(&ChildStdout) -> Result<T>,
    ) -> Result<T> {
        let line = cmd.command_line();
        Switch::run(|sw| {
            let mut child = self.spawn_in(sw, cmd.stdout(Stdio::Pipe))?;
            let out = child.take_stdout().expect("stdout is a pipe");
            let value = f(&out)?;
            drop(out);
            child.wait()?.check()?;
            Ok(value)
        })
        .map_err(|e| run_context(e, &line))
    }
}

/// Adds `running command: ...`, unless the error is a spawn failure (which
/// already says `spawning command: ...`).
fn run_context(e: Error, line: &str) -> Error {
    if e.kind() == &ErrorKind::Process(ProcessError::SpawnFailed) {
        e
    } else {
        e.context(format!("running command: {line}"))
    }
}

/// Copies `src` into the child's stdin, then closes it. A child that exits
/// (or closes its stdin) before reading everything is not an error here:
/// its exit status says whether something went wrong.
fn pump_in(src: &dyn Source, pipe: ChildStdin) -> Result<()> {
    match pipe.copy_from(src) {
        Ok(_) => pipe.close(),
        Err(e) if e.kind() == &ErrorKind::Net(NetError::BrokenPipe) => Ok(()),
        Err(e) => Err(e.context("copying to the child's stdin")),
    }
}

fn pump_out(pipe: impl Source, dst: &dyn Sink, what: &'static str) -> Result<()> {
    crate::flow::copy(&pipe, dst).map_err(|e| e.context(what))?;
    Ok(())
}

/// The process manager of a backend that has none (yet): every call says so.
pub(crate) struct NoProcess(pub(crate) &'static str);

impl ProcessBackend for NoProcess {
    fn spawn(&self, _: &Command<'_>) -> Result<Spawned> {
        Err(Error::msg(
            ErrorKind::InvalidInput,
            format!("the {} backend provides no process manager", self.0),
        ))
    }
}
