//! A fiber's control block: what the scheduler keeps about each fiber, and
//! the accessors that keep its unchecked cells sound.

use std::cell::{Cell, UnsafeCell};
use std::panic::Location;
use std::ptr;
use std::rc::Rc;
use std::sync::Arc;

use corosensei::Yielder;

use super::worker::Job;
use super::{Coro, FiberKey};
use crate::backend::{RawHook, WakeSlot};
use crate::cancel::CancelCtx;
use crate::local::Locals;
use crate::stack::overflow::FiberLabel;
use crate::stack::FiberStack;

/// A fiber's control block. Shared (`Rc`) between the fiber table and the
/// scheduler's `current` pointer; only this thread ever touches it.
///
/// The fields that own values (`ctx`, `name`, `locals`, `wake`) are plain
/// `UnsafeCell`s rather than `RefCell`s: each is written only by the fiber
/// itself while it runs, or by the scheduler before the fiber first runs
/// and after it returns, through the accessors below, which never hand out
/// a reference that outlives a write (old values are dropped after the
/// write is complete). A borrow flag would cost a check and two stores per
/// access on the spawn and switch paths.
#[repr(C)]
pub(crate) struct Fiber {
    /// What a stack overflow report says about this fiber. First, so that
    /// a pointer to the block is a pointer to its label: the overflow
    /// handler reads the scheduler's `current_fiber` as the running label.
    pub(super) label: FiberLabel,
    /// Only touched by the scheduler loop, never while the fiber runs
    /// (`run_fiber` resumes it in place through this cell).
    pub(super) coro: UnsafeCell<Option<Coro>>,
    /// A spare block's warm stack, for the next spawn of the default size
    /// (see `Scheduler::recycle`). Empty while the block is a fiber's: its
    /// coroutine owns its stack then.
    pub(super) stack: UnsafeCell<Option<FiberStack>>,
    /// Set by the fiber's first instructions; lives on its stack.
    pub(super) yielder: Cell<*const Yielder<(), ()>>,
    /// This fiber's key in the table (so the running fiber knows it).
    pub(super) key: Cell<FiberKey>,
    pub(super) wake: UnsafeCell<Option<Arc<WakeSlot>>>,
    /// The fiber's cancellation context; `None` only while the control
    /// block is spare (so that it keeps no finished switch's context alive).
    pub(super) ctx: UnsafeCell<Option<Rc<CancelCtx>>>,
    /// Neighbours in the list of the fibers of `ctx` (see [`Members`]).
    pub(super) ctx_prev: Cell<*const Fiber>,
    pub(super) ctx_next: Cell<*const Fiber>,
    pub(super) hook: Cell<Option<RawHook>>,
    pub(super) waiting_on: Cell<&'static str>,
    pub(super) id: Cell<u64>,
    pub(super) name: UnsafeCell<Option<std::borrow::Cow<'static, str>>>,
    pub(super) site: Cell<Option<&'static Location<'static>>>,
    pub(super) locals: UnsafeCell<Locals>,
    /// The body a worker is to run next (see `worker`), lent by the fork
    /// that gave it; taken by the worker as it starts the body.
    pub(super) job: Cell<Option<Job>>,
    /// Set by a worker whose body has returned, just before it parks: the
    /// scheduler then ends the fiber (a worker's coroutine does not return).
    pub(super) finished: Cell<bool>,
    /// In the run queue now: checks, in debug builds, that a fiber is
    /// never queued twice (the run queue's pointers rely on it).
    #[cfg(debug_assertions)]
    pub(super) queued: Cell<bool>,
}

// `Scheduler::current_fiber` doubles as the overflow handler's pointer to
// the running fiber's label (see `run_scheduler`).
const _: () = assert!(std::mem::offset_of!(Fiber, label) == 0);

impl Fiber {
    /// A spare control block: no coroutine, context, name or bindings.
    pub(super) fn spare() -> Fiber {
        Fiber {
            label: FiberLabel::default(),
            coro: UnsafeCell::new(None),
            stack: UnsafeCell::new(None),
            yielder: Cell::new(ptr::null()),
            key: Cell::new(FiberKey::default()),
            wake: UnsafeCell::new(None),
            ctx: UnsafeCell::new(None),
            ctx_prev: Cell::new(ptr::null()),
            ctx_next: Cell::new(ptr::null()),
            hook: Cell::new(None),
            waiting_on: Cell::new(""),
            id: Cell::new(0),
            name: UnsafeCell::new(None),
            site: Cell::new(None),
            locals: UnsafeCell::new(Locals::default()),
            job: Cell::new(None),
            finished: Cell::new(false),
            #[cfg(debug_assertions)]
            queued: Cell::new(false),
        }
    }

    /// Notes (in debug builds) that the fiber enters the run queue.
    #[inline(always)]
    pub(super) fn mark_queued(&self) {
        #[cfg(debug_assertions)]
        assert!(!self.queued.replace(true), "a fiber was queued twice");
    }

