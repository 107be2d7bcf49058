//! Child processes in the mock world: programs are handlers, and a process
//! is a fiber.
//!
//! Under the mock backend `env.process_mgr()` starts **simulated**
//! programs: a [`Programs`] table maps program names to handlers, and
//! spawning one runs its handler as a fiber of the run's scheduler (see
//! `weft_core::backend::spawn_detached`). The handler gets an
//! [`Invocation`] — its arguments, environment, working directory and
//! standard streams — and returns its exit status. Everything else is the
//! process contract of the real backends: pipes the parent reads and
//! writes, flows pumped by fibers, waiting, signals, a child killed when
//! its owner is cancelled or drops it, `run` failing on a non-zero exit.
//!
//! ```
//! use weft::process::{Command, ExitStatus};
//! use weft_mock::Programs;
//!
//! let programs = Programs::new();
//! programs.register("greet", |p| {
//!     let who = p.args().first().map_or("world", String::as_str);
//!     p.stdout().write_all(format!("hello, {who}\n").as_bytes())?;
//!     Ok(ExitStatus::Exited(0))
//! });
//! let (result, trace) = weft_mock::Config::new().programs(programs).run_traced(|env| {
//!     let pm = env.process_mgr();
//!     assert_eq!(pm.output_string(Command::new("greet").arg("weft"))?, "hello, weft\n");
//!     pm.run(&["echo", "inherited"])?;
//!     Ok(())
//! });
//! result.unwrap();
//! assert_eq!(
//!     trace,
//!     [
//!         "process: spawn greet weft",
//!         "process: greet exited with code 0",
//!         "process: spawn echo inherited",
//!         r#"process: echo: stdout "inherited\n""#,
//!         "process: echo exited with code 0",
//!     ]
//! );
//! ```
//!
//! # The mock world's processes
//!
//! * **Programs.** A new [`Programs`] holds the built-ins listed in
//!   [`builtins`] (`echo`, `cat`, `true`, `false`, `exit`, `sleep`, `env`,
//!   `pwd`, `tr`, `sort`); [`Programs::register`] adds or replaces one. A
//!   program is looked up by the name the command gives, exactly (there
//!   is no `PATH` search: register `/usr/bin/env` to run that). An unknown
//!   program fails to spawn with `Process(SpawnFailed)`, whose source is an
//!   `io::Error` of kind `NotFound` naming it, as a missing executable does
//!   on the real backends.
//! * **Working directory.** The run's [`MemFs`]: `/work`
//!   unless the command sets one, which resolves as `env.fs()` resolves
//!   paths (relative ones from the working directory, symlinks followed);
//!   a missing directory or a file fails the spawn with
//!   `Process(SpawnFailed)`, the filesystem error as its source.
//! * **Environment.** The world's (by default `HOME=/work` and
//!   `PATH=/usr/bin:/bin`; see [`Programs::env`]), changed as the command
//!   says.
//! * **Standard streams.** Pipes hold 64 KiB, as Linux's do (see
//!   [`pipe`]). `Stdio::Null` reads as empty and swallows writes. The
//!   world's own streams, which `Stdio::Inherit` passes on: stdin is empty,
//!   and what is written to stdout and stderr is traced
//!   (`process: echo: stdout "hello\n"`).
//! * **Pids** count up from 2 in each `Programs` (1 is the run itself).
//! * **Tracing.** Each spawn traces `process: spawn <command line>`, and
//!   each exit `process: <program> <status>` (`exited with code 0`,
//!   `killed by signal 9`).
//!
//! # Lifetimes
//!
//! A process runs until its handler returns or a signal ends it. Dropping a
//! running `Child` kills it (`SIGKILL`) and waits until it is gone; the end
//! of the run kills whatever still runs. So a child never outlives the
//! switch of the fiber that owns it, here as on the real backends.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex, MutexGuard};

use weft_core::backend::spawn_detached;
use weft_core::flow::{Sink, Source};
use weft_core::process::{
    Command, ExitStatus, PipeReaderImpl, PipeWriterImpl, ProcessBackend, Spawned, Stdio,
};
use weft_core::sync::Promise;
use weft_core::{traceln, Error, ErrorKind, ProcessError, Result};

