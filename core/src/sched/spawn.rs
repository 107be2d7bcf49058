//! Making fibers: a new coroutine on a pooled stack, with a control block
//! reused from a finished fiber where one is spare.

use std::cell::{Cell, RefCell, UnsafeCell};
use std::ptr;
use std::rc::Rc;
use std::sync::Arc;

use corosensei::Yielder;

use super::{current, Coro, Fiber, FiberKey, NewFiber, Scheduler, SpawnOpts};
use crate::cancel::{CancelCtx, CtxFiberKey};
use crate::error::Result;
use crate::local::Locals;
use crate::stack::overflow::FiberLabel;

impl Scheduler {
    /// Creates a fiber in `ctx` running `body`, without scheduling it.
    ///
    /// # Safety
    /// Whatever `body` borrows must stay valid until the fiber finishes (or
    /// is leaked when the run ends).
    pub(crate) unsafe fn spawn<F: FnOnce()>(
        &self,
        ctx: Rc<CancelCtx>,
        locals: Locals,
        opts: SpawnOpts,
        body: F,
    ) -> Result<NewFiber> {
        let stack = self.stacks.borrow_mut().get(opts.stack_size)?;
        let guard = stack.guard().0;
        let func = move |y: &Yielder<(), ()>, ()| {
            if let Ok(s) = current() {
                s.cur().yielder.set(y);
            }
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).is_err() {
                // Fiber bodies built by weft catch their own panics; reaching
                // here means an internal bug, and unwinding further would
                // corrupt the scheduler.
                eprintln!("weft: internal error: panic escaped a fiber body");
                std::process::abort();
            }
        };
        // SAFETY: forwarded from our caller: borrowed data outlives the
        // coroutine's completion, and a coroutine that never completes is
        // leaked (never resumed nor dropped) by `run_scheduler`.
        let coro = unsafe { Coro::with_stack_unchecked(stack, func) };
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let spare = self.spare_fibers.borrow_mut().pop();
        let fiber = match spare {
            Some(f) => {
                // SAFETY: a spare fiber is in no table and not running; this
                // is the only reference to its coroutine cell.
                unsafe { *f.coro.get() = Some(coro) };
                f.yielder.set(ptr::null());
                *f.ctx.borrow_mut() = ctx.clone();
                f.id.set(id);
                *f.name.borrow_mut() = opts.name;
                f.site.set(opts.site);
                *f.locals.borrow_mut() = locals;
                f
            }
            None => Rc::new(Fiber {
                coro: UnsafeCell::new(Some(coro)),
                yielder: Cell::new(ptr::null()),
                key: Cell::new(FiberKey::default()),
                wake: RefCell::new(None),
                ctx: RefCell::new(ctx.clone()),
                ctx_key: Cell::new(CtxFiberKey::default()),
                hook: Cell::new(None),
                waiting_on: Cell::new(""),
                id: Cell::new(id),
                name: RefCell::new(opts.name),
                site: Cell::new(opts.site),
                locals: RefCell::new(locals),
                label: FiberLabel::default(),
                #[cfg(debug_assertions)]
                queued: Cell::new(false),
            }),
        };
        // SAFETY: the name lives in `fiber.name` until `recycle` clears the
        // label before dropping it (or the fiber is respawned, which sets
        // the label again).
        unsafe {
            let name = fiber.name.borrow();
            fiber
                .label
                .set(id, name.as_deref(), fiber.site.get(), guard);
        }
        let key = self.fibers.borrow_mut().insert(fiber.clone());
        fiber.key.set(key);
        fiber.ctx_key.set(ctx.add_fiber(key));
        if let Some(w) = &*fiber.wake.borrow() {
            w.reassign(key);
        }
        Ok(NewFiber(Rc::as_ptr(&fiber)))
    }

    /// Keeps a finished fiber's control block (and wake slot, if no
    /// resumer still refers to it) for the next spawn.
    pub(super) fn recycle(&self, f: Rc<Fiber>) {
        if Rc::strong_count(&f) != 1 {
            return;
        }
        {
            let mut w = f.wake.borrow_mut();
            if w.as_ref().is_some_and(|a| Arc::strong_count(a) != 1) {
                *w = None;
            }
        }
        *f.locals.borrow_mut() = Locals::default();
        f.label.clear();
        *f.name.borrow_mut() = None;
        *f.ctx.borrow_mut() = self.root_ctx.clone();
        let mut spare = self.spare_fibers.borrow_mut();
        if spare.len() < 1024 {
            spare.push(f);
        }
    }
}
