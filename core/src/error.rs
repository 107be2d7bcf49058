//! weft's error type.
//!
//! Every fallible weft operation returns [`Result<T>`], whose error is
//! [`Error`]. An error carries three things:
//!
//! * a portable [`ErrorKind`] to match on (`Net(ConnectionRefused)`,
//!   `Fs(NotFound)`, `Timeout`, `Cancelled`, ...);
//! * optionally the underlying cause, usually the OS [`std::io::Error`];
//! * a stack of context lines, added as the error travels outwards, so the
//!   final message explains what the program was doing at each level.
//!
//! When several fibers of one switch fail, their errors are gathered with
//! [`Error::combine`] into [`ErrorKind::Multiple`]; cancellations that were
//! only a consequence of a real failure are dropped as noise.
//!
//! ```rust
//! use std::io;
//! use weft_core::{Error, ErrorKind, NetError, ResultExt};
//!
//! fn connect() -> weft_core::Result<()> {
//!     let refused: io::Result<()> = Err(io::ErrorKind::ConnectionRefused.into());
//!     refused.context("connecting to tcp:127.0.0.1:80")
//! }
//!
//! let err = connect().context("fetching http://example.com/").unwrap_err();
//! assert_eq!(err.kind(), &ErrorKind::Net(NetError::ConnectionRefused));
//! let contexts: Vec<&str> = err.contexts().collect();
//! assert_eq!(contexts, ["connecting to tcp:127.0.0.1:80", "fetching http://example.com/"]);
//! assert!(err.to_string().ends_with(", connecting to tcp:127.0.0.1:80, fetching http://example.com/"));
//! ```

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::sync::Arc;

/// A `Result` whose error type defaults to weft's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

type Source = Arc<dyn StdError + Send + Sync + 'static>;

/// weft's error: an [`ErrorKind`], an optional source and context lines.
///
/// The error is one pointer wide, so `Result<T>` stays small. A clone copies
/// the kind and context lines but shares the source.
///
/// ```rust
/// use weft_core::{Error, ErrorKind};
///
/// let err = Error::new(ErrorKind::Timeout).context("waiting for the reply");
/// assert!(err.is_timeout());
/// assert_eq!(err.to_string(), "timeout, waiting for the reply");
/// ```
#[derive(Clone)]
pub struct Error {
    inner: Box<Inner>,
}

#[derive(Clone)]
struct Inner {
    kind: ErrorKind,
    source: Option<Source>,
    /// Innermost first.
    context: Vec<Cow<'static, str>>,
    /// Only ever set when `kind` is `Cancelled`.
    reason: Option<Error>,
}

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

impl Error {
    /// An error of this kind, without source or context.
    ///
    /// ```rust
    /// use weft_core::{Error, ErrorKind};
    /// assert_eq!(Error::new(ErrorKind::Closed).to_string(), "closed");
    /// ```
    pub fn new(kind: ErrorKind) -> Error {
        let (source, context, reason) = (None, Vec::new(), None);
        let inner = Box::new(Inner {
            kind,
            source,
            context,
            reason,
        });
        Error { inner }
    }

    /// An error of this kind caused by `source`.
    ///
    /// ```rust
    /// use weft_core::{Error, ErrorKind, FsError};
    /// let cause = std::io::Error::other("mounted on /mnt");
    /// let err = Error::with_source(ErrorKind::Fs(FsError::Busy), cause);
    /// assert_eq!(err.to_string(), "fs: resource busy (mounted on /mnt)");
    /// ```
    pub fn with_source(kind: ErrorKind, source: impl StdError + Send + Sync + 'static) -> Error {
        let mut err = Error::new(kind);
        err.inner.source = Some(Arc::new(source));
        err
    }

    /// An error of this kind with one context line, e.g. the message of an
    /// [`InvalidInput`](ErrorKind::InvalidInput), `Deadlock` or `Panic` error.
    ///
    /// ```rust
    /// use weft_core::{Error, ErrorKind};
    /// let err = Error::msg(ErrorKind::InvalidInput, "max_fibers must be positive");
    /// assert_eq!(err.to_string(), "invalid input, max_fibers must be positive");
    /// ```
    pub fn msg(kind: ErrorKind, msg: impl Into<Cow<'static, str>>) -> Error {
        Error::new(kind).context(msg)
    }

    /// A cancellation caused by `reason` (for instance the failure of a sibling
    /// fiber, or [`ErrorKind::Timeout`]).
    ///
    /// ```rust
    /// use weft_core::{Error, ErrorKind};
    /// let err = Error::cancelled(Error::new(ErrorKind::Timeout));
    /// assert!(err.is_cancelled());
    /// assert!(err.cancel_reason().unwrap().is_timeout());
    /// assert_eq!(err.to_string(), "cancelled: timeout");
    /// ```
    pub fn cancelled(reason: Error) -> Error {
        let mut err = Error::new(ErrorKind::Cancelled);
        err.inner.reason = Some(reason);
        err
    }

