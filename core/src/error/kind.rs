//! [`ErrorKind`], what went wrong independently of the platform, and the
//! per-area kinds it wraps: [`NetError`], [`FsError`], [`ProcessError`].

use std::error::Error as StdError;
use std::fmt;

use super::Error;

/// What went wrong, independently of the platform.
///
/// Equality compares kinds only: two `Cancelled` kinds are equal whatever
/// their reasons, and two `Multiple` kinds are equal when their errors have
/// equal kinds, in the same order.
#[non_exhaustive]
#[derive(Clone, Debug)]
pub enum ErrorKind {
    /// The operation was cancelled; [`Error::cancel_reason`] says why.
    Cancelled,
    /// A `with_timeout` deadline passed.
    Timeout,
    /// No fiber can make progress (mock backend); details are in the context.
    Deadlock,
    /// The resource was closed or the other end is gone (an abandoned
    /// promise, a closed stream, ...).
    Closed,
    /// A flow ended before the data a reader needed.
    EndOfFile,
    /// Input did not parse; the context says what was expected and at which
    /// offset.
    Parse,
    /// A buffered reader would have had to grow past its `max_size`.
    BufferLimitExceeded,
    /// A mutex whose holder failed while writing is poisoned.
    Poisoned,
    /// An argument was invalid; the message is in the context.
    InvalidInput,
    /// A network failure.
    Net(NetError),
    /// A file-system failure.
    Fs(FsError),
    /// A child process failed.
    Process(ProcessError),
    /// An OS error that fits no portable kind; the source holds it.
    Io,
    /// A panic that had to become a value; the message is in the context.
    Panic,
    /// Several failures from one switch, in the order they happened.
    Multiple(Vec<Error>),
}

/// Portable network failures.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    /// The peer refused the connection.
    #[error("connection refused")]
    ConnectionRefused,
    /// The peer reset the connection.
    #[error("connection reset")]
    ConnectionReset,
    /// The connection was aborted locally.
    #[error("connection aborted")]
    ConnectionAborted,
    /// Writing to a connection whose reading end is closed.
    #[error("broken pipe")]
    BrokenPipe,
    /// The socket is not connected.
    #[error("not connected")]
    NotConnected,
    /// The address is already in use.
    #[error("address in use")]
    AddrInUse,
    /// The address is not available on this machine.
    #[error("address not available")]
    AddrNotAvailable,
    /// The host cannot be reached.
    #[error("host unreachable")]
    HostUnreachable,
    /// The network cannot be reached.
    #[error("network unreachable")]
    NetworkUnreachable,
    /// The OS gave up waiting for the peer.
    #[error("timed out")]
    TimedOut,
    /// The address could not be parsed or used.
    #[error("invalid address")]
    InvalidAddress,
    /// Name resolution failed.
    #[error("name resolution failed")]
    ResolveFailed,
}

/// Portable file-system failures.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FsError {
    /// No such file or directory.
    #[error("not found")]
    NotFound,
    /// The operation is not permitted.
    #[error("permission denied")]
    PermissionDenied,
    /// The entry already exists.
    #[error("already exists")]
    AlreadyExists,
    /// A path component is not a directory.
    #[error("not a directory")]
    NotADirectory,
    /// A directory was given where a file was expected.
    #[error("is a directory")]
    IsADirectory,
    /// The directory is not empty.
    #[error("directory not empty")]
    DirectoryNotEmpty,
    /// The file system is read-only.
    #[error("read-only file system")]
    ReadOnly,
    /// No space is left on the device.
    #[error("no space left")]
    NoSpace,
    /// The process or system ran out of file descriptors.
    #[error("too many open files")]
    TooManyOpenFiles,
    /// The path is invalid (too long, bad characters, ...).
    #[error("invalid path")]
    InvalidPath,
    /// Too many levels of symbolic links.
    #[error("too many symbolic links")]
    TooManySymlinks,
    /// The operation would cross devices.
    #[error("crosses devices")]
    CrossesDevices,
    /// The file is too large.
    #[error("file too large")]
    FileTooLarge,
    /// The resource is busy.
    #[error("resource busy")]
    Busy,
}

/// Child-process failures.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcessError {
    /// The process exited with this non-zero code.
    Exited(i32),
    /// The process was killed by this signal.
    Signaled(i32),
    /// The process could not be started.
    SpawnFailed,
}

impl fmt::Display for ProcessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProcessError::Exited(code) => write!(f, "exited with code {code}"),
            ProcessError::Signaled(sig) => write!(f, "killed by signal {sig}"),
            ProcessError::SpawnFailed => f.write_str("could not spawn"),
        }
    }
}

impl StdError for ProcessError {}

impl PartialEq for ErrorKind {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (ErrorKind::Net(a), ErrorKind::Net(b)) => a == b,
            (ErrorKind::Fs(a), ErrorKind::Fs(b)) => a == b,
            (ErrorKind::Process(a), ErrorKind::Process(b)) => a == b,
            (ErrorKind::Multiple(a), ErrorKind::Multiple(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.kind() == y.kind())
            }
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }
}

impl Eq for ErrorKind {}

/// The kind alone, as it starts an [`Error`]'s message: `"timeout"`,
/// `"net: connection refused"`, `"multiple errors: [...]"`, ...
impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Cancelled => f.write_str("cancelled"),
            ErrorKind::Timeout => f.write_str("timeout"),
            ErrorKind::Deadlock => f.write_str("deadlock"),
            ErrorKind::Closed => f.write_str("closed"),
            ErrorKind::EndOfFile => f.write_str("end of file"),
            ErrorKind::Parse => f.write_str("parse error"),
            ErrorKind::BufferLimitExceeded => f.write_str("buffer limit exceeded"),
            ErrorKind::Poisoned => f.write_str("poisoned"),
            ErrorKind::InvalidInput => f.write_str("invalid input"),
            ErrorKind::Net(e) => write!(f, "net: {e}"),
            ErrorKind::Fs(e) => write!(f, "fs: {e}"),
            ErrorKind::Process(e) => write!(f, "process: {e}"),
            ErrorKind::Io => f.write_str("io error"),
            ErrorKind::Panic => f.write_str("panic"),
            ErrorKind::Multiple(errors) => {
                f.write_str("multiple errors: [")?;
                for (i, e) in errors.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{e}")?;
                }
                f.write_str("]")
            }
        }
    }
}
