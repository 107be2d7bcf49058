//! [`Command`]: what to run, with which arguments, environment, working
//! directory and standard streams.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind, Result};
use crate::flow::{Sink, Source};

/// How a child's standard stream is connected, when it is not a flow.
///
/// To connect a stream to a [`Source`] or [`Sink`] of your own, use
/// [`Command::stdin_from`], [`Command::stdout_to`] or
/// [`Command::stderr_to`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Stdio {
    /// The parent's own stream (the default).
    #[default]
    Inherit,
    /// `/dev/null`: reads see end of file, writes are discarded.
    Null,
    /// A new pipe; the parent's end is in the [`Child`](super::Child)
    /// (see [`Child::stdout`](super::Child::stdout) and friends).
    Pipe,
}

/// The child's stdin as configured.
pub(crate) enum Input<'a> {
    Std(Stdio),
    Flow(Box<dyn Source + 'a>),
}

/// The child's stdout or stderr as configured.
pub(crate) enum Output<'a> {
    Std(Stdio),
    Flow(Box<dyn Sink + 'a>),
}

impl Input<'_> {
    /// What the backend sets up: a flow is fed through a pipe.
    pub(crate) fn kind(&self) -> Stdio {
        match self {
            Input::Std(s) => *s,
            Input::Flow(_) => Stdio::Pipe,
        }
    }
}

impl Output<'_> {
    pub(crate) fn kind(&self) -> Stdio {
        match self {
            Output::Std(s) => *s,
            Output::Flow(_) => Stdio::Pipe,
        }
    }
}

/// A program to run: built up, then given to
/// [`ProcessMgr::spawn`](super::ProcessMgr::spawn) or one of the `run`
/// helpers.
///
/// The builder methods take and return the command by value:
///
/// ```
/// use weft::process::{Command, Stdio};
///
/// let cmd = Command::new("sh")
///     .args(["-c", "echo \"$GREETING\" from $(pwd)"])
///     .env("GREETING", "hello")
///     .current_dir("/")
///     .stdout(Stdio::Pipe);
/// assert_eq!(cmd.command_line(), r#"sh -c "echo \"$GREETING\" from $(pwd)""#);
/// ```
///
/// The lifetime `'a` is that of the flows the standard streams are
/// connected to ([`stdin_from`](Command::stdin_from) and friends), which
/// may borrow from the caller.
pub struct Command<'a> {
    program: OsString,
    args: Vec<OsString>,
    env_clear: bool,
    env: Vec<(OsString, Option<OsString>)>,
    cwd: Option<PathBuf>,
    pub(crate) stdin: Input<'a>,
    pub(crate) stdout: Output<'a>,
    pub(crate) stderr: Output<'a>,
}

impl fmt::Debug for Command<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let flow = |k: Stdio, is_flow: bool| {
            if is_flow {
                "Flow".into()
            } else {
                format!("{k:?}")
            }
        };
        f.debug_struct("Command")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("env_clear", &self.env_clear)
            .field("env", &self.env)
            .field("cwd", &self.cwd)
            .field(
                "stdin",
                &flow(self.stdin.kind(), matches!(self.stdin, Input::Flow(_))),
            )
            .field(
                "stdout",
                &flow(self.stdout.kind(), matches!(self.stdout, Output::Flow(_))),
            )
            .field(
                "stderr",
                &flow(self.stderr.kind(), matches!(self.stderr, Output::Flow(_))),
            )
            .finish()
    }
}