    /// The fiber's context. The reference must not be held across
    /// [`set_ctx`](Self::set_ctx) or [`take_ctx`](Self::take_ctx): callers
    /// use it at once (to test the flag, clone it, or remove the fiber).
    #[inline(always)]
    pub(super) fn ctx(&self) -> &CancelCtx {
        // SAFETY: `Fiber` is `!Sync`, so only this thread reaches the cell,
        // and the only writers (`set_ctx`, `take_ctx`) are never called
        // while a reference returned here is in use (see above).
        match unsafe { &*self.ctx.get() } {
            Some(c) => c,
            None => no_ctx(),
        }
    }

    /// A counted reference to the fiber's context.
    #[inline]
    pub(super) fn ctx_rc(&self) -> Rc<CancelCtx> {
        // SAFETY: as in `ctx`; the clone runs no code that reaches the cell.
        match unsafe { &*self.ctx.get() } {
            Some(c) => c.clone(),
            None => no_ctx(),
        }
    }

    /// Replaces the fiber's context, returning the old one (dropped by the
    /// caller, after the write).
    #[inline]
    pub(super) fn set_ctx(&self, ctx: Rc<CancelCtx>) -> Option<Rc<CancelCtx>> {
        // SAFETY: only this thread reaches the cell (`Fiber` is `!Sync`),
        // and no reference from `ctx()` is alive: every caller takes one
        // only for the duration of a call that does not reach here.
        unsafe { (*self.ctx.get()).replace(ctx) }
    }

    /// Takes the context of a fiber that has returned.
    #[inline]
    pub(super) fn take_ctx(&self) -> Option<Rc<CancelCtx>> {
        // SAFETY: as in `set_ctx`.
        unsafe { (*self.ctx.get()).take() }
    }

    /// The fiber's name, for a deadlock report or its overflow label. The
    /// name only changes at spawn and recycle, when nothing holds it.
    #[inline]
    pub(super) fn name(&self) -> Option<&str> {
        // SAFETY: `name` is written only by `spawn` (on a control block
        // that is in no table and not running) and by `recycle` (after the
        // fiber has returned and left the table); neither runs while a
        // caller of this method (a deadlock report, `spawn` itself after
        // its write) holds the reference.
        unsafe { (*self.name.get()).as_deref() }
    }

    /// Replaces the fiber's name (spawn and recycle only), returning the
    /// old one for the caller to drop after the write.
    #[inline]
    pub(super) fn set_name(
        &self,
        name: Option<std::borrow::Cow<'static, str>>,
    ) -> Option<std::borrow::Cow<'static, str>> {
        // SAFETY: see `name`: no reference into the cell is alive here.
        unsafe { std::mem::replace(&mut *self.name.get(), name) }
    }

    /// Replaces the fiber's bindings, returning the old ones for the
    /// caller to drop after the write.
    #[inline]
    pub(super) fn set_locals(&self, locals: Locals) -> Locals {
        // SAFETY: only this thread reaches the cell, and no reference into
        // it outlives a call: `locals()` clones.
        unsafe { std::mem::replace(&mut *self.locals.get(), locals) }
    }

    /// A copy of the fiber's bindings (one reference count).
    #[inline]
    pub(super) fn locals(&self) -> Locals {
        // SAFETY: as in `set_locals`; cloning runs no code that reaches the
        // cell.
        unsafe { (*self.locals.get()).clone() }
    }

    /// The fiber's wake slot, if it has one.
    #[inline]
    pub(super) fn wake(&self) -> Option<&Arc<WakeSlot>> {
        // SAFETY: the slot is written only by `wake_or_insert`, `take_wake`
        // and `put_wake` (by the fiber itself, while it runs) and by
        // `drop_shared_wake` (in `recycle`, after it returned); callers use
        // the reference at once, across none of them.
        unsafe { (*self.wake.get()).as_ref() }
    }

    /// The fiber's wake slot, made by `make` if it has none yet.
    #[inline]
    pub(super) fn wake_or_insert(&self, make: impl FnOnce() -> Arc<WakeSlot>) -> Arc<WakeSlot> {
        if let Some(w) = self.wake() {
            return w.clone();
        }
        let w = make();
        // SAFETY: the cell is empty (checked above; `make` only allocates)
        // and no reference into it is alive.
        unsafe { *self.wake.get() = Some(w.clone()) };
        w
    }

    /// Takes the wake slot out, for a wait that holds it in its frame.
    #[inline]
    pub(super) fn take_wake(&self) -> Option<Arc<WakeSlot>> {
        // SAFETY: called by the running fiber itself; no reference into
        // the cell is alive (`wake` callers drop theirs at once).
        unsafe { (*self.wake.get()).take() }
    }

    /// Puts back the slot `take_wake` took.
    #[inline]
    pub(super) fn put_wake(&self, slot: Arc<WakeSlot>) {
        // SAFETY: as in `take_wake`; anything the cell held is dropped only
        // after the write, outside the unsafe access.
        let old = unsafe { (*self.wake.get()).replace(slot) };
        drop(old);
    }

    /// Keeps `stack` with this spare block.
    #[inline]
    pub(super) fn keep_stack(&self, stack: FiberStack) {
        // SAFETY: only this thread reaches the cell (`Fiber` is `!Sync`),
        // and no reference into it ever outlives a call (`take_stack`
        // moves the stack out).
        let old = unsafe { (*self.stack.get()).replace(stack) };
        debug_assert!(old.is_none(), "a spare block kept two stacks");
    }

    /// Takes the stack kept with this spare block, if any.
    #[inline]
    pub(super) fn take_stack(&self) -> Option<FiberStack> {
        // SAFETY: as in `keep_stack`.
        unsafe { (*self.stack.get()).take() }
    }

    /// Empties the block of a finished fiber for the next one: its own wake
    /// slot (if a resumer still refers to it), label, bindings, name and
    /// context. The old values are dropped after the writes: their
    /// destructors may run user code.
    pub(super) fn clear_for_reuse(&self) {
        self.drop_shared_wake();
        self.label.clear();
        let old = (
            self.set_locals(Locals::default()),
            self.set_name(None),
            self.take_ctx(),
        );
        drop(old);
    }

    /// Drops the wake slot if anything but this block still refers to it
    /// (a resumer of the finished fiber), so the next fiber gets its own.
    #[inline]
    pub(super) fn drop_shared_wake(&self) {
        if self.wake().is_some_and(|a| Arc::strong_count(a) != 1) {
            // SAFETY: no reference into the cell is alive (the one above
            // ended), and only this thread reaches it.
            let old = unsafe { (*self.wake.get()).take() };
            drop(old);
        }
    }
}