use crate::flow::trace_data;
use crate::fs::MemFs;

pub mod builtins;
mod child;
mod invocation;
pub mod pipe;

pub use invocation::Invocation;

use child::MockChild;
use invocation::ProcState;

/// A program of the mock world: given its [`Invocation`], it runs (as a
/// fiber) and returns its exit status.
pub type ProgramFn = dyn Fn(&Invocation) -> Result<ExitStatus> + Send + Sync;

struct Table {
    programs: BTreeMap<String, Arc<ProgramFn>>,
    env: BTreeMap<String, String>,
    next_pid: u32,
    /// Processes whose fibers have not finished.
    running: std::collections::BTreeSet<u32>,
}

/// The programs of a mock world, by name, and the environment processes
/// start with. See the [module docs](self).
///
/// Cloning gives another handle to the same table; runs given one with
/// [`Config::programs`](crate::Config::programs) (and the domains they
/// start) share it.
#[derive(Clone)]
pub struct Programs {
    table: Arc<Mutex<Table>>,
}

impl Default for Programs {
    fn default() -> Self {
        Programs::new()
    }
}

impl std::fmt::Debug for Programs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = self.lock();
        f.debug_struct("Programs")
            .field("programs", &t.programs.keys().collect::<Vec<_>>())
            .field("env", &t.env)
            .finish()
    }
}

