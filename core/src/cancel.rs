//! Cancellation contexts.
//!
//! Every fiber is in exactly one cancellation context, and contexts form a
//! tree: cancelling one cancels every fiber in it and every context below it,
//! except below a [`protect`]ed region. A cancelled fiber finds out at its
//! next suspension point, which returns `Err(Cancelled)` carrying the reason;
//! a fiber already suspended is woken through its operation's cancel hook.
//!
//! ```
//! use weft::{cancel, fiber, Switch};
//!
//! weft::mock::run(|_env| {
//!     let r = Switch::run(|sw| {
//!         sw.fork(|| {
//!             // Protected: the switch failing below does not interrupt this.
//!             cancel::protect(|| {
//!                 fiber::yield_now()?;
//!                 weft::traceln!("protected work finished");
//!                 Ok(())
//!             })
//!         });
//!         Err::<(), _>(weft::Error::msg(weft::ErrorKind::InvalidInput, "boom"))
//!     });
//!     assert!(r.is_err());
//!     Ok(())
//! })
//! .unwrap();
//! ```

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use slotmap::SlotMap;

use crate::error::{Error, Result};
use crate::sched::{self, Members, Scheduler};

slotmap::new_key_type! {
    /// A child context's membership in its parent.
    pub(crate) struct ChildKey;
}

/// A node in the cancellation tree.
pub(crate) struct CancelCtx {
    parent: Option<Rc<CancelCtx>>,
    key_in_parent: Cell<Option<ChildKey>>,
    protected: bool,
    /// Fast flag mirroring `reason.is_some()`.
    cancelled: Cell<bool>,
    reason: RefCell<Option<Error>>,
    /// The fibers in this context (those that entered it and have not
    /// left it or finished).
    fibers: Members,
    children: RefCell<SlotMap<ChildKey, Weak<CancelCtx>>>,
}

impl CancelCtx {
    pub(crate) fn root() -> Rc<CancelCtx> {
        Rc::new(CancelCtx {
            parent: None,
            key_in_parent: Cell::new(None),
            protected: false,
            cancelled: Cell::new(false),
            reason: RefCell::new(None),
            fibers: Members::new(),
            children: RefCell::new(SlotMap::with_key()),
        })
    }

    /// A new context below `parent`. Unless `protected`, it starts cancelled
    /// if `parent` is, and is cancelled whenever `parent` is.
    pub(crate) fn child(parent: &Rc<CancelCtx>, protected: bool) -> Rc<CancelCtx> {
        let reason = if protected {
            None
        } else {
            parent.reason.borrow().clone()
        };
        let ctx = Rc::new(CancelCtx {
            parent: Some(parent.clone()),
            key_in_parent: Cell::new(None),
            protected,
            cancelled: Cell::new(reason.is_some()),
            reason: RefCell::new(reason),
            fibers: Members::new(),
            children: RefCell::new(SlotMap::with_key()),
        });
        let key = parent.children.borrow_mut().insert(Rc::downgrade(&ctx));
        ctx.key_in_parent.set(Some(key));
        ctx
    }

    /// The fibers in this context, for the scheduler to link and unlink.
    #[inline]
    pub(crate) fn members(&self) -> &Members {
        &self.fibers
    }

