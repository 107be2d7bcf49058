//! How an [`Error`] reads: the one-line `Display` (kind, source, context
//! lines) and the multi-line `Debug` report with its `Caused by:` chain.

use std::error::Error as StdError;
use std::fmt;

use super::Error;

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