impl Programs {
    /// The built-in programs (see [`builtins`]) and the default
    /// environment: `HOME=/work`, `PATH=/usr/bin:/bin`.
    pub fn new() -> Programs {
        let p = Programs {
            table: Arc::new(Mutex::new(Table {
                programs: BTreeMap::new(),
                env: BTreeMap::new(),
                next_pid: 2,
                running: Default::default(),
            })),
        };
        builtins::install(&p);
        p.env("HOME", "/work");
        p.env("PATH", "/usr/bin:/bin");
        p
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds the program `name` (replacing one of that name): spawning it
    /// runs `handler` in a fiber of its own.
    ///
    /// The handler reads and writes its streams as flows, which suspend it
    /// like any fiber; a signal cancels it (return the `Err(Cancelled)`).
    /// How its result becomes the exit status is described in the
    /// [module docs](self#lifetimes) and in [`Invocation`].
    pub fn register(
        &self,
        name: impl Into<String>,
        handler: impl Fn(&Invocation) -> Result<ExitStatus> + Send + Sync + 'static,
    ) {
        self.lock().programs.insert(name.into(), Arc::new(handler));
    }

    /// Sets a variable of the environment that processes start with.
    pub fn env(&self, key: impl Into<String>, value: impl Into<String>) {
        self.lock().env.insert(key.into(), value.into());
    }

    /// Removes a variable from the environment that processes start with.
    pub fn env_remove(&self, key: &str) {
        self.lock().env.remove(key);
    }

    /// The names of the programs, sorted.
    pub fn names(&self) -> Vec<String> {
        self.lock().programs.keys().cloned().collect()
    }

    /// The pids of the processes still running, in order: processes
    /// spawned with these programs that have not exited (a process that
    /// exited is gone at once; nothing needs to reap it).
    pub fn running(&self) -> Vec<u32> {
        self.lock().running.iter().copied().collect()
    }

    pub(crate) fn exited(&self, pid: u32) {
        self.lock().running.remove(&pid);
    }

    pub(crate) fn lookup(&self, name: &str) -> Option<Arc<ProgramFn>> {
        self.lock().programs.get(name).cloned()
    }
}

/// The process manager of a mock run: its programs and its filesystem.
pub(crate) struct MockProcessMgr {
    pub(crate) programs: Programs,
    pub(crate) fs: MemFs,
}

/// A `Stdio::Null` or inherited stdin: always at end of file.
struct Empty;

impl Source for Empty {
    fn read(&self, _buf: &mut [u8]) -> Result<usize> {
        Ok(0)
    }
}

/// A `Stdio::Null` stdout or stderr.
struct Discard;

impl Sink for Discard {
    fn write(&self, buf: &[u8]) -> Result<usize> {
        weft_core::fiber::check()?;
        Ok(buf.len())
    }
}

/// The world's stdout or stderr, passed on by `Stdio::Inherit`: traced.
struct Traced {
    label: String,
}

impl Sink for Traced {
    fn write(&self, buf: &[u8]) -> Result<usize> {
        weft_core::fiber::check()?;
        trace_data(format_args!("{}", self.label), buf);
        Ok(buf.len())
    }
}

/// The process's end and the parent's end of one output stream.
fn output(how: Stdio, name: &str, stream: &str) -> (Rc<dyn Sink>, Option<Box<dyn PipeReaderImpl>>) {
    match how {
        Stdio::Inherit => (
            Rc::new(Traced {
                label: format!("process: {name}: {stream}"),
            }),
            None,
        ),
        Stdio::Null => (Rc::new(Discard), None),
        Stdio::Pipe => {
            let (r, w) = pipe::pipe();
            (Rc::new(w), Some(Box::new(r)))
        }
    }
}

fn spawn_failed(source: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::with_source(ErrorKind::Process(ProcessError::SpawnFailed), source)
}

impl ProcessBackend for MockProcessMgr {
    fn spawn(&self, cmd: &Command<'_>) -> Result<Spawned> {
        let name = cmd.get_program().to_string_lossy().into_owned();
        let program = self.programs.lookup(&name).ok_or_else(|| {
            spawn_failed(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no program {name:?} in the mock world"),
            ))
        })?;
        let cwd = cmd
            .get_current_dir()
            .map(|d| d.to_string_lossy().into_owned());
        let (cwd, dir) = self.fs.process_dir(cwd.as_deref()).map_err(spawn_failed)?;
        let (env, pid) = {
            let mut t = self.programs.lock();
            let mut env = if cmd.is_env_cleared() {
                BTreeMap::new()
            } else {
                t.env.clone()
            };
            for (k, v) in cmd.get_envs() {
                let k = k.to_string_lossy().into_owned();
                match v {
                    Some(v) => env.insert(k, v.to_string_lossy().into_owned()),
                    None => env.remove(&k),
                };
            }
            let pid = t.next_pid;
            t.next_pid += 1;
            t.running.insert(pid);
            (env, pid)
        };
        let [i, o, e] = cmd.stdio_kinds();
        let (stdin, parent_stdin): (Rc<dyn Source>, Option<Box<dyn PipeWriterImpl>>) = match i {
            Stdio::Inherit | Stdio::Null => (Rc::new(Empty), None),
            Stdio::Pipe => {
                let (r, w) = pipe::pipe();
                (Rc::new(r), Some(Box::new(w)))
            }
        };
        let (stdout, parent_stdout) = output(o, &name, "stdout");
        let (stderr, parent_stderr) = output(e, &name, "stderr");
        let argv = std::iter::once(cmd.get_program())
            .chain(cmd.get_args())
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let state = Rc::new(ProcState {
            pid,
            signal: std::cell::Cell::new(None),
            fiber: std::cell::OnceCell::new(),
        });
        let inv = Invocation {
            argv,
            env,
            cwd,
            dir,
            stdin,
            stdout,
            stderr,
            programs: self.programs.clone(),
            state: state.clone(),
        };
        let (status, exit) = Promise::new();
        let fiber = spawn_detached(format!("process {pid} ({name})"), move || {
            child::run_process(program, inv, exit)
        });
        let fiber = match fiber {
            Ok(f) => f,
            Err(e) => {
                self.programs.exited(pid);
                return Err(e);
            }
        };
        let _ = state.fiber.set(fiber);
        traceln!("process: spawn {}", cmd.command_line());
        Ok(Spawned {
            child: Box::new(MockChild { state, status }),
            stdin: parent_stdin,
            stdout: parent_stdout,
            stderr: parent_stderr,
        })
    }
}
