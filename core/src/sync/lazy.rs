//! Lazy values: computed once, on first use, by whichever fiber needs it first.
//!
//! [`Lazy::force`] runs the initialisation function the first time it is
//! called; fibers (on any thread) that force the value while it is being
//! computed wait for the result instead of computing it again. The result is
//! kept, so later calls return at once. If the function fails, the error is
//! kept too and every forcer gets a copy of it — the function is not retried
//! (with one exception, below).
//!
//! What happens when the computing fiber is *cancelled* is chosen with
//! [`LazyCancel`], as in Eio's `Lazy.from_fun ~cancel`:
//!
//! * [`Restart`](LazyCancel::Restart): the cancelled fiber gives up, and the
//!   next fiber that forces (or is already waiting) runs the function again;
//! * [`Record`](LazyCancel::Record): the cancellation is kept as the result,
//!   so every forcer gets `Err(Cancelled)`;
//! * [`Protect`](LazyCancel::Protect): the function runs inside
//!   [`cancel::protect`], so it finishes and its result is kept.
//!
//! ```
//! use weft::{fiber, sync::{Lazy, LazyCancel}, traceln};
//!
//! let (result, trace) = weft::mock::run_traced(|_env| {
//!     let v = Lazy::new(LazyCancel::Restart, || {
//!         traceln!("calculating...");
//!         fiber::yield_now()?;
//!         Ok(42)
//!     });
//!     fiber::both(
//!         || { traceln!("a: {}", v.force()?); Ok(()) },
//!         || { traceln!("b: {}", v.force()?); Ok(()) },
//!     )
//! });
//! result.unwrap();
//! assert_eq!(trace, ["calculating...", "a: 42", "b: 42"]);
//! ```
//!
//! A `Lazy` is shared between threads when its value is, and when its
//! function can be called from any of them:
//!
//! ```
//! fn is_send_sync<T: Send + Sync>() {}
//! is_send_sync::<weft::sync::Lazy<u32, fn() -> weft::Result<u32>>>();
//! ```
//!
//! ```compile_fail
//! fn is_sync<T: Sync>() {}
//! is_sync::<weft::sync::Lazy<std::rc::Rc<u32>, fn() -> weft::Result<std::rc::Rc<u32>>>>();
//! ```

use std::collections::VecDeque;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

use crate::backend::{suspend_with_cancel, Resumer};
use crate::cancel;
use crate::error::{Error, ErrorKind, Result};
use crate::fiber;
use crate::switch::panic_message;

/// What a [`Lazy`] does when the fiber computing it is cancelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LazyCancel {
    /// The computation is abandoned and the next forcer starts it again.
    Restart,
    /// The cancellation becomes the value's (failed) result, for good.
    Record,
    /// The computation runs protected from cancellation.
    Protect,
}

struct State {
    /// A fiber is running the function now.
    running: bool,
    /// Fibers waiting for it to finish, oldest first.
    waiters: VecDeque<Resumer<()>>,
}

/// A value computed on first use, once, by the first fiber that forces it;
/// [`LazyCancel`] says what happens if that fiber is cancelled.
pub struct Lazy<T, F = fn() -> Result<T>> {
    value: OnceLock<Result<T>>,
    state: std::sync::Mutex<State>,
    init: F,
    cancel: LazyCancel,
}

impl<T, F: Fn() -> Result<T>> Lazy<T, F> {
    /// A lazy value computed by `init` on first use, handling cancellation
    /// of the computing fiber as `cancel` says.
    ///
    /// `init` is a `Fn` because with [`LazyCancel::Restart`] it may run more
    /// than once (never concurrently); in the other modes it runs once.
    pub const fn new(cancel: LazyCancel, init: F) -> Lazy<T, F> {
        Lazy {
            value: OnceLock::new(),
            state: std::sync::Mutex::new(State {
                running: false,
                waiters: VecDeque::new(),
            }),
            init,
            cancel,
        }
    }
}

