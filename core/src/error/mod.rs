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
use std::io;
use std::sync::Arc;

mod convert;
mod kind;
mod report;
#[cfg(test)]
mod tests;

pub use kind::{ErrorKind, FsError, NetError, ProcessError};

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
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(self.source_error()?)
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