impl Fiber {
    /// Adds this fiber at the end of `m`, the member list of the context
    /// it is entering. It must be in the fiber table, and in no list.
    #[inline]
    pub(super) fn join(&self, m: &Members) {
        let tail = m.tail.get();
        self.ctx_prev.set(tail);
        self.ctx_next.set(ptr::null());
        if tail.is_null() {
            m.head.set(self);
        } else {
            // SAFETY: `tail` is a member of `m`, so (see `Members`) a live
            // control block.
            unsafe { (*tail).ctx_next.set(self) };
        }
        m.tail.set(self);
    }

    /// Removes this fiber from `m`, the member list of its context.
    #[inline]
    pub(super) fn leave(&self, m: &Members) {
        let (prev, next) = (self.ctx_prev.get(), self.ctx_next.get());
        debug_assert!(!prev.is_null() || ptr::eq(m.head.get(), self));
        debug_assert!(!next.is_null() || ptr::eq(m.tail.get(), self));
        if prev.is_null() {
            m.head.set(next);
        } else {
            // SAFETY: a neighbour in `m` is a member, so a live block.
            let p = unsafe { &*prev };
            debug_assert!(ptr::eq(p.ctx_next.get(), self), "member list broken");
            p.ctx_next.set(next);
        }
        if next.is_null() {
            m.tail.set(prev);
        } else {
            // SAFETY: as above.
            let n = unsafe { &*next };
            debug_assert!(ptr::eq(n.ctx_prev.get(), self), "member list broken");
            n.ctx_prev.set(prev);
        }
    }
}

/// The fibers in one cancellation context, oldest member first: a list
/// linked through their control blocks. Joining and leaving are a few
/// pointer writes, where a table would cost an insert and a remove (with
/// their borrow-flag checks) on every spawn and finish.
///
/// Every block in a list is alive: a fiber joins its context's list while
/// it is in the scheduler's fiber table (whose `Rc` keeps its block), and
/// leaves it before it leaves the table (when it returns, or when the run
/// ends with it still blocked) and before it moves to another context. A
/// member also holds an `Rc` of the context, so no list is dropped with
/// members in it.
pub(crate) struct Members {
    head: Cell<*const Fiber>,
    tail: Cell<*const Fiber>,
}

impl Members {
    /// An empty list.
    pub(crate) const fn new() -> Members {
        Members {
            head: Cell::new(ptr::null()),
            tail: Cell::new(ptr::null()),
        }
    }

    /// The keys of the members, oldest first.
    pub(crate) fn keys(&self) -> Vec<FiberKey> {
        let mut keys = Vec::new();
        let mut last = ptr::null();
        let mut p = self.head.get();
        while !p.is_null() {
            // SAFETY: `p` is a member (the head, or a member's successor),
            // so a live control block (see above).
            let f = unsafe { &*p };
            debug_assert!(ptr::eq(f.ctx_prev.get(), last), "member list broken");
            keys.push(f.key.get());
            last = p;
            p = f.ctx_next.get();
        }
        debug_assert!(ptr::eq(self.tail.get(), last), "member list broken");
        keys
    }
}

/// A control block without a context is a spare one, which never runs.
#[cold]
#[inline(never)]
pub(super) fn no_ctx() -> ! {
    panic!("weft: internal error: a spare fiber control block was used as a running fiber")
}