impl<T> Lazy<T> {
    /// A lazy value that is already computed.
    pub fn from_value(value: T) -> Lazy<T> {
        let cell = OnceLock::new();
        let _ = cell.set(Ok(value));
        Lazy {
            value: cell,
            state: std::sync::Mutex::new(State {
                running: false,
                waiters: VecDeque::new(),
            }),
            init: || unreachable!("an already-computed Lazy never runs its function"),
            cancel: LazyCancel::Record,
        }
    }
}

impl<T, F> Lazy<T, F> {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The critical sections cannot panic half-way.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The result, if it has been computed (never suspends).
    pub fn get(&self) -> Option<&Result<T>> {
        self.value.get()
    }

    /// True once the function has finished (successfully or not).
    pub fn is_forced(&self) -> bool {
        self.value.get().is_some()
    }

    /// Marks the computation finished (or abandoned) and wakes the waiters.
    fn finish(&self) {
        let waiters = {
            let mut st = self.state();
            st.running = false;
            std::mem::take(&mut st.waiters)
        };
        for w in waiters {
            let _ = w.resume(());
        }
    }

    /// Waits while another fiber runs the function. Returns at once if it
    /// is no longer running.
    fn wait_running(&self) -> Result<()> {
        suspend_with_cancel(
            "lazy value",
            |r| {
                let mut st = self.state();
                if st.running {
                    st.waiters.push_back(r);
                } else {
                    drop(st);
                    let _ = r.resume(());
                }
            },
            |r, reason| {
                let mut st = self.state();
                if let Some(i) = st.waiters.iter().position(|w| w.same_wait(r)) {
                    let _ = st.waiters.remove(i);
                    drop(st);
                    let _ = r.fail(Error::cancelled(reason.clone()));
                }
            },
        )
    }
}

impl<T, F: Fn() -> Result<T>> Lazy<T, F> {
    /// The value, computing it first if this is the first call.
    ///
    /// If another fiber is computing it, waits for that (a cancellation
    /// point). If the function failed, returns a copy of its error, now and
    /// on every later call. If the function panics, the panic is recorded
    /// as an [`ErrorKind::Panic`] error for the other forcers and re-raised
    /// in the fiber that ran it.
    pub fn force(&self) -> Result<&T> {
        loop {
            if let Some(r) = self.value.get() {
                return r.as_ref().map_err(Clone::clone);
            }
            let run = {
                let mut st = self.state();
                if self.value.get().is_some() {
                    continue;
                }
                if st.running {
                    false
                } else {
                    st.running = true;
                    true
                }
            };
            if run {
                self.run_init()?;
            } else {
                self.wait_running()?;
            }
        }
    }

    /// Runs the function as the computing fiber. Returns `Err` only when
    /// the computation was abandoned (restart mode); otherwise the result
    /// is stored and `force` picks it up.
    fn run_init(&self) -> Result<()> {
        let r = catch_unwind(AssertUnwindSafe(|| match self.cancel {
            LazyCancel::Protect => cancel::protect(&self.init),
            LazyCancel::Restart | LazyCancel::Record => (self.init)(),
        }));
        let r = match r {
            Ok(r) => r,
            Err(p) => {
                let _ = self
                    .value
                    .set(Err(Error::msg(ErrorKind::Panic, panic_message(&p))));
                self.finish();
                resume_unwind(p);
            }
        };
        if let Err(e) = &r {
            // Restart only if the cancellation is this fiber's own, not a
            // `Cancelled` error the function got from elsewhere.
            if e.is_cancelled() && self.cancel == LazyCancel::Restart && fiber::check().is_err() {
                let e = e.clone();
                self.finish();
                return Err(e);
            }
        }
        let _ = self.value.set(r);
        self.finish();
        Ok(())
    }
}

impl<T: std::fmt::Debug, F> std::fmt::Debug for Lazy<T, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Lazy");
        match self.value.get() {
            Some(v) => d.field("value", v),
            None => d.field("running", &self.state().running),
        };
        d.field("cancel", &self.cancel).finish()
    }
}