    /// Why this error's fiber was cancelled, if it is a cancellation.
    ///
    /// ```rust
    /// use weft_core::{Error, ErrorKind};
    /// assert!(Error::new(ErrorKind::Closed).cancel_reason().is_none());
    /// ```
    pub fn cancel_reason(&self) -> Option<&Error> {
        self.inner.reason.as_ref()
    }

    /// The portable kind of this error.
    ///
    /// ```rust
    /// use weft_core::{Error, ErrorKind, NetError};
    /// let err = Error::from(NetError::BrokenPipe);
    /// assert!(matches!(err.kind(), ErrorKind::Net(NetError::BrokenPipe)));
    /// ```
    pub fn kind(&self) -> &ErrorKind {
        &self.inner.kind
    }

    /// Whether this is [`ErrorKind::Cancelled`].
    ///
    /// ```rust
    /// use weft_core::{Error, ErrorKind};
    /// assert!(Error::cancelled(Error::new(ErrorKind::Closed)).is_cancelled());
    /// assert!(!Error::new(ErrorKind::Closed).is_cancelled());
    /// ```
    pub fn is_cancelled(&self) -> bool {
        matches!(self.inner.kind, ErrorKind::Cancelled)
    }

    /// Whether this is [`ErrorKind::Timeout`] (an OS-level
    /// [`NetError::TimedOut`] is not).
    ///
    /// ```rust
    /// use weft_core::{Error, ErrorKind, NetError};
    /// assert!(Error::new(ErrorKind::Timeout).is_timeout());
    /// assert!(!Error::from(NetError::TimedOut).is_timeout());
    /// ```
    pub fn is_timeout(&self) -> bool {
        matches!(self.inner.kind, ErrorKind::Timeout)
    }

    /// Adds an outer context line saying what was being done when the error
    /// happened.
    ///
    /// ```rust
    /// use weft_core::{Error, ErrorKind};
    /// let err = Error::new(ErrorKind::Closed).context("reading header").context("serving /");
    /// assert_eq!(err.to_string(), "closed, reading header, serving /");
    /// ```
    pub fn context(mut self, ctx: impl Into<Cow<'static, str>>) -> Error {
        self.inner.context.push(ctx.into());
        self
    }