    #[inline]
    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.get()
    }

    /// `Err(Cancelled(reason))` if this context is cancelled.
    #[inline]
    pub(crate) fn check(&self) -> Result<()> {
        if !self.cancelled.get() {
            return Ok(());
        }
        self.check_slow()
    }

    /// The cancelled half of [`check`](Self::check), out of line.
    #[cold]
    #[inline(never)]
    pub(crate) fn check_slow(&self) -> Result<()> {
        match &*self.reason.borrow() {
            None => Ok(()),
            Some(r) => Err(Error::cancelled(r.clone())),
        }
    }

    /// Cancels this context, its fibers and its unprotected descendants.
    /// Cancelling an already-cancelled context does nothing.
    pub(crate) fn cancel(&self, sched: &Scheduler, reason: Error) {
        {
            let mut r = self.reason.borrow_mut();
            if r.is_some() {
                return;
            }
            *r = Some(reason.clone());
            self.cancelled.set(true);
        }
        // Keys, not blocks: the hooks below may wake and queue fibers, and
        // `cancel_fiber` looks each up again.
        for f in self.fibers.keys() {
            sched.cancel_fiber(f, &reason);
        }
        let children: Vec<Rc<CancelCtx>> = self
            .children
            .borrow()
            .values()
            .filter_map(Weak::upgrade)
            .collect();
        for c in children {
            if !c.protected {
                c.cancel(sched, reason.clone());
            }
        }
    }
}

impl Drop for CancelCtx {
    fn drop(&mut self) {
        if let (Some(p), Some(k)) = (&self.parent, self.key_in_parent.get()) {
            p.children.borrow_mut().remove(k);
        }
    }
}

/// Puts the scheduler's previous context back when dropped, so a context
/// entered by [`protect`] or [`sub`] is left even if `f` panics.
struct Restore<'a>(&'a Scheduler, Option<Rc<CancelCtx>>);

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        if let Some(old) = self.1.take() {
            self.0.enter_ctx(old);
        }
    }
}

/// Runs `f` in a new context that is not cancelled when its parent is.
///
/// Use it for clean-up that must finish — flushing a file, sending a final
/// message — even while the surrounding fiber is being cancelled. A
/// cancellation that arrived during `f` is seen at the next suspension point
/// after `protect` returns. `protect` itself never suspends.
pub fn protect<T>(f: impl FnOnce() -> T) -> T {
    let sched = match sched::current() {
        Ok(s) => s,
        Err(_) => return f(),
    };
    let parent = sched.current_ctx();
    let ctx = CancelCtx::child(&parent, true);
    let old = sched.enter_ctx(ctx);
    let _restore = Restore(sched, Some(old));
    f()
}

/// A cancellation context that the code inside it can cancel: see [`sub`].
pub struct CancelScope {
    ctx: Rc<CancelCtx>,
}

impl CancelScope {
    /// Cancels every fiber in this scope (and below it) with `reason`.
    pub fn cancel(&self, reason: Error) {
        if let Ok(s) = sched::current() {
            self.ctx.cancel(s, reason);
        }
    }

    /// True once the scope has been cancelled (by itself or an ancestor).
    pub fn is_cancelled(&self) -> bool {
        self.ctx.is_cancelled()
    }
}

impl std::fmt::Debug for CancelScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CancelScope")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

/// Runs `f` in a new child context, given a handle that can cancel it.
///
/// Cancelling the scope does not cancel the caller's context: `sub` returns
/// whatever `f` returns (typically `Err(Cancelled)` propagated by `?`). If
/// the caller's context is already cancelled, `f` does not run and `sub`
/// returns `Err(Cancelled)`.
///
/// ```
/// use weft::cancel;
/// weft::mock::run(|_env| {
///     let r = cancel::sub(|scope| {
///         scope.cancel(weft::Error::new(weft::ErrorKind::Timeout));
///         weft::fiber::yield_now()
///     });
///     assert!(r.unwrap_err().is_cancelled());
///     weft::fiber::check() // the caller is not cancelled
/// })
/// .unwrap();
/// ```
pub fn sub<T>(f: impl FnOnce(&CancelScope) -> Result<T>) -> Result<T> {
    let sched = sched::current()?;
    let parent = sched.current_ctx();
    // As in Eio, no new context starts inside a cancelled one: `f` does not
    // run.
    parent.check()?;
    let ctx = CancelCtx::child(&parent, false);
    let old = sched.enter_ctx(ctx.clone());
    let _restore = Restore(sched, Some(old));
    f(&CancelScope { ctx })
}