impl<'a> Command<'a> {
    /// A command running `program` with no arguments, the parent's
    /// environment, working directory and standard streams.
    ///
    /// A `program` without a `/` is looked up in `PATH` (the child's `PATH`,
    /// if [`env`](Command::env) changes it).
    pub fn new(program: impl AsRef<OsStr>) -> Command<'a> {
        Command {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            env_clear: false,
            env: Vec::new(),
            cwd: None,
            stdin: Input::Std(Stdio::Inherit),
            stdout: Output::Std(Stdio::Inherit),
            stderr: Output::Std(Stdio::Inherit),
        }
    }

    /// A command from an argument vector: the program, then its arguments
    /// (Eio's style: `["sh", "-c", "exit 3"]`). An empty vector is an
    /// `InvalidInput` error.
    pub fn from_argv<I, S>(argv: I) -> Result<Command<'a>>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut it = argv.into_iter();
        let program = it.next().ok_or_else(|| {
            Error::msg(
                ErrorKind::InvalidInput,
                "empty argument list: no program to run",
            )
        })?;
        Ok(Command::new(program).args(it))
    }

    /// Appends one argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Command<'a> {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Appends arguments.
    pub fn args<I, S>(mut self, args: I) -> Command<'a>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable for the child.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Command<'a> {
        self.env
            .push((key.as_ref().to_owned(), Some(value.as_ref().to_owned())));
        self
    }

    /// Removes an environment variable from the child's environment.
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Command<'a> {
        self.env.push((key.as_ref().to_owned(), None));
        self
    }

    /// Starts the child with an empty environment: only the variables set
    /// with [`env`](Command::env) (before or after this call) are passed.
    pub fn env_clear(mut self) -> Command<'a> {
        self.env_clear = true;
        self.env.retain(|(_, v)| v.is_some());
        self
    }

    /// Runs the child in `dir` instead of the parent's working directory.
    ///
    /// This takes a plain path for now; a capability-based working
    /// directory (a `Dir` from the filesystem capability) comes with it.
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Command<'a> {
        self.cwd = Some(dir.into());
        self
    }

    /// Connects the child's stdin ([`Stdio::Inherit`] by default).
    pub fn stdin(mut self, how: Stdio) -> Command<'a> {
        self.stdin = Input::Std(how);
        self
    }

    /// Feeds the child's stdin from `src`: a fiber copies it into a pipe,
    /// then closes the pipe so the child sees end of file. If the child exits
    /// without reading everything, the rest is dropped.
    pub fn stdin_from(mut self, src: impl Source + 'a) -> Command<'a> {
        self.stdin = Input::Flow(Box::new(src));
        self
    }

    /// Connects the child's stdout ([`Stdio::Inherit`] by default).
    pub fn stdout(mut self, how: Stdio) -> Command<'a> {
        self.stdout = Output::Std(how);
        self
    }

    /// Sends the child's stdout to `dst`: a fiber copies it from a pipe
    /// until the child (and any process that inherited the pipe) closes it.
    pub fn stdout_to(mut self, dst: impl Sink + 'a) -> Command<'a> {
        self.stdout = Output::Flow(Box::new(dst));
        self
    }

    /// Connects the child's stderr ([`Stdio::Inherit`] by default).
    pub fn stderr(mut self, how: Stdio) -> Command<'a> {
        self.stderr = Output::Std(how);
        self
    }

    /// Sends the child's stderr to `dst`, as [`stdout_to`](Command::stdout_to)
    /// does for stdout.
    pub fn stderr_to(mut self, dst: impl Sink + 'a) -> Command<'a> {
        self.stderr = Output::Flow(Box::new(dst));
        self
    }

    /// The program.
    pub fn get_program(&self) -> &OsStr {
        &self.program
    }

    /// The arguments, without the program.
    pub fn get_args(&self) -> impl ExactSizeIterator<Item = &OsStr> + '_ {
        self.args.iter().map(|a| a.as_os_str())
    }

    /// The environment changes in the order they were made: `Some(value)`
    /// sets a variable, `None` removes it.
    pub fn get_envs(&self) -> impl ExactSizeIterator<Item = (&OsStr, Option<&OsStr>)> + '_ {
        self.env.iter().map(|(k, v)| (k.as_os_str(), v.as_deref()))
    }

    /// Whether the child starts from an empty environment.
    pub fn is_env_cleared(&self) -> bool {
        self.env_clear
    }

    /// The working directory, if one was set.
    pub fn get_current_dir(&self) -> Option<&Path> {
        self.cwd.as_deref()
    }

    /// How stdin, stdout and stderr are set up by the backend: a stream
    /// connected to a flow is a [`Stdio::Pipe`].
    pub fn stdio_kinds(&self) -> [Stdio; 3] {
        [self.stdin.kind(), self.stdout.kind(), self.stderr.kind()]
    }

    /// A `std::process::Command` with this command's program, arguments,
    /// environment, working directory and stdio kinds: the portable part of
    /// spawning that every backend shares (backends then take the pipes).
    ///
    /// ```
    /// use weft::process::Command;
    /// let cmd = Command::from_argv(["echo", "hi"]).unwrap().env("A", "1");
    /// let std = cmd.to_std();
    /// assert_eq!(std.get_program(), "echo");
    /// assert_eq!(std.get_args().collect::<Vec<_>>(), ["hi"]);
    /// ```
    pub fn to_std(&self) -> std::process::Command {
        fn std_stdio(s: Stdio) -> std::process::Stdio {
            match s {
                Stdio::Inherit => std::process::Stdio::inherit(),
                Stdio::Null => std::process::Stdio::null(),
                Stdio::Pipe => std::process::Stdio::piped(),
            }
        }
        let mut c = std::process::Command::new(self.get_program());
        c.args(self.get_args());
        if self.is_env_cleared() {
            c.env_clear();
        }
        for (k, v) in self.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        if let Some(dir) = self.get_current_dir() {
            c.current_dir(dir);
        }
        let [i, o, e] = self.stdio_kinds();
        c.stdin(std_stdio(i))
            .stdout(std_stdio(o))
            .stderr(std_stdio(e));
        c
    }

    /// Whether any standard stream is connected to a flow, which needs a
    /// fiber to copy it.
    pub(crate) fn has_flows(&self) -> bool {
        matches!(self.stdin, Input::Flow(_))
            || matches!(self.stdout, Output::Flow(_))
            || matches!(self.stderr, Output::Flow(_))
    }

    /// The program and arguments as they appear in error messages: separated
    /// by spaces, an argument quoted (Rust string syntax) when it is empty
    /// or contains a space, a quote, a backslash, a control character or
    /// non-ASCII text.
    ///
    /// ```
    /// use weft::process::Command;
    /// let cmd = Command::from_argv(["sh", "-c", "exit 3", ""]).unwrap();
    /// assert_eq!(cmd.command_line(), r#"sh -c "exit 3" """#);
    /// ```
    pub fn command_line(&self) -> String {
        let mut out = String::new();
        for (i, a) in std::iter::once(&self.program).chain(&self.args).enumerate() {
            if i > 0 {
                out.push(' ');
            }
            push_arg(&mut out, &a.to_string_lossy());
        }
        out
    }
}