    /// The context lines, innermost first.
    ///
    /// ```rust
    /// use weft_core::{Error, ErrorKind};
    /// let err = Error::msg(ErrorKind::Panic, "boom").context("in worker 3");
    /// assert_eq!(err.contexts().collect::<Vec<_>>(), ["boom", "in worker 3"]);
    /// ```
    pub fn contexts(&self) -> impl Iterator<Item = &str> + '_ {
        self.inner.context.iter().map(|c| c.as_ref())
    }

    /// The underlying cause, if any (also returned by
    /// [`std::error::Error::source`]).
    ///
    /// ```rust
    /// use weft_core::Error;
    /// let err = Error::from(std::io::Error::from(std::io::ErrorKind::NotFound));
    /// assert!(err.source_error().unwrap().is::<std::io::Error>());
    /// ```
    pub fn source_error(&self) -> Option<&(dyn StdError + Send + Sync + 'static)> {
        self.inner.source.as_deref()
    }

    /// The OS error number, when the source is an [`io::Error`] that has one.
    ///
    /// ```rust
    /// use weft_core::Error;
    /// let err = Error::from(std::io::Error::from_raw_os_error(2));
    /// assert_eq!(err.raw_os_error(), Some(2));
    /// ```
    pub fn raw_os_error(&self) -> Option<i32> {
        self.source_error()?
            .downcast_ref::<io::Error>()?
            .raw_os_error()
    }

    /// Combines two failures, as [`Error::multiple`] does with `[self, other]`:
    /// nested `Multiple`s are flattened, order is kept, and a cancellation is
    /// dropped when a real failure is present (of two cancellations, the first
    /// is kept).
    ///
    /// ```rust
    /// use weft_core::{Error, ErrorKind};
    /// let failure = Error::new(ErrorKind::Closed);
    /// let noise = Error::cancelled(failure.clone());
    /// assert_eq!(noise.combine(failure).kind(), &ErrorKind::Closed);
    ///
    /// let both = Error::new(ErrorKind::Timeout).combine(Error::new(ErrorKind::Poisoned));
    /// assert_eq!(both.to_string(), "multiple errors: [timeout; poisoned]");
    /// ```
    pub fn combine(self, other: Error) -> Error {
        Error::multiple(vec![self, other])
    }

    /// Gathers failures, with the rules of [`Error::combine`]. A single
    /// remaining error is returned as itself; an empty list gives an
    /// [`InvalidInput`](ErrorKind::InvalidInput) error `"no errors"`.
    ///
    /// Context lines on a flattened `Multiple` are appended to each of its
    /// errors, so no context is lost.
    ///
    /// ```rust
    /// use weft_core::{Error, ErrorKind};
    /// let err = Error::multiple(vec![Error::new(ErrorKind::Timeout)]);
    /// assert!(err.is_timeout());
    /// assert_eq!(Error::multiple(vec![]).kind(), &ErrorKind::InvalidInput);
    /// ```
    pub fn multiple(errors: Vec<Error>) -> Error {
        let mut leaves = Vec::with_capacity(errors.len());
        for err in errors {
            err.flatten_into(&mut leaves);
        }
        let mut first_cancel = None;
        let mut real = Vec::with_capacity(leaves.len());
        for err in leaves {
            if !err.is_cancelled() {
                real.push(err);
            } else if first_cancel.is_none() {
                first_cancel = Some(err);
            }
        }
        match real.len() {
            0 => first_cancel.unwrap_or_else(|| Error::msg(ErrorKind::InvalidInput, "no errors")),
            1 => real.remove(0),
            _ => Error::new(ErrorKind::Multiple(real)),
        }
    }

    fn flatten_into(mut self, out: &mut Vec<Error>) {
        // A `Multiple` with a source of its own stays whole, to keep the source.
        if let (ErrorKind::Multiple(children), None) = (&mut self.inner.kind, &self.inner.source) {
            let outer = &self.inner.context;
            for mut child in std::mem::take(children) {
                child.inner.context.extend(outer.iter().cloned());
                child.flatten_into(out);
            }
        } else {
            out.push(self);
        }
    }

    /// The individual failures: the list of a `Multiple`, else just `self`.
    ///
    /// ```rust
    /// use weft_core::{Error, ErrorKind};
    /// let one = Error::new(ErrorKind::Closed);
    /// assert_eq!(one.errors().len(), 1);
    /// let two = one.combine(Error::new(ErrorKind::Timeout));
    /// assert!(two.errors()[1].is_timeout());
    /// ```
    pub fn errors(&self) -> &[Error] {
        match &self.inner.kind {
            ErrorKind::Multiple(errors) => errors,
            _ => std::slice::from_ref(self),
        }
    }

    /// The closest [`io::ErrorKind`], for converting into an [`io::Error`].
    fn io_kind(&self) -> io::ErrorKind {
        let portable = match &self.inner.kind {
            ErrorKind::Timeout => Some(io::ErrorKind::TimedOut),
            ErrorKind::Deadlock => Some(io::ErrorKind::Deadlock),
            ErrorKind::Net(NetError::InvalidAddress) | ErrorKind::Fs(FsError::InvalidPath) => {
                Some(io::ErrorKind::InvalidInput)
            }
            kind => IO_KINDS.iter().find(|(_, k)| k == kind).map(|(io, _)| *io),
        };
        let from_source = || Some(self.source_error()?.downcast_ref::<io::Error>()?.kind());
        portable
            .or_else(from_source)
            .unwrap_or(io::ErrorKind::Other)
    }
}

/// Portable `io::ErrorKind`s and their weft kinds; the first entry for a weft
/// kind is also used to convert back.
const IO_KINDS: &[(io::ErrorKind, ErrorKind)] = {
    use io::ErrorKind as K;
    use ErrorKind::{Fs, Net};
    &[
        (K::NotFound, Fs(FsError::NotFound)),
        (K::PermissionDenied, Fs(FsError::PermissionDenied)),
        (K::AlreadyExists, Fs(FsError::AlreadyExists)),
        (K::NotADirectory, Fs(FsError::NotADirectory)),
        (K::IsADirectory, Fs(FsError::IsADirectory)),
        (K::DirectoryNotEmpty, Fs(FsError::DirectoryNotEmpty)),
        (K::ReadOnlyFilesystem, Fs(FsError::ReadOnly)),
        (K::StorageFull, Fs(FsError::NoSpace)),
        (K::FileTooLarge, Fs(FsError::FileTooLarge)),
        (K::ResourceBusy, Fs(FsError::Busy)),
        (K::ExecutableFileBusy, Fs(FsError::Busy)),
        (K::CrossesDevices, Fs(FsError::CrossesDevices)),
        (K::ConnectionRefused, Net(NetError::ConnectionRefused)),
        (K::ConnectionReset, Net(NetError::ConnectionReset)),
        (K::ConnectionAborted, Net(NetError::ConnectionAborted)),
        (K::BrokenPipe, Net(NetError::BrokenPipe)),
        (K::NotConnected, Net(NetError::NotConnected)),
        (K::AddrInUse, Net(NetError::AddrInUse)),
        (K::AddrNotAvailable, Net(NetError::AddrNotAvailable)),
        (K::HostUnreachable, Net(NetError::HostUnreachable)),
        (K::NetworkUnreachable, Net(NetError::NetworkUnreachable)),
        (K::NetworkDown, Net(NetError::NetworkUnreachable)),
        (K::TimedOut, Net(NetError::TimedOut)),
        (K::InvalidInput, ErrorKind::InvalidInput),
        (K::UnexpectedEof, ErrorKind::EndOfFile),
    ]
};

