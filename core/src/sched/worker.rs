//! Reusable fibers: a default-size fiber that `fork` runs at once is a
//! *worker*, a coroutine that runs one fiber body after another on the same
//! stack, parking between them, instead of a coroutine made for each body.
//!
//! Why: making a coroutine (laying out its stack, entering it through the
//! trampoline, returning out of it) costs about as much as the rest of a
//! fork, and a coroutine that has suspended returns through frames that
//! the CPU's return predictor no longer knows, several mispredictions at
//! the end of every such fiber. A parked worker is resumed at its loop and
//! parks again there, one level below the body.
//!
//! The body does not need a home of its own: `fork_now` keeps it in its
//! frame and lends the worker a pointer, and the worker moves it onto its
//! own stack before anything else runs (the child runs first, and nothing
//! between the parent's switch and the child's start runs fiber code).

use std::mem::ManuallyDrop;
use std::ptr;
use std::rc::Rc;

use corosensei::{CoroutineResult, Yielder};

use super::{Coro, Fiber, Scheduler, SpawnOpts};
use crate::cancel::CancelCtx;
use crate::error::Result;
use crate::local::Locals;

/// A body lent to a worker: `run` moves the body out of `data` and runs it.
#[derive(Clone, Copy)]
pub(super) struct Job {
    run: unsafe fn(*mut ()),
    data: *mut (),
}

/// Moves the body of type `F` out of `data` and runs it.
///
/// # Safety
/// `data` points to an initialised `F` that nothing else will use or drop.
unsafe fn run_body<F: FnOnce()>(data: *mut ()) {
    // SAFETY: forwarded from our caller: we own the value now.
    let body = unsafe { ptr::read(data.cast::<F>()) };
    body();
}

/// The code of every worker coroutine: runs the job in its block, tells the
/// scheduler it finished, and parks until given the next; returns when
/// resumed without one (to give its stack back).
fn worker_main(fp: *const Fiber, y: &Yielder<(), ()>) {
    // SAFETY: `fp` is the control block that holds this coroutine; it lives
    // at least as long as the coroutine runs (the coroutine is only resumed
    // through the block, which the fiber table or the spare list keeps).
    let f = unsafe { &*fp };
    f.yielder.set(y);
    while let Some(job) = f.job.take() {
        // Fiber bodies built by weft catch their own panics; one that
        // escapes is an internal bug, and would otherwise unwind into the
        // scheduler. Parked, the worker holds no guard: dropping a parked
        // worker unwinds it cleanly.
        let abort = super::spawn::AbortOnUnwind;
        // SAFETY: `fork_now` lent us its body for this job and will neither
        // use nor drop it.
        unsafe { (job.run)(job.data) };
        std::mem::forget(abort);
        f.finished.set(true);
        y.suspend(());
    }
}

impl Scheduler {
    /// Makes a fiber in `ctx` running `body` and runs it at once; the
    /// current fiber continues right after it (as [`Scheduler::spawn`]
    /// followed by [`Scheduler::run_child_first`]). A default-size fiber
    /// runs on a parked worker where there is one.
    ///
    /// # Safety
    /// Whatever `body` borrows must stay valid until the fiber finishes (or
    /// is leaked when the run ends).
    #[inline(always)]
    pub(crate) unsafe fn fork_now<F: FnOnce()>(
        &self,
        ctx: Rc<CancelCtx>,
        locals: Locals,
        opts: SpawnOpts,
        body: F,
    ) -> Result<()> {
        if opts.stack_size.is_some_and(|s| s != self.stack_size) {
            // SAFETY: forwarded from our caller.
            let child = unsafe { self.spawn(ctx, locals, opts, body)? };
            self.run_child_first(child);
            return Ok(());
        }
        let spare = self.spare_workers.borrow_mut().pop();
        let worker = match spare {
            Some(w) => w,
            None => self.new_worker()?,
        };
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        worker.id.set(id);
        worker.site.set(opts.site);
        // A parked worker owns no context, name or bindings (`park_worker`
        // took them): nothing to drop.
        let old = (
            worker.set_ctx(ctx),
            worker.set_name(opts.name),
            worker.set_locals(locals),
        );
        debug_assert!(old.0.is_none() && old.1.is_none() && old.2.is_empty());
        std::mem::forget(old);
        // SAFETY: the name lives in the block until `park_worker` clears the
        // label before dropping it.
        unsafe {
            let guard = worker.label.guard();
            worker
                .label
                .set(id, worker.name(), worker.site.get(), guard);
        }
        let mut body = ManuallyDrop::new(body);
        worker.job.set(Some(Job {
            run: run_body::<F>,
            data: ptr::from_mut::<F>(&mut *body).cast(),
        }));
        let child = self.enter_table(worker);
        // The child runs first and moves `body` out of this frame before
        // anything else runs; when this fiber continues, `body` is spent.
        self.run_child_first(child);
        Ok(())
    }

