//! [`Child`]: a running (or finished) child process, and the parent's ends
//! of its pipes.

use std::fmt;
use std::io;

use super::{ChildImpl, ExitStatus, PipeReaderImpl, PipeWriterImpl, Spawned, SIGKILL};
use crate::error::Result;
use crate::flow::{Backing, Sink, Source};

/// A child process started by [`ProcessMgr::spawn`](super::ProcessMgr::spawn).
///
/// **Dropping a `Child` that is still running kills it** (`SIGKILL`) and
/// reaps it, so a child never outlives the fiber or switch that owns it: if
/// that fiber is cancelled, `?` carries the cancellation out, the `Child` is
/// dropped, and the process is gone. Call [`wait`](Child::wait) to let it
/// finish instead.
///
/// The methods take `&self`: one fiber may wait for the child while another
/// signals it or reads its output.
///
/// A `Child` belongs to the thread (domain) that spawned it, whose event
/// loop watches it; it is not `Send`:
///
/// ```compile_fail
/// fn assert_send<T: Send>() {}
/// assert_send::<weft::process::Child>();
/// ```
pub struct Child {
    // Field order is drop order: the parent's pipe ends close before the
    // child is killed and reaped.
    stdin: Option<ChildStdin>,
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
    inner: Box<dyn ChildImpl>,
}

impl fmt::Debug for Child {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Child")
            .field("pid", &self.inner.pid())
            .field("stdin", &self.stdin.is_some())
            .field("stdout", &self.stdout.is_some())
            .field("stderr", &self.stderr.is_some())
            .finish()
    }
}

impl Child {
    /// Wraps what a backend spawned (backends and test doubles use this).
    pub fn from_spawned(s: Spawned) -> Child {
        Child {
            stdin: s.stdin.map(|inner| ChildStdin { inner }),
            stdout: s.stdout.map(|inner| ChildStdout { inner }),
            stderr: s.stderr.map(|inner| ChildStderr { inner }),
            inner: s.child,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.inner.pid()
    }

    /// Waits for the child to exit and returns how it did. A cancellation
    /// point: a cancelled wait leaves the child running (until the `Child`
    /// is dropped). Once the child has exited, every call returns the same
    /// status at once.
    ///
    /// `wait` does not close the child's stdin: if the child reads it to the
    /// end, drop the pipe first (see [`take_stdin`](Child::take_stdin)).
    pub fn wait(&self) -> Result<ExitStatus> {
        self.inner.wait()
    }

    /// The exit status if the child has exited, without waiting.
    pub fn try_wait(&self) -> Result<Option<ExitStatus>> {
        self.inner.try_wait()
    }

    /// Sends signal `sig` (such as [`SIGTERM`](super::SIGTERM)) to the
    /// child. Does nothing if the child has already exited and been reaped.
    pub fn signal(&self, sig: i32) -> Result<()> {
        self.inner.signal(sig)
    }

    /// Sends `SIGKILL`. [`wait`](Child::wait) then reports
    /// `Signaled(9)` (unless the child had already exited).
    pub fn kill(&self) -> Result<()> {
        self.inner.signal(SIGKILL)
    }

    /// The parent's end of the child's stdin, if it is a [`Stdio::Pipe`](super::Stdio::Pipe)
    /// (and was not taken).
    pub fn stdin(&self) -> Option<&ChildStdin> {
        self.stdin.as_ref()
    }

    /// The parent's end of the child's stdout pipe, if any.
    pub fn stdout(&self) -> Option<&ChildStdout> {
        self.stdout.as_ref()
    }

    /// The parent's end of the child's stderr pipe, if any.
    pub fn stderr(&self) -> Option<&ChildStderr> {
        self.stderr.as_ref()
    }

    /// Takes the stdin pipe, to close it (drop it) or move it to a fiber.
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.stdin.take()
    }

    /// Takes the stdout pipe.
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.stdout.take()
    }

    /// Takes the stderr pipe.
    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.stderr.take()
    }
}

/// The parent's (writing) end of a child's stdin pipe: a [`Sink`] and a
/// `std::io::Write`. Closed when dropped; the child then sees end of file.
pub struct ChildStdin {
    inner: Box<dyn PipeWriterImpl>,
}

impl fmt::Debug for ChildStdin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ChildStdin")
    }
}

impl ChildStdin {
    /// Closes the pipe, reporting any error that dropping it would ignore.
    pub fn close(self) -> Result<()> {
        self.inner.close()
    }
}

impl Sink for ChildStdin {
    fn write(&self, buf: &[u8]) -> Result<usize> {
        self.inner.write(buf)
    }
    fn write_vectored(&self, bufs: &[io::IoSlice<'_>]) -> Result<usize> {
        self.inner.write_vectored(bufs)
    }
    fn copy_from(&self, src: &dyn Source) -> Result<u64> {
        self.inner.copy_from(src)
    }
}

crate::std_io::std_write!(ChildStdin);

macro_rules! reader_pipe {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        pub struct $name {
            inner: Box<dyn PipeReaderImpl>,
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(stringify!($name))
            }
        }

        impl $name {
            /// Closes the pipe, reporting any error that dropping it would
            /// ignore. A child that writes more gets `EPIPE`/`SIGPIPE`.
            pub fn close(self) -> Result<()> {
                self.inner.close()
            }
        }

        impl Source for $name {
            fn read(&self, buf: &mut [u8]) -> Result<usize> {
                self.inner.read(buf)
            }
            fn read_vectored(&self, bufs: &mut [io::IoSliceMut<'_>]) -> Result<usize> {
                self.inner.read_vectored(bufs)
            }
            fn backing(&self) -> Option<Backing<'_>> {
                self.inner.backing()
            }
        }

        crate::std_io::std_read!($name);
    };
}

reader_pipe!(
    /// The parent's (reading) end of a child's stdout pipe: a [`Source`]
    /// and a `std::io::Read`. Closed when dropped.
    ChildStdout
);

reader_pipe!(
    /// The parent's (reading) end of a child's stderr pipe: a [`Source`]
    /// and a `std::io::Read`. Closed when dropped.
    ChildStderr
);