/// Linux errnos that stable `io::ErrorKind` leaves uncategorized.
#[cfg(any(target_os = "linux", target_os = "android"))]
const ERRNOS: &[(i32, FsError)] = &[
    (23, FsError::TooManyOpenFiles), // ENFILE
    (24, FsError::TooManyOpenFiles), // EMFILE
    (36, FsError::InvalidPath),      // ENAMETOOLONG
    (40, FsError::TooManySymlinks),  // ELOOP
];
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const ERRNOS: &[(i32, FsError)] = &[];

/// One line: the kind (for a cancellation, `cancelled: ` and the reason),
/// the source in parentheses, then the context lines, innermost first, each
/// after a comma.
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_line(f, false)
    }
}

impl Error {
    /// Writes the one-line form. As the reason of a cancellation
    /// (`as_reason`), a cancellation drops its own `cancelled` word, so that
    /// a chain of cancellations reads `cancelled: timeout`, and a
    /// cancellation made with a message reads `cancelled: <message>`.
    fn write_line(&self, f: &mut fmt::Formatter<'_>, as_reason: bool) -> fmt::Result {
        let quiet = as_reason && self.is_cancelled();
        let mut empty = true;
        match &self.inner.reason {
            Some(reason) => {
                if !quiet {
                    f.write_str("cancelled: ")?;
                }
                reason.write_line(f, true)?;
                empty = false;
            }
            None if quiet => {}
            None => {
                write!(f, "{}", self.inner.kind)?;
                empty = false;
            }
        }
        if let Some(source) = &self.inner.source {
            match empty {
                true => write!(f, "{source}")?,
                false => write!(f, " ({source})")?,
            }
            empty = false;
        }
        for ctx in &self.inner.context {
            match empty {
                true => f.write_str(ctx)?,
                false => write!(f, ", {ctx}")?,
            }
            empty = false;
        }
        if empty {
            // A bare cancellation as a reason: say so rather than nothing.
            write!(f, "{}", self.inner.kind)?;
        }
        Ok(())
    }

    /// The kind line of the multi-line form: the kind, or for a
    /// cancellation `cancelled: ` and the one-line reason.
    fn write_kind(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner.reason {
            Some(reason) => {
                f.write_str("cancelled: ")?;
                reason.write_line(f, true)
            }
            None => write!(f, "{}", self.inner.kind),
        }
    }
}

/// Readable, for `fn main() -> weft::Result<()>` and `unwrap`: the outermost
/// context line (what the program was doing), then under `Caused by:` the
/// inner context lines, the kind, and the source chain, outermost first.
/// The alternate form (`{:#?}`) shows the fields instead.
///
/// ```rust
/// use weft_core::{Error, ErrorKind};
///
/// let err = Error::new(ErrorKind::Timeout)
///     .context("reading the reply")
///     .context("fetching /index.html");
/// assert_eq!(
///     format!("{err:?}"),
///     "fetching /index.html\n\
///      \n\
///      Caused by:\n    \
///      0: reading the reply\n    \
///      1: timeout"
/// );
/// assert!(format!("{err:#?}").starts_with("Error {\n    kind: Timeout,"));
/// ```
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            let mut d = f.debug_struct("Error");
            d.field("kind", &self.inner.kind);
            if let Some(reason) = &self.inner.reason {
                d.field("reason", reason);
            }
            d.field("source", &self.inner.source);
            d.field("context", &self.inner.context);
            return d.finish();
        }
        let mut contexts = self.inner.context.iter().rev();
        // The causes, outermost first: inner context lines, the kind, and
        // every error in the source chain.
        let mut causes: Vec<String> = Vec::new();
        match contexts.next() {
            Some(outer) => {
                f.write_str(outer)?;
                causes.extend(contexts.map(|c| c.to_string()));
                causes.push(KindLine(self).to_string());
            }
            None => self.write_kind(f)?,
        }
        let mut source = self.source_error().map(|s| s as &(dyn StdError + 'static));
        while let Some(s) = source {
            causes.push(s.to_string());
            source = s.source();
        }
        if causes.is_empty() {
            return Ok(());
        }
        f.write_str("\n\nCaused by:")?;
        let numbered = causes.len() > 1;
        for (i, cause) in causes.iter().enumerate() {
            match numbered {
                true => write!(f, "\n    {i}: {cause}")?,
                false => write!(f, "\n    {cause}")?,
            }
        }
        Ok(())
    }
}