    /// A new worker, parked before its first job, on a default-size stack.
    #[cold]
    fn new_worker(&self) -> Result<Rc<Fiber>> {
        let kept = self.stacked_spares.borrow_mut().pop();
        let (block, stack) = match kept {
            Some(f) => match f.take_stack() {
                Some(s) => (Some(f), s),
                None => (Some(f), self.stacks.borrow_mut().get(None)?),
            },
            None => {
                let s = self.stacks.borrow_mut().get(None)?;
                (self.spare_fibers.borrow_mut().pop(), s)
            }
        };
        let guard = stack.guard().0;
        let block = block.unwrap_or_else(|| Rc::new(Fiber::spare()));
        block.yielder.set(ptr::null());
        // SAFETY: a spare block's label names nothing; the guard is all
        // that is set until a fork names the fiber.
        unsafe { block.label.set(0, None, None, guard) };
        let fp = Rc::as_ptr(&block);
        let coro = Coro::with_stack(stack, move |y: &Yielder<(), ()>, ()| worker_main(fp, y));
        // SAFETY: a spare block is in no table and not running, so nothing
        // else reaches its (empty) coroutine cell.
        unsafe { *block.coro.get() = Some(coro) };
        Ok(block)
    }

    /// A worker's body has returned: the fiber is over. Takes it out of the
    /// table and parks the worker for the next fork (or lets it go).
    pub(super) fn worker_finished(&self, f: &Fiber) {
        f.finished.set(false);
        f.leave(f.ctx().members());
        let rc = self.fibers.borrow_mut().remove(f.key.get());
        let Some(rc) = rc else {
            return;
        };
        if Rc::strong_count(&rc) == 1 {
            rc.clear_for_reuse();
            let mut spares = self.spare_workers.borrow_mut();
            if spares.len() < self.spare_stack_cap {
                spares.push(rc);
                return;
            }
        }
        self.retire_worker(rc);
    }

    /// Resumes a parked worker without a job, so that it returns, and gives
    /// its stack back to the pool.
    pub(super) fn retire_worker(&self, w: Rc<Fiber>) {
        debug_assert!(w.job.take().is_none());
        // SAFETY: a parked worker is in no table and not running; only the
        // scheduler reaches its coroutine cell, and not re-entrantly.
        let Some(mut coro) = (unsafe { (*w.coro.get()).take() }) else {
            return;
        };
        match coro.resume(()) {
            CoroutineResult::Return(()) => self.stacks.borrow_mut().put(coro.into_stack()),
            // Cannot happen (a worker without a job returns); the
            // coroutine is dropped, unwinding it, rather than resumed again.
            CoroutineResult::Yield(()) => drop(coro),
        }
    }

    /// Retires every parked worker (at the end of a run).
    pub(super) fn retire_workers(&self) {
        let parked = std::mem::take(&mut *self.spare_workers.borrow_mut());
        for w in parked {
            self.retire_worker(w);
        }
    }
}
