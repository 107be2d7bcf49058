//! Poisoning, as [`Mutex`](super::Mutex) and [`RwLock`](super::RwLock)
//! share it: a writer that fails or panics leaves the data suspect, so the
//! lock refuses every later request with [`ErrorKind::Poisoned`].

use std::ops::DerefMut;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use crate::cancel;
use crate::error::{Error, ErrorKind, Result};
use crate::switch::panic_message;

/// The error a request for a `lock` (`"mutex"`, `"rwlock"`) poisoned by
/// `cause` fails with.
pub(super) fn poisoned(lock: &str, cause: &Error) -> Error {
    Error::with_source(ErrorKind::Poisoned, cause.clone())
        .context(format!("the {lock} was poisoned by a writer that failed"))
}

/// Runs `f` with the exclusive access of `guard` (inside
/// [`cancel::protect`] if `protect`). If `f` fails or panics, `poison`
/// consumes the guard, poisoning the lock with the failure instead of
/// releasing it; the failure is passed on (a panic resumes unwinding).
pub(super) fn run_poisoning<G: DerefMut, R>(
    mut guard: G,
    protect: bool,
    f: impl FnOnce(&mut G::Target) -> Result<R>,
    poison: impl FnOnce(G, Error),
) -> Result<R> {
    let r = catch_unwind(AssertUnwindSafe(|| {
        if protect {
            cancel::protect(|| f(&mut guard))
        } else {
            f(&mut guard)
        }
    }));
    match r {
        Ok(Ok(v)) => {
            drop(guard);
            Ok(v)
        }
        Ok(Err(e)) => {
            poison(guard, e.clone());
            Err(e)
        }
        Err(p) => {
            poison(guard, Error::msg(ErrorKind::Panic, panic_message(&p)));
            resume_unwind(p)
        }
    }
}