/// Displays an error's kind line (see [`Error::write_kind`]).
struct KindLine<'a>(&'a Error);

impl fmt::Display for KindLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.write_kind(f)
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(self.source_error()?)
    }
}

/// Maps the OS error to a portable kind and keeps it as the source; an
/// `io::Error` that wraps a weft [`Error`] gives back that error unchanged.
impl From<io::Error> for Error {
    fn from(err: io::Error) -> Error {
        let err = match err.downcast::<Error>() {
            Ok(weft) => return weft,
            Err(err) => err,
        };
        let errno = err.raw_os_error();
        let kind = match IO_KINDS.iter().find(|(io, _)| *io == err.kind()) {
            Some((_, kind)) => kind.clone(),
            None => match ERRNOS.iter().find(|(n, _)| Some(*n) == errno) {
                Some((_, fs)) => ErrorKind::Fs(*fs),
                None => ErrorKind::Io,
            },
        };
        Error::with_source(kind, err)
    }
}

/// Wraps the error, with the closest [`io::ErrorKind`], so that converting
/// back with `Error::from` returns it with its context intact.
impl From<Error> for io::Error {
    fn from(err: Error) -> io::Error {
        io::Error::new(err.io_kind(), err)
    }
}

/// Same as [`Error::new`].
impl From<ErrorKind> for Error {
    fn from(kind: ErrorKind) -> Error {
        Error::new(kind)
    }
}

impl From<NetError> for Error {
    fn from(err: NetError) -> Error {
        Error::new(ErrorKind::Net(err))
    }
}

impl From<FsError> for Error {
    fn from(err: FsError) -> Error {
        Error::new(ErrorKind::Fs(err))
    }
}

impl From<ProcessError> for Error {
    fn from(err: ProcessError) -> Error {
        Error::new(ErrorKind::Process(err))
    }
}

/// Adds context to the error of any `Result` whose error converts into
/// [`Error`].
///
/// ```rust
/// use weft_core::{ErrorKind, FsError, ResultExt};
/// let res: std::io::Result<()> = Err(std::io::ErrorKind::NotFound.into());
/// let err = res.with_context(|| format!("opening {}", "/etc/weft.toml")).unwrap_err();
/// assert_eq!(err.kind(), &ErrorKind::Fs(FsError::NotFound));
/// assert_eq!(err.contexts().last(), Some("opening /etc/weft.toml"));
/// ```
pub trait ResultExt<T> {
    /// Converts the error and adds an outer context line (see
    /// [`Error::context`]).
    fn context(self, ctx: impl Into<Cow<'static, str>>) -> Result<T>;
    /// Like [`ResultExt::context`], building the line only on error.
    fn with_context<C: Into<Cow<'static, str>>>(self, f: impl FnOnce() -> C) -> Result<T>;
}

impl<T, E: Into<Error>> ResultExt<T> for std::result::Result<T, E> {
    fn context(self, ctx: impl Into<Cow<'static, str>>) -> Result<T> {
        self.map_err(|e| e.into().context(ctx))
    }

    fn with_context<C: Into<Cow<'static, str>>>(self, f: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|e| e.into().context(f()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::size_of;
    use ErrorKind::*;

    const _: () = {
        const fn assert_thread_safe<T: Send + Sync + 'static>() {}
        assert_thread_safe::<Error>();
        assert_thread_safe::<ErrorKind>();
    };

    fn kinds(err: &Error) -> Vec<ErrorKind> {
        err.errors().iter().map(|e| e.kind().clone()).collect()
    }

