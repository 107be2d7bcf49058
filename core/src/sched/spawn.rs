//! Making fibers: a new coroutine on a pooled stack, with a control block
//! reused from a finished fiber where one is spare.

use std::ptr;
use std::rc::Rc;

use corosensei::Yielder;

use super::{Coro, Fiber, NewFiber, Scheduler, SpawnOpts};
use crate::cancel::CancelCtx;
use crate::error::Result;
use crate::local::Locals;
use crate::stack::FiberStack;

impl Scheduler {
    /// Creates a fiber in `ctx` running `body`, without scheduling it.
    ///
    /// # Safety
    /// Whatever `body` borrows must stay valid until the fiber finishes (or
    /// is leaked when the run ends).
    #[inline]
    pub(crate) unsafe fn spawn<F: FnOnce()>(
        &self,
        ctx: Rc<CancelCtx>,
        locals: Locals,
        opts: SpawnOpts,
        body: F,
    ) -> Result<NewFiber> {
        // A default-size fiber takes a spare block with its stack if there
        // is one (the warmest stack, and no trip through the pool).
        let stacked = match opts.stack_size {
            None => self.stacked_spares.borrow_mut().pop(),
            Some(_) => None,
        };
        let (spare, stack) = match stacked {
            Some(f) => match f.take_stack() {
                Some(s) => (Some(f), s),
                None => (Some(f), self.stacks.borrow_mut().get(None)?),
            },
            None => {
                let s = self.stacks.borrow_mut().get(opts.stack_size)?;
                (self.spare_fibers.borrow_mut().pop(), s)
            }
        };
        let guard = stack.guard().0;
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let fiber = match spare {
            Some(f) => {
                f.yielder.set(ptr::null());
                f.id.set(id);
                f.site.set(opts.site);
                // `recycle` took the spare's context and emptied its name
                // and bindings: what comes back owns nothing, and forgetting
                // it spares the drop glue (were it ever otherwise, it would
                // leak, not misbehave).
                let old = (f.set_ctx(ctx), f.set_name(opts.name), f.set_locals(locals));
                debug_assert!(old.0.is_none() && old.1.is_none() && old.2.is_empty());
                std::mem::forget(old);
                f
            }
            None => {
                let f = Rc::new(Fiber::spare());
                f.id.set(id);
                f.site.set(opts.site);
                // SAFETY: a new block, reached by nothing else yet.
                unsafe {
                    *f.ctx.get() = Some(ctx);
                    *f.name.get() = opts.name;
                    *f.locals.get() = locals;
                }
                f
            }
        };
        let fp = Rc::as_ptr(&fiber);
        let func = move |y: &Yielder<(), ()>, ()| {
            // SAFETY: `fp` is this fiber's control block, which the fiber
            // table keeps alive until the fiber returns (it is removed only
            // after `resume` reports the return), and we are that fiber.
            unsafe { (*fp).yielder.set(y) };
            // Fiber bodies built by weft catch their own panics; one that
            // escapes is an internal bug, and unwinding into the scheduler
            // would corrupt it. A guard aborts then, at no cost otherwise
            // (where `catch_unwind` would move `body` into a frame of its
            // own).
            let abort = AbortOnUnwind;
            body();
            std::mem::forget(abort);
        };
        // SAFETY: forwarded from our caller: borrowed data outlives the
        // coroutine's completion, and a coroutine that never completes is
        // leaked (never resumed nor dropped) by `run_scheduler`.
        let coro = unsafe { Coro::with_stack_unchecked(stack, func) };
        // SAFETY: the control block is new or spare: in no table and not
        // running, so nothing else reaches its coroutine cell (empty: a
        // spare's coroutine was taken when it returned).
        unsafe { *fiber.coro.get() = Some(coro) };
        // SAFETY: the name lives in `fiber.name` until `recycle` clears the
        // label before dropping it (or the fiber is respawned, which sets
        // the label again).
        unsafe {
            fiber.label.set(id, fiber.name(), fiber.site.get(), guard);
        }
        Ok(self.enter_table(fiber))
    }

    /// Puts a fiber about to run for the first time into the table and its
    /// context's member list, and points its wake slot at its new key.
    #[inline(always)]
    pub(super) fn enter_table(&self, fiber: Rc<Fiber>) -> NewFiber {
        let fp = Rc::as_ptr(&fiber);
        let key = self.fibers.borrow_mut().insert(fiber);
        // SAFETY: the table now holds the `Rc` to the control block, and
        // keeps it until the fiber finishes, which it cannot do before it
        // runs; nothing here removes it.
        let fiber = unsafe { &*fp };
        fiber.key.set(key);
        fiber.join(fiber.ctx().members());
        if let Some(w) = fiber.wake() {
            w.reassign(key);
        }
        NewFiber(fp)
    }

    /// Keeps a finished fiber's control block (and wake slot, if no
    /// resumer still refers to it) for the next spawn: with its stack, if
    /// that is of the default size and fewer than `spare_stack_cap` blocks
    /// hold one (the next default-size spawn then takes both at once);
    /// otherwise the stack goes back to the pool.
    pub(super) fn recycle(&self, f: Rc<Fiber>, stack: FiberStack) {
        if Rc::strong_count(&f) != 1 {
            self.stacks.borrow_mut().put(stack);
            return;
        }
        f.clear_for_reuse();
        if stack.size() == self.stack_size {
            let mut stacked = self.stacked_spares.borrow_mut();
            if stacked.len() < self.spare_stack_cap {
                f.keep_stack(stack);
                stacked.push(f);
                return;
            }
        }
        self.stacks.borrow_mut().put(stack);
        let mut spare = self.spare_fibers.borrow_mut();
        if spare.len() < 1024 {
            spare.push(f);
        }
    }
}

/// Aborts the process if dropped: armed around a fiber's body, and
/// forgotten once the body returns, so only an unwinding panic drops it.
pub(super) struct AbortOnUnwind;

impl Drop for AbortOnUnwind {
    fn drop(&mut self) {
        eprintln!("weft: internal error: panic escaped a fiber body");
        std::process::abort();
    }
}
