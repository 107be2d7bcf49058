//! Detached fibers: fibers that belong to no switch, for backends that
//! simulate activity of the outside world with fibers of their own (the
//! mock backend's child processes are handlers running as fibers).
//!
//! A detached fiber is owned by a handle, not by a switch: whoever holds
//! the [`DetachedFiber`] decides when to cancel it, as the owner of a real
//! process decides when to kill it. The run still never loses one: when
//! the main fiber finishes, every detached fiber still running is cancelled
//! and the run waits for it to return before it ends, so its clean-up
//! (closing pipes, resolving promises) always happens inside the run.
//!
//! Each detached fiber has its own cancellation context, below the run's
//! root context: a deadlock (which cancels the root) reaches it, and
//! cancelling one reaches no other fiber.

use std::borrow::Cow;
use std::cell::Cell;
use std::rc::Rc;

use crate::cancel::CancelCtx;
use crate::error::{Error, Result};
use crate::local::Locals;
use crate::sched::{self, SpawnOpts};

/// The handle of a fiber started by [`spawn_detached`]: a fiber that
/// belongs to no switch. Dropping the handle does not stop the fiber (use
/// [`cancel`](DetachedFiber::cancel) for that), but the run never loses
/// one: when the main fiber finishes, every detached fiber still running is
/// cancelled, and the run waits for it to return before it ends.
///
/// Each has its own cancellation context below the run's root: a deadlock
/// reaches it, and cancelling one reaches no other fiber.
pub struct DetachedFiber {
    ctx: Rc<CancelCtx>,
    finished: Rc<Cell<bool>>,
}

impl std::fmt::Debug for DetachedFiber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DetachedFiber")
            .field("finished", &self.finished.get())
            .field("cancelled", &self.ctx.is_cancelled())
            .finish()
    }
}

impl DetachedFiber {
    /// Cancels the fiber with `reason`: its current or next suspension
    /// point returns `Err(Cancelled)`. Does nothing once it has finished,
    /// if it was already cancelled, or outside the run that started it.
    pub fn cancel(&self, reason: Error) {
        if self.finished.get() {
            return;
        }
        if let Ok(s) = sched::current() {
            self.ctx.cancel(s, reason);
        }
    }

    /// Whether the fiber's body has returned.
    pub fn is_finished(&self) -> bool {
        self.finished.get()
    }
}

/// Starts a fiber that belongs to no switch, running `body`. It is queued
/// behind the fibers that are ready now: `spawn_detached` does not switch
/// away from the caller. Its lifetime: see [`DetachedFiber`].
///
/// A panic in `body` is caught and reported on standard error; it does not
/// fail the run (catch it in `body` to do better).
///
/// ```
/// use std::cell::Cell;
/// use std::rc::Rc;
/// use weft::backend::spawn_detached;
///
/// weft::mock::run(|env| {
///     let clock = env.mono_clock();
///     let ended = Rc::new(Cell::new(None));
///     let seen = ended.clone();
///     let fiber = spawn_detached("ticker", move || {
///         let r = clock.sleep(std::time::Duration::from_secs(60));
///         seen.set(Some(r.is_err()));
///     })?;
///     weft::fiber::yield_now()?; // the ticker starts and sleeps
///     fiber.cancel(weft::Error::msg(weft::ErrorKind::Cancelled, "enough"));
///     weft::fiber::yield_now()?;
///     assert!(fiber.is_finished());
///     assert_eq!(ended.get(), Some(true), "its sleep was cancelled");
///     Ok(())
/// })
/// .unwrap();
/// ```
///
/// # Errors
///
/// `InvalidInput` outside a runtime; the error of allocating a stack.
pub fn spawn_detached(
    name: impl Into<Cow<'static, str>>,
    body: impl FnOnce() + 'static,
) -> Result<DetachedFiber> {
    let sched = sched::current()?;
    let ctx = CancelCtx::child(&sched.detached_ctx, false);
    let finished = Rc::new(Cell::new(false));
    let done = finished.clone();
    let name: Cow<'static, str> = name.into();
    let label = name.clone();
    let wrapped = move || {
        if let Err(p) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
            eprintln!(
                "weft: detached fiber \"{label}\" {}",
                crate::switch::panic_message(&p)
            );
        }
        done.set(true);
        if let Ok(s) = sched::current() {
            s.detached_done();
        }
    };
    let opts = SpawnOpts {
        name: Some(name),
        ..SpawnOpts::default()
    };
    // SAFETY: `wrapped` is 'static: it borrows nothing that could end before
    // the fiber does.
    let key = unsafe { sched.spawn(ctx.clone(), Locals::default(), opts, wrapped)? };
    sched.detached_started();
    sched.schedule(key);
    Ok(DetachedFiber { ctx, finished })
}