    #[test]
    fn one_pointer_wide() {
        assert_eq!(size_of::<Error>(), size_of::<usize>());
        assert_eq!(size_of::<Option<Error>>(), size_of::<usize>());
        assert_eq!(size_of::<Result<()>>(), size_of::<usize>());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn display_with_source_and_contexts() {
        let err = Error::with_source(
            Net(NetError::ConnectionRefused),
            io::Error::from_raw_os_error(111),
        )
        .context("connecting to tcp:127.0.0.1:80")
        .context("fetching http://example.com/");
        assert_eq!(
            err.to_string(),
            "net: connection refused (Connection refused (os error 111)), \
             connecting to tcp:127.0.0.1:80, fetching http://example.com/"
        );
    }

    #[test]
    fn display_of_every_kind() {
        let cases: [(Error, &str); 15] = [
            (Cancelled.into(), "cancelled"),
            (Timeout.into(), "timeout"),
            (Deadlock.into(), "deadlock"),
            (Closed.into(), "closed"),
            (Poisoned.into(), "poisoned"),
            (InvalidInput.into(), "invalid input"),
            (
                NetError::ResolveFailed.into(),
                "net: name resolution failed",
            ),
            (NetError::AddrInUse.into(), "net: address in use"),
            (FsError::NotFound.into(), "fs: not found"),
            (FsError::ReadOnly.into(), "fs: read-only file system"),
            (
                ProcessError::Exited(3).into(),
                "process: exited with code 3",
            ),
            (
                ProcessError::Signaled(9).into(),
                "process: killed by signal 9",
            ),
            (ProcessError::SpawnFailed.into(), "process: could not spawn"),
            (Io.into(), "io error"),
            (Panic.into(), "panic"),
        ];
        for (err, text) in cases {
            assert_eq!(err.to_string(), text);
        }
        let deadlock = Error::msg(Deadlock, "fiber 2 waits on promise 7");
        assert_eq!(deadlock.to_string(), "deadlock, fiber 2 waits on promise 7");
        let reason = Error::msg(Panic, "boom").context("in worker");
        let cancelled = Error::cancelled(reason).context("reading");
        assert_eq!(
            cancelled.to_string(),
            "cancelled: panic, boom, in worker, reading"
        );
        let multi = Error::from(FsError::Busy).combine(Error::msg(Panic, "x"));
        let multi = multi.context("in switch");
        assert_eq!(
            multi.to_string(),
            "multiple errors: [fs: resource busy; panic, x], in switch"
        );
    }

    #[test]
    fn debug_shows_fields() {
        // The alternate form keeps the structure, for debugging.
        let err = Error::cancelled(Error::new(Timeout)).context("ctx");
        let text = format!("{err:#?}");
        assert!(
            text.starts_with(
                "Error {\n    kind: Cancelled,\n    reason: Error {\n        kind: Timeout,"
            ),
            "{text}"
        );
        assert!(
            text.ends_with("    source: None,\n    context: [\n        \"ctx\",\n    ],\n}"),
            "{text}"
        );
    }

    #[test]
    fn debug_reads_like_a_report() {
        let os = || io::Error::new(io::ErrorKind::ConnectionRefused, "refused by peer");
        let refused = || Error::with_source(Net(NetError::ConnectionRefused), os());
        let err = refused()
            .context("connecting to tcp:127.0.0.1:1")
            .context("fetching http://example.com/");
        assert_eq!(
            format!("{err:?}"),
            "fetching http://example.com/\n\nCaused by:\n    \
             0: connecting to tcp:127.0.0.1:1\n    \
             1: net: connection refused\n    \
             2: refused by peer"
        );
        // One cause is not numbered; no cause, no "Caused by".
        assert_eq!(format!("{:?}", Error::new(Closed)), "closed");
        assert_eq!(
            format!("{:?}", refused()),
            "net: connection refused\n\nCaused by:\n    refused by peer"
        );
        // The whole source chain is listed, outermost first.
        let inner = Error::with_source(Closed, io::Error::other("disk gone"));
        let outer = Error::with_source(Io, inner);
        assert_eq!(
            format!("{outer:?}"),
            "io error\n\nCaused by:\n    0: closed (disk gone)\n    1: disk gone"
        );
        let msg = Error::msg(InvalidInput, "max_fibers must be positive");
        assert_eq!(
            format!("{msg:?}"),
            "max_fibers must be positive\n\nCaused by:\n    invalid input"
        );
        // A cancellation's kind line carries its reason.
        let cancelled = Error::cancelled(Error::msg(Panic, "boom")).context("reading");
        assert_eq!(
            format!("{cancelled:?}"),
            "reading\n\nCaused by:\n    cancelled: panic, boom"
        );
        // Nested in other Debug output (`unwrap`, `assert_eq!` on a Result).
        let res: Result<()> = Err(Error::new(Timeout));
        assert_eq!(format!("{res:?}"), "Err(timeout)");
    }

    #[test]
    fn cancellation_messages_do_not_repeat_cancelled() {
        let first = Error::msg(Cancelled, "another fiber finished first");
        assert_eq!(
            Error::cancelled(first.clone()).to_string(),
            "cancelled: another fiber finished first"
        );
        // A chain of cancellations names the cause once.
        let chain = Error::cancelled(Error::cancelled(Error::new(Timeout)).context("inner"));
        assert_eq!(chain.to_string(), "cancelled: timeout, inner");
        assert_eq!(
            Error::cancelled(Error::cancelled(first)).to_string(),
            "cancelled: another fiber finished first"
        );
        // A bare cancellation as the reason still says something.
        let bare = Error::cancelled(Error::new(Cancelled));
        assert_eq!(bare.to_string(), "cancelled: cancelled");
        // A cancellation without reason keeps its kind word.
        assert_eq!(
            Error::msg(Cancelled, "stopped").to_string(),
            "cancelled, stopped"
        );
        // Other reasons are unchanged.
        let io = Error::with_source(Io, io::Error::other("disk"));
        assert_eq!(
            Error::cancelled(io).context("c").to_string(),
            "cancelled: io error (disk), c"
        );
    }

    #[test]
    fn contexts_innermost_first() {
        let err = Error::msg(InvalidInput, "a")
            .context(String::from("b"))
            .context("c");
        assert_eq!(err.contexts().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(Error::new(Closed).contexts().count(), 0);
    }

    #[test]
    fn kind_equality_ignores_payloads() {
        let a = Error::cancelled(Error::new(Timeout));
        let b = Error::cancelled(Error::new(Closed));
        assert_eq!(a.kind(), b.kind());
        assert_ne!(Net(NetError::TimedOut), Timeout);
        assert_ne!(Fs(FsError::Busy), Fs(FsError::NoSpace));
        let m1 = Error::new(Closed).combine(Error::msg(Panic, "1"));
        let m2 = Error::new(Closed).combine(Error::msg(Panic, "2"));
        let m3 = Error::new(Panic).combine(Error::new(Closed));
        assert_eq!(m1.kind(), m2.kind());
        assert_ne!(m1.kind(), m3.kind());
    }

    #[test]
    fn combine_flattens_and_keeps_order() {
        let ab = Error::new(Timeout).combine(Error::new(Closed));
        let cd = Error::new(Poisoned).combine(Error::new(Panic));
        let all = ab.combine(Error::new(Io)).combine(cd);
        assert_eq!(kinds(&all), [Timeout, Closed, Io, Poisoned, Panic]);
        assert!(all
            .errors()
            .iter()
            .all(|e| !matches!(e.kind(), Multiple(_))));
    }

    #[test]
    fn combine_moves_multiple_context_onto_members() {
        let inner = Error::msg(Panic, "p")
            .combine(Error::new(Closed))
            .context("in switch A");
        let all = Error::new(Timeout).combine(inner);
        let ctx: Vec<Vec<&str>> = all
            .errors()
            .iter()
            .map(|e| e.contexts().collect())
            .collect();
        assert_eq!(ctx, [vec![], vec!["p", "in switch A"], vec!["in switch A"]]);
    }

    #[test]
    fn combine_drops_cancellations_next_to_failures() {
        let fail = || Error::new(Closed);
        let cancel = |k| Error::cancelled(Error::new(k));
        assert_eq!(cancel(Timeout).combine(fail()).kind(), &Closed);
        assert_eq!(fail().combine(cancel(Timeout)).kind(), &Closed);
        let two = cancel(Timeout).combine(cancel(Panic));
        assert!(two.cancel_reason().unwrap().is_timeout());
        let mixed = Error::multiple(vec![
            cancel(Io),
            fail(),
            cancel(Io),
            Error::new(Timeout).combine(cancel(Io)),
        ]);
        assert_eq!(kinds(&mixed), [Closed, Timeout]);
    }

    #[test]
    fn multiple_edge_cases() {
        let single = Error::multiple(vec![Error::new(Poisoned)]);
        assert_eq!(single.kind(), &Poisoned);
        assert_eq!(
            Error::multiple(vec![]).to_string(),
            "invalid input, no errors"
        );
        let cancels = Error::multiple(vec![
            Error::cancelled(Error::new(Closed)),
            Error::cancelled(Error::new(Timeout)),
        ]);
        assert_eq!(cancels.cancel_reason().unwrap().kind(), &Closed);
    }

    #[test]
    fn errors_of_a_single_error_is_itself() {
        let err = Error::new(Closed);
        assert!(std::ptr::eq(&err.errors()[0], &err));
    }

    #[test]
    fn clone_shares_the_source() {
        let err = Error::from(io::Error::from(io::ErrorKind::NotFound)).context("x");
        let copy = err.clone().context("y");
        let (a, b) = (err.source_error().unwrap(), copy.source_error().unwrap());
        assert!(std::ptr::addr_eq(a, b));
        assert_eq!(err.contexts().count(), 1);
        assert_eq!(copy.contexts().count(), 2);
    }

    #[test]
    fn std_source_is_the_source() {
        let err = Error::from(io::Error::from(io::ErrorKind::BrokenPipe));
        let source = StdError::source(&err).unwrap();
        assert_eq!(
            source.downcast_ref::<io::Error>().unwrap().kind(),
            io::ErrorKind::BrokenPipe
        );
        assert!(StdError::source(&Error::new(Closed)).is_none());
    }

    #[test]
    fn io_kinds_map_to_weft_kinds() {
        use io::ErrorKind as K;
        let cases = [
            (K::NotFound, Fs(FsError::NotFound)),
            (K::PermissionDenied, Fs(FsError::PermissionDenied)),
            (K::AlreadyExists, Fs(FsError::AlreadyExists)),
            (K::DirectoryNotEmpty, Fs(FsError::DirectoryNotEmpty)),
            (K::StorageFull, Fs(FsError::NoSpace)),
            (K::ConnectionReset, Net(NetError::ConnectionReset)),
            (K::AddrInUse, Net(NetError::AddrInUse)),
            (K::TimedOut, Net(NetError::TimedOut)),
            (K::InvalidInput, InvalidInput),
            (K::UnexpectedEof, EndOfFile),
            (K::Interrupted, Io),
            (K::Other, Io),
        ];
        for (io_kind, kind) in cases {
            let err = Error::from(io::Error::new(io_kind, "oops"));
            assert_eq!(err.kind(), &kind, "{io_kind:?}");
            assert_eq!(err.raw_os_error(), None);
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn errno_mapping() {
        let cases = [
            (2, Fs(FsError::NotFound)),
            (5, Io),
            (18, Fs(FsError::CrossesDevices)),
            (23, Fs(FsError::TooManyOpenFiles)),
            (24, Fs(FsError::TooManyOpenFiles)),
            (36, Fs(FsError::InvalidPath)),
            (40, Fs(FsError::TooManySymlinks)),
            (111, Net(NetError::ConnectionRefused)),
            (113, Net(NetError::HostUnreachable)),
        ];
        for (errno, kind) in cases {
            let err = Error::from(io::Error::from_raw_os_error(errno));
            assert_eq!(err.kind(), &kind, "errno {errno}");
            assert_eq!(err.raw_os_error(), Some(errno));
        }
    }

    #[test]
    fn weft_to_io_kinds() {
        use io::ErrorKind as K;
        let cases = [
            (Error::new(Timeout), K::TimedOut),
            (Error::new(EndOfFile), K::UnexpectedEof),
            (Error::cancelled(Error::new(Timeout)), K::Other),
            (Error::from(FsError::ReadOnly), K::ReadOnlyFilesystem),
            (Error::from(NetError::InvalidAddress), K::InvalidInput),
            (Error::from(ProcessError::Exited(1)), K::Other),
            (Error::new(Io), K::Other),
        ];
        for (err, kind) in cases {
            assert_eq!(io::Error::from(err).kind(), kind);
        }
        // Kinds without a portable io kind fall back to the source's kind.
        let os = io::Error::from_raw_os_error(24);
        let os_kind = os.kind();
        assert_eq!(io::Error::from(Error::from(os)).kind(), os_kind);
    }

    #[test]
    fn io_round_trip_gives_back_the_same_error() {
        let start = io::Error::from_raw_os_error(2);
        let weft = Error::from(start).context("opening /nope");
        let text = weft.to_string();
        let as_io = io::Error::from(weft.clone());
        assert_eq!(as_io.kind(), io::ErrorKind::NotFound);
        let back = Error::from(as_io);
        assert_eq!(back.to_string(), text);
        assert_eq!(back.raw_os_error(), Some(2));
        let (a, b) = (weft.source_error().unwrap(), back.source_error().unwrap());
        assert!(std::ptr::addr_eq(a, b));
        let wrapped = io::Error::other(Error::msg(Panic, "p"));
        assert_eq!(Error::from(wrapped).to_string(), "panic, p");
    }

    #[test]
    fn result_ext_adds_context_lazily() {
        let res: io::Result<u8> = Err(io::ErrorKind::ConnectionAborted.into());
        let err = res
            .context("inner")
            .with_context(|| "outer".to_owned())
            .unwrap_err();
        assert_eq!(err.kind(), &Net(NetError::ConnectionAborted));
        assert_eq!(err.contexts().collect::<Vec<_>>(), ["inner", "outer"]);
        let ok: Result<u8> = Ok(1);
        let ok = ok.with_context(|| -> &'static str { panic!("evaluated on Ok") });
        assert_eq!(ok.unwrap(), 1);
        let weft: Result<()> = Err(NetError::NotConnected.into());
        assert_eq!(
            weft.context("c").unwrap_err().to_string(),
            "net: not connected, c"
        );
    }
}