fn push_arg(out: &mut String, a: &str) {
    let plain = |c: char| c.is_ascii_graphic() && !matches!(c, '"' | '\'' | '\\');
    if !a.is_empty() && a.chars().all(plain) {
        out.push_str(a);
    } else {
        out.push_str(&format!("{a:?}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_follows_eio() {
        let cmd = Command::from_argv(["echo", "a'b", "tab\there", "ü", "x=1,y"]).unwrap();
        assert_eq!(cmd.command_line(), r#"echo "a'b" "tab\there" "ü" x=1,y"#);
    }

    #[test]
    fn env_clear_drops_earlier_removals_only() {
        let cmd = Command::new("env")
            .env("A", "1")
            .env_remove("B")
            .env_clear()
            .env("C", "3");
        let envs: Vec<_> = cmd.get_envs().collect();
        assert_eq!(
            envs,
            [
                (OsStr::new("A"), Some(OsStr::new("1"))),
                (OsStr::new("C"), Some(OsStr::new("3")))
            ]
        );
        assert!(cmd.is_env_cleared());
    }

    #[test]
    fn empty_argv_is_invalid() {
        let err = Command::from_argv(Vec::<String>::new()).unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::InvalidInput);
    }

    #[test]
    fn flows_are_pipes_to_the_backend() {
        let cmd = Command::new("cat")
            .stdin_from(crate::flow::string_source("x"))
            .stderr(Stdio::Null);
        assert_eq!(
            cmd.stdio_kinds(),
            [Stdio::Pipe, Stdio::Inherit, Stdio::Null]
        );
        assert!(cmd.has_flows());
        assert!(format!("{cmd:?}").contains("stdin: \"Flow\""));
    }
}
